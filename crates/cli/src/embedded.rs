//! A development server on loopback in a temporary directory, for the commands that bring their
//! own (`confide bench kbs`, `confide demo aml`); it stops when dropped.

use std::path::Path;

use anyhow::Context;

pub(crate) struct Embedded {
    /// Where clients reach it.
    pub(crate) url: String,
    dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Embedded {
    /// Starts the server; its data directory is `dir()/data`.
    pub(crate) fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("creating a temporary directory")?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let listener = runtime.block_on(confide_server::bind(([127, 0, 0, 1], 0).into()))?;
        let addr = listener.local_addr()?;
        let url = format!("http://{addr}");
        let config = confide_server::Config {
            data: dir.path().join("data"),
            dev: true,
            founder: None,
            issuer: url.clone(),
            rotate_token_key: false,
            retire_token_keys: Vec::new(),
            token_lifetime: confide_server::TOKEN_LIFETIME,
        };
        let (state, _) = confide_server::open(&config, None)?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                tokio::select! {
                    _ = confide_server::serve(listener, state, None) => {}
                    _ = rx => {}
                }
            });
        });
        Ok(Self {
            url,
            dir,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// The temporary directory it lives in.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the server (its files stay until this is dropped).
    pub(crate) fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.stop();
    }
}

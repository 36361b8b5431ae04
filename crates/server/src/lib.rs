//! `confide serve`: the services over HTTP: the attestation service (`/attest`, tokens and their
//! keys under `/.well-known`), the key broker (`/keys`, and the Trustee KBS protocol under
//! `/kbs/v0`), the ledger (`/ledger`), governance (`/gov`, with the clean rooms' datasets and
//! contracts) and the clean rooms' run records (`/cleanroom`).
//!
//! One writer thread owns appends. Requests that change the ledger are queued to it; it takes
//! every request waiting (up to a batch limit), checks each against the governance state as it
//! will be after the ones before it, appends the accepted ones as one batch, waits for the batch
//! to be durable (fsync) and signed, and only then answers each request and publishes the new
//! state. A request that is refused is answered at once and changes nothing; if the append
//! fails, every request of the batch gets the error and the state stays as it was.
//!
//! Errors are RFC 7807 problem documents with a stable `type` per error.

#![forbid(unsafe_code)]

mod attest;
mod audit;
mod auth;
mod cleanroom;
mod collateral;
mod kbs;
mod keys;
mod ledger;
mod problem;
mod sealed;
pub mod tls;
mod token;
mod writer;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use confide_crypto::aead::SealingKey;
use confide_crypto::signing::SigningKey;
use confide_gov::Governance;
use confide_ledger::Ledger;

pub use attest::{DEFAULT_APPRAISAL, TOKEN_LIFETIME};
pub use confide_kms::RELEASE_INFO;
pub use kbs::SESSION_SECONDS as KBS_SESSION_SECONDS;
pub use keys::LEASE_SECONDS;
pub use problem::{KBS_TYPE_BASE, Problem, TYPE_BASE};
pub use sealed::sealed_router;
pub use token::{TokenError, kid, verify_jwt};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The configuration is refused.
    #[error("{0}")]
    Config(String),
    /// The ledger could not be opened or does not verify.
    #[error("the ledger: {0}")]
    Ledger(#[from] confide_ledger::LedgerError),
    /// Replaying the ledger's governance requests failed.
    #[error("replaying governance entry {seq}: {error}")]
    Replay {
        /// The entry.
        seq: u64,
        /// What failed.
        error: confide_gov::GovError,
    },
    /// An audit event the state is rebuilt from does not read whole: the ledger is damaged.
    #[error("replaying audit entry {seq}: {error}")]
    Event {
        /// The entry.
        seq: u64,
        /// What is wrong with it.
        error: confide_model::ModelError,
    },
    /// The operating system refused.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

/// How the server runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The data directory.
    pub data: PathBuf,
    /// The development profile: keys in local files, said loudly at start.
    pub dev: bool,
    /// Only this member (identity fingerprint, hex) may found the consortium. Outside the
    /// development profile, no one may found it without one.
    pub founder: Option<String>,
    /// The token issuer: the server's base URL as clients reach it.
    pub issuer: String,
    /// Start signing tokens with a new key (the old ones stay published).
    pub rotate_token_key: bool,
    /// Retire these token keys (by kid), after any rotation: deleted and published no more.
    pub retire_token_keys: Vec<String>,
    /// How long the attestation tokens issued are valid, in seconds ([`TOKEN_LIFETIME`] by
    /// default).
    pub token_lifetime: i64,
}

/// The server's clock, in seconds since the epoch: the one place the services read it.
pub(crate) fn now() -> i64 {
    confide_attest::UnixTime::now().secs()
}

/// Runs `work` (a Rego evaluation, an evidence verification) without holding up the other
/// requests on this async worker thread: the runtime moves them elsewhere while it runs.
pub(crate) fn blocking<T>(work: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(work)
}

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub(crate) ledger: Arc<RwLock<Ledger>>,
    /// The SHA-256 of the ledger key's SubjectPublicKeyInfo: what a workload's evidence must
    /// bind for it to be given a dataset's key ([`confide_model::RuntimeKeys::ledger`]).
    pub(crate) ledger_key: [u8; 32],
    pub(crate) gov: Arc<RwLock<Governance>>,
    pub(crate) writer: writer::Handle,
    pub(crate) founder: Option<String>,
    /// The development profile: simulated evidence accepted, anyone may found.
    pub(crate) dev: bool,
    pub(crate) issuer: String,
    pub(crate) token_lifetime: i64,
    pub(crate) tokens: Arc<RwLock<token::KeySet>>,
    pub(crate) kms: Arc<confide_kms::KeyStore>,
    pub(crate) leases: Arc<std::sync::Mutex<confide_kms::Leases>>,
    /// Nonces of members' key-management requests, with their times (for replays); rebuilt
    /// from the ledger at start.
    pub(crate) nonces: Arc<std::sync::Mutex<confide_gov::SpentNonces>>,
    /// The KBS protocol's sessions.
    pub(crate) kbs: Arc<std::sync::Mutex<kbs::Sessions>>,
    /// Endorsements kept for verifying evidence offline.
    pub(crate) collateral: Arc<collateral::Store>,
    /// The attestation service's challenges: nonces issued and not yet used, with their expiry.
    pub(crate) challenges: Arc<std::sync::Mutex<attest::Challenges>>,
    /// Clean-room run records by id (rebuilt from the ledger); `None` while one is being
    /// recorded.
    pub(crate) runs: Arc<std::sync::Mutex<cleanroom::Runs>>,
}

/// What opening the data directory found, for the operator.
#[derive(Debug, Clone)]
pub struct Opened {
    /// Entries on the ledger.
    pub entries: u64,
    /// Bytes of an incomplete batch dropped (never acknowledged).
    pub dropped_bytes: u64,
}

/// How the service's own signing keys (ledger checkpoints, tokens) are kept at rest: plain
/// PKCS #8 files in the development profile, sealed under the master key otherwise.
pub(crate) type AtRest = Option<Arc<SealingKey>>;

/// Opens the data directory: the key store (under `master`, rebuilt from recovery shares; the
/// development profile reads its own file and takes none), the ledger (recovering from a
/// crash) and the governance state replayed from it; starts the writer thread.
pub fn open(config: &Config, master: Option<SealingKey>) -> Result<(AppState, Opened), ServeError> {
    let kms_dir = config.data.join("kms");
    let kms_error = |e: confide_kms::KmsError| ServeError::Config(format!("the key store: {e}"));
    let (kms, at_rest) = match (config.dev, master) {
        (true, None) => (
            confide_kms::KeyStore::open_dev(&kms_dir).map_err(kms_error)?,
            None,
        ),
        (false, Some(master)) => {
            let at_rest = Some(Arc::new(master.clone()));
            (
                confide_kms::KeyStore::open(&kms_dir, master).map_err(kms_error)?,
                at_rest,
            )
        }
        (true, Some(_)) => {
            return Err(ServeError::Config(
                "the development profile keeps its own master key; give no shares".into(),
            ));
        }
        (false, None) => {
            return Err(ServeError::Config(
                "the sealed profile opens only with the master key: unseal it with its \
                 recovery shares (confide kms unseal)"
                    .into(),
            ));
        }
    };
    std::fs::create_dir_all(&config.data).map_err(|source| ServeError::Io {
        what: format!("creating {}", config.data.display()),
        source,
    })?;
    let key = signing_key_file(&config.data.join("ledger.key"), &at_rest)?;
    let (ledger, recovery) = Ledger::open(&config.data.join("ledger"), key)?;
    // The leases granted and renewed are on the ledger: they survive restarts.
    let mut leases = confide_kms::Leases::default();
    let mut runs = std::collections::BTreeMap::new();
    let mut nonces = confide_gov::SpentNonces::new();
    let started = now();
    let gov = replay_with(&ledger, |seq, entry| {
        audit::check_event(entry)
            .and_then(|()| keys::replay_lease(&mut leases, entry))
            .and_then(|()| cleanroom::replay_run(&mut runs, entry))
            .and_then(|()| auth::replay_nonce(&mut nonces, entry, started))
            .map_err(|error| ServeError::Event { seq, error })
    })?;
    let opened = Opened {
        entries: ledger.len(),
        dropped_bytes: recovery.dropped_bytes,
    };
    let ledger_key = confide_model::RuntimeKeys::ledger_digest(ledger.public_key());
    let ledger = Arc::new(RwLock::new(ledger));
    let gov = Arc::new(RwLock::new(gov));
    let writer = writer::start(ledger.clone(), gov.clone());
    let mut tokens = token::KeySet::open(&config.data.join("token-keys"), at_rest)?;
    if config.rotate_token_key {
        tokens.rotate()?;
    }
    for kid in &config.retire_token_keys {
        tokens.retire(kid)?;
    }
    Ok((
        AppState {
            ledger,
            ledger_key,
            gov,
            writer,
            founder: config.founder.clone(),
            dev: config.dev,
            token_lifetime: config.token_lifetime,
            issuer: config.issuer.trim_end_matches('/').to_owned(),
            tokens: Arc::new(RwLock::new(tokens)),
            kms: Arc::new(kms),
            leases: Arc::new(std::sync::Mutex::new(leases)),
            nonces: Arc::new(std::sync::Mutex::new(nonces)),
            kbs: Arc::default(),
            challenges: Arc::default(),
            collateral: Arc::new(collateral::Store::open(&config.data.join("collateral"))?),
            runs: Arc::new(std::sync::Mutex::new(runs)),
        },
        opened,
    ))
}

/// The governance state that replaying the ledger's governance requests gives.
pub(crate) fn replay(ledger: &Ledger) -> Result<Governance, ServeError> {
    replay_with(ledger, |_, _| Ok(()))
}

/// [`replay`], handing every other entry (the audit events) to `audit`, with its position.
fn replay_with(
    ledger: &Ledger,
    mut audit: impl FnMut(u64, &[u8]) -> Result<(), ServeError>,
) -> Result<Governance, ServeError> {
    let mut gov = Governance::new().map_err(|error| ServeError::Replay { seq: 0, error })?;
    // Every request on the ledger was decided within the time limit when it was accepted;
    // replayed without it, a slower machine reaches the same state.
    gov.set_time_limit(None);
    for seq in 0..ledger.len() {
        let entry = ledger.entry(seq)?.unwrap_or_default();
        let governance = gov
            .replay_entry(seq, &entry)
            .map_err(|error| ServeError::Replay { seq, error })?;
        if !governance {
            audit(seq, &entry)?;
        }
    }
    gov.set_time_limit(Some(confide_policy::TIME_LIMIT));
    Ok(gov)
}

/// Requests larger than this are refused before they are read.
pub(crate) const BODY_LIMIT: usize = 1 << 20;

/// The HTTP routes over `state`: each service's own.
pub fn router(state: AppState) -> axum::Router {
    axum::Router::new()
        .merge(attest::routes())
        .merge(keys::routes())
        .merge(kbs::routes())
        .merge(ledger::routes())
        .merge(cleanroom::routes())
        .fallback(|| async { Problem::not_found("no such endpoint") })
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// Reads a JSON request body as `T` (the model's), whole: a key given twice, an unknown or
/// missing field, or a wrong type is refused, naming it.
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    confide_model::broker::read(body, "request").map_err(|e| Problem::bad_request(e.to_string()))
}

/// Serves `state` on `listener` until the process ends: over TLS with `tls`, or plain HTTP.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    tls: Option<&tls::TlsIdentity>,
) -> Result<(), ServeError> {
    serve_router(listener, router(state), tls).await
}

/// Serves `router` (the services', or a sealed start's) on `listener` until the process ends:
/// over TLS with `tls`, or plain HTTP.
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    tls: Option<&tls::TlsIdentity>,
) -> Result<(), ServeError> {
    let router = router.layer(axum::middleware::from_fn(read_whole_body));
    if let Some(tls) = tls {
        return tls::serve(listener, router, tls.config.clone()).await;
    }
    axum::serve(listener, router)
        .await
        .map_err(|source| ServeError::Io {
            what: "serving HTTP".into(),
            source,
        })
}

/// Reads every request's whole body (up to the largest any route takes) before routing it.
///
/// A handler that answers without reading its body, such as a challenge or an early refusal,
/// leaves bytes that hyper drains only if they have already arrived; otherwise hyper closes the
/// connection after the answer. The client has just been told it may reuse that connection, so
/// its next request fails with the peer gone. Reading the body first keeps every answered
/// connection reusable.
async fn read_whole_body(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let (parts, body) = request.into_parts();
    match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(bytes) => {
            next.run(axum::extract::Request::from_parts(parts, bytes.into()))
                .await
        }
        Err(error) => {
            let too_large = std::error::Error::source(&error)
                .is_some_and(|e| e.is::<http_body_util::LengthLimitError>());
            if too_large {
                problem::Problem::new(
                    axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                    "body-too-large",
                    "The request body is larger than any route takes",
                    format!("the limit is {} bytes", BODY_LIMIT),
                )
            } else {
                problem::Problem::bad_request(format!("reading the request body: {error}"))
            }
            .into_response()
        }
    }
}

/// Binds `addr`.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, ServeError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Io {
            what: format!("listening on {addr}"),
            source,
        })
}

/// A signing key kept in `path` (0600), created on first start: PKCS #8, sealed under the
/// master key unless `at_rest` is the development profile's plain files.
pub(crate) fn signing_key_file(path: &Path, at_rest: &AtRest) -> Result<SigningKey, ServeError> {
    const AAD: &[u8] = b"confide/server-signing-key/v1";
    let io = |what: String| move |source| ServeError::Io { what, source };
    match std::fs::read(path) {
        Ok(stored) => {
            let der = match at_rest {
                None => zeroize::Zeroizing::new(stored),
                Some(master) => master.open(&stored, AAD).map_err(|_| {
                    ServeError::Config(format!(
                        "{} does not open under the master key (a development profile's file, \
                         or damaged)",
                        path.display()
                    ))
                })?,
            };
            SigningKey::from_pkcs8(&der).map_err(|_| {
                ServeError::Config(format!("{} is not a P-256 PKCS#8 key", path.display()))
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SigningKey::generate()
                .map_err(|_| ServeError::Config("the random generator failed".into()))?;
            let der = key
                .to_pkcs8()
                .map_err(|_| ServeError::Config("encoding the key failed".into()))?;
            let stored = match at_rest {
                None => der.to_vec(),
                Some(master) => master
                    .seal(&der, AAD)
                    .map_err(|_| ServeError::Config("sealing the key failed".into()))?,
            };
            confide_crypto::files::write_new(path, &stored, 0o600)
                .map_err(io(format!("creating {}", path.display())))?;
            Ok(key)
        }
        Err(e) => Err(io(format!("reading {}", path.display()))(e)),
    }
}

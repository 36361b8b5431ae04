//! HTTPS for `confide serve`, with rustls over aws-lc-rs: a certificate the operator gives, or
//! one made here on first start. A made certificate is issued by a CA of its own (in
//! `DATA/tls/ca.pem`) whose private key is never stored: no other certificate can ever chain to
//! it, so a client that pins `ca.pem` (or its fingerprint, printed at every start) trusts this
//! server's certificate and nothing else.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::ServeError;

/// The server's TLS configuration, and what clients pin.
#[derive(Debug, Clone)]
pub struct TlsIdentity {
    /// The rustls configuration the server accepts connections with.
    pub config: Arc<rustls::ServerConfig>,
    /// The certificate clients should trust: the CA of a made certificate, or the leaf given.
    pub trust: PathBuf,
    /// SHA-256 of that certificate's DER, hex.
    pub fingerprint: String,
}

fn config_error(what: impl std::fmt::Display) -> ServeError {
    ServeError::Config(format!("TLS: {what}"))
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> ServeError {
    move |source| ServeError::Io { what, source }
}

/// The TLS identity from a certificate chain and its private key, both PEM (as an operator
/// gives them, from a CA of their own).
pub fn given(cert: &Path, key: &Path) -> Result<TlsIdentity, ServeError> {
    let chain = read_chain(cert)?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| config_error(format!("{} holds no private key: {e}", key.display())))?;
    let fingerprint = hex::encode(confide_crypto::digest::sha256(&chain[0]));
    Ok(TlsIdentity {
        config: server_config(chain, key)?,
        trust: cert.to_owned(),
        fingerprint,
    })
}

/// The TLS identity kept in `dir`, made on first start for `names` (DNS names and IP
/// addresses): `ca.pem` (what clients pin), `server.pem` (the certificate and the CA) and
/// `server.key` (0600).
pub fn made(dir: &Path, names: &[String]) -> Result<TlsIdentity, ServeError> {
    let (ca, cert, key) = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    if !cert.exists() {
        make(dir, names)?;
    }
    let chain = read_chain(&cert)?;
    let key = PrivateKeyDer::from_pem_file(&key)
        .map_err(|e| config_error(format!("{} holds no private key: {e}", key.display())))?;
    let trusted = read_chain(&ca)?;
    let fingerprint = hex::encode(confide_crypto::digest::sha256(&trusted[0]));
    Ok(TlsIdentity {
        config: server_config(chain, key)?,
        trust: ca,
        fingerprint,
    })
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, ServeError> {
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| config_error(format!("reading {}: {e}", path.display())))?;
    if chain.is_empty() {
        return Err(config_error(format!(
            "{} holds no certificate",
            path.display()
        )));
    }
    Ok(chain)
}

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, ServeError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(config_error)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Makes a CA, a certificate for `names` issued by it, and forgets the CA's key. Every file is
/// written whole (a temporary file, synced, then renamed), the certificate last, so that a
/// crash leaves either nothing or everything.
fn make(dir: &Path, names: &[String]) -> Result<(), ServeError> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    let ca_key = KeyPair::generate().map_err(config_error)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(config_error)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name
        .push(DnType::CommonName, "confide server CA (key discarded)");
    let ca = ca.self_signed(&ca_key).map_err(config_error)?;
    let key = KeyPair::generate().map_err(config_error)?;
    let mut leaf = CertificateParams::new(names.to_vec()).map_err(config_error)?;
    leaf.distinguished_name
        .push(DnType::CommonName, "confide server");
    let leaf = leaf.signed_by(&key, &ca, &ca_key).map_err(config_error)?;
    drop(ca_key);
    write_whole(
        &dir.join("server.key"),
        key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_whole(&dir.join("ca.pem"), ca.pem().as_bytes(), 0o644)?;
    write_whole(
        &dir.join("server.pem"),
        format!("{}{}", leaf.pem(), ca.pem()).as_bytes(),
        0o644,
    )
}

fn write_whole(path: &Path, bytes: &[u8], mode: u32) -> Result<(), ServeError> {
    confide_crypto::files::replace(path, bytes, mode)
        .map_err(io(format!("writing {}", path.display())))
}

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves `router` over TLS on `listener` until the process ends. A connection whose handshake
/// fails is dropped; the others are served as `axum::serve` serves plain HTTP.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    config: Arc<rustls::ServerConfig>,
) -> Result<(), ServeError> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(_) => {
                // Out of descriptors, or a connection reset before it was accepted: wait a
                // moment rather than spin.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let handshake = acceptor.accept(tcp);
            let Ok(Ok(stream)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await else {
                return;
            };
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
        });
    }
}

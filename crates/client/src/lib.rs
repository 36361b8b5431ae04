//! confide's HTTP client: one [`Client`] for every endpoint of `confide serve`, used by the
//! command line and by the workload; [`kbs`], the Trustee KBS protocol as a guest speaks it;
//! and [`ledger`], the consortium's state as a client verifies it for itself instead of
//! taking a server's word.
//!
//! An answer that is not a success becomes a [`ClientError::Refused`] carrying the problem
//! document's stable type and detail (RFC 7807), so callers can tell one refusal from another.
//!
//! HTTPS servers are verified (rustls over aws-lc-rs) against the certificates the member pins
//! ([`Client::with_ca`], or [`trust`] once for the whole process, as the command line's `--ca`
//! does): a server's own CA (`DATA/tls/ca.pem`) or the deployment's. Without any, against the
//! Mozilla roots.

#![forbid(unsafe_code)]

pub mod kbs;
pub mod ledger;

use confide_model::{
    AttestRequest, Attested, Challenge, ReleaseRequest, Released, RenewRequest, Renewed, RunRecord,
    RunRecorded, SignedRunReport,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Why a call to the server failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server could not be reached, or the connection failed mid-call.
    #[error("reaching {server}: {source}")]
    Unreachable {
        /// The server's base URL.
        server: String,
        /// What the transport said.
        #[source]
        source: ureq::Error,
    },
    /// The server answered with an error (a problem document).
    #[error("the server refused ({status}): {detail}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The problem's stable type (the last segment of its URI), when it gave one.
        problem: Option<String>,
        /// The problem's detail.
        detail: String,
    },
    /// The certificates to trust could not be read.
    #[error("TLS: {0}")]
    Tls(String),
    /// A successful answer that is not what the endpoint promises.
    #[error("the server's answer to {path} is malformed: {what}")]
    Malformed {
        /// The endpoint.
        path: String,
        /// What is wrong with it.
        what: String,
    },
}

/// Certificates trusted for HTTPS by every [`Client::new`] of this process.
static TRUSTED: std::sync::OnceLock<Vec<ureq::tls::Certificate<'static>>> =
    std::sync::OnceLock::new();

/// Trusts the certificates in `ca_pem` (PEM) for HTTPS, instead of the Mozilla roots, in every
/// [`Client::new`] made afterwards by this process. Once per process.
pub fn trust(ca_pem: &[u8]) -> Result<(), ClientError> {
    let certs = certificates(ca_pem)?;
    TRUSTED
        .set(certs)
        .map_err(|_| ClientError::Tls("the trusted certificates are set already".into()))
}

fn certificates(ca_pem: &[u8]) -> Result<Vec<ureq::tls::Certificate<'static>>, ClientError> {
    let certs: Vec<_> = ureq::tls::parse_pem(ca_pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
            Ok(_) => None,
            Err(e) => Some(Err(ClientError::Tls(format!("reading the CA: {e}")))),
        })
        .collect::<Result<_, _>>()?;
    if certs.is_empty() {
        return Err(ClientError::Tls(
            "the CA file holds no PEM certificate".into(),
        ));
    }
    Ok(certs)
}

/// A bare HTTP agent with the same TLS trust as [`Client::new`] (for protocols that need their
/// own handling of answers, such as the KBS protocol's cookies).
pub fn agent() -> ureq::Agent {
    agent_trusting(TRUSTED.get().cloned())
}

fn agent_trusting(trusted: Option<Vec<ureq::tls::Certificate<'static>>>) -> ureq::Agent {
    let roots = match trusted {
        Some(certs) => ureq::tls::RootCerts::Specific(std::sync::Arc::new(certs)),
        None => ureq::tls::RootCerts::WebPki,
    };
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .root_certs(roots)
        .build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls)
        .build()
        .into()
}

/// Refuses a plain-HTTP server that is not on this machine: signed requests, tokens and the
/// ledger would cross the network readable and changeable. `allow_plain` is the explicit
/// opt-out for a development server elsewhere.
pub fn check_transport(server: &str, allow_plain: bool) -> Result<(), ClientError> {
    let Some(rest) = server.strip_prefix("http://") else {
        return Ok(());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback || allow_plain {
        Ok(())
    } else {
        Err(ClientError::Tls(format!(
            "{server} is plain HTTP to another machine: use https:// (confide serve speaks it \
             off loopback), or --insecure-http for a development server"
        )))
    }
}

/// A client of one server.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
}

impl Client {
    /// A client of the server at `server` (`https://host:port`, or `http://` on loopback and
    /// in development), trusting what [`trust`] set for this process.
    pub fn new(server: &str) -> Self {
        Self {
            base: server.trim_end_matches('/').to_owned(),
            agent: agent(),
        }
    }

    /// A client of the HTTPS server at `server` that trusts only the certificates in `ca_pem`.
    pub fn with_ca(server: &str, ca_pem: &[u8]) -> Result<Self, ClientError> {
        Ok(Self {
            base: server.trim_end_matches('/').to_owned(),
            agent: agent_trusting(Some(certificates(ca_pem)?)),
        })
    }

    /// The server's base URL.
    pub fn server(&self) -> &str {
        &self.base
    }

    fn unreachable(&self, source: ureq::Error) -> ClientError {
        ClientError::Unreachable {
            server: self.base.clone(),
            source,
        }
    }

    fn answer(
        &self,
        path: &str,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value, ClientError> {
        let mut response = response.map_err(|e| self.unreachable(e))?;
        let status = response.status();
        let body: Result<Value, _> = response.body_mut().read_json();
        if status.is_success() {
            return body.map_err(|e| ClientError::Malformed {
                path: path.to_owned(),
                what: format!("not JSON ({e})"),
            });
        }
        Err(refusal(status.as_u16(), body.ok()))
    }

    /// `GET path`, answered with JSON.
    pub fn get(&self, path: &str) -> Result<Value, ClientError> {
        let response = self.agent.get(format!("{}{path}", self.base)).call();
        self.answer(path, response)
    }

    /// `GET path`, answered with bytes.
    pub fn get_bytes(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        let mut response = self
            .agent
            .get(format!("{}{path}", self.base))
            .call()
            .map_err(|e| self.unreachable(e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(refusal(
                status.as_u16(),
                response.body_mut().read_json().ok(),
            ));
        }
        response
            .body_mut()
            .read_to_vec()
            .map_err(|e| self.unreachable(e))
    }

    /// `POST path` with a JSON body.
    pub fn post_json(&self, path: &str, body: &str) -> Result<Value, ClientError> {
        let response = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .send(body);
        self.answer(path, response)
    }

    /// `POST path` with a signed request (COSE_Sign1).
    pub fn post(&self, path: &str, body: &[u8]) -> Result<Value, ClientError> {
        let response = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/cose")
            .send(body);
        self.answer(path, response)
    }

    /// `GET path`, answered with the model's `T`, read whole.
    pub fn get_as<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        typed(path, self.get(path)?)
    }

    /// `POST path` with the model's `body` as JSON, answered with the model's `T`, read whole.
    pub fn post_json_as<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, ClientError> {
        let body = serde_json::to_string(body).map_err(|e| ClientError::Malformed {
            path: path.to_owned(),
            what: format!("the request does not encode ({e})"),
        })?;
        typed(path, self.post_json(path, &body)?)
    }

    /// `POST path` with a member's signed request (COSE_Sign1), answered with the model's `T`.
    pub fn post_as<T: DeserializeOwned>(&self, path: &str, cose: &[u8]) -> Result<T, ClientError> {
        typed(path, self.post(path, cose)?)
    }

    /// A challenge for the next evidence.
    pub fn challenge(&self) -> Result<Challenge, ClientError> {
        self.post_json_as("/attest/nonce", &serde_json::json!({}))
    }

    /// Evidence of TEE `kind` appraised; its token.
    pub fn attest(&self, kind: &str, request: &AttestRequest) -> Result<Attested, ClientError> {
        self.post_json_as(&format!("/attest/{kind}"), request)
    }

    /// Key `name` released under a token (for a contract).
    pub fn release(&self, name: &str, request: &ReleaseRequest) -> Result<Released, ClientError> {
        self.post_json_as(&format!("/keys/{name}/release"), request)
    }

    /// A lease of key `name` renewed under a fresh token.
    pub fn renew(&self, name: &str, request: &RenewRequest) -> Result<Renewed, ClientError> {
        self.post_json_as(&format!("/keys/{name}/renew"), request)
    }

    /// A workload's signed run report recorded.
    pub fn record_run(&self, report: &SignedRunReport) -> Result<RunRecorded, ClientError> {
        self.post_json_as("/cleanroom/runs", report)
    }

    /// Run `id`'s record.
    pub fn run(&self, id: &confide_model::RunId) -> Result<RunRecord, ClientError> {
        self.get_as(&format!("/cleanroom/runs/{id}"))
    }
}

/// An answer read as the model's `T`, whole.
fn typed<T: DeserializeOwned>(path: &str, answer: Value) -> Result<T, ClientError> {
    serde_json::from_value(answer).map_err(|e| ClientError::Malformed {
        path: path.to_owned(),
        what: e.to_string(),
    })
}

/// The error for a refused call, from its problem document (if it sent one).
fn refusal(status: u16, problem: Option<Value>) -> ClientError {
    let problem = problem.unwrap_or(Value::Null);
    ClientError::Refused {
        status,
        problem: problem
            .get("type")
            .and_then(Value::as_str)
            .and_then(|t| t.rsplit('/').next())
            .map(str::to_owned),
        detail: problem
            .get("detail")
            .and_then(Value::as_str)
            .unwrap_or("no detail")
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_this_machine() {
        for ok in [
            "https://ledger.example:7780",
            "http://127.0.0.1:7780",
            "http://localhost:7780/",
            "http://[::1]:7780",
            "http://127.0.0.2",
        ] {
            assert!(check_transport(ok, false).is_ok(), "{ok}");
        }
        for refused in [
            "http://10.0.0.5:7780",
            "http://ledger.example",
            "http://127.0.0.1.evil.example:80",
            "http://[2001:db8::1]:7780",
            "http://localhost.evil.example",
        ] {
            assert!(check_transport(refused, false).is_err(), "{refused}");
            assert!(check_transport(refused, true).is_ok(), "{refused}");
        }
    }
}

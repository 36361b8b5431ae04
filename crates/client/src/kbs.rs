//! The Trustee KBS protocol (0.4.0) as a guest speaks it to `confide serve` (or to Trustee's
//! KBS): `auth` opens a session (a cookie) and answers with a challenge; `attest` presents
//! evidence whose report data binds the runtime data (the challenge's nonce and the key the
//! resources are encrypted to); each `resource` then comes back as a JWE to that key.
//!
//! The bodies are the model's ([`confide_model::kbs`]); refusals are the same
//! [`ClientError::Refused`] as every other endpoint's, with the problem's stable type.

use base64::Engine as _;
use confide_crypto::jwe::DecryptionKey;
use confide_model::kbs::{KbsChallenge, KbsRequest, PROTOCOL_VERSION};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::{ClientError, refusal};

/// An authenticated session with a KBS: the cookie `auth` set and the nonce it asked for.
#[derive(Debug)]
pub struct KbsSession<'a> {
    agent: &'a ureq::Agent,
    base: String,
    cookie: String,
    nonce: String,
}

impl<'a> KbsSession<'a> {
    /// `POST /kbs/v0/auth` for a guest of TEE kind `tee` (`sample`, `az-snp-vtpm`, …). The
    /// agent's TLS trust is the caller's ([`crate::agent`]), and so is refusing plain HTTP off
    /// this machine ([`crate::check_transport`]).
    pub fn auth(agent: &'a ureq::Agent, server: &str, tee: &str) -> Result<Self, ClientError> {
        let base = server.trim_end_matches('/').to_owned();
        let request = KbsRequest {
            version: PROTOCOL_VERSION.to_owned(),
            tee: tee.to_owned(),
            extra_params: json!({"supported-hash-algorithms": ["sha384"]}),
        };
        let path = "/kbs/v0/auth";
        let response = agent
            .post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .send_json(&request);
        let (cookie, challenge) = answer(&base, path, response)?;
        let cookie = cookie.ok_or_else(|| ClientError::Malformed {
            path: path.to_owned(),
            what: "no session cookie was set".into(),
        })?;
        let challenge: KbsChallenge =
            serde_json::from_value(challenge).map_err(|e| ClientError::Malformed {
                path: path.to_owned(),
                what: format!("not a KBS challenge ({e})"),
            })?;
        Ok(Self {
            agent,
            base,
            cookie,
            nonce: challenge.nonce,
        })
    }

    /// The challenge's nonce, which the runtime data must carry.
    pub fn nonce(&self) -> &str {
        &self.nonce
    }

    /// `POST /kbs/v0/attest` with `attestation` (a KBS `Attestation` body).
    pub fn attest(&self, attestation: &Value) -> Result<(), ClientError> {
        let path = "/kbs/v0/attest";
        let response = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .header("cookie", &self.cookie)
            .send_json(attestation);
        answer(&self.base, path, response).map(|_| ())
    }

    /// `GET /kbs/v0/resource/{path}`: the resource's JWE.
    pub fn resource(&self, resource: &str) -> Result<Value, ClientError> {
        let path = format!("/kbs/v0/resource/{resource}");
        let response = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .call();
        answer(&self.base, &path, response).map(|(_, jwe)| jwe)
    }
}

/// One complete round as Trustee's `kbs_protocol` client makes it with its `sample` attester:
/// auth, attest with `sample` evidence binding a fresh P-256 key, fetch `resource` and open
/// its JWE. Sample evidence proves nothing: only a development server whose resource policy
/// allows simulated TEEs answers it.
pub fn sample_round(
    agent: &ureq::Agent,
    server: &str,
    resource: &str,
) -> Result<Zeroizing<Vec<u8>>, ClientError> {
    let session = KbsSession::auth(agent, server, "sample")?;
    let key = DecryptionKey::generate_p256().map_err(crypto)?;
    let runtime_data =
        json!({"nonce": session.nonce(), "tee-pubkey": key.public_jwk().map_err(crypto)?});
    let digest = confide_model::kbs::runtime_data_digest(&runtime_data, &json!(""));
    session.attest(&json!({
        "init-data": null,
        "runtime-data": runtime_data,
        "tee-evidence": {
            "primary_evidence": {
                "report_data": base64::engine::general_purpose::STANDARD.encode(digest),
                "svn": "1",
            },
            "additional_evidence": "",
        },
    }))?;
    let jwe = session.resource(resource)?;
    key.decrypt(&jwe).map_err(|e| ClientError::Malformed {
        path: format!("/kbs/v0/resource/{resource}"),
        what: format!("the JWE does not open under this session's key ({e})"),
    })
}

fn crypto(e: confide_crypto::CryptoError) -> ClientError {
    ClientError::Malformed {
        path: "/kbs/v0".into(),
        what: format!("making this session's key: {e}"),
    }
}

/// The session cookie set (its `name=value`) and the JSON body of a success; a refusal's
/// problem document otherwise.
fn answer(
    base: &str,
    path: &str,
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<(Option<String>, Value), ClientError> {
    let mut response = response.map_err(|source| ClientError::Unreachable {
        server: base.to_owned(),
        source,
    })?;
    let status = response.status();
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    let body: Result<Value, _> = response.body_mut().read_json();
    if !status.is_success() {
        return Err(refusal(status.as_u16(), body.ok()));
    }
    let body = body.map_err(|e| ClientError::Malformed {
        path: path.to_owned(),
        what: format!("not JSON ({e})"),
    })?;
    Ok((cookie, body))
}

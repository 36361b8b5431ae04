//! The Trustee Key Broker Service protocol, version 0.4.0, so that Confidential Containers
//! guests (`kbs_protocol`, `kbs-client`) fetch secrets from confide unmodified. Field names,
//! header names, status codes and encodings follow the protocol document
//! (`kbs/docs/kbs_attestation_protocol.md` in confidential-containers/trustee) and a real
//! exchange captured between Trustee and its client (testdata/kbs).
//!
//! 1. `POST /kbs/v0/auth` with `{"version","tee","extra-params"}`: a session
//!    (`Set-Cookie: kbs-session-id=<32 hex>; Expires=…`, five minutes) and a challenge
//!    `{"nonce": base64(32 random bytes), "extra-params": ""}`.
//! 2. `POST /kbs/v0/attest` with the cookie and
//!    `{"init-data", "runtime-data": {"nonce","tee-pubkey"}, "tee-evidence": {"primary_evidence",
//!    "additional_evidence"}}`. The nonce must be the session's (each challenge is answered
//!    once); the evidence's report data must be SHA-384 of the RFC 8785 canonical JSON of the
//!    runtime data with `"additional-evidence"` added (what `kbs_protocol` hashes when the
//!    challenge selects no algorithm). The evidence is verified and appraised like
//!    `POST /attest/{kind}`; the answer is `{"token": JWT}` (this service's EAR token, carrying
//!    the `tee-pubkey`).
//! 3. `GET /kbs/v0/resource/{repo}/{type}/{tag}` with the cookie (or `Authorization: Bearer`
//!    with a token from step 2): if the resource's policy allows the token, the resource as a
//!    flattened JWE to the `tee-pubkey` (`ECDH-ES+A256KW` for P-256, `RSA-OAEP-256` for RSA;
//!    `A256GCM`). No session: 401; policy says no: 403; no such resource: 404 (as the protocol
//!    document says). Every release and denial is an audit event on the ledger first.
//!
//! Members store resources with `POST /kbs/v0/resource/{repo}/{type}/{tag}`, a request signed
//! like the key broker's (`kbs.put`); only a resource's owner replaces it.
//!
//! Evidence kinds: `sample` (Trustee's test evidence, only where the appraisal policy names
//! `insecure_allow_simulated_tee`), `az-snp-vtpm` and `az-tdx-vtpm` (Trustee's JSON). Other
//! kinds are refused with a message pointing at `POST /attest/{kind}`.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use confide_attest::TeeKind;
use confide_kms::{KmsError, ResourcePath};
use confide_model::ResourceAnswer;
use confide_model::kbs::{KbsAttestation, KbsChallenge, KbsRequest};
use serde_json::{Value, json};

use crate::AppState;
use crate::audit::{audit, audit_request, settle};
use crate::now;
use crate::problem::Problem;

/// The KBS protocol's routes.
pub(crate) fn routes() -> axum::Router<AppState> {
    use axum::routing::post;
    axum::Router::new()
        .route("/kbs/v0/auth", post(auth))
        .route("/kbs/v0/attest", post(attest))
        .route(
            "/kbs/v0/resource/{repo}/{type}/{tag}",
            axum::routing::get(resource).post(put),
        )
}

/// The protocol version spoken (stated once, in the model the client shares).
use confide_model::kbs::PROTOCOL_VERSION;
/// How long a session (its challenge, then its token) lasts.
pub const SESSION_SECONDS: i64 = 300;
const COOKIE: &str = "kbs-session-id";
const MAX_SESSIONS: usize = 100_000;

/// An attested session's token and the key to encrypt to.
#[derive(Debug, Clone)]
struct Attested {
    /// The token's claims, for the resource policy.
    claims: Value,
    /// What this service reads of them, read whole.
    read: confide_model::TokenClaims,
    tee_pubkey: Value,
    token_digest: String,
}

/// One client's session.
#[derive(Debug)]
pub(crate) struct Session {
    tee: TeeKind,
    nonce: String,
    expires: i64,
    attested: Option<Attested>,
}

/// Sessions by id.
pub(crate) type Sessions = HashMap<String, Session>;

fn unavailable<E: std::fmt::Display>(e: E) -> Problem {
    Problem::internal(e.to_string())
}

fn invalid(detail: impl Into<String>) -> Problem {
    Problem::kbs(StatusCode::BAD_REQUEST, "InvalidRequest", detail)
}

fn no_token(detail: impl Into<String>) -> Problem {
    Problem::kbs(StatusCode::UNAUTHORIZED, "TokenNotFound", detail)
}

use confide_crypto::jcs::canonical_json;

fn tee_kind(name: &str) -> Result<TeeKind, Problem> {
    match name {
        "sample" => Ok(TeeKind::Sample),
        "az-snp-vtpm" | "azsnpvtpm" => Ok(TeeKind::AzureSnpVtpm),
        "az-tdx-vtpm" | "aztdxvtpm" => Ok(TeeKind::AzureTdxVtpm),
        other => Err(invalid(format!(
            "tee {other:?}: the KBS endpoints take sample, az-snp-vtpm and az-tdx-vtpm evidence; \
             other TEEs attest with POST /attest/{{kind}} and release keys with \
             POST /keys/{{name}}/release"
        ))),
    }
}

fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

fn set_cookie(id: &str, expires: i64) -> String {
    let at =
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(expires).unwrap_or(0));
    format!("{COOKIE}={id}; Expires={}", httpdate::fmt_http_date(at))
}

async fn auth(State(s): State<AppState>, body: Bytes) -> Result<Response, Problem> {
    let req: KbsRequest = serde_json::from_slice(&body)
        .map_err(|e| invalid(format!("the request is not a KBS Request: {e}")))?;
    let mut parts = req.version.split('.');
    if (parts.next(), parts.next()) != (Some("0"), Some("4")) {
        return Err(Problem::kbs(
            StatusCode::BAD_REQUEST,
            "ProtocolVersion",
            format!(
                "protocol version {:?}: this KBS speaks {PROTOCOL_VERSION}",
                req.version
            ),
        ));
    }
    let tee = tee_kind(&req.tee)?;
    let id = hex::encode(confide_crypto::random::array::<16>().map_err(unavailable)?);
    let nonce = base64::engine::general_purpose::STANDARD
        .encode(confide_crypto::random::array::<32>().map_err(unavailable)?);
    let now = now();
    let expires = now + SESSION_SECONDS;
    {
        let mut sessions = s.kbs.lock().map_err(unavailable)?;
        if sessions.len() >= MAX_SESSIONS {
            sessions.retain(|_, v| v.expires > now);
        }
        if sessions.len() >= MAX_SESSIONS {
            return Err(Problem::kbs(
                StatusCode::SERVICE_UNAVAILABLE,
                "TooManySessions",
                "too many sessions are open; try again shortly",
            ));
        }
        sessions.insert(
            id.clone(),
            Session {
                tee,
                nonce: nonce.clone(),
                expires,
                attested: None,
            },
        );
    }
    Ok((
        [(header::SET_COOKIE, set_cookie(&id, expires))],
        Json(KbsChallenge {
            nonce,
            extra_params: Value::String(String::new()),
        }),
    )
        .into_response())
}

async fn attest(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let id = session_id(&headers).ok_or_else(|| no_token("no kbs-session-id cookie"))?;
    let (tee, nonce, expires) = {
        let sessions = s.kbs.lock().map_err(unavailable)?;
        let session = sessions
            .get(&id)
            .filter(|v| v.expires > now())
            .ok_or_else(|| no_token("no such session, or it expired; POST /kbs/v0/auth"))?;
        if session.attested.is_some() {
            return Err(invalid(
                "this session's challenge was answered already; POST /kbs/v0/auth for a new one",
            ));
        }
        (session.tee, session.nonce.clone(), session.expires)
    };
    let req = KbsAttestation::from_json(&body)
        .map_err(|e| invalid(format!("the request is not a KBS Attestation: {e}")))?;
    if !req.init_data.is_null() {
        return Err(invalid(
            "init-data is not supported yet: confide does not bind it to the evidence",
        ));
    }
    if req.nonce() != Some(nonce.as_str()) {
        return Err(Problem::kbs(
            StatusCode::UNAUTHORIZED,
            "AttestationFailed",
            "the runtime data's nonce is not this session's challenge",
        ));
    }
    let tee_pubkey = req
        .tee_pubkey()
        .cloned()
        .ok_or_else(|| invalid("the runtime data has no tee-pubkey"))?;
    confide_crypto::jwe::check_recipient(&tee_pubkey)
        .map_err(|e| invalid(format!("the tee-pubkey: {e}")))?;
    let digest = req.runtime_data_digest();
    let evidence = serde_json::to_vec(&req.tee_evidence.primary_evidence).map_err(unavailable)?;
    // Fresh: the runtime data carries this session's challenge, checked above.
    let appraised =
        crate::blocking(|| crate::attest::appraise(&s, tee, &evidence, &[], Some(&digest), true))
            .map_err(|p| {
            if p.status == StatusCode::SERVICE_UNAVAILABLE {
                p
            } else {
                Problem::kbs(StatusCode::UNAUTHORIZED, "AttestationFailed", p.detail)
            }
        })?;
    let hashed = req.hashed_claims();
    let (token, _, claims) = crate::attest::issue(
        &s,
        std::slice::from_ref(&appraised),
        json!({"confide.tee_pubkey": tee_pubkey, "confide.runtime_data_claims": hashed}),
    )?;
    {
        let mut sessions = s.kbs.lock().map_err(unavailable)?;
        let session = sessions
            .get_mut(&id)
            .ok_or_else(|| no_token("the session ended"))?;
        if session.attested.is_some() {
            return Err(invalid("this session's challenge was answered already"));
        }
        let read = confide_model::TokenClaims::from_value(&claims)
            .map_err(|e| Problem::internal(format!("the token just issued: {e}")))?;
        session.attested = Some(Attested {
            claims,
            read,
            tee_pubkey,
            token_digest: hex::encode(confide_crypto::digest::sha256(token.as_bytes())),
        });
    }
    Ok((
        [(header::SET_COOKIE, set_cookie(&id, expires))],
        Json(json!({"token": token})),
    )
        .into_response())
}

/// The attested session or bearer token of a resource request.
fn attested(s: &AppState, headers: &HeaderMap) -> Result<Attested, Problem> {
    let now = now();
    if let Some(id) = session_id(headers) {
        let sessions = s.kbs.lock().map_err(unavailable)?;
        if let Some(a) = sessions
            .get(&id)
            .filter(|v| v.expires > now)
            .and_then(|v| v.attested.clone())
            .filter(|a| a.read.exp > now)
        {
            return Ok(a);
        }
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = bearer else {
        return Err(no_token("Attestation Token not found"));
    };
    let jwks = s.tokens.read().map_err(unavailable)?.jwks();
    let claims = crate::token::verify_jwt(token.trim(), &jwks)
        .map_err(|e| no_token(format!("the bearer token: {e}")))?;
    let read = confide_model::TokenClaims::from_value(&claims)
        .map_err(|e| no_token(format!("the bearer token's claims: {e}")))?;
    if read.iss != s.issuer {
        return Err(no_token("the bearer token is from another issuer"));
    }
    if read.exp <= now {
        return Err(no_token("the bearer token has expired"));
    }
    let tee_pubkey = read
        .tee_pubkey
        .clone()
        .ok_or_else(|| no_token("the bearer token carries no tee-pubkey"))?;
    Ok(Attested {
        claims,
        read,
        tee_pubkey,
        token_digest: hex::encode(confide_crypto::digest::sha256(token.trim().as_bytes())),
    })
}

async fn resource(
    State(s): State<AppState>,
    Path((repo, kind, tag)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, Problem> {
    let attested = attested(&s, &headers)?;
    let path = ResourcePath::new(&repo, &kind, &tag).map_err(|e| invalid(e.to_string()))?;
    // A removed member's resource goes to no one: it could no longer revoke it.
    if let Ok(info) = s.kms.resource_info(&path)
        && crate::auth::held_by_a_member(&s, &info.owner, &format!("resource {path}")).is_err()
    {
        audit(
            &s,
            &json!({"type": "kbs.deny", "resource": path.to_string(), "token": attested.token_digest, "rule": "owner-not-a-member", "at": now()}),
        )
        .await?;
        return Err(Problem::kbs(
            StatusCode::FORBIDDEN,
            "PolicyDeny",
            format!("the owner of {path} is no longer a member: it goes to no one"),
        ));
    }
    let content = match crate::blocking(|| s.kms.resource(&path, &attested.claims)) {
        Ok(c) => c,
        Err(KmsError::NotFound(_)) => {
            return Err(Problem::kbs(
                StatusCode::NOT_FOUND,
                "ResourceNotFound",
                format!("no resource {path}"),
            ));
        }
        Err(KmsError::Denied) => {
            audit(
                &s,
                &json!({"type": "kbs.deny", "resource": path.to_string(), "token": attested.token_digest, "at": now()}),
            )
            .await?;
            return Err(Problem::kbs(
                StatusCode::FORBIDDEN,
                "PolicyDeny",
                format!("the resource policy of {path} denies this token"),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let jwe = confide_crypto::jwe::encrypt(&attested.tee_pubkey, &content).map_err(unavailable)?;
    let key_digest = hex::encode(confide_crypto::digest::sha256(
        canonical_json(&attested.tee_pubkey).as_bytes(),
    ));
    audit(
        &s,
        &json!({
            "type": "kbs.release", "resource": path.to_string(), "token": attested.token_digest,
            "tee_pubkey": key_digest, "simulated": attested.read.simulated, "at": now(),
        }),
    )
    .await?;
    Ok(Json(jwe))
}

async fn put(
    State(s): State<AppState>,
    Path((repo, kind, tag)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<(StatusCode, Json<ResourceAnswer>), Problem> {
    let request = crate::auth::member_request(&s, &body)?;
    let outcome: Result<_, Problem> = async {
        let confide_model::BrokerBody::KbsPut {
            path: named,
            content,
            policy,
        } = &request.body
        else {
            return Err(Problem::bad_request(
                "this endpoint takes requests of type \"kbs.put\"",
            ));
        };
        let path = ResourcePath::new(&repo, &kind, &tag)?;
        if *named != path.to_string() {
            return Err(Problem::bad_request(
                "the request names another resource than the path",
            ));
        }
        let content = zeroize::Zeroizing::new(
            confide_model::broker::base64_field(content, "content")
                .map_err(|e| Problem::bad_request(e.to_string()))?,
        );
        let info = s
            .kms
            .put_resource(&path, &request.signer, &content, policy.as_deref(), now())?;
        let event = json!({"type": "kbs.put", "resource": info.path, "owner": request.signer, "size": info.size, "at": now()});
        let audit_seq = audit_request(&s, &request, event).await?;
        Ok((
            StatusCode::CREATED,
            Json(ResourceAnswer {
                resource: info,
                audit_seq,
            }),
        ))
    }
    .await;
    settle(&s, &request, outcome).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use confide_model::kbs::runtime_data_digest;

    /// The Attestation a Trustee client sent to a Trustee server in
    /// testdata/kbs/trustee-kbs-exchange.txt (message [5]), which the server accepted.
    fn captured_attestation() -> Value {
        let capture = include_str!("../../../testdata/kbs/trustee-kbs-exchange.txt");
        let line = capture
            .lines()
            .find(|l| l.starts_with(r#"{"init-data""#))
            .unwrap();
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn the_runtime_data_digest_matches_the_trustee_capture() {
        let attestation = captured_attestation();
        let evidence = &attestation["tee-evidence"];
        let digest = runtime_data_digest(
            &attestation["runtime-data"],
            &evidence["additional_evidence"],
        );
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(digest),
            evidence["primary_evidence"]["report_data"]
                .as_str()
                .unwrap()
        );
        // Another nonce, another digest.
        let mut other = attestation["runtime-data"].clone();
        other["nonce"] = json!("AAAA");
        assert_ne!(runtime_data_digest(&other, &json!("")), digest);
    }
}

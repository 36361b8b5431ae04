//! The key broker's endpoints: secure key release against attestation tokens, and key
//! management by members.
//!
//! - Members manage keys with requests signed like governance requests (COSE_Sign1 by their
//!   key, with time and nonce): `POST /keys` (`kms.create`), `POST /keys/{name}/rotate`,
//!   `/revoke`, `/delete`, `/leases`. Only a key's owner changes it or lists its leases.
//! - Bring your own key: `POST /keks` (`kms.kek.create`) makes an RSA key-exchange key whose
//!   public half anyone reads at `GET /keks/{name}`; `POST /keys/{name}/import` (`kms.import`)
//!   takes a `CKM_RSA_AES_KEY_WRAP` blob wrapped to it, from the key-exchange key's owner.
//! - A workload presents a token from this service's attestation endpoint to
//!   `POST /keys/{name}/release`; the token must verify with this service's keys, be
//!   unexpired and carry the workload's runtime key as its runtime data (an X25519 public key,
//!   or a JWK); the key's release policy must allow it. The key comes back sealed with HPKE to
//!   the X25519 key (or as a flattened JWE to the JWK, in `jwe`), under a lease the workload
//!   renews with a fresh token (`/renew`).
//! - Every creation, rotation, revocation, release, renewal and denial is an audit event on the
//!   ledger, durable before the answer.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use base64::Engine as _;
use confide_crypto::hpke::{self, HpkePublicKey};
use confide_kms::{KmsError, Lease, RELEASE_INFO};

use serde_json::{Value, json};

use crate::AppState;
use crate::now;
use crate::problem::Problem;
use crate::writer::Outcome;

/// How long a lease lasts without renewal.
pub const LEASE_SECONDS: i64 = 600;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl From<KmsError> for Problem {
    fn from(e: KmsError) -> Self {
        let (status, kind, title) = match &e {
            KmsError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "No such resource"),
            KmsError::Exists(_) => (StatusCode::CONFLICT, "key-exists", "The key exists"),
            KmsError::NotOwner => (
                StatusCode::FORBIDDEN,
                "not-the-owner",
                "Only the key's owner may do this",
            ),
            KmsError::Revoked(_) => (StatusCode::FORBIDDEN, "key-revoked", "The key is revoked"),
            KmsError::Denied => (
                StatusCode::FORBIDDEN,
                "release-denied",
                "The key's release policy denies this token",
            ),
            KmsError::Invalid(_) => (StatusCode::BAD_REQUEST, "bad-request", "Malformed request"),
            _ => (
                StatusCode::SERVICE_UNAVAILABLE,
                "key-store-unavailable",
                "The key store failed",
            ),
        };
        Problem::new(status, kind, title, e.to_string())
    }
}

/// Appends an audit event; the answer waits for it to be durable.
pub(crate) async fn audit(s: &AppState, event: Value) -> Result<u64, Problem> {
    match s.writer.audit(&event).await {
        Outcome::Appended { seq, .. } => Ok(seq),
        Outcome::Refused(e) => Err(e.into()),
        Outcome::Failed(m) => Err(Problem::internal(m)),
    }
}

/// A member's request to the key broker, authenticated.
pub(crate) struct MemberRequest {
    /// The signer's fingerprint.
    pub(crate) signer: String,
    /// The request's body.
    pub(crate) body: Value,
    /// Its signer, nonce and time, as its audit event records them.
    stamp: Value,
}

impl MemberRequest {
    /// `event`, with this request's signer, nonce and time: on the ledger, they make the
    /// request's replay refused after a restart too ([`replay_nonce`]).
    pub(crate) fn audited(&self, mut event: Value) -> Value {
        event["request"] = self.stamp.clone();
        event
    }
}

/// Authenticates a member's signed request of `expected` type, refusing replays.
pub(crate) fn member_request(
    s: &AppState,
    body: &[u8],
    expected: &str,
) -> Result<MemberRequest, Problem> {
    let now = now();
    let request = {
        let gov = s.gov.read().map_err(|e| Problem::internal(e.to_string()))?;
        gov.authenticate(body, now)?
    };
    if request.body.get("type").and_then(Value::as_str) != Some(expected) {
        return Err(Problem::bad_request(format!(
            "this endpoint takes requests of type {expected:?}"
        )));
    }
    let mut nonces = s
        .nonces
        .lock()
        .map_err(|e| Problem::internal(e.to_string()))?;
    if !remember_nonce(
        &mut nonces,
        &request.signer,
        &request.nonce,
        request.ts,
        now,
    ) {
        return Err(confide_ledger::gov::GovError::Replay.into());
    }
    Ok(MemberRequest {
        stamp: json!({"signer": request.signer, "nonce": hex::encode(&request.nonce), "ts": request.ts}),
        signer: request.signer,
        body: request.body,
    })
}

/// Remembers a request's nonce (dropping those too old to pass the time check again); false
/// if it was seen before.
fn remember_nonce(
    nonces: &mut crate::SeenNonces,
    signer: &str,
    nonce: &[u8],
    ts: i64,
    now: i64,
) -> bool {
    let horizon = now - 2 * confide_ledger::gov::MAX_SKEW;
    nonces.retain(|_, ts| *ts >= horizon);
    ts < horizon
        || nonces
            .insert((signer.to_owned(), nonce.to_vec()), ts)
            .is_none()
}

/// Rebuilds the nonces of members' requests from an audit event of the ledger, so that a
/// request replayed after a restart is refused as it would have been before.
pub(crate) fn replay_nonce(nonces: &mut crate::SeenNonces, entry: &[u8], now: i64) {
    let Ok(event) = serde_json::from_slice::<Value>(entry) else {
        return;
    };
    let stamp = &event["request"];
    if let (Some(signer), Some(nonce), Some(ts)) = (
        stamp["signer"].as_str(),
        stamp["nonce"].as_str().and_then(|n| hex::decode(n).ok()),
        stamp["ts"].as_i64(),
    ) {
        remember_nonce(nonces, signer, &nonce, ts, now);
    }
}

fn name_in(body: &Value, path: &str) -> Result<(), Problem> {
    if body.get("name").and_then(Value::as_str) == Some(path) {
        Ok(())
    } else {
        Err(Problem::bad_request(
            "the request names another key than the path",
        ))
    }
}

pub(crate) async fn create(
    State(s): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), Problem> {
    let request = member_request(&s, &body, "kms.create")?;
    let (signer, req) = (request.signer.clone(), &request.body);
    let name = req
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let info = s.kms.create(
        &name,
        &signer,
        req.get("policy").and_then(Value::as_str),
        now(),
    )?;
    let seq = audit(&s, request.audited(json!({"type": "kms.create", "key": name, "owner": signer, "version": info.version, "at": now()}))).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"key": info, "audit_seq": seq})),
    ))
}

pub(crate) async fn rotate(
    State(s): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, Problem> {
    let request = member_request(&s, &body, "kms.rotate")?;
    let (signer, req) = (request.signer.clone(), &request.body);
    name_in(req, &name)?;
    let info = s.kms.rotate(&name, &signer, now())?;
    let seq = audit(&s, request.audited(json!({"type": "kms.rotate", "key": name, "by": signer, "version": info.version, "at": now()}))).await?;
    Ok(Json(json!({"key": info, "audit_seq": seq})))
}

pub(crate) async fn revoke(
    State(s): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, Problem> {
    let request = member_request(&s, &body, "kms.revoke")?;
    let (signer, req) = (request.signer.clone(), &request.body);
    name_in(req, &name)?;
    let info = s.kms.revoke(&name, &signer)?;
    let seq = audit(
        &s,
        request.audited(json!({"type": "kms.revoke", "key": name, "by": signer, "at": now()})),
    )
    .await?;
    Ok(Json(json!({"key": info, "audit_seq": seq})))
}

pub(crate) async fn create_kek(
    State(s): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), Problem> {
    let request = member_request(&s, &body, "kms.kek.create")?;
    let (signer, req) = (request.signer.clone(), &request.body);
    let name = req
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let kek = s.kms.create_kek(&name, &signer, now())?;
    // The public key's digest goes on the ledger, so a member checks the key it wraps to
    // against the ledger, not against an answer alone.
    let public_sha256 = confide_crypto::pem_decode(&kek.public_pem, "PUBLIC KEY")
        .map(|der| hex::encode(confide_crypto::digest::sha256(&der)))
        .ok_or_else(|| Problem::internal("the key-exchange key's PEM does not decode"))?;
    let seq = audit(
        &s,
        request.audited(
            json!({"type": "kms.kek.create", "kek": name, "owner": signer,
                               "public_sha256": public_sha256, "at": now()}),
        ),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"kek": kek, "audit_seq": seq})),
    ))
}

pub(crate) async fn kek(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, Problem> {
    Ok(Json(json!({"kek": s.kms.kek(&name)?})))
}

pub(crate) async fn import(
    State(s): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, Problem> {
    let request = member_request(&s, &body, "kms.import")?;
    let (signer, req) = (request.signer.clone(), &request.body);
    name_in(req, &name)?;
    let text = |k: &str| req.get(k).and_then(Value::as_str);
    let kek = text("kek").ok_or_else(|| Problem::bad_request("no kek"))?;
    let blob = text("blob")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .ok_or_else(|| Problem::bad_request("blob is not base64"))?;
    let hash = confide_crypto::byok::OaepHash::from_name(text("hash").unwrap_or("sha256"))
        .ok_or_else(|| Problem::bad_request("hash is neither sha256 nor sha1"))?;
    let import = confide_kms::Import {
        kek,
        blob: &blob,
        hash,
        policy: text("policy"),
    };
    let info = s.kms.import(&name, &signer, import, now())?;
    let seq = audit(&s, request.audited(json!({"type": "kms.import", "key": name, "owner": signer, "kek": kek, "version": info.version, "at": now()}))).await?;
    Ok(Json(json!({"key": info, "audit_seq": seq})))
}

pub(crate) async fn delete(
    State(s): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, Problem> {
    let request = member_request(&s, &body, "kms.delete")?;
    let (signer, req) = (request.signer.clone(), &request.body);
    name_in(req, &name)?;
    let info = s.kms.delete(&name, &signer)?;
    let seq = audit(
        &s,
        request.audited(json!({"type": "kms.delete", "key": name, "by": signer, "at": now()})),
    )
    .await?;
    Ok(Json(json!({"deleted": info, "audit_seq": seq})))
}

pub(crate) async fn leases(
    State(s): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, Problem> {
    let request = member_request(&s, &body, "kms.leases")?;
    let (signer, req) = (request.signer.clone(), &request.body);
    name_in(req, &name)?;
    if s.kms.info(&name)?.owner != signer {
        return Err(KmsError::NotOwner.into());
    }
    let leases = s
        .leases
        .lock()
        .map_err(|e| Problem::internal(e.to_string()))?;
    Ok(Json(
        json!({"key": name, "leases": leases.of_key(&name, now())}),
    ))
}

/// The key a workload gets released keys wrapped to.
pub(crate) enum RuntimeKey {
    /// A workload's runtime keys (HPKE, signing, and its ledger key's digest): released keys
    /// are sealed to the HPKE key, and a lease is held by the whole set, so that no token with
    /// another signing key or ledger key passes for the workload a key was released to.
    Workload(confide_model::RuntimeKeys),
    /// An X25519 public key (the token's runtime data): HPKE.
    Hpke(HpkePublicKey),
    /// A JWK (P-256 or RSA; the runtime data was a JWK): JWE.
    Jwk(Value),
}

impl RuntimeKey {
    /// The key the workload signs its run reports with, if its evidence binds one.
    pub(crate) fn signing(&self) -> Option<&confide_crypto::signing::VerifyingKey> {
        match self {
            Self::Workload(keys) => Some(&keys.signing),
            Self::Hpke(_) | Self::Jwk(_) => None,
        }
    }

    /// The digest of the ledger key the workload verifies the consortium's state under, if its
    /// evidence binds its runtime keys.
    pub(crate) fn ledger(&self) -> Option<[u8; 32]> {
        match self {
            Self::Workload(keys) => Some(keys.ledger),
            Self::Hpke(_) | Self::Jwk(_) => None,
        }
    }

    /// SHA-256 of the key (the workload's whole runtime data, raw X25519 bytes, or the JWK's
    /// canonical JSON), hex.
    pub(crate) fn digest(&self) -> String {
        match self {
            Self::Workload(keys) => digest(&keys.to_bytes()),
            Self::Hpke(k) => digest(k.as_bytes()),
            Self::Jwk(jwk) => digest(crate::kbs::canonical_json(jwk).as_bytes()),
        }
    }
}

/// A token this service issued, verified: its claims and the workload's runtime keys in it.
pub(crate) struct Presented {
    /// The token's claims.
    pub(crate) claims: Value,
    /// The key released keys are wrapped to.
    pub(crate) runtime: RuntimeKey,
}

/// The request body (JSON with `"token"`), and the token in it verified.
pub(crate) fn token_claims(s: &AppState, body: &[u8]) -> Result<(Presented, Value), Problem> {
    confide_model::unique_keys(body, "request")
        .map_err(|e| Problem::bad_request(format!("the request: {e}")))?;
    let req: Value = serde_json::from_slice(body)
        .map_err(|e| Problem::bad_request(format!("the request is not JSON: {e}")))?;
    let token = req
        .get("token")
        .and_then(Value::as_str)
        .ok_or_else(|| Problem::bad_request("no token"))?;
    Ok((verify_token(s, token)?, req))
}

/// Verifies a token this service issued: signature, issuer, expiry, and a runtime key.
pub(crate) fn verify_token(s: &AppState, token: &str) -> Result<Presented, Problem> {
    let invalid = |detail: &str| {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "invalid-token",
            "The attestation token is not acceptable",
            detail,
        )
    };
    let jwks = s
        .tokens
        .read()
        .map_err(|e| Problem::internal(e.to_string()))?
        .jwks();
    let claims = crate::token::verify_jwt(token, &jwks)
        .ok_or_else(|| invalid("the token does not verify with this service's keys"))?;
    if claims.get("iss").and_then(Value::as_str) != Some(s.issuer.as_str()) {
        return Err(invalid("the token is from another issuer"));
    }
    if claims
        .get("exp")
        .and_then(Value::as_i64)
        .is_none_or(|exp| exp <= now())
    {
        return Err(invalid("the token has expired"));
    }
    let runtime_data = claims
        .get("confide.runtime_data")
        .and_then(Value::as_str)
        .and_then(|r| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(r)
                .ok()
        });
    // A workload's pair of runtime keys; or a bare X25519 key; or a JWK.
    let pair = runtime_data
        .as_deref()
        .and_then(|r| confide_model::RuntimeKeys::parse(r).ok());
    let x25519 = runtime_data
        .as_deref()
        .and_then(|r| HpkePublicKey::from_bytes(r).ok());
    let runtime = match (pair, x25519, claims.get("confide.tee_pubkey")) {
        (Some(keys), ..) => RuntimeKey::Workload(keys),
        (None, Some(k), _) => RuntimeKey::Hpke(k),
        (None, None, Some(jwk)) if jwk.is_object() => RuntimeKey::Jwk(jwk.clone()),
        _ => {
            return Err(invalid(
                "the token carries no runtime key (a workload's runtime keys, a 32-byte X25519 \
                 public key, or a JWK)",
            ));
        }
    };
    Ok(Presented { claims, runtime })
}

fn digest(bytes: &[u8]) -> String {
    hex::encode(confide_crypto::digest::sha256(bytes))
}

pub(crate) async fn release(
    State(s): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, Problem> {
    let (Presented { claims, runtime }, req) = token_claims(&s, &body)?;
    let token_digest = digest(req["token"].as_str().unwrap_or_default().as_bytes());
    let runtime_digest = runtime.digest();
    // A dataset's key goes only to a workload running an approved contract over it, which
    // verifies the consortium's state under this consortium's ledger key.
    let contract = match req.get("contract").map(Value::as_str) {
        None => None,
        Some(None) => {
            return Err(Problem::bad_request(
                "\"contract\" is a contract id (a string)",
            ));
        }
        Some(Some(id)) => {
            match crate::cleanroom::check_release(&s, &name, id, &claims, runtime.ledger()) {
                Ok(c) => Some(c),
                Err(reason) => {
                    audit(&s, json!({"type": "kms.deny", "key": name, "contract": id, "token": token_digest, "reason": reason, "at": now()})).await?;
                    return Err(Problem::new(
                        StatusCode::FORBIDDEN,
                        "contract-denied",
                        "The contract does not allow this release",
                        reason,
                    ));
                }
            }
        }
    };
    let (version, material) = match crate::blocking(|| {
        s.kms.release_for(&name, &claims, contract.as_ref())
    }) {
        Ok(v) => v,
        Err(e) => {
            audit(&s, json!({"type": "kms.deny", "key": name, "token": token_digest, "reason": e.to_string(), "at": now()})).await?;
            return Err(e.into());
        }
    };
    let wrapped = match &runtime {
        RuntimeKey::Workload(confide_model::RuntimeKeys { hpke: key, .. })
        | RuntimeKey::Hpke(key) => {
            let sealed = hpke::seal(
                key,
                RELEASE_INFO,
                format!("{name}/{version}").as_bytes(),
                &material,
            )
            .map_err(|e| Problem::internal(e.to_string()))?;
            json!({"enc": b64(&sealed.enc), "ciphertext": b64(&sealed.ciphertext)})
        }
        RuntimeKey::Jwk(jwk) => json!({
            "jwe": confide_crypto::jwe::encrypt(jwk, &material)
                .map_err(|e| Problem::internal(e.to_string()))?,
        }),
    };
    let now = now();
    let lease = Lease {
        id: hex::encode(
            confide_crypto::random::array::<16>().map_err(|e| Problem::internal(e.to_string()))?,
        ),
        key: name.clone(),
        version,
        runtime_key: runtime_digest.clone(),
        granted: now,
        last_heartbeat: now,
        expires: now + LEASE_SECONDS,
        contract: req
            .get("contract")
            .and_then(Value::as_str)
            .map(str::to_owned),
    };
    let mut event = json!({
        "type": "kms.release", "key": name, "version": version, "lease": lease.id,
        "token": token_digest, "runtime_key": runtime_digest, "simulated": claims["confide.simulated"],
        "at": now, "expires": lease.expires,
    });
    if let Some(contract) = &lease.contract {
        event["contract"] = json!(contract);
    }
    let seq = audit(&s, event).await?;
    s.leases
        .lock()
        .map_err(|e| Problem::internal(e.to_string()))?
        .grant(lease.clone());
    let mut answer = json!({
        "key": name, "version": version,
        "lease": lease.id, "expires_at": lease.expires, "audit_seq": seq,
    });
    if let (Some(a), Some(w)) = (answer.as_object_mut(), wrapped.as_object()) {
        a.extend(w.clone());
    }
    Ok(Json(answer))
}

/// Rebuilds the leases from an audit event of the ledger (`kms.release`, `kms.renew`).
pub(crate) fn replay_lease(leases: &mut confide_kms::Leases, entry: &[u8]) {
    let Ok(event) = serde_json::from_slice::<Value>(entry) else {
        return;
    };
    let text = |k: &str| event[k].as_str().unwrap_or_default().to_owned();
    let (at, expires) = (
        event["at"].as_i64().unwrap_or(0),
        event["expires"].as_i64().unwrap_or(0),
    );
    match event["type"].as_str() {
        Some("kms.release") => leases.grant(Lease {
            id: text("lease"),
            key: text("key"),
            version: event["version"]
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(0),
            runtime_key: text("runtime_key"),
            granted: at,
            last_heartbeat: at,
            expires,
            contract: event["contract"].as_str().map(str::to_owned),
        }),
        Some("kms.renew") => leases.heartbeat(&text("lease"), at, expires),
        _ => {}
    }
}

pub(crate) async fn renew(
    State(s): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, Problem> {
    let (Presented { claims, runtime }, req) = token_claims(&s, &body)?;
    let id = req
        .get("lease")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if s.kms.info(&name)?.revoked {
        return Err(KmsError::Revoked(name).into());
    }
    // A renewal is a release again: the contract it was released for must still be approved
    // and allow this workload, and the key's policy must still allow the fresh token.
    let contract = s
        .leases
        .lock()
        .map_err(|e| Problem::internal(e.to_string()))?
        .get(&id)
        .and_then(|l| l.contract.clone());
    let token_digest = digest(req["token"].as_str().unwrap_or_default().as_bytes());
    let recheck = match &contract {
        Some(c) => {
            crate::cleanroom::check_release(&s, &name, c, &claims, runtime.ledger()).map(Some)
        }
        None => Ok(None),
    }
    .and_then(|terms| {
        crate::blocking(|| s.kms.release_for(&name, &claims, terms.as_ref()))
            .map(drop)
            .map_err(|e| e.to_string())
    });
    if let Err(reason) = recheck {
        audit(
            &s,
            json!({"type": "kms.deny", "key": name, "lease": id, "contract": contract,
                         "token": token_digest, "reason": reason, "at": now()}),
        )
        .await?;
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "renewal-denied",
            "The lease may not be renewed",
            reason,
        ));
    }
    let now = now();
    let lease = s
        .leases
        .lock()
        .map_err(|e| Problem::internal(e.to_string()))?
        .renew(&id, &name, &runtime.digest(), now, now + LEASE_SECONDS)?;
    let seq = audit(
        &s,
        json!({"type": "kms.renew", "key": name, "lease": id, "at": now, "expires": lease.expires}),
    )
    .await?;
    Ok(Json(
        json!({"lease": lease.id, "expires_at": lease.expires, "audit_seq": seq}),
    ))
}

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

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use confide_crypto::hpke;
use confide_kms::{KmsError, RELEASE_INFO};
use confide_model::Event as _;
use confide_model::{
    BrokerBody, ContractId, Deleted, KekAnswer, KekEvent, KeyAnswer, Lease, LeaseEvent, LeaseList,
    MemberId, ModelError, ReleaseRequest, Released, RenewRequest, Renewed,
};
use serde_json::{Value, json};

use crate::audit::{audit, audit_request, settle};
use crate::auth::{Presented, Refusal, RuntimeKey, member_request, verify_token};
use crate::problem::Problem;
use crate::{AppState, json_body, now};

/// How long a lease lasts without renewal.
pub const LEASE_SECONDS: i64 = 600;

/// The key broker's routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/keys", post(create))
        .route("/keys/{name}/rotate", post(rotate))
        .route("/keys/{name}/revoke", post(revoke))
        .route("/keys/{name}/delete", post(delete))
        .route("/keys/{name}/import", post(import))
        .route("/keys/{name}/leases", post(leases))
        .route("/keys/{name}/release", post(release))
        .route("/keys/{name}/renew", post(renew))
        .route("/keks", post(create_kek))
        .route("/keks/{name}", get(kek))
        .route(
            "/kms/status",
            get(|| async { Json(json!({"profile": "development", "sealed": false})) }),
        )
}

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

/// The refusal of a body of another type than the endpoint takes.
fn takes(expected: &str) -> Problem {
    Problem::bad_request(format!("this endpoint takes requests of type {expected:?}"))
}

/// Checks that the body names the key of the path.
fn same_name(named: &str, path: &str) -> Result<(), Problem> {
    if named == path {
        Ok(())
    } else {
        Err(Problem::bad_request(
            "the request names another key than the path",
        ))
    }
}

async fn create(
    State(s): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<KeyAnswer>), Problem> {
    let request = member_request(&s, &body)?;
    let outcome: Result<_, Problem> = async {
        let BrokerBody::Create { name, policy } = &request.body else {
            return Err(takes("kms.create"));
        };
        let signer = &request.signer;
        let key = s.kms.create(name, signer, policy.as_deref(), now())?;
        let event = json!({"type": "kms.create", "key": name, "owner": signer, "version": key.version, "at": now()});
        let audit_seq = audit_request(&s, &request, event).await?;
        Ok((StatusCode::CREATED, Json(KeyAnswer { key, audit_seq })))
    }
    .await;
    settle(&s, &request, outcome).await
}

async fn rotate(
    State(s): State<AppState>,
    Path(path): Path<String>,
    body: Bytes,
) -> Result<Json<KeyAnswer>, Problem> {
    let request = member_request(&s, &body)?;
    let outcome: Result<_, Problem> = async {
        let BrokerBody::Rotate { name } = &request.body else {
            return Err(takes("kms.rotate"));
        };
        same_name(name, &path)?;
        let key = s.kms.rotate(name, &request.signer, now())?;
        let event = json!({"type": "kms.rotate", "key": name, "by": request.signer, "version": key.version, "at": now()});
        let audit_seq = audit_request(&s, &request, event).await?;
        Ok(Json(KeyAnswer { key, audit_seq }))
    }
    .await;
    settle(&s, &request, outcome).await
}

async fn revoke(
    State(s): State<AppState>,
    Path(path): Path<String>,
    body: Bytes,
) -> Result<Json<KeyAnswer>, Problem> {
    let request = member_request(&s, &body)?;
    let outcome: Result<_, Problem> = async {
        let BrokerBody::Revoke { name } = &request.body else {
            return Err(takes("kms.revoke"));
        };
        same_name(name, &path)?;
        let key = s.kms.revoke(name, &request.signer)?;
        let event = json!({"type": "kms.revoke", "key": name, "by": request.signer, "at": now()});
        let audit_seq = audit_request(&s, &request, event).await?;
        Ok(Json(KeyAnswer { key, audit_seq }))
    }
    .await;
    settle(&s, &request, outcome).await
}

async fn delete(
    State(s): State<AppState>,
    Path(path): Path<String>,
    body: Bytes,
) -> Result<Json<Deleted>, Problem> {
    let request = member_request(&s, &body)?;
    let outcome: Result<_, Problem> = async {
        let BrokerBody::Delete { name } = &request.body else {
            return Err(takes("kms.delete"));
        };
        same_name(name, &path)?;
        let deleted = s.kms.delete(name, &request.signer)?;
        let event = json!({"type": "kms.delete", "key": name, "by": request.signer, "at": now()});
        let audit_seq = audit_request(&s, &request, event).await?;
        Ok(Json(Deleted { deleted, audit_seq }))
    }
    .await;
    settle(&s, &request, outcome).await
}

async fn create_kek(
    State(s): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<KekAnswer>), Problem> {
    let request = member_request(&s, &body)?;
    let outcome: Result<_, Problem> = async {
        let BrokerBody::KekCreate { name } = &request.body else {
            return Err(takes("kms.kek.create"));
        };
        let kek = s.kms.create_kek(name, &request.signer, now())?;
        // The public key's digest goes on the ledger, so a member checks the key it wraps to
        // against the ledger, not against an answer alone.
        let public_sha256 = confide_crypto::pem_decode(&kek.public_pem, "PUBLIC KEY")
            .map(|der| hex::encode(confide_crypto::digest::sha256(&der)))
            .ok_or_else(|| Problem::internal("the key-exchange key's PEM does not decode"))?;
        let event = KekEvent::Created {
            kek: name.clone(),
            owner: request.signer.clone(),
            public_sha256,
            at: now(),
            request: request.stamp.clone(),
        };
        let seq = audit(&s, &event).await?;
        Ok((
            StatusCode::CREATED,
            Json(KekAnswer {
                kek,
                audit_seq: Some(seq),
            }),
        ))
    }
    .await;
    settle(&s, &request, outcome).await
}

async fn kek(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<KekAnswer>, Problem> {
    Ok(Json(KekAnswer {
        kek: s.kms.kek(&name)?,
        audit_seq: None,
    }))
}

async fn import(
    State(s): State<AppState>,
    Path(path): Path<String>,
    body: Bytes,
) -> Result<Json<KeyAnswer>, Problem> {
    let request = member_request(&s, &body)?;
    let outcome: Result<_, Problem> = async {
        let BrokerBody::Import {
            name,
            kek,
            blob,
            hash,
            policy,
        } = &request.body
        else {
            return Err(takes("kms.import"));
        };
        same_name(name, &path)?;
        // Both were checked when the body was read.
        let blob = confide_model::broker::base64_field(blob, "blob")
            .map_err(|e| Problem::bad_request(e.to_string()))?;
        let hash = confide_crypto::byok::OaepHash::from_name(hash)
            .ok_or_else(|| Problem::bad_request("hash is neither sha256 nor sha1"))?;
        let import = confide_kms::Import {
            kek,
            blob: &blob,
            hash,
            policy: policy.as_deref(),
        };
        let key = s.kms.import(name, &request.signer, import, now())?;
        let event = json!({"type": "kms.import", "key": name, "owner": request.signer, "kek": kek, "version": key.version, "at": now()});
        let audit_seq = audit_request(&s, &request, event).await?;
        Ok(Json(KeyAnswer { key, audit_seq }))
    }
    .await;
    settle(&s, &request, outcome).await
}

async fn leases(
    State(s): State<AppState>,
    Path(path): Path<String>,
    body: Bytes,
) -> Result<Json<LeaseList>, Problem> {
    let request = member_request(&s, &body)?;
    let outcome: Result<_, Problem> = async {
        let BrokerBody::Leases { name } = &request.body else {
            return Err(takes("kms.leases"));
        };
        same_name(name, &path)?;
        if s.kms.info(name)?.owner != request.signer {
            return Err(KmsError::NotOwner.into());
        }
        let leases = s
            .leases
            .lock()
            .map_err(|e| Problem::internal(e.to_string()))?
            .of_key(name, now());
        Ok(Json(LeaseList {
            key: name.clone(),
            leases,
        }))
    }
    .await;
    settle(&s, &request, outcome).await
}

/// Whether the workload that presented a token may have key `key` for contract `id`: its
/// evidence binds the digest of this consortium's ledger key (it verifies the consortium's
/// state under it), and governance allows it
/// ([`confide_gov::Governance::may_release`]). The contract (with its state) for the
/// release policy, or why not.
fn may_release(
    s: &AppState,
    key: &str,
    owner: Option<&MemberId>,
    id: &ContractId,
    presented: &Presented,
) -> Result<Value, Refusal> {
    crate::auth::of_this_ledger(s, presented)?;
    let internal = |e: String| Refusal {
        rule: "internal",
        detail: e,
    };
    let gov = s.gov.read().map_err(|e| internal(e.to_string()))?;
    let record = gov.may_release(key, owner, id, &presented.measurements())?;
    serde_json::to_value(record).map_err(|e| internal(e.to_string()))
}

async fn release(
    State(s): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Released>, Problem> {
    let req: ReleaseRequest = json_body(&body)?;
    let presented = verify_token(&s, &req.token)?;
    let token_digest = &presented.token_digest;
    // The key broker's owner of the key (none: no such key, which the release says below).
    let owner = s.kms.info(&name).ok().map(|k| k.owner);
    // A dataset's key goes only to a workload running an approved contract over it, which
    // verifies the consortium's state under this consortium's ledger key.
    let contract = match &req.contract {
        None => None,
        Some(id) => match may_release(&s, &name, owner.as_ref(), id, &presented) {
            Ok(c) => Some(c),
            Err(refusal) => {
                audit(&s, &json!({"type": "kms.deny", "key": name, "contract": id, "token": token_digest, "rule": refusal.rule, "reason": refusal.detail, "at": now()})).await?;
                return Err(refusal.problem("The contract does not allow this release"));
            }
        },
    };
    // A release for a contract that adds noise spends from the dataset's privacy budget: one
    // that would pass it is denied here, and again by the ledger writer, which charges it.
    if let Some(id) = &req.contract {
        let spend = s
            .gov
            .read()
            .map_err(|e| Problem::internal(e.to_string()))?
            .may_spend(&name, id, now());
        if let Err(denial) = spend {
            let refusal = Refusal::from(denial);
            audit(&s, &json!({"type": "kms.deny", "key": name, "contract": id, "token": token_digest, "rule": refusal.rule, "reason": refusal.detail, "at": now()})).await?;
            return Err(refusal.problem("The dataset's privacy budget does not allow this release"));
        }
    }
    // A removed member's key goes to no one (whatever its policy, with or without a contract).
    if let Some(owner) = &owner
        && let Err(problem) = crate::auth::held_by_a_member(&s, owner, &format!("key {name}"))
    {
        audit(&s, &json!({"type": "kms.deny", "key": name, "token": token_digest, "rule": "owner-not-a-member", "reason": problem.detail, "at": now()})).await?;
        return Err(problem);
    }
    let (version, material) = match crate::blocking(|| {
        s.kms
            .release_for(&name, &presented.claims, contract.as_ref())
    }) {
        Ok(v) => v,
        Err(e) => {
            audit(&s, &json!({"type": "kms.deny", "key": name, "token": token_digest, "reason": e.to_string(), "at": now()})).await?;
            return Err(e.into());
        }
    };
    let (mut enc, mut ciphertext, mut jwe) = (None, None, None);
    match &presented.runtime {
        RuntimeKey::Workload(confide_model::RuntimeKeys { hpke: key, .. })
        | RuntimeKey::Hpke(key) => {
            let sealed = hpke::seal(
                key,
                RELEASE_INFO,
                format!("{name}/{version}").as_bytes(),
                &material,
            )
            .map_err(|e| Problem::internal(e.to_string()))?;
            enc = Some(b64(&sealed.enc));
            ciphertext = Some(b64(&sealed.ciphertext));
        }
        RuntimeKey::Jwk(jwk) => {
            jwe = Some(
                confide_crypto::jwe::encrypt(jwk, &material)
                    .map_err(|e| Problem::internal(e.to_string()))?,
            );
        }
    }
    let now = now();
    let lease = Lease {
        id: hex::encode(
            confide_crypto::random::array::<16>().map_err(|e| Problem::internal(e.to_string()))?,
        ),
        key: name.clone(),
        version,
        runtime_key: presented.runtime.digest(),
        granted: now,
        last_heartbeat: now,
        expires: now + LEASE_SECONDS,
        contract: req.contract.clone(),
    };
    let event = LeaseEvent::Release {
        key: name.clone(),
        version,
        lease: lease.id.clone(),
        token: token_digest.clone(),
        runtime_key: lease.runtime_key.clone(),
        simulated: Some(presented.simulated()),
        at: now,
        expires: Some(lease.expires),
        contract: lease.contract.clone(),
    };
    let audit_seq = match audit(&s, &event).await {
        Ok(seq) => seq,
        // Another release took the budget's last ε between the check above and this one's
        // turn at the ledger: denied, and recorded as such.
        Err(problem) if problem.kind == "privacy-budget-spent" => {
            audit(&s, &json!({"type": "kms.deny", "key": name, "contract": req.contract, "token": token_digest, "rule": problem.kind, "reason": problem.detail, "at": now})).await?;
            return Err(problem);
        }
        Err(problem) => return Err(problem),
    };
    let answer = Released {
        key: name,
        version,
        lease: lease.id.clone(),
        expires_at: lease.expires,
        audit_seq,
        enc,
        ciphertext,
        jwe,
    };
    s.leases
        .lock()
        .map_err(|e| Problem::internal(e.to_string()))?
        .grant(lease);
    Ok(Json(answer))
}

/// Rebuilds the leases from an audit event of the ledger (`kms.release`, `kms.renew`). A lease
/// event that does not read whole is damage to the ledger, refused.
pub(crate) fn replay_lease(
    leases: &mut confide_kms::Leases,
    entry: &[u8],
) -> Result<(), ModelError> {
    match LeaseEvent::of_entry(entry)? {
        Some(LeaseEvent::Release {
            key,
            version,
            lease,
            runtime_key,
            at,
            expires,
            contract,
            ..
        }) => leases.grant(Lease {
            id: lease,
            key,
            version,
            runtime_key,
            granted: at,
            last_heartbeat: at,
            expires: expires.unwrap_or(at + LEASE_SECONDS),
            contract,
        }),
        Some(LeaseEvent::Renew {
            lease, at, expires, ..
        }) => leases
            .heartbeat(&lease, at, expires.unwrap_or(at + LEASE_SECONDS))
            .then_some(())
            .ok_or_else(|| ModelError::Malformed {
                field: "lease event",
                detail: format!("a renewal of lease {lease}, which was never granted"),
            })?,
        None => {}
    }
    Ok(())
}

async fn renew(
    State(s): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Renewed>, Problem> {
    let req: RenewRequest = json_body(&body)?;
    let presented = verify_token(&s, &req.token)?;
    let now = now();
    // Every refusal of a renewal, whatever the reason, is on the ledger as a denial.
    let renewed = renew_lease(&s, &name, &req.lease, &presented, now);
    let lease = match renewed {
        Ok(lease) => lease,
        // A failure of the service (a lock, the key store) is not a denial: answered, not
        // recorded as one.
        Err((problem, _)) if problem.status != StatusCode::FORBIDDEN => return Err(problem),
        Err((problem, contract)) => {
            let event = json!({"type": "kms.deny", "key": name, "lease": req.lease,
                               "contract": contract, "token": presented.token_digest,
                               "reason": problem.detail, "at": now});
            audit(&s, &event).await?;
            return Err(problem);
        }
    };
    let event = LeaseEvent::Renew {
        key: name,
        lease: lease.id.clone(),
        at: now,
        expires: Some(lease.expires),
    };
    let audit_seq = audit(&s, &event).await?;
    Ok(Json(Renewed {
        lease: lease.id,
        expires_at: lease.expires,
        audit_seq,
    }))
}

/// Renews lease `id` of key `name` for the workload that presented a fresh token: a renewal is
/// a release again, so the key must not be revoked, the contract it was released for must
/// still be approved and allow this workload, the key's policy must still allow the token, and
/// the lease must be of this key, held by this workload's runtime key, and not lapsed. The
/// refusal (with the lease's contract) otherwise.
fn renew_lease(
    s: &AppState,
    name: &str,
    id: &str,
    presented: &Presented,
    now: i64,
) -> Result<Lease, (Problem, Option<ContractId>)> {
    let denied = |detail: String| {
        Problem::new(
            StatusCode::FORBIDDEN,
            "renewal-denied",
            "The lease may not be renewed",
            detail,
        )
    };
    let lease = s
        .leases
        .lock()
        .map_err(|e| (Problem::internal(e.to_string()), None))?
        .get(id)
        .filter(|l| l.key == name)
        .cloned()
        .ok_or_else(|| (denied(format!("key {name} has no lease {id}")), None))?;
    let contract = lease.contract.clone();
    let refuse = |detail: String| (denied(detail), contract.clone());
    let info = s.kms.info(name).map_err(|e| match e {
        KmsError::NotFound(_) => refuse(e.to_string()),
        other => (Problem::from(other), contract.clone()),
    })?;
    if info.revoked {
        return Err(refuse(format!("key {name} is revoked")));
    }
    crate::auth::held_by_a_member(s, &info.owner, &format!("key {name}"))
        .map_err(|p| refuse(p.detail))?;
    let terms = match &contract {
        Some(c) => Some(
            may_release(s, name, Some(&info.owner), c, presented).map_err(|r| refuse(r.detail))?,
        ),
        None => None,
    };
    crate::blocking(|| s.kms.release_for(name, &presented.claims, terms.as_ref()))
        .map_err(|e| refuse(e.to_string()))?;
    s.leases
        .lock()
        .map_err(|e| (Problem::internal(e.to_string()), contract.clone()))?
        .renew(
            id,
            name,
            &presented.runtime.digest(),
            now,
            now + LEASE_SECONDS,
        )
        .map_err(|e| refuse(e.to_string()))
}

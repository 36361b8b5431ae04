//! Who is asking: a member, by a request signed with its key ([`member_request`]), whose nonce
//! is remembered against replays (on the ledger too, so a restart forgets none); or a
//! workload, by an attestation token of this service ([`verify_token`]), with the runtime keys
//! its evidence binds and the measurements it was appraised with ([`Presented`]).

use axum::http::StatusCode;
use base64::Engine as _;
use confide_attest::TeeKind;
use confide_crypto::hpke::HpkePublicKey;
use confide_model::{BrokerBody, Measurement, ModelError, RuntimeKeys, Stamp};
use serde_json::Value;

use crate::problem::Problem;
use crate::{AppState, now};
use confide_gov::SpentNonces;

/// A member's request to the key broker, authenticated.
pub(crate) struct MemberRequest {
    /// The signer's fingerprint.
    pub(crate) signer: confide_model::MemberId,
    /// The request's body.
    pub(crate) body: BrokerBody,
    /// Its signer, nonce and time, as its audit event records them.
    pub(crate) stamp: Stamp,
}

/// Authenticates a member's signed request to the key broker, refusing replays; the handler
/// takes the body of its own type.
pub(crate) fn member_request(s: &AppState, cose: &[u8]) -> Result<MemberRequest, Problem> {
    let now = now();
    let request = {
        let gov = s.gov.read().map_err(|e| Problem::internal(e.to_string()))?;
        gov.authenticate(cose, now)?
    };
    let body = BrokerBody::from_json(&request.payload)
        .map_err(|e| Problem::bad_request(format!("the request's payload: {e}")))?;
    let mut nonces = s
        .nonces
        .lock()
        .map_err(|e| Problem::internal(e.to_string()))?;
    if !nonces.spend(&request.signer, &request.nonce, request.ts, now) {
        return Err(confide_gov::GovError::Replay.into());
    }
    Ok(MemberRequest {
        stamp: Stamp {
            signer: request.signer.clone(),
            nonce: hex::encode(&request.nonce),
            ts: request.ts,
        },
        signer: request.signer,
        body,
    })
}

/// Rebuilds the nonces of members' requests from an audit event of the ledger (every request
/// authenticated, accepted or refused, has one: [`crate::audit::settle`]), so that a request
/// replayed after a restart is refused as it would have been before. An event whose stamp does
/// not read whole is damage to the ledger, refused.
pub(crate) fn replay_nonce(
    nonces: &mut SpentNonces,
    entry: &[u8],
    now: i64,
) -> Result<(), ModelError> {
    #[derive(serde::Deserialize)]
    struct Stamped {
        request: Option<Value>,
    }
    let damaged = |detail: String| ModelError::Malformed {
        field: "request",
        detail,
    };
    let Ok(Stamped {
        request: Some(stamp),
    }) = serde_json::from_slice(entry)
    else {
        return Ok(());
    };
    let stamp: Stamp = serde_json::from_value(stamp).map_err(|e| damaged(e.to_string()))?;
    let nonce = hex::decode(&stamp.nonce).map_err(|_| damaged("the nonce is not hex".into()))?;
    nonces.spend(&stamp.signer, &nonce, stamp.ts, now);
    Ok(())
}

/// The key a workload gets released keys wrapped to.
pub(crate) enum RuntimeKey {
    /// A workload's runtime keys (HPKE, signing, and its ledger key's digest): released keys
    /// are sealed to the HPKE key, and a lease is held by the whole set, so that no token with
    /// another signing key or ledger key passes for the workload a key was released to.
    Workload(RuntimeKeys),
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
            Self::Jwk(jwk) => digest(confide_crypto::jcs::canonical_json(jwk).as_bytes()),
        }
    }
}

/// Why a workload may not have a dataset's key or record a run: the rule it breaks (a stable
/// name, the RFC 7807 problem type and the `rule` of the denial's audit event) and the words.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    /// The rule.
    pub(crate) rule: &'static str,
    /// What is wrong, for the requester and the ledger.
    pub(crate) detail: String,
}

impl From<confide_gov::Denial> for Refusal {
    fn from(denial: confide_gov::Denial) -> Self {
        Self {
            rule: denial.rule(),
            detail: denial.to_string(),
        }
    }
}

impl Refusal {
    /// The refusal as a 403 problem with `title`.
    pub(crate) fn problem(&self, title: &'static str) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, self.rule, title, self.detail.clone())
    }
}

/// Whether `owner`, who holds `what` at the key broker, is still a member: a removed member's
/// keys and resources go to no one, since it could no longer revoke them.
pub(crate) fn held_by_a_member(
    s: &AppState,
    owner: &confide_model::MemberId,
    what: &str,
) -> Result<(), Problem> {
    let gov = s.gov.read().map_err(|e| Problem::internal(e.to_string()))?;
    if gov.is_member(owner) {
        return Ok(());
    }
    Err(Problem::new(
        StatusCode::FORBIDDEN,
        "owner-not-a-member",
        "The owner is no longer a member",
        format!(
            "{what} belongs to {owner}, who is no longer a member of the consortium: it goes to \
             no one, since its owner could no longer revoke it"
        ),
    ))
}

/// Whether the workload that presented a token is one of this consortium: its evidence binds
/// its runtime keys and the digest of this consortium's ledger key, which it verifies the
/// consortium's state under. A workload launched to verify another ledger (an operator's own)
/// would act on what that ledger says.
pub(crate) fn of_this_ledger(s: &AppState, presented: &Presented) -> Result<(), Refusal> {
    match presented.runtime.ledger() {
        None => Err(Refusal {
            rule: "workload-binds-no-ledger-key",
            detail: "a dataset's key goes only to a workload whose evidence binds its runtime \
                     keys and the ledger key it verifies the contract under, and only such a \
                     workload records runs"
                .into(),
        }),
        Some(digest) if digest != s.ledger_key => Err(Refusal {
            rule: "workload-of-another-ledger",
            detail: format!(
                "the workload verifies the consortium's state under another ledger key \
                 (SHA-256 {}), not this consortium's ({}): it would run what another ledger \
                 says",
                hex::encode(digest),
                hex::encode(s.ledger_key)
            ),
        }),
        Some(_) => Ok(()),
    }
}

/// A token this service issued, verified: its claims and the workload's runtime keys in it.
pub(crate) struct Presented {
    /// The token's claims (what release policies are given).
    pub(crate) claims: Value,
    /// The key released keys are wrapped to.
    pub(crate) runtime: RuntimeKey,
    /// SHA-256 of the token, hex (what audit events name it by).
    pub(crate) token_digest: String,
    /// What this service reads of the claims, read whole.
    pub(crate) read: confide_model::TokenClaims,
}

impl Presented {
    /// The measurements the token carries: each appraised TEE's primary measurement for its
    /// kind ([`TeeKind::primary_measurement`]).
    pub(crate) fn measurements(&self) -> Vec<Measurement> {
        self.read
            .submods
            .iter()
            .filter_map(|(kind, sub)| {
                let (claim, _) = TeeKind::from_name(kind)?.primary_measurement()?;
                let value = sub.claims.measurements.get(claim)?;
                Measurement::parse(kind, &value.to_lowercase()).ok()
            })
            .collect()
    }

    /// Whether the token stood on simulated evidence (this service's tokens always say).
    pub(crate) fn simulated(&self) -> bool {
        self.read.simulated
    }
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
    let claims = crate::token::verify_jwt(token, &jwks).map_err(|e| invalid(&e.to_string()))?;
    let read = confide_model::TokenClaims::from_value(&claims)
        .map_err(|e| invalid(&format!("the token's claims: {e}")))?;
    if read.iss != s.issuer {
        return Err(invalid("the token is from another issuer"));
    }
    if read.exp <= now() {
        return Err(invalid("the token has expired"));
    }
    let runtime_data = read.runtime_data.as_deref().and_then(|r| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(r)
            .ok()
    });
    // A workload's runtime keys; or a bare X25519 key; or a JWK.
    let keys = runtime_data
        .as_deref()
        .and_then(|r| RuntimeKeys::parse(r).ok());
    let x25519 = runtime_data
        .as_deref()
        .and_then(|r| HpkePublicKey::from_bytes(r).ok());
    let runtime = match (keys, x25519, read.tee_pubkey.as_ref()) {
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
    Ok(Presented {
        claims,
        runtime,
        token_digest: digest(token.as_bytes()),
        read,
    })
}

/// SHA-256, hex.
pub(crate) fn digest(bytes: &[u8]) -> String {
    hex::encode(confide_crypto::digest::sha256(bytes))
}

//! The attestation service: `POST /attest/{kind}` verifies evidence with `confide-attest`,
//! checks that it binds the runtime data it came with, appraises the claims with a Rego policy,
//! and answers with a signed token (a JWT carrying an EAR attestation result). Its keys are at
//! `/.well-known/jwks.json`, named by `/.well-known/openid-configuration`.
//!
//! The appraisal policy is the consortium's policy named `appraisal` (set by governance) or the
//! built-in one (`confide_policy::APPRAISAL`). The server gives the policy its profile as data
//! (`input.profile.insecure_allow_simulated_tee`, true in the development profile only); the
//! built-in policy accepts simulated evidence when, and only when, it says so, and a sealed
//! server refuses simulated evidence whatever its policy says.
//! Trusted measurements come from governance (`add_measurement`).
//!
//! Freshness: `POST /attest/nonce` issues a 32-byte challenge, valid for [`NONCE_LIFETIME`]
//! seconds and usable once. Evidence that answers one binds `SHA-256(runtime_data) || nonce`
//! as its 64 bytes of report data, and the token carries the nonce as `eat_nonce`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use confide_attest::{Collateral, Inputs, TeeKind, TrustAnchors, UnixTime};
use confide_gov::appraisal::{Appraisal, AppraisalDenied, Appraiser};
use confide_model::{AttestRequest, Attested, Challenge};
use serde_json::{Value, json};

use crate::AppState;
use crate::now;
use crate::problem::Problem;

/// The built-in appraisal policy.
pub const DEFAULT_APPRAISAL: &str = confide_gov::appraisal::DEFAULT_APPRAISAL;
/// How long a token is valid unless the operator says otherwise.
pub const TOKEN_LIFETIME: i64 = 300;
const EAR_PROFILE: &str = "tag:github.com,2023:veraison/ear";
/// How long a challenge nonce may be answered.
pub(crate) const NONCE_LIFETIME: i64 = 120;
/// Challenges outstanding at most; beyond, new ones are refused until some expire.
const MAX_CHALLENGES: usize = 100_000;

/// The attestation service's routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/attest/nonce", post(nonce))
        .route("/attest/{kind}", post(attest))
        .route(
            "/collateral",
            get(|State(s): State<AppState>| async move { Json(s.collateral.list()) }),
        )
        .route("/.well-known/jwks.json", get(jwks))
        .route(
            "/.well-known/openid-configuration",
            get(openid_configuration),
        )
}

/// Challenge nonces issued and not yet answered, with their expiry.
#[derive(Debug, Default)]
pub(crate) struct Challenges(std::collections::HashMap<[u8; 32], i64>);

impl Challenges {
    /// A fresh nonce, valid until `now + NONCE_LIFETIME`; `None` when too many are outstanding.
    fn issue(&mut self, now: i64) -> Result<Option<[u8; 32]>, confide_crypto::CryptoError> {
        self.0.retain(|_, expires| *expires >= now);
        if self.0.len() >= MAX_CHALLENGES {
            return Ok(None);
        }
        let nonce = confide_crypto::random::array::<32>()?;
        self.0.insert(nonce, now + NONCE_LIFETIME);
        Ok(Some(nonce))
    }

    /// Uses up `nonce`: true if it was issued here, unused and unexpired.
    fn answer(&mut self, nonce: &[u8; 32], now: i64) -> bool {
        self.0.remove(nonce).is_some_and(|expires| expires >= now)
    }
}

/// `POST /attest/nonce`: a challenge for the next evidence.
async fn nonce(State(s): State<AppState>) -> Result<Json<Challenge>, Problem> {
    let now = now();
    let nonce = s
        .challenges
        .lock()
        .map_err(|e| Problem::internal(e.to_string()))?
        .issue(now)
        .map_err(|e| Problem::internal(e.to_string()))?
        .ok_or_else(|| {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too-many-challenges",
                "Too many challenges are outstanding",
                "try again when some have expired",
            )
        })?;
    Ok(Json(Challenge {
        nonce: base64::engine::general_purpose::STANDARD.encode(nonce),
        expires_at: now + NONCE_LIFETIME,
    }))
}

fn b64(text: &str, what: &str) -> Result<Vec<u8>, Problem> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.trim()))
        .map_err(|_| Problem::bad_request(format!("{what} is not base64")))
}

async fn attest(
    State(s): State<AppState>,
    Path(kind): Path<String>,
    body: Bytes,
) -> Result<Json<Attested>, Problem> {
    let kind = TeeKind::from_name(&kind)
        .ok_or_else(|| Problem::not_found(format!("no TEE kind {kind:?}")))?;
    let req: AttestRequest = crate::json_body(&body)?;
    let evidence = b64(&req.evidence, "evidence")?;
    let collateral = req
        .collateral
        .iter()
        .map(|c| b64(c, "collateral"))
        .collect::<Result<Vec<_>, _>>()?;
    let runtime_data = req
        .runtime_data
        .as_deref()
        .map(|r| b64(r, "runtime_data"))
        .transpose()?;
    let nonce: Option<[u8; 32]> = req
        .nonce
        .as_deref()
        .map(|n| {
            <[u8; 32]>::try_from(b64(n, "nonce")?)
                .map_err(|_| Problem::bad_request("the nonce is not 32 bytes"))
        })
        .transpose()?;
    // The GPUs first: the CPU evidence must bind their nonces.
    let mut gpus = Vec::new();
    for gpu in &req.gpu {
        let collateral = gpu
            .collateral
            .iter()
            .map(|c| b64(c, "gpu collateral"))
            .collect::<Result<Vec<_>, _>>()?;
        let evidence = b64(&gpu.evidence, "gpu evidence")?;
        let evidence = confide_attest::decode_text(&evidence).into_owned();
        gpus.push(crate::blocking(|| {
            appraise_one(
                &s,
                TeeKind::NvidiaGpu,
                &evidence,
                &collateral,
                None,
                nonce.is_some(),
            )
        })?);
    }
    if !gpus.is_empty() && runtime_data.is_none() {
        return Err(Problem::bad_request(
            "GPU evidence binds to the CPU evidence through runtime_data: give it",
        ));
    }
    let mut binding = match &runtime_data {
        None => None,
        Some(data) => {
            let mut bound = data.clone();
            for gpu in &gpus {
                bound.extend_from_slice(&gpu.report_data);
            }
            Some(match req.runtime_data_hash.as_deref().unwrap_or("sha256") {
                "sha256" => confide_crypto::digest::sha256(&bound).to_vec(),
                "sha384" => confide_crypto::digest::sha384(&bound).to_vec(),
                "sha512" => confide_crypto::digest::sha512(&bound).to_vec(),
                other => {
                    return Err(Problem::bad_request(format!(
                        "unknown runtime_data_hash {other:?}"
                    )));
                }
            })
        }
    };
    if let Some(nonce) = &nonce {
        match (&mut binding, req.runtime_data_hash.as_deref()) {
            (Some(b), None | Some("sha256")) => b.extend_from_slice(nonce),
            _ => {
                return Err(Problem::bad_request(
                    "a nonce binds with runtime data hashed with sha256",
                ));
            }
        }
        let answered = s
            .challenges
            .lock()
            .map_err(|e| Problem::internal(e.to_string()))?
            .answer(nonce, now());
        if !answered {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                "unknown-nonce",
                "The nonce is not a challenge of this service",
                "the nonce was not issued here, was already used, or expired; ask POST /attest/nonce for another",
            ));
        }
    }
    let evidence = confide_attest::decode_text(&evidence).into_owned();
    let fresh = nonce.is_some();
    let appraised =
        crate::blocking(|| appraise(&s, kind, &evidence, &collateral, binding.as_deref(), fresh))?;
    let runtime = runtime_data
        .as_deref()
        .map(|d| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d));
    // Runtime data that is a JWK (JSON with "kty") is the workload's key for JWE releases.
    let jwk = runtime_data
        .as_deref()
        .and_then(|d| serde_json::from_slice::<Value>(d).ok())
        .filter(|v| v.get("kty").is_some());
    if let Some(jwk) = &jwk {
        confide_crypto::jwe::check_recipient(jwk)
            .map_err(|e| Problem::bad_request(format!("the runtime data's JWK: {e}")))?;
    }
    let mut appraised = vec![appraised];
    appraised.extend(gpus);
    let (token, expires, _) = issue(
        &s,
        &appraised,
        json!({
            "confide.runtime_data": runtime, "confide.tee_pubkey": jwk,
            "eat_nonce": nonce.map(|n| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(n)),
        }),
    )?;
    Ok(Json(Attested {
        token,
        expires_at: expires,
        status: appraised[0].status.as_str().to_owned(),
    }))
}

/// Verifies `evidence` of `kind` with the `collateral` given (kept in the collateral store if
/// it verifies), or else with the collateral kept for that kind; checks that its report data
/// starts with `binding` (then zeros), and appraises its claims with the consortium's policy;
/// `fresh` says whether the binding includes a challenge of this service. A refusal names the
/// check, or the rule and claim, that failed.
///
/// GPU evidence is refused here: it proves no CPU TEE, and the nonce it binds is whatever its
/// requester chose. It is appraised only beside the CPU evidence of the same workload, whose
/// report binds the GPU's nonce (`gpu` in `POST /attest/{kind}`).
pub(crate) fn appraise(
    s: &AppState,
    kind: TeeKind,
    evidence: &[u8],
    collateral: &[Vec<u8>],
    binding: Option<&[u8]>,
    fresh: bool,
) -> Result<Appraisal, Problem> {
    if kind == TeeKind::NvidiaGpu {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "gpu-evidence-alone",
            "GPU evidence alone earns no token",
            "GPU evidence proves no CPU TEE, and its nonce is its requester's own choice: send \
             it as \"gpu\" beside the CPU TEE evidence of the same workload, whose report binds \
             the GPU's nonce",
        ));
    }
    appraise_one(s, kind, evidence, collateral, binding, fresh)
}

/// [`appraise`], for any kind: verification here (with the collateral store), the decision
/// in [`confide_gov::appraisal`].
fn appraise_one(
    s: &AppState,
    kind: TeeKind,
    evidence: &[u8],
    collateral: &[Vec<u8>],
    binding: Option<&[u8]>,
    fresh: bool,
) -> Result<Appraisal, Problem> {
    let appraiser = {
        let gov = s.gov.read().map_err(|e| Problem::internal(e.to_string()))?;
        Appraiser::of(&gov, s.dev).map_err(denied)?
    };
    let anchors = TrustAnchors::builtin().map_err(|e| Problem::internal(e.to_string()))?;
    let inputs = Inputs {
        anchors: &anchors,
        now: UnixTime::from_secs(now()),
        insecure_allow_simulated_tee: appraiser.allows_simulated().map_err(denied)?,
    };
    let verifier = confide_attest::verifier(kind)
        .ok_or_else(|| Problem::not_found(format!("no verifier for {kind}")))?;
    let rejected = |e: confide_attest::AttestError, note: &str| {
        Problem::new(
            StatusCode::FORBIDDEN,
            "evidence-rejected",
            "The evidence did not verify",
            format!("{} ({}){note}", e, e.reason_code()),
        )
    };
    let claims = if collateral.is_empty() {
        // The collateral kept for this kind, each bundle in turn; or none at all.
        let mut kept = s.collateral.candidates(kind, now());
        let tried = kept.len();
        if kept.is_empty() {
            kept.push(Collateral::new());
        }
        let mut first_error = None;
        let mut verified = None;
        for bag in &kept {
            match verifier.verify(evidence, bag, &inputs) {
                Ok(c) => {
                    verified = Some(c);
                    break;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match (verified, first_error) {
            (Some(c), _) => c,
            (None, Some(e)) => {
                let note = if tried == 0 {
                    String::new()
                } else {
                    format!("; tried the collateral kept for {tried} platform(s) of this kind")
                };
                return Err(rejected(e, &note));
            }
            (None, None) => return Err(Problem::internal("no verification ran")),
        }
    } else {
        let bag = crate::collateral::parse(collateral).map_err(Problem::bad_request)?;
        let claims = verifier
            .verify(evidence, &bag, &inputs)
            .map_err(|e| rejected(e, ""))?;
        // Verified: keep it for this platform. Keeping is best effort; the answer stands.
        let platform = claims
            .platform_id()
            .map(hex::encode)
            .unwrap_or_else(|| "any".into());
        let _ = s.collateral.keep(kind, &platform, collateral, now());
        claims
    };
    appraiser.appraise(&claims, binding, fresh).map_err(denied)
}

/// The problem document of an appraisal's refusal: its rule is the problem type.
fn denied(e: AppraisalDenied) -> Problem {
    let title = match e {
        AppraisalDenied::NotBound => "The evidence does not bind the runtime data",
        AppraisalDenied::Policy(_) => "The appraisal policy denied the evidence",
        _ => "The appraisal policy could not decide",
    };
    Problem::new(StatusCode::FORBIDDEN, e.rule(), title, e.to_string())
}

/// Signs a token (a JWT carrying an EAR attestation result) for `appraised`, with the claims
/// of `extra` (an object) added; returns it, its expiry and its claims. The CPU TEE's result is
/// the token's one submod, which contracts and release policies read; GPU results go under
/// `confide.gpu`, so that no policy written for the CPU (`some sub in submods`) is ever
/// satisfied by a GPU's measurement or status instead.
pub(crate) fn issue(
    s: &AppState,
    appraised: &[Appraisal],
    extra: Value,
) -> Result<(String, i64, Value), Problem> {
    let now = now();
    let tier = |good: bool| if good { 2 } else { 32 };
    let result = |a: &Appraisal| {
        json!({
            "ear.status": a.status.as_str(),
            "ear.trustworthiness-vector": {
                "instance-identity": 2,
                "hardware": tier(a.tcb_ok && !a.simulated),
                "executables": if a.matched { 2 } else { 0 },
            },
            "ear.appraisal-policy-id": a.policy_id,
            "confide.claims": a.claims,
        })
    };
    let (gpus, cpus): (Vec<&Appraisal>, Vec<&Appraisal>) =
        appraised.iter().partition(|a| a.kind == TeeKind::NvidiaGpu);
    let submods: serde_json::Map<String, Value> = cpus
        .iter()
        .map(|a| (a.kind.as_str().to_owned(), result(a)))
        .collect();
    let gpu: serde_json::Map<String, Value> = gpus
        .iter()
        .map(|a| (a.kind.as_str().to_owned(), result(a)))
        .collect();
    let mut claims = json!({
        "iss": s.issuer,
        "iat": now,
        "nbf": now,
        "exp": now + s.token_lifetime,
        "eat_profile": EAR_PROFILE,
        "ear.verifier-id": {"developer": "confide", "build": env!("CARGO_PKG_VERSION")},
        "submods": submods,
        "confide.simulated": appraised.iter().any(|a| a.simulated),
    });
    if let Some(m) = claims.as_object_mut() {
        if !gpu.is_empty() {
            m.insert("confide.gpu".into(), Value::Object(gpu));
        }
        if let Some(extra) = extra.as_object() {
            m.extend(extra.clone());
        }
    }
    let token = s
        .tokens
        .read()
        .map_err(|e| Problem::internal(e.to_string()))?
        .sign(&claims)
        .map_err(|e| Problem::internal(e.to_string()))?;
    Ok((token, now + s.token_lifetime, claims))
}

async fn jwks(State(s): State<AppState>) -> Result<Json<Value>, Problem> {
    let keys = s
        .tokens
        .read()
        .map_err(|e| Problem::internal(e.to_string()))?;
    Ok(Json(keys.jwks()))
}

async fn openid_configuration(State(s): State<AppState>) -> Json<Value> {
    Json(json!({
        "issuer": s.issuer,
        "jwks_uri": format!("{}/.well-known/jwks.json", s.issuer),
        "id_token_signing_alg_values_supported": ["ES256"],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "claims_supported": ["iss", "iat", "nbf", "exp", "eat_profile", "submods"],
    }))
}

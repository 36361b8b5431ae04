//! The clean-room endpoints: the datasets and contracts governance registered, the contract
//! checks of a dataset key's release, and the run records workloads report.
//!
//! - `GET /gov/datasets`, `GET /gov/contracts`: the registered datasets and contracts (with
//!   their state: approved or revoked), as replaying the ledger gives them.
//! - A release of a dataset's key (`POST /keys/dataset-ID/release`) names the contract the
//!   workload runs (`"contract": ID`); it is refused, with the reason and on the ledger, unless
//!   the contract is approved and not revoked, names that dataset, and allows the workload's
//!   measurement (the token's primary measurement for its TEE kind).
//! - `POST /cleanroom/runs` takes a workload's [`SignedRunReport`]: its token, and its report
//!   of a run (contract, input digests, output digest and location) or of a refused result,
//!   signed with the signing key the token's evidence binds. A bearer of the token alone forges
//!   nothing, and a report is recorded once (its id is the digest of what was signed). The
//!   report is recorded as an audit event on the ledger; `GET /cleanroom/runs/{id}` returns it.
//!   It is checked first, and refused (on the ledger, as `cleanroom.deny`) unless the contract
//!   is approved and not revoked, the token's measurement is one the contract allows, the
//!   inputs are exactly the contract's datasets with the digests the ledger registered, each
//!   of their keys was released to this token's runtime key, and the output goes to exactly
//!   the contract's recipients.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use confide_attest::TeeKind;
use confide_model::{
    ContractList, DatasetList, Measurement, RunRecord, RunRecorded, SignedRunReport,
};
use serde_json::{Value, json};

use crate::AppState;
use crate::now;
use crate::problem::Problem;

/// The claim holding each TEE kind's primary measurement ([`TeeKind::primary_measurement`]).
fn primary_measurement(kind: &str) -> Option<&'static str> {
    TeeKind::from_name(kind)?
        .primary_measurement()
        .map(|(claim, _)| claim)
}

/// The measurements a token's claims carry: each submod's primary measurement for its kind.
fn token_measurements(claims: &Value) -> Vec<Measurement> {
    claims["submods"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(kind, sub)| {
            let name = primary_measurement(kind)?;
            let value = sub["confide.claims"]["measurements"][name].as_str()?;
            Some(Measurement {
                kind: kind.clone(),
                value: value.to_lowercase(),
            })
        })
        .collect()
}

/// Checks that a workload with token `claims`, whose evidence binds the ledger key digest
/// `ledger`, may have the key `key` for the contract `id`: it verifies the consortium's state
/// under this consortium's ledger key, and governance allows it
/// ([`confide_ledger::gov::Governance::may_release`]). The contract (with its state) for the
/// release policy, or why not.
pub(crate) fn check_release(
    s: &AppState,
    key: &str,
    id: &str,
    claims: &Value,
    ledger: Option<[u8; 32]>,
) -> Result<Value, String> {
    match ledger {
        None => {
            return Err(
                "a dataset's key goes only to a workload whose evidence binds its \
                        runtime keys and the ledger key it verifies the contract under"
                    .into(),
            );
        }
        Some(digest) if digest != s.ledger_key => {
            return Err(format!(
                "the workload verifies the consortium's state under another ledger key \
                 (SHA-256 {}), not this consortium's ({}): it would run what another ledger says",
                hex::encode(digest),
                hex::encode(s.ledger_key)
            ));
        }
        Some(_) => {}
    }
    let owner = s.kms.info(key).map(|k| k.owner).ok();
    let gov = s.gov.read().map_err(|e| e.to_string())?;
    let record = gov
        .may_release(key, owner.as_deref(), id, &token_measurements(claims))
        .map_err(|denial| denial.to_string())?;
    serde_json::to_value(record).map_err(|e| e.to_string())
}

pub(crate) async fn datasets(State(s): State<AppState>) -> Result<Json<DatasetList>, Problem> {
    let gov = s.gov.read().map_err(|e| Problem::internal(e.to_string()))?;
    Ok(Json(DatasetList {
        datasets: gov.datasets().clone(),
    }))
}

pub(crate) async fn contracts(State(s): State<AppState>) -> Result<Json<ContractList>, Problem> {
    let gov = s.gov.read().map_err(|e| Problem::internal(e.to_string()))?;
    Ok(Json(ContractList {
        contracts: gov.contracts().clone(),
    }))
}

fn refused(kind: &'static str, title: &'static str, detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::FORBIDDEN, kind, title, detail)
}

pub(crate) async fn record_run(
    State(s): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), Problem> {
    let signed = SignedRunReport::from_json(&body).map_err(|e| {
        Problem::bad_request(format!("the request is not a signed run report: {e}"))
    })?;
    let presented = crate::keys::verify_token(&s, &signed.token)?;
    let signing = presented.runtime.signing().ok_or_else(|| {
        refused(
            "unsigned-run-report",
            "The token binds no signing key",
            "a run is recorded only when its report is signed by the signing key the \
             workload's evidence binds (its runtime keys), not on a bearer token alone",
        )
    })?;
    signed.verify(signing).map_err(|e| {
        refused(
            "bad-signature",
            "The run report's signature does not verify",
            e.to_string(),
        )
    })?;
    let report = &signed.report;
    let id = report.id();
    let contract = report.contract.clone();
    let replayed = || {
        Problem::new(
            StatusCode::CONFLICT,
            "replayed-run-report",
            "This run report is recorded already",
            format!("run {id} is on the ledger; a report is recorded once"),
        )
    };
    if s.runs
        .lock()
        .map_err(|e| Problem::internal(e.to_string()))?
        .contains_key(&id)
    {
        return Err(replayed());
    }
    let token_digest = hex::encode(confide_crypto::digest::sha256(signed.token.as_bytes()));
    let runtime = presented.runtime.digest();
    let decision = {
        let gov = s.gov.read().map_err(|e| Problem::internal(e.to_string()))?;
        if !gov.contracts().contains_key(&contract) {
            return Err(Problem::not_found(format!("no contract {contract}")));
        }
        let leases = s
            .leases
            .lock()
            .map_err(|e| Problem::internal(e.to_string()))?;
        if presented.runtime.ledger() != Some(s.ledger_key) {
            Err(
                "the workload verifies the consortium's state under another ledger key than \
                 this consortium's: its report is not of a run of this consortium's contract"
                    .to_owned(),
            )
        } else {
            gov.may_record(
                &contract,
                &token_measurements(&presented.claims),
                &report.outcome,
                |key| leases.released_to(key, &runtime),
            )
            .map(|_| ())
            .map_err(|denial| denial.to_string())
        }
    };
    if let Err(reason) = decision {
        crate::keys::audit(
            &s,
            json!({"type": "cleanroom.deny", "contract": contract, "token": token_digest,
                   "reason": reason, "at": now()}),
        )
        .await?;
        return Err(refused(
            "run-refused",
            "The run report does not match the contract and the releases",
            reason,
        ));
    }
    let simulated = presented
        .claims
        .get("confide.simulated")
        .and_then(Value::as_bool)
        .ok_or_else(|| Problem::internal("this service's token says nothing of simulation"))?;
    let typed = RunRecord::of(&signed, token_digest, simulated, now(), signing);
    let record = serde_json::to_value(&typed).map_err(|e| Problem::internal(e.to_string()))?;
    // The id is taken before the append, so that two copies of one report sent at once
    // record one run; it is given back if the append fails.
    if s.runs
        .lock()
        .map_err(|e| Problem::internal(e.to_string()))?
        .insert(id.clone(), Value::Null)
        .is_some()
    {
        return Err(replayed());
    }
    let appended = crate::keys::audit(&s, record.clone()).await;
    let mut runs = s
        .runs
        .lock()
        .map_err(|e| Problem::internal(e.to_string()))?;
    let seq = match appended {
        Ok(seq) => seq,
        Err(e) => {
            runs.remove(&id);
            return Err(e);
        }
    };
    runs.insert(id.clone(), record);
    drop(runs);
    Ok((
        StatusCode::CREATED,
        Json(json!(RunRecorded {
            run: id,
            record: typed,
            audit_seq: seq,
        })),
    ))
}

pub(crate) async fn run(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    s.runs
        .lock()
        .map_err(|e| Problem::internal(e.to_string()))?
        .get(&id)
        .filter(|r| !r.is_null())
        .cloned()
        .map(Json)
        .ok_or_else(|| Problem::not_found(format!("no run {id}")))
}

/// Rebuilds the index of runs (and refused runs) from an audit event of the ledger: what
/// `GET /cleanroom/runs/{id}` answers, and the reports already recorded.
pub(crate) fn replay_run(runs: &mut std::collections::BTreeMap<String, Value>, entry: &[u8]) {
    if let Ok(event) = serde_json::from_slice::<Value>(entry)
        && (event["type"] == "cleanroom.run" || event["type"] == "cleanroom.refused")
        && let Some(id) = event["run"].as_str()
    {
        runs.insert(id.to_owned(), event.clone());
    }
}

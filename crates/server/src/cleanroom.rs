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
use base64::Engine as _;
use confide_attest::TeeKind;
use confide_model::{RunOutcome, SignedRunReport};
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

/// The (kind, measurement) pairs a token's claims carry.
fn token_measurements(claims: &Value) -> Vec<(String, String)> {
    claims["submods"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(kind, sub)| {
            let name = primary_measurement(kind)?;
            let value = sub["confide.claims"]["measurements"][name].as_str()?;
            Some((kind.clone(), value.to_lowercase()))
        })
        .collect()
}

/// Checks that a workload with token `claims` may have the key `key` for the contract `id`;
/// the contract (with its state) for the release policy, or why not.
pub(crate) fn check_release(
    s: &AppState,
    key: &str,
    id: &str,
    claims: &Value,
) -> Result<Value, String> {
    let gov = s.gov.read().map_err(|e| e.to_string())?;
    let contract = gov.contracts().get(id).cloned().ok_or_else(|| {
        format!(
            "no approved contract {id} on the ledger: a contract runs only once every owner of \
             its datasets has approved it"
        )
    })?;
    if contract["state"] != "approved" {
        return Err(format!("contract {id} is revoked"));
    }
    // The dataset whose record names this key, among the contract's.
    let record = contract["datasets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(|d| gov.datasets().get(d))
        .find(|r| r["key"] == key)
        .ok_or_else(|| format!("contract {id} does not name the dataset of key {key}"))?;
    // The key must be the dataset owner's own: a dataset registered over another member's key
    // releases nothing.
    let key_owner = s.kms.info(key).map_err(|e| e.to_string())?.owner;
    if record["owner"] != key_owner.as_str() {
        return Err(format!(
            "key {key} belongs to another member than the owner of dataset {}",
            record["id"].as_str().unwrap_or("?")
        ));
    }
    allows_measurement(&contract, id, claims)?;
    Ok(contract)
}

/// Whether the contract (as the ledger holds it) allows the token's measurement.
fn allows_measurement(contract: &Value, id: &str, claims: &Value) -> Result<(), String> {
    let allowed: Vec<(String, String)> = contract["contract"]["measurements"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| {
            Some((
                m["kind"].as_str()?.to_owned(),
                m["value"].as_str()?.to_lowercase(),
            ))
        })
        .collect();
    let presented = token_measurements(claims);
    if !presented.iter().any(|m| allowed.contains(m)) {
        let shown: Vec<String> = presented.iter().map(|(k, v)| format!("{k} {v}")).collect();
        return Err(format!(
            "the workload's measurement ({}) is not one contract {id} allows",
            if shown.is_empty() {
                "none".into()
            } else {
                shown.join(", ")
            }
        ));
    }
    Ok(())
}

/// Checks a run's report against the ledger and the broker's releases (see the module's
/// documentation); why not, if it does not hold.
fn check_run(
    s: &AppState,
    contract: &Value,
    id: &str,
    claims: &Value,
    runtime_key: &str,
    outcome: &RunOutcome,
) -> Result<(), String> {
    if contract["state"] != "approved" {
        return Err(format!("contract {id} is revoked: it records no more runs"));
    }
    allows_measurement(contract, id, claims)?;
    let RunOutcome::Released { inputs, output } = outcome else {
        return Ok(());
    };
    let mut named: Vec<&str> = contract["datasets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    named.sort_unstable();
    let mut read: Vec<&str> = inputs.iter().map(|i| i.dataset.as_str()).collect();
    read.sort_unstable();
    if read != named {
        return Err(format!(
            "the run's inputs ({}) are not contract {id}'s datasets ({})",
            read.join(", "),
            named.join(", ")
        ));
    }
    let gov = s.gov.read().map_err(|e| e.to_string())?;
    for input in inputs {
        let registered = gov.datasets().get(&input.dataset).map(|d| &d["digest"]);
        if registered.and_then(Value::as_str) != Some(input.digest.as_str()) {
            return Err(format!(
                "the run's digest of dataset {} is not the one registered on the ledger",
                input.dataset
            ));
        }
    }
    if json!(output.recipients) != contract["contract"]["recipients"] {
        return Err(format!(
            "the run's output is not for contract {id}'s recipients"
        ));
    }
    let leases = s.leases.lock().map_err(|e| e.to_string())?;
    let key_of = |d: &str| {
        gov.datasets()
            .get(d)
            .and_then(|r| r["key"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    if let Some(dataset) = read
        .iter()
        .find(|d| !leases.released_to(&key_of(d), runtime_key))
    {
        return Err(format!(
            "the key of dataset {dataset} was never released to this workload"
        ));
    }
    Ok(())
}

pub(crate) async fn datasets(State(s): State<AppState>) -> Result<Json<Value>, Problem> {
    let gov = s.gov.read().map_err(|e| Problem::internal(e.to_string()))?;
    Ok(Json(json!({ "datasets": gov.datasets() })))
}

pub(crate) async fn contracts(State(s): State<AppState>) -> Result<Json<Value>, Problem> {
    let gov = s.gov.read().map_err(|e| Problem::internal(e.to_string()))?;
    Ok(Json(json!({ "contracts": gov.contracts() })))
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
    let signing = presented.signing.as_ref().ok_or_else(|| {
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
    let terms = s
        .gov
        .read()
        .map_err(|e| Problem::internal(e.to_string()))?
        .contracts()
        .get(&contract)
        .cloned()
        .ok_or_else(|| Problem::not_found(format!("no contract {contract}")))?;
    let token_digest = hex::encode(confide_crypto::digest::sha256(signed.token.as_bytes()));
    let runtime = presented.runtime.digest();
    if let Err(reason) = check_run(
        &s,
        &terms,
        &contract,
        &presented.claims,
        &runtime,
        &report.outcome,
    ) {
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
    let mut record = json!({
        "run": id,
        "contract": contract,
        "token": token_digest,
        "simulated": presented.claims["confide.simulated"],
        "at": now(),
        "nonce": report.nonce,
        "signed_by": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signing.to_sec1()),
        "signature": signed.signature,
    });
    match &report.outcome {
        RunOutcome::Refused { reason } => {
            record["type"] = json!("cleanroom.refused");
            record["reason"] = json!(reason);
        }
        RunOutcome::Released { inputs, output } => {
            record["type"] = json!("cleanroom.run");
            record["inputs"] = json!(inputs);
            record["output"] = json!(output);
        }
    }
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
    runs.insert(id.clone(), record.clone());
    drop(runs);
    Ok((
        StatusCode::CREATED,
        Json(json!({"run": id, "record": record, "audit_seq": seq})),
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

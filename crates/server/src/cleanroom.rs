//! The clean-room endpoints: the datasets and contracts governance registered, the contract
//! checks of a dataset key's release, and the run records workloads report.
//!
//! - `GET /gov/datasets`, `GET /gov/contracts`: the registered datasets and contracts (with
//!   their state: approved or revoked), as replaying the ledger gives them.
//! - A release of a dataset's key (`POST /keys/dataset-ID/release`) names the contract the
//!   workload runs (`"contract": ID`); it is refused, with the reason and on the ledger, unless
//!   the contract is approved and not revoked, names that dataset, and allows the workload's
//!   measurement (the token's primary measurement for its TEE kind).
//! - `POST /cleanroom/runs` with the workload's token records a run (contract, input digests,
//!   output digest and location, token digest, simulated or not) or a refused result, as an
//!   audit event on the ledger; `GET /cleanroom/runs/{id}` returns a run's record. A record is
//!   checked first, and refused (on the ledger, as `cleanroom.deny`) unless the token's
//!   measurement is one the contract allows, the inputs are exactly the contract's datasets
//!   with the digests the ledger registered, each of their keys was released to this token's
//!   runtime key, and the output goes to exactly the contract's recipients.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use confide_attest::TeeKind;
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

/// Checks a run's record against the ledger and the broker's releases (see the module's
/// documentation); why not, if it does not hold.
fn check_run(
    s: &AppState,
    contract: &Value,
    id: &str,
    claims: &Value,
    runtime_key: &str,
    req: &Value,
) -> Result<(), String> {
    if contract["state"] != "approved" {
        return Err(format!("contract {id} is revoked: it records no more runs"));
    }
    allows_measurement(contract, id, claims)?;
    if req["refused"].is_string() {
        return Ok(());
    }
    let mut named: Vec<&str> = contract["datasets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    named.sort_unstable();
    let inputs = req["inputs"]
        .as_array()
        .ok_or("a run record needs \"inputs\"")?;
    let mut read: Vec<&str> = inputs
        .iter()
        .map(|i| i["dataset"].as_str().unwrap_or_default())
        .collect();
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
        let dataset = input["dataset"].as_str().unwrap_or_default();
        let registered = gov.datasets().get(dataset).map(|d| &d["digest"]);
        if registered != Some(&input["digest"]) {
            return Err(format!(
                "the run's digest of dataset {dataset} is not the one registered on the ledger"
            ));
        }
    }
    if req["output"]["recipients"] != contract["contract"]["recipients"] {
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

/// The run id of a record: the first 16 bytes of the SHA-256 of its canonical JSON, hex.
fn run_id(record: &Value) -> String {
    hex::encode(
        &confide_crypto::digest::sha256(crate::kbs::canonical_json(record).as_bytes())[..16],
    )
}

pub(crate) async fn record_run(
    State(s): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), Problem> {
    let req: Value = serde_json::from_slice(&body)
        .map_err(|e| Problem::bad_request(format!("the request is not JSON: {e}")))?;
    let (claims, runtime, _) = crate::keys::token_claims(&s, &body)?;
    let contract = req["contract"]
        .as_str()
        .ok_or_else(|| Problem::bad_request("no contract"))?
        .to_owned();
    let terms = s
        .gov
        .read()
        .map_err(|e| Problem::internal(e.to_string()))?
        .contracts()
        .get(&contract)
        .cloned()
        .ok_or_else(|| Problem::not_found(format!("no contract {contract}")))?;
    let token = req["token"].as_str().unwrap_or_default();
    let token_digest = hex::encode(confide_crypto::digest::sha256(token.as_bytes()));
    if let Err(reason) = check_run(&s, &terms, &contract, &claims, &runtime.digest(), &req) {
        crate::keys::audit(
            &s,
            json!({"type": "cleanroom.deny", "contract": contract, "token": token_digest,
                   "reason": reason, "at": now()}),
        )
        .await?;
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "run-refused",
            "The run record does not match the contract and the releases",
            reason,
        ));
    }
    let mut record = json!({
        "contract": contract,
        "token": token_digest,
        "simulated": claims["confide.simulated"],
        "at": now(),
    });
    if let Some(reason) = req["refused"].as_str() {
        record["type"] = json!("cleanroom.refused");
        record["reason"] = json!(reason);
    } else {
        record["type"] = json!("cleanroom.run");
        for k in ["inputs", "output"] {
            if req[k].is_null() {
                return Err(Problem::bad_request(format!("a run record needs {k:?}")));
            }
            record[k] = req[k].clone();
        }
    }
    let id = run_id(&record);
    record["run"] = json!(id);
    let seq = crate::keys::audit(&s, record.clone()).await?;
    if record["type"] == "cleanroom.run" {
        s.runs
            .lock()
            .map_err(|e| Problem::internal(e.to_string()))?
            .insert(id.clone(), record.clone());
    }
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
        .cloned()
        .map(Json)
        .ok_or_else(|| Problem::not_found(format!("no run {id}")))
}

/// Rebuilds the run index from an audit event of the ledger.
pub(crate) fn replay_run(runs: &mut std::collections::BTreeMap<String, Value>, entry: &[u8]) {
    if let Ok(event) = serde_json::from_slice::<Value>(entry)
        && event["type"] == "cleanroom.run"
        && let Some(id) = event["run"].as_str()
    {
        runs.insert(id.to_owned(), event.clone());
    }
}

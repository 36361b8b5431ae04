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

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use confide_model::Event as _;
use confide_model::{
    ContractList, DatasetList, ModelError, RunRecord, RunRecorded, SignedRunReport,
};
use serde_json::json;

use crate::audit::audit;
use crate::auth::Refusal;
use crate::problem::Problem;
use crate::{AppState, now};

/// Run records by id; `None` while one is being recorded.
/// Run ids taken, with their records (`None`: a record of an early version, whose id, which
/// may not be a `RunId`, stays taken but is not served).
pub(crate) type Runs = BTreeMap<String, Option<RunRecord>>;

/// The clean rooms' routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/gov/datasets", get(datasets))
        .route("/gov/contracts", get(contracts))
        .route("/cleanroom/runs", post(record_run))
        .route("/cleanroom/runs/{id}", get(run))
}

async fn datasets(State(s): State<AppState>) -> Result<Json<DatasetList>, Problem> {
    let gov = s.gov.read().map_err(|e| Problem::internal(e.to_string()))?;
    Ok(Json(DatasetList {
        datasets: gov.datasets().clone(),
    }))
}

async fn contracts(State(s): State<AppState>) -> Result<Json<ContractList>, Problem> {
    let gov = s.gov.read().map_err(|e| Problem::internal(e.to_string()))?;
    Ok(Json(ContractList {
        contracts: gov.contracts().clone(),
    }))
}

fn refused(kind: &'static str, title: &'static str, detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::FORBIDDEN, kind, title, detail)
}

async fn record_run(
    State(s): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<RunRecorded>), Problem> {
    let signed = SignedRunReport::from_json(&body).map_err(|e| {
        Problem::bad_request(format!("the request is not a signed run report: {e}"))
    })?;
    let presented = crate::auth::verify_token(&s, &signed.token)?;
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
        .contains_key(id.as_str())
    {
        return Err(replayed());
    }
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
        crate::auth::of_this_ledger(&s, &presented).and_then(|()| {
            gov.may_record(
                &contract,
                &presented.measurements(),
                &report.outcome,
                |key| leases.released_to(key, &runtime, &contract),
            )
            .map(|_| ())
            .map_err(Refusal::from)
        })
    };
    if let Err(refusal) = decision {
        audit(
            &s,
            &json!({"type": "cleanroom.deny", "contract": contract, "token": presented.token_digest,
                   "rule": refusal.rule, "reason": refusal.detail, "at": now()}),
        )
        .await?;
        return Err(refusal.problem("The run report does not match the contract and the releases"));
    }
    let record = RunRecord::of(
        &signed,
        presented.token_digest.clone(),
        presented.simulated(),
        now(),
        signing,
    );
    // The id is taken before the append, so that two copies of one report sent at once
    // record one run; it is given back if the append fails.
    if s.runs
        .lock()
        .map_err(|e| Problem::internal(e.to_string()))?
        .insert(id.to_string(), None)
        .is_some()
    {
        return Err(replayed());
    }
    let appended = audit(&s, &record).await;
    let mut runs = s
        .runs
        .lock()
        .map_err(|e| Problem::internal(e.to_string()))?;
    let seq = match appended {
        Ok(seq) => seq,
        Err(e) => {
            runs.remove(id.as_str());
            return Err(e);
        }
    };
    runs.insert(id.to_string(), Some(record.clone()));
    drop(runs);
    Ok((
        StatusCode::CREATED,
        Json(RunRecorded {
            run: id,
            record,
            audit_seq: seq,
        }),
    ))
}

async fn run(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RunRecord>, Problem> {
    s.runs
        .lock()
        .map_err(|e| Problem::internal(e.to_string()))?
        .get(&id)
        .cloned()
        .flatten()
        .map(Json)
        .ok_or_else(|| Problem::not_found(format!("no run {id}")))
}

/// Rebuilds the index of runs (and refused runs) from an audit event of the ledger: what
/// `GET /cleanroom/runs/{id}` answers, and the reports already recorded. A signed run record
/// that does not read whole is damage to the ledger, refused. A record of an early version,
/// before run reports were signed (it has no `signature`), keeps its id taken, so its report is
/// not recorded twice, but is not served: no client would take it as a run of the contract.
pub(crate) fn replay_run(runs: &mut Runs, entry: &[u8]) -> Result<(), ModelError> {
    #[derive(serde::Deserialize)]
    struct Unsigned {
        run: String,
        signature: Option<serde_json::Value>,
    }
    match RunRecord::of_entry(entry) {
        Ok(Some(record)) => {
            runs.insert(record.run.to_string(), Some(record));
        }
        Ok(None) => {}
        Err(damaged) => match serde_json::from_slice::<Unsigned>(entry) {
            Ok(Unsigned {
                run,
                signature: None,
            }) => {
                runs.insert(run, None);
            }
            _ => return Err(damaged),
        },
    }
    Ok(())
}

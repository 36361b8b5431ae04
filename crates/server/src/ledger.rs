//! The ledger's and governance's endpoints: the entries, receipts, checkpoints and consistency
//! proofs anyone verifies, and the members' signed governance requests, appended by the writer
//! once governance accepts them.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use confide_model::{
    Action, Consistency, DatasetRecord, EntryPage, GovBody, LatestCheckpoint, ListedEntry, Member,
    MemberList, Proposal, ProposalList, Submitted,
};
use serde::Deserialize;

use crate::AppState;
use crate::problem::Problem;
use crate::writer::Outcome;

/// The most entries one listing returns.
const PAGE: u64 = 1000;

/// The ledger's and governance's routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/ledger/entries", get(entries))
        .route("/ledger/entries/{seq}", get(entry))
        .route("/ledger/entries/{seq}/receipt", get(receipt))
        .route("/ledger/checkpoints/latest", get(latest_checkpoint))
        .route("/ledger/key", get(ledger_key))
        .route("/ledger/consistency", get(consistency))
        .route("/gov/found", post(found))
        .route("/gov/proposals", get(proposals).post(propose))
        .route("/gov/proposals/{id}", get(proposal))
        .route("/gov/proposals/{id}/ballots", post(ballot))
        .route("/gov/members", get(members))
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn cose(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/cose")], bytes).into_response()
}

fn unavailable<E: std::fmt::Display>(e: E) -> Problem {
    Problem::internal(e.to_string())
}

#[derive(Deserialize)]
struct Page {
    from: Option<u64>,
    limit: Option<u64>,
}

async fn entries(
    State(s): State<AppState>,
    Query(p): Query<Page>,
) -> Result<Json<EntryPage>, Problem> {
    let ledger = s.ledger.read().map_err(unavailable)?;
    let from = p.from.unwrap_or(0);
    let limit = p.limit.unwrap_or(PAGE).min(PAGE);
    let mut entries = Vec::new();
    for seq in from..ledger.len().min(from.saturating_add(limit)) {
        let entry = ledger.entry(seq).map_err(unavailable)?.unwrap_or_default();
        entries.push(ListedEntry {
            seq,
            governance: confide_gov::is_governance(&entry),
            entry: b64(&entry),
        });
    }
    Ok(Json(EntryPage {
        size: ledger.len(),
        from,
        entries,
    }))
}

async fn entry(State(s): State<AppState>, Path(seq): Path<u64>) -> Result<Response, Problem> {
    let ledger = s.ledger.read().map_err(unavailable)?;
    match ledger.entry(seq).map_err(unavailable)? {
        Some(bytes) => Ok(cose(bytes)),
        None => Err(Problem::not_found(format!(
            "the ledger has {} entries; there is no entry {seq}",
            ledger.len()
        ))),
    }
}

async fn receipt(State(s): State<AppState>, Path(seq): Path<u64>) -> Result<Response, Problem> {
    let ledger = s.ledger.read().map_err(unavailable)?;
    match ledger.receipt(seq).map_err(unavailable)? {
        Some(bytes) => Ok(cose(bytes)),
        None => Err(Problem::not_found(format!(
            "no receipt for entry {seq}: the ledger has {} entries",
            ledger.len()
        ))),
    }
}

/// The ledger's public key (PEM), for a client to pin on first use; a client that pinned it
/// before checks every checkpoint against its own copy, not against this.
async fn ledger_key(State(s): State<AppState>) -> Result<Response, Problem> {
    let ledger = s.ledger.read().map_err(unavailable)?;
    Ok((
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        ledger.public_key().to_spki_pem(),
    )
        .into_response())
}

async fn latest_checkpoint(State(s): State<AppState>) -> Result<Json<LatestCheckpoint>, Problem> {
    let ledger = s.ledger.read().map_err(unavailable)?;
    let cp = ledger
        .latest_checkpoint()
        .ok_or_else(|| Problem::not_found("the ledger is empty"))?;
    Ok(Json(LatestCheckpoint {
        tree_size: cp.tree_size,
        root: hex::encode(cp.root),
        time: cp.time,
        cose: b64(&cp.cose),
    }))
}

#[derive(Deserialize)]
struct Range {
    from: u64,
    to: u64,
}

async fn consistency(
    State(s): State<AppState>,
    Query(r): Query<Range>,
) -> Result<Json<Consistency>, Problem> {
    let ledger = s.ledger.read().map_err(unavailable)?;
    let proof = ledger.consistency(r.from, r.to).ok_or_else(|| {
        Problem::bad_request(format!(
            "no consistency proof from {} to {}: sizes must satisfy 0 < from <= to <= {}",
            r.from,
            r.to,
            ledger.len()
        ))
    })?;
    Ok(Json(Consistency {
        from: r.from,
        to: r.to,
        root_from: ledger.root_at(r.from).map(hex::encode),
        root_to: ledger.root_at(r.to).map(hex::encode),
        proof: proof.iter().map(hex::encode).collect(),
    }))
}

/// Submits a governance request and answers when it is durable.
async fn submit(s: &AppState, body: Bytes) -> Result<(StatusCode, Json<Submitted>), Problem> {
    match s.writer.submit(body.to_vec()).await {
        Outcome::Appended { seq, applied } => Ok((
            StatusCode::CREATED,
            Json(Submitted {
                seq,
                proposal: applied.proposal,
                state: applied.state,
            }),
        )),
        Outcome::Refused(e) => Err(e.into()),
        Outcome::Failed(m) => Err(Problem::not_recorded(m)),
    }
}

/// The governance body a signed request carries, which must be of type `expected` (the
/// signature and everything else are governance's to check).
fn body_type(body: &[u8], expected: &str) -> Result<GovBody, Problem> {
    let sign1 = confide_ledger::cose::Sign1::parse(body)
        .map_err(|e| Problem::bad_request(format!("the body is not a COSE_Sign1: {e}")))?;
    let payload = sign1
        .payload
        .as_deref()
        .ok_or_else(|| Problem::bad_request("the request has no payload"))?;
    let body = GovBody::from_json(payload)
        .map_err(|e| Problem::bad_request(format!("the request's payload: {e}")))?;
    if body.kind() != expected {
        return Err(Problem::bad_request(format!(
            "this endpoint takes requests of type {expected:?}"
        )));
    }
    Ok(body)
}

async fn found(
    State(s): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<Submitted>), Problem> {
    body_type(&body, "found")?;
    // Outside the development profile, only the founder the operator started the server with
    // founds the consortium: never whoever calls first.
    let founder = match (&s.founder, s.dev) {
        (Some(founder), _) => founder,
        (None, true) => return submit(&s, body).await,
        (None, false) => {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                "not-the-founder",
                "This server names no founder",
                "the server was started without --founder; the operator restarts it with \
                 --founder FINGERPRINT (the founding member's, from `confide member show`)",
            ));
        }
    };
    // The request's kid is checked to be the founding identity's fingerprint when the request
    // itself is checked; here it must also be the one the operator named.
    let kid_ok = confide_ledger::cose::Sign1::parse(&body)
        .ok()
        .and_then(|s1| {
            match confide_ledger::cose::get(&s1.protected_map, confide_ledger::cose::KID) {
                Some(ciborium::value::Value::Bytes(k)) => Some(hex::encode(k)),
                _ => None,
            }
        })
        .is_some_and(|kid| kid.eq_ignore_ascii_case(founder));
    if !kid_ok {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "not-the-founder",
            "Only the configured founder may found this consortium",
            "the server was started with --founder naming another member",
        ));
    }
    submit(&s, body).await
}

async fn propose(
    State(s): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<Submitted>), Problem> {
    if let GovBody::Propose { actions } = body_type(&body, "propose")? {
        for action in &actions {
            if let Action::RegisterDataset(record) = action {
                dataset_key_is_owners(&s, record)?;
            }
        }
    }
    submit(&s, body).await
}

/// A dataset is registered only over a key its owner already holds at the key broker, so no
/// member can claim another's dataset (whose key the other imported) as her own, nor register
/// one before its owner has deposited the key.
fn dataset_key_is_owners(s: &AppState, record: &DatasetRecord) -> Result<(), Problem> {
    for key in std::iter::once(&record.key).chain(&record.history_key) {
        key_is_owners(s, key, record)?;
    }
    Ok(())
}

fn key_is_owners(s: &AppState, key: &str, record: &DatasetRecord) -> Result<(), Problem> {
    let holder = s.kms.info(key).map(|k| k.owner).ok();
    if holder.as_ref() == Some(&record.owner) {
        return Ok(());
    }
    Err(Problem::new(
        StatusCode::FORBIDDEN,
        "dataset-key-not-owned",
        "A dataset is registered only over its owner's own key",
        match holder {
            Some(_) => format!("key {key:?} at the key broker belongs to another member"),
            None => format!("no key {key:?} at the key broker: its owner deposits it first"),
        },
    ))
}

async fn ballot(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Submitted>), Problem> {
    let GovBody::Ballot { proposal, .. } = body_type(&body, "ballot")? else {
        unreachable!("body_type checked the type");
    };
    if proposal != id {
        return Err(Problem::bad_request(
            "the ballot is for another proposal than the one in the path",
        ));
    }
    submit(&s, body).await
}

async fn proposals(State(s): State<AppState>) -> Result<Json<ProposalList>, Problem> {
    let gov = s.gov.read().map_err(unavailable)?;
    let mut proposals: Vec<Proposal> = gov.proposals().values().cloned().collect();
    proposals.sort_by_key(|p| p.seq);
    Ok(Json(ProposalList { proposals }))
}

async fn proposal(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Proposal>, Problem> {
    let gov = s.gov.read().map_err(unavailable)?;
    let p = gov
        .proposals()
        .get(&id)
        .ok_or_else(|| Problem::not_found(format!("no proposal {id}")))?;
    Ok(Json(p.clone()))
}

async fn members(State(s): State<AppState>) -> Result<Json<MemberList>, Problem> {
    let gov = s.gov.read().map_err(unavailable)?;
    let members = gov
        .members()
        .iter()
        .map(|(fingerprint, identity)| Member {
            fingerprint: fingerprint.clone(),
            name: identity.name().to_string(),
            identity: identity.clone(),
        })
        .collect();
    Ok(Json(MemberList { members }))
}

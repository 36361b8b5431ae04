//! The audit trail: every service's decisions and accesses, appended to the ledger as events
//! (JSON objects with a `"type"`) and durable before the request they record is answered.

use serde::Serialize;
use serde_json::Value;

use crate::auth::MemberRequest;
use crate::problem::Problem;
use crate::writer::Outcome;
use crate::{AppState, now};

/// Appends an audit event; the answer waits for it to be durable. Its position on the ledger.
pub(crate) async fn audit(s: &AppState, event: &impl Serialize) -> Result<u64, Problem> {
    let event = serde_json::to_value(event).map_err(|e| Problem::internal(e.to_string()))?;
    match s.writer.audit(&event).await {
        Outcome::Appended { seq, .. } => Ok(seq),
        Outcome::Refused(e) => Err(e.into()),
        Outcome::Failed(m) => Err(Problem::not_recorded(m)),
    }
}

/// Appends the audit event of a member's request: `event` with the request's signer, nonce and
/// time as `"request"`, which make its replay refused after a restart too
/// ([`crate::auth::replay_nonce`]).
pub(crate) async fn audit_request(
    s: &AppState,
    request: &MemberRequest,
    mut event: Value,
) -> Result<u64, Problem> {
    event["request"] =
        serde_json::to_value(&request.stamp).map_err(|e| Problem::internal(e.to_string()))?;
    audit(s, &event).await
}

/// Checks that an entry that is no governance request is an audit event as the services write
/// them: a JSON object with a string `"type"`. Anything else on a server's ledger is damage.
pub(crate) fn check_event(entry: &[u8]) -> Result<(), confide_model::ModelError> {
    #[derive(serde::Deserialize)]
    struct Typed {
        #[serde(rename = "type")]
        _kind: String,
    }
    serde_json::from_slice::<Typed>(entry)
        .map(drop)
        .map_err(|e| confide_model::ModelError::Malformed {
            field: "audit event",
            detail: format!("not a JSON object with a string \"type\" ({e})"),
        })
}

/// Settles a member's request: a refusal is recorded too (`kms.refused`, with the request's
/// stamp), so that the request's nonce stays spent after a restart, and a request refused
/// today cannot be replayed to succeed tomorrow. A success recorded its own event.
pub(crate) async fn settle<T>(
    s: &AppState,
    request: &MemberRequest,
    outcome: Result<T, Problem>,
) -> Result<T, Problem> {
    let Err(problem) = &outcome else {
        return outcome;
    };
    // The ledger could not record the request's own event: recording a refusal now could say
    // "refused" of a change the key store made. The answer says the ledger failed.
    if problem.kind == "ledger-unavailable" {
        return outcome;
    }
    // Every member reads the ledger: a refusal's words go on it only when they are about the
    // request (a client error), never the service's own failure (a path, an internal message).
    let detail = problem
        .status
        .is_client_error()
        .then(|| problem.detail.clone());
    let event = serde_json::json!({
        "type": "kms.refused", "request_type": request.body.kind(), "by": request.signer,
        "problem": problem.kind, "detail": detail, "at": now(),
    });
    audit_request(s, request, event).await?;
    outcome
}

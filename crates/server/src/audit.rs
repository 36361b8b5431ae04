//! The audit trail: every service's decisions and accesses, appended to the ledger as events
//! (JSON objects with a `"type"`) and durable before the request they record is answered.

use serde::Serialize;
use serde_json::Value;

use crate::AppState;
use crate::auth::MemberRequest;
use crate::problem::Problem;
use crate::writer::Outcome;

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

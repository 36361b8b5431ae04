//! RFC 7807 problem documents: every error a client sees, with a stable `type` to act on.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error as an HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable problem type, the last segment of its URI (e.g. `replayed-request`).
    pub kind: &'static str,
    /// A short summary of the type.
    pub title: &'static str,
    /// This occurrence, in words; never anything secret.
    pub detail: String,
    /// The URI prefix of the type: [`TYPE_BASE`], or [`KBS_TYPE_BASE`] on the KBS endpoints.
    pub base: &'static str,
}

/// The URI prefix of every problem type.
pub const TYPE_BASE: &str = "https://confide.dev/problems/";
/// The URI prefix of the KBS endpoints' problem types: Trustee's, so that its clients
/// recognise them (e.g. `.../errors/TokenNotFound`).
pub const KBS_TYPE_BASE: &str = "https://github.com/confidential-containers/kbs/errors/";

impl Problem {
    pub(crate) fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind,
            title,
            detail: detail.into(),
            base: TYPE_BASE,
        }
    }

    /// A problem of the KBS protocol, typed as Trustee types it (`name` is e.g.
    /// `TokenNotFound`).
    pub(crate) fn kbs(status: StatusCode, name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            kind: name,
            title: name,
            detail: detail.into(),
            base: KBS_TYPE_BASE,
        }
    }

    pub(crate) fn not_found(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "No such resource",
            detail,
        )
    }

    pub(crate) fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Malformed request",
            detail,
        )
    }

    /// The service failed inside (a lock, an encoding, the random generator). It says nothing
    /// of the ledger: an audit event may have been recorded before the failure.
    pub(crate) fn internal(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service-unavailable",
            "The service could not complete the request",
            detail,
        )
    }

    /// The ledger's writer could not append the request's entry: nothing of it was recorded.
    pub(crate) fn not_recorded(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ledger-unavailable",
            "The ledger could not record the request; nothing was recorded",
            detail,
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = json!({
            "type": format!("{}{}", self.base, self.kind),
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response()
    }
}

impl From<confide_gov::GovError> for Problem {
    fn from(e: confide_gov::GovError) -> Self {
        use confide_gov::GovError as G;
        let (status, kind, title) = match &e {
            G::Malformed(_) => (
                StatusCode::BAD_REQUEST,
                "malformed-request",
                "Malformed governance request",
            ),
            G::NotAMember(_) => (
                StatusCode::FORBIDDEN,
                "not-a-member",
                "Not signed by a member",
            ),
            G::BadSignature => (
                StatusCode::FORBIDDEN,
                "bad-signature",
                "The signature does not match the request",
            ),
            G::Replay => (StatusCode::CONFLICT, "replayed-request", "Replayed request"),
            G::Stale { .. } => (
                StatusCode::BAD_REQUEST,
                "stale-request",
                "The request's time is out of range",
            ),
            G::TooSlow(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "policy-too-slow",
                "A constitution did not decide within its time limit",
            ),
            G::Denied(d) => (
                StatusCode::FORBIDDEN,
                d.rule(),
                "Denied by the consortium's rules",
            ),
            _ => (
                StatusCode::CONFLICT,
                "refused",
                "Refused by the current state",
            ),
        };
        Self::new(status, kind, title, e.to_string())
    }
}

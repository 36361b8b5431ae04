//! The pure types of the consortium that every side shares: a contract's terms and its id
//! ([`Contract`]), a dataset's record ([`DatasetRecord`]), governance's bodies and actions
//! ([`GovBody`], [`Action`]), what the workload's evidence binds ([`RuntimeKeys`]), what it
//! reports of a run ([`RunReport`], signed by the attested key), and the protocol constants
//! between the workload and the services. No I/O, no server, no engine: governance, the
//! workload, the server and the CLI all read and write these, so each rule is stated once.

#![forbid(unsafe_code)]

pub mod contract;
pub mod dataset;
pub mod gov;
pub mod run;
pub mod runtime;

pub use contract::{Contract, Measurement, MinGroup, OnViolation, OutputRules};
pub use dataset::{Column, DatasetRecord, Format};
pub use gov::{
    Action, Approval, ContractList, ContractRecord, ContractState, DatasetList, GovBody, Proposal,
    ProposalList, ProposalState,
};
pub use run::{
    Refusal, RunInput, RunOutcome, RunOutput, RunRecord, RunRecordKind, RunRecorded, RunReport,
    SignedRunReport,
};
pub use runtime::RuntimeKeys;

/// The HPKE `info` under which the key broker wraps a released key to a workload's runtime key
/// (the additional data is `NAME/VERSION`).
pub const RELEASE_INFO: &[u8] = b"confide/kms/release/v1";

/// Why a body of the model was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A field is missing or malformed.
    #[error("{field}: {detail}")]
    Malformed {
        /// The field, as the wire names it.
        field: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// The signature does not verify under the key the evidence binds.
    #[error("the signature does not verify under the workload's attested signing key")]
    BadSignature,
}

pub(crate) fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn unb64url(text: &str, field: &'static str) -> Result<Vec<u8>, ModelError> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| ModelError::Malformed {
            field,
            detail: "not base64url without padding".into(),
        })
}

/// Checks that `value` is a member fingerprint: 64 lowercase hex digits.
pub fn check_fingerprint(field: &'static str, value: &str) -> Result<(), ModelError> {
    check_hex(field, value, "a member fingerprint")
}

/// Checks that `value` is a SHA-256 digest: 64 lowercase hex digits.
pub fn check_digest(field: &'static str, value: &str) -> Result<(), ModelError> {
    check_hex(field, value, "a SHA-256 digest")
}

fn check_hex(field: &'static str, value: &str, what: &str) -> Result<(), ModelError> {
    let ok = value.len() == 64
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !ok {
        return Err(ModelError::Malformed {
            field,
            detail: format!("{value:?} is not {what} (64 lowercase hex digits)"),
        });
    }
    Ok(())
}

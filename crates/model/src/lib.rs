//! The pure types of the consortium that every side shares: a contract's terms and its id
//! ([`Contract`]), a dataset's record ([`DatasetRecord`]), governance's bodies and actions
//! ([`GovBody`], [`Action`]), what the workload's evidence binds ([`RuntimeKeys`]), what it
//! reports of a run ([`RunReport`], signed by the attested key), and the protocol constants
//! between the workload and the services. No I/O, no server, no engine: governance, the
//! workload, the server and the CLI all read and write these, so each rule is stated once.

#![forbid(unsafe_code)]

pub mod attestation;
pub mod broker;
pub mod contract;
pub mod dataset;
pub mod dp;
pub mod gov;
pub mod ids;
pub mod kbs;
pub mod log;
pub mod run;
pub mod runtime;

pub use attestation::{AttestRequest, Attested, Challenge, GpuEvidence, TokenClaims};
pub use broker::{
    BrokerBody, Deleted, KekAnswer, KekEvent, KekInfo, KeyAnswer, KeyInfo, Lease, LeaseEvent,
    LeaseList, LeaseView, ReleaseRequest, Released, RenewRequest, Renewed, ResourceAnswer,
    ResourceInfo, Stamp,
};
pub use contract::{
    AnalysisRule, Contract, Measurement, MinGroup, OnViolation, OutputRules, Versions,
};
pub use dataset::{Column, DatasetRecord, DatasetVersion, Format, Privacy, Version};
pub use dp::{Bounds, Budget, Epsilon, Noise};
pub use gov::{
    Action, Approval, ContractList, ContractRecord, ContractState, DatasetList, GovBody, Member,
    MemberList, Proposal, ProposalList, ProposalState, Submitted,
};
pub use ids::{ContractId, DatasetId, MemberId, RunId};
pub use log::{Consistency, EntryPage, LatestCheckpoint, ListedEntry};
pub use run::{
    HistoryStep, Refusal, RunInput, RunOutcome, RunOutput, RunRecord, RunRecordKind, RunRecorded,
    RunReport, SignedRunReport,
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

/// An audit event the services write to the ledger and read back (to rebuild their state, or
/// as a client checking what the ledger says): a JSON object whose `"type"` is one of
/// [`Self::TYPES`].
pub trait Event: serde::de::DeserializeOwned {
    /// The `"type"`s of this event.
    const TYPES: &'static [&'static str];
    /// What a refusal names.
    const FIELD: &'static str;

    /// The event in a ledger entry, read whole: `None` for an entry of another type (or not an
    /// event), an error naming [`Self::FIELD`] for an event of one of these types that does
    /// not read as `Self`.
    fn of_entry(entry: &[u8]) -> Result<Option<Self>, ModelError> {
        #[derive(serde::Deserialize)]
        struct Typed {
            #[serde(rename = "type")]
            kind: Option<String>,
        }
        match serde_json::from_slice::<Typed>(entry) {
            Ok(Typed { kind: Some(kind) }) if Self::TYPES.contains(&kind.as_str()) => {
                broker::read(entry, Self::FIELD).map(Some)
            }
            _ => Ok(None),
        }
    }
}

/// Checks that `value` is a SHA-256 digest: 64 lowercase hex digits.
pub fn check_digest(field: &'static str, value: &str) -> Result<(), ModelError> {
    ids::check_hex(field, value, 64, "a SHA-256 digest")
}

/// Refuses JSON in which an object names a key twice. serde keeps the last value and drops the
/// first, so a signed body with `{"p": "theirs", "p": "mine"}` would say one thing to a reader
/// that keeps the first and do another: every signed body is read through this first.
pub fn unique_keys(bytes: &[u8], field: &'static str) -> Result<(), ModelError> {
    use serde::de::Deserializer as _;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    de.deserialize_any(Unique)
        .and_then(|_| de.end())
        .map_err(|e| ModelError::Malformed {
            field,
            detail: e.to_string(),
        })
}

/// Walks any JSON value, refusing an object with a key twice.
struct Unique;

impl<'de> serde::Deserialize<'de> for Unique {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Unique)
    }
}

impl<'de> serde::de::Visitor<'de> for Unique {
    type Value = Unique;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_str<E>(self, _: &str) -> Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_unit<E>(self) -> Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
        while seq.next_element::<Unique>()?.is_some() {}
        Ok(Unique)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
        let mut seen = std::collections::BTreeSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(format!(
                    "the key {key:?} appears twice in one object"
                )));
            }
            map.next_value::<Unique>()?;
        }
        Ok(Unique)
    }
}

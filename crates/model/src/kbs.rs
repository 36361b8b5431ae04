//! The Trustee KBS protocol's bodies (version 0.4), as confide's KBS endpoints read them: the
//! client's `Request` ([`KbsRequest`]), its `Attestation` answering the challenge
//! ([`KbsAttestation`]), and the report data such a client binds ([`runtime_data_digest`]).
//! The protocol leaves `runtime-data`, the evidence and `extra-params` free-form JSON; what is
//! read of them is read here.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ModelError;

/// The version of the KBS protocol confide's client and endpoints speak.
pub const PROTOCOL_VERSION: &str = "0.4.0";

/// A client's first message: `POST /kbs/v0/auth`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KbsRequest {
    /// The protocol version, `0.4.x`.
    pub version: String,
    /// The TEE kind (`sample`, `az-snp-vtpm`, `az-tdx-vtpm`).
    pub tee: String,
    /// The TEE's extra parameters (unused).
    #[serde(rename = "extra-params", default)]
    pub extra_params: Value,
}

/// The KBS's challenge, answering a [`KbsRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KbsChallenge {
    /// The nonce the evidence's runtime data must carry.
    pub nonce: String,
    /// Extra parameters (none).
    #[serde(rename = "extra-params", default)]
    pub extra_params: Value,
}

/// A client's evidence: `POST /kbs/v0/attest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KbsAttestation {
    /// Init data (refused by confide, which does not bind it yet).
    #[serde(rename = "init-data", default)]
    pub init_data: Value,
    /// What the evidence binds: at least the challenge's `nonce` and the `tee-pubkey` (a JWK).
    #[serde(rename = "runtime-data")]
    pub runtime_data: Value,
    /// The evidence.
    #[serde(rename = "tee-evidence")]
    pub tee_evidence: KbsTeeEvidence,
}

/// The evidence of a [`KbsAttestation`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KbsTeeEvidence {
    /// The TEE's evidence (its JSON as Trustee's attesters write it).
    pub primary_evidence: Value,
    /// Evidence of further devices, hashed with the runtime data.
    #[serde(default = "empty_string")]
    pub additional_evidence: Value,
}

fn empty_string() -> Value {
    Value::String(String::new())
}

impl KbsAttestation {
    /// Reads an attestation from its JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ModelError> {
        crate::broker::read(bytes, "attestation")
    }

    /// The runtime data's `nonce`.
    pub fn nonce(&self) -> Option<&str> {
        self.runtime_data.get("nonce").and_then(Value::as_str)
    }

    /// The runtime data's `tee-pubkey`: the JWK the resources are encrypted to.
    pub fn tee_pubkey(&self) -> Option<&Value> {
        self.runtime_data.get("tee-pubkey")
    }

    /// What the client hashed into its report data: the runtime data with the additional
    /// evidence added as `"additional-evidence"`.
    pub fn hashed_claims(&self) -> Value {
        hashed_claims(&self.runtime_data, &self.tee_evidence.additional_evidence)
    }

    /// The report data a KBS client binds: SHA-384 of the canonical JSON (RFC 8785) of
    /// [`Self::hashed_claims`].
    pub fn runtime_data_digest(&self) -> [u8; 48] {
        runtime_data_digest(&self.runtime_data, &self.tee_evidence.additional_evidence)
    }
}

/// The report data a KBS client binds for `runtime_data` and `additional_evidence`: SHA-384 of
/// the canonical JSON of the runtime data with `"additional-evidence"` added.
pub fn runtime_data_digest(runtime_data: &Value, additional_evidence: &Value) -> [u8; 48] {
    let claims = hashed_claims(runtime_data, additional_evidence);
    confide_crypto::digest::sha384(confide_crypto::jcs::canonical_json(&claims).as_bytes())
}

fn hashed_claims(runtime_data: &Value, additional_evidence: &Value) -> Value {
    let mut claims = runtime_data.clone();
    if let Some(m) = claims.as_object_mut() {
        m.insert("additional-evidence".into(), additional_evidence.clone());
    }
    claims
}

//! The attestation service's bodies: a challenge ([`Challenge`]), the evidence answering it
//! ([`AttestRequest`]), and the token it gives for evidence that passes ([`Attested`]).

use serde::{Deserialize, Serialize};

/// A challenge for the next evidence: `POST /attest/nonce`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Challenge {
    /// 32 random bytes, base64.
    pub nonce: String,
    /// Until when it may be answered.
    pub expires_at: i64,
}

/// Evidence to appraise: `POST /attest/{kind}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestRequest {
    /// The evidence, base64.
    pub evidence: String,
    /// Endorsements, each base64.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collateral: Vec<String>,
    /// What the evidence's report data binds, base64 (a workload's runtime keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_data: Option<String>,
    /// How: `sha256` (the default), `sha384` or `sha512`; the report data starts with the
    /// digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_data_hash: Option<String>,
    /// A challenge from `POST /attest/nonce`, base64: the report data is then
    /// `SHA-256(runtime_data) || nonce`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// GPU evidence of the same workload (NVIDIA), whose nonces the CPU evidence binds: its
    /// report data is then `SHA-256(runtime_data || nonce_1 || … || nonce_k)`, followed by the
    /// challenge if there is one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpu: Vec<GpuEvidence>,
}

/// One GPU's evidence beside a CPU's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuEvidence {
    /// The GPU's evidence, base64.
    pub evidence: String,
    /// Its endorsements, each base64.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collateral: Vec<String>,
}

/// The attestation service's answer to evidence that passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attested {
    /// The token (a JWT carrying an EAR attestation result).
    pub token: String,
    /// Until when it is valid.
    pub expires_at: i64,
    /// The CPU evidence's EAR status (`affirming`, `warning`, …).
    pub status: String,
}

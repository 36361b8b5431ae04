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

/// What the services read of a token this attestation service issued (after its signature is
/// checked): its issuer and expiry, whether it stood on simulated evidence, the runtime data
/// the evidence bound, and each CPU TEE's measurements. The rest of what a token carries (the
/// EAR status and trustworthiness vector, the appraisal policy's id, …) is for release
/// policies, which are given the whole claims as JSON. Read as a type, so that no service
/// decides on a claim it looked up by hand and defaulted when it was missing.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TokenClaims {
    /// The issuer.
    pub iss: String,
    /// Its expiry (seconds since the epoch).
    pub exp: i64,
    /// Whether any evidence behind it was simulated (this service's tokens always say).
    #[serde(rename = "confide.simulated")]
    pub simulated: bool,
    /// The runtime data the evidence bound, base64url, where it was given.
    #[serde(rename = "confide.runtime_data", default)]
    pub runtime_data: Option<String>,
    /// The KBS client's `tee-pubkey` (a JWK), where the token came from the KBS protocol.
    #[serde(rename = "confide.tee_pubkey", default)]
    pub tee_pubkey: Option<serde_json::Value>,
    /// Each CPU TEE's result, by kind.
    #[serde(default)]
    pub submods: std::collections::BTreeMap<String, TokenSubmod>,
}

/// One CPU TEE's result in a token: its verified claims.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TokenSubmod {
    /// The verified claims.
    #[serde(rename = "confide.claims")]
    pub claims: TokenTeeClaims,
}

/// The verified claims of a TEE, as far as the services read them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TokenTeeClaims {
    /// Its measurements by claim name, hex.
    #[serde(default)]
    pub measurements: std::collections::BTreeMap<String, String>,
}

impl TokenClaims {
    /// Reads a token's claims; a missing or mistyped claim is an error naming it.
    pub fn from_value(claims: &serde_json::Value) -> Result<Self, crate::ModelError> {
        Self::deserialize(claims).map_err(|e| crate::ModelError::Malformed {
            field: "token claims",
            detail: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_token_s_claims_are_read_whole_or_refused() {
        let claims = json!({"iss": "https://s", "exp": 5, "confide.simulated": false,
            "confide.runtime_data": "AA", "ear.verifier-id": {"developer": "confide"},
            "submods": {"sev-snp": {"ear.status": "affirming",
                "confide.claims": {"measurements": {"measurement": "ab"}, "debug": false}}}});
        let read = TokenClaims::from_value(&claims).unwrap();
        assert_eq!(
            read.submods["sev-snp"].claims.measurements["measurement"],
            "ab"
        );
        assert!(!read.simulated);
        // Whatever a service decides on must be there, of its type: no default stands in.
        for field in ["iss", "exp", "confide.simulated"] {
            let mut missing = claims.clone();
            missing.as_object_mut().unwrap().remove(field);
            assert!(TokenClaims::from_value(&missing).is_err(), "{field}");
        }
        let mut wrong = claims.clone();
        wrong["submods"]["sev-snp"]["confide.claims"]["measurements"]["measurement"] = json!(7);
        assert!(TokenClaims::from_value(&wrong).is_err());
    }
}

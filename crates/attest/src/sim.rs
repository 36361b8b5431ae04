//! Simulated evidence, for machines without a TEE: a JSON document signed by a development key
//! whose private half is published here, so it proves nothing about hardware. Trustee's
//! `sample` evidence (unsigned) is accepted under the same switch, so that unmodified KBS
//! clients can be tested against confide; see [`SampleVerifier`].
//!
//! It is its own kind (`sim`), always says `debug: true`, and verifies only when the caller
//! sets [`Inputs::insecure_allow_simulated_tee`]; claims made from it are marked simulated.
//! There is no fallback to it: evidence of another kind never becomes `sim`.
//!
//! Format (version 1): `{"kind":"sim","version":1,"measurement":HEX48,"report_data":HEX64,
//! "debug":true,"signature":HEX64}`; the signature is ECDSA P-256/SHA-256 (fixed `r ‖ s`) over
//! `"confide-sim-evidence-v1" ‖ measurement ‖ report_data`.

use std::collections::BTreeMap;

use confide_crypto::signing::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::claims::{Hex, Tcb, TeeKind, VerifiedClaims};
use crate::{AttestError, Collateral, Inputs, Verifier};

const CONTEXT: &[u8] = b"confide-sim-evidence-v1";

/// The development signing key, PKCS #8. Public on purpose: simulated evidence is forgeable.
const DEV_KEY_PKCS8: &str = "308187020100301306072a8648ce3d020106082a8648ce3d030107046d306b02\
01010420b0e52c83a9d39d9ec8dec9545ee96003400b1fb8c2af02754f06ca0324fd2f0aa14403420004\
19209b5cf0352ef342916ffab7418c58cc5a9d30e7bb5a2c652f9dd877aa9288e4c62917149fcc7f2d4f\
509ff3ad26f55e52e0c2cce6cbe8499839a785a26681";

/// The measurement simulated evidence reports unless told otherwise: SHA-384 of "confide-sim".
pub fn default_measurement() -> [u8; 48] {
    confide_crypto::digest::sha384(b"confide-sim")
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    kind: String,
    version: u32,
    measurement: String,
    report_data: String,
    debug: bool,
    signature: String,
}

fn dev_key() -> Result<SigningKey, AttestError> {
    let der = hex::decode(DEV_KEY_PKCS8).map_err(|_| AttestError::malformed("sim key"))?;
    SigningKey::from_pkcs8(&der).map_err(|_| AttestError::malformed("sim key"))
}

fn signed_bytes(measurement: &[u8], report_data: &[u8]) -> Vec<u8> {
    [CONTEXT, measurement, report_data].concat()
}

/// Makes simulated evidence binding `report_data`, signed with the development key.
pub fn simulate(measurement: &[u8; 48], report_data: &[u8; 64]) -> Result<Vec<u8>, AttestError> {
    let signature = dev_key()?
        .sign(&signed_bytes(measurement, report_data))
        .map_err(|_| AttestError::unsupported("signing simulated evidence"))?;
    let doc = Document {
        kind: "sim".into(),
        version: 1,
        measurement: hex::encode(measurement),
        report_data: hex::encode(report_data),
        debug: true,
        signature: hex::encode(signature),
    };
    serde_json::to_vec(&doc).map_err(|_| AttestError::unsupported("encoding simulated evidence"))
}

fn parse(evidence: &[u8]) -> Result<Document, AttestError> {
    let doc: Document = serde_json::from_slice(evidence)
        .map_err(|e| AttestError::malformed(format!("simulated evidence ({e})")))?;
    if doc.kind != "sim" || doc.version != 1 {
        return Err(AttestError::unsupported(format!(
            "simulated evidence kind {:?} version {}",
            doc.kind, doc.version
        )));
    }
    Ok(doc)
}

/// The verifier of simulated evidence.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimVerifier;

impl Verifier for SimVerifier {
    fn kind(&self) -> TeeKind {
        TeeKind::Sim
    }

    fn recognises(&self, evidence: &[u8]) -> bool {
        parse(evidence).is_ok()
    }

    fn verify(
        &self,
        evidence: &[u8],
        _collateral: &Collateral,
        inputs: &Inputs<'_>,
    ) -> Result<VerifiedClaims, AttestError> {
        if !inputs.insecure_allow_simulated_tee {
            return Err(AttestError::SimulatedNotAllowed);
        }
        let doc = parse(evidence)?;
        let field = |text: &str, len: usize, what: &str| {
            hex::decode(text)
                .ok()
                .filter(|b| b.len() == len)
                .ok_or_else(|| AttestError::malformed(format!("simulated evidence {what}")))
        };
        let measurement = field(&doc.measurement, 48, "measurement")?;
        let report_data = field(&doc.report_data, 64, "report_data")?;
        let signature = field(&doc.signature, 64, "signature")?;
        if !doc.debug {
            return Err(AttestError::malformed(
                "simulated evidence must say debug: true",
            ));
        }
        let public: VerifyingKey = dev_key()?.verifying_key();
        public
            .verify(&signed_bytes(&measurement, &report_data), &signature)
            .map_err(|_| {
                AttestError::signature("simulated evidence signed by the development key")
            })?;
        let mut measurements = BTreeMap::new();
        measurements.insert("measurement", Hex(measurement.clone()));
        Ok(VerifiedClaims {
            kind: TeeKind::Sim,
            simulated: true,
            debug: true,
            measurements,
            report_data: Hex(report_data.clone()),
            host_data: None,
            platform_id: None,
            tcb: Tcb {
                status: None,
                advisory_ids: Vec::new(),
                svns: BTreeMap::new(),
            },
            details: json!({
                "simulated": true,
                "warning": "simulated TEE: this evidence proves nothing about hardware",
                "measurement": hex::encode(&measurement),
                "report_data": hex::encode(&report_data),
            }),
            report: Hex(evidence.to_vec()),
        })
    }
}

/// Trustee's `sample` evidence, as its sample attester makes it:
/// `{"svn": STRING, "report_data": BASE64}` (standard base64, at most 64 bytes). Nothing signs
/// it, so it is verified only under [`Inputs::insecure_allow_simulated_tee`], and its claims
/// are simulated and debug, like [`SimVerifier`]'s.
#[derive(Debug, Clone, Copy, Default)]
pub struct SampleVerifier;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sample {
    svn: String,
    report_data: String,
}

fn parse_sample(evidence: &[u8]) -> Result<(String, Vec<u8>), AttestError> {
    use base64::Engine as _;
    let doc: Sample = serde_json::from_slice(evidence)
        .map_err(|e| AttestError::malformed(format!("sample evidence ({e})")))?;
    let report_data = base64::engine::general_purpose::STANDARD
        .decode(&doc.report_data)
        .ok()
        .filter(|d| d.len() <= 64)
        .ok_or_else(|| {
            AttestError::malformed("sample evidence report_data (standard base64, up to 64 bytes)")
        })?;
    Ok((doc.svn, report_data))
}

impl Verifier for SampleVerifier {
    fn kind(&self) -> TeeKind {
        TeeKind::Sample
    }

    fn recognises(&self, evidence: &[u8]) -> bool {
        parse_sample(evidence).is_ok()
    }

    fn verify(
        &self,
        evidence: &[u8],
        _collateral: &Collateral,
        inputs: &Inputs<'_>,
    ) -> Result<VerifiedClaims, AttestError> {
        if !inputs.insecure_allow_simulated_tee {
            return Err(AttestError::SimulatedNotAllowed);
        }
        let (svn, report_data) = parse_sample(evidence)?;
        Ok(VerifiedClaims {
            kind: TeeKind::Sample,
            simulated: true,
            debug: true,
            measurements: BTreeMap::new(),
            report_data: Hex(report_data.clone()),
            host_data: None,
            platform_id: None,
            tcb: Tcb {
                status: None,
                advisory_ids: Vec::new(),
                svns: BTreeMap::new(),
            },
            details: json!({
                "simulated": true,
                "warning": "Trustee sample evidence: unsigned, proves nothing about hardware",
                "svn": svn,
                "report_data": hex::encode(&report_data),
            }),
            report: Hex(evidence.to_vec()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TrustAnchors, UnixTime};

    fn inputs(anchors: &TrustAnchors, allow: bool) -> Inputs<'_> {
        Inputs {
            anchors,
            now: UnixTime::from_secs(0),
            insecure_allow_simulated_tee: allow,
        }
    }

    #[test]
    fn verifies_only_when_allowed() {
        let anchors = TrustAnchors::builtin().unwrap();
        let evidence = simulate(&default_measurement(), &[7u8; 64]).unwrap();
        let none = Collateral::new();
        let err = SimVerifier
            .verify(&evidence, &none, &inputs(&anchors, false))
            .unwrap_err();
        assert_eq!(err, AttestError::SimulatedNotAllowed);
        let claims = SimVerifier
            .verify(&evidence, &none, &inputs(&anchors, true))
            .unwrap();
        assert!(claims.simulated() && claims.debug());
        assert_eq!(claims.report_data(), &[7u8; 64]);
        assert_eq!(
            crate::detect(&evidence).map(|v| v.kind()),
            Some(TeeKind::Sim)
        );
    }

    #[test]
    fn a_changed_field_breaks_the_signature() {
        let anchors = TrustAnchors::builtin().unwrap();
        let evidence = simulate(&default_measurement(), &[7u8; 64]).unwrap();
        let text = String::from_utf8(evidence).unwrap();
        let forged = text.replacen("0707", "0708", 1);
        let err = SimVerifier
            .verify(
                forged.as_bytes(),
                &Collateral::new(),
                &inputs(&anchors, true),
            )
            .unwrap_err();
        assert!(matches!(err, AttestError::BadSignature { .. }), "{err}");
        let undebug = text.replace("\"debug\":true", "\"debug\":false");
        assert!(
            SimVerifier
                .verify(
                    undebug.as_bytes(),
                    &Collateral::new(),
                    &inputs(&anchors, true)
                )
                .is_err()
        );
    }

    #[test]
    fn sample_evidence_from_the_trustee_capture() {
        // The evidence a Trustee client sent in testdata/kbs/trustee-kbs-exchange.txt ([5]).
        let capture = include_str!("../../../testdata/kbs/trustee-kbs-exchange.txt");
        let attestation: serde_json::Value = capture
            .lines()
            .find(|l| l.starts_with(r#"{"init-data""#))
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap();
        let evidence =
            serde_json::to_vec(&attestation["tee-evidence"]["primary_evidence"]).unwrap();
        let evidence = &evidence[..];
        let anchors = TrustAnchors::builtin().unwrap();
        let none = Collateral::new();
        assert_eq!(
            SampleVerifier
                .verify(evidence, &none, &inputs(&anchors, false))
                .unwrap_err(),
            AttestError::SimulatedNotAllowed
        );
        let claims = SampleVerifier
            .verify(evidence, &none, &inputs(&anchors, true))
            .unwrap();
        assert!(claims.simulated());
        assert_eq!(claims.kind(), TeeKind::Sample);
        assert_eq!(claims.report_data().len(), 48);
        assert_eq!(
            crate::detect(evidence).map(|v| v.kind()),
            Some(TeeKind::Sample)
        );
        for bad in [
            &br#"{"report_data":"not base64!","svn":"1"}"#[..],
            br#"{"report_data":"AAAA","svn":"1","debug":false}"#,
            br#"{"report_data":"AAAA"}"#,
        ] {
            assert!(
                SampleVerifier
                    .verify(bad, &none, &inputs(&anchors, true))
                    .is_err()
            );
        }
    }
}

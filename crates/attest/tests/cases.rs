//! Every recorded case under `testdata/attestation` (real evidence from real hardware, see its
//! README) reaches the outcome, TCB status and claims its `case.json` gives, at the time it
//! gives; and is rejected as not valid one second outside its validity window.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use confide_attest::{
    AttestError, Collateral, Inputs, ReasonCode, TrustAnchors, UnixTime, VerifiedClaims, baseline,
};
use serde_json::Value;

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/attestation")
}

/// A case folder: its case.json, its evidence and the collateral beside it.
struct Case {
    dir: PathBuf,
    json: Value,
}

impl Case {
    fn load(rel: &str) -> Self {
        let dir = testdata().join(rel);
        let json = serde_json::from_slice(&std::fs::read(dir.join("case.json")).unwrap()).unwrap();
        Self { dir, json }
    }

    fn evidence(&self) -> Vec<u8> {
        let name = evidence_name(&self.json);
        confide_attest::decode_text(&std::fs::read(self.dir.join(name)).unwrap()).into_owned()
    }

    fn collateral(&self) -> Collateral {
        let mut c = Collateral::new();
        for f in self.json["files"].as_array().unwrap() {
            let role = f["role"].as_str().unwrap();
            if role.starts_with("evidence") || role.starts_with("informational") {
                continue;
            }
            let bytes = std::fs::read(self.dir.join(f["name"].as_str().unwrap())).unwrap();
            c.add(&bytes)
                .unwrap_or_else(|e| panic!("{}: {}: {e}", self.dir.display(), f["name"]));
        }
        c
    }

    fn time(&self) -> UnixTime {
        UnixTime::from_secs(self.json["verification_time"]["unix"].as_i64().unwrap())
    }

    fn expected(&self) -> &Value {
        &self.json["cases"][0]["expected"]
    }

    fn verify_at(&self, now: UnixTime) -> Result<VerifiedClaims, AttestError> {
        let anchors = TrustAnchors::builtin().unwrap();
        let evidence = self.evidence();
        let verifier = confide_attest::detect(&evidence).expect("kind detected");
        let inputs = Inputs {
            anchors: &anchors,
            now,
            insecure_allow_simulated_tee: false,
        };
        verifier.verify(&evidence, &self.collateral(), &inputs)
    }
}

/// Claims the verifier reports under another name or not at all, with the reason.
const NOT_COMPARED: &[&str] = &[
    // A property of the test data's provenance, not of the evidence.
    "pck_chain_root_is_byte_identical_to_pinned_root",
    // A distinguished name in one library's text rendering; the certificate itself is checked.
    "leaf_subject",
    // Names for features NVIDIA's opaque data may carry; neither case has them, and the
    // verifier reports every opaque field by number in `opaque_fields`.
    "feature_flag",
    "opaque_data_version",
];

fn check_case(rel: &str) {
    let case = Case::load(rel);
    let expected = case.expected();
    let claims = case
        .verify_at(case.time())
        .unwrap_or_else(|e| panic!("{rel}: expected authentic evidence, got: {e}"));
    assert_eq!(expected["authentic"], Value::Bool(true), "{rel}");
    let kind = case.json["tee"].as_str().unwrap();
    assert_eq!(claims.kind().as_str(), kind, "{rel}");

    // Outcome under the baseline policy.
    match (expected["outcome"].as_str(), baseline::appraise(&claims)) {
        (Some("valid"), Ok(())) => {}
        (Some("rejected"), Err(r)) => {
            assert_eq!(
                Some(r.code.as_str()),
                expected["reason_code"].as_str(),
                "{rel}"
            )
        }
        (want, got) => panic!("{rel}: expected outcome {want:?}, got {got:?}"),
    }

    // TCB status and advisories (DCAP), none for SNP.
    let status = claims.tcb().status.map(|s| s.as_str());
    assert_eq!(status, expected["tcb_status"].as_str(), "{rel}: TCB status");
    let advisories: Vec<&str> = expected["advisory_ids"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert_eq!(claims.tcb().advisory_ids, advisories, "{rel}: advisory ids");
    for key in [
        "platform_tcb_status",
        "qe_tcb_status",
        "tdx_module_identity",
        "matched_tcb_level",
    ] {
        if let Some(want) = expected.get(key) {
            assert_eq!(&claims.details()[key], want, "{rel}: {key}");
        }
    }

    // Every claim the case lists, by its name.
    let details = claims.details();
    for (key, want) in expected["claims"].as_object().unwrap() {
        if NOT_COMPARED.contains(&key.as_str()) {
            continue;
        }
        let got = details
            .get(key)
            .unwrap_or_else(|| panic!("{rel}: claim {key} missing"));
        assert_eq!(got, want, "{rel}: claim {key}");
    }
    let report_data = &expected["claims"]["report_data"];
    let nonce = &expected["claims"]["nonce"];
    let bound = if report_data.is_string() {
        report_data
    } else {
        nonce
    };
    assert_eq!(
        hex::encode(claims.report_data()),
        bound.as_str().unwrap(),
        "{rel}"
    );

    // One second outside the window: not valid at that time.
    for boundary in case.json["time_boundary_checks"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let t = UnixTime::from_secs(boundary["unix"].as_i64().unwrap());
        let err = case.verify_at(t).expect_err("outside the validity window");
        assert_eq!(
            err.reason_code(),
            ReasonCode::NotValidAtTime,
            "{rel} at {t}: {err}"
        );
    }
}

#[test]
fn snp_milan_vcek_report_v2() {
    check_case("snp/S1-trustee-milan-vcek");
}

#[test]
fn snp_milan_vlek_report_v3() {
    check_case("snp/S2-trustee-milan-vlek");
}

#[test]
fn snp_debug_guest_is_authentic_but_rejected() {
    check_case("snp/S3-go-sev-guest-milan");
}

#[test]
fn snp_report_as_hex_text() {
    check_case("snp/S4-virtee-milan");
}

#[test]
fn snp_azure_container_instances() {
    check_case("snp/S7-aci-milan");
}

#[test]
fn tdx_quote_v4_up_to_date() {
    check_case("tdx/T1-dcap-qvl-v4");
}

#[test]
fn tdx_quote_v5_tcb_not_supported() {
    check_case("tdx/T2-dcap-qvl-v5-tcb-not-supported");
}

#[test]
fn tdx_raw_pcs_collateral_tcb_not_supported() {
    check_case("tdx/T4-go-tdx-guest-spr-e4");
}

#[test]
fn tdx_without_crls() {
    check_case("tdx/T6-go-tdx-qpl");
}

#[test]
fn sgx_quote_v3_configuration_and_sw_hardening_needed() {
    check_case("sgx/G1-dcap-qvl");
}

#[test]
fn sgx_raw_pcs_collateral_sw_hardening_needed() {
    check_case("sgx/G4-automata");
}

#[test]
fn nvidia_hopper_with_fwid() {
    check_case("nvidia/N1-nvtrust-hopper");
}

#[test]
fn nvidia_hopper_older_driver_without_fwid() {
    check_case("nvidia/N3-go-nvtrust-hopper");
}

/// Without the vendor's root, the same evidence fails closed.
#[test]
fn without_the_vendor_root_nothing_verifies() {
    for (rel, anchors) in [
        (
            "snp/S1-trustee-milan-vcek",
            TrustAnchors::builtin().unwrap().without_amd(),
        ),
        (
            "tdx/T1-dcap-qvl-v4",
            TrustAnchors::builtin().unwrap().without_intel(),
        ),
        (
            "sgx/G1-dcap-qvl",
            TrustAnchors::builtin().unwrap().without_intel(),
        ),
    ] {
        let case = Case::load(rel);
        let evidence = case.evidence();
        let inputs = Inputs {
            anchors: &anchors,
            now: case.time(),
            insecure_allow_simulated_tee: false,
        };
        let err = confide_attest::detect(&evidence)
            .unwrap()
            .verify(&evidence, &case.collateral(), &inputs)
            .unwrap_err();
        assert!(
            matches!(err, AttestError::UntrustedRoot { .. }),
            "{rel}: {err}"
        );
    }
}

/// Evidence without the collateral that endorses it cannot be decided, so it is refused.
#[test]
fn missing_collateral_is_refused_by_name() {
    for rel in ["snp/S1-trustee-milan-vcek", "tdx/T1-dcap-qvl-v4"] {
        let case = Case::load(rel);
        let anchors = TrustAnchors::builtin().unwrap();
        let evidence = case.evidence();
        let inputs = Inputs {
            anchors: &anchors,
            now: case.time(),
            insecure_allow_simulated_tee: false,
        };
        let err = confide_attest::detect(&evidence)
            .unwrap()
            .verify(&evidence, &Collateral::new(), &inputs)
            .unwrap_err();
        assert_eq!(err.reason_code(), ReasonCode::Undetermined, "{rel}: {err}");
    }
}

/// A quote verified by the wrong kind's verifier, or bytes of no known kind, are refused.
#[test]
fn kinds_are_not_confused() {
    let case = Case::load("tdx/T1-dcap-qvl-v4");
    let anchors = TrustAnchors::builtin().unwrap();
    let inputs = Inputs {
        anchors: &anchors,
        now: case.time(),
        insecure_allow_simulated_tee: true,
    };
    let evidence = case.evidence();
    for kind in [
        confide_attest::TeeKind::Sgx,
        confide_attest::TeeKind::SevSnp,
        confide_attest::TeeKind::Sim,
    ] {
        let v = confide_attest::verifier(kind).unwrap();
        assert!(
            v.verify(&evidence, &case.collateral(), &inputs).is_err(),
            "{kind}"
        );
    }
    assert!(confide_attest::detect(b"not evidence").is_none());
}

/// The evidence file of a case: named by the case, or the file whose role is evidence.
fn evidence_name(case: &Value) -> &str {
    case["cases"][0]["evidence"].as_str().unwrap_or_else(|| {
        case["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["role"].as_str().unwrap().starts_with("evidence"))
            .and_then(|f| f["name"].as_str())
            .unwrap()
    })
}

/// Checks `got` against `want`: objects key by key for the keys `want` has, the rest equal.
fn assert_subset(got: &Value, want: &Value, path: &str) {
    match want {
        Value::Object(map) => {
            for (k, w) in map {
                let g = got
                    .get(k)
                    .unwrap_or_else(|| panic!("{path}.{k} missing in {got}"));
                assert_subset(g, w, &format!("{path}.{k}"));
            }
        }
        _ => assert_eq!(got, want, "{path}"),
    }
}

/// The Azure vTPM cases: each evidence form (Trustee JSON v0, v1, v2, and the separate files
/// of the first case) verifies, binds the expected nonce, and gives the recorded claims.
fn check_azure(rel: &str) {
    use base64::Engine as _;
    let case = Case::load(rel);
    let anchors = TrustAnchors::builtin().unwrap();
    let inputs = Inputs {
        anchors: &anchors,
        now: case.time(),
        insecure_allow_simulated_tee: false,
    };
    let read = |name: &str| std::fs::read(case.dir.join(name)).unwrap();
    let mut checked = 0;
    for c in case.json["cases"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let expected = &c["expected"];
        if expected["authentic"].is_null() {
            continue; // the orphan TPM quote: no key verifies it (see the folder's case.json)
        }
        let mut collateral = Collateral::new();
        let evidence = if name.starts_with("evidence-") {
            read(name.split_whitespace().next().unwrap())
        } else {
            // hcl-report.bin + tpm-quote-v1.json [+ td-quote.bin] [+ vcek.pem], as Trustee v1.
            let tpm: Value = serde_json::from_slice(&read("tpm-quote-v1.json")).unwrap();
            let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
            let mut doc = serde_json::json!({
                "version": 1,
                "hcl_report": b64(&read("hcl-report.bin")),
                "tpm_quote": tpm,
            });
            if case.dir.join("td-quote.bin").exists() {
                doc["td_quote"] = Value::from(b64(&read("td-quote.bin")));
            }
            if case.dir.join("vcek.pem").exists() {
                collateral.add(&read("vcek.pem")).unwrap();
            }
            serde_json::to_vec(&doc).unwrap()
        };
        let verifier = confide_attest::detect(&evidence).expect("Azure evidence detected");
        let claims = verifier
            .verify(&evidence, &collateral, &inputs)
            .unwrap_or_else(|e| panic!("{rel} {name}: {e}"));
        assert_eq!(claims.kind().as_str(), case.json["tee"].as_str().unwrap());
        assert_eq!(expected["outcome"], "valid");
        baseline::appraise(&claims).unwrap();
        assert_eq!(
            hex::encode(claims.report_data()),
            c["inputs"]["expected_report_data_hex"].as_str().unwrap(),
            "{rel} {name}: the TPM nonce"
        );
        for (key, want) in expected["claims"].as_object().unwrap() {
            if NOT_COMPARED.contains(&key.as_str()) {
                continue;
            }
            let got = claims
                .details()
                .get(key)
                .unwrap_or_else(|| panic!("{rel} {name}: claim {key} missing"));
            assert_subset(got, want, &format!("{rel} {name}: {key}"));
        }
        checked += 1;
    }
    assert!(checked >= 1);
}

#[test]
fn azure_snp_vtpm_every_evidence_form() {
    check_azure("azure-snp-vtpm");
}

#[test]
fn azure_tdx_vtpm() {
    check_azure("azure-tdx-vtpm");
}

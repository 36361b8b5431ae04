//! `confide attest`, run as a user would: the real binary on the recorded evidence.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/attestation")
        .join(rel)
}

fn confide(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_confide"))
        .args(args)
        .output()
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn verifies_snp_and_prints_claims() {
    let (ev, vcek) = (
        testdata("snp/S1-trustee-milan-vcek/test-report.bin"),
        testdata("snp/S1-trustee-milan-vcek/test-vcek.der"),
    );
    let out = confide(&[
        "attest",
        "verify",
        "--evidence",
        ev.to_str().unwrap(),
        "--collateral",
        vcek.to_str().unwrap(),
        "--at",
        "2025-06-01T00:00:00Z",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json(&out);
    assert_eq!(doc["kind"], "sev-snp");
    assert_eq!(doc["outcome"], "valid");
    assert_eq!(
        doc["claims"]["measurements"]["measurement"],
        "a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f63fd75d98f1ef827c23500644e0e692e6be917f9050d3d38c"
    );

    // Outside the VCEK's validity: refused, by name.
    let out = confide(&[
        "attest",
        "verify",
        "--evidence",
        ev.to_str().unwrap(),
        "--collateral",
        vcek.to_str().unwrap(),
        "--at",
        "2030-01-24T17:58:27Z",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("NOT_VALID_AT_TIME") && err.contains("VCEK certificate"),
        "{err}"
    );
}

#[test]
fn debug_guest_and_unsupported_tcb_exit_non_zero() {
    let out = confide(&[
        "attest",
        "verify",
        "--evidence",
        testdata("snp/S3-go-sev-guest-milan/attestation.bin")
            .to_str()
            .unwrap(),
        "--collateral",
        testdata("snp/S3-go-sev-guest-milan/vcek.testcer")
            .to_str()
            .unwrap(),
        testdata("snp/S3-go-sev-guest-milan/milan.testcer")
            .to_str()
            .unwrap(),
        "--at",
        "2025-06-01T00:00:00Z",
        "--json",
    ]);
    assert!(!out.status.success());
    let doc = json(&out);
    assert_eq!(
        (doc["authentic"].as_bool(), doc["reason_code"].as_str()),
        (Some(true), Some("DEBUG_ENABLED"))
    );

    let dir = "tdx/T2-dcap-qvl-v5-tcb-not-supported";
    let out = confide(&[
        "attest",
        "verify",
        "--evidence",
        testdata(&format!("{dir}/tdx_quote_outdated"))
            .to_str()
            .unwrap(),
        "--collateral",
        testdata(&format!("{dir}/tdx_quote_outdated_collateral.json"))
            .to_str()
            .unwrap(),
        "--at",
        "2026-02-19T10:58:51Z",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("TCB_LEVEL_NOT_SUPPORTED"));
}

#[test]
fn a_tampered_quote_is_invalid_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let mut quote = std::fs::read(testdata("tdx/T1-dcap-qvl-v4/tdx_quote")).unwrap();
    quote[200] ^= 0x01; // inside the TD report body
    let tampered = dir.path().join("quote");
    std::fs::write(&tampered, &quote).unwrap();
    let out = confide(&[
        "attest",
        "verify",
        "--evidence",
        tampered.to_str().unwrap(),
        "--collateral",
        testdata("tdx/T1-dcap-qvl-v4/tdx_quote_collateral.json")
            .to_str()
            .unwrap(),
        "--at",
        "2025-06-20T10:32:27Z",
        "--json",
    ]);
    assert!(!out.status.success());
    let doc = json(&out);
    assert_eq!(doc["authentic"], false);
    assert_eq!(doc["reason_code"], "INVALID_EVIDENCE");
    assert!(
        doc["reason"]
            .as_str()
            .unwrap()
            .contains("quote signed by its attestation key")
    );
}

#[test]
fn simulated_evidence_needs_the_insecure_switch() {
    let dir = tempfile::tempdir().unwrap();
    let out = confide(&["attest", "collect", "--nonce", "00112233", "--sim"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("SIMULATED TEE"));
    let evidence = dir.path().join("sim.json");
    std::fs::write(&evidence, &out.stdout).unwrap();

    let out = confide(&["attest", "verify", "--evidence", evidence.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("SIMULATED_TEE"));

    let out = confide(&[
        "attest",
        "verify",
        "--evidence",
        evidence.to_str().unwrap(),
        "--insecure-allow-simulated-tee",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json(&out);
    assert_eq!(doc["kind"], "sim");
    assert_eq!(doc["claims"]["simulated"], true);
    assert!(
        doc["claims"]["report_data"]
            .as_str()
            .unwrap()
            .starts_with("00112233000000")
    );

    // Without --sim on a machine without a TEE: an error, not a silent fallback.
    if !Path::new("/sys/kernel/config/tsm/report").exists() && !Path::new("/dev/sev-guest").exists()
    {
        let out = confide(&["attest", "collect", "--nonce", "00"]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("no TEE found"));
    }
}

//! `confide ledger`, run as a user would: the real binary on real CCF receipts and on a ledger
//! in a temporary directory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn receipts(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/receipts")
        .join(rel)
        .to_str()
        .unwrap()
        .to_owned()
}

fn confide(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_confide"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn ccf_receipts_verify_only_against_their_service() {
    for n in ["1", "2"] {
        let r = receipts(&format!("ccf-json-receipt-{n}/receipt.json"));
        let c = receipts(&format!("ccf-json-receipt-{n}/service_cert.pem"));
        let out = confide(&[
            "ledger",
            "verify-receipt",
            "--ccf",
            &r,
            "--service-cert",
            &c,
            "--json",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["verified"], true);
        let digest = doc["claims_digest"].as_str().unwrap().to_owned();
        let ok = confide(&[
            "ledger",
            "verify-receipt",
            "--ccf",
            &r,
            "--service-cert",
            &c,
            "--entry-digest",
            &digest,
        ]);
        assert!(ok.status.success());
        let other = confide(&[
            "ledger",
            "verify-receipt",
            "--ccf",
            &r,
            "--service-cert",
            &c,
            "--entry-digest",
            &"ab".repeat(32),
        ]);
        assert!(!other.status.success());
        assert!(
            stderr(&other).contains("another entry"),
            "{}",
            stderr(&other)
        );
    }
    let wrong = confide(&[
        "ledger",
        "verify-receipt",
        "--ccf",
        &receipts("ccf-json-receipt-1/receipt.json"),
        "--service-cert",
        &receipts("ccf-json-receipt-2/service_cert.pem"),
    ]);
    assert!(!wrong.status.success());
    assert!(
        stderr(&wrong).contains("does not verify"),
        "{}",
        stderr(&wrong)
    );
}

#[test]
fn a_local_ledger_appends_verifies_and_gives_receipts() {
    let dir = tempfile::tempdir().unwrap();
    let l = dir.path().join("ledger");
    let l = l.to_str().unwrap();
    let file = |name: &str, body: &str| -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    let (a, b) = (file("a", "approve contract 7"), file("b", "release key k1"));
    let out = confide(&[
        "ledger",
        "append",
        l,
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = confide(&["ledger", "verify", l, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (doc["entries"].as_u64(), doc["checkpoints"].as_u64()),
        (Some(2), Some(1))
    );

    let r = dir.path().join("r.cose");
    let out = confide(&[
        "ledger",
        "get",
        l,
        "1",
        "--receipt",
        "--out",
        r.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let key = format!("{l}/ledger.pub");
    let ok = confide(&[
        "ledger",
        "verify-receipt",
        r.to_str().unwrap(),
        "--entry",
        b.to_str().unwrap(),
        "--key",
        &key,
    ]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let wrong = confide(&[
        "ledger",
        "verify-receipt",
        r.to_str().unwrap(),
        "--entry",
        a.to_str().unwrap(),
        "--key",
        &key,
    ]);
    assert!(!wrong.status.success());

    // One changed byte in the segment: verify fails and says where.
    let seg = std::fs::read_dir(format!("{l}/segments"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[60] ^= 0x20;
    std::fs::write(&seg, &bytes).unwrap();
    let out = confide(&["ledger", "verify", l]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(".seg at offset 0"),
        "{}",
        stderr(&out)
    );
}

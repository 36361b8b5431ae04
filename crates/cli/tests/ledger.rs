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

/// An auditor who kept a checkpoint accepts a ledger that extends it, and refuses one that was
/// rolled back or rebuilt with another history (here: the same key, an entry left out), however
/// well the rebuilt ledger verifies on its own.
#[test]
fn a_ledger_must_extend_the_checkpoint_seen_before() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, body: &str| -> String {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let (approve, revoke, again) = (
        file("a", "approve contract 7"),
        file("r", "revoke contract 7"),
        file("x", "release key k1"),
    );
    let ledger = dir.path().join("ledger");
    let l = ledger.to_str().unwrap();
    let append = |l: &str, files: &[&str]| {
        let mut args = vec!["ledger", "append", l];
        args.extend_from_slice(files);
        let out = confide(&args);
        assert!(out.status.success(), "{}", stderr(&out));
    };
    let verify =
        |l: &str, since: &str| confide(&["ledger", "verify", l, "--since", since, "--json"]);
    append(l, &[&approve, &revoke]);
    let out = confide(&["ledger", "verify", l, "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let seen = format!("2:{}", doc["root"].as_str().unwrap());
    // Kept as a member keeps it, in a file.
    let kept = file(
        "checkpoint.json",
        &serde_json::json!({"tree_size": 2, "root": doc["root"]}).to_string(),
    );

    append(l, &[&again]);
    for since in [&seen, &kept] {
        let out = verify(l, since);
        assert!(out.status.success(), "{since}: {}", stderr(&out));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["extends"]["tree_size"], 2);
    }

    // The operator rebuilds the ledger with the same key, without the revocation.
    let rebuilt = dir.path().join("rebuilt");
    std::fs::create_dir_all(&rebuilt).unwrap();
    std::fs::copy(ledger.join("ledger.key"), rebuilt.join("ledger.key")).unwrap();
    let r = rebuilt.to_str().unwrap();
    append(r, &[&approve, &again]);
    assert!(confide(&["ledger", "verify", r]).status.success());
    let out = verify(r, &seen);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("forked"), "{}", stderr(&out));

    // Or serves an older copy: shorter than what was seen.
    let older = dir.path().join("older");
    std::fs::create_dir_all(&older).unwrap();
    std::fs::copy(ledger.join("ledger.key"), older.join("ledger.key")).unwrap();
    append(older.to_str().unwrap(), &[&approve]);
    let out = verify(older.to_str().unwrap(), &kept);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("rolled back"), "{}", stderr(&out));

    // A checkpoint that is neither form is named as such.
    let out = verify(l, "two:zz");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--since"), "{}", stderr(&out));
}

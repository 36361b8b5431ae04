//! The sealed profile with the real binary on loopback: `confide kms init` makes k-of-n
//! recovery shares; `confide serve` without `--dev` starts sealed, refuses every service, and
//! opens when k shares are given with `confide kms unseal`; bad shares are named and change
//! nothing; after a restart it is sealed again and any k shares open the same store. The master
//! key (rebuilt here from the shares) is in no file the server wrote, and neither is any
//! signing key in the clear.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use serde_json::{Value, json};

fn confide(home: &Path, server: &str, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_confide"))
        .args(["--home", home.to_str().unwrap(), "--server", server])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn status(url: &str, path: &str) -> u16 {
    agent()
        .get(format!("{url}{path}"))
        .call()
        .unwrap()
        .status()
        .as_u16()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The master key the shares rebuild, by the share format of docs/kms.md.
fn master_from(shares: &[&str]) -> Vec<u8> {
    let shares: Vec<confide_crypto::shamir::Share> = shares
        .iter()
        .map(|s| {
            let fields: Vec<&str> = s.split('-').collect();
            confide_crypto::shamir::Share {
                x: fields[5].parse().unwrap(),
                y: zeroize::Zeroizing::new(hex::decode(fields[6]).unwrap()),
            }
        })
        .collect();
    confide_crypto::shamir::combine(&shares).unwrap().to_vec()
}

#[test]
fn a_sealed_server_opens_only_with_its_shares() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let home = dir.path().join("home");
    let none = "http://127.0.0.1:9";

    let out = confide(
        &home,
        none,
        &[
            "kms",
            "init",
            "--data",
            data.to_str().unwrap(),
            "--shares",
            "3",
            "--threshold",
            "2",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    let printed = String::from_utf8(out.stdout).unwrap();
    let shares: Vec<&str> = printed.lines().collect();
    assert_eq!(shares.len(), 3);
    // A second init is refused and changes nothing.
    let again = confide(
        &home,
        none,
        &["kms", "init", "--data", data.to_str().unwrap()],
        None,
    );
    assert!(!again.status.success());
    // The development profile refuses a sealed store.
    let dev = Command::new(env!("CARGO_BIN_EXE_confide"))
        .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!dev.status.success());
    assert!(text(&dev).contains("sealed key store"), "{}", text(&dev));

    // Sealed: every service refuses with 503 until the threshold.
    let s = Server::start_sealed(&data, &[]);
    let u = s.url.clone();
    assert_eq!(status(&u, "/ledger/entries"), 503);
    assert_eq!(status(&u, "/.well-known/jwks.json"), 503);
    let typo = shares[0].replacen('-', "_", 1);
    let out = confide(&home, &u, &["kms", "unseal"], Some(&typo));
    assert!(!out.status.success());
    let out = confide(&home, &u, &["kms", "unseal"], Some(shares[0]));
    assert!(text(&out).contains("1 of 2"), "{}", text(&out));
    assert_eq!(status(&u, "/ledger/entries"), 503);
    let out = confide(&home, &u, &["kms", "unseal"], Some(shares[1]));
    assert!(text(&out).contains("unsealed"), "{}", text(&out));
    assert_eq!(status(&u, "/ledger/entries"), 200);

    // Open, but started without --founder: no one founds it, not even the first caller.
    assert!(
        confide(&home, &u, &["member", "init", "--name", "alice"], None)
            .status
            .success()
    );
    let out = confide(&home, &u, &["gov", "found"], None);
    assert!(!out.status.success());
    assert!(text(&out).contains("--founder"), "{}", text(&out));
    s.kill();
    let shown = String::from_utf8(confide(&home, none, &["member", "show"], None).stdout).unwrap();
    let fingerprint = shown
        .split("in full: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap()
        .to_owned();
    let s = Server::start_sealed(&data, &["--founder", &fingerprint]);
    let u = s.url.clone();
    for share in &shares[..2] {
        confide(&home, &u, &["kms", "unseal"], Some(share));
    }
    // The founder the operator named founds it, and makes a key.
    let out = confide(&home, &u, &["gov", "found"], None);
    assert!(out.status.success(), "{}", text(&out));
    // No default releases a key: the owner is asked who may have it.
    let out = confide(&home, &u, &["kms", "create", "dek-1"], None);
    assert!(!out.status.success());
    assert!(text(&out).contains("--dataset-policy"), "{}", text(&out));
    let out = confide(
        &home,
        &u,
        &["kms", "create", "dek-1", "--any-attested-tee"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));

    // Governance may set an appraisal policy that allows simulated evidence; a sealed server
    // still refuses it, and issues no token on it.
    let permissive = confide_server::DEFAULT_APPRAISAL.replace(
        "insecure_allow_simulated_tee if input.profile.insecure_allow_simulated_tee == true",
        "insecure_allow_simulated_tee if true",
    );
    assert_ne!(permissive, confide_server::DEFAULT_APPRAISAL);
    let actions = dir.path().join("permissive.json");
    std::fs::write(
        &actions,
        json!([{"action": "set_policy", "name": "appraisal", "rego": permissive}]).to_string(),
    )
    .unwrap();
    let out = confide(
        &home,
        &u,
        &["gov", "propose", actions.to_str().unwrap()],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    let proposal = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    let out = confide(&home, &u, &["gov", "vote", &proposal, "--approve"], None);
    assert!(text(&out).contains("accepted"), "{}", text(&out));
    let runtime = [7u8; 32];
    let (code, r) = post_json(
        &format!("{u}/attest/sim"),
        &json!({"evidence": b64(&sim_evidence(&[1u8; 48], &runtime)), "runtime_data": b64(&runtime)}),
    );
    assert_eq!(
        (code, r["type"].as_str()),
        (403, Some("https://confide.dev/problems/evidence-rejected")),
        "a sealed server appraised simulated evidence: {r}"
    );
    s.kill();

    // Restarted: sealed again; another pair of shares opens the same store.
    let s = Server::start_sealed(&data, &[]);
    let u = s.url.clone();
    assert_eq!(status(&u, "/ledger/entries"), 503);
    confide(&home, &u, &["kms", "unseal"], Some(shares[2]));
    let out = confide(&home, &u, &["kms", "unseal"], Some(shares[0]));
    assert!(text(&out).contains("unsealed"), "{}", text(&out));
    let out = confide(&home, &u, &["kms", "rotate", "dek-1"], None);
    assert!(text(&out).contains("version 2"), "{}", text(&out));
    let status_doc: Value =
        serde_json::from_slice(&confide(&home, &u, &["kms", "status"], None).stdout).unwrap();
    assert_eq!(status_doc["sealed"], false);
    s.kill();

    // No file holds the master key, and the signing keys are not plain PKCS #8.
    let master = master_from(&shares[..2]);
    assert_eq!(master, master_from(&shares[1..]));
    let mut files = vec![data.clone()];
    let mut scanned = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes.windows(32).any(|w| w == master),
            "{}",
            path.display()
        );
        assert!(!String::from_utf8_lossy(&bytes).contains(&hex::encode(&master)));
        if path.extension().is_some_and(|e| e == "key") {
            assert!(
                confide_crypto::signing::SigningKey::from_pkcs8(&bytes).is_err(),
                "{} is a plain key",
                path.display()
            );
        }
        scanned += 1;
    }
    assert!(scanned > 4, "{scanned}");
}

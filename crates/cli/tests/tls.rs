//! HTTPS: `confide serve` makes its certificate on first start (issued by a CA of its own
//! whose key it forgets), prints what to pin, and serves plain HTTP only on loopback or in the
//! development profile. Clients trust only what they pin with `--ca`: an unpinned server, a
//! server with another CA, and plain HTTP to the TLS port are all refused before any request
//! is made.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

fn confide(home: &Path, server: &str, ca: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_confide"));
    cmd.args(["--home", home.to_str().unwrap(), "--server", server]);
    if let Some(ca) = ca {
        cmd.args(["--ca", ca.to_str().unwrap()]);
    }
    cmd.args(args).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// SHA-256 of the first certificate in a PEM file, hex.
fn fingerprint(pem: &Path) -> String {
    let text = std::fs::read_to_string(pem).unwrap();
    let der = confide_crypto::pem_decode(&text, "CERTIFICATE").unwrap();
    hex::encode(confide_crypto::digest::sha256(&der))
}

#[test]
fn clients_trust_only_the_certificate_they_pin() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::start_with(&data, &["--tls"]);
    assert!(s.url.starts_with("https://127.0.0.1:"), "{}", s.url);
    let ca = data.join("tls/ca.pem");
    let log = std::fs::read_to_string(s.log.path()).unwrap();
    assert!(
        log.contains(&format!("SHA-256 {}", fingerprint(&ca))),
        "the fingerprint to pin is not printed: {log}"
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(data.join("tls/server.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the TLS key is readable by others");

    let home = dir.path().join("home");
    assert!(
        confide(&home, &s.url, None, &["member", "init", "--name", "alice"])
            .status
            .success()
    );
    // Unpinned (the Mozilla roots): the made certificate is not trusted; nothing is founded.
    let out = confide(&home, &s.url, None, &["gov", "found"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).to_lowercase().contains("certificate"),
        "{}",
        stderr(&out)
    );
    // Another server's CA: refused too.
    let other_data = dir.path().join("other");
    let other = Server::start_with(&other_data, &["--tls"]);
    let foreign = other_data.join("tls/ca.pem");
    let out = confide(&home, &s.url, Some(&foreign), &["gov", "found"]);
    assert!(!out.status.success(), "a foreign CA was trusted");
    other.kill();
    // Plain HTTP to the TLS port: no answer to act on.
    let plain = s.url.replacen("https://", "http://", 1);
    let out = confide(&home, &plain, Some(&ca), &["gov", "found"]);
    assert!(!out.status.success());
    // A file that is not a certificate: a clear error before any request.
    let out = confide(
        &home,
        &s.url,
        Some(&data.join("tls/server.key")),
        &["gov", "found"],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--ca"), "{}", stderr(&out));
    let ledger = s.url.clone() + "/ledger/entries?limit=0";
    let pinned = confide_client::Client::with_ca(&s.url, &std::fs::read(&ca).unwrap()).unwrap();
    assert_eq!(
        pinned.get("/ledger/entries?limit=0").unwrap()["size"],
        0,
        "a refused client changed the ledger ({ledger})"
    );

    // Pinned: it works, for every command.
    let out = confide(&home, &s.url, Some(&ca), &["gov", "found"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = confide(&home, &s.url, Some(&ca), &["gov", "members"]);
    assert!(out.status.success(), "{}", stderr(&out));
    s.kill();

    // Restarted: the same certificate, so what members pinned still holds.
    let before = fingerprint(&ca);
    let s = Server::start_with(&data, &["--tls"]);
    assert_eq!(fingerprint(&ca), before);
    let out = confide(&home, &s.url, Some(&ca), &["gov", "members"]);
    assert!(out.status.success(), "{}", stderr(&out));
    s.kill();
}

/// Off loopback and outside the development profile, HTTPS is the default: the sealed server
/// on every interface says https, and says nothing of plain HTTP.
#[test]
fn off_loopback_the_server_speaks_only_https() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let init = confide(
        &dir.path().join("home"),
        "http://127.0.0.1:9",
        None,
        &[
            "kms",
            "init",
            "--data",
            data.to_str().unwrap(),
            "--shares",
            "2",
            "--threshold",
            "2",
        ],
    );
    assert!(init.status.success(), "{}", stderr(&init));
    let s = Server::start_at(&data, "0.0.0.0:0", &[]);
    assert!(s.url.starts_with("https://0.0.0.0:"), "{}", s.url);
    s.kill();
    assert!(data.join("tls/ca.pem").exists());
}

//! The server's state (leases, run records, the nonces of members' requests) is rebuilt from
//! the audit events on its ledger when it opens. An event that does not read whole is damage,
//! and the server refuses to open on it, naming the entry, rather than rebuild a state with a
//! default in its place (a lease of version 0, a forgotten nonce).
//!
//! Each case is a real ledger in a temporary directory, signed with the server's own key, as
//! an operator with the data directory could write it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use confide_crypto::signing::SigningKey;
use confide_server::{Config, ServeError};

fn config(data: &std::path::Path) -> Config {
    Config {
        data: data.to_owned(),
        dev: true,
        founder: None,
        issuer: "http://127.0.0.1".into(),
        rotate_token_key: false,
        retire_token_keys: Vec::new(),
        token_lifetime: 300,
    }
}

/// Opens a server over a ledger holding `entries`; its error, if it refuses.
fn open_over(entries: &[&str]) -> Result<(), ServeError> {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate().unwrap();
    std::fs::write(dir.path().join("ledger.key"), &*key.to_pkcs8().unwrap()).unwrap();
    let (mut ledger, _) = confide_ledger::Ledger::open(&dir.path().join("ledger"), key).unwrap();
    let entries: Vec<Vec<u8>> = entries.iter().map(|e| e.as_bytes().to_vec()).collect();
    ledger.append(&entries, 1).unwrap();
    drop(ledger);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async { confide_server::open(&config(dir.path()), None).map(drop) })
}

const RELEASE: &str = r#"{"type":"kms.release","key":"k","version":2,"lease":"l1","token":"t","runtime_key":"r","simulated":true,"at":5,"expires":605}"#;
const RENEW: &str = r#"{"type":"kms.renew","key":"k","lease":"l1","at":6,"expires":606}"#;
const STAMPED: &str = r#"{"type":"kms.refused","request_type":"kms.delete","by":"a","problem":"not-found","detail":"","at":5,"request":{"signer":"0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a","nonce":"00ff","ts":5}}"#;

#[test]
fn a_ledger_of_whole_events_opens() {
    open_over(&[RELEASE, RENEW, STAMPED]).unwrap();
}

/// Events as earlier versions of confide wrote them still open: leases without their expiry
/// or the evidence's simulation, and run records from before run reports were signed.
#[test]
fn a_ledger_an_earlier_version_wrote_opens() {
    open_over(&[
        r#"{"type":"kms.release","key":"k","version":1,"lease":"l0","token":"t","runtime_key":"r","at":5}"#,
        r#"{"type":"kms.renew","key":"k","lease":"l0","at":6}"#,
        r#"{"type":"cleanroom.run","run":"r0","contract":"c","token":"t","simulated":true,"at":7,"inputs":[],"output":{}}"#,
        r#"{"type":"cleanroom.refused","run":"r1","contract":"c","reason":"too few","at":8}"#,
    ])
    .unwrap();
}

#[test]
fn a_damaged_event_stops_the_start_and_names_its_entry() {
    let cases: &[(&str, &[&str], u64)] = &[
        ("not JSON", &[RELEASE, "release key k1"], 1),
        ("JSON but not an object", &["[1,2]"], 0),
        (
            "a type that is not a string",
            &[r#"{"type":5,"key":"k"}"#],
            0,
        ),
        ("no type", &[r#"{"key":"k"}"#], 0),
        (
            "a release without its version",
            &[
                r#"{"type":"kms.release","key":"k","lease":"l1","token":"t","runtime_key":"r","simulated":true,"at":5,"expires":605}"#,
            ],
            0,
        ),
        (
            "a release with a version as text",
            &[&RELEASE.replace("\"version\":2", "\"version\":\"2\"")],
            0,
        ),
        (
            "a release with a field it never has",
            &[&RELEASE.replace("\"at\":5", "\"at\":5,\"admin\":true")],
            0,
        ),
        ("a renewal of a lease never granted", &[RENEW], 0),
        ("a renewal before its release", &[RENEW, RELEASE], 0),
        (
            "a request stamp without its nonce",
            &[r#"{"type":"kms.create","key":"k","request":{"signer":"a","ts":5}}"#],
            0,
        ),
        (
            "a request stamp whose nonce is not hex",
            &[&STAMPED.replace("00ff", "zz")],
            0,
        ),
        (
            "a signed run record that does not read whole",
            &[r#"{"type":"cleanroom.run","run":"x","signature":"s","extra":1}"#],
            0,
        ),
    ];
    for (what, entries, at) in cases {
        match open_over(entries) {
            Err(ServeError::Event { seq, error }) => {
                assert_eq!(seq, *at, "{what}: {error}");
                assert!(
                    error.to_string().contains(':'),
                    "{what}: the error names no field: {error}"
                );
            }
            Err(other) => panic!("{what}: refused for another reason: {other}"),
            Ok(()) => panic!("{what}: the server opened over it"),
        }
    }
}

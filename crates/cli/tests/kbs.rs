//! Conformance of `confide serve` to the Trustee KBS protocol, version 0.4.0, on loopback with
//! the real binary: the exchange of testdata/kbs/trustee-kbs-exchange.txt (Trustee's server
//! and client, captured on the wire) replayed against confide message by message, with the
//! same paths, header names, field names, status codes and encodings; then every refusal
//! (each changes nothing and is typed as Trustee types it), the audit trail on the ledger, and
//! the resource never stored in the clear.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use base64::Engine as _;
use common::*;
use confide_crypto::jwe::DecryptionKey;
use serde_json::{Value, json};

const ERRORS: &str = "https://github.com/confidential-containers/kbs/errors/";
const SECRET: &[u8] = b"the demo resource: 38 bytes of secret!";

/// An HTTP answer: status, headers we look at, JSON body.
struct Answer {
    status: u16,
    cookie: Option<String>,
    content_type: String,
    body: Value,
}

fn send(request: ureq::RequestBuilder<ureq::typestate::WithBody>, body: &str) -> Answer {
    answer(request.send(body).unwrap())
}

fn answer(mut r: ureq::http::Response<ureq::Body>) -> Answer {
    let header = |name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (cookie, content_type) = (
        header("set-cookie"),
        header("content-type").unwrap_or_default(),
    );
    Answer {
        status: r.status().as_u16(),
        cookie,
        content_type,
        body: r.body_mut().read_json().unwrap_or(Value::Null),
    }
}

/// The request the Trustee client sends first (byte for byte, from the capture).
const AUTH: &str = r#"{"version":"0.4.0","tee":"sample","extra-params":{"supported-hash-algorithms":["sha256","sha384","sha512","sm3"]}}"#;

fn auth(url: &str, body: &str) -> Answer {
    send(
        agent()
            .post(format!("{url}/kbs/v0/auth"))
            .header("content-type", "application/json"),
        body,
    )
}

fn attest(url: &str, cookie: &str, body: &Value) -> Answer {
    send(
        agent()
            .post(format!("{url}/kbs/v0/attest"))
            .header("content-type", "application/json")
            .header("cookie", cookie),
        &body.to_string(),
    )
}

fn resource(url: &str, path: &str, header: Option<(&str, &str)>) -> Answer {
    let mut r = agent().get(format!("{url}/kbs/v0/resource/{path}"));
    if let Some((name, value)) = header {
        r = r.header(name, value);
    }
    answer(r.call().unwrap())
}

/// The Attestation payload the Trustee client builds: sample evidence whose report data is
/// SHA-384 of the canonical runtime data.
fn attestation(nonce: &str, jwk: &Value) -> Value {
    let runtime_data = json!({"nonce": nonce, "tee-pubkey": jwk});
    let digest = confide_model::kbs::runtime_data_digest(&runtime_data, &json!(""));
    json!({
        "init-data": null,
        "runtime-data": runtime_data,
        "tee-evidence": {
            "primary_evidence": {
                "report_data": base64::engine::general_purpose::STANDARD.encode(digest),
                "svn": "1",
            },
            "additional_evidence": "",
        },
    })
}

/// A session: its cookie (`kbs-session-id=…`) and nonce.
fn session(url: &str) -> (String, String) {
    let a = auth(url, AUTH);
    assert_eq!(a.status, 200, "{}", a.body);
    let cookie = a.cookie.unwrap().split(';').next().unwrap().to_owned();
    (cookie, a.body["nonce"].as_str().unwrap().to_owned())
}

/// The resource policy these guests can meet: they send Trustee's `sample` evidence, which
/// measures nothing, so only the development profile's simulated-evidence policy (chosen,
/// never a default) gives them a resource; "any attested TEE" does not
/// (`crates/policy/tests/release.rs`).
const ATTESTED: &str = confide_kms::INSECURE_SIMULATED_RESOURCE_POLICY;

fn put(
    url: &str,
    member: &Member,
    path: &str,
    content: &[u8],
    policy: Option<&str>,
) -> (u16, Value) {
    let mut body = json!({
        "type": "kbs.put", "path": path,
        "content": base64::engine::general_purpose::STANDARD.encode(content),
    });
    if let Some(p) = policy {
        body["policy"] = json!(p);
    }
    let r = agent()
        .post(format!("{url}/kbs/v0/resource/{path}"))
        .header("content-type", "application/cose")
        .send(&member.sign(&body)[..])
        .unwrap();
    let a = answer(r);
    (a.status, a.body)
}

fn found(url: &str, member: &Member) {
    let r = agent()
        .post(format!("{url}/gov/found"))
        .header("content-type", "application/cose")
        .send(&member.sign(&json!({"type": "found", "member": member.doc()}))[..])
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
}

#[test]
fn a_trustee_client_exchange_replayed_against_confide() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let url = server.url.clone();
    let alice = Member::new("alice");
    found(&url, &alice);
    let (status, r) = put(&url, &alice, "default/key/demo", SECRET, Some(ATTESTED));
    assert_eq!(status, 201, "{r}");

    // [1]-[2]: no session, no token: 401 TokenNotFound as an RFC 7807 document.
    let a = resource(&url, "default/key/demo", None);
    assert_eq!(a.status, 401);
    assert_eq!(a.body["type"], format!("{ERRORS}TokenNotFound"));
    assert_eq!(a.content_type, "application/problem+json");

    // [3]-[4]: the challenge, and the session cookie with its expiry.
    let a = auth(&url, AUTH);
    assert_eq!(a.status, 200);
    assert_eq!(a.content_type, "application/json");
    let set_cookie = a.cookie.clone().unwrap();
    let (cookie, expires) = set_cookie.split_once("; Expires=").unwrap();
    let id = cookie.strip_prefix("kbs-session-id=").unwrap();
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    assert!(expires.ends_with(" GMT"), "{expires}");
    assert_eq!(a.body["extra-params"], "");
    let nonce = a.body["nonce"].as_str().unwrap().to_owned();
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(&nonce)
            .unwrap()
            .len(),
        32
    );

    // [5]-[6]: the attestation; the token is this service's, for the tee-pubkey.
    let key = DecryptionKey::generate_p256().unwrap();
    let jwk = key.public_jwk().unwrap();
    let a = attest(&url, cookie, &attestation(&nonce, &jwk));
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.cookie.as_deref().map(|c| c.split(';').next().unwrap()),
        Some(cookie)
    );
    let token = a.body["token"].as_str().unwrap().to_owned();
    let jwks: Value = agent()
        .get(format!("{url}/.well-known/jwks.json"))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    let claims = confide_server::verify_jwt(&token, &jwks).expect("the token verifies");
    assert_eq!(claims["confide.tee_pubkey"], jwk);
    assert_eq!(claims["confide.simulated"], true);
    assert_eq!(claims["submods"]["sample"]["ear.status"], "warning");
    assert_eq!(
        claims["confide.runtime_data_claims"]["nonce"].as_str(),
        Some(nonce.as_str())
    );

    // [7]-[8]: the resource, a flattened JWE to the tee-pubkey with exactly Trustee's members.
    let a = resource(&url, "default/key/demo", Some(("cookie", cookie)));
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.content_type, "application/json");
    let mut members: Vec<&str> = a
        .body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    members.sort_unstable();
    assert_eq!(
        members,
        ["ciphertext", "encrypted_key", "iv", "protected", "tag"]
    );
    assert_eq!(&key.decrypt(&a.body).unwrap()[..], SECRET);
    // Another key cannot open it.
    assert!(
        DecryptionKey::generate_p256()
            .unwrap()
            .decrypt(&a.body)
            .is_err()
    );

    // The token also works as a bearer token, and an RSA tee-pubkey gets RSA-OAEP-256.
    let a = resource(
        &url,
        "default/key/demo",
        Some(("authorization", &format!("Bearer {token}"))),
    );
    assert_eq!(&key.decrypt(&a.body).unwrap()[..], SECRET);
    let rsa = DecryptionKey::generate_rsa().unwrap();
    let (cookie2, nonce2) = session(&url);
    let a = attest(
        &url,
        &cookie2,
        &attestation(&nonce2, &rsa.public_jwk().unwrap()),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let a = resource(&url, "default/key/demo", Some(("cookie", &cookie2)));
    assert_eq!(&rsa.decrypt(&a.body).unwrap()[..], SECRET);

    // The real CLI: put as a member, get as a workload.
    let home = dir.path().join("home");
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_confide"))
            .args(["--home", home.to_str().unwrap(), "--server", &url])
            .args(args)
            .output()
            .unwrap()
    };
    assert!(cli(&["member", "init", "--name", "bob"]).status.success());
    // bob is no member yet: refused.
    std::fs::write(dir.path().join("res"), b"bob's secret").unwrap();
    let out = cli(&[
        "kbs",
        "put-resource",
        "bob/key/one",
        dir.path().join("res").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let out = cli(&[
        "kbs",
        "get-resource",
        "default/key/demo",
        "--insecure-sample",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, SECRET);

    // Audit: the put and every release are on the ledger.
    let events = ledger_events(&url);
    let count = |t: &str| events.iter().filter(|e| e["type"] == t).count();
    assert_eq!(count("kbs.put"), 1);
    assert_eq!(count("kbs.release"), 4);

    // The resource is nowhere in the clear in the server's files.
    for entry in walk(&dir.path().join("data")) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET),
            "{} holds the resource",
            entry.display()
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode(SECRET);
        assert!(!String::from_utf8_lossy(&bytes).contains(&b64));
    }
    server.kill();
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn every_refusal_is_typed_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let url = server.url.clone();
    let (alice, mallory) = (Member::new("alice"), Member::new("mallory"));
    found(&url, &alice);
    assert_eq!(
        put(&url, &alice, "default/key/demo", SECRET, Some(ATTESTED)).0,
        201
    );
    // Stored without a policy: given to no one (default deny).
    assert_eq!(
        put(&url, &alice, "default/key/locked", b"locked", None).0,
        201
    );
    let entries_before = ledger_events(&url).len();

    let key = DecryptionKey::generate_p256().unwrap();
    let jwk = key.public_jwk().unwrap();
    let kind = |a: &Answer| {
        a.body["type"]
            .as_str()
            .unwrap_or_default()
            .replace(ERRORS, "")
    };

    // The Request: malformed, another protocol version, a TEE the KBS endpoints don't take.
    let a = auth(&url, "{not json");
    assert_eq!((a.status, kind(&a).as_str()), (400, "InvalidRequest"));
    let a = auth(&url, &AUTH.replace("0.4.0", "0.1.0"));
    assert_eq!((a.status, kind(&a).as_str()), (400, "ProtocolVersion"));
    let a = auth(&url, &AUTH.replace("sample", "snp"));
    assert_eq!(a.status, 400);
    assert!(
        a.body["detail"].as_str().unwrap().contains("/attest/"),
        "{}",
        a.body
    );

    // The Attestation: no cookie, an unknown cookie, malformed JSON.
    let (cookie, nonce) = session(&url);
    let good = attestation(&nonce, &jwk);
    let a = attest(&url, "kbs-session-id=00", &good);
    assert_eq!((a.status, kind(&a).as_str()), (401, "TokenNotFound"));
    let a = send(
        agent()
            .post(format!("{url}/kbs/v0/attest"))
            .header("content-type", "application/json"),
        &good.to_string(),
    );
    assert_eq!((a.status, kind(&a).as_str()), (401, "TokenNotFound"));
    let a = send(
        agent()
            .post(format!("{url}/kbs/v0/attest"))
            .header("cookie", &cookie),
        "{\"runtime-data\":",
    );
    assert_eq!((a.status, kind(&a).as_str()), (400, "InvalidRequest"));
    // Another nonce (an answer to another challenge).
    let (_, other_nonce) = session(&url);
    let a = attest(&url, &cookie, &attestation(&other_nonce, &jwk));
    assert_eq!((a.status, kind(&a).as_str()), (401, "AttestationFailed"));
    // Evidence for another runtime key: the report data binds another tee-pubkey.
    let other = DecryptionKey::generate_p256()
        .unwrap()
        .public_jwk()
        .unwrap();
    let mut swapped = attestation(&nonce, &other);
    swapped["runtime-data"]["tee-pubkey"] = jwk.clone();
    let a = attest(&url, &cookie, &swapped);
    assert_eq!((a.status, kind(&a).as_str()), (401, "AttestationFailed"));
    assert!(
        a.body["detail"].as_str().unwrap().contains("runtime data"),
        "{}",
        a.body
    );
    // A tee-pubkey that is no usable key; init-data, which confide does not bind yet.
    let mut bad_key = jwk.clone();
    bad_key["crv"] = json!("P-384");
    let a = attest(&url, &cookie, &attestation(&nonce, &bad_key));
    assert_eq!((a.status, kind(&a).as_str()), (400, "InvalidRequest"));
    let mut with_init = good.clone();
    with_init["init-data"] = json!({"format": "toml", "body": "x"});
    let a = attest(&url, &cookie, &with_init);
    assert_eq!(a.status, 400);
    // Nothing so far gave the session a token.
    let a = resource(&url, "default/key/demo", Some(("cookie", &cookie)));
    assert_eq!((a.status, kind(&a).as_str()), (401, "TokenNotFound"));
    // The good answer works once; the same answer again is a replay.
    assert_eq!(attest(&url, &cookie, &good).status, 200);
    let a = attest(&url, &cookie, &good);
    assert_eq!((a.status, kind(&a).as_str()), (400, "InvalidRequest"));

    // The Response: no such resource, a policy that says no, a path that is no path.
    let a = resource(&url, "default/key/missing", Some(("cookie", &cookie)));
    assert_eq!((a.status, kind(&a).as_str()), (404, "ResourceNotFound"));
    let a = resource(&url, "default/key/locked", Some(("cookie", &cookie)));
    assert_eq!((a.status, kind(&a).as_str()), (403, "PolicyDeny"));
    let a = resource(&url, "default/key/..bad", Some(("cookie", &cookie)));
    assert_eq!(a.status, 400);
    // A tampered or foreign bearer token.
    let a = resource(
        &url,
        "default/key/demo",
        Some(("authorization", "Bearer e30.e30.AAAA")),
    );
    assert_eq!((a.status, kind(&a).as_str()), (401, "TokenNotFound"));

    // Storing: unsigned, by a non-member, a tampered signature, over another owner's resource.
    let a = send(
        agent()
            .post(format!("{url}/kbs/v0/resource/x/y/z"))
            .header("content-type", "application/cose"),
        "{}",
    );
    assert!(a.status == 400 || a.status == 403, "{}", a.status);
    assert_eq!(put(&url, &mallory, "x/y/z", b"m", None).0, 403);
    let mut signed = alice.sign(&json!({"type": "kbs.put", "path": "x/y/z", "content": "bQ=="}));
    let at = signed.len() - 10;
    signed[at] ^= 1;
    let r = agent()
        .post(format!("{url}/kbs/v0/resource/x/y/z"))
        .header("content-type", "application/cose")
        .send(&signed[..])
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    // An oversized body is refused before it is read whole.
    let big = vec![b'a'; (1 << 20) + 1];
    let r = agent()
        .post(format!("{url}/kbs/v0/attest"))
        .header("cookie", &cookie)
        .send(&big[..])
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);

    // What changed: only the one deny was audited; the locked resource is still alice's alone.
    let events = ledger_events(&url);
    assert_eq!(events.len(), entries_before + 1, "{events:?}");
    assert_eq!(events.last().unwrap()["type"], "kbs.deny");
    server.kill();
}

#[test]
fn the_load_generator_runs_complete_rounds() {
    let out = Command::new(env!("CARGO_BIN_EXE_confide"))
        .args([
            "bench",
            "kbs",
            "--clients",
            "1,2",
            "--seconds",
            "0.5",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), 2);
    for (r, clients) in results.iter().zip([1, 2]) {
        assert_eq!(r["clients"], clients);
        assert!(r["rounds"].as_u64().unwrap() > 0, "{r}");
        assert!(
            r["p99_ms"].as_f64().unwrap() >= r["p50_ms"].as_f64().unwrap(),
            "{r}"
        );
    }
}

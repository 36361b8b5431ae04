//! `confide serve` on loopback, driven over HTTP as members would: governance, the requests
//! that must be refused (each changing nothing), receipts checked offline, and the crash test:
//! the server under sustained appends is killed with SIGKILL at random moments, 50 times, and
//! every acknowledged entry survives each restart; the ledger verifies at the end.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;

use common::*;

fn size(url: &str) -> u64 {
    get_json(&format!("{url}/ledger/entries?limit=0"))["size"]
        .as_u64()
        .unwrap()
}

#[test]
fn governance_over_http_and_every_refusal_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let (a, b, mallory) = (
        Member::new("bank-a"),
        Member::new("bank-b"),
        Member::new("mallory"),
    );
    let u = &s.url;

    let (status, r) = post(
        &format!("{u}/gov/found"),
        &a.sign(&json!({"type": "found", "member": a.doc()})),
    );
    assert_eq!((status, r["seq"].as_u64()), (201, Some(0)));
    let proposal = a.sign(
        &json!({"type": "propose", "actions": [{"action": "add_member", "member": b.doc()}]}),
    );
    let (status, r) = post(&format!("{u}/gov/proposals"), &proposal);
    assert_eq!(status, 201);
    let id = r["proposal"].as_str().unwrap().to_owned();
    let before = size(u);

    let problem = |status: u16, r: &Value, kind: &str| {
        assert_eq!(
            r["type"],
            format!("{}{kind}", confide_server::TYPE_BASE),
            "{r}"
        );
        assert_eq!(r["status"], status);
        assert!(r["detail"].as_str().is_some_and(|d| !d.is_empty()));
    };

    // A ballot by someone who is not a member.
    let (status, r) = post(
        &format!("{u}/gov/proposals/{id}/ballots"),
        &mallory.sign(&json!({"type": "ballot", "proposal": id, "vote": true})),
    );
    assert_eq!(status, 403);
    problem(403, &r, "not-a-member");

    // A proposal whose signature does not match its body.
    let mut forged = a.sign(
        &json!({"type": "propose", "actions": [{"action": "add_member", "member": mallory.doc()}]}),
    );
    let at = forged.windows(6).position(|w| w == b"mallor").unwrap();
    forged[at] = b'M';
    let (status, r) = post(&format!("{u}/gov/proposals"), &forged);
    assert_eq!(status, 403);
    problem(403, &r, "bad-signature");

    // The same proposal again: a replay.
    let (status, r) = post(&format!("{u}/gov/proposals"), &proposal);
    assert_eq!(status, 409);
    problem(409, &r, "replayed-request");

    // Malformed bodies, a ballot posted under another proposal's path, an oversized body.
    let (status, r) = post(&format!("{u}/gov/proposals"), b"{\"not\": \"cose\"}");
    assert_eq!(status, 400);
    problem(400, &r, "bad-request");
    let ballot = a.sign(&json!({"type": "ballot", "proposal": id, "vote": true}));
    let (status, _) = post(
        &format!("{u}/gov/proposals/{}/ballots", "00".repeat(32)),
        &ballot,
    );
    assert_eq!(status, 400);
    // One byte over the 1 MiB limit: the server reads it all before refusing, so the answer is
    // not raced by a reset of a connection with unread bytes (as a far larger body would be).
    let (status, _) = post(&format!("{u}/gov/proposals"), &vec![0u8; (1 << 20) + 1]);
    assert_eq!(status, 413);
    assert_eq!(size(u), before, "a refused request changed the ledger");

    // The real ballot is accepted; b is a member; the receipt verifies offline.
    let (status, r) = post(&format!("{u}/gov/proposals/{id}/ballots"), &ballot);
    assert_eq!((status, r["state"].as_str()), (201, Some("accepted")));
    let members = get_json(&format!("{u}/gov/members"));
    assert_eq!(members["members"].as_array().unwrap().len(), 2);
    let seq = r["seq"].as_u64().unwrap();
    let (status, receipt) = get_bytes(&format!("{u}/ledger/entries/{seq}/receipt"));
    assert_eq!(status, 200);
    let key = confide_crypto::signing::VerifyingKey::from_spki_pem(
        &std::fs::read_to_string(dir.path().join("ledger/ledger.pub")).unwrap(),
    )
    .unwrap();
    let v = confide_ledger::receipt::verify_receipt(&receipt, &ballot, &key).unwrap();
    assert_eq!(v.index, seq);
    let cp = get_json(&format!("{u}/ledger/checkpoints/latest"));
    assert_eq!(cp["root"], hex::encode(v.root));
    let c = get_json(&format!("{u}/ledger/consistency?from=1&to={}", seq + 1));
    let proof: Vec<Vec<u8>> = c["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| hex::decode(h.as_str().unwrap()).unwrap())
        .collect();
    confide_ledger::merkle::verify_consistency(
        1,
        seq + 1,
        &hex::decode(c["root_from"].as_str().unwrap()).unwrap(),
        &hex::decode(c["root_to"].as_str().unwrap()).unwrap(),
        &proof,
    )
    .unwrap();
    s.kill();
}

/// A handler that answers without reading its body (here the challenge, which needs none) must
/// not cost the client its keep-alive connection. The body is sent only after the server has had
/// the headers for a while, as a loaded client's second write can be; a second request follows
/// on the same connection and must be answered too.
#[test]
fn a_connection_stays_reusable_when_the_body_arrives_late() {
    use std::io::{Read as _, Write as _};
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let mut conn = std::net::TcpStream::connect(s.url.trim_start_matches("http://")).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.write_all(
        b"POST /attest/nonce HTTP/1.1\r\nhost: confide\r\ncontent-type: application/json\r\n\
          content-length: 2\r\n\r\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // Either write may fail if the server has closed the connection; what was answered shows.
    let _ = conn.write_all(b"{}").and_then(|()| {
        conn.write_all(b"GET /gov/members HTTP/1.1\r\nhost: confide\r\nconnection: close\r\n\r\n")
    });
    let mut answers = Vec::new();
    let _ = conn.read_to_end(&mut answers); // keeps what arrived before an error
    let answers = String::from_utf8_lossy(&answers);
    let statuses: Vec<&str> = answers
        .match_indices("HTTP/1.1 ")
        .map(|(at, _)| &answers[at + 9..at + 12])
        .collect();
    assert_eq!(statuses, ["200", "200"], "{answers}");
}

#[test]
fn every_acknowledged_entry_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let a = Arc::new(Member::new("bank-a"));
    let s = Server::start(dir.path());
    let (status, _) = post(
        &format!("{}/gov/found", s.url),
        &a.sign(&json!({"type": "found", "member": a.doc()})),
    );
    assert_eq!(status, 201);
    s.kill();

    // (seq, bytes) of every acknowledged request.
    type Acked = Arc<Mutex<Vec<(u64, Vec<u8>)>>>;
    let acked: Acked = Arc::new(Mutex::new(Vec::new()));
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let started = Instant::now();
    for round in 0..50 {
        let s = Server::start(dir.path());
        // Everything acknowledged before is still there, byte for byte.
        for (seq, bytes) in acked.lock().unwrap().iter() {
            let (status, got) = get_bytes(&format!("{}/ledger/entries/{seq}", s.url));
            assert_eq!(status, 200, "round {round}: entry {seq} lost");
            assert_eq!(&got, bytes, "round {round}: entry {seq} changed");
        }
        // Sustained appends from three clients, then SIGKILL at a random moment.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clients: Vec<_> = (0..3)
            .map(|_| {
                let (url, a, acked, stop) = (s.url.clone(), a.clone(), acked.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut sent = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) && sent < 40 {
                        let body = a.sign(&json!({"type": "propose", "actions": [
                            {"action": "set_policy", "name": format!("p{sent}"), "rego": "package p"}
                        ]}));
                        let (status, r) = post(&format!("{url}/gov/proposals"), &body);
                        if status == 201 {
                            acked.lock().unwrap().push((r["seq"].as_u64().unwrap(), body));
                        } else if status == 0 {
                            return; // killed
                        }
                        sent += 1;
                    }
                })
            })
            .collect();
        // The kill lands at a random moment of sustained appends: after the first few are
        // acknowledged (a loaded machine may take a while to start the server), then a random
        // 20–170 ms more.
        let before = acked.lock().unwrap().len();
        let waiting = Instant::now();
        while acked.lock().unwrap().len() < before + 3
            && waiting.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(20 + rng % 150));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        s.kill();
        for c in clients {
            c.join().unwrap();
        }
    }
    let total = acked.lock().unwrap().len();
    assert!(
        total > 100,
        "only {total} entries were acknowledged in 50 rounds"
    );

    // A last restart checks the final round's entries; then the whole ledger verifies offline.
    let s = Server::start(dir.path());
    for (seq, bytes) in acked.lock().unwrap().iter() {
        assert_eq!(
            &get_bytes(&format!("{}/ledger/entries/{seq}", s.url)).1,
            bytes
        );
    }
    s.kill();
    let out = Command::new(env!("CARGO_BIN_EXE_confide"))
        .args(["ledger", "verify"])
        .arg(dir.path().join("ledger"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "crash test: {total} acknowledged entries over 50 SIGKILLs in {:?}",
        started.elapsed()
    );
}

fn testdata(rel: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/attestation")
            .join(rel),
    )
    .unwrap()
}

#[test]
fn the_attestation_service_issues_tokens_any_jwt_library_can_check() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let u = &s.url;
    let openid = get_json(&format!("{u}/.well-known/openid-configuration"));
    assert_eq!(openid["issuer"], u.as_str());
    let jwks_uri = openid["jwks_uri"].as_str().unwrap().to_owned();

    // Simulated evidence binding a workload key: accepted in the development profile, marked.
    let workload_key = b"an ephemeral public key";
    let m = confide_attest::sim::default_measurement();
    let request = json!({"evidence": b64(&sim_evidence(&m, workload_key)), "runtime_data": b64(workload_key)});
    let (status, r) = post_json(&format!("{u}/attest/sim"), &request);
    assert_eq!(status, 200, "{r}");
    let token = r["token"].as_str().unwrap().to_owned();
    let claims = confide_server::verify_jwt(&token, &get_json(&jwks_uri)).expect("token verifies");
    assert_eq!(claims["iss"], u.as_str());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        300
    );
    assert_eq!(claims["eat_profile"], "tag:github.com,2023:veraison/ear");
    assert_eq!(claims["submods"]["sim"]["ear.status"], "warning");
    assert_eq!(claims["confide.simulated"], true);
    let mut forged = token.clone();
    forged.insert(
        forged.len() - 5,
        if forged.ends_with('A') { 'B' } else { 'A' },
    );
    assert!(
        confide_server::verify_jwt(&forged.replacen('.', ".e", 1), &get_json(&jwks_uri)).is_err()
    );

    // The same evidence for another key: not bound.
    let (status, r) = post_json(
        &format!("{u}/attest/sim"),
        &json!({"evidence": request["evidence"], "runtime_data": b64(b"another key")}),
    );
    assert_eq!(
        (status, r["type"].as_str()),
        (
            403,
            Some("https://confide.dev/problems/runtime-data-not-bound")
        )
    );

    // Real SEV-SNP evidence (its VCEK is valid until 2030): authentic, but a warning at best
    // while the consortium trusts no SEV-SNP measurement (default deny: no affirming token for
    // code nobody said they trust).
    let (status, r) = post_json(
        &format!("{u}/attest/sev-snp"),
        &json!({
            "evidence": b64(&testdata("snp/S1-trustee-milan-vcek/test-report.bin")),
            "collateral": [b64(&testdata("snp/S1-trustee-milan-vcek/test-vcek.der"))],
        }),
    );
    assert_eq!(status, 200, "{r}");
    let claims =
        confide_server::verify_jwt(r["token"].as_str().unwrap(), &get_json(&jwks_uri)).unwrap();
    assert_eq!(claims["submods"]["sev-snp"]["ear.status"], "warning");
    assert_eq!(
        claims["submods"]["sev-snp"]["ear.trustworthiness-vector"]["executables"],
        0
    );
    assert_eq!(
        claims["submods"]["sev-snp"]["confide.claims"]["measurements"]["measurement"],
        "a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f63fd75d98f1ef827c23500644e0e692e6be917f9050d3d38c"
    );
    // The VCEK was kept: the same evidence verifies without it, offline.
    let s1_alone = json!({"evidence": b64(&testdata("snp/S1-trustee-milan-vcek/test-report.bin"))});
    let (status, r) = post_json(&format!("{u}/attest/sev-snp"), &s1_alone);
    assert_eq!(status, 200, "{r}");
    let kept = get_json(&format!("{u}/collateral"));
    assert_eq!(kept["bundles"][0]["kind"], "sev-snp", "{kept}");
    // Another chip's evidence finds no VCEK of its own among the kept ones, and says so.
    let (status, r) = post_json(
        &format!("{u}/attest/sev-snp"),
        &json!({"evidence": b64(&testdata("snp/S2-trustee-milan-vlek/test-vlek-report.bin"))}),
    );
    assert_eq!(status, 403, "{r}");
    assert!(
        r["detail"]
            .as_str()
            .unwrap()
            .contains("kept for 1 platform"),
        "{r}"
    );

    // A debug guest: denied by the policy, naming the rule and the claim.
    let (status, r) = post_json(
        &format!("{u}/attest/sev-snp"),
        &json!({
            "evidence": b64(&testdata("snp/S3-go-sev-guest-milan/attestation.bin")),
            "collateral": [b64(&testdata("snp/S3-go-sev-guest-milan/vcek.testcer"))],
        }),
    );
    assert_eq!(status, 403);
    assert_eq!(r["type"], "https://confide.dev/problems/appraisal-denied");
    assert!(
        r["detail"]
            .as_str()
            .unwrap()
            .contains("rule debug on claim debug"),
        "{r}"
    );

    // A changed byte in the report: the evidence is rejected, with its reason code.
    let mut report = testdata("snp/S1-trustee-milan-vcek/test-report.bin");
    report[0x90] ^= 1;
    let (status, r) = post_json(
        &format!("{u}/attest/sev-snp"),
        &json!({
            "evidence": b64(&report),
            "collateral": [b64(&testdata("snp/S1-trustee-milan-vcek/test-vcek.der"))],
        }),
    );
    assert_eq!(
        (status, r["type"].as_str()),
        (403, Some("https://confide.dev/problems/evidence-rejected"))
    );
    assert!(r["detail"].as_str().unwrap().contains("INVALID_EVIDENCE"));

    // Malformed requests and unknown kinds.
    let (status, _) = post_json(
        &format!("{u}/attest/sim"),
        &json!({"evidence": "not base64!"}),
    );
    assert_eq!(status, 400);
    let (status, _) = post_json(&format!("{u}/attest/sim"), &json!({"evidance": "typo"}));
    assert_eq!(status, 400);
    let (status, _) = post_json(&format!("{u}/attest/quantum"), &request);
    assert_eq!(status, 404);

    // Trusted measurements, set by governance, are enforced.
    let a = Member::new("bank-a");
    post(
        &format!("{u}/gov/found"),
        &a.sign(&json!({"type": "found", "member": a.doc()})),
    );
    // Another kind's trusted measurement says nothing of this one's code.
    enact(
        u,
        &a,
        json!([{"action": "add_measurement", "kind": "tdx", "value": "cd".repeat(48)}]),
    );
    let (status, r) = post_json(&format!("{u}/attest/sim"), &request);
    assert_eq!(status, 200, "{r}");
    let claims =
        confide_server::verify_jwt(r["token"].as_str().unwrap(), &get_json(&jwks_uri)).unwrap();
    assert_eq!(
        claims["submods"]["sim"]["ear.trustworthiness-vector"]["executables"], 0,
        "a sim token was matched against TDX measurements"
    );
    let trusted = hex::encode(m);
    enact(
        u,
        &a,
        json!([{"action": "add_measurement", "kind": "sim", "value": trusted}]),
    );
    let other = [7u8; 48];
    let (status, r) = post_json(
        &format!("{u}/attest/sim"),
        &json!({"evidence": b64(&sim_evidence(&other, workload_key))}),
    );
    assert_eq!(status, 403, "{r}");
    assert!(
        r["detail"].as_str().unwrap().contains("rule measurement"),
        "{r}"
    );
    let (status, r) = post_json(&format!("{u}/attest/sim"), &request);
    assert_eq!(status, 200, "{r}");
    let claims =
        confide_server::verify_jwt(r["token"].as_str().unwrap(), &get_json(&jwks_uri)).unwrap();
    assert_eq!(
        claims["submods"]["sim"]["ear.trustworthiness-vector"]["executables"],
        2
    );
    assert_eq!(
        claims["submods"]["sim"]["ear.status"], "warning",
        "simulated evidence is never affirming"
    );
    // Once the consortium trusts its measurement, the real SEV-SNP evidence is affirming.
    enact(
        u,
        &a,
        json!([{"action": "add_measurement", "kind": "sev-snp",
                "value": "a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f63fd75d98f1ef827c23500644e0e692e6be917f9050d3d38c"}]),
    );
    let (status, r) = post_json(&format!("{u}/attest/sev-snp"), &s1_alone);
    assert_eq!(status, 200, "{r}");
    let claims =
        confide_server::verify_jwt(r["token"].as_str().unwrap(), &get_json(&jwks_uri)).unwrap();
    assert_eq!(claims["submods"]["sev-snp"]["ear.status"], "affirming");
    s.kill();

    // Rotating the signing key: new tokens use the new key, old tokens still verify.
    let s = Server::start_with(dir.path(), &["--rotate-token-key"]);
    let jwks = get_json(&format!("{}/.well-known/jwks.json", s.url));
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    let (status, r) = post_json(&format!("{}/attest/sim", s.url), &request);
    assert_eq!(status, 200);
    let header = |t: &str| -> Value {
        use base64::Engine as _;
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    assert_ne!(
        header(r["token"].as_str().unwrap())["kid"],
        header(&token)["kid"]
    );
    assert!(confide_server::verify_jwt(&token, &jwks).is_ok());
    s.kill();

    // Retiring: the newest key signs, so it cannot be retired without a rotation; an older
    // one is deleted and published no more, and its tokens stop working at once.
    let old_kid = header(&token)["kid"].as_str().unwrap().to_owned();
    let new_kid = header(r["token"].as_str().unwrap())["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused = Command::new(env!("CARGO_BIN_EXE_confide"))
        .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .args(["--retire-token-key", &new_kid])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("rotate first"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let s = Server::start_with(dir.path(), &["--retire-token-key", &old_kid]);
    let jwks = get_json(&format!("{}/.well-known/jwks.json", s.url));
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, [new_kid.as_str()]);
    assert!(matches!(
        confide_server::verify_jwt(&token, &jwks),
        Err(confide_server::TokenError::UnknownKey(_))
    ));
    let (status, r) = post_json(
        &format!("{}/keys/any/release", s.url),
        &json!({"token": token}),
    );
    assert_eq!(status, 401, "a retired key's token was accepted: {r}");
    s.kill();
    // A rotation after a retirement makes a new key, not the retired one again.
    let s = Server::start_with(dir.path(), &["--rotate-token-key"]);
    let jwks = get_json(&format!("{}/.well-known/jwks.json", s.url));
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    assert!(matches!(
        confide_server::verify_jwt(&token, &jwks),
        Err(confide_server::TokenError::UnknownKey(_))
    ));
    s.kill();
}

#[test]
fn gpu_evidence_earns_a_token_only_beside_cpu_evidence_that_binds_its_nonce() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let u = &s.url;
    let jwks = get_json(&format!("{u}/.well-known/jwks.json"));
    // Real H100 evidence (nvtrust's sample): its requester nonce is 931d8dd0…
    let gpu = json!({
        "evidence": b64(&testdata("nvidia/N1-nvtrust-hopper/hopperAttestationReport.txt")),
        "collateral": [b64(&testdata("nvidia/N1-nvtrust-hopper/hopperCertChain.txt"))],
    });
    let gpu_nonce =
        hex::decode("931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb").unwrap();

    // Alone, it proves no CPU TEE: no token, whatever the request says.
    let (status, r) = post_json(&format!("{u}/attest/nvidia-gpu"), &gpu);
    assert_eq!(
        (status, r["type"].as_str()),
        (403, Some("https://confide.dev/problems/gpu-evidence-alone")),
        "{r}"
    );

    // Beside CPU evidence that binds only the runtime key, not the GPU's nonce: refused.
    let key = b"the workload's runtime key";
    let m = confide_attest::sim::default_measurement();
    let (status, r) = post_json(
        &format!("{u}/attest/sim"),
        &json!({"evidence": b64(&sim_evidence(&m, key)), "runtime_data": b64(key), "gpu": [gpu]}),
    );
    assert_eq!(
        (status, r["type"].as_str()),
        (
            403,
            Some("https://confide.dev/problems/runtime-data-not-bound")
        ),
        "{r}"
    );
    // Without runtime data, nothing could bind it.
    let (status, _) = post_json(
        &format!("{u}/attest/sim"),
        &json!({"evidence": b64(&sim_evidence(&m, key)), "gpu": [gpu]}),
    );
    assert_eq!(status, 400);

    // CPU evidence whose report binds SHA-256(runtime key || GPU nonce): one token, a submod
    // for each.
    let mut bound = key.to_vec();
    bound.extend_from_slice(&gpu_nonce);
    let mut report_data = [0u8; 64];
    report_data[..32].copy_from_slice(&confide_crypto::digest::sha256(&bound));
    let cpu = confide_attest::sim::simulate(&m, &report_data).unwrap();
    let (status, r) = post_json(
        &format!("{u}/attest/sim"),
        &json!({"evidence": b64(&cpu), "runtime_data": b64(key), "gpu": [gpu]}),
    );
    assert_eq!(status, 200, "{r}");
    let claims = confide_server::verify_jwt(r["token"].as_str().unwrap(), &jwks).unwrap();
    assert_eq!(claims["submods"]["sim"]["ear.status"], "warning");
    // The GPU's result is beside the CPU's, never among the submods that contracts and release
    // policies read: a GPU's measurement or status never stands in for the CPU's.
    assert_eq!(claims["submods"].as_object().unwrap().len(), 1, "{claims}");
    assert_eq!(claims["confide.gpu"]["nvidia-gpu"]["ear.status"], "warning");
    assert_eq!(
        claims["confide.gpu"]["nvidia-gpu"]["confide.claims"]["measurements"]["measurements_sha256"],
        "d2e0f10327ad8d1a9811653fcb998095c5e41400b7ef17646bd1a0c78e496c34"
    );

    // A changed byte in the GPU's transcript: the whole request is refused.
    let mut transcript = testdata("nvidia/N1-nvtrust-hopper/hopperAttestationReport.txt");
    let at = transcript.len() / 2;
    transcript[at] = if transcript[at] == b'0' { b'1' } else { b'0' };
    let tampered = json!({"evidence": b64(&transcript), "collateral": gpu["collateral"]});
    let (status, r) = post_json(
        &format!("{u}/attest/sim"),
        &json!({"evidence": b64(&cpu), "runtime_data": b64(key), "gpu": [tampered]}),
    );
    assert_eq!(status, 403, "{r}");
    s.kill();
}

#[test]
fn evidence_answers_a_challenge_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let u = &s.url;
    let key = confide_crypto::random::array::<32>().unwrap();
    let m = confide_attest::sim::default_measurement();
    let challenge = || {
        let (status, r) = post_json(&format!("{u}/attest/nonce"), &json!({}));
        assert_eq!(status, 200, "{r}");
        use base64::Engine as _;
        let nonce: [u8; 32] = base64::engine::general_purpose::STANDARD
            .decode(r["nonce"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        nonce
    };
    let answer = |nonce: &[u8; 32], bound: &[u8; 32]| {
        let mut report_data = [0u8; 64];
        report_data[..32].copy_from_slice(&confide_crypto::digest::sha256(&key));
        report_data[32..].copy_from_slice(bound);
        let evidence = confide_attest::sim::simulate(&m, &report_data).unwrap();
        post_json(
            &format!("{u}/attest/sim"),
            &json!({"evidence": b64(&evidence), "runtime_data": b64(&key), "nonce": b64(nonce)}),
        )
    };

    // Answered: the token carries the nonce.
    let nonce = challenge();
    let (status, r) = answer(&nonce, &nonce);
    assert_eq!(status, 200, "{r}");
    let jwks = get_json(&format!("{u}/.well-known/jwks.json"));
    let claims = confide_server::verify_jwt(r["token"].as_str().unwrap(), &jwks).unwrap();
    use base64::Engine as _;
    assert_eq!(
        claims["eat_nonce"],
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(nonce)
    );
    // The same answer again: the nonce is used up.
    let (status, r) = answer(&nonce, &nonce);
    assert_eq!(
        (status, r["type"].as_str().unwrap()),
        (403, "https://confide.dev/problems/unknown-nonce"),
        "{r}"
    );
    // A nonce this service never issued.
    let forged = confide_crypto::random::array::<32>().unwrap();
    let (status, _) = answer(&forged, &forged);
    assert_eq!(status, 403);
    // Evidence that binds another nonce than the one named: not bound, and the named one is
    // spent all the same.
    let (named, other) = (challenge(), challenge());
    let (status, r) = answer(&named, &other);
    assert_eq!(status, 403);
    assert!(
        r["type"]
            .as_str()
            .unwrap()
            .ends_with("runtime-data-not-bound"),
        "{r}"
    );
    let (status, _) = answer(&named, &named);
    assert_eq!(status, 403);

    // Without a challenge, evidence is accepted, until the consortium's appraisal policy names
    // require_fresh_evidence; then only evidence that answers a challenge gets a token.
    let unchallenged = || {
        let evidence = sim_evidence(&m, &key);
        post_json(
            &format!("{u}/attest/sim"),
            &json!({"evidence": b64(&evidence), "runtime_data": b64(&key)}),
        )
    };
    assert_eq!(unchallenged().0, 200);
    let a = Member::new("bank-a");
    post(
        &format!("{u}/gov/found"),
        &a.sign(&json!({"type": "found", "member": a.doc()})),
    );
    let policy = confide_server::DEFAULT_APPRAISAL.replace(
        "require_fresh_evidence := false",
        "require_fresh_evidence := true",
    );
    assert!(policy.contains("require_fresh_evidence := true"));
    enact(
        u,
        &a,
        json!([{"action": "set_policy", "name": "appraisal", "rego": policy}]),
    );
    let (status, r) = unchallenged();
    assert_eq!(status, 403, "{r}");
    assert_eq!(r["type"], "https://confide.dev/problems/appraisal-denied");
    assert!(
        r["detail"]
            .as_str()
            .unwrap()
            .contains("rule freshness on claim nonce"),
        "{r}"
    );
    let nonce = challenge();
    let (status, r) = answer(&nonce, &nonce);
    assert_eq!(status, 200, "{r}");
    s.kill();
}

/// bank-a founds the consortium and admits bank-b; mallory stays outside.
fn two_banks_and_an_outsider(u: &str) -> (Member, Member, Member) {
    let (a, b, mallory) = (
        Member::new("bank-a"),
        Member::new("bank-b"),
        Member::new("mallory"),
    );
    post(
        &format!("{u}/gov/found"),
        &a.sign(&json!({"type": "found", "member": a.doc()})),
    );
    enact(u, &a, json!([{"action": "add_member", "member": b.doc()}]));
    (a, b, mallory)
}

/// `member` proposes `actions` and votes for them; as the only member, that enacts them.
/// The release policy that gives a key to any appraised workload: chosen, never a default.
const ATTESTED: &str = confide_kms::ATTESTED_RELEASE_POLICY;

/// Every one of `members` votes for trusting the simulator's default measurement: from then on
/// a simulated workload's token shows trusted code (EAR executables tier 2), as a real TEE's
/// does once the consortium trusts its measurement. Before, "any attested TEE" is not it.
fn trust_the_simulator(u: &str, members: &[&Member]) {
    let value = hex::encode(confide_attest::sim::default_measurement());
    let actions = json!([{"action": "add_measurement", "kind": "sim", "value": value}]);
    let (status, r) = post(
        &format!("{u}/gov/proposals"),
        &members[0].sign(&json!({"type": "propose", "actions": actions})),
    );
    assert_eq!(status, 201, "{r}");
    let id = r["proposal"].as_str().unwrap().to_owned();
    for m in members {
        let (status, r) = post(
            &format!("{u}/gov/proposals/{id}/ballots"),
            &m.sign(&json!({"type": "ballot", "proposal": id, "vote": true})),
        );
        assert_eq!(status, 201, "{r}");
    }
}

fn enact(u: &str, member: &Member, actions: Value) {
    let (status, r) = post(
        &format!("{u}/gov/proposals"),
        &member.sign(&json!({"type": "propose", "actions": actions})),
    );
    assert_eq!(status, 201, "{r}");
    let id = r["proposal"].as_str().unwrap().to_owned();
    let (status, r) = post(
        &format!("{u}/gov/proposals/{id}/ballots"),
        &member.sign(&json!({"type": "ballot", "proposal": id, "vote": true})),
    );
    assert_eq!(status, 201, "{r}");
}

#[test]
fn keys_are_released_only_to_attested_workloads_and_only_owners_manage_them() {
    use confide_crypto::hpke::{self, HpkeSecretKey, Sealed};
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let u = &s.url;
    let (a, b, mallory) = two_banks_and_an_outsider(u);

    // Creating: a member may; a non-member, a tampered request or a replay may not.
    let create = a.sign(&json!({"type": "kms.create", "name": "dek-1", "policy": ATTESTED}));
    let (status, r) = post(&format!("{u}/keys"), &create);
    assert_eq!(status, 201, "{r}");
    let (status, r) = post(&format!("{u}/keys"), &create);
    assert_eq!(
        (status, r["type"].as_str()),
        (409, Some("https://confide.dev/problems/replayed-request"))
    );
    let (status, _) = post(
        &format!("{u}/keys"),
        &mallory.sign(&json!({"type": "kms.create", "name": "evil"})),
    );
    assert_eq!(status, 403);
    let mut tampered = a.sign(&json!({"type": "kms.create", "name": "dek-2"}));
    let at = tampered.windows(5).position(|w| w == b"dek-2").unwrap();
    tampered[at + 4] = b'3';
    let (status, r) = post(&format!("{u}/keys"), &tampered);
    assert_eq!(
        (status, r["type"].as_str()),
        (403, Some("https://confide.dev/problems/bad-signature"))
    );
    let (status, _) = post(
        &format!("{u}/keys"),
        b"{\"type\": \"kms.create\", \"name\": \"no-credentials\"}",
    );
    assert_eq!(status, 400);

    // Release to an attested workload: the key comes sealed to its runtime key.
    let workload = HpkeSecretKey::generate().unwrap();
    let runtime = workload.public_key();
    let token = workload_token(u, runtime.as_bytes());
    let release =
        |token: &str| post_json(&format!("{u}/keys/dek-1/release"), &json!({"token": token}));
    // Default deny: while the consortium trusts no measurement of the workload's TEE kind, its
    // code is anyone's, and "any attested TEE" does not mean it. Refused, and on the ledger.
    let (status, r) = release(&token);
    assert_eq!(status, 403, "a key went to code nobody trusts: {r}");
    trust_the_simulator(u, &[&a, &b]);
    let token = workload_token(u, runtime.as_bytes());
    let open = |r: &Value| -> Vec<u8> {
        use base64::Engine as _;
        let d = |k: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(r[k].as_str().unwrap())
                .unwrap()
        };
        let sealed = Sealed {
            enc: d("enc").try_into().unwrap(),
            ciphertext: d("ciphertext"),
        };
        hpke::open(
            &workload,
            &sealed,
            confide_server::RELEASE_INFO,
            format!("dek-1/{}", r["version"]).as_bytes(),
        )
        .unwrap()
        .to_vec()
    };
    let (status, r1) = release(&token);
    assert_eq!(status, 200, "{r1}");
    let key = open(&r1);
    assert_eq!(key.len(), 32);
    let (_, r2) = release(&token);
    assert_eq!(open(&r2), key, "the same key version is released again");
    // A key created without a release policy is released to no one, with the denial audited.
    let (status, _) = post(
        &format!("{u}/keys"),
        &a.sign(&json!({"type": "kms.create", "name": "dek-0"})),
    );
    assert_eq!(status, 201);
    let (status, r) = post_json(&format!("{u}/keys/dek-0/release"), &json!({"token": token}));
    assert_eq!(
        (status, r["type"].as_str()),
        (403, Some("https://confide.dev/problems/release-denied")),
        "{r}"
    );
    assert!(
        ledger_events(u)
            .iter()
            .any(|e| e["type"] == "kms.deny" && e["key"] == "dek-0")
    );

    // Tokens that must not work: forged, for no runtime key, from another server.
    let (status, r) = release(&format!("{token}x"));
    assert_eq!(
        (status, r["type"].as_str()),
        (401, Some("https://confide.dev/problems/invalid-token"))
    );
    let (status, _) = post_json(&format!("{u}/keys/dek-1/release"), &json!({"no": "token"}));
    assert_eq!(status, 400);
    let other_dir = tempfile::tempdir().unwrap();
    let other = Server::start(other_dir.path());
    let foreign = workload_token(&other.url, runtime.as_bytes());
    other.kill();
    let (status, _) = release(&foreign);
    assert_eq!(status, 401);

    // Renewal needs a fresh token for the same runtime key.
    let lease = r1["lease"].as_str().unwrap().to_owned();
    let (status, r) = post_json(
        &format!("{u}/keys/dek-1/renew"),
        &json!({"token": token, "lease": lease}),
    );
    assert_eq!(status, 200, "{r}");
    // Another workload's token, a lease of no key of this name, a lease made up: each refused
    // as a denial, and each denial on the ledger.
    let intruder = HpkeSecretKey::generate().unwrap();
    let intruder_token = workload_token(u, intruder.public_key().as_bytes());
    for (path, lease, who) in [
        ("dek-1", lease.as_str(), "another workload's token"),
        ("dek-2", lease.as_str(), "a lease of another key"),
        ("dek-1", "00", "a lease made up"),
    ] {
        let before = size(u);
        let (status, r) = post_json(
            &format!("{u}/keys/{path}/renew"),
            &json!({"token": intruder_token, "lease": lease}),
        );
        assert_eq!(
            (status, r["type"].as_str()),
            (403, Some("https://confide.dev/problems/renewal-denied")),
            "{who}: {r}"
        );
        assert_eq!(
            size(u),
            before + 1,
            "{who}: the denial is not on the ledger"
        );
    }

    // Only the owner lists leases, rotates, revokes.
    let (status, _) = post(
        &format!("{u}/keys/dek-1/leases"),
        &b.sign(&json!({"type": "kms.leases", "name": "dek-1"})),
    );
    assert_eq!(status, 403);
    let (status, r) = post(
        &format!("{u}/keys/dek-1/leases"),
        &a.sign(&json!({"type": "kms.leases", "name": "dek-1"})),
    );
    assert_eq!(status, 200);
    let leases = r["leases"].as_array().unwrap();
    assert_eq!(leases.len(), 2);
    assert!(
        leases
            .iter()
            .all(|l| l["lapsed"] == false && l["last_heartbeat"].as_i64().is_some())
    );
    let (status, _) = post(
        &format!("{u}/keys/dek-1/revoke"),
        &b.sign(&json!({"type": "kms.revoke", "name": "dek-1"})),
    );
    assert_eq!(status, 403);
    let (status, _) = post(
        &format!("{u}/keys/dek-1/rotate"),
        &a.sign(&json!({"type": "kms.rotate", "name": "dek-1"})),
    );
    assert_eq!(status, 200);
    let (_, r3) = release(&token);
    assert_eq!(r3["version"], 2);
    assert_ne!(open(&r3), key);
    let (status, _) = post(
        &format!("{u}/keys/dek-1/revoke"),
        &a.sign(&json!({"type": "kms.revoke", "name": "dek-1"})),
    );
    assert_eq!(status, 200);
    let (status, r) = release(&token);
    assert_eq!(
        (status, r["type"].as_str()),
        (403, Some("https://confide.dev/problems/key-revoked"))
    );
    let (status, _) = post_json(
        &format!("{u}/keys/dek-1/renew"),
        &json!({"token": token, "lease": lease}),
    );
    assert_eq!(status, 403);

    // Every event is on the ledger; no key byte is on disk in the clear.
    let entries = get_json(&format!("{u}/ledger/entries"));
    let kinds: Vec<String> = entries["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(e["entry"].as_str()?)
                .ok()?;
            serde_json::from_slice::<Value>(&bytes).ok()?["type"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    for kind in [
        "kms.create",
        "kms.release",
        "kms.renew",
        "kms.rotate",
        "kms.revoke",
        "kms.deny",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "no {kind} event in {kinds:?}"
        );
    }
    let list = |u: &str| {
        post(
            &format!("{u}/keys/dek-1/leases"),
            &a.sign(&json!({"type": "kms.leases", "name": "dek-1"})),
        )
    };
    let (_, before) = list(u);
    assert_eq!(before["leases"].as_array().unwrap().len(), 3);
    s.kill();

    let released = [key, open(&r3)];
    let mut files = vec![dir.path().to_owned()];
    let mut scanned = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        scanned += 1;
        for k in &released {
            use base64::Engine as _;
            assert!(
                !bytes.windows(32).any(|w| w == &k[..]),
                "{} holds a key in the clear",
                path.display()
            );
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains(&base64::engine::general_purpose::STANDARD.encode(k)));
            assert!(!text.contains(&hex::encode(k)));
        }
    }
    assert!(scanned > 5);

    // The leases are on the ledger: a restarted server lists the same, heartbeats included.
    let s = Server::start(dir.path());
    let u = &s.url;
    assert_eq!(list(u), (200, before));
    // Only the owner deletes; a deleted key is released no more.
    let (status, _) = post(
        &format!("{u}/keys/dek-1/delete"),
        &b.sign(&json!({"type": "kms.delete", "name": "dek-1"})),
    );
    assert_eq!(status, 403);
    let (status, _) = post(
        &format!("{u}/keys/dek-1/delete"),
        &a.sign(&json!({"type": "kms.delete", "name": "dek-1"})),
    );
    assert_eq!(status, 200);
    let fresh = workload_token(u, runtime.as_bytes());
    let (status, _) = post_json(&format!("{u}/keys/dek-1/release"), &json!({"token": fresh}));
    assert_eq!(status, 404);
    s.kill();
}

/// Bring your own key, with an independent wrapping tool: `openssl` wraps a key to the
/// broker's key-exchange key with CKM_RSA_AES_KEY_WRAP (RSA-OAEP SHA-256 or SHA-1, then
/// AES-KWP with RFC 5649's IV), `confide kms import` imports it, and a workload attested with a
/// JWK runtime key gets exactly that key back as a JWE.
#[test]
fn keys_wrapped_by_openssl_are_imported_and_released_as_jwe() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"));
    let u = s.url.clone();
    let home = dir.path().join("home");
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_confide"))
            .args(["--home", home.to_str().unwrap(), "--server", &u])
            .args(args)
            .output()
            .unwrap();
        outcome(&out)
    };
    assert!(cli(&["member", "init", "--name", "bank-a"]).0);
    assert!(cli(&["gov", "found"]).0);
    let founder = Member(confide_identity::Home::new(&home).load().unwrap());
    trust_the_simulator(&u, &[&founder]);
    let (ok, pem, err) = cli(&["kms", "kek", "kek-1"]);
    assert!(ok, "{err}");
    let path = |name: &str| dir.path().join(name);
    std::fs::write(path("kek.pem"), &pem).unwrap();

    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let wrap = |target: &[u8], md: &str, blob: &str| {
        std::fs::write(path("target.bin"), target).unwrap();
        let ephemeral = confide_crypto::random::array::<32>().unwrap();
        std::fs::write(path("eph.bin"), ephemeral).unwrap();
        openssl(&[
            "pkeyutl",
            "-encrypt",
            "-pubin",
            "-inkey",
            path("kek.pem").to_str().unwrap(),
            "-in",
            path("eph.bin").to_str().unwrap(),
            "-out",
            path("rsa.bin").to_str().unwrap(),
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            &format!("rsa_oaep_md:{md}"),
            "-pkeyopt",
            &format!("rsa_mgf1_md:{md}"),
        ]);
        openssl(&[
            "enc",
            "-id-aes256-wrap-pad",
            "-iv",
            "A65959A6",
            "-K",
            &hex::encode(ephemeral),
            "-in",
            path("target.bin").to_str().unwrap(),
            "-out",
            path("kwp.bin").to_str().unwrap(),
        ]);
        let blob_bytes = [
            std::fs::read(path("rsa.bin")).unwrap(),
            std::fs::read(path("kwp.bin")).unwrap(),
        ]
        .concat();
        std::fs::write(path(blob), blob_bytes).unwrap();
    };
    let first = confide_crypto::random::array::<32>().unwrap();
    wrap(&first, "sha256", "blob1");
    let (ok, out, err) = cli(&[
        "kms",
        "import",
        "byok",
        "--kek",
        "kek-1",
        "--blob",
        path("blob1").to_str().unwrap(),
        "--any-attested-tee",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("version 1"), "{out}");
    // A blob whose OAEP hash is not the one named is refused, and changes nothing.
    let second = confide_crypto::random::array::<32>().unwrap();
    wrap(&second, "sha1", "blob2");
    let (ok, _, err) = cli(&[
        "kms",
        "import",
        "byok",
        "--kek",
        "kek-1",
        "--blob",
        path("blob2").to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("RSA-OAEP"), "{err}");
    let (ok, out, err) = cli(&[
        "kms",
        "import",
        "byok",
        "--kek",
        "kek-1",
        "--hash",
        "sha1",
        "--blob",
        path("blob2").to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("version 2"), "{out}");
    // Wrapped here by confide itself, from the raw key.
    let third = confide_crypto::random::array::<32>().unwrap();
    std::fs::write(path("raw.key"), third).unwrap();
    let (ok, _, err) = cli(&[
        "kms",
        "import",
        "byok",
        "--kek",
        "kek-1",
        "--key",
        path("raw.key").to_str().unwrap(),
    ]);
    assert!(ok, "{err}");

    // A workload whose runtime key is a P-256 JWK gets the newest version as a JWE.
    let workload = confide_crypto::jwe::DecryptionKey::generate_p256().unwrap();
    let jwk = workload.public_jwk().unwrap().to_string();
    let token = workload_token(&u, jwk.as_bytes());
    let (status, r) = post_json(&format!("{u}/keys/byok/release"), &json!({"token": token}));
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["version"], 3);
    assert_eq!(&workload.decrypt(&r["jwe"]).unwrap()[..], &third[..]);
    assert!(r.get("enc").is_none());
    // Renewal works for the same JWK, not for another.
    let (status, _) = post_json(
        &format!("{u}/keys/byok/renew"),
        &json!({"token": workload_token(&u, jwk.as_bytes()), "lease": r["lease"]}),
    );
    assert_eq!(status, 200);
    let other = confide_crypto::jwe::DecryptionKey::generate_p256().unwrap();
    let other_token = workload_token(&u, other.public_jwk().unwrap().to_string().as_bytes());
    let (status, _) = post_json(
        &format!("{u}/keys/byok/renew"),
        &json!({"token": other_token, "lease": r["lease"]}),
    );
    assert_eq!(status, 403);
    // The imported keys are nowhere in the clear.
    let mut files = vec![dir.path().join("data")];
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let bytes = std::fs::read(&p).unwrap();
        for k in [&first, &second, &third] {
            assert!(!bytes.windows(32).any(|w| w == &k[..]), "{}", p.display());
            let b64 = base64::engine::general_purpose::STANDARD.encode(k);
            assert!(!String::from_utf8_lossy(&bytes).contains(&b64));
        }
    }
    s.kill();
}

/// Every endpoint that changes or reads a member's keys, key-exchange keys or resources,
/// refused three ways: with no credentials (a plain JSON body), with another member's valid
/// signature, and with the owner's signature tampered; none of them changes anything but the
/// record of a refusal.
#[test]
fn every_member_endpoint_refuses_missing_foreign_and_tampered_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let u = &s.url;
    let (a, b, mallory) = two_banks_and_an_outsider(u);
    for (path, body) in [
        ("/keys", json!({"type": "kms.create", "name": "k"})),
        ("/keks", json!({"type": "kms.kek.create", "name": "kk"})),
        (
            "/kbs/v0/resource/r/t/g",
            json!({"type": "kbs.put", "path": "r/t/g", "content": "c2VjcmV0"}),
        ),
    ] {
        let (status, r) = post(&format!("{u}{path}"), &a.sign(&body));
        assert_eq!(status, 201, "{path}: {r}");
    }
    let entries = |u: &str| {
        get_json(&format!("{u}/ledger/entries"))["entries"]
            .as_array()
            .unwrap()
            .len()
    };
    let before = entries(u);

    let tamper = |mut signed: Vec<u8>| {
        let at = signed.len() - 3; // inside the signature
        signed[at] ^= 0x01;
        signed
    };
    let owned = [
        ("/keys/k/rotate", json!({"type": "kms.rotate", "name": "k"})),
        ("/keys/k/revoke", json!({"type": "kms.revoke", "name": "k"})),
        ("/keys/k/delete", json!({"type": "kms.delete", "name": "k"})),
        ("/keys/k/leases", json!({"type": "kms.leases", "name": "k"})),
        (
            "/keys/k/import",
            json!({"type": "kms.import", "name": "k", "kek": "kk", "blob": "AAAA", "hash": "sha256"}),
        ),
        (
            "/kbs/v0/resource/r/t/g",
            json!({"type": "kbs.put", "path": "r/t/g", "content": "b3RoZXI="}),
        ),
    ];
    for (path, body) in &owned {
        let url = format!("{u}{path}");
        let (status, r) = post(&url, body.to_string().as_bytes());
        assert!(
            matches!(status, 400 | 401 | 403),
            "{path} without credentials: {status} {r}"
        );
        let (status, r) = post(&url, &b.sign(body));
        assert_eq!(status, 403, "{path} with another member's credentials: {r}");
        let (status, r) = post(&url, &tamper(a.sign(body)));
        assert_eq!(status, 403, "{path} tampered: {r}");
        assert_eq!(
            r["type"], "https://confide.dev/problems/bad-signature",
            "{path}"
        );
        let (status, _) = post(&url, &mallory.sign(body));
        assert_eq!(status, 403, "{path} by a non-member");
    }
    for (path, body) in [
        ("/keys", json!({"type": "kms.create", "name": "k2"})),
        ("/keks", json!({"type": "kms.kek.create", "name": "kk2"})),
    ] {
        let url = format!("{u}{path}");
        let (status, _) = post(&url, body.to_string().as_bytes());
        assert!(
            matches!(status, 400 | 401 | 403),
            "{path} without credentials"
        );
        let (status, _) = post(&url, &tamper(a.sign(&body)));
        assert_eq!(status, 403, "{path} tampered");
        let (status, _) = post(&url, &mallory.sign(&body));
        assert_eq!(status, 403, "{path} by a non-member");
    }
    // Nothing changed: the key still at version 1 and a's to rotate. On the ledger, only the
    // refusals of b's requests, which were authenticated (so that their nonces stay spent);
    // nothing of the rest.
    assert_eq!(entries(u), before + owned.len());
    let (status, r) = post(
        &format!("{u}/keys/k/rotate"),
        &a.sign(&json!({"type": "kms.rotate", "name": "k"})),
    );
    assert_eq!(
        (status, r["key"]["version"].as_u64()),
        (200, Some(2)),
        "{r}"
    );
    s.kill();
}

/// A token past its expiry is refused by the key broker and the KBS endpoints alike, and the
/// refusal changes nothing (tokens live one second here: `--token-lifetime 1`).
#[test]
fn expired_tokens_are_refused() {
    use confide_crypto::hpke::HpkeSecretKey;
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(dir.path(), &["--token-lifetime", "1"]);
    let u = &s.url;
    let a = Member::new("bank-a");
    post(
        &format!("{u}/gov/found"),
        &a.sign(&json!({"type": "found", "member": a.doc()})),
    );
    post(
        &format!("{u}/keys"),
        &a.sign(&json!({"type": "kms.create", "name": "k", "policy": ATTESTED})),
    );
    let workload = HpkeSecretKey::generate().unwrap();
    let token = workload_token(u, workload.public_key().as_bytes());
    let claims: Value = {
        use base64::Engine as _;
        let payload = token.split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        1
    );
    std::thread::sleep(Duration::from_millis(2100));
    let before = get_json(&format!("{u}/ledger/entries"))["entries"]
        .as_array()
        .unwrap()
        .len();
    let (status, r) = post_json(&format!("{u}/keys/k/release"), &json!({"token": token}));
    assert_eq!(status, 401, "{r}");
    assert!(r["detail"].as_str().unwrap().contains("expired"), "{r}");
    let r = agent()
        .get(format!("{u}/kbs/v0/resource/a/b/c"))
        .header("authorization", &format!("Bearer {token}"))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let after = get_json(&format!("{u}/ledger/entries"))["entries"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, after);
    s.kill();
}

/// Attack 7: a member's Rego that would run for minutes holds neither the ledger's writer nor a
/// restart. A proposed constitution that does not decide within the time limit is refused when
/// proposed; one that is cheap on an empty proposal (so it is installed) but slow on a real one
/// refuses that request, not the ledger. Meanwhile reads are answered, and a restart replays
/// the ledger at once.
#[test]
fn no_proposal_holds_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let u = &s.url;
    let a = Member::new("bank-a");
    let (status, r) = post(
        &format!("{u}/gov/found"),
        &a.sign(&json!({"type": "found", "member": a.doc()})),
    );
    assert_eq!(status, 201, "{r}");
    let slow_always = "package confide.constitution\nimport rego.v1\n\
        d := [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n\
        work := count([x | some a in d; some b in d; some c in d; some e in d; some f in d; some g in d; some h in d; x := [a, b, c, e, f, g, h]])\n\
        decision := \"accepted\" if work > 0\n";
    let started = Instant::now();
    let (status, r) = post(
        &format!("{u}/gov/proposals"),
        &a.sign(&json!({"type": "propose", "actions": [{"action": "set_constitution", "rego": slow_always}]})),
    );
    assert_eq!(
        (status, r["type"].as_str()),
        (422, Some("https://confide.dev/problems/policy-too-slow")),
        "{r}"
    );
    assert!(
        r["detail"].as_str().unwrap().contains("within 250 ms"),
        "{r}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // A builtin that allocates as its argument asks (one call of it once aborted the server)
    // is refused when a policy is given, wherever: a key's release policy, a constitution.
    let huge = "package confide.release\nimport rego.v1\ndefault allow := false\n\
        allow if count(numbers.range(1, 100000000000000)) > 0\n";
    let (status, r) = post(
        &format!("{u}/keys"),
        &a.sign(&json!({"type": "kms.create", "name": "huge", "policy": huge})),
    );
    assert_eq!(status, 400, "{r}");
    assert!(
        r["detail"].as_str().unwrap().contains("numbers.range"),
        "{r}"
    );
    let (status, r) = post(
        &format!("{u}/gov/proposals"),
        &a.sign(
            &json!({"type": "propose", "actions": [{"action": "set_constitution",
            "rego": huge.replace("confide.release", "confide.constitution")}]}),
        ),
    );
    assert_eq!(status, 400, "{r}");
    let events = ledger_events(u);
    let refusals: Vec<&str> = events
        .iter()
        .filter_map(|e| e["type"].as_str())
        .filter(|t| t.ends_with(".refused"))
        .collect();
    assert_eq!(
        (size(u), refusals),
        (4, vec!["gov.refused", "kms.refused", "gov.refused"]),
        "only the founding and the members' refused requests (their nonces spent) are on the \
         ledger"
    );

    // Slow only when a proposal has actions: installed (every member, here one, said yes).
    let slow_later = "package confide.constitution\nimport rego.v1\n\
        d := [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n\
        work := count([x | some k in input.proposal.actions; some a in d; some b in d; some c in d; some e in d; some f in d; some g in d; some h in d; x := [k, a, b, c, e, f, g, h]])\n\
        decision := \"accepted\" if work >= 0\n";
    enact(
        u,
        &a,
        json!([{"action": "set_constitution", "rego": slow_later}]),
    );
    let entries_before = size(u);
    let reader = {
        let u = u.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let _ = get_json(&format!("{u}/gov/members"));
            started.elapsed()
        })
    };
    let started = Instant::now();
    let (status, r) = post(
        &format!("{u}/gov/proposals"),
        &a.sign(&json!({"type": "propose", "actions": [{"action": "add_measurement", "kind": "sim", "value": "ab".repeat(48)}]})),
    );
    assert_eq!(
        (status, r["type"].as_str()),
        (422, Some("https://confide.dev/problems/policy-too-slow")),
        "{r}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(reader.join().unwrap() < Duration::from_secs(5));
    // Refused, it changed nothing: only its refusal is on the ledger, which spends its nonce.
    assert_eq!(size(u), entries_before + 1);
    assert_eq!(ledger_events(u).last().unwrap()["type"], "gov.refused");
    s.kill();

    // The restart replays what was accepted, without delay.
    let started = Instant::now();
    let s = Server::start(dir.path());
    assert_eq!(size(&s.url), entries_before + 1);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    s.kill();
}

/// A member's key-management request seen on the wire, replayed after the server restarts
/// (within its time window): refused as before the restart, with nothing changed. The nonces
/// are on the ledger with the requests' audit events, not only in memory.
#[test]
fn member_requests_replayed_after_a_restart_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let u = &s.url;
    let a = Member::new("bank-a");
    post(
        &format!("{u}/gov/found"),
        &a.sign(&json!({"type": "found", "member": a.doc()})),
    );
    trust_the_simulator(u, &[&a]);
    let rotate = a.sign(&json!({"type": "kms.rotate", "name": "k"}));
    let put_old = a.sign(&json!({"type": "kbs.put", "path": "r/t/g", "content": b64(b"old"), "policy": confide_kms::ATTESTED_RESOURCE_POLICY}));
    let (status, r) = post(
        &format!("{u}/keys"),
        &a.sign(&json!({"type": "kms.create", "name": "k", "policy": ATTESTED})),
    );
    assert_eq!(status, 201, "{r}");
    for (path, body) in [
        ("/keys/k/rotate", &rotate),
        ("/kbs/v0/resource/r/t/g", &put_old),
    ] {
        let (status, r) = post(&format!("{u}{path}"), body);
        assert!(status == 200 || status == 201, "{path}: {r}");
    }
    let put_new = a.sign(&json!({"type": "kbs.put", "path": "r/t/g", "content": b64(b"new")}));
    let (status, _) = post(&format!("{u}/kbs/v0/resource/r/t/g"), &put_new);
    assert_eq!(status, 201);
    // Requests refused today, each of which would succeed once the state changes: a deletion
    // of a key that does not exist yet, a rotation sent to another key's endpoint, a rotation
    // sent to the revocation endpoint, a creation of a name taken, and a governance ballot on a
    // proposal not made yet (its id is the digest of its signed bytes, known beforehand).
    let later = a.sign(&json!({"type": "propose", "actions": [
        {"action": "add_measurement", "kind": "sim", "value": "11".repeat(48)}]}));
    let later_id = hex::encode(confide_crypto::digest::sha256(&later));
    let ballot_path = format!("/gov/proposals/{later_id}/ballots");
    let refused = [
        (
            ballot_path.as_str(),
            a.sign(&json!({"type": "ballot", "proposal": later_id, "vote": true})),
        ),
        (
            "/keys/later/delete",
            a.sign(&json!({"type": "kms.delete", "name": "later"})),
        ),
        (
            "/keys/other/rotate",
            a.sign(&json!({"type": "kms.rotate", "name": "k"})),
        ),
        (
            "/keys/k/revoke",
            a.sign(&json!({"type": "kms.rotate", "name": "k"})),
        ),
        (
            "/keys",
            a.sign(&json!({"type": "kms.create", "name": "k", "policy": ATTESTED})),
        ),
    ];
    for (path, body) in &refused {
        let before = size(u);
        let (status, r) = post(&format!("{u}{path}"), body);
        assert!((400..500).contains(&status), "{path}: {r}");
        assert_eq!(
            size(u),
            before + 1,
            "{path}: the refusal is not on the ledger"
        );
    }
    let (status, r) = post(
        &format!("{u}/keys"),
        &a.sign(&json!({"type": "kms.create", "name": "later", "policy": ATTESTED})),
    );
    assert_eq!(status, 201, "{r}");
    s.kill();

    let s = Server::start(dir.path());
    let u = &s.url;
    // The proposal the refused ballot named is made now: the ballot would pass, if its nonce
    // were not spent.
    let (status, r) = post(&format!("{u}/gov/proposals"), &later);
    assert_eq!(status, 201, "{r}");
    let entries = size(u);
    let replays = [
        ("/keys/k/rotate", &rotate),
        ("/kbs/v0/resource/r/t/g", &put_old),
    ]
    .into_iter()
    .chain(refused.iter().map(|(p, b)| (*p, b)))
    // The refused rotation, sent now where it would succeed.
    .chain([
        ("/keys/k/rotate", &refused[2].1),
        ("/keys/k/rotate", &refused[3].1),
    ]);
    for (path, body) in replays {
        let (status, r) = post(&format!("{u}{path}"), body);
        assert_eq!(
            (status, r["type"].as_str()),
            (409, Some("https://confide.dev/problems/replayed-request")),
            "{path} replayed after a restart: {r}"
        );
    }
    assert_eq!(size(u), entries, "a replay changed the ledger");
    let (status, r) = post(
        &format!("{u}/keys/later/leases"),
        &a.sign(&json!({"type": "kms.leases", "name": "later"})),
    );
    assert_eq!(
        status, 200,
        "the key whose deletion was refused is gone: {r}"
    );
    // The resource is still the newer one, released as such to an attested workload.
    let workload = confide_crypto::jwe::DecryptionKey::generate_p256().unwrap();
    let token = workload_token(u, workload.public_jwk().unwrap().to_string().as_bytes());
    let r = agent()
        .get(format!("{u}/kbs/v0/resource/r/t/g"))
        .header("authorization", &format!("Bearer {token}"))
        .call()
        .unwrap()
        .body_mut()
        .read_json::<Value>()
        .unwrap();
    assert_eq!(&workload.decrypt(&r).unwrap()[..], b"new");
    s.kill();
}

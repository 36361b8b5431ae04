//! `confide serve` on loopback, driven over HTTP as members would: governance, the requests
//! that must be refused (each changing nothing), receipts checked offline, and the crash test:
//! the server under sustained appends is killed with SIGKILL at random moments, 50 times, and
//! every acknowledged entry survives each restart; the ledger verifies at the end.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use confide_identity::{Identity, MemberName};
use confide_ledger::gov::sign_request;
use serde_json::{Value, json};

struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(data: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_confide"))
            .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_owned();
        Self { child, url }
    }

    fn kill(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

fn post(url: &str, body: &[u8]) -> (u16, Value) {
    match agent()
        .post(url)
        .header("content-type", "application/cose")
        .send(body)
    {
        Ok(mut r) => (
            r.status().as_u16(),
            r.body_mut().read_json().unwrap_or(Value::Null),
        ),
        Err(_) => (0, Value::Null), // connection refused or reset: the server is gone
    }
}

fn get_json(url: &str) -> Value {
    agent()
        .get(url)
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap()
}

fn get_bytes(url: &str) -> (u16, Vec<u8>) {
    let mut r = agent().get(url).call().unwrap();
    (r.status().as_u16(), r.body_mut().read_to_vec().unwrap())
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

struct Member(Identity);

impl Member {
    fn new(name: &str) -> Self {
        Self(Identity::generate(MemberName::new(name).unwrap()).unwrap())
    }
    fn doc(&self) -> Value {
        serde_json::from_str(&self.0.public().to_json()).unwrap()
    }
    fn sign(&self, body: &Value) -> Vec<u8> {
        let nonce = confide_crypto::random::array::<16>().unwrap();
        sign_request(
            self.0.signing_key(),
            &self.0.public().fingerprint().to_hex(),
            body,
            now(),
            &nonce,
        )
        .unwrap()
    }
}

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
    let (status, _) = post(&format!("{u}/gov/proposals"), &vec![0u8; 2 << 20]);
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

//! The workload against a hostile network: a proxy between `confide run` and the real server
//! on loopback rewrites what the server answers, as an attacker on the path (or an operator of
//! the server's host) would. The workload acts only on a ledger verified under the ledger key
//! it was launched with, so each rewrite either changes nothing the workload does (the run goes
//! on, with the approved SQL, to the approved recipient) or is refused with a clear error
//! before any key is released.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use common::*;
use serde_json::{Value, json};

/// What the proxy does to the server's answers.
#[derive(Debug, Clone)]
enum Attack {
    /// Nothing: a faithful proxy.
    None,
    /// The consortium's state as the `/gov/*` endpoints answer it: the contract's SQL swapped
    /// for a row-level query, the recipient's identity swapped for the attacker's, the
    /// dataset's columns renamed.
    GovAnswers { attacker: Value },
    /// One byte of one ledger entry changed (the one holding the contract's terms).
    ChangedEntry,
    /// The last ledger entry left out of the listing.
    DroppedEntry,
    /// The ledger re-signed by the attacker's key.
    ResignedLedger,
    /// An older, genuinely signed prefix of the ledger (before the revocation).
    OlderPrefix {
        checkpoint: Value,
        entries: Vec<Value>,
    },
    /// The key broker's release replaced by a key of the attacker's, sealed to the workload's
    /// runtime key (which the attestation request shows).
    SwappedRelease,
    /// The proposals listed with only their first action, so that a bundle looks like a
    /// proposal of one contract.
    HiddenBundle,
    /// A run's record as `/cleanroom/runs/{id}` answers it, its output pointed at a result the
    /// attacker encrypted to the recipient.
    ForgedRunRecord { location: String, digest: String },
    /// The key broker's key-exchange key (`GET /keks/{name}`) swapped for the attacker's, so
    /// that the owner wraps its dataset key to it.
    SwappedKek { pem: String },
}

/// The bodies posted through the proxy, with their paths.
type Posted = Mutex<Vec<(String, Vec<u8>)>>;

struct Proxy {
    url: String,
    attack: Arc<Mutex<Attack>>,
    /// The paths asked for, in order.
    seen: Arc<Mutex<Vec<String>>>,
    /// The bodies posted, with their paths: what an observer of the wire sees.
    posted: Arc<Posted>,
}

impl Proxy {
    fn start(server: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let attack = Arc::new(Mutex::new(Attack::None));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let posted = Arc::new(Mutex::new(Vec::new()));
        let (server, a, s, p) = (
            server.to_owned(),
            attack.clone(),
            seen.clone(),
            posted.clone(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let attack = a.lock().unwrap().clone();
                relay(conn, &server, &attack, &s, &p);
            }
        });
        Self {
            url,
            attack,
            seen,
            posted,
        }
    }

    fn set(&self, attack: Attack) {
        *self.attack.lock().unwrap() = attack;
        self.seen.lock().unwrap().clear();
    }
}

/// Relays one request (the proxy answers `Connection: close`) and rewrites its answer.
fn relay(
    mut conn: TcpStream,
    server: &str,
    attack: &Attack,
    seen: &Mutex<Vec<String>>,
    posted: &Posted,
) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap().to_owned(),
        parts.next().unwrap().to_owned(),
    );
    let (mut length, mut content_type) = (0usize, String::from("application/json"));
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).unwrap();
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().unwrap(),
            "content-type" => content_type = value.trim().to_owned(),
            _ => {}
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).unwrap();
    seen.lock().unwrap().push(path.clone());
    if method == "POST" {
        posted.lock().unwrap().push((path.clone(), body.clone()));
    }

    let target = format!("{server}{path}");
    let response = if method == "GET" {
        agent().get(&target).call()
    } else {
        agent()
            .post(&target)
            .header("content-type", &content_type)
            .send(&body[..])
    };
    let mut response = response.unwrap();
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();
    let mut answer = response.body_mut().read_to_vec().unwrap();
    if status == 200 {
        answer = rewrite(attack, server, &path, answer, posted);
    }
    let head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        answer.len()
    );
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(&answer);
}

fn unb64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

/// The server's `answer` to `path`, as the attack makes it; `server` is the real server, for the
/// proxy's own look-ups.
fn rewrite(attack: &Attack, server: &str, path: &str, answer: Vec<u8>, posted: &Posted) -> Vec<u8> {
    let mut doc: Value = match serde_json::from_slice(&answer) {
        Ok(v) => v,
        Err(_) => return answer,
    };
    match attack {
        Attack::None => return answer,
        Attack::GovAnswers { attacker } => {
            if path == "/gov/contracts" {
                for (_, c) in doc["contracts"].as_object_mut().unwrap() {
                    c["contract"]["sql"] = json!("SELECT * FROM payments");
                }
            } else if path == "/gov/members" {
                for m in doc["members"].as_array_mut().unwrap() {
                    m["identity"] = attacker.clone();
                }
            } else if path == "/gov/datasets" {
                for (_, d) in doc["datasets"].as_object_mut().unwrap() {
                    d["schema"][0]["name"] = json!("region");
                    d["schema"][1]["name"] = json!("account");
                }
            }
        }
        Attack::SwappedKek { pem } if path.starts_with("/keks/") => {
            doc["kek"]["public_pem"] = json!(pem);
        }
        Attack::ForgedRunRecord { location, digest } if path.starts_with("/cleanroom/runs/") => {
            doc["output"]["location"] = json!(location);
            doc["output"]["digest"] = json!(digest);
        }
        Attack::ChangedEntry | Attack::DroppedEntry if path.starts_with("/ledger/entries?") => {
            let entries = doc["entries"].as_array_mut().unwrap();
            if matches!(attack, Attack::DroppedEntry) {
                entries.pop();
            } else {
                let entry = entries
                    .iter_mut()
                    .find(|e| {
                        String::from_utf8_lossy(&unb64(e["entry"].as_str().unwrap()))
                            .contains("approve_contract")
                    })
                    .expect("the contract's proposal is on the ledger");
                let mut bytes = unb64(entry["entry"].as_str().unwrap());
                let at = bytes
                    .windows(3)
                    .position(|w| w == b"SUM")
                    .expect("the terms' SQL is in the entry");
                bytes[at..at + 3].copy_from_slice(b"MAX");
                entry["entry"] = json!(b64(&bytes));
            }
        }
        Attack::ResignedLedger if path == "/ledger/checkpoints/latest" => {
            // The attacker's checkpoint over the very same entries.
            let size = doc["tree_size"].as_u64().unwrap();
            let mut tree = confide_ledger::merkle::Tree::new();
            for seq in 0..size {
                let (_, bytes) = get_bytes(&format!("{server}/ledger/entries/{seq}"));
                tree.push(confide_ledger::merkle::leaf_hash(&bytes));
            }
            let key = confide_crypto::signing::SigningKey::generate().unwrap();
            let cp =
                confide_ledger::receipt::Checkpoint::sign(&key, size, tree.root(), now()).unwrap();
            doc["cose"] = json!(b64(&cp.cose));
        }
        Attack::OlderPrefix {
            checkpoint,
            entries,
        } => {
            if path == "/ledger/checkpoints/latest" {
                doc = checkpoint.clone();
            } else if path.starts_with("/ledger/entries?") {
                doc["entries"] = json!(entries);
                doc["size"] = checkpoint["tree_size"].clone();
            }
        }
        Attack::SwappedRelease if path.ends_with("/release") => {
            let key = confide_crypto::hpke::HpkeSecretKey::generate().unwrap();
            // The workload's runtime keys, as its attestation request showed them.
            let attested = posted
                .lock()
                .unwrap()
                .iter()
                .rev()
                .find(|(p, _)| p.starts_with("/attest/") && p != "/attest/nonce")
                .map(|(_, body)| serde_json::from_slice::<Value>(body).unwrap())
                .unwrap();
            let runtime_data = unb64(attested["runtime_data"].as_str().unwrap());
            let to = confide_model::RuntimeKeys::parse(&runtime_data)
                .unwrap()
                .hpke;
            let name = path
                .trim_start_matches("/keys/")
                .trim_end_matches("/release");
            let sealed = confide_crypto::hpke::seal(
                &to,
                confide_kms::RELEASE_INFO,
                format!("{name}/{}", doc["version"]).as_bytes(),
                &key.to_bytes()[..],
            )
            .unwrap();
            doc["enc"] = json!(b64(&sealed.enc));
            doc["ciphertext"] = json!(b64(&sealed.ciphertext));
        }
        Attack::HiddenBundle if path == "/gov/proposals" => {
            for p in doc["proposals"].as_array_mut().unwrap() {
                p["actions"].as_array_mut().unwrap().truncate(1);
            }
        }
        _ => return answer,
    }
    serde_json::to_vec(&doc).unwrap()
}

fn confide(d: &Path, server: &str, who: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_confide"))
        .env("CONFIDE_STORE", d.join("blobs"))
        .env("CONFIDE_LEDGER_KEY", d.join("data/ledger/ledger.pub"))
        .args(["--home", d.join(who).to_str().unwrap(), "--server", server])
        .args(args)
        .output()
        .unwrap();
    outcome(&out)
}

/// `confide` as `who`, which must succeed; its standard output.
fn succeeds(d: &Path, server: &str, who: &str, args: &[&str]) -> String {
    let (ok, out, err) = confide(d, server, who, args);
    assert!(ok, "confide {args:?} as {who}: {err}");
    out
}

/// A server whose consortium the bank founded; the bank and mallory have identities (their
/// public documents in D/NAME.json), and mallory is not a member yet.
fn founded(d: &Path) -> Server {
    let s = Server::start(&d.join("data"));
    for who in ["bank", "mallory"] {
        succeeds(d, &s.url, who, &["member", "init", "--name", who]);
        let doc = succeeds(d, &s.url, who, &["member", "show", "--json"]);
        std::fs::write(d.join(format!("{who}.json")), doc).unwrap();
    }
    succeeds(d, &s.url, "bank", &["gov", "found"]);
    s
}

/// The bank publishes `csv` as dataset "payments"; its ledger record.
fn publish(d: &Path, server: &str, csv: &str) -> Value {
    std::fs::write(d.join("payments.csv"), csv).unwrap();
    let file = d.join("payments.csv");
    let args = [
        "dataset",
        "publish",
        file.to_str().unwrap(),
        "--name",
        "payments",
        "--identity",
        "account",
        "--json",
    ];
    serde_json::from_str(&succeeds(d, server, "bank", &args)).unwrap()
}

/// `contract propose` as `who`: `sql` over `table` (`NAME=DATASET`), for the simulator's
/// measurement, to the member `to` (its public document `D/TO.json`), with the output rules
/// `(columns, RULE:MIN)` (`aggregation:3`, `list:1`). The command's (success, stdout, stderr).
fn propose_contract(
    d: &Path,
    server: &str,
    who: &str,
    sql: &str,
    table: &str,
    to: &str,
    (columns, rule): (&str, &str),
) -> (bool, String, String) {
    let (rule, min) = rule.split_once(':').unwrap();
    let rule = format!("--{rule}");
    let file = d.join(format!(
        "{}.sql",
        hex::encode(&confide_crypto::digest::sha256(sql.as_bytes())[..8])
    ));
    std::fs::write(&file, sql).unwrap();
    let measurement = format!(
        "sim:{}",
        hex::encode(confide_attest::sim::default_measurement())
    );
    let recipient = d.join(format!("{to}.json"));
    let args = [
        "contract",
        "propose",
        "--sql",
        file.to_str().unwrap(),
        "--measurement",
        &measurement,
        "--table",
        table,
        "--recipient",
        recipient.to_str().unwrap(),
        "--columns",
        columns,
        &rule,
        min,
    ];
    confide(d, server, who, &args)
}

/// The contract id a `contract propose` printed.
fn contract_of(out: &str) -> String {
    out.split("contract ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

fn releases(url: &str) -> usize {
    ledger_events(url)
        .iter()
        .filter(|e| e["type"] == "kms.release")
        .count()
}

fn runs(url: &str) -> usize {
    ledger_events(url)
        .iter()
        .filter(|e| e["type"] == "cleanroom.run")
        .count()
}

#[test]
fn the_workload_acts_only_on_the_ledger_it_verified() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = founded(d);
    let ok = |who: &str, args: &[&str]| succeeds(d, &s.url, who, args);
    let mut csv = String::from("account,region,amount\n");
    for a in 0..12 {
        csv.push_str(&format!(
            "acct-{a},{},{}\n",
            ["north", "south"][a % 2],
            100 + a
        ));
    }
    let record = publish(d, &s.url, &csv);
    let table = format!("payments={}", record["id"].as_str().unwrap());
    let (proposed, out, err) = propose_contract(
        d,
        &s.url,
        "bank",
        "SELECT region, COUNT(DISTINCT account) AS n_accounts, SUM(amount) AS total \
         FROM payments GROUP BY region ORDER BY region",
        &table,
        "bank",
        ("region,n_accounts,total", "aggregation:3"),
    );
    assert!(proposed, "{err}");
    let contract = contract_of(&out);
    let expected = "region,n_accounts,total\nnorth,6,630\nsouth,6,636\n";

    let proxy = Proxy::start(&s.url);
    let run = |attack: Attack| {
        proxy.set(attack);
        confide(
            d,
            &proxy.url,
            "bank",
            &["run", &contract, "--sim", "--json"],
        )
    };

    // 1. The /gov answers rewritten: the workload never asks for them, runs the approved SQL,
    // and encrypts to the recipient the ledger names; the attacker's key opens nothing.
    let mallory =
        serde_json::from_str(&std::fs::read_to_string(d.join("mallory.json")).unwrap()).unwrap();
    let (ran, out, err) = run(Attack::GovAnswers { attacker: mallory });
    assert!(ran, "{err}");
    let seen = proxy.seen.lock().unwrap().clone();
    assert!(
        !seen.iter().any(|p| p.starts_with("/gov/")),
        "the workload asked the server for state: {seen:?}"
    );
    let id = serde_json::from_str::<Value>(&out).unwrap()["run"]
        .as_str()
        .unwrap()
        .to_owned();
    // `contract show` through the same proxy shows the terms the ledger holds, not the
    // rewritten answer of /gov/contracts.
    let (shown, terms, err) = confide(d, &proxy.url, "bank", &["contract", "show", &contract]);
    assert!(shown, "{err}");
    assert!(
        !terms.contains("SELECT * FROM payments") && terms.contains("GROUP BY"),
        "{terms}"
    );
    assert_eq!(ok("bank", &["result", "fetch", &id]), expected);
    // So do the members' listings: the datasets' columns and the members' identities as the
    // ledger holds them, and no /gov/ listing asked for.
    proxy.set(Attack::GovAnswers {
        attacker: serde_json::from_str(&std::fs::read_to_string(d.join("mallory.json")).unwrap())
            .unwrap(),
    });
    let (listed, datasets, err) = confide(d, &proxy.url, "bank", &["dataset", "list"]);
    assert!(listed, "{err}");
    let datasets: Value = serde_json::from_str(&datasets).unwrap();
    for (_, record) in datasets.as_object().unwrap() {
        assert_eq!(record["schema"][0]["name"], "account", "{record}");
    }
    let (listed, members, err) = confide(d, &proxy.url, "bank", &["gov", "members", "--json"]);
    assert!(listed, "{err}");
    let members: Value = serde_json::from_str(&members).unwrap();
    for m in members["members"].as_array().unwrap() {
        assert_eq!(m["identity"]["signing_key"]["kid"], m["fingerprint"], "{m}");
    }
    let (listed, _, err) = confide(d, &proxy.url, "bank", &["gov", "list"]);
    assert!(listed, "{err}");
    let seen = proxy.seen.lock().unwrap().clone();
    assert!(
        !seen.iter().any(|p| p.starts_with("/gov/")),
        "a member listing asked the server for state: {seen:?}"
    );
    let location = get_json(&format!("{}/cleanroom/runs/{id}", s.url))["output"]["location"]
        .as_str()
        .unwrap()
        .to_owned();
    let (opened, _, err) = confide(
        d,
        &s.url,
        "mallory",
        &[
            "decrypt",
            "--in",
            d.join("blobs").join(&location).to_str().unwrap(),
            "--out",
            d.join("stolen.csv").to_str().unwrap(),
        ],
    );
    assert!(
        !opened && !d.join("stolen.csv").exists(),
        "the attacker decrypted the result: {err}"
    );

    // 1c. The run's record rewritten on its way to the recipient, pointing at a result the
    // attacker encrypted to the bank (whose key is public) and stored beside the real one:
    // `result fetch` reads the record from the verified ledger, so it opens the real result.
    let bank = confide_identity::PublicIdentity::from_json(
        &std::fs::read(d.join("bank.json")).unwrap(),
        Path::new("bank.json"),
    )
    .unwrap();
    let forged = confide_crypto::envelope::encrypt_bytes(
        &[*bank.hpke_key()],
        b"region,n_accounts,total\nnowhere,9,999\n",
    )
    .unwrap();
    let digest = hex::encode(confide_crypto::digest::sha256(&forged));
    let location = format!("results/{digest}.cfd");
    std::fs::write(d.join("blobs").join(&location), &forged).unwrap();
    proxy.set(Attack::ForgedRunRecord { location, digest });
    let (fetched, out, err) = confide(d, &proxy.url, "bank", &["result", "fetch", &id]);
    assert!(fetched, "{err}");
    assert_eq!(out, expected, "the recipient opened the attacker's result");
    let unknown = "00".repeat(16);
    let (fetched, _, err) = confide(d, &proxy.url, "bank", &["result", "fetch", &unknown]);
    assert!(!fetched && err.contains("no run"), "{err}");

    // 1b. What an observer of the wire saw of that run: the workload's token and its signed
    // report. Replayed as it was, it records nothing more; the token with a report of the
    // observer's own (the result's location swapped for its file) fails the signature; and
    // unsigned, the old bearer-token record, it is not a run report at all.
    let reported = proxy
        .posted
        .lock()
        .unwrap()
        .iter()
        .find(|(p, _)| p == "/cleanroom/runs")
        .map(|(_, body)| body.clone())
        .unwrap();
    let runs_before = runs(&s.url);
    let (status, r) = post(&format!("{}/cleanroom/runs", s.url), &reported);
    assert_eq!(
        (status, r["type"].as_str()),
        (
            409,
            Some("https://confide.dev/problems/replayed-run-report")
        ),
        "{r}"
    );
    let seen: Value = serde_json::from_slice(&reported).unwrap();
    let mut forged = seen.clone();
    forged["report"]["outcome"]["released"]["output"]["location"] = json!("results/forged.cfd");
    forged["report"]["nonce"] = json!("00".repeat(16));
    let (status, r) = post_json(&format!("{}/cleanroom/runs", s.url), &forged);
    assert_eq!(
        (status, r["type"].as_str()),
        (403, Some("https://confide.dev/problems/bad-signature")),
        "{r}"
    );
    let mut resigned = forged.clone();
    let observer = Workload::new();
    let report: confide_model::RunReport =
        serde_json::from_value(forged["report"].clone()).unwrap();
    resigned["signature"] = json!(
        serde_json::to_value(report.sign(&observer.signing, String::new()).unwrap()).unwrap()["signature"]
    );
    let (status, r) = post_json(&format!("{}/cleanroom/runs", s.url), &resigned);
    assert_eq!(status, 403, "signed by a key the token does not bind: {r}");
    let (status, r) = post_json(
        &format!("{}/cleanroom/runs", s.url),
        &json!({"token": seen["token"], "contract": contract,
                "inputs": seen["report"]["outcome"]["released"]["inputs"],
                "output": forged["report"]["outcome"]["released"]["output"]}),
    );
    assert_eq!(status, 400, "{r}");
    // A token that binds a bare key (no signing key) records nothing, whatever it reports.
    let bare = workload_token(&s.url, &[7u8; 32]);
    let mut unsigned = resigned.clone();
    unsigned["token"] = json!(bare);
    let (status, r) = post_json(&format!("{}/cleanroom/runs", s.url), &unsigned);
    assert_eq!(
        (status, r["type"].as_str()),
        (
            403,
            Some("https://confide.dev/problems/unsigned-run-report")
        ),
        "{r}"
    );
    assert_eq!(runs(&s.url), runs_before, "a forged report recorded a run");

    // 2.–4. The ledger itself changed on the way: refused before any key is released.
    for (attack, why) in [
        (Attack::ChangedEntry, "do not match its signed checkpoint"),
        (Attack::DroppedEntry, "do not match its signed checkpoint"),
        (
            Attack::ResignedLedger,
            "not signed by the pinned ledger key",
        ),
    ] {
        let (before, runs_before) = (releases(&s.url), runs(&s.url));
        let (ran, out, err) = run(attack.clone());
        assert!(!ran, "{attack:?}: the run went on: {out}");
        assert!(err.contains(why), "{attack:?}: expected {why:?} in {err}");
        assert_eq!(releases(&s.url), before, "{attack:?} released a key");
        assert_eq!(runs(&s.url), runs_before, "{attack:?} recorded a run");
        let seen = proxy.seen.lock().unwrap().clone();
        assert!(
            !seen
                .iter()
                .any(|p| p.starts_with("/keys/") || p.starts_with("/attest/")),
            "{attack:?}: the workload went on to {seen:?}"
        );
    }

    // 5. The broker's release swapped for the attacker's key: the dataset does not open under
    // it, and nothing is released to anyone as a result.
    let runs_before = runs(&s.url);
    let (ran, _, err) = run(Attack::SwappedRelease);
    assert!(!ran, "a run went on with a key the broker never released");
    assert!(
        err.contains("does not open under the key the broker released"),
        "{err}"
    );
    assert_eq!(runs(&s.url), runs_before);

    // 6. The owner revokes; an older, genuinely signed ledger (before the revocation) is
    // served: the workload's view says approved, and the broker, on the current ledger, says
    // revoked. No key.
    let checkpoint = get_json(&format!("{}/ledger/checkpoints/latest", s.url));
    let entries = get_json(&format!("{}/ledger/entries", s.url))["entries"]
        .as_array()
        .unwrap()
        .clone();
    // A workload of the contract holds its dataset's key under a lease, renewed by
    // re-attesting while the contract stands.
    let workload = Workload::new();
    let token = workload.token(&s.url);
    let key = record["key"].as_str().unwrap();
    let (status, lease) = post_json(
        &format!("{}/keys/{key}/release", s.url),
        &json!({"token": token, "contract": contract}),
    );
    assert_eq!(status, 200, "{lease}");
    let renew = || {
        post_json(
            &format!("{}/keys/{key}/renew", s.url),
            &json!({"token": workload.token(&s.url), "lease": lease["lease"]}),
        )
    };
    let (status, r) = renew();
    assert_eq!(status, 200, "{r}");

    // The same approved contract, asked for by a workload launched with another ledger key (an
    // operator's, over a ledger of its own making), or by a token that binds no ledger key at
    // all: no key, and the refusal on the ledger.
    let before = releases(&s.url);
    let elsewhere = Workload {
        ledger: Some(
            confide_crypto::signing::SigningKey::generate()
                .unwrap()
                .verifying_key(),
        ),
        ..Workload::new()
    };
    let bare = confide_crypto::hpke::HpkeSecretKey::generate().unwrap();
    for (token, why, rule) in [
        (
            elsewhere.token(&s.url),
            "another ledger key",
            "workload-of-another-ledger",
        ),
        (
            workload_token(&s.url, bare.public_key().as_bytes()),
            "binds its runtime keys and the ledger key",
            "workload-binds-no-ledger-key",
        ),
    ] {
        let (status, r) = post_json(
            &format!("{}/keys/{key}/release", s.url),
            &json!({"token": token, "contract": contract}),
        );
        assert_eq!(status, 403, "{r}");
        assert!(r["detail"].as_str().unwrap().contains(why), "{r}");
        assert_eq!(
            r["type"],
            format!("https://confide.dev/problems/{rule}"),
            "{r}"
        );
        let denial = ledger_events(&s.url).pop().unwrap();
        assert_eq!(
            (denial["type"].as_str(), denial["rule"].as_str()),
            (Some("kms.deny"), Some(rule))
        );
    }
    // Another member's workload that copies this workload's HPKE key into its own runtime data
    // (with its own signing key) holds none of its leases: its report of this contract, even of
    // a refused result, records nothing; nor does a report from a workload of another ledger.
    let mimic = Workload {
        hpke: confide_crypto::hpke::HpkeSecretKey::from_bytes(&workload.hpke.to_bytes()[..])
            .unwrap(),
        ..Workload::new()
    };
    let runs_before = runs(&s.url);
    let refusal = json!({"refused": {"refusal": {"rule": "too_many_rows", "rows": 2, "max": 1}}});
    for (reporter, why) in [
        (&mimic, "never released to this workload"),
        (&elsewhere, "another ledger key"),
    ] {
        let token = reporter.token(&s.url);
        let (status, r) = post_json(
            &format!("{}/cleanroom/runs", s.url),
            &reporter.report(&token, &contract, refusal.clone()),
        );
        assert_eq!(status, 403, "{r}");
        assert!(r["detail"].as_str().unwrap().contains(why), "{r}");
    }
    // The workload holds the dataset's key for this contract, not for another contract the
    // owner approved over the same data for the same measurement: its signed report of that
    // other contract records nothing.
    let (proposed, out, err) = propose_contract(
        d,
        &s.url,
        "bank",
        "SELECT COUNT(DISTINCT account) AS n_accounts FROM payments",
        &table,
        "bank",
        ("n_accounts", "aggregation:3"),
    );
    assert!(proposed, "{err}");
    let other = contract_of(&out);
    assert_ne!(other, contract);
    let (status, r) = post_json(
        &format!("{}/cleanroom/runs", s.url),
        &workload.report(&token, &other, refusal.clone()),
    );
    assert_eq!(status, 403, "{r}");
    assert_eq!(
        r["type"], "https://confide.dev/problems/key-not-released",
        "{r}"
    );
    assert!(
        r["detail"]
            .as_str()
            .unwrap()
            .contains("never released to this workload"),
        "{r}"
    );
    assert_eq!(
        runs(&s.url),
        runs_before,
        "a report of another's lease was recorded"
    );

    // A contract that is not an id is not "no contract".
    let (status, r) = post_json(
        &format!("{}/keys/{key}/release", s.url),
        &json!({"token": workload.token(&s.url), "contract": 7}),
    );
    assert_eq!(status, 400, "{r}");
    assert_eq!(releases(&s.url), before);

    ok("bank", &["contract", "revoke", &contract]);
    // Revoked: the lease renews no more, and the workload's token records no run.
    let (status, r) = renew();
    assert_eq!(status, 403, "{r}");
    assert!(r["detail"].as_str().unwrap().contains("is revoked"), "{r}");
    let real = get_json(&format!("{}/cleanroom/runs/{id}", s.url));
    let (status, r) = post_json(
        &format!("{}/cleanroom/runs", s.url),
        &workload.report(
            &token,
            &contract,
            json!({"released": {"inputs": real["inputs"], "output": real["output"]}}),
        ),
    );
    assert_eq!(status, 403, "{r}");
    assert!(
        r["detail"]
            .as_str()
            .unwrap()
            .contains("records no more runs"),
        "{r}"
    );
    let before = releases(&s.url);
    let (ran, _, err) = run(Attack::OlderPrefix {
        checkpoint,
        entries,
    });
    assert!(!ran);
    assert!(err.contains("is revoked"), "{err}");
    assert_eq!(releases(&s.url), before);
    // And straight to the server: the ledger itself says revoked.
    let (ran, _, err) = confide(d, &s.url, "bank", &["run", &contract, "--sim"]);
    assert!(!ran && err.contains("revoked on the ledger"), "{err}");
    s.kill();
}

/// A contract's `approve_contract` action over `dataset`, to `recipient`, with this SQL.
fn approve_action(sql: &str, dataset: &str, recipient: &str) -> Value {
    let terms = json!({
        "tables": {"payments": dataset},
        "sql": sql,
        "measurements": [{"kind": "sim", "value": hex::encode(confide_attest::sim::default_measurement())}],
        "recipients": [recipient],
        "output": {"columns": ["region", "n_accounts", "total"],
                   "rule": {"aggregation": {"min_identities": 3}},
                   "max_rows": 100, "on_violation": "suppress"},
    });
    json!({"action": "approve_contract", "id": confide_model::Contract::from_value(&terms).unwrap().id(),
           "datasets": [dataset], "contract": terms})
}

#[test]
fn approving_one_contract_approves_that_contract_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = founded(d);
    let ok = |who: &str, args: &[&str]| succeeds(d, &s.url, who, args);
    let out = ok(
        "bank",
        &[
            "gov",
            "propose",
            "--add-member",
            d.join("mallory.json").to_str().unwrap(),
        ],
    );
    let proposal = out
        .split("proposal ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    ok("bank", &["gov", "vote", proposal, "--approve"]);
    let fp = |who: &str| {
        let doc: Value =
            serde_json::from_str(&std::fs::read_to_string(d.join(format!("{who}.json"))).unwrap())
                .unwrap();
        confide_identity::PublicIdentity::from_json(doc.to_string().as_bytes(), Path::new("doc"))
            .unwrap()
            .fingerprint()
            .to_hex()
    };
    let mallory = confide_identity::Home::new(d.join("mallory"))
        .load()
        .unwrap();
    let as_mallory = |body: Value| {
        confide_gov::sign_request(
            mallory.signing_key(),
            &fp("mallory"),
            &body,
            now(),
            &confide_crypto::random::array::<16>().unwrap(),
        )
        .unwrap()
    };

    // Mallory takes the name of the bank's key-exchange key before the bank first publishes:
    // refused, so the bank's dataset key can only be wrapped to the bank's own.
    let (status, r) = post(
        &format!("{}/keks", s.url),
        &as_mallory(
            json!({"type": "kms.kek.create", "name": format!("kek-{}", &fp("bank")[..16])}),
        ),
    );
    assert_eq!(status, 400, "{r}");
    assert!(r["detail"].as_str().unwrap().contains("reserved"), "{r}");

    let record = publish(d, &s.url, "account,region,amount\nacct-1,north,5\n");
    let dataset = record["id"].as_str().unwrap();

    // Mallory registers the bank's data as hers, over the bank's key, or over a key nobody has
    // deposited yet: refused before it reaches the ledger.
    for (key, why) in [
        (
            record["key"].as_str().unwrap().to_owned(),
            "belongs to another member",
        ),
        (format!("dataset-{dataset}-next"), "deposits it first"),
    ] {
        let mut claim = record.clone();
        claim["action"] = json!("register_dataset");
        claim["id"] = json!(format!("{dataset}-mine"));
        claim["owner"] = json!(fp("mallory"));
        claim["key"] = json!(key);
        let (status, r) = post(
            &format!("{}/gov/proposals", s.url),
            &as_mallory(json!({"type": "propose", "actions": [claim]})),
        );
        assert_eq!(status, 403, "{r}");
        assert!(r["detail"].as_str().unwrap().contains(why), "{r}");
    }
    let datasets = get_json(&format!("{}/gov/datasets", s.url))["datasets"].clone();
    assert_eq!(datasets.as_object().unwrap().len(), 1, "{datasets}");

    // Mallory bundles a contract the bank expects (its aggregate, to the bank) with her own
    // (every row, to her), in one proposal.
    let benign = approve_action(
        "SELECT region, COUNT(DISTINCT account) AS n_accounts, SUM(amount) AS total FROM payments GROUP BY region",
        dataset,
        &fp("bank"),
    );
    let theft = approve_action(
        "SELECT region, account AS n_accounts, amount AS total FROM payments",
        dataset,
        &fp("mallory"),
    );
    let request = as_mallory(json!({"type": "propose", "actions": [benign, theft]}));
    let (status, r) = post(&format!("{}/gov/proposals", s.url), &request);
    assert_eq!(status, 201, "{r}");
    let benign_id = benign["id"].as_str().unwrap();

    // The bank approves "its" contract: refused, the bundle named; straight, and through a
    // proxy that hides the bundle's second action from the listing.
    let proxy = Proxy::start(&s.url);
    proxy.set(Attack::HiddenBundle);
    for server in [&s.url, &proxy.url] {
        let (approved, _, err) = confide(d, server, "bank", &["contract", "approve", benign_id]);
        assert!(!approved, "the bank's approval went to a bundle");
        assert!(err.contains("together with 1 other action"), "{err}");
    }
    let state = get_json(&format!("{}/gov/proposals", s.url));
    let p = &state["proposals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["proposer"] == fp("mallory"))
        .unwrap();
    assert_eq!(p["state"], "open");
    assert!(
        p["ballots"].get(fp("bank")).is_none(),
        "the bank voted: {p}"
    );
    assert_eq!(
        get_json(&format!("{}/gov/contracts", s.url))["contracts"],
        json!({})
    );

    // A ballot on the bundle itself, through the proxy that hides its second action: the bank
    // is shown both, from its replay of the verified ledger, before it signs.
    let bundle = p["id"].as_str().unwrap();
    let (voted, _, err) = confide(d, &proxy.url, "bank", &["gov", "vote", bundle, "--reject"]);
    assert!(voted, "{err}");
    assert!(
        err.contains("2 action(s)")
            && err.contains("account AS n_accounts")
            && err.contains(&fp("mallory")),
        "the ballot did not show what it votes on: {err}"
    );
    let (voted, _, err) = confide(
        d,
        &s.url,
        "bank",
        &["gov", "vote", &"ab".repeat(32), "--approve"],
    );
    assert!(!voted && err.contains("no proposal"), "{err}");

    // Proposed on its own, the same contract is approved, and the bank is shown its terms.
    let (id, _) = {
        let bank = confide_identity::Home::new(d.join("bank")).load().unwrap();
        let request = confide_gov::sign_request(
            bank.signing_key(),
            &fp("bank"),
            &json!({"type": "propose", "actions": [approve_action(
                "SELECT region, COUNT(DISTINCT account) AS n_accounts, SUM(amount) AS total FROM payments GROUP BY region",
                dataset,
                &fp("bank"),
            )]}),
            now(),
            &confide_crypto::random::array::<16>().unwrap(),
        )
        .unwrap();
        let (status, r) = post(&format!("{}/gov/proposals", s.url), &request);
        assert_eq!(status, 201, "{r}");
        (benign_id.to_owned(), r)
    };
    let shown = ok("bank", &["contract", "approve", &id]);
    assert!(
        shown.contains("COUNT(DISTINCT account)") && shown.contains("accepted"),
        "{shown}"
    );
    let contracts = get_json(&format!("{}/gov/contracts", s.url))["contracts"].clone();
    assert_eq!(
        contracts.as_object().unwrap().keys().collect::<Vec<_>>(),
        vec![&id]
    );
    s.kill();
}

/// The operator keeps a copy of the data directory and later serves it again: the history it
/// holds is genuine and signed, only shorter. A member who has seen the newer ledger refuses
/// it before reading or signing anything.
#[test]
fn a_member_refuses_a_ledger_that_went_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = founded(d);
    let members = ["gov", "members", "--json"];
    succeeds(d, &s.url, "bank", &members);
    let kept = d.join("bank/checkpoint.json");
    assert!(kept.exists(), "the member kept no checkpoint");
    assert!(
        d.join("bank/ledger.pub").exists(),
        "the member pinned no key"
    );
    let copy = d.join("data-then");
    let status = Command::new("cp")
        .arg("-a")
        .arg(d.join("data"))
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    publish(d, &s.url, "account,region,amount\nacct-1,north,5\n");
    succeeds(d, &s.url, "bank", &members);
    s.kill();

    let then = Server::start(&copy);
    let (ok, out, err) = confide(d, &then.url, "bank", &members);
    assert!(!ok, "the member read a rolled-back ledger: {out}");
    assert!(err.contains("forked or rolled back"), "{err}");
    then.kill();

    // Another consortium's server (another ledger key) at the same address is refused too.
    let other = Server::start(&d.join("elsewhere"));
    succeeds(d, &other.url, "mallory", &["gov", "found"]);
    let (ok, _, err) = confide(d, &other.url, "bank", &members);
    assert!(
        !ok && err.contains("not signed by the pinned ledger key"),
        "{err}"
    );
    other.kill();
}

/// The key-exchange key the owner wraps its dataset key to, swapped on the way for the
/// attacker's: `dataset publish` checks the key against the digest the ledger recorded when the
/// broker made it, and wraps nothing to another.
#[test]
fn a_swapped_key_exchange_key_gets_no_dataset_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = founded(d);
    // The bank's key-exchange key exists at the broker (made on its first publish).
    publish(d, &s.url, "region,account,amount\nnorth,a1,10\n");
    let attacker = tempfile::tempdir().unwrap();
    let store = confide_kms::KeyStore::open_dev(attacker.path()).unwrap();
    let pem = store
        .create_kek("kek-attacker", &"0d".repeat(32).parse().unwrap(), 0)
        .unwrap()
        .public_pem;
    let proxy = Proxy::start(&s.url);
    proxy.set(Attack::SwappedKek { pem });
    let imports = |url: &str| {
        ledger_events(url)
            .iter()
            .filter(|e| e["type"] == "kms.import")
            .count()
    };
    let before = imports(&s.url);
    std::fs::write(d.join("more.csv"), "region,account,amount\nsouth,a2,20\n").unwrap();
    let more = d.join("more.csv");
    let (published, _, err) = confide(
        d,
        &proxy.url,
        "bank",
        &[
            "dataset",
            "publish",
            more.to_str().unwrap(),
            "--name",
            "more",
            "--identity",
            "account",
        ],
    );
    assert!(
        !published,
        "a dataset key was wrapped to the attacker's key"
    );
    assert!(err.contains("is not the one the ledger records"), "{err}");
    assert_eq!(imports(&s.url), before, "a key was imported");
    assert!(
        !proxy
            .posted
            .lock()
            .unwrap()
            .iter()
            .any(|(p, _)| p.ends_with("/import")),
        "the wrapped key left the member"
    );
    s.kill();
}

/// The proposal id a `gov propose` or `contract propose` printed.
fn proposal_of(out: &str) -> String {
    out.split("proposal ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// Two members who together are a majority go after the third's data, over the real server:
/// a contract over it, a constitution that would let them, the owner's removal after it
/// approved a contract to one of them, and a contract whose query quotes a cell in its error.
/// None of it gets them a row: consent is the owner's, a removed owner's data goes dark, and
/// no error carries a value out of the workload.
#[test]
fn a_majority_neither_takes_nor_keeps_a_minority_s_data() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = founded(d);
    let ok = |who: &str, args: &[&str]| succeeds(d, &s.url, who, args);
    succeeds(d, &s.url, "eve", &["member", "init", "--name", "eve"]);
    let doc = succeeds(d, &s.url, "eve", &["member", "show", "--json"]);
    std::fs::write(d.join("eve.json"), doc).unwrap();
    let fp = |who: &str| {
        let home = confide_identity::Home::new(d.join(who));
        home.load_public().unwrap().fingerprint().to_hex()
    };
    // The bank admits mallory, then both admit eve.
    for (who, voters) in [
        ("mallory", &["bank"][..]),
        ("eve", &["bank", "mallory"][..]),
    ] {
        let doc = d.join(format!("{who}.json"));
        let p = proposal_of(&ok(
            "bank",
            &["gov", "propose", "--add-member", doc.to_str().unwrap()],
        ));
        for v in voters {
            ok(v, &["gov", "vote", &p, "--approve"]);
        }
    }
    let members = get_json(&format!("{}/gov/members", s.url));
    assert_eq!(members["members"].as_array().unwrap().len(), 3, "{members}");

    let mut csv = String::from("account,region,amount\n");
    for a in 0..8 {
        csv.push_str(&format!(
            "acct-{a},{},{}\n",
            ["north", "south"][a % 2],
            10 + a
        ));
    }
    let record = publish(d, &s.url, &csv);
    let table = format!("payments={}", record["id"].as_str().unwrap());
    let propose = |who: &str, sql: &str, to: &str, columns: &str, min: &str| {
        propose_contract(d, &s.url, who, sql, &table, to, (columns, min))
    };

    // 1. Mallory proposes every row of the bank's data to herself; she and eve vote yes. It
    // waits for the bank, and nothing runs.
    let (_, out, err) = propose(
        "mallory",
        "SELECT region, COUNT(DISTINCT account) AS n, SUM(amount) AS total FROM payments GROUP BY region",
        "mallory",
        "region,n,total",
        "aggregation:2",
    );
    assert!(out.contains("(open)"), "{out}{err}");
    let theft = contract_of(&out);
    let out = ok("eve", &["contract", "approve", &theft]);
    assert!(out.contains("now open"), "{out}");
    assert_eq!(
        get_json(&format!("{}/gov/contracts", s.url))["contracts"].get(&theft),
        None,
        "a majority approved a contract over the bank's data"
    );
    let before = releases(&s.url);
    let (ran, _, err) = confide(d, &s.url, "mallory", &["run", &theft, "--sim"]);
    assert!(!ran, "a contract the owner never approved ran");
    assert!(err.contains("no approved contract"), "{err}");
    assert_eq!(releases(&s.url), before);

    // The founding request, which anyone can read on the ledger, sent again: refused, and it
    // leaves nothing on the ledger (its nonce is spent), however often it is sent.
    let founding = get_bytes(&format!("{}/ledger/entries/0", s.url)).1;
    let size = |url: &str| ledger_events(url).len();
    let entries = size(&s.url);
    for _ in 0..3 {
        let (status, r) = post(&format!("{}/gov/found", s.url), &founding);
        assert!((400..500).contains(&status), "{status} {r}");
    }
    assert_eq!(
        size(&s.url),
        entries,
        "a copy of the founding request wrote to the ledger"
    );

    // 2. A constitution that accepts anything, voted for by the majority: it waits for every
    // member.
    std::fs::write(
        d.join("anything.json"),
        json!([{"action": "set_constitution",
                "rego": "package confide.constitution\nimport rego.v1\ndecision := \"accepted\"\n"}])
        .to_string(),
    )
    .unwrap();
    let p = proposal_of(&ok(
        "mallory",
        &["gov", "propose", d.join("anything.json").to_str().unwrap()],
    ));
    ok("mallory", &["gov", "vote", &p, "--approve"]);
    let out = ok("eve", &["gov", "vote", &p, "--approve"]);
    assert!(
        out.contains("open"),
        "a majority replaced the constitution: {out}"
    );

    // 3. A measurement that names no code, signed and posted straight to the server: refused
    // when proposed, naming the measurement.
    let mallory = confide_identity::Home::new(d.join("mallory"))
        .load()
        .unwrap();
    let mut empty = approve_action(
        "SELECT 1 AS n",
        record["id"].as_str().unwrap(),
        &fp("mallory"),
    );
    empty["contract"]["measurements"] = json!([{"kind": "sim", "value": ""}]);
    empty["id"] = json!(hex::encode(confide_crypto::digest::sha256(
        confide_crypto::jcs::canonical_json(&empty["contract"]).as_bytes(),
    )));
    let request = confide_gov::sign_request(
        mallory.signing_key(),
        &fp("mallory"),
        &json!({"type": "propose", "actions": [empty]}),
        now(),
        &confide_crypto::random::array::<16>().unwrap(),
    )
    .unwrap();
    let (status, r) = post(&format!("{}/gov/proposals", s.url), &request);
    assert!((400..500).contains(&status), "{status} {r}");
    assert!(r["detail"].as_str().unwrap().contains("measurement"), "{r}");

    // 4. The bank approves an aggregate for mallory; mallory runs it once. Then mallory and eve
    // remove the bank, who could then no longer revoke: the contract is revoked with the
    // removal, the key goes to no one, and no run is recorded.
    let (done, out, err) = propose(
        "bank",
        "SELECT region, COUNT(DISTINCT account) AS n FROM payments GROUP BY region",
        "mallory",
        "region,n",
        "aggregation:2",
    );
    assert!(done && out.contains("accepted"), "{out}{err}");
    let aggregate = contract_of(&out);
    ok("mallory", &["run", &aggregate, "--sim"]);
    ok(
        "bank",
        &["kms", "create", "bank-secret", "--any-attested-tee"],
    );
    // And a KBS resource any simulated guest of this development server may fetch, until the
    // bank is gone.
    std::fs::write(d.join("resource.txt"), "the bank's API token").unwrap();
    let resource = d.join("resource.txt");
    let put = [
        "kbs",
        "put-resource",
        "bank/token/api",
        resource.to_str().unwrap(),
    ];
    ok("bank", &[&put[..], &["--insecure-simulated-tee"]].concat());
    let fetch = ["kbs", "get-resource", "bank/token/api", "--insecure-sample"];
    assert_eq!(ok("mallory", &fetch).trim(), "the bank's API token");
    let p = proposal_of(&ok(
        "mallory",
        &["gov", "propose", "--remove-member", &fp("bank")],
    ));
    ok("mallory", &["gov", "vote", &p, "--approve"]);
    let out = ok("eve", &["gov", "vote", &p, "--approve"]);
    assert!(out.contains("accepted"), "{out}");
    let contracts = get_json(&format!("{}/gov/contracts", s.url));
    assert_eq!(
        contracts["contracts"][&aggregate]["state"], "revoked",
        "{contracts}"
    );
    let (before, runs_before) = (releases(&s.url), runs(&s.url));
    let (ran, _, err) = confide(d, &s.url, "mallory", &["run", &aggregate, "--sim"]);
    assert!(!ran, "the removed owner's contract ran on");
    assert!(err.contains("revoked"), "{err}");
    // Straight to the broker, with a workload's token: refused, and the refusal on the ledger.
    let workload = Workload::new();
    let (status, r) = post_json(
        &format!("{}/keys/{}/release", s.url, record["key"].as_str().unwrap()),
        &json!({"token": workload.token(&s.url), "contract": aggregate}),
    );
    assert_eq!(status, 403, "{r}");
    assert!(r["detail"].as_str().unwrap().contains("revoked"), "{r}");
    assert_eq!(
        releases(&s.url),
        before,
        "a key of the removed owner's data was released"
    );
    assert_eq!(runs(&s.url), runs_before);
    // Nor any other key of the bank's, with no contract named: its owner cannot revoke it now.
    let (status, r) = post_json(
        &format!("{}/keys/bank-secret/release", s.url),
        &json!({"token": workload.token(&s.url)}),
    );
    assert_eq!(status, 403, "{r}");
    assert_eq!(
        r["type"], "https://confide.dev/problems/owner-not-a-member",
        "{r}"
    );
    assert_eq!(releases(&s.url), before);
    let (fetched, out, err) = confide(d, &s.url, "mallory", &fetch);
    assert!(!fetched && err.contains("no longer a member"), "{out}{err}");
    // And no new contract may name the data of a member who is gone.
    let (proposed, _, err) = propose(
        "mallory",
        "SELECT region, COUNT(DISTINCT account) AS n FROM payments GROUP BY region",
        "mallory",
        "region,n",
        "aggregation:3",
    );
    assert!(!proposed && err.contains("no longer a member"), "{err}");
    s.kill();
}

/// A query whose error quotes a cell (a cast of an account name to a number) fails inside the
/// workload; what leaves it, on the operator's host, names the failure and no value.
#[test]
fn a_failing_query_says_nothing_of_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = founded(d);
    let record = publish(d, &s.url, "account,region,amount\ncust-007=1259,north,5\n");
    let table = format!("payments={}", record["id"].as_str().unwrap());
    let (proposed, out, err) = propose_contract(
        d,
        &s.url,
        "bank",
        "SELECT CAST(account AS BIGINT) AS n FROM payments",
        &table,
        "bank",
        ("n", "list:2"),
    );
    assert!(proposed, "{err}");
    let contract = contract_of(&out);
    let (ran, out, err) = confide(d, &s.url, "bank", &["run", &contract, "--sim"]);
    assert!(!ran, "{out}");
    assert!(err.contains("query failed"), "{err}");
    for secret in ["cust-007", "1259"] {
        assert!(
            !err.contains(secret) && !out.contains(secret),
            "{secret} left: {err}"
        );
    }
    let log = std::fs::read_to_string(s.log.path()).unwrap();
    assert!(!log.contains("cust-007"), "the server logged a cell: {log}");
    let events = ledger_events(&s.url).to_vec();
    assert!(
        !serde_json::to_string(&events).unwrap().contains("cust-007"),
        "a cell reached the ledger"
    );
    s.kill();
}

//! What the loopback tests share: the real server binary started on a free port, HTTP
//! helpers, and members that sign requests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use confide_gov::sign_request;
use confide_identity::{Identity, MemberName};
use serde_json::{Value, json};

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) url: String,
    /// Where the server's standard error goes, removed with the server.
    pub(crate) log: tempfile::NamedTempFile,
}

impl Server {
    pub(crate) fn start(data: &Path) -> Self {
        Self::start_with(data, &[])
    }

    pub(crate) fn start_with(data: &Path, extra: &[&str]) -> Self {
        Self::start_profile(data, &[&["--dev"], extra].concat())
    }

    /// Without `--dev`: a sealed start, with `extra` arguments.
    pub(crate) fn start_sealed(data: &Path, extra: &[&str]) -> Self {
        Self::start_profile(data, extra)
    }

    fn start_profile(data: &Path, extra: &[&str]) -> Self {
        Self::start_at(data, "127.0.0.1:0", extra)
    }

    /// `confide serve` listening on `listen`, with `extra` arguments (no `--dev` added).
    pub(crate) fn start_at(data: &Path, listen: &str, extra: &[&str]) -> Self {
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_confide"))
            .args(["serve", "--listen", listen, "--data"])
            .arg(data)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                let err = std::fs::read_to_string(log.path()).unwrap_or_default();
                panic!("unexpected first line: {line:?}; the server said: {err}")
            })
            .to_owned();
        Self { child, url, log }
    }

    pub(crate) fn kill(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }
}

pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

pub(crate) fn post(url: &str, body: &[u8]) -> (u16, Value) {
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

pub(crate) fn get_json(url: &str) -> Value {
    agent()
        .get(url)
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap()
}

pub(crate) fn get_bytes(url: &str) -> (u16, Vec<u8>) {
    let mut r = agent().get(url).call().unwrap();
    (r.status().as_u16(), r.body_mut().read_to_vec().unwrap())
}

pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub(crate) struct Member(pub(crate) Identity);

impl Member {
    pub(crate) fn new(name: &str) -> Self {
        Self(Identity::generate(MemberName::new(name).unwrap()).unwrap())
    }
    pub(crate) fn doc(&self) -> Value {
        serde_json::from_str(&self.0.public().to_json()).unwrap()
    }
    pub(crate) fn sign(&self, body: &Value) -> Vec<u8> {
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

/// The audit events (the ledger's JSON entries) of the server at `url`, in order.
pub(crate) fn ledger_events(url: &str) -> Vec<Value> {
    use base64::Engine as _;
    get_json(&format!("{url}/ledger/entries"))["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(e["entry"].as_str()?)
                .ok()?;
            serde_json::from_slice::<Value>(&bytes).ok()
        })
        .collect()
}

pub(crate) fn post_json(url: &str, body: &Value) -> (u16, Value) {
    let mut r = agent()
        .post(url)
        .header("content-type", "application/json")
        .send(body.to_string().as_bytes())
        .unwrap();
    (
        r.status().as_u16(),
        r.body_mut().read_json().unwrap_or(Value::Null),
    )
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Simulated evidence whose report data is SHA-256(runtime) padded with zeros.
pub(crate) fn sim_evidence(measurement: &[u8; 48], runtime: &[u8]) -> Vec<u8> {
    let mut report_data = [0u8; 64];
    report_data[..32].copy_from_slice(&confide_crypto::digest::sha256(runtime));
    confide_attest::sim::simulate(measurement, &report_data).unwrap()
}

/// A workload's attestation token for its X25519 runtime key (simulated evidence, development
/// profile).
pub(crate) fn workload_token(url: &str, runtime_public: &[u8]) -> String {
    let m = confide_attest::sim::default_measurement();
    let (status, r) = post_json(
        &format!("{url}/attest/sim"),
        &json!({"evidence": b64(&sim_evidence(&m, runtime_public)), "runtime_data": b64(runtime_public)}),
    );
    assert_eq!(status, 200, "{r}");
    r["token"].as_str().unwrap().to_owned()
}

/// A workload's runtime keys, as the real workload makes them: the HPKE key released keys are
/// sealed to and the key its run reports are signed with, both bound into its evidence with the
/// digest of the ledger key it verifies under.
pub(crate) struct Workload {
    pub(crate) hpke: confide_crypto::hpke::HpkeSecretKey,
    pub(crate) signing: confide_crypto::signing::SigningKey,
    /// The ledger key it was launched with; `None`: the server's own (`GET /ledger/key`).
    pub(crate) ledger: Option<confide_crypto::signing::VerifyingKey>,
}

impl Workload {
    pub(crate) fn new() -> Self {
        Self {
            hpke: confide_crypto::hpke::HpkeSecretKey::generate().unwrap(),
            signing: confide_crypto::signing::SigningKey::generate().unwrap(),
            ledger: None,
        }
    }

    /// The runtime data its evidence binds, for the server at `url`.
    pub(crate) fn runtime_data(&self, url: &str) -> Vec<u8> {
        let ledger = self.ledger.unwrap_or_else(|| {
            let (status, pem) = get_bytes(&format!("{url}/ledger/key"));
            assert_eq!(status, 200);
            confide_crypto::signing::VerifyingKey::from_spki_pem(&String::from_utf8(pem).unwrap())
                .unwrap()
        });
        confide_model::RuntimeKeys {
            hpke: self.hpke.public_key(),
            signing: self.signing.verifying_key(),
            ledger: confide_model::RuntimeKeys::ledger_digest(&ledger),
        }
        .to_bytes()
    }

    /// A token for its runtime keys (simulated evidence, development profile).
    pub(crate) fn token(&self, url: &str) -> String {
        workload_token(url, &self.runtime_data(url))
    }

    /// A run report of contract `id` with this outcome (the model's JSON), signed with its key,
    /// under `token`; the request body of `POST /cleanroom/runs`.
    pub(crate) fn report(&self, token: &str, id: &str, outcome: Value) -> Value {
        let report = confide_model::RunReport {
            contract: id.parse().unwrap(),
            nonce: hex::encode(confide_crypto::random::array::<16>().unwrap()),
            outcome: serde_json::from_value(outcome).unwrap(),
        };
        serde_json::to_value(report.sign(&self.signing, token.to_owned()).unwrap()).unwrap()
    }
}

/// A finished command's (success, stdout, stderr).
pub(crate) fn outcome(out: &std::process::Output) -> (bool, String, String) {
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `confide` binary run as the members whose homes are under `dir`, against `url`.
pub(crate) struct Cli<'a> {
    pub(crate) dir: &'a Path,
    pub(crate) url: String,
    /// The server's standard error, shown when a command fails unexpectedly.
    pub(crate) server_log: std::path::PathBuf,
}

impl Cli<'_> {
    /// Runs `confide` as member `who`; (success, stdout, stderr).
    pub(crate) fn run(&self, who: &str, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_confide"))
            .env("CONFIDE_STORE", self.dir.join("blobs"))
            .env(
                "CONFIDE_LEDGER_KEY",
                self.dir.join("data/ledger/ledger.pub"),
            )
            .args([
                "--home",
                self.dir.join(who).to_str().unwrap(),
                "--server",
                &self.url,
            ])
            .args(args)
            .output()
            .unwrap();
        outcome(&out)
    }

    pub(crate) fn ok(&self, who: &str, args: &[&str]) -> String {
        let (ok, out, err) = self.run(who, args);
        assert!(ok, "confide {args:?} as {who}: {err}{}", self.server_says());
        out
    }

    pub(crate) fn refused(&self, who: &str, args: &[&str], why: &str) {
        let (ok, out, err) = self.run(who, args);
        assert!(!ok, "confide {args:?} as {who} succeeded: {out}");
        assert!(
            err.contains(why),
            "confide {args:?}: expected {why:?} in: {err}{}",
            self.server_says()
        );
    }

    pub(crate) fn server_says(&self) -> String {
        let log = std::fs::read_to_string(&self.server_log).unwrap_or_default();
        format!("\nthe server's standard error:\n{log}")
    }
}

pub(crate) fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

pub(crate) fn second_word_after(text: &str, marker: &str) -> String {
    text.split(marker)
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {marker:?} in {text:?}"))
        .to_owned()
}

//! The server's decision paths, end to end over HTTP on loopback against a real server in a
//! temporary directory: each refusal of a pure decision (appraisal, release, a member's
//! request) reaches the client as its own RFC 7807 problem type, and nothing the refusal
//! concerns is given out. Typed ids are refused at the boundary, before any decision.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use confide_client::{Client, ClientError};
use confide_crypto::hpke::HpkeSecretKey;
use confide_crypto::signing::{SigningKey, VerifyingKey};
use confide_identity::{Identity, MemberName};
use confide_model::{AttestRequest, BrokerBody, KeyAnswer, ReleaseRequest, RuntimeKeys};
use serde_json::json;

/// A development server on loopback, in a temporary directory, served on a runtime of its own.
struct Server {
    url: String,
    _runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let config = confide_server::Config {
        data: dir.path().to_owned(),
        dev: true,
        founder: None,
        issuer: "http://127.0.0.1".into(),
        rotate_token_key: false,
        retire_token_keys: Vec::new(),
        token_lifetime: 300,
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (state, _) = runtime
        .block_on(async { confide_server::open(&config, None) })
        .unwrap();
    let listener = runtime
        .block_on(confide_server::bind("127.0.0.1:0".parse().unwrap()))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    runtime.spawn(confide_server::serve(listener, state, None));
    Server {
        url,
        _runtime: runtime,
        _dir: dir,
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The problem type of a refused call.
fn problem<T: std::fmt::Debug>(result: Result<T, ClientError>) -> String {
    match result {
        Err(ClientError::Refused { problem, .. }) => problem.unwrap_or_default(),
        other => panic!("not a refusal: {other:?}"),
    }
}

/// A member who signs its own requests.
struct Member {
    identity: Identity,
    ts: i64,
}

impl Member {
    fn new(name: &str) -> Self {
        Self {
            identity: Identity::generate(MemberName::new(name).unwrap()).unwrap(),
            ts: confide_attest::UnixTime::now().secs(),
        }
    }

    fn sign(&mut self, body: &impl serde::Serialize) -> Vec<u8> {
        self.ts += 1;
        let public = self.identity.public();
        confide_gov::sign_request(
            self.identity.signing_key(),
            &public.fingerprint().to_hex(),
            body,
            self.ts,
            &confide_crypto::random::array::<16>().unwrap(),
        )
        .unwrap()
    }
}

/// A workload's token: simulated evidence binding its runtime keys for this server's ledger.
fn token(client: &Client) -> String {
    let ledger = String::from_utf8(client.get_bytes("/ledger/key").unwrap()).unwrap();
    let runtime = RuntimeKeys {
        hpke: HpkeSecretKey::generate().unwrap().public_key(),
        signing: SigningKey::generate().unwrap().verifying_key(),
        ledger: RuntimeKeys::ledger_digest(&VerifyingKey::from_spki_pem(&ledger).unwrap()),
    }
    .to_bytes();
    let mut report_data = [0u8; 64];
    report_data[..32].copy_from_slice(&confide_crypto::digest::sha256(&runtime));
    let evidence =
        confide_attest::sim::simulate(&confide_attest::sim::default_measurement(), &report_data)
            .unwrap();
    client
        .attest(
            "sim",
            &AttestRequest {
                evidence: b64(&evidence),
                collateral: Vec::new(),
                runtime_data: Some(b64(&runtime)),
                runtime_data_hash: None,
                nonce: None,
                gpu: Vec::new(),
            },
        )
        .unwrap()
        .token
}

#[test]
fn each_refusal_reaches_the_client_as_its_rule() {
    let server = start();
    let client = Client::new(&server.url);

    // Appraisal: evidence that binds other runtime data, and GPU evidence on its own.
    let evidence =
        confide_attest::sim::simulate(&confide_attest::sim::default_measurement(), &[9; 64])
            .unwrap();
    let unbound = AttestRequest {
        evidence: b64(&evidence),
        collateral: Vec::new(),
        runtime_data: Some(b64(b"not what the report binds")),
        runtime_data_hash: None,
        nonce: None,
        gpu: Vec::new(),
    };
    assert_eq!(
        problem(client.attest("sim", &unbound)),
        "runtime-data-not-bound"
    );
    assert_eq!(
        problem(client.attest("nvidia-gpu", &unbound)),
        "gpu-evidence-alone"
    );

    // A member founds the consortium and makes a key without a release policy.
    let mut a = Member::new("bank-a");
    let found = a.sign(&json!({"type": "found", "member": a.identity.public()}));
    client.post("/gov/found", &found).unwrap();
    let create = a.sign(&BrokerBody::Create {
        name: "k".into(),
        policy: None,
    });
    let made: KeyAnswer = client.post_as("/keys", &create).unwrap();
    assert_eq!(
        made.key.owner,
        confide_model::MemberId::of(a.identity.public())
    );
    // The same signed request again: a replay, whatever it asks.
    assert_eq!(problem(client.post("/keys", &create)), "replayed-request");

    // Key release: no policy is no release; a contract that was never approved releases
    // nothing; an id that is not a contract id is refused before any decision.
    let token = token(&client);
    let release = |contract: Option<&str>| {
        let mut body = json!({"token": token});
        if let Some(c) = contract {
            body["contract"] = json!(c);
        }
        client.post_json_as::<confide_model::Released>("/keys/k/release", &body)
    };
    assert_eq!(problem(release(None)), "release-denied");
    let never = "ab".repeat(32);
    assert_eq!(problem(release(Some(&never))), "no-approved-contract");
    for bad in ["../keys", "AB".repeat(32).as_str(), ""] {
        let err = release(Some(bad)).unwrap_err();
        match err {
            ClientError::Refused {
                status: 400,
                detail,
                ..
            } => {
                assert!(detail.contains("contract id"), "{bad:?}: {detail}")
            }
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    // The model's request type refuses it on this side too.
    let typed: Result<ReleaseRequest, _> =
        serde_json::from_value(json!({"token": "t", "contract": "../keys"}));
    assert!(typed.is_err());
}

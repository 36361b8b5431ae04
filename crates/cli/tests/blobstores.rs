//! The clean-room flow with its ciphertexts in each kind of blob store `--store` takes: a local
//! directory, Amazon S3 and Azure Blob Storage. The clouds are their emulators on loopback,
//! started here: moto's S3 server and Microsoft's Azurite (`.ci/run` installs them; elsewhere a
//! missing one is skipped with a message, and under CI it fails). Google Cloud Storage has no
//! test: the emulator the registries offer (fake-gcs-server) lacks the XML API upload that
//! `object_store` uses. The real binary publishes a dataset (its ciphertext uploaded whole),
//! a workload runs an approved contract (the ciphertext streamed down and decrypted as the
//! query reads it), the result goes up and its recipient fetches it; then one flipped bit in
//! the stored dataset, written straight to the bucket, makes the next run fail naming it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use confide_cleanroom::BlobStore;
use serde_json::Value;

/// Azurite's well-known development account (public, in Azure's documentation).
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const BUCKET: &str = "confide-test";

/// A blob store for one test: its `--store` value, the environment the CLI needs for it, the
/// same settings as `object_store` options, and the emulator process, if any.
struct Blobs {
    spec: String,
    env: Vec<(String, String)>,
    options: Vec<(String, String)>,
    _emulator: Option<Emulator>,
}

struct Emulator(Child);

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `None`, after saying that `what` is not installed; a failure under CI, where `.ci/run`
/// installs it.
fn missing<T>(what: &str) -> Option<T> {
    assert!(
        std::env::var_os("CI").is_none(),
        "{what} is not installed; .ci/run installs it"
    );
    eprintln!("SKIPPED: {what} is not installed (.ci/run installs it)");
    None
}

/// Starts `program` and waits until it accepts connections on `port`; `None` when the program
/// is not installed.
fn emulator(program: &str, args: &[String], port: u16, dir: &Path) -> Option<Emulator> {
    let mut child = match Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(child) => Emulator(child),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return missing(program),
        Err(e) => panic!("starting {program}: {e}"),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "{program} {args:?} exited"
        );
        assert!(Instant::now() < deadline, "{program} did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(child)
}

/// A cloud store at `spec` with its `object_store` settings, given to the CLI as environment
/// variables (the keys upper-cased) and in-process as options.
fn cloud(spec: String, settings: &[(&str, String)], server: Emulator) -> Blobs {
    Blobs {
        spec,
        env: settings
            .iter()
            .map(|(k, v)| (k.to_ascii_uppercase(), v.clone()))
            .collect(),
        options: settings
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
        _emulator: Some(server),
    }
}

fn local(dir: &Path) -> Option<Blobs> {
    Some(Blobs {
        spec: dir.join("blobs").to_str().unwrap().to_owned(),
        env: Vec::new(),
        options: Vec::new(),
        _emulator: None,
    })
}

fn s3(dir: &Path) -> Option<Blobs> {
    let moto = Command::new("python3")
        .args(["-c", "import moto.server"])
        .status()
        .is_ok_and(|s| s.success());
    if !moto {
        return missing("moto's S3 server (python3 -m pip install 'moto[server]')");
    }
    let port = free_port();
    let server = emulator(
        "python3",
        &[
            "-m".into(),
            "moto.server".into(),
            "-H".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
        ],
        port,
        dir,
    )?;
    let endpoint = format!("http://127.0.0.1:{port}");
    // moto takes any credentials; a bucket is made by an unsigned PUT.
    let status = agent()
        .put(format!("{endpoint}/{BUCKET}"))
        .send(&[][..])
        .unwrap()
        .status();
    assert!(status.is_success(), "creating the bucket: {status}");
    let settings = [
        ("aws_endpoint", endpoint),
        ("aws_allow_http", "true".to_owned()),
        ("aws_access_key_id", "confide".to_owned()),
        ("aws_secret_access_key", "confide".to_owned()),
        ("aws_region", "us-east-1".to_owned()),
    ];
    Some(cloud(
        format!("s3://{BUCKET}/consortium"),
        &settings,
        server,
    ))
}

fn azure(dir: &Path) -> Option<Blobs> {
    let port = free_port();
    let server = emulator(
        "azurite-blob",
        &[
            "--blobHost".into(),
            "127.0.0.1".into(),
            "--blobPort".into(),
            port.to_string(),
            "--location".into(),
            dir.join("azurite").to_str().unwrap().to_owned(),
            "--skipApiVersionCheck".into(),
            "--disableTelemetry".into(),
            "--silent".into(),
        ],
        port,
        dir,
    )?;
    let endpoint = format!("http://127.0.0.1:{port}/{AZURITE_ACCOUNT}");
    create_azure_container(&endpoint);
    let settings = [
        ("azure_storage_account_name", AZURITE_ACCOUNT.to_owned()),
        ("azure_storage_account_key", AZURITE_KEY.to_owned()),
        ("azure_storage_endpoint", endpoint),
        ("azure_allow_http", "true".to_owned()),
    ];
    Some(cloud(
        format!("az://{BUCKET}/consortium"),
        &settings,
        server,
    ))
}

/// Creates the test container: Azure's Create Container call, signed with the account key
/// (Shared Key authorization, as Azure's REST documentation lays out the string to sign).
fn create_azure_container(endpoint: &str) {
    use base64::Engine as _;
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let version = "2021-08-06";
    let to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{BUCKET}\nrestype:container"
    );
    let key = base64::engine::general_purpose::STANDARD
        .decode(AZURITE_KEY)
        .unwrap();
    let mac = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key),
        to_sign.as_bytes(),
    );
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.as_ref());
    let status = agent()
        .put(format!("{endpoint}/{BUCKET}?restype=container"))
        .header("x-ms-date", &date)
        .header("x-ms-version", version)
        .header(
            "authorization",
            format!("SharedKey {AZURITE_ACCOUNT}:{signature}"),
        )
        .send(&[][..])
        .unwrap()
        .status();
    assert!(status.is_success(), "creating the container: {status}");
}

/// Runs `confide` as member `who` against `url`, with the store in the environment.
fn confide(
    dir: &Path,
    blobs: &Blobs,
    url: &str,
    who: &str,
    args: &[&str],
) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_confide"))
        .env("CONFIDE_STORE", &blobs.spec)
        .env("CONFIDE_LEDGER_KEY", dir.join("data/ledger/ledger.pub"))
        .envs(blobs.env.iter().map(|(k, v)| (k, v)))
        .args(["--home", dir.join(who).to_str().unwrap(), "--server", url])
        .args(args)
        .output()
        .unwrap();
    outcome(&out)
}

/// Payments by region: accounts and amounts, and the per-region totals the contract's query
/// must come back with.
fn payments() -> (String, Vec<String>) {
    let mut csv = String::from("account,region,amount\n");
    let mut expected = Vec::new();
    for (r, region) in ["north", "south", "west"].iter().enumerate() {
        let (mut accounts, mut total) = (0, 0);
        for a in 0..(4 + r) {
            let amount = 100 * (r + 1) + a;
            csv.push_str(&format!("acct-{r}-{a},{region},{amount}\n"));
            accounts += 1;
            total += amount;
        }
        expected.push(format!("{region},{accounts},{total}"));
    }
    (csv, expected)
}

fn publish_run_fetch_and_tamper(blobs: &Blobs) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = Server::start(&d.join("data"));
    let ok = |who: &str, args: &[&str]| {
        let (ok, out, err) = confide(d, blobs, &s.url, who, args);
        assert!(ok, "confide {args:?} with --store {}: {err}", blobs.spec);
        out
    };
    ok("bank", &["member", "init", "--name", "bank"]);
    std::fs::write(
        d.join("bank.json"),
        ok("bank", &["member", "show", "--json"]),
    )
    .unwrap();
    ok("bank", &["gov", "found"]);

    let (csv, expected) = payments();
    std::fs::write(d.join("payments.csv"), &csv).unwrap();
    let record: Value = serde_json::from_str(&ok(
        "bank",
        &[
            "dataset",
            "publish",
            d.join("payments.csv").to_str().unwrap(),
            "--name",
            "payments",
            "--identity",
            "account",
            "--json",
        ],
    ))
    .unwrap();
    let location = record["location"].as_str().unwrap().to_owned();
    let digest = record["digest"].as_str().unwrap().to_owned();

    // What the store holds is the registered ciphertext, with no plaintext in it.
    let options: Vec<(&str, &str)> = blobs
        .options
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let store = BlobStore::open(&blobs.spec, &options).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stored = runtime
        .block_on(store.get_checked(&location, &digest))
        .unwrap();
    assert_eq!(stored.len() as u64, record["size"].as_u64().unwrap());
    assert!(!stored.windows(12).any(|w| w == b"acct-0-0,nor"));

    // A large upload goes up in parts and reads back whole; one whose input fails half way
    // leaves nothing under its name.
    let big: Vec<u8> = (0..20_000_000u32).map(|i| (i % 253) as u8).collect();
    let big_digest = hex::encode(confide_crypto::digest::sha256(&big));
    assert_eq!(
        runtime
            .block_on(store.put_reader("datasets/big.cfd", &big[..]))
            .unwrap(),
        big.len() as u64
    );
    assert_eq!(
        runtime
            .block_on(store.get_checked("datasets/big.cfd", &big_digest))
            .unwrap(),
        big
    );
    let failing = std::io::Read::chain(&big[..10_000_000], FailingReader);
    let refused = runtime
        .block_on(store.put_reader("datasets/cut.cfd", failing))
        .unwrap_err();
    assert!(
        refused.to_string().contains("the disk went away"),
        "{refused}"
    );
    assert!(
        runtime
            .block_on(store.get_checked("datasets/cut.cfd", &big_digest))
            .is_err()
    );

    let sql = d.join("q.sql");
    std::fs::write(
        &sql,
        "SELECT region, COUNT(DISTINCT account) AS n_accounts, SUM(amount) AS total \
         FROM payments GROUP BY region ORDER BY region",
    )
    .unwrap();
    let table = format!("payments={}", record["id"].as_str().unwrap());
    let measurement = format!(
        "sim:{}",
        hex::encode(confide_attest::sim::default_measurement())
    );
    let out = ok(
        "bank",
        &[
            "contract",
            "propose",
            "--sql",
            sql.to_str().unwrap(),
            "--measurement",
            &measurement,
            "--table",
            &table,
            "--recipient",
            d.join("bank.json").to_str().unwrap(),
            "--columns",
            "region,n_accounts,total",
            "--aggregation",
            "3",
        ],
    );
    let contract = out
        .split("contract ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .unwrap()
        .to_owned();
    // The bank owns every table, so its proposal is its approval.
    assert!(ok("bank", &["contract", "show", &contract]).contains("\"approved\""));
    let run: Value =
        serde_json::from_str(&ok("bank", &["run", &contract, "--sim", "--json"])).unwrap();
    let result = ok("bank", &["result", "fetch", run["run"].as_str().unwrap()]);
    let rows: Vec<&str> = result.lines().skip(1).collect();
    assert_eq!(rows, expected, "the result read back from {}", blobs.spec);

    // One bit of the stored dataset flipped, straight in the bucket: the next run fails at
    // the download's end, naming the dataset's location, and records no run.
    let mut changed = stored.to_vec();
    let at = changed.len() - 1;
    changed[at] ^= 1;
    runtime.block_on(store.put(&location, changed)).unwrap();
    let (ran, _, err) = confide(d, blobs, &s.url, "bank", &["run", &contract, "--sim"]);
    assert!(!ran, "a run over a changed ciphertext succeeded");
    assert!(
        err.contains(&location) && err.contains("not the one registered"),
        "{err}"
    );
    let runs = ledger_events(&s.url)
        .iter()
        .filter(|e| e["type"] == "cleanroom.run")
        .count();
    assert_eq!(runs, 1);
    s.kill();
}

#[test]
fn a_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    publish_run_fetch_and_tamper(&local(dir.path()).unwrap());
}

#[test]
fn amazon_s3() {
    let dir = tempfile::tempdir().unwrap();
    if let Some(blobs) = s3(dir.path()) {
        publish_run_fetch_and_tamper(&blobs);
    }
}

#[test]
fn azure_blob_storage() {
    let dir = tempfile::tempdir().unwrap();
    if let Some(blobs) = azure(dir.path()) {
        publish_run_fetch_and_tamper(&blobs);
    }
}

/// An input that fails, as a disk or a pipe can.
struct FailingReader;

impl std::io::Read for FailingReader {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other("the disk went away"))
    }
}

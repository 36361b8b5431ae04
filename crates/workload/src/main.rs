//! `confide-workload`: the binary whose measurement a contract approves. It runs one contract
//! and exits; everything it needs is in its launch configuration (arguments or environment):
//!
//! ```text
//! confide-workload --server URL --ledger-key PEM [--ca PEM] [--store DIR|URL] [--sim [--sim-measurement HEX]] CONTRACT
//! ```
//!
//! (`CONFIDE_SERVER`, `CONFIDE_LEDGER_KEY`, `CONFIDE_CA` and `CONFIDE_STORE` stand in for the
//! flags.) `--ca` names the only certificates trusted for an HTTPS server. It prints
//! the run's record as one JSON line on success; on failure the reason on stderr and exit 1.

#![forbid(unsafe_code)]
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use confide_cleanroom::BlobStore;
use confide_client::Client;
use confide_crypto::signing::VerifyingKey;
use confide_workload::{Launch, Tee};

const USAGE: &str = "usage: confide-workload --server URL --ledger-key PEM [--ca PEM] \
                     [--store DIR|URL] [--sim [--sim-measurement HEX]] CONTRACT";

struct Args {
    server: Option<String>,
    ledger_key: Option<String>,
    ca: Option<String>,
    store: String,
    sim: bool,
    sim_measurement: Option<String>,
    contract: Option<String>,
}

fn parse() -> Result<Args, String> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let mut args = Args {
        server: env("CONFIDE_SERVER"),
        ledger_key: env("CONFIDE_LEDGER_KEY"),
        ca: env("CONFIDE_CA"),
        store: env("CONFIDE_STORE").unwrap_or_else(|| "confide-blobs".into()),
        sim: false,
        sim_measurement: None,
        contract: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| it.next().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "--server" => args.server = Some(value("--server")?),
            "--ledger-key" => args.ledger_key = Some(value("--ledger-key")?),
            "--ca" => args.ca = Some(value("--ca")?),
            "--store" => args.store = value("--store")?,
            "--sim" => args.sim = true,
            "--sim-measurement" => args.sim_measurement = Some(value("--sim-measurement")?),
            "-h" | "--help" => return Err(USAGE.into()),
            flag if flag.starts_with('-') => return Err(format!("unknown flag {flag}")),
            _ if args.contract.is_some() => return Err("one contract at a time".into()),
            _ => args.contract = Some(arg),
        }
    }
    Ok(args)
}

fn main_result() -> Result<String, String> {
    let args = parse()?;
    let server = args.server.ok_or("no --server (or CONFIDE_SERVER)")?;
    let key_path = args
        .ledger_key
        .ok_or("no --ledger-key (or CONFIDE_LEDGER_KEY): the workload trusts no ledger unpinned")?;
    let contract: confide_model::ContractId = args
        .contract
        .ok_or(USAGE)?
        .parse()
        .map_err(|e| format!("--contract: {e}"))?;
    let pem = std::fs::read_to_string(&key_path).map_err(|e| format!("reading {key_path}: {e}"))?;
    let ledger_key = VerifyingKey::from_spki_pem(&pem)
        .map_err(|_| format!("{key_path} is not a P-256 public key (PEM)"))?;
    let tee = Tee::from_flags(args.sim, args.sim_measurement.as_deref())?;
    let blobs = BlobStore::open(&args.store, &[]).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))?;
    confide_client::check_transport(&server, false).map_err(|e| format!("--server {e}"))?;
    let client = match &args.ca {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| format!("reading {path}: {e}"))?;
            Client::with_ca(&server, &pem).map_err(|e| format!("--ca {path}: {e}"))?
        }
        None => Client::new(&server),
    };
    let launch = Launch { ledger_key, tee };
    let out = confide_workload::run(&launch, &client, &blobs, &runtime, &contract)
        .map_err(|e| e.to_string())?;
    Ok(serde_json::json!({
        "run": out.run, "rows": out.rows, "suppressed": out.suppressed,
        "simulated": out.simulated, "audit_seq": out.audit_seq,
    })
    .to_string())
}

fn main() -> ExitCode {
    match main_result() {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(reason) => {
            eprintln!("confide-workload: {reason}");
            ExitCode::FAILURE
        }
    }
}

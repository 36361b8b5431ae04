//! `confide`: the command line for every role in a confide consortium.
//!
//! Today it manages a member's identity, encrypts and decrypts files in the confide format, and
//! verifies attestation evidence;
//! the verifier, key broker, ledger and clean-room commands join it as they are built. Errors
//! are printed to stderr with their causes, and the exit status is non-zero on any failure.

#![forbid(unsafe_code)]
// The binary is the edge where results and errors are printed.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod attest;
mod cleanroom;
mod cleanroom_bench;
mod demo;
mod embedded;
mod files;
mod kbs;
mod kms;
mod ledger;
mod member;
mod pipe;
mod progress;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// confide: confidential computing for organisations that must compute on each other's data.
#[derive(Debug, Parser)]
#[command(name = "confide", version, about, long_about = None)]
struct Cli {
    /// The member's home directory, holding its identity and keys.
    /// Default: the platform's config directory, e.g. ~/.config/confide.
    #[arg(long, global = true, env = "CONFIDE_HOME", value_name = "DIR")]
    home: Option<PathBuf>,

    /// The confide server, for client commands.
    #[arg(
        long,
        global = true,
        env = "CONFIDE_SERVER",
        value_name = "URL",
        default_value = "http://127.0.0.1:7780"
    )]
    server: String,

    /// Trust only these certificates (PEM) for an HTTPS server: its CA (`DATA/tls/ca.pem`,
    /// whose fingerprint `confide serve` prints) or the deployment's. Default: the Mozilla roots.
    #[arg(long, global = true, env = "CONFIDE_CA", value_name = "FILE")]
    ca: Option<PathBuf>,

    /// Talk plain HTTP to a server on another machine (a development server only: signed
    /// requests and the ledger cross the network readable).
    #[arg(long, global = true)]
    insecure_http: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create and show this member's identity.
    #[command(subcommand)]
    Member(member::MemberCommand),
    /// Encrypt a file so that only the named recipients can read it.
    Encrypt(files::EncryptArgs),
    /// Verify attestation evidence offline, or produce evidence on this machine.
    #[command(subcommand)]
    Attest(attest::AttestCommand),
    /// Verify ledgers and receipts offline (confide's own and CCF services'), or follow the
    /// server's ledger.
    #[command(subcommand)]
    Ledger(ledger::LedgerCommand),
    /// Run the services over HTTP: attestation, key broker (and KBS), ledger, governance.
    Serve(serve::ServeArgs),
    /// Govern the consortium: found it, propose, vote, list.
    #[command(subcommand)]
    Gov(serve::GovCommand),
    /// The key broker: initialise and unseal its key store; create, rotate, revoke and delete
    /// keys; list their leases.
    #[command(subcommand)]
    Kms(kms::KmsCommand),
    /// Resources served to attested workloads over the Trustee KBS protocol.
    #[command(subcommand)]
    Kbs(kbs::KbsCommand),
    /// Datasets: publish (encrypt, upload, deposit the key, register), list.
    #[command(subcommand)]
    Dataset(cleanroom::DatasetCommand),
    /// Contracts: propose, approve, revoke, show.
    #[command(subcommand)]
    Contract(cleanroom::ContractCommand),
    /// Run an approved contract as its workload: attest, get the keys, query, release the
    /// result to its recipients, record the run.
    Run(cleanroom::RunArgs),
    /// Results of runs: fetch and decrypt, as a recipient.
    #[command(subcommand)]
    Result(cleanroom::ResultCommand),
    /// Demonstrations of the whole system on this machine.
    #[command(subcommand)]
    Demo(DemoCommand),
    /// Measure the services under load.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Decrypt a file encrypted to this member. Nothing is written to --out unless the whole
    /// file authenticates.
    Decrypt(files::DecryptArgs),
}

#[derive(Debug, Subcommand)]
enum DemoCommand {
    /// Three banks find money laundering across their pooled transactions in a clean room,
    /// without showing each other a row.
    Aml(demo::AmlArgs),
    /// The smart building: occupancy per floor, department and hour from badge swipes and HR's
    /// register, under the aggregation rule and differential privacy with a budget, and energy
    /// per occupant from the room sensors and cameras.
    Iot(demo::IotArgs),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Complete KBS rounds from concurrent clients: rounds per second, p50 and p99 latency.
    Kbs(kbs::BenchArgs),
    /// The AML clean-room query, confidential against plain DataFusion, with peak memory.
    Cleanroom(cleanroom_bench::CleanroomBenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = confide_client::check_transport(&cli.server, cli.insecure_http) {
        eprintln!("error: --server {e}");
        return ExitCode::FAILURE;
    }
    if let Some(ca) = &cli.ca {
        let trusted = std::fs::read(ca)
            .map_err(anyhow::Error::from)
            .and_then(|pem| Ok(confide_client::trust(&pem)?));
        if let Err(e) = trusted {
            eprintln!("error: --ca {}: {e:#}", ca.display());
            return ExitCode::FAILURE;
        }
    }
    let result = match cli.home_dir() {
        Ok(home) => match cli.command {
            Command::Member(cmd) => member::run(cmd, &home),
            Command::Encrypt(args) => files::encrypt(args),
            Command::Decrypt(args) => files::decrypt(args, &home),
            Command::Attest(cmd) => attest::run(cmd),
            Command::Ledger(ledger::LedgerCommand::Tail { from, json }) => {
                serve::tail(&cli.server, from, json)
            }
            Command::Ledger(cmd) => ledger::run(cmd),
            Command::Serve(args) => serve::serve(args),
            Command::Gov(cmd) => serve::gov(cmd, &home, &cli.server),
            Command::Kms(cmd) => kms::run(cmd, &home, &cli.server),
            Command::Kbs(cmd) => kbs::run(cmd, &home, &cli.server),
            Command::Bench(BenchCommand::Kbs(args)) => kbs::bench(&args, &cli.server),
            Command::Bench(BenchCommand::Cleanroom(args)) => cleanroom_bench::bench(&args),
            Command::Demo(DemoCommand::Aml(args)) => demo::aml(&args),
            Command::Demo(DemoCommand::Iot(args)) => demo::iot(&args),
            Command::Dataset(cmd) => cleanroom::dataset(cmd, &home, &cli.server),
            Command::Contract(cmd) => cleanroom::contract(cmd, &home, &cli.server),
            Command::Run(args) => cleanroom::run(args, &cli.server),
            Command::Result(cmd) => cleanroom::result(cmd, &home, &cli.server),
        },
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

impl Cli {
    fn home_dir(&self) -> anyhow::Result<confide_identity::Home> {
        let dir = match &self.home {
            Some(dir) => dir.clone(),
            None => dirs::config_dir()
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "no config directory on this platform; pass --home or set CONFIDE_HOME"
                    )
                })?
                .join("confide"),
        };
        Ok(confide_identity::Home::new(dir))
    }
}

//! `confide attest`: verify attestation evidence offline, and produce evidence on this machine.
//!
//! `verify` exits 0 only when the evidence is authentic *and* passes the baseline policy (debug
//! off; a TCB status that is neither revoked nor unmatched). Its output is the claims, or the
//! check that failed by name with a stable reason code.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;
use confide_attest::{
    Collateral, Inputs, Recognised, TeeKind, TrustAnchors, UnixTime, VerifiedClaims, baseline,
};
use confide_attester::Attester;
use serde_json::json;

#[derive(Debug, Subcommand)]
pub(crate) enum AttestCommand {
    /// Verify evidence against its collateral and the built-in vendor roots.
    Verify(VerifyArgs),
    /// Print evidence from this machine's TEE (configfs-tsm) whose report data carries a nonce:
    /// hex for hardware evidence, JSON for simulated evidence.
    Collect(CollectArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArgs {
    /// The evidence: an SNP report, a TDX or SGX quote, Trustee's Azure vTPM evidence JSON, an
    /// NVIDIA GPU's SPDM transcript, or simulated evidence; binary, hex or base64.
    #[arg(long, value_name = "FILE")]
    evidence: PathBuf,
    /// Whatever endorses the evidence, in any order: certificates and chains (PEM or DER),
    /// CRLs, Intel TCB info and QE identity, dcap-qvl's all-in-one collateral JSON.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    collateral: Vec<PathBuf>,
    /// The kind of evidence, detected when not given: sev-snp, tdx, sgx, azure-snp-vtpm,
    /// azure-tdx-vtpm, nvidia-gpu or sim.
    #[arg(long, value_parser = parse_kind)]
    kind: Option<TeeKind>,
    /// The time of verification (RFC 3339); default: now.
    #[arg(long, value_name = "RFC3339")]
    at: Option<String>,
    /// Accept simulated evidence (kind `sim`). Insecure: it proves nothing about hardware.
    #[arg(long)]
    insecure_allow_simulated_tee: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct CollectArgs {
    /// Up to 64 bytes, in hex, to bind into the evidence's report data.
    #[arg(long, value_name = "HEX")]
    nonce: String,
    /// Produce simulated evidence signed by the development key (no TEE needed; insecure).
    #[arg(long)]
    sim: bool,
    /// Where to write the certificates the platform gives with the report (SEV-SNP: the host's
    /// certificate table), for `attest verify --collateral`.
    #[arg(long, value_name = "FILE")]
    auxblob: Option<PathBuf>,
}

fn parse_kind(name: &str) -> Result<TeeKind, String> {
    TeeKind::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = TeeKind::ALL.iter().map(|k| k.as_str()).collect();
        format!("unknown kind {name:?}; one of {}", names.join(", "))
    })
}

pub(crate) fn run(cmd: AttestCommand) -> anyhow::Result<()> {
    match cmd {
        AttestCommand::Verify(args) => verify(args),
        AttestCommand::Collect(args) => collect(args),
    }
}

fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let raw = std::fs::read(&args.evidence)
        .with_context(|| format!("reading evidence {}", args.evidence.display()))?;
    let evidence = confide_attest::decode_text(&raw);
    let mut collateral = Collateral::new();
    for path in &args.collateral {
        let bytes = std::fs::read(path)
            .with_context(|| format!("reading collateral {}", path.display()))?;
        let what: Recognised = collateral
            .add(&bytes)
            .with_context(|| format!("collateral {}", path.display()))?;
        if !args.json {
            eprintln!("collateral {}: {what}", path.display());
        }
    }
    let now = match &args.at {
        Some(text) => UnixTime::parse_rfc3339(text).context("--at")?,
        None => UnixTime::now(),
    };
    let verifier = match args.kind {
        Some(kind) => {
            confide_attest::verifier(kind).with_context(|| format!("no verifier for {kind}"))?
        }
        None => confide_attest::detect(&evidence).context(
            "could not tell what kind of evidence this is (not an SNP report, a DCAP quote, Azure \
             vTPM evidence, an NVIDIA SPDM transcript or simulated evidence); name it with --kind",
        )?,
    };
    let anchors = TrustAnchors::builtin().context("loading the built-in vendor roots")?;
    let inputs = Inputs {
        anchors: &anchors,
        now,
        insecure_allow_simulated_tee: args.insecure_allow_simulated_tee,
    };
    let claims = match verifier.verify(&evidence, &collateral, &inputs) {
        Ok(claims) => claims,
        Err(e) => {
            if args.json {
                let doc = json!({
                    "kind": verifier.kind(),
                    "authentic": false,
                    "outcome": "rejected",
                    "reason_code": e.reason_code(),
                    "reason": e.to_string(),
                    "verified_at": now.to_string(),
                });
                println!("{doc:#}");
            }
            bail!(
                "{} evidence rejected ({}): {e}",
                verifier.kind(),
                e.reason_code()
            );
        }
    };
    let appraisal = baseline::appraise(&claims);
    if args.json {
        let (code, reason) = match &appraisal {
            Ok(()) => (None, None),
            Err(r) => (Some(r.code), Some(r.reason.clone())),
        };
        let doc = json!({
            "kind": claims.kind(),
            "authentic": true,
            "outcome": if appraisal.is_ok() { "valid" } else { "rejected" },
            "reason_code": code,
            "reason": reason,
            "verified_at": now.to_string(),
            "claims": claims,
        });
        println!("{doc:#}");
    } else {
        print_claims(&claims, now);
    }
    match appraisal {
        Ok(()) => Ok(()),
        Err(r) => bail!(
            "authentic {} evidence, rejected by the baseline policy ({}): {}",
            claims.kind(),
            r.code,
            r.reason
        ),
    }
}

fn print_claims(claims: &VerifiedClaims, now: UnixTime) {
    if claims.simulated() {
        println!("SIMULATED TEE: this evidence proves nothing about hardware");
    }
    println!("authentic {} evidence at {now}", claims.kind());
    for (name, value) in claims.measurements() {
        println!("  {name:<12} {value}");
    }
    println!(
        "  {:<12} {}",
        "report_data",
        hex::encode(claims.report_data())
    );
    if let Some(host) = claims.host_data() {
        println!("  {:<12} {}", "host_data", hex::encode(host));
    }
    if let Some(id) = claims.platform_id() {
        println!("  {:<12} {}", "platform_id", hex::encode(id));
    }
    println!("  {:<12} {}", "debug", claims.debug());
    let tcb = claims.tcb();
    if let Some(status) = tcb.status {
        println!("  {:<12} {}", "tcb_status", status.as_str());
    } else if let Some(note) = claims.details()["tcb_status_note"].as_str() {
        println!("  {:<12} {note}", "tcb_status");
    }
    if !tcb.advisory_ids.is_empty() {
        println!("  {:<12} {}", "advisories", tcb.advisory_ids.join(", "));
    }
    if !tcb.svns.is_empty() {
        let svns: Vec<String> = tcb.svns.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("  {:<12} {}", "svns", svns.join(" "));
    }
}

fn collect(args: CollectArgs) -> anyhow::Result<()> {
    let nonce = hex::decode(args.nonce.trim()).context("--nonce must be hex")?;
    if nonce.len() > 64 {
        bail!(
            "--nonce is {} bytes; report data holds at most 64",
            nonce.len()
        );
    }
    let mut report_data = [0u8; 64];
    report_data[..nonce.len()].copy_from_slice(&nonce);
    let attester = if args.sim {
        Attester::Sim
    } else {
        Attester::detect()?
    };
    let collected = attester.collect(&report_data)?;
    if let (Some(path), Some(aux)) = (&args.auxblob, &collected.auxblob) {
        std::fs::write(path, aux).with_context(|| format!("writing {}", path.display()))?;
    }
    if collected.kind == TeeKind::Sim {
        eprintln!("SIMULATED TEE: this evidence proves nothing about hardware");
        println!("{}", String::from_utf8_lossy(&collected.evidence));
    } else {
        eprintln!("{} evidence from this machine", collected.kind);
        println!("{}", hex::encode(&collected.evidence));
    }
    Ok(())
}

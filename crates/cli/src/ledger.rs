//! `confide ledger`: verify a ledger, one of its receipts, or a CCF service's receipt, offline,
//! trusting nothing but the key or certificate given.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;
use confide_attest::Certificate;
use confide_client::ledger::key_fingerprint as fingerprint;
use confide_crypto::signing::VerifyingKey;
use confide_ledger::receipt::verify_receipt;
use confide_ledger::{Ledger, ccf};
use serde_json::json;

#[derive(Debug, Subcommand)]
pub(crate) enum LedgerCommand {
    /// Re-verify a whole ledger directory: every batch, every entry, every checkpoint signature,
    /// the chain of roots. Changes nothing.
    Verify {
        /// The ledger directory (holding ledger.pub and segments/).
        dir: PathBuf,
        /// The ledger's public key (PEM). Without it the key in DIR/ledger.pub is used and its
        /// fingerprint printed, to compare with the one you trust.
        #[arg(long, value_name = "PEM")]
        key: Option<PathBuf>,
        /// A checkpoint seen before, which this ledger must extend: `SIZE:ROOT` (the root in
        /// hex), or a file a member keeps (HOME/checkpoint.json). A ledger that is shorter, or
        /// whose first SIZE entries have another root, forked or was rolled back, and is refused.
        #[arg(long, value_name = "CHECKPOINT")]
        since: Option<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check one receipt: a confide receipt for an entry, or with --ccf a CCF service's receipt
    /// (JSON or COSE) against its service certificate.
    VerifyReceipt(VerifyReceiptArgs),
    /// Append files as entries, in one durable batch, to a local ledger (created if absent,
    /// with its checkpoint key in DIR/ledger.key: a development setup; `confide serve` keeps
    /// the ledger of a consortium).
    Append {
        /// The ledger directory.
        dir: PathBuf,
        /// The files to append, one entry each.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the server's ledger entries (from --server or CONFIDE_SERVER).
    Tail {
        /// The first entry to print.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write entry SEQ of a local ledger, or its receipt.
    Get {
        /// The ledger directory.
        dir: PathBuf,
        /// The entry's sequence number (from 0).
        seq: u64,
        /// Write the receipt (COSE) instead of the entry.
        #[arg(long)]
        receipt: bool,
        /// Where to write it.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub(crate) struct VerifyReceiptArgs {
    /// The receipt (COSE_Sign1 file).
    #[arg(value_name = "RECEIPT", required_unless_present = "ccf")]
    receipt: Option<PathBuf>,
    /// The entry the receipt is for, as its bytes.
    #[arg(long, value_name = "FILE", conflicts_with = "ccf")]
    entry: Option<PathBuf>,
    /// The ledger's public key (PEM).
    #[arg(long, value_name = "PEM", conflicts_with = "ccf")]
    key: Option<PathBuf>,
    /// A receipt of a CCF service (Azure Confidential Ledger, SCITT): JSON or COSE.
    #[arg(long, value_name = "RECEIPT")]
    ccf: Option<PathBuf>,
    /// The CCF service's identity certificate (PEM).
    #[arg(long, value_name = "PEM", requires = "ccf")]
    service_cert: Option<PathBuf>,
    /// The claims digest the CCF receipt must be for (hex).
    #[arg(long, value_name = "HEX", requires = "ccf")]
    entry_digest: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(cmd: LedgerCommand) -> anyhow::Result<()> {
    match cmd {
        LedgerCommand::Verify {
            dir,
            key,
            since,
            json,
        } => verify_dir(&dir, key, since.as_deref(), json),
        LedgerCommand::VerifyReceipt(args) => match &args.ccf {
            Some(receipt) => verify_ccf(receipt, &args),
            None => verify_own(&args),
        },
        LedgerCommand::Append { dir, files } => append(&dir, &files),
        LedgerCommand::Tail { .. } => bail!("`ledger tail` talks to a server"),
        LedgerCommand::Get {
            dir,
            seq,
            receipt,
            out,
        } => get(&dir, seq, receipt, &out),
    }
}

/// A checkpoint given as `SIZE:ROOT` or as the file a member keeps.
fn seen_checkpoint(arg: &str) -> anyhow::Result<confide_client::ledger::Seen> {
    if let Some((size, root)) = arg.split_once(':')
        && let (Ok(tree_size), Ok(root)) = (size.parse::<u64>(), hex::decode(root))
    {
        let root = root
            .try_into()
            .map_err(|_| anyhow::anyhow!("--since {arg:?}: the root is not 32 bytes of hex"))?;
        return Ok(confide_client::ledger::Seen { tree_size, root });
    }
    confide_client::ledger::Seen::load(std::path::Path::new(arg))?
        .with_context(|| format!("--since {arg:?}: neither SIZE:ROOT nor a kept checkpoint file"))
}

/// The development checkpoint key of a local ledger, created on first use (0600).
fn local_key(dir: &std::path::Path) -> anyhow::Result<confide_crypto::signing::SigningKey> {
    let path = dir.join("ledger.key");
    match std::fs::read(&path) {
        Ok(der) => confide_crypto::signing::SigningKey::from_pkcs8(&der)
            .with_context(|| format!("{} is not a PKCS#8 P-256 key", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let key = confide_crypto::signing::SigningKey::generate()?;
            confide_crypto::files::write_new(&path, &key.to_pkcs8()?, 0o600)
                .with_context(|| format!("creating {}", path.display()))?;
            eprintln!(
                "created a development checkpoint key in {} (keep it private)",
                path.display()
            );
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn append(dir: &std::path::Path, files: &[PathBuf]) -> anyhow::Result<()> {
    let entries = files
        .iter()
        .map(|f| std::fs::read(f).with_context(|| format!("reading {}", f.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (mut ledger, recovery) = Ledger::open(dir, local_key(dir)?)?;
    if recovery.dropped_bytes > 0 {
        eprintln!(
            "dropped {} bytes of an incomplete batch that was never acknowledged",
            recovery.dropped_bytes
        );
    }
    let first = ledger.len();
    let cp = ledger.append(&entries, confide_attest::UnixTime::now().secs())?;
    println!(
        "appended entries {first}..{} (durable); root {}",
        cp.tree_size - 1,
        hex::encode(cp.root)
    );
    Ok(())
}

fn get(
    dir: &std::path::Path,
    seq: u64,
    receipt: bool,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    let (ledger, _) = Ledger::audit(dir, None)
        .with_context(|| format!("the ledger in {} does not verify", dir.display()))?;
    let bytes = if receipt {
        ledger.receipt(seq)?
    } else {
        ledger.entry(seq)?
    }
    .with_context(|| format!("the ledger has no entry {seq} (it has {})", ledger.len()))?;
    std::fs::write(out, bytes).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

pub(crate) fn read_key(path: &std::path::Path) -> anyhow::Result<VerifyingKey> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    VerifyingKey::from_spki_pem(&text)
        .with_context(|| format!("{} is not a P-256 public key (PEM)", path.display()))
}

pub(crate) fn verify_dir(
    dir: &std::path::Path,
    key: Option<PathBuf>,
    since: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let key = key.as_deref().map(read_key).transpose()?;
    let since = since.map(seen_checkpoint).transpose()?;
    let (ledger, recovery) = Ledger::audit(dir, key)
        .with_context(|| format!("the ledger in {} does not verify", dir.display()))?;
    if let Some(seen) = &since {
        match ledger.root_at(seen.tree_size) {
            None => bail!(
                "the ledger in {} has {} entries, fewer than the {} of the checkpoint seen before: \
                 it was rolled back",
                dir.display(),
                ledger.len(),
                seen.tree_size
            ),
            Some(root) if root != seen.root => bail!(
                "the ledger in {} forked: its first {} entries have root {}, not the root {} \
                 seen before",
                dir.display(),
                seen.tree_size,
                hex::encode(root),
                hex::encode(seen.root)
            ),
            Some(_) => {}
        }
    }
    let latest = ledger.latest_checkpoint();
    let key_fp = fingerprint(ledger.public_key());
    if json {
        let doc = json!({
            "verified": true,
            "entries": ledger.len(),
            "checkpoints": recovery.batches,
            "root": latest.map(|c| hex::encode(c.root)),
            "signed_at": latest.map(|c| c.time),
            "key_fingerprint": key_fp,
            "key_source": if key.is_some() { "--key" } else { "ledger.pub" },
            "extends": since.as_ref().map(|s| json!({"tree_size": s.tree_size, "root": hex::encode(s.root)})),
        });
        println!("{doc:#}");
    } else {
        println!(
            "ledger verified: {} entries in {} checkpointed batches",
            ledger.len(),
            recovery.batches
        );
        if let Some(c) = latest {
            println!("  root       {}", hex::encode(c.root));
            println!("  signed at  {} (unix seconds)", c.time);
        }
        if let Some(s) = &since {
            println!(
                "  extends    the checkpoint seen at {} entries ({})",
                s.tree_size,
                hex::encode(s.root)
            );
        }
        println!(
            "  key        {key_fp}{}",
            if key.is_some() {
                ""
            } else {
                "  (from ledger.pub: compare it with the fingerprint you trust)"
            }
        );
    }
    Ok(())
}

fn verify_own(args: &VerifyReceiptArgs) -> anyhow::Result<()> {
    let (Some(receipt), Some(entry), Some(key)) = (&args.receipt, &args.entry, &args.key) else {
        bail!("a confide receipt needs RECEIPT, --entry FILE and --key PEM");
    };
    let receipt_bytes =
        std::fs::read(receipt).with_context(|| format!("reading {}", receipt.display()))?;
    let entry_bytes =
        std::fs::read(entry).with_context(|| format!("reading {}", entry.display()))?;
    let key = read_key(key)?;
    let v = verify_receipt(&receipt_bytes, &entry_bytes, &key)
        .context("the receipt does not verify")?;
    if args.json {
        let doc = json!({
            "verified": true, "index": v.index, "tree_size": v.tree_size,
            "root": hex::encode(v.root), "signed_at": v.time,
        });
        println!("{doc:#}");
    } else {
        println!(
            "receipt verified: entry {} of a ledger of {} entries, root {}, signed at {}",
            v.index,
            v.tree_size,
            hex::encode(v.root),
            v.time
        );
    }
    Ok(())
}

fn verify_ccf(receipt: &std::path::Path, args: &VerifyReceiptArgs) -> anyhow::Result<()> {
    let cert_path = args
        .service_cert
        .as_ref()
        .context("a CCF receipt needs --service-cert PEM")?;
    let cert = Certificate::from_pem_chain(
        &std::fs::read(cert_path).with_context(|| format!("reading {}", cert_path.display()))?,
    )
    .context("reading the service certificate")?
    .into_iter()
    .next()
    .context("no certificate in --service-cert")?;
    let expected = args
        .entry_digest
        .as_deref()
        .map(|h| hex::decode(h.trim()).context("--entry-digest must be hex"))
        .transpose()?;
    let bytes = std::fs::read(receipt).with_context(|| format!("reading {}", receipt.display()))?;
    let v = ccf::verify_any(&bytes, &cert, expected.as_deref())
        .context("the CCF receipt does not verify")?;
    if args.json {
        let doc = json!({
            "verified": true, "leaf": hex::encode(v.leaf), "root": hex::encode(v.root),
            "claims_digest": hex::encode(v.claims_digest), "commit_evidence": v.commit_evidence,
        });
        println!("{doc:#}");
    } else {
        println!("CCF receipt verified against the service certificate");
        println!("  transaction  {}", v.commit_evidence);
        println!("  claims       {}", hex::encode(v.claims_digest));
        println!("  root         {}", hex::encode(v.root));
    }
    Ok(())
}

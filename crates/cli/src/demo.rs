//! `confide demo aml`: the whole clean-room story on one machine. An embedded server; three banks
//! and an analyst; synthetic transactions per bank with laundering patterns planted across
//! banks; each bank publishes its dataset; the analyst proposes a contract whose SQL finds the
//! patterns and every bank approves it; the contract runs (simulated TEE: this machine has none);
//! the analyst decrypts the result; the ledger and a receipt are verified; the findings are
//! printed next to what was planted, with the audit trail. Exit status 0 only if the findings
//! are exactly the planted patterns.

use std::collections::BTreeSet;
use std::io::Write as _;

use anyhow::{Context, bail};
use confide_cleanroom::aml::{self, BANKS, Scale};
use confide_identity::Home;
use confide_model::{Action, GovBody};

use crate::cleanroom::{
    approve_contract, build_contract, fetch_result, propose_and_vote, propose_contract,
    run_contract,
};
use crate::serve::{Client, signed};

#[derive(Debug, clap::Args)]
pub(crate) struct AmlArgs {
    /// Background transactions per bank (the planted ones come on top).
    #[arg(long, default_value_t = 20_000)]
    transactions: u64,
    /// Print the steps' details.
    #[arg(long)]
    verbose: bool,
}

fn step(text: &str) {
    println!("\n== {text}");
}

pub(crate) fn aml(args: &AmlArgs) -> anyhow::Result<()> {
    let mut server = crate::embedded::Embedded::start()?;
    let root = server.dir().to_owned();
    let client = Client::new(&server.url);
    let store = crate::cleanroom::Store::open(
        root.join("blobs")
            .to_str()
            .context("the demo's directory is not UTF-8")?,
    )?;
    step(&format!(
        "an embedded confide server (development profile: simulated TEEs allowed) at {}",
        server.url
    ));

    // Members.
    let names = ["bank-a", "bank-b", "bank-c", "analyst"];
    let homes: Vec<Home> = names.iter().map(|n| Home::new(root.join(n))).collect();
    for (home, name) in homes.iter().zip(names) {
        home.init(name)
            .with_context(|| format!("creating {name}"))?;
    }
    client.post(
        "/gov/found",
        &signed(
            &homes[0],
            &GovBody::Found {
                member: homes[0].load_public()?,
                constitution: None,
            },
        )?,
    )?;
    let adds: Vec<Action> = homes[1..]
        .iter()
        .map(|h| {
            Ok(Action::AddMember {
                member: h.load_public()?,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    propose_and_vote(&client, &homes[0], adds)?;
    step("bank-a founded the consortium and admitted bank-b, bank-c and the analyst");

    // Data.
    let scale = Scale {
        transactions_per_bank: args.transactions,
        ..Scale::default()
    };
    let paths: Vec<_> = BANKS
        .iter()
        .map(|(_, t)| root.join(format!("{t}.csv")))
        .collect();
    let planted = {
        let mut files = paths
            .iter()
            .map(|p| std::fs::File::create(p).map(std::io::BufWriter::new))
            .collect::<Result<Vec<_>, _>>()?;
        let [a, b, c] = &mut files[..] else {
            bail!("three banks")
        };
        let planted = aml::generate(scale, &mut [a, b, c])?;
        for f in &mut files {
            f.flush()?;
        }
        planted
    };
    step(&format!(
        "each bank generated its own transactions ({} each, plus {} planted laundering patterns \
         spread across banks)",
        scale.transactions_per_bank,
        planted.len()
    ));

    // The consortium's ledger key, as every member and the workload pin it.
    let ledger_key = crate::ledger::read_key(&root.join("data/ledger/ledger.pub"))?;
    let mut datasets = Vec::new();
    for (i, (_, table)) in BANKS.iter().enumerate() {
        let name = format!("{}-transactions", names[i]);
        let publication = crate::cleanroom::Publication {
            file: &paths[i],
            name: &name,
            format: None,
            privacy: aml::privacy(),
        };
        let record =
            crate::cleanroom::publish(&client, &homes[i], &ledger_key, publication, &store)?;
        let id = record.id;
        println!(
            "   {} published {id}: {} rows, encrypted; key deposited with the broker",
            names[i], record.rows
        );
        datasets.push(format!("{table}={id}"));
    }

    // The contract.
    let analyst_fp = homes[3].load_public()?.fingerprint().to_hex();
    let rules = aml::output_rules();
    let contract = build_contract(
        &datasets,
        aml::SQL.to_owned(),
        &[format!(
            "sim:{}",
            hex::encode(confide_attest::sim::default_measurement())
        )],
        std::slice::from_ref(&analyst_fp),
        rules.columns.clone(),
        aml::RULE,
        None,
        rules.max_rows,
        false,
    )?;
    let (id, state) = propose_contract(&client, &homes[3], &contract)?;
    step(&format!("the analyst proposed contract {id} ({state})"));
    for (home, name) in homes[..3].iter().zip(names) {
        let (state, _) = approve_contract(&client, home, &id)?;
        println!("   {name} approved: the contract is {state}");
    }

    // The run.
    let out = run_contract(
        &client,
        &ledger_key,
        &id,
        confide_workload::Tee::Simulated(confide_attest::sim::default_measurement()),
        &store,
    )?;
    step(&format!(
        "the workload ran the contract: {} finding(s), {} row(s) suppressed, run {} on the \
         ledger (entry {}){}",
        out.rows,
        out.suppressed,
        out.run,
        out.audit_seq,
        if out.simulated {
            " — SIMULATED TEE"
        } else {
            ""
        }
    ));
    let (csv, simulated) = fetch_result(&client, &homes[3], &ledger_key, &out.run, &store)?;
    let text = String::from_utf8_lossy(&csv).into_owned();
    let found: BTreeSet<aml::Finding> = text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split(',');
            Some((f.next()?.to_owned(), f.next()?.to_owned()))
        })
        .collect();
    step(&format!(
        "the analyst decrypted the result{}:",
        if simulated {
            " (computed in a SIMULATED TEE)"
        } else {
            ""
        }
    ));
    println!(
        "   {:<16} {:<10} {:>10} {:>14}   planted?",
        "pattern", "subject", "n_accounts", "total"
    );
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if let [pattern, subject, n, total] = f[..] {
            let planted_too = planted.contains(&(pattern.to_owned(), subject.to_owned()));
            println!(
                "   {pattern:<16} {subject:<10} {n:>10} {total:>14}   {}",
                if planted_too { "yes" } else { "NO" }
            );
        }
    }
    for missed in planted.difference(&found) {
        println!("   MISSED: {} {}", missed.0, missed.1);
    }

    // Audit.
    let trail: confide_model::EntryPage = client.get_as("/ledger/entries")?;
    let run_entry = out.audit_seq;
    let receipt = client.get_bytes(&format!("/ledger/entries/{run_entry}/receipt"))?;
    let entry_bytes = client.get_bytes(&format!("/ledger/entries/{run_entry}"))?;
    server.stop();
    let ledger_dir = root.join("data/ledger");
    let key = crate::ledger::read_key(&ledger_dir.join("ledger.pub"))?;
    let v = confide_ledger::receipt::verify_receipt(&receipt, &entry_bytes, &key)
        .context("the run record's receipt does not verify")?;
    step("the audit trail (every entry is on the ledger, checkpointed and signed):");
    for e in &trail.entries {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&e.entry)
            .with_context(|| format!("entry {} is not base64", e.seq))?;
        let what = crate::serve::describe_entry(&bytes);
        if args.verbose || !what.starts_with("ballot") {
            println!("   {:>4}  {what}", e.seq);
        }
    }
    println!(
        "   receipt for the run record (entry {}) verified offline against root {}",
        v.index,
        hex::encode(v.root)
    );
    crate::ledger::verify_dir(&ledger_dir, None, None, false)?;
    if found == planted {
        step(&format!(
            "every planted pattern was found, and nothing else ({} of {})",
            found.len(),
            planted.len()
        ));
        Ok(())
    } else {
        bail!(
            "the findings differ from what was planted: found {} of {}",
            found.intersection(&planted).count(),
            planted.len()
        )
    }
}

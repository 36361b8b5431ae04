//! Clean rooms end to end with the real binary and a real server on loopback: three banks
//! publish datasets, an analyst proposes the AML contract, the banks approve it, a workload runs
//! it and the analyst fetches the result, which holds exactly the planted patterns. Then every
//! denial of the issue: running before every owner approved, a contract edited after approval,
//! a workload measurement the contract does not allow, a non-recipient fetching the result, a
//! result under the minimum group size, a revoked contract. Each is refused with a clear
//! message, is on the ledger, and releases no key (the one that runs its query releases its
//! keys and then refuses the result). The ledger verifies offline at the end.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::*;
use confide_cleanroom::aml::{self, Scale};
use serde_json::Value;

fn count(url: &str, kind: &str) -> usize {
    ledger_events(url)
        .iter()
        .filter(|e| e["type"] == kind)
        .count()
}

#[test]
fn publish_propose_approve_run_fetch_audit_and_every_denial() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = Server::start(&d.join("data"));
    let cli = Cli {
        dir: d,
        url: s.url.clone(),
        server_log: s.log.path().to_owned(),
    };
    let members = ["bank-a", "bank-b", "bank-c", "analyst"];
    for m in members {
        cli.ok(m, &["member", "init", "--name", m]);
        let doc = cli.ok(m, &["member", "show", "--json"]);
        std::fs::write(d.join(format!("{m}.json")), doc).unwrap();
    }
    cli.ok("bank-a", &["gov", "found"]);
    let out = cli.ok(
        "bank-a",
        &[
            "gov",
            "propose",
            "--add-member",
            d.join("bank-b.json").to_str().unwrap(),
            "--add-member",
            d.join("bank-c.json").to_str().unwrap(),
            "--add-member",
            d.join("analyst.json").to_str().unwrap(),
        ],
    );
    let proposal = second_word_after(&out, "proposal ");
    cli.ok("bank-a", &["gov", "vote", &proposal, "--approve"]);

    // Each bank's data, published: encrypted, uploaded, key deposited, registered.
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    let scale = Scale {
        transactions_per_bank: 3_000,
        ..Scale::default()
    };
    let planted = aml::generate(scale, &mut [&mut a, &mut b, &mut c]).unwrap();
    let mut ids = Vec::new();
    for (i, data) in [a, b, c].iter().enumerate() {
        let file = d.join(format!("bank{i}.csv"));
        std::fs::write(&file, data).unwrap();
        let out = cli.ok(
            members[i],
            &[
                "dataset",
                "publish",
                file.to_str().unwrap(),
                "--name",
                members[i],
                "--identity",
                "from_account=account",
                "--identity",
                "to_account=account",
                "--json",
            ],
        );
        let record: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            record["rows"].as_u64().unwrap() as usize,
            data.iter().filter(|&&b| b == b'\n').count() - 1
        );
        ids.push(record["id"].as_str().unwrap().to_owned());
        // The ciphertext in the store holds no plaintext row.
        let stored =
            std::fs::read(d.join("blobs").join(record["location"].as_str().unwrap())).unwrap();
        let a_row = String::from_utf8_lossy(data)
            .lines()
            .nth(1)
            .unwrap()
            .to_owned();
        assert!(!stored.windows(a_row.len()).any(|w| w == a_row.as_bytes()));
    }
    let sql = d.join("aml.sql");
    std::fs::write(&sql, aml::SQL).unwrap();
    let sim = format!(
        "sim:{}",
        hex::encode(confide_attest::sim::default_measurement())
    );
    let tables: Vec<String> = ["bank_a", "bank_b", "bank_c"]
        .iter()
        .zip(&ids)
        .map(|(t, id)| format!("{t}={id}"))
        .collect();
    let propose_args = |sql_path: &Path, extra: &[&str]| {
        let mut args = vec![
            "contract",
            "propose",
            "--sql",
            sql_path.to_str().unwrap(),
            "--measurement",
            &sim,
        ];
        for t in &tables {
            args.extend(["--table", t]);
        }
        let recipient = d.join("analyst.json");
        args.extend([
            "--recipient",
            recipient.to_str().unwrap(),
            "--columns",
            "pattern,subject,n_accounts,total",
            "--list",
            "3",
        ]);
        args.extend(extra);
        args.into_iter().map(str::to_owned).collect::<Vec<String>>()
    };
    let propose = |sql_path: &Path, extra: &[&str]| {
        let out = cli.ok("analyst", &strs(&propose_args(sql_path, extra)));
        second_word_after(&out, "contract ")
    };

    // Refused before any owner is asked: SQL that is not a query, SQL over a column the
    // datasets do not have, and a result the output rules would never let leave. Nothing
    // reaches the ledger.
    let entries = ledger_events(&s.url).len();
    for (text, why) in [
        (
            "COPY (SELECT * FROM bank_a) TO '/tmp/rows.csv'",
            "not supported",
        ),
        ("SELECT no_such_column FROM bank_a", "no_such_column"),
        (
            "SELECT tx_id AS subject FROM bank_a \
             WHERE to_account IN (SELECT from_account FROM bank_b)",
            "cannot count the individuals behind a subquery",
        ),
        (
            "SELECT amount AS salary, 3 AS n_accounts FROM bank_a",
            "salary",
        ),
    ] {
        let bad = d.join("bad.sql");
        std::fs::write(&bad, text).unwrap();
        cli.refused("analyst", &strs(&propose_args(&bad, &[])), why);
    }
    assert_eq!(
        ledger_events(&s.url).len(),
        entries,
        "a refused proposal was recorded"
    );

    let id = propose(&sql, &[]);

    // Denied: not every owner has approved.
    let releases = count(&s.url, "kms.release");
    cli.refused("analyst", &["run", &id, "--sim"], "no approved contract");
    cli.ok("bank-a", &["contract", "approve", &id]);
    cli.ok("bank-b", &["contract", "approve", &id]);
    cli.refused("analyst", &["run", &id, "--sim"], "no approved contract");
    cli.ok("bank-c", &["contract", "approve", &id]);
    assert!(
        cli.ok("analyst", &["contract", "show", &id])
            .contains("\"approved\"")
    );

    // This machine has no TEE: without --sim there is no evidence, and no silent fallback.
    cli.refused("analyst", &["run", &id], "--sim");
    // Denied: a workload whose measurement the contract does not name.
    cli.refused(
        "analyst",
        &["run", &id, "--sim", "--sim-measurement", &"ab".repeat(48)],
        "is not one contract",
    );
    // Denied: the contract edited after approval (one byte of SQL) is another contract.
    let edited = d.join("edited.sql");
    std::fs::write(&edited, format!("{} ", aml::SQL)).unwrap();
    let edited_id = propose(&edited, &[]);
    assert_ne!(edited_id, id);
    cli.refused(
        "analyst",
        &["run", &edited_id, "--sim"],
        "no approved contract",
    );
    assert_eq!(
        count(&s.url, "kms.release"),
        releases,
        "a denied run released a key"
    );
    let denials = ledger_events(&s.url)
        .into_iter()
        .filter(|e| e["type"] == "kms.deny" && e["contract"].is_string())
        .count();
    assert!(denials >= 4, "{denials} denials on the ledger");

    // The run: every key released, the result stored for the analyst, the run on the ledger.
    let out = cli.ok("analyst", &["run", &id, "--sim", "--json"]);
    let run: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(run["simulated"], true);
    let run_id = run["run"].as_str().unwrap().to_owned();
    // Each bank's dataset key, and the key of its difference-check history.
    assert_eq!(count(&s.url, "kms.release"), releases + 6);
    assert_eq!(count(&s.url, "cleanroom.run"), 1);
    let result = d.join("result.csv");
    let (ok, _, err) = cli.run(
        "analyst",
        &[
            "result",
            "fetch",
            &run_id,
            "--out",
            result.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    assert!(err.contains("SIMULATED TEE"), "{err}");
    let found: BTreeSet<aml::Finding> = std::fs::read_to_string(&result)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_owned(), f[1].to_owned())
        })
        .collect();
    assert_eq!(found, planted);
    // Denied: run records the broker's releases do not bear out. A workload that attested but
    // was given no key reports the real run's inputs; one that reports other inputs or other
    // recipients; each refused with its reason and on the ledger, no run recorded.
    let mut real = get_json(&format!("{}/cleanroom/runs/{run_id}", s.url));
    // (A copy of the run's history steps would start from a history the run has moved on:
    // refused for that first. Without them, each of the other checks answers.)
    let steps = real["output"]
        .as_object_mut()
        .unwrap()
        .remove("history")
        .unwrap();
    assert_eq!(steps.as_array().unwrap().len(), 3, "one history per bank");
    let mut again = real["output"].clone();
    again["history"] = steps;
    let copier = Workload::new();
    let (status, r) = post_json(
        &format!("{}/cleanroom/runs", s.url),
        &copier.report(
            &copier.token(&s.url),
            &id,
            serde_json::json!({"released": {"inputs": real["inputs"], "output": again}}),
        ),
    );
    assert_eq!(status, 403, "{r}");
    assert!(
        r["detail"]
            .as_str()
            .unwrap()
            .contains("did not start from the latest history"),
        "{r}"
    );
    let stranger = Workload::new();
    let stranger_token = stranger.token(&s.url);
    let mut other_inputs = real["inputs"].clone();
    other_inputs[0]["digest"] = Value::from("00".repeat(32));
    let mut other_output = real["output"].clone();
    other_output["recipients"] = serde_json::json!([]);
    for (inputs, output, why) in [
        (
            &real["inputs"],
            &real["output"],
            "never released to this workload",
        ),
        (&other_inputs, &real["output"], "not those of its versions"),
        (
            &real["inputs"].as_array().unwrap()[..1].into(),
            &real["output"],
            "are not contract",
        ),
        (&real["inputs"], &other_output, "recipients"),
    ] {
        let outcome = serde_json::json!({"released": {"inputs": inputs, "output": output}});
        let (status, r) = post_json(
            &format!("{}/cleanroom/runs", s.url),
            &stranger.report(&stranger_token, &id, outcome),
        );
        assert_eq!(status, 403, "{r}");
        assert!(r["detail"].as_str().unwrap().contains(why), "{r}");
    }
    assert_eq!(count(&s.url, "cleanroom.deny"), 5);
    assert_eq!(count(&s.url, "cleanroom.run"), 1);

    // Denied: a member who is not a recipient.
    cli.refused("bank-a", &["result", "fetch", &run_id], "not a recipient");

    // Denied: a result under the minimum group size (the contract says refuse), though its
    // SQL claims three accounts behind each row: the engine counts two behind each transfer.
    let per_account = d.join("per-account.sql");
    std::fs::write(
        &per_account,
        "SELECT 'x' AS pattern, from_account AS subject, 3 AS n_accounts, amount AS total \
         FROM bank_a WHERE kind = 'transfer'",
    )
    .unwrap();
    let narrow = {
        let recipient = d.join("analyst.json");
        let args = [
            "contract",
            "propose",
            "--sql",
            per_account.to_str().unwrap(),
            "--measurement",
            &sim,
            "--table",
            &tables[0],
            "--recipient",
            recipient.to_str().unwrap(),
            "--columns",
            "pattern,subject,n_accounts,total",
            "--list",
            "3",
            "--refuse",
        ];
        second_word_after(&cli.ok("analyst", &args), "contract ")
    };
    cli.ok("bank-a", &["contract", "approve", &narrow]);
    cli.refused("analyst", &["run", &narrow, "--sim"], "fewer than 3");
    assert_eq!(count(&s.url, "cleanroom.refused"), 1);
    assert_eq!(
        count(&s.url, "cleanroom.run"),
        1,
        "a refused result was recorded as a run"
    );

    // Revoked by one owner: runs no more.
    cli.ok("bank-b", &["contract", "revoke", &id]);
    let releases = count(&s.url, "kms.release");
    cli.refused("analyst", &["run", &id, "--sim"], "is revoked");
    assert_eq!(count(&s.url, "kms.release"), releases);
    s.kill();

    // The whole story verifies offline.
    let (ok, out, err) = cli.run(
        "analyst",
        &["ledger", "verify", d.join("data/ledger").to_str().unwrap()],
    );
    assert!(ok && out.contains("ledger verified"), "{err}");
}

#[test]
fn the_demo_finds_what_it_planted() {
    let out = Command::new(env!("CARGO_BIN_EXE_confide"))
        .args(["demo", "aml", "--transactions", "3000"])
        .output()
        .unwrap();
    let (ok, text, err) = outcome(&out);
    assert!(ok, "{text}{err}");
    assert!(
        text.contains("every planted pattern was found, and nothing else (6 of 6)"),
        "{text}"
    );
    assert!(text.contains("SIMULATED TEE"), "{text}");
    assert!(
        !text.contains("   NO") && !text.contains("MISSED"),
        "{text}"
    );
}

/// The benchmark's two sides must both find the planted patterns (it refuses to report a figure
/// otherwise), and it reports every round and the median ratio, for CSV and for Parquet.
#[test]
fn the_iot_demo_runs_each_day_suppresses_a_difference_and_stops_at_the_budget() {
    let out = Command::new(env!("CARGO_BIN_EXE_confide"))
        .args(["demo", "iot", "--employees", "800"])
        .output()
        .unwrap();
    let (ok, text, err) = outcome(&out);
    assert!(ok, "{text}{err}");
    // The executives' groups are under five badges: suppressed by the engine's count.
    assert!(text.contains("executive groups were suppressed"), "{text}");
    assert!(!text.contains("; 0 executive groups"), "{text}");
    // Each publisher appends its second day; the day's contracts read it.
    for t in ["sensors", "swipes", "cctv", "visitors"] {
        assert!(text.contains(&format!("appended {t} version 2")), "{text}");
    }
    assert!(text.contains("== day 1: occupancy"), "{text}");
    // One visitor more for one department: its group, one visitor from the day before, is
    // suppressed by the difference checks.
    assert!(
        text.contains("by one visitor, whose visit it would tell; the difference checks"),
        "{text}"
    );
    assert!(text.contains("swipes: ε 2 of 2 spent"), "{text}");
    assert!(
        text.contains("refused before any key was released"),
        "{text}"
    );
    assert!(text.contains("privacy budget of ε 2 per 1 days"), "{text}");
    assert!(text.contains("ledger verified"), "{text}");
}

#[test]
fn the_benchmark_runs_both_sides_to_the_same_findings() {
    for format in ["csv", "parquet"] {
        let out = Command::new(env!("CARGO_BIN_EXE_confide"))
            .args([
                "bench",
                "cleanroom",
                "--transactions",
                "30000",
                "--runs",
                "2",
            ])
            .args(["--format", format])
            .output()
            .unwrap();
        let (ok, text, err) = outcome(&out);
        assert!(ok, "{format}: {text}{err}");
        assert!(text.contains("6 planted patterns"), "{text}");
        assert!(text.contains(&format!("plaintext {format}")), "{text}");
        for round in ["    1 ", "    2 "] {
            assert!(
                text.lines().any(|l| l.starts_with(round)),
                "{format}: round {round:?} missing: {text}"
            );
        }
        let ratio = text
            .lines()
            .find(|l| l.contains("confidential / plain, round by round"))
            .and_then(|l| l.split_whitespace().find_map(|w| w.parse::<f64>().ok()))
            .unwrap_or_else(|| panic!("{format}: no median ratio: {text}"));
        assert!(ratio > 0.0 && ratio.is_finite(), "{text}");
    }
}

//! A dataset's privacy budget end to end, with the real binary and a real server on loopback:
//! a hospital publishes patient visits with a budget of ε 1 per 30 days; a contract without
//! noise is refused over it; a contract that adds noise of ε 0.4 runs twice, and the third run
//! is refused before any key is released, with the reason on the ledger; after a restart the
//! budget is still spent; only the hospital's own decision raises it, and then the run goes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::Value;

#[test]
fn runs_spend_the_budget_a_restart_keeps_it_and_only_the_owner_raises_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = Server::start(&d.join("data"));
    let mut cli = Cli {
        dir: d,
        url: s.url.clone(),
        server_log: s.log.path().to_owned(),
    };
    for m in ["hospital", "analyst"] {
        cli.ok(m, &["member", "init", "--name", m]);
        let doc = cli.ok(m, &["member", "show", "--json"]);
        std::fs::write(d.join(format!("{m}.json")), doc).unwrap();
    }
    cli.ok("hospital", &["gov", "found"]);
    let analyst = d.join("analyst.json");
    let out = cli.ok(
        "hospital",
        &["gov", "propose", "--add-member", analyst.to_str().unwrap()],
    );
    let proposal = second_word_after(&out, "proposal ");
    cli.ok("hospital", &["gov", "vote", &proposal, "--approve"]);

    // Forty patients, two wards, three visits each.
    let mut csv = String::from("patient,ward,age\n");
    for p in 0..40 {
        for _ in 0..3 {
            csv.push_str(&format!("p{p},w{},{}\n", p % 2, 20 + p));
        }
    }
    let file = d.join("visits.csv");
    std::fs::write(&file, csv).unwrap();
    let out = cli.ok(
        "hospital",
        &[
            "dataset",
            "publish",
            file.to_str().unwrap(),
            "--name",
            "visits",
            "--identity",
            "patient",
            "--bounds",
            "age=0..120",
            "--budget",
            "1/30",
            "--json",
        ],
    );
    let record: Value = serde_json::from_str(&out).unwrap();
    let dataset = record["id"].as_str().unwrap().to_owned();
    assert_eq!(record["privacy"]["budget"]["epsilon"], "1");

    let sql = d.join("wards.sql");
    std::fs::write(
        &sql,
        "SELECT ward, COUNT(*) AS visits, AVG(age) AS age FROM visits GROUP BY ward",
    )
    .unwrap();
    let sim = format!(
        "sim:{}",
        hex::encode(confide_attest::sim::default_measurement())
    );
    let table = format!("visits={dataset}");
    let propose = |extra: &[&str]| {
        let mut args = vec![
            "contract",
            "propose",
            "--sql",
            sql.to_str().unwrap(),
            "--measurement",
            &sim,
            "--table",
            &table,
            "--recipient",
            analyst.to_str().unwrap(),
            "--columns",
            "ward,visits,age",
            "--aggregation",
            "5",
        ];
        args.extend(extra);
        args.into_iter().map(str::to_owned).collect::<Vec<String>>()
    };
    // Without noise, the contract would read the data outside any budget: refused.
    cli.refused("analyst", &strs(&propose(&[])), "must add noise");

    let out = cli.ok(
        "analyst",
        &strs(&propose(&[
            "--noise",
            "0.4",
            "--max-rows-per-identity",
            "3",
        ])),
    );
    let id = second_word_after(&out, "contract ");
    cli.ok("hospital", &["contract", "approve", &id]);

    for _ in 0..2 {
        let out = cli.ok("analyst", &["run", &id, "--sim", "--json"]);
        let run: Value = serde_json::from_str(&out).unwrap();
        let record = get_json(&format!(
            "{}/cleanroom/runs/{}",
            s.url,
            run["run"].as_str().unwrap()
        ));
        assert_eq!(record["output"]["epsilon"], "0.4", "{record}");
    }
    let status = cli.ok("hospital", &["dataset", "budget", &dataset]);
    assert!(status.contains("ε 0.8 spent of 1"), "{status}");
    let releases = ledger_events(&s.url)
        .iter()
        .filter(|e| e["type"] == "kms.release")
        .count();
    cli.refused("analyst", &["run", &id, "--sim"], "privacy budget");
    assert_eq!(
        ledger_events(&s.url)
            .iter()
            .filter(|e| e["type"] == "kms.release")
            .count(),
        releases,
        "a run past the budget released a key"
    );

    // A restart rebuilds the budget from the ledger: still spent.
    s.kill();
    let s = Server::start(&d.join("data"));
    cli.url = s.url.clone();
    cli.server_log = s.log.path().to_owned();
    let status = cli.ok("analyst", &["dataset", "budget", &dataset]);
    assert!(status.contains("ε 0.8 spent of 1"), "{status}");
    cli.refused("analyst", &["run", &id, "--sim"], "privacy budget");
    // A workload that skips its own check and asks the key broker directly is denied there,
    // with the rule on the ledger, and given no key.
    let workload = Workload::new();
    let (status, answer) = post_json(
        &format!("{}/keys/{}/release", s.url, record["key"].as_str().unwrap()),
        &serde_json::json!({"token": workload.token(&s.url), "contract": id}),
    );
    assert_eq!(status, 403, "{answer}");
    assert!(
        answer["detail"]
            .as_str()
            .unwrap()
            .contains("privacy budget"),
        "{answer}"
    );
    let denied = ledger_events(&s.url)
        .into_iter()
        .filter(|e| e["type"] == "kms.deny" && e["rule"] == "privacy-budget-spent")
        .count();
    assert_eq!(denied, 1);

    // Raising it is the hospital's decision alone: the analyst's proposal stays open until
    // the hospital votes for it.
    let out = cli.ok("analyst", &["dataset", "budget", &dataset, "2/30"]);
    assert!(out.contains("open"), "{out}");
    cli.refused("analyst", &["run", &id, "--sim"], "privacy budget");
    let proposal = second_word_after(&out, "budget proposal ")
        .trim_end_matches(':')
        .to_owned();
    cli.ok("hospital", &["gov", "vote", &proposal, "--approve"]);
    cli.ok("analyst", &["run", &id, "--sim"]);
    let status = cli.ok("hospital", &["dataset", "budget", &dataset]);
    assert!(status.contains("ε 1.2 spent of 2"), "{status}");

    // ε 0.8 left is two releases of 0.4: of six asked at once, exactly two are granted, the
    // others denied by the ledger writer, which charges one release after another.
    let key = record["key"].as_str().unwrap().to_owned();
    let granted: usize = std::thread::scope(|scope| {
        let asks: Vec<_> = (0..6)
            .map(|_| {
                let (url, key, id) = (s.url.clone(), key.clone(), id.clone());
                scope.spawn(move || {
                    let workload = Workload::new();
                    let (status, _) = post_json(
                        &format!("{url}/keys/{key}/release"),
                        &serde_json::json!({"token": workload.token(&url), "contract": id}),
                    );
                    usize::from(status == 200)
                })
            })
            .collect();
        asks.into_iter().map(|a| a.join().unwrap()).sum()
    });
    assert_eq!(granted, 2);
    // Every one denied is on the ledger with its rule, whichever check caught it.
    let denied = ledger_events(&s.url)
        .into_iter()
        .filter(|e| e["type"] == "kms.deny" && e["rule"] == "privacy-budget-spent")
        .count();
    assert_eq!(denied, 1 + 4);
    let status = cli.ok("hospital", &["dataset", "budget", &dataset]);
    assert!(status.contains("ε 2 spent of 2"), "{status}");
}

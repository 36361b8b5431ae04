//! A growing dataset and the difference checks, end to end with the real binary and a real
//! server on loopback: HR publishes its staff (badge, department, salary); "the total salary
//! per department" runs, and then "the same, but for everyone except the one with the salary
//! 1007" (badge b07: the engine refuses a filter on the badge itself), whose department group
//! is one badge away from the first result's and is suppressed; HR appends a
//! second batch (one new hire in one department, five in the other), and the first contract
//! run again over all versions releases only the department five badges away, while one that
//! reads the latest version only sees the new batch alone; a window that holds no version
//! runs nothing; a history deleted from the blob store stops the exact runs rather than their
//! checks; only the owner appends, and only rows with the dataset's columns.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::Value;

/// The result's rows, after its header, sorted.
fn rows(csv: &str) -> Vec<String> {
    let mut rows: Vec<String> = csv.lines().skip(1).map(str::to_owned).collect();
    rows.sort();
    rows
}

#[test]
fn differences_of_one_are_suppressed_across_contracts_and_versions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = Server::start(&d.join("data"));
    let cli = Cli {
        dir: d,
        url: s.url.clone(),
        server_log: s.log.path().to_owned(),
    };
    for m in ["hr", "analyst"] {
        cli.ok(m, &["member", "init", "--name", m]);
        let doc = cli.ok(m, &["member", "show", "--json"]);
        std::fs::write(d.join(format!("{m}.json")), doc).unwrap();
    }
    cli.ok("hr", &["gov", "found"]);
    let analyst = d.join("analyst.json");
    let out = cli.ok(
        "hr",
        &["gov", "propose", "--add-member", analyst.to_str().unwrap()],
    );
    cli.ok(
        "hr",
        &[
            "gov",
            "vote",
            &second_word_after(&out, "proposal "),
            "--approve",
        ],
    );

    // Twenty badges, ten in each department.
    let staff = |badges: std::ops::Range<u32>, department: &dyn Fn(u32) -> u32| {
        let mut csv = String::from("badge,department,salary\n");
        for b in badges {
            csv.push_str(&format!("b{b:02},d{},{}\n", department(b), 1000 + b));
        }
        csv
    };
    let file = d.join("staff.csv");
    std::fs::write(&file, staff(0..20, &|b| b % 2)).unwrap();
    let out = cli.ok(
        "hr",
        &[
            "dataset",
            "publish",
            file.to_str().unwrap(),
            "--name",
            "staff",
            "--identity",
            "badge",
            "--json",
        ],
    );
    let record: Value = serde_json::from_str(&out).unwrap();
    let dataset = record["id"].as_str().unwrap().to_owned();

    let sim = format!(
        "sim:{}",
        hex::encode(confide_attest::sim::default_measurement())
    );
    let table = format!("staff={dataset}");
    let contract = |name: &str, sql: &str, versions: &str| {
        let path = d.join(format!("{name}.sql"));
        std::fs::write(&path, sql).unwrap();
        let out = cli.ok(
            "analyst",
            &[
                "contract",
                "propose",
                "--sql",
                path.to_str().unwrap(),
                "--measurement",
                &sim,
                "--table",
                &table,
                "--recipient",
                analyst.to_str().unwrap(),
                "--columns",
                "department,n,total",
                "--aggregation",
                "5",
                "--versions",
                &format!("staff={versions}"),
            ],
        );
        let id = second_word_after(&out, "contract ");
        cli.ok("hr", &["contract", "approve", &id]);
        id
    };
    let run = |id: &str| {
        let out = cli.ok("analyst", &["run", id, "--sim", "--json"]);
        let run: Value = serde_json::from_str(&out).unwrap();
        let id = run["run"].as_str().unwrap().to_owned();
        let result = cli.ok("analyst", &["result", "fetch", &id]);
        let record = get_json(&format!("{}/cleanroom/runs/{id}", s.url));
        (
            rows(&result),
            record["output"]["suppressed"].as_u64().unwrap(),
        )
    };
    const TOTALS: &str = "SELECT department, COUNT(*) AS n, SUM(salary) AS total FROM staff \
                          GROUP BY department";
    let everyone = contract("everyone", TOTALS, "all");
    let (first, suppressed) = run(&everyone);
    assert_eq!(first, ["d0,10,10090", "d1,10,10100"]);
    assert_eq!(suppressed, 0);

    // Everyone but b07, left out by a value only it has: its department's group is one badge
    // from the first result's, and the difference would be b07's salary. Suppressed; the
    // other department is the same group again, released.
    let but_one = contract(
        "but-one",
        "SELECT department, COUNT(*) AS n, SUM(salary) AS total FROM staff \
         WHERE salary <> 1007 GROUP BY department",
        "all",
    );
    let (second, suppressed) = run(&but_one);
    assert_eq!(second, ["d0,10,10090"]);
    assert_eq!(suppressed, 1);
    // The same contract again over the same data: the same groups, released again.
    assert_eq!(run(&everyone), (first.clone(), 0));

    // Only the owner appends, and only rows with the dataset's columns.
    let batch = d.join("batch.csv");
    std::fs::write(&batch, staff(20..26, &|b| if b == 20 { 0 } else { 1 })).unwrap();
    let append = ["dataset", "append", &dataset, batch.to_str().unwrap()];
    cli.refused("analyst", &append, "only its owner appends");
    let wrong = d.join("wrong.csv");
    std::fs::write(&wrong, "badge,salary\nb90,1\n").unwrap();
    cli.refused(
        "hr",
        &["dataset", "append", &dataset, wrong.to_str().unwrap()],
        "has the columns badge,salary",
    );
    let out = cli.ok("hr", &append);
    assert!(out.contains("appended version 2"), "{out}");
    let versions: Value =
        serde_json::from_str(&cli.ok("analyst", &["dataset", "versions", &dataset])).unwrap();
    assert_eq!(versions.as_array().unwrap().len(), 2);
    assert_eq!(versions[1]["rows"], 6);

    // All versions: d0 has one new badge (b20, whose salary the difference would give):
    // suppressed; d1 has five new, as many as the minimum: released.
    let (grown, suppressed) = run(&everyone);
    assert_eq!(grown, ["d1,15,15215"]);
    assert_eq!(suppressed, 1);
    // The latest version alone: d1's five new badges, d0's one is under the minimum.
    let latest = contract("latest", TOTALS, "latest");
    assert_eq!(run(&latest), (vec!["d1,5,5115".to_owned()], 1));
    // A window that holds no version runs nothing.
    let empty = contract("window", TOTALS, "0..1");
    cli.refused(
        "analyst",
        &["run", &empty, "--sim"],
        "has no version the contract reads",
    );

    // The history deleted from the blob store: the exact runs stop, rather than run unchecked.
    let history = d.join("blobs").join("history").join(&dataset);
    assert!(history.is_dir(), "no history was stored");
    std::fs::remove_dir_all(&history).unwrap();
    cli.refused(
        "analyst",
        &["run", &everyone, "--sim"],
        "difference-check history",
    );
    // The run records state the history each moved on, chained from the first.
    let steps: Vec<Value> = ledger_events(&s.url)
        .into_iter()
        .filter(|e| e["type"] == "cleanroom.run")
        .filter_map(|e| e["output"]["history"].as_array().cloned())
        .flatten()
        .collect();
    assert!(steps.len() >= 4, "{steps:?}");
    assert!(steps[0].get("from").is_none());
    for pair in steps.windows(2) {
        assert_eq!(pair[1]["from"], pair[0]["to"]);
    }
}

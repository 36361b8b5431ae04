//! The difference checks, as an attacker would try them: two groups of one result that differ
//! by one individual (a union of "everyone" and "everyone but one"); a second result one
//! individual away from the first, after a union filed the first under another table's name;
//! noise over a table without a budget, which would bound nothing across runs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use confide_cleanroom::history::History;
use confide_cleanroom::runner::{self, schema_from};
use confide_cleanroom::{AnalysisRule, Format, OnViolation, OutputRules, Privacy, Table};
use confide_model::{Budget, Epsilon, Noise};

const MIN: u64 = 3;

fn rules(rule: AnalysisRule, columns: &[&str]) -> OutputRules {
    OutputRules {
        columns: columns.iter().map(|c| (*c).to_owned()).collect(),
        rule: Some(rule),
        min_group: None,
        max_rows: 10_000,
        on_violation: OnViolation::Suppress,
        noise: None,
    }
}

fn badge() -> Privacy {
    Privacy {
        identity: [("badge_id".to_owned(), "badge".to_owned())].into(),
        ..Privacy::default()
    }
}

/// HR's register (ten badges, one hired in 2024) and another member's table of the same
/// domain, empty; each with its history so far.
fn tables(hr_history: History, mine_history: History, hr_privacy: Privacy) -> Vec<Table> {
    let mut hr = String::from("badge_id,dept,year,salary\n");
    for i in 0..10 {
        let year = if i == 7 { 2024 } else { 2020 };
        hr.push_str(&format!("B{i},ops,{year},{}\n", 1000 + i));
    }
    let schema = |cols: &[(&str, &str)]| {
        schema_from(
            &cols
                .iter()
                .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
                .collect::<Vec<_>>(),
        )
        .unwrap()
    };
    vec![
        Table {
            name: "hr".into(),
            format: Format::Csv,
            schema: schema(&[
                ("badge_id", "Utf8"),
                ("dept", "Utf8"),
                ("year", "Int64"),
                ("salary", "Int64"),
            ]),
            sources: vec![Arc::new(hr.into_bytes())],
            privacy: hr_privacy,
            history: hr_history,
        },
        Table {
            name: "mine".into(),
            format: Format::Csv,
            schema: schema(&[("badge_id", "Utf8"), ("salary", "Int64")]),
            sources: vec![Arc::new(b"badge_id,salary\n".to_vec())],
            privacy: badge(),
            history: mine_history,
        },
    ]
}

#[tokio::test]
async fn one_result_cannot_hold_everyone_and_everyone_but_one() {
    let sql = "SELECT k, COUNT(*) AS n, SUM(salary) AS total FROM (\
               SELECT 'all' AS k, salary, badge_id FROM hr UNION ALL \
               SELECT 'rest' AS k, salary, badge_id FROM hr WHERE year < 2024) GROUP BY k";
    let columns = ["k", "n", "total"];
    // The aggregation rule refuses the union itself (it reads each table once)...
    let aggregation = rules(
        AnalysisRule::Aggregation {
            min_identities: MIN,
        },
        &columns,
    );
    let err = runner::run(
        sql,
        tables(History::default(), History::default(), badge()),
        &aggregation,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("reads each table once"), "{err}");
    // ...the list rule plans it, and its difference checks compare the rows of one result:
    // both groups are far above the minimum, and one of them goes.
    let list = rules(
        AnalysisRule::List {
            min_identities: MIN,
        },
        &columns,
    );
    let out = runner::run(
        sql,
        tables(History::default(), History::default(), badge()),
        &list,
    )
    .await
    .unwrap();
    assert_eq!((out.rows, out.suppressed), (1, 1));
    // The refusal names the rule when the contract says to refuse.
    let mut strict = list;
    strict.on_violation = OnViolation::Refuse;
    let err = runner::run(
        sql,
        tables(History::default(), History::default(), badge()),
        &strict,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("difference check"), "{err}");
}

#[tokio::test]
async fn a_union_files_its_sets_under_every_table_of_the_domain() {
    let aggregation = AnalysisRule::Aggregation {
        min_identities: MIN,
    };
    // Everyone, counted through a union whose first table is the attacker's own.
    let first = runner::run(
        "SELECT g, COUNT(*) AS n FROM (SELECT 'a' AS g, badge_id FROM mine UNION ALL \
         SELECT 'a' AS g, badge_id FROM hr) GROUP BY g",
        tables(History::default(), History::default(), badge()),
        &rules(
            AnalysisRule::List {
                min_identities: MIN,
            },
            &["g", "n"],
        ),
    )
    .await
    .unwrap();
    assert_eq!(first.rows, 1);
    let hr_history = first.histories.get("hr").cloned().unwrap();
    let mine_history = first.histories.get("mine").cloned().unwrap();
    assert_eq!(hr_history.sets("badge").len(), 1);
    assert_eq!(mine_history.sets("badge"), hr_history.sets("badge"));
    // Then everyone but the 2024 hire, from HR alone: one badge away, suppressed.
    let second = runner::run(
        "SELECT dept, COUNT(*) AS n FROM hr WHERE year < 2024 GROUP BY dept",
        tables(hr_history.clone(), mine_history, badge()),
        &rules(aggregation, &["dept", "n"]),
    )
    .await
    .unwrap();
    assert_eq!((second.rows, second.suppressed), (0, 1));
    // Its history is the same: nothing was let out.
    assert_eq!(second.histories.get("hr"), Some(&hr_history));
}

#[tokio::test]
async fn noise_needs_a_budget_on_every_table_that_names_individuals_and_is_not_checked() {
    let sql = "SELECT dept, COUNT(*) AS n FROM hr GROUP BY dept";
    let mut noised = rules(
        AnalysisRule::Aggregation {
            min_identities: MIN,
        },
        &["dept", "n"],
    );
    noised.noise = Some(Noise {
        epsilon: Epsilon::from_micros(1_000_000),
        max_rows_per_identity: 1,
    });
    let budgeted = Privacy {
        budget: Some(Budget {
            epsilon: Epsilon::from_micros(2_000_000),
            period_days: 1,
        }),
        ..badge()
    };
    // Without a budget, noise bounds nothing across runs ("everyone" and "everyone but one"
    // at ε 100, run after run): refused, for HR's table and for another that names badges.
    for hr in [badge(), budgeted.clone()] {
        let err = runner::run(
            sql,
            tables(History::default(), History::default(), hr),
            &noised,
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("no privacy budget"), "{err}");
    }
    // Every table that names individuals has a budget: ε bounds the rest, nothing is kept.
    let mut all = tables(History::default(), History::default(), budgeted.clone());
    all[1].privacy = budgeted;
    let out = runner::run(sql, all, &noised).await.unwrap();
    assert!(out.histories.is_empty());
    assert_eq!(out.rows, 1);
}

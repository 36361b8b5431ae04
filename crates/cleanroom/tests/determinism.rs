//! A contract's SQL may call only functions whose result is a function of the data: volatile
//! ones (`random()`, `uuid()`) and time-dependent ones (`now()`, `current_date()`) are refused
//! on the planned query, however the SQL hides them, before the owners are asked to approve.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use confide_cleanroom::runner::{check, schema_from};
use confide_cleanroom::{AnalysisRule, CleanroomError, OnViolation, OutputRules, Privacy};

fn rules() -> OutputRules {
    OutputRules {
        noise: None,
        columns: vec!["region".into(), "n".into(), "v".into()],
        rule: Some(AnalysisRule::List { min_identities: 2 }),
        min_group: None,
        max_rows: 100,
        on_violation: OnViolation::Refuse,
    }
}

async fn checked(sql: &str) -> Result<Vec<String>, CleanroomError> {
    let schema = schema_from(&[
        ("region".into(), "Utf8".into()),
        ("customer".into(), "Utf8".into()),
        ("amount".into(), "Int64".into()),
    ])
    .unwrap();
    let privacy = Privacy {
        identity: [("customer".into(), "person".into())].into(),
        ..Privacy::default()
    };
    check(sql, &[("t".into(), schema, privacy)], &rules()).await
}

#[tokio::test]
async fn a_function_of_anything_but_the_data_is_refused_wherever_it_hides() {
    for (sql, function) in [
        (
            "SELECT region, COUNT(*) AS n, SUM(amount) * random() AS v FROM t GROUP BY region",
            "random",
        ),
        (
            "SELECT region, COUNT(*) AS n, uuid() AS v FROM t GROUP BY region",
            "uuid",
        ),
        (
            "SELECT region, COUNT(*) AS n, now() AS v FROM t GROUP BY region",
            "now",
        ),
        (
            "SELECT region, COUNT(*) AS n, 0 AS v FROM t WHERE amount > random() * 100 GROUP BY region",
            "random",
        ),
        (
            "SELECT region, COUNT(*) AS n, 0 AS v FROM t GROUP BY region ORDER BY random()",
            "random",
        ),
        (
            "SELECT region, n, 0 AS v FROM (SELECT region, COUNT(*) AS n FROM t \
             WHERE customer IN (SELECT customer FROM t WHERE random() < 0.5) GROUP BY region)",
            "random",
        ),
        (
            "WITH r AS (SELECT region, amount + CAST(random() * 10 AS BIGINT) AS a FROM t) \
             SELECT region, COUNT(*) AS n, SUM(a) AS v FROM r GROUP BY region",
            "random",
        ),
        (
            "SELECT region, COUNT(*) AS n, 0 AS v FROM t \
             WHERE CAST(amount AS DATE) < current_date() GROUP BY region",
            "current_date",
        ),
    ] {
        match checked(sql).await {
            Err(CleanroomError::NotDeterministic { function: f }) => {
                assert_eq!(f, function, "{sql}")
            }
            other => panic!("{sql}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn functions_of_the_data_pass() {
    let columns = checked(
        "SELECT upper(region) AS region, COUNT(DISTINCT customer) AS n, \
         ROUND(AVG(abs(amount)), 2) AS v FROM t GROUP BY upper(region)",
    )
    .await
    .unwrap();
    assert_eq!(columns, ["region", "n", "v"]);
}

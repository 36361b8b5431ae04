//! Differential privacy the engine adds under the aggregation rule: contributions bounded per
//! individual, sums clamped to the owners' bounds, noise of the declared distribution on every
//! COUNT, SUM and AVG before anything above the aggregate reads it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;

use confide_cleanroom::privacy::guard;
use confide_cleanroom::{AnalysisRule, CleanroomError, Privacy};
use confide_model::{Bounds, Epsilon, Noise};
use datafusion::arrow::array::{
    Array, AsArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::prelude::{DataFrame, SessionContext};

const RULE: AnalysisRule = AnalysisRule::Aggregation { min_identities: 3 };

/// Badge readings per room: `people` badges in room "a", each with three readings of
/// 20 `minutes`, and one badge, "heavy", with a thousand readings of a huge value.
fn building(people: usize) -> (SessionContext, BTreeMap<String, Privacy>) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("badge", DataType::Utf8, true),
        Field::new("room", DataType::Utf8, true),
        Field::new("minutes", DataType::Int64, true),
        Field::new("floor", DataType::Int64, true),
    ]));
    let (mut badge, mut room, mut minutes, mut floor) = (vec![], vec![], vec![], vec![]);
    for p in 0..people {
        for m in [20, 20, 20] {
            badge.push(format!("b{p}"));
            room.push("a".to_owned());
            minutes.push(m);
            floor.push(1);
        }
    }
    for _ in 0..1000 {
        badge.push("heavy".to_owned());
        room.push("a".to_owned());
        minutes.push(1_000_000_000);
        floor.push(1);
    }
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(badge)),
            Arc::new(StringArray::from(room)),
            Arc::new(Int64Array::from(minutes)),
            Arc::new(Int64Array::from(floor)),
        ],
    )
    .unwrap();
    let ctx = SessionContext::new();
    ctx.register_table(
        "readings",
        Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap()),
    )
    .unwrap();
    // Another member's table: the heavy badge a thousand times, five others once, and the
    // badges again as integers.
    let probe = Arc::new(Schema::new(vec![
        Field::new("badge", DataType::Utf8, true),
        Field::new("number", DataType::Int64, true),
    ]));
    let mut badges: Vec<String> = vec!["heavy".to_owned(); 1000];
    badges.extend((0..5).map(|p| format!("b{p}")));
    let numbers: Vec<i64> = (0..badges.len() as i64).collect();
    let batch = RecordBatch::try_new(
        probe.clone(),
        vec![
            Arc::new(StringArray::from(badges)),
            Arc::new(Int64Array::from(numbers)),
        ],
    )
    .unwrap();
    ctx.register_table(
        "probe",
        Arc::new(MemTable::try_new(probe, vec![vec![batch]]).unwrap()),
    )
    .unwrap();
    let identity = || [("badge".to_owned(), "badge".to_owned())].into();
    // Noise needs a budget on every table that names individuals.
    let budget = Some(confide_model::Budget {
        epsilon: Epsilon::parse("10").unwrap(),
        period_days: 1,
    });
    let declared = [
        (
            "readings".to_owned(),
            Privacy {
                identity: identity(),
                bounds: [("minutes".into(), Bounds { lo: 0, hi: 60 })].into(),
                budget,
                ..Privacy::default()
            },
        ),
        (
            "probe".to_owned(),
            Privacy {
                identity: identity(),
                budget,
                ..Privacy::default()
            },
        ),
    ]
    .into();
    (ctx, declared)
}

fn noise(epsilon: &str, rows: u32) -> Noise {
    Noise {
        epsilon: Epsilon::parse(epsilon).unwrap(),
        max_rows_per_identity: rows,
    }
}

/// Runs `sql` guarded with `noise`: the result's own columns as doubles, row by row.
async fn run(
    ctx: &SessionContext,
    declared: &BTreeMap<String, Privacy>,
    sql: &str,
    noise: Noise,
) -> Result<Vec<Vec<f64>>, CleanroomError> {
    let frame = ctx.sql(sql).await.unwrap();
    let guarded = guard(frame.logical_plan(), declared, RULE, Some(noise))?;
    let own = guarded.columns.len();
    let batches = DataFrame::new(ctx.state(), guarded.plan)
        .collect()
        .await
        .unwrap();
    let mut rows = Vec::new();
    for b in batches {
        for row in 0..b.num_rows() {
            rows.push(
                (0..own)
                    .map(|i| {
                        let c = datafusion::arrow::compute::cast(b.column(i), &DataType::Float64)
                            .unwrap();
                        let c: &Float64Array = c.as_primitive();
                        if c.is_valid(row) {
                            c.value(row)
                        } else {
                            f64::NAN
                        }
                    })
                    .collect(),
            );
        }
    }
    Ok(rows)
}

const SQL: &str = "SELECT floor, COUNT(*) AS n, SUM(minutes) AS total, AVG(minutes) AS mean \
                   FROM readings GROUP BY floor";

#[tokio::test]
async fn contributions_are_bounded_and_values_clamped_before_noise() {
    let (ctx, declared) = building(50);
    // ε 100 spread over four values (COUNT, SUM, and AVG's sum and count), 25 each: noise of
    // scale 2/25 on the count (zero almost always) and 2·60/25 = 4.8 on the sum (under 48 but
    // once in 20,000 runs). The values are the bounded, clamped truth: the heavy badge's
    // thousand rows count as two, each clamped to 60.
    let rows = run(&ctx, &declared, SQL, noise("100", 2)).await.unwrap();
    let row = &rows[0];
    assert_eq!(row[0], 1.0);
    let n = 50.0 * 2.0 + 2.0;
    let total = 50.0 * 2.0 * 20.0 + 2.0 * 60.0;
    assert!(
        (row[1] - n).abs() <= 1.0,
        "count {} (truth bounded: {n})",
        row[1]
    );
    assert!(
        (row[2] - total).abs() <= 48.0,
        "sum {} (truth: {total})",
        row[2]
    );
    assert!((row[3] - total / n).abs() < 0.6, "avg {}", row[3]);
    // Unbounded, the heavy badge alone would have made the count over a thousand and the sum
    // over 10^12.
}

#[tokio::test]
async fn the_released_count_has_the_calibrated_noise() {
    // ε 1 on one COUNT, one row per badge: noise of scale 1, q = e^-1, variance 2q/(1-q)^2.
    let (ctx, declared) = building(40);
    let sql = "SELECT floor, COUNT(*) AS n FROM readings GROUP BY floor";
    let truth = 41.0;
    // A thousand runs: the sample variance of this distribution (kurtosis 6) is then within
    // 30 % of the truth but for 4 standard deviations.
    let runs = 1000;
    let mut errors = Vec::new();
    for _ in 0..runs {
        let rows = run(&ctx, &declared, sql, noise("1", 1)).await.unwrap();
        errors.push(rows[0][1] - truth);
    }
    assert!(
        errors.iter().all(|e| e.fract() == 0.0),
        "noise off the integers"
    );
    let mean = errors.iter().sum::<f64>() / f64::from(runs);
    let var = errors.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / f64::from(runs);
    let q = (-1.0f64).exp();
    let expected = 2.0 * q / (1.0 - q).powi(2);
    assert!(mean.abs() < 0.35, "mean error {mean}");
    assert!(
        (var / expected - 1.0).abs() < 0.3,
        "variance {var}, calibrated {expected}"
    );
    // And it is noise: not every run the same.
    assert!(errors.iter().any(|e| *e != errors[0]));
}

#[tokio::test]
async fn noise_comes_before_having_and_what_it_cannot_bound_is_refused() {
    let (ctx, declared) = building(30);
    // HAVING reads the noised count: a group at the edge is kept or not by the noise, never
    // by the exact value; here far above, always kept.
    let sql = "SELECT floor, COUNT(*) AS n FROM readings GROUP BY floor HAVING COUNT(*) > 5";
    assert_eq!(
        run(&ctx, &declared, sql, noise("1", 1))
            .await
            .unwrap()
            .len(),
        1
    );

    let refused = |sql: &'static str, why: &'static str| {
        let (ctx, declared) = (ctx.clone(), declared.clone());
        async move {
            match run(&ctx, &declared, sql, noise("1", 1)).await {
                Err(CleanroomError::NotAnalysable(reason)) => {
                    assert!(reason.contains(why), "{sql}: {reason}");
                }
                other => panic!("{sql}: {other:?}"),
            }
        }
    };
    // A sum over a column without declared bounds: one row could move it by anything.
    refused(
        "SELECT room, SUM(floor) AS s FROM readings GROUP BY room",
        "no bounds for readings.floor",
    )
    .await;
    // Noise under the list rule.
    let frame = ctx
        .sql("SELECT room FROM readings GROUP BY room")
        .await
        .unwrap();
    let got = guard(
        frame.logical_plan(),
        &declared,
        AnalysisRule::List { min_identities: 3 },
        Some(noise("1", 1)),
    );
    assert!(matches!(got, Err(CleanroomError::NotAnalysable(_))));
    // An aggregate over rows about no one has no individual to bound.
    let mut nobody = declared.clone();
    nobody.get_mut("readings").unwrap().identity.clear();
    match run(
        &ctx,
        &nobody,
        "SELECT room, COUNT(*) AS n FROM readings GROUP BY room",
        noise("1", 1),
    )
    .await
    {
        Err(CleanroomError::NotAnalysable(reason)) => {
            assert!(reason.contains("no identity"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_join_cannot_multiply_what_one_individual_contributes() {
    let (ctx, declared) = building(5);
    // The heavy badge: a thousand readings joined to a thousand probe rows, a million rows of
    // one person. Bounded above the join (not pushed to a scan below it), the aggregate reads
    // two of them; the five others, two of their three readings each.
    let sql = "SELECT r.floor, COUNT(*) AS n, SUM(r.minutes) AS total FROM readings r \
               JOIN probe p ON r.badge = p.badge GROUP BY r.floor";
    let rows = run(&ctx, &declared, sql, noise("100", 2)).await.unwrap();
    let n = 5.0 * 2.0 + 2.0;
    assert!(
        (rows[0][1] - n).abs() <= 1.0,
        "count {} (bounded: {n})",
        rows[0][1]
    );
    assert!(
        rows[0][2] <= 5.0 * 2.0 * 20.0 + 2.0 * 60.0 + 48.0,
        "sum {}",
        rows[0][2]
    );

    let refused = |sql: &'static str, why: &'static str| {
        let (ctx, declared) = (ctx.clone(), declared.clone());
        async move {
            match run(&ctx, &declared, sql, noise("1", 1)).await {
                Err(CleanroomError::NotAnalysable(reason)) => {
                    assert!(reason.contains(why), "{sql}: {reason}");
                }
                other => panic!("{sql}: {other:?}"),
            }
        }
    };
    // Two scans of individuals no join equates: each would bound a person's rows apart.
    refused(
        "SELECT a.room, COUNT(*) AS n FROM readings a JOIN readings b ON a.room = b.room \
         GROUP BY a.room",
        "no join equates",
    )
    .await;
    // A join of text with integers is a cast ('7', '07', '007' all equal 7): not a join.
    refused(
        "SELECT r.room, COUNT(*) AS n FROM readings r JOIN probe p ON r.room = p.number \
         GROUP BY r.room",
        "must equate a column of each side",
    )
    .await;
}

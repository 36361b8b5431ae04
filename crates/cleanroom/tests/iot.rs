//! The smart-building contracts over generated data: occupancy released under the aggregation
//! rule with noise close to the truth, the executives' small groups suppressed by the engine's
//! count, and energy and motion read from data about no one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use confide_cleanroom::iot::{self, Outputs, Scale};
use confide_cleanroom::privacy::guard;
use confide_cleanroom::rules;
use confide_cleanroom::{AnalysisRule, Privacy};
use confide_model::{Epsilon, Noise};
use datafusion::prelude::{CsvReadOptions, DataFrame, SessionContext};

/// The building's four files in `dir`, registered with a context, and their declarations.
async fn building(dir: &std::path::Path) -> (SessionContext, BTreeMap<String, Privacy>) {
    let mut files = ["sensors", "swipes", "cctv", "hr"].map(|t| {
        std::io::BufWriter::new(std::fs::File::create(dir.join(format!("{t}.csv"))).unwrap())
    });
    let [sensors, swipes, cctv, hr] = &mut files;
    iot::generate(
        Scale::default(),
        Outputs {
            sensors,
            swipes,
            cctv,
            hr,
        },
    )
    .unwrap();
    drop(files);
    let ctx = SessionContext::new();
    for t in ["sensors", "swipes", "cctv", "hr"] {
        let path = dir.join(format!("{t}.csv"));
        ctx.register_csv(t, path.to_str().unwrap(), CsvReadOptions::new())
            .await
            .unwrap();
    }
    let declared = [
        ("sensors", iot::sensors_privacy()),
        ("swipes", iot::swipes_privacy()),
        ("cctv", iot::cctv_privacy()),
        ("hr", iot::hr_privacy()),
    ]
    .map(|(t, p)| (t.to_owned(), p))
    .into();
    (ctx, declared)
}

/// `sql`'s released rows (first four columns → the rest) under `rule` and `noise`, and how many
/// rows the rules suppressed.
async fn released(
    ctx: &SessionContext,
    declared: &BTreeMap<String, Privacy>,
    sql: &str,
    noise: Option<Noise>,
    columns: &[&str],
) -> (BTreeMap<Vec<String>, Vec<f64>>, u64) {
    let frame = ctx.sql(sql).await.unwrap();
    let guarded = guard(frame.logical_plan(), declared, iot::RULE, noise).unwrap();
    let batches = DataFrame::new(ctx.state(), guarded.plan)
        .collect()
        .await
        .unwrap();
    let mut out = iot::building_rules(columns);
    out.noise = noise;
    let r = rules::apply(&out, iot::RULE, &guarded.columns, &guarded.counts, &batches).unwrap();
    let keyed = parse(&r.csv, 4);
    (keyed, r.suppressed)
}

fn parse(csv: &[u8], keys: usize) -> BTreeMap<Vec<String>, Vec<f64>> {
    String::from_utf8_lossy(csv)
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[..keys].iter().map(|s| (*s).to_owned()).collect(),
                f[keys..].iter().map(|v| v.parse().unwrap()).collect(),
            )
        })
        .collect()
}

#[tokio::test]
async fn occupancy_is_released_noised_near_the_truth_and_small_groups_suppressed() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, declared) = building(dir.path()).await;
    let truth = {
        let batches = ctx
            .sql(iot::OCCUPANCY_SQL)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let mut csv = Vec::new();
        {
            let mut w = datafusion::arrow::csv::Writer::new(&mut csv);
            for b in &batches {
                w.write(b).unwrap();
            }
        }
        parse(&csv, 4)
    };
    // ε 20 a run over one value, 12 rows a badge at most: count noise of scale 12/20.
    let noise = Noise {
        epsilon: Epsilon::parse("20").unwrap(),
        ..iot::noise(Scale::default().days)
    };
    let columns = ["floor", "department", "day", "hour", "occupants"];
    let (got, suppressed) =
        released(&ctx, &declared, iot::OCCUPANCY_SQL, Some(noise), &columns).await;
    assert!(got.len() > 100, "{} groups released", got.len());
    assert!(suppressed > 0, "no group suppressed");
    let mut off = 0usize;
    for (key, values) in &got {
        let t = truth
            .get(key)
            .unwrap_or_else(|| panic!("{key:?} released, not in the truth"));
        // Every released group has at least 5 badges in truth (the engine's count, exact).
        assert!(t[0] >= 5.0, "{key:?}: {} badges released", t[0]);
        if (values[0] - t[0]).abs() > 4.0 {
            off += 1;
        }
    }
    // Noise of scale 0.6 passes 4 once in ~800 values.
    assert!(
        off * 20 < got.len(),
        "{off} of {} groups far from the truth",
        got.len()
    );
    // Every group of the truth with fewer than 5 badges is missing: the executives' first.
    let small: Vec<_> = truth.iter().filter(|(_, t)| t[0] < 5.0).collect();
    assert!(small.iter().any(|(k, _)| k[1] == "executive"));
    for (k, _) in small {
        assert!(
            !got.contains_key(k),
            "{k:?} has fewer than 5 badges and was released"
        );
    }
}

#[tokio::test]
async fn energy_and_motion_read_data_about_no_one_and_a_budget_needs_noise() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, declared) = building(dir.path()).await;
    let (energy, suppressed) = released(
        &ctx,
        &declared,
        iot::ENERGY_SQL,
        None,
        &["floor", "day", "hour", "energy_wh", "co2_ppm"],
    )
    .await;
    assert_eq!(suppressed, 0);
    let s = Scale::default();
    assert_eq!(energy.len() as u32, s.floors * s.days * 24);
    let (motion, _) = released(
        &ctx,
        &declared,
        iot::MOTION_SQL,
        None,
        &["floor", "day", "hour", "motion"],
    )
    .await;
    assert_eq!(motion.len(), energy.len());
    // The occupancy contract's rule is the aggregation rule, with noise for the budgets.
    assert!(matches!(
        iot::RULE,
        AnalysisRule::Aggregation { min_identities: 5 }
    ));
    assert!(iot::swipes_privacy().budget.is_some() && iot::occupancy_rules(2).noise.is_some());
}

//! The output rules, enforced on the query's result inside the TEE before anything leaves:
//! only allowed columns, at most `max_rows` rows, and every row backed by at least the
//! contract's minimum of distinct individuals, as the engine counted them ([`crate::privacy`]),
//! and, for an exact aggregate, no closer than that minimum to a group released before
//! ([`crate::history`]) — rows that fail are suppressed or the whole result refused, as the
//! contract says.

use datafusion::arrow::array::{Array, BooleanArray, RecordBatch, UInt64Array};
use datafusion::arrow::compute::filter_record_batch;

use crate::CleanroomError;
use crate::history::{Difference, Earlier};
use crate::privacy::Count;
use confide_model::Refusal;
use confide_model::contract::{AnalysisRule, OnViolation, OutputRules};

/// A result that met the rules.
#[derive(Debug, Clone)]
pub struct Released {
    /// The rows, as CSV with a header line.
    pub csv: Vec<u8>,
    /// How many rows.
    pub rows: u64,
    /// How many rows were left out for having fewer individuals than the minimum.
    pub suppressed: u64,
    /// What the engine counted behind each row (see [`Count`]).
    pub counted: Vec<String>,
    /// The difference-check history each table whose individuals were counted leaves (table
    /// name → history), for an exact aggregate; empty otherwise.
    pub histories: std::collections::BTreeMap<String, crate::history::History>,
}

/// The difference checks of one result: for each domain counted, the sets released before
/// (and by this result's rows already let out), and the new sets this result releases.
#[derive(Default)]
pub(crate) struct Differences {
    pub(crate) earlier: std::collections::BTreeMap<String, Earlier>,
    pub(crate) new: std::collections::BTreeMap<String, Vec<Vec<u64>>>,
}

/// Checks that a result with `columns` may leave under `rules`: every column allowed.
pub fn check_columns(rules: &OutputRules, columns: &[String]) -> Result<(), CleanroomError> {
    match columns.iter().find(|c| !rules.columns.contains(c)) {
        Some(c) => refused(Refusal::ColumnNotAllowed {
            column: c.clone(),
            allowed: rules.columns.clone(),
        }),
        None => Ok(()),
    }
}

fn refused<T>(refusal: Refusal) -> Result<T, CleanroomError> {
    Err(CleanroomError::OutputRefused(refusal))
}

/// Applies `rules` to the result `batches`: their first columns are the result's own
/// (`columns`), then one engine count per entry of `counts`, which never leave. No difference
/// checks (see [`crate::runner::run`], which makes them).
pub fn apply(
    rules: &OutputRules,
    rule: AnalysisRule,
    columns: &[String],
    counts: &[Count],
    batches: &[RecordBatch],
) -> Result<Released, CleanroomError> {
    checked(rules, rule, columns, counts, batches, None)
}

/// The same, and with `differences`, the identity set behind each count (after the counts) is
/// checked against the earlier ones.
pub(crate) fn checked(
    rules: &OutputRules,
    rule: AnalysisRule,
    columns: &[String],
    counts: &[Count],
    batches: &[RecordBatch],
    mut differences: Option<&mut Differences>,
) -> Result<Released, CleanroomError> {
    check_columns(rules, columns)?;
    let min = rule.min_identities();
    let own: Vec<usize> = (0..columns.len()).collect();
    let mut kept = Vec::with_capacity(batches.len());
    let mut suppressed = 0u64;
    for batch in batches {
        let mut keep = vec![true; batch.num_rows()];
        for (k, count) in counts.iter().enumerate() {
            let n = batch
                .column(columns.len() + k)
                .as_any()
                .downcast_ref::<UInt64Array>()
                .ok_or_else(|| CleanroomError::Query("the engine's count is not UInt64".into()))?;
            let mut under = 0u64;
            for (row, keep) in keep.iter_mut().enumerate() {
                // No identified row behind it: the row is about no one of this column.
                let v = if n.is_valid(row) { n.value(row) } else { 0 };
                if v != 0 && v < min && *keep {
                    *keep = false;
                    under += 1;
                }
            }
            if under > 0 && rules.on_violation == OnViolation::Refuse {
                return refused(Refusal::GroupTooSmall {
                    rows: under,
                    min,
                    column: count.of.clone(),
                });
            }
            suppressed += under;
        }
        if let Some(d) = differences.as_deref_mut() {
            suppressed += differ(rules, min, columns.len(), counts, batch, &mut keep, d)?;
        }
        let own = batch
            .project(&own)
            .map_err(|e| CleanroomError::Query(e.to_string()))?;
        kept.push(
            filter_record_batch(&own, &BooleanArray::from(keep))
                .map_err(|e| CleanroomError::Query(e.to_string()))?,
        );
    }
    let rows: u64 = kept.iter().map(|b| b.num_rows() as u64).sum();
    if rows > rules.max_rows {
        return refused(Refusal::TooManyRows {
            rows,
            max: rules.max_rows,
        });
    }
    let mut csv = Vec::new();
    csv.extend_from_slice(columns.join(",").as_bytes());
    csv.push(b'\n');
    {
        let mut writer = datafusion::arrow::csv::WriterBuilder::new()
            .with_header(false)
            .build(&mut csv);
        for b in &kept {
            writer
                .write(b)
                .map_err(|e| CleanroomError::Query(e.to_string()))?;
        }
    }
    Ok(Released {
        csv,
        rows,
        suppressed,
        counted: counts.iter().map(|c| c.of.clone()).collect(),
        histories: Default::default(),
    })
}

/// Suppresses the kept rows of `batch` whose identity set for some count is closer than `min`
/// to a set released before, or to one of an earlier row of this result (or refuses, as the
/// contract says), and adds the sets of the rows still kept to `d` (an earlier set again is
/// not added twice). The rows it suppressed.
fn differ(
    rules: &OutputRules,
    min: u64,
    own: usize,
    counts: &[Count],
    batch: &RecordBatch,
    keep: &mut [bool],
    d: &mut Differences,
) -> Result<u64, CleanroomError> {
    // Where each count's identity columns start.
    let mut first = own + counts.len();
    let columns: Vec<std::ops::Range<usize>> = counts
        .iter()
        .map(|c| {
            let range = first..first + c.sets;
            first += c.sets;
            range
        })
        .collect();
    let mut under = vec![0u64; counts.len()];
    for (row, keep) in keep.iter_mut().enumerate().filter(|(_, k)| **k) {
        let mut fresh = Vec::with_capacity(counts.len());
        for (k, count) in counts.iter().enumerate() {
            let mut set = Vec::new();
            for c in columns[k].clone() {
                crate::privacy::each_identity(batch.column(c), row, &mut |v| set.push(v));
            }
            set.sort_unstable();
            set.dedup();
            if set.is_empty() {
                continue;
            }
            let earlier = d.earlier.entry(count.domain.clone()).or_default();
            match earlier.compare(&set, min) {
                Difference::TooClose => {
                    under[k] += 1;
                    *keep = false;
                    break;
                }
                Difference::Same => {}
                Difference::Far => fresh.push((count.domain.clone(), set)),
            }
        }
        if *keep {
            for (domain, set) in fresh {
                d.earlier
                    .entry(domain.clone())
                    .or_default()
                    .add(set.clone());
                d.new.entry(domain).or_default().push(set);
            }
        }
    }
    if let Some(k) = under.iter().position(|n| *n > 0)
        && rules.on_violation == OnViolation::Refuse
    {
        return refused(Refusal::TooCloseToEarlier {
            rows: under[k],
            min,
            column: counts[k].of.clone(),
        });
    }
    Ok(under.iter().sum())
}

//! The output rules, enforced on the query's result inside the TEE before anything leaves:
//! only allowed columns, at most `max_rows` rows, and every row backed by at least `min` distinct
//! individuals (by the contract's count column) — rows under it are suppressed or the whole
//! result refused, as the contract says.

use datafusion::arrow::array::{Array, BooleanArray, Int64Array};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;

use crate::CleanroomError;
use confide_model::contract::{OnViolation, OutputRules};

/// A result that met the rules.
#[derive(Debug, Clone)]
pub struct Released {
    /// The rows, as CSV with a header line.
    pub csv: Vec<u8>,
    /// How many rows.
    pub rows: u64,
    /// How many rows were left out for having fewer individuals than the minimum.
    pub suppressed: u64,
}

/// Checks that a result with `columns` may leave under `rules`: every column allowed, and the
/// count of individuals among them. Returns where the count is.
pub fn check_columns(rules: &OutputRules, columns: &[String]) -> Result<usize, CleanroomError> {
    let refused = |m: String| Err(CleanroomError::OutputRefused(m));
    for c in columns {
        if !rules.columns.contains(c) {
            return refused(format!(
                "the result has the column {c:?}, which the contract does not let leave \
                 (allowed: {})",
                rules.columns.join(", ")
            ));
        }
    }
    match columns.iter().position(|c| *c == rules.min_group.column) {
        Some(at) => Ok(at),
        None => refused(format!(
            "the result lacks the column {:?} that counts the individuals behind each row",
            rules.min_group.column
        )),
    }
}

/// Applies `rules` to the result `batches` (whose columns are `columns`).
pub fn apply(
    rules: &OutputRules,
    columns: &[String],
    batches: &[RecordBatch],
) -> Result<Released, CleanroomError> {
    let refused = |m: String| Err(CleanroomError::OutputRefused(m));
    let count_at = check_columns(rules, columns)?;
    let min = i64::try_from(rules.min_group.min).unwrap_or(i64::MAX);
    let mut kept = Vec::with_capacity(batches.len());
    let mut suppressed = 0u64;
    for batch in batches {
        let counts = cast(batch.column(count_at), &DataType::Int64).map_err(|e| {
            CleanroomError::OutputRefused(format!(
                "the column {:?} is not a count: {e}",
                rules.min_group.column
            ))
        })?;
        let counts = counts
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| {
                CleanroomError::OutputRefused("the count column is not integer".into())
            })?;
        let keep: BooleanArray = (0..counts.len())
            .map(|i| Some(counts.is_valid(i) && counts.value(i) >= min))
            .collect();
        let under = u64::try_from(keep.iter().filter(|k| *k == Some(false)).count()).unwrap_or(0);
        if under > 0 && rules.on_violation == OnViolation::Refuse {
            return refused(format!(
                "{under} row(s) have fewer than {} distinct individuals in {:?}; the contract \
                 says to refuse such a result",
                rules.min_group.min, rules.min_group.column
            ));
        }
        suppressed += under;
        kept.push(
            filter_record_batch(batch, &keep).map_err(|e| CleanroomError::Query(e.to_string()))?,
        );
    }
    let rows: u64 = kept.iter().map(|b| b.num_rows() as u64).sum();
    if rows > rules.max_rows {
        return refused(format!(
            "the result has {rows} rows; the contract allows at most {}",
            rules.max_rows
        ));
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
    })
}

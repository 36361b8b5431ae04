//! The output rules, enforced on the query's result inside the TEE before anything leaves:
//! only allowed columns, at most `max_rows` rows, and every row backed by at least `min` distinct
//! individuals (by the contract's count column) — rows under it are suppressed or the whole
//! result refused, as the contract says.

use datafusion::arrow::array::{Array, BooleanArray, Int64Array};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;

use crate::CleanroomError;
use confide_model::Refusal;
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
    if let Some(c) = columns.iter().find(|c| !rules.columns.contains(c)) {
        return refused(Refusal::ColumnNotAllowed {
            column: c.clone(),
            allowed: rules.columns.clone(),
        });
    }
    match columns.iter().position(|c| *c == rules.min_group.column) {
        Some(at) => Ok(at),
        None => refused(Refusal::NoCountColumn {
            column: rules.min_group.column.clone(),
        }),
    }
}

fn refused<T>(refusal: Refusal) -> Result<T, CleanroomError> {
    Err(CleanroomError::OutputRefused(refusal))
}

/// Applies `rules` to the result `batches` (whose columns are `columns`).
pub fn apply(
    rules: &OutputRules,
    columns: &[String],
    batches: &[RecordBatch],
) -> Result<Released, CleanroomError> {
    let count_at = check_columns(rules, columns)?;
    // The engine's own message about the count column is not kept: a failed cast quotes the
    // cell it could not read.
    let not_a_count = || {
        CleanroomError::OutputRefused(Refusal::NotACount {
            column: rules.min_group.column.clone(),
        })
    };
    let min = i64::try_from(rules.min_group.min).unwrap_or(i64::MAX);
    let mut kept = Vec::with_capacity(batches.len());
    let mut suppressed = 0u64;
    for batch in batches {
        let counts = cast(batch.column(count_at), &DataType::Int64).map_err(|_| not_a_count())?;
        let counts = counts
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(not_a_count)?;
        let keep: BooleanArray = (0..counts.len())
            .map(|i| Some(counts.is_valid(i) && counts.value(i) >= min))
            .collect();
        let under = u64::try_from(keep.iter().filter(|k| *k == Some(false)).count()).unwrap_or(0);
        if under > 0 && rules.on_violation == OnViolation::Refuse {
            return refused(Refusal::GroupTooSmall {
                rows: under,
                min: rules.min_group.min,
                column: rules.min_group.column.clone(),
            });
        }
        suppressed += under;
        kept.push(
            filter_record_batch(batch, &keep).map_err(|e| CleanroomError::Query(e.to_string()))?,
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
    })
}

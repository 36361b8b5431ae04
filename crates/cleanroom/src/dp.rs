//! Differential privacy on the aggregation rule's one aggregate, as the guard
//! ([`crate::privacy`]) rewrites it when the contract adds noise ([`Noise`]):
//!
//! 1. **contributions bounded**: of the aggregate's input, at most `max_rows_per_identity`
//!    rows of each individual of each identity column are kept (rows without one are about no
//!    one of it), so one individual moves a count by at most that many rows;
//! 2. **values clamped**: a SUM or AVG reads its column clamped to the bounds the column's
//!    owner declared, so one row moves a sum by at most the larger bound;
//! 3. **noise added at the aggregate**, before any HAVING, projection or ORDER BY above it can
//!    read the value: discrete Laplace noise ([`crate::noise`]) of scale sensitivity / ε on
//!    each COUNT and SUM, and on an AVG's sum and count apart (divided after). The run's ε is
//!    split evenly among the noised values of a row; each value's vector over the groups has
//!    L1 sensitivity `max_rows_per_identity` (× bound), so the run as a whole is ε-DP for the
//!    values, by composition.
//!
//! What the noise does not cover: which groups appear. A group is released when the engine's
//! exact count of its individuals meets the contract's minimum, as without noise; that
//! threshold is deterministic, so a group's presence is not protected by ε.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{Array, AsArray, BooleanArray, Float64Array};
use datafusion::arrow::datatypes::{DataType, Float64Type, UInt64Type};
use datafusion::common::{Result as DfResult, plan_err};
use datafusion::functions_aggregate::count::count_udaf;
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{
    Aggregate, ColumnarValue, Expr, Filter, LogicalPlan, Projection, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility, cast, col, lit, when,
};

use crate::CleanroomError;
use crate::noise::{MAX_SENSITIVITY, SystemUniform, laplace_for};
use crate::privacy::{HIDDEN, column_at, internal};
use confide_model::{Bounds, Noise};

/// One aggregate of the rule's aggregate, and the bounds of the column it sums (SUM and AVG).
pub(crate) struct Value {
    pub function: AggregateFunction,
    pub bounds: Option<Bounds>,
}

/// `plan` keeping at most `k` rows of each identity in each of the hidden columns `ids`: a
/// filter per column that counts each identity's rows as they stream past and lets the first
/// `k` through (which `k` is arbitrary; the bound is what the noise is calibrated to). A
/// window numbering each identity's rows would do the same after sorting every row.
pub(crate) fn bound_contributions(
    mut plan: LogicalPlan,
    ids: &[Expr],
    k: u32,
) -> Result<LogicalPlan, CleanroomError> {
    // The count is a column of a projection, then filtered on: a filter calling it would be
    // pushed by the optimizer through the join below to one side's scan, bounding rows before
    // the join multiplies them; a volatile projection is not moved.
    let keep = format!("{HIDDEN}keep");
    for id in ids {
        let width = plan.schema().fields().len();
        let schema = plan.schema().clone();
        let mut exprs: Vec<Expr> = (0..width).map(|i| column_at(&schema, i)).collect();
        exprs.push(
            ScalarUDF::new_from_impl(Bounded::new(k))
                .call(vec![id.clone()])
                .alias(&keep),
        );
        let counted =
            LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(plan)).map_err(internal)?);
        let kept = LogicalPlan::Filter(
            Filter::try_new(col(keep.as_str()), Arc::new(counted)).map_err(internal)?,
        );
        let schema = kept.schema().clone();
        let own = (0..width).map(|i| column_at(&schema, i)).collect();
        plan = LogicalPlan::Projection(Projection::try_new(own, Arc::new(kept)).map_err(internal)?);
    }
    Ok(plan)
}

/// `__confide_bound(id)`: true for the first `k` rows of each identity seen in this run (and
/// for rows without one), false after. Its count is the run's own: a new instance each run.
#[derive(Debug)]
struct Bounded {
    signature: Signature,
    k: u32,
    /// Rows seen of each identity.
    seen: Mutex<HashMap<u64, u32, BuildHasherDefault<Spread>>>,
    /// This instance, as no other is (for the planner's equality).
    instance: [u8; 16],
}

impl Bounded {
    fn new(k: u32) -> Self {
        Self {
            signature: Signature::exact(vec![DataType::UInt64], Volatility::Volatile),
            k,
            seen: Mutex::new(HashMap::default()),
            instance: confide_crypto::random::array().unwrap_or_default(),
        }
    }
}

/// The hasher of identities that are already 64-bit hashes: one multiplication spreads them
/// over the table (SipHash, the default, was most of the bounding's cost).
#[derive(Debug, Default)]
struct Spread(u64);

impl std::hash::Hasher for Spread {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

impl PartialEq for Bounded {
    fn eq(&self, other: &Self) -> bool {
        self.instance == other.instance
    }
}

impl Eq for Bounded {}

impl std::hash::Hash for Bounded {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.instance.hash(state);
    }
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        "__confide_bound"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let Some(ids) = arrays
            .first()
            .and_then(|a| a.as_primitive_opt::<UInt64Type>())
        else {
            return plan_err!("__confide_bound takes identities");
        };
        let Ok(mut seen) = self.seen.lock() else {
            return plan_err!("__confide_bound: a run failed while counting");
        };
        let kept: BooleanArray = (0..ids.len())
            .map(|row| {
                if ids.is_null(row) {
                    return Some(true);
                }
                let n = seen.entry(ids.value(row)).or_insert(0);
                *n = n.saturating_add(1);
                Some(*n <= self.k)
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(kept)))
    }
}

/// The aggregate `original` over `input` (bounded), its values noised: an aggregate of the
/// clamped values (and the hidden identity sets `sets`), then a projection that adds noise to
/// each and gives it its original name and type, the sets after, and last the exact values of
/// the aggregates `exact` names (index, hidden name), which the engine counts with.
pub(crate) fn aggregate(
    input: LogicalPlan,
    original: &Aggregate,
    values: Vec<Value>,
    sets: Vec<Expr>,
    exact: &[(usize, String)],
    noise: Noise,
) -> Result<LogicalPlan, CleanroomError> {
    let noised: u64 = values
        .iter()
        .map(|v| if is(&v.function, "avg") { 2 } else { 1 })
        .sum();
    let epsilon = (noise.epsilon.micros() / noised.max(1)).max(1);
    let rows = u64::from(noise.max_rows_per_identity);
    let groups = original.group_expr.len();
    let mut aggr = Vec::new();
    // For each value, how to noise it, given the aggregate's column of each of its parts. A
    // count is the SQL's own aggregate as it was, unrenamed, so that the optimizer still turns
    // a COUNT(DISTINCT) into two groupings as it does without noise; sums are clamped, named
    // apart.
    let mut noisy: Vec<(ScalarUDF, Vec<usize>)> = Vec::new();
    let at = |aggr: &mut Vec<Expr>, e: Expr| {
        aggr.push(e);
        groups + aggr.len() - 1
    };
    for (j, v) in values.iter().enumerate() {
        if is(&v.function, "count") {
            let i = at(&mut aggr, Expr::AggregateFunction(v.function.clone()));
            noisy.push((Noisy::count(rows, epsilon), vec![i]));
            continue;
        }
        let Some(b) = v.bounds else {
            return Err(CleanroomError::Query(format!(
                "{} has no bounds",
                v.function.func.name()
            )));
        };
        let mut sum = v.function.clone();
        sum.params.args = sum
            .params
            .args
            .iter()
            .map(|a| clamp(a, b))
            .collect::<Result<_, _>>()?;
        sum.func = sum_udaf();
        let i = at(
            &mut aggr,
            Expr::AggregateFunction(sum).alias(format!("{HIDDEN}v{j}")),
        );
        let per_row = rows
            .checked_mul(b.sensitivity())
            .filter(|s| *s <= MAX_SENSITIVITY)
            .ok_or_else(|| {
                CleanroomError::NotAnalysable(format!(
                    "{} rows of one individual times a bound of {} is more than noise can be \
                     calibrated to (2^43): lower max_rows_per_identity or the bounds",
                    rows,
                    b.sensitivity()
                ))
            })?;
        if is(&v.function, "avg") {
            let mut count = v.function.clone();
            count.func = count_udaf();
            let n = at(
                &mut aggr,
                Expr::AggregateFunction(count).alias(format!("{HIDDEN}c{j}")),
            );
            noisy.push((Noisy::ratio(per_row, rows, epsilon), vec![i, n]));
        } else {
            noisy.push((Noisy::value(per_row, epsilon), vec![i]));
        }
    }
    let hidden_values = aggr.len();
    aggr.extend(sets);
    let plan = LogicalPlan::Aggregate(
        Aggregate::try_new(Arc::new(input), original.group_expr.clone(), aggr).map_err(internal)?,
    );
    let schema = plan.schema().clone();
    let as_f64 = |i: usize| cast(column_at(&schema, i), DataType::Float64);
    let mut exprs: Vec<Expr> = (0..groups).map(|i| column_at(&schema, i)).collect();
    for (j, (udf, parts)) in noisy.iter().enumerate() {
        let field = original.schema.field(groups + j);
        let e = udf.call(parts.iter().map(|&i| as_f64(i)).collect());
        exprs.push(cast(e, field.data_type().clone()).alias(field.name()));
    }
    exprs.extend((groups + hidden_values..schema.fields().len()).map(|i| column_at(&schema, i)));
    // The exact counts the engine reads as its own (never released): the aggregate's, before
    // the noise.
    for (j, name) in exact {
        exprs.push(column_at(&schema, noisy[*j].1[0]).alias(name));
    }
    Ok(LogicalPlan::Projection(
        Projection::try_new(exprs, Arc::new(plan)).map_err(internal)?,
    ))
}

fn is(f: &AggregateFunction, name: &str) -> bool {
    f.func.name().eq_ignore_ascii_case(name)
}

/// `arg` as a double, clamped to `b`: a value within the bounds as it is, one under them at
/// the lower bound, anything else (over them, or NaN, which compares with nothing) at the upper.
fn clamp(arg: &Expr, b: Bounds) -> Result<Expr, CleanroomError> {
    let x = cast(arg.clone(), DataType::Float64);
    let (lo, hi) = (lit(b.lo as f64), lit(b.hi as f64));
    when(
        x.clone().gt_eq(lo.clone()).and(x.clone().lt_eq(hi.clone())),
        x.clone(),
    )
    .when(x.lt(lo.clone()), lo)
    .otherwise(hi)
    .map_err(internal)
}

/// `__confide_noise(value)` or `__confide_noise(sum, count)`: the value rounded to an integer
/// with discrete Laplace noise added, or the ratio of the two noised (the count at least 1).
#[derive(Debug, PartialEq, Eq, Hash)]
struct Noisy {
    signature: Signature,
    /// What one individual moves the (first) value by.
    sensitivity: u64,
    /// What one individual moves the count by, for a ratio.
    count_sensitivity: Option<u64>,
    /// The ε each noised value spends, in millionths.
    epsilon: u64,
    /// A count: a noised value under 0 is released as 0 (which spends no more ε).
    count: bool,
}

impl Noisy {
    fn value(sensitivity: u64, epsilon: u64) -> ScalarUDF {
        ScalarUDF::new_from_impl(Self {
            signature: Signature::exact(vec![DataType::Float64], Volatility::Volatile),
            sensitivity,
            count_sensitivity: None,
            epsilon,
            count: false,
        })
    }

    fn count(sensitivity: u64, epsilon: u64) -> ScalarUDF {
        ScalarUDF::new_from_impl(Self {
            signature: Signature::exact(vec![DataType::Float64], Volatility::Volatile),
            sensitivity,
            count_sensitivity: None,
            epsilon,
            count: true,
        })
    }

    fn ratio(sensitivity: u64, count_sensitivity: u64, epsilon: u64) -> ScalarUDF {
        ScalarUDF::new_from_impl(Self {
            signature: Signature::exact(
                vec![DataType::Float64, DataType::Float64],
                Volatility::Volatile,
            ),
            sensitivity,
            count_sensitivity: Some(count_sensitivity),
            epsilon,
            count: false,
        })
    }
}

/// `value` rounded to an integer, noised as one: the noise is an integer, so the result's low
/// bits say nothing of the true value.
fn noised(rng: &mut SystemUniform, value: f64, sensitivity: u64, epsilon: u64) -> f64 {
    let whole = value.round() as i64;
    whole.saturating_add(laplace_for(rng, sensitivity, epsilon)) as f64
}

impl ScalarUDFImpl for Noisy {
    fn name(&self) -> &str {
        "__confide_noise"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let Some(values) = arrays
            .first()
            .and_then(|a| a.as_primitive_opt::<Float64Type>())
        else {
            return plan_err!("__confide_noise takes doubles");
        };
        let counts = arrays
            .get(1)
            .and_then(|a| a.as_primitive_opt::<Float64Type>());
        let mut rng = SystemUniform::new();
        // A sum of no value (every row NULL) is noised as 0: released as NULL, it would say
        // whether anyone in the group had a value.
        let at = |a: &datafusion::arrow::array::Float64Array, row: usize| {
            if a.is_valid(row) { a.value(row) } else { 0.0 }
        };
        let out: Float64Array = (0..values.len())
            .map(|row| {
                let v = noised(&mut rng, at(values, row), self.sensitivity, self.epsilon);
                match (counts, self.count_sensitivity) {
                    (Some(c), Some(cs)) => {
                        let n = noised(&mut rng, at(c, row), cs, self.epsilon);
                        Some(v / n.max(1.0))
                    }
                    (_, _) if self.count => Some(v.max(0.0)),
                    (_, _) => Some(v),
                }
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

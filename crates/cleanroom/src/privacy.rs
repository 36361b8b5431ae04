//! Output privacy the engine enforces, on the query's plan rather than on its SQL's words.
//!
//! Each dataset's owner declares which of its columns name individuals (identity columns, each
//! with a domain), which may only be joined on, and which may only be aggregated
//! ([`Privacy`]). Given a contract's planned query, [`guard`]:
//!
//! 1. follows every column of every node back to the source columns it is computed from (its
//!    lineage), through projections, aliases, joins, filters, aggregates, unions and `DISTINCT`,
//!    and refuses a use a declaration forbids — a join-only column filtered on, an
//!    aggregate-only column grouped by, an identity column let out under the aggregation rule —
//!    however many aliases and subqueries stand between the use and the column;
//! 2. refuses what it cannot follow (window functions, subqueries inside expressions, semi and
//!    anti joins, recursive queries, `GROUPING SETS`), with the reason;
//! 3. rewrites the plan so that every row carries, beside its own columns, the identities
//!    behind it: one hidden column per scan of an identity column, the identity (a 64-bit hash
//!    of its text, [`HashIdentity`]) before any aggregate and the set of distinct identities
//!    after one ([`IdentitiesOf`]), carried through every node above;
//! 4. ends the plan with one count per identity column (aggregation rule) or per domain (list
//!    rule), which [`crate::rules`] checks against the contract's minimum before anything
//!    leaves, and drops.
//!
//! So the count the minimum applies to is the engine's: no column the SQL computes, no
//! constant, no alias stands in for it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, ListBuilder, UInt64Array, UInt64Builder,
};
use datafusion::arrow::datatypes::UInt64Type;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, Result as DfResult, ScalarValue, plan_err};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::{format_state_name, split_conjunction};
use datafusion::logical_expr::{
    Accumulator, Aggregate, AggregateUDF, AggregateUDFImpl, ColumnarValue, Distinct, EmitTo, Expr,
    GroupsAccumulator, JoinType, LogicalPlan, Operator, Projection, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Union, Volatility, cast, col, lit,
};

use crate::CleanroomError;
use confide_model::contract::AnalysisRule;
use confide_model::dataset::Privacy;
use confide_model::{Bounds, Noise};

/// The prefix of every column the guard adds; a query whose own columns use it is refused.
pub(crate) const HIDDEN: &str = "__confide_";

/// A count the rewritten plan appends to each row, and what it counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Count {
    /// What is counted: `table.column` (aggregation rule) or the domain (list rule).
    pub of: String,
    /// The domain of the individuals counted.
    pub domain: String,
    /// How many columns of identity sets the difference checks read for it, after the counts
    /// (none when the result is not checked).
    pub sets: usize,
}

/// A contract's query with the engine's counts appended: the result's own columns come first,
/// then one `UInt64` column per [`Count`], then, for a result the difference checks hold
/// ([`Guarded::sets`]), the identities each count counted ([`Count::sets`] columns each, in
/// the counts' order).
#[derive(Debug)]
pub struct Guarded {
    /// The rewritten plan.
    pub plan: LogicalPlan,
    /// The result's own columns.
    pub columns: Vec<String>,
    /// The counts after them, in order.
    pub counts: Vec<Count>,
    /// Whether the sets follow the counts: a result the difference checks hold
    /// ([`crate::history`]).
    pub sets: bool,
}

/// Checks `plan` against the tables' declarations (table name in the SQL → declaration) and
/// `rule`, and rewrites it to count the identities behind each row.
pub fn guard(
    plan: &LogicalPlan,
    declared: &BTreeMap<String, Privacy>,
    rule: AnalysisRule,
    noise: Option<Noise>,
) -> Result<Guarded, CleanroomError> {
    if noise.is_some() && !matches!(rule, AnalysisRule::Aggregation { .. }) {
        return refuse("noise is added to aggregates, under the aggregation rule only");
    }
    if let Some(f) = plan
        .schema()
        .fields()
        .iter()
        .find(|f| f.name().starts_with(HIDDEN))
    {
        return refuse(format!(
            "the result column {:?} uses the prefix {HIDDEN:?}, which the engine keeps for itself",
            f.name()
        ));
    }
    let rewritten;
    let plan = match rule {
        AnalysisRule::List { .. } => {
            rewritten = distinct_as_groups(plan)?;
            &rewritten
        }
        AnalysisRule::Aggregation { .. } => plan,
    };
    if matches!(rule, AnalysisRule::Aggregation { .. }) {
        aggregate_on_top(plan)?;
        let mut aggregates = 0;
        plan.apply(|node| {
            if matches!(node, LogicalPlan::Aggregate(_) | LogicalPlan::Distinct(_)) {
                aggregates += 1;
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .map_err(internal)?;
        if aggregates > 1 {
            return refuse(
                "the aggregation rule allows one aggregate, the result's: an inner aggregate's \
                 values (a small group's sum) could choose the rows or the groups of the outer \
                 one",
            );
        }
    }
    // Noise spends from budgets: over a table that names individuals and has none, it would
    // bound nothing across runs.
    if noise.is_some()
        && let Some((table, _)) = declared
            .iter()
            .find(|(_, p)| !p.identity.is_empty() && p.budget.is_none())
    {
        return refuse(format!(
            "table {table} names individuals and its owner set no privacy budget: noise over it \
             would bound nothing across runs (the contract adds no noise, and its results are \
             held by the difference checks, or the owner sets a budget)"
        ));
    }
    // A result's rows are checked against earlier results, which needs the identities behind
    // each, not only their number; a noised one's are not: the budgets bound what any set of
    // results reveals (as Ads Data Hub's noise mode drops its checks).
    let sets = noise.is_none();
    let mut guard = Guard {
        declared,
        rule,
        noise,
        sets,
        instances: Vec::new(),
        equal: Vec::new(),
    };
    let carried = guard.carry(plan)?;
    for (i, lineage) in carried.lineage.iter().enumerate() {
        let name = plan.schema().field(i).name();
        guard.check_use(
            &lineage.raw,
            Use::Output,
            &format!("the result column {name:?}"),
        )?;
    }
    let schema = carried.plan.schema().clone();
    let own = plan.schema().fields().len();
    let mut exprs: Vec<Expr> = (0..own).map(|i| column_at(&schema, i)).collect();
    let mut counts = Vec::new();
    let count = ScalarUDF::new_from_impl(CountIdentities::new());
    // What each count counts, and the hidden columns it counts over: each table's scan apart
    // (aggregation rule), or every scan of one domain together (list rule).
    let mut groups: Vec<(String, String, Vec<Expr>)> = Vec::new();
    for &i in &carried.ids {
        let instance = &guard.instances[i];
        let hidden = col(instance.name.as_str());
        let domain = instance.domain.clone();
        match rule {
            AnalysisRule::Aggregation { .. } => groups.push((
                format!("{}.{}", instance.table, instance.column),
                domain,
                vec![hidden],
            )),
            AnalysisRule::List { .. } => match groups.iter_mut().find(|(d, _, _)| *d == domain) {
                Some((_, _, args)) => args.push(hidden),
                None => groups.push((domain.clone(), domain, vec![hidden])),
            },
        }
    }
    let mut identities = Vec::new();
    for (n, (of, domain, args)) in groups.into_iter().enumerate() {
        let mut columns = 0;
        if sets {
            for (j, a) in args.iter().enumerate() {
                identities.push(a.clone().alias(format!("{HIDDEN}s{n}_{j}")));
                columns += 1;
            }
        }
        exprs.push(count.call(args).alias(format!("{HIDDEN}n{n}")));
        counts.push(Count {
            of,
            domain,
            sets: columns,
        });
    }
    exprs.extend(identities);
    let plan = LogicalPlan::Projection(
        Projection::try_new(exprs, Arc::new(carried.plan)).map_err(internal)?,
    );
    Ok(Guarded {
        plan,
        columns: (0..own).map(|i| schema.field(i).name().clone()).collect(),
        counts,
        sets,
    })
}

/// `plan` with each aggregate whose DISTINCT aggregates all take one argument
/// (`COUNT(DISTINCT a.to_account)`, beside sums, minima and maxima) rewritten, as DataFusion's
/// optimizer would, into two: one grouped by the distinct argument too, then one over its
/// groups. The engine's identity sets added to an aggregate would stop the optimizer's
/// rewrite, leaving a distinct set per group of every row's value, far larger than the
/// rewritten plan's (the AML query at ten million rows ran out of memory). The rewritten plan
/// is what the guard then reads, under the list rule only: the aggregation rule allows one
/// aggregate, whose distinct count keeps its own set.
fn distinct_as_groups(plan: &LogicalPlan) -> Result<LogicalPlan, CleanroomError> {
    use datafusion::optimizer::single_distinct_to_groupby::SingleDistinctToGroupBy;
    use datafusion::optimizer::{Optimizer, OptimizerContext};
    Optimizer::with_rules(vec![Arc::new(SingleDistinctToGroupBy::new())])
        .optimize(plan.clone(), &OptimizerContext::new(), |_, _| {})
        .map_err(internal)
}

/// A refusal of the query, at proposal and in the TEE alike.
fn refuse<T>(reason: impl Into<String>) -> Result<T, CleanroomError> {
    Err(CleanroomError::NotAnalysable(reason.into()))
}

pub(crate) fn internal(e: datafusion::error::DataFusionError) -> CleanroomError {
    CleanroomError::Query(format!("guarding the contract's query: {e}"))
}

/// The aggregation rule's shape: under renames, sorts, limits and `HAVING`, the result is an
/// aggregate.
fn aggregate_on_top(plan: &LogicalPlan) -> Result<(), CleanroomError> {
    match plan {
        LogicalPlan::Aggregate(_) => Ok(()),
        LogicalPlan::Projection(_)
        | LogicalPlan::Sort(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::Filter(_)
        | LogicalPlan::SubqueryAlias(_) => aggregate_on_top(plan.inputs()[0]),
        other => refuse(format!(
            "the aggregation rule lets out only an aggregate (GROUP BY, or COUNT/SUM/AVG over \
             all rows); this query's result is a {}",
            node(other)
        )),
    }
}

/// A source column: a table of the SQL and one of its columns.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Source {
    table: String,
    column: String,
}

/// Where a column's values come from.
#[derive(Debug, Clone, Default)]
struct Lineage {
    /// Source columns its values are computed from, row by row.
    raw: BTreeSet<Source>,
    /// Source columns it aggregates.
    aggregated: BTreeSet<Source>,
    /// The source columns it is one of, unchanged (through renames, and unions of such
    /// columns); empty when it is computed.
    bare: BTreeSet<Source>,
}

impl Lineage {
    fn absorb(&mut self, other: &Lineage) {
        self.raw.extend(other.raw.iter().cloned());
        self.aggregated.extend(other.aggregated.iter().cloned());
    }
}

/// One scan of one identity column, carried by a hidden column.
#[derive(Debug, Clone)]
struct Instance {
    /// The hidden column's name.
    name: String,
    table: String,
    column: String,
    domain: String,
    /// Whether the hidden column holds sets (after an aggregate) rather than single values.
    set: bool,
    /// Whether it holds the count itself (`Int64`, after the aggregate that computed it as its
    /// own `COUNT(DISTINCT column)`) rather than identities.
    counted: bool,
}

/// A node rewritten: its own columns first, then the hidden columns of `ids`.
struct Carried {
    plan: LogicalPlan,
    /// The lineage of each of the node's own columns.
    lineage: Vec<Lineage>,
    /// The instances its hidden columns carry, in order.
    ids: Vec<usize>,
}

/// Where a column is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    Join,
    Filter,
    Sort,
    Group,
    Aggregate,
    Output,
}

impl Use {
    fn words(self) -> &'static str {
        match self {
            Self::Join => "in a join condition",
            Self::Filter => "in a filter (WHERE, HAVING, ON of an outer join)",
            Self::Sort => "in an ORDER BY",
            Self::Group => "in a GROUP BY or DISTINCT",
            Self::Aggregate => "in an aggregate function",
            Self::Output => "in the result",
        }
    }
}

struct Guard<'a> {
    declared: &'a BTreeMap<String, Privacy>,
    rule: AnalysisRule,
    /// The contract's noise, added at the aggregate ([`crate::dp`]).
    noise: Option<Noise>,
    /// Whether the result's identity sets are kept for the difference checks ([`Guarded::sets`]).
    sets: bool,
    instances: Vec<Instance>,
    /// Pairs of instances an inner join equated: the same identity on every row.
    equal: Vec<(usize, usize)>,
}

impl Guard<'_> {
    fn aggregation(&self) -> bool {
        matches!(self.rule, AnalysisRule::Aggregation { .. })
    }

    /// The domain of `source`, if its owner declared it an identity.
    fn domain(&self, source: &Source) -> Option<&str> {
        self.declared
            .get(&source.table)
            .and_then(|p| p.identity.get(&source.column))
            .map(String::as_str)
    }

    /// The one domain of identity columns a plain column is, if it is one.
    fn identity_domain(&self, bare: &BTreeSet<Source>) -> Option<&str> {
        let mut domains = bare.iter().map(|s| self.domain(s));
        let first = domains.next()??;
        domains.all(|d| d == Some(first)).then_some(first)
    }

    /// Refuses `sources` used at `at` when a declaration forbids it.
    fn check_use(
        &self,
        sources: &BTreeSet<Source>,
        at: Use,
        what: &str,
    ) -> Result<(), CleanroomError> {
        for s in sources {
            let Some(p) = self.declared.get(&s.table) else {
                continue;
            };
            let (class, allowed): (&str, &[Use]) = if p.join_only.contains(&s.column) {
                ("may only be joined on", &[Use::Join])
            } else if p.aggregate_only.contains(&s.column) && self.aggregation() {
                ("may only be aggregated", &[Use::Aggregate])
            } else if p.aggregate_only.contains(&s.column) {
                (
                    "may only be aggregated, under the aggregation rule (a list names \
                     individuals)",
                    &[],
                )
            } else if p.identity.contains_key(&s.column) && self.aggregation() {
                (
                    "names individuals, and under the aggregation rule may only be joined on or \
                     counted",
                    &[Use::Join, Use::Aggregate],
                )
            } else {
                continue;
            };
            if !allowed.contains(&at) {
                return refuse(format!(
                    "{what} uses {}.{} {}: the owner declared that it {class}",
                    s.table,
                    s.column,
                    at.words()
                ));
            }
        }
        Ok(())
    }

    /// The lineage of `expr` over an input with `schema` and `lineage`.
    fn lineage_of(
        &self,
        expr: &Expr,
        schema: &DFSchema,
        lineage: &[Lineage],
    ) -> Result<Lineage, CleanroomError> {
        let mut out = Lineage::default();
        for c in expr.column_refs() {
            let i = schema.index_of_column(c).map_err(internal)?;
            out.absorb(&lineage[i]);
        }
        let mut bare = expr;
        while let Expr::Alias(a) = bare {
            bare = &a.expr;
        }
        if let Expr::Column(c) = bare {
            let i = schema.index_of_column(c).map_err(internal)?;
            out.bare.clone_from(&lineage[i].bare);
        }
        Ok(out)
    }

    /// Checks every column `exprs` use at `at`.
    fn check_exprs(
        &self,
        exprs: &[&Expr],
        schema: &DFSchema,
        lineage: &[Lineage],
        at: Use,
    ) -> Result<(), CleanroomError> {
        for e in exprs {
            let l = self.lineage_of(e, schema, lineage)?;
            self.check_use(&l.raw, at, &format!("the expression {e}"))?;
        }
        Ok(())
    }

    fn carry(&mut self, plan: &LogicalPlan) -> Result<Carried, CleanroomError> {
        if let Some(f) = plan
            .schema()
            .fields()
            .iter()
            .find(|f| f.name().starts_with(HIDDEN))
        {
            return refuse(format!(
                "the column {:?} uses the prefix {HIDDEN:?}, which the engine keeps for itself",
                f.name()
            ));
        }
        let mut subquery = false;
        plan.apply_subqueries(|_| {
            subquery = true;
            Ok(TreeNodeRecursion::Stop)
        })
        .map_err(internal)?;
        if subquery {
            return refuse(
                "the engine cannot count the individuals behind a subquery inside an expression \
                 (IN, EXISTS, ANY, ALL, a scalar subquery): write it as a join",
            );
        }
        for e in plan.expressions() {
            let mut hidden = None;
            e.apply(|e| {
                let what = match e {
                    Expr::OuterReferenceColumn(..) => "a correlated subquery",
                    Expr::GroupingSet(_) => "GROUPING SETS, ROLLUP or CUBE",
                    Expr::WindowFunction(_) => "a window function",
                    _ => return Ok(TreeNodeRecursion::Continue),
                };
                hidden = Some(what);
                Ok(TreeNodeRecursion::Stop)
            })
            .map_err(internal)?;
            if let Some(what) = hidden {
                return refuse(format!(
                    "the engine cannot count the individuals behind {what}"
                ));
            }
        }
        match plan {
            LogicalPlan::TableScan(scan) => self.scan(plan, scan.table_name.table()),
            LogicalPlan::Projection(p) => {
                let input = self.carry(&p.input)?;
                let schema = p.input.schema();
                let lineage = p
                    .expr
                    .iter()
                    .map(|e| self.lineage_of(e, schema, &input.lineage))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut exprs = p.expr.clone();
                exprs.extend(input.ids.iter().map(|&i| self.hidden(i)));
                let plan = LogicalPlan::Projection(
                    Projection::try_new(exprs, Arc::new(input.plan)).map_err(internal)?,
                );
                Ok(Carried {
                    plan,
                    lineage,
                    ids: input.ids,
                })
            }
            LogicalPlan::Filter(f) => {
                let input = self.carry(&f.input)?;
                self.check_exprs(
                    &[&f.predicate],
                    f.input.schema(),
                    &input.lineage,
                    Use::Filter,
                )?;
                self.same_lineage(plan, input)
            }
            LogicalPlan::Sort(s) => {
                let input = self.carry(&s.input)?;
                let exprs: Vec<&Expr> = s.expr.iter().map(|e| &e.expr).collect();
                self.check_exprs(&exprs, s.input.schema(), &input.lineage, Use::Sort)?;
                self.same_lineage(plan, input)
            }
            LogicalPlan::Limit(l) => {
                let input = self.carry(&l.input)?;
                self.same_lineage(plan, input)
            }
            LogicalPlan::SubqueryAlias(a) => {
                let input = self.carry(&a.input)?;
                self.same_lineage(plan, input)
            }
            LogicalPlan::Join(j) => self.join(plan, j),
            LogicalPlan::Aggregate(a) => self.aggregate(a),
            LogicalPlan::Distinct(Distinct::All(input)) => self.distinct(input),
            LogicalPlan::Union(_) if self.aggregation() => refuse(
                "the aggregation rule reads each table once into the one aggregate: a UNION \
                 could put the same rows into two groups ('everyone' and 'everyone but one'), \
                 whose difference is one individual's",
            ),
            LogicalPlan::Union(u) => self.union(u),
            LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) if self.aggregation() => refuse(
                "the aggregation rule reads the contract's tables only: a constant table \
                     (VALUES) could map, repeat or weigh their rows",
            ),
            LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => Ok(Carried {
                plan: plan.clone(),
                lineage: vec![Lineage::default(); plan.schema().fields().len()],
                ids: Vec::new(),
            }),
            other => refuse(format!(
                "the engine cannot count the individuals behind a {} node of the plan",
                node(other)
            )),
        }
    }

    /// A node whose columns are its input's: rebuilt over the carried input.
    fn same_lineage(
        &mut self,
        plan: &LogicalPlan,
        input: Carried,
    ) -> Result<Carried, CleanroomError> {
        let rebuilt = plan
            .with_new_exprs(plan.expressions(), vec![input.plan])
            .map_err(internal)?;
        Ok(Carried {
            plan: rebuilt,
            lineage: input.lineage,
            ids: input.ids,
        })
    }

    fn hidden(&self, i: usize) -> Expr {
        col(self.instances[i].name.as_str())
    }

    /// A new instance like `i` (or a new one), its hidden column named afresh.
    fn instance(&mut self, like: Instance) -> usize {
        let n = self.instances.len();
        self.instances.push(Instance {
            name: format!("{HIDDEN}id{n}"),
            ..like
        });
        n
    }

    fn scan(&mut self, plan: &LogicalPlan, table: &str) -> Result<Carried, CleanroomError> {
        let Some(privacy) = self.declared.get(table) else {
            return refuse(format!(
                "table {table} has no privacy declaration: its owner must declare its identity \
                 columns before a contract reads it"
            ));
        };
        let schema = plan.schema();
        let lineage = schema
            .fields()
            .iter()
            .map(|f| {
                let s = Source {
                    table: table.to_owned(),
                    column: f.name().clone(),
                };
                Lineage {
                    raw: [s.clone()].into(),
                    aggregated: BTreeSet::new(),
                    bare: [s].into(),
                }
            })
            .collect();
        if privacy.identity.is_empty() {
            return Ok(Carried {
                plan: plan.clone(),
                lineage,
                ids: Vec::new(),
            });
        }
        let mut exprs: Vec<Expr> = (0..schema.fields().len())
            .map(|i| column_at(schema, i))
            .collect();
        let mut ids = Vec::new();
        for (column, domain) in &privacy.identity {
            let Ok(i) = schema.index_of_column(&Column::new(Some(table), column.as_str())) else {
                return refuse(format!(
                    "table {table} has no column {column:?}, which its owner declared an identity"
                ));
            };
            let n = self.instance(Instance {
                name: String::new(),
                table: table.to_owned(),
                column: column.clone(),
                domain: domain.clone(),
                set: false,
                counted: false,
            });
            let hashed = ScalarUDF::new_from_impl(HashIdentity::new())
                .call(vec![cast(column_at(schema, i), DataType::Utf8)]);
            exprs.push(hashed.alias(&self.instances[n].name));
            ids.push(n);
        }
        let plan = LogicalPlan::Projection(
            Projection::try_new(exprs, Arc::new(plan.clone())).map_err(internal)?,
        );
        Ok(Carried { plan, lineage, ids })
    }

    fn join(
        &mut self,
        plan: &LogicalPlan,
        j: &datafusion::logical_expr::Join,
    ) -> Result<Carried, CleanroomError> {
        if !matches!(
            j.join_type,
            JoinType::Inner | JoinType::Left | JoinType::Right | JoinType::Full
        ) {
            return refuse(format!(
                "the engine cannot count the individuals behind a {} join (IN, EXISTS): write \
                 it as an inner or outer join",
                j.join_type
            ));
        }
        if self.aggregation() && j.join_type != JoinType::Inner {
            // `badges LEFT JOIN hr ON … AND h.dept = 'exec' WHERE h.dept IS NULL`: HR's rows
            // decide which badges count, while HR's side of every group holds no one.
            return refuse(format!(
                "the aggregation rule joins with inner joins only: in a {} join one table's rows \
                 could choose the others' without any of its individuals counted",
                j.join_type
            ));
        }
        let left = self.carry(&j.left)?;
        let right = self.carry(&j.right)?;
        let mut lineage = left.lineage;
        lineage.extend(right.lineage);
        // A condition joins when it equates two plain source columns, one of each side; any
        // other condition of a join (`ON a.badge = b.badge AND a.badge = 'B7'`, a key computed
        // in a CTE, a constant table's column) chooses rows, as a WHERE does.
        let left_width = j.left.schema().fields().len();
        let schema: &DFSchema = &j.schema;
        let mut uses: Vec<(&Expr, Use)> = Vec::new();
        let mut equalities = Vec::new();
        let pairs = j.on.iter().map(|(l, r)| (l, r));
        let from_filter = j
            .filter
            .iter()
            .flat_map(split_conjunction)
            .filter_map(|c| match c {
                Expr::BinaryExpr(b) if b.op == Operator::Eq => Some((&*b.left, &*b.right)),
                other => {
                    uses.push((other, Use::Filter));
                    None
                }
            });
        let candidates: Vec<(&Expr, &Expr)> =
            pairs.chain(from_filter.collect::<Vec<_>>()).collect();
        for (l, r) in candidates {
            let sides = (column_index(l, schema), column_index(r, schema));
            // Of one type only: the planner casts one side of `text = integer`, and a cast
            // compares coarser values ('7', '07' and '007' all equal 7), so one individual
            // could stand for several.
            let joined = match sides {
                (Some(a), Some(b))
                    if (a < left_width) != (b < left_width)
                        && !lineage[a].bare.is_empty()
                        && !lineage[b].bare.is_empty()
                        && schema.field(a).data_type() == schema.field(b).data_type() =>
                {
                    equalities.push((a, b));
                    true
                }
                _ => false,
            };
            let at = if joined { Use::Join } else { Use::Filter };
            uses.extend([(l, at), (r, at)]);
        }
        // The join's own schema, before the rewrite, resolves its conditions.
        for (e, at) in uses {
            self.check_exprs(&[e], schema, &lineage, at)?;
        }
        if equalities.is_empty() {
            return refuse(
                "a join must equate a column of each side (no cross join, no join on a computed \
                 key or a constant): it could otherwise repeat rows, or pair an individual's row \
                 with unrelated ones",
            );
        }
        if !self.aggregation()
            && !equalities.iter().any(|&(a, b)| {
                let domain = self.identity_domain(&lineage[a].bare);
                domain.is_some() && domain == self.identity_domain(&lineage[b].bare)
            })
        {
            return refuse(
                "under the list rule a join matches individuals: it must equate identity columns \
                 of one domain, one of each side (otherwise unrelated individuals could be paired \
                 with a row to meet the minimum)",
            );
        }
        // Each side of an equality holds the other's values: what one may not do, nor may the
        // other (`JOIN other o ON h.ssn = o.ssn2` then `SELECT o.ssn2`), nor any column already
        // equated with either in an earlier join of the same tree.
        for &(a, b) in &equalities {
            let equal: BTreeSet<Source> = lineage[a].raw.union(&lineage[b].raw).cloned().collect();
            for l in &mut lineage {
                if !l.raw.is_disjoint(&equal) {
                    l.raw.extend(equal.iter().cloned());
                }
            }
        }
        if j.join_type == JoinType::Inner {
            for &(a, b) in &equalities {
                let (l, r) = if a < left_width { (a, b) } else { (b, a) };
                if let (Some(i), Some(k)) = (
                    self.instance_of(&left.ids, &lineage[l].bare),
                    self.instance_of(&right.ids, &lineage[r].bare),
                ) {
                    self.equal.push((i, k));
                }
            }
        }
        let (left_own, right_own) = (
            j.left.schema().fields().len(),
            j.right.schema().fields().len(),
        );
        let (left_ids, right_ids) = (left.ids, right.ids);
        let rebuilt = plan
            .with_new_exprs(plan.expressions(), vec![left.plan, right.plan])
            .map_err(internal)?;
        // Own columns first, hidden ones after: left own, right own, left hidden, right hidden.
        let schema = rebuilt.schema().clone();
        let left_carried = left_own + left_ids.len();
        let order = (0..left_own)
            .chain(left_carried..left_carried + right_own)
            .chain(left_own..left_carried)
            .chain(left_carried + right_own..left_carried + right_own + right_ids.len());
        let exprs = order.map(|i| column_at(&schema, i)).collect();
        let plan = LogicalPlan::Projection(
            Projection::try_new(exprs, Arc::new(rebuilt)).map_err(internal)?,
        );
        let mut ids = left_ids;
        ids.extend(right_ids);
        Ok(Carried { plan, lineage, ids })
    }

    fn aggregate(&mut self, a: &Aggregate) -> Result<Carried, CleanroomError> {
        let input = self.carry(&a.input)?;
        let schema = a.input.schema();
        let mut lineage = Vec::new();
        for g in &a.group_expr {
            let l = self.lineage_of(g, schema, &input.lineage)?;
            self.check_use(&l.raw, Use::Group, &format!("the grouping {g}"))?;
            lineage.push(Lineage {
                bare: BTreeSet::new(),
                ..l
            });
        }
        for e in &a.aggr_expr {
            let mut inner = e;
            while let Expr::Alias(x) = inner {
                inner = &x.expr;
            }
            let Expr::AggregateFunction(f) = inner else {
                return refuse(format!("the aggregate {e} is not an aggregate function"));
            };
            let l = self.lineage_of(e, schema, &input.lineage)?;
            self.check_use(&l.raw, Use::Aggregate, &format!("the aggregate {e}"))?;
            if self.aggregation() {
                self.plain_aggregate(f, schema, &input.lineage)?;
            } else if !matches!(
                f.func.name().to_ascii_lowercase().as_str(),
                "count" | "sum" | "avg" | "min" | "max"
            ) {
                // array_agg, string_agg, first_value…: one row that holds every row of its
                // group, each individual's own, backed by the whole group's count.
                return refuse(format!(
                    "the list rule allows COUNT, SUM, AVG, MIN and MAX; not {}: it could gather \
                     each individual's rows into one",
                    f.func.name()
                ));
            }
            let mut aggregated = l.aggregated;
            aggregated.extend(l.raw);
            lineage.push(Lineage {
                raw: BTreeSet::new(),
                aggregated,
                bare: BTreeSet::new(),
            });
        }
        // The instances whose count the aggregate computes itself, exactly: no set for them.
        let counted = self.counted_by(a, &input)?;
        let rest: Vec<usize> = input
            .ids
            .iter()
            .copied()
            .filter(|i| !counted.iter().any(|(c, _)| c == i))
            .collect();
        let (sets, mut ids) = self.gather(&rest);
        let mut exact = Vec::new();
        for &(i, j) in &counted {
            let n = self.instance(Instance {
                counted: true,
                ..self.instances[i].clone()
            });
            exact.push((j, self.instances[n].name.clone()));
            ids.push(n);
        }
        if let Some(noise) = self.noise {
            let plan = self.noised(a, input, sets, &exact, noise)?;
            return Ok(Carried { plan, lineage, ids });
        }
        let mut aggr_expr = a.aggr_expr.clone();
        aggr_expr.extend(sets);
        let plan = LogicalPlan::Aggregate(
            Aggregate::try_new(Arc::new(input.plan), a.group_expr.clone(), aggr_expr)
                .map_err(internal)?,
        );
        if exact.is_empty() {
            return Ok(Carried { plan, lineage, ids });
        }
        let schema = plan.schema().clone();
        let groups = a.group_expr.len();
        let mut exprs: Vec<Expr> = (0..schema.fields().len())
            .map(|i| column_at(&schema, i))
            .collect();
        for (j, name) in exact {
            exprs.push(column_at(&schema, groups + j).alias(name));
        }
        let plan =
            LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(plan)).map_err(internal)?);
        Ok(Carried { plan, lineage, ids })
    }

    /// Under the aggregation rule, the instances the aggregate `a` counts itself: a
    /// `COUNT(DISTINCT column)` of an instance's own column counts exactly its identities in
    /// each group (nulls left out, as here), and so does it for each instance an inner join
    /// equated with that one. Each, with the index of its aggregate. None when the sets are
    /// kept for the difference checks: a count is not a set.
    fn counted_by(
        &self,
        a: &Aggregate,
        input: &Carried,
    ) -> Result<Vec<(usize, usize)>, CleanroomError> {
        let mut counted: Vec<(usize, usize)> = Vec::new();
        if !self.aggregation() || self.sets {
            return Ok(counted);
        }
        for (j, e) in a.aggr_expr.iter().enumerate() {
            let mut inner = e;
            while let Expr::Alias(x) = inner {
                inner = &x.expr;
            }
            let Expr::AggregateFunction(f) = inner else {
                continue;
            };
            let [arg] = &f.params.args[..] else {
                continue;
            };
            if !f.func.name().eq_ignore_ascii_case("count")
                || !f.params.distinct
                || f.params.filter.is_some()
            {
                continue;
            }
            let l = self.lineage_of(arg, a.input.schema(), &input.lineage)?;
            let Some(i) = self.instance_of(&input.ids, &l.bare) else {
                continue;
            };
            let same = self
                .equal
                .iter()
                .filter_map(|&(x, y)| match (x == i, y == i) {
                    (true, _) => Some(y),
                    (_, true) => Some(x),
                    _ => None,
                })
                .chain([i]);
            for k in same.collect::<Vec<_>>() {
                if input.ids.contains(&k) && !counted.iter().any(|(c, _)| *c == k) {
                    counted.push((k, j));
                }
            }
        }
        Ok(counted)
    }

    /// The one value instance among `ids` that carries the source column `bare` names, if it
    /// names exactly one and exactly one instance carries it (a table scanned twice carries
    /// the same column in two instances: neither is told apart).
    fn instance_of(&self, ids: &[usize], bare: &BTreeSet<Source>) -> Option<usize> {
        let [source] = &bare.iter().collect::<Vec<_>>()[..] else {
            return None;
        };
        let mut found = ids.iter().copied().filter(|&i| {
            let inst = &self.instances[i];
            !inst.set && !inst.counted && inst.table == source.table && inst.column == source.column
        });
        let first = found.next()?;
        found.next().is_none().then_some(first)
    }

    /// The aggregates that gather the identities of each group's rows from the hidden columns
    /// `ids`, and the instances they make: under the aggregation rule one set per instance,
    /// each counted on its own; under the list rule, which counts a domain's identities
    /// together, one set per domain (a self-join of a union of three banks carries twelve
    /// hidden account columns, gathered into one set rather than twelve).
    fn gather(&mut self, ids: &[usize]) -> (Vec<Expr>, Vec<usize>) {
        let mut together: Vec<(usize, Vec<Expr>)> = Vec::new();
        for &i in ids {
            let shared = (!self.aggregation())
                .then(|| {
                    together.iter_mut().find(|(first, _)| {
                        self.instances[*first].domain == self.instances[i].domain
                    })
                })
                .flatten();
            match shared {
                Some((_, args)) => args.push(self.hidden(i)),
                None => together.push((i, vec![self.hidden(i)])),
            }
        }
        let union = AggregateUDF::new_from_impl(IdentitiesOf::new());
        together
            .into_iter()
            .map(|(first, args)| {
                let n = self.instance(Instance {
                    set: true,
                    ..self.instances[first].clone()
                });
                (union.call(args).alias(&self.instances[n].name), n)
            })
            .unzip()
    }

    /// The aggregate `a` over `input` with the contract's noise ([`crate::dp`]): contributions
    /// bounded per identity, sums clamped to their columns' declared bounds, noise added.
    fn noised(
        &self,
        a: &Aggregate,
        input: Carried,
        sets: Vec<Expr>,
        exact: &[(usize, String)],
        noise: Noise,
    ) -> Result<LogicalPlan, CleanroomError> {
        if input.ids.is_empty() {
            return refuse(
                "noise protects individuals: this aggregate reads no identity column, so the \
                 engine cannot bound what one individual contributes",
            );
        }
        let schema = a.input.schema();
        let mut values = Vec::new();
        for e in &a.aggr_expr {
            let mut inner = e;
            while let Expr::Alias(x) = inner {
                inner = &x.expr;
            }
            let Expr::AggregateFunction(f) = inner else {
                return refuse(format!("the aggregate {e} is not an aggregate function"));
            };
            let bounds = if f.func.name().eq_ignore_ascii_case("count") {
                None
            } else {
                Some(self.bounds_of(f, schema, &input.lineage)?)
            };
            values.push(crate::dp::Value {
                function: f.clone(),
                bounds,
            });
        }
        // One bound per individual: an instance an inner join equated with one already bounded
        // holds the same identity on every row.
        let mut bounded: Vec<usize> = Vec::new();
        for &i in &input.ids {
            let same = |&k: &usize| self.equal.contains(&(i, k)) || self.equal.contains(&(k, i));
            if !bounded.iter().any(same) {
                bounded.push(i);
            }
        }
        // Two scans of individuals that no join equates (a self-join on a department, a
        // transfer's two accounts) would each bound one person's rows apart: twice the rows
        // the noise is calibrated to, or more.
        if bounded.len() > 1 {
            return refuse(format!(
                "noise bounds each individual's rows, but this aggregate reads {} identity \
                 columns that no join equates ({}): one person could contribute through each",
                bounded.len(),
                bounded
                    .iter()
                    .map(|&i| format!("{}.{}", self.instances[i].table, self.instances[i].column))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let hidden: Vec<Expr> = bounded.iter().map(|&i| self.hidden(i)).collect();
        let bounded =
            crate::dp::bound_contributions(input.plan, &hidden, noise.max_rows_per_identity)?;
        crate::dp::aggregate(bounded, a, values, sets, exact, noise)
    }

    /// The bounds of the column a noised SUM or AVG reads, as its owners declared them (the
    /// widest, if it is one of several tables' columns).
    fn bounds_of(
        &self,
        f: &AggregateFunction,
        schema: &DFSchema,
        lineage: &[Lineage],
    ) -> Result<Bounds, CleanroomError> {
        let mut bounds: Option<Bounds> = None;
        for arg in &f.params.args {
            let l = self.lineage_of(arg, schema, lineage)?;
            for s in &l.bare {
                let Some(b) = self
                    .declared
                    .get(&s.table)
                    .and_then(|p| p.bounds.get(&s.column))
                else {
                    return refuse(format!(
                        "{}({}.{}) under noise: the owner declared no bounds for {}.{}, so one \
                         row could move the result by any amount",
                        f.func.name(),
                        s.table,
                        s.column,
                        s.table,
                        s.column
                    ));
                };
                bounds = Some(match bounds {
                    None => *b,
                    Some(o) => Bounds {
                        lo: o.lo.min(b.lo),
                        hi: o.hi.max(b.hi),
                    },
                });
            }
        }
        bounds.map_or_else(
            || refuse(format!("{} under noise reads no column", f.func.name())),
            Ok,
        )
    }

    /// Under the aggregation rule: COUNT, SUM or AVG (DISTINCT or not) of plain columns or of
    /// everything, with no FILTER or ORDER BY of its own — an aggregate that takes only some
    /// of its group's rows (`SUM(CASE WHEN name = 'x' THEN salary END)`) would report on
    /// fewer individuals than the engine counts — and identity columns only counted.
    fn plain_aggregate(
        &self,
        f: &AggregateFunction,
        schema: &DFSchema,
        lineage: &[Lineage],
    ) -> Result<(), CleanroomError> {
        let name = f.func.name().to_ascii_lowercase();
        if !matches!(name.as_str(), "count" | "sum" | "avg") {
            return refuse(format!(
                "the aggregation rule allows COUNT, SUM and AVG; not {}",
                f.func.name()
            ));
        }
        if f.params.filter.is_some() || !f.params.order_by.is_empty() {
            return refuse(format!(
                "the aggregation rule allows no FILTER or ORDER BY inside {}: every row of a \
                 group counts",
                f.func.name()
            ));
        }
        for arg in &f.params.args {
            if matches!(arg, Expr::Literal(..)) {
                continue;
            }
            let l = self.lineage_of(arg, schema, lineage)?;
            if l.bare.is_empty() {
                return refuse(format!(
                    "the aggregation rule aggregates plain columns only: {}({arg}) computes its \
                     argument",
                    f.func.name()
                ));
            }
            if let Some(source) = l.bare.iter().find(|s| self.domain(s).is_some())
                && name != "count"
            {
                return refuse(format!(
                    "{}.{} names individuals: the aggregation rule only counts it, not {}",
                    source.table,
                    source.column,
                    f.func.name()
                ));
            }
        }
        Ok(())
    }

    /// `SELECT DISTINCT`: one row per distinct own row, the identities of the rows it stands
    /// for gathered, as a `GROUP BY` of every column.
    fn distinct(&mut self, input_plan: &LogicalPlan) -> Result<Carried, CleanroomError> {
        let input = self.carry(input_plan)?;
        let schema = input_plan.schema();
        for (i, l) in input.lineage.iter().enumerate() {
            self.check_use(
                &l.raw,
                Use::Group,
                &format!("DISTINCT over {}", schema.field(i).name()),
            )?;
        }
        let carried_schema = input.plan.schema().clone();
        let group: Vec<Expr> = (0..schema.fields().len())
            .map(|i| column_at(&carried_schema, i))
            .collect();
        let (aggr, ids) = self.gather(&input.ids);
        let plan = LogicalPlan::Aggregate(
            Aggregate::try_new(Arc::new(input.plan), group, aggr).map_err(internal)?,
        );
        let lineage = input
            .lineage
            .into_iter()
            .map(|l| Lineage {
                bare: BTreeSet::new(),
                ..l
            })
            .collect();
        Ok(Carried { plan, lineage, ids })
    }

    /// `UNION [ALL]` (list rule only): a row keeps the identities of the input it came from.
    /// The list rule counts a domain's identities together, so the inputs share hidden
    /// columns: one per domain and kind (value or set) for as many as the input with the most
    /// carries, each input's own filled in order, the rest empty.
    fn union(&mut self, u: &Union) -> Result<Carried, CleanroomError> {
        let inputs = u
            .inputs
            .iter()
            .map(|i| self.carry(i))
            .collect::<Result<Vec<_>, _>>()?;
        let own = u.schema.fields().len();
        // The slots, as (domain, set, instance made for it); and for each input, the slot each
        // of its instances fills.
        let mut slots: Vec<(String, bool, usize)> = Vec::new();
        let mut fills: Vec<Vec<(usize, usize)>> = Vec::new();
        for carried in &inputs {
            let mut filled = Vec::new();
            for &i in &carried.ids {
                let (domain, set) = (self.instances[i].domain.clone(), self.instances[i].set);
                let free = (0..slots.len()).find(|&k| {
                    slots[k].0 == domain
                        && slots[k].1 == set
                        && !filled.iter().any(|&(_, f)| f == k)
                });
                let k = match free {
                    Some(k) => k,
                    None => {
                        let n = self.instance(self.instances[i].clone());
                        slots.push((domain, set, n));
                        slots.len() - 1
                    }
                };
                filled.push((i, k));
            }
            fills.push(filled);
        }
        let mut lineage = vec![Lineage::default(); own];
        // A column is plain when it is plain in every input.
        let mut plain = vec![true; own];
        let mut plans = Vec::new();
        for (carried, filled) in inputs.into_iter().zip(fills) {
            for ((l, from), plain) in lineage.iter_mut().zip(&carried.lineage).zip(&mut plain) {
                l.absorb(from);
                l.bare.extend(from.bare.iter().cloned());
                *plain &= !from.bare.is_empty();
            }
            let schema = carried.plan.schema().clone();
            let mut exprs: Vec<Expr> = (0..own).map(|i| column_at(&schema, i)).collect();
            for (k, (_, set, to)) in slots.iter().enumerate() {
                let e = match filled.iter().find(|&&(_, f)| f == k) {
                    Some(&(from, _)) => self.hidden(from),
                    None if *set => cast(lit(ScalarValue::Null), list_type()),
                    None => cast(lit(ScalarValue::Null), DataType::UInt64),
                };
                exprs.push(e.alias(self.instances[*to].name.as_str()));
            }
            plans.push(Arc::new(LogicalPlan::Projection(
                Projection::try_new(exprs, Arc::new(carried.plan)).map_err(internal)?,
            )));
        }
        for (l, plain) in lineage.iter_mut().zip(plain) {
            if !plain {
                l.bare.clear();
            }
        }
        let plan = LogicalPlan::Union(Union::try_new_with_loose_types(plans).map_err(internal)?);
        Ok(Carried {
            plan,
            lineage,
            ids: slots.into_iter().map(|(_, _, to)| to).collect(),
        })
    }
}

/// The kind of a plan's node, as DataFusion names it (`Window`, `Unnest`, …).
fn node(plan: &LogicalPlan) -> String {
    let text = plan.display().to_string();
    text.split([':', ' ']).next().unwrap_or_default().to_owned()
}

/// Where in `schema` the column `e` is, if `e` is a column (renamed at most; a cast compares
/// coarser values than the column's, or fails on some).
fn column_index(e: &Expr, schema: &DFSchema) -> Option<usize> {
    match e {
        Expr::Column(c) => schema.index_of_column(c).ok(),
        Expr::Alias(a) => column_index(&a.expr, schema),
        _ => None,
    }
}

/// The `i`th column of `schema`, as a column reference.
pub(crate) fn column_at(schema: &DFSchema, i: usize) -> Expr {
    let (qualifier, field) = schema.qualified_field(i);
    Expr::Column(Column::from((qualifier, field)))
}

fn list_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::UInt64, true)))
}

/// Refuses a hidden column of any type but the two the guard makes: a count never passes for
/// want of reading it.
fn identities_typed(array: &ArrayRef) -> DfResult<()> {
    match array.data_type() {
        DataType::UInt64 => Ok(()),
        DataType::List(f) if f.data_type() == &DataType::UInt64 => Ok(()),
        other => plan_err!("an identity column of type {other}"),
    }
}

/// Calls `f` with every non-null identity in row `row` of `array` (a value or a set of them;
/// see [`identities_typed`]).
pub(crate) fn each_identity(array: &ArrayRef, row: usize, f: &mut impl FnMut(u64)) {
    if array.is_null(row) {
        return;
    }
    if let Some(values) = array.as_primitive_opt::<UInt64Type>() {
        f(values.value(row));
    } else if let Some(list) = array.as_list_opt::<i32>() {
        let offsets = list.value_offsets();
        let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
        if let Some(values) = list.values().as_primitive_opt::<UInt64Type>() {
            for v in start..end {
                if values.is_valid(v) {
                    f(values.value(v));
                }
            }
        }
    }
}

/// `__confide_hash(text)`: an identity as the engine carries it, a 64-bit FNV-1a hash of its
/// text (8 bytes a row, whatever the identity's length). Two identities that collide count
/// once, so a count can come out lower than the truth (one more row suppressed, with odds
/// near 10^-6 among ten million identities), never higher.
#[derive(Debug, PartialEq, Eq, Hash)]
struct HashIdentity {
    signature: Signature,
}

impl HashIdentity {
    fn new() -> Self {
        Self {
            signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable),
        }
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl ScalarUDFImpl for HashIdentity {
    fn name(&self) -> &str {
        "__confide_hash"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::UInt64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let Some(text) = arrays.first().and_then(|a| a.as_string_opt::<i32>()) else {
            return plan_err!("__confide_hash takes text");
        };
        let hashed: UInt64Array = text
            .iter()
            .map(|v| v.map(|v| fnv1a(v.as_bytes())))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(hashed)))
    }
}

/// `__confide_count(ids…)`: how many distinct identities a row's hidden columns hold.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CountIdentities {
    signature: Signature,
}

impl CountIdentities {
    fn new() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for CountIdentities {
    fn name(&self) -> &str {
        "__confide_count"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::UInt64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        // A count the aggregate computed itself (see `Guard::counted_by`).
        if let [count] = &arrays[..]
            && let Some(n) = count.as_primitive_opt::<datafusion::arrow::datatypes::Int64Type>()
        {
            let counts: UInt64Array = n
                .iter()
                .map(|v| Some(v.map_or(0, |v| v.unsigned_abs())))
                .collect();
            return Ok(ColumnarValue::Array(Arc::new(counts)));
        }
        for a in &arrays {
            identities_typed(a)?;
        }
        let mut seen = Vec::new();
        let counts: UInt64Array = (0..args.number_rows)
            .map(|row| {
                seen.clear();
                for a in &arrays {
                    each_identity(a, row, &mut |v| seen.push(v));
                }
                seen.sort_unstable();
                seen.dedup();
                Some(seen.len() as u64)
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(counts)))
    }
}

/// `__confide_ids(ids…)`: the set of distinct identities over a group's rows, from every
/// hidden column given (values or sets).
#[derive(Debug, PartialEq, Eq, Hash)]
struct IdentitiesOf {
    signature: Signature,
}

impl IdentitiesOf {
    fn new() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for IdentitiesOf {
    fn name(&self) -> &str {
        "__confide_ids"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(list_type())
    }

    fn accumulator(&self, _: AccumulatorArgs<'_>) -> DfResult<Box<dyn Accumulator>> {
        Ok(Box::new(IdentityGroups::default()))
    }

    fn state_fields(&self, args: StateFieldsArgs<'_>) -> DfResult<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format_state_name(args.name, "ids"),
            list_type(),
            true,
        ))])
    }

    fn groups_accumulator_supported(&self, _: AccumulatorArgs<'_>) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        _: AccumulatorArgs<'_>,
    ) -> DfResult<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(IdentityGroups::default()))
    }
}

/// The identities of each group, as they come; sorted and deduplicated whenever a group's list
/// has doubled since, so a group holds about twice its distinct identities at most.
#[derive(Debug, Default)]
struct IdentityGroups {
    sets: Vec<Vec<u64>>,
    /// Each group's length when it was last deduplicated.
    clean: Vec<usize>,
}

impl IdentityGroups {
    fn add(
        &mut self,
        arrays: &[ArrayRef],
        groups: impl Iterator<Item = (usize, usize)>,
        total: usize,
    ) -> DfResult<()> {
        for array in arrays {
            identities_typed(array)?;
        }
        if self.sets.len() < total {
            self.sets.resize_with(total, Vec::new);
            self.clean.resize(total, 0);
        }
        for (row, g) in groups {
            let set = &mut self.sets[g];
            for array in arrays {
                each_identity(array, row, &mut |v| set.push(v));
            }
            if set.len() > 2 * self.clean[g] + 2 {
                set.sort_unstable();
                set.dedup();
                self.clean[g] = set.len();
            }
        }
        Ok(())
    }

    fn emit(sets: Vec<Vec<u64>>) -> ArrayRef {
        let mut builder = ListBuilder::new(UInt64Builder::new());
        for mut set in sets {
            set.sort_unstable();
            set.dedup();
            builder.values().append_slice(&set);
            builder.append(true);
        }
        Arc::new(builder.finish())
    }

    fn take(&mut self, emit_to: EmitTo) -> ArrayRef {
        let sets = emit_to.take_needed(&mut self.sets);
        let _ = emit_to.take_needed(&mut self.clean);
        Self::emit(sets)
    }
}

impl GroupsAccumulator for IdentityGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> DfResult<()> {
        let rows = group_indices
            .iter()
            .enumerate()
            .filter(|(row, _)| opt_filter.is_none_or(|f| f.is_valid(*row) && f.value(*row)))
            .map(|(row, g)| (row, *g));
        self.add(values, rows, total_num_groups)
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> DfResult<ArrayRef> {
        Ok(self.take(emit_to))
    }

    fn state(&mut self, emit_to: EmitTo) -> DfResult<Vec<ArrayRef>> {
        Ok(vec![self.take(emit_to)])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> DfResult<()> {
        let rows = group_indices.iter().enumerate().map(|(row, g)| (row, *g));
        self.add(values, rows, total_num_groups)
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> DfResult<Vec<ArrayRef>> {
        for array in values {
            identities_typed(array)?;
        }
        let rows = values.first().map_or(0, |a| a.len());
        let sets = (0..rows)
            .map(|row| {
                let mut set = Vec::new();
                if opt_filter.is_none_or(|f| f.is_valid(row) && f.value(row)) {
                    for array in values {
                        each_identity(array, row, &mut |v| set.push(v));
                    }
                }
                set
            })
            .collect();
        Ok(vec![Self::emit(sets)])
    }

    fn size(&self) -> usize {
        self.sets
            .iter()
            .map(|s| s.capacity() * 8 + std::mem::size_of::<Vec<u64>>())
            .sum::<usize>()
            + self.clean.capacity() * 8
    }
}

/// The same, for an aggregate over all rows (one group).
impl Accumulator for IdentityGroups {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let rows = (0..values[0].len()).map(|row| (row, 0));
        self.add(values, rows, 1)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        let rows = (0..states[0].len()).map(|row| (row, 0));
        self.add(states, rows, 1)
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        Ok(vec![Accumulator::evaluate(self)?])
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        let sets = vec![self.sets.first().cloned().unwrap_or_default()];
        let list = Self::emit(sets);
        ScalarValue::try_from_array(&list, 0)
    }

    fn size(&self) -> usize {
        GroupsAccumulator::size(self)
    }
}

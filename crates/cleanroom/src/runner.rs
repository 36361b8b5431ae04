//! The query, inside the TEE: each dataset decrypted as DataFusion reads it, the contract's SQL
//! run over them, the output rules applied to the result.
//!
//! DataFusion reads every table with its own CSV and Parquet readers, as it reads a plain file,
//! through an in-memory object store whose every ranged read decrypts only the chunks it covers
//! ([`crate::plaintext`]). A table used twice in a query is decrypted twice and never held whole.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use confide_crypto::chunked::ReadAt;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::MemTable;
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use datafusion::prelude::{
    CsvReadOptions, DataFrame, ParquetReadOptions, SessionConfig, SessionContext,
};

use crate::history::{Earlier, History};
use crate::privacy::{self, Guarded};
use crate::rules::Differences;
use crate::rules::{self, Released};
use crate::{CleanroomError, plaintext};
use confide_model::contract::{AnalysisRule, OutputRules};
use confide_model::dataset::Privacy;

pub use confide_model::Format;

/// One table of the query.
#[derive(Clone)]
pub struct Table {
    /// Its name in the SQL.
    pub name: String,
    /// Its layout.
    pub format: Format,
    /// Its columns (CSV; a Parquet file carries its own).
    pub schema: SchemaRef,
    /// Its plaintext, one source per version read (each a whole file of the format, header
    /// and all), readable at any position: each read decrypts the chunks it covers.
    pub sources: Vec<Arc<dyn ReadAt>>,
    /// Its owner's privacy declaration.
    pub privacy: Privacy,
    /// The groups released from it before, for the difference checks ([`crate::history`]).
    pub history: History,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("name", &self.name)
            .field("format", &self.format)
            .finish()
    }
}

/// A schema from the `[{"name", "type"}]` list a dataset's record carries (types as Arrow
/// writes them: `Int64`, `Float64`, `Utf8`, `Boolean`, `Date32`, …).
pub fn schema_from(columns: &[(String, String)]) -> Result<SchemaRef, CleanroomError> {
    let fields = columns
        .iter()
        .map(|(name, ty)| {
            ty.parse::<DataType>()
                .map(|t| Field::new(name, t, true))
                .map_err(|e| CleanroomError::Dataset(format!("column {name}: type {ty:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Arc::new(Schema::new(fields)))
}

/// Infers a CSV's schema from its first `rows` rows: the `[(name, type)]` to record.
pub fn infer_csv_schema(
    reader: impl Read,
    rows: usize,
) -> Result<Vec<(String, String)>, CleanroomError> {
    let (schema, _) = datafusion::arrow::csv::reader::Format::default()
        .with_header(true)
        .infer_schema(reader, Some(rows))
        .map_err(|e| CleanroomError::Dataset(format!("the CSV's header and rows: {e}")))?;
    Ok(schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().to_string()))
        .collect())
}

/// A Parquet file's schema (as `[(name, type)]`) and row count, from its footer.
pub fn describe_parquet(
    path: &std::path::Path,
) -> Result<(Vec<(String, String)>, u64), CleanroomError> {
    let file = std::fs::File::open(path)
        .map_err(|e| CleanroomError::Dataset(format!("{}: {e}", path.display())))?;
    let builder =
        datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| {
                CleanroomError::Dataset(format!("{}: not Parquet: {e}", path.display()))
            })?;
    let rows = builder.metadata().file_metadata().num_rows();
    let columns = builder
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().to_string()))
        .collect();
    Ok((columns, u64::try_from(rows).unwrap_or(0)))
}

/// Registers `tables` with `ctx`, served to DataFusion's own CSV and Parquet readers from an
/// in-memory object store (see [`crate::plaintext`]).
async fn register(ctx: &SessionContext, tables: &[Table]) -> Result<(), CleanroomError> {
    let mut store = plaintext::Tables::default();
    // Each table is a folder of its versions' files, which DataFusion lists and reads as one.
    let mut urls = Vec::new();
    for (i, table) in tables.iter().enumerate() {
        if table.sources.is_empty() {
            return Err(CleanroomError::Dataset(format!(
                "table {}: no version of its dataset is read",
                table.name
            )));
        }
        for (v, source) in table.sources.iter().enumerate() {
            store.insert(
                &format!("{i}/{v:06}.{}", table.format.as_str()),
                source.clone(),
            );
        }
        urls.push(format!("{}{i}/", plaintext::URL));
    }
    let url = url::Url::parse(plaintext::URL).map_err(|e| CleanroomError::Query(e.to_string()))?;
    ctx.register_object_store(&url, Arc::new(store));
    for (table, url) in tables.iter().zip(urls) {
        let name = table.name.as_str();
        match table.format {
            Format::Csv => {
                let options = CsvReadOptions::new().schema(&table.schema).has_header(true);
                ctx.register_csv(name, &url, options)
                    .await
                    .map_err(|e| CleanroomError::Dataset(format!("table {name}: {e}")))?;
            }
            // A Parquet file carries its own schema, in its footer.
            Format::Parquet => ctx
                .register_parquet(name, &url, ParquetReadOptions::default())
                .await
                .map_err(|e| CleanroomError::Dataset(format!("table {name}: not Parquet: {e}")))?,
        }
    }
    Ok(())
}

/// The tables that name individuals of `domain`.
fn holding<'a>(tables: &'a [Table], domain: &'a str) -> impl Iterator<Item = &'a Table> + 'a {
    tables
        .iter()
        .filter(move |t| t.privacy.identity.values().any(|d| d == domain))
}

/// A query only: no statement that creates or reads other tables (`CREATE EXTERNAL TABLE` over
/// a local file), writes (`COPY ... TO`, `INSERT`) or changes the session (`SET`).
fn query_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// The engine-enforced rule of `rules`: a contract without one (an older ledger's, with a
/// count its SQL computes) does not run.
fn rule_of(rules: &OutputRules) -> Result<AnalysisRule, CleanroomError> {
    rules.rule.ok_or_else(|| CleanroomError::NoAnalysisRule {
        column: rules
            .min_group
            .as_ref()
            .map_or_else(String::new, |m| m.column.clone()),
    })
}

/// Plans `sql` as a query only, over functions of the data alone, and guards it under the
/// tables' declarations and the contract's rule: the plan that counts the identities behind
/// each row ([`privacy::guard`]).
async fn plan(
    ctx: &SessionContext,
    sql: &str,
    declared: &BTreeMap<String, Privacy>,
    rules: &OutputRules,
) -> Result<(DataFrame, Guarded), CleanroomError> {
    let rule = rule_of(rules)?;
    let frame = ctx
        .sql_with_options(sql, query_only())
        .await
        .map_err(|e| CleanroomError::Query(format!("the contract's SQL: {e}")))?;
    deterministic(frame.logical_plan())?;
    let guarded = privacy::guard(frame.logical_plan(), declared, rule, rules.noise)?;
    rules::check_columns(rules, &guarded.columns)?;
    let frame = DataFrame::new(ctx.state(), guarded.plan.clone());
    Ok((frame, guarded))
}

/// Refuses a plan that calls a function whose value is not a function of its arguments alone:
/// a volatile one (`random()`, `uuid()`), whose every run gives another result, so that two
/// runs of one approved contract can be told apart or averaged; or a stable one (`now()`,
/// `current_date()`), whose result depends on when the run happens. Decided on the planned
/// query, every node and subquery, from each function's declared volatility, not from the
/// SQL's words, so an alias or a nesting hides nothing.
fn deterministic(plan: &LogicalPlan) -> Result<(), CleanroomError> {
    let mut refused = None;
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                let (name, volatility) = match e {
                    Expr::ScalarFunction(f) => (f.func.name(), f.func.signature().volatility),
                    Expr::AggregateFunction(f) => (f.func.name(), f.func.signature().volatility),
                    Expr::WindowFunction(w) => (w.fun.name(), w.fun.signature().volatility),
                    _ => return Ok(TreeNodeRecursion::Continue),
                };
                if volatility == Volatility::Immutable {
                    return Ok(TreeNodeRecursion::Continue);
                }
                refused = Some(CleanroomError::NotDeterministic {
                    function: name.to_owned(),
                });
                Ok(TreeNodeRecursion::Stop)
            })
        })
    })
    .map_err(|e| CleanroomError::Query(format!("the contract's SQL: {e}")))?;
    refused.map_or(Ok(()), Err)
}

fn new_context() -> SessionContext {
    SessionContext::new_with_config(SessionConfig::new().with_information_schema(false))
}

/// Plans `sql` over empty tables of these schemas and declarations and checks that its result
/// could leave under `rules`, as a proposer would want to know before the owners approve: a
/// query only, over the contract's tables and their columns, whose every use of a column its
/// owner's declaration allows, whose individuals the engine can count, giving only allowed
/// columns. Returns the result's columns.
pub async fn check(
    sql: &str,
    tables: &[(String, SchemaRef, Privacy)],
    rules: &OutputRules,
) -> Result<Vec<String>, CleanroomError> {
    let ctx = new_context();
    for (name, schema, _) in tables {
        let empty = MemTable::try_new(schema.clone(), vec![vec![]])
            .map_err(|e| CleanroomError::Query(e.to_string()))?;
        ctx.register_table(name.as_str(), Arc::new(empty))
            .map_err(|e| CleanroomError::Query(e.to_string()))?;
    }
    let declared = tables
        .iter()
        .map(|(name, _, privacy)| (name.clone(), privacy.clone()))
        .collect();
    let (_, guarded) = plan(&ctx, sql, &declared, rules).await?;
    Ok(guarded.columns)
}

/// Runs `sql` over `tables` and applies `rules` to its result.
pub async fn run(
    sql: &str,
    tables: Vec<Table>,
    rules: &OutputRules,
) -> Result<Released, CleanroomError> {
    let ctx = new_context();
    register(&ctx, &tables).await?;
    let declared = tables
        .iter()
        .map(|t| (t.name.clone(), t.privacy.clone()))
        .collect();
    let (frame, guarded) = plan(&ctx, sql, &declared, rules).await?;
    let batches = frame
        .collect()
        .await
        .map_err(|e| CleanroomError::Query(format!("running the contract's SQL: {e}")))?;
    // Each domain counted is checked against the history of every table that names
    // individuals of it (however a union or a join mixed them), and what the result lets out
    // is added to each.
    let mut differences = guarded.sets.then(|| {
        let mut d = Differences::default();
        for c in &guarded.counts {
            d.earlier.entry(c.domain.clone()).or_insert_with(|| {
                Earlier::new(holding(&tables, &c.domain).flat_map(|t| t.history.sets(&c.domain)))
            });
        }
        d
    });
    let mut released = rules::checked(
        rules,
        rule_of(rules)?,
        &guarded.columns,
        &guarded.counts,
        &batches,
        differences.as_mut(),
    )?;
    if let Some(d) = differences {
        for c in &guarded.counts {
            for table in holding(&tables, &c.domain) {
                released
                    .histories
                    .entry(table.name.clone())
                    .or_insert_with(|| table.history.clone());
            }
        }
        for (domain, sets) in d.new {
            for table in holding(&tables, &domain) {
                if let Some(history) = released.histories.get_mut(&table.name) {
                    for set in &sets {
                        history.add(&domain, set.clone());
                    }
                }
            }
        }
    }
    Ok(released)
}

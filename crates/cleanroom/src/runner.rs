//! The query, inside the TEE: each dataset decrypted as DataFusion reads it, the contract's SQL
//! run over them, the output rules applied to the result.
//!
//! A CSV table is a streaming source: every scan opens the dataset again (its ciphertext,
//! decrypted chunk by chunk as the CSV reader pulls it), so a table used twice in a query is
//! read twice and never held whole. A Parquet file needs random access to its footer, so it is
//! decrypted into memory first (never to disk).

use std::io::{BufRead, Read};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatchReader as _;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::CleanroomError;
use crate::contract::OutputRules;
use crate::rules::{self, Released};

/// How a dataset's plaintext is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// CSV with a header line.
    Csv,
    /// Apache Parquet.
    Parquet,
}

impl Format {
    /// `csv` or `parquet`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "csv" => Some(Self::Csv),
            "parquet" => Some(Self::Parquet),
            _ => None,
        }
    }

    /// The format's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Parquet => "parquet",
        }
    }
}

/// Opens a dataset's plaintext, afresh at each call (decrypting as it is read). The reader lends
/// its buffer ([`BufRead`]), so the CSV parser reads each decrypted chunk where it was opened.
pub type Opener = Arc<dyn Fn() -> std::io::Result<Box<dyn BufRead + Send>> + Send + Sync>;

/// One table of the query.
#[derive(Clone)]
pub struct Table {
    /// Its name in the SQL.
    pub name: String,
    /// Its layout.
    pub format: Format,
    /// Its columns (CSV; a Parquet file carries its own).
    pub schema: SchemaRef,
    /// Where its plaintext comes from.
    pub open: Opener,
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

#[derive(Debug)]
struct CsvPartition {
    name: String,
    schema: SchemaRef,
    open: OpenerDebug,
}

struct OpenerDebug(Opener);

impl std::fmt::Debug for OpenerDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Opener")
    }
}

impl PartitionStream for CsvPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let mut builder = RecordBatchReceiverStreamBuilder::new(self.schema.clone(), 4);
        let tx = builder.tx();
        let (schema, open, name) = (self.schema.clone(), self.open.0.clone(), self.name.clone());
        builder.spawn_blocking(move || {
            let external =
                |what: String| DataFusionError::Execution(format!("table {name}: {what}"));
            let reader = open().map_err(|e| external(e.to_string()))?;
            let csv = datafusion::arrow::csv::ReaderBuilder::new(schema)
                .with_header(true)
                .with_batch_size(8192)
                .build_buffered(reader)
                .map_err(|e| external(e.to_string()))?;
            for batch in csv {
                let batch = batch.map_err(|e| external(e.to_string()));
                let failed = batch.is_err();
                if tx.blocking_send(batch).is_err() || failed {
                    break;
                }
            }
            Ok(())
        });
        builder.build()
    }
}

async fn register(ctx: &SessionContext, table: Table) -> Result<(), CleanroomError> {
    let provider: Arc<dyn datafusion::catalog::TableProvider> = match table.format {
        Format::Csv => Arc::new(
            StreamingTable::try_new(
                table.schema.clone(),
                vec![Arc::new(CsvPartition {
                    name: table.name.clone(),
                    schema: table.schema.clone(),
                    open: OpenerDebug(table.open.clone()),
                })],
            )
            .map_err(|e| CleanroomError::Query(e.to_string()))?,
        ),
        Format::Parquet => {
            let open = table.open.clone();
            let name = table.name.clone();
            let (schema, batches) = tokio::task::spawn_blocking(move || {
                let mut bytes = Vec::new();
                open()
                    .and_then(|mut r| r.read_to_end(&mut bytes))
                    .map_err(|e| CleanroomError::Dataset(format!("table {name}: {e}")))?;
                let reader = datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                    bytes::Bytes::from(bytes),
                )
                .and_then(|b| b.with_batch_size(8192).build())
                .map_err(|e| CleanroomError::Dataset(format!("table {name}: not Parquet: {e}")))?;
                let schema = reader.schema();
                let batches = reader
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| CleanroomError::Dataset(format!("table {name}: {e}")))?;
                Ok::<_, CleanroomError>((schema, batches))
            })
            .await
            .map_err(|e| CleanroomError::Query(e.to_string()))??;
            Arc::new(
                MemTable::try_new(schema, vec![batches])
                    .map_err(|e| CleanroomError::Query(e.to_string()))?,
            )
        }
    };
    ctx.register_table(table.name.as_str(), provider)
        .map_err(|e| CleanroomError::Query(e.to_string()))?;
    Ok(())
}

/// Runs `sql` over `tables` and applies `rules` to its result.
pub async fn run(
    sql: &str,
    tables: Vec<Table>,
    rules: &OutputRules,
) -> Result<Released, CleanroomError> {
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_information_schema(false));
    for table in tables {
        register(&ctx, table).await?;
    }
    let frame = ctx
        .sql(sql)
        .await
        .map_err(|e| CleanroomError::Query(format!("the contract's SQL: {e}")))?;
    let columns: Vec<String> = frame
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let batches = frame
        .collect()
        .await
        .map_err(|e| CleanroomError::Query(format!("running the contract's SQL: {e}")))?;
    rules::apply(rules, &columns, &batches)
}

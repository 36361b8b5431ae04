//! The query, inside the TEE: each dataset decrypted as DataFusion reads it, the contract's SQL
//! run over them, the output rules applied to the result.
//!
//! Every table is a streaming source: each scan opens the dataset again and decrypts only what
//! it reads, so a table used twice in a query is read twice and never held whole. A CSV table is
//! read from its start, chunk by chunk as the parser pulls it; a Parquet table is read at the
//! positions the Parquet reader asks for (its footer first, then each row group's column
//! chunks), each read opening only the chunks it covers.

use std::io::{BufRead, Read};
use std::sync::Arc;

use bytes::Bytes;
use confide_crypto::chunked::ReadAt;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchReader as _};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::parquet::arrow::arrow_reader::{
    ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder,
};
use datafusion::parquet::file::reader::{ChunkReader, Length};
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

/// A dataset's plaintext, opened afresh for each scan and decrypted as it is read.
pub trait Source: Send + Sync {
    /// From its start. The reader lends its buffer ([`BufRead`]), so the CSV parser reads each
    /// decrypted chunk where it was opened.
    fn stream(&self) -> std::io::Result<Box<dyn BufRead + Send>>;

    /// At any position, for formats that seek (Parquet reads its footer first).
    fn at(&self) -> std::io::Result<Arc<dyn ReadAt>>;
}

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
    pub source: Arc<dyn Source>,
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

/// A table's plaintext as the Parquet reader reads it: positioned reads of the source.
struct ParquetInput(Arc<dyn ReadAt>);

impl Length for ParquetInput {
    fn len(&self) -> u64 {
        self.0.size().unwrap_or(0)
    }
}

impl ChunkReader for ParquetInput {
    type T = std::io::BufReader<ReadFrom>;

    fn get_read(&self, start: u64) -> datafusion::parquet::errors::Result<Self::T> {
        let end = self.0.size()?;
        Ok(std::io::BufReader::with_capacity(
            64 * 1024,
            ReadFrom {
                source: self.0.clone(),
                at: start,
                end,
            },
        ))
    }

    fn get_bytes(&self, start: u64, length: usize) -> datafusion::parquet::errors::Result<Bytes> {
        let mut bytes = vec![0u8; length];
        self.0.read_exact_at(&mut bytes, start)?;
        Ok(bytes.into())
    }
}

/// A [`Read`] of a source from one position to its end.
struct ReadFrom {
    source: Arc<dyn ReadAt>,
    at: u64,
    end: u64,
}

impl Read for ReadFrom {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = usize::try_from(self.end.saturating_sub(self.at))
            .unwrap_or(usize::MAX)
            .min(buf.len());
        self.source.read_exact_at(&mut buf[..n], self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

type Batches = Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + Send>;

/// The Parquet reader over a table's plaintext.
fn parquet_batches(
    source: &dyn Source,
) -> Result<ParquetRecordBatchReader, Box<dyn std::error::Error + Send + Sync>> {
    let input = ParquetInput(source.at()?);
    let reader = ParquetRecordBatchReaderBuilder::try_new(input)
        .and_then(|b| b.with_batch_size(BATCH_ROWS).build())
        .map_err(|e| format!("not Parquet: {e}"))?;
    Ok(reader)
}

const BATCH_ROWS: usize = 8192;

/// One table as a DataFusion partition: each execution reads the source afresh.
struct Partition {
    name: String,
    format: Format,
    schema: SchemaRef,
    source: Arc<dyn Source>,
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partition")
            .field("name", &self.name)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl Partition {
    fn batches(&self) -> Result<Batches, Box<dyn std::error::Error + Send + Sync>> {
        Ok(match self.format {
            Format::Csv => Box::new(
                datafusion::arrow::csv::ReaderBuilder::new(self.schema.clone())
                    .with_header(true)
                    .with_batch_size(BATCH_ROWS)
                    .build_buffered(self.source.stream()?)?,
            ),
            Format::Parquet => Box::new(parquet_batches(self.source.as_ref())?),
        })
    }
}

impl PartitionStream for Partition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let mut builder = RecordBatchReceiverStreamBuilder::new(self.schema.clone(), 4);
        let tx = builder.tx();
        let partition = Self {
            name: self.name.clone(),
            format: self.format,
            schema: self.schema.clone(),
            source: self.source.clone(),
        };
        builder.spawn_blocking(move || {
            let external = |what: String| {
                DataFusionError::Execution(format!("table {}: {what}", partition.name))
            };
            for batch in partition.batches().map_err(|e| external(e.to_string()))? {
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
    let schema = match table.format {
        Format::Csv => table.schema.clone(),
        // A Parquet file carries its own schema, in its footer.
        Format::Parquet => {
            let (source, name) = (table.source.clone(), table.name.clone());
            tokio::task::spawn_blocking(move || {
                parquet_batches(source.as_ref())
                    .map(|reader| reader.schema())
                    .map_err(|e| CleanroomError::Dataset(format!("table {name}: {e}")))
            })
            .await
            .map_err(|e| CleanroomError::Query(e.to_string()))??
        }
    };
    let partition = Partition {
        name: table.name.clone(),
        format: table.format,
        schema: schema.clone(),
        source: table.source,
    };
    let provider = StreamingTable::try_new(schema, vec![Arc::new(partition)])
        .map_err(|e| CleanroomError::Query(e.to_string()))?;
    ctx.register_table(table.name.as_str(), Arc::new(provider))
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

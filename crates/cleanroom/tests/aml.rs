//! The AML query on generated data: the findings are exactly the planted patterns, no bank's
//! data alone shows any of them, and the output rules hold (suppress or refuse, columns, rows).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::Arc;

use confide_cleanroom::aml::{self, BANKS, Scale};
use confide_cleanroom::runner::{self, schema_from};
use confide_cleanroom::{CleanroomError, Format, OnViolation, Table};
use confide_crypto::chunked::ReadAt;
use confide_model::Refusal;

/// The tables over `files`, typed as the schema inferred from a whole generated bank file
/// (as `dataset publish` records it).
fn tables(files: &[Vec<u8>; 3]) -> Vec<Table> {
    let (full, _) = generate();
    let columns = runner::infer_csv_schema(&full[0][..], 1000).unwrap();
    let schema = schema_from(&columns).unwrap();
    BANKS
        .iter()
        .zip(files.iter())
        .map(|((_, name), bytes)| Table {
            name: (*name).to_owned(),
            format: Format::Csv,
            schema: schema.clone(),
            sources: vec![Arc::new(bytes.clone())],
            privacy: aml::privacy(),
            history: Default::default(),
        })
        .collect()
}

fn generate() -> ([Vec<u8>; 3], BTreeSet<aml::Finding>) {
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    let planted = aml::generate(Scale::default(), &mut [&mut a, &mut b, &mut c]).unwrap();
    ([a, b, c], planted)
}

fn findings(csv: &[u8]) -> BTreeSet<aml::Finding> {
    String::from_utf8_lossy(csv)
        .lines()
        .skip(1)
        .map(|l| {
            let mut f = l.split(',');
            (f.next().unwrap().to_owned(), f.next().unwrap().to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pooled_query_finds_exactly_what_was_planted() {
    let (files, planted) = generate();
    let out = runner::run(aml::SQL, tables(&files), &aml::output_rules())
        .await
        .unwrap();
    assert_eq!(
        findings(&out.csv),
        planted,
        "{}",
        String::from_utf8_lossy(&out.csv)
    );
    assert_eq!(out.suppressed, 0);
    assert_eq!(out.counted, ["account"]);
    let header = out.csv.split(|b| *b == b'\n').next().unwrap();
    assert_eq!(header, b"pattern,subject,n_accounts,total");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_bank_alone_sees_a_pattern() {
    let (files, _) = generate();
    let header = format!("{}\n", aml::HEADER).into_bytes();
    for bank in 0..3 {
        let mut alone = [header.clone(), header.clone(), header.clone()];
        alone[bank] = files[bank].clone();
        // Also as if the bank's file were all three tables.
        let tripled = [
            files[bank].clone(),
            files[bank].clone(),
            files[bank].clone(),
        ];
        for set in [alone, tripled] {
            let out = runner::run(aml::SQL, tables(&set), &aml::output_rules())
                .await
                .unwrap();
            assert_eq!(
                out.rows,
                0,
                "bank {bank}: {}",
                String::from_utf8_lossy(&out.csv)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_output_rules_hold() {
    let (files, _) = generate();
    // Rows about one transfer each, the SQL claiming three accounts behind each: the engine
    // counts two (the accounts it is from and to), under the minimum of three, and suppresses
    // or refuses them.
    let per_transfer = "SELECT 'x' AS pattern, from_account AS subject, 3 AS n_accounts, \
                        amount AS total FROM bank_a WHERE kind = 'transfer' ORDER BY tx_id LIMIT 50";
    let mut rules = aml::output_rules();
    let out = runner::run(per_transfer, tables(&files), &rules)
        .await
        .unwrap();
    assert_eq!((out.rows, out.suppressed), (0, 50), "{out:?}");
    rules.on_violation = OnViolation::Refuse;
    let err = runner::run(per_transfer, tables(&files), &rules)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            CleanroomError::OutputRefused(Refusal::GroupTooSmall { rows: 50, min: 3, column }) if column == "account"
        ),
        "{err}"
    );
    assert!(err.to_string().contains("fewer than 3"), "{err}");
    // Per account, with every counterparty behind it: the engine counts them all, and lets out
    // exactly the accounts that dealt with at least two others.
    let per_account = "SELECT 'x' AS pattern, from_account AS subject, 0 AS n_accounts, \
                       SUM(amount) AS total FROM bank_a WHERE kind = 'transfer' AND day <= 3 \
                       GROUP BY from_account ORDER BY subject";
    let mut rules = aml::output_rules();
    rules.max_rows = 100_000;
    let out = runner::run(per_account, tables(&files), &rules)
        .await
        .unwrap();
    let counterparties = "SELECT 'x' AS pattern, from_account AS subject, 0 AS n_accounts, \
                          0 AS total FROM bank_a WHERE kind = 'transfer' AND day <= 3 GROUP BY from_account \
                          HAVING COUNT(DISTINCT to_account) >= 2 ORDER BY subject";
    let kept = runner::run(counterparties, tables(&files), &rules)
        .await
        .unwrap();
    let subjects = |csv: &[u8]| {
        findings(csv)
            .into_iter()
            .map(|(_, s)| s)
            .collect::<Vec<_>>()
    };
    assert!(
        out.rows > 0 && out.suppressed > 0,
        "{} {}",
        out.rows,
        out.suppressed
    );
    assert_eq!(subjects(&out.csv), subjects(&kept.csv));
    // A column the contract does not let out.
    let leaky = "SELECT customer AS pattern, from_account AS subject, 3 AS n_accounts, amount AS total, \
                 to_account FROM bank_a LIMIT 1";
    let err = runner::run(leaky, tables(&files), &aml::output_rules())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CleanroomError::OutputRefused(Refusal::ColumnNotAllowed { column, .. }) if column == "to_account"),
        "{err}"
    );
    // Too many rows.
    let mut rules = aml::output_rules();
    rules.max_rows = 5;
    let many = "SELECT 'x' AS pattern, CAST(day AS VARCHAR) AS subject, COUNT(*) AS n_accounts, \
                SUM(amount) AS total FROM bank_a GROUP BY day ORDER BY subject LIMIT 6";
    let err = runner::run(many, tables(&files), &rules).await.unwrap_err();
    assert!(
        matches!(
            err,
            CleanroomError::OutputRefused(Refusal::TooManyRows { rows: 6, max: 5 })
        ),
        "{err}"
    );
    // SQL that does not compile says so.
    let err = runner::run("SELEC nonsense", tables(&files), &aml::output_rules())
        .await
        .unwrap_err();
    assert!(matches!(err, CleanroomError::Query(_)), "{err}");
    // Only a query runs: nothing that writes the pooled rows out, reads another file or
    // changes the session.
    let dir = tempfile::tempdir().unwrap();
    let leak = dir.path().join("leak.csv");
    let other = dir.path().join("other.csv");
    std::fs::write(&other, "a\n1\n").unwrap();
    for sql in [
        format!("COPY (SELECT * FROM bank_a) TO '{}'", leak.display()),
        format!(
            "CREATE EXTERNAL TABLE other STORED AS CSV LOCATION '{}'",
            other.display()
        ),
        "CREATE TABLE copy AS SELECT * FROM bank_a".to_owned(),
        "INSERT INTO bank_a SELECT * FROM bank_b".to_owned(),
        "SET datafusion.execution.batch_size = 1".to_owned(),
    ] {
        let err = runner::run(&sql, tables(&files), &aml::output_rules())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, CleanroomError::Query(m) if m.contains("not supported") || m.contains("not allowed")),
            "{sql}: {err}"
        );
    }
    assert!(!leak.exists(), "a contract's SQL wrote the rows to disk");
}

/// The same query over the banks' data as Parquet files, in memory and encrypted in a blob
/// store, finds the same patterns. The files have many row groups, so the reader seeks (the
/// footer first, then each row group's column chunks) across the encrypted chunks.
/// `describe_parquet` reads the schema and row count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_tables_give_the_same_findings() {
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::file::properties::WriterProperties;
    let (files, planted) = generate();
    let csv_tables = tables(&files);
    let dir = tempfile::tempdir().unwrap();
    let store = confide_cleanroom::BlobStore::open(dir.path().join("blobs").to_str().unwrap(), &[])
        .unwrap();
    let key = confide_crypto::hpke::HpkeSecretKey::generate().unwrap();
    let (mut in_memory, mut encrypted) = (Vec::new(), Vec::new());
    for (t, bytes) in csv_tables.iter().zip(files.iter()) {
        let reader = datafusion::arrow::csv::ReaderBuilder::new(t.schema.clone())
            .with_header(true)
            .build(&bytes[..])
            .unwrap();
        let mut out = Vec::new();
        let small_groups = WriterProperties::builder()
            .set_max_row_group_row_count(Some(500))
            .build();
        let mut writer =
            ArrowWriter::try_new(&mut out, t.schema.clone(), Some(small_groups)).unwrap();
        let mut rows = 0;
        for batch in reader {
            let batch = batch.unwrap();
            rows += batch.num_rows();
            writer.write(&batch).unwrap();
        }
        writer.close().unwrap();
        let path = dir.path().join(format!("{}.parquet", t.name));
        std::fs::write(&path, &out).unwrap();
        let (columns, counted) = runner::describe_parquet(&path).unwrap();
        assert_eq!(counted as usize, rows);
        assert_eq!(columns.len(), 7);
        let groups =
            datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                std::fs::File::open(&path).unwrap(),
            )
            .unwrap()
            .metadata()
            .num_row_groups();
        assert!(groups > 2, "{} has {groups} row groups", t.name);

        let sealed = confide_crypto::envelope::encrypt_bytes(&[key.public_key()], &out).unwrap();
        let location = format!("datasets/{}.cfd", t.name);
        let digest = hex::encode(confide_crypto::digest::sha256(&sealed));
        store.put(&location, sealed).await.unwrap();
        let verified = store.verified(&location, &digest).await.unwrap();
        let table = |source: Arc<dyn ReadAt>| Table {
            name: t.name.clone(),
            format: Format::Parquet,
            schema: t.schema.clone(),
            sources: vec![source],
            privacy: aml::privacy(),
            history: Default::default(),
        };
        in_memory.push(table(Arc::new(out)));
        encrypted.push(table(verified.open(&key).unwrap()));
    }
    for tables in [in_memory, encrypted] {
        let out = runner::run(aml::SQL, tables, &aml::output_rules())
            .await
            .unwrap();
        assert_eq!(findings(&out.csv), planted);
    }
    // A file that is not Parquet is named as such.
    let mut broken = tables(&files);
    broken[0].format = Format::Parquet;
    let err = runner::run(aml::SQL, broken, &aml::output_rules())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not Parquet"), "{err}");
}

/// Encrypted tables give the same findings; a changed chunk in the middle of one (past the
/// checks made when it is opened) fails the query, naming the chunk, and nothing is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_tables_give_the_same_findings_and_a_changed_chunk_fails_the_query() {
    let (files, planted) = generate();
    let key = confide_crypto::hpke::HpkeSecretKey::generate().unwrap();
    let sealed: Vec<Vec<u8>> = files
        .iter()
        .map(|f| confide_crypto::envelope::encrypt_bytes(&[key.public_key()], f).unwrap())
        .collect();
    let encrypted = |sealed: &[Vec<u8>]| {
        let mut tables = tables(&files);
        for (table, file) in tables.iter_mut().zip(sealed) {
            table.sources = vec![Arc::new(
                confide_crypto::envelope::open_at(&key, file.clone()).unwrap(),
            )];
        }
        tables
    };
    let out = runner::run(aml::SQL, encrypted(&sealed), &aml::output_rules())
        .await
        .unwrap();
    assert_eq!(findings(&out.csv), planted);

    let mut changed = sealed.clone();
    let middle = changed[1].len() / 2;
    changed[1][middle] ^= 0x01;
    let err = runner::run(aml::SQL, encrypted(&changed), &aml::output_rules())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not authenticate"), "{err}");
}

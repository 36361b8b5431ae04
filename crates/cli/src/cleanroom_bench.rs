//! `confide bench cleanroom`: the AML query over generated transactions, run confidentially
//! (each bank's file encrypted in the confide format, decrypted while DataFusion streams it,
//! output rules applied) against plain DataFusion on the plaintext files, in one run, with the
//! peak memory of each. The files are CSV, or Parquet with `--format parquet`.

use std::io::{BufWriter, Write as _};
use std::time::Instant;

use anyhow::Context;
use confide_cleanroom::aml::{self, BANKS, Scale};
use confide_cleanroom::{Format, Table, runner};
use confide_crypto::hpke::HpkeSecretKey;
use datafusion::prelude::{CsvReadOptions, ParquetReadOptions, SessionContext};

#[derive(Debug, clap::Args)]
pub(crate) struct CleanroomBenchArgs {
    /// Transactions in all (split across the three banks).
    #[arg(long, default_value_t = 10_000_000)]
    transactions: u64,
    /// Rounds, each timing both (the medians are reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// The datasets' format: csv or parquet.
    #[arg(long, default_value = "csv", value_parser = ["csv", "parquet"])]
    format: String,
}

/// Resets the process's peak resident memory (Linux: `clear_refs` 5), so the next reading is
/// the peak of what follows.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The peak resident memory since the last reset, in MiB.
fn peak_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU time used by the whole process so far (user and system, all threads), in seconds, from
/// `/proc/self/stat` (in clock ticks of 1/100 s, Linux's USER_HZ).
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // The fields after the command name, which is in parentheses: utime is the 12th.
            let fields: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
            let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
            Some((ticks(11)? + ticks(12)?) / 100.0)
        })
        .unwrap_or(0.0)
}

/// The files' total size in MiB.
fn mib(files: &[std::path::PathBuf]) -> f64 {
    let bytes: u64 = files
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    bytes as f64 / 1048576.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

pub(crate) fn bench(args: &CleanroomBenchArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let per_bank = args.transactions / 3;
    let plain: Vec<_> = BANKS
        .iter()
        .map(|(_, t)| dir.path().join(format!("{t}.csv")))
        .collect();
    let t = Instant::now();
    let planted = {
        let mut files = plain
            .iter()
            .map(|p| std::fs::File::create(p).map(|f| BufWriter::with_capacity(1 << 20, f)))
            .collect::<Result<Vec<_>, _>>()?;
        let [a, b, c] = &mut files[..] else {
            anyhow::bail!("three banks")
        };
        let planted = aml::generate(
            Scale {
                transactions_per_bank: per_bank,
                customers: 300_000,
                ..Scale::default()
            },
            &mut [a, b, c],
        )?;
        for f in &mut files {
            f.flush()?;
        }
        planted
    };
    println!(
        "generated {} transactions ({:.0} MiB of CSV, {} planted patterns) in {:.1} s",
        per_bank * 3,
        mib(&plain),
        planted.len(),
        t.elapsed().as_secs_f64()
    );
    let columns = runner::infer_csv_schema(std::fs::File::open(&plain[0])?, 10_000)?;
    let schema = runner::schema_from(&columns)?;
    let format = Format::from_name(&args.format).context("--format: csv or parquet")?;
    let plain = match format {
        Format::Csv => plain,
        Format::Parquet => {
            let t = Instant::now();
            let converted = plain
                .iter()
                .map(|csv| to_parquet(csv, &schema))
                .collect::<anyhow::Result<Vec<_>>>()?;
            println!(
                "converted to {:.0} MiB of Parquet in {:.1} s",
                mib(&converted),
                t.elapsed().as_secs_f64()
            );
            converted
        }
    };

    // Each bank's file encrypted to its own dataset key and put in a blob store (a local
    // directory), as `dataset publish` does; read back, in the timed part, as `confide run`
    // reads it (the digest checked once, then decrypted chunk by chunk at each scan).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let store = confide_cleanroom::BlobStore::open(
        dir.path()
            .join("blobs")
            .to_str()
            .context("the temporary directory is not UTF-8")?,
        &[],
    )?;
    let mut sealed_tables = Vec::new();
    for (i, (_, name)) in BANKS.iter().enumerate() {
        let key = HpkeSecretKey::generate()?;
        let sealed = dir.path().join(format!("{name}.cfd"));
        confide_crypto::envelope::encrypt(
            &[key.public_key()],
            std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&plain[i])?),
            BufWriter::with_capacity(1 << 20, std::fs::File::create(&sealed)?),
        )?;
        let digest = crate::cleanroom::digest_file(&sealed)?;
        let location = format!("datasets/{name}.cfd");
        runtime.block_on(store.put_reader(
            &location,
            std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&sealed)?),
        ))?;
        std::fs::remove_file(&sealed)?;
        sealed_tables.push((*name, location, digest, key));
    }
    let tables = || async {
        let pairs: Vec<(&str, &str)> = sealed_tables
            .iter()
            .map(|(_, l, d, _)| (l.as_str(), d.as_str()))
            .collect();
        let verified = store.verified_all(&pairs).await?;
        sealed_tables
            .iter()
            .zip(verified)
            .map(|((name, _, _, key), ciphertext)| {
                anyhow::Ok(Table {
                    name: (*name).to_owned(),
                    format,
                    schema: schema.clone(),
                    source: ciphertext.open(key)?,
                    privacy: aml::privacy(),
                })
            })
            .collect::<Result<Vec<_>, _>>()
    };

    let rules = aml::output_rules();
    let plain_run = || {
        runtime.block_on(async {
            let ctx = SessionContext::new();
            for (i, (_, name)) in BANKS.iter().enumerate() {
                let path = plain[i].to_str().unwrap_or_default();
                match format {
                    Format::Csv => {
                        let options = CsvReadOptions::new().schema(&schema).has_header(true);
                        ctx.register_csv(*name, path, options).await?;
                    }
                    Format::Parquet => {
                        ctx.register_parquet(*name, path, ParquetReadOptions::default())
                            .await?;
                    }
                }
            }
            let batches = ctx.sql(aml::SQL).await?.collect().await?;
            anyhow::Ok(batches.iter().map(|b| b.num_rows()).sum::<usize>())
        })
    };
    let confidential_run = || {
        runtime.block_on(async {
            let released = runner::run(aml::SQL, tables().await?, &rules).await?;
            anyhow::Ok(released.rows as usize)
        })
    };
    // Each round times both, in alternating order, and its ratio pairs measurements taken
    // seconds apart: a slow spell on this shared machine then weighs on both sides of a ratio
    // instead of on one side of a median.
    let rounds = args.runs.max(1);
    let (mut ratios, mut cpu_ratios, mut plain_s, mut conf_s, mut plain_mem, mut conf_mem) =
        (vec![], vec![], vec![], vec![], 0f64, 0f64);
    println!("         plain DataFusion      confidential      confidential / plain");
    println!("round       wall      CPU       wall      CPU       wall      CPU");
    for round in 0..rounds {
        let mut timed = |confidential: bool| {
            reset_peak();
            let (t, cpu) = (Instant::now(), cpu_seconds());
            let rows = if confidential {
                confidential_run()?
            } else {
                plain_run()?
            };
            let seconds = t.elapsed().as_secs_f64();
            let cpu = cpu_seconds() - cpu;
            let (mem, side) = if confidential {
                (&mut conf_mem, "the confidential run")
            } else {
                (&mut plain_mem, "plain DataFusion")
            };
            *mem = mem.max(peak_mib());
            if rows != planted.len() {
                anyhow::bail!(
                    "round {round}: {side} found {rows} rows; {} were planted",
                    planted.len()
                );
            }
            anyhow::Ok((seconds, cpu))
        };
        let ((p, p_cpu), (c, c_cpu)) = if round % 2 == 0 {
            let p = timed(false)?;
            (p, timed(true)?)
        } else {
            let c = timed(true)?;
            (timed(false)?, c)
        };
        println!(
            "{:>5}   {p:>8.2} s {p_cpu:>6.1} s   {c:>8.2} s {c_cpu:>6.1} s   {:>8.3} x {:>8.3} x",
            round + 1,
            c / p,
            c_cpu / p_cpu
        );
        ratios.push(c / p);
        cpu_ratios.push(c_cpu / p_cpu);
        plain_s.push(p);
        conf_s.push(c);
    }
    println!("the AML query (3 tables, joins and aggregates), median of {rounds} rounds:");
    println!(
        "  plain DataFusion on plaintext {:<9} {:>8.2} s   peak RSS {plain_mem:>7.0} MiB",
        format.as_str(),
        median(plain_s)
    );
    println!(
        "  confidential (decrypt while streaming)  {:>8.2} s   peak RSS {conf_mem:>7.0} MiB",
        median(conf_s)
    );
    println!(
        "  confidential / plain, round by round    {:>8.3} x   (target: at most 1.15 x)",
        median(ratios)
    );
    println!(
        "  the same in CPU time (all threads)      {:>8.3} x",
        median(cpu_ratios)
    );
    Ok(())
}

/// Rewrites the CSV file `csv` as Parquet beside it (deleting the CSV); returns its path.
fn to_parquet(
    csv: &std::path::Path,
    schema: &datafusion::arrow::datatypes::SchemaRef,
) -> anyhow::Result<std::path::PathBuf> {
    let path = csv.with_extension("parquet");
    let reader = datafusion::arrow::csv::ReaderBuilder::new(schema.clone())
        .with_header(true)
        .build(std::io::BufReader::with_capacity(
            1 << 20,
            std::fs::File::open(csv)?,
        ))?;
    let mut writer = datafusion::parquet::arrow::ArrowWriter::try_new(
        BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?),
        schema.clone(),
        None,
    )?;
    for batch in reader {
        writer.write(&batch?)?;
    }
    writer.close()?;
    std::fs::remove_file(csv)?;
    Ok(path)
}

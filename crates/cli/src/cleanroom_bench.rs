//! `confide bench cleanroom`: a clean-room contract over generated data, run confidentially
//! (each file encrypted in the confide format, decrypted while DataFusion streams it, the
//! engine's privacy guard and output rules applied) against plain DataFusion on the plaintext
//! files, in one run, with the peak memory of each. Two scenarios: the AML query over three
//! banks' transactions (`--scenario aml`), and the smart building's occupancy over badge swipes
//! and HR's register, with differential privacy (`--scenario occupancy`), whose noise is then
//! also timed on its own. The files are CSV, or Parquet with `--format parquet`.

use std::io::{BufWriter, Write as _};
use std::time::Instant;

use anyhow::Context;
use confide_cleanroom::aml::{self, BANKS, Scale};
use confide_cleanroom::{Format, OutputRules, Privacy, Table, iot, runner};
use confide_crypto::hpke::HpkeSecretKey;
use datafusion::prelude::{CsvReadOptions, ParquetReadOptions, SessionContext};

#[derive(Debug, clap::Args)]
pub(crate) struct CleanroomBenchArgs {
    /// aml (three banks' transactions) or occupancy (badge swipes and HR, with noise).
    #[arg(long, default_value = "aml", value_parser = ["aml", "occupancy"])]
    scenario: String,
    /// AML: transactions in all (split across the three banks).
    #[arg(long, default_value_t = 10_000_000)]
    transactions: u64,
    /// Occupancy: badge swipes in all (about; whole days of 20,000 employees).
    #[arg(long, default_value_t = 10_000_000)]
    swipes: u64,
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

/// What a scenario runs: its tables (name, plaintext CSV, declaration), its SQL and rules.
struct Scenario {
    title: &'static str,
    tables: Vec<(&'static str, std::path::PathBuf, Privacy)>,
    sql: &'static str,
    rules: OutputRules,
    target: f64,
}

fn aml_scenario(dir: &std::path::Path, transactions: u64) -> anyhow::Result<Scenario> {
    let per_bank = transactions / 3;
    let plain: Vec<_> = BANKS
        .iter()
        .map(|(_, t)| dir.join(format!("{t}.csv")))
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
    Ok(Scenario {
        title: "the AML query (3 tables, joins and aggregates, list rule)",
        tables: BANKS
            .iter()
            .zip(plain)
            .map(|((_, t), p)| (*t, p, aml::privacy()))
            .collect(),
        sql: aml::SQL,
        rules: aml::output_rules(),
        target: 1.15,
    })
}

fn occupancy_scenario(dir: &std::path::Path, swipes: u64) -> anyhow::Result<Scenario> {
    // About 3.6 swipes an employee a day (away one day in ten, two to six swipes).
    let employees = 20_000u32;
    let days = u32::try_from(swipes.div_ceil(u64::from(employees) * 36 / 10))
        .unwrap_or(u32::MAX)
        .max(1);
    let (swipes_csv, hr_csv) = (dir.join("swipes.csv"), dir.join("hr.csv"));
    let t = Instant::now();
    {
        let mut sw = BufWriter::with_capacity(1 << 20, std::fs::File::create(&swipes_csv)?);
        let mut hr = BufWriter::with_capacity(1 << 20, std::fs::File::create(&hr_csv)?);
        iot::generate(
            iot::Scale {
                employees,
                days,
                rooms_per_floor: 0,
                ..iot::Scale::default()
            },
            iot::Outputs {
                sensors: &mut std::io::sink(),
                swipes: &mut sw,
                cctv: &mut std::io::sink(),
                hr: &mut hr,
            },
        )?;
        sw.flush()?;
        hr.flush()?;
    }
    let rows = std::io::BufRead::lines(std::io::BufReader::new(std::fs::File::open(&swipes_csv)?))
        .count()
        .saturating_sub(1);
    println!(
        "generated {rows} badge swipes of {employees} employees over {days} days ({:.0} MiB of CSV) \
         in {:.1} s",
        mib(&[swipes_csv.clone(), hr_csv.clone()]),
        t.elapsed().as_secs_f64()
    );
    Ok(Scenario {
        title: "the occupancy query (swipes ⋈ HR, aggregation rule, noise)",
        tables: vec![
            ("swipes", swipes_csv, iot::swipes_privacy()),
            ("hr", hr_csv, iot::hr_privacy()),
        ],
        sql: iot::OCCUPANCY_SQL,
        rules: iot::occupancy_rules(days),
        target: 1.2,
    })
}

pub(crate) fn bench(args: &CleanroomBenchArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let scenario = match args.scenario.as_str() {
        "occupancy" => occupancy_scenario(dir.path(), args.swipes)?,
        _ => aml_scenario(dir.path(), args.transactions)?,
    };
    let format = Format::from_name(&args.format).context("--format: csv or parquet")?;
    let mut schemas = Vec::new();
    let mut plain = Vec::new();
    for (_, csv, _) in &scenario.tables {
        let columns = runner::infer_csv_schema(std::fs::File::open(csv)?, 10_000)?;
        let schema = runner::schema_from(&columns)?;
        plain.push(match format {
            Format::Csv => csv.clone(),
            Format::Parquet => to_parquet(csv, &schema)?,
        });
        schemas.push(schema);
    }
    if format == Format::Parquet {
        println!("converted to {:.0} MiB of Parquet", mib(&plain));
    }
    // Each table's file encrypted to its own dataset key and put in a blob store (a local
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
    for (i, (name, _, _)) in scenario.tables.iter().enumerate() {
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
            .zip(scenario.tables.iter().zip(&schemas))
            .map(
                |(((name, _, _, key), ciphertext), ((_, _, privacy), schema))| {
                    anyhow::Ok(Table {
                        name: (*name).to_owned(),
                        format,
                        schema: schema.clone(),
                        sources: vec![ciphertext.open(key)?],
                        privacy: privacy.clone(),
                        history: Default::default(),
                    })
                },
            )
            .collect::<Result<Vec<_>, _>>()
    };

    let rules = &scenario.rules;
    let plain_run = || {
        runtime.block_on(async {
            let ctx = SessionContext::new();
            for (i, (name, _, _)) in scenario.tables.iter().enumerate() {
                let path = plain[i].to_str().unwrap_or_default();
                match format {
                    Format::Csv => {
                        let options = CsvReadOptions::new().schema(&schemas[i]).has_header(true);
                        ctx.register_csv(*name, path, options).await?;
                    }
                    Format::Parquet => {
                        ctx.register_parquet(*name, path, ParquetReadOptions::default())
                            .await?;
                    }
                }
            }
            let batches = ctx.sql(scenario.sql).await?.collect().await?;
            anyhow::Ok(batches.iter().map(|b| b.num_rows()).sum::<usize>())
        })
    };
    // The rows released and suppressed: together, the plain query's rows.
    let confidential_run = |rules: &OutputRules| {
        runtime.block_on(async {
            let released = runner::run(scenario.sql, tables().await?, rules).await?;
            anyhow::Ok((released.rows + released.suppressed) as usize)
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
                confidential_run(rules)?
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
            anyhow::Ok((seconds, cpu, rows, side))
        };
        let ((p, p_cpu, p_rows, _), (c, c_cpu, c_rows, side)) = if round % 2 == 0 {
            let p = timed(false)?;
            (p, timed(true)?)
        } else {
            let c = timed(true)?;
            (timed(false)?, c)
        };
        if p_rows != c_rows {
            anyhow::bail!(
                "round {}: {side} released and suppressed {c_rows} rows; plain DataFusion gave \
                 {p_rows}",
                round + 1
            );
        }
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
    println!("{}, median of {rounds} rounds:", scenario.title);
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
        "  confidential / plain, round by round    {:>8.3} x   (target: at most {} x)",
        median(ratios),
        scenario.target
    );
    println!(
        "  the same in CPU time (all threads)      {:>8.3} x",
        median(cpu_ratios)
    );
    // The noise on its own: the same confidential run with and without it, round by round.
    if rules.noise.is_some() {
        let quiet = OutputRules {
            noise: None,
            ..rules.clone()
        };
        let mut dp = Vec::new();
        for round in 0..rounds {
            let time = |r: &OutputRules| {
                let t = Instant::now();
                confidential_run(r).map(|_| t.elapsed().as_secs_f64())
            };
            let (with, without) = if round % 2 == 0 {
                let w = time(rules)?;
                (w, time(&quiet)?)
            } else {
                let q = time(&quiet)?;
                (time(rules)?, q)
            };
            dp.push(with / without);
        }
        println!(
            "  the DP step on its own (bounding, clamping, noise): with / without noise {:>8.3} x",
            median(dp)
        );
    }
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

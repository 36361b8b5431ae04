//! `confide demo aml`: the whole clean-room story on one machine. An embedded server; three banks
//! and an analyst; synthetic transactions per bank with laundering patterns planted across
//! banks; each bank publishes its dataset; the analyst proposes a contract whose SQL finds the
//! patterns and every bank approves it; the contract runs (simulated TEE: this machine has none);
//! the analyst decrypts the result; the ledger and a receipt are verified; the findings are
//! printed next to what was planted, with the audit trail. Exit status 0 only if the findings
//! are exactly the planted patterns.

use std::collections::BTreeSet;
use std::io::Write as _;

use anyhow::{Context, bail};
use confide_cleanroom::aml::{self, BANKS, Scale};
use confide_identity::Home;
use confide_model::{Action, GovBody};

use crate::cleanroom::{
    approve_contract, build_contract, fetch_result, propose_and_vote, propose_contract,
    run_contract,
};
use crate::serve::{Client, signed};

#[derive(Debug, clap::Args)]
pub(crate) struct AmlArgs {
    /// Background transactions per bank (the planted ones come on top).
    #[arg(long, default_value_t = 20_000)]
    transactions: u64,
    /// Print the steps' details.
    #[arg(long)]
    verbose: bool,
}

fn step(text: &str) {
    println!("\n== {text}");
}

/// A demo's consortium: an embedded server, its members (the first founded it and admitted
/// the others), their blob store and the ledger key they pin.
struct Consortium {
    server: crate::embedded::Embedded,
    root: std::path::PathBuf,
    client: Client,
    store: crate::cleanroom::Store,
    homes: Vec<Home>,
    ledger_key: confide_crypto::signing::VerifyingKey,
}

impl Consortium {
    fn start(names: &[&str]) -> anyhow::Result<Self> {
        let server = crate::embedded::Embedded::start()?;
        let root = server.dir().to_owned();
        let client = Client::new(&server.url);
        let store = crate::cleanroom::Store::open(
            root.join("blobs")
                .to_str()
                .context("the demo's directory is not UTF-8")?,
        )?;
        step(&format!(
            "an embedded confide server (development profile: simulated TEEs allowed) at {}",
            server.url
        ));
        let homes: Vec<Home> = names.iter().map(|n| Home::new(root.join(n))).collect();
        for (home, name) in homes.iter().zip(names) {
            home.init(name)
                .with_context(|| format!("creating {name}"))?;
        }
        client.post(
            "/gov/found",
            &signed(
                &homes[0],
                &GovBody::Found {
                    member: homes[0].load_public()?,
                    constitution: None,
                },
            )?,
        )?;
        let adds: Vec<Action> = homes[1..]
            .iter()
            .map(|h| {
                Ok(Action::AddMember {
                    member: h.load_public()?,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        propose_and_vote(&client, &homes[0], adds)?;
        step(&format!(
            "{} founded the consortium and admitted {}",
            names[0],
            names[1..].join(", ")
        ));
        // The consortium's ledger key, as every member and the workload pin it.
        let ledger_key = crate::ledger::read_key(&root.join("data/ledger/ledger.pub"))?;
        Ok(Self {
            server,
            root,
            client,
            store,
            homes,
            ledger_key,
        })
    }

    /// Publishes `file` as member `who`'s dataset `name`, declared `privacy`: its id.
    fn publish(
        &self,
        who: usize,
        file: &std::path::Path,
        name: &str,
        privacy: confide_model::Privacy,
    ) -> anyhow::Result<confide_model::DatasetRecord> {
        let publication = crate::cleanroom::Publication {
            file,
            name,
            format: None,
            privacy,
        };
        crate::cleanroom::publish(
            &self.client,
            &self.homes[who],
            &self.ledger_key,
            publication,
            &self.store,
        )
    }

    /// Runs contract `id` in a simulated TEE.
    fn run(&self, id: &confide_model::ContractId) -> anyhow::Result<confide_workload::RunOutcome> {
        run_contract(
            &self.client,
            &self.ledger_key,
            id,
            confide_workload::Tee::Simulated(confide_attest::sim::default_measurement()),
            &self.store,
        )
    }

    /// The trail of the ledger, printed (ballots only with `verbose`), and the receipt of
    /// entry `seq` verified offline after the server stops, with the whole ledger.
    fn audit(mut self, seq: u64, verbose: bool) -> anyhow::Result<()> {
        let trail: confide_model::EntryPage = self.client.get_as("/ledger/entries")?;
        let receipt = self
            .client
            .get_bytes(&format!("/ledger/entries/{seq}/receipt"))?;
        let entry_bytes = self.client.get_bytes(&format!("/ledger/entries/{seq}"))?;
        self.server.stop();
        let ledger_dir = self.root.join("data/ledger");
        let key = crate::ledger::read_key(&ledger_dir.join("ledger.pub"))?;
        let v = confide_ledger::receipt::verify_receipt(&receipt, &entry_bytes, &key)
            .context("the run record's receipt does not verify")?;
        step("the audit trail (every entry is on the ledger, checkpointed and signed):");
        for e in &trail.entries {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(&e.entry)
                .with_context(|| format!("entry {} is not base64", e.seq))?;
            let what = crate::serve::describe_entry(&bytes);
            if verbose || !what.starts_with("ballot") {
                println!("   {:>4}  {what}", e.seq);
            }
        }
        println!(
            "   receipt for the run record (entry {}) verified offline against root {}",
            v.index,
            hex::encode(v.root)
        );
        crate::ledger::verify_dir(&ledger_dir, None, None, false)?;
        Ok(())
    }
}

fn sim_measurement() -> String {
    format!(
        "sim:{}",
        hex::encode(confide_attest::sim::default_measurement())
    )
}

pub(crate) fn aml(args: &AmlArgs) -> anyhow::Result<()> {
    let names = ["bank-a", "bank-b", "bank-c", "analyst"];
    let consortium = Consortium::start(&names)?;
    let (root, client, store, homes, ledger_key) = (
        consortium.root.clone(),
        &consortium.client,
        &consortium.store,
        &consortium.homes,
        consortium.ledger_key,
    );

    // Data.
    let scale = Scale {
        transactions_per_bank: args.transactions,
        ..Scale::default()
    };
    let paths: Vec<_> = BANKS
        .iter()
        .map(|(_, t)| root.join(format!("{t}.csv")))
        .collect();
    let planted = {
        let mut files = paths
            .iter()
            .map(|p| std::fs::File::create(p).map(std::io::BufWriter::new))
            .collect::<Result<Vec<_>, _>>()?;
        let [a, b, c] = &mut files[..] else {
            bail!("three banks")
        };
        let planted = aml::generate(scale, &mut [a, b, c])?;
        for f in &mut files {
            f.flush()?;
        }
        planted
    };
    step(&format!(
        "each bank generated its own transactions ({} each, plus {} planted laundering patterns \
         spread across banks)",
        scale.transactions_per_bank,
        planted.len()
    ));

    let mut datasets = Vec::new();
    for (i, (_, table)) in BANKS.iter().enumerate() {
        let name = format!("{}-transactions", names[i]);
        let record = consortium.publish(i, &paths[i], &name, aml::privacy())?;
        let id = record.id;
        println!(
            "   {} published {id}: {} rows, encrypted; key deposited with the broker",
            names[i], record.rows
        );
        datasets.push(format!("{table}={id}"));
    }

    // The contract.
    let analyst_fp = homes[3].load_public()?.fingerprint().to_hex();
    let rules = aml::output_rules();
    let contract = build_contract(
        &datasets,
        aml::SQL.to_owned(),
        &[sim_measurement()],
        std::slice::from_ref(&analyst_fp),
        rules.columns.clone(),
        aml::RULE,
        None,
        rules.max_rows,
        false,
    )?;
    let (id, state) = propose_contract(client, &homes[3], &contract)?;
    step(&format!("the analyst proposed contract {id} ({state})"));
    for (home, name) in homes[..3].iter().zip(names) {
        let (state, _) = approve_contract(client, home, &id)?;
        println!("   {name} approved: the contract is {state}");
    }

    // The run.
    let out = consortium.run(&id)?;
    step(&format!(
        "the workload ran the contract: {} finding(s), {} row(s) suppressed, run {} on the \
         ledger (entry {}){}",
        out.rows,
        out.suppressed,
        out.run,
        out.audit_seq,
        if out.simulated {
            " — SIMULATED TEE"
        } else {
            ""
        }
    ));
    let (csv, simulated) = fetch_result(client, &homes[3], &ledger_key, &out.run, store)?;
    let text = String::from_utf8_lossy(&csv).into_owned();
    let found: BTreeSet<aml::Finding> = text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split(',');
            Some((f.next()?.to_owned(), f.next()?.to_owned()))
        })
        .collect();
    step(&format!(
        "the analyst decrypted the result{}:",
        if simulated {
            " (computed in a SIMULATED TEE)"
        } else {
            ""
        }
    ));
    println!(
        "   {:<16} {:<10} {:>10} {:>14}   planted?",
        "pattern", "subject", "n_accounts", "total"
    );
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if let [pattern, subject, n, total] = f[..] {
            let planted_too = planted.contains(&(pattern.to_owned(), subject.to_owned()));
            println!(
                "   {pattern:<16} {subject:<10} {n:>10} {total:>14}   {}",
                if planted_too { "yes" } else { "NO" }
            );
        }
    }
    for missed in planted.difference(&found) {
        println!("   MISSED: {} {}", missed.0, missed.1);
    }

    consortium.audit(out.audit_seq, args.verbose)?;
    if found == planted {
        step(&format!(
            "every planted pattern was found, and nothing else ({} of {})",
            found.len(),
            planted.len()
        ));
        Ok(())
    } else {
        bail!(
            "the findings differ from what was planted: found {} of {}",
            found.intersection(&planted).count(),
            planted.len()
        )
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct IotArgs {
    /// Employees (one badge each).
    #[arg(long, default_value_t = 2_000)]
    employees: u32,
    /// Print the steps' details.
    #[arg(long)]
    verbose: bool,
}

/// A released result's rows (CSV with a header), each as its fields.
fn rows(csv: &[u8]) -> Vec<Vec<String>> {
    String::from_utf8_lossy(csv)
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect()
}

/// `confide demo iot`: the smart building, over two days. The facility team, the security
/// contractor, the video analytics vendor and HR publish their first day's data; occupancy per
/// floor, department and hour runs under the aggregation rule (five badges at least) with
/// differential privacy over the latest day's swipes and HR's register, energy and motion from
/// the sensors and cameras, and an exact count of visitors per host department from the
/// security contractor's visitor log; each appends its second day and the contracts run again;
/// the visitors' group that grew by one is suppressed (its difference would tell that visit);
/// the budget stops the run that would average the noise away.
pub(crate) fn iot(args: &IotArgs) -> anyhow::Result<()> {
    use confide_cleanroom::iot;

    let names = ["facility", "security", "video", "hr"];
    let consortium = Consortium::start(&names)?;
    let (root, client, homes) = (
        consortium.root.clone(),
        &consortium.client,
        &consortium.homes,
    );
    let scale = iot::Scale {
        employees: args.employees.max(20),
        days: 2,
        ..iot::Scale::default()
    };
    let path = |t: &str| root.join(format!("{t}.csv"));
    let sensor_rows = {
        let mut files = ["sensors", "swipes", "cctv", "hr"]
            .map(|t| std::fs::File::create(path(t)).map(std::io::BufWriter::new));
        let [Ok(sensors), Ok(swipes), Ok(cctv), Ok(hr)] = &mut files else {
            bail!("creating the demo's files in {}", root.display());
        };
        let rows = iot::generate(
            scale,
            iot::Outputs {
                sensors,
                swipes,
                cctv,
                hr,
            },
        )?;
        for f in files.iter_mut().flatten() {
            f.flush()?;
        }
        rows
    };
    // Each day's batch of the sensors, swipes and cameras, and of the security contractor's
    // visitor log (on the second day, one visitor for the first department, six for each of
    // the others); HR's register, whole.
    for t in ["sensors", "swipes", "cctv"] {
        split_days(&path(t), scale.days, |day| path(&format!("{t}-{day}")))?;
    }
    std::fs::copy(path("hr"), path("hr-0"))?;
    std::fs::write(path("visitors-0"), iot::visitors(0, 10, 8))?;
    std::fs::write(path("visitors-1"), iot::visitors(1, 1, 6))?;
    step(&format!(
        "the building's data over {} days: {sensor_rows} sensor readings ({} floors, {} rooms \
         each), the badge swipes of {} employees, CCTV motion per floor and minute, HR's \
         register, the visitor log",
        scale.days, scale.floors, scale.rooms_per_floor, scale.employees
    ));

    let published = [
        (0, "sensors", iot::sensors_privacy()),
        (1, "swipes", iot::swipes_privacy()),
        (2, "cctv", iot::cctv_privacy()),
        (3, "hr", iot::hr_privacy()),
        (1, "visitors", iot::visitors_privacy()),
    ]
    .into_iter()
    .map(|(who, table, privacy)| {
        let record = consortium.publish(who, &path(&format!("{table}-0")), table, privacy)?;
        let budget = record
            .privacy
            .as_ref()
            .and_then(|p| p.budget)
            .map(|b| format!("; budget ε {} a day", b.epsilon))
            .unwrap_or_default();
        println!(
            "   {} published {table} (day 0) as {}: {} rows{budget}",
            names[who], record.id, record.rows
        );
        Ok((table, record.id))
    })
    .collect::<anyhow::Result<std::collections::BTreeMap<_, _>>>()?;
    let table = |t: &str| format!("{t}={}", published[t]);

    // The contracts, each approved by the owners of its data. The day's batch of the swipes,
    // sensors and cameras (the latest version); all of HR's register and of the visitor log.
    let facility = homes[0].load_public()?.fingerprint().to_hex();
    let propose = |tables: &[&str], sql: &str, rules: confide_model::OutputRules| {
        let names: Vec<String> = tables.iter().map(|t| table(t)).collect();
        let rule = rules.rule.context("a demo contract has a rule")?;
        let mut contract = build_contract(
            &names,
            sql.to_owned(),
            &[sim_measurement()],
            std::slice::from_ref(&facility),
            rules.columns.clone(),
            rule,
            rules.noise,
            rules.max_rows,
            false,
        )?;
        for t in tables.iter().filter(|t| !matches!(**t, "hr" | "visitors")) {
            contract
                .versions
                .insert((*t).to_owned(), confide_model::Versions::Latest);
        }
        let (id, state) = propose_contract(client, &homes[0], &contract)?;
        anyhow::Ok((id, state))
    };
    let occupancy = propose(
        &["swipes", "hr"],
        iot::OCCUPANCY_SQL,
        iot::occupancy_rules(1),
    )?;
    let energy = propose(
        &["sensors"],
        iot::ENERGY_SQL,
        iot::building_rules(&["floor", "day", "hour", "energy_wh", "co2_ppm"]),
    )?;
    let motion = propose(
        &["cctv"],
        iot::MOTION_SQL,
        iot::building_rules(&["floor", "day", "hour", "motion"]),
    )?;
    let headcount = propose(
        &["visitors"],
        iot::VISITORS_SQL,
        iot::building_rules(&["department", "visitors"]),
    )?;
    // The facility team's own data: its proposal is its approval.
    for ((id, state), owners) in [
        (&occupancy, &[1, 3][..]),
        (&energy, &[]),
        (&motion, &[2]),
        (&headcount, &[1]),
    ] {
        if state != "accepted" {
            for &who in owners {
                approve_contract(client, &homes[who], id)?;
            }
        }
    }
    let (occupancy, energy, motion, headcount) = (occupancy.0, energy.0, motion.0, headcount.0);
    let noise = iot::noise(1);
    step(&format!(
        "the facility team proposed four contracts, each approved by the owners of its data:\n   \
         occupancy {occupancy} (the day's swipes ⋈ HR; aggregation rule, at least 5 distinct \
         badges a group; noise ε {} a run, at most {} swipes of a badge read)\n   energy \
         {energy} (the day's sensors)\n   motion {motion} (the day's cameras)\n   visitors \
         {headcount} (the visitor log, every day's; exact, at least 5 visitors a group, held by \
         the difference checks)",
        noise.epsilon, noise.max_rows_per_identity
    ));

    let fetch = |run: &confide_model::RunId| {
        fetch_result(
            client,
            &homes[0],
            &consortium.ledger_key,
            run,
            &consortium.store,
        )
        .map(|(csv, _)| rows(&csv))
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut headcounts = Vec::new();
    let mut audit_seq = 0;
    for day in 0..scale.days {
        if day > 0 {
            for (who, t) in [(0, "sensors"), (1, "swipes"), (2, "cctv"), (1, "visitors")] {
                let v = crate::cleanroom::append(
                    client,
                    &homes[who],
                    &consortium.ledger_key,
                    &published[t],
                    &path(&format!("{t}-{day}")),
                    &consortium.store,
                )?;
                println!(
                    "   {} appended {t} version {} ({} rows)",
                    names[who], v.number, v.version.rows
                );
            }
        }
        let runs = [&occupancy, &energy, &motion, &headcount].map(|id| consortium.run(id));
        let [Ok(occ), Ok(en), Ok(mo), Ok(hc)] = &runs else {
            let failed = runs.into_iter().filter_map(Result::err).next();
            return Err(failed.unwrap_or_else(|| anyhow::anyhow!("a run failed")));
        };
        audit_seq = occ.audit_seq;
        let (occupied, energy_rows, motion_rows) =
            (fetch(&occ.run)?, fetch(&en.run)?, fetch(&mo.run)?);
        // The truth, in plain, for the demo only: no party could compute it.
        let truth = runtime.block_on(plain_occupancy(
            &path(&format!("swipes-{day}")),
            &path("hr"),
        ))?;
        show_occupancy(day, &occupied, &truth, occ.suppressed, args.verbose);
        show_energy(day, &occupied, &energy_rows, &motion_rows, args.verbose);
        headcounts.push((fetch(&hc.run)?, hc.suppressed));
    }

    // The visitors, exact, each day. On the second, the first department has one visitor more:
    // one away from the first day's group, suppressed.
    step("visitors per host department (exact, all days' visits so far), each day:");
    for (day, (rows, suppressed)) in headcounts.iter().enumerate() {
        let shown: Vec<String> = rows.iter().map(|r| r.join(" ")).collect();
        println!(
            "   day {day}: {} — {suppressed} group(s) suppressed",
            shown.join(", ")
        );
    }
    let first: BTreeSet<&String> = headcounts[0].0.iter().map(|r| &r[0]).collect();
    let second: BTreeSet<&String> = headcounts[1].0.iter().map(|r| &r[0]).collect();
    let gone: Vec<&&String> = first.difference(&second).collect();
    match gone.as_slice() {
        [department] => println!(
            "   a differencing attempt: day 1's {department} group would differ from day 0's by \
             one visitor, whose visit it would tell; the difference checks suppressed it"
        ),
        _ => bail!("the visitors' difference check did not suppress exactly the one group"),
    }

    // The budget: each day's ε 2, ε 1 a run. Two runs spent it; a third, which would let the
    // facility team average the noise away, is refused before any key.
    let gov = crate::serve::verified_ledger(client, &homes[0], &consortium.ledger_key)
        .and_then(|l| Ok(l.governance()?))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let spent = gov
        .budget(&published["swipes"], now)
        .map(|(s, b)| format!("swipes: ε {s} of {} spent", b.epsilon))
        .unwrap_or_default();
    match consortium.run(&occupancy) {
        Err(e) => println!(
            "\n   privacy budget after the two days' runs: {spent}; a third run, to average the \
             noise away, was refused before any key was released:\n   {e:#}"
        ),
        Ok(_) => bail!("a run past the budget was not refused"),
    }
    consortium.audit(audit_seq, args.verbose)?;
    step(
        "the building's occupancy and energy were computed without any party seeing another's data",
    );
    Ok(())
}

/// Writes the rows of the CSV file `file` of each day (its `day` column) to `to(day)`, each
/// with the header.
fn split_days(
    file: &std::path::Path,
    days: u32,
    to: impl Fn(u32) -> std::path::PathBuf,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file)?;
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let at = header
        .split(',')
        .position(|c| c == "day")
        .with_context(|| format!("{} has no day column", file.display()))?;
    let mut out: Vec<String> = (0..days).map(|_| format!("{header}\n")).collect();
    for line in lines {
        let day: usize = line
            .split(',')
            .nth(at)
            .and_then(|d| d.parse().ok())
            .unwrap_or(0);
        if let Some(o) = out.get_mut(day) {
            o.push_str(line);
            o.push('\n');
        }
    }
    for (day, text) in (0..days).zip(out) {
        std::fs::write(to(day), text)?;
    }
    Ok(())
}

/// The occupancy contract's SQL in plain DataFusion over the day's swipes and HR's register.
async fn plain_occupancy(
    swipes: &std::path::Path,
    hr: &std::path::Path,
) -> anyhow::Result<Vec<Vec<String>>> {
    use datafusion::prelude::{CsvReadOptions, SessionContext};
    let ctx = SessionContext::new();
    for (t, p) in [("swipes", swipes), ("hr", hr)] {
        let p = p.to_str().context("the demo's directory is not UTF-8")?;
        ctx.register_csv(t, p, CsvReadOptions::new()).await?;
    }
    let batches = ctx
        .sql(confide_cleanroom::iot::OCCUPANCY_SQL)
        .await?
        .collect()
        .await?;
    let mut csv = Vec::new();
    {
        let mut w = datafusion::arrow::csv::Writer::new(&mut csv);
        for b in &batches {
            w.write(b)?;
        }
    }
    Ok(rows(&csv))
}

/// Occupancy per floor, department and hour as released (noised), next to the truth.
fn show_occupancy(
    day: u32,
    occupied: &[Vec<String>],
    truth: &[Vec<String>],
    suppressed: u64,
    verbose: bool,
) {
    let key = |r: &[String]| r.get(..4).map(<[String]>::to_vec).unwrap_or_default();
    let released: std::collections::BTreeMap<Vec<String>, &Vec<String>> =
        occupied.iter().map(|r| (key(r), r)).collect();
    step(&format!(
        "day {day}: occupancy per floor, department and hour, as released (noised) next to the \
         truth in plain — {suppressed} group(s) suppressed for fewer than 5 badges:"
    ));
    println!(
        "   {:>3} {:>5} {:<12} {:>4}   {:>9} {:>6}",
        "day", "floor", "department", "hour", "occupants", "truth"
    );
    let mut shown = 0;
    let mut hidden_exec = 0;
    for t in truth {
        let [floor, department, d, hour, occupants] = &t[..] else {
            continue;
        };
        match released.get(&key(t)) {
            Some(r) if verbose || hour == "10" => {
                println!(
                    "   {d:>3} {floor:>5} {department:<12} {hour:>4}   {:>9} {occupants:>6}",
                    r[4]
                );
                shown += 1;
            }
            Some(_) => {}
            None => {
                if department == "executive" {
                    hidden_exec += 1;
                }
            }
        }
    }
    println!(
        "   ({shown} of {} released groups shown{}; {hidden_exec} executive groups were \
         suppressed: the executives are few)",
        occupied.len(),
        if verbose {
            ""
        } else {
            ": 10:00; --verbose for all"
        }
    );
}

/// Energy per occupant: the released energy over the released (noised) occupants of each
/// floor and hour — post-processing, which spends no ε.
fn show_energy(
    day: u32,
    occupied: &[Vec<String>],
    energy_rows: &[Vec<String>],
    motion_rows: &[Vec<String>],
    verbose: bool,
) {
    let mut occupants: std::collections::BTreeMap<(String, String, String), f64> =
        std::collections::BTreeMap::new();
    for r in occupied {
        let n: f64 = r[4].parse().unwrap_or(0.0);
        *occupants
            .entry((r[2].clone(), r[3].clone(), r[0].clone()))
            .or_default() += n;
    }
    step(&format!(
        "day {day}: energy per occupant by floor and hour (released energy ÷ released occupants):"
    ));
    for r in energy_rows {
        let [floor, d, hour, wh, co2] = &r[..] else {
            continue;
        };
        let h: u32 = hour.parse().unwrap_or(0);
        if !(8..=17).contains(&h) || (!verbose && !h.is_multiple_of(3)) {
            continue;
        }
        let n = occupants
            .get(&(d.clone(), hour.clone(), floor.clone()))
            .copied()
            .unwrap_or(0.0);
        let motion = motion_rows
            .iter()
            .find(|m| m[0] == *floor && m[1] == *d && m[2] == *hour)
            .map_or("-", |m| m[3].as_str());
        println!(
            "   floor {floor} {hour:>2}:00   {wh:>7} Wh   {n:>5.0} occupants   {:>12}   CO2 {:>4.0} ppm   motion {motion}",
            if n >= 1.0 {
                format!("{:.1} Wh each", wh.parse::<f64>().unwrap_or(0.0) / n)
            } else {
                "-".into()
            },
            co2.parse::<f64>().unwrap_or(0.0)
        );
    }
}

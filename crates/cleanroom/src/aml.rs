//! The anti-money-laundering scenario: synthetic transactions for three banks with laundering
//! patterns planted across them, and the SQL that finds those patterns in the pooled data.
//!
//! Each bank's file holds what that bank books: transfers out of its customers' accounts and cash
//! deposits into them, as `tx_id,day,kind,from_account,to_account,customer,amount`. Account ids
//! start with the bank's letter (`A…`, `B…`, `C…`); merchants (`M…`) only receive. Planted:
//!
//! - **fan-out and gather**: a hub at one bank pays six mules at a second bank, which each pass
//!   most of it on, within two days, to one collector at a third bank;
//! - **cycles**: large transfers A → B → C → A within a week, one leg in each bank's books;
//! - **structuring**: one customer deposits cash under the 10,000 reporting threshold at each of
//!   the three banks on the same day, over the threshold together.
//!
//! No bank's file alone shows any of them: every pattern needs rows from two or three banks.
//! The generator is deterministic for a seed.

use std::collections::BTreeSet;
use std::io::Write;

use confide_model::contract::{AnalysisRule, OnViolation, OutputRules};
use confide_model::dataset::Privacy;

/// The bank letters and their table names.
pub const BANKS: [(char, &str); 3] = [('A', "bank_a"), ('B', "bank_b"), ('C', "bank_c")];
/// The cash reporting threshold.
pub const THRESHOLD: u64 = 10_000;
/// The CSV header of every bank's file.
pub const HEADER: &str = "tx_id,day,kind,from_account,to_account,customer,amount";

/// The query: every planted pattern, one row per finding, with the accounts behind it counted.
pub const SQL: &str = "\
WITH t AS (
  SELECT * FROM bank_a UNION ALL SELECT * FROM bank_b UNION ALL SELECT * FROM bank_c
),
tr AS (SELECT * FROM t WHERE kind = 'transfer'),
fan AS (
  SELECT a.from_account AS hub, b.to_account AS collector,
         COUNT(DISTINCT a.to_account) AS mules, SUM(b.amount) AS total
  FROM tr a JOIN tr b
    ON b.from_account = a.to_account AND b.day >= a.day AND b.day <= a.day + 2
  WHERE substr(a.from_account, 1, 1) <> substr(a.to_account, 1, 1)
  GROUP BY a.from_account, b.to_account
  HAVING COUNT(DISTINCT a.to_account) >= 5
),
cyc AS (
  SELECT x.from_account AS subject, x.amount + y.amount + z.amount AS total
  FROM tr x
  JOIN tr y ON y.from_account = x.to_account AND y.day >= x.day AND y.day <= x.day + 3
  JOIN tr z ON z.from_account = y.to_account AND z.to_account = x.from_account
           AND z.day >= y.day AND z.day <= x.day + 6
  WHERE x.amount >= 10000 AND x.from_account < y.from_account AND x.from_account < z.from_account
),
smurf AS (
  SELECT customer AS subject, COUNT(DISTINCT substr(to_account, 1, 1)) AS banks,
         SUM(amount) AS total
  FROM t WHERE kind = 'cash_deposit' AND amount < 10000
  GROUP BY customer, day
  HAVING SUM(amount) >= 10000 AND COUNT(DISTINCT substr(to_account, 1, 1)) >= 2
)
SELECT 'fan_out_gather' AS pattern, hub AS subject, mules + 2 AS n_accounts,
       round(total, 2) AS total FROM fan
UNION ALL
SELECT 'cycle' AS pattern, subject, 3 AS n_accounts, round(total, 2) AS total FROM cyc
UNION ALL
SELECT 'structuring' AS pattern, subject, banks AS n_accounts, round(total, 2) AS total FROM smurf
ORDER BY pattern, subject
";

/// What each bank declares when it publishes: the accounts name the individuals (one domain,
/// `account`, across both columns and the three banks). A cash deposit has no account it comes
/// from (an empty `from_account`).
pub fn privacy() -> Privacy {
    Privacy {
        identity: [
            ("from_account".to_owned(), "account".to_owned()),
            ("to_account".to_owned(), "account".to_owned()),
        ]
        .into(),
        ..Privacy::default()
    }
}

/// The AML contract's analysis rule: every finding backed by at least three distinct accounts.
pub const RULE: AnalysisRule = AnalysisRule::List { min_identities: 3 };

/// The output rules of the AML contract, a list rule: the finding, its subject, how many
/// accounts the SQL says are behind it, and the amount; each finding backed by at least three
/// distinct accounts as the engine counts them; at most 1,000 rows.
pub fn output_rules() -> OutputRules {
    OutputRules {
        noise: None,
        columns: vec![
            "pattern".into(),
            "subject".into(),
            "n_accounts".into(),
            "total".into(),
        ],
        rule: Some(RULE),
        min_group: None,
        max_rows: 1000,
        on_violation: OnViolation::Suppress,
    }
}

/// How much to generate.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    /// Customers (each has an account at one to three banks).
    pub customers: u32,
    /// Background transactions per bank (the planted ones come on top).
    pub transactions_per_bank: u64,
    /// Instances of each planted pattern.
    pub planted_each: u32,
    /// The seed.
    pub seed: u64,
}

impl Default for Scale {
    fn default() -> Self {
        Self {
            customers: 3_000,
            transactions_per_bank: 20_000,
            planted_each: 2,
            seed: 0x00c0_ff1d_e5ee_d001,
        }
    }
}

/// A planted finding: the pattern and its subject (hub account, cycle's least account, or the
/// structuring customer) — what the query must report.
pub type Finding = (String, String);

fn account(bank: char, customer: u32) -> String {
    format!("{bank}{customer:06}")
}

fn customer_id(customer: u32) -> String {
    format!("P{customer:06}")
}

/// Whether `customer` banks at `bank` (index 0..3). Everyone has an account somewhere; about a
/// third have accounts at two or three banks.
fn banks_at(customer: u32, bank: usize) -> bool {
    let home = (customer % 3) as usize;
    bank == home
        || (customer.is_multiple_of(7) && bank == (home + 1) % 3)
        || customer.is_multiple_of(11)
}

/// Writes one CSV row.
#[allow(clippy::too_many_arguments)]
fn row(
    out: &mut impl Write,
    tx: &mut u64,
    day: u64,
    kind: &str,
    from: &str,
    to: &str,
    customer: &str,
    cents: u64,
) -> std::io::Result<()> {
    *tx += 1;
    writeln!(
        out,
        "T{tx:09},{day},{kind},{from},{to},{customer},{}.{:02}",
        cents / 100,
        cents % 100
    )
}

/// Generates the three banks' files into `outs` (in `BANKS` order, each starting with
/// [`HEADER`]) and returns the planted findings.
pub fn generate(
    scale: Scale,
    outs: &mut [&mut dyn Write; 3],
) -> std::io::Result<BTreeSet<Finding>> {
    let mut rng = crate::SplitMix(scale.seed);
    let mut tx = 0u64;
    let mut planted = BTreeSet::new();
    for out in outs.iter_mut() {
        writeln!(out, "{HEADER}")?;
    }
    let customers = scale.customers.max(100);
    // Background: payments to merchants, some transfers between people, small cash deposits.
    for (b, (letter, _)) in BANKS.iter().enumerate() {
        let out = &mut outs[b];
        let mut written = 0;
        while written < scale.transactions_per_bank {
            let c = u32::try_from(rng.below(u64::from(customers))).unwrap_or(0);
            if !banks_at(c, b) {
                continue;
            }
            let day = 1 + rng.below(28);
            let from = account(*letter, c);
            match rng.below(20) {
                0..=14 => {
                    let merchant = format!("M{:05}", rng.below(800));
                    let cents = 500 + rng.below(300_000);
                    row(
                        out,
                        &mut tx,
                        day,
                        "transfer",
                        &from,
                        &merchant,
                        &customer_id(c),
                        cents,
                    )?;
                }
                15..=17 => {
                    let other = u32::try_from(rng.below(u64::from(customers))).unwrap_or(0);
                    let to_bank = (0..3).find(|&k| banks_at(other, k)).unwrap_or(0);
                    let to = account(BANKS[to_bank].0, other);
                    let cents = 1_000 + rng.below(400_000);
                    row(
                        out,
                        &mut tx,
                        day,
                        "transfer",
                        &from,
                        &to,
                        &customer_id(c),
                        cents,
                    )?;
                }
                _ => {
                    let cents = 2_000 + rng.below(200_000);
                    row(
                        out,
                        &mut tx,
                        day,
                        "cash_deposit",
                        "",
                        &from,
                        &customer_id(c),
                        cents,
                    )?;
                }
            }
            written += 1;
        }
    }
    // Planted people get ids above the background's, so no background row touches them.
    let mut next_person = customers + 1;
    let mut person = || {
        next_person += 1;
        next_person
    };
    for i in 0..scale.planted_each {
        // Fan-out at bank x, mules at bank y, collector at bank z.
        let (x, y, z) = (
            (i % 3) as usize,
            ((i + 1) % 3) as usize,
            ((i + 2) % 3) as usize,
        );
        let hub = person();
        let hub_account = account(BANKS[x].0, hub);
        let collector = account(BANKS[z].0, person());
        let day = 2 + rng.below(20);
        for _ in 0..6 {
            let mule = person();
            let mule_account = account(BANKS[y].0, mule);
            let cents = 900_000 + rng.below(50_000);
            row(
                &mut outs[x],
                &mut tx,
                day,
                "transfer",
                &hub_account,
                &mule_account,
                &customer_id(hub),
                cents,
            )?;
            let passed = cents - cents / 50;
            row(
                &mut outs[y],
                &mut tx,
                day + rng.below(2),
                "transfer",
                &mule_account,
                &collector,
                &customer_id(mule),
                passed,
            )?;
        }
        planted.insert(("fan_out_gather".to_owned(), hub_account));

        // A cycle through the three banks.
        let people = [person(), person(), person()];
        let accounts: Vec<String> = (0..3).map(|k| account(BANKS[k].0, people[k])).collect();
        let day = 1 + rng.below(20);
        let mut cents = 4_000_000 + rng.below(1_000_000);
        for k in 0..3 {
            let to = &accounts[(k + 1) % 3];
            row(
                &mut outs[k],
                &mut tx,
                day + k as u64,
                "transfer",
                &accounts[k],
                to,
                &customer_id(people[k]),
                cents,
            )?;
            cents -= cents / 100;
        }
        let least = accounts.iter().min().cloned().unwrap_or_default();
        planted.insert(("cycle".to_owned(), least));

        // Structuring: the same customer, cash under the threshold at each bank, one day.
        let smurf = person();
        let day = 1 + rng.below(28);
        for (k, (letter, _)) in BANKS.iter().enumerate() {
            let cents = 800_000 + rng.below(190_000);
            row(
                &mut outs[k],
                &mut tx,
                day,
                "cash_deposit",
                "",
                &account(*letter, smurf),
                &customer_id(smurf),
                cents,
            )?;
        }
        planted.insert(("structuring".to_owned(), customer_id(smurf)));
    }
    Ok(planted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_plants_every_pattern() {
        let run = || {
            let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
            let planted = generate(Scale::default(), &mut [&mut a, &mut b, &mut c]).unwrap();
            (planted, a, b, c)
        };
        let (p1, a1, b1, c1) = run();
        let (p2, a2, ..) = run();
        assert_eq!(p1, p2);
        assert_eq!(a1, a2);
        assert_eq!(p1.len(), 6);
        for f in [&a1, &b1, &c1] {
            let text = String::from_utf8_lossy(f);
            assert!(text.starts_with(HEADER));
            assert!(text.lines().count() > 20_000);
        }
    }
}

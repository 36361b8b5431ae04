//! Differential privacy as the contract and the owners state it: the ε a run spends and the
//! rows each individual may contribute ([`Noise`], in a contract's output rules), the budget
//! an owner gives its dataset per period ([`Budget`]), and the bounds each numeric column is
//! clamped to ([`Bounds`]). ε is held in millionths ([`Epsilon`]), so that budgets add up
//! exactly and a ledger replayed anywhere reaches the same sum.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ModelError;

/// The largest ε a contract or a budget may state: beyond it, noise protects no one.
const MAX_EPSILON: u64 = 100 * MICROS;
const MICROS: u64 = 1_000_000;
/// The largest bound a column may declare, in magnitude.
pub const MAX_BOUND: u64 = 1 << 40;

/// A privacy loss ε, in millionths. On the wire a decimal string (`"0.5"`), at most six
/// digits after the point.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Epsilon(u64);

impl Epsilon {
    /// ε of `micros` millionths.
    pub const fn from_micros(micros: u64) -> Self {
        Self(micros)
    }

    /// Its millionths.
    pub const fn micros(self) -> u64 {
        self.0
    }

    /// Parses `"0.5"`, `"1"`, `"0.000001"`: more than 0, at most 100.
    pub fn parse(text: &str) -> Result<Self, ModelError> {
        let bad = |detail: String| ModelError::Malformed {
            field: "epsilon",
            detail,
        };
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits(whole) || !digits(fraction) || fraction.len() > 6 {
            return Err(bad(format!(
                "{text:?} is not a decimal number with at most six digits after the point"
            )));
        }
        let whole: u64 = whole
            .parse()
            .ok()
            .filter(|w| *w <= MAX_EPSILON / MICROS)
            .ok_or_else(|| bad(format!("{text} is more than 100")))?;
        let fraction: u64 = format!("{fraction:0<6}").parse().unwrap_or(0);
        let e = Self(whole * MICROS + fraction);
        if e.0 == 0 || e.0 > MAX_EPSILON {
            return Err(bad(format!("{text} is not more than 0 and at most 100")));
        }
        Ok(e)
    }

    /// `self + other`, or `None` past `u64`.
    pub fn checked_add(self, other: Self) -> Option<Self> {
        self.0.checked_add(other.0).map(Self)
    }
}

impl fmt::Display for Epsilon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, fraction) = (self.0 / MICROS, self.0 % MICROS);
        if fraction == 0 {
            return write!(f, "{whole}");
        }
        let fraction = format!("{fraction:06}");
        write!(f, "{whole}.{}", fraction.trim_end_matches('0'))
    }
}

impl Serialize for Epsilon {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Epsilon {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The noise a contract's runs add (aggregation rule only): each run spends `epsilon` of the
/// budget of every dataset it reads. The engine keeps at most `max_rows_per_identity` rows of
/// each individual before it aggregates, so one individual moves a count by at most that many
/// and a sum by that many times its column's bound; the noise is calibrated to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Noise {
    /// The ε one run spends, split evenly among the noised values of a result row's columns.
    pub epsilon: Epsilon,
    /// The most rows of one individual the aggregate reads.
    pub max_rows_per_identity: u32,
}

impl Noise {
    /// Checks the figures make sense; the error names the field.
    pub fn check(&self) -> Result<(), ModelError> {
        if self.max_rows_per_identity == 0 || self.max_rows_per_identity > 10_000 {
            return Err(ModelError::Malformed {
                field: "output.noise.max_rows_per_identity",
                detail: format!("{} is not between 1 and 10000", self.max_rows_per_identity),
            });
        }
        Ok(())
    }
}

/// The total ε an owner lets the runs over its dataset spend per period of `period_days` days
/// (counted from the Unix epoch, so every side agrees where a period starts). A dataset with a
/// budget is read only by contracts that add noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// The ε of one period.
    pub epsilon: Epsilon,
    /// The period's length in days.
    pub period_days: u32,
}

impl Budget {
    /// Checks the period; the error names the field.
    pub fn check(&self) -> Result<(), ModelError> {
        if self.period_days == 0 || self.period_days > 3660 {
            return Err(ModelError::Malformed {
                field: "budget.period_days",
                detail: format!("{} is not between 1 and 3660", self.period_days),
            });
        }
        Ok(())
    }

    /// The period (its number since the epoch) that Unix time `at` falls in.
    pub fn period_of(&self, at: i64) -> i64 {
        at.div_euclid(i64::from(self.period_days) * 86_400)
    }

    /// Parses `EPSILON/DAYS` (`1.5/30`), as the CLI takes it.
    pub fn parse(text: &str) -> Result<Self, ModelError> {
        let (epsilon, days) = text.split_once('/').ok_or_else(|| ModelError::Malformed {
            field: "budget",
            detail: format!("{text:?} is not EPSILON/DAYS (1.5/30: ε 1.5 every 30 days)"),
        })?;
        let budget = Self {
            epsilon: Epsilon::parse(epsilon)?,
            period_days: days.parse().map_err(|_| ModelError::Malformed {
                field: "budget.period_days",
                detail: format!("{days:?} is not a number of days"),
            })?,
        };
        budget.check()?;
        Ok(budget)
    }
}

/// The bounds a numeric column's values are clamped to before a noised SUM or AVG: one row
/// moves a sum by at most the larger of `|lo|` and `|hi|`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bounds {
    /// The least value.
    pub lo: i64,
    /// The greatest value.
    pub hi: i64,
}

impl Bounds {
    /// How much one row can move a sum.
    pub fn sensitivity(&self) -> u64 {
        self.lo.unsigned_abs().max(self.hi.unsigned_abs())
    }

    /// Parses `LO..HI` (`-20..60`).
    pub fn parse(text: &str) -> Result<Self, ModelError> {
        let bad = || ModelError::Malformed {
            field: "bounds",
            detail: format!("{text:?} is not LO..HI with integers LO < HI"),
        };
        let (lo, hi) = text.split_once("..").ok_or_else(bad)?;
        let b = Self {
            lo: lo.trim().parse().map_err(|_| bad())?,
            hi: hi.trim().parse().map_err(|_| bad())?,
        };
        if b.lo >= b.hi || b.sensitivity() > MAX_BOUND {
            return Err(bad());
        }
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epsilon_reads_and_writes_decimals_exactly() {
        for (text, micros, shown) in [
            ("0.5", 500_000, "0.5"),
            ("1", 1_000_000, "1"),
            ("1.250", 1_250_000, "1.25"),
            ("0.000001", 1, "0.000001"),
            ("100", 100_000_000, "100"),
        ] {
            let e = Epsilon::parse(text).unwrap();
            assert_eq!(e.micros(), micros, "{text}");
            assert_eq!(e.to_string(), shown);
            assert_eq!(Epsilon::parse(&e.to_string()).unwrap(), e);
        }
        for bad in [
            "0",
            "0.0",
            "",
            ".5",
            "-1",
            "1e3",
            "0.0000001",
            "100.5",
            "1000",
            "NaN",
            "1.",
            "x",
        ] {
            let got = Epsilon::parse(bad);
            // "1." has an empty fraction: read as 1.
            if bad == "1." {
                assert_eq!(got.unwrap().micros(), MICROS);
                continue;
            }
            assert!(got.is_err(), "{bad:?} was accepted");
        }
        // Three tenths are three tenths: no floating point in a budget's sum.
        let tenth = Epsilon::parse("0.1").unwrap();
        let sum = tenth.checked_add(tenth).and_then(|s| s.checked_add(tenth));
        assert_eq!(sum, Some(Epsilon::parse("0.3").unwrap()));
    }

    #[test]
    fn budgets_and_bounds_parse_and_refuse_what_they_should() {
        let b = Budget::parse("1.5/30").unwrap();
        assert_eq!(b.epsilon.micros(), 1_500_000);
        assert_eq!(b.period_of(0), 0);
        assert_eq!(b.period_of(30 * 86_400 - 1), 0);
        assert_eq!(b.period_of(30 * 86_400), 1);
        for bad in ["1.5", "1.5/0", "0/30", "1.5/x", "1.5/99999"] {
            assert!(Budget::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Bounds::parse("-20..60").unwrap().sensitivity(), 60);
        for bad in ["60..-20", "1..1", "a..b", "5"] {
            assert!(Bounds::parse(bad).is_err(), "{bad}");
        }
    }
}

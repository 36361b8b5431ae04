//! Difference checks: an exact result's groups against the groups released before them.
//!
//! Two aggregates that are each far above the minimum can still differ by one individual
//! ("everyone" and "everyone but cust-007"), and their difference is that individual's value.
//! So every group an exact aggregate releases from a dataset leaves, in the dataset's history,
//! the set of the dataset's individuals behind it (as the engine carries them: 64-bit hashes
//! of their identities, [`crate::privacy`]); a later group whose set differs from an earlier
//! one by at least one and fewer than the minimum individuals is suppressed (or the result
//! refused, as the contract says), whichever contract released the earlier one. The same set
//! again (a contract run twice over the same data) is no difference.
//!
//! A history is kept per dataset, encrypted under the dataset's history key, which the key
//! broker made and releases only to attested workloads of approved contracts (not to the owner:
//! the sets of a join's groups say which of its individuals matched another party's rows); each
//! run that
//! moves it on records the digest it started from and the one it left on the ledger
//! ([`confide_model::HistoryStep`]), so a history rolled back or deleted stops the runs
//! rather than their checks.
//!
//! Noised results are not checked (nor kept): the budget bounds what any set of them reveals,
//! as Ads Data Hub drops its difference checks in noise mode.

use std::collections::{BTreeMap, HashMap};

use crate::CleanroomError;

/// The first bytes of a history's plaintext.
const MAGIC: &[u8] = b"confide/history/v1\n";

/// The identity sets released from one dataset, by the domain of the individuals (`badge`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    columns: BTreeMap<String, Vec<Vec<u64>>>,
}

/// How a group's set stands against a history's sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Difference {
    /// It differs from every earlier set by the minimum or more.
    Far,
    /// It is an earlier set (and no other is too close).
    Same,
    /// It differs from an earlier set by at least one and fewer than the minimum.
    TooClose,
}

impl History {
    /// The sets of individuals of domain `domain` released.
    pub fn sets(&self, domain: &str) -> &[Vec<u64>] {
        self.columns.get(domain).map_or(&[], Vec::as_slice)
    }

    /// How many sets the history holds, over all columns.
    pub fn len(&self) -> usize {
        self.columns.values().map(Vec::len).sum()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds `set` (sorted, each identity once) as released of domain `domain`.
    pub(crate) fn add(&mut self, domain: &str, set: Vec<u64>) {
        self.columns.entry(domain.to_owned()).or_default().push(set);
    }

    /// The history as bytes: the magic line, then for each column its name and its sets, each
    /// length a little-endian u32, each identity a little-endian u64.
    pub fn to_bytes(&self) -> Vec<u8> {
        let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
        let mut out = MAGIC.to_vec();
        out.extend(len(self.columns.len()));
        for (column, sets) in &self.columns {
            out.extend(len(column.len()));
            out.extend(column.as_bytes());
            out.extend(len(sets.len()));
            for set in sets {
                out.extend(len(set.len()));
                for id in set {
                    out.extend(id.to_le_bytes());
                }
            }
        }
        out
    }

    /// Reads a history written by [`Self::to_bytes`]; anything else (cut short, trailing
    /// bytes, a set out of order) is refused.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CleanroomError> {
        let mut r = Reader(
            bytes
                .strip_prefix(MAGIC)
                .ok_or_else(|| bad("not a history"))?,
        );
        let mut columns = BTreeMap::new();
        for _ in 0..r.len()? {
            let n = r.len()?;
            let column = std::str::from_utf8(r.take(n)?)
                .map_err(|_| bad("a column name is not UTF-8"))?
                .to_owned();
            let count = r.len()?;
            let mut sets = Vec::with_capacity(count.min(1 << 16));
            for _ in 0..count {
                let n = r.len()?;
                let set: Vec<u64> = r
                    .take(n.checked_mul(8).ok_or_else(|| bad("a set too large"))?)?
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
                    .collect();
                if set.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(bad("a set is not sorted"));
                }
                sets.push(set);
            }
            if columns.insert(column, sets).is_some() {
                return Err(bad("a column appears twice"));
            }
        }
        if !r.0.is_empty() {
            return Err(bad("trailing bytes"));
        }
        Ok(Self { columns })
    }
}

fn bad(what: &str) -> CleanroomError {
    CleanroomError::Store(format!("a difference-check history: {what}"))
}

/// The bytes of a history not read yet.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CleanroomError> {
        if self.0.len() < n {
            return Err(bad("cut short"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn len(&mut self) -> Result<usize, CleanroomError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
}

/// The sets of one domain released before (from every table that names individuals of it,
/// and the rows of this result already let out), indexed by identity, to compare a group's set
/// against without comparing it with every earlier set.
#[derive(Default)]
pub(crate) struct Earlier {
    sets: Vec<Vec<u64>>,
    /// Each identity → the earlier sets it is in.
    holding: HashMap<u64, Vec<u32>>,
}

impl Earlier {
    pub(crate) fn new<'a>(sets: impl IntoIterator<Item = &'a Vec<u64>>) -> Self {
        let mut earlier = Self::default();
        for set in sets {
            earlier.add(set.clone());
        }
        earlier
    }

    /// Adds `set` as released.
    pub(crate) fn add(&mut self, set: Vec<u64>) {
        let i = u32::try_from(self.sets.len()).unwrap_or(u32::MAX);
        for id in &set {
            self.holding.entry(*id).or_default().push(i);
        }
        self.sets.push(set);
    }

    /// How `set` (sorted, each identity once) stands against the earlier sets. Only an
    /// earlier set that shares an identity with it can be closer than `min`: a disjoint one
    /// differs by all of both, and `set` is backed by `min` at least or already suppressed.
    pub(crate) fn compare(&self, set: &[u64], min: u64) -> Difference {
        let mut shared: HashMap<u32, u64> = HashMap::new();
        for id in set {
            for &i in self.holding.get(id).map_or(&[][..], Vec::as_slice) {
                *shared.entry(i).or_default() += 1;
            }
        }
        let mut same = false;
        for (i, common) in shared {
            let earlier = self.sets.get(i as usize).map_or(0, Vec::len) as u64;
            match set.len() as u64 + earlier - 2 * common {
                0 => same = true,
                d if d < min => return Difference::TooClose,
                _ => {}
            }
        }
        if same {
            Difference::Same
        } else {
            Difference::Far
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history() -> History {
        let mut h = History::default();
        h.add("badge_id", (0..10).collect());
        h.add("badge_id", (100..120).collect());
        h.add("customer", vec![3, 9, 27]);
        h
    }

    #[test]
    fn a_history_reads_back_whole_and_nothing_else_reads() {
        let h = history();
        let bytes = h.to_bytes();
        assert_eq!(History::from_bytes(&bytes).unwrap(), h);
        assert_eq!(
            History::from_bytes(MAGIC).unwrap_err().to_string(),
            "the blob store: a difference-check history: cut short"
        );
        for cut in [MAGIC.len() + 2, bytes.len() - 1] {
            assert!(History::from_bytes(&bytes[..cut]).is_err(), "{cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(History::from_bytes(&longer).is_err());
        // A set out of order is not one the workload wrote.
        let mut swapped = History::default();
        swapped.add("c", vec![2, 1]);
        assert!(History::from_bytes(&swapped.to_bytes()).is_err());
        assert!(History::from_bytes(b"confide/history/v2\n\0\0\0\0").is_err());
    }

    #[test]
    fn a_set_one_individual_away_from_an_earlier_one_is_too_close() {
        let h = history();
        let mut earlier = Earlier::new(h.sets("badge_id"));
        let all: Vec<u64> = (0..10).collect();
        assert_eq!(earlier.compare(&all, 5), Difference::Same);
        // Everyone but one, everyone and one more, one swapped for another: differences of
        // one, one and two.
        assert_eq!(earlier.compare(&all[1..], 5), Difference::TooClose);
        let plus: Vec<u64> = (0..11).collect();
        assert_eq!(earlier.compare(&plus, 5), Difference::TooClose);
        let swapped: Vec<u64> = (1..11).collect();
        assert_eq!(earlier.compare(&swapped, 5), Difference::TooClose);
        // Three swapped for three others: six away, far enough for a minimum of five, too
        // close for seven; a set that shares half of an earlier one's is ten away.
        let six: Vec<u64> = (3..13).collect();
        assert_eq!(earlier.compare(&six, 5), Difference::Far);
        assert_eq!(earlier.compare(&six, 7), Difference::TooClose);
        let ten: Vec<u64> = (0..5).chain(200..205).collect();
        assert_eq!(earlier.compare(&ten, 10), Difference::Far);
        assert_eq!(earlier.compare(&ten, 11), Difference::TooClose);
        let disjoint: Vec<u64> = (300..310).collect();
        assert_eq!(earlier.compare(&disjoint, 5), Difference::Far);
        // A set added (a row of the same result let out) is compared with as well.
        earlier.add((300..310).collect());
        assert_eq!(earlier.compare(&disjoint[1..], 5), Difference::TooClose);
        // Another domain's sets are not this one's.
        let other = Earlier::new(h.sets("customer"));
        assert_eq!(other.compare(&all[1..], 5), Difference::Far);
        assert_eq!(
            Earlier::new(h.sets("none")).compare(&all, 5),
            Difference::Far
        );
    }
}

//! Spent nonces: the one replay cache of members' signed requests, kept by governance for its
//! own requests and by the key broker for its signed key-management requests.
//!
//! A request is identified by its signer and nonce. A nonce is remembered with its request's
//! time and forgotten once a request that old could no longer pass the time check
//! ([`crate::MAX_SKEW`] either side of the clock), so the cache holds at most the requests of
//! the last `2 × MAX_SKEW` seconds.

use std::collections::BTreeMap;

use confide_model::MemberId;

use crate::MAX_SKEW;

/// Nonces spent, by signer, with their request's time.
#[derive(Debug, Clone, Default)]
pub struct SpentNonces {
    seen: BTreeMap<(MemberId, Vec<u8>), i64>,
}

impl SpentNonces {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `signer` already spent `nonce`.
    pub fn is_spent(&self, signer: &MemberId, nonce: &[u8]) -> bool {
        // BTreeMap needs the owned key's type to look up a tuple.
        self.seen.contains_key(&(signer.clone(), nonce.to_vec()))
    }

    /// Spends `nonce` of `signer`'s request dated `ts`, at time `now` (for a replay of the
    /// ledger, which reads no clock, the request's own time), forgetting the nonces too old to
    /// pass the time check again. False if it was spent already; a request too old to pass
    /// the time check is not remembered, and counts as new (the time check refuses it).
    pub fn spend(&mut self, signer: &MemberId, nonce: &[u8], ts: i64, now: i64) -> bool {
        let horizon = now - 2 * MAX_SKEW;
        self.seen.retain(|_, t| *t >= horizon);
        ts < horizon
            || self
                .seen
                .insert((signer.clone(), nonce.to_vec()), ts)
                .is_none()
    }

    /// How many nonces are remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_spent_once_per_signer_and_forgotten_when_too_old_to_pass() {
        let id = |c: &str| c.repeat(64).parse::<MemberId>().unwrap();
        let (a, b, c) = (id("a"), id("b"), id("c"));
        let mut n = SpentNonces::new();
        assert!(n.spend(&a, b"1", 1000, 1000));
        assert!(n.is_spent(&a, b"1"));
        assert!(!n.is_spent(&b, b"1"), "another signer's nonce is its own");
        assert!(!n.spend(&a, b"1", 1000, 1001), "spent twice");
        assert!(n.spend(&b, b"1", 1000, 1001));
        // Past the horizon the old nonces go; a request that old is not remembered.
        let later = 1000 + 2 * MAX_SKEW + 1;
        assert!(n.spend(&c, b"2", later, later));
        assert!(!n.is_spent(&a, b"1"));
        assert_eq!(n.len(), 1);
        assert!(
            n.spend(&a, b"1", 1000, later),
            "too old: the time check refuses it"
        );
        assert!(!n.is_spent(&a, b"1"));
    }
}

//! The ledger on disk, in a temporary directory: what is appended is there after reopening,
//! receipts and consistency proofs verify, every changed byte of a segment or a receipt is
//! found, and a batch cut short by a crash is dropped on restart but refused by an audit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use confide_crypto::signing::SigningKey;
use confide_ledger::merkle::verify_consistency;
use confide_ledger::receipt::verify_receipt;
use confide_ledger::{Ledger, LedgerError};

fn key() -> SigningKey {
    SigningKey::generate().unwrap()
}

fn entries(batch: u64, n: u64) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("batch {batch} entry {i}").into_bytes())
        .collect()
}

fn segment(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
}

/// A ledger of three batches (2, 3 and 1 entries).
fn small_ledger(dir: &Path, key: &SigningKey) {
    let (mut l, _) = Ledger::open(dir, key_clone(key)).unwrap();
    for (b, n) in [(0, 2), (1, 3), (2, 1)] {
        l.append(&entries(b, n), 1_700_000_000 + b as i64).unwrap();
    }
}

fn key_clone(key: &SigningKey) -> SigningKey {
    SigningKey::from_pkcs8(&key.to_pkcs8().unwrap()).unwrap()
}

#[test]
fn appended_entries_survive_reopening_with_receipts_and_proofs() {
    let dir = tempfile::tempdir().unwrap();
    let k = key();
    small_ledger(dir.path(), &k);
    let (l, recovery) = Ledger::open(dir.path(), key_clone(&k)).unwrap();
    assert_eq!(
        (l.len(), recovery.batches, recovery.dropped_bytes),
        (6, 3, 0)
    );
    assert_eq!(l.entry(2).unwrap().unwrap(), b"batch 1 entry 0");
    assert_eq!(l.entry(6).unwrap(), None);
    let cps = l.checkpoints();
    assert_eq!(
        cps.iter().map(|c| c.tree_size).collect::<Vec<_>>(),
        [2, 5, 6]
    );
    for seq in 0..6 {
        let receipt = l.receipt(seq).unwrap().unwrap();
        let entry = l.entry(seq).unwrap().unwrap();
        let v = verify_receipt(&receipt, &entry, l.public_key()).unwrap();
        assert_eq!((v.index, v.tree_size, v.root), (seq, 6, cps[2].root));
        assert!(verify_receipt(&receipt, b"another entry", l.public_key()).is_err());
        assert!(verify_receipt(&receipt, &entry, &key().verifying_key()).is_err());
    }
    for (a, b) in [(0usize, 1usize), (1, 2), (0, 2)] {
        let (old, new) = (&cps[a], &cps[b]);
        let proof = l.consistency(old.tree_size, new.tree_size).unwrap();
        verify_consistency(old.tree_size, new.tree_size, &old.root, &new.root, &proof).unwrap();
    }
    // Appending continues the same tree.
    let (mut l, _) = Ledger::open(dir.path(), key_clone(&k)).unwrap();
    l.append(&entries(3, 2), 1_700_000_100).unwrap();
    assert_eq!(Ledger::audit(dir.path(), None).unwrap().0.len(), 8);
}

#[test]
fn another_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    small_ledger(dir.path(), &key());
    assert!(matches!(
        Ledger::open(dir.path(), key()),
        Err(LedgerError::WrongKey)
    ));
    // An audit with a key other than the ledger's finds every checkpoint unsigned by it.
    assert!(Ledger::audit(dir.path(), Some(key().verifying_key())).is_err());
}

#[test]
fn every_changed_bit_of_a_segment_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let k = key();
    small_ledger(dir.path(), &k);
    let path = segment(dir.path());
    let original = std::fs::read(&path).unwrap();
    let public = k.verifying_key();
    let mut missed = Vec::new();
    for i in 0..original.len() {
        for bit in 0..8 {
            let mut t = original.clone();
            t[i] ^= 1 << bit;
            std::fs::write(&path, &t).unwrap();
            if Ledger::audit(dir.path(), Some(public)).is_ok() {
                missed.push((i, bit));
            }
        }
    }
    std::fs::write(&path, &original).unwrap();
    assert!(
        missed.is_empty(),
        "{} of {} flips missed: {:?}",
        missed.len(),
        original.len() * 8,
        &missed[..missed.len().min(5)]
    );
    Ledger::audit(dir.path(), Some(public)).unwrap();
}

#[test]
fn every_changed_bit_of_a_receipt_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let k = key();
    small_ledger(dir.path(), &k);
    let (l, _) = Ledger::open(dir.path(), key_clone(&k)).unwrap();
    let receipt = l.receipt(3).unwrap().unwrap();
    let entry = l.entry(3).unwrap().unwrap();
    for i in 0..receipt.len() {
        for bit in 0..8 {
            let mut t = receipt.clone();
            t[i] ^= 1 << bit;
            assert!(
                verify_receipt(&t, &entry, l.public_key()).is_err(),
                "byte {i} bit {bit}"
            );
        }
    }
}

#[test]
fn a_batch_cut_short_is_dropped_on_restart_and_refused_by_an_audit() {
    let dir = tempfile::tempdir().unwrap();
    let k = key();
    small_ledger(dir.path(), &k);
    let path = segment(dir.path());
    let full = std::fs::read(&path).unwrap();
    // Where the last batch starts: the size after two batches.
    let two = {
        let d2 = tempfile::tempdir().unwrap();
        let (mut l, _) = Ledger::open(d2.path(), key_clone(&k)).unwrap();
        l.append(&entries(0, 2), 1_700_000_000).unwrap();
        l.append(&entries(1, 3), 1_700_000_001).unwrap();
        std::fs::metadata(segment(d2.path())).unwrap().len() as usize
    };
    for cut in two + 1..full.len() {
        std::fs::write(&path, &full[..cut]).unwrap();
        assert!(
            Ledger::audit(dir.path(), None).is_err(),
            "audit accepted a cut at {cut}"
        );
        let (l, recovery) = Ledger::open(dir.path(), key_clone(&k)).unwrap();
        assert_eq!(
            (l.len(), recovery.dropped_bytes),
            (5, (cut - two) as u64),
            "cut at {cut}"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, two);
    }
    // Zeros where the last batch should be (blocks reserved, data never written): dropped.
    let mut zeros = full[..two].to_vec();
    zeros.extend(std::iter::repeat_n(0u8, 4096));
    std::fs::write(&path, &zeros).unwrap();
    let (l, _) = Ledger::open(dir.path(), key_clone(&k)).unwrap();
    assert_eq!(l.len(), 5);
}

#[test]
fn a_damaged_batch_that_is_not_last_stops_the_ledger_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let k = key();
    small_ledger(dir.path(), &k);
    let path = segment(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[50] ^= 0x01; // inside the first batch's entries
    std::fs::write(&path, &bytes).unwrap();
    let err = Ledger::open(dir.path(), key_clone(&k)).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("00000000000000000000.seg at offset 0"),
        "{text}"
    );
    assert!(
        text.contains("an entry or the checkpoint was changed"),
        "{text}"
    );
}

#[test]
fn bad_requests_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let k = key();
    let (mut l, _) = Ledger::open(dir.path(), key_clone(&k)).unwrap();
    assert!(l.append(&[], 0).is_err());
    assert!(
        l.append(&[vec![0u8; confide_ledger::store::MAX_ENTRY + 1]], 0)
            .is_err()
    );
    assert_eq!(l.len(), 0);
    l.append(&entries(0, 1), 0).unwrap();
    assert_eq!(Ledger::audit(dir.path(), None).unwrap().0.len(), 1);
}

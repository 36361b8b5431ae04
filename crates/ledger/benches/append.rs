//! Ledger throughput against the physical limit, measured in one run on the same disk.
//!
//! - Appends: batches of 256-byte entries, each batch written, fsynced and checkpointed (one
//!   ECDSA P-256 signature over the new root) before the next; against writing and fsyncing the
//!   same number of bytes in the same batch sizes to a plain file. Target: at least 50,000
//!   entries per second and at least 0.5 × the raw rate. Measured twice: `append` hashing on
//!   the commit path, and as `confide serve` runs it, entries hashed as they arrive (here by a
//!   producer thread, in the server by the request handlers) while the writer commits the
//!   batch before (`append_prepared`).
//! - Receipts: making a COSE receipt for a random entry of a 1,000,000-entry ledger, and
//!   verifying one.
//!
//! The files live in a temporary directory under `target/` (a real disk, not tmpfs, where
//! fsync would cost nothing). Each measurement prints a `FIGURE` line.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::hint::black_box;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use confide_crypto::signing::SigningKey;
use confide_ledger::receipt::verify_receipt;
use confide_ledger::{Ledger, Prepared};
use criterion::{Criterion, criterion_group, criterion_main};

const ENTRY: usize = 256;

fn bench_dir() -> tempfile::TempDir {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-ledger");
    std::fs::create_dir_all(&base).unwrap();
    tempfile::tempdir_in(base).unwrap()
}

fn batch(n: usize, tag: u64) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut e = vec![0u8; ENTRY];
            e[..8].copy_from_slice(&tag.to_le_bytes());
            e[8..16].copy_from_slice(&(i as u64).to_le_bytes());
            e
        })
        .collect()
}

/// Entries per second appending `batches` batches of `size` (hashing on the commit path, and
/// hashed on arrival), and the raw peer's.
fn appends(size: usize, batches: u64) -> (f64, f64, f64) {
    let dir = bench_dir();
    let (mut ledger, _) = Ledger::open(dir.path(), SigningKey::generate().unwrap()).unwrap();
    let data: Vec<Vec<Vec<u8>>> = (0..batches).map(|b| batch(size, b)).collect();
    let start = Instant::now();
    for (b, entries) in data.iter().enumerate() {
        ledger.append(entries, b as i64).unwrap();
    }
    let ledger_rate = (batches as f64 * size as f64) / start.elapsed().as_secs_f64();

    // The server's way: a producer hashes batch n+1 while the writer commits batch n.
    let dir2 = bench_dir();
    let (mut pipelined, _) = Ledger::open(dir2.path(), SigningKey::generate().unwrap()).unwrap();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Prepared>>(1);
    let start = Instant::now();
    let producer = std::thread::spawn(move || {
        for b in 0..batches {
            let prepared = batch(size, b).into_iter().map(Prepared::new).collect();
            if tx.send(prepared).is_err() {
                return;
            }
        }
    });
    for (b, prepared) in rx.iter().enumerate() {
        pipelined.append_prepared(&prepared, b as i64).unwrap();
    }
    producer.join().unwrap();
    let pipelined_rate = (batches as f64 * size as f64) / start.elapsed().as_secs_f64();

    // The physical limit: the same bytes per batch (entries with their length prefixes and a
    // checkpoint's worth), written and made durable the same way.
    let frame_len = size * (ENTRY + 4) + 36 + 32 + 130;
    let raw_path = dir.path().join("raw");
    let mut raw = std::fs::OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&raw_path)
        .unwrap();
    let frame = vec![0x5au8; frame_len];
    let start = Instant::now();
    for _ in 0..batches {
        raw.write_all(&frame).unwrap();
        raw.sync_data().unwrap();
    }
    let raw_rate = (batches as f64 * size as f64) / start.elapsed().as_secs_f64();
    (ledger_rate, pipelined_rate, raw_rate)
}

fn append_figures(c: &mut Criterion) {
    let mut g = c.benchmark_group("ledger append");
    g.sample_size(10);
    g.bench_function("batch of 1000 x 256 B, durable, signed", |b| {
        let dir = bench_dir();
        let (mut ledger, _) = Ledger::open(dir.path(), SigningKey::generate().unwrap()).unwrap();
        let entries = batch(1000, 0);
        b.iter(|| ledger.append(black_box(&entries), 0).unwrap());
    });
    g.finish();
    for (size, batches) in [(100usize, 300u64), (1000, 100), (10_000, 20)] {
        let (ledger, pipelined, raw) = appends(size, batches);
        println!(
            "FIGURE ledger append, batches of {size}: hashing on the commit path {ledger:.0} entries/s = {:.2} x; hashed on arrival (as the server does) {pipelined:.0} entries/s = {:.2} x; raw write+fsync {raw:.0} entries/s (targets: >= 50000/s and >= 0.5 x)",
            ledger / raw,
            pipelined / raw
        );
    }
}

fn receipt_figures(c: &mut Criterion) {
    let dir = bench_dir();
    let key = SigningKey::generate().unwrap();
    let (mut ledger, _) = Ledger::open(dir.path(), key).unwrap();
    for b in 0..100u64 {
        ledger.append(&batch(10_000, b), b as i64).unwrap();
    }
    let n = ledger.len();
    let public = *ledger.public_key();
    let mut seq = 12345u64;
    let mut next = move || {
        seq = seq
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seq >> 11) % n
    };
    let mut g = c.benchmark_group("ledger receipts");
    g.bench_function("make a receipt (1,000,000 entries)", |b| {
        b.iter(|| ledger.receipt(black_box(next())).unwrap().unwrap())
    });
    let receipt = ledger.receipt(777_777).unwrap().unwrap();
    let entry = ledger.entry(777_777).unwrap().unwrap();
    g.bench_function("verify a receipt", |b| {
        b.iter(|| verify_receipt(black_box(&receipt), &entry, &public).unwrap())
    });
    g.finish();
    let time = |f: &mut dyn FnMut()| {
        let start = Instant::now();
        let mut k = 0u64;
        while start.elapsed() < Duration::from_secs(2) {
            f();
            k += 1;
        }
        k as f64 / start.elapsed().as_secs_f64()
    };
    let made = time(&mut || {
        black_box(ledger.receipt(next()).unwrap());
    });
    let verified = time(&mut || {
        black_box(verify_receipt(&receipt, &entry, &public).unwrap());
    });
    println!("FIGURE ledger receipts over {n} entries: {made:.0} made/s, {verified:.0} verified/s");
}

criterion_group!(benches, append_figures, receipt_figures);
criterion_main!(benches);

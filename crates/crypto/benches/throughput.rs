//! Throughput of confide's chunked encryption against the raw primitive, in one run.
//!
//! The peer is aws-lc-rs AES-256-GCM called directly on the same 16 KiB chunks: sealing in place
//! (no copy at all), sealing a copy of each chunk (what encrypting an input that must stay
//! intact costs at the least), and opening a copy of each chunk in place (a streaming decryptor
//! must move each chunk out of its source). confide encrypts a message held in memory with
//! `chunked::encrypt_into` (each chunk sealed from the plaintext straight into its place in the
//! output, as `envelope::encrypt_bytes` does for a run's result), and from a reader into a
//! writer as the file commands do; it decrypts chunk by chunk. The target is confide ≥ 0.8 × raw.
//! After the measurements the ratios are printed from criterion's own estimates.
//!
//! `CONFIDE_BENCH_BYTES` sets the message size (default 1 GiB).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use confide_crypto::chunked::{
    self, CHUNK_SIZE, DecryptingReader, ENCRYPTED_CHUNK_SIZE, EncryptingWriter, Suite,
};
use criterion::{Criterion, SamplingMode, Throughput};

const GROUP: &str = "chunked";
const KEY: [u8; 32] = [0x5a; 32];

fn size() -> usize {
    std::env::var("CONFIDE_BENCH_BYTES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1 << 30)
}

fn raw_key() -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &KEY).unwrap())
}

fn nonce(i: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&i.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

fn bench(c: &mut Criterion) {
    let len = size();
    let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let mut ciphertext = Vec::with_capacity(len + len / CHUNK_SIZE * 16 + 1024);
    let mut w =
        EncryptingWriter::new(Suite::Cobblestone256, &KEY, b"bench", &mut ciphertext).unwrap();
    w.write_all(&plain).unwrap();
    w.finish().unwrap();
    // The raw peer's ciphertext: the same chunks, sealed with the same key and counter nonces.
    let raw = raw_key();
    let mut raw_ct = Vec::with_capacity(ciphertext.len());
    for (i, chunk) in plain.chunks(CHUNK_SIZE).enumerate() {
        let start = raw_ct.len();
        raw_ct.extend_from_slice(chunk);
        let tag = raw
            .seal_in_place_separate_tag(nonce(i as u64), Aad::empty(), &mut raw_ct[start..])
            .unwrap();
        raw_ct.extend_from_slice(tag.as_ref());
    }

    let mut group = c.benchmark_group(GROUP);
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Bytes(len as u64));

    let mut work = plain.clone();
    group.bench_function("raw_aes256gcm_seal", |b| {
        b.iter(|| {
            for (i, chunk) in work.chunks_mut(CHUNK_SIZE).enumerate() {
                let tag = raw
                    .seal_in_place_separate_tag(nonce(i as u64), Aad::empty(), chunk)
                    .unwrap();
                black_box(tag.as_ref()[0]);
            }
        })
    });

    let mut scratch = vec![0u8; ENCRYPTED_CHUNK_SIZE];
    group.bench_function("raw_aes256gcm_seal_copy", |b| {
        b.iter(|| {
            for (i, chunk) in plain.chunks(CHUNK_SIZE).enumerate() {
                let buf = &mut scratch[..chunk.len()];
                buf.copy_from_slice(chunk);
                let tag = raw
                    .seal_in_place_separate_tag(nonce(i as u64), Aad::empty(), buf)
                    .unwrap();
                black_box(tag.as_ref()[0]);
            }
        })
    });

    group.bench_function("raw_aes256gcm_open", |b| {
        b.iter(|| {
            for (i, chunk) in raw_ct.chunks(ENCRYPTED_CHUNK_SIZE).enumerate() {
                let buf = &mut scratch[..chunk.len()];
                buf.copy_from_slice(chunk);
                black_box(
                    raw.open_in_place(nonce(i as u64), Aad::empty(), buf)
                        .unwrap(),
                );
            }
        })
    });

    let mut sealed = vec![0u8; chunked::ciphertext_len(len as u64) as usize];
    group.bench_function("confide_encrypt_into", |b| {
        b.iter(|| {
            chunked::encrypt_into(Suite::Cobblestone256, &KEY, b"bench", &plain, &mut sealed)
                .unwrap();
            black_box(sealed[sealed.len() - 1]);
        })
    });

    let mut out = Vec::with_capacity(ciphertext.len());
    group.bench_function("confide_encrypt_writer", |b| {
        b.iter(|| {
            out.clear();
            let mut w =
                EncryptingWriter::new(Suite::Cobblestone256, &KEY, b"bench", &mut out).unwrap();
            w.write_from(&mut &plain[..]).unwrap();
            black_box(w.finish().unwrap());
        })
    });

    group.bench_function("confide_decrypt", |b| {
        b.iter(|| {
            let mut r =
                DecryptingReader::new(Suite::Cobblestone256, &KEY, b"bench", &ciphertext[..])
                    .unwrap();
            let mut total = 0usize;
            while let Some(chunk) = r.next_chunk().unwrap() {
                total += black_box(chunk).len();
            }
            assert_eq!(total, len);
        })
    });
    group.finish();
}

/// criterion's mean estimate for one benchmark, in nanoseconds.
fn mean_ns(dir: &Path, id: &str) -> Option<f64> {
    let path = dir.join(GROUP).join(id).join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

fn main() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("criterion");
    let mut c = Criterion::default()
        .output_directory(&dir)
        .configure_from_args();
    bench(&mut c);
    c.final_summary();

    let gib = size() as f64 / (1u64 << 30) as f64;
    let ids = [
        "raw_aes256gcm_seal",
        "raw_aes256gcm_seal_copy",
        "raw_aes256gcm_open",
        "confide_encrypt_into",
        "confide_encrypt_writer",
        "confide_decrypt",
    ];
    if let [
        Some(seal),
        Some(seal_copy),
        Some(open),
        Some(enc_into),
        Some(enc_writer),
        Some(dec),
    ] = ids.map(|id| mean_ns(&dir, id))
    {
        let rate = |ns: f64| gib / (ns / 1e9);
        println!("\nfigures for {} bytes ({gib:.2} GiB), one run:", size());
        println!("  raw AES-256-GCM seal in place   {:6.2} GiB/s", rate(seal));
        println!(
            "  raw AES-256-GCM seal of a copy  {:6.2} GiB/s",
            rate(seal_copy)
        );
        println!("  raw AES-256-GCM open of a copy  {:6.2} GiB/s", rate(open));
        for (name, ns) in [("encrypt_into", enc_into), ("EncryptingWriter", enc_writer)] {
            println!(
                "  confide {name:<23} {:6.2} GiB/s = {:.2} x raw seal in place, {:.2} x raw seal of a copy",
                rate(ns),
                seal / ns,
                seal_copy / ns
            );
        }
        println!(
            "  confide decrypt                 {:6.2} GiB/s = {:.2} x raw open of a copy",
            rate(dec),
            open / dec
        );
    }
}

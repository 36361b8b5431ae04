//! Verification rates against the bare signature checks they contain, measured in one run.
//!
//! - SEV-SNP: a report verified against a VCEK whose chain was checked once (`EndorsedKey`),
//!   against one bare ECDSA P-384 verification of the same report with the same key. Target:
//!   at least 0.7 × the bare rate.
//! - TDX: a quote verified against collateral checked once (`PreparedCollateral`), against the
//!   two bare ECDSA P-256 verifications every quote needs (quote signature by the attestation
//!   key, QE report signature by the PCK). Target: at least 0.5 ×.
//!
//! The recorded cases S1 (Milan VCEK) and T1 (TDX v4) are the inputs. Each group prints a
//! `FIGURE` line with the ratio after criterion's own report.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use confide_attest::dcap::PreparedCollateral;
use confide_attest::snp::EndorsedKey;
use confide_attest::{Collateral, Inputs, TeeKind, TrustAnchors, UnixTime};
use confide_crypto::verify::{PreparedKey, Scheme};
use criterion::{Criterion, criterion_group, criterion_main};

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/attestation")
            .join(rel),
    )
    .unwrap()
}

/// Operations per second of `f`, over about `secs`.
fn rate(secs: f64, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        for _ in 0..64 {
            f();
        }
        n += 64;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn snp(c: &mut Criterion) {
    let report = read("snp/S1-trustee-milan-vcek/test-report.bin");
    let mut collateral = Collateral::new();
    collateral
        .add(&read("snp/S1-trustee-milan-vcek/test-vcek.der"))
        .unwrap();
    let anchors = TrustAnchors::builtin().unwrap();
    let inputs = Inputs {
        anchors: &anchors,
        now: UnixTime::from_secs(1_748_736_000),
        insecure_allow_simulated_tee: false,
    };
    let key = EndorsedKey::find(&collateral, &inputs).unwrap();
    // The bare primitive: the same signature over the same bytes, converted to r ‖ s once.
    let mut sig = [0u8; 96];
    for (i, at) in [0x2a0usize, 0x2e8].into_iter().enumerate() {
        for j in 0..48 {
            sig[i * 48 + j] = report[at + 47 - j];
        }
    }
    let bare = PreparedKey::new(
        Scheme::EcdsaP384Sha384Fixed,
        key.certificate().public_key_bytes(),
    )
    .unwrap();
    bare.verify(&report[..0x2a0], &sig).unwrap();

    let mut g = c.benchmark_group("snp");
    g.bench_function("bare ECDSA P-384 verify", |b| {
        b.iter(|| bare.verify(black_box(&report[..0x2a0]), &sig).unwrap())
    });
    g.bench_function("report verify (chain cached)", |b| {
        b.iter(|| key.verify_report(black_box(&report)).unwrap())
    });
    g.finish();
    let r_bare = rate(2.0, || {
        bare.verify(black_box(&report[..0x2a0]), &sig).unwrap()
    });
    let r_full = rate(2.0, || {
        key.verify_report(black_box(&report)).unwrap();
    });
    println!(
        "FIGURE snp: {r_full:.0} reports/s vs {r_bare:.0} bare P-384 verifies/s = {:.2} x (target >= 0.7)",
        r_full / r_bare
    );
}

fn tdx(c: &mut Criterion) {
    let quote = read("tdx/T1-dcap-qvl-v4/tdx_quote");
    let mut collateral = Collateral::new();
    collateral
        .add(&read("tdx/T1-dcap-qvl-v4/tdx_quote_collateral.json"))
        .unwrap();
    let anchors = TrustAnchors::builtin().unwrap();
    let inputs = Inputs {
        anchors: &anchors,
        now: UnixTime::from_secs(1_750_415_547),
        insecure_allow_simulated_tee: false,
    };
    let prepared = PreparedCollateral::new(TeeKind::Tdx, &collateral, &inputs).unwrap();
    prepared.verify(&quote).unwrap();

    // The two bare checks: quote signature (attestation key) and QE report signature (PCK),
    // at the offsets of a v4 quote with a TD 1.0 body.
    let signed_len = 48 + 584;
    let sig_data = signed_len + 4;
    let sig = &quote[sig_data..sig_data + 64];
    let mut att_key = vec![0x04];
    att_key.extend_from_slice(&quote[sig_data + 64..sig_data + 128]);
    let qe_at = sig_data + 128 + 6;
    let qe_report = &quote[qe_at..qe_at + 384];
    let qe_sig = &quote[qe_at + 384..qe_at + 448];
    let pem_start = quote.windows(5).position(|w| w == b"-----").unwrap();
    let leaf = confide_attest::Certificate::from_pem_chain(&quote[pem_start..])
        .unwrap()
        .remove(0);
    let att = PreparedKey::new(Scheme::EcdsaP256Sha256Fixed, &att_key).unwrap();
    let pck = PreparedKey::new(Scheme::EcdsaP256Sha256Fixed, leaf.public_key_bytes()).unwrap();
    let bare_pair = || {
        att.verify(black_box(&quote[..signed_len]), sig).unwrap();
        pck.verify(black_box(qe_report), qe_sig).unwrap();
    };
    bare_pair();

    let mut g = c.benchmark_group("tdx");
    g.bench_function("two bare ECDSA P-256 verifies", |b| b.iter(bare_pair));
    g.bench_function("quote verify (collateral cached)", |b| {
        b.iter(|| prepared.verify(black_box(&quote)).unwrap())
    });
    g.finish();
    let r_bare = rate(2.0, bare_pair);
    let r_full = rate(2.0, || {
        prepared.verify(black_box(&quote)).unwrap();
    });
    println!(
        "FIGURE tdx: {r_full:.0} quotes/s vs {r_bare:.0} bare pairs of P-256 verifies/s = {:.2} x (target >= 0.5)",
        r_full / r_bare
    );
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
}

criterion_group! { name = benches; config = config(); targets = snp, tdx }
criterion_main!(benches);

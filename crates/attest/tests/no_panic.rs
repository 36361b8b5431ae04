//! No input makes a verifier or the collateral reader panic: arbitrary bytes, and real
//! evidence and collateral with arbitrary bytes overwritten, are verified or refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use confide_attest::{Collateral, Inputs, TrustAnchors, UnixTime};
use proptest::prelude::*;

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/attestation")
            .join(rel),
    )
    .unwrap()
}

fn check_all(evidence: &[u8], collateral: &Collateral) {
    let anchors = TrustAnchors::builtin().unwrap();
    let inputs = Inputs {
        anchors: &anchors,
        now: UnixTime::from_secs(1_750_415_547),
        insecure_allow_simulated_tee: true,
    };
    for v in confide_attest::verifiers() {
        let _ = v.recognises(evidence);
        let _ = v.verify(evidence, collateral, &inputs);
    }
}

fn overwrite(mut bytes: Vec<u8>, edits: &[(usize, u8)]) -> Vec<u8> {
    for &(at, b) in edits {
        let len = bytes.len();
        bytes[at % len] = b;
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_evidence(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        check_all(&data, &Collateral::new());
        let _ = confide_attest::decode_text(&data);
    }

    #[test]
    fn arbitrary_collateral(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Collateral::new().add(&data);
    }

    #[test]
    fn mutated_quote_and_report(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut collateral = Collateral::new();
        collateral.add(&read("tdx/T1-dcap-qvl-v4/tdx_quote_collateral.json")).unwrap();
        collateral.add(&read("snp/S1-trustee-milan-vcek/test-vcek.der")).unwrap();
        check_all(&overwrite(read("tdx/T1-dcap-qvl-v4/tdx_quote"), &edits), &collateral);
        check_all(&overwrite(read("snp/S1-trustee-milan-vcek/test-report.bin"), &edits), &collateral);
    }

    #[test]
    fn mutated_collateral(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        for rel in [
            "tdx/T1-dcap-qvl-v4/tdx_quote_collateral.json",
            "tdx/T4-go-tdx-guest-spr-e4/sample_tcbInfo_response",
            "tdx/T4-go-tdx-guest-spr-e4/pckcrl",
            "snp/S7-aci-milan/uvm_host_amd_certificate.pem",
        ] {
            let _ = Collateral::new().add(&overwrite(read(rel), &edits));
        }
    }
}

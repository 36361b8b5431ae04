//! Any bytes, given as evidence to every verifier (with the recorded SNP and TDX collateral so
//! that parsing reaches the signature checks), must be refused or verified, never panic.

#![no_main]

use std::sync::OnceLock;

use confide_attest::{Collateral, Inputs, TrustAnchors, UnixTime};
use libfuzzer_sys::fuzz_target;

fn setup() -> &'static (TrustAnchors, Collateral) {
    static SETUP: OnceLock<(TrustAnchors, Collateral)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let mut c = Collateral::new();
        let _ = c.add(include_bytes!(
            "../../testdata/attestation/snp/S1-trustee-milan-vcek/test-vcek.der"
        ));
        let _ = c.add(include_bytes!(
            "../../testdata/attestation/tdx/T1-dcap-qvl-v4/tdx_quote_collateral.json"
        ));
        (TrustAnchors::builtin().expect("built-in roots"), c)
    })
}

fuzz_target!(|data: &[u8]| {
    let (anchors, collateral) = setup();
    let inputs = Inputs {
        anchors,
        now: UnixTime::from_secs(1_750_415_547),
        insecure_allow_simulated_tee: true,
    };
    for v in confide_attest::verifiers() {
        let _ = v.recognises(data);
        let _ = v.verify(data, collateral, &inputs);
    }
    let _ = confide_attest::decode_text(data);
});

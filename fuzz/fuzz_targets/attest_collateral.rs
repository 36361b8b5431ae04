//! Any bytes, given as collateral (certificates, CRLs, TCB info, QE identity, collateral JSON),
//! must be recognised or refused, never panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut c = confide_attest::Collateral::new();
    let _ = c.add(data);
});

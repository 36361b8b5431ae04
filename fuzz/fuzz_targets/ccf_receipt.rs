//! Any bytes, verified as a CCF receipt (JSON or COSE) against a real service certificate:
//! refused or verified, never a panic.

#![no_main]

use std::sync::OnceLock;

use confide_attest::Certificate;
use libfuzzer_sys::fuzz_target;

fn service() -> &'static Certificate {
    static CERT: OnceLock<Certificate> = OnceLock::new();
    CERT.get_or_init(|| {
        Certificate::from_pem_chain(include_bytes!(
            "../../testdata/receipts/ccf-json-receipt-1/service_cert.pem"
        ))
        .expect("the recorded service certificate")
        .into_iter()
        .next()
        .expect("one certificate")
    })
}

fuzz_target!(|data: &[u8]| {
    let cert = service();
    let _ = confide_ledger::ccf::verify_any(data, cert, None);
    let _ = confide_ledger::ccf::verify_cose(data, cert, Some(&[0; 32]));
    let _ = confide_ledger::ccf::verify_json(data, cert, None);
});

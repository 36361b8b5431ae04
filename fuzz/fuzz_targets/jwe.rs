//! Any bytes, read as a JWE (RFC 7516, as the KBS protocol returns a resource) and opened with
//! an EC and an RSA key: refused, never a panic.

#![no_main]

use std::sync::OnceLock;

use confide_crypto::jwe::DecryptionKey;
use libfuzzer_sys::fuzz_target;

fn keys() -> &'static [DecryptionKey; 2] {
    static KEYS: OnceLock<[DecryptionKey; 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        [
            DecryptionKey::generate_p256().expect("P-256 key"),
            DecryptionKey::generate_rsa().expect("RSA key"),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(jwe) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    for key in keys() {
        let _ = key.decrypt(&jwe);
    }
    let _ = confide_crypto::jwe::check_recipient(&jwe);
});

//! Fuzzes Cobblestone decryption of arbitrary ciphertext under a fixed key: it must never panic
//! and, once it has failed, must keep failing.
#![no_main]

use confide_crypto::chunked::{DecryptingReader, Suite};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = DecryptingReader::new(Suite::Cobblestone256, &[7u8; 32], b"fuzz", data)
    else {
        return;
    };
    loop {
        match reader.next_chunk() {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => {
                assert!(reader.next_chunk().is_err());
                break;
            }
        }
    }
});

//! Fuzzes the encrypted-file header parser, the first code to touch an untrusted file: it must
//! never panic, and whatever it accepts must be exactly the bytes it says it consumed, parsed
//! the same way from a stream.
#![no_main]

use confide_crypto::envelope::Header;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((header, len)) = Header::parse(data) {
        assert_eq!(header.as_bytes(), &data[..len]);
        assert!(header.recipients().count() >= 1);
        let streamed =
            Header::read_from(&mut &data[..]).expect("a parsed header reads from a stream");
        assert_eq!(streamed.as_bytes(), header.as_bytes());
    }
});

//! SHA-256, SHA-384 and SHA-512, one-shot, and SHA-256 incremental.

use aws_lc_rs::digest as lc;

/// Length of a SHA-256 digest in bytes.
pub const SHA256_LEN: usize = 32;

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; SHA256_LEN] {
    let mut out = [0u8; SHA256_LEN];
    out.copy_from_slice(lc::digest(&lc::SHA256, data).as_ref());
    out
}

/// SHA-384 of `data`.
pub fn sha384(data: &[u8]) -> [u8; 48] {
    let mut out = [0u8; 48];
    out.copy_from_slice(lc::digest(&lc::SHA384, data).as_ref());
    out
}

/// SHA-512 of `data`.
pub fn sha512(data: &[u8]) -> [u8; 64] {
    let mut out = [0u8; 64];
    out.copy_from_slice(lc::digest(&lc::SHA512, data).as_ref());
    out
}

/// An incremental SHA-256, for data that arrives in pieces.
#[derive(Clone)]
pub struct Sha256(lc::Context);

impl Sha256 {
    /// A hasher that has seen no data.
    pub fn new() -> Self {
        Self(lc::Context::new(&lc::SHA256))
    }

    /// Adds `data` to what has been hashed.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The digest of everything added.
    pub fn finish(self) -> [u8; SHA256_LEN] {
        let mut out = [0u8; SHA256_LEN];
        out.copy_from_slice(self.0.finish().as_ref());
        out
    }
}

impl Default for Sha256 {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sha256")
    }
}

/// The SHA-256 of everything `reader` gives (a file, read 1 MiB at a time).
pub fn sha256_reader<R: std::io::Read>(mut reader: R) -> std::io::Result<[u8; SHA256_LEN]> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = crate::chunked::read_full(&mut reader, &mut buf)?;
        if n == 0 {
            return Ok(hasher.finish());
        }
        hasher.update(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // FIPS 180-2 appendix B.1 and C.1: the digests of "abc".
    #[test]
    fn known_answers_for_abc() {
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(hex(&sha512(b"abc")).starts_with("ddaf35a193617aba"));
    }

    #[test]
    fn incremental_equals_one_shot() {
        let mut h = Sha256::new();
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(h.finish(), sha256(b"abc"));
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}

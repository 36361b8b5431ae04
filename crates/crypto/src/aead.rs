//! Sealing small secrets at rest: AES-256-GCM with a random 96-bit nonce, for keys stored
//! under a master key. Output: `nonce ‖ ciphertext ‖ tag`. The associated data names what the
//! secret is (e.g. a key's name and version), so a sealed value cannot be moved to another name.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use zeroize::Zeroizing;

use crate::{CryptoError, random};

/// Length of a sealing key.
pub const KEY_LEN: usize = 32;
/// Bytes sealing adds: nonce and tag.
pub const OVERHEAD: usize = NONCE_LEN + 16;

/// An AES-256-GCM key for sealing secrets at rest. Zeroized on drop; never printed.
#[derive(Clone)]
pub struct SealingKey(Zeroizing<[u8; KEY_LEN]>);

impl SealingKey {
    /// A key from 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; KEY_LEN] = bytes.try_into().map_err(|_| CryptoError::InvalidKey {
            what: "AES-256-GCM key (32 bytes)",
        })?;
        Ok(Self(Zeroizing::new(arr)))
    }

    /// A fresh key from the system random generator.
    pub fn generate() -> Result<Self, CryptoError> {
        Ok(Self(Zeroizing::new(random::array::<KEY_LEN>()?)))
    }

    /// The key's bytes, for writing it where it is kept (a recovery share, a sealed file).
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    fn key(&self) -> Result<LessSafeKey, CryptoError> {
        let unbound =
            UnboundKey::new(&AES_256_GCM, &self.0[..]).map_err(|_| CryptoError::Internal {
                operation: "AES-256-GCM key setup",
            })?;
        Ok(LessSafeKey::new(unbound))
    }

    /// Seals `plaintext` bound to `aad`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let nonce = random::array::<NONCE_LEN>()?;
        let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .key()?
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut out[NONCE_LEN..],
            )
            .map_err(|_| CryptoError::Internal {
                operation: "AES-256-GCM seal",
            })?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Opens what [`SealingKey::seal`] made with the same `aad`.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if sealed.len() < OVERHEAD {
            return Err(CryptoError::BadSignature);
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let mut buf = Zeroizing::new(rest.to_vec());
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::BadSignature)?;
        let len = self
            .key()?
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf,
            )
            .map_err(|_| CryptoError::BadSignature)?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_refuses_another_aad_key_or_byte() {
        let k = SealingKey::generate().unwrap();
        let sealed = k.seal(b"data key", b"k1/v1").unwrap();
        assert_eq!(sealed.len(), 8 + OVERHEAD);
        assert_eq!(&k.open(&sealed, b"k1/v1").unwrap()[..], b"data key");
        assert!(k.open(&sealed, b"k1/v2").is_err());
        assert!(
            SealingKey::generate()
                .unwrap()
                .open(&sealed, b"k1/v1")
                .is_err()
        );
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 1;
            assert!(k.open(&t, b"k1/v1").is_err());
        }
        assert!(k.open(&sealed[..OVERHEAD - 1], b"").is_err());
        assert_ne!(k.seal(b"x", b"").unwrap(), k.seal(b"x", b"").unwrap());
    }
}

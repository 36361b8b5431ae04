//! The only place in confide that calls cryptographic primitives.
//!
//! Everything else in the workspace reaches AEAD, hashing, key derivation, signatures and HPKE
//! through this crate, so the choice of backend (aws-lc-rs, plus the `hpke` crate for RFC 9180)
//! and every parameter lives in one reviewable place. Secret key types zeroize their bytes when
//! dropped and never print them.
//!
//! - [`aead`]: AES-256-GCM sealing of small secrets at rest, under a master key.
//! - [`byok`]: importing keys wrapped with `CKM_RSA_AES_KEY_WRAP` to a key-exchange key.
//! - [`chunked`]: C2SP chunked encryption (Cobblestone), the streaming AEAD under every file.
//! - [`envelope`]: the confide encrypted file format: a header that wraps a fresh data key to
//!   each recipient, then a Cobblestone-256 body bound to that header.
//! - [`hpke`]: RFC 9180 base mode, used to wrap keys to a recipient's X25519 key.
//! - [`jwe`]: JSON Web Encryption (flattened) to a JWK, for the KBS protocol.
//! - [`shamir`]: k-of-n secret sharing, for the key broker's recovery shares.
//! - [`signing`]: ECDSA P-256 keys that identify members.
//! - [`verify`]: checking signatures made by others (hardware vendors, CAs, TPMs) in the
//!   ECDSA and RSA schemes they use.
//! - [`digest`] and [`random`]: SHA-2 and the system random generator.

#![forbid(unsafe_code)]

pub mod aead;
pub mod byok;
pub mod chunked;
pub mod digest;
pub mod envelope;
mod error;
pub mod files;
pub mod hpke;
pub mod jcs;
pub mod jwe;
pub mod random;
pub mod shamir;
pub mod signing;
pub mod verify;

pub use error::CryptoError;

/// The DER inside one PEM block labelled `label` (e.g. `PUBLIC KEY`), surrounding whitespace
/// ignored.
pub fn pem_decode(text: &str, label: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let body = text
        .trim()
        .strip_prefix(&format!("-----BEGIN {label}-----"))?
        .strip_suffix(&format!("-----END {label}-----"))?;
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

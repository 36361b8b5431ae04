//! The error shared by the primitive wrappers in this crate.

/// A primitive refused its input or could not run.
///
/// Messages name what was wrong with the input but never include key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The operating system's random generator failed; nothing random was produced.
    #[error("the system random number generator failed")]
    RandomUnavailable,
    /// Bytes that should encode a key do not encode a valid one.
    #[error("invalid {what}")]
    InvalidKey {
        /// Which kind of key was expected, for example "ECDSA P-256 public key".
        what: &'static str,
    },
    /// A signature does not verify under the given key and message.
    #[error("the signature does not verify")]
    BadSignature,
    /// An HPKE ciphertext does not open with the given key, info and associated data.
    #[error("HPKE decryption failed: wrong key, or the ciphertext or its context was modified")]
    HpkeOpen,
    /// A JSON Web Encryption object or key is unusable; `what` says which part.
    #[error("JWE: {what}")]
    Jwe {
        /// What was wrong.
        what: &'static str,
    },
    /// A wrapped key for import (BYOK) is unusable; `what` says which part.
    #[error("the wrapped key: {what}")]
    Byok {
        /// What was wrong.
        what: &'static str,
    },
    /// Secret shares are unusable; `what` says why.
    #[error("secret shares: {what}")]
    Shares {
        /// What was wrong.
        what: &'static str,
    },
    /// A primitive failed on input it should have accepted; this is a bug, not bad input.
    #[error("internal cryptographic failure in {operation}")]
    Internal {
        /// The operation that failed.
        operation: &'static str,
    },
}

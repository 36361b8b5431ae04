//! Member identities: who a member is, as keys.
//!
//! A member is a name, an ECDSA P-256 signing key (for governance requests) and an X25519 HPKE
//! key (so data and results can be encrypted to it). [`PublicIdentity`] is the document a member
//! hands to the others; its fingerprint is a hash of both public keys, so two documents with the
//! same fingerprint name the same keys. [`Home`] keeps a member's own identity on disk: the
//! private keys in a file only its owner can read, written so that a failed or repeated
//! `init` never leaves a half-made or overwritten identity.

#![forbid(unsafe_code)]

mod home;
mod public;

pub use home::{Home, Identity};
pub use public::{Fingerprint, MemberName, PublicIdentity};

use std::path::PathBuf;

use confide_crypto::CryptoError;

/// Why an identity could not be created, read or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// A member name breaks the naming rules.
    #[error("invalid member name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// `init` would overwrite an identity.
    #[error("an identity already exists at {}; refusing to overwrite it", path.display())]
    AlreadyExists {
        /// The file that is already there.
        path: PathBuf,
    },
    /// The home directory holds no identity.
    #[error("no member identity in {}; create one with `confide member init --name NAME`", home.display())]
    NotFound {
        /// The home directory searched.
        home: PathBuf,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A file is not a well-formed identity or key file.
    #[error("{} is not a valid {what}: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What it should have been.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A public identity's stated fingerprint is not the fingerprint of its keys.
    #[error("{}: the stated fingerprint {stated} does not match its keys ({actual})", path.display())]
    FingerprintMismatch {
        /// The document.
        path: PathBuf,
        /// The fingerprint the document states.
        stated: String,
        /// The fingerprint of the keys it holds.
        actual: String,
    },
    /// The private keys in a home directory are not those of its public identity.
    #[error("the private keys in {} do not belong to the identity next to them", home.display())]
    KeysDoNotMatch {
        /// The home directory.
        home: PathBuf,
    },
    /// The private key file can be read by other users.
    #[error("{} is readable by other users (mode {mode:o}); run `chmod 600` on it", path.display())]
    InsecurePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key could not be generated or parsed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

//! Why evidence was not accepted, precise enough to act on.

use std::fmt;

/// Evidence or its endorsements failed a check. Each variant names the check in `what`, in
/// words a person can act on; none carries secret material (evidence is not secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttestError {
    /// The bytes do not have the structure the format requires.
    #[error("malformed {what}")]
    Malformed {
        /// What could not be parsed, and where.
        what: String,
    },
    /// A well-formed value that this verifier does not support (a version, an algorithm).
    #[error("unsupported {what}")]
    Unsupported {
        /// What is not supported.
        what: String,
    },
    /// A signature did not verify.
    #[error("signature check failed: {what}")]
    BadSignature {
        /// Whose signature over what.
        what: String,
    },
    /// A certificate chain does not end at a pinned vendor root.
    #[error("not rooted in a trusted key: {what}")]
    UntrustedRoot {
        /// Which chain.
        what: String,
    },
    /// Two values that must agree do not (a binding, an identity, a TCB).
    #[error("mismatch: {what}")]
    Mismatch {
        /// Which values.
        what: String,
    },
    /// A certificate, CRL or collateral item is not valid at the time of verification.
    #[error("{what} is not valid at {at} (valid from {from} to {to})")]
    NotValidAtTime {
        /// Which item.
        what: String,
        /// The time of verification.
        at: String,
        /// Start of the item's validity.
        from: String,
        /// End of the item's validity.
        to: String,
    },
    /// A certificate is on its issuer's revocation list.
    #[error("revoked: {what}")]
    Revoked {
        /// Which certificate.
        what: String,
    },
    /// Something needed to decide is absent: the verifier cannot decide, so it says no.
    #[error("cannot decide without {what}")]
    Missing {
        /// What was needed.
        what: String,
    },
    /// The TCB matched no level of the vendor's TCB information.
    #[error("TCB status cannot be established: {what}")]
    TcbUnknown {
        /// Which part of the TCB.
        what: String,
        /// The stable code for the failure.
        code: ReasonCode,
    },
    /// Simulated evidence offered where the caller did not allow it.
    #[error(
        "simulated evidence (kind `sim`) is refused: it proves nothing about hardware; \
         accept it only in development, with insecure_allow_simulated_tee"
    )]
    SimulatedNotAllowed,
}

impl AttestError {
    pub(crate) fn malformed(what: impl Into<String>) -> Self {
        Self::Malformed { what: what.into() }
    }

    pub(crate) fn unsupported(what: impl Into<String>) -> Self {
        Self::Unsupported { what: what.into() }
    }

    pub(crate) fn signature(what: impl Into<String>) -> Self {
        Self::BadSignature { what: what.into() }
    }

    pub(crate) fn mismatch(what: impl Into<String>) -> Self {
        Self::Mismatch { what: what.into() }
    }

    pub(crate) fn missing(what: impl Into<String>) -> Self {
        Self::Missing { what: what.into() }
    }

    /// The stable code for this failure, as the attestation test cases name them.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            Self::NotValidAtTime { .. } => ReasonCode::NotValidAtTime,
            Self::Revoked { .. } => ReasonCode::Revoked,
            Self::Missing { .. } => ReasonCode::Undetermined,
            Self::TcbUnknown { code, .. } => *code,
            Self::SimulatedNotAllowed => ReasonCode::SimulatedTee,
            Self::Malformed { .. }
            | Self::Unsupported { .. }
            | Self::BadSignature { .. }
            | Self::UntrustedRoot { .. }
            | Self::Mismatch { .. } => ReasonCode::InvalidEvidence,
        }
    }
}

/// Stable, machine-readable codes for why evidence was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum ReasonCode {
    /// Not authentic: a parse, signature, chain or binding check failed.
    InvalidEvidence,
    /// A certificate, CRL or collateral item is outside its validity window.
    NotValidAtTime,
    /// A certificate in the chain is revoked.
    Revoked,
    /// The platform TCB matches no level in the TCB information.
    TcbLevelNotSupported,
    /// The TDX module matches no module identity in the TCB information.
    TdxModuleMismatch,
    /// The TCB status is Revoked.
    TcbRevoked,
    /// The quoting enclave's ISVSVN matches no level in the QE identity.
    QeTcbNotSupported,
    /// The guest or enclave runs with debugging enabled.
    DebugEnabled,
    /// Simulated evidence, refused without the insecure switch.
    SimulatedTee,
    /// Something needed to decide was missing.
    Undetermined,
}

impl ReasonCode {
    /// The code as text, e.g. `NOT_VALID_AT_TIME`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidEvidence => "INVALID_EVIDENCE",
            Self::NotValidAtTime => "NOT_VALID_AT_TIME",
            Self::Revoked => "REVOKED",
            Self::TcbLevelNotSupported => "TCB_LEVEL_NOT_SUPPORTED",
            Self::TdxModuleMismatch => "TDX_MODULE_MISMATCH",
            Self::TcbRevoked => "TCB_REVOKED",
            Self::QeTcbNotSupported => "QE_TCB_NOT_SUPPORTED",
            Self::DebugEnabled => "DEBUG_ENABLED",
            Self::SimulatedTee => "SIMULATED_TEE",
            Self::Undetermined => "UNDETERMINED",
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

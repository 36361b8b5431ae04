//! Attestation verification: deciding, offline, whether evidence from a trusted execution
//! environment is authentic, and what it says.
//!
//! One module per kind of evidence ([`snp`], [`dcap`] for TDX and SGX, [`azure`] for Azure
//! confidential VMs with a vTPM, [`nvidia`], [`sim`]), each behind the
//! [`Verifier`] trait. A verifier takes the evidence bytes, the [`Collateral`] that endorses
//! them, the [`TrustAnchors`] (vendor roots pinned by key) and the time of verification, and
//! does no I/O and reads no clock. It returns [`VerifiedClaims`], which only a verifier can
//! build, or an [`AttestError`] naming the check that failed. Whether authentic evidence is
//! *acceptable* is a separate step: [`baseline::appraise`] applies the minimum every use needs
//! (debug off, a TCB status that is neither revoked nor unknown); policies add the rest.

#![forbid(unsafe_code)]

pub mod azure;
pub mod baseline;
mod claims;
mod collateral;
pub mod dcap;
mod der;
mod error;
pub mod nvidia;
mod roots;
pub mod sim;
pub mod snp;
mod time;
mod x509;

pub use claims::{Hex, Tcb, TcbStatus, TeeKind, VerifiedClaims};
pub use collateral::{Collateral, Recognised};
pub use error::{AttestError, ReasonCode};
pub use roots::TrustAnchors;
pub use time::UnixTime;
pub use x509::{Certificate, Crl};

/// What every verification takes besides the evidence and its collateral.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The roots to chain to.
    pub anchors: &'a TrustAnchors,
    /// The time of verification: certificates, CRLs and collateral must be valid then.
    pub now: UnixTime,
    /// Accept simulated evidence (kind `sim`). Insecure: for development only.
    pub insecure_allow_simulated_tee: bool,
}

/// Verifies one kind of evidence.
pub trait Verifier: std::fmt::Debug + Send + Sync {
    /// The kind of evidence this verifier handles.
    fn kind(&self) -> TeeKind;

    /// Whether `evidence` has this kind's structure (a cheap check, for detecting the kind).
    fn recognises(&self, evidence: &[u8]) -> bool;

    /// Checks `evidence` against `collateral` and `inputs`.
    fn verify(
        &self,
        evidence: &[u8],
        collateral: &Collateral,
        inputs: &Inputs<'_>,
    ) -> Result<VerifiedClaims, AttestError>;
}

/// Every verifier this crate has.
pub fn verifiers() -> [&'static dyn Verifier; 8] {
    [
        &snp::SnpVerifier,
        &dcap::TdxVerifier,
        &dcap::SgxVerifier,
        &azure::AzureSnpVerifier,
        &azure::AzureTdxVerifier,
        &nvidia::NvidiaVerifier,
        &sim::SimVerifier,
        &sim::SampleVerifier,
    ]
}

/// The verifier for `kind`.
pub fn verifier(kind: TeeKind) -> Option<&'static dyn Verifier> {
    verifiers().into_iter().find(|v| v.kind() == kind)
}

/// The verifier whose structure `evidence` has, if exactly one recognises it.
pub fn detect(evidence: &[u8]) -> Option<&'static dyn Verifier> {
    let mut found = verifiers().into_iter().filter(|v| v.recognises(evidence));
    match (found.next(), found.next()) {
        (Some(v), None) => Some(v),
        _ => None,
    }
}

/// Evidence as files carry it: binary, or the same bytes as hex or base64 text (surrounding
/// whitespace ignored). Text that is neither is returned as it is, for verifiers whose format
/// is text (JSON).
pub fn decode_text(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    use base64::Engine as _;
    let text: Vec<u8> = bytes
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if text.is_empty() || text.len() < bytes.len() / 2 {
        return bytes.into();
    }
    if text.len().is_multiple_of(2)
        && text.iter().all(u8::is_ascii_hexdigit)
        && let Ok(raw) = hex::decode(&text)
    {
        return raw.into();
    }
    let b64 = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_');
    if text.iter().all(b64) {
        for engine in [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::URL_SAFE,
        ] {
            if let Ok(raw) = engine.decode(&text) {
                return raw.into();
            }
        }
        if let Ok(raw) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&text) {
            return raw.into();
        }
    }
    bytes.into()
}

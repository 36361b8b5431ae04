//! The system random generator (aws-lc-rs), the only source of randomness in confide.

use crate::CryptoError;

/// Fills `out` with random bytes from the operating system's generator.
pub fn fill(out: &mut [u8]) -> Result<(), CryptoError> {
    aws_lc_rs::rand::fill(out).map_err(|_| CryptoError::RandomUnavailable)
}

/// Returns `N` random bytes.
pub fn array<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut out = [0u8; N];
    fill(&mut out)?;
    Ok(out)
}

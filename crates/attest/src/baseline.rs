//! The baseline policy: what every use of attestation requires of authentic evidence.
//!
//! Authentic evidence is refused if the guest or enclave can be debugged, or if Intel's TCB
//! status is `Revoked` or could not be matched. Every other TCB status, including `OutOfDate`,
//! passes here and is reported, as Intel's QVL does; refusing it is the deployment's policy, as
//! are measurements, minimum TCB versions and VMPL.

use crate::{ReasonCode, TcbStatus, VerifiedClaims};

/// Why authentic evidence fails the baseline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Rejection {
    /// The stable code.
    pub code: ReasonCode,
    /// What was found.
    pub reason: String,
}

/// Applies the baseline policy to `claims`.
pub fn appraise(claims: &VerifiedClaims) -> Result<(), Rejection> {
    match claims.tcb().status {
        Some(TcbStatus::Revoked) => {
            return Err(Rejection {
                code: ReasonCode::TcbRevoked,
                reason: "the platform's TCB status is Revoked".into(),
            });
        }
        Some(TcbStatus::NotSupported) => {
            return Err(Rejection {
                code: ReasonCode::TcbLevelNotSupported,
                reason: "the platform's TCB matches no level in Intel's TCB info".into(),
            });
        }
        _ => {}
    }
    if claims.debug() && !claims.simulated() {
        return Err(Rejection {
            code: ReasonCode::DebugEnabled,
            reason: format!(
                "the {} guest or enclave runs with debugging enabled: the host can read its memory",
                claims.kind()
            ),
        });
    }
    Ok(())
}

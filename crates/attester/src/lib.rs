//! Evidence collection inside a guest: the attester half of remote attestation.
//!
//! A workload asks for evidence whose report data binds what it wants to prove (a hash of a
//! nonce and its ephemeral key). On Linux guests with TDX or SEV-SNP the kernel's configfs-tsm
//! interface produces it ([`tsm`]); SEV-SNP guests on older kernels have `/dev/sev-guest`
//! ([`sev_guest`], the one place with unsafe code: an ioctl); elsewhere only simulated evidence
//! exists ([`Attester::Sim`]).
//! Detection is explicit: [`Attester::detect`] fails when no TEE is found, and simulated
//! evidence is produced only when the caller asks for it. There is no fallback.

// Unsafe code is denied, and allowed only on the `/dev/sev-guest` ioctl.
#![deny(unsafe_code)]

pub mod sev_guest;
pub mod tsm;

use std::path::PathBuf;

use confide_attest::TeeKind;

/// Why evidence could not be collected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttesterError {
    /// No TEE interface exists on this machine.
    #[error(
        "no TEE found on this machine (no {0}); pass --sim for simulated evidence, which proves \
         nothing about hardware"
    )]
    NoTee(String),
    /// The interface exists but misbehaved, or reported something this attester does not know.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The interface answered, but not as the kernel ABI says it should.
    #[error("configfs-tsm: {0}")]
    Protocol(String),
    /// Making simulated evidence failed.
    #[error("simulated evidence: {0}")]
    Sim(#[from] confide_attest::AttestError),
}

/// Evidence as collected, with what the platform gave alongside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collected {
    /// The kind of evidence.
    pub kind: TeeKind,
    /// The report or quote (configfs-tsm `outblob`), or simulated evidence.
    pub evidence: Vec<u8>,
    /// Endorsements the platform supplied (SEV-SNP: the host's certificate table), if any.
    pub auxblob: Option<Vec<u8>>,
}

/// A source of evidence on this machine.
#[derive(Debug, Clone)]
pub enum Attester {
    /// The kernel's configfs-tsm report interface at this directory.
    ConfigfsTsm(PathBuf),
    /// The SEV guest device (SEV-SNP on kernels before configfs-tsm).
    SevGuest(PathBuf),
    /// Simulated evidence signed by the development key. Insecure.
    Sim,
}

/// Where the kernel mounts configfs-tsm reports.
pub const TSM_REPORT_DIR: &str = "/sys/kernel/config/tsm/report";

impl Attester {
    /// The TEE interface of this machine (configfs-tsm, else `/dev/sev-guest`), or
    /// [`AttesterError::NoTee`].
    pub fn detect() -> Result<Self, AttesterError> {
        let dir = PathBuf::from(TSM_REPORT_DIR);
        let device = PathBuf::from(sev_guest::DEVICE);
        if dir.is_dir() {
            Ok(Self::ConfigfsTsm(dir))
        } else if device.exists() {
            Ok(Self::SevGuest(device))
        } else {
            Err(AttesterError::NoTee(format!(
                "{TSM_REPORT_DIR} or {}",
                sev_guest::DEVICE
            )))
        }
    }

    /// Collects evidence binding `report_data`.
    pub fn collect(&self, report_data: &[u8; 64]) -> Result<Collected, AttesterError> {
        match self {
            Self::ConfigfsTsm(dir) => tsm::Tsm::new(tsm::RealFs, dir.clone()).collect(report_data),
            Self::SevGuest(device) => sev_guest::collect(device, report_data),
            Self::Sim => Ok(Collected {
                kind: TeeKind::Sim,
                evidence: confide_attest::sim::simulate(
                    &confide_attest::sim::default_measurement(),
                    report_data,
                )?,
                auxblob: None,
            }),
        }
    }
}

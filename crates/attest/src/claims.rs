//! Normalised claims: what verified evidence says, in the same shape whatever the TEE.
//!
//! A [`VerifiedClaims`] can only be built inside this crate, by a verifier that has checked the
//! evidence; holding one means the evidence was authentic at the time given. Whether it is
//! *acceptable* (debug off, TCB current, the right measurement) is appraisal: see
//! [`crate::baseline`] and, in the service, the Rego policies.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// The kinds of evidence confide verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum TeeKind {
    /// An AMD SEV-SNP attestation report.
    SevSnp,
    /// An Intel TDX quote (DCAP, v4 or v5).
    Tdx,
    /// An Intel SGX quote (DCAP, v3).
    Sgx,
    /// An NVIDIA GPU's signed SPDM measurements (Hopper).
    NvidiaGpu,
    /// An Azure confidential VM on SEV-SNP: vTPM quote bound to an SNP report by the HCL.
    AzureSnpVtpm,
    /// An Azure confidential VM on TDX: vTPM quote bound to a TD report and its quote.
    AzureTdxVtpm,
    /// Simulated evidence signed by a development key; proves nothing about hardware.
    Sim,
    /// Trustee's `sample` evidence: unsigned JSON for testing KBS clients; proves nothing.
    Sample,
}

impl TeeKind {
    /// Every kind, in the order verifiers are tried.
    pub const ALL: [TeeKind; 8] = [
        Self::SevSnp,
        Self::Tdx,
        Self::Sgx,
        Self::AzureSnpVtpm,
        Self::AzureTdxVtpm,
        Self::NvidiaGpu,
        Self::Sim,
        Self::Sample,
    ];

    /// The kind named `name` (as [`TeeKind::as_str`] spells it).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The kind's primary measurement: the claim (among the normalised measurements) that
    /// names the code it runs, and its length in bytes. The one table of it: contracts, the
    /// key broker and the attestation service all read it from here. `None` for evidence that
    /// measures nothing (`sample`).
    pub fn primary_measurement(self) -> Option<(&'static str, usize)> {
        Some(match self {
            Self::SevSnp | Self::AzureSnpVtpm | Self::Sim => ("measurement", 48),
            Self::Tdx | Self::AzureTdxVtpm => ("mr_td", 48),
            Self::Sgx => ("mr_enclave", 32),
            Self::NvidiaGpu => ("measurements_sha256", 32),
            Self::Sample => return None,
        })
    }

    /// The kind's name as the command line and the service spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SevSnp => "sev-snp",
            Self::Tdx => "tdx",
            Self::Sgx => "sgx",
            Self::NvidiaGpu => "nvidia-gpu",
            Self::AzureSnpVtpm => "azure-snp-vtpm",
            Self::AzureTdxVtpm => "azure-tdx-vtpm",
            Self::Sim => "sim",
            Self::Sample => "sample",
        }
    }
}

impl fmt::Display for TeeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Bytes that print and serialise as lowercase hex.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hex(pub Vec<u8>);

impl Hex {
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl From<&[u8]> for Hex {
    fn from(b: &[u8]) -> Self {
        Self(b.to_vec())
    }
}

impl fmt::Debug for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl fmt::Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl Serialize for Hex {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}

/// Intel's TCB status of a platform (DCAP), after combining the platform, TDX module and
/// quoting enclave. SEV-SNP has no such status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub enum TcbStatus {
    /// Patched to the latest TCB.
    UpToDate,
    /// Up to date, but software mitigations are needed.
    SWHardeningNeeded,
    /// Up to date, but the platform's configuration needs changing.
    ConfigurationNeeded,
    /// Both of the above.
    ConfigurationAndSWHardeningNeeded,
    /// A newer TCB exists.
    OutOfDate,
    /// Out of date and the configuration needs changing.
    OutOfDateConfigurationNeeded,
    /// The TCB is revoked.
    Revoked,
    /// No TCB level in the collateral matched the platform.
    #[serde(rename = "TCB_NOT_SUPPORTED")]
    NotSupported,
}

impl TcbStatus {
    /// Parses the status names Intel's TCB info and QE identity use.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "UpToDate" => Self::UpToDate,
            "SWHardeningNeeded" => Self::SWHardeningNeeded,
            "ConfigurationNeeded" => Self::ConfigurationNeeded,
            "ConfigurationAndSWHardeningNeeded" => Self::ConfigurationAndSWHardeningNeeded,
            "OutOfDate" => Self::OutOfDate,
            "OutOfDateConfigurationNeeded" => Self::OutOfDateConfigurationNeeded,
            "Revoked" => Self::Revoked,
            _ => return None,
        })
    }

    /// The name as Intel writes it (and `TCB_NOT_SUPPORTED`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UpToDate => "UpToDate",
            Self::SWHardeningNeeded => "SWHardeningNeeded",
            Self::ConfigurationNeeded => "ConfigurationNeeded",
            Self::ConfigurationAndSWHardeningNeeded => "ConfigurationAndSWHardeningNeeded",
            Self::OutOfDate => "OutOfDate",
            Self::OutOfDateConfigurationNeeded => "OutOfDateConfigurationNeeded",
            Self::Revoked => "Revoked",
            Self::NotSupported => "TCB_NOT_SUPPORTED",
        }
    }
}

/// The platform's trusted computing base: its status where the vendor defines one, and the
/// security version numbers it was measured at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tcb {
    /// DCAP's combined TCB status; `None` where the platform defines none (SEV-SNP, sim).
    pub status: Option<TcbStatus>,
    /// Intel security advisories that apply (platform first, then TDX module, then QE).
    pub advisory_ids: Vec<String>,
    /// Security version numbers by name, e.g. `snp`, `microcode`, `isv_svn`, `pce_svn`.
    pub svns: BTreeMap<String, u64>,
}

/// What authentic evidence says, normalised across TEE kinds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifiedClaims {
    pub(crate) kind: TeeKind,
    pub(crate) simulated: bool,
    pub(crate) debug: bool,
    pub(crate) measurements: BTreeMap<&'static str, Hex>,
    pub(crate) report_data: Hex,
    pub(crate) host_data: Option<Hex>,
    pub(crate) platform_id: Option<Hex>,
    pub(crate) tcb: Tcb,
    pub(crate) details: serde_json::Value,
    pub(crate) report: Hex,
}

impl VerifiedClaims {
    /// The kind of TEE that produced the evidence.
    pub fn kind(&self) -> TeeKind {
        self.kind
    }

    /// Whether the evidence is simulated (kind `sim`). Everything derived from such evidence
    /// must say so.
    pub fn simulated(&self) -> bool {
        self.simulated
    }

    /// Whether the guest or enclave can be debugged (its memory read by the host).
    pub fn debug(&self) -> bool {
        self.debug
    }

    /// Measurements by name: `measurement` (SNP); `mr_td`, `rtmr0`–`rtmr3`, `mr_seam` (TDX);
    /// `mr_enclave`, `mr_signer` (SGX).
    pub fn measurements(&self) -> &BTreeMap<&'static str, Hex> {
        &self.measurements
    }

    /// The measurement by `name`, if the evidence has one.
    pub fn measurement(&self, name: &str) -> Option<&[u8]> {
        self.measurements.get(name).map(Hex::as_bytes)
    }

    /// The 64 bytes the workload bound into the evidence (a hash of its nonce and key).
    pub fn report_data(&self) -> &[u8] {
        self.report_data.as_bytes()
    }

    /// Data the host or launcher bound at launch: SNP `HOST_DATA`, TDX `MRCONFIGID`, SGX
    /// `CONFIGID`.
    pub fn host_data(&self) -> Option<&[u8]> {
        self.host_data.as_ref().map(Hex::as_bytes)
    }

    /// The chip or platform identity: SNP `CHIP_ID`, DCAP FMSPC.
    pub fn platform_id(&self) -> Option<&[u8]> {
        self.platform_id.as_ref().map(Hex::as_bytes)
    }

    /// The TCB status, advisories and security versions.
    pub fn tcb(&self) -> &Tcb {
        &self.tcb
    }

    /// Every field of the evidence and its endorsements, by the vendor's names, for policies
    /// that need more than the normalised claims.
    pub fn details(&self) -> &serde_json::Value {
        &self.details
    }

    /// The signed report or quote bytes as verified.
    pub fn report(&self) -> &[u8] {
        self.report.as_bytes()
    }
}

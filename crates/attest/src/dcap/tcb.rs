//! Intel's TCB info and QE identity, and the TCB evaluation of the DCAP algorithm: match the
//! platform against the TCB levels, appraise the TDX module and the quoting enclave, and
//! converge the three statuses the way Intel's quote verification library does
//! (`TcbLevelCheck`, `TdxModuleCheck`, `QeIdentity` in SGXDataCenterAttestationPrimitives).

use serde::Deserialize;

use crate::{AttestError, ReasonCode, TcbStatus, UnixTime};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TcbInfo {
    #[serde(default)]
    pub(crate) id: Option<String>,
    pub(crate) version: u32,
    pub(crate) issue_date: String,
    pub(crate) next_update: String,
    pub(crate) fmspc: String,
    pub(crate) pce_id: String,
    #[serde(default)]
    pub(crate) tcb_evaluation_data_number: Option<u32>,
    #[serde(default)]
    pub(crate) tdx_module: Option<TdxModule>,
    #[serde(default)]
    pub(crate) tdx_module_identities: Option<Vec<TdxModuleIdentity>>,
    pub(crate) tcb_levels: Vec<TcbLevel>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TdxModule {
    pub(crate) mrsigner: String,
    pub(crate) attributes: String,
    pub(crate) attributes_mask: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TdxModuleIdentity {
    pub(crate) id: String,
    pub(crate) mrsigner: String,
    pub(crate) attributes: String,
    pub(crate) attributes_mask: String,
    pub(crate) tcb_levels: Vec<SvnLevel>,
}

/// A level of the platform TCB: component SVNs (in either of Intel's two layouts) and status.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TcbLevel {
    pub(crate) tcb: serde_json::Value,
    #[serde(default)]
    pub(crate) tcb_date: Option<String>,
    pub(crate) tcb_status: String,
    #[serde(default, rename = "advisoryIDs")]
    pub(crate) advisory_ids: Vec<String>,
}

/// A level keyed by one ISVSVN (QE identity, TDX module identity).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SvnLevel {
    pub(crate) tcb: IsvSvn,
    #[serde(default)]
    pub(crate) tcb_date: Option<String>,
    pub(crate) tcb_status: String,
    #[serde(default, rename = "advisoryIDs")]
    pub(crate) advisory_ids: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct IsvSvn {
    pub(crate) isvsvn: u16,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct QeIdentity {
    pub(crate) id: String,
    pub(crate) version: u32,
    pub(crate) issue_date: String,
    pub(crate) next_update: String,
    #[serde(default)]
    pub(crate) tcb_evaluation_data_number: Option<u32>,
    pub(crate) miscselect: String,
    pub(crate) miscselect_mask: String,
    pub(crate) attributes: String,
    pub(crate) attributes_mask: String,
    pub(crate) mrsigner: String,
    pub(crate) isvprodid: u16,
    pub(crate) tcb_levels: Vec<SvnLevel>,
}

/// Checks `issueDate <= now <= nextUpdate` for signed collateral.
pub(crate) fn check_window(
    what: &str,
    issue_date: &str,
    next_update: &str,
    now: UnixTime,
) -> Result<(), AttestError> {
    let from = UnixTime::parse_rfc3339(issue_date)?;
    let to = UnixTime::parse_rfc3339(next_update)?;
    now.check_within(what, from, to)
}

pub(crate) fn parse_status(text: &str, what: &str) -> Result<TcbStatus, AttestError> {
    TcbStatus::parse(text)
        .ok_or_else(|| AttestError::malformed(format!("{what}: unknown TCB status {text:?}")))
}

/// The platform's TCB as the PCK certificate and the TD report give it.
#[derive(Debug, Clone)]
pub(crate) struct PlatformTcb<'a> {
    pub(crate) sgx_components: [u8; 16],
    pub(crate) pce_svn: u16,
    /// TEE_TCB_SVN of a TD report; `None` for SGX.
    pub(crate) tdx_components: Option<&'a [u8]>,
}

/// The level the platform matched, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Matched {
    pub(crate) status: TcbStatus,
    pub(crate) advisory_ids: Vec<String>,
    pub(crate) tcb_date: Option<String>,
}

impl TcbLevel {
    /// The level's 16 SGX component SVNs and PCESVN (TCB info v2 `sgxtcbcompNNsvn` fields, or
    /// v3 `sgxtcbcomponents`), and the 16 TDX component SVNs where present.
    #[allow(clippy::type_complexity)]
    fn components(&self) -> Result<([u8; 16], u16, Option<[u8; 16]>), AttestError> {
        let bad = || AttestError::malformed("TCB info level: component SVNs");
        let svn = |v: &serde_json::Value| -> Result<u8, AttestError> {
            v.as_u64()
                .and_then(|n| u8::try_from(n).ok())
                .ok_or_else(bad)
        };
        let list = |key: &str| -> Result<Option<[u8; 16]>, AttestError> {
            let Some(items) = self.tcb.get(key) else {
                return Ok(None);
            };
            let items = items.as_array().filter(|a| a.len() == 16).ok_or_else(bad)?;
            let mut out = [0u8; 16];
            for (o, item) in out.iter_mut().zip(items) {
                *o = svn(item.get("svn").ok_or_else(bad)?)?;
            }
            Ok(Some(out))
        };
        let sgx = match list("sgxtcbcomponents")? {
            Some(c) => c,
            None => {
                let mut out = [0u8; 16];
                for (i, o) in out.iter_mut().enumerate() {
                    let key = format!("sgxtcbcomp{:02}svn", i + 1);
                    *o = svn(self.tcb.get(&key).ok_or_else(bad)?)?;
                }
                out
            }
        };
        let pce = self
            .tcb
            .get("pcesvn")
            .and_then(serde_json::Value::as_u64)
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(bad)?;
        Ok((sgx, pce, list("tdxtcbcomponents")?))
    }
}

/// Finds the first TCB level (Intel lists them newest first) that the platform is at or above.
pub(crate) fn match_platform(
    info: &TcbInfo,
    platform: &PlatformTcb<'_>,
) -> Result<Option<Matched>, AttestError> {
    for level in &info.tcb_levels {
        let (sgx, pce, tdx) = level.components()?;
        let sgx_ok = platform
            .sgx_components
            .iter()
            .zip(sgx)
            .all(|(&p, l)| p >= l);
        if !sgx_ok || platform.pce_svn < pce {
            continue;
        }
        if let Some(tee_tcb_svn) = platform.tdx_components {
            let tdx = tdx.ok_or_else(|| {
                AttestError::malformed("TDX TCB info level without tdxtcbcomponents")
            })?;
            // With a TDX module version (byte 1) the module's SVN and version are appraised
            // through tdxModuleIdentities instead of the platform level.
            let skip = if tee_tcb_svn[1] > 0 { 2 } else { 0 };
            let tdx_ok = tee_tcb_svn.iter().zip(tdx).skip(skip).all(|(&p, l)| p >= l);
            if !tdx_ok {
                continue;
            }
        }
        return Ok(Some(Matched {
            status: parse_status(&level.tcb_status, "TCB info level")?,
            advisory_ids: level.advisory_ids.clone(),
            tcb_date: level.tcb_date.clone(),
        }));
    }
    Ok(None)
}

/// The result of appraising the TDX module.
#[derive(Debug, Clone)]
pub(crate) struct ModuleResult {
    pub(crate) id: Option<String>,
    pub(crate) matched: Option<Matched>,
}

/// Appraises the TDX module: its signer and attributes against the TCB info, and, for module
/// versions above 0, its SVN against the module identity's levels.
pub(crate) fn appraise_module(
    info: &TcbInfo,
    tee_tcb_svn: &[u8],
    mr_signer_seam: &[u8],
    seam_attributes: &[u8],
) -> Result<ModuleResult, AttestError> {
    let version = tee_tcb_svn[1];
    if version == 0 {
        let module = info
            .tdx_module
            .as_ref()
            .ok_or_else(|| AttestError::missing("tdxModule in the TDX TCB info"))?;
        check_module_identity(
            "tdxModule",
            &module.mrsigner,
            &module.attributes,
            &module.attributes_mask,
            mr_signer_seam,
            seam_attributes,
        )?;
        // A TDX 1.0 module with a matching signer and attributes has no levels of its own.
        return Ok(ModuleResult {
            id: None,
            matched: Some(Matched {
                status: TcbStatus::UpToDate,
                advisory_ids: Vec::new(),
                tcb_date: None,
            }),
        });
    }
    let id = format!("TDX_{version:02X}");
    let mismatch = |what: String| AttestError::TcbUnknown {
        what,
        code: ReasonCode::TdxModuleMismatch,
    };
    let identity = info
        .tdx_module_identities
        .iter()
        .flatten()
        .find(|m| m.id == id)
        .ok_or_else(|| mismatch(format!("no TDX module identity {id} in the TCB info")))?;
    check_module_identity(
        &id,
        &identity.mrsigner,
        &identity.attributes,
        &identity.attributes_mask,
        mr_signer_seam,
        seam_attributes,
    )?;
    let svn = u16::from(tee_tcb_svn[0]);
    let level = identity
        .tcb_levels
        .iter()
        .find(|l| l.tcb.isvsvn <= svn)
        .ok_or_else(|| mismatch(format!("TDX module {id} SVN {svn} matches no level")))?;
    Ok(ModuleResult {
        id: Some(id),
        matched: Some(Matched {
            status: parse_status(&level.tcb_status, "TDX module level")?,
            advisory_ids: level.advisory_ids.clone(),
            tcb_date: level.tcb_date.clone(),
        }),
    })
}

fn check_module_identity(
    what: &str,
    mrsigner_hex: &str,
    attributes_hex: &str,
    mask_hex: &str,
    mr_signer_seam: &[u8],
    seam_attributes: &[u8],
) -> Result<(), AttestError> {
    let mrsigner = decode_hex(mrsigner_hex, "TDX module mrsigner")?;
    if mrsigner != mr_signer_seam {
        return Err(AttestError::TcbUnknown {
            what: format!("MRSIGNER_SEAM differs from the TCB info's {what} mrsigner"),
            code: ReasonCode::TdxModuleMismatch,
        });
    }
    if !masked_equal(seam_attributes, attributes_hex, mask_hex, "SEAM attributes")? {
        return Err(AttestError::TcbUnknown {
            what: format!("SEAM_ATTRIBUTES differ from the TCB info's {what} attributes"),
            code: ReasonCode::TdxModuleMismatch,
        });
    }
    Ok(())
}

/// Checks `value & mask == expected & mask`, with `expected` and `mask` in hex.
pub(crate) fn masked_equal(
    value: &[u8],
    expected_hex: &str,
    mask_hex: &str,
    what: &str,
) -> Result<bool, AttestError> {
    let expected = decode_hex(expected_hex, what)?;
    let mask = decode_hex(mask_hex, what)?;
    if expected.len() != value.len() || mask.len() != value.len() {
        return Err(AttestError::malformed(format!(
            "{what}: wrong length in collateral"
        )));
    }
    Ok(value
        .iter()
        .zip(&mask)
        .zip(&expected)
        .all(|((v, m), e)| v & m == e & m))
}

pub(crate) fn decode_hex(text: &str, what: &str) -> Result<Vec<u8>, AttestError> {
    hex::decode(text).map_err(|_| AttestError::malformed(format!("{what}: not hex")))
}

/// Combines the platform status with the TDX module's or the QE's (Intel QVL's convergence).
pub(crate) fn converge(platform: TcbStatus, other: TcbStatus) -> TcbStatus {
    use TcbStatus::*;
    match other {
        OutOfDate => match platform {
            UpToDate | SWHardeningNeeded => OutOfDate,
            ConfigurationNeeded | ConfigurationAndSWHardeningNeeded => OutOfDateConfigurationNeeded,
            p => p,
        },
        Revoked => Revoked,
        _ => platform,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TcbStatus::*;

    #[test]
    fn convergence_follows_intel() {
        assert_eq!(converge(UpToDate, UpToDate), UpToDate);
        assert_eq!(converge(UpToDate, OutOfDate), OutOfDate);
        assert_eq!(converge(SWHardeningNeeded, OutOfDate), OutOfDate);
        assert_eq!(
            converge(ConfigurationNeeded, OutOfDate),
            OutOfDateConfigurationNeeded
        );
        assert_eq!(
            converge(ConfigurationAndSWHardeningNeeded, Revoked),
            Revoked
        );
        assert_eq!(converge(OutOfDate, UpToDate), OutOfDate);
    }

    #[test]
    fn masked_comparison() {
        assert!(masked_equal(&[0x0f], "0f", "ff", "t").unwrap());
        assert!(masked_equal(&[0x1f], "0f", "0f", "t").unwrap());
        assert!(!masked_equal(&[0x1f], "0f", "ff", "t").unwrap());
        assert!(masked_equal(&[0x1f, 0], "0f", "ff", "t").is_err());
    }
}

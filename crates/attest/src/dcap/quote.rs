//! The DCAP quote layout: SGX quote v3, TDX quote v4 and v5 (Intel's "SGX ECDSA Quote Library
//! API" and "TDX DCAP Quoting Library API" specifications). Parsed by the length fields; bytes
//! after the certification data are not signed and are ignored (real sources pad quotes).

use crate::AttestError;

pub(crate) const SGX_REPORT_LEN: usize = 384;
pub(crate) const TD10_BODY_LEN: usize = 584;
pub(crate) const TD15_BODY_LEN: usize = 648;
pub(crate) const TEE_SGX: u32 = 0x0000_0000;
pub(crate) const TEE_TDX: u32 = 0x0000_0081;
const ATT_KEY_ECDSA_P256: u16 = 2;
const CERT_DATA_PCK_CHAIN: u16 = 5;
const CERT_DATA_QE_REPORT: u16 = 6;
pub(crate) const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];

/// The report body a quote carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyType {
    /// An SGX enclave report (384 bytes).
    Sgx,
    /// A TD report of TDX 1.0 (584 bytes).
    Td10,
    /// A TD report of TDX 1.5 (648 bytes: adds TEE_TCB_SVN2 and MRSERVICETD).
    Td15,
}

impl BodyType {
    pub(crate) fn tee_kind(self) -> crate::TeeKind {
        match self {
            Self::Sgx => crate::TeeKind::Sgx,
            Self::Td10 | Self::Td15 => crate::TeeKind::Tdx,
        }
    }

    pub(crate) fn number(self) -> u16 {
        match self {
            Self::Sgx => 1,
            Self::Td10 => 2,
            Self::Td15 => 3,
        }
    }
}

/// A parsed quote, borrowing the input.
#[derive(Debug)]
pub(crate) struct Quote<'a> {
    pub(crate) version: u16,
    pub(crate) qe_svn: u16,
    pub(crate) pce_svn: u16,
    pub(crate) body_type: BodyType,
    pub(crate) body: &'a [u8],
    /// Header and body: what the attestation key signed.
    pub(crate) signed: &'a [u8],
    pub(crate) signature: &'a [u8],
    pub(crate) attestation_key: &'a [u8],
    pub(crate) qe_report: &'a [u8],
    pub(crate) qe_report_signature: &'a [u8],
    pub(crate) qe_auth_data: &'a [u8],
    pub(crate) pck_chain_pem: &'a [u8],
    /// Bytes after the quote's last field, unsigned.
    pub(crate) trailing: usize,
}

struct Cursor<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], AttestError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| {
                AttestError::malformed(format!(
                    "DCAP quote: {what} needs {n} bytes at offset {}, the quote has {}",
                    self.at,
                    self.data.len()
                ))
            })?;
        let out = &self.data[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u16(&mut self, what: &str) -> Result<u16, AttestError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32, AttestError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

impl<'a> Quote<'a> {
    pub(crate) fn parse(data: &'a [u8]) -> Result<Self, AttestError> {
        let mut c = Cursor { data, at: 0 };
        let version = c.u16("version")?;
        let att_key_type = c.u16("attestation key type")?;
        let tee_type = c.u32("TEE type")?;
        let qe_svn = c.u16("QE SVN")?;
        let pce_svn = c.u16("PCE SVN")?;
        let vendor = c.take(16, "QE vendor id")?;
        c.take(20, "user data")?;
        if att_key_type != ATT_KEY_ECDSA_P256 {
            return Err(AttestError::unsupported(format!(
                "DCAP attestation key type {att_key_type} (only 2, ECDSA P-256)"
            )));
        }
        if vendor != INTEL_QE_VENDOR_ID {
            return Err(AttestError::unsupported(
                "DCAP quote from a quoting enclave not made by Intel",
            ));
        }
        let body_type = match (version, tee_type) {
            (3, TEE_SGX) => BodyType::Sgx,
            (4, TEE_SGX) => BodyType::Sgx,
            (4, TEE_TDX) => BodyType::Td10,
            (5, TEE_SGX | TEE_TDX) => {
                let ty = c.u16("body type")?;
                let size = c.u32("body size")?;
                let (body_type, len) = match ty {
                    1 => (BodyType::Sgx, SGX_REPORT_LEN),
                    2 => (BodyType::Td10, TD10_BODY_LEN),
                    3 => (BodyType::Td15, TD15_BODY_LEN),
                    other => {
                        return Err(AttestError::unsupported(format!(
                            "DCAP quote v5 body type {other}"
                        )));
                    }
                };
                if usize::try_from(size).ok() != Some(len) {
                    return Err(AttestError::malformed(format!(
                        "DCAP quote v5 body size {size} for body type {ty}"
                    )));
                }
                if (body_type == BodyType::Sgx) != (tee_type == TEE_SGX) {
                    return Err(AttestError::malformed(
                        "DCAP quote body type and TEE type differ",
                    ));
                }
                body_type
            }
            (v, t) => {
                return Err(AttestError::unsupported(format!(
                    "DCAP quote version {v} with TEE type {t:#x}"
                )));
            }
        };
        let body_len = match body_type {
            BodyType::Sgx => SGX_REPORT_LEN,
            BodyType::Td10 => TD10_BODY_LEN,
            BodyType::Td15 => TD15_BODY_LEN,
        };
        let body = c.take(body_len, "report body")?;
        let signed = &data[..c.at];
        let sig_len = c.u32("signature data length")?;
        let sig_data = c.take(
            usize::try_from(sig_len).map_err(|_| AttestError::malformed("signature length"))?,
            "signature data",
        )?;
        let trailing = data.len() - c.at;
        let mut s = Cursor {
            data: sig_data,
            at: 0,
        };
        let signature = s.take(64, "quote signature")?;
        let attestation_key = s.take(64, "attestation key")?;
        // v3: the QE report and the PCK chain follow directly. v4/v5: certification data of
        // type 6 wraps them.
        let mut certification = if version == 3 {
            s
        } else {
            let outer_type = s.u16("certification data type")?;
            if outer_type != CERT_DATA_QE_REPORT {
                return Err(AttestError::unsupported(format!(
                    "DCAP certification data type {outer_type} (expected 6, QE report)"
                )));
            }
            let outer_len = s.u32("certification data size")?;
            let inner = s.take(
                usize::try_from(outer_len).map_err(|_| AttestError::malformed("size"))?,
                "QE report certification data",
            )?;
            if s.at != sig_data.len() {
                return Err(AttestError::malformed(
                    "DCAP quote: bytes after certification data",
                ));
            }
            Cursor { data: inner, at: 0 }
        };
        let (qe_report, qe_report_signature, qe_auth_data, pck_chain_pem) =
            Self::qe_certification(&mut certification)?;
        if certification.at != certification.data.len() {
            return Err(AttestError::malformed(
                "DCAP quote: bytes after the PCK certificate chain inside the signature data",
            ));
        }
        Ok(Self {
            version,
            qe_svn,
            pce_svn,
            body_type,
            body,
            signed,
            signature,
            attestation_key,
            qe_report,
            qe_report_signature,
            qe_auth_data,
            pck_chain_pem,
            trailing,
        })
    }

    /// QE report, its signature, the QE authentication data and the PCK chain (type 5).
    #[allow(clippy::type_complexity)]
    fn qe_certification(
        c: &mut Cursor<'a>,
    ) -> Result<(&'a [u8], &'a [u8], &'a [u8], &'a [u8]), AttestError> {
        let qe_report = c.take(SGX_REPORT_LEN, "QE report")?;
        let qe_report_signature = c.take(64, "QE report signature")?;
        let auth_len = c.u16("QE authentication data length")?;
        let qe_auth_data = c.take(usize::from(auth_len), "QE authentication data")?;
        let cert_type = c.u16("PCK certification data type")?;
        if cert_type != CERT_DATA_PCK_CHAIN {
            return Err(AttestError::unsupported(format!(
                "DCAP PCK certification data type {cert_type} (only 5, a PEM chain)"
            )));
        }
        let len = c.u32("PCK certification data size")?;
        let chain = c.take(
            usize::try_from(len).map_err(|_| AttestError::malformed("size"))?,
            "PCK certificate chain",
        )?;
        Ok((qe_report, qe_report_signature, qe_auth_data, chain))
    }
}

/// Fields of an SGX report (the enclave's in an SGX quote, and the QE's in every quote).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SgxReport<'a>(pub(crate) &'a [u8]);

impl<'a> SgxReport<'a> {
    pub(crate) fn cpu_svn(&self) -> &'a [u8] {
        &self.0[0..16]
    }
    pub(crate) fn misc_select(&self) -> u32 {
        u32::from_le_bytes([self.0[16], self.0[17], self.0[18], self.0[19]])
    }
    pub(crate) fn attributes(&self) -> &'a [u8] {
        &self.0[48..64]
    }
    pub(crate) fn mr_enclave(&self) -> &'a [u8] {
        &self.0[64..96]
    }
    pub(crate) fn mr_signer(&self) -> &'a [u8] {
        &self.0[128..160]
    }
    pub(crate) fn config_id(&self) -> &'a [u8] {
        &self.0[192..256]
    }
    pub(crate) fn isv_prod_id(&self) -> u16 {
        u16::from_le_bytes([self.0[256], self.0[257]])
    }
    pub(crate) fn isv_svn(&self) -> u16 {
        u16::from_le_bytes([self.0[258], self.0[259]])
    }
    pub(crate) fn config_svn(&self) -> u16 {
        u16::from_le_bytes([self.0[260], self.0[261]])
    }
    pub(crate) fn report_data(&self) -> &'a [u8] {
        &self.0[320..384]
    }
    /// ATTRIBUTES.DEBUG (bit 1 of the flags).
    pub(crate) fn debug(&self) -> bool {
        self.0[48] & 0x02 != 0
    }
}

/// Fields of a TD report body (TDX 1.0, and 1.5's two extra fields).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TdReport<'a>(pub(crate) &'a [u8]);

impl<'a> TdReport<'a> {
    pub(crate) fn tee_tcb_svn(&self) -> &'a [u8] {
        &self.0[0..16]
    }
    pub(crate) fn mr_seam(&self) -> &'a [u8] {
        &self.0[16..64]
    }
    pub(crate) fn mr_signer_seam(&self) -> &'a [u8] {
        &self.0[64..112]
    }
    pub(crate) fn seam_attributes(&self) -> &'a [u8] {
        &self.0[112..120]
    }
    pub(crate) fn td_attributes(&self) -> &'a [u8] {
        &self.0[120..128]
    }
    pub(crate) fn xfam(&self) -> &'a [u8] {
        &self.0[128..136]
    }
    pub(crate) fn mr_td(&self) -> &'a [u8] {
        &self.0[136..184]
    }
    pub(crate) fn mr_config_id(&self) -> &'a [u8] {
        &self.0[184..232]
    }
    pub(crate) fn mr_owner(&self) -> &'a [u8] {
        &self.0[232..280]
    }
    pub(crate) fn mr_owner_config(&self) -> &'a [u8] {
        &self.0[280..328]
    }
    pub(crate) fn rtmr(&self, i: usize) -> &'a [u8] {
        &self.0[328 + 48 * i..376 + 48 * i]
    }
    pub(crate) fn report_data(&self) -> &'a [u8] {
        &self.0[520..584]
    }
    pub(crate) fn tee_tcb_svn2(&self) -> Option<&'a [u8]> {
        self.0.get(584..600)
    }
    pub(crate) fn mr_service_td(&self) -> Option<&'a [u8]> {
        self.0.get(600..648)
    }
    /// TD_ATTRIBUTES.DEBUG (bit 0).
    pub(crate) fn debug(&self) -> bool {
        self.0[120] & 0x01 != 0
    }
    /// TD_ATTRIBUTES.SEPT_VE_DISABLE (bit 28).
    pub(crate) fn sept_ve_disable(&self) -> bool {
        self.0[123] & 0x10 != 0
    }
}

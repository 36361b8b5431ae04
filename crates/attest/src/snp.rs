//! AMD SEV-SNP attestation reports (versions 2 to 5), endorsed by a VCEK or a VLEK.
//!
//! The chain is ARK → ASK → VCEK (or ARK → ASVK → VLEK) with RSA-PSS/SHA-384 certificates; the
//! report is signed with ECDSA P-384/SHA-384 over bytes `0x000..0x2A0`, its `r` and `s` stored
//! little-endian in 72-byte fields. The ARK of each product line (Milan, Genoa, Turin) is pinned
//! by key; the endorsing certificate's product is found by trying each line, which also copes
//! with Genoa VCEKs whose product name has no stepping. The TCB values in the certificate's
//! extensions must equal the report's `REPORTED_TCB` (not `CURRENT_TCB`), and a VCEK's hwID must
//! equal `CHIP_ID`. Field offsets follow AMD's SEV-SNP ABI specification (publication 56860),
//! table "ATTESTATION_REPORT Structure".

use std::collections::BTreeMap;

use confide_crypto::verify::{PreparedKey, Scheme};
use serde_json::{Value, json};

use crate::claims::{Hex, Tcb, TeeKind, VerifiedClaims};
use crate::der::{self, Reader};
use crate::roots::AmdProduct;
use crate::x509::{Certificate, Crl, KeyKind};
use crate::{AttestError, Collateral, Inputs, UnixTime, Verifier};

/// Size of an attestation report.
pub const REPORT_LEN: usize = 0x4a0;
const SIGNED_LEN: usize = 0x2a0;
const POLICY_DEBUG: u64 = 1 << 19;
const OID_AMD: &str = "1.3.6.1.4.1.3704.1";

/// Which key signed a report: the chip's VCEK or a cloud provider's VLEK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SigningKey {
    Vcek,
    Vlek,
}

impl SigningKey {
    fn name(self) -> &'static str {
        match self {
            Self::Vcek => "VCEK",
            Self::Vlek => "VLEK",
        }
    }
}

/// A report's fields, by offset.
struct Report<'a> {
    bytes: &'a [u8],
}

impl<'a> Report<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, AttestError> {
        if bytes.len() != REPORT_LEN {
            return Err(AttestError::malformed(format!(
                "SEV-SNP report: {} bytes, expected {REPORT_LEN}",
                bytes.len()
            )));
        }
        let report = Self { bytes };
        let version = report.u32(0x00);
        if !(2..=5).contains(&version) {
            return Err(AttestError::unsupported(format!(
                "SEV-SNP report version {version} (2 to 5 are supported)"
            )));
        }
        if report.u32(0x34) != 1 {
            return Err(AttestError::unsupported(format!(
                "SEV-SNP signature algorithm {} (only 1, ECDSA P-384 with SHA-384)",
                report.u32(0x34)
            )));
        }
        Ok(report)
    }

    fn slice(&self, at: usize, len: usize) -> &'a [u8] {
        &self.bytes[at..at + len]
    }

    fn u8(&self, at: usize) -> u8 {
        self.bytes[at]
    }

    fn u32(&self, at: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.slice(at, 4));
        u32::from_le_bytes(b)
    }

    fn u64(&self, at: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.slice(at, 8));
        u64::from_le_bytes(b)
    }

    fn version(&self) -> u32 {
        self.u32(0x00)
    }

    fn policy(&self) -> u64 {
        self.u64(0x08)
    }

    fn signing_key(&self) -> Result<SigningKey, AttestError> {
        match (self.u32(0x48) >> 2) & 0x7 {
            0 => Ok(SigningKey::Vcek),
            1 => Ok(SigningKey::Vlek),
            other => Err(AttestError::unsupported(format!(
                "SEV-SNP report signed by key type {other} (only VCEK and VLEK are endorsed)"
            ))),
        }
    }

    fn report_data(&self) -> &'a [u8] {
        self.slice(0x50, 64)
    }

    fn measurement(&self) -> &'a [u8] {
        self.slice(0x90, 48)
    }

    fn host_data(&self) -> &'a [u8] {
        self.slice(0xc0, 32)
    }

    fn reported_tcb(&self) -> u64 {
        self.u64(0x180)
    }

    fn chip_id(&self) -> &'a [u8] {
        self.slice(0x1a0, 64)
    }

    /// The CPUID family of the chip, reported from version 3 on.
    fn cpuid_family(&self) -> Option<u8> {
        (self.version() >= 3).then(|| self.u8(0x188))
    }

    /// The signature as fixed big-endian `r ‖ s`, refusing bytes beyond P-384's 48.
    fn signature(&self) -> Result<[u8; 96], AttestError> {
        let mut out = [0u8; 96];
        for (i, at) in [0x2a0usize, 0x2e8].into_iter().enumerate() {
            let le = self.slice(at, 72);
            if le[48..].iter().any(|&b| b != 0) {
                return Err(AttestError::malformed(
                    "SEV-SNP report signature: component wider than P-384",
                ));
            }
            for (j, &b) in le[..48].iter().rev().enumerate() {
                out[i * 48 + j] = b;
            }
        }
        Ok(out)
    }
}

/// The four TCB component versions of an SNP TCB value; Turin adds FMC and moves the fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TcbVersion {
    fmc: Option<u8>,
    bootloader: u8,
    tee: u8,
    snp: u8,
    microcode: u8,
    raw: u64,
}

impl TcbVersion {
    fn decode(raw: u64, turin: bool) -> Self {
        let b = raw.to_le_bytes();
        if turin {
            Self {
                fmc: Some(b[0]),
                bootloader: b[1],
                tee: b[2],
                snp: b[3],
                microcode: b[7],
                raw,
            }
        } else {
            Self {
                fmc: None,
                bootloader: b[0],
                tee: b[1],
                snp: b[6],
                microcode: b[7],
                raw,
            }
        }
    }

    fn to_json(self) -> Value {
        let mut v = json!({
            "bootloader": self.bootloader,
            "tee": self.tee,
            "snp": self.snp,
            "microcode": self.microcode,
            "raw": format!("{:016x}", self.raw),
        });
        if let (Some(fmc), Some(map)) = (self.fmc, v.as_object_mut()) {
            map.insert("fmc".into(), json!(fmc));
        }
        v
    }
}

/// The AMD extensions of a VCEK or VLEK certificate.
#[derive(Debug, Clone, Default)]
struct VekExtensions {
    struct_version: Option<u64>,
    product_name: Option<String>,
    bl: Option<u64>,
    tee: Option<u64>,
    snp: Option<u64>,
    ucode: Option<u64>,
    fmc: Option<u64>,
    hw_id: Option<Vec<u8>>,
    csp_id: Option<String>,
}

impl VekExtensions {
    fn parse(cert: &Certificate) -> Result<Self, AttestError> {
        let mut ext = Self::default();
        for e in cert.extensions() {
            let Some(suffix) = e.oid.strip_prefix(OID_AMD) else {
                continue;
            };
            let int = |what: &str| -> Result<Option<u64>, AttestError> {
                let v = Reader::new(&e.value).expect(der::TAG_INTEGER, what)?;
                der::unsigned(v, what).map(Some)
            };
            match suffix {
                ".1" => ext.struct_version = int("VEK structVersion")?,
                ".2" => ext.product_name = Some(ia5(&e.value, "VEK productName")?),
                ".3.1" => ext.bl = int("VEK blSPL")?,
                ".3.2" => ext.tee = int("VEK teeSPL")?,
                ".3.3" => ext.snp = int("VEK snpSPL")?,
                ".3.8" => ext.ucode = int("VEK ucodeSPL")?,
                ".3.9" => ext.fmc = int("VEK fmcSPL")?,
                ".4" => {
                    // The hwID is an OCTET STRING, though some certificates carry it bare.
                    let mut r = Reader::new(&e.value);
                    ext.hw_id = Some(match r.next() {
                        Ok(t) if t.tag == der::TAG_OCTET_STRING && r.is_empty() => t.value.to_vec(),
                        _ => e.value.clone(),
                    });
                }
                ".5" => ext.csp_id = Some(ia5(&e.value, "VLEK cspID")?),
                _ => {}
            }
        }
        Ok(ext)
    }

    fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.into(), v);
            }
        };
        put("structVersion", self.struct_version.map(Value::from));
        put("productName", self.product_name.clone().map(Value::from));
        put("blSPL", self.bl.map(Value::from));
        put("teeSPL", self.tee.map(Value::from));
        put("snpSPL", self.snp.map(Value::from));
        put("ucodeSPL", self.ucode.map(Value::from));
        put("fmcSPL", self.fmc.map(Value::from));
        put(
            "hwID",
            self.hw_id.as_ref().map(|h| Value::from(hex::encode(h))),
        );
        put("cspID", self.csp_id.clone().map(Value::from));
        Value::Object(m)
    }

    /// Checks the certificate's TCB against the report's `REPORTED_TCB`.
    fn check_tcb(&self, reported: TcbVersion) -> Result<(), AttestError> {
        let pairs = [
            ("blSPL", self.bl, Some(reported.bootloader)),
            ("teeSPL", self.tee, Some(reported.tee)),
            ("snpSPL", self.snp, Some(reported.snp)),
            ("ucodeSPL", self.ucode, Some(reported.microcode)),
            ("fmcSPL", self.fmc, reported.fmc),
        ];
        for (name, cert, report) in pairs {
            match (cert, report) {
                (None, None) => {}
                (Some(c), Some(r)) if c == u64::from(r) => {}
                (c, r) => {
                    return Err(AttestError::mismatch(format!(
                        "VEK certificate {name} {c:?} differs from the report's REPORTED_TCB {r:?}"
                    )));
                }
            }
        }
        Ok(())
    }
}

fn ia5(value: &[u8], what: &str) -> Result<String, AttestError> {
    let v = Reader::new(value).expect(0x16, what)?;
    String::from_utf8(v.to_vec()).map_err(|_| AttestError::malformed(what))
}

/// A VCEK or VLEK whose chain to a pinned ARK has been checked at some time: the part of SNP
/// verification that can be cached per chip.
#[derive(Debug)]
pub struct EndorsedKey {
    cert: Certificate,
    key: PreparedKey,
    kind: SigningKey,
    product: &'static str,
    extensions: VekExtensions,
}

impl EndorsedKey {
    /// Finds, among `collateral`'s certificates, a VCEK or VLEK issued by a trusted AMD product
    /// line, and checks its chain, validity at `now` and, when one is given, the ARK's CRL.
    pub fn find(collateral: &Collateral, inputs: &Inputs<'_>) -> Result<Self, AttestError> {
        let mut first_err = None;
        for found in Self::find_all(collateral, inputs)? {
            match found {
                Ok(key) => return Ok(key),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or_else(|| AttestError::missing("a VCEK or VLEK")))
    }

    /// Every P-384 certificate in `collateral` that a trusted ASK or ASVK signed, endorsed or
    /// with the reason it could not be.
    fn find_all(
        collateral: &Collateral,
        inputs: &Inputs<'_>,
    ) -> Result<Vec<Result<Self, AttestError>>, AttestError> {
        let candidates: Vec<&Certificate> = collateral
            .certificates
            .iter()
            .filter(|c| c.key_kind() == KeyKind::P384)
            .collect();
        if candidates.is_empty() {
            return Err(AttestError::missing(
                "the VCEK or VLEK certificate (give it as collateral)",
            ));
        }
        let mut found = Vec::new();
        for cert in &candidates {
            for product in &inputs.anchors.amd {
                for (kind, signer) in [
                    (SigningKey::Vcek, &product.ask),
                    (SigningKey::Vlek, &product.asvk),
                ] {
                    if cert.check_signed_by(signer, "VEK").is_ok() {
                        found.push(Self::endorse(
                            cert, kind, signer, product, collateral, inputs.now,
                        ));
                    }
                }
            }
        }
        if found.is_empty() {
            return Err(AttestError::UntrustedRoot {
                what: format!(
                    "certificate {:?} is not signed by the ASK or ASVK of a trusted AMD product",
                    candidates[0].common_name()
                ),
            });
        }
        Ok(found)
    }

    fn endorse(
        cert: &Certificate,
        kind: SigningKey,
        signer: &Certificate,
        product: &AmdProduct,
        collateral: &Collateral,
        now: UnixTime,
    ) -> Result<Self, AttestError> {
        let ark = &product.ark;
        ark.check_signed_by(ark, "ARK self-signature")?;
        let signer_name = if kind == SigningKey::Vcek {
            "ASK"
        } else {
            "ASVK"
        };
        signer.check_signed_by(ark, &format!("{signer_name} signed by ARK"))?;
        ark.check_valid_at(now, "ARK certificate")?;
        signer.check_valid_at(now, &format!("{signer_name} certificate"))?;
        cert.check_valid_at(now, &format!("{} certificate", kind.name()))?;
        for crl in collateral.crls.iter().filter(|c| c.is_issued_by(ark)) {
            check_amd_crl(crl, ark, signer, now)?;
        }
        let key = PreparedKey::new(Scheme::EcdsaP384Sha384Fixed, cert.public_key())
            .map_err(|_| AttestError::malformed("VEK public key (expected P-384)"))?;
        Ok(Self {
            cert: cert.clone(),
            key,
            kind,
            product: product.name,
            extensions: VekExtensions::parse(cert)?,
        })
    }

    /// Verifies `report` against this key; the chain was checked when the key was found.
    pub fn verify_report(&self, report: &[u8]) -> Result<VerifiedClaims, AttestError> {
        let r = Report::parse(report)?;
        let signing_key = r.signing_key()?;
        if signing_key != self.kind {
            return Err(AttestError::mismatch(format!(
                "the report says it is signed by a {}, the certificate is a {}",
                signing_key.name(),
                self.kind.name()
            )));
        }
        self.key
            .verify(&report[..SIGNED_LEN], &r.signature()?)
            .map_err(|_| {
                AttestError::signature(format!("SEV-SNP report signed by the {}", self.kind.name()))
            })?;
        let turin = self.product == "Turin";
        if let Some(family) = r.cpuid_family() {
            let expected = if turin { 0x1a } else { 0x19 };
            if family != expected {
                return Err(AttestError::mismatch(format!(
                    "report CPUID family {family:#x} is not an AMD {} family",
                    self.product
                )));
            }
        }
        let reported = TcbVersion::decode(r.reported_tcb(), turin);
        self.extensions.check_tcb(reported)?;
        let mask_chip_id = r.u32(0x48) & 2 != 0;
        if self.kind == SigningKey::Vcek && !mask_chip_id {
            let hw_id = self
                .extensions
                .hw_id
                .as_deref()
                .ok_or_else(|| AttestError::malformed("VCEK without a hwID extension"))?;
            // Turin hwIDs are 8 bytes: the chip id's first 8.
            let chip = r.chip_id();
            if hw_id.is_empty() || hw_id.len() > chip.len() || chip[..hw_id.len()] != *hw_id {
                return Err(AttestError::mismatch(
                    "VCEK hwID differs from the report's CHIP_ID",
                ));
            }
        }
        Ok(self.claims(&r, reported, turin))
    }

    fn claims(&self, r: &Report<'_>, reported: TcbVersion, turin: bool) -> VerifiedClaims {
        let policy = r.policy();
        let debug = policy & POLICY_DEBUG != 0;
        let tcb = |at| TcbVersion::decode(r.u64(at), turin).to_json();
        let version = |at: usize| format!("{}.{}.{}", r.u8(at + 2), r.u8(at + 1), r.u8(at));
        let flags = r.u32(0x48);
        let mut details = json!({
            "version": r.version(),
            "guest_svn": r.u32(0x04),
            "policy": format!("{policy:#x}"),
            "policy_decoded": {
                "abi_minor": policy & 0xff,
                "abi_major": (policy >> 8) & 0xff,
                "smt_allowed": policy & (1 << 16) != 0,
                "migrate_ma": policy & (1 << 18) != 0,
                "debug_allowed": debug,
                "single_socket": policy & (1 << 20) != 0,
                "cxl_allowed": policy & (1 << 21) != 0,
                "mem_aes_256_xts": policy & (1 << 22) != 0,
                "rapl_dis": policy & (1 << 23) != 0,
                "ciphertext_hiding": policy & (1 << 24) != 0,
                "page_swap_disable": policy & (1 << 25) != 0,
            },
            "family_id": hex::encode(r.slice(0x10, 16)),
            "image_id": hex::encode(r.slice(0x20, 16)),
            "vmpl": r.u32(0x30),
            "signature_algo": r.u32(0x34),
            "current_tcb": tcb(0x38),
            "platform_info": format!("{:#x}", r.u64(0x40)),
            "author_key_en": flags & 1 != 0,
            "mask_chip_key": flags & 2 != 0,
            "signing_key": self.kind.name(),
            "report_data": hex::encode(r.report_data()),
            "measurement": hex::encode(r.measurement()),
            "host_data": hex::encode(r.host_data()),
            "id_key_digest": hex::encode(r.slice(0xe0, 48)),
            "author_key_digest": hex::encode(r.slice(0x110, 48)),
            "report_id": hex::encode(r.slice(0x140, 32)),
            "report_id_ma": hex::encode(r.slice(0x160, 32)),
            "reported_tcb": reported.to_json(),
            "chip_id": hex::encode(r.chip_id()),
            "chip_id_prefix": hex::encode(&r.chip_id()[..8]),
            "committed_tcb": tcb(0x1e0),
            "current_version": version(0x1e8),
            "committed_version": version(0x1ec),
            "launch_tcb": tcb(0x1f0),
            "debug": debug,
            "vek_product_name": self.extensions.product_name.clone().unwrap_or_else(|| self.product.to_owned()),
            "vek_product_line": self.product,
            "vek_extensions": self.extensions.to_json(),
        });
        if let Some(map) = details.as_object_mut() {
            if r.version() >= 3 {
                map.insert("cpuid_fam_id".into(), json!(format!("{:#x}", r.u8(0x188))));
                map.insert("cpuid_mod_id".into(), json!(format!("{:#x}", r.u8(0x189))));
                map.insert("cpuid_step".into(), json!(r.u8(0x18a)));
            }
            if r.version() >= 5 {
                map.insert(
                    "launch_mit_vector".into(),
                    json!(format!("{:#x}", r.u64(0x1f8))),
                );
                map.insert(
                    "current_mit_vector".into(),
                    json!(format!("{:#x}", r.u64(0x200))),
                );
            }
        }
        let mut svns = BTreeMap::new();
        svns.insert("guest_svn".to_owned(), u64::from(r.u32(0x04)));
        svns.insert("bootloader".to_owned(), u64::from(reported.bootloader));
        svns.insert("tee".to_owned(), u64::from(reported.tee));
        svns.insert("snp".to_owned(), u64::from(reported.snp));
        svns.insert("microcode".to_owned(), u64::from(reported.microcode));
        if let Some(fmc) = reported.fmc {
            svns.insert("fmc".to_owned(), u64::from(fmc));
        }
        let mut measurements = BTreeMap::new();
        measurements.insert("measurement", Hex::from(r.measurement()));
        VerifiedClaims {
            kind: TeeKind::SevSnp,
            simulated: false,
            debug,
            measurements,
            report_data: Hex::from(r.report_data()),
            host_data: Some(Hex::from(r.host_data())),
            platform_id: (self.kind == SigningKey::Vcek).then(|| Hex::from(r.chip_id())),
            tcb: Tcb {
                status: None,
                advisory_ids: Vec::new(),
                svns,
            },
            details,
            report: Hex::from(r.bytes),
        }
    }

    /// The endorsing certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.cert
    }
}

fn check_amd_crl(
    crl: &Crl,
    ark: &Certificate,
    signer: &Certificate,
    now: UnixTime,
) -> Result<(), AttestError> {
    crl.check(ark, now, "AMD ARK CRL")?;
    crl.check_not_revoked(signer, "the ASK/ASVK is on the ARK's CRL")
}

/// The SEV-SNP verifier.
#[derive(Debug, Clone, Copy, Default)]
pub struct SnpVerifier;

impl Verifier for SnpVerifier {
    fn kind(&self) -> TeeKind {
        TeeKind::SevSnp
    }

    fn recognises(&self, evidence: &[u8]) -> bool {
        evidence.len() == REPORT_LEN && Report::parse(evidence).is_ok()
    }

    fn verify(
        &self,
        evidence: &[u8],
        collateral: &Collateral,
        inputs: &Inputs<'_>,
    ) -> Result<VerifiedClaims, AttestError> {
        Report::parse(evidence)?;
        // Several certificates may be given; the report decides which one signed it.
        let mut first_err = None;
        for found in EndorsedKey::find_all(collateral, inputs)? {
            match found.and_then(|key| key.verify_report(evidence)) {
                Ok(claims) => return Ok(claims),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or_else(|| AttestError::missing("a VCEK or VLEK")))
    }
}

//! Azure confidential VMs (SEV-SNP and TDX) with a virtual TPM, as the paravisor (HCL) reports
//! them, in the evidence JSON of Trustee's `az-snp-vtpm` and `az-tdx-vtpm` attesters.
//!
//! The binding chain, each link checked:
//! 1. The TPM quote (`TPMS_ATTEST`) is signed (RSASSA-PKCS1-v1_5, SHA-256) by the attestation
//!    key `HCLAkPub`, a JWK in the HCL report's runtime data (`var_data`). Its `extraData` is
//!    the caller's nonce, and its PCR digest must be the SHA-256 of the PCR values given.
//! 2. The hardware report inside the HCL report binds the runtime data: its `REPORT_DATA[0..32]`
//!    is the hash of `var_data`.
//! 3. The hardware report is verified as its kind requires: an SNP report against its VCEK
//!    and the pinned AMD roots ([`crate::snp`]); for TDX, the TD report in the HCL report is
//!    only MAC'd, so it is authenticated through the TD quote that carries the same report data
//!    and measurements ([`crate::dcap`]; the TCB is appraised when Intel's collateral is given,
//!    and reported as not appraised otherwise).
//!
//! HCL report layout: a 32-byte header (`HCLA`), the 1184-byte hardware report area, then the
//! request data: size, version, report type (2 SNP, 4 TDX), hash type (1 SHA-256, 2 SHA-384,
//! 3 SHA-512), runtime data size, runtime data (JSON).

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use confide_crypto::digest::{sha256, sha384, sha512};
use confide_crypto::verify::{self, Scheme};
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use crate::claims::{Hex, TeeKind, VerifiedClaims};
use crate::der;
use crate::{AttestError, Collateral, Inputs, Verifier, dcap, snp};

const HCL_HEADER_LEN: usize = 32;
const HW_REPORT_LEN: usize = 1184;
const REQUEST_AT: usize = HCL_HEADER_LEN + HW_REPORT_LEN;
const TD_REPORT_LEN: usize = 1024;
const TPM_MAGIC: u32 = 0xff54_4347;
const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;
const TPM_ALG_SHA256: u16 = 0x000b;

/// Evidence as Trustee's Azure attesters serialise it (versions 0, 1 and 2), decoded.
struct Evidence {
    version: u64,
    hcl_report: Vec<u8>,
    tpm_message: Vec<u8>,
    tpm_signature: Vec<u8>,
    pcrs: Vec<Vec<u8>>,
    vcek: Option<Vec<u8>>,
    td_quote: Option<Vec<u8>>,
}

/// Bytes as the JSON carries them: an array of integers, hex, or base64 (URL-safe or not).
fn bytes(value: &Value, what: &str) -> Result<Vec<u8>, AttestError> {
    let bad = || AttestError::malformed(format!("Azure evidence: {what}"));
    match value {
        Value::Array(items) => items
            .iter()
            .map(|v| {
                v.as_u64()
                    .and_then(|n| u8::try_from(n).ok())
                    .ok_or_else(bad)
            })
            .collect(),
        Value::String(text) => {
            let text = text.trim();
            if let Ok(b) = hex::decode(text) {
                return Ok(b);
            }
            let engines = [
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                &base64::engine::general_purpose::URL_SAFE,
                &base64::engine::general_purpose::STANDARD,
                &base64::engine::general_purpose::STANDARD_NO_PAD,
            ];
            engines
                .iter()
                .find_map(|e| e.decode(text).ok())
                .ok_or_else(bad)
        }
        _ => Err(bad()),
    }
}

impl Evidence {
    fn parse(data: &[u8]) -> Result<Self, AttestError> {
        let doc: Value = serde_json::from_slice(data)
            .map_err(|e| AttestError::malformed(format!("Azure evidence JSON ({e})")))?;
        let field = |names: &[&str]| names.iter().find_map(|n| doc.get(*n));
        let hcl = field(&["hcl_report", "report"])
            .ok_or_else(|| AttestError::malformed("Azure evidence: no hcl_report"))?;
        let quote = field(&["tpm_quote", "quote"])
            .ok_or_else(|| AttestError::malformed("Azure evidence: no tpm_quote"))?;
        let pcrs = match quote.get("pcrs") {
            Some(Value::Array(items)) => items
                .iter()
                .map(|p| bytes(p, "PCR value"))
                .collect::<Result<_, _>>()?,
            _ => {
                return Err(AttestError::malformed(
                    "Azure evidence: TPM quote without PCRs",
                ));
            }
        };
        let vcek = match doc.get("vcek") {
            Some(Value::String(s)) if s.contains("-----BEGIN") => Some(s.as_bytes().to_vec()),
            Some(v) => Some(bytes(v, "vcek")?),
            None => None,
        };
        Ok(Self {
            version: doc.get("version").and_then(Value::as_u64).unwrap_or(0),
            hcl_report: bytes(hcl, "hcl_report")?,
            tpm_message: bytes(
                quote.get("message").unwrap_or(&Value::Null),
                "TPM quote message",
            )?,
            tpm_signature: bytes(
                quote.get("signature").unwrap_or(&Value::Null),
                "TPM quote signature",
            )?,
            pcrs,
            vcek,
            td_quote: doc
                .get("td_quote")
                .map(|v| bytes(v, "td_quote"))
                .transpose()?,
        })
    }
}

/// The parts of an HCL report.
struct HclReport<'a> {
    hardware: &'a [u8],
    report_type: u32,
    hash_type: u32,
    var_data: &'a [u8],
}

impl<'a> HclReport<'a> {
    fn parse(data: &'a [u8]) -> Result<Self, AttestError> {
        let bad = |what: &str| AttestError::malformed(format!("HCL report: {what}"));
        if data.len() < REQUEST_AT + 20 || &data[..4] != b"HCLA" {
            return Err(bad("too short or no HCLA header"));
        }
        let u32_at =
            |at: usize| u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
        let report_type = u32_at(REQUEST_AT + 8);
        let hash_type = u32_at(REQUEST_AT + 12);
        let var_len = usize::try_from(u32_at(REQUEST_AT + 16)).map_err(|_| bad("size"))?;
        let var_data = data
            .get(REQUEST_AT + 20..REQUEST_AT + 20 + var_len)
            .ok_or_else(|| bad("runtime data ends past the report"))?;
        Ok(Self {
            hardware: &data[HCL_HEADER_LEN..REQUEST_AT],
            report_type,
            hash_type,
            var_data,
        })
    }

    fn kind(&self) -> Result<TeeKind, AttestError> {
        match self.report_type {
            2 => Ok(TeeKind::AzureSnpVtpm),
            4 => Ok(TeeKind::AzureTdxVtpm),
            t => Err(AttestError::unsupported(format!("HCL report type {t}"))),
        }
    }

    /// The hash of the runtime data the hardware report binds, and its name.
    fn var_data_hash(&self) -> Result<(Vec<u8>, &'static str), AttestError> {
        Ok(match self.hash_type {
            1 => (sha256(self.var_data).to_vec(), "SHA-256"),
            2 => (sha384(self.var_data).to_vec(), "SHA-384"),
            3 => (sha512(self.var_data).to_vec(), "SHA-512"),
            t => return Err(AttestError::unsupported(format!("HCL hash type {t}"))),
        })
    }
}

/// The runtime data's top-level keys in document order.
struct KeyOrder(Vec<String>);

impl<'de> Deserialize<'de> for KeyOrder {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> Visitor<'de> for Keys {
            type Value = KeyOrder;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeyOrder, A::Error> {
                let mut keys = Vec::new();
                while let Some((k, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                    keys.push(k);
                }
                Ok(KeyOrder(keys))
            }
        }
        d.deserialize_map(Keys)
    }
}

/// What the runtime data says: the attestation key, and the rest for the claims.
struct RuntimeData {
    ak_modulus: Vec<u8>,
    ak_public_key: Vec<u8>,
    details: Value,
    user_data: Option<String>,
}

impl RuntimeData {
    fn parse(var_data: &[u8]) -> Result<Self, AttestError> {
        let bad = |what: &str| AttestError::malformed(format!("HCL runtime data: {what}"));
        let doc: Value = serde_json::from_slice(var_data).map_err(|_| bad("not JSON"))?;
        let KeyOrder(keys) = serde_json::from_slice(var_data).map_err(|_| bad("not an object"))?;
        let ak = doc
            .get("keys")
            .and_then(Value::as_array)
            .and_then(|keys| {
                keys.iter()
                    .find(|k| k.get("kid") == Some(&json!("HCLAkPub")))
            })
            .ok_or_else(|| bad("no HCLAkPub key"))?;
        if ak.get("kty") != Some(&json!("RSA")) {
            return Err(AttestError::unsupported("HCLAkPub that is not an RSA key"));
        }
        let b64 = |name: &str| {
            ak.get(name)
                .and_then(Value::as_str)
                .and_then(|s| {
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(s.trim_end_matches('='))
                        .ok()
                })
                .ok_or_else(|| bad("HCLAkPub n or e"))
        };
        let (n, e) = (b64("n")?, b64("e")?);
        let user_data = doc
            .get("user-data")
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(Self {
            ak_public_key: der::rsa_public_key(&n, &e),
            details: json!({
                "var_data_keys": keys,
                "user_data": user_data,
                "vm_configuration": doc.get("vm-configuration"),
                "ak_pub_modulus_sha256": hex::encode(sha256(&n)),
            }),
            ak_modulus: n,
            user_data,
        })
    }
}

/// A parsed `TPMS_ATTEST` of a quote (TPM 2.0 Part 2, 10.12).
struct TpmQuote {
    qualified_signer: Vec<u8>,
    extra_data: Vec<u8>,
    clock: u64,
    reset_count: u32,
    restart_count: u32,
    firmware_version: u64,
    selection: Vec<(u16, Vec<u8>)>,
    pcr_digest: Vec<u8>,
}

impl TpmQuote {
    fn parse(msg: &[u8]) -> Result<Self, AttestError> {
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], AttestError> {
            let out = msg
                .get(at..at + n)
                .ok_or_else(|| AttestError::malformed("TPM quote (TPMS_ATTEST) too short"))?;
            at += n;
            Ok(out)
        };
        let be = |b: &[u8]| b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x));
        if be(take(4)?) != u64::from(TPM_MAGIC) || be(take(2)?) != u64::from(TPM_ST_ATTEST_QUOTE) {
            return Err(AttestError::malformed(
                "TPM quote: not a TPM_GENERATED quote attestation",
            ));
        }
        let signer_len = usize::try_from(be(take(2)?)).unwrap_or(usize::MAX);
        let qualified_signer = take(signer_len)?.to_vec();
        let extra_len = usize::try_from(be(take(2)?)).unwrap_or(usize::MAX);
        let extra_data = take(extra_len)?.to_vec();
        let clock = be(take(8)?);
        let reset_count = u32::try_from(be(take(4)?)).unwrap_or(u32::MAX);
        let restart_count = u32::try_from(be(take(4)?)).unwrap_or(u32::MAX);
        take(1)?; // safe
        let firmware_version = be(take(8)?);
        let count = be(take(4)?);
        if count > 16 {
            return Err(AttestError::malformed("TPM quote: too many PCR banks"));
        }
        let mut selection = Vec::new();
        for _ in 0..count {
            let alg = u16::try_from(be(take(2)?)).unwrap_or(u16::MAX);
            let size = usize::from(take(1)?[0]);
            selection.push((alg, take(size)?.to_vec()));
        }
        let digest_len = usize::try_from(be(take(2)?)).unwrap_or(usize::MAX);
        let pcr_digest = take(digest_len)?.to_vec();
        if at != msg.len() {
            return Err(AttestError::malformed(
                "TPM quote: bytes after the quote info",
            ));
        }
        Ok(Self {
            qualified_signer,
            extra_data,
            clock,
            reset_count,
            restart_count,
            firmware_version,
            selection,
            pcr_digest,
        })
    }

    /// The PCR indexes selected in the single SHA-256 bank.
    fn sha256_pcrs(&self) -> Result<Vec<usize>, AttestError> {
        match self.selection.as_slice() {
            [(TPM_ALG_SHA256, bitmap)] => Ok((0..bitmap.len() * 8)
                .filter(|i| bitmap[i / 8] & (1 << (i % 8)) != 0)
                .collect()),
            _ => Err(AttestError::unsupported(
                "TPM quote PCR selection other than one SHA-256 bank",
            )),
        }
    }
}

/// The checked vTPM half of the evidence: the quote, the runtime data, and their claims.
struct Vtpm {
    quote: TpmQuote,
    runtime: RuntimeData,
    claims: Value,
}

/// Checks the vTPM half of the evidence.
fn check_vtpm(ev: &Evidence, hcl: &HclReport<'_>) -> Result<Vtpm, AttestError> {
    let runtime = RuntimeData::parse(hcl.var_data)?;
    if runtime.ak_modulus.len() < 256 {
        return Err(AttestError::unsupported("HCLAkPub shorter than 2048 bits"));
    }
    verify::verify(
        Scheme::RsaPkcs1Sha256,
        &runtime.ak_public_key,
        &ev.tpm_message,
        &ev.tpm_signature,
    )
    .map_err(|_| {
        AttestError::signature("TPM quote signed by the HCL attestation key (HCLAkPub)")
    })?;
    let quote = TpmQuote::parse(&ev.tpm_message)?;
    let indexes = quote.sha256_pcrs()?;
    if indexes.len() != ev.pcrs.len() || ev.pcrs.iter().any(|p| p.len() != 32) {
        return Err(AttestError::mismatch(format!(
            "the TPM quote selects {} SHA-256 PCRs, the evidence gives {} values",
            indexes.len(),
            ev.pcrs.len()
        )));
    }
    if sha256(&ev.pcrs.concat()) != quote.pcr_digest.as_slice() {
        return Err(AttestError::mismatch(
            "the PCR values do not hash to the TPM quote's PCR digest",
        ));
    }
    if ev.version >= 2 {
        let user = runtime
            .user_data
            .as_deref()
            .and_then(|u| hex::decode(u).ok())
            .ok_or_else(|| AttestError::malformed("HCL runtime data: user-data is not hex"))?;
        if !user.starts_with(&quote.extra_data) {
            return Err(AttestError::mismatch(
                "the runtime data's user-data does not carry the TPM quote's nonce",
            ));
        }
    }
    let pcrs: BTreeMap<String, Value> = indexes
        .iter()
        .zip(&ev.pcrs)
        .map(|(i, v)| (format!("pcr{i:02}"), Value::from(hex::encode(v))))
        .collect();
    let tpm = json!({
        "nonce_extra_data": hex::encode(&quote.extra_data),
        "pcr_selection": [{"hash_alg": "sha256", "pcrs": indexes}],
        "pcr_digest": hex::encode(&quote.pcr_digest),
        "pcrs": pcrs,
        "firmware_version": format!("{:#018x}", quote.firmware_version),
        "clock": quote.clock,
        "reset_count": quote.reset_count,
        "restart_count": quote.restart_count,
        "qualified_signer": hex::encode(&quote.qualified_signer),
    });
    Ok(Vtpm {
        quote,
        runtime,
        claims: tpm,
    })
}

/// Adds the vTPM and HCL claims to the hardware's, and makes the TPM nonce the report data.
fn finish(
    mut claims: VerifiedClaims,
    kind: TeeKind,
    vtpm: Vtpm,
    hcl: &HclReport<'_>,
    hash_name: &str,
    extra: Value,
) -> VerifiedClaims {
    let mut hcl_details = json!({
        "report_type": if kind == TeeKind::AzureSnpVtpm { "SNP" } else { "TDX" },
        "hash_type": hash_name,
        "var_data_sha256": hex::encode(sha256(hcl.var_data)),
        "var_data_len": hcl.var_data.len(),
    });
    for part in [vtpm.runtime.details, extra] {
        if let (Some(map), Value::Object(more)) = (hcl_details.as_object_mut(), part) {
            map.extend(more);
        }
    }
    if let Some(map) = claims.details.as_object_mut() {
        map.insert("tpm".into(), vtpm.claims);
        map.insert("hcl".into(), hcl_details);
    }
    claims.kind = kind;
    claims.report_data = Hex(vtpm.quote.extra_data);
    claims
}

/// The Azure SEV-SNP vTPM verifier.
#[derive(Debug, Clone, Copy, Default)]
pub struct AzureSnpVerifier;

/// The Azure TDX vTPM verifier.
#[derive(Debug, Clone, Copy, Default)]
pub struct AzureTdxVerifier;

/// The HCL report of `ev`, which must be of `kind`, with its checked vTPM half and the hash of
/// its runtime data (and the hash's name): what both Azure verifiers start from.
fn open_hcl(
    ev: &Evidence,
    kind: TeeKind,
) -> Result<(HclReport<'_>, Vtpm, Vec<u8>, &'static str), AttestError> {
    let hcl = HclReport::parse(&ev.hcl_report)?;
    if hcl.kind()? != kind {
        return Err(AttestError::mismatch(format!(
            "the HCL report is not for {kind}"
        )));
    }
    let vtpm = check_vtpm(ev, &hcl)?;
    let (hash, name) = hcl.var_data_hash()?;
    Ok((hcl, vtpm, hash, name))
}

/// Whether hardware report data starts with the runtime data's hash.
fn binds(report_data: &[u8], hash: &[u8]) -> bool {
    let n = hash.len().min(report_data.len());
    report_data[..n] == hash[..n]
}

fn recognise(evidence: &[u8], kind: TeeKind) -> bool {
    Evidence::parse(evidence)
        .ok()
        .and_then(|ev| HclReport::parse(&ev.hcl_report).ok()?.kind().ok())
        == Some(kind)
}

impl Verifier for AzureSnpVerifier {
    fn kind(&self) -> TeeKind {
        TeeKind::AzureSnpVtpm
    }

    fn recognises(&self, evidence: &[u8]) -> bool {
        recognise(evidence, TeeKind::AzureSnpVtpm)
    }

    fn verify(
        &self,
        evidence: &[u8],
        collateral: &Collateral,
        inputs: &Inputs<'_>,
    ) -> Result<VerifiedClaims, AttestError> {
        let ev = Evidence::parse(evidence)?;
        let (hcl, vtpm, hash, hash_name) = open_hcl(&ev, TeeKind::AzureSnpVtpm)?;
        let report = &hcl.hardware[..snp::REPORT_LEN];
        if !binds(&report[0x50..0x90], &hash) {
            return Err(AttestError::mismatch(
                "the SNP report's REPORT_DATA does not bind the HCL runtime data",
            ));
        }
        let mut endorsements = collateral.clone();
        if let Some(vcek) = &ev.vcek {
            endorsements.add(vcek)?;
        }
        let claims = snp::SnpVerifier.verify(report, &endorsements, inputs)?;
        Ok(finish(
            claims,
            TeeKind::AzureSnpVtpm,
            vtpm,
            &hcl,
            hash_name,
            Value::Null,
        ))
    }
}

impl Verifier for AzureTdxVerifier {
    fn kind(&self) -> TeeKind {
        TeeKind::AzureTdxVtpm
    }

    fn recognises(&self, evidence: &[u8]) -> bool {
        recognise(evidence, TeeKind::AzureTdxVtpm)
    }

    fn verify(
        &self,
        evidence: &[u8],
        collateral: &Collateral,
        inputs: &Inputs<'_>,
    ) -> Result<VerifiedClaims, AttestError> {
        let ev = Evidence::parse(evidence)?;
        let (hcl, vtpm, hash, hash_name) = open_hcl(&ev, TeeKind::AzureTdxVtpm)?;
        // TDREPORT: REPORTMACSTRUCT (256 B; report data at 128), TEE_TCB_INFO, TDINFO at 512.
        let td_report = &hcl.hardware[..TD_REPORT_LEN];
        let report_data = &td_report[128..192];
        if !binds(report_data, &hash) {
            return Err(AttestError::mismatch(
                "the TD report's REPORTDATA does not bind the HCL runtime data",
            ));
        }
        let td_quote = ev.td_quote.as_deref().ok_or_else(|| {
            AttestError::missing("the TD quote (td_quote) that authenticates the TD report")
        })?;
        let claims = if collateral.tcb_info.is_some() {
            dcap::TdxVerifier.verify(td_quote, collateral, inputs)?
        } else {
            dcap::authenticate_only(td_quote, collateral, inputs)?
        };
        let td_info = &td_report[512..1024];
        let same = |name: &str, ours: &[u8]| {
            claims.details()[name].as_str() == Some(hex::encode(ours).as_str())
        };
        if !(same("report_data", report_data)
            && same("mr_td", &td_info[16..64])
            && same("rtmr0", &td_info[208..256])
            && same("td_attributes", &td_info[..8]))
        {
            return Err(AttestError::mismatch(
                "the TD quote is not for the TD report in the HCL report \
                 (report data, MRTD, RTMR0 or attributes differ)",
            ));
        }
        let extra = json!({ "td_report_type": hex::encode(&td_report[..4]) });
        Ok(finish(
            claims,
            TeeKind::AzureTdxVtpm,
            vtpm,
            &hcl,
            hash_name,
            extra,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The orphan TPM quote of the Azure SNP folder: no published key verifies it, but its
    /// structure parses to what the case records.
    #[test]
    fn parses_a_recorded_tpms_attest() {
        let msg = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/attestation/azure-snp-vtpm/tpm-quote.msg"
        ))
        .unwrap();
        let q = TpmQuote::parse(&msg).unwrap();
        assert_eq!(q.extra_data, b"challenge");
        assert_eq!(q.firmware_version, 0x2020_0312_0012_0003);
        assert_eq!(q.sha256_pcrs().unwrap(), [0, 1, 2, 3, 4, 5, 6, 7, 14]);
        assert_eq!(
            hex::encode(&q.pcr_digest),
            "9d608cf40eb5bc7454c6cbc0985c17c2efa45d5e5b28004aa7d77c1285d2fa5d"
        );
        assert_eq!(
            hex::encode(&q.qualified_signer),
            "000bcb7db80a611e921d7f0be5393e5a84d23f40a2d4dfc3bb1efa7a388b9ee401c5"
        );
        for len in 0..msg.len() {
            assert!(TpmQuote::parse(&msg[..len]).is_err());
        }
    }
}

//! Endorsements: what vouches for evidence (certificates, CRLs, Intel's TCB info and QE
//! identity), gathered from files in any order and kept byte for byte.
//!
//! [`Collateral::add`] works out what a file is, so a caller can hand over whatever it has: PEM
//! or DER certificates and chains, DER or PEM CRLs (also hex-encoded), Intel PCS response bodies
//! (`{"tcbInfo": …, "signature": …}`, `{"enclaveIdentity": …}`), and the all-in-one collateral
//! JSON of dcap-qvl (`QuoteCollateralV3`). Signed JSON keeps the exact bytes Intel signed;
//! nothing is re-serialised.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::x509::{Certificate, Crl};
use crate::{AttestError, UnixTime};

const SNP_TABLE_ENTRY: usize = 24;

/// The GUIDs of an SEV-SNP certificate table, as bytes in the order the text writes them.
const SNP_CERT_GUIDS: [([u8; 16], &str); 5] = [
    (guid(0x63da758d_e664_4564_adc5_f4b93be8accd), "VCEK"),
    (guid(0xa8074bc2_a25a_483e_aae6_39c045a0b8a1), "VLEK"),
    (guid(0x4ab7b379_bbac_4fe4_a02f_05aef327c782), "ASK"),
    (guid(0xc0b406a4_a803_4952_9743_3fb6014cd0ae), "ARK"),
    (guid(0x92f81bc3_5811_4d3d_97ff_d19f88dc67ea), "CRL"),
];

const fn guid(value: u128) -> [u8; 16] {
    value.to_be_bytes()
}

/// Intel-signed JSON (TCB info or QE identity): the exact signed text and its `r ‖ s` signature.
#[derive(Debug, Clone)]
pub(crate) struct SignedJson {
    pub(crate) signed: Vec<u8>,
    pub(crate) signature: Vec<u8>,
}

/// A bag of endorsements for one piece of evidence.
#[derive(Debug, Clone, Default)]
pub struct Collateral {
    pub(crate) certificates: Vec<Certificate>,
    pub(crate) crls: Vec<Crl>,
    pub(crate) tcb_info: Option<SignedJson>,
    pub(crate) qe_identity: Option<SignedJson>,
}

/// What [`Collateral::add`] recognised a file as.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Recognised {
    /// One or more certificates.
    Certificates(usize),
    /// A certificate revocation list.
    Crl,
    /// Intel TCB info.
    TcbInfo,
    /// Intel QE identity.
    QeIdentity,
    /// dcap-qvl's all-in-one collateral JSON.
    AllInOne,
}

impl std::fmt::Display for Recognised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Certificates(1) => f.write_str("1 certificate"),
            Self::Certificates(n) => write!(f, "{n} certificates"),
            Self::Crl => f.write_str("a CRL"),
            Self::TcbInfo => f.write_str("Intel TCB info"),
            Self::QeIdentity => f.write_str("Intel QE identity"),
            Self::AllInOne => f.write_str("all-in-one DCAP collateral"),
        }
    }
}

#[derive(Deserialize)]
struct TcbInfoBody<'a> {
    #[serde(borrow, rename = "tcbInfo")]
    tcb_info: &'a RawValue,
    signature: String,
}

#[derive(Deserialize)]
struct QeIdentityBody<'a> {
    #[serde(borrow, rename = "enclaveIdentity")]
    identity: &'a RawValue,
    signature: String,
}

#[derive(Deserialize)]
struct AllInOne {
    tcb_info: String,
    tcb_info_signature: String,
    qe_identity: String,
    qe_identity_signature: String,
    #[serde(default)]
    tcb_info_issuer_chain: Option<String>,
    #[serde(default)]
    qe_identity_issuer_chain: Option<String>,
    #[serde(default)]
    pck_crl_issuer_chain: Option<String>,
    #[serde(default)]
    root_ca_crl: Option<String>,
    #[serde(default)]
    pck_crl: Option<String>,
}

impl Collateral {
    /// An empty bag.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a certificate.
    pub fn add_certificate(&mut self, cert: Certificate) {
        if !self.certificates.iter().any(|c| c.der() == cert.der()) {
            self.certificates.push(cert);
        }
    }

    /// The earliest `nextUpdate` of the CRLs held, if any: after it, they are stale.
    pub fn earliest_crl_next_update(&self) -> Option<UnixTime> {
        self.crls.iter().filter_map(Crl::next_update).min()
    }

    /// Adds a CRL.
    pub fn add_crl(&mut self, crl: Crl) {
        if !self.crls.iter().any(|c| c.der() == crl.der()) {
            self.crls.push(crl);
        }
    }

    /// Works out what `bytes` are and adds them; says what they were recognised as.
    pub fn add(&mut self, bytes: &[u8]) -> Result<Recognised, AttestError> {
        if bytes.len() >= SNP_TABLE_ENTRY
            && SNP_CERT_GUIDS.iter().any(|(guid, _)| bytes[..16] == *guid)
        {
            return self.add_snp_cert_table(bytes);
        }
        let text = trim_ascii(bytes);
        if text.starts_with(b"-----BEGIN") {
            return self.add_pem(text);
        }
        // Intel's PCS sends issuer chains URL-encoded in a response header.
        if text.starts_with(b"%2D%2D%2D%2D%2DBEGIN") || text.starts_with(b"-----BEGIN%20") {
            return self.add_pem(&percent_decode(text)?);
        }
        if text.starts_with(b"{") {
            return self.add_json(text);
        }
        if text.first() == Some(&0x30) {
            if let Ok(cert) = Certificate::from_der(bytes) {
                self.add_certificate(cert);
                return Ok(Recognised::Certificates(1));
            }
            let crl = Crl::from_der(bytes)?;
            self.add_crl(crl);
            return Ok(Recognised::Crl);
        }
        if !text.is_empty() && text.iter().all(u8::is_ascii_hexdigit) {
            let der = hex::decode(text).map_err(|_| AttestError::malformed("hex collateral"))?;
            return self.add(&der);
        }
        Err(AttestError::malformed(
            "collateral: not a certificate, CRL, TCB info, QE identity or collateral JSON",
        ))
    }

    /// The certificate table an SEV-SNP host returns with an extended report (configfs-tsm
    /// `auxblob`): 24-byte entries (GUID, offset, length; little-endian) ending with an
    /// all-zero entry, then the DER certificates (and CRL) they point at. GUIDs from the GHCB
    /// specification, written in the order their hex digits appear.
    fn add_snp_cert_table(&mut self, table: &[u8]) -> Result<Recognised, AttestError> {
        let bad = |what: &str| AttestError::malformed(format!("SEV-SNP certificate table: {what}"));
        let mut certificates = 0;
        let mut entries = table.chunks(SNP_TABLE_ENTRY);
        loop {
            let entry = entries.next().ok_or_else(|| bad("no terminating entry"))?;
            if entry.len() < SNP_TABLE_ENTRY {
                return Err(bad("truncated entry"));
            }
            if entry.iter().all(|&b| b == 0) {
                break;
            }
            let at =
                |i: usize| u32::from_le_bytes([entry[i], entry[i + 1], entry[i + 2], entry[i + 3]]);
            let (offset, len) = (at(16) as usize, at(20) as usize);
            let body = offset
                .checked_add(len)
                .and_then(|end| table.get(offset..end))
                .ok_or_else(|| bad("an entry points past the table"))?;
            match SNP_CERT_GUIDS.iter().find(|(guid, _)| entry[..16] == *guid) {
                Some((_, "CRL")) => self.add_crl(Crl::from_der(body)?),
                Some(_) => {
                    self.add_certificate(Certificate::from_der(body)?);
                    certificates += 1;
                }
                None => {} // another vendor's entry: not an endorsement this verifier uses
            }
        }
        Ok(Recognised::Certificates(certificates))
    }

    fn add_pem(&mut self, text: &[u8]) -> Result<Recognised, AttestError> {
        let mut certs = 0;
        let mut crl = false;
        for pem in x509_parser::pem::Pem::iter_from_buffer(text) {
            let pem = pem.map_err(|e| AttestError::malformed(format!("PEM ({e})")))?;
            match pem.label.as_str() {
                "CERTIFICATE" => {
                    self.add_certificate(Certificate::from_der(&pem.contents)?);
                    certs += 1;
                }
                "X509 CRL" => {
                    self.add_crl(Crl::from_der(&pem.contents)?);
                    crl = true;
                }
                other => {
                    return Err(AttestError::unsupported(format!("PEM block {other:?}")));
                }
            }
        }
        match (certs, crl) {
            (0, true) => Ok(Recognised::Crl),
            (0, false) => Err(AttestError::malformed("PEM with no certificate or CRL")),
            (n, _) => Ok(Recognised::Certificates(n)),
        }
    }

    fn add_json(&mut self, text: &[u8]) -> Result<Recognised, AttestError> {
        let bad =
            |what: &str, e: serde_json::Error| AttestError::malformed(format!("{what} JSON ({e})"));
        let value: serde_json::Value =
            serde_json::from_slice(text).map_err(|e| bad("collateral", e))?;
        if value.get("tcbInfo").is_some() {
            let body: TcbInfoBody<'_> =
                serde_json::from_slice(text).map_err(|e| bad("TCB info", e))?;
            self.tcb_info = Some(signed_json(
                body.tcb_info.get(),
                &body.signature,
                "TCB info",
            )?);
            Ok(Recognised::TcbInfo)
        } else if value.get("enclaveIdentity").is_some() {
            let body: QeIdentityBody<'_> =
                serde_json::from_slice(text).map_err(|e| bad("QE identity", e))?;
            self.qe_identity = Some(signed_json(
                body.identity.get(),
                &body.signature,
                "QE identity",
            )?);
            Ok(Recognised::QeIdentity)
        } else if value.get("tcb_info").is_some() {
            let all: AllInOne =
                serde_json::from_value(value).map_err(|e| bad("all-in-one collateral", e))?;
            self.tcb_info = Some(signed_json(
                &all.tcb_info,
                &all.tcb_info_signature,
                "TCB info",
            )?);
            self.qe_identity = Some(signed_json(
                &all.qe_identity,
                &all.qe_identity_signature,
                "QE identity",
            )?);
            for chain in [
                &all.tcb_info_issuer_chain,
                &all.qe_identity_issuer_chain,
                &all.pck_crl_issuer_chain,
            ]
            .into_iter()
            .flatten()
            {
                self.add_pem(chain.as_bytes())?;
            }
            for crl in [&all.root_ca_crl, &all.pck_crl].into_iter().flatten() {
                let der = hex::decode(crl)
                    .map_err(|_| AttestError::malformed("hex CRL in collateral"))?;
                self.add_crl(Crl::from_der(&der)?);
            }
            Ok(Recognised::AllInOne)
        } else {
            Err(AttestError::malformed(
                "collateral JSON: expected tcbInfo, enclaveIdentity or the all-in-one fields",
            ))
        }
    }
}

fn signed_json(signed: &str, signature_hex: &str, what: &str) -> Result<SignedJson, AttestError> {
    let signature = hex::decode(signature_hex)
        .map_err(|_| AttestError::malformed(format!("{what} signature (expected hex)")))?;
    Ok(SignedJson {
        signed: signed.as_bytes().to_vec(),
        signature,
    })
}

/// Decodes `%XX` escapes (as in Intel PCS's `*-Issuer-Chain` headers).
fn percent_decode(text: &[u8]) -> Result<Vec<u8>, AttestError> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| AttestError::malformed("URL-encoded certificate chain"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn trim_ascii(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoded_issuer_chains_are_read() {
        let pem = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/attestation/tdx/T6-go-tdx-qpl/tcbSigningChain.pem"
        ))
        .unwrap();
        let encoded: String = pem
            .iter()
            .map(|&b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => char::from(b).to_string(),
                other => format!("%{other:02X}"),
            })
            .collect();
        let mut c = Collateral::new();
        assert_eq!(
            c.add(encoded.as_bytes()).unwrap(),
            Recognised::Certificates(2)
        );
        let mut plain = Collateral::new();
        plain.add(&pem).unwrap();
        assert_eq!(c.certificates.len(), plain.certificates.len());
        assert!(Collateral::new().add(b"%2D%2D%2D%2D%2DBEGIN%ZZ").is_err());
    }

    #[test]
    fn unknown_bytes_are_refused_by_name() {
        let err = Collateral::new().add(b"hello").unwrap_err();
        assert!(err.to_string().contains("not a certificate, CRL"), "{err}");
    }
}

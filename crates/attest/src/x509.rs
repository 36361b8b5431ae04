//! X.509 certificates and CRLs as the attestation chains use them: parsed once into owned
//! values, signatures checked through `confide-crypto`, validity checked at a given time.
//!
//! Only what vendor chains need is supported: ECDSA P-256/P-384 and RSA (PKCS #1 v1.5 and PSS)
//! signatures. Trust is decided by the caller, which pins roots by the SHA-256 of their
//! SubjectPublicKeyInfo ([`Certificate::spki_sha256`]).

use confide_crypto::digest::sha256;
use confide_crypto::verify::{self, Scheme};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use crate::der::{Reader, TAG_BIT_STRING, TAG_INTEGER, TAG_SEQUENCE};
use crate::{AttestError, UnixTime};

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_RSA_PSS: &str = "1.2.840.113549.1.1.10";
const OID_RSA_SHA256: &str = "1.2.840.113549.1.1.11";
const OID_RSA_SHA384: &str = "1.2.840.113549.1.1.12";
const OID_ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
const OID_ECDSA_SHA384: &str = "1.2.840.10045.4.3.3";
/// DER of the SHA-256 and SHA-384 algorithm identifiers' OIDs, to read RSA-PSS parameters.
const DER_OID_SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
const DER_OID_SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];

/// The kind of a subject public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    P256,
    P384,
    Rsa,
}

/// How an issuer signed: the signature algorithm and its hash, before the issuer's key is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SignedWith {
    EcdsaSha256,
    EcdsaSha384,
    RsaPkcs1Sha256,
    RsaPkcs1Sha384,
    RsaPssSha256,
    RsaPssSha384,
}

impl SignedWith {
    fn parse(oid: &str, params: Option<&[u8]>) -> Result<Self, AttestError> {
        Ok(match oid {
            OID_ECDSA_SHA256 => Self::EcdsaSha256,
            OID_ECDSA_SHA384 => Self::EcdsaSha384,
            OID_RSA_SHA256 => Self::RsaPkcs1Sha256,
            OID_RSA_SHA384 => Self::RsaPkcs1Sha384,
            OID_RSA_PSS => {
                // The parameters name the hash; AMD uses SHA-384 with MGF1-SHA-384.
                let params = params.unwrap_or_default();
                let has = |oid: &[u8]| params.windows(oid.len()).any(|w| w == oid);
                if has(DER_OID_SHA384) && !has(DER_OID_SHA256) {
                    Self::RsaPssSha384
                } else if has(DER_OID_SHA256) && !has(DER_OID_SHA384) {
                    Self::RsaPssSha256
                } else {
                    return Err(AttestError::unsupported("RSA-PSS parameters"));
                }
            }
            other => {
                return Err(AttestError::unsupported(format!(
                    "certificate signature algorithm {other}"
                )));
            }
        })
    }

    fn scheme(self, issuer_key: KeyKind) -> Result<Scheme, AttestError> {
        Ok(match (self, issuer_key) {
            (Self::EcdsaSha256, KeyKind::P256) => Scheme::EcdsaP256Sha256Der,
            (Self::EcdsaSha384, KeyKind::P384) => Scheme::EcdsaP384Sha384Der,
            (Self::EcdsaSha256, KeyKind::P384) => Scheme::EcdsaP384Sha256Der,
            (Self::RsaPkcs1Sha256, KeyKind::Rsa) => Scheme::RsaPkcs1Sha256,
            (Self::RsaPkcs1Sha384, KeyKind::Rsa) => Scheme::RsaPkcs1Sha384,
            (Self::RsaPssSha256, KeyKind::Rsa) => Scheme::RsaPssSha256,
            (Self::RsaPssSha384, KeyKind::Rsa) => Scheme::RsaPssSha384,
            (alg, key) => {
                return Err(AttestError::unsupported(format!(
                    "signature {alg:?} by a {key:?} key"
                )));
            }
        })
    }
}

/// A parsed certificate, owning its bytes.
#[derive(Debug, Clone)]
pub struct Certificate {
    der: Vec<u8>,
    tbs: std::ops::Range<usize>,
    signed_with: SignedWith,
    signature: Vec<u8>,
    key_kind: KeyKind,
    public_key: Vec<u8>,
    spki_sha256: [u8; 32],
    subject: Vec<u8>,
    issuer: Vec<u8>,
    subject_cn: String,
    serial: Vec<u8>,
    not_before: UnixTime,
    not_after: UnixTime,
    extensions: Vec<Extension>,
}

/// One certificate extension: its OID (dotted) and the raw `extnValue` contents.
#[derive(Debug, Clone)]
pub(crate) struct Extension {
    pub(crate) oid: String,
    pub(crate) value: Vec<u8>,
}

impl Certificate {
    /// Parses one DER certificate; trailing bytes are refused.
    pub fn from_der(der: &[u8]) -> Result<Self, AttestError> {
        let bad = |e: String| AttestError::malformed(format!("X.509 certificate ({e})"));
        let (rest, cert) = X509Certificate::from_der(der).map_err(|e| bad(e.to_string()))?;
        if !rest.is_empty() {
            return Err(bad("trailing bytes after the certificate".into()));
        }
        let tbs_raw = cert.tbs_certificate.as_ref();
        let tbs_start = offset_in(der, tbs_raw).ok_or_else(|| bad("TBS not in input".into()))?;
        let alg = &cert.signature_algorithm;
        check_signed_envelope(der, tbs_start..tbs_start + tbs_raw.len(), true)
            .map_err(|e| bad(e.to_string()))?;
        let signed_with = SignedWith::parse(
            &alg.algorithm.to_id_string(),
            alg.parameters.as_ref().map(|p| p.data),
        )?;
        let spki = cert.public_key();
        let key_kind = match spki.algorithm.algorithm.to_id_string().as_str() {
            OID_EC_PUBLIC_KEY => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|o| o.to_id_string());
                match curve.as_deref() {
                    Some(OID_P256) => KeyKind::P256,
                    Some(OID_P384) => KeyKind::P384,
                    other => {
                        return Err(AttestError::unsupported(format!(
                            "elliptic curve {}",
                            other.unwrap_or("(none named)")
                        )));
                    }
                }
            }
            OID_RSA | OID_RSA_PSS => KeyKind::Rsa,
            other => return Err(AttestError::unsupported(format!("public key type {other}"))),
        };
        let subject_cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_owned();
        let extensions = cert
            .extensions()
            .iter()
            .map(|e| Extension {
                oid: e.oid.to_id_string(),
                value: e.value.to_vec(),
            })
            .collect();
        Ok(Self {
            der: der.to_vec(),
            tbs: tbs_start..tbs_start + tbs_raw.len(),
            signed_with,
            signature: cert.signature_value.data.to_vec(),
            key_kind,
            public_key: spki.subject_public_key.data.to_vec(),
            spki_sha256: sha256(spki.raw),
            subject: cert.subject().as_raw().to_vec(),
            issuer: cert.issuer().as_raw().to_vec(),
            subject_cn,
            serial: cert.raw_serial().to_vec(),
            not_before: UnixTime::from_secs(cert.validity().not_before.timestamp()),
            not_after: UnixTime::from_secs(cert.validity().not_after.timestamp()),
            extensions,
        })
    }

    /// Parses every certificate in PEM text, in order.
    pub fn from_pem_chain(text: &[u8]) -> Result<Vec<Self>, AttestError> {
        let mut out = Vec::new();
        for pem in x509_parser::pem::Pem::iter_from_buffer(text) {
            let pem = pem.map_err(|e| AttestError::malformed(format!("PEM ({e})")))?;
            if pem.label == "CERTIFICATE" {
                out.push(Self::from_der(&pem.contents)?);
            }
        }
        Ok(out)
    }

    /// The DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// Whether the key is ECDSA P-256, P-384 or RSA.
    pub fn key_type(&self) -> &'static str {
        match self.key_kind {
            KeyKind::P256 => "P-256",
            KeyKind::P384 => "P-384",
            KeyKind::Rsa => "RSA",
        }
    }

    /// SHA-256 of the DER SubjectPublicKeyInfo: what roots are pinned by.
    pub fn spki_sha256(&self) -> [u8; 32] {
        self.spki_sha256
    }

    /// The subject's common name, or "" if there is none.
    pub fn common_name(&self) -> &str {
        &self.subject_cn
    }

    /// The subject public key: an uncompressed EC point or a DER `RSAPublicKey`.
    pub fn public_key_bytes(&self) -> &[u8] {
        &self.public_key
    }

    pub(crate) fn key_kind(&self) -> KeyKind {
        self.key_kind
    }

    /// The subject public key: an uncompressed point or a DER `RSAPublicKey`.
    pub(crate) fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    pub(crate) fn extensions(&self) -> &[Extension] {
        &self.extensions
    }

    pub(crate) fn extension(&self, oid: &str) -> Option<&[u8]> {
        self.extensions
            .iter()
            .find(|e| e.oid == oid)
            .map(|e| e.value.as_slice())
    }

    pub(crate) fn is_self_issued(&self) -> bool {
        self.subject == self.issuer
    }

    /// Checks that `issuer` signed this certificate and is named as its issuer. `what` names
    /// the link for the error, e.g. "VCEK signed by ASK".
    pub fn check_signed_by(&self, issuer: &Certificate, what: &str) -> Result<(), AttestError> {
        if self.issuer != issuer.subject {
            return Err(AttestError::mismatch(format!(
                "{what}: the certificate names another issuer"
            )));
        }
        let scheme = self.signed_with.scheme(issuer.key_kind)?;
        verify::verify(
            scheme,
            &issuer.public_key,
            &self.der[self.tbs.clone()],
            &self.signature,
        )
        .map_err(|_| AttestError::signature(what))
    }

    /// Checks `not_before <= now <= not_after`.
    pub fn check_valid_at(&self, now: UnixTime, what: &str) -> Result<(), AttestError> {
        now.check_within(what, self.not_before, self.not_after)
    }

    /// Checks a signature made with this certificate's key under `scheme`.
    pub fn verify_signature(
        &self,
        scheme: Scheme,
        message: &[u8],
        signature: &[u8],
        what: &str,
    ) -> Result<(), AttestError> {
        verify::verify(scheme, &self.public_key, message, signature)
            .map_err(|_| AttestError::signature(what))
    }
}

/// A parsed certificate revocation list, owning its bytes.
#[derive(Debug, Clone)]
pub struct Crl {
    der: Vec<u8>,
    tbs: std::ops::Range<usize>,
    signed_with: SignedWith,
    signature: Vec<u8>,
    issuer: Vec<u8>,
    this_update: UnixTime,
    next_update: Option<UnixTime>,
    revoked: Vec<Vec<u8>>,
}

impl Crl {
    /// Parses a DER CRL; trailing bytes are refused.
    pub fn from_der(der: &[u8]) -> Result<Self, AttestError> {
        let bad = |e: String| AttestError::malformed(format!("CRL ({e})"));
        let (rest, crl) =
            CertificateRevocationList::from_der(der).map_err(|e| bad(e.to_string()))?;
        if !rest.is_empty() {
            return Err(bad("trailing bytes after the CRL".into()));
        }
        let tbs_raw: &[u8] = crl.tbs_cert_list.as_ref();
        let tbs_start = offset_in(der, tbs_raw).ok_or_else(|| bad("TBS not in input".into()))?;
        let alg = &crl.signature_algorithm;
        check_signed_envelope(der, tbs_start..tbs_start + tbs_raw.len(), false)
            .map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            der: der.to_vec(),
            tbs: tbs_start..tbs_start + tbs_raw.len(),
            signed_with: SignedWith::parse(
                &alg.algorithm.to_id_string(),
                alg.parameters.as_ref().map(|p| p.data),
            )?,
            signature: crl.signature_value.data.to_vec(),
            issuer: crl.issuer().as_raw().to_vec(),
            this_update: UnixTime::from_secs(crl.last_update().timestamp()),
            next_update: crl
                .next_update()
                .map(|t| UnixTime::from_secs(t.timestamp())),
            revoked: crl
                .iter_revoked_certificates()
                .map(|r| r.raw_serial().to_vec())
                .collect(),
        })
    }

    /// The DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// When the issuer will publish the next list; stale from then on.
    pub fn next_update(&self) -> Option<UnixTime> {
        self.next_update
    }

    /// Whether `issuer` is the CA whose name this CRL carries.
    pub(crate) fn is_issued_by(&self, issuer: &Certificate) -> bool {
        self.issuer == issuer.subject
    }

    /// Checks that `issuer` signed this CRL and that it is current at `now`
    /// (`thisUpdate <= now < nextUpdate`; a CRL is stale from the moment of its next update).
    pub(crate) fn check(
        &self,
        issuer: &Certificate,
        now: UnixTime,
        what: &str,
    ) -> Result<(), AttestError> {
        if !self.is_issued_by(issuer) {
            return Err(AttestError::mismatch(format!(
                "{what}: issued by another CA"
            )));
        }
        let scheme = self.signed_with.scheme(issuer.key_kind)?;
        verify::verify(
            scheme,
            &issuer.public_key,
            &self.der[self.tbs.clone()],
            &self.signature,
        )
        .map_err(|_| AttestError::signature(format!("{what} signed by its issuer")))?;
        let next = self
            .next_update
            .ok_or_else(|| AttestError::malformed(format!("{what}: no nextUpdate")))?;
        now.check_within(what, self.this_update, UnixTime::from_secs(next.secs() - 1))
    }

    /// Refuses `cert` if its serial number is on this list.
    pub(crate) fn check_not_revoked(
        &self,
        cert: &Certificate,
        what: &str,
    ) -> Result<(), AttestError> {
        if self
            .revoked
            .iter()
            .any(|s| strip_zeros(s) == strip_zeros(&cert.serial))
        {
            return Err(AttestError::Revoked {
                what: what.to_owned(),
            });
        }
        Ok(())
    }
}

/// Checks, byte for byte, the parts of a certificate or CRL that its signature does not cover:
/// `SEQUENCE { tbs, algorithm, BIT STRING signature }` with nothing else around them, the outer
/// algorithm identical to the one inside the signed part (RFC 5280 4.1.1.2) and no unused bits
/// in the signature. A parser that tolerated a change there would accept unsigned bytes.
fn check_signed_envelope(
    der: &[u8],
    tbs: std::ops::Range<usize>,
    has_version_tag: bool,
) -> Result<(), AttestError> {
    let bad = |what: &str| AttestError::malformed(what.to_owned());
    let mut outer = Reader::new(der);
    let body = outer.expect(TAG_SEQUENCE, "signed structure")?;
    if !outer.is_empty() {
        return Err(bad("bytes after the signed structure"));
    }
    let mut parts = Reader::new(body);
    let (tag, tbs_raw) = parts.next_raw()?;
    if tag != TAG_SEQUENCE || tbs_raw != &der[tbs] {
        return Err(bad("the signed part is not where the parser found it"));
    }
    let (tag, outer_alg) = parts.next_raw()?;
    let signature = parts.expect(TAG_BIT_STRING, "signature")?;
    if tag != TAG_SEQUENCE || !parts.is_empty() || signature.first() != Some(&0) {
        return Err(bad("signature algorithm or value is not canonical"));
    }
    // Inside the signed part: [0] version (certificates; optional INTEGER for CRLs), serial
    // (certificates only), then the signature algorithm.
    let mut inner = Reader::new(Reader::new(tbs_raw).expect(TAG_SEQUENCE, "signed part")?);
    let mut first = inner.next_raw()?;
    if has_version_tag {
        if first.0 == 0xa0 {
            first = inner.next_raw()?;
        }
        if first.0 != TAG_INTEGER {
            return Err(bad("certificate serial number"));
        }
        first = inner.next_raw()?;
    } else if first.0 == TAG_INTEGER {
        first = inner.next_raw()?;
    }
    if first.1 != outer_alg {
        return Err(bad("outer and signed signature algorithms differ"));
    }
    Ok(())
}

fn strip_zeros(serial: &[u8]) -> &[u8] {
    let start = serial.iter().position(|&b| b != 0).unwrap_or(serial.len());
    &serial[start..]
}

/// Where `part` lies inside `whole`, if it is a sub-slice of it.
fn offset_in(whole: &[u8], part: &[u8]) -> Option<usize> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (start + part.len() <= whole.len()).then_some(start)
}

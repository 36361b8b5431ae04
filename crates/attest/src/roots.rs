//! The vendor roots evidence must chain to, pinned by the SHA-256 of their public keys.
//!
//! The certificates are built in (`roots/` beside this crate, copied from the sources named in
//! `testdata/attestation/roots/roots.json`), but what is trusted is the key: a certificate
//! re-issued with the same key (Intel has done this) is the same root, and a certificate with
//! another key is not, whatever its name.

use crate::AttestError;
use crate::x509::Certificate;

/// An AMD product line's key hierarchy: the ARK (root), the ASK that signs VCEKs and the ASVK
/// that signs VLEKs.
#[derive(Debug, Clone)]
pub(crate) struct AmdProduct {
    pub(crate) name: &'static str,
    pub(crate) ark: Certificate,
    pub(crate) ask: Certificate,
    pub(crate) asvk: Certificate,
}

/// The keys a verifier trusts. [`TrustAnchors::builtin`] is the vendors' production roots.
#[derive(Debug, Clone)]
pub struct TrustAnchors {
    pub(crate) amd: Vec<AmdProduct>,
    pub(crate) intel_root: Option<Certificate>,
    pub(crate) nvidia_root: Option<Certificate>,
}

struct AmdPin {
    name: &'static str,
    pem: &'static [u8],
    ark: &'static str,
    ask: &'static str,
    asvk: &'static str,
}

const AMD: [AmdPin; 3] = [
    AmdPin {
        name: "Milan",
        pem: include_bytes!("../roots/milan_ask_ark_asvk.pem"),
        ark: "9f056bee44377e29308cb5ffa895bdfb62d18881fa6bed8d6f075b0204089cb9",
        ask: "42491669ccb851d627ea9846cd24eccbeb7de7c2a62740120fff88001d38ebb6",
        asvk: "66450a123ea5876206df67f2514a4fea224c0f63b18313423078b0edc4535e33",
    },
    AmdPin {
        name: "Genoa",
        pem: include_bytes!("../roots/genoa_ask_ark_asvk.pem"),
        ark: "429a69c9422aa258ee4d8db5fcda9c6470ef15f8cd5a9cebd6cbc7d90b863831",
        ask: "0324d55bcd48ba877a8fd87c0e1b4934dec8448e3807a24384a34dc6a6c9ebb8",
        asvk: "7d1633252ebbadaa75f96e9b4e6f7d43a90ceb3f843937482630f8da2459264e",
    },
    AmdPin {
        name: "Turin",
        pem: include_bytes!("../roots/turin_ask_ark_asvk.pem"),
        ark: "4f125410563a2ab9a50356f9243f6fe0b6f73de98603f53f90339c70e9d7ad08",
        ask: "0000ead352025f208bf55297c4192c34cd1b878002107366d8f2065a9ae7d3a9",
        asvk: "bfc441408b2f806c5dbf180bd8920e6e60dd404d82141780d85dbf962954d386",
    },
];

const INTEL_ROOT_DER: &[u8] = include_bytes!("../roots/TrustedRootCA.der");
/// Intel SGX Root CA, which anchors both SGX and TDX DCAP.
pub(crate) const INTEL_ROOT_SPKI: &str =
    "a0af031289f5d5d4132f9186068a7fc13628633ba235777472e29b6b6c67a49e";
const NVIDIA_ROOT_PEM: &[u8] = include_bytes!("../roots/verifier_device_root.pem");
/// NVIDIA Device Identity CA, which anchors GPU device certificates.
pub(crate) const NVIDIA_ROOT_SPKI: &str =
    "a90c4eb5acfd3e3d03a25db6a26b84f720ad0503196c627c21ddd48dd85b06a4";

impl TrustAnchors {
    /// The production roots of AMD (Milan, Genoa, Turin), Intel and NVIDIA.
    pub fn builtin() -> Result<Self, AttestError> {
        let mut amd = Vec::new();
        for pin in &AMD {
            let certs = Certificate::from_pem_chain(pin.pem)?;
            let by_key = |spki: &str| {
                certs
                    .iter()
                    .find(|c| hex::encode(c.spki_sha256()) == spki)
                    .cloned()
                    .ok_or_else(|| {
                        AttestError::missing(format!("built-in AMD {} key {spki}", pin.name))
                    })
            };
            amd.push(AmdProduct {
                name: pin.name,
                ark: by_key(pin.ark)?,
                ask: by_key(pin.ask)?,
                asvk: by_key(pin.asvk)?,
            });
        }
        let intel = Certificate::from_der(INTEL_ROOT_DER)?;
        pinned(&intel, INTEL_ROOT_SPKI, "built-in Intel SGX Root CA")?;
        let nvidia = Certificate::from_pem_chain(NVIDIA_ROOT_PEM)?
            .into_iter()
            .next()
            .ok_or_else(|| AttestError::missing("built-in NVIDIA root"))?;
        pinned(
            &nvidia,
            NVIDIA_ROOT_SPKI,
            "built-in NVIDIA Device Identity CA",
        )?;
        Ok(Self {
            amd,
            intel_root: Some(intel),
            nvidia_root: Some(nvidia),
        })
    }

    /// Trusts no AMD product, for checking that evidence fails closed without its root.
    pub fn without_amd(mut self) -> Self {
        self.amd.clear();
        self
    }

    /// Trusts no Intel root.
    pub fn without_intel(mut self) -> Self {
        self.intel_root = None;
        self
    }

    /// Trusts no NVIDIA root.
    pub fn without_nvidia(mut self) -> Self {
        self.nvidia_root = None;
        self
    }
}

/// Refuses `cert` unless its public key hashes to `spki_hex`.
pub(crate) fn pinned(cert: &Certificate, spki_hex: &str, what: &str) -> Result<(), AttestError> {
    if hex::encode(cert.spki_sha256()) == spki_hex {
        Ok(())
    } else {
        Err(AttestError::UntrustedRoot {
            what: what.to_owned(),
        })
    }
}

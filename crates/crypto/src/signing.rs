//! ECDSA P-256 with SHA-256: the keys members sign governance requests with.
//!
//! Signatures are the fixed 64-byte `r ‖ s` form that JOSE (ES256) and COSE use. Private keys
//! are stored as PKCS#8 and public keys exchanged as uncompressed SEC1 points or JWK
//! coordinates; a [`VerifyingKey`] exists only for a point that is on the curve.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
};
use zeroize::Zeroizing;

use crate::CryptoError;

/// Length of a signature: `r ‖ s`, 32 bytes each.
pub const SIGNATURE_LEN: usize = 64;
/// Length of an uncompressed SEC1 point: `0x04 ‖ x ‖ y`.
pub const PUBLIC_KEY_LEN: usize = 65;

/// DER of `SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (0 unused bits) … }`
/// up to the point (RFC 5480).
const SPKI_P256_PREFIX: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// A member's ECDSA P-256 private key. Its bytes are never printed.
pub struct SigningKey {
    pair: EcdsaKeyPair,
}

impl SigningKey {
    /// A fresh key from the system random generator.
    pub fn generate() -> Result<Self, CryptoError> {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| CryptoError::RandomUnavailable)?;
        Ok(Self { pair })
    }

    /// Loads a key from PKCS#8 (RFC 5208 or 5958) DER.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, CryptoError> {
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).map_err(|_| {
                CryptoError::InvalidKey {
                    what: "ECDSA P-256 private key (expected PKCS#8 DER)",
                }
            })?;
        Ok(Self { pair })
    }

    /// The key as PKCS#8 v1 DER, in a buffer that zeroizes itself when dropped.
    pub fn to_pkcs8(&self) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let doc = self.pair.to_pkcs8v1().map_err(|_| CryptoError::Internal {
            operation: "PKCS#8 encoding",
        })?;
        Ok(Zeroizing::new(doc.as_ref().to_vec()))
    }

    /// The matching public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        let mut point = [0u8; PUBLIC_KEY_LEN];
        point.copy_from_slice(self.pair.public_key().as_ref());
        VerifyingKey { point }
    }

    /// Signs `message` (hashed with SHA-256 first).
    pub fn sign(&self, message: &[u8]) -> Result<[u8; SIGNATURE_LEN], CryptoError> {
        let sig = self
            .pair
            .sign(&SystemRandom::new(), message)
            .map_err(|_| CryptoError::RandomUnavailable)?;
        let mut out = [0u8; SIGNATURE_LEN];
        out.copy_from_slice(sig.as_ref());
        Ok(out)
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("public", &self.verifying_key())
            .finish_non_exhaustive()
    }
}

/// An ECDSA P-256 public key whose point has been checked to be on the curve.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct VerifyingKey {
    point: [u8; PUBLIC_KEY_LEN],
}

impl VerifyingKey {
    /// Parses an uncompressed SEC1 point (`0x04 ‖ x ‖ y`), refusing points not on the curve.
    pub fn from_sec1(bytes: &[u8]) -> Result<Self, CryptoError> {
        let invalid = CryptoError::InvalidKey {
            what: "ECDSA P-256 public key (expected an uncompressed point on the curve)",
        };
        let point: [u8; PUBLIC_KEY_LEN] = bytes.try_into().map_err(|_| invalid.clone())?;
        if point[0] != 0x04 {
            return Err(invalid);
        }
        signature::ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).map_err(|_| invalid)?;
        Ok(Self { point })
    }

    /// Builds the key from its affine coordinates, as a JWK carries them.
    pub fn from_coordinates(x: &[u8], y: &[u8]) -> Result<Self, CryptoError> {
        if x.len() != 32 || y.len() != 32 {
            return Err(CryptoError::InvalidKey {
                what: "ECDSA P-256 public key (each coordinate must be 32 bytes)",
            });
        }
        let mut point = [0u8; PUBLIC_KEY_LEN];
        point[0] = 0x04;
        point[1..33].copy_from_slice(x);
        point[33..].copy_from_slice(y);
        Self::from_sec1(&point)
    }

    /// The uncompressed SEC1 point.
    pub fn to_sec1(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.point
    }

    /// The x coordinate.
    pub fn x(&self) -> &[u8] {
        &self.point[1..33]
    }

    /// The y coordinate.
    pub fn y(&self) -> &[u8] {
        &self.point[33..]
    }

    /// The key's id as people compare it and JWKS name it: the first 16 bytes of the SHA-256
    /// of its SubjectPublicKeyInfo, hex.
    pub fn key_id(&self) -> String {
        hex::encode(&crate::digest::sha256(&self.to_spki_der())[..16])
    }

    /// The DER SubjectPublicKeyInfo (RFC 5480): the form X.509 and PEM `PUBLIC KEY` files use.
    pub fn to_spki_der(&self) -> Vec<u8> {
        [SPKI_P256_PREFIX, &self.point[..]].concat()
    }

    /// Parses a DER SubjectPublicKeyInfo holding a P-256 key.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, CryptoError> {
        der.strip_prefix(SPKI_P256_PREFIX)
            .ok_or(CryptoError::InvalidKey {
                what: "ECDSA P-256 SubjectPublicKeyInfo",
            })
            .and_then(Self::from_sec1)
    }

    /// The key as a PEM `PUBLIC KEY` document.
    pub fn to_spki_pem(&self) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(self.to_spki_der());
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
    }

    /// Parses a PEM `PUBLIC KEY` document holding a P-256 key.
    pub fn from_spki_pem(text: &str) -> Result<Self, CryptoError> {
        let der = crate::pem_decode(text, "PUBLIC KEY").ok_or(CryptoError::InvalidKey {
            what: "PEM PUBLIC KEY (ECDSA P-256)",
        })?;
        Self::from_spki_der(&der)
    }

    /// Checks a fixed-form (`r ‖ s`) signature over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
        signature::UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.point)
            .verify(message, signature)
            .map_err(|_| CryptoError::BadSignature)
    }
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerifyingKey(")?;
        for b in &self.point[1..9] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_refuse_tampering() {
        let key = SigningKey::generate().unwrap();
        let public = key.verifying_key();
        let sig = key.sign(b"proposal").unwrap();
        public.verify(b"proposal", &sig).unwrap();
        assert_eq!(
            public.verify(b"proposa1", &sig),
            Err(CryptoError::BadSignature)
        );
        let mut bad = sig;
        bad[10] ^= 1;
        assert_eq!(
            public.verify(b"proposal", &bad),
            Err(CryptoError::BadSignature)
        );
        let other = SigningKey::generate().unwrap().verifying_key();
        assert_eq!(
            other.verify(b"proposal", &sig),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn pkcs8_and_coordinates_round_trip() {
        let key = SigningKey::generate().unwrap();
        let reloaded = SigningKey::from_pkcs8(&key.to_pkcs8().unwrap()).unwrap();
        assert_eq!(reloaded.verifying_key(), key.verifying_key());
        let public = key.verifying_key();
        assert_eq!(
            VerifyingKey::from_coordinates(public.x(), public.y()).unwrap(),
            public
        );
        assert_eq!(VerifyingKey::from_sec1(&public.to_sec1()).unwrap(), public);
    }

    #[test]
    fn spki_pem_round_trip() {
        let public = SigningKey::generate().unwrap().verifying_key();
        let pem = public.to_spki_pem();
        assert!(
            pem.starts_with("-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE")
        );
        assert_eq!(VerifyingKey::from_spki_pem(&pem).unwrap(), public);
        assert!(VerifyingKey::from_spki_pem(&pem.replace("MFkw", "MFkx")).is_err());
        assert!(VerifyingKey::from_spki_der(&public.to_sec1()).is_err());
    }

    #[test]
    fn points_off_the_curve_are_refused() {
        let public = SigningKey::generate().unwrap().verifying_key();
        let mut y = public.y().to_vec();
        y[31] ^= 1;
        assert!(VerifyingKey::from_coordinates(public.x(), &y).is_err());
        assert!(VerifyingKey::from_sec1(&public.to_sec1()[..64]).is_err());
        let mut compressed_tag = public.to_sec1();
        compressed_tag[0] = 0x02;
        assert!(VerifyingKey::from_sec1(&compressed_tag).is_err());
        assert!(SigningKey::from_pkcs8(b"not a key").is_err());
    }
}

//! Verifying signatures made by others: hardware vendors, certificate authorities, TPMs.
//!
//! Attestation evidence and its endorsements are signed with whatever the vendor chose: ECDSA
//! over P-256 or P-384 (in DER or in the fixed `r ‖ s` form), RSA-PSS or RSA PKCS #1 v1.5. This
//! module names each scheme once and checks a signature under a public key given as the
//! contents of an X.509 `subjectPublicKey` (an uncompressed EC point or a PKCS #1
//! `RSAPublicKey`). Nothing here decides whom to trust; that is the caller's job.

use aws_lc_rs::signature::{self, VerificationAlgorithm};

use crate::CryptoError;

/// A signature scheme: algorithm, curve or key size range, hash, and encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    /// ECDSA P-256 with SHA-256, signature in ASN.1 DER (as X.509 and CRLs carry it).
    EcdsaP256Sha256Der,
    /// ECDSA P-256 with SHA-256, signature as fixed `r ‖ s` (32 bytes each, big-endian).
    EcdsaP256Sha256Fixed,
    /// ECDSA P-384 with SHA-384, signature in ASN.1 DER.
    EcdsaP384Sha384Der,
    /// ECDSA P-384 with SHA-384, signature as fixed `r ‖ s` (48 bytes each, big-endian).
    EcdsaP384Sha384Fixed,
    /// ECDSA P-384 with SHA-256, signature in ASN.1 DER.
    EcdsaP384Sha256Der,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt; 2048 to 8192-bit keys.
    RsaPssSha256,
    /// RSASSA-PSS with SHA-384, MGF1-SHA-384 and a 48-byte salt; 2048 to 8192-bit keys.
    RsaPssSha384,
    /// RSASSA-PKCS1-v1_5 with SHA-256; 2048 to 8192-bit keys.
    RsaPkcs1Sha256,
    /// RSASSA-PKCS1-v1_5 with SHA-384; 2048 to 8192-bit keys.
    RsaPkcs1Sha384,
}

impl Scheme {
    fn algorithm(self) -> &'static dyn VerificationAlgorithm {
        match self {
            Self::EcdsaP256Sha256Der => &signature::ECDSA_P256_SHA256_ASN1,
            Self::EcdsaP256Sha256Fixed => &signature::ECDSA_P256_SHA256_FIXED,
            Self::EcdsaP384Sha384Der => &signature::ECDSA_P384_SHA384_ASN1,
            Self::EcdsaP384Sha384Fixed => &signature::ECDSA_P384_SHA384_FIXED,
            Self::EcdsaP384Sha256Der => &signature::ECDSA_P384_SHA256_ASN1,
            Self::RsaPssSha256 => &signature::RSA_PSS_2048_8192_SHA256,
            Self::RsaPssSha384 => &signature::RSA_PSS_2048_8192_SHA384,
            Self::RsaPkcs1Sha256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Self::RsaPkcs1Sha384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        }
    }
}

/// Checks `signature` over `message` under `public_key` with `scheme`.
///
/// `public_key` is an uncompressed SEC1 point for ECDSA and a DER `RSAPublicKey` for RSA. A key
/// of the wrong kind or size, and a signature that does not verify, are both
/// [`CryptoError::BadSignature`].
pub fn verify(
    scheme: Scheme,
    public_key: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), CryptoError> {
    signature::UnparsedPublicKey::new(scheme.algorithm(), public_key)
        .verify(message, signature)
        .map_err(|_| CryptoError::BadSignature)
}

/// Checks an ECDSA `signature` over a message of which only the `digest` is given (the message
/// was hashed by someone else, as CCF signs its Merkle roots). `scheme` must be an ECDSA scheme;
/// the digest must have its hash's length.
pub fn verify_prehashed(
    scheme: Scheme,
    public_key: &[u8],
    digest: &[u8],
    signature: &[u8],
) -> Result<(), CryptoError> {
    let hash = match scheme {
        Scheme::EcdsaP256Sha256Der | Scheme::EcdsaP256Sha256Fixed | Scheme::EcdsaP384Sha256Der => {
            &aws_lc_rs::digest::SHA256
        }
        Scheme::EcdsaP384Sha384Der | Scheme::EcdsaP384Sha384Fixed => &aws_lc_rs::digest::SHA384,
        _ => return Err(CryptoError::BadSignature),
    };
    let digest = aws_lc_rs::digest::Digest::import_less_safe(digest, hash)
        .map_err(|_| CryptoError::BadSignature)?;
    signature::UnparsedPublicKey::new(scheme.algorithm(), public_key)
        .verify_digest(&digest, signature)
        .map_err(|_| CryptoError::BadSignature)
}

/// A public key parsed once and checked many times, for keys that sign a stream of evidence
/// (an SNP chip's VCEK, a cached PCK certificate).
#[derive(Debug)]
pub struct PreparedKey {
    key: signature::ParsedPublicKey,
}

impl PreparedKey {
    /// Parses `public_key` for `scheme`, refusing a key that is not valid for it.
    pub fn new(scheme: Scheme, public_key: &[u8]) -> Result<Self, CryptoError> {
        let key =
            signature::ParsedPublicKey::new(scheme.algorithm(), public_key).map_err(|_| {
                CryptoError::InvalidKey {
                    what: "public key for the signature scheme",
                }
            })?;
        Ok(Self { key })
    }

    /// Checks `signature` over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
        self.key
            .verify_sig(message, signature)
            .map_err(|_| CryptoError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

    #[test]
    fn p384_fixed_verifies_and_refuses_tampering() {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).unwrap();
        let sig = pair.sign(&rng, b"report").unwrap();
        let public = pair.public_key().as_ref();
        verify(
            Scheme::EcdsaP384Sha384Fixed,
            public,
            b"report",
            sig.as_ref(),
        )
        .unwrap();
        let prepared = PreparedKey::new(Scheme::EcdsaP384Sha384Fixed, public).unwrap();
        prepared.verify(b"report", sig.as_ref()).unwrap();
        assert_eq!(
            prepared.verify(b"rep0rt", sig.as_ref()),
            Err(CryptoError::BadSignature)
        );
        // The same key and signature under another scheme does not verify.
        assert_eq!(
            verify(Scheme::EcdsaP384Sha384Der, public, b"report", sig.as_ref()),
            Err(CryptoError::BadSignature)
        );
        assert!(PreparedKey::new(Scheme::EcdsaP256Sha256Fixed, public).is_err());
    }

    #[test]
    fn prehashed_equals_hashing_the_message() {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).unwrap();
        let sig = pair.sign(&rng, b"root").unwrap();
        let public = pair.public_key().as_ref();
        let digest = crate::digest::sha384(b"root");
        verify_prehashed(Scheme::EcdsaP384Sha384Fixed, public, &digest, sig.as_ref()).unwrap();
        let other = crate::digest::sha384(b"r00t");
        assert!(
            verify_prehashed(Scheme::EcdsaP384Sha384Fixed, public, &other, sig.as_ref()).is_err()
        );
        assert!(
            verify_prehashed(
                Scheme::EcdsaP384Sha384Fixed,
                public,
                &digest[..32],
                sig.as_ref()
            )
            .is_err()
        );
        assert!(verify_prehashed(Scheme::RsaPssSha256, public, &digest, sig.as_ref()).is_err());
    }
}

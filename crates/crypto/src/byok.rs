//! Bring your own key: importing a key wrapped with PKCS #11 `CKM_RSA_AES_KEY_WRAP`, the
//! mechanism Azure Key Vault, HashiCorp Vault transit and Google Cloud KMS accept.
//!
//! The owner wraps their key to the broker's key-exchange key (an RSA key whose private half
//! never leaves the broker): a fresh AES key (128 or 256 bits) is encrypted with RSA-OAEP
//! (SHA-256 with MGF1-SHA-256, or SHA-1 for tools that only do that), and the target key is
//! wrapped under the AES key with AES Key Wrap with Padding (RFC 5649). The blob is the two
//! concatenated: `RSA-OAEP(aes key) ‖ AES-KWP(aes key, target)`, the first part as long as the
//! RSA modulus. `openssl pkeyutl -encrypt … rsa_padding_mode:oaep` and
//! `openssl enc -id-aes256-wrap-pad -iv A65959A6` make the same blob (tests check that).

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::key_wrap::{AES_128, AES_256, AesKek, KeyWrapPadded as _};
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepAlgorithm, OaepPrivateDecryptingKey,
    OaepPublicEncryptingKey, PrivateDecryptingKey, PublicEncryptingKey,
};
use zeroize::Zeroizing;

use crate::{CryptoError, random};

/// The hash of the RSA-OAEP part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OaepHash {
    /// SHA-256, MGF1 with SHA-256 (the default).
    Sha256,
    /// SHA-1, MGF1 with SHA-1 (`CKM_RSA_AES_KEY_WRAP` as Azure Key Vault names it).
    Sha1,
}

impl OaepHash {
    /// `sha256` or `sha1`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "sha256" | "SHA-256" | "SHA256" => Some(Self::Sha256),
            "sha1" | "SHA-1" | "SHA1" => Some(Self::Sha1),
            _ => None,
        }
    }

    fn algorithm(self) -> &'static OaepAlgorithm {
        match self {
            Self::Sha256 => &OAEP_SHA256_MGF1SHA256,
            Self::Sha1 => &OAEP_SHA1_MGF1SHA1,
        }
    }
}

fn bad(what: &'static str) -> CryptoError {
    CryptoError::Byok { what }
}

/// The broker's key-exchange key: RSA 3072, private half kept sealed by the caller.
pub struct KeyExchangeKey(PrivateDecryptingKey);

impl std::fmt::Debug for KeyExchangeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyExchangeKey(..)")
    }
}

impl KeyExchangeKey {
    /// A fresh 3072-bit key.
    pub fn generate() -> Result<Self, CryptoError> {
        PrivateDecryptingKey::generate(KeySize::Rsa3072)
            .map(Self)
            .map_err(|_| CryptoError::Internal {
                operation: "RSA key generation",
            })
    }

    /// The private key as PKCS #8, to be sealed at rest.
    pub fn to_pkcs8(&self) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        self.0
            .as_der()
            .map(|d| Zeroizing::new(d.as_ref().to_vec()))
            .map_err(|_| CryptoError::Internal {
                operation: "RSA key encoding",
            })
    }

    /// The key from PKCS #8.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, CryptoError> {
        PrivateDecryptingKey::from_pkcs8(der)
            .map(Self)
            .map_err(|_| CryptoError::InvalidKey {
                what: "RSA PKCS #8 key",
            })
    }

    /// The public key, SubjectPublicKeyInfo DER.
    pub fn public_spki_der(&self) -> Result<Vec<u8>, CryptoError> {
        self.0
            .public_key()
            .as_der()
            .map(|d| d.as_ref().to_vec())
            .map_err(|_| CryptoError::Internal {
                operation: "RSA public key encoding",
            })
    }

    /// The public key as PEM (`-----BEGIN PUBLIC KEY-----`), for `openssl` and the like.
    pub fn public_pem(&self) -> Result<String, CryptoError> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(self.public_spki_der()?);
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        Ok(pem)
    }

    /// Unwraps a `CKM_RSA_AES_KEY_WRAP` blob made for this key; the target key's bytes.
    pub fn unwrap(&self, blob: &[u8], hash: OaepHash) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let key =
            OaepPrivateDecryptingKey::new(self.0.clone()).map_err(|_| CryptoError::Internal {
                operation: "RSA-OAEP key setup",
            })?;
        let modulus = key.key_size_bytes();
        if blob.len() <= modulus {
            return Err(bad(
                "the blob is shorter than the key-exchange key's modulus plus a wrapped key",
            ));
        }
        let (rsa_part, kwp_part) = blob.split_at(modulus);
        let mut aes = Zeroizing::new(vec![0u8; key.min_output_size()]);
        let len = key
            .decrypt(hash.algorithm(), rsa_part, &mut aes, None)
            .map_err(|_| {
                bad("the RSA-OAEP part does not decrypt: another key-exchange key, another OAEP hash, or changed")
            })?
            .len();
        aes.truncate(len);
        let kek = match aes.len() {
            16 => AesKek::new(&AES_128, &aes),
            32 => AesKek::new(&AES_256, &aes),
            _ => return Err(bad("the wrapping AES key is neither 128 nor 256 bits")),
        }
        .map_err(|_| CryptoError::Internal {
            operation: "AES-KWP key setup",
        })?;
        let mut out = Zeroizing::new(vec![0u8; kwp_part.len()]);
        let len = kek
            .unwrap_with_padding(kwp_part, &mut out)
            .map_err(|_| bad("the AES-KWP part does not unwrap: changed, or not RFC 5649"))?
            .len();
        out.truncate(len);
        Ok(out)
    }
}

/// Wraps `target` to the key-exchange key `kek_spki_der` (an RSA SubjectPublicKeyInfo), as an
/// owner's tool would: a fresh AES-256 key, RSA-OAEP with `hash`, AES-KWP.
pub fn wrap(kek_spki_der: &[u8], target: &[u8], hash: OaepHash) -> Result<Vec<u8>, CryptoError> {
    let public =
        PublicEncryptingKey::from_der(kek_spki_der).map_err(|_| CryptoError::InvalidKey {
            what: "RSA public key (SubjectPublicKeyInfo)",
        })?;
    let public = OaepPublicEncryptingKey::new(public).map_err(|_| CryptoError::Internal {
        operation: "RSA-OAEP key setup",
    })?;
    let aes = Zeroizing::new(random::array::<32>()?);
    let mut blob = vec![0u8; public.ciphertext_size()];
    let len = public
        .encrypt(hash.algorithm(), &aes[..], &mut blob, None)
        .map_err(|_| CryptoError::Internal {
            operation: "RSA-OAEP encryption",
        })?
        .len();
    blob.truncate(len);
    let kek = AesKek::new(&AES_256, &aes[..]).map_err(|_| CryptoError::Internal {
        operation: "AES-KWP key setup",
    })?;
    let mut wrapped = vec![0u8; target.len() + 16];
    let len = kek
        .wrap_with_padding(target, &mut wrapped)
        .map_err(|_| CryptoError::Internal {
            operation: "AES-KWP wrap",
        })?
        .len();
    blob.extend_from_slice(&wrapped[..len]);
    Ok(blob)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_unwrap_round_trip_and_every_change_is_refused() {
        let kek = KeyExchangeKey::generate().unwrap();
        let spki = kek.public_spki_der().unwrap();
        let target = random::array::<32>().unwrap();
        for hash in [OaepHash::Sha256, OaepHash::Sha1] {
            let blob = wrap(&spki, &target, hash).unwrap();
            assert_eq!(blob.len(), 384 + 40);
            assert_eq!(&kek.unwrap(&blob, hash).unwrap()[..], &target[..]);
            let other = if hash == OaepHash::Sha1 {
                OaepHash::Sha256
            } else {
                OaepHash::Sha1
            };
            assert!(kek.unwrap(&blob, other).is_err());
            for at in [0, 200, 383, 384, 400, blob.len() - 1] {
                let mut changed = blob.clone();
                changed[at] ^= 1;
                assert!(kek.unwrap(&changed, hash).is_err(), "byte {at}");
            }
            assert!(kek.unwrap(&blob[..384], hash).is_err());
        }
        let again = KeyExchangeKey::from_pkcs8(&kek.to_pkcs8().unwrap()).unwrap();
        assert_eq!(again.public_spki_der().unwrap(), spki);
        assert!(
            kek.public_pem()
                .unwrap()
                .starts_with("-----BEGIN PUBLIC KEY-----\nMII")
        );
    }
}

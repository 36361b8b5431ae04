//! JSON Web Encryption (RFC 7516), flattened JSON serialisation, for answering workloads that
//! speak JOSE: the Trustee KBS protocol and JWK-keyed key release.
//!
//! Content encryption is always `A256GCM` with a fresh 256-bit key (the CEK) and a random
//! 96-bit IV; the additional data is the ASCII of the base64url protected header (RFC 7516
//! §5.1). The CEK reaches the recipient's public key (a JWK) by one of two key management
//! algorithms (RFC 7518):
//!
//! - `ECDH-ES+A256KW` for `{"kty":"EC","crv":"P-256"}`: ECDH with an ephemeral P-256 key (its
//!   public half is the header's `epk`), the Concat KDF of §4.6.2 with SHA-256 (AlgorithmID
//!   = the `alg` value, empty PartyUInfo/PartyVInfo, 256 bits), then AES Key Wrap (RFC 3394).
//! - `RSA-OAEP-256` for `{"kty":"RSA"}` (2048 bits or more): RSAES-OAEP, SHA-256 and MGF1-SHA-256.
//!
//! A JWK that names another `alg` than the one its type implies is refused, not reinterpreted.
//! [`DecryptionKey`] is the recipient's side, for workloads, tests and the load generator.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::agreement::{self, ECDH_P256, PrivateKey, UnparsedPublicKey};
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::key_wrap::{AES_256, AesKek, KeyWrap as _};
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    PrivateDecryptingKey, PublicEncryptingKey, PublicKeyComponents,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::{CryptoError, random};

/// The key management algorithm for P-256 recipients.
pub const ECDH_ES_A256KW: &str = "ECDH-ES+A256KW";
/// The key management algorithm for RSA recipients.
pub const RSA_OAEP_256: &str = "RSA-OAEP-256";
/// The content encryption algorithm.
pub const A256GCM: &str = "A256GCM";

const TAG_LEN: usize = 16;
const IV_LEN: usize = 12;
const MIN_RSA_BYTES: usize = 256;

fn bad(what: &'static str) -> CryptoError {
    CryptoError::Jwe { what }
}

fn internal(operation: &'static str) -> impl Fn(aws_lc_rs::error::Unspecified) -> CryptoError {
    move |_| CryptoError::Internal { operation }
}

fn member<'a>(jwk: &'a Value, name: &str) -> Option<&'a str> {
    jwk.get(name).and_then(Value::as_str)
}

fn b64_member(jwk: &Value, name: &str, what: &'static str) -> Result<Vec<u8>, CryptoError> {
    member(jwk, name)
        .and_then(|v| B64.decode(v).ok())
        .ok_or(bad(what))
}

/// A recipient's public key, read from a JWK.
enum Recipient {
    P256(Vec<u8>),
    Rsa(OaepPublicEncryptingKey),
}

impl Recipient {
    fn from_jwk(jwk: &Value) -> Result<Self, CryptoError> {
        let alg = member(jwk, "alg");
        match (member(jwk, "kty"), member(jwk, "crv")) {
            (Some("EC"), Some("P-256")) => {
                if alg.is_some_and(|a| a != ECDH_ES_A256KW) {
                    return Err(bad("the EC key's alg is not ECDH-ES+A256KW"));
                }
                let x = b64_member(jwk, "x", "the EC key's x coordinate")?;
                let y = b64_member(jwk, "y", "the EC key's y coordinate")?;
                if x.len() != 32 || y.len() != 32 {
                    return Err(bad("a P-256 coordinate is not 32 bytes"));
                }
                let point = [&[4u8][..], &x, &y].concat();
                // Refuse points off the curve now, not at agreement time.
                crate::signing::VerifyingKey::from_sec1(&point)
                    .map_err(|_| bad("the EC key is not a point on P-256"))?;
                Ok(Self::P256(point))
            }
            (Some("EC"), _) => Err(bad("only P-256 EC keys are supported")),
            (Some("RSA"), _) => {
                if alg.is_some_and(|a| a != RSA_OAEP_256) {
                    return Err(bad("the RSA key's alg is not RSA-OAEP-256"));
                }
                let n = b64_member(jwk, "n", "the RSA key's modulus")?;
                let e = b64_member(jwk, "e", "the RSA key's exponent")?;
                let key: PublicEncryptingKey = PublicKeyComponents {
                    n: &n[..],
                    e: &e[..],
                }
                .try_into()
                .map_err(|_| bad("the RSA key is not acceptable"))?;
                if key.key_size_bytes() < MIN_RSA_BYTES {
                    return Err(bad("the RSA key is shorter than 2048 bits"));
                }
                Ok(Self::Rsa(
                    OaepPublicEncryptingKey::new(key).map_err(internal("RSA-OAEP key setup"))?,
                ))
            }
            _ => Err(bad("the key is neither an EC P-256 nor an RSA JWK")),
        }
    }
}

/// The Concat KDF of RFC 7518 §4.6.2 for up to 256 bits: one SHA-256 round over
/// `1 ‖ Z ‖ AlgorithmID ‖ PartyUInfo ‖ PartyVInfo ‖ keydatalen`, each info length-prefixed.
fn concat_kdf(z: &[u8], alg: &[u8], apu: &[u8], apv: &[u8], bits: u32) -> Zeroizing<[u8; 32]> {
    let mut input = Zeroizing::new(1u32.to_be_bytes().to_vec());
    input.extend_from_slice(z);
    for part in [alg, apu, apv] {
        input.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
        input.extend_from_slice(part);
    }
    input.extend_from_slice(&bits.to_be_bytes());
    Zeroizing::new(crate::digest::sha256(&input))
}

fn ecdh(private: &PrivateKey, peer: &[u8]) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    agreement::agree(
        private,
        UnparsedPublicKey::new(&ECDH_P256, peer),
        bad("the ECDH agreement failed"),
        |z| Ok(concat_kdf(z, ECDH_ES_A256KW.as_bytes(), b"", b"", 256)),
    )
}

fn wrap(kek: &[u8; 32], cek: &[u8; 32]) -> Result<Vec<u8>, CryptoError> {
    let kek = AesKek::new(&AES_256, kek).map_err(internal("AES-KW key setup"))?;
    let mut out = vec![0u8; 40];
    let len = kek
        .wrap(cek, &mut out)
        .map_err(internal("AES-KW wrap"))?
        .len();
    out.truncate(len);
    Ok(out)
}

fn gcm(key: &[u8]) -> Result<LessSafeKey, CryptoError> {
    Ok(LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, key).map_err(internal("AES-256-GCM key setup"))?,
    ))
}

/// Checks that `jwk` is a public key [`encrypt`] can encrypt to, saying what is wrong if not.
pub fn check_recipient(jwk: &Value) -> Result<(), CryptoError> {
    Recipient::from_jwk(jwk).map(|_| ())
}

/// Encrypts `plaintext` to the public key `jwk`, as a flattened JWE JSON object with the
/// members `protected`, `encrypted_key`, `iv`, `ciphertext` and `tag`.
pub fn encrypt(jwk: &Value, plaintext: &[u8]) -> Result<Value, CryptoError> {
    let cek = Zeroizing::new(random::array::<32>()?);
    let (header, encrypted_key) = match Recipient::from_jwk(jwk)? {
        Recipient::P256(point) => {
            let ephemeral =
                PrivateKey::generate(&ECDH_P256).map_err(internal("P-256 key generation"))?;
            let public = ephemeral
                .compute_public_key()
                .map_err(internal("P-256 public key"))?;
            let epk = public.as_ref();
            let kek = ecdh(&ephemeral, &point)?;
            let header = json!({
                "alg": ECDH_ES_A256KW,
                "enc": A256GCM,
                "epk": {"crv": "P-256", "kty": "EC", "x": B64.encode(&epk[1..33]), "y": B64.encode(&epk[33..65])},
            });
            (header, wrap(&kek, &cek)?)
        }
        Recipient::Rsa(key) => {
            let mut out = vec![0u8; key.ciphertext_size()];
            let len = key
                .encrypt(&OAEP_SHA256_MGF1SHA256, &cek[..], &mut out, None)
                .map_err(internal("RSA-OAEP encryption"))?
                .len();
            out.truncate(len);
            (json!({"alg": RSA_OAEP_256, "enc": A256GCM}), out)
        }
    };
    let protected = B64.encode(header.to_string());
    let iv = random::array::<IV_LEN>()?;
    let mut ciphertext = plaintext.to_vec();
    let tag = gcm(&cek[..])?
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(iv),
            Aad::from(protected.as_bytes()),
            &mut ciphertext,
        )
        .map_err(internal("AES-256-GCM seal"))?;
    Ok(json!({
        "protected": protected,
        "encrypted_key": B64.encode(encrypted_key),
        "iv": B64.encode(iv),
        "ciphertext": B64.encode(&ciphertext),
        "tag": B64.encode(tag.as_ref()),
    }))
}

/// A recipient's private key: the other side of [`encrypt`].
pub enum DecryptionKey {
    /// A P-256 key, for `ECDH-ES+A256KW`.
    P256(PrivateKey),
    /// An RSA key, for `RSA-OAEP-256`.
    Rsa(PrivateDecryptingKey),
}

impl std::fmt::Debug for DecryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::P256(_) => "DecryptionKey::P256(..)",
            Self::Rsa(_) => "DecryptionKey::Rsa(..)",
        })
    }
}

impl DecryptionKey {
    /// A fresh P-256 key.
    pub fn generate_p256() -> Result<Self, CryptoError> {
        Ok(Self::P256(
            PrivateKey::generate(&ECDH_P256).map_err(internal("P-256 key generation"))?,
        ))
    }

    /// A fresh 2048-bit RSA key.
    pub fn generate_rsa() -> Result<Self, CryptoError> {
        Ok(Self::Rsa(
            PrivateDecryptingKey::generate(KeySize::Rsa2048)
                .map_err(internal("RSA key generation"))?,
        ))
    }

    /// The public key as a JWK, with the `alg` it is for.
    pub fn public_jwk(&self) -> Result<Value, CryptoError> {
        match self {
            Self::P256(key) => {
                let public = key
                    .compute_public_key()
                    .map_err(internal("P-256 public key"))?;
                let p = public.as_ref();
                Ok(json!({
                    "kty": "EC", "crv": "P-256", "alg": ECDH_ES_A256KW,
                    "x": B64.encode(&p[1..33]), "y": B64.encode(&p[33..65]),
                }))
            }
            Self::Rsa(key) => {
                let der = key
                    .public_key()
                    .as_der()
                    .map_err(internal("RSA public key encoding"))?;
                let (n, e) = rsa_spki_components(der.as_ref()).ok_or(CryptoError::Internal {
                    operation: "RSA public key decoding",
                })?;
                Ok(
                    json!({"kty": "RSA", "alg": RSA_OAEP_256, "n": B64.encode(n), "e": B64.encode(e)}),
                )
            }
        }
    }

    /// Opens the flattened JWE `jwe`: checks the header's algorithms against this key, unwraps
    /// the CEK and authenticates the ciphertext. Any failure says which part was wrong.
    pub fn decrypt(&self, jwe: &Value) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let protected = member(jwe, "protected").ok_or(bad("no protected header"))?;
        let header: Value = B64
            .decode(protected)
            .ok()
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or(bad("the protected header is not base64url JSON"))?;
        if member(&header, "enc") != Some(A256GCM) {
            return Err(bad("the content encryption is not A256GCM"));
        }
        let encrypted_key = b64_member(jwe, "encrypted_key", "encrypted_key is not base64url")?;
        let cek: Zeroizing<Vec<u8>> = match self {
            Self::P256(key) => {
                if member(&header, "alg") != Some(ECDH_ES_A256KW) {
                    return Err(bad("the key management is not ECDH-ES+A256KW"));
                }
                let epk = header.get("epk").ok_or(bad("no epk in the header"))?;
                let x = b64_member(epk, "x", "the epk's x is not base64url")?;
                let y = b64_member(epk, "y", "the epk's y is not base64url")?;
                if member(epk, "crv") != Some("P-256") || x.len() != 32 || y.len() != 32 {
                    return Err(bad("the epk is not a P-256 key"));
                }
                let kek = ecdh(key, &[&[4u8][..], &x, &y].concat())?;
                let kek = AesKek::new(&AES_256, &kek[..]).map_err(internal("AES-KW key setup"))?;
                let mut out = Zeroizing::new(vec![0u8; 40]);
                let len = kek
                    .unwrap(&encrypted_key, &mut out)
                    .map_err(|_| bad("the wrapped key does not unwrap: wrong key or changed"))?
                    .len();
                out.truncate(len);
                out
            }
            Self::Rsa(key) => {
                if member(&header, "alg") != Some(RSA_OAEP_256) {
                    return Err(bad("the key management is not RSA-OAEP-256"));
                }
                let key = OaepPrivateDecryptingKey::new(key.clone())
                    .map_err(internal("RSA-OAEP key setup"))?;
                let mut out = Zeroizing::new(vec![0u8; key.min_output_size()]);
                let len = key
                    .decrypt(&OAEP_SHA256_MGF1SHA256, &encrypted_key, &mut out, None)
                    .map_err(|_| bad("the encrypted key does not decrypt: wrong key or changed"))?
                    .len();
                out.truncate(len);
                out
            }
        };
        if cek.len() != 32 {
            return Err(bad("the content key is not 256 bits"));
        }
        let iv: [u8; IV_LEN] = b64_member(jwe, "iv", "iv is not base64url")?
            .try_into()
            .map_err(|_| bad("the iv is not 96 bits"))?;
        let tag = b64_member(jwe, "tag", "tag is not base64url")?;
        if tag.len() != TAG_LEN {
            return Err(bad("the tag is not 128 bits"));
        }
        let mut data = Zeroizing::new(b64_member(
            jwe,
            "ciphertext",
            "ciphertext is not base64url",
        )?);
        data.extend_from_slice(&tag);
        let len = gcm(&cek)?
            .open_in_place(
                Nonce::assume_unique_for_key(iv),
                Aad::from(protected.as_bytes()),
                &mut data,
            )
            .map_err(|_| bad("the ciphertext does not authenticate"))?
            .len();
        data.truncate(len);
        Ok(data)
    }
}

/// The modulus and exponent of an RSA SubjectPublicKeyInfo (DER).
fn rsa_spki_components(der: &[u8]) -> Option<(&[u8], &[u8])> {
    fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            (len, &rest[n..])
        };
        (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
    }
    let (_, spki, _) = tlv(der)?;
    let (_, _algorithm, rest) = tlv(spki)?;
    let (_, bits, _) = tlv(rest)?;
    let (_, key, _) = tlv(bits.get(1..)?)?;
    let (_, n, rest) = tlv(key)?;
    let (_, e, _) = tlv(rest)?;
    Some((strip_zeros(n), strip_zeros(e)))
}

fn strip_zeros(v: &[u8]) -> &[u8] {
    let zeros = v.iter().take_while(|&&b| b == 0).count();
    &v[zeros..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flip(jwe: &Value, member: &str) -> Value {
        let mut out = jwe.clone();
        let mut bytes = B64.decode(jwe[member].as_str().unwrap()).unwrap();
        bytes[0] ^= 1;
        out[member] = json!(B64.encode(bytes));
        out
    }

    #[test]
    fn round_trips_for_both_algorithms_and_refuses_every_changed_member() {
        for key in [
            DecryptionKey::generate_p256().unwrap(),
            DecryptionKey::generate_rsa().unwrap(),
        ] {
            let jwk = key.public_jwk().unwrap();
            let jwe = encrypt(&jwk, b"a resource of some length").unwrap();
            assert_eq!(
                &key.decrypt(&jwe).unwrap()[..],
                b"a resource of some length"
            );
            for m in ["protected", "encrypted_key", "iv", "ciphertext", "tag"] {
                assert!(key.decrypt(&flip(&jwe, m)).is_err(), "{m} changed");
            }
            let other = match key {
                DecryptionKey::P256(_) => DecryptionKey::generate_p256().unwrap(),
                DecryptionKey::Rsa(_) => DecryptionKey::generate_rsa().unwrap(),
            };
            assert!(other.decrypt(&jwe).is_err(), "another key opened it");
        }
    }

    #[test]
    fn the_header_matches_the_trustee_capture() {
        // The header members of the JWE in ../shared/testdata/kbs (Trustee @ 78962cd4).
        let key = DecryptionKey::generate_p256().unwrap();
        let jwe = encrypt(&key.public_jwk().unwrap(), b"x").unwrap();
        let header: Value =
            serde_json::from_slice(&B64.decode(jwe["protected"].as_str().unwrap()).unwrap())
                .unwrap();
        assert_eq!(header["alg"], "ECDH-ES+A256KW");
        assert_eq!(header["enc"], "A256GCM");
        assert_eq!(header["epk"]["crv"], "P-256");
        assert_eq!(
            B64.decode(jwe["encrypted_key"].as_str().unwrap())
                .unwrap()
                .len(),
            40
        );
        assert_eq!(B64.decode(jwe["iv"].as_str().unwrap()).unwrap().len(), 12);
        assert_eq!(B64.decode(jwe["tag"].as_str().unwrap()).unwrap().len(), 16);
    }

    #[test]
    fn refuses_unusable_keys() {
        let p256 = DecryptionKey::generate_p256()
            .unwrap()
            .public_jwk()
            .unwrap();
        let mut wrong_alg = p256.clone();
        wrong_alg["alg"] = json!("ECDH-ES");
        assert!(encrypt(&wrong_alg, b"x").is_err());
        let mut off_curve = p256.clone();
        off_curve["y"] = json!(B64.encode([1u8; 32]));
        assert!(encrypt(&off_curve, b"x").is_err());
        assert!(encrypt(&json!({"kty": "oct", "k": "AAAA"}), b"x").is_err());
        assert!(encrypt(&json!({"kty": "EC", "crv": "P-384"}), b"x").is_err());
    }

    #[test]
    fn concat_kdf_matches_rfc7518_appendix_c() {
        // RFC 7518 Appendix C: Z, AlgorithmID "A128GCM", apu "Alice", apv "Bob", 128 bits
        // give the key "VqqN6vgjbSBcIijNcacQGg".
        let z: [u8; 32] = [
            158, 86, 217, 29, 129, 113, 53, 211, 114, 131, 66, 131, 191, 132, 38, 156, 251, 49,
            110, 163, 218, 128, 106, 72, 246, 218, 167, 121, 140, 254, 144, 196,
        ];
        let derived = concat_kdf(&z, b"A128GCM", b"Alice", b"Bob", 128);
        assert_eq!(B64.encode(&derived[..16]), "VqqN6vgjbSBcIijNcacQGg");
    }
}

//! HPKE (RFC 9180) base mode: sealing short secrets, such as data keys, to a recipient's key.
//!
//! confide's suite is DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM. A sealed message is
//! the 32-byte encapsulated key `enc` and the AEAD ciphertext; the caller's `info` names the
//! purpose (so a key wrapped for one use cannot be replayed as another) and `aad` binds whatever
//! context the ciphertext belongs to.

use ::hpke::aead::{Aead, AesGcm256};
use ::hpke::kdf::HkdfSha256;
use ::hpke::kem::{Kem as KemTrait, X25519HkdfSha256};
use ::hpke::rand_core::{TryCryptoRng, TryRng};
use ::hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use zeroize::Zeroizing;

use crate::{CryptoError, random};

type Kem = X25519HkdfSha256;

/// Length of an X25519 public key, and of `enc`.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of an X25519 private key.
pub const SECRET_KEY_LEN: usize = 32;
/// Bytes the AEAD adds to a sealed plaintext.
pub const TAG_LEN: usize = 16;
/// The suite's name as RFC 9180 writes it.
pub const SUITE_NAME: &str = "DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM";

/// A recipient's X25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HpkePublicKey([u8; PUBLIC_KEY_LEN]);

impl HpkePublicKey {
    /// Parses a 32-byte X25519 public key.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; PUBLIC_KEY_LEN] = bytes.try_into().map_err(|_| CryptoError::InvalidKey {
            what: "X25519 public key (it must be 32 bytes)",
        })?;
        Ok(Self(arr))
    }

    /// The key's 32 bytes.
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for HpkePublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HpkePublicKey(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// A recipient's X25519 private key. Zeroized on drop; never printed.
pub struct HpkeSecretKey {
    secret: <Kem as KemTrait>::PrivateKey,
    public: HpkePublicKey,
}

impl HpkeSecretKey {
    /// A fresh key from the system random generator.
    pub fn generate() -> Result<Self, CryptoError> {
        let ikm = Zeroizing::new(random::array::<SECRET_KEY_LEN>()?);
        Ok(Self::derive(&*ikm))
    }

    /// RFC 9180 DeriveKeyPair: the key pair determined by `ikm`.
    fn derive(ikm: &[u8]) -> Self {
        let (secret, public) = Kem::derive_keypair(ikm);
        Self::from_parts(secret, &public)
    }

    fn from_parts(
        secret: <Kem as KemTrait>::PrivateKey,
        public: &<Kem as KemTrait>::PublicKey,
    ) -> Self {
        let mut bytes = [0u8; PUBLIC_KEY_LEN];
        bytes.copy_from_slice(&public.to_bytes());
        Self {
            secret,
            public: HpkePublicKey(bytes),
        }
    }

    /// Loads a key from its 32 secret bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let secret = <Kem as KemTrait>::PrivateKey::from_bytes(bytes).map_err(|_| {
            CryptoError::InvalidKey {
                what: "X25519 private key (it must be 32 bytes)",
            }
        })?;
        let public = Kem::sk_to_pk(&secret);
        Ok(Self::from_parts(secret, &public))
    }

    /// The secret bytes, for storing the key; the buffer zeroizes itself when dropped.
    pub fn to_bytes(&self) -> Zeroizing<[u8; SECRET_KEY_LEN]> {
        let mut out = Zeroizing::new([0u8; SECRET_KEY_LEN]);
        out.copy_from_slice(&self.secret.to_bytes());
        out
    }

    /// The matching public key.
    pub fn public_key(&self) -> HpkePublicKey {
        self.public
    }
}

impl std::fmt::Debug for HpkeSecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HpkeSecretKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// A sealed secret: the encapsulated key and the ciphertext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The sender's ephemeral public key (`enc` in RFC 9180).
    pub enc: [u8; PUBLIC_KEY_LEN],
    /// The AEAD ciphertext and tag.
    pub ciphertext: Vec<u8>,
}

/// Seals `plaintext` to `recipient` in base mode.
pub fn seal(
    recipient: &HpkePublicKey,
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Sealed, CryptoError> {
    let ikm = Zeroizing::new(random::array::<SECRET_KEY_LEN>()?);
    seal_with_ephemeral::<AesGcm256>(recipient, &ikm, info, aad, plaintext)
}

/// Opens a message sealed to `recipient` by [`seal`].
pub fn open(
    recipient: &HpkeSecretKey,
    sealed: &Sealed,
    info: &[u8],
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let mut ctx = receiver::<AesGcm256>(recipient, &sealed.enc, info)?;
    ctx.open(&sealed.ciphertext, aad)
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::HpkeOpen)
}

/// Seals `plaintext` in an HPKE context whose ephemeral key is DeriveKeyPair(ikm). Generic over
/// the AEAD so that the RFC's AES-128-GCM vectors run through this same code.
fn seal_with_ephemeral<A: Aead>(
    recipient: &HpkePublicKey,
    ikm: &[u8; SECRET_KEY_LEN],
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Sealed, CryptoError> {
    let pk = <Kem as KemTrait>::PublicKey::from_bytes(recipient.as_bytes()).map_err(|_| {
        CryptoError::InvalidKey {
            what: "X25519 public key",
        }
    })?;
    let mut rng = IkmRng { ikm: Some(*ikm) };
    let (enc, mut ctx) =
        ::hpke::setup_sender_with_rng::<A, HkdfSha256, Kem>(&OpModeS::Base, &pk, info, &mut rng)
            .map_err(|_| CryptoError::InvalidKey {
                what: "X25519 public key (it is a low-order point)",
            })?;
    let mut enc_bytes = [0u8; PUBLIC_KEY_LEN];
    enc_bytes.copy_from_slice(&enc.to_bytes());
    let ciphertext = ctx
        .seal(plaintext, aad)
        .map_err(|_| CryptoError::Internal {
            operation: "HPKE seal",
        })?;
    Ok(Sealed {
        enc: enc_bytes,
        ciphertext,
    })
}

fn receiver<A: Aead>(
    recipient: &HpkeSecretKey,
    enc: &[u8; PUBLIC_KEY_LEN],
    info: &[u8],
) -> Result<::hpke::aead::AeadCtxR<A, HkdfSha256, Kem>, CryptoError> {
    let enc = <Kem as KemTrait>::EncappedKey::from_bytes(enc).map_err(|_| CryptoError::HpkeOpen)?;
    ::hpke::setup_receiver::<A, HkdfSha256, Kem>(&OpModeR::Base, &recipient.secret, &enc, info)
        .map_err(|_| CryptoError::HpkeOpen)
}

/// Hands the `hpke` crate the ephemeral key material that this module drew from the system
/// generator. DHKEM(X25519) asks for exactly one private key's worth (Nsk = 32 bytes), once.
struct IkmRng {
    ikm: Option<[u8; SECRET_KEY_LEN]>,
}

impl Drop for IkmRng {
    fn drop(&mut self) {
        if let Some(ikm) = self.ikm.as_mut() {
            zeroize::Zeroize::zeroize(ikm);
        }
    }
}

impl TryRng for IkmRng {
    type Error = core::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        ::hpke::rand_core::utils::next_word_via_fill(self)
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        ::hpke::rand_core::utils::next_word_via_fill(self)
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), Self::Error> {
        match self.ikm.take() {
            Some(mut ikm) if dest.len() == SECRET_KEY_LEN => {
                dest.copy_from_slice(&ikm);
                zeroize::Zeroize::zeroize(&mut ikm);
            }
            // RFC 9180 §7.1.3: DHKEM(X25519) draws Nsk = 32 bytes once. Anything else means the
            // `hpke` crate changed how it draws randomness; handing out predictable bytes would
            // be a silent catastrophe, so stop the process instead.
            _ => std::process::abort(),
        }
        Ok(())
    }
}

impl TryCryptoRng for IkmRng {}

#[cfg(test)]
mod tests {
    use super::*;
    use ::hpke::aead::AesGcm128;
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct A1 {
        info: String,
        ikm_e: String,
        pk_em: String,
        ikm_r: String,
        pk_rm: String,
        sk_rm: String,
        enc: String,
        #[serde(rename = "exporter_context_empty_len32")]
        export_empty: String,
        encryptions: Vec<Encryption>,
    }

    #[derive(Deserialize)]
    struct Encryption {
        seq: u64,
        pt: String,
        aad: String,
        ct: String,
    }

    fn a1() -> A1 {
        let path = format!(
            "{}/../../testdata/hpke/rfc9180-a1-base.json",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn rfc9180_a1_derive_key_pairs() {
        let v = a1();
        let r = HpkeSecretKey::derive(&h(&v.ikm_r));
        assert_eq!(hex::encode(r.public_key().as_bytes()), v.pk_rm);
        // The crate keeps the scalar clamped (RFC 7748 §5); the RFC prints it unclamped. Both
        // name the same X25519 key.
        let mut clamped = h(&v.sk_rm);
        clamped[0] &= 248;
        clamped[31] &= 127;
        clamped[31] |= 64;
        assert_eq!(r.to_bytes().to_vec(), clamped);
        let e = HpkeSecretKey::derive(&h(&v.ikm_e));
        assert_eq!(hex::encode(e.public_key().as_bytes()), v.pk_em);
        let loaded = HpkeSecretKey::from_bytes(&h(&v.sk_rm)).unwrap();
        assert_eq!(hex::encode(loaded.public_key().as_bytes()), v.pk_rm);
    }

    #[test]
    fn rfc9180_a1_seal_and_open_match_the_vectors() {
        let v = a1();
        let pk_r = HpkePublicKey::from_bytes(&h(&v.pk_rm)).unwrap();
        let ikm_e: [u8; 32] = h(&v.ikm_e).try_into().unwrap();
        let pt = h(&v.encryptions[0].pt);
        // One sender context, sequence numbers 0, 1, 2 in order, each with its own aad.
        let mut sealed = Vec::new();
        let pk = <Kem as KemTrait>::PublicKey::from_bytes(pk_r.as_bytes()).unwrap();
        let mut rng = IkmRng { ikm: Some(ikm_e) };
        let (enc, mut ctx) = ::hpke::setup_sender_with_rng::<AesGcm128, HkdfSha256, Kem>(
            &OpModeS::Base,
            &pk,
            &h(&v.info),
            &mut rng,
        )
        .unwrap();
        assert_eq!(hex::encode(enc.to_bytes()), v.enc);
        for e in &v.encryptions {
            assert_eq!(h(&e.pt), pt);
            sealed.push(ctx.seal(&pt, &h(&e.aad)).unwrap());
        }
        let mut exported = [0u8; 32];
        ctx.export(b"", &mut exported).unwrap();
        assert_eq!(hex::encode(exported), v.export_empty);
        for (e, ct) in v.encryptions.iter().zip(&sealed) {
            assert_eq!(hex::encode(ct), e.ct, "seq {}", e.seq);
        }

        // This module's own path: the first message through seal_with_ephemeral.
        let ours = seal_with_ephemeral::<AesGcm128>(
            &pk_r,
            &ikm_e,
            &h(&v.info),
            &h(&v.encryptions[0].aad),
            &pt,
        )
        .unwrap();
        assert_eq!(hex::encode(ours.enc), v.enc);
        assert_eq!(hex::encode(&ours.ciphertext), v.encryptions[0].ct);

        // The recipient opens every sequence number in order.
        let sk_r = HpkeSecretKey::from_bytes(&h(&v.sk_rm)).unwrap();
        let enc: [u8; 32] = h(&v.enc).try_into().unwrap();
        let mut rctx = receiver::<AesGcm128>(&sk_r, &enc, &h(&v.info)).unwrap();
        for e in &v.encryptions {
            assert_eq!(rctx.open(&h(&e.ct), &h(&e.aad)).unwrap(), pt);
        }
    }

    #[test]
    fn seal_open_round_trip_and_refusals() {
        let alice = HpkeSecretKey::generate().unwrap();
        let bob = HpkeSecretKey::generate().unwrap();
        let sealed = seal(&alice.public_key(), b"info", b"aad", b"data key").unwrap();
        assert_eq!(sealed.ciphertext.len(), 8 + TAG_LEN);
        assert_eq!(
            &*open(&alice, &sealed, b"info", b"aad").unwrap(),
            b"data key"
        );
        assert_eq!(
            open(&bob, &sealed, b"info", b"aad"),
            Err(CryptoError::HpkeOpen)
        );
        assert_eq!(
            open(&alice, &sealed, b"other", b"aad"),
            Err(CryptoError::HpkeOpen)
        );
        assert_eq!(
            open(&alice, &sealed, b"info", b"other"),
            Err(CryptoError::HpkeOpen)
        );
        let mut flipped = sealed.clone();
        flipped.enc[3] ^= 1;
        assert!(open(&alice, &flipped, b"info", b"aad").is_err());
        // Two seals of the same secret share nothing.
        let again = seal(&alice.public_key(), b"info", b"aad", b"data key").unwrap();
        assert_ne!(again.enc, sealed.enc);
    }

    #[test]
    fn low_order_recipient_key_is_refused() {
        // The all-zero point gives an all-zero shared secret, which RFC 9180 §7.1.4 rejects.
        let zero = HpkePublicKey::from_bytes(&[0u8; 32]).unwrap();
        assert!(seal(&zero, b"", b"", b"x").is_err());
    }

    #[test]
    fn debug_does_not_print_secret_bytes() {
        let k = HpkeSecretKey::from_bytes(&[0x42; 32]).unwrap();
        let shown = format!("{k:?}");
        assert!(!shown.contains(&"42".repeat(32)), "{shown}");
    }
}

//! The workload's runtime keys: made fresh inside the TEE for one run, and bound into its
//! evidence (the report data starts with the SHA-256 of [`RuntimeKeys::to_bytes`]), together
//! with the ledger key of its launch configuration. The key broker wraps released keys to the
//! HPKE key, and releases a dataset's key only to a workload that verifies the consortium's
//! ledger under that consortium's key; the run log accepts only reports signed by the signing
//! key. Whoever sees the token on the wire holds neither private half.

use confide_crypto::hpke::HpkePublicKey;
use confide_crypto::signing::VerifyingKey;
use serde_json::{Value, json};

use crate::{ModelError, b64url, unb64url};

/// The public halves of a workload's runtime keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeKeys {
    /// X25519: released keys are sealed to it (HPKE).
    pub hpke: HpkePublicKey,
    /// ECDSA P-256: run reports are signed with it.
    pub signing: VerifyingKey,
    /// The SHA-256 of the SubjectPublicKeyInfo of the ledger key the workload verifies the
    /// consortium's state under (its launch configuration).
    pub ledger: [u8; 32],
}

impl RuntimeKeys {
    /// The digest [`Self::ledger`] holds for a ledger key.
    pub fn ledger_digest(key: &VerifyingKey) -> [u8; 32] {
        confide_crypto::digest::sha256(&key.to_spki_der())
    }
}

impl RuntimeKeys {
    /// The runtime data the evidence binds: the canonical JSON
    /// `{"es256": B64URL(SEC1 point), "hpke": B64URL(X25519 key), "ledger": B64URL(SHA-256)}`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let value = json!({
            "es256": b64url(&self.signing.to_sec1()),
            "hpke": b64url(self.hpke.as_bytes()),
            "ledger": b64url(&self.ledger),
        });
        confide_crypto::jcs::canonical_json(&value).into_bytes()
    }

    /// Reads runtime data written by [`Self::to_bytes`]: exactly those three members, in
    /// canonical form (so that one set of keys has one encoding, and one digest).
    pub fn parse(bytes: &[u8]) -> Result<Self, ModelError> {
        let malformed = |field, detail: &str| ModelError::Malformed {
            field,
            detail: detail.to_owned(),
        };
        let value: Value =
            serde_json::from_slice(bytes).map_err(|_| malformed("runtime_data", "not JSON"))?;
        let object = value
            .as_object()
            .filter(|o| o.len() == 3)
            .ok_or_else(|| malformed("runtime_data", "not an object of es256, hpke and ledger"))?;
        let member = |name: &'static str| {
            object
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| malformed(name, "missing"))
                .and_then(|text| unb64url(text, name))
        };
        let signing = VerifyingKey::from_sec1(&member("es256")?)
            .map_err(|_| malformed("es256", "not a P-256 point"))?;
        let hpke = HpkePublicKey::from_bytes(&member("hpke")?)
            .map_err(|_| malformed("hpke", "not an X25519 public key"))?;
        let ledger = member("ledger")?
            .try_into()
            .map_err(|_| malformed("ledger", "not a SHA-256 digest"))?;
        let keys = Self {
            hpke,
            signing,
            ledger,
        };
        if keys.to_bytes() != bytes {
            return Err(malformed("runtime_data", "not in canonical form"));
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confide_crypto::hpke::HpkeSecretKey;
    use confide_crypto::signing::SigningKey;

    #[test]
    fn one_encoding_per_pair_of_keys() {
        let keys = RuntimeKeys {
            hpke: HpkeSecretKey::generate().unwrap().public_key(),
            signing: SigningKey::generate().unwrap().verifying_key(),
            ledger: RuntimeKeys::ledger_digest(&SigningKey::generate().unwrap().verifying_key()),
        };
        let bytes = keys.to_bytes();
        assert_eq!(RuntimeKeys::parse(&bytes).unwrap(), keys);
        // Spaces, another order, an extra member, a missing one: refused.
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        let spaced = serde_json::to_vec_pretty(&value).unwrap();
        assert!(RuntimeKeys::parse(&spaced).is_err());
        let mut extra = value.clone();
        extra["x"] = json!(1);
        let extra = confide_crypto::jcs::canonical_json(&extra);
        assert!(RuntimeKeys::parse(extra.as_bytes()).is_err());
        let mut missing = value.clone();
        missing.as_object_mut().unwrap().remove("es256");
        let missing = confide_crypto::jcs::canonical_json(&missing);
        assert!(RuntimeKeys::parse(missing.as_bytes()).is_err());
        // Every single-bit change is refused or gives other keys.
        for i in 0..bytes.len() * 8 {
            let mut changed = bytes.clone();
            changed[i / 8] ^= 1 << (i % 8);
            if let Ok(other) = RuntimeKeys::parse(&changed) {
                assert_ne!(other, keys, "bit {i}");
            }
        }
        // A bare X25519 key (a KBS client's or an older workload's) is not a pair.
        assert!(RuntimeKeys::parse(keys.hpke.as_bytes()).is_err());
    }
}

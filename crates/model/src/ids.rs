//! Typed ids: a value of one of these types has been checked, so code that holds one never
//! checks it again, and an id of one kind cannot be passed where another is meant.
//!
//! On the wire each is a JSON string, as before; reading one that is malformed is an error
//! naming the value and what it should be. A [`ContractId`] and a [`RunId`] are computed from
//! what they identify in exactly one place each ([`crate::Contract::id`],
//! [`crate::SignedRunReport::id`]); parsing one only says it has the shape of a digest.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ModelError;

/// The string-backed id types' shared parts: parsing, display, borrowing as `str` (so a map
/// keyed by the id is looked up with a `&str`) and serde as a string.
macro_rules! string_id {
    ($name:ident) => {
        impl $name {
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        // Sound: the derived order and equality are those of the one `String` field.
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl TryFrom<String> for $name {
            type Error = ModelError;
            fn try_from(text: String) -> Result<Self, ModelError> {
                Self::check(&text)?;
                Ok(Self(text))
            }
        }

        impl FromStr for $name {
            type Err = ModelError;
            fn from_str(text: &str) -> Result<Self, ModelError> {
                Self::try_from(text.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                Self::try_from(text).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// `digits` lowercase hex digits, or an error saying `what` `value` is not.
pub(crate) fn check_hex(
    field: &'static str,
    value: &str,
    digits: usize,
    what: &str,
) -> Result<(), ModelError> {
    let ok = value.len() == digits
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ModelError::Malformed {
            field,
            detail: format!("{value:?} is not {what} ({digits} lowercase hex digits)"),
        })
    }
}

/// A member's id: the fingerprint of its public identity (SHA-256), in full: 64 lowercase hex
/// digits. (`confide_identity::Fingerprint` displays the short form; this is the wire's.)
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberId(String);
string_id!(MemberId);

impl MemberId {
    fn check(text: &str) -> Result<(), ModelError> {
        check_hex("fingerprint", text, 64, "a member fingerprint")
    }

    /// The fingerprint of `identity`.
    pub fn of(identity: &confide_identity::PublicIdentity) -> Self {
        Self(identity.fingerprint().to_hex())
    }

    /// A fingerprint as its 32 bytes (a COSE `kid`).
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(hex::encode(bytes))
    }
}

/// A contract's id: SHA-256 of its terms' RFC 8785 JSON, 64 lowercase hex digits. Only
/// [`crate::Contract::id`] computes one from terms.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContractId(String);
string_id!(ContractId);

impl ContractId {
    fn check(text: &str) -> Result<(), ModelError> {
        check_hex("contract", text, 64, "a contract id")
    }

    /// The id of terms whose canonical JSON has this digest (for [`crate::Contract::id`]).
    pub(crate) fn of_digest(digest: &[u8; 32]) -> Self {
        Self(hex::encode(digest))
    }
}

/// A run's id: the first 16 bytes of the SHA-256 of the report the workload signed, 32
/// lowercase hex digits. Only [`crate::RunReport::id`] computes one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunId(String);
string_id!(RunId);

impl RunId {
    fn check(text: &str) -> Result<(), ModelError> {
        check_hex("run", text, 32, "a run id")
    }

    /// The id of a report whose message has this digest (for [`crate::RunReport::id`]).
    pub(crate) fn of_digest(digest: &[u8; 32]) -> Self {
        Self(hex::encode(&digest[..16]))
    }
}

/// A dataset's id: 1 to 128 characters from `A-Z a-z 0-9 . _ -`, not starting with a dot or a
/// dash, so that it is safe in a key name, a URL path and a file name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DatasetId(String);
string_id!(DatasetId);

impl DatasetId {
    fn check(id: &str) -> Result<(), ModelError> {
        let ok = (1..=128).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            && !id.starts_with(['.', '-']);
        if ok {
            Ok(())
        } else {
            Err(ModelError::Malformed {
                field: "id",
                detail: format!(
                    "dataset id {id:?}: 1 to 128 letters, digits, '.', '_' or '-', not starting \
                     with '.' or '-'"
                ),
            })
        }
    }

    /// The name of this dataset's key at the key broker: `dataset-ID`. A dataset's record
    /// must name exactly this key ([`crate::DatasetRecord::check`]), so no member can take the
    /// id of another's dataset under a key of her own.
    pub fn key_name(&self) -> String {
        format!("dataset-{}", self.0)
    }

    /// The name of the key its difference-check history is kept under at the key broker: made
    /// by the broker, released only to the workloads of approved contracts, never to a member.
    pub fn history_key_name(&self) -> String {
        format!("history-{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_only_their_shape_and_write_back_the_same_text() {
        let hex = "0f".repeat(32);
        for bad in [
            "",
            "0F".repeat(32).as_str(),
            &hex[..63],
            &format!("{hex}0"),
            &"g".repeat(64),
        ] {
            let json = serde_json::to_string(bad).unwrap();
            assert!(serde_json::from_str::<MemberId>(&json).is_err(), "{bad:?}");
            assert!(
                serde_json::from_str::<ContractId>(&json).is_err(),
                "{bad:?}"
            );
        }
        for bad in ["", &hex[..31], &hex[..33], &"0F".repeat(16)] {
            assert!(bad.parse::<RunId>().is_err(), "{bad:?}");
        }
        assert!(hex[..32].parse::<RunId>().is_ok());
        let fp: MemberId = serde_json::from_str(&format!("\"{hex}\"")).unwrap();
        assert_eq!(serde_json::to_string(&fp).unwrap(), format!("\"{hex}\""));
        assert_eq!(fp, hex.as_str());
        // Not a string at all.
        assert!(serde_json::from_str::<MemberId>("7").is_err());
    }

    #[test]
    fn a_dataset_id_is_safe_in_a_key_name_a_path_and_a_url() {
        for ok in ["a", "bank-a.tx_2026-0123456789ab", &"x".repeat(128)] {
            let id: DatasetId = ok.parse().unwrap();
            assert_eq!(id.key_name(), format!("dataset-{ok}"));
        }
        for bad in [
            "",
            ".hidden",
            "-flag",
            "a/b",
            "../x",
            "a b",
            "a%2f",
            "é",
            "a\n",
            &"x".repeat(129),
        ] {
            let err = bad.parse::<DatasetId>().unwrap_err().to_string();
            assert!(err.contains("dataset id"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn a_map_keyed_by_an_id_is_read_with_a_str() {
        let id: DatasetId = "ds-a".parse().unwrap();
        let map: std::collections::BTreeMap<DatasetId, u8> = [(id, 1)].into();
        assert_eq!(map.get("ds-a"), Some(&1));
        let json = serde_json::to_string(&map).unwrap();
        assert_eq!(json, r#"{"ds-a":1}"#);
        let back: std::collections::BTreeMap<DatasetId, u8> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, map);
        assert!(
            serde_json::from_str::<std::collections::BTreeMap<DatasetId, u8>>(r#"{"../x":1}"#)
                .is_err()
        );
    }
}

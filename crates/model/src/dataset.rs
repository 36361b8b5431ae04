//! A dataset as its owner registers it on the ledger: where its ciphertext is, what digest it
//! has, how its plaintext is laid out, and the name of its key at the key broker. Every field
//! is checked when the record is read, so a record that passed governance is one the workload
//! can act on without defaults.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::{DatasetId, MemberId, ModelError};

/// How a dataset's plaintext is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// CSV with a header line.
    Csv,
    /// Apache Parquet.
    Parquet,
}

impl Format {
    /// `csv` or `parquet`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "csv" => Some(Self::Csv),
            "parquet" => Some(Self::Parquet),
            _ => None,
        }
    }

    /// The format's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Parquet => "parquet",
        }
    }
}

/// One column of a dataset: its name and its Arrow type's name (`Utf8`, `Int64`, …), which
/// the clean room maps to a type when it reads the dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    /// The column's name.
    pub name: String,
    /// Its type's name.
    #[serde(rename = "type")]
    pub ty: String,
}

/// What the owner declares, when it publishes, about the individuals in its dataset and how each
/// column may be used; the engine enforces it on every contract's plan (see the clean room's
/// `privacy` module). Columns named nowhere here may be used freely.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Privacy {
    /// The columns that name individuals (`customer`, `badge_id`), each with its domain: the
    /// kind of individual it names (`person`, `badge`), so that a list rule counts the same
    /// individual once across columns and tables. Empty: the rows are about no one (room
    /// sensors).
    pub identity: BTreeMap<String, String>,
    /// Columns that may only be joined on: never filtered, grouped, sorted, aggregated or let
    /// out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub join_only: Vec<String>,
    /// Columns that may only be aggregated (COUNT, SUM, AVG): never filtered, grouped, sorted,
    /// joined on or let out as they are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aggregate_only: Vec<String>,
    /// The bounds numeric columns are clamped to before a noised SUM or AVG; a column without
    /// them is not summed under noise.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub bounds: BTreeMap<String, crate::Bounds>,
    /// The ε the runs over the dataset may spend per period. A dataset with a budget is read
    /// only by contracts that add noise; only its owner's consent changes the budget later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<crate::Budget>,
}

impl Privacy {
    /// Checks the declaration against the dataset's columns; the error names the column.
    pub fn check(&self, schema: &[Column]) -> Result<(), ModelError> {
        let bad = |detail: String| {
            Err(ModelError::Malformed {
                field: "privacy",
                detail,
            })
        };
        let names: BTreeSet<&str> = schema.iter().map(|c| c.name.as_str()).collect();
        let mut seen = BTreeSet::new();
        let declared = self
            .identity
            .keys()
            .chain(&self.join_only)
            .chain(&self.aggregate_only);
        for column in declared {
            if !names.contains(column.as_str()) {
                return bad(format!("column {column:?} is not a column of the dataset"));
            }
            if !seen.insert(column) {
                return bad(format!(
                    "column {column:?} is declared twice (identity, join-only and aggregate-only \
                     are exclusive)"
                ));
            }
        }
        if let Some(column) = self.bounds.keys().find(|c| !names.contains(c.as_str())) {
            return bad(format!(
                "column {column:?} has bounds but is not a column of the dataset"
            ));
        }
        if let Some((column, b)) = self
            .bounds
            .iter()
            .find(|(_, b)| b.lo >= b.hi || b.sensitivity() > crate::dp::MAX_BOUND)
        {
            return bad(format!(
                "column {column:?}: bounds {}..{} are empty or beyond ±2^40",
                b.lo, b.hi
            ));
        }
        if let Some(budget) = &self.budget {
            budget.check()?;
        }
        for (column, domain) in &self.identity {
            let ok = !domain.is_empty()
                && domain.len() <= 64
                && domain
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !ok {
                return bad(format!(
                    "identity column {column:?}: domain {domain:?} is not lowercase letters, \
                     digits and '_'"
                ));
            }
        }
        Ok(())
    }
}

/// A registered dataset (the `register_dataset` action's fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetRecord {
    /// Its id: the owner's name for it and the first 12 hex digits of its digest.
    pub id: DatasetId,
    /// Its owner.
    pub owner: MemberId,
    /// The owner's name for it.
    pub name: String,
    /// How its plaintext is laid out.
    pub format: Format,
    /// Its columns.
    pub schema: Vec<Column>,
    /// Its rows.
    pub rows: u64,
    /// The size of its ciphertext in bytes.
    pub size: u64,
    /// SHA-256 of its ciphertext, hex.
    pub digest: String,
    /// Where its ciphertext is, relative to the blob store.
    pub location: String,
    /// The name of its key at the key broker.
    pub key: String,
    /// The owner's privacy declaration. Absent only in records written before declarations
    /// existed; such a dataset is read by no contract until its owner declares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<Privacy>,
    /// The public half of the dataset's key (HPKE, hex): what its owner encrypts the batches
    /// it appends to, and the workload the dataset's difference-check history. Absent in
    /// records written before versions existed; nothing is appended to such a dataset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// The name of the key its difference-check history is encrypted under
    /// ([`crate::DatasetId::history_key_name`]): one the key broker made and releases only to
    /// attested workloads, so that not even the owner reads which of its individuals stood
    /// behind the groups of other parties' joins. Absent in records written before; exact
    /// contracts do not run over such a dataset if it names individuals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_key: Option<String>,
}

/// One batch of a dataset's rows after the first, as its owner appended it: a ciphertext under
/// the dataset's key, with the dataset's columns and declaration (the `append_dataset`
/// action's version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Version {
    /// Its rows.
    pub rows: u64,
    /// The size of its ciphertext in bytes.
    pub size: u64,
    /// SHA-256 of its ciphertext, hex.
    pub digest: String,
    /// Where its ciphertext is, relative to the blob store.
    pub location: String,
}

impl Version {
    /// Checks every field on its own; the error names the field.
    pub fn check(&self) -> Result<(), ModelError> {
        crate::check_digest("digest", &self.digest)?;
        check_location(&self.location)
    }
}

/// A version of a dataset as the ledger holds it: its number (the registration is 1, each
/// append the next) and when it was accepted (Unix seconds, the time of the request that
/// decided it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetVersion {
    /// Its number, from 1.
    pub number: u64,
    /// When the ledger accepted it.
    pub at: i64,
    /// Its ciphertext.
    #[serde(flatten)]
    pub version: Version,
}

/// A path inside the blob store: relative, no `.` or `..`, no backslash or control character.
fn check_location(location: &str) -> Result<(), ModelError> {
    let relative = !location.is_empty()
        && !location.starts_with('/')
        && !location.chars().any(|c| c == '\\' || c.is_control())
        && !location
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..");
    if relative {
        Ok(())
    } else {
        Err(ModelError::Malformed {
            field: "location",
            detail: "not a relative path inside the blob store".into(),
        })
    }
}

impl DatasetRecord {
    /// Checks every field on its own (not against the ledger); the error names the field.
    pub fn check(&self) -> Result<(), ModelError> {
        let bad = |field: &'static str, detail: &str| {
            Err(ModelError::Malformed {
                field,
                detail: detail.to_owned(),
            })
        };
        if self.name.is_empty() {
            return bad("name", "the dataset has no name");
        }
        if self.schema.is_empty() {
            return bad("schema", "the dataset has no columns");
        }
        if self
            .schema
            .iter()
            .any(|c| c.name.is_empty() || c.ty.is_empty())
        {
            return bad("schema", "a column has no name or no type");
        }
        if let Some(privacy) = &self.privacy {
            privacy.check(&self.schema)?;
        }
        crate::check_digest("digest", &self.digest)?;
        check_location(&self.location)?;
        if let Some(key) = &self.public_key
            && hex::decode(key)
                .ok()
                .and_then(|k| confide_crypto::hpke::HpkePublicKey::from_bytes(&k).ok())
                .is_none()
        {
            return bad("public_key", "not an HPKE public key in hex");
        }
        if let Some(key) = &self.history_key
            && *key != self.id.history_key_name()
        {
            return bad(
                "history_key",
                &format!(
                    "a dataset's history key is named for the dataset: {}",
                    self.id.history_key_name()
                ),
            );
        }
        // The key's name is the dataset's (`dataset-ID`): the id is bound to the one key its
        // owner deposited, so no member can take the id of another's dataset under a key of
        // her own, and a key name, made from a ciphertext digest only the owner knows until it
        // deposits the key, cannot be taken before the owner's.
        if self.key != self.id.key_name() {
            return bad(
                "key",
                &format!(
                    "a dataset's key is named for the dataset: {}",
                    self.id.key_name()
                ),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> DatasetRecord {
        DatasetRecord {
            id: "payments-0123456789ab".parse().unwrap(),
            owner: "0f".repeat(32).parse().unwrap(),
            name: "payments".into(),
            format: Format::Csv,
            schema: vec![Column {
                name: "amount".into(),
                ty: "Int64".into(),
            }],
            rows: 3,
            size: 100,
            digest: "ab".repeat(32),
            location: "datasets/payments-0123456789ab.cfd".into(),
            key: "dataset-payments-0123456789ab".into(),
            privacy: Some(Privacy::default()),
            public_key: None,
            history_key: None,
        }
    }

    #[test]
    fn a_record_is_read_whole_or_not_at_all() {
        let r = sample();
        r.check().unwrap();
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["schema"][0]["type"], "Int64");
        assert_eq!(
            serde_json::from_value::<DatasetRecord>(json.clone()).unwrap(),
            r
        );
        // An unknown format, a missing field, an extra one, an id or owner that is not one:
        // refused, never defaulted.
        for (field, value) in [
            ("format", Some("xml")),
            ("key", None),
            ("admin", Some("1")),
            ("id", Some("../x")),
            ("id", Some("")),
            ("owner", Some("bank-a")),
        ] {
            let mut bad = json.clone();
            match value {
                Some(v) => bad[field] = v.into(),
                None => {
                    bad.as_object_mut().unwrap().remove(field);
                }
            }
            assert!(
                serde_json::from_value::<DatasetRecord>(bad).is_err(),
                "{field}"
            );
        }
    }

    #[test]
    fn each_field_is_checked_and_named() {
        type Spoil = fn(&mut DatasetRecord);
        let cases: [(&str, Spoil); 15] = [
            ("public_key", |r| r.public_key = Some("ab".repeat(31))),
            ("history_key", |r| {
                r.history_key = Some("dataset-payments-0123456789ab".into())
            }),
            ("privacy", |r| {
                r.privacy = Some(Privacy {
                    identity: [("customer".into(), "person".into())].into(),
                    ..Privacy::default()
                })
            }),
            ("privacy", |r| {
                r.privacy = Some(Privacy {
                    identity: [("amount".into(), "Person".into())].into(),
                    ..Privacy::default()
                })
            }),
            ("privacy", |r| {
                r.privacy = Some(Privacy {
                    identity: [("amount".into(), "person".into())].into(),
                    aggregate_only: vec!["amount".into()],
                    ..Privacy::default()
                })
            }),
            ("privacy", |r| {
                r.privacy = Some(Privacy {
                    join_only: vec!["amount".into(), "amount".into()],
                    ..Privacy::default()
                })
            }),
            ("name", |r| r.name.clear()),
            ("schema", |r| r.schema.clear()),
            ("digest", |r| r.digest = "00".into()),
            ("location", |r| r.location = "/etc/passwd".into()),
            ("location", |r| r.location = "datasets/../../x".into()),
            ("location", |r| r.location = "./x".into()),
            ("location", |r| r.location = "..\\..\\x".into()),
            ("location", |r| r.location = "x\0y".into()),
            ("key", |r| r.key.clear()),
        ];
        for (field, spoil) in cases {
            let mut r = sample();
            spoil(&mut r);
            match r.check() {
                Err(ModelError::Malformed { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }
}

//! What the workload runs, as the verified ledger states it: the contract's terms (whose digest
//! must be the id asked for), each dataset's record, and each recipient's public identity
//! (whose fingerprint must be the one the contract names). Nothing here comes from an
//! endpoint's answer: only from governance replayed over entries under the pinned key.

use std::collections::BTreeMap;

use confide_cleanroom::{Contract, Format};
use confide_identity::PublicIdentity;
use confide_ledger::gov::Governance;
use datafusion::arrow::datatypes::SchemaRef;
use serde_json::Value;

use crate::WorkloadError;

/// A dataset as its owner registered it on the ledger.
#[derive(Debug, Clone)]
pub struct DatasetRecord {
    /// Its id.
    pub id: String,
    /// Its owner's fingerprint.
    pub owner: String,
    /// How its plaintext is laid out.
    pub format: Format,
    /// Its columns.
    pub schema: SchemaRef,
    /// SHA-256 of its ciphertext, hex.
    pub digest: String,
    /// Where its ciphertext is, in the blob store.
    pub location: String,
    /// The name of its key at the key broker.
    pub key: String,
}

impl DatasetRecord {
    /// Reads a `register_dataset` action; every field must be there and well formed.
    pub fn from_action(action: &Value) -> Result<Self, WorkloadError> {
        let id = action["id"].as_str().unwrap_or("?").to_owned();
        let bad = |what: &str| WorkloadError::Dataset {
            id: id.clone(),
            what: what.to_owned(),
        };
        let text = |field: &str| {
            action[field]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| bad(&format!("its record has no {field:?}")))
        };
        let format_name = text("format")?;
        let format = Format::from_name(&format_name).ok_or_else(|| {
            bad(&format!(
                "its format {format_name:?} is neither csv nor parquet"
            ))
        })?;
        let columns = action["schema"]
            .as_array()
            .ok_or_else(|| bad("its record has no schema"))?
            .iter()
            .map(|c| match (c["name"].as_str(), c["type"].as_str()) {
                (Some(n), Some(t)) => Ok((n.to_owned(), t.to_owned())),
                _ => Err(bad("a column of its schema has no name or type")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let schema = confide_cleanroom::runner::schema_from(&columns)
            .map_err(|e| bad(&format!("its schema: {e}")))?;
        let digest = text("digest")?;
        if digest.len() != 64 || hex::decode(&digest).is_err() {
            return Err(bad("its digest is not a SHA-256 in hex"));
        }
        Ok(Self {
            owner: text("owner")?,
            format,
            schema,
            digest,
            location: text("location")?,
            key: text("key")?,
            id,
        })
    }
}

/// An approved contract, checked against its id, with everything the run needs.
#[derive(Debug, Clone)]
pub struct Approved {
    /// Its id: the digest of `contract`.
    pub id: String,
    /// Its terms.
    pub contract: Contract,
    /// Each table's dataset, by SQL table name.
    pub tables: BTreeMap<String, DatasetRecord>,
    /// The recipients' identities, in the contract's order.
    pub recipients: Vec<PublicIdentity>,
}

/// Where a contract stands on the ledger, when it is not approved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotRunnable {
    /// No contract of that id was approved by every owner.
    NotApproved,
    /// An owner revoked it.
    Revoked,
}

impl Approved {
    /// The approved contract `id` in `gov`, or where it stands if it cannot run.
    pub fn find(gov: &Governance, id: &str) -> Result<Result<Self, NotRunnable>, WorkloadError> {
        let Some(entry) = gov.contracts().get(id) else {
            return Ok(Err(NotRunnable::NotApproved));
        };
        match entry["state"].as_str() {
            Some("approved") => {}
            Some("revoked") => return Ok(Err(NotRunnable::Revoked)),
            _ => return Ok(Err(NotRunnable::NotApproved)),
        }
        let contract = Contract::from_value(&entry["contract"])?;
        // The terms are what the id names, byte for byte: anything else is another contract.
        let digest = contract.id();
        if digest != id {
            return Err(WorkloadError::TermsNotTheContract {
                id: id.to_owned(),
                digest,
            });
        }
        contract.check()?;
        let mut tables = BTreeMap::new();
        for (table, dataset) in &contract.tables {
            let action = gov
                .datasets()
                .get(dataset)
                .ok_or_else(|| WorkloadError::Dataset {
                    id: dataset.clone(),
                    what: "it is not registered on the ledger".into(),
                })?;
            let record = DatasetRecord::from_action(action)?;
            if record.id != *dataset {
                return Err(WorkloadError::Dataset {
                    id: dataset.clone(),
                    what: format!("its record is filed under another id ({})", record.id),
                });
            }
            tables.insert(table.clone(), record);
        }
        let recipients = contract
            .recipients
            .iter()
            .map(|fp| recipient(gov, fp))
            .collect::<Result<_, _>>()?;
        Ok(Ok(Self {
            id: id.to_owned(),
            contract,
            tables,
            recipients,
        }))
    }
}

/// The member with fingerprint `fp`: its identity document must hash to that fingerprint.
fn recipient(gov: &Governance, fp: &str) -> Result<PublicIdentity, WorkloadError> {
    let bad = |what: &str| WorkloadError::Recipient {
        fingerprint: fp.to_owned(),
        what: what.to_owned(),
    };
    let identity = gov
        .members()
        .get(fp)
        .ok_or_else(|| bad("it is not a member on the ledger"))?;
    // Checked here again, not assumed of the map: the result goes to these keys.
    if identity.fingerprint().to_hex() != fp {
        return Err(bad("the identity filed under it has another fingerprint"));
    }
    Ok(identity.clone())
}

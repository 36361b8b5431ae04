//! What the workload runs, as the verified ledger states it: the contract's terms (whose digest
//! must be the id asked for), each dataset's record, and each recipient's public identity
//! (whose fingerprint must be the one the contract names). Nothing here comes from an
//! endpoint's answer: only from governance replayed over entries under the pinned key.

use std::collections::BTreeMap;

use confide_gov::Governance;
use confide_identity::PublicIdentity;
use confide_model::{Contract, ContractId, ContractState, DatasetRecord, MemberId, Privacy};
use datafusion::arrow::datatypes::SchemaRef;

use crate::WorkloadError;

/// A dataset the contract reads: its record as its owner registered it on the ledger, and
/// its columns as the engine types them.
#[derive(Debug, Clone)]
pub struct Input {
    /// The record.
    pub record: DatasetRecord,
    /// Its columns.
    pub schema: SchemaRef,
    /// Its owner's privacy declaration.
    pub privacy: Privacy,
}

impl Input {
    /// Types the record's columns; a column type the engine does not know is refused.
    pub fn of(record: &DatasetRecord) -> Result<Self, WorkloadError> {
        let columns: Vec<(String, String)> = record
            .schema
            .iter()
            .map(|c| (c.name.clone(), c.ty.clone()))
            .collect();
        let schema = confide_cleanroom::runner::schema_from(&columns).map_err(|e| {
            WorkloadError::Dataset {
                id: record.id.clone(),
                what: format!("its schema: {e}"),
            }
        })?;
        // Default deny: a dataset whose owner declared nothing about its individuals (a record
        // from before declarations) is read by no contract.
        let privacy = record
            .privacy
            .clone()
            .ok_or_else(|| WorkloadError::Dataset {
                id: record.id.clone(),
                what: "its owner declared no privacy (identity columns) when publishing it; no \
                       contract reads it until the owner publishes it again with a declaration"
                    .into(),
            })?;
        Ok(Self {
            record: record.clone(),
            schema,
            privacy,
        })
    }
}

/// An approved contract, checked against its id, with everything the run needs.
#[derive(Debug, Clone)]
pub struct Approved {
    /// Its id: the digest of `contract`.
    pub id: ContractId,
    /// Its terms.
    pub contract: Contract,
    /// Each table's dataset, by SQL table name.
    pub tables: BTreeMap<String, Input>,
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
    pub fn find(
        gov: &Governance,
        id: &ContractId,
    ) -> Result<Result<Self, NotRunnable>, WorkloadError> {
        let Some(entry) = gov.contracts().get(id) else {
            return Ok(Err(NotRunnable::NotApproved));
        };
        if entry.state == ContractState::Revoked {
            return Ok(Err(NotRunnable::Revoked));
        }
        let contract = entry.contract.clone();
        // The terms are what the id names, byte for byte: anything else is another contract.
        let digest = contract.id();
        if digest != *id {
            return Err(WorkloadError::TermsNotTheContract {
                id: id.clone(),
                digest,
            });
        }
        contract
            .check()
            .map_err(|e| WorkloadError::Cleanroom(e.into()))?;
        let mut tables = BTreeMap::new();
        for (table, dataset) in &contract.tables {
            let record = gov
                .datasets()
                .get(dataset)
                .ok_or_else(|| WorkloadError::Dataset {
                    id: dataset.clone(),
                    what: "it is not registered on the ledger".into(),
                })?;
            if record.id != *dataset {
                return Err(WorkloadError::Dataset {
                    id: dataset.clone(),
                    what: format!("its record is filed under another id ({})", record.id),
                });
            }
            tables.insert(table.clone(), Input::of(record)?);
        }
        let recipients = contract
            .recipients
            .iter()
            .map(|fp| recipient(gov, fp))
            .collect::<Result<_, _>>()?;
        Ok(Ok(Self {
            id: id.clone(),
            contract,
            tables,
            recipients,
        }))
    }
}

/// The member with fingerprint `fp`: its identity document must hash to that fingerprint.
fn recipient(gov: &Governance, fp: &MemberId) -> Result<PublicIdentity, WorkloadError> {
    let bad = |what: &str| WorkloadError::Recipient {
        fingerprint: fp.clone(),
        what: what.to_owned(),
    };
    let identity = gov
        .members()
        .get(fp)
        .ok_or_else(|| bad("it is not a member on the ledger"))?;
    // Checked here again, not assumed of the map: the result goes to these keys.
    if MemberId::of(identity) != *fp {
        return Err(bad("the identity filed under it has another fingerprint"));
    }
    Ok(identity.clone())
}

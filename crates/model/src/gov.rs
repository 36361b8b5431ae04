//! Governance as data: the bodies members sign ([`GovBody`]), the actions a proposal carries
//! ([`Action`]), and what an approved contract is on the ledger ([`ContractRecord`]). The JSON
//! is the wire and ledger format; reading it is all or nothing (no unknown field, no missing
//! one, no default), and [`Action::check`] checks each action on its own. Whether an action
//! fits the consortium's state is governance's to decide.

use std::collections::BTreeMap;

use confide_identity::PublicIdentity;
use serde::{Deserialize, Serialize};

use crate::contract::{Contract, Measurement};
use crate::dataset::DatasetRecord;
use crate::{ContractId, DatasetId, MemberId, ModelError};

/// The payload of a member's signed governance request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum GovBody {
    /// The first member founds the consortium.
    Found {
        /// The founder's identity.
        member: PublicIdentity,
        /// A constitution (Rego) to start with instead of the default one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        constitution: Option<String>,
    },
    /// A proposal of actions, accepted or rejected together.
    Propose {
        /// The actions, applied in order.
        actions: Vec<Action>,
    },
    /// A vote on a proposal.
    Ballot {
        /// The proposal's id.
        proposal: String,
        /// Yes or no.
        vote: bool,
    },
}

impl GovBody {
    /// The body's `type`, as the wire names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Found { .. } => "found",
            Self::Propose { .. } => "propose",
            Self::Ballot { .. } => "ballot",
        }
    }

    /// Reads a body from its JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ModelError> {
        crate::unique_keys(bytes, "body")?;
        serde_json::from_slice(bytes).map_err(|e| ModelError::Malformed {
            field: "body",
            detail: e.to_string(),
        })
    }
}

/// One action of a proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Admits a member.
    AddMember {
        /// Its identity.
        member: PublicIdentity,
    },
    /// Removes a member.
    RemoveMember {
        /// Its fingerprint.
        fingerprint: MemberId,
    },
    /// Replaces the constitution.
    SetConstitution {
        /// The new constitution (Rego).
        rego: String,
    },
    /// Sets a named policy (the appraisal policy is `appraisal`).
    SetPolicy {
        /// The policy's name.
        name: String,
        /// Its Rego text.
        rego: String,
    },
    /// Trusts a workload measurement.
    AddMeasurement(Measurement),
    /// Stops trusting a workload measurement.
    RemoveMeasurement(Measurement),
    /// Registers a dataset to its owner.
    RegisterDataset(DatasetRecord),
    /// Approves a contract.
    ApproveContract(Approval),
    /// Revokes an approved contract.
    RevokeContract {
        /// The contract's id.
        id: ContractId,
    },
    /// Appends a version to a dataset, with its owner's consent: a batch of rows under the
    /// dataset's key, its columns and its declaration.
    AppendDataset {
        /// The dataset.
        dataset: crate::DatasetId,
        /// The batch.
        version: crate::dataset::Version,
    },
    /// Sets a dataset's privacy budget (raised or lowered), with its owner's consent.
    SetBudget {
        /// The dataset.
        dataset: crate::DatasetId,
        /// Its budget from now on.
        budget: crate::Budget,
    },
}

/// The `approve_contract` action: the terms, their id and the datasets they read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// The contract's id: the digest of `contract`.
    pub id: ContractId,
    /// The datasets its tables read, sorted, each once.
    pub datasets: Vec<DatasetId>,
    /// The terms.
    pub contract: Contract,
}

impl Approval {
    /// The approval of `contract`.
    pub fn of(contract: Contract) -> Self {
        Self {
            id: contract.id(),
            datasets: contract.datasets(),
            contract,
        }
    }
}

impl Action {
    /// The action's name, as the wire names it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::AddMember { .. } => "add_member",
            Self::RemoveMember { .. } => "remove_member",
            Self::SetConstitution { .. } => "set_constitution",
            Self::SetPolicy { .. } => "set_policy",
            Self::AddMeasurement(_) => "add_measurement",
            Self::RemoveMeasurement(_) => "remove_measurement",
            Self::RegisterDataset(_) => "register_dataset",
            Self::ApproveContract(_) => "approve_contract",
            Self::RevokeContract { .. } => "revoke_contract",
            Self::SetBudget { .. } => "set_budget",
            Self::AppendDataset { .. } => "append_dataset",
        }
    }

    /// Checks the action on its own (not against the ledger): fingerprints and ids are hex of
    /// their length, measurements are of a kind that measures its code, a dataset record is
    /// whole, and a contract's id is the digest of its terms and its datasets are its tables'.
    pub fn check(&self) -> Result<(), ModelError> {
        match self {
            Self::AddMember { .. } => Ok(()),
            Self::RemoveMember { .. } | Self::RevokeContract { .. } => Ok(()),
            Self::SetConstitution { rego } | Self::SetPolicy { rego, .. }
                if rego.trim().is_empty() =>
            {
                Err(ModelError::Malformed {
                    field: "rego",
                    detail: "the policy is empty".into(),
                })
            }
            Self::SetPolicy { name, .. } if name.is_empty() => Err(ModelError::Malformed {
                field: "name",
                detail: "the policy has no name".into(),
            }),
            Self::SetConstitution { .. } | Self::SetPolicy { .. } => Ok(()),
            Self::AddMeasurement(_) | Self::RemoveMeasurement(_) => Ok(()),
            Self::RegisterDataset(record) => record.check(),
            Self::SetBudget { budget, .. } => budget.check(),
            Self::AppendDataset { version, .. } => version.check(),
            Self::ApproveContract(approval) => {
                approval.contract.check()?;
                let digest = approval.contract.id();
                if digest != approval.id {
                    return Err(ModelError::Malformed {
                        field: "id",
                        detail: format!(
                            "the contract id {} is not the digest of its terms ({digest})",
                            approval.id
                        ),
                    });
                }
                if approval.datasets != approval.contract.datasets() {
                    return Err(ModelError::Malformed {
                        field: "datasets",
                        detail: "the contract's datasets are not the sorted datasets of its \
                                 tables"
                            .into(),
                    });
                }
                Ok(())
            }
        }
    }
}

/// Whether an approved contract still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContractState {
    /// Approved by every owner of its data; it runs.
    Approved,
    /// Revoked by an owner; it runs no more.
    Revoked,
}

/// A contract as governance holds it: the approval that was accepted, and its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractRecord {
    /// The contract's id: the digest of `contract`.
    pub id: ContractId,
    /// The datasets its tables read, sorted, each once.
    pub datasets: Vec<DatasetId>,
    /// The terms.
    pub contract: Contract,
    /// Approved or revoked.
    pub state: ContractState,
}

impl ContractRecord {
    /// The record of an accepted approval.
    pub fn approved(approval: Approval) -> Self {
        Self {
            id: approval.id,
            datasets: approval.datasets,
            contract: approval.contract,
            state: ContractState::Approved,
        }
    }
}

/// Where a proposal stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProposalState {
    /// Waiting for ballots.
    Open,
    /// Accepted and applied.
    Accepted,
    /// Rejected; nothing applied.
    Rejected,
}

impl std::fmt::Display for ProposalState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Open => "open",
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
        })
    }
}

/// The answer to a governance request: where it went on the ledger, and, for a proposal or a
/// ballot, the proposal and its state afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Submitted {
    /// The request's position on the ledger.
    pub seq: u64,
    /// The proposal concerned.
    pub proposal: Option<String>,
    /// Its state afterwards.
    pub state: Option<ProposalState>,
}

/// `GET /gov/members`: the members, by fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberList {
    /// The members.
    pub members: Vec<Member>,
}

/// One member of a [`MemberList`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Its identity's fingerprint.
    pub fingerprint: MemberId,
    /// Its name.
    pub name: String,
    /// Its public identity document.
    pub identity: PublicIdentity,
}

/// A proposal and its ballots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proposal {
    /// SHA-256 of the proposal request, hex.
    pub id: String,
    /// The proposing member.
    pub proposer: MemberId,
    /// The actions proposed.
    pub actions: Vec<Action>,
    /// Each member's vote.
    pub ballots: BTreeMap<MemberId, bool>,
    /// Where it stands.
    pub state: ProposalState,
    /// The ledger position of the proposal.
    pub seq: u64,
}

/// `GET /gov/proposals`: every proposal, in ledger order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProposalList {
    /// The proposals.
    pub proposals: Vec<Proposal>,
}

/// `GET /gov/datasets`: the registered datasets, by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetList {
    /// The datasets.
    pub datasets: BTreeMap<DatasetId, DatasetRecord>,
}

/// `GET /gov/contracts`: the approved contracts (and revoked ones), by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractList {
    /// The contracts.
    pub contracts: BTreeMap<ContractId, ContractRecord>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn contract() -> Contract {
        serde_json::from_value(json!({
            "tables": {"t": "ds-1"}, "sql": "SELECT 1 AS n",
            "measurements": [{"kind": "sim", "value": "00".repeat(48)}],
            "recipients": ["0f".repeat(32)],
            "output": {"columns": ["n"], "min_group": {"column": "n", "min": 1},
                       "max_rows": 10, "on_violation": "refuse"}
        }))
        .unwrap()
    }

    #[test]
    fn actions_read_as_the_wire_writes_them() {
        let approval = Action::ApproveContract(Approval::of(contract()));
        approval.check().unwrap();
        let json = serde_json::to_value(&approval).unwrap();
        assert_eq!(json["action"], "approve_contract");
        assert_eq!(json["datasets"], json!(["ds-1"]));
        assert_eq!(
            serde_json::from_value::<Action>(json.clone()).unwrap(),
            approval
        );
        // An extra field, beside the tag: refused, not ignored.
        let mut extra = json.clone();
        extra["also"] = json!("SELECT *");
        assert!(serde_json::from_value::<Action>(extra).is_err());
        let m = json!({"action": "add_measurement", "kind": "sim", "value": "00".repeat(48)});
        let read: Action = serde_json::from_value(m).unwrap();
        assert_eq!(read.name(), "add_measurement");
        read.check().unwrap();
        for bad in [
            json!({"action": "add_measurement", "kind": "sim", "value": "00".repeat(48), "x": 1}),
            json!({"action": "format_disk"}),
            json!({"action": "revoke_contract"}),
            json!({"action": "revoke_contract", "id": "00"}),
            json!({"action": "remove_member", "fingerprint": "bank-a"}),
            json!({"action": "add_measurement", "kind": "sim", "value": "00"}),
            json!({"id": "00"}),
        ] {
            assert!(
                serde_json::from_value::<Action>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn an_approval_is_of_exactly_its_terms() {
        let good = Approval::of(contract());
        let mut forged = good.clone();
        forged.id = "00".repeat(32).parse().unwrap();
        let mut unlisted = good.clone();
        unlisted.datasets.push("ds-2".parse().unwrap());
        let mut sql = good.clone();
        sql.contract.sql.push(' ');
        for (field, a) in [("id", forged), ("datasets", unlisted), ("id", sql)] {
            match Action::ApproveContract(a).check() {
                Err(ModelError::Malformed { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        let record = ContractRecord::approved(good);
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["state"], "approved");
        assert_eq!(
            serde_json::from_value::<ContractRecord>(json).unwrap(),
            record
        );
    }

    #[test]
    fn bodies_are_one_of_three_kinds() {
        let ballot = GovBody::from_json(br#"{"type": "ballot", "proposal": "p", "vote": true}"#);
        assert_eq!(ballot.unwrap().kind(), "ballot");
        for bad in [
            &br#"{"type": "ballot", "proposal": "p", "vote": "yes"}"#[..],
            br#"{"type": "ballot", "proposal": "p", "proposal": "q", "vote": true}"#,
            br#"{"type": "propose", "actions": [{"action": "approve_contract", "id": "x",
                 "datasets": [], "contract": {"tables": {"p": "theirs", "p": "mine"}}}]}"#,
            br#"{"type": "ballot", "proposal": "p"}"#,
            br#"{"type": "propose", "actions": [], "extra": 1}"#,
            br#"{"type": "coup"}"#,
        ] {
            assert!(
                GovBody::from_json(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}

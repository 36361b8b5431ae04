//! Governance: member-signed requests on the ledger, and the state that folding them gives.
//!
//! Every request is a COSE_Sign1 (ES256) by a member's signing key, kept verbatim as a ledger
//! entry. Its protected header carries the signer (`kid` = the member's identity fingerprint),
//! a timestamp and a nonce (under `"confide.gov"`); its payload is JSON: `found` (the first
//! member founds the consortium), `propose` (a list of actions) or `ballot` (a vote on a
//! proposal). After each proposal and ballot the constitution (Rego, see `constitution.rego`)
//! decides whether the proposal is accepted, rejected or still open; accepted actions change
//! the state. The state is exactly what replaying the ledger gives.
//!
//! Consent is code, not a vote: whatever the constitution decides, a proposal that grants or
//! widens access to a member's data (approving a contract over it, registering a dataset as
//! theirs, a policy or a trusted measurement while they own data) is accepted only once each
//! such member voted yes, and rejected by any one of their no's; a new constitution needs every
//! member. No majority, and no constitution a majority installs, can take a member's data.
//!
//! [`Governance::check`] refuses, before anything is written, a request that is malformed, not
//! signed by a member, replayed (a nonce seen before from the same signer), out of its time
//! window, or that names unknown proposals, members or datasets; so a refused request changes
//! nothing.

#![forbid(unsafe_code)]

pub mod appraisal;
mod nonces;

pub use nonces::SpentNonces;

use std::collections::{BTreeMap, BTreeSet};

use ciborium::value::Value as Cbor;
use confide_crypto::digest::sha256;
use confide_crypto::signing::SigningKey;
use confide_identity::PublicIdentity;
pub use confide_model::gov::{Proposal, ProposalState};
use confide_model::{
    Action, Budget, ContractId, ContractRecord, ContractState, DatasetId, DatasetRecord,
    DatasetVersion, Epsilon, GovBody, HistoryStep, LeaseEvent, Measurement, MemberId, RunRecord,
};
use confide_policy::Policy;
use serde_json::{Value, json};

use confide_ledger::cose::{self, Sign1};

/// The constitution a consortium starts with.
pub const DEFAULT_CONSTITUTION: &str = confide_policy::CONSTITUTION;
const DECISION: &str = "data.confide.constitution.decision";
const GOV_LABEL: &str = "confide.gov";
/// How far a request's timestamp may be from the server's clock when it is submitted.
pub const MAX_SKEW: i64 = 300;

/// Why a governance request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GovError {
    /// Not a well-formed governance request.
    #[error("malformed governance request: {0}")]
    Malformed(String),
    /// Not signed by a member of the consortium (or the signature does not match the body).
    #[error("not signed by a member: {0}")]
    NotAMember(String),
    /// The signature does not verify over the request.
    #[error("the signature does not match the request")]
    BadSignature,
    /// The same request (signer and nonce) was seen before.
    #[error("replayed request: this signer already used this nonce")]
    Replay,
    /// The request's time is too far from now.
    #[error("the request is dated {ts}, more than {MAX_SKEW} s from the server's time {now}")]
    Stale {
        /// The request's time.
        ts: i64,
        /// The server's time.
        now: i64,
    },
    /// The request does not fit the current state.
    #[error("refused: {0}")]
    Refused(String),
    /// An audit event the rules refuse to record (a key release past a privacy budget).
    #[error("{0}")]
    Denied(Denial),
    /// A constitution (proposed, or the one in force on this request) did not decide within
    /// its time limit; the request is refused so that it holds neither the ledger nor a replay.
    #[error("{0}: the request is refused, so that no proposal can hold the ledger")]
    TooSlow(confide_policy::PolicyError),
}

fn malformed(what: impl Into<String>) -> GovError {
    GovError::Malformed(what.into())
}

fn refused(what: impl Into<String>) -> GovError {
    GovError::Refused(what.into())
}

/// A request's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The first member founds the consortium.
    Found,
    /// A proposal of actions.
    Propose,
    /// A vote on a proposal.
    Ballot,
}

/// A checked request, ready to be appended and applied.
#[derive(Debug, Clone)]
pub struct Request {
    /// What it is.
    pub kind: Kind,
    /// The signer.
    pub signer: MemberId,
    /// Its timestamp.
    pub ts: i64,
    nonce: Vec<u8>,
    body: GovBody,
    /// The request as signed; what goes on the ledger.
    pub cose: Vec<u8>,
}

impl Request {
    /// The id of a proposal: SHA-256 of its COSE bytes, hex.
    pub fn id(&self) -> String {
        hex::encode(sha256(&self.cose))
    }
}

/// Signs a governance request with a member's key. `body` is JSON with a `"type"`: a
/// [`GovBody`], or another service's request (the key broker's).
pub fn sign_request(
    key: &SigningKey,
    fingerprint_hex: &str,
    body: &impl serde::Serialize,
    ts: i64,
    nonce: &[u8],
) -> Result<Vec<u8>, GovError> {
    let kid = hex::decode(fingerprint_hex).map_err(|_| malformed("fingerprint is not hex"))?;
    let protected = cose::encode(&Cbor::Map(vec![
        (cose::int(cose::ALG), cose::int(cose::ES256)),
        (cose::int(cose::KID), Cbor::Bytes(kid)),
        (
            Cbor::Text(GOV_LABEL.into()),
            Cbor::Map(vec![
                (Cbor::Text("ts".into()), cose::int(ts)),
                (Cbor::Text("nonce".into()), Cbor::Bytes(nonce.to_vec())),
            ]),
        ),
    ]));
    let payload = serde_json::to_vec(body).map_err(|e| malformed(e.to_string()))?;
    let signature = key
        .sign(&cose::sig_structure(&protected, &payload))
        .map_err(|_| malformed("signing failed"))?;
    Ok(Sign1 {
        protected,
        protected_map: Vec::new(),
        unprotected: Vec::new(),
        payload: Some(payload),
        signature: signature.to_vec(),
    }
    .to_bytes())
}

/// Whether a ledger entry is a governance request (others are audit events and run records).
pub fn is_governance(entry: &[u8]) -> bool {
    Sign1::parse(entry).is_ok_and(|s| {
        s.protected_map
            .iter()
            .any(|(k, _)| k.as_text() == Some(GOV_LABEL))
    })
}

/// A governance request refused after its signer was authenticated, as the ledger records it
/// (`{"type": "gov.refused", "request": {signer, nonce, ts}, "reason", "at"}`): its nonce stays
/// spent, so the signed request cannot be sent again to succeed once the state has changed,
/// not even after a restart ([`Governance::replay_refused`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refused {
    #[serde(rename = "type")]
    kind: RefusedType,
    /// Who signed it, its nonce and its time.
    pub request: confide_model::Stamp,
    /// Why it was refused.
    pub reason: String,
    /// When.
    pub at: i64,
}

/// The one type a [`Refused`] event has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum RefusedType {
    #[serde(rename = "gov.refused")]
    GovRefused,
}

/// A member's authenticated request to another service.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The member.
    pub signer: MemberId,
    /// The request's time.
    pub ts: i64,
    /// Its nonce, to remember against replays.
    pub nonce: Vec<u8>,
    /// Its payload, as signed (the caller reads it as the body it expects).
    pub payload: Vec<u8>,
}

/// The consortium's state, derived from the ledger.
#[derive(Debug, Clone)]
pub struct Governance {
    registry: Registry,
    proposals: BTreeMap<String, Proposal>,
    /// Nonces of governance requests spent, accepted or refused.
    nonces: SpentNonces,
    /// The ε spent on each dataset in each period (its number since the epoch), from the key
    /// releases the ledger records for contracts that add noise.
    spent: BTreeMap<(DatasetId, i64), Epsilon>,
    /// The latest difference-check history of each dataset, from the run records.
    history: BTreeMap<DatasetId, HistoryStep>,
    /// The datasets whose histories the ledger forks: two recorded runs started from one
    /// history (a server that appended what its writer should have refused).
    forked: BTreeSet<DatasetId>,
}

/// What accepted actions change: members, rules, reference values, datasets and contracts.
/// Small, so that a proposal's actions can be tried on a copy.
#[derive(Debug, Clone)]
struct Registry {
    members: BTreeMap<MemberId, PublicIdentity>,
    constitution: Policy,
    policies: BTreeMap<String, String>,
    measurements: BTreeSet<Measurement>,
    datasets: BTreeMap<DatasetId, DatasetRecord>,
    contracts: BTreeMap<ContractId, ContractRecord>,
    /// Budgets set after registration (`set_budget`), over the registered ones.
    budgets: BTreeMap<DatasetId, Budget>,
    /// Each dataset's versions, the registration first.
    versions: BTreeMap<DatasetId, Vec<DatasetVersion>>,
    /// How long the constitution may take to decide: [`confide_policy::TIME_LIMIT`] for new
    /// requests, none when replaying requests that were decided within it.
    limit: Option<std::time::Duration>,
}

/// What applying a request did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Applied {
    /// The proposal concerned (for a proposal or ballot).
    pub proposal: Option<String>,
    /// Its state afterwards.
    pub state: Option<ProposalState>,
}

impl Governance {
    /// The state before any request: no members, the default constitution.
    pub fn new() -> Result<Self, GovError> {
        Ok(Self {
            registry: Registry {
                members: BTreeMap::new(),
                constitution: Policy::new("constitution.rego", DEFAULT_CONSTITUTION)
                    .map_err(|e| refused(e.to_string()))?,
                policies: BTreeMap::new(),
                measurements: BTreeSet::new(),
                datasets: BTreeMap::new(),
                contracts: BTreeMap::new(),
                budgets: BTreeMap::new(),
                versions: BTreeMap::new(),
                limit: Some(confide_policy::TIME_LIMIT),
            },
            proposals: BTreeMap::new(),
            nonces: SpentNonces::new(),
            spent: BTreeMap::new(),
            history: BTreeMap::new(),
            forked: BTreeSet::new(),
        })
    }

    /// Sets how long a constitution may take to decide. New requests are decided within
    /// [`confide_policy::TIME_LIMIT`] (the default), and one that takes longer is refused, so
    /// that no proposal holds the ledger's writer; replaying the ledger's own requests, which
    /// were all decided within it, sets `None`, so that a slower machine reaches the same state.
    pub fn set_time_limit(&mut self, limit: Option<std::time::Duration>) {
        self.registry.limit = limit;
    }

    /// Authenticates a member's request to another service (the key broker): the signer must
    /// be a member, the signature must match, and the time must be within [`MAX_SKEW`] of `now`.
    /// Remembering the nonce against replays is the caller's.
    pub fn authenticate(&self, cose: &[u8], now: i64) -> Result<Authenticated, GovError> {
        let signed = parse_signed(cose)?;
        let member = self.registry.members.get(&signed.kid).ok_or_else(|| {
            GovError::NotAMember(format!("no member has fingerprint {}", signed.kid))
        })?;
        member
            .signing_key()
            .verify(
                &cose::sig_structure(&signed.sign1.protected, &signed.payload),
                &signed.sign1.signature,
            )
            .map_err(|_| GovError::BadSignature)?;
        if (signed.ts - now).abs() > MAX_SKEW {
            return Err(GovError::Stale { ts: signed.ts, now });
        }
        Ok(Authenticated {
            signer: signed.kid,
            ts: signed.ts,
            nonce: signed.nonce,
            payload: signed.payload,
        })
    }

    /// Checks `cose` against the current state; `now` (the server's clock) is given when the
    /// request is submitted, and not when the ledger is replayed.
    pub fn check(&self, cose: &[u8], now: Option<i64>) -> Result<Request, GovError> {
        let Signed {
            sign1,
            kid,
            ts,
            nonce,
            payload,
        } = parse_signed(cose)?;
        let body = GovBody::from_json(&payload).map_err(|e| malformed(e.to_string()))?;
        let kind = match body {
            GovBody::Found { .. } => Kind::Found,
            GovBody::Propose { .. } => Kind::Propose,
            GovBody::Ballot { .. } => Kind::Ballot,
        };
        // The signer: a member, or for `found` the identity being founded.
        let signer =
            match &body {
                GovBody::Found { member, .. } => {
                    if !self.registry.members.is_empty() {
                        return Err(refused("the consortium is already founded"));
                    }
                    if MemberId::of(member) != kid {
                        return Err(GovError::NotAMember(
                            "the founding request's kid is not the founder's fingerprint".into(),
                        ));
                    }
                    member.clone()
                }
                _ => self.registry.members.get(&kid).cloned().ok_or_else(|| {
                    GovError::NotAMember(format!("no member has fingerprint {kid}"))
                })?,
            };
        signer
            .signing_key()
            .verify(
                &cose::sig_structure(&sign1.protected, &payload),
                &sign1.signature,
            )
            .map_err(|_| GovError::BadSignature)?;
        if self.nonces.is_spent(&kid, &nonce) {
            return Err(GovError::Replay);
        }
        if let Some(now) = now
            && (ts - now).abs() > MAX_SKEW
        {
            return Err(GovError::Stale { ts, now });
        }
        let request = Request {
            kind,
            signer: kid,
            ts,
            nonce,
            body,
            cose: cose.to_vec(),
        };
        match &request.body {
            GovBody::Found { constitution, .. } => {
                if let Some(rego) = constitution {
                    compile_constitution(rego, self.registry.limit)?;
                }
            }
            GovBody::Propose { actions } => {
                if actions.is_empty() {
                    return Err(malformed("a proposal needs a non-empty list of actions"));
                }
                self.registry.clone().apply_actions(actions, 0)?;
            }
            GovBody::Ballot { proposal: id, .. } => {
                let p = self
                    .proposals
                    .get(id)
                    .ok_or_else(|| refused(format!("no proposal {id}")))?;
                if p.state != ProposalState::Open {
                    return Err(refused(format!("proposal {id} is already {:?}", p.state)));
                }
                if p.ballots.contains_key(&request.signer) {
                    return Err(refused("this member already voted on this proposal"));
                }
            }
        }
        Ok(request)
    }

    /// What a request refused with `error` leaves on the ledger, if its signer was authenticated:
    /// its nonce, now spent here too. None for a request that proves nothing of its signer (a
    /// bad signature, a non-member, unparsable) or that could not pass again anyway (a replay,
    /// a stale time).
    pub fn refusal(&mut self, cose: &[u8], error: &GovError, now: i64) -> Option<Refused> {
        if matches!(
            error,
            GovError::Replay
                | GovError::Stale { .. }
                | GovError::BadSignature
                | GovError::NotAMember(_)
        ) {
            return None;
        }
        let request = self.authenticate(cose, now).ok()?;
        // A request whose nonce is spent (a copy of the founding request, say) is a replay
        // whatever else is wrong with it: nothing more goes on the ledger for it.
        if self.nonces.is_spent(&request.signer, &request.nonce) {
            return None;
        }
        self.spend(&request.signer, &request.nonce, request.ts);
        Some(Refused {
            kind: RefusedType::GovRefused,
            request: confide_model::Stamp {
                signer: request.signer,
                nonce: hex::encode(&request.nonce),
                ts: request.ts,
            },
            reason: error.to_string(),
            at: now,
        })
    }

    /// Replays ledger entry `seq` as every side rebuilds the consortium's state (the server at
    /// start, a member's client, the workload), so that all reach the same state, nonces
    /// included: a governance request is checked (without a clock: it was timely when
    /// accepted) and applied; a `gov.refused` event spends its nonce; any other audit event is
    /// left alone. Whether the entry was a governance request.
    pub fn replay_entry(&mut self, seq: u64, entry: &[u8]) -> Result<bool, GovError> {
        if is_governance(entry) {
            let request = self.check(entry, None)?;
            self.apply(request, seq)?;
            Ok(true)
        } else {
            self.replay_refused(entry)?;
            self.account(entry, false)?;
            Ok(false)
        }
    }

    /// Accounts for an audit event (`entry`) that is about to be appended (`enforce`) or is
    /// replayed: a key release charges its dataset's budget ([`Self::charge`]), a run record
    /// moves its datasets' difference-check histories on ([`Self::advance_history`]). With
    /// `enforce`, an event that breaks either is refused and changes nothing.
    pub fn account(&mut self, entry: &[u8], enforce: bool) -> Result<(), GovError> {
        self.charge(entry, enforce)?;
        self.advance_history(entry, enforce)
    }

    /// Moves on the difference-check history of each dataset a `cleanroom.run` record
    /// (`entry`) wrote one for. With `enforce`, a run that started from another history than
    /// the latest (two runs at once, each checked against the same earlier results, or a
    /// history rolled back) is refused and changes nothing; replaying the ledger, each record
    /// moves it on, and one that does not follow marks its dataset's history forked
    /// ([`Self::history_forked`]). Any other event is left alone.
    pub fn advance_history(&mut self, entry: &[u8], enforce: bool) -> Result<(), GovError> {
        let Ok(Some(RunRecord {
            output: Some(output),
            ..
        })) = <RunRecord as confide_model::Event>::of_entry(entry)
        else {
            return Ok(());
        };
        if enforce && let Some(step) = output.history.iter().find(|s| !self.follows(s)) {
            return Err(GovError::Denied(Denial::HistoryNotLatest {
                dataset: step.dataset.clone(),
            }));
        }
        for step in output.history {
            if !self.follows(&step) {
                self.forked.insert(step.dataset.clone());
            }
            self.history.insert(step.dataset.clone(), step);
        }
        Ok(())
    }

    /// Whether the ledger records two runs that started from one history of dataset `d`: the
    /// difference checks of one of them did not see the other's groups, so no run that checks
    /// `d` goes on (the ledger shows which server appended both).
    pub fn history_forked(&self, d: &DatasetId) -> bool {
        self.forked.contains(d)
    }

    /// Whether `step` starts from its dataset's latest history.
    fn follows(&self, step: &HistoryStep) -> bool {
        self.history.get(&step.dataset).map(|h| &h.to) == step.from.as_ref()
    }

    /// The latest difference-check history of dataset `d`, if a run wrote one.
    pub fn history(&self, d: &DatasetId) -> Option<&HistoryStep> {
        self.history.get(d)
    }

    /// The versions of dataset `d`, the registration first (none if it is not registered).
    pub fn versions(&self, d: &DatasetId) -> &[DatasetVersion] {
        self.registry.versions.get(d).map_or(&[], Vec::as_slice)
    }

    /// Charges the budget of the dataset whose key a `kms.release` event (`entry`) released
    /// for a contract that adds noise: the contract's ε, in the period of the event's time.
    /// With `enforce` (a release about to be appended), a charge past the budget is refused
    /// and changes nothing; replaying the ledger, every recorded release is charged. Any other
    /// event is left alone.
    pub fn charge(&mut self, entry: &[u8], enforce: bool) -> Result<(), GovError> {
        let Ok(Some(LeaseEvent::Release {
            key,
            contract: Some(contract),
            at,
            ..
        })) = <LeaseEvent as confide_model::Event>::of_entry(entry)
        else {
            return Ok(());
        };
        let Some(charge) = self.charge_of(&key, &contract, at) else {
            return Ok(());
        };
        let spent = self.spent.get(&charge.slot).copied().unwrap_or_default();
        let total = spent
            .checked_add(charge.epsilon)
            .unwrap_or(Epsilon::from_micros(u64::MAX));
        if enforce && total > charge.budget.epsilon {
            return Err(GovError::Denied(Denial::BudgetSpent {
                dataset: charge.slot.0,
                spent,
                asked: charge.epsilon,
                budget: charge.budget,
            }));
        }
        self.spent.insert(charge.slot, total);
        Ok(())
    }

    /// What releasing key `key` for contract `contract` at time `at` charges, if anything.
    fn charge_of(&self, key: &str, contract: &ContractId, at: i64) -> Option<Charge> {
        let record = self.registry.contracts.get(contract)?;
        let noise = record.contract.output.noise?;
        let dataset = record
            .datasets
            .iter()
            .find(|d| self.registry.datasets.get(*d).is_some_and(|r| r.key == key))?;
        let budget = self.registry.budget_of(dataset)?;
        Some(Charge {
            slot: (dataset.clone(), budget.period_of(at)),
            epsilon: noise.epsilon,
            budget,
        })
    }

    /// The ε spent on dataset `d` in the period that holds time `at`, and its budget, if it
    /// has one.
    pub fn budget(&self, d: &DatasetId, at: i64) -> Option<(Epsilon, Budget)> {
        let budget = self.registry.budget_of(d)?;
        let spent = self
            .spent
            .get(&(d.clone(), budget.period_of(at)))
            .copied()
            .unwrap_or_default();
        Some((spent, budget))
    }

    /// Spends the nonce of a refusal the ledger recorded (`entry`, an audit event; any other
    /// event is left alone). A `gov.refused` event that does not read whole is damage.
    pub fn replay_refused(&mut self, entry: &[u8]) -> Result<(), GovError> {
        #[derive(serde::Deserialize)]
        struct Typed<'a> {
            #[serde(rename = "type", borrow)]
            kind: Option<&'a str>,
        }
        let Ok(Typed {
            kind: Some("gov.refused"),
        }) = serde_json::from_slice(entry)
        else {
            return Ok(());
        };
        let refused: Refused = serde_json::from_slice(entry)
            .map_err(|e| malformed(format!("a gov.refused event: {e}")))?;
        let nonce = hex::decode(&refused.request.nonce)
            .map_err(|_| malformed("a gov.refused event's nonce is not hex"))?;
        self.spend(&refused.request.signer, &nonce, refused.request.ts);
        Ok(())
    }

    /// Spends a request's nonce, by its own time: every side replaying the ledger, which reads
    /// no clock, forgets the same nonces.
    fn spend(&mut self, signer: &MemberId, nonce: &[u8], ts: i64) {
        self.nonces.spend(signer, nonce, ts, ts);
    }

    /// Applies a checked request that is now at ledger position `seq`. Everything that can
    /// fail is done first, so that a refused request changes nothing.
    pub fn apply(&mut self, request: Request, seq: u64) -> Result<Applied, GovError> {
        let id = request.id();
        let applied = match request.body {
            GovBody::Found {
                member,
                constitution,
            } => {
                if let Some(rego) = constitution {
                    self.registry.constitution = compile_constitution(&rego, self.registry.limit)?;
                }
                self.registry.members.insert(MemberId::of(&member), member);
                Applied {
                    proposal: None,
                    state: None,
                }
            }
            GovBody::Propose { actions } => self.decide(
                Proposal {
                    id,
                    proposer: request.signer.clone(),
                    actions,
                    ballots: BTreeMap::new(),
                    state: ProposalState::Open,
                    seq,
                },
                request.ts,
            )?,
            GovBody::Ballot { proposal, vote } => {
                let mut proposal = self
                    .proposals
                    .get(&proposal)
                    .cloned()
                    .ok_or_else(|| refused(format!("no proposal {proposal}")))?;
                proposal.ballots.insert(request.signer.clone(), vote);
                self.decide(proposal, request.ts)?
            }
        };
        // A request older than this one by twice the allowed skew can no longer pass the time
        // check, so its nonce need not be remembered.
        self.spend(&request.signer, &request.nonce, request.ts);
        Ok(applied)
    }

    /// Asks the constitution about `proposal` (new, or with a new ballot), applies its actions
    /// if accepted, and keeps it with its state. A constitution that fails to evaluate decides
    /// nothing (the proposal stays open); one that runs past its time limit refuses the
    /// request, and nothing changes. Actions applied are dated `at` (the deciding request's
    /// time).
    fn decide(&mut self, mut proposal: Proposal, at: i64) -> Result<Applied, GovError> {
        let input = json!({
            "proposal": {"id": proposal.id, "proposer": proposal.proposer, "actions": proposal.actions},
            "ballots": proposal.ballots,
            "members": self.registry.members.keys().collect::<Vec<_>>(),
            "datasets": self.registry.datasets,
            "contracts": self.registry.contracts,
        });
        let decision =
            match self
                .registry
                .constitution
                .eval_within(DECISION, &input, self.registry.limit)
            {
                Ok(decision) => decision,
                Err(e @ confide_policy::PolicyError::TimeLimit { .. }) => {
                    return Err(GovError::TooSlow(e));
                }
                Err(_) => Value::Null,
            };
        let state = match decision.as_str() {
            Some("accepted") => ProposalState::Accepted,
            Some("rejected") => ProposalState::Rejected,
            _ => ProposalState::Open,
        };
        // Consent is code: whatever the constitution decided, an action that grants or widens
        // access to a member's data waits for that member's own yes, and that member's no
        // rejects it.
        let consent = self.registry.consent(&proposal.actions, &proposal.ballots);
        let state = match (state, consent) {
            (_, Consent::Refused) => ProposalState::Rejected,
            (ProposalState::Accepted, Consent::Missing) => ProposalState::Open,
            (state, _) => state,
        };
        let state = if state == ProposalState::Accepted {
            // Actions were checked when proposed, but the state may have moved since: they are
            // applied all together or, if one no longer fits, not at all and the proposal
            // fails.
            let mut next = self.registry.clone();
            match next.apply_actions(&proposal.actions, at) {
                Ok(()) => {
                    self.registry = next;
                    ProposalState::Accepted
                }
                Err(_) => ProposalState::Rejected,
            }
        } else {
            state
        };
        proposal.state = state;
        let id = proposal.id.clone();
        self.proposals.insert(id.clone(), proposal);
        Ok(Applied {
            proposal: Some(id),
            state: Some(state),
        })
    }

    /// The members, by fingerprint.
    pub fn members(&self) -> &BTreeMap<MemberId, PublicIdentity> {
        &self.registry.members
    }

    /// The proposals, by id.
    pub fn proposals(&self) -> &BTreeMap<String, Proposal> {
        &self.proposals
    }

    /// The registered datasets, by id.
    pub fn datasets(&self) -> &BTreeMap<DatasetId, DatasetRecord> {
        &self.registry.datasets
    }

    /// The contracts, by id, with their state (approved or revoked).
    pub fn contracts(&self) -> &BTreeMap<ContractId, ContractRecord> {
        &self.registry.contracts
    }

    /// The trusted measurements.
    pub fn measurements(&self) -> &BTreeSet<Measurement> {
        &self.registry.measurements
    }

    /// Whether `fingerprint` is a member now. The key broker gives a removed member's keys
    /// and resources to no one: it could no longer revoke them.
    pub fn is_member(&self, fingerprint: &MemberId) -> bool {
        self.registry.members.contains_key(fingerprint)
    }

    /// The named policies (Rego text).
    pub fn policies(&self) -> &BTreeMap<String, String> {
        &self.registry.policies
    }

    /// The constitution's text.
    pub fn constitution(&self) -> &str {
        self.registry.constitution.source()
    }
}

/// Why governance lets a workload have no dataset key, or records no run of it. Each variant
/// names the rule; none carries a value of anyone's data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Denial {
    /// No contract of that id was approved.
    #[error(
        "no approved contract {contract} on the ledger: a contract runs only once every owner \
         of its datasets has approved it"
    )]
    NoContract {
        /// The contract asked for.
        contract: ContractId,
    },
    /// The contract was revoked.
    #[error("contract {contract} is revoked: it releases no more keys and records no more runs")]
    Revoked {
        /// The contract.
        contract: ContractId,
    },
    /// The key is not the key of any dataset the contract reads.
    #[error("contract {contract} does not name the dataset of key {key}")]
    KeyNotInContract {
        /// The contract.
        contract: ContractId,
        /// The key asked for.
        key: String,
    },
    /// The key is not the dataset owner's own (or not at the key broker at all).
    #[error("key {key} belongs to another member than the owner of dataset {dataset}")]
    KeyNotOwners {
        /// The key.
        key: String,
        /// The dataset whose record names it.
        dataset: DatasetId,
    },
    /// None of the workload's measurements is one the contract allows.
    #[error("the workload's measurement ({}) is not one contract {contract} allows", shown(.presented))]
    MeasurementNotAllowed {
        /// The contract.
        contract: ContractId,
        /// What the workload's token carries.
        presented: Vec<Measurement>,
    },
    /// The run read other datasets than the contract's.
    #[error("the run's inputs ({}) are not contract {contract}'s datasets ({})", listed(.read), listed(.named))]
    InputsNotTheContracts {
        /// The contract.
        contract: ContractId,
        /// What the run says it read.
        read: Vec<DatasetId>,
        /// What the contract reads.
        named: Vec<DatasetId>,
    },
    /// The run read a dataset whose digest is not one of its versions' on the ledger, or one
    /// twice.
    #[error(
        "the run's digests of dataset {dataset} are not those of its versions on the ledger, \
         each once"
    )]
    DigestNotRegistered {
        /// The dataset.
        dataset: DatasetId,
    },
    /// The run checked its result against another difference-check history than its
    /// dataset's latest, or against none of a dataset its contract does not read.
    #[error(
        "the run's difference check of dataset {dataset} did not start from the latest history \
         on the ledger (another run recorded first, or the history is not this contract's to \
         write): nothing of it is recorded; run it again"
    )]
    HistoryNotLatest {
        /// The dataset.
        dataset: DatasetId,
    },
    /// The run's output goes to others than the contract's recipients.
    #[error("the run's output is not for contract {contract}'s recipients")]
    RecipientsNotTheContracts {
        /// The contract.
        contract: ContractId,
    },
    /// The run's output was not held to the contract's analysis rule.
    #[error("the run's output was not held to contract {contract}'s analysis rule")]
    RuleNotTheContracts {
        /// The contract.
        contract: ContractId,
    },
    /// Releasing the key would spend more than the dataset's privacy budget for the period.
    #[error(
        "dataset {dataset} has spent ε {spent} of its privacy budget of ε {} per {} days: a run of ε \
         {asked} would pass it (its owner may raise it, by a decision of its own)",
        .budget.epsilon, .budget.period_days
    )]
    BudgetSpent {
        /// The dataset.
        dataset: DatasetId,
        /// What its period has spent.
        spent: Epsilon,
        /// What the run would spend.
        asked: Epsilon,
        /// Its budget.
        budget: Budget,
    },
    /// A contract that adds no noise reads a dataset with a privacy budget.
    #[error(
        "dataset {dataset} has a privacy budget: contract {contract} adds no noise, so it \
         spends from no budget and runs over it not at all"
    )]
    NoNoise {
        /// The contract.
        contract: ContractId,
        /// The dataset.
        dataset: DatasetId,
    },
    /// The run read a dataset whose key the broker never released to this workload.
    #[error("the key of dataset {dataset} was never released to this workload")]
    KeyNotReleased {
        /// The dataset.
        dataset: DatasetId,
    },
}

impl Denial {
    /// The rule broken, as a stable name: the RFC 7807 problem type the server answers with,
    /// and the `rule` of the denial's audit event.
    pub fn rule(&self) -> &'static str {
        match self {
            Self::NoContract { .. } => "no-approved-contract",
            Self::Revoked { .. } => "contract-revoked",
            Self::KeyNotInContract { .. } => "key-not-in-contract",
            Self::KeyNotOwners { .. } => "key-not-the-owners",
            Self::MeasurementNotAllowed { .. } => "measurement-not-allowed",
            Self::InputsNotTheContracts { .. } => "inputs-not-the-contracts",
            Self::DigestNotRegistered { .. } => "digest-not-registered",
            Self::HistoryNotLatest { .. } => "history-not-latest",
            Self::RecipientsNotTheContracts { .. } => "recipients-not-the-contracts",
            Self::RuleNotTheContracts { .. } => "rule-not-the-contracts",
            Self::KeyNotReleased { .. } => "key-not-released",
            Self::BudgetSpent { .. } => "privacy-budget-spent",
            Self::NoNoise { .. } => "budget-without-noise",
        }
    }
}

fn shown(presented: &[Measurement]) -> String {
    if presented.is_empty() {
        return "none".into();
    }
    let shown: Vec<String> = presented.iter().map(ToString::to_string).collect();
    shown.join(", ")
}

fn listed(ids: &[DatasetId]) -> String {
    let ids: Vec<&str> = ids.iter().map(DatasetId::as_str).collect();
    ids.join(", ")
}

impl Governance {
    /// May a workload whose token carries `presented` measurements have key `key` (held at the
    /// key broker by `key_owner`) to run contract `contract`? Only if the contract is approved
    /// and not revoked, reads a dataset whose record names that key, that dataset's owner holds
    /// the key, and the contract allows one of the measurements. The contract, if so.
    pub fn may_release(
        &self,
        key: &str,
        key_owner: Option<&MemberId>,
        contract: &ContractId,
        presented: &[Measurement],
    ) -> Result<&ContractRecord, Denial> {
        let record = self.runnable(contract, presented)?;
        let dataset = record
            .datasets
            .iter()
            .filter_map(|d| self.registry.datasets.get(d))
            .find(|d| d.key == key || d.history_key.as_deref() == Some(key))
            .ok_or_else(|| Denial::KeyNotInContract {
                contract: contract.clone(),
                key: key.to_owned(),
            })?;
        // A dataset registered over another member's key releases nothing.
        if key_owner != Some(&dataset.owner) {
            return Err(Denial::KeyNotOwners {
                key: key.to_owned(),
                dataset: dataset.id.clone(),
            });
        }
        if self.registry.budget_of(&dataset.id).is_some() && record.contract.output.noise.is_none()
        {
            return Err(Denial::NoNoise {
                contract: contract.clone(),
                dataset: dataset.id.clone(),
            });
        }
        Ok(record)
    }

    /// May key `key` be released for contract `contract` at time `at` without passing its
    /// dataset's budget? What [`Self::charge`] will enforce when the release is appended, asked
    /// before, so that a refusal is audited as a denial.
    pub fn may_spend(&self, key: &str, contract: &ContractId, at: i64) -> Result<(), Denial> {
        let Some(charge) = self.charge_of(key, contract, at) else {
            return Ok(());
        };
        let spent = self.spent.get(&charge.slot).copied().unwrap_or_default();
        match spent.checked_add(charge.epsilon) {
            Some(total) if total <= charge.budget.epsilon => Ok(()),
            _ => Err(Denial::BudgetSpent {
                dataset: charge.slot.0,
                spent,
                asked: charge.epsilon,
                budget: charge.budget,
            }),
        }
    }

    /// May a run of `contract` by a workload whose token carries `presented` measurements, which
    /// ended in `outcome`, be recorded? Only if the contract still runs and allows one of the
    /// measurements, the key of each of its datasets went to this workload (`released(key)`:
    /// a workload that ran another contract reports nothing of this one, not even a refusal),
    /// and a released result read exactly the contract's datasets with the registered digests
    /// and went to exactly the contract's recipients.
    pub fn may_record(
        &self,
        contract: &ContractId,
        presented: &[Measurement],
        outcome: &confide_model::RunOutcome,
        released: impl Fn(&str) -> bool,
    ) -> Result<&ContractRecord, Denial> {
        let record = self.runnable(contract, presented)?;
        if let confide_model::RunOutcome::Released { inputs, output } = outcome {
            self.released_as_named(record, inputs, output)?;
        }
        if let Some(d) = record.datasets.iter().find(|d| {
            let key = self.registry.datasets.get(*d).map(|r| r.key.as_str());
            !key.is_some_and(&released)
        }) {
            return Err(Denial::KeyNotReleased { dataset: d.clone() });
        }
        Ok(record)
    }

    /// A released result read exactly the contract's datasets, with their registered digests,
    /// and went to exactly its recipients.
    fn released_as_named(
        &self,
        record: &ContractRecord,
        inputs: &[confide_model::RunInput],
        output: &confide_model::RunOutput,
    ) -> Result<(), Denial> {
        let contract = &record.id;
        let mut read: Vec<DatasetId> = inputs.iter().map(|i| i.dataset.clone()).collect();
        read.sort_unstable();
        read.dedup();
        if read != record.datasets {
            return Err(Denial::InputsNotTheContracts {
                contract: contract.clone(),
                read,
                named: record.datasets.clone(),
            });
        }
        let mut digests = BTreeSet::new();
        for input in inputs {
            let registered = self
                .versions(&input.dataset)
                .iter()
                .any(|v| v.version.digest == input.digest);
            if !registered || !digests.insert((&input.dataset, &input.digest)) {
                return Err(Denial::DigestNotRegistered {
                    dataset: input.dataset.clone(),
                });
            }
        }
        if let Some(step) = output
            .history
            .iter()
            .find(|s| !record.datasets.contains(&s.dataset) || !self.follows(s))
        {
            return Err(Denial::HistoryNotLatest {
                dataset: step.dataset.clone(),
            });
        }
        if output.recipients != record.contract.recipients {
            return Err(Denial::RecipientsNotTheContracts {
                contract: contract.clone(),
            });
        }
        if output.rule.is_none()
            || output.rule != record.contract.output.rule
            || output.epsilon != record.contract.output.noise.map(|n| n.epsilon)
        {
            return Err(Denial::RuleNotTheContracts {
                contract: contract.clone(),
            });
        }
        Ok(())
    }

    /// The contract, if it is approved, not revoked, and allows one of `presented`.
    fn runnable(
        &self,
        contract: &ContractId,
        presented: &[Measurement],
    ) -> Result<&ContractRecord, Denial> {
        let record = self
            .registry
            .contracts
            .get(contract)
            .ok_or_else(|| Denial::NoContract {
                contract: contract.clone(),
            })?;
        if record.state != ContractState::Approved {
            return Err(Denial::Revoked {
                contract: contract.clone(),
            });
        }
        if !presented
            .iter()
            .any(|m| record.contract.measurements.contains(m))
        {
            return Err(Denial::MeasurementNotAllowed {
                contract: contract.clone(),
                presented: presented.to_vec(),
            });
        }
        Ok(record)
    }
}

/// What one key release spends: ε of a dataset's budget in a period.
struct Charge {
    /// The dataset, and the period's number.
    slot: (DatasetId, i64),
    epsilon: Epsilon,
    budget: Budget,
}

/// Where the consent of the members whose data a proposal touches stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Consent {
    /// Every one of them voted yes (or the proposal touches no one's data).
    Given,
    /// Someone whose consent it needs has not voted yes yet.
    Missing,
    /// Someone whose consent it needs voted no.
    Refused,
}

impl Registry {
    /// The members whose own approval `actions` need, whatever the constitution says: the
    /// owners of the datasets a contract reads; the owner a dataset is registered to; every
    /// owner of a registered dataset for a change of policy or a newly trusted measurement
    /// (either can widen which workloads get keys); every member for a new constitution.
    /// Narrowing actions (revoking a contract, removing a measurement) need no one's consent.
    fn consenters(&self, actions: &[Action]) -> BTreeSet<MemberId> {
        let owner_of = |d: &DatasetId| self.datasets.get(d).map(|r| r.owner.clone());
        let mut needed = BTreeSet::new();
        for a in actions {
            match a {
                Action::ApproveContract(approval) => {
                    needed.extend(approval.datasets.iter().filter_map(owner_of));
                }
                Action::RegisterDataset(record) => {
                    needed.insert(record.owner.clone());
                }
                // Every owner whose budget a proposal sets: unanimous, however many.
                Action::SetBudget { dataset, .. } => needed.extend(owner_of(dataset)),
                Action::AppendDataset { dataset, .. } => needed.extend(owner_of(dataset)),
                // A removed owner's data goes to no one, so its consent is not asked (it could
                // not vote).
                Action::SetPolicy { .. } | Action::AddMeasurement(_) => needed.extend(
                    self.datasets
                        .values()
                        .filter(|r| self.members.contains_key(&r.owner))
                        .map(|r| r.owner.clone()),
                ),
                Action::SetConstitution { .. } => needed.extend(self.members.keys().cloned()),
                Action::AddMember { .. }
                | Action::RemoveMember { .. }
                | Action::RemoveMeasurement(_)
                | Action::RevokeContract { .. } => {}
            }
        }
        needed
    }

    fn consent(&self, actions: &[Action], ballots: &BTreeMap<MemberId, bool>) -> Consent {
        let needed = self.consenters(actions);
        if needed.iter().any(|m| ballots.get(m) == Some(&false)) {
            Consent::Refused
        } else if needed.iter().all(|m| ballots.get(m) == Some(&true)) {
            Consent::Given
        } else {
            Consent::Missing
        }
    }

    /// Checks that action `a` fits the current state (after [`Action::check`], which checks
    /// it on its own).
    fn check_action(&self, a: &Action) -> Result<(), GovError> {
        a.check()
            .map_err(|e| malformed(format!("{}: {e}", a.name())))?;
        match a {
            Action::AddMember { member } => {
                if self.members.contains_key(&MemberId::of(member)) {
                    return Err(refused("already a member"));
                }
            }
            Action::RemoveMember { fingerprint } => {
                if !self.members.contains_key(fingerprint) {
                    return Err(refused(format!("no member {fingerprint}")));
                }
                if self.members.len() == 1 {
                    return Err(refused("the last member cannot be removed"));
                }
            }
            Action::SetConstitution { rego } => {
                compile_constitution(rego, self.limit)?;
            }
            Action::SetPolicy { rego, .. } => {
                Policy::new("policy.rego", rego).map_err(|e| malformed(e.to_string()))?;
            }
            Action::AddMeasurement(_) | Action::RemoveMeasurement(_) => {}
            Action::RegisterDataset(record) => {
                if self.datasets.contains_key(&record.id) {
                    return Err(refused(format!(
                        "dataset {} is already registered",
                        record.id
                    )));
                }
                if !self.members.contains_key(&record.owner) {
                    return Err(refused(format!(
                        "dataset owner {} is not a member",
                        record.owner
                    )));
                }
                // One key, one dataset (the key broker finds a contract's dataset by its key)
                // holds already: a dataset's key is named for it (`DatasetRecord::check`).
            }
            Action::AppendDataset { dataset, version } => {
                let Some(record) = self.datasets.get(dataset) else {
                    return Err(refused(format!("no dataset {dataset}")));
                };
                if !self.members.contains_key(&record.owner) {
                    return Err(refused(format!(
                        "dataset {dataset}'s owner {} is no longer a member",
                        record.owner
                    )));
                }
                if record.public_key.is_none() {
                    return Err(refused(format!(
                        "dataset {dataset} was registered without its key's public half, so no \
                         batch can be encrypted to its key: publish it again to append to it"
                    )));
                }
                let versions = self.versions.get(dataset).map_or(&[][..], Vec::as_slice);
                if let Some(v) = versions.iter().find(|v| {
                    v.version.digest == version.digest || v.version.location == version.location
                }) {
                    return Err(refused(format!(
                        "dataset {dataset}'s version {} has this digest or location already",
                        v.number
                    )));
                }
            }
            Action::ApproveContract(approval) => {
                if self.contracts.contains_key(&approval.id) {
                    return Err(refused(format!(
                        "contract {} exists; a changed contract is a new contract",
                        approval.id
                    )));
                }
                for d in &approval.datasets {
                    let Some(record) = self.datasets.get(d) else {
                        return Err(refused(format!("no dataset {d}")));
                    };
                    if !self.members.contains_key(&record.owner) {
                        return Err(refused(format!(
                            "dataset {d}'s owner {} is no longer a member: its data goes into \
                             no new contract",
                            record.owner
                        )));
                    }
                }
                if let Some(r) = approval
                    .contract
                    .recipients
                    .iter()
                    .find(|r| !self.members.contains_key(*r))
                {
                    return Err(refused(format!("recipient {r} is not a member")));
                }
            }
            Action::RevokeContract { id } => {
                if self.contracts.get(id).map(|c| c.state) != Some(ContractState::Approved) {
                    return Err(refused(format!("no approved contract {id}")));
                }
            }
            Action::SetBudget { dataset, budget } => {
                if !self.datasets.contains_key(dataset) {
                    return Err(refused(format!("no dataset {dataset}")));
                }
                // What was spent is kept per period of the budget's length: a new length would
                // start every dataset afresh.
                if let Some(old) = self.budget_of(dataset)
                    && old.period_days != budget.period_days
                {
                    return Err(refused(format!(
                        "dataset {dataset}'s budget is per {} days: its ε may change, its period \
                         may not (what was spent is counted per period)",
                        old.period_days
                    )));
                }
            }
        }
        if let Action::ApproveContract(approval) = a
            && approval.contract.output.noise.is_none()
            && let Some(d) = approval
                .datasets
                .iter()
                .find(|d| self.budget_of(d).is_some())
        {
            return Err(refused(format!(
                "dataset {d} has a privacy budget: a contract over it must add noise \
                 (output.noise), which spends from it"
            )));
        }
        // Noise spends from budgets: over a dataset that names individuals and has none, it
        // would bound nothing across runs, and its results are not held by the difference
        // checks either.
        if let Action::ApproveContract(approval) = a
            && approval.contract.output.noise.is_some()
            && let Some(d) = approval.datasets.iter().find(|d| {
                self.budget_of(d).is_none()
                    && self
                        .datasets
                        .get(*d)
                        .and_then(|r| r.privacy.as_ref())
                        .is_some_and(|p| !p.identity.is_empty())
            })
        {
            return Err(refused(format!(
                "dataset {d} names individuals and has no privacy budget: noise over it would \
                 bound nothing across runs (its owner sets a budget, or the contract adds no \
                 noise and its results are held by the difference checks)"
            )));
        }
        Ok(())
    }

    /// The budget of dataset `d`: the one last set, or the one it was registered with.
    fn budget_of(&self, d: &DatasetId) -> Option<Budget> {
        self.budgets.get(d).copied().or_else(|| {
            self.datasets
                .get(d)
                .and_then(|r| r.privacy.as_ref())
                .and_then(|p| p.budget)
        })
    }

    /// Checks and applies `actions` in order; on error the state is left part-way, so call it
    /// on a copy.
    fn apply_actions(&mut self, actions: &[Action], at: i64) -> Result<(), GovError> {
        for a in actions {
            self.check_action(a)?;
            self.apply_action(a, at)?;
        }
        Ok(())
    }

    fn apply_action(&mut self, a: &Action, at: i64) -> Result<(), GovError> {
        match a {
            Action::AddMember { member } => {
                self.members.insert(MemberId::of(member), member.clone());
            }
            Action::RemoveMember { fingerprint } => {
                self.members.remove(fingerprint);
                // A removed member can no longer revoke anything, so no contract over its data
                // goes on running without it: each is revoked with its removal (and stays so,
                // whether or not the member is added again). The key broker gives none of its
                // keys and resources out either ([`Governance::is_member`]).
                let orphaned: BTreeSet<&DatasetId> = self
                    .datasets
                    .values()
                    .filter(|d| &d.owner == fingerprint)
                    .map(|d| &d.id)
                    .collect();
                // Nor does a result go on to a member who left.
                for c in self.contracts.values_mut() {
                    if c.datasets.iter().any(|d| orphaned.contains(d))
                        || c.contract.recipients.contains(fingerprint)
                    {
                        c.state = ContractState::Revoked;
                    }
                }
            }
            Action::SetConstitution { rego } => {
                self.constitution = compile_constitution(rego, self.limit)?;
            }
            Action::SetPolicy { name, rego } => {
                self.policies.insert(name.clone(), rego.clone());
            }
            Action::AddMeasurement(m) => {
                self.measurements.insert(m.clone());
            }
            Action::RemoveMeasurement(m) => {
                self.measurements.remove(m);
            }
            Action::RegisterDataset(record) => {
                self.datasets.insert(record.id.clone(), record.clone());
                let first = confide_model::Version {
                    rows: record.rows,
                    size: record.size,
                    digest: record.digest.clone(),
                    location: record.location.clone(),
                };
                self.versions.insert(
                    record.id.clone(),
                    vec![DatasetVersion {
                        number: 1,
                        at,
                        version: first,
                    }],
                );
            }
            Action::AppendDataset { dataset, version } => {
                let versions = self.versions.entry(dataset.clone()).or_default();
                // Dated no earlier than the version before: the request's time is its
                // signer's, within the allowed skew, and a window must not see a later
                // version before an earlier one.
                let at = versions.last().map_or(at, |v| v.at.max(at));
                versions.push(DatasetVersion {
                    number: versions.len() as u64 + 1,
                    at,
                    version: version.clone(),
                });
            }
            Action::ApproveContract(approval) => {
                self.contracts.insert(
                    approval.id.clone(),
                    ContractRecord::approved(approval.clone()),
                );
            }
            Action::RevokeContract { id } => {
                if let Some(c) = self.contracts.get_mut(id) {
                    c.state = ContractState::Revoked;
                }
            }
            Action::SetBudget { dataset, budget } => {
                self.budgets.insert(dataset.clone(), *budget);
            }
        }
        Ok(())
    }
}

/// A signed request, parsed but not yet checked against the consortium.
struct Signed {
    sign1: Sign1,
    kid: MemberId,
    ts: i64,
    nonce: Vec<u8>,
    payload: Vec<u8>,
}

/// Parses a member-signed request: canonical COSE_Sign1, ES256, a 32-byte kid, the
/// `confide.gov` header with time and nonce, a JSON payload.
fn parse_signed(cose: &[u8]) -> Result<Signed, GovError> {
    let sign1 = Sign1::parse(cose).map_err(|e| malformed(e.to_string()))?;
    if sign1.to_bytes() != cose {
        return Err(malformed("not in canonical encoding"));
    }
    if sign1.alg() != Some(cose::ES256) {
        return Err(malformed("algorithm is not ES256"));
    }
    let kid = match cose::get(&sign1.protected_map, cose::KID) {
        Some(Cbor::Bytes(k)) => <&[u8; 32]>::try_from(k.as_slice())
            .map(MemberId::from_bytes)
            .map_err(|_| malformed("no 32-byte kid (the signer's fingerprint)"))?,
        _ => return Err(malformed("no 32-byte kid (the signer's fingerprint)")),
    };
    let gov = sign1
        .protected_map
        .iter()
        .find(|(k, _)| k.as_text() == Some(GOV_LABEL))
        .and_then(|(_, v)| v.as_map())
        .ok_or_else(|| malformed("no confide.gov header"))?;
    if !cose::unique_labels(gov.iter().map(|(k, _)| k)) {
        return Err(malformed("a field of the confide.gov header appears twice"));
    }
    let field = |name: &str| {
        gov.iter()
            .find(|(k, _)| k.as_text() == Some(name))
            .map(|(_, v)| v)
    };
    let ts = field("ts")
        .and_then(Cbor::as_integer)
        .and_then(|i| i64::try_from(i).ok())
        .ok_or_else(|| malformed("no timestamp"))?;
    let nonce = match field("nonce") {
        Some(Cbor::Bytes(n)) if (8..=64).contains(&n.len()) => n.clone(),
        _ => return Err(malformed("no nonce of 8 to 64 bytes")),
    };
    let payload = sign1
        .payload
        .clone()
        .ok_or_else(|| malformed("no payload"))?;
    Ok(Signed {
        sign1,
        kid,
        ts,
        nonce,
        payload,
    })
}

/// Compiles a constitution, which must decide something for an empty proposal (within
/// `limit`).
fn compile_constitution(
    text: &str,
    limit: Option<std::time::Duration>,
) -> Result<Policy, GovError> {
    let policy = Policy::new("constitution.rego", text).map_err(|e| malformed(e.to_string()))?;
    let empty = json!({"proposal": {"actions": []}, "ballots": {}, "members": [], "datasets": {}, "contracts": {}});
    policy
        .eval_within(DECISION, &empty, limit)
        .map_err(|e| match e {
            confide_policy::PolicyError::TimeLimit { .. } => GovError::TooSlow(e),
            e => malformed(format!("the constitution does not evaluate: {e}")),
        })?;
    Ok(policy)
}

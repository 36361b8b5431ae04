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

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use ciborium::value::Value as Cbor;
use confide_crypto::digest::sha256;
use confide_crypto::signing::SigningKey;
use confide_identity::PublicIdentity;
use confide_policy::Policy;
use serde_json::{Value, json};

use crate::cose::{self, Sign1};

/// The constitution a consortium starts with.
pub const DEFAULT_CONSTITUTION: &str = include_str!("constitution.rego");
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
    /// The signer's identity fingerprint (hex).
    pub signer: String,
    /// Its timestamp.
    pub ts: i64,
    nonce: Vec<u8>,
    body: Value,
    /// The request as signed; what goes on the ledger.
    pub cose: Vec<u8>,
}

impl Request {
    /// The id of a proposal: SHA-256 of its COSE bytes, hex.
    pub fn id(&self) -> String {
        hex::encode(sha256(&self.cose))
    }
}

/// Signs a governance request with a member's key. `body` must carry `"type"`.
pub fn sign_request(
    key: &SigningKey,
    fingerprint_hex: &str,
    body: &Value,
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

/// A member's authenticated request to another service.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The member's fingerprint (hex).
    pub signer: String,
    /// The request's time.
    pub ts: i64,
    /// Its nonce, to remember against replays.
    pub nonce: Vec<u8>,
    /// Its JSON body.
    pub body: Value,
}

/// Where a proposal stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProposalState {
    /// Waiting for ballots.
    Open,
    /// Accepted and applied.
    Accepted,
    /// Rejected; nothing applied.
    Rejected,
}

/// A proposal and its ballots.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Proposal {
    /// SHA-256 of the proposal request, hex.
    pub id: String,
    /// The proposing member's fingerprint.
    pub proposer: String,
    /// The actions proposed.
    pub actions: Vec<Value>,
    /// Each member's vote.
    pub ballots: BTreeMap<String, bool>,
    /// Where it stands.
    pub state: ProposalState,
    /// The ledger position of the proposal.
    pub seq: u64,
}

/// The consortium's state, derived from the ledger.
#[derive(Debug, Clone)]
pub struct Governance {
    registry: Registry,
    proposals: BTreeMap<String, Proposal>,
    /// Nonces seen, by signer, with their request's time; pruned once a request that old could
    /// no longer pass the time check anyway.
    nonces: BTreeMap<(String, Vec<u8>), i64>,
}

/// What accepted actions change: members, rules, reference values, datasets and contracts.
/// Small, so that a proposal's actions can be tried on a copy.
#[derive(Debug, Clone)]
struct Registry {
    members: BTreeMap<String, PublicIdentity>,
    constitution: Policy,
    policies: BTreeMap<String, String>,
    measurements: BTreeSet<(String, String)>,
    datasets: BTreeMap<String, Value>,
    contracts: BTreeMap<String, Value>,
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
                limit: Some(confide_policy::TIME_LIMIT),
            },
            proposals: BTreeMap::new(),
            nonces: BTreeMap::new(),
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
        let payload = signed.sign1.payload.as_deref().unwrap_or_default();
        member
            .signing_key()
            .verify(
                &cose::sig_structure(&signed.sign1.protected, payload),
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
            body: signed.body,
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
            body,
        } = parse_signed(cose)?;
        let payload = sign1.payload.as_deref().unwrap_or_default();
        let kind = match body.get("type").and_then(Value::as_str) {
            Some("found") => Kind::Found,
            Some("propose") => Kind::Propose,
            Some("ballot") => Kind::Ballot,
            other => return Err(malformed(format!("unknown request type {other:?}"))),
        };
        // The signer: a member, or for `found` the identity being founded.
        let signer =
            if kind == Kind::Found {
                if !self.registry.members.is_empty() {
                    return Err(refused("the consortium is already founded"));
                }
                let member = identity(body.get("member"))?;
                if member.fingerprint().to_hex() != kid {
                    return Err(GovError::NotAMember(
                        "the founding request's kid is not the founder's fingerprint".into(),
                    ));
                }
                member
            } else {
                self.registry.members.get(&kid).cloned().ok_or_else(|| {
                    GovError::NotAMember(format!("no member has fingerprint {kid}"))
                })?
            };
        signer
            .signing_key()
            .verify(
                &cose::sig_structure(&sign1.protected, payload),
                &sign1.signature,
            )
            .map_err(|_| GovError::BadSignature)?;
        if self.nonces.contains_key(&(kid.clone(), nonce.clone())) {
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
        match kind {
            Kind::Found => {
                if let Some(rego) = request.body.get("constitution") {
                    compile_constitution(rego, self.registry.limit)?;
                }
            }
            Kind::Propose => {
                let actions = request
                    .body
                    .get("actions")
                    .and_then(Value::as_array)
                    .filter(|a| !a.is_empty())
                    .ok_or_else(|| malformed("a proposal needs a non-empty list of actions"))?;
                self.registry.clone().apply_actions(actions)?;
            }
            Kind::Ballot => {
                let id = request
                    .body
                    .get("proposal")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
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
                if !request.body.get("vote").is_some_and(Value::is_boolean) {
                    return Err(malformed("a ballot's vote is true or false"));
                }
            }
        }
        Ok(request)
    }

    /// Applies a checked request that is now at ledger position `seq`. Everything that can
    /// fail is done first, so that a refused request changes nothing.
    pub fn apply(&mut self, request: Request, seq: u64) -> Result<Applied, GovError> {
        let applied = match request.kind {
            Kind::Found => {
                let member = identity(request.body.get("member"))?;
                if let Some(rego) = request.body.get("constitution") {
                    self.registry.constitution = compile_constitution(rego, self.registry.limit)?;
                }
                self.registry
                    .members
                    .insert(member.fingerprint().to_hex(), member);
                Applied {
                    proposal: None,
                    state: None,
                }
            }
            Kind::Propose => {
                let id = request.id();
                let actions = request
                    .body
                    .get("actions")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let proposal = Proposal {
                    id: id.clone(),
                    proposer: request.signer.clone(),
                    actions,
                    ballots: BTreeMap::new(),
                    state: ProposalState::Open,
                    seq,
                };
                self.decide(proposal)?
            }
            Kind::Ballot => {
                let id = request
                    .body
                    .get("proposal")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let mut proposal = self
                    .proposals
                    .get(id)
                    .cloned()
                    .ok_or_else(|| refused(format!("no proposal {id}")))?;
                let vote = request.body.get("vote").and_then(Value::as_bool) == Some(true);
                proposal.ballots.insert(request.signer.clone(), vote);
                self.decide(proposal)?
            }
        };
        // A request older than this one by twice the allowed skew can no longer pass the time
        // check, so its nonce need not be remembered.
        let horizon = request.ts - 2 * MAX_SKEW;
        self.nonces.retain(|_, ts| *ts >= horizon);
        self.nonces
            .insert((request.signer, request.nonce), request.ts);
        Ok(applied)
    }

    /// Asks the constitution about `proposal` (new, or with a new ballot), applies its actions
    /// if accepted, and keeps it with its state. A constitution that fails to evaluate decides
    /// nothing (the proposal stays open); one that runs past its time limit refuses the
    /// request, and nothing changes.
    fn decide(&mut self, mut proposal: Proposal) -> Result<Applied, GovError> {
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
            match next.apply_actions(&proposal.actions) {
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
    pub fn members(&self) -> &BTreeMap<String, PublicIdentity> {
        &self.registry.members
    }

    /// The proposals, by id.
    pub fn proposals(&self) -> &BTreeMap<String, Proposal> {
        &self.proposals
    }

    /// The registered datasets, by id.
    pub fn datasets(&self) -> &BTreeMap<String, Value> {
        &self.registry.datasets
    }

    /// The contracts, by id, with their state (`approved`, `revoked`).
    pub fn contracts(&self) -> &BTreeMap<String, Value> {
        &self.registry.contracts
    }

    /// The trusted measurements, as (TEE kind, hex value).
    pub fn measurements(&self) -> &BTreeSet<(String, String)> {
        &self.registry.measurements
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
    fn consenters(&self, actions: &[Value]) -> BTreeSet<String> {
        let owner_of = |d: &Value| {
            d.as_str()
                .and_then(|d| self.datasets.get(d))
                .and_then(|r| r.get("owner"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let mut needed = BTreeSet::new();
        for a in actions {
            match a.get("action").and_then(Value::as_str) {
                Some("approve_contract") => needed.extend(
                    a.get("datasets")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(owner_of),
                ),
                Some("register_dataset") => {
                    needed.extend(a.get("owner").and_then(Value::as_str).map(str::to_owned));
                }
                Some("set_policy") | Some("add_measurement") => {
                    needed.extend(
                        self.datasets.values().filter_map(|r| {
                            r.get("owner").and_then(Value::as_str).map(str::to_owned)
                        }),
                    );
                }
                Some("set_constitution") => needed.extend(self.members.keys().cloned()),
                _ => {}
            }
        }
        needed
    }

    fn consent(&self, actions: &[Value], ballots: &BTreeMap<String, bool>) -> Consent {
        let needed = self.consenters(actions);
        if needed.iter().any(|m| ballots.get(m) == Some(&false)) {
            Consent::Refused
        } else if needed.iter().all(|m| ballots.get(m) == Some(&true)) {
            Consent::Given
        } else {
            Consent::Missing
        }
    }

    fn check_action(&self, a: &Value) -> Result<(), GovError> {
        let s = |name: &str| a.get(name).and_then(Value::as_str);
        let need =
            |name: &str| s(name).ok_or_else(|| malformed(format!("action needs \"{name}\"")));
        match s("action") {
            Some("add_member") => {
                let m = identity(a.get("member"))?;
                if self.members.contains_key(&m.fingerprint().to_hex()) {
                    return Err(refused("already a member"));
                }
            }
            Some("remove_member") => {
                let fp = need("fingerprint")?;
                if !self.members.contains_key(fp) {
                    return Err(refused(format!("no member {fp}")));
                }
                if self.members.len() == 1 {
                    return Err(refused("the last member cannot be removed"));
                }
            }
            Some("set_constitution") => {
                compile_constitution(a.get("rego").unwrap_or(&Value::Null), self.limit)?;
            }
            Some("set_policy") => {
                need("name")?;
                Policy::new("policy.rego", need("rego")?).map_err(|e| malformed(e.to_string()))?;
            }
            Some("add_measurement") => check_measurement(need("kind")?, need("value")?)?,
            Some("remove_measurement") => {
                need("kind")?;
                hex::decode(need("value")?)
                    .map_err(|_| malformed("measurement value is not hex"))?;
            }
            Some("register_dataset") => {
                let id = need("id")?;
                let owner = need("owner")?;
                if self.datasets.contains_key(id) {
                    return Err(refused(format!("dataset {id} is already registered")));
                }
                if !self.members.contains_key(owner) {
                    return Err(refused(format!("dataset owner {owner} is not a member")));
                }
            }
            Some("approve_contract") => {
                let id = need("id")?;
                if self.contracts.contains_key(id) {
                    return Err(refused(format!(
                        "contract {id} exists; a changed contract is a new contract"
                    )));
                }
                // The id is the digest of the terms, byte for byte (RFC 8785 canonical JSON).
                let terms = a.get("contract").filter(|c| c.is_object()).ok_or_else(|| {
                    malformed("a contract action carries its terms (\"contract\")")
                })?;
                let digest = hex::encode(confide_crypto::digest::sha256(
                    confide_crypto::jcs::canonical_json(terms).as_bytes(),
                ));
                if digest != id {
                    return Err(malformed(format!(
                        "the contract id {id} is not the digest of its terms ({digest})"
                    )));
                }
                for m in terms
                    .get("measurements")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let field = |f: &str| m.get(f).and_then(Value::as_str).unwrap_or_default();
                    check_measurement(field("kind"), field("value"))?;
                }
                let mut named: Vec<&str> = terms
                    .get("tables")
                    .and_then(Value::as_object)
                    .map(|t| t.values().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                named.sort_unstable();
                named.dedup();
                let datasets = a
                    .get("datasets")
                    .and_then(Value::as_array)
                    .filter(|d| !d.is_empty())
                    .ok_or_else(|| malformed("a contract names its datasets"))?;
                let listed: Vec<&str> = datasets.iter().filter_map(Value::as_str).collect();
                if listed != named {
                    return Err(malformed(
                        "the contract's datasets are not the sorted datasets of its tables",
                    ));
                }
                for d in datasets {
                    let d = d.as_str().unwrap_or_default();
                    if !self.datasets.contains_key(d) {
                        return Err(refused(format!("no dataset {d}")));
                    }
                }
            }
            Some("revoke_contract") => {
                let id = need("id")?;
                if self.contracts.get(id).and_then(|c| c.get("state")) != Some(&json!("approved")) {
                    return Err(refused(format!("no approved contract {id}")));
                }
            }
            other => return Err(malformed(format!("unknown action {other:?}"))),
        }
        Ok(())
    }

    /// Checks and applies `actions` in order; on error the state is left part-way, so call it
    /// on a copy.
    fn apply_actions(&mut self, actions: &[Value]) -> Result<(), GovError> {
        for a in actions {
            self.check_action(a)?;
            self.apply_action(a)?;
        }
        Ok(())
    }

    fn apply_action(&mut self, a: &Value) -> Result<(), GovError> {
        let s = |name: &str| {
            a.get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        match a.get("action").and_then(Value::as_str) {
            Some("add_member") => {
                let m = identity(a.get("member"))?;
                self.members.insert(m.fingerprint().to_hex(), m);
            }
            Some("remove_member") => {
                self.members.remove(&s("fingerprint"));
            }
            Some("set_constitution") => {
                self.constitution =
                    compile_constitution(a.get("rego").unwrap_or(&Value::Null), self.limit)?;
            }
            Some("set_policy") => {
                self.policies.insert(s("name"), s("rego"));
            }
            Some("add_measurement") => {
                self.measurements
                    .insert((s("kind"), s("value").to_lowercase()));
            }
            Some("remove_measurement") => {
                self.measurements
                    .remove(&(s("kind"), s("value").to_lowercase()));
            }
            Some("register_dataset") => {
                self.datasets.insert(s("id"), a.clone());
            }
            Some("approve_contract") => {
                let mut c = a.clone();
                if let Some(m) = c.as_object_mut() {
                    m.insert("state".into(), json!("approved"));
                }
                self.contracts.insert(s("id"), c);
            }
            Some("revoke_contract") => {
                if let Some(m) = self
                    .contracts
                    .get_mut(&s("id"))
                    .and_then(Value::as_object_mut)
                {
                    m.insert("state".into(), json!("revoked"));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// A signed request, parsed but not yet checked against the consortium.
struct Signed {
    sign1: Sign1,
    kid: String,
    ts: i64,
    nonce: Vec<u8>,
    body: Value,
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
        Some(Cbor::Bytes(k)) if k.len() == 32 => hex::encode(k),
        _ => return Err(malformed("no 32-byte kid (the signer's fingerprint)")),
    };
    let gov = sign1
        .protected_map
        .iter()
        .find(|(k, _)| k.as_text() == Some(GOV_LABEL))
        .and_then(|(_, v)| v.as_map())
        .ok_or_else(|| malformed("no confide.gov header"))?;
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
        .as_deref()
        .ok_or_else(|| malformed("no payload"))?;
    let body: Value =
        serde_json::from_slice(payload).map_err(|e| malformed(format!("JSON ({e})")))?;
    Ok(Signed {
        sign1,
        kid,
        ts,
        nonce,
        body,
    })
}

/// A measurement as a contract or the trusted set may name it: a TEE kind that measures its
/// code, and that kind's primary measurement as lowercase hex of its length.
fn check_measurement(kind: &str, value: &str) -> Result<(), GovError> {
    let (claim, len) = confide_attest::TeeKind::from_name(kind)
        .and_then(|k| k.primary_measurement())
        .ok_or_else(|| malformed(format!("{kind:?} is not a TEE kind that measures its code")))?;
    let hex_ok = value
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if value.len() != 2 * len || !hex_ok {
        return Err(malformed(format!(
            "measurement {kind}:{value:?}: its {claim} is {len} bytes of lowercase hex"
        )));
    }
    Ok(())
}

fn identity(value: Option<&Value>) -> Result<PublicIdentity, GovError> {
    let v = value.ok_or_else(|| malformed("no member identity"))?;
    PublicIdentity::from_json(v.to_string().as_bytes(), Path::new("request"))
        .map_err(|e| malformed(format!("member identity: {e}")))
}

/// Compiles a constitution, which must decide something for an empty proposal (within
/// `limit`).
fn compile_constitution(
    rego: &Value,
    limit: Option<std::time::Duration>,
) -> Result<Policy, GovError> {
    let text = rego
        .as_str()
        .ok_or_else(|| malformed("a constitution is Rego text"))?;
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

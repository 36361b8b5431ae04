//! Governance as members use it: found, propose, vote, with the default constitution; and the
//! requests that must be refused (a non-member's ballot, a replayed ballot, a proposal whose
//! signature does not match its body, a stale request), each changing nothing. Replaying the
//! accepted requests gives the same state.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use confide_gov::{GovError, Governance, ProposalState, sign_request};
use confide_identity::{Identity, MemberName};
use confide_model::{ContractId, ContractState, MemberId};
use serde_json::{Value, json};

const NOW: i64 = 1_795_500_000;

struct Member(Identity);

impl Member {
    fn new(name: &str) -> Self {
        Self(Identity::generate(MemberName::new(name).unwrap()).unwrap())
    }
    fn fp(&self) -> String {
        self.0.public().fingerprint().to_hex()
    }
    fn doc(&self) -> Value {
        serde_json::from_str(&self.0.public().to_json()).unwrap()
    }
    fn sign(&self, body: Value, nonce: u8) -> Vec<u8> {
        sign_request(self.0.signing_key(), &self.fp(), &body, NOW, &[nonce; 16]).unwrap()
    }
}

/// The governance state and every request it accepted, in order.
struct Consortium {
    gov: Governance,
    log: Vec<Vec<u8>>,
}

impl Consortium {
    fn submit(&mut self, cose: Vec<u8>) -> Result<Option<ProposalState>, GovError> {
        let request = self.gov.check(&cose, Some(NOW))?;
        self.log.push(cose);
        let applied = self.gov.apply(request, self.log.len() as u64 - 1)?;
        Ok(applied.state)
    }

    fn propose(&mut self, by: &Member, actions: Value, nonce: u8) -> String {
        let cose = by.sign(json!({"type": "propose", "actions": actions}), nonce);
        let id = hex::encode(confide_crypto::digest::sha256(&cose));
        self.submit(cose).unwrap();
        id
    }

    fn vote(
        &mut self,
        by: &Member,
        id: &str,
        vote: bool,
        nonce: u8,
    ) -> Result<Option<ProposalState>, GovError> {
        self.submit(by.sign(
            json!({"type": "ballot", "proposal": id, "vote": vote}),
            nonce,
        ))
    }

    /// The state every accepted request replays to, from nothing.
    fn replayed(&self) -> Governance {
        let mut replayed = Governance::new().unwrap();
        for (seq, cose) in self.log.iter().enumerate() {
            let request = replayed.check(cose, None).unwrap();
            replayed.apply(request, seq as u64).unwrap();
        }
        replayed
    }

    fn snapshot(&self) -> String {
        format!(
            "{:?}{:?}{:?}",
            self.gov.members().keys().collect::<Vec<_>>(),
            self.gov
                .proposals()
                .values()
                .map(|p| (&p.id, &p.ballots, p.state))
                .collect::<Vec<_>>(),
            self.gov.contracts()
        )
    }
}

/// The worst constitution a majority could hold: every proposal accepted at once.
const ANYTHING: &str = "package confide.constitution\nimport rego.v1\ndecision := \"accepted\"\n";

/// A consortium of `a`, `b` and `c` that `a` founded under [`ANYTHING`]. Consent is still the
/// owners'.
fn anything_goes(a: &Member, b: &Member, c: &Member) -> Consortium {
    let mut k = Consortium {
        gov: Governance::new().unwrap(),
        log: Vec::new(),
    };
    k.submit(a.sign(
        json!({"type": "found", "member": a.doc(), "constitution": ANYTHING}),
        0,
    ))
    .unwrap();
    for (m, n) in [(b, 1), (c, 2)] {
        k.propose(a, json!([{"action": "add_member", "member": m.doc()}]), n);
    }
    k
}

fn founded(a: &Member) -> Consortium {
    let mut c = Consortium {
        gov: Governance::new().unwrap(),
        log: Vec::new(),
    };
    c.submit(a.sign(json!({"type": "found", "member": a.doc()}), 0))
        .unwrap();
    c
}

#[test]
fn membership_needs_a_majority_and_data_needs_its_owners() {
    let (a, b, c) = (
        Member::new("bank-a"),
        Member::new("bank-b"),
        Member::new("bank-c"),
    );
    let mut k = founded(&a);

    let add_b = k.propose(&a, json!([{"action": "add_member", "member": b.doc()}]), 1);
    assert_eq!(
        k.vote(&a, &add_b, true, 2).unwrap(),
        Some(ProposalState::Accepted)
    );
    assert!(k.gov.members().contains_key(b.fp().as_str()));

    // Two members: one vote is not a majority.
    let add_c = k.propose(&b, json!([{"action": "add_member", "member": c.doc()}]), 3);
    assert_eq!(
        k.vote(&b, &add_c, true, 4).unwrap(),
        Some(ProposalState::Open)
    );
    assert_eq!(
        k.vote(&a, &add_c, true, 5).unwrap(),
        Some(ProposalState::Accepted)
    );
    assert_eq!(k.gov.members().len(), 3);

    // Each owner registers a dataset with their own approval.
    for (m, id, n) in [(&a, "tx-a", 6u8), (&b, "tx-b", 8)] {
        let p = k.propose(m, json!([dataset(id, m)]), n);
        assert_eq!(
            k.vote(m, &p, true, n + 1).unwrap(),
            Some(ProposalState::Accepted)
        );
    }

    // A contract over both datasets needs both owners; the third member's vote is not enough.
    let contract_action = |sql: &str| {
        let terms = terms(json!({"a": "tx-a", "b": "tx-b"}), sql, &c);
        let id = hex::encode(confide_crypto::digest::sha256(
            confide_crypto::jcs::canonical_json(&terms).as_bytes(),
        ));
        (
            id.clone(),
            json!([{"action": "approve_contract", "id": id, "datasets": ["tx-a", "tx-b"], "contract": terms}]),
        )
    };
    let (aml1, contract) = contract_action("select 1");
    // An id that is not the digest of the terms, or datasets that are not the tables': refused.
    let mut forged = contract.clone();
    forged[0]["id"] = json!("aml-1");
    let mut unlisted = contract.clone();
    unlisted[0]["datasets"] = json!(["tx-a"]);
    for (n, bad) in [(200, forged), (201, unlisted)] {
        let err = k
            .submit(c.sign(json!({"type": "propose", "actions": bad}), n))
            .unwrap_err();
        assert!(matches!(err, GovError::Malformed(_)), "{err}");
    }
    let p = k.propose(&c, contract.clone(), 10);
    assert_eq!(k.vote(&c, &p, true, 11).unwrap(), Some(ProposalState::Open));
    assert_eq!(k.vote(&a, &p, true, 12).unwrap(), Some(ProposalState::Open));
    assert_eq!(
        k.vote(&b, &p, true, 13).unwrap(),
        Some(ProposalState::Accepted)
    );
    assert_eq!(
        k.gov.contracts()[aml1.as_str()].state,
        ContractState::Approved
    );

    // A changed contract is a new contract; one owner's refusal rejects it.
    let (aml2, changed) = contract_action("select *");
    let p2 = k.propose(&c, changed, 14);
    assert_eq!(
        k.vote(&b, &p2, false, 15).unwrap(),
        Some(ProposalState::Rejected)
    );
    assert!(!k.gov.contracts().contains_key(aml2.as_str()));

    // Any one owner revokes.
    let r = k.propose(&b, json!([{"action": "revoke_contract", "id": aml1}]), 16);
    assert_eq!(
        k.vote(&b, &r, true, 17).unwrap(),
        Some(ProposalState::Accepted)
    );
    assert_eq!(
        k.gov.contracts()[aml1.as_str()].state,
        ContractState::Revoked
    );

    // Replaying what was accepted gives the same state.
    let replayed = k.replayed();
    let again = Consortium {
        gov: replayed,
        log: Vec::new(),
    };
    assert_eq!(again.snapshot(), k.snapshot());
}

#[test]
fn bad_requests_are_refused_and_change_nothing() {
    let (a, b, outsider) = (
        Member::new("bank-a"),
        Member::new("bank-b"),
        Member::new("mallory"),
    );
    let mut k = founded(&a);
    let add_b = k.propose(&a, json!([{"action": "add_member", "member": b.doc()}]), 1);
    let before = k.snapshot();

    // A ballot signed by someone who is not a member.
    let err = k.vote(&outsider, &add_b, true, 2).unwrap_err();
    assert!(matches!(err, GovError::NotAMember(_)), "{err}");
    assert_eq!(k.snapshot(), before);

    // A proposal whose signature does not match its body: the payload changed after signing.
    let mut forged = a.sign(
        json!({"type": "propose", "actions": [{"action": "add_member", "member": outsider.doc()}]}),
        3,
    );
    let at = forged.windows(7).position(|w| w == b"propose").unwrap();
    forged[at] = b'P';
    let err = k.submit(forged).unwrap_err();
    assert!(
        matches!(err, GovError::BadSignature | GovError::Malformed(_)),
        "{err}"
    );
    assert_eq!(k.snapshot(), before);

    // A replayed ballot: the same request twice, and the same nonce in a new request.
    let ballot = a.sign(
        json!({"type": "ballot", "proposal": add_b, "vote": false}),
        4,
    );
    let add_c = k.propose(
        &a,
        json!([{"action": "set_policy", "name": "p", "rego": "package p"}]),
        5,
    );
    k.submit(ballot.clone()).unwrap();
    let after_ballot = k.snapshot();
    assert_eq!(k.submit(ballot).unwrap_err(), GovError::Replay);
    let reused = a.sign(
        json!({"type": "ballot", "proposal": add_c, "vote": true}),
        4,
    );
    assert_eq!(k.submit(reused).unwrap_err(), GovError::Replay);
    assert_eq!(k.snapshot(), after_ballot);

    // A stale request.
    let stale = sign_request(
        a.0.signing_key(),
        &a.fp(),
        &json!({"type": "ballot", "proposal": add_c, "vote": true}),
        NOW - 3600,
        &[9; 16],
    )
    .unwrap();
    assert!(matches!(
        k.submit(stale).unwrap_err(),
        GovError::Stale { .. }
    ));

    // A second founding, an unknown action, a vote on an unknown proposal.
    assert!(
        k.submit(a.sign(json!({"type": "found", "member": a.doc()}), 10))
            .is_err()
    );
    let err = k
        .submit(a.sign(
            json!({"type": "propose", "actions": [{"action": "format_disk"}]}),
            11,
        ))
        .unwrap_err();
    assert!(
        matches!(&err, GovError::Malformed(m) if m.contains("unknown variant `format_disk`")),
        "{err}"
    );
    assert!(k.vote(&a, &"00".repeat(32), true, 12).is_err());
    assert_eq!(k.snapshot(), after_ballot);
}

/// A contract's terms over `tables`, to `to`.
fn terms(tables: Value, sql: &str, to: &Member) -> Value {
    json!({"tables": tables, "sql": sql,
           "measurements": [{"kind": "sim", "value": "00".repeat(48)}],
           "recipients": [to.fp()],
           "output": {"columns": ["n"], "rule": {"aggregation": {"min_identities": 2}},
                      "max_rows": 10, "on_violation": "refuse"}})
}

/// A `register_dataset` action for `owner`.
fn dataset(id: &str, owner: &Member) -> Value {
    json!({"action": "register_dataset", "id": id, "owner": owner.fp(), "name": id,
           "format": "csv", "schema": [{"name": "amount", "type": "Int64"}], "rows": 1,
           "size": 1, "digest": "00".repeat(32),
           "location": format!("datasets/{id}.cfd"), "key": format!("dataset-{id}")})
}

/// An `approve_contract` action over `datasets`.
fn contract(datasets: &[&str], to: &Member) -> Value {
    let tables: serde_json::Map<String, Value> = datasets
        .iter()
        .enumerate()
        .map(|(i, d)| (format!("t{i}"), json!(d)))
        .collect();
    let terms = terms(Value::Object(tables), "SELECT 1 AS n", to);
    let id = hex::encode(confide_crypto::digest::sha256(
        confide_crypto::jcs::canonical_json(&terms).as_bytes(),
    ));
    let mut sorted: Vec<&str> = datasets.to_vec();
    sorted.sort_unstable();
    json!({"action": "approve_contract", "id": id, "datasets": sorted, "contract": terms})
}

/// A consortium whose constitution accepts every proposal at once: the worst a majority could
/// install. Consent is still the owners'.
#[test]
fn no_constitution_overrules_an_owner() {
    let (a, b, c) = (
        Member::new("bank-a"),
        Member::new("bank-b"),
        Member::new("bank-c"),
    );
    let mut k = anything_goes(&a, &b, &c);
    assert_eq!(k.gov.members().len(), 3, "membership is the constitution's");

    // Another member registers c's data as c's: it waits for c, and c's no rejects it.
    let claim = k.propose(&a, json!([dataset("c-data", &c)]), 3);
    assert_eq!(k.gov.proposals()[&claim].state, ProposalState::Open);
    assert_eq!(
        k.vote(&c, &claim, false, 4).unwrap(),
        Some(ProposalState::Rejected)
    );
    assert!(k.gov.datasets().is_empty());
    let own = k.propose(&c, json!([dataset("c-data", &c)]), 5);
    assert_eq!(
        k.vote(&c, &own, true, 6).unwrap(),
        Some(ProposalState::Accepted)
    );
    let b_data = k.propose(&b, json!([dataset("b-data", &b)]), 7);
    k.vote(&b, &b_data, true, 8).unwrap();
    // A second dataset over a key another dataset has, or under a key not named for it:
    // refused when proposed.
    let mut same_key = dataset("b-data-2", &b);
    same_key["key"] = json!("dataset-b-data");
    let err = k
        .submit(b.sign(json!({"type": "propose", "actions": [same_key]}), 80))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("named for the dataset: dataset-b-data-2"),
        "{err}"
    );

    // A contract over c's data, proposed and voted for by the other two: open until c says yes.
    let take = contract(&["c-data", "b-data"], &a);
    let p = k.propose(&a, json!([take]), 9);
    k.vote(&a, &p, true, 10).unwrap();
    assert_eq!(k.vote(&b, &p, true, 11).unwrap(), Some(ProposalState::Open));
    assert!(k.gov.contracts().is_empty(), "a majority took c's data");

    // Widening who gets keys (a policy, a trusted measurement) waits for every owner; a new
    // constitution waits for every member.
    for (n, action) in [
        (
            12,
            json!({"action": "set_policy", "name": "appraisal", "rego": "package p"}),
        ),
        (
            13,
            json!({"action": "add_measurement", "kind": "sim", "value": "ab".repeat(48)}),
        ),
        (14, json!({"action": "set_constitution", "rego": ANYTHING})),
    ] {
        let p = k.propose(&a, json!([action]), n);
        assert_eq!(
            k.vote(&b, &p, true, n + 20).unwrap(),
            Some(ProposalState::Open),
            "{action}"
        );
        assert_eq!(
            k.vote(&c, &p, true, n + 40).unwrap(),
            if action["action"] == "set_constitution" {
                Some(ProposalState::Open)
            } else {
                Some(ProposalState::Accepted)
            },
            "{action}"
        );
    }

    // A measurement that names no code is refused when proposed, in the trusted set or in a
    // contract's terms.
    let mut empty = contract(&["b-data"], &a);
    empty["contract"]["measurements"] = json!([{"kind": "sim", "value": ""}]);
    empty["id"] = json!(hex::encode(confide_crypto::digest::sha256(
        confide_crypto::jcs::canonical_json(&empty["contract"]).as_bytes(),
    )));
    for (n, action) in [
        (
            60,
            json!({"action": "add_measurement", "kind": "sim", "value": ""}),
        ),
        (
            61,
            json!({"action": "add_measurement", "kind": "sample", "value": "00".repeat(48)}),
        ),
        (62, empty),
    ] {
        let err = k
            .submit(a.sign(json!({"type": "propose", "actions": [action]}), n))
            .unwrap_err();
        assert!(err.to_string().contains("measure"), "{err}");
    }

    // c's own yes is what approves the contract; the state replays to the same.
    assert_eq!(
        k.vote(&c, &p, true, 70).unwrap(),
        Some(ProposalState::Accepted)
    );
    assert_eq!(k.gov.contracts().len(), 1);
    let replayed = k.replayed();
    assert_eq!(replayed.contracts(), k.gov.contracts());
    assert_eq!(replayed.datasets(), k.gov.datasets());
}

/// The key broker's and the run log's decisions, as pure functions of the ledger's state: each
/// way a release or a run record can be wrong, and the rule that refuses it.
#[test]
fn releases_and_runs_are_decided_by_the_ledger() {
    use confide_gov::Denial;
    use confide_model::{Measurement, RunInput, RunOutcome, RunOutput};

    let (a, b) = (Member::new("bank-a"), Member::new("bank-b"));
    let mut k = founded(&a);
    let add_b = k.propose(&a, json!([{"action": "add_member", "member": b.doc()}]), 1);
    k.vote(&a, &add_b, true, 2).unwrap();
    for (m, id, n) in [(&a, "a-data", 3u8), (&b, "b-data", 5)] {
        let p = k.propose(m, json!([dataset(id, m)]), n);
        k.vote(m, &p, true, n + 1).unwrap();
    }
    let both = contract(&["a-data", "b-data"], &a);
    let only_a = contract(&["a-data"], &a);
    let (both_id, a_id): (ContractId, ContractId) = (
        both["id"].as_str().unwrap().parse().unwrap(),
        only_a["id"].as_str().unwrap().parse().unwrap(),
    );
    for (action, n) in [(both, 10), (only_a, 13)] {
        let p = k.propose(&a, json!([action]), n);
        k.vote(&b, &p, true, n + 1).unwrap();
        k.vote(&a, &p, true, n + 2).unwrap();
    }
    assert_eq!(k.gov.contracts().len(), 2);
    let r = k.propose(&a, json!([{"action": "revoke_contract", "id": a_id}]), 20);
    assert_eq!(
        k.vote(&a, &r, true, 21).unwrap(),
        Some(ProposalState::Accepted)
    );
    let gov = &k.gov;

    let sim = Measurement::parse("sim", &"00".repeat(48)).unwrap();
    // The same bytes under another TEE kind are another measurement.
    let other_kind = Measurement::parse("sev-snp", &"00".repeat(48)).unwrap();
    let (fa, fb) = (a.fp(), b.fp());
    let (ma, mb): (MemberId, MemberId) = (fa.parse().unwrap(), fb.parse().unwrap());
    let unknown: ContractId = "ab".repeat(32).parse().unwrap();
    type Release<'a> = (
        &'a str,
        Option<&'a MemberId>,
        &'a ContractId,
        Vec<Measurement>,
    );
    let cases: Vec<(Release<'_>, Option<&str>)> = vec![
        (
            ("dataset-a-data", Some(&ma), &both_id, vec![sim.clone()]),
            None,
        ),
        (
            (
                "dataset-b-data",
                Some(&mb),
                &both_id,
                vec![other_kind.clone(), sim.clone()],
            ),
            None,
        ),
        (
            ("dataset-a-data", Some(&ma), &unknown, vec![sim.clone()]),
            Some("NoContract"),
        ),
        (
            ("dataset-a-data", Some(&ma), &a_id, vec![sim.clone()]),
            Some("Revoked"),
        ),
        (
            ("dataset-c-data", Some(&ma), &both_id, vec![sim.clone()]),
            Some("KeyNotInContract"),
        ),
        (
            ("dataset-a-data", Some(&mb), &both_id, vec![sim.clone()]),
            Some("KeyNotOwners"),
        ),
        (
            ("dataset-a-data", None, &both_id, vec![sim.clone()]),
            Some("KeyNotOwners"),
        ),
        (
            (
                "dataset-a-data",
                Some(&ma),
                &both_id,
                vec![other_kind.clone()],
            ),
            Some("MeasurementNotAllowed"),
        ),
        (
            ("dataset-a-data", Some(&ma), &both_id, vec![]),
            Some("MeasurementNotAllowed"),
        ),
    ];
    for ((key, owner, id, presented), denial) in cases {
        let got = gov.may_release(key, owner, id, &presented);
        match (denial, got) {
            (None, Ok(record)) => assert_eq!(record.id, *id),
            (Some(rule), Err(e)) => {
                assert!(format!("{e:?}").starts_with(rule), "{key} {id}: {e:?}")
            }
            (want, got) => panic!("{key} {id}: wanted {want:?}, got {got:?}"),
        }
    }

    let input = |d: &str| RunInput {
        dataset: d.parse().unwrap(),
        digest: "00".repeat(32),
    };
    let released = |inputs: Vec<RunInput>, recipients: Vec<MemberId>| RunOutcome::Released {
        inputs,
        output: RunOutput {
            history: Vec::new(),
            epsilon: None,
            digest: "11".repeat(32),
            location: "results/r.cfd".into(),
            rows: 1,
            suppressed: 0,
            recipients,
            rule: Some(confide_model::AnalysisRule::Aggregation { min_identities: 2 }),
            counted: vec!["a.customer".into()],
        },
    };
    let good = || released(vec![input("b-data"), input("a-data")], vec![ma.clone()]);
    let mut wrong_digest = vec![input("a-data"), input("b-data")];
    wrong_digest[1].digest = "22".repeat(32);
    let all_keys = |_: &str| true;
    let refused = RunOutcome::Refused {
        refusal: confide_model::Refusal::TooManyRows { rows: 2, max: 1 },
    };
    type Record<'a> = (&'a ContractId, RunOutcome, &'a dyn Fn(&str) -> bool);
    // A run held to another rule than the contract's, or to none.
    let other_rule = |rule| {
        let mut outcome = good();
        if let RunOutcome::Released { output, .. } = &mut outcome {
            output.rule = rule;
        }
        outcome
    };
    let cases: Vec<(Record<'_>, Option<&str>)> = vec![
        ((&both_id, good(), &all_keys), None),
        (
            (
                &both_id,
                other_rule(Some(confide_model::AnalysisRule::List {
                    min_identities: 2,
                })),
                &all_keys,
            ),
            Some("RuleNotTheContracts"),
        ),
        (
            (&both_id, other_rule(None), &all_keys),
            Some("RuleNotTheContracts"),
        ),
        ((&both_id, refused.clone(), &all_keys), None),
        // A workload that was released no key of this contract (it ran another) reports
        // nothing of it, not even a refusal.
        (
            (&both_id, refused.clone(), &|_: &str| false),
            Some("KeyNotReleased"),
        ),
        (
            (&both_id, refused.clone(), &|k: &str| k == "dataset-a-data"),
            Some("KeyNotReleased"),
        ),
        ((&a_id, refused, &all_keys), Some("Revoked")),
        (
            (
                &both_id,
                released(vec![input("a-data")], vec![ma.clone()]),
                &all_keys,
            ),
            Some("InputsNotTheContracts"),
        ),
        (
            (
                &both_id,
                released(
                    vec![input("a-data"), input("a-data"), input("b-data")],
                    vec![ma.clone()],
                ),
                &all_keys,
            ),
            // One version read twice.
            Some("DigestNotRegistered"),
        ),
        (
            (
                &both_id,
                released(wrong_digest, vec![ma.clone()]),
                &all_keys,
            ),
            Some("DigestNotRegistered"),
        ),
        (
            (
                &both_id,
                released(vec![input("a-data"), input("b-data")], vec![mb.clone()]),
                &all_keys,
            ),
            Some("RecipientsNotTheContracts"),
        ),
        (
            (
                &both_id,
                released(
                    vec![input("a-data"), input("b-data")],
                    vec![ma.clone(), mb.clone()],
                ),
                &all_keys,
            ),
            Some("RecipientsNotTheContracts"),
        ),
        (
            (&both_id, good(), &|key: &str| key != "dataset-b-data"),
            Some("KeyNotReleased"),
        ),
    ];
    for ((id, outcome, keys), denial) in cases {
        let got = gov.may_record(id, std::slice::from_ref(&sim), &outcome, keys);
        match (denial, got) {
            (None, Ok(record)) => assert_eq!(record.id, *id),
            (Some(rule), Err(e)) => {
                assert!(format!("{e:?}").starts_with(rule), "{outcome:?}: {e:?}")
            }
            (want, got) => panic!("{outcome:?}: wanted {want:?}, got {got:?}"),
        }
    }
    // A run's measurement is checked as a release's is.
    assert!(matches!(
        gov.may_record(&both_id, &[other_kind], &good(), all_keys),
        Err(Denial::MeasurementNotAllowed { .. })
    ));
}

/// A majority that cannot take an owner's data cannot keep it either by removing the owner,
/// who could then no longer revoke: the removal revokes every contract over the owner's data
/// (for good, even if the owner is added again), and no new contract may name that data.
#[test]
fn removing_an_owner_stops_every_contract_over_its_data() {
    let (a, b, c) = (
        Member::new("bank-a"),
        Member::new("bank-b"),
        Member::new("bank-c"),
    );
    let mut k = anything_goes(&a, &b, &c);
    for (m, id, n) in [(&b, "b-data", 3u8), (&c, "c-data", 5)] {
        let p = k.propose(m, json!([dataset(id, m)]), n);
        k.vote(m, &p, true, n + 1).unwrap();
    }
    // c approved a contract over its data, and one over b's alone stands beside it.
    let over_c = contract(&["c-data", "b-data"], &a);
    let over_b = contract(&["b-data"], &a);
    let (c_id, b_id): (ContractId, ContractId) = (
        over_c["id"].as_str().unwrap().parse().unwrap(),
        over_b["id"].as_str().unwrap().parse().unwrap(),
    );
    let p = k.propose(&a, json!([over_c]), 10);
    k.vote(&b, &p, true, 11).unwrap();
    k.vote(&c, &p, true, 12).unwrap();
    let p = k.propose(&a, json!([over_b]), 13);
    k.vote(&b, &p, true, 14).unwrap();
    // And b approved a result of its own data for c.
    let to_c = contract(&["b-data"], &c);
    let to_c_id = to_c["id"].as_str().unwrap().to_owned();
    let p = k.propose(&a, json!([to_c]), 15);
    k.vote(&b, &p, true, 16).unwrap();
    assert_eq!(
        k.gov.contracts()[to_c_id.as_str()].state,
        ContractState::Approved
    );
    let sim = confide_model::Measurement::parse("sim", &"00".repeat(48)).unwrap();
    assert!(
        k.gov
            .may_release(
                "dataset-c-data",
                Some(&c.fp().parse().unwrap()),
                &c_id,
                std::slice::from_ref(&sim)
            )
            .is_ok()
    );

    // a and b remove c: c's contract is revoked with it; b's own contract is not.
    k.propose(
        &a,
        json!([{"action": "remove_member", "fingerprint": c.fp()}]),
        20,
    );
    assert!(!k.gov.members().contains_key(c.fp().as_str()));
    assert_eq!(k.gov.contracts()[&c_id].state, ContractState::Revoked);
    assert_eq!(k.gov.contracts()[&b_id].state, ContractState::Approved);
    // A result goes on to no one who left: the contract to c is revoked too.
    assert_eq!(
        k.gov.contracts()[to_c_id.as_str()].state,
        ContractState::Revoked
    );
    // c, gone, is not asked for consent it could not give: a newly trusted measurement waits
    // for b, the one owner left, and b's yes accepts it.
    let m = k.propose(
        &a,
        json!([{"action": "add_measurement", "kind": "sim", "value": "cd".repeat(48)}]),
        30,
    );
    assert_eq!(k.gov.proposals()[&m].state, ProposalState::Open);
    assert_eq!(
        k.vote(&b, &m, true, 31).unwrap(),
        Some(ProposalState::Accepted)
    );
    for key in ["dataset-c-data", "dataset-b-data"] {
        let owner: MemberId = if key == "dataset-c-data" {
            c.fp()
        } else {
            b.fp()
        }
        .parse()
        .unwrap();
        let err = k
            .gov
            .may_release(key, Some(&owner), &c_id, std::slice::from_ref(&sim))
            .unwrap_err();
        assert!(
            matches!(err, confide_gov::Denial::Revoked { .. }),
            "{err:?}"
        );
    }

    // No new contract may name c's data, whoever votes for it.
    let again = contract(&["c-data"], &b);
    let err = k
        .submit(a.sign(json!({"type": "propose", "actions": [again]}), 21))
        .unwrap_err();
    assert!(err.to_string().contains("no longer a member"), "{err}");

    // Adding c back does not bring the revoked contract back.
    k.propose(&a, json!([{"action": "add_member", "member": c.doc()}]), 22);
    assert!(k.gov.members().contains_key(c.fp().as_str()));
    assert_eq!(k.gov.contracts()[&c_id].state, ContractState::Revoked);

    // Replay reaches the same state.
    let replayed = k.replayed();
    assert_eq!(replayed.contracts(), k.gov.contracts());
}

/// A dataset with a privacy budget: runs of a contract that adds noise spend from it at each
/// key release, the release past it is refused, a restart (a replay of the ledger) finds the
/// same ε spent, a contract without noise is refused over it, and only its owner's decision
/// raises it.
#[test]
fn a_privacy_budget_is_spent_by_releases_and_raised_only_by_its_owner() {
    use confide_gov::Denial;

    let (a, b) = (Member::new("hospital-a"), Member::new("hospital-b"));
    let mut k = founded(&a);
    let add_b = k.propose(&a, json!([{"action": "add_member", "member": b.doc()}]), 1);
    k.vote(&a, &add_b, true, 2).unwrap();
    let mut record = dataset("a-data", &a);
    record["schema"] = json!([{"name": "patient", "type": "Utf8"}]);
    record["privacy"] = json!({"identity": {"patient": "person"},
                               "budget": {"epsilon": "1", "period_days": 30}});
    let p = k.propose(&a, json!([record]), 3);
    k.vote(&a, &p, true, 4).unwrap();

    // A contract over it that adds no noise is refused, whoever approves it.
    let plain = contract(&["a-data"], &a);
    let refused = k.submit(a.sign(json!({"type": "propose", "actions": [plain]}), 5));
    assert!(
        matches!(&refused, Err(GovError::Refused(why)) if why.contains("must add noise")),
        "{refused:?}"
    );

    let mut noisy = contract(&["a-data"], &a);
    noisy["contract"]["output"]["noise"] = json!({"epsilon": "0.4", "max_rows_per_identity": 1});
    let id = hex::encode(confide_crypto::digest::sha256(
        confide_crypto::jcs::canonical_json(&noisy["contract"]).as_bytes(),
    ));
    noisy["id"] = json!(id);
    let p = k.propose(&a, json!([noisy]), 7);
    assert_eq!(
        k.vote(&a, &p, true, 8).unwrap(),
        Some(ProposalState::Accepted)
    );
    let contract_id: ContractId = id.parse().unwrap();

    // Each release is an audit entry; the ledger keeps those the budget allowed.
    let release = |at: i64, n: u8| {
        json!({"type": "kms.release", "key": "dataset-a-data", "version": 1,
               "lease": format!("l{n}"), "token": "t", "runtime_key": "r", "at": at,
               "expires": at + 60, "contract": contract_id})
        .to_string()
        .into_bytes()
    };
    let mut ledger: Vec<Vec<u8>> = Vec::new();
    for n in 0..2 {
        assert_eq!(k.gov.may_spend("dataset-a-data", &contract_id, NOW), Ok(()));
        k.gov.charge(&release(NOW, n), true).unwrap();
        ledger.push(release(NOW, n));
    }
    // 0.8 of 1 spent: a third run of 0.4 would pass the budget, asked or appended.
    let (spent, _) = k.gov.budget(&"a-data".parse().unwrap(), NOW).unwrap();
    assert_eq!(spent.to_string(), "0.8");
    assert!(matches!(
        k.gov.may_spend("dataset-a-data", &contract_id, NOW),
        Err(Denial::BudgetSpent { .. })
    ));
    assert!(matches!(
        k.gov.charge(&release(NOW, 2), true),
        Err(GovError::Denied(Denial::BudgetSpent { .. }))
    ));
    // Refused, it changed nothing.
    assert_eq!(
        k.gov
            .budget(&"a-data".parse().unwrap(), NOW)
            .unwrap()
            .0
            .to_string(),
        "0.8"
    );
    // The next period has its own budget.
    assert_eq!(
        k.gov
            .may_spend("dataset-a-data", &contract_id, NOW + 30 * 86_400),
        Ok(())
    );

    // A restart: the governance requests and the audit entries replayed give the same ε spent.
    let mut replayed = k.replayed();
    for (seq, entry) in ledger.iter().enumerate() {
        replayed
            .replay_entry((k.log.len() + seq) as u64, entry)
            .unwrap();
    }
    assert_eq!(
        replayed
            .budget(&"a-data".parse().unwrap(), NOW)
            .unwrap()
            .0
            .to_string(),
        "0.8"
    );
    assert!(
        replayed
            .may_spend("dataset-a-data", &contract_id, NOW)
            .is_err()
    );

    // Raising it is its owner's decision: b's vote does not do it, a's does.
    let raise = json!([{"action": "set_budget", "dataset": "a-data",
                        "budget": {"epsilon": "2", "period_days": 30}}]);
    let p = k.propose(&b, raise, 9);
    assert_ne!(
        k.vote(&b, &p, true, 10).unwrap(),
        Some(ProposalState::Accepted)
    );
    assert!(
        k.gov
            .may_spend("dataset-a-data", &contract_id, NOW)
            .is_err()
    );
    assert_eq!(
        k.vote(&a, &p, true, 11).unwrap(),
        Some(ProposalState::Accepted)
    );
    assert_eq!(k.gov.may_spend("dataset-a-data", &contract_id, NOW), Ok(()));
    // Its period may not change: what was spent is counted per period of its length, and a
    // new length would start afresh.
    let longer = json!([{"action": "set_budget", "dataset": "a-data",
                         "budget": {"epsilon": "2", "period_days": 60}}]);
    let refused = k.submit(a.sign(json!({"type": "propose", "actions": longer}), 12));
    assert!(
        matches!(&refused, Err(GovError::Refused(why)) if why.contains("its period")),
        "{refused:?}"
    );
}

/// A dataset grows by versions only its owner adds; a run may read any of them, each once;
/// and the runs of its exact aggregates chain its difference-check history on the ledger: a
/// run checked against another history than the latest (two at once, or one rolled back) is
/// not recorded, and a restart finds the same latest history and versions.
#[test]
fn a_dataset_grows_by_its_owners_versions_and_runs_chain_its_history() {
    use confide_gov::Denial;
    use confide_model::{Measurement, RunOutcome};

    let (a, b, c) = (Member::new("a"), Member::new("b"), Member::new("c"));
    let mut k = anything_goes(&a, &b, &c);
    let key = confide_crypto::hpke::HpkeSecretKey::generate().unwrap();
    let mut record = dataset("a-data", &a);
    record["public_key"] = json!(hex::encode(key.public_key().as_bytes()));
    let p = k.propose(&a, json!([record, dataset("old-data", &a)]), 3);
    k.vote(&a, &p, true, 4).unwrap();
    let a_data: confide_model::DatasetId = "a-data".parse().unwrap();
    assert_eq!(k.gov.versions(&a_data).len(), 1);

    let version = |n: u8| {
        json!({"rows": 5, "size": 100, "digest": format!("{n:02x}").repeat(32),
               "location": format!("datasets/a-data/{n}.cfd")})
    };
    let append =
        |d: &str, n: u8| json!([{"action": "append_dataset", "dataset": d, "version": version(n)}]);
    // Another member's proposal waits for the owner, whatever the constitution says.
    let p = k.propose(&b, append("a-data", 1), 5);
    assert_eq!(k.gov.versions(&a_data).len(), 1);
    assert_eq!(
        k.vote(&a, &p, true, 6).unwrap(),
        Some(ProposalState::Accepted)
    );
    let versions = k.gov.versions(&a_data).to_vec();
    assert_eq!(
        versions.iter().map(|v| v.number).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(versions[1].at, NOW);
    assert_eq!(versions[1].version.digest, "01".repeat(32));
    // The same batch again, a dataset registered without its key's public half, or no dataset:
    // refused when proposed.
    for (actions, why) in [
        (append("a-data", 1), "already"),
        (append("old-data", 2), "public half"),
        (append("no-data", 2), "no dataset"),
    ] {
        let refused = k.submit(a.sign(json!({"type": "propose", "actions": actions}), 7));
        assert!(
            matches!(&refused, Err(GovError::Refused(w)) if w.contains(why)),
            "{why}: {refused:?}"
        );
    }

    // A contract over it, and runs that read its versions.
    let approve = contract(&["a-data"], &a);
    let id: ContractId = approve["id"].as_str().unwrap().parse().unwrap();
    let p = k.propose(&a, json!([approve]), 8);
    k.vote(&a, &p, true, 9).unwrap();
    let sim = Measurement::parse("sim", &"00".repeat(48)).unwrap();
    let read = |digests: &[String], history: Value| {
        let inputs: Vec<Value> = digests
            .iter()
            .map(|d| json!({"dataset": "a-data", "digest": d}))
            .collect();
        json!({"released": {"inputs": inputs, "output": {
            "digest": "11".repeat(32), "location": "results/r.cfd", "rows": 1, "suppressed": 0,
            "recipients": [a.fp()], "rule": {"aggregation": {"min_identities": 2}},
            "history": history}}})
    };
    let outcome = |v: Value| serde_json::from_value::<RunOutcome>(v).unwrap();
    let all: Vec<String> = versions.iter().map(|v| v.version.digest.clone()).collect();
    let step = |from: Option<&str>, to: &str| {
        let mut s = json!({"dataset": "a-data", "to": to.repeat(32),
                           "location": format!("history/a-data/{to}.cfd")});
        if let Some(from) = from {
            s["from"] = json!(from.repeat(32));
        }
        s
    };
    let record_ok = |gov: &Governance, o: Value| {
        gov.may_record(&id, std::slice::from_ref(&sim), &outcome(o), |_: &str| true)
            .map(|_| ())
    };
    assert_eq!(record_ok(&k.gov, read(&all, json!([]))), Ok(()));
    assert_eq!(record_ok(&k.gov, read(&all[1..], json!([]))), Ok(()));
    for bad in [vec![all[0].clone(), all[0].clone()], vec!["ee".repeat(32)]] {
        assert!(matches!(
            record_ok(&k.gov, read(&bad, json!([]))),
            Err(Denial::DigestNotRegistered { .. })
        ));
    }

    // The history's chain: the first from none, each next from the last.
    let entry = |history: Value| {
        let mut r = json!({"type": "cleanroom.run", "run": "ab".repeat(16), "contract": id,
            "token": "00".repeat(32), "simulated": true, "at": NOW, "nonce": "00",
            "signed_by": "x", "signature": "x"});
        let Value::Object(o) = read(&all, history)["released"].take() else {
            unreachable!()
        };
        r["inputs"] = o["inputs"].clone();
        r["output"] = o["output"].clone();
        r.to_string().into_bytes()
    };
    let first = entry(json!([step(None, "a1")]));
    assert_eq!(
        record_ok(&k.gov, read(&all, json!([step(None, "a1")]))),
        Ok(())
    );
    k.gov.account(&first, true).unwrap();
    assert_eq!(k.gov.history(&a_data).unwrap().to, "a1".repeat(32));
    // A second run that started from none (run at the same time as the first), or from a
    // history that never was: refused, asked or appended, and nothing moves.
    for stale in [step(None, "b2"), step(Some("ff"), "b2")] {
        assert!(matches!(
            record_ok(&k.gov, read(&all, json!([stale.clone()]))),
            Err(Denial::HistoryNotLatest { .. })
        ));
        assert!(matches!(
            k.gov.account(&entry(json!([stale])), true),
            Err(GovError::Denied(Denial::HistoryNotLatest { .. }))
        ));
    }
    assert_eq!(k.gov.history(&a_data).unwrap().to, "a1".repeat(32));
    // A history of a dataset the contract does not read is not its run's to write.
    let mut foreign = step(None, "c3");
    foreign["dataset"] = json!("old-data");
    assert!(matches!(
        record_ok(&k.gov, read(&all, json!([foreign]))),
        Err(Denial::HistoryNotLatest { .. })
    ));
    let second = entry(json!([step(Some("a1"), "a2")]));
    k.gov.account(&second, true).unwrap();
    assert_eq!(k.gov.history(&a_data).unwrap().to, "a2".repeat(32));

    // A restart finds the same versions and the same latest history.
    let mut replayed = k.replayed();
    for (seq, e) in [&first, &second].iter().enumerate() {
        replayed
            .replay_entry((k.log.len() + seq) as u64, e)
            .unwrap();
    }
    assert_eq!(replayed.versions(&a_data), &versions[..]);
    assert_eq!(replayed.history(&a_data), k.gov.history(&a_data));
    assert!(!replayed.history_forked(&a_data));
    // A ledger whose server appended a second run from the first history (what its writer
    // refuses) shows it on replay: the history is forked, and the workload runs no check
    // over it.
    let mut forked = k.replayed();
    for (seq, e) in [&first, &entry(json!([step(None, "b2")]))]
        .iter()
        .enumerate()
    {
        forked.replay_entry((k.log.len() + seq) as u64, e).unwrap();
    }
    assert!(forked.history_forked(&a_data));
}

//! The built-in key release and KBS resource policies, decided row by row: each row is one
//! attestation token's CPU result (and, for a dataset's key, the contract the key broker found),
//! and whether each policy gives the key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use confide_policy::{
    Policy, RELEASE_ATTESTED, RELEASE_DATASET, RELEASE_DENY, RESOURCE_ATTESTED, RESOURCE_DENY,
    RESOURCE_INSECURE_SIMULATED,
};
use serde_json::{Value, json};

/// A token whose one CPU result has this status and executables tier.
fn token(status: &str, executables: u8) -> Value {
    json!({"submods": {"sev-snp": {
        "ear.status": status,
        "ear.trustworthiness-vector": {"instance-identity": 2, "hardware": 2, "executables": executables},
    }}})
}

fn allows(text: &str, rule: &str, input: &Value) -> bool {
    Policy::new("p.rego", text)
        .unwrap()
        .eval(rule, input)
        .unwrap()
        == json!(true)
}

#[test]
fn keys_and_resources_go_only_to_code_the_consortium_trusts() {
    let approved = json!({"id": "c", "state": "approved", "datasets": ["d"]});
    let revoked = json!({"id": "c", "state": "revoked", "datasets": ["d"]});
    let gpu_only = json!({"submods": {}, "confide.gpu": {"nvidia-gpu": {
        "ear.status": "affirming",
        "ear.trustworthiness-vector": {"executables": 2}}}});
    // (what, token, contract, attested gives it, dataset gives it)
    let rows: Vec<(&str, Value, Value, bool, bool)> = vec![
        (
            "trusted code, up to date",
            token("affirming", 2),
            approved.clone(),
            true,
            true,
        ),
        (
            "trusted code, out-of-date TCB",
            token("warning", 2),
            approved.clone(),
            true,
            true,
        ),
        // A TEE kind the consortium trusts no measurement of: any code at all. A dataset's key
        // takes the contract's measurements as its reference values instead (the key broker
        // checks them before the policy runs), so its policy leaves the tier alone.
        (
            "untrusted code",
            token("warning", 0),
            approved.clone(),
            false,
            true,
        ),
        (
            "affirming but unmatched",
            token("affirming", 0),
            approved.clone(),
            false,
            true,
        ),
        (
            "contraindicated",
            token("contraindicated", 2),
            approved.clone(),
            false,
            false,
        ),
        (
            "no tier given",
            json!({"submods": {"sev-snp": {"ear.status": "affirming"}}}),
            approved.clone(),
            false,
            true,
        ),
        (
            "a GPU's result alone",
            gpu_only,
            approved.clone(),
            false,
            false,
        ),
        ("no submods", json!({}), approved.clone(), false, false),
        (
            "revoked contract",
            token("affirming", 2),
            revoked,
            true,
            false,
        ),
        (
            "no contract named",
            token("affirming", 2),
            Value::Null,
            true,
            false,
        ),
    ];
    for (what, token, contract, attested, dataset) in rows {
        let input =
            json!({"key": {"name": "k", "owner": "o"}, "token": token, "contract": contract});
        let rule = "data.confide.release.allow";
        assert!(
            !allows(RELEASE_DENY, rule, &input),
            "{what}: the default gave the key"
        );
        assert_eq!(
            allows(RELEASE_ATTESTED, rule, &input),
            attested,
            "{what}: attested"
        );
        assert_eq!(
            allows(RELEASE_DATASET, rule, &input),
            dataset,
            "{what}: dataset"
        );
        let resource = json!({"resource": {"repo": "r", "type": "t", "tag": "g", "path": "r/t/g", "owner": "o"},
                              "token": input["token"]});
        let rule = "data.confide.resource.allow";
        assert!(
            !allows(RESOURCE_DENY, rule, &resource),
            "{what}: the default gave the resource"
        );
        assert_eq!(
            allows(RESOURCE_ATTESTED, rule, &resource),
            attested,
            "{what}: resource"
        );
    }
}

#[test]
fn the_simulated_resource_policy_gives_only_to_simulated_tokens() {
    let rule = "data.confide.resource.allow";
    let with = |simulated: bool, status: &str| {
        let mut t = token(status, 0);
        t["confide.simulated"] = json!(simulated);
        json!({"resource": {"path": "r/t/g"}, "token": t})
    };
    assert!(allows(
        RESOURCE_INSECURE_SIMULATED,
        rule,
        &with(true, "warning")
    ));
    // Hardware evidence, even trusted and affirming, is not what this policy is for; nor is a
    // token that says nothing of simulation, nor a contraindicated one.
    assert!(!allows(
        RESOURCE_INSECURE_SIMULATED,
        rule,
        &with(false, "warning")
    ));
    assert!(!allows(
        RESOURCE_INSECURE_SIMULATED,
        rule,
        &with(true, "contraindicated")
    ));
    let silent = json!({"resource": {"path": "r/t/g"}, "token": token("warning", 0)});
    assert!(!allows(RESOURCE_INSECURE_SIMULATED, rule, &silent));
}

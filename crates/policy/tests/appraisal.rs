//! The built-in appraisal policy, decided rule by rule: each row is one set of claims, the
//! server's profile, and the rules that must deny it (none: the evidence passes).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use confide_policy::{APPRAISAL, Policy};
use serde_json::{Value, json};

fn denied_rules(input: &Value) -> Vec<String> {
    let policy = Policy::new("appraisal.rego", APPRAISAL).unwrap();
    let mut rules: Vec<String> = policy
        .eval("data.confide.appraisal.deny", input)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|d| d["rule"].as_str().unwrap().to_owned())
        .collect();
    rules.sort();
    rules
}

fn input(claims: Value, trusted: &[&str], fresh: bool, dev: bool) -> Value {
    let measurements: Vec<Value> = trusted
        .iter()
        .map(|v| json!({"kind": "snp", "value": v}))
        .collect();
    json!({
        "claims": claims,
        "reference": {"measurements": measurements, "primary": "measurement"},
        "fresh": fresh,
        "profile": {"insecure_allow_simulated_tee": dev},
    })
}

fn snp(measurement: &str) -> Value {
    json!({"kind": "snp", "simulated": false, "debug": false,
           "tcb": {"status": "UpToDate"}, "measurements": {"measurement": measurement}})
}

#[test]
fn each_rule_denies_what_it_names_and_nothing_else() {
    let sim = json!({"kind": "snp", "simulated": true, "debug": true,
                     "tcb": {"status": "UpToDate"}, "measurements": {"measurement": "aa"}});
    let debug = json!({"kind": "snp", "simulated": false, "debug": true,
                       "tcb": {"status": "UpToDate"}, "measurements": {"measurement": "aa"}});
    let revoked = json!({"kind": "snp", "simulated": false, "debug": false,
                         "tcb": {"status": "Revoked"}, "measurements": {"measurement": "aa"}});
    let rows: Vec<(&str, Value, Vec<&str>)> = vec![
        (
            "trusted hardware",
            input(snp("AA"), &["aa"], false, false),
            vec![],
        ),
        (
            "no measurement trusted yet",
            input(snp("aa"), &[], false, false),
            vec![],
        ),
        (
            "untrusted measurement",
            input(snp("bb"), &["aa"], false, false),
            vec!["measurement"],
        ),
        (
            "simulated, sealed profile",
            input(sim.clone(), &[], true, false),
            vec!["simulated_tee"],
        ),
        (
            "simulated, development profile",
            input(sim, &[], true, true),
            vec![],
        ),
        (
            "debug hardware",
            input(debug.clone(), &[], false, false),
            vec!["debug"],
        ),
        // The development profile allows simulation, not debugging on real hardware.
        (
            "debug hardware, development profile",
            input(debug, &[], false, true),
            vec!["debug"],
        ),
        (
            "revoked TCB",
            input(revoked, &[], false, false),
            vec!["tcb_status"],
        ),
    ];
    for (name, input, expected) in rows {
        assert_eq!(denied_rules(&input), expected, "{name}");
    }
}

#[test]
fn the_profile_is_read_as_data_never_guessed() {
    let sim = json!({"kind": "snp", "simulated": true, "debug": false,
                     "tcb": {"status": "UpToDate"}, "measurements": {}});
    // No profile, a profile without the flag, or a flag that is not `true`: simulation denied.
    for profile in [
        Value::Null,
        json!({}),
        json!({"insecure_allow_simulated_tee": "true"}),
        json!({"insecure_allow_simulated_tee": 1}),
    ] {
        let input = json!({"claims": sim, "reference": {"measurements": [], "primary": null},
                           "fresh": true, "profile": profile});
        assert_eq!(denied_rules(&input), vec!["simulated_tee"], "{profile}");
    }
}

//! The appraisal of verified evidence ([`confide_gov::appraisal`]), table-driven over real
//! evidence from real hardware (an AMD SEV-SNP report and an Intel TDX quote from
//! `testdata/attestation`, verified at their cases' times) and simulated evidence: which
//! code the consortium trusts is decided per TEE kind, the binding of the runtime data is
//! exact, simulated evidence needs the development profile, and a policy that cannot decide
//! refuses.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use confide_attest::{Collateral, Inputs, TeeKind, TrustAnchors, UnixTime, VerifiedClaims};
use confide_gov::appraisal::{AppraisalDenied, Appraiser, DEFAULT_APPRAISAL, Status};
use confide_model::Measurement;
use serde_json::Value;

fn case_dir(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/attestation")
        .join(rel)
}

/// A recorded case verified at its own verification time, with every file but the evidence
/// (and informational ones) as collateral.
fn verified(rel: &str) -> VerifiedClaims {
    let dir = case_dir(rel);
    let case: Value =
        serde_json::from_slice(&std::fs::read(dir.join("case.json")).unwrap()).unwrap();
    let mut collateral = Collateral::new();
    let mut evidence = None;
    for f in case["files"].as_array().unwrap() {
        let bytes = std::fs::read(dir.join(f["name"].as_str().unwrap())).unwrap();
        let role = f["role"].as_str().unwrap();
        if role.starts_with("evidence") {
            evidence.get_or_insert(bytes);
        } else if !role.starts_with("informational") {
            collateral.add(&bytes).unwrap();
        }
    }
    let evidence = confide_attest::decode_text(&evidence.unwrap()).into_owned();
    let anchors = TrustAnchors::builtin().unwrap();
    let inputs = Inputs {
        anchors: &anchors,
        now: UnixTime::from_secs(case["verification_time"]["unix"].as_i64().unwrap()),
        insecure_allow_simulated_tee: false,
    };
    confide_attest::detect(&evidence)
        .unwrap()
        .verify(&evidence, &collateral, &inputs)
        .unwrap()
}

fn simulated(measurement: [u8; 48], report_data: [u8; 64]) -> VerifiedClaims {
    let evidence = confide_attest::sim::simulate(&measurement, &report_data).unwrap();
    let anchors = TrustAnchors::builtin().unwrap();
    let inputs = Inputs {
        anchors: &anchors,
        now: UnixTime::from_secs(1_800_000_000),
        insecure_allow_simulated_tee: true,
    };
    confide_attest::verifier(TeeKind::Sim)
        .unwrap()
        .verify(&evidence, &Collateral::new(), &inputs)
        .unwrap()
}

fn primary(claims: &VerifiedClaims) -> Measurement {
    let (claim, _) = claims.kind().primary_measurement().unwrap();
    Measurement::new(claims.kind(), claims.measurement(claim).unwrap().to_vec()).unwrap()
}

fn appraiser(trusted: &[Measurement], dev: bool) -> Appraiser {
    Appraiser::new(DEFAULT_APPRAISAL, trusted.iter().cloned().collect(), dev).unwrap()
}

#[test]
fn code_is_trusted_per_kind_of_tee_and_only_matched_code_is_affirming() {
    let snp = verified("snp/S1-trustee-milan-vcek");
    let tdx = verified("tdx/T1-dcap-qvl-v4");
    let (snp_m, tdx_m) = (primary(&snp), primary(&tdx));
    // The SNP measurement's bytes under the TDX kind (both are 48 bytes): another measurement.
    let snp_bytes_as_tdx = Measurement::new(TeeKind::Tdx, snp_m.bytes().to_vec()).unwrap();
    type Case<'a> = (
        &'a str,
        &'a VerifiedClaims,
        Vec<Measurement>,
        Result<(bool, Status), &'a str>,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "snp, its own trusted",
            &snp,
            vec![snp_m.clone()],
            Ok((true, Status::Affirming)),
        ),
        (
            "snp, nothing trusted",
            &snp,
            vec![],
            Ok((false, Status::Warning)),
        ),
        (
            "snp, only tdx trusted",
            &snp,
            vec![tdx_m.clone()],
            Ok((false, Status::Warning)),
        ),
        (
            "snp, its bytes trusted as tdx",
            &snp,
            vec![snp_bytes_as_tdx.clone()],
            Ok((false, Status::Warning)),
        ),
        (
            "tdx, only snp trusted",
            &tdx,
            vec![snp_m.clone()],
            Ok((false, Status::Warning)),
        ),
        (
            "tdx, its own trusted",
            &tdx,
            vec![tdx_m.clone(), snp_m.clone()],
            Ok((true, Status::Affirming)),
        ),
        // Another measurement of the same kind is trusted: the policy refuses.
        (
            "tdx, another tdx trusted",
            &tdx,
            vec![snp_bytes_as_tdx],
            Err("appraisal-denied"),
        ),
    ];
    for (name, claims, trusted, want) in cases {
        let got = appraiser(&trusted, false).appraise(claims, None, false);
        match (want, got) {
            (Ok((matched, status)), Ok(a)) => {
                assert_eq!((a.matched, a.status), (matched, status), "{name}");
                assert!(a.tcb_ok && !a.simulated, "{name}");
                assert_eq!(a.kind, claims.kind(), "{name}");
                assert!(
                    a.claims.get("report").is_none(),
                    "{name}: the raw report is left out"
                );
            }
            (Err(rule), Err(e)) => assert_eq!(e.rule(), rule, "{name}: {e}"),
            (want, got) => panic!("{name}: wanted {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn the_report_data_binds_exactly_the_runtime_data() {
    let snp = verified("snp/S1-trustee-milan-vcek");
    let report_data = snp.report_data().to_vec();
    assert_eq!(report_data.len(), 64);
    let a = appraiser(&[], false);
    // The case's report data is 32 bytes of digest, then 32 zeros.
    a.appraise(&snp, Some(&report_data[..32]), true).unwrap();
    a.appraise(&snp, Some(&report_data), true).unwrap();
    let mut flipped = report_data[..32].to_vec();
    flipped[31] ^= 1;
    let mut longer = report_data.clone();
    longer.push(0);
    for (name, binding) in [
        ("one bit off", flipped),
        (
            "a prefix with non-zero bytes after it",
            report_data[..16].to_vec(),
        ),
        ("longer than the report data", longer),
        ("another digest", vec![0xab; 32]),
    ] {
        let e = a.appraise(&snp, Some(&binding), true).unwrap_err();
        assert_eq!(e, AppraisalDenied::NotBound, "{name}");
        assert_eq!(e.rule(), "runtime-data-not-bound");
    }
}

#[test]
fn simulated_evidence_needs_the_development_profile_and_is_never_affirming() {
    let measurement = confide_attest::sim::default_measurement();
    let sim = simulated(measurement, [7; 64]);
    let trusted = [Measurement::new(TeeKind::Sim, measurement.to_vec()).unwrap()];
    // A sealed server: not even the policy can let simulated evidence verify, and appraised
    // anyway it is denied.
    let sealed = appraiser(&trusted, false);
    assert!(!sealed.allows_simulated().unwrap());
    let e = sealed.appraise(&sim, None, false).unwrap_err();
    assert_eq!(e.rule(), "appraisal-denied");
    assert!(e.to_string().contains("simulated_tee"), "{e}");
    // The development profile: allowed, matched, simulated, and a warning at best.
    let dev = appraiser(&trusted, true);
    assert!(dev.allows_simulated().unwrap());
    let a = dev.appraise(&sim, Some(&[7; 64]), false).unwrap();
    assert!(a.matched && a.simulated);
    assert_eq!(a.status, Status::Warning);
    // A consortium policy that does not name insecure_allow_simulated_tee keeps it out even
    // in development: it never says yes (it cannot decide, which is a no).
    let strict = Appraiser::new(
        "package confide.appraisal\nimport rego.v1\ndeny := set()\n",
        BTreeSet::new(),
        true,
    )
    .unwrap();
    assert!(!matches!(strict.allows_simulated(), Ok(true)));
}

#[test]
fn a_policy_that_cannot_decide_refuses() {
    let snp = verified("snp/S1-trustee-milan-vcek");
    let policy = |rego: &str| Appraiser::new(rego, BTreeSet::new(), false);
    // Denials name their rule and claim.
    let deny_all = policy(
        "package confide.appraisal\nimport rego.v1\n\
         deny contains {\"rule\": \"house\", \"claim\": \"kind\", \"detail\": \"closed\"} if true\n",
    )
    .unwrap();
    let e = deny_all.appraise(&snp, None, false).unwrap_err();
    assert_eq!(
        e,
        AppraisalDenied::Policy("rule house on claim kind: closed".into())
    );
    // A `deny` that is not a set of denials is no decision, not an empty one.
    for rego in [
        "package confide.appraisal\ndeny := \"everything\"\n",
        "package confide.appraisal\ndeny := {\"a\": 1}\n",
        "package confide.appraisal\ndeny := 0\n",
        // Undefined: a complete rule whose condition fails.
        "package confide.appraisal\nimport rego.v1\ndeny := {\"x\"} if false\n",
    ] {
        let e = policy(rego)
            .unwrap()
            .appraise(&snp, None, false)
            .unwrap_err();
        assert_eq!(e.rule(), "appraisal-undecided", "{rego}: {e}");
    }
    // A policy that does not compile decides nothing.
    assert_eq!(policy("package").unwrap_err().rule(), "appraisal-undecided");
    // The policy's id names its text.
    let a = policy(DEFAULT_APPRAISAL)
        .unwrap()
        .appraise(&snp, None, false)
        .unwrap();
    assert!(a.policy_id.starts_with("confide/appraisal/") && a.policy_id.len() == 34);
}

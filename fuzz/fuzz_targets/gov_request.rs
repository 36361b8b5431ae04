//! Any bytes, submitted as a member's governance request (COSE_Sign1 over a JSON body) to a
//! founded consortium, or authenticated as a member's request to the key broker, or read as a
//! governance body: refused or accepted, never a panic. The same bytes are also signed by the
//! founder as a request's payload, so that the governance rules behind the signature check
//! (the typed reading, each action's checks against the state, the constitution) see every
//! shape the fuzzer makes.

#![no_main]

use std::sync::OnceLock;

use confide_gov::{Governance, sign_request};
use confide_identity::{Identity, MemberName};
use confide_model::GovBody;
use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1_795_500_000;

fn founded() -> &'static (Identity, Governance) {
    static GOV: OnceLock<(Identity, Governance)> = OnceLock::new();
    GOV.get_or_init(|| {
        let founder = Identity::generate(MemberName::new("fuzz").expect("name")).expect("key");
        let fp = founder.public().fingerprint().to_hex();
        let body = GovBody::Found {
            member: founder.public().clone(),
            constitution: None,
        };
        let cose = sign_request(founder.signing_key(), &fp, &body, NOW, &[7; 16]).expect("sign");
        let mut gov = Governance::new().expect("governance");
        let request = gov.check(&cose, Some(NOW)).expect("found");
        gov.apply(request, 0).expect("apply");
        (founder, gov)
    })
}

fuzz_target!(|data: &[u8]| {
    let (founder, gov) = founded();
    let _ = gov.check(data, Some(NOW));
    let _ = gov.check(data, None);
    let _ = gov.authenticate(data, NOW);
    let _ = confide_gov::is_governance(data);
    if let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) {
        let fp = founder.public().fingerprint().to_hex();
        if let Ok(cose) = sign_request(founder.signing_key(), &fp, &body, NOW, &[9; 16]) {
            // Checked and applied on a copy, as the server's writer does.
            if let Ok(request) = gov.check(&cose, Some(NOW)) {
                let _ = gov.clone().apply(request, 1);
            }
        }
    }
    if let Ok(GovBody::Propose { actions }) = GovBody::from_json(data) {
        for action in &actions {
            let _ = action.check();
        }
    }
});

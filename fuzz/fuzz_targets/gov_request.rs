//! Any bytes, submitted as a member's governance request (COSE_Sign1 over a JSON body) to a
//! founded consortium, or authenticated as a member's request to the key broker, or read as a
//! governance body: refused or accepted, never a panic. The body's actions are checked on their
//! own too, so the model's checks see every shape serde lets through.

#![no_main]

use std::sync::OnceLock;

use confide_identity::{Identity, MemberName};
use confide_ledger::gov::{Governance, sign_request};
use confide_model::GovBody;
use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1_795_500_000;

fn founded() -> &'static Governance {
    static GOV: OnceLock<Governance> = OnceLock::new();
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
        gov
    })
}

fuzz_target!(|data: &[u8]| {
    let gov = founded();
    let _ = gov.check(data, Some(NOW));
    let _ = gov.check(data, None);
    let _ = gov.authenticate(data, NOW);
    let _ = confide_ledger::gov::is_governance(data);
    if let Ok(GovBody::Propose { actions }) = GovBody::from_json(data) {
        for action in &actions {
            let _ = action.check();
        }
    }
});

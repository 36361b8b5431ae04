//! Any bytes, read as each body the key broker and the KBS take from the network (a KBS
//! Request and Attestation, a member's signed key-management body, a key release or renewal,
//! evidence for the attestation service) and as the audit events the broker's state is rebuilt
//! from: refused or read, never a panic; and what is read hashes the same every time.

#![no_main]

use confide_model::kbs::{KbsAttestation, KbsRequest};
use confide_model::{
    AttestRequest, BrokerBody, Event as _, KekEvent, LeaseEvent, ReleaseRequest, RenewRequest,
    RunRecord,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<KbsRequest>(data);
    if let Ok(attestation) = KbsAttestation::from_json(data) {
        let _ = (attestation.nonce(), attestation.tee_pubkey());
        assert_eq!(
            attestation.runtime_data_digest(),
            attestation.clone().runtime_data_digest()
        );
    }
    let _ = BrokerBody::from_json(data);
    let _ = confide_model::broker::read::<ReleaseRequest>(data, "request");
    let _ = confide_model::broker::read::<RenewRequest>(data, "request");
    let _ = confide_model::broker::read::<AttestRequest>(data, "request");
    let _ = LeaseEvent::of_entry(data);
    let _ = RunRecord::of_entry(data);
    let _ = KekEvent::of_entry(data);
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let canonical = confide_crypto::jcs::canonical_json(&value);
        let again: serde_json::Value = serde_json::from_str(&canonical).expect("JCS is JSON");
        assert_eq!(confide_crypto::jcs::canonical_json(&again), canonical);
    }
});

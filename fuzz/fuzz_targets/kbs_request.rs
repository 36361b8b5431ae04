//! Any bytes, read as each body the key broker and the KBS take from the network (a KBS
//! Request and Attestation, a member's signed key-management body, a key release or renewal,
//! evidence for the attestation service, a workload's signed run report and runtime data) and
//! as the audit events the broker's state is rebuilt from: refused or read, never a panic; and
//! what is read hashes (or encodes) the same every time.

#![no_main]

use confide_model::kbs::{KbsAttestation, KbsRequest};
use confide_model::{
    AttestRequest, BrokerBody, Event as _, KekEvent, LeaseEvent, ReleaseRequest, RenewRequest,
    RunRecord, RuntimeKeys, SignedRunReport,
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
    if let Ok(signed) = SignedRunReport::from_json(data) {
        assert_eq!(signed.report.id(), signed.clone().report.id());
    }
    // Runtime data has one encoding: what reads is what it writes.
    if let Ok(keys) = RuntimeKeys::parse(data) {
        assert_eq!(
            keys.to_bytes(),
            data,
            "runtime data read from another encoding"
        );
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let canonical = confide_crypto::jcs::canonical_json(&value);
        let again: serde_json::Value = serde_json::from_str(&canonical).expect("JCS is JSON");
        assert_eq!(confide_crypto::jcs::canonical_json(&again), canonical);
    }
});

//! Each dataset's difference-check history ([`confide_cleanroom::history`]) as the workload
//! keeps it: encrypted under the dataset's history key (which no member holds), in the blob
//! store under its digest, and found
//! only through the latest run record of the verified ledger that names it.

use confide_cleanroom::BlobStore;
use confide_cleanroom::history::History;
use confide_crypto::hpke::HpkeSecretKey;
use confide_model::{DatasetId, HistoryStep};

use crate::WorkloadError;

/// The history the ledger's latest step for a dataset left, read with its history key. A
/// history missing, changed or not opening stops the run: no exact result is released
/// unchecked.
pub(crate) fn read(
    blobs: &BlobStore,
    runtime: &tokio::runtime::Runtime,
    step: &HistoryStep,
    key: &HpkeSecretKey,
) -> Result<History, WorkloadError> {
    let failed = |what: String| WorkloadError::Dataset {
        id: step.dataset.clone(),
        what: format!(
            "its difference-check history {} (the last run's, on the ledger) {what}; no exact \
             result is released without checking it",
            step.to
        ),
    };
    let ciphertext = runtime
        .block_on(blobs.get_checked(&step.location, &step.to))
        .map_err(|e| failed(format!("cannot be read: {e}")))?;
    let mut plaintext = Vec::new();
    confide_crypto::envelope::Decryptor::new(key, &ciphertext[..])
        .and_then(|d| d.decrypt_to(&mut plaintext))
        .map_err(|e| failed(format!("does not open under its history key: {e}")))?;
    History::from_bytes(&plaintext).map_err(|e| failed(e.to_string()))
}

/// Stores `history`, encrypted to dataset `dataset`'s history key, and returns the step that
/// moves the dataset's history on from `latest` (the ledger's, which the run started from).
pub(crate) fn write(
    blobs: &BlobStore,
    runtime: &tokio::runtime::Runtime,
    dataset: &DatasetId,
    latest: Option<&HistoryStep>,
    history: &History,
    key: &HpkeSecretKey,
) -> Result<HistoryStep, WorkloadError> {
    let ciphertext =
        confide_crypto::envelope::encrypt_bytes(&[key.public_key()], &history.to_bytes())?;
    let digest = hex::encode(confide_crypto::digest::sha256(&ciphertext));
    let location = format!("history/{dataset}/{digest}.cfd");
    runtime.block_on(blobs.put(&location, ciphertext))?;
    Ok(HistoryStep {
        dataset: dataset.clone(),
        from: latest.map(|s| s.to.clone()),
        to: digest,
        location,
    })
}

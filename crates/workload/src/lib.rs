//! The workload: the code that runs inside the TEE, and whose measurement a contract approves.
//! It is the trusted computing base of a clean-room run, so it trusts nothing it has not
//! verified itself:
//!
//! 1. **The ledger**, under the ledger key given in its launch configuration: every entry under
//!    a checkpoint signed by that key ([`confide_client::ledger`]), the consortium's state
//!    replayed from them here. The contract's approval, the datasets' records and the
//!    recipients' identities come from that state, never from an endpoint's answer.
//! 2. **The terms**: the contract id is the digest of the terms it runs; each recipient's
//!    identity has the fingerprint the contract names ([`terms`]).
//! 3. **The data**: each ciphertext has the digest its owner registered, and decrypts (with
//!    authentication) under the key the broker released to this workload's ephemeral key.
//!
//! Then it attests (evidence binding a fresh challenge and its ephemeral key), obtains each
//! dataset's key, runs the contract's SQL as a query only, applies the output rules, encrypts
//! the result to the recipients, stores it and records the run. An error that leaves the
//! workload names the failure, never a value of the data.

#![forbid(unsafe_code)]

mod history;
pub mod terms;

use base64::Engine as _;
use confide_cleanroom::history::History;
use confide_cleanroom::{BlobStore, CleanroomError, Table};
use confide_client::Client;
use confide_client::ledger::{LedgerViewError, VerifiedLedger};
use confide_crypto::CryptoError;
use confide_crypto::hpke::{HpkePublicKey, HpkeSecretKey};
use confide_crypto::signing::{SigningKey, VerifyingKey};
use confide_model::{
    self as model, AttestRequest, ContractId, DatasetId, MemberId, ReleaseRequest, RunId, RunInput,
    RunOutput, RunReport, RuntimeKeys,
};

pub use terms::{Approved, Input, NotRunnable};

/// Why a run stopped. Nothing of the data is in any of these.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkloadError {
    /// The ledger the server presented is not the consortium's, or not whole.
    #[error(transparent)]
    Ledger(#[from] LedgerViewError),
    /// A call to the verifier, the key broker or the run log failed or was refused.
    #[error(transparent)]
    Client(#[from] confide_client::ClientError),
    /// The contract cannot run: the ledger says so (and so did the key broker, if it answered).
    #[error("{reason}")]
    NotRunnable {
        /// Why, as the ledger and the broker say.
        reason: String,
    },
    /// The terms filed under the id are not the terms the id is the digest of.
    #[error("the terms filed under contract {id} have digest {digest}: they are not that contract")]
    TermsNotTheContract {
        /// The id asked for.
        id: ContractId,
        /// The digest of the terms found.
        digest: ContractId,
    },
    /// A dataset's record cannot be used as it stands.
    #[error("dataset {id}: {what}")]
    Dataset {
        /// The dataset.
        id: DatasetId,
        /// What is wrong.
        what: String,
    },
    /// A recipient cannot be encrypted to.
    #[error("recipient {fingerprint}: {what}")]
    Recipient {
        /// The fingerprint the contract names.
        fingerprint: MemberId,
        /// What is wrong.
        what: String,
    },
    /// No evidence could be collected.
    #[error(
        "collecting evidence: {0} (on a machine without a TEE, simulate where the deployment \
         allows it: --sim)"
    )]
    Evidence(String),
    /// The verifier or the key broker answered something other than its protocol's answer.
    #[error("the {what} is malformed: {detail}")]
    Protocol {
        /// Which answer.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A released key does not open, or is not a key.
    #[error("the key released for {key} does not open for this workload: {source}")]
    Key {
        /// The key's name.
        key: String,
        /// Why.
        #[source]
        source: CryptoError,
    },
    /// The contract's terms, the blob store or the output rules refused.
    #[error(transparent)]
    Cleanroom(CleanroomError),
    /// The query failed while it ran. Its message stays inside: it may quote the data.
    #[error(
        "the contract's query failed while it ran (its message is withheld: it may quote the \
         data)"
    )]
    QueryFailed,
    /// A cryptographic step failed (making the run's key).
    #[error("a cryptographic step failed: {0}")]
    Crypto(#[from] CryptoError),
    /// Encrypting the result failed.
    #[error("encrypting the result: {0}")]
    Encrypt(#[from] confide_crypto::envelope::EnvelopeError),
}

impl From<CleanroomError> for WorkloadError {
    fn from(e: CleanroomError) -> Self {
        match e {
            CleanroomError::Query(_) => Self::QueryFailed,
            other => Self::Cleanroom(other),
        }
    }
}

/// Where the workload's evidence comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tee {
    /// This machine's TEE (configfs-tsm for TDX and SEV-SNP, or /dev/sev-guest).
    Hardware,
    /// Simulated evidence with this measurement: accepted only where the deployment's policy
    /// names `insecure_allow_simulated_tee`, and every record of it says "simulated".
    Simulated([u8; 48]),
}

impl Tee {
    /// The TEE the flags `--sim` and `--sim-measurement HEX` ask for (the measurement only with
    /// `--sim`; without one, the simulator's default).
    pub fn from_flags(sim: bool, measurement: Option<&str>) -> Result<Self, String> {
        match (sim, measurement) {
            (false, None) => Ok(Self::Hardware),
            (false, Some(_)) => Err("--sim-measurement needs --sim".into()),
            (true, None) => Ok(Self::Simulated(confide_attest::sim::default_measurement())),
            (true, Some(text)) => hex::decode(text)
                .ok()
                .and_then(|b| b.try_into().ok())
                .map(Self::Simulated)
                .ok_or_else(|| "--sim-measurement is not 48 bytes of hex".into()),
        }
    }
}

/// What the workload is started with: its launch configuration.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The consortium's ledger key: the one trust anchor for what the consortium decided.
    pub ledger_key: VerifyingKey,
    /// Where its evidence comes from.
    pub tee: Tee,
}

/// What a run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// The run's id on the ledger.
    pub run: RunId,
    /// The result's rows.
    pub rows: u64,
    /// The rows the output rules left out.
    pub suppressed: u64,
    /// Whether the evidence was simulated.
    pub simulated: bool,
    /// The run record's position on the ledger.
    pub audit_seq: u64,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(text: &str, what: &'static str) -> Result<Vec<u8>, WorkloadError> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| WorkloadError::Protocol {
            what,
            detail: "not base64".into(),
        })
}

/// The workload's ephemeral identity for one run: the keys its evidence binds. The broker
/// wraps each released key to the HPKE key; the run log records only reports signed with the
/// signing key.
struct Attesting<'a> {
    client: &'a Client,
    tee: Tee,
    key: HpkeSecretKey,
    signing: SigningKey,
    /// The digest of the ledger key of the launch configuration, bound into the evidence.
    ledger: [u8; 32],
}

impl Attesting<'_> {
    /// The runtime data the evidence binds: both public keys and the ledger key's digest
    /// ([`RuntimeKeys`]).
    fn runtime_data(&self) -> Vec<u8> {
        RuntimeKeys {
            hpke: self.key.public_key(),
            signing: self.signing.verifying_key(),
            ledger: self.ledger,
        }
        .to_bytes()
    }

    /// Reports how the run ended, signed with this run's signing key, under a fresh token.
    fn report(
        &self,
        id: &ContractId,
        outcome: model::RunOutcome,
    ) -> Result<model::RunRecorded, WorkloadError> {
        let report = RunReport {
            contract: id.clone(),
            nonce: hex::encode(confide_crypto::random::array::<16>()?),
            outcome,
        };
        let signed = report.sign(&self.signing, self.token()?)?;
        Ok(self.client.record_run(&signed)?)
    }

    /// Evidence binding a fresh challenge of the verifier and this run's keys (report data:
    /// SHA-256(runtime data) || nonce), and the token the verifier gives for it.
    fn token(&self) -> Result<String, WorkloadError> {
        let runtime_data = self.runtime_data();
        let challenge = self.client.challenge()?;
        let nonce: [u8; 32] = unb64(&challenge.nonce, "verifier's challenge")?
            .try_into()
            .map_err(|_| WorkloadError::Protocol {
                what: "verifier's challenge",
                detail: "it is not 32 bytes".into(),
            })?;
        let mut report_data = [0u8; 64];
        report_data[..32].copy_from_slice(&confide_crypto::digest::sha256(&runtime_data));
        report_data[32..].copy_from_slice(&nonce);
        let (kind, evidence, collateral) = match self.tee {
            Tee::Simulated(measurement) => {
                let evidence = confide_attest::sim::simulate(&measurement, &report_data)
                    .map_err(|e| WorkloadError::Evidence(e.to_string()))?;
                ("sim".to_owned(), evidence, Vec::new())
            }
            Tee::Hardware => {
                let collected = confide_attester::Attester::detect()
                    .and_then(|a| a.collect(&report_data))
                    .map_err(|e| WorkloadError::Evidence(e.to_string()))?;
                let collateral: Vec<String> =
                    collected.auxblob.as_deref().map(b64).into_iter().collect();
                (
                    collected.kind.as_str().to_owned(),
                    collected.evidence,
                    collateral,
                )
            }
        };
        let request = AttestRequest {
            evidence: b64(&evidence),
            collateral,
            runtime_data: Some(b64(&runtime_data)),
            runtime_data_hash: None,
            nonce: Some(challenge.nonce),
            gpu: Vec::new(),
        };
        Ok(self.client.attest(&kind, &request)?.token)
    }

    /// Asks the broker for key `name` for contract `id`, and opens it.
    fn release(
        &self,
        token: &str,
        name: &str,
        id: &ContractId,
    ) -> Result<HpkeSecretKey, WorkloadError> {
        let request = ReleaseRequest {
            token: token.to_owned(),
            contract: Some(id.clone()),
        };
        let released = self.client.release(name, &request)?;
        let sealed = released.hpke().map_err(|e| WorkloadError::Protocol {
            what: "key broker's release",
            detail: e.to_string(),
        })?;
        let version = released.version;
        let key_error = |source| WorkloadError::Key {
            key: name.to_owned(),
            source,
        };
        let secret = confide_crypto::hpke::open(
            &self.key,
            &sealed,
            confide_model::RELEASE_INFO,
            format!("{name}/{version}").as_bytes(),
        )
        .map_err(key_error)?;
        HpkeSecretKey::from_bytes(&secret).map_err(key_error)
    }
}

/// Runs contract `id` as its workload: verifies the ledger under the launch configuration's
/// key, attests, obtains the dataset keys, decrypts while querying, applies the output rules,
/// encrypts the result to the recipients, stores it in `blobs` and records the run. Blob-store
/// I/O and the query run on `runtime`.
pub fn run(
    launch: &Launch,
    client: &Client,
    blobs: &BlobStore,
    runtime: &tokio::runtime::Runtime,
    id: &ContractId,
) -> Result<RunOutcome, WorkloadError> {
    let ledger = VerifiedLedger::fetch(client, &launch.ledger_key)?;
    let gov = ledger.governance()?;
    let attesting = Attesting {
        client,
        tee: launch.tee,
        key: HpkeSecretKey::generate()?,
        signing: SigningKey::generate()?,
        ledger: RuntimeKeys::ledger_digest(&launch.ledger_key),
    };
    // A token once to get the keys, and again to record the run, so that a query longer than
    // a token's lifetime can still report (the broker's releases are tied to the key).
    let token = attesting.token()?;

    let approved = match Approved::find(&gov, id)? {
        Ok(a) => a,
        Err(state) => return Err(refuse(&attesting, &token, id, &gov, &state)),
    };

    // The query is planned and guarded before any key is asked for: SQL the engine refuses
    // (a forbidden use of a declared column, a result whose individuals it cannot count, a
    // function of anything but the data) gets no key.
    let declared: Vec<_> = approved
        .tables
        .iter()
        .map(|(name, input)| (name.clone(), input.schema.clone(), input.privacy.clone()))
        .collect();
    runtime.block_on(confide_cleanroom::runner::check(
        &approved.contract.sql,
        &declared,
        &approved.contract.output,
    ))?;

    // A run that would pass a dataset's privacy budget, as the verified ledger counts it, asks
    // for no key (the broker, which charges the budget, refuses it as well).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    for input in approved.tables.values() {
        if let Err(denial) = gov.may_spend(&input.record.key, id, now) {
            return Err(WorkloadError::NotRunnable {
                reason: denial.to_string(),
            });
        }
    }

    // A dataset whose history the ledger forks (two runs recorded from one history, which its
    // writer refuses) is checked against no history one could trust.
    if let Some(input) = approved
        .tables
        .values()
        .find(|i| gov.history_forked(&i.record.id))
    {
        return Err(WorkloadError::NotRunnable {
            reason: format!(
                "the ledger records two runs that started from one difference-check history of \
                 dataset {}: the server appended what it should have refused, and no run that \
                 checks the dataset goes on",
                input.record.id
            ),
        });
    }

    // The versions each table reads, as the contract selects them from the ledger's.
    let mut versions = Vec::new();
    for (table, input) in &approved.tables {
        let chosen = approved.contract.versions_of(table);
        let selected = chosen.select(gov.versions(&input.record.id));
        if selected.is_empty() {
            return Err(WorkloadError::NotRunnable {
                reason: format!(
                    "dataset {} (table {table}) has no version the contract reads (versions: \
                     {chosen})",
                    input.record.id
                ),
            });
        }
        versions.push(selected);
    }

    let mut keys = Vec::new();
    let mut history_keys = Vec::new();
    let mut stored = Vec::new();
    let mut inputs = Vec::new();
    for (input, selected) in approved.tables.values().zip(&versions) {
        let record = &input.record;
        keys.push(attesting.release(&token, &record.key, id)?);
        // A dataset that names individuals keeps its difference-check history under a key of
        // its own, which no member holds.
        history_keys.push(if input.privacy.identity.is_empty() {
            None
        } else {
            let name = record
                .history_key
                .as_deref()
                .ok_or_else(|| WorkloadError::Dataset {
                    id: record.id.clone(),
                    what: "it names individuals but was published without a history key, so its \
                       difference checks have nowhere private to keep what was released: its \
                       owner publishes it again"
                        .into(),
                })?;
            Some(attesting.release(&token, name, id)?)
        });
        for v in selected {
            stored.push((v.version.location.as_str(), v.version.digest.as_str()));
            inputs.push(RunInput {
                dataset: record.id.clone(),
                digest: v.version.digest.clone(),
            });
        }
    }
    // Every ciphertext checked against its registered digest (all at once), then each table
    // reads its own versions, under the key released for it.
    let mut verified = runtime.block_on(blobs.verified_all(&stored))?.into_iter();
    // Each dataset's difference-check history, as the ledger's last run left it: the engine
    // checks an exact result against it (a noised one, over tables with budgets, it leaves as
    // it is).
    let mut tables = Vec::new();
    for ((((name, input), key), selected), history_key) in approved
        .tables
        .iter()
        .zip(&keys)
        .zip(&versions)
        .zip(&history_keys)
    {
        let dataset = &input.record.id;
        let sources = selected
            .iter()
            .zip(verified.by_ref())
            .map(|(v, ciphertext)| {
                ciphertext.open(key).map_err(|e| WorkloadError::Dataset {
                    id: dataset.clone(),
                    what: format!(
                        "table {name}, version {}: its ciphertext does not open under the key \
                         the broker released ({e})",
                        v.number
                    ),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let history = match (gov.history(dataset), history_key) {
            (Some(step), Some(key)) => history::read(blobs, runtime, step, key)?,
            _ => History::default(),
        };
        tables.push(Table {
            name: name.clone(),
            format: input.record.format,
            schema: input.schema.clone(),
            sources,
            privacy: input.privacy.clone(),
            history,
        });
    }

    let contract = &approved.contract;
    let released = match runtime.block_on(confide_cleanroom::runner::run(
        &contract.sql,
        tables,
        &contract.output,
    )) {
        Ok(r) => r,
        Err(e) => {
            if let CleanroomError::OutputRefused(refusal) = &e {
                let refusal = refusal.clone();
                attesting.report(id, model::RunOutcome::Refused { refusal })?;
            }
            return Err(e.into());
        }
    };

    // Each dataset's history moved on, stored before the run is recorded (a history no record
    // names is never read).
    let mut steps = Vec::new();
    for ((table, input), key) in approved.tables.iter().zip(&history_keys) {
        let (Some(history), Some(key)) = (released.histories.get(table), key) else {
            continue;
        };
        let dataset = &input.record.id;
        steps.push(history::write(
            blobs,
            runtime,
            dataset,
            gov.history(dataset),
            history,
            key,
        )?);
    }

    // The result, encrypted to each recipient's key as the ledger holds it, and stored once
    // the run is recorded: a run the ledger refuses (one that checked its groups against a
    // history another run has moved on since) leaves nothing a recipient can read.
    let written = steps;
    let recipients: Vec<HpkePublicKey> =
        approved.recipients.iter().map(|r| *r.hpke_key()).collect();
    let ciphertext = confide_crypto::envelope::encrypt_bytes(&recipients, &released.csv)?;
    let output_digest = hex::encode(confide_crypto::digest::sha256(&ciphertext));
    let location = format!("results/{output_digest}.cfd");
    let r = attesting.report(
        id,
        model::RunOutcome::Released {
            inputs,
            output: RunOutput {
                epsilon: contract.output.noise.map(|n| n.epsilon),
                digest: output_digest,
                location: location.clone(),
                rows: released.rows,
                suppressed: released.suppressed,
                recipients: contract.recipients.clone(),
                rule: contract.output.rule,
                counted: released.counted,
                history: written.clone(),
            },
        },
    )?;
    // The result is stored only once the run is on the ledger as this workload verifies it,
    // with no fork of the histories it moved on: a server that answered "recorded" without
    // appending, or appended two runs from one history, gets nothing a recipient can read.
    let after = VerifiedLedger::fetch(client, &launch.ledger_key)?;
    after.run(&r.run)?;
    let gov = after.governance()?;
    if let Some(step) = written.iter().find(|s| gov.history_forked(&s.dataset)) {
        return Err(WorkloadError::NotRunnable {
            reason: format!(
                "the ledger records another run from the difference-check history run {} \
                 started from (dataset {}): its result is not stored",
                r.run, step.dataset
            ),
        });
    }
    runtime.block_on(blobs.put(&location, ciphertext))?;
    Ok(RunOutcome {
        run: r.run,
        rows: released.rows,
        suppressed: released.suppressed,
        simulated: r.record.simulated,
        audit_seq: r.audit_seq,
    })
}

/// A contract the verified ledger says cannot run. The key broker is asked all the same (for
/// the first dataset the contract names, if any), so that the refusal is on the ledger for
/// the owners to see; nothing it answers changes the outcome.
fn refuse(
    attesting: &Attesting<'_>,
    token: &str,
    id: &ContractId,
    gov: &confide_gov::Governance,
    state: &NotRunnable,
) -> WorkloadError {
    let key = gov
        .contracts()
        .get(id)
        .and_then(|c| c.datasets.first())
        .and_then(|d| gov.datasets().get(d))
        .map_or("dataset-none", |d| d.key.as_str())
        .to_owned();
    let broker = match attesting.release(token, &key, id) {
        Err(WorkloadError::Client(e)) => format!("; the key broker: {e}"),
        _ => String::new(),
    };
    let reason = match state {
        NotRunnable::NotApproved => format!(
            "no approved contract {id} on the ledger: a contract runs only once every owner of \
             its datasets has approved it{broker}"
        ),
        NotRunnable::Revoked => format!("contract {id} is revoked on the ledger{broker}"),
    };
    WorkloadError::NotRunnable { reason }
}

#[cfg(test)]
mod tests {
    use super::Tee;

    #[test]
    fn the_tee_is_what_the_flags_say_and_nothing_else() {
        assert_eq!(Tee::from_flags(false, None), Ok(Tee::Hardware));
        assert_eq!(
            Tee::from_flags(true, None),
            Ok(Tee::Simulated(confide_attest::sim::default_measurement()))
        );
        assert_eq!(
            Tee::from_flags(true, Some(&"ab".repeat(48))),
            Ok(Tee::Simulated([0xab; 48]))
        );
        // No silent simulation, and no measurement that is not one.
        assert!(Tee::from_flags(false, Some(&"ab".repeat(48))).is_err());
        for bad in ["", "ab", "zz", &"ab".repeat(49)] {
            assert!(Tee::from_flags(true, Some(bad)).is_err(), "{bad}");
        }
    }
}

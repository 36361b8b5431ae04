//! What a workload reports of a run, signed with its attested signing key
//! ([`crate::RuntimeKeys::signing`]): a bearer token seen on the wire forges no run.
//!
//! The signature covers [`RUN_REPORT_CONTEXT`] followed by the RFC 8785 canonical JSON of the
//! report; the report's id is the first 16 bytes of the SHA-256 of that same message, so one
//! signed report records at most one run, and a replayed report is known by its id.

use confide_crypto::signing::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::{ContractId, DatasetId, MemberId, ModelError, RunId, b64url, unb64url};

/// The domain separation of a run report's signature.
pub const RUN_REPORT_CONTEXT: &[u8] = b"confide/run-report/v1\n";

/// A dataset a run read, and the digest of the ciphertext it read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunInput {
    /// The dataset's id.
    pub dataset: DatasetId,
    /// SHA-256 of its ciphertext, hex.
    pub digest: String,
}

/// Where a run's result went: encrypted to the recipients, stored at `location`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunOutput {
    /// SHA-256 of the encrypted result, hex.
    pub digest: String,
    /// Where it is stored, relative to the blob store.
    pub location: String,
    /// The result's rows.
    pub rows: u64,
    /// The rows the output rules left out.
    pub suppressed: u64,
    /// The members it is encrypted to.
    pub recipients: Vec<MemberId>,
    /// The analysis rule the engine enforced (the contract's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<crate::contract::AnalysisRule>,
    /// What the engine counted behind each row: `table.column` per table (aggregation rule)
    /// or the identity domains (list rule).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counted: Vec<String>,
    /// The ε the run spent adding noise (the contract's), charged to every dataset it read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<crate::Epsilon>,
    /// The difference-check histories the run read and wrote, one per dataset whose
    /// individuals its groups counted (exact results only: a noised one is covered by the
    /// budget instead).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryStep>,
}

/// One dataset's difference-check history moved on by a run: the sets of individuals behind
/// every group released from the dataset so far, encrypted to the dataset's key, stored at
/// `location`. Each run starts from the history the last one left (`from`), so the ledger
/// holds one chain of them per dataset, and a run that started from an older one is not
/// recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryStep {
    /// The dataset.
    pub dataset: DatasetId,
    /// SHA-256 of the history the run started from, hex; none for the dataset's first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// SHA-256 of the history it left, hex.
    pub to: String,
    /// Where that is stored, relative to the blob store.
    pub location: String,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RunOutcome {
    /// The result passed the output rules and was stored for the recipients.
    Released {
        /// What it read.
        inputs: Vec<RunInput>,
        /// What it wrote.
        output: RunOutput,
    },
    /// The output rules refused the result; nothing was stored.
    Refused {
        /// Which rule, with the figures that broke it and no value of the data.
        refusal: Refusal,
    },
}

/// Which output rule refused a result, as data: the column names are the contract's SQL's,
/// the figures are counts of rows; no value of any row is in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "rule", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Refusal {
    /// The result has a column the contract does not let leave.
    #[error(
        "the result has the column {column:?}, which the contract does not let leave (allowed: \
         {})",
        .allowed.join(", ")
    )]
    ColumnNotAllowed {
        /// The column.
        column: String,
        /// The columns the contract lets leave.
        allowed: Vec<String>,
    },
    /// The result lacks the column that counts the individuals behind each row.
    #[error("the result lacks the column {column:?} that counts the individuals behind each row")]
    NoCountColumn {
        /// The count column the contract names.
        column: String,
    },
    /// The count column does not hold integers.
    #[error("the column {column:?} that counts the individuals is not an integer count")]
    NotACount {
        /// The count column.
        column: String,
    },
    /// Rows have fewer individuals than the minimum, and the contract says to refuse.
    #[error(
        "{rows} row(s) have fewer than {min} distinct individuals in {column:?}; the contract \
         says to refuse such a result"
    )]
    GroupTooSmall {
        /// How many rows.
        rows: u64,
        /// The minimum.
        min: u64,
        /// The count column.
        column: String,
    },
    /// Rows differ from a group released earlier by fewer individuals than the minimum, and
    /// the contract says to refuse.
    #[error(
        "{rows} row(s) differ from a group released earlier by fewer than {min} distinct \
         individuals in {column:?} (a difference check); the contract says to refuse such a \
         result"
    )]
    TooCloseToEarlier {
        /// How many rows.
        rows: u64,
        /// The minimum.
        min: u64,
        /// The identity column.
        column: String,
    },
    /// The result has more rows than the contract allows.
    #[error("the result has {rows} rows; the contract allows at most {max}")]
    TooManyRows {
        /// How many rows it has.
        rows: u64,
        /// The most the contract allows.
        max: u64,
    },
}

/// What the run log records on the ledger for a run (`cleanroom.run`) or a refused result
/// (`cleanroom.refused`): the workload's report as it signed it, with who signed it, under
/// which token, and whether that token stood on simulated evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRecord {
    /// `cleanroom.run` or `cleanroom.refused`.
    #[serde(rename = "type")]
    pub kind: RunRecordKind,
    /// The report's id ([`RunReport::id`]).
    pub run: RunId,
    /// The contract's id.
    pub contract: ContractId,
    /// SHA-256 of the workload's token, hex.
    pub token: String,
    /// Whether the token stood on simulated evidence.
    pub simulated: bool,
    /// When it was recorded (Unix seconds).
    pub at: i64,
    /// The report's nonce.
    pub nonce: String,
    /// The workload's signing key (SEC1, base64url), which its evidence bound.
    pub signed_by: String,
    /// The report's signature.
    pub signature: String,
    /// What a released run read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Vec<RunInput>>,
    /// What a released run wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<RunOutput>,
    /// Why a result was refused, as data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Refusal>,
    /// The same, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The answer of `POST /cleanroom/runs`: the record as it went on the ledger, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRecorded {
    /// The run's id.
    pub run: RunId,
    /// The record.
    pub record: RunRecord,
    /// Its ledger position.
    pub audit_seq: u64,
}

/// The two kinds of run record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunRecordKind {
    /// A result released to the recipients.
    #[serde(rename = "cleanroom.run")]
    Run,
    /// A result the output rules refused.
    #[serde(rename = "cleanroom.refused")]
    Refused,
}

impl crate::Event for RunRecord {
    const TYPES: &'static [&'static str] = &["cleanroom.run", "cleanroom.refused"];
    const FIELD: &'static str = "run record";
}

impl RunRecord {
    /// The record of `signed`, whose id is `run`, signed by `signed_by` (SEC1), under a token
    /// with digest `token`.
    pub fn of(
        signed: &SignedRunReport,
        token: String,
        simulated: bool,
        at: i64,
        signed_by: &VerifyingKey,
    ) -> Self {
        let report = &signed.report;
        let mut record = Self {
            kind: RunRecordKind::Run,
            run: report.id(),
            contract: report.contract.clone(),
            token,
            simulated,
            at,
            nonce: report.nonce.clone(),
            signed_by: b64url(&signed_by.to_sec1()),
            signature: signed.signature.clone(),
            inputs: None,
            output: None,
            refusal: None,
            reason: None,
        };
        match &report.outcome {
            RunOutcome::Released { inputs, output } => {
                record.inputs = Some(inputs.clone());
                record.output = Some(output.clone());
            }
            RunOutcome::Refused { refusal } => {
                record.kind = RunRecordKind::Refused;
                record.reason = Some(format!("the result is refused: {refusal}"));
                record.refusal = Some(refusal.clone());
            }
        }
        record
    }

    /// The report the workload signed, rebuilt from the record, and the key that signed it:
    /// the record stands only if that signature verifies ([`SignedRunReport::verify`]) and the
    /// report's id is the record's.
    pub fn signed_report(&self) -> Result<(SignedRunReport, VerifyingKey), ModelError> {
        let malformed = |field, detail: &str| ModelError::Malformed {
            field,
            detail: detail.to_owned(),
        };
        let outcome = match (self.kind, &self.inputs, &self.output, &self.refusal) {
            (RunRecordKind::Run, Some(inputs), Some(output), None) => RunOutcome::Released {
                inputs: inputs.clone(),
                output: output.clone(),
            },
            (RunRecordKind::Refused, None, None, Some(refusal)) => RunOutcome::Refused {
                refusal: refusal.clone(),
            },
            _ => return Err(malformed("type", "the record's fields are not its kind's")),
        };
        let signer = VerifyingKey::from_sec1(&unb64url(&self.signed_by, "signed_by")?)
            .map_err(|_| malformed("signed_by", "not a P-256 point"))?;
        let signed = SignedRunReport {
            token: String::new(),
            report: RunReport {
                contract: self.contract.clone(),
                nonce: self.nonce.clone(),
                outcome,
            },
            signature: self.signature.clone(),
        };
        Ok((signed, signer))
    }
}

/// A workload's report of one run of a contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunReport {
    /// The contract's id.
    pub contract: ContractId,
    /// 16 random bytes, hex: two reports of the same outcome are still two reports.
    pub nonce: String,
    /// How it ended.
    pub outcome: RunOutcome,
}

/// A run report as the run log receives it: the workload's token, the report, and the
/// signature of the key the token's evidence binds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedRunReport {
    /// The workload's attestation token.
    pub token: String,
    /// The report.
    pub report: RunReport,
    /// ES256 (raw r || s), base64url.
    pub signature: String,
}

impl RunReport {
    /// What the signature covers: the context, then the report's canonical JSON.
    pub fn message(&self) -> Vec<u8> {
        let value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        let mut message = RUN_REPORT_CONTEXT.to_vec();
        message.extend_from_slice(confide_crypto::jcs::canonical_json(&value).as_bytes());
        message
    }

    /// The report's id: the first 16 bytes of the SHA-256 of [`Self::message`]. The one
    /// place a run id is computed.
    pub fn id(&self) -> RunId {
        RunId::of_digest(&confide_crypto::digest::sha256(&self.message()))
    }

    /// Signs the report with the workload's runtime signing key.
    pub fn sign(
        self,
        key: &SigningKey,
        token: String,
    ) -> Result<SignedRunReport, confide_crypto::CryptoError> {
        let signature = b64url(&key.sign(&self.message())?);
        Ok(SignedRunReport {
            token,
            report: self,
            signature,
        })
    }
}

impl SignedRunReport {
    /// Reads a signed report: exactly these fields, each of its type.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ModelError> {
        crate::unique_keys(bytes, "run report")?;
        serde_json::from_slice(bytes).map_err(|e| ModelError::Malformed {
            field: "run report",
            detail: e.to_string(),
        })
    }

    /// Checks the signature under `key`, the signing key the token's evidence binds.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), ModelError> {
        let signature = unb64url(&self.signature, "signature")?;
        key.verify(&self.report.message(), &signature)
            .map_err(|_| ModelError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn released() -> RunReport {
        RunReport {
            contract: "c0".repeat(32).parse().unwrap(),
            nonce: "ab".repeat(16),
            outcome: RunOutcome::Released {
                inputs: vec![RunInput {
                    dataset: "d1".parse().unwrap(),
                    digest: "00".repeat(32),
                }],
                output: RunOutput {
                    history: Vec::new(),
                    epsilon: None,
                    digest: "11".repeat(32),
                    location: "results/x.cfd".into(),
                    rows: 3,
                    suppressed: 1,
                    recipients: vec!["22".repeat(32).parse().unwrap()],
                    rule: Some(crate::AnalysisRule::List { min_identities: 3 }),
                    counted: vec!["account".into()],
                },
            },
        }
    }

    #[test]
    fn a_run_record_gives_back_the_report_its_workload_signed() {
        let key = SigningKey::generate().unwrap();
        let signed = released().sign(&key, "token".into()).unwrap();
        let record = RunRecord::of(&signed, "ab".repeat(32), true, 7, &key.verifying_key());
        assert_eq!(record.kind, RunRecordKind::Run);
        assert_eq!(record.run, signed.report.id());
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["type"], "cleanroom.run");
        let read: RunRecord = serde_json::from_value(json.clone()).unwrap();
        let (again, signer) = read.signed_report().unwrap();
        again.verify(&signer).unwrap();
        assert_eq!(again.report, signed.report);
        // A refused result: the refusal as data, and the words beside it.
        let mut no = released();
        no.outcome = RunOutcome::Refused {
            refusal: Refusal::GroupTooSmall {
                rows: 1,
                min: 3,
                column: "n".into(),
            },
        };
        let no = no.sign(&key, "token".into()).unwrap();
        let record = RunRecord::of(&no, "ab".repeat(32), false, 7, &key.verifying_key());
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["refusal"]["rule"], "group_too_small");
        assert!(json["reason"].as_str().unwrap().contains("fewer than 3"));
        let (again, signer) = record.signed_report().unwrap();
        again.verify(&signer).unwrap();
        // Fields of the other kind, or no word on simulation: not a record.
        let mut mixed = record.clone();
        mixed.output = Some(RunOutput {
            history: Vec::new(),
            epsilon: None,
            digest: "00".repeat(32),
            location: "results/x.cfd".into(),
            rows: 1,
            suppressed: 0,
            recipients: vec![],
            rule: None,
            counted: vec![],
        });
        assert!(mixed.signed_report().is_err());
        let mut silent = json.clone();
        silent.as_object_mut().unwrap().remove("simulated");
        assert!(serde_json::from_value::<RunRecord>(silent).is_err());
    }

    #[test]
    fn a_report_verifies_only_under_its_key_and_as_signed() {
        let key = SigningKey::generate().unwrap();
        let signed = released().sign(&key, "token".into()).unwrap();
        signed.verify(&key.verifying_key()).unwrap();
        let wire = serde_json::to_vec(&signed).unwrap();
        assert_eq!(SignedRunReport::from_json(&wire).unwrap(), signed);

        // Another key: refused.
        let other = SigningKey::generate().unwrap().verifying_key();
        assert_eq!(signed.verify(&other), Err(ModelError::BadSignature));
        // Any change to what was reported: refused.
        let mut changed = signed.clone();
        if let RunOutcome::Released { output, .. } = &mut changed.report.outcome {
            output.recipients = vec!["33".repeat(32).parse().unwrap()];
        }
        assert_eq!(
            changed.verify(&key.verifying_key()),
            Err(ModelError::BadSignature)
        );
        let mut refused = signed.clone();
        refused.report.outcome = RunOutcome::Refused {
            refusal: Refusal::TooManyRows { rows: 2, max: 1 },
        };
        assert!(refused.verify(&key.verifying_key()).is_err());
        // The token is not what the signature covers, but the id is the report's alone.
        let mut retokened = signed.clone();
        retokened.token = "another".into();
        assert_eq!(retokened.report.id(), signed.report.id());
        // Unknown fields and wrong types are refused by name.
        let mut value: serde_json::Value = serde_json::from_slice(&wire).unwrap();
        value["report"]["extra"] = serde_json::json!(1);
        let err = SignedRunReport::from_json(value.to_string().as_bytes()).unwrap_err();
        assert!(err.to_string().contains("extra"), "{err}");
        let mut value: serde_json::Value = serde_json::from_slice(&wire).unwrap();
        value["report"]["outcome"]["released"]["output"]["rows"] = serde_json::json!("3");
        assert!(SignedRunReport::from_json(value.to_string().as_bytes()).is_err());
    }

    #[test]
    fn the_id_changes_with_every_field() {
        let base = released();
        let mut nonce = base.clone();
        nonce.nonce = "cd".repeat(16);
        let mut contract = base.clone();
        contract.contract = "c1".repeat(32).parse().unwrap();
        let ids = [base.id(), nonce.id(), contract.id()];
        assert_eq!(ids[0].as_str().len(), 32);
        assert!(ids[0] != ids[1] && ids[0] != ids[2] && ids[1] != ids[2]);
    }
}

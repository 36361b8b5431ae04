//! The appraisal of verified evidence: what the consortium's rules make of claims that
//! `confide_attest` has verified. A pure function of its inputs: the claims, what the evidence
//! must bind, the measurements the consortium trusts, the appraisal policy (the consortium's,
//! named `appraisal`, or the built-in one) and the server's profile. The attestation service
//! verifies, then asks this; the token it signs carries what this decided.
//!
//! Two things are decided here whatever the policy says: the binding (the report data must be
//! the digest of the runtime data, then zeros), and whether the code is one the consortium
//! trusts (`matched`: the evidence's own primary measurement, from `attest`'s one table, is
//! among the trusted ones for its kind). Only matched code on an up-to-date platform, neither
//! simulated nor debug, is affirming.

use std::collections::BTreeSet;

use confide_attest::{TcbStatus, TeeKind, VerifiedClaims};
use confide_model::Measurement;
use confide_policy::Policy;
use serde_json::{Value, json};

use crate::Governance;

/// The built-in appraisal policy.
pub const DEFAULT_APPRAISAL: &str = confide_policy::APPRAISAL;

/// Why evidence that verified earns no token. Each variant names its rule
/// ([`AppraisalDenied::rule`]), the stable problem type the service answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AppraisalDenied {
    /// The report data is not the digest of the runtime data given (then zeros).
    #[error("the report data is not the hash of the runtime data given")]
    NotBound,
    /// The appraisal policy denied it, naming each rule and claim.
    #[error("{0}")]
    Policy(String),
    /// The policy could not be evaluated (it did not compile, or ran out of time): no decision
    /// is a refusal.
    #[error("the appraisal policy could not decide: {0}")]
    Undecided(String),
}

impl AppraisalDenied {
    /// The rule broken, as a stable name.
    pub fn rule(&self) -> &'static str {
        match self {
            Self::NotBound => "runtime-data-not-bound",
            Self::Policy(_) => "appraisal-denied",
            Self::Undecided(_) => "appraisal-undecided",
        }
    }
}

/// How far the result vouches for the evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Code the consortium trusts, on an up-to-date platform, neither simulated nor debug.
    Affirming,
    /// Anything less that the policy still let through.
    Warning,
}

impl Status {
    /// The EAR status's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Affirming => "affirming",
            Self::Warning => "warning",
        }
    }
}

/// What the appraisal decided of evidence it let through.
#[derive(Debug, Clone, PartialEq)]
pub struct Appraisal {
    /// The evidence's kind.
    pub kind: TeeKind,
    /// Whether it was simulated.
    pub simulated: bool,
    /// The verified claims as the token carries them (without the raw report).
    pub claims: Value,
    /// Affirming or warning.
    pub status: Status,
    /// The platform's TCB is up to date (or reports no status).
    pub tcb_ok: bool,
    /// The evidence's primary measurement is one the consortium trusts for its kind.
    pub matched: bool,
    /// `confide/appraisal/` and the first 8 bytes of the policy text's SHA-256, hex.
    pub policy_id: String,
    /// What the evidence binds.
    pub report_data: Vec<u8>,
}

/// The appraisal policy in force and what the service's profile allows.
#[derive(Debug)]
pub struct Appraiser {
    policy: Policy,
    policy_id: String,
    trusted: BTreeSet<Measurement>,
    /// Whether this is a development server (`--dev`): the only profile in which the policy
    /// may allow simulated evidence.
    dev: bool,
}

impl Appraiser {
    /// The consortium's appraisal policy (or the built-in one) and trusted measurements, for a
    /// server of this profile.
    pub fn of(gov: &Governance, dev: bool) -> Result<Self, AppraisalDenied> {
        let text = gov
            .policies()
            .get("appraisal")
            .map_or(DEFAULT_APPRAISAL, String::as_str);
        Self::new(text, gov.measurements().clone(), dev)
    }

    /// An appraiser with this policy text and these trusted measurements.
    pub fn new(
        text: &str,
        trusted: BTreeSet<Measurement>,
        dev: bool,
    ) -> Result<Self, AppraisalDenied> {
        let policy = Policy::new("appraisal.rego", text)
            .map_err(|e| AppraisalDenied::Undecided(e.to_string()))?;
        let policy_id = format!(
            "confide/appraisal/{}",
            hex::encode(&confide_crypto::digest::sha256(text.as_bytes())[..8])
        );
        Ok(Self {
            policy,
            policy_id,
            trusted,
            dev,
        })
    }

    fn profile(&self) -> Value {
        json!({"insecure_allow_simulated_tee": self.dev})
    }

    /// Whether simulated evidence may verify: both the profile (a sealed server never accepts
    /// it, whatever policy governance sets) and the policy must allow it.
    pub fn allows_simulated(&self) -> Result<bool, AppraisalDenied> {
        if !self.dev {
            return Ok(false);
        }
        let allowed = self
            .policy
            .eval(
                "data.confide.appraisal.insecure_allow_simulated_tee",
                &json!({ "profile": self.profile() }),
            )
            .map_err(|e| AppraisalDenied::Undecided(e.to_string()))?;
        Ok(allowed == json!(true))
    }

    /// Appraises `claims`, which must bind `binding` (when given); `fresh` says whether the
    /// binding includes a challenge of this service.
    pub fn appraise(
        &self,
        claims: &VerifiedClaims,
        binding: Option<&[u8]>,
        fresh: bool,
    ) -> Result<Appraisal, AppraisalDenied> {
        if let Some(digest) = binding {
            let report_data = claims.report_data();
            let bound = report_data.len() >= digest.len()
                && report_data[..digest.len()] == digest[..]
                && report_data[digest.len()..].iter().all(|&b| b == 0);
            if !bound {
                return Err(AppraisalDenied::NotBound);
            }
        }
        let kind = claims.kind();
        let mut claims_json = serde_json::to_value(claims)
            .map_err(|e| AppraisalDenied::Undecided(format!("the claims: {e}")))?;
        if let Some(m) = claims_json.as_object_mut() {
            m.remove("report");
        }
        // The primary measurement's claim comes from the one table of it, in `attest`.
        let primary = kind.primary_measurement().map(|(claim, _)| claim);
        let input = json!({
            "claims": claims_json,
            "reference": {"measurements": self.trusted, "primary": primary},
            "fresh": fresh,
            "profile": self.profile(),
        });
        let denials = self
            .policy
            .eval("data.confide.appraisal.deny", &input)
            .map_err(|e| AppraisalDenied::Undecided(e.to_string()))?;
        // A set of denials, empty or not, is a decision; anything else (an undefined `deny`,
        // as a complete rule whose condition failed gives) is none, and no decision refuses.
        let denials = match denials {
            Value::Array(d) => d,
            other => {
                return Err(AppraisalDenied::Undecided(format!(
                    "deny is not a set of denials but {other}"
                )));
            }
        };
        if !denials.is_empty() {
            let text = |d: &Value, field: &str| {
                d.get(field)
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_owned()
            };
            let detail = denials
                .iter()
                .map(|d| {
                    format!(
                        "rule {} on claim {}: {}",
                        text(d, "rule"),
                        text(d, "claim"),
                        text(d, "detail")
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            return Err(AppraisalDenied::Policy(detail));
        }
        let tcb_ok = matches!(claims.tcb().status, None | Some(TcbStatus::UpToDate));
        // Matched only when this evidence's own primary measurement is one the consortium
        // trusts for this kind, whatever the appraisal policy (the consortium's may be
        // another) checked.
        let matched = primary
            .and_then(|claim| claims.measurement(claim))
            .and_then(|m| Measurement::new(kind, m.to_vec()).ok())
            .is_some_and(|m| self.trusted.contains(&m));
        let status = if matched && tcb_ok && !claims.simulated() && !claims.debug() {
            Status::Affirming
        } else {
            Status::Warning
        };
        Ok(Appraisal {
            kind,
            simulated: claims.simulated(),
            claims: claims_json,
            status,
            tcb_ok,
            matched,
            policy_id: self.policy_id.clone(),
            report_data: claims.report_data().to_vec(),
        })
    }
}

//! Policies written in Rego and evaluated with regorus: a constitution decides proposals, and
//! (with the key broker) policies decide attestation and key release.
//!
//! A [`Policy`] is compiled once from its text; each evaluation runs on a copy with the input
//! set, so evaluations never see each other's input. Every result is plain JSON.
//!
//! Policies come from members (constitutions, release policies), so an evaluation is bounded:
//! [`Policy::eval`] stops after [`TIME_LIMIT`] and says so ([`PolicyError::TimeLimit`]). Only
//! replaying what was already accepted under that bound evaluates without it
//! ([`Policy::eval_within`] with `None`), so that a slower machine reaches the same decisions.

#![forbid(unsafe_code)]

use std::time::Duration;

/// How long one evaluation may run.
pub const TIME_LIMIT: Duration = Duration::from_millis(250);

/// Why a policy could not be loaded or evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The Rego text does not compile.
    #[error("the policy does not compile: {0}")]
    Compile(String),
    /// The evaluation ran past its time limit and was stopped.
    #[error("the policy did not decide {rule} within {} ms", limit.as_millis())]
    TimeLimit {
        /// The rule asked for.
        rule: String,
        /// The limit.
        limit: Duration,
    },
    /// Evaluation failed (an error in the policy, or an input it cannot handle).
    #[error("the policy failed to evaluate {rule}: {message}")]
    Eval {
        /// The rule asked for.
        rule: String,
        /// What went wrong.
        message: String,
    },
}

/// A compiled Rego policy.
#[derive(Clone)]
pub struct Policy {
    engine: regorus::Engine,
    source: String,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("bytes", &self.source.len())
            .finish()
    }
}

impl Policy {
    /// Compiles `rego` (one module); `name` is used in error messages.
    pub fn new(name: &str, rego: &str) -> Result<Self, PolicyError> {
        let mut engine = regorus::Engine::new();
        engine
            .add_policy(name.to_owned(), rego.to_owned())
            .map_err(|e| PolicyError::Compile(e.to_string()))?;
        Ok(Self {
            engine,
            source: rego.to_owned(),
        })
    }

    /// The policy's text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates `rule` (e.g. `data.confide.constitution.decision`) with `input`, within
    /// [`TIME_LIMIT`]. An undefined rule is JSON `null`.
    pub fn eval(
        &self,
        rule: &str,
        input: &serde_json::Value,
    ) -> Result<serde_json::Value, PolicyError> {
        self.eval_within(rule, input, Some(TIME_LIMIT))
    }

    /// [`Self::eval`] within `limit`, or without a limit (`None`: only to replay decisions
    /// that were reached within one).
    pub fn eval_within(
        &self,
        rule: &str,
        input: &serde_json::Value,
        limit: Option<Duration>,
    ) -> Result<serde_json::Value, PolicyError> {
        let err = |message: String| PolicyError::Eval {
            rule: rule.to_owned(),
            message,
        };
        let mut engine = self.engine.clone();
        if let Some(limit) = limit {
            engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
                limit,
                check_interval: std::num::NonZeroU32::MIN,
            });
        }
        let input =
            regorus::Value::from_json_str(&input.to_string()).map_err(|e| err(e.to_string()))?;
        engine.set_input(input);
        let value = engine.eval_rule(rule.to_owned()).map_err(|e| {
            match (
                e.downcast_ref::<regorus::utils::limits::LimitError>(),
                limit,
            ) {
                (
                    Some(regorus::utils::limits::LimitError::TimeLimitExceeded { .. }),
                    Some(limit),
                ) => PolicyError::TimeLimit {
                    rule: rule.to_owned(),
                    limit,
                },
                _ => err(e.to_string()),
            }
        })?;
        if value == regorus::Value::Undefined {
            return Ok(serde_json::Value::Null);
        }
        let text = value.to_json_str().map_err(|e| err(e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| err(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn evaluates_with_input_and_reports_errors() {
        let p = Policy::new(
            "t.rego",
            "package t\nimport rego.v1\nallow if input.x > 1\nlabel := sprintf(\"x=%v\", [input.x])\n",
        )
        .unwrap();
        assert_eq!(
            p.eval("data.t.allow", &json!({"x": 2})).unwrap(),
            json!(true)
        );
        assert_eq!(
            p.eval("data.t.allow", &json!({"x": 0})).unwrap(),
            json!(null)
        );
        assert_eq!(
            p.eval("data.t.label", &json!({"x": 3})).unwrap(),
            json!("x=3")
        );
        assert!(Policy::new("bad.rego", "package t\nallow if {").is_err());
    }

    /// A policy that would run for minutes is stopped at the limit, and says so; without a
    /// limit (replay) the same policy on a small input decides.
    #[test]
    fn an_expensive_policy_is_stopped_at_the_time_limit() {
        let p = Policy::new(
            "slow.rego",
            "package t\nimport rego.v1\n\
             n := count([x | some a in numbers.range(1, input.n); some b in numbers.range(1, input.n); x := a * b])\n",
        )
        .unwrap();
        let started = std::time::Instant::now();
        let err = p.eval("data.t.n", &json!({"n": 100_000})).unwrap_err();
        assert!(
            matches!(err, PolicyError::TimeLimit { ref rule, .. } if rule == "data.t.n"),
            "{err}"
        );
        assert!(
            started.elapsed() < TIME_LIMIT * 20,
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            p.eval_within("data.t.n", &json!({"n": 10}), None).unwrap(),
            json!(100)
        );
    }
}

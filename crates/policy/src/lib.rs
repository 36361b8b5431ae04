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
//!
//! The timer is checked between evaluation steps, so a policy may not call a builtin that makes
//! one step as large as its argument asks (`numbers.range`: one call of it allocated 2.4 PB and
//! aborted the process), nor one whose answer changes from one evaluation to the next
//! (`rand.intn`, `time.now_ns`, …: a replay would decide otherwise): [`FORBIDDEN_BUILTINS`]
//! are refused when a policy is compiled.

#![forbid(unsafe_code)]

use std::time::Duration;

/// The constitution a consortium starts with (governance).
pub const CONSTITUTION: &str = include_str!("constitution.rego");
/// The attestation service's built-in appraisal policy.
pub const APPRAISAL: &str = include_str!("appraisal.rego");
/// The release policy of a key whose owner gave none: released to no one.
pub const RELEASE_DENY: &str = include_str!("release/deny.rego");
/// A release policy: to a workload whose token shows code the consortium trusts.
pub const RELEASE_ATTESTED: &str = include_str!("release/attested.rego");
/// The release policy of a dataset's key: as [`RELEASE_ATTESTED`], for an approved contract.
pub const RELEASE_DATASET: &str = include_str!("release/dataset.rego");
/// The resource policy of a KBS resource whose owner gave none: given to no one.
pub const RESOURCE_DENY: &str = include_str!("resource/deny.rego");
/// A resource policy: to a workload whose token shows code the consortium trusts.
pub const RESOURCE_ATTESTED: &str = include_str!("resource/attested.rego");
/// A resource policy for the development profile only: to a workload on simulated evidence
/// (`sim`, or Trustee's `sample`, which measures nothing); a sealed server issues no such token.
pub const RESOURCE_INSECURE_SIMULATED: &str = include_str!("resource/insecure_simulated.rego");

/// How long one evaluation may run.
pub const TIME_LIMIT: Duration = Duration::from_millis(250);

/// Builtins no policy may call: those whose one call allocates as much as its argument asks,
/// and those that answer differently each time (a decision must be the same on replay) or
/// reach outside the evaluation.
pub const FORBIDDEN_BUILTINS: &[&str] = &[
    "numbers.range",
    "numbers.range_step",
    "rand.intn",
    "time.now_ns",
    "uuid.rfc4122",
    "http.send",
    "net.lookup_ip_addr",
    "opa.runtime",
    "trace",
    "print",
];

/// The first forbidden builtin `rego` calls, if any. The text is read without its comments and
/// whitespace, and `a["b"]` as `a.b`, so that no spelling of a reference hides one.
fn forbidden_builtin(rego: &str) -> Option<&'static str> {
    let mut text = String::with_capacity(rego.len());
    let mut chars = rego.chars().peekable();
    let mut in_string: Option<char> = None;
    while let Some(c) = chars.next() {
        match in_string {
            Some(q) => {
                if c == '\\' && q == '"' {
                    if let Some(escaped) = chars.next() {
                        text.push(escaped);
                    }
                    continue;
                }
                if c == q {
                    in_string = None;
                    text.push('"');
                    continue;
                }
                text.push(c);
            }
            None => match c {
                '#' => {
                    for rest in chars.by_ref() {
                        if rest == '\n' {
                            break;
                        }
                    }
                    text.push(' ');
                }
                '"' | '`' => {
                    in_string = Some(c);
                    text.push('"');
                }
                c if c.is_whitespace() => {}
                c => text.push(c),
            },
        }
    }
    let text = text.replace("[\"", ".").replace("\"]", "");
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    FORBIDDEN_BUILTINS.iter().copied().find(|name| {
        text.match_indices(name).any(|(at, _)| {
            let before = text[..at].chars().next_back();
            let after = text[at + name.len()..].chars().next();
            !before.is_some_and(|c| is_ident(c) || c == '.') && !after.is_some_and(is_ident)
        })
    })
}

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
    /// Compiles `rego` (one module); `name` is used in error messages. A policy that calls one
    /// of [`FORBIDDEN_BUILTINS`] is refused.
    pub fn new(name: &str, rego: &str) -> Result<Self, PolicyError> {
        if let Some(builtin) = forbidden_builtin(rego) {
            return Err(PolicyError::Compile(format!(
                "{name} calls {builtin}, which no policy may call (it can allocate without \
                 bound in one step, or decide differently on replay)"
            )));
        }
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
             d := [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n\
             n := count([x | some h in input.h; some a in d; some b in d; some c in d; some e in d; some f in d; some g in d; x := [a, b, c, e, f, g, h]])\n",
        )
        .unwrap();
        let started = std::time::Instant::now();
        let err = p
            .eval("data.t.n", &json!({"h": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]}))
            .unwrap_err();
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
            p.eval_within("data.t.n", &json!({"h": []}), None).unwrap(),
            json!(0)
        );
    }

    /// Builtins that allocate as their argument asks, or decide differently each time, are
    /// refused however the reference is spelled; the same names in comments or inside other
    /// identifiers are not. (A string spelling one is refused too: the check errs on the side
    /// of refusing.)
    #[test]
    fn forbidden_builtins_are_refused_in_every_spelling() {
        for call in [
            "count(numbers.range(1, 100000000000000)) > 0",
            "count(numbers . range(1, 10)) > 0",
            "count(numbers[\"range\"](1, 10)) > 0",
            "count(numbers.range_step(1, 10, 1)) > 0",
            "rand.intn(\"x\", 2) == 1",
            "time.now_ns() > 0",
        ] {
            let rego = format!("package t\nimport rego.v1\nallow if {{\n\t{call}\n}}\n");
            let err = Policy::new("p.rego", &rego).unwrap_err();
            assert!(
                err.to_string().contains("no policy may call"),
                "{call}: {err}"
            );
        }
        assert!(forbidden_builtin("package t\n# numbers.range(1, 2)\nx := 1\n").is_none());
        assert!(forbidden_builtin("package t\nmy_numbers_range := 1\n").is_none());
        assert!(forbidden_builtin("package t\nx := my.numbers.range\n").is_none());
    }
}

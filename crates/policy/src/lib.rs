//! Policies written in Rego and evaluated with regorus: a constitution decides proposals, and
//! (with the key broker) policies decide attestation and key release.
//!
//! A [`Policy`] is compiled once from its text; each evaluation runs on a copy with the input
//! set, so evaluations never see each other's input. Every result is plain JSON.

#![forbid(unsafe_code)]

/// Why a policy could not be loaded or evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The Rego text does not compile.
    #[error("the policy does not compile: {0}")]
    Compile(String),
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

    /// Evaluates `rule` (e.g. `data.confide.constitution.decision`) with `input`. An
    /// undefined rule is JSON `null`.
    pub fn eval(
        &self,
        rule: &str,
        input: &serde_json::Value,
    ) -> Result<serde_json::Value, PolicyError> {
        let err = |message: String| PolicyError::Eval {
            rule: rule.to_owned(),
            message,
        };
        let mut engine = self.engine.clone();
        let input =
            regorus::Value::from_json_str(&input.to_string()).map_err(|e| err(e.to_string()))?;
        engine.set_input(input);
        let value = engine
            .eval_rule(rule.to_owned())
            .map_err(|e| err(e.to_string()))?;
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
}

//! RFC 8785 JSON Canonicalization Scheme (JCS): one byte string per JSON value, so that a
//! digest of a JSON document (a contract, a KBS client's runtime data) is the same wherever it
//! is computed.

use serde_json::Value;

/// RFC 8785 (JCS) canonical JSON: object members sorted by their names' UTF-16 code units,
/// no whitespace, strings escaped as ECMAScript's `JSON.stringify` does (which serde_json's
/// escaping matches), integers in decimal. Numbers with fractions use serde_json's shortest
/// representation, which equals ECMAScript's for the values KBS messages carry.
pub fn canonical_json(value: &Value) -> String {
    fn write(value: &Value, out: &mut String) {
        match value {
            Value::Object(map) => {
                let mut members: Vec<(&String, &Value)> = map.iter().collect();
                members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
                out.push('{');
                for (i, (name, v)) in members.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(name.clone()).to_string());
                    out.push(':');
                    write(v, out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(v, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// RFC 8785 §3.2.3: members sorted by UTF-16 code units (the emoji's surrogates sort
    /// before U+FB33, though its code point is larger), and §3.2.2.2's string escapes.
    #[test]
    fn canonical_json_follows_rfc8785() {
        let value: Value = serde_json::from_str(
            r#"{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}"#,
        )
        .unwrap();
        let out = canonical_json(&value);
        let order: Vec<&str> = [
            "\\r",
            "1",
            "\u{80}",
            "\u{f6}",
            "\u{20ac}",
            "\u{1f600}",
            "\u{fb33}",
        ]
        .into_iter()
        .collect();
        let mut last = 0;
        for key in order {
            let at = out.find(&format!("\"{key}\":")).unwrap();
            assert!(at >= last, "{key} out of order in {out}");
            last = at;
        }
        let strings = json!({"a": "\u{f}\n\"\\/€", "b": [1, true, null, -5]});
        assert_eq!(
            canonical_json(&strings),
            r#"{"a":"\u000f\n\"\\/€","b":[1,true,null,-5]}"#
        );
    }
}

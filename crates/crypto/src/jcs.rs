//! RFC 8785 JSON Canonicalization Scheme (JCS): one byte string per JSON value, so that a
//! digest of a JSON document (a contract, a KBS client's runtime data) is the same wherever it
//! is computed.

use serde_json::Value;

/// RFC 8785 (JCS) canonical JSON: object members sorted by their names' UTF-16 code units,
/// no whitespace, strings escaped as ECMAScript's `JSON.stringify` does (which serde_json's
/// escaping matches), and numbers as ECMAScript's `Number.prototype.toString` writes the
/// double (§3.2.2.3: `1e+21`, `0.000001`, `100` for `1e2`, `0` for `-0`).
///
/// One decision beyond the RFC: an integer too large for a double to hold exactly (beyond
/// 2^53, which I-JSON, the RFC's input, excludes) is written exactly rather than rounded, so
/// that two documents differing only in such an integer never share a digest.
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
            Value::Number(n) => out.push_str(&number(n)),
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}

/// A number as ECMAScript writes it (integers a double holds exactly, and every fraction), or
/// an integer beyond 2^53 exactly.
fn number(n: &serde_json::Number) -> String {
    const EXACT: u64 = 1 << 53;
    match (n.as_u64(), n.as_i64(), n.as_f64()) {
        (Some(u), ..) if u > EXACT => u.to_string(),
        (None, Some(i), _) if i.unsigned_abs() > EXACT => i.to_string(),
        (.., Some(f)) if f.is_finite() => ryu_js::Buffer::new().format_finite(f).to_owned(),
        // serde_json holds no other number.
        _ => n.to_string(),
    }
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

    /// RFC 8785 Appendix B: the IEEE-754 doubles (hex) and how JCS writes them.
    #[test]
    fn numbers_are_written_as_ecmascript_writes_them() {
        for (bits, text) in [
            (0x0000000000000000_u64, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
        ] {
            let value = json!(f64::from_bits(bits));
            assert_eq!(canonical_json(&value), text, "{bits:016x}");
        }
        // Written in JSON in other forms, the same numbers are written the same way.
        let parsed: Value = serde_json::from_str("[1.0, 1e2, -0.0, 1E21, 0.0000010]").unwrap();
        assert_eq!(canonical_json(&parsed), "[1,100,0,1e+21,0.000001]");
        // Integers a double cannot hold exactly stay exact (and so distinct).
        assert_eq!(
            canonical_json(&json!(9007199254740993_u64)),
            "9007199254740993"
        );
        assert_eq!(
            canonical_json(&json!(-9007199254740993_i64)),
            "-9007199254740993"
        );
        assert_eq!(canonical_json(&json!(u64::MAX)), "18446744073709551615");
    }
}

//! COSE_Sign1 (RFC 9052) as the ledger needs it: signing and checking a detached payload (a
//! Merkle root), and the header labels of COSE receipts (RFC 9942): `vds` (395) names the
//! verifiable data structure, `vdp` (396) carries its proofs.

use ciborium::value::{Integer, Value};

/// COSE header label of the algorithm.
pub const ALG: i64 = 1;
/// COSE header label of the key id.
pub const KID: i64 = 4;
/// COSE header label of CWT claims (RFC 9597).
pub const CWT_CLAIMS: i64 = 15;
/// CWT claim "issued at".
pub const CWT_IAT: i64 = 6;
/// RFC 9942: verifiable data structure.
pub const VDS: i64 = 395;
/// RFC 9942: verifiable data structure proofs.
pub const VDP: i64 = 396;
/// RFC 9942: the proof-type label of inclusion proofs inside `vdp`.
pub const INCLUSION_PROOFS: i64 = -1;
/// RFC 9942: the RFC 9162 SHA-256 Merkle tree.
pub const VDS_RFC9162_SHA256: i64 = 1;
/// The CCF ledger's tree (CCF's COSE receipt profile).
pub const VDS_CCF_LEDGER_SHA256: i64 = 2;
/// ES256: ECDSA P-256 with SHA-256.
pub const ES256: i64 = -7;
/// ES384: ECDSA P-384 with SHA-384.
pub const ES384: i64 = -35;

const TAG_SIGN1: u64 = 18;

/// Why COSE bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed COSE_Sign1: {0}")]
pub struct CoseError(pub String);

fn bad(what: impl Into<String>) -> CoseError {
    CoseError(what.into())
}

/// A parsed COSE_Sign1 whose payload is detached (nil) or attached.
#[derive(Debug, Clone, PartialEq)]
pub struct Sign1 {
    /// The protected header, as the exact bytes that were signed.
    pub protected: Vec<u8>,
    /// The protected header, decoded.
    pub protected_map: Vec<(Value, Value)>,
    /// The unprotected header.
    pub unprotected: Vec<(Value, Value)>,
    /// The payload if attached.
    pub payload: Option<Vec<u8>>,
    /// The signature.
    pub signature: Vec<u8>,
}

/// CBOR-encodes a value.
pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = ciborium::into_writer(value, &mut out);
    out
}

/// Decodes exactly one CBOR value from `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Value, CoseError> {
    let mut reader = bytes;
    let value: Value =
        ciborium::from_reader(&mut reader).map_err(|e| bad(format!("CBOR ({e})")))?;
    if !reader.is_empty() {
        return Err(bad("bytes after the CBOR value"));
    }
    Ok(value)
}

/// The `Sig_structure` of RFC 9052 4.4 for a COSE_Sign1 with an empty external AAD.
pub fn sig_structure(protected: &[u8], payload: &[u8]) -> Vec<u8> {
    encode(&Value::Array(vec![
        Value::Text("Signature1".into()),
        Value::Bytes(protected.to_vec()),
        Value::Bytes(Vec::new()),
        Value::Bytes(payload.to_vec()),
    ]))
}

/// An integer label or value.
pub fn int(i: i64) -> Value {
    Value::Integer(Integer::from(i))
}

/// The value under integer label `label` in a header map.
pub fn get(map: &[(Value, Value)], label: i64) -> Option<&Value> {
    map.iter()
        .find(|(k, _)| k.as_integer().and_then(|i| i64::try_from(i).ok()) == Some(label))
        .map(|(_, v)| v)
}

/// The integer value under `label`.
pub fn get_int(map: &[(Value, Value)], label: i64) -> Option<i64> {
    get(map, label)?
        .as_integer()
        .and_then(|i| i64::try_from(i).ok())
}

impl Sign1 {
    /// Parses a COSE_Sign1, tagged (18) or not.
    pub fn parse(bytes: &[u8]) -> Result<Self, CoseError> {
        let value = match decode(bytes)? {
            Value::Tag(TAG_SIGN1, inner) => *inner,
            Value::Tag(t, _) => return Err(bad(format!("CBOR tag {t}, expected 18"))),
            v => v,
        };
        let Value::Array(items) = value else {
            return Err(bad("not an array"));
        };
        let [protected, unprotected, payload, signature]: [Value; 4] =
            items.try_into().map_err(|_| bad("not four elements"))?;
        let Value::Bytes(protected) = protected else {
            return Err(bad("protected header is not a byte string"));
        };
        let protected_map = if protected.is_empty() {
            Vec::new()
        } else {
            match decode(&protected)? {
                Value::Map(m) => m,
                _ => return Err(bad("protected header is not a map")),
            }
        };
        let Value::Map(unprotected) = unprotected else {
            return Err(bad("unprotected header is not a map"));
        };
        let payload = match payload {
            Value::Null => None,
            Value::Bytes(b) => Some(b),
            _ => return Err(bad("payload is neither nil nor a byte string")),
        };
        let Value::Bytes(signature) = signature else {
            return Err(bad("signature is not a byte string"));
        };
        // RFC 9052 section 3: a label appears once, in one of the two buckets; otherwise two
        // readers may take different values of one header.
        let all: Vec<&(Value, Value)> = protected_map.iter().chain(&unprotected).collect();
        if !unique_labels(all.iter().map(|(k, _)| k)) {
            return Err(bad("a header label appears twice"));
        }
        Ok(Self {
            protected,
            protected_map,
            unprotected,
            payload,
            signature,
        })
    }

    /// Encodes as a tagged COSE_Sign1.
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(&Value::Tag(
            TAG_SIGN1,
            Box::new(Value::Array(vec![
                Value::Bytes(self.protected.clone()),
                Value::Map(self.unprotected.clone()),
                self.payload.clone().map_or(Value::Null, Value::Bytes),
                Value::Bytes(self.signature.clone()),
            ])),
        ))
    }

    /// The algorithm in the protected header.
    pub fn alg(&self) -> Option<i64> {
        get_int(&self.protected_map, ALG)
    }
}

/// Whether no two of `labels` are equal (a map read by label must have each once).
pub fn unique_labels<'a>(labels: impl IntoIterator<Item = &'a Value>) -> bool {
    let labels: Vec<&Value> = labels.into_iter().collect();
    labels
        .iter()
        .enumerate()
        .all(|(i, a)| labels[i + 1..].iter().all(|b| a != b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let protected = encode(&Value::Map(vec![(int(ALG), int(ES256))]));
        let s = Sign1 {
            protected: protected.clone(),
            protected_map: vec![(int(ALG), int(ES256))],
            unprotected: vec![(int(VDS), int(1))],
            payload: None,
            signature: vec![7; 64],
        };
        let bytes = s.to_bytes();
        assert_eq!(Sign1::parse(&bytes).unwrap(), s);
        assert_eq!(s.alg(), Some(ES256));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(Sign1::parse(&trailing).is_err());
        assert!(Sign1::parse(&bytes[..bytes.len() - 1]).is_err());
        assert!(Sign1::parse(&encode(&Value::Array(vec![]))).is_err());
        // A label twice, in one bucket or across both, is refused (RFC 9052 section 3).
        let twice = vec![(int(ALG), int(ES256)), (int(ALG), int(-35))];
        let in_both = Sign1 {
            unprotected: vec![(int(ALG), int(-35))],
            ..s.clone()
        };
        let duplicated = Sign1 {
            protected: encode(&Value::Map(twice.clone())),
            protected_map: twice,
            ..s.clone()
        };
        for bad in [in_both, duplicated] {
            let err = Sign1::parse(&bad.to_bytes()).unwrap_err();
            assert!(err.to_string().contains("twice"), "{err}");
        }
        // RFC 9052 Sig_structure: array(4) "Signature1" bstr bstr bstr.
        assert_eq!(
            hex::encode(sig_structure(&[0xa0], b"r")),
            "846a5369676e61747572653141a0404172"
        );
    }
}

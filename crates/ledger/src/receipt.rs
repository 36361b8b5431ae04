//! Signed checkpoints and COSE receipts (RFC 9942) for confide's ledger.
//!
//! A checkpoint is a COSE_Sign1 (ES256) whose detached payload is the Merkle root of the first
//! `tree_size` entries. Its protected header names the verifiable data structure
//! (`vds` = 1, RFC9162_SHA256), the time (CWT claims, `iat`) and the tree size (under the label
//! `"confide.v1"`, so a signature can never be presented for a root of another size). A receipt
//! for entry `i` is that same signature, with the inclusion proof of `i` in the unprotected
//! header: `vdp` (396) → inclusion proofs (-1) → `[ bstr .cbor [tree_size, i, [path…]] ]`. No
//! extra signing is needed to make receipts, and anyone with the entry, the receipt and the
//! ledger's public key can check it offline.

use ciborium::value::Value;
use confide_crypto::signing::{SigningKey, VerifyingKey};

use crate::cose::{self, Sign1};
use crate::merkle::{self, Hash, ProofError};

const CONFIDE_LABEL: &str = "confide.v1";

/// Why a checkpoint or receipt was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    /// Not a confide checkpoint or receipt.
    #[error("malformed receipt: {0}")]
    Malformed(String),
    /// The inclusion proof does not hold.
    #[error("inclusion proof: {0}")]
    Proof(#[from] ProofError),
    /// The signature does not verify with the ledger's key.
    #[error("the ledger's signature over the Merkle root does not verify")]
    BadSignature,
    /// The signing key could not sign.
    #[error("signing the checkpoint failed")]
    Signing,
}

fn malformed(what: impl Into<String>) -> ReceiptError {
    ReceiptError::Malformed(what.into())
}

/// A signed statement that the first `tree_size` entries have Merkle root `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The number of entries covered.
    pub tree_size: u64,
    /// Their Merkle root.
    pub root: Hash,
    /// When it was signed (seconds since the epoch).
    pub time: i64,
    /// The COSE_Sign1 (detached payload) as signed.
    pub cose: Vec<u8>,
}

fn protected_header(tree_size: u64, time: i64) -> Vec<u8> {
    cose::encode(&Value::Map(vec![
        (cose::int(cose::ALG), cose::int(cose::ES256)),
        (
            cose::int(cose::CWT_CLAIMS),
            Value::Map(vec![(cose::int(cose::CWT_IAT), cose::int(time))]),
        ),
        (cose::int(cose::VDS), cose::int(cose::VDS_RFC9162_SHA256)),
        (
            Value::Text(CONFIDE_LABEL.into()),
            Value::Map(vec![(
                Value::Text("tree_size".into()),
                Value::from(tree_size),
            )]),
        ),
    ]))
}

impl Checkpoint {
    /// Signs the root of `tree_size` entries at `time`.
    pub fn sign(
        key: &SigningKey,
        tree_size: u64,
        root: Hash,
        time: i64,
    ) -> Result<Self, ReceiptError> {
        let protected = protected_header(tree_size, time);
        let signature = key
            .sign(&cose::sig_structure(&protected, &root))
            .map_err(|_| ReceiptError::Signing)?;
        let sign1 = Sign1 {
            protected,
            protected_map: Vec::new(),
            unprotected: Vec::new(),
            payload: None,
            signature: signature.to_vec(),
        };
        Ok(Self {
            tree_size,
            root,
            time,
            cose: sign1.to_bytes(),
        })
    }

    /// Checks a checkpoint's COSE bytes against the root recomputed from the entries, and
    /// returns the tree size and time it states.
    pub fn verify(cose: &[u8], root: &Hash, key: &VerifyingKey) -> Result<Self, ReceiptError> {
        let sign1 = parse_canonical(cose)?;
        let (tree_size, time) = checked_header(&sign1)?;
        key.verify(
            &cose::sig_structure(&sign1.protected, root),
            &sign1.signature,
        )
        .map_err(|_| ReceiptError::BadSignature)?;
        Ok(Self {
            tree_size,
            root: *root,
            time,
            cose: cose.to_vec(),
        })
    }

    /// A receipt for entry `index` under this checkpoint, given its inclusion proof.
    pub fn receipt(&self, index: u64, path: &[Hash]) -> Result<Vec<u8>, ReceiptError> {
        let mut sign1 = parse_canonical(&self.cose)?;
        let proof = cose::encode(&Value::Array(vec![
            Value::from(self.tree_size),
            Value::from(index),
            Value::Array(path.iter().map(|h| Value::Bytes(h.to_vec())).collect()),
        ]));
        sign1.unprotected = vec![(
            cose::int(cose::VDP),
            Value::Map(vec![(
                cose::int(cose::INCLUSION_PROOFS),
                Value::Array(vec![Value::Bytes(proof)]),
            )]),
        )];
        Ok(sign1.to_bytes())
    }
}

/// Parses COSE bytes that must be exactly as confide encodes them, so that no byte of a
/// checkpoint or receipt can change unnoticed, signed or not.
fn parse_canonical(bytes: &[u8]) -> Result<Sign1, ReceiptError> {
    let sign1 = Sign1::parse(bytes).map_err(|e| malformed(e.to_string()))?;
    if sign1.to_bytes() != bytes
        || cose::encode(&Value::Map(sign1.protected_map.clone())) != sign1.protected
    {
        return Err(malformed("not in canonical encoding"));
    }
    Ok(sign1)
}

/// The tree size and time of a confide protected header, refusing any other header.
fn checked_header(sign1: &Sign1) -> Result<(u64, i64), ReceiptError> {
    let map = &sign1.protected_map;
    if sign1.alg() != Some(cose::ES256) {
        return Err(malformed("algorithm is not ES256"));
    }
    if cose::get_int(map, cose::VDS) != Some(cose::VDS_RFC9162_SHA256) {
        return Err(malformed("verifiable data structure is not RFC9162_SHA256"));
    }
    let time = match cose::get(map, cose::CWT_CLAIMS) {
        Some(Value::Map(claims)) => cose::get_int(claims, cose::CWT_IAT),
        _ => None,
    }
    .ok_or_else(|| malformed("no issued-at time"))?;
    let tree_size = map
        .iter()
        .find(|(k, _)| k.as_text() == Some(CONFIDE_LABEL))
        .and_then(|(_, v)| v.as_map())
        .and_then(|m| {
            m.iter()
                .find(|(k, _)| k.as_text() == Some("tree_size"))
                .and_then(|(_, v)| v.as_integer())
                .and_then(|i| u64::try_from(i).ok())
        })
        .ok_or_else(|| malformed("no tree size"))?;
    if map.len() != 4 {
        return Err(malformed("unexpected protected header fields"));
    }
    Ok((tree_size, time))
}

/// What a verified receipt proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedReceipt {
    /// The entry's position.
    pub index: u64,
    /// The size of the tree the receipt was made under.
    pub tree_size: u64,
    /// That tree's root.
    pub root: Hash,
    /// When the ledger signed it.
    pub time: i64,
}

/// Checks a receipt for `entry` against the ledger's public key.
pub fn verify_receipt(
    receipt: &[u8],
    entry: &[u8],
    key: &VerifyingKey,
) -> Result<VerifiedReceipt, ReceiptError> {
    let sign1 = parse_canonical(receipt)?;
    let (tree_size, time) = checked_header(&sign1)?;
    let proofs = match cose::get(&sign1.unprotected, cose::VDP) {
        Some(Value::Map(vdp)) if vdp.len() == 1 => match cose::get(vdp, cose::INCLUSION_PROOFS) {
            Some(Value::Array(p)) if p.len() == 1 => p,
            _ => return Err(malformed("expected one inclusion proof")),
        },
        _ => return Err(malformed("no verifiable data structure proofs (396)")),
    };
    if sign1.unprotected.len() != 1 {
        return Err(malformed("unexpected unprotected header fields"));
    }
    let Value::Bytes(encoded) = &proofs[0] else {
        return Err(malformed("inclusion proof is not a byte string"));
    };
    let value = cose::decode(encoded).map_err(|e| malformed(e.to_string()))?;
    if cose::encode(&value) != *encoded {
        return Err(malformed("inclusion proof not in canonical encoding"));
    }
    let Value::Array(parts) = value else {
        return Err(malformed("inclusion proof is not an array"));
    };
    let [size, index, Value::Array(path)] = parts.as_slice() else {
        return Err(malformed(
            "inclusion proof is not [tree_size, leaf_index, path]",
        ));
    };
    let as_u64 = |v: &Value, what: &str| {
        v.as_integer()
            .and_then(|i| u64::try_from(i).ok())
            .ok_or_else(|| malformed(format!("{what} is not an unsigned integer")))
    };
    let (size, index) = (as_u64(size, "tree size")?, as_u64(index, "leaf index")?);
    if size != tree_size {
        return Err(malformed(format!(
            "the proof is for a tree of {size}, the signature for one of {tree_size}"
        )));
    }
    let path: Vec<Vec<u8>> = path
        .iter()
        .map(|h| match h {
            Value::Bytes(b) => Ok(b.clone()),
            _ => Err(malformed("a path element is not a byte string")),
        })
        .collect::<Result<_, _>>()?;
    let leaf = merkle::leaf_hash(entry);
    let root = merkle::root_from_inclusion(&leaf, index, size, &path)?;
    key.verify(
        &cose::sig_structure(&sign1.protected, &root),
        &sign1.signature,
    )
    .map_err(|_| ReceiptError::BadSignature)?;
    Ok(VerifiedReceipt {
        index,
        tree_size,
        root,
        time,
    })
}

//! Receipts of CCF-based services (Azure Confidential Ledger, SCITT services built on CCF),
//! verified offline against the service's identity certificate, so that their users can check
//! them with the same tool as confide's own.
//!
//! Both forms commit to a leaf made of the transaction's write-set digest, its commit evidence
//! and its claims digest: `leaf = SHA-256(write_set_digest ‖ SHA-256(commit_evidence) ‖
//! claims_digest)`. The path is folded without RFC 9162's domain-separation bytes:
//! `h = SHA-256(left ‖ h)` or `SHA-256(h ‖ right)`.
//!
//! - JSON receipts: the root is signed (ECDSA, DER) by a node key *as a pre-hashed digest*; the
//!   node certificate must be endorsed by the service certificate, directly or through the
//!   receipt's `service_endorsements`.
//! - COSE receipts (CCF's profile of RFC 9942, `vds` = 2, as CCF's `ccf-receipt.cddl` and the
//!   IETF draft "CCF Profile for COSE Receipts" define them): a COSE_Sign1 with a detached
//!   payload whose `vdp` (396) carries inclusion proofs (-1), each `{1: leaf, 2: path}`; the
//!   signature over each proof's root is made with the service key.

use base64::Engine as _;
use ciborium::value::Value;
use confide_attest::Certificate;
use confide_crypto::digest::{Sha256, sha256};
use confide_crypto::verify::{self, Scheme};
use serde_json::Value as Json;

use crate::cose::{self, Sign1};
use crate::merkle::Hash;

/// Why a CCF receipt was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CcfError {
    /// The receipt does not have the structure of a CCF receipt.
    #[error("malformed CCF receipt: {0}")]
    Malformed(String),
    /// A signature or endorsement does not verify.
    #[error("CCF receipt does not verify: {0}")]
    Invalid(String),
    /// The receipt is for another entry than the one expected.
    #[error("CCF receipt is for another entry: {0}")]
    OtherEntry(String),
}

fn malformed(what: impl Into<String>) -> CcfError {
    CcfError::Malformed(what.into())
}

/// What a verified receipt proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The leaf the receipt is for.
    pub leaf: Hash,
    /// The Merkle root the service signed.
    pub root: Hash,
    /// The claims digest in the leaf (the application's digest of the entry).
    pub claims_digest: Hash,
    /// The commit evidence, which names the transaction (`ce:VIEW.SEQNO:…`).
    pub commit_evidence: String,
}

fn leaf(write_set: &[u8], commit_evidence: &str, claims: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(write_set);
    h.update(&sha256(commit_evidence.as_bytes()));
    h.update(claims);
    h.finish()
}

fn fold(mut h: Hash, path: &[(bool, Hash)]) -> Hash {
    for (left, sibling) in path {
        let mut next = Sha256::new();
        if *left {
            next.update(sibling);
            next.update(&h);
        } else {
            next.update(&h);
            next.update(sibling);
        }
        h = next.finish();
    }
    h
}

fn hash32(bytes: &[u8], what: &str) -> Result<Hash, CcfError> {
    bytes
        .try_into()
        .map_err(|_| malformed(format!("{what} is not 32 bytes")))
}

fn hex32(value: Option<&Json>, what: &str) -> Result<Hash, CcfError> {
    let text = value
        .and_then(Json::as_str)
        .ok_or_else(|| malformed(format!("no {what}")))?;
    hash32(
        &hex::decode(text).map_err(|_| malformed(format!("{what} is not hex")))?,
        what,
    )
}

fn check_expected(claims: &Hash, expected: Option<&[u8]>) -> Result<(), CcfError> {
    match expected {
        Some(e) if e != claims => Err(CcfError::OtherEntry(format!(
            "its claims digest is {}, expected {}",
            hex::encode(claims),
            hex::encode(e)
        ))),
        _ => Ok(()),
    }
}

/// Verifies a CCF JSON receipt against the service certificate. `expected_claims_digest`, when
/// given, must be the claims digest in the receipt's leaf.
pub fn verify_json(
    receipt: &[u8],
    service: &Certificate,
    expected_claims_digest: Option<&[u8]>,
) -> Result<Verified, CcfError> {
    let doc: Json =
        serde_json::from_slice(receipt).map_err(|e| malformed(format!("JSON ({e})")))?;
    let field = |snake: &str, camel: &str| doc.get(snake).or_else(|| doc.get(camel));
    let components = field("leaf_components", "leafComponents")
        .ok_or_else(|| malformed("no leaf_components"))?;
    let part = |snake: &str, camel: &str| components.get(snake).or_else(|| components.get(camel));
    let write_set = hex32(
        part("write_set_digest", "writeSetDigest"),
        "write_set_digest",
    )?;
    let claims = hex32(part("claims_digest", "claimsDigest"), "claims_digest")?;
    let evidence = part("commit_evidence", "commitEvidence")
        .and_then(Json::as_str)
        .ok_or_else(|| malformed("no commit_evidence"))?;
    let leaf = leaf(&write_set, evidence, &claims);
    let mut path = Vec::new();
    for step in doc
        .get("proof")
        .and_then(Json::as_array)
        .ok_or_else(|| malformed("no proof"))?
    {
        match (step.get("left"), step.get("right")) {
            (Some(l), None) => path.push((true, hex32(Some(l), "proof element")?)),
            (None, Some(r)) => path.push((false, hex32(Some(r), "proof element")?)),
            _ => {
                return Err(malformed(
                    "a proof element has neither or both of left and right",
                ));
            }
        }
    }
    let root = fold(leaf, &path);

    let node_pem = doc
        .get("cert")
        .and_then(Json::as_str)
        .ok_or_else(|| malformed("no node cert"))?;
    let node = first_cert(node_pem.as_bytes(), "node cert")?;
    let signature = base64::engine::general_purpose::STANDARD
        .decode(
            doc.get("signature")
                .and_then(Json::as_str)
                .ok_or_else(|| malformed("no signature"))?,
        )
        .map_err(|_| malformed("signature is not base64"))?;
    let scheme = match node.key_type() {
        "P-256" => Scheme::EcdsaP256Sha256Der,
        "P-384" => Scheme::EcdsaP384Sha256Der,
        other => return Err(malformed(format!("node key type {other}"))),
    };
    verify::verify_prehashed(scheme, node.public_key_bytes(), &root, &signature).map_err(|_| {
        CcfError::Invalid("the node's signature over the Merkle root does not verify".into())
    })?;
    if let Some(id) = field("node_id", "nodeId").and_then(Json::as_str) {
        let spki = node_spki_sha256(&node);
        if !id.eq_ignore_ascii_case(&hex::encode(spki)) {
            return Err(CcfError::Invalid(
                "node_id is not the hash of the node certificate's key".into(),
            ));
        }
    }
    // The node certificate, endorsed by each service endorsement in turn, then the service.
    let mut chain = vec![node];
    for e in field("service_endorsements", "serviceEndorsements")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
    {
        let pem = e
            .as_str()
            .ok_or_else(|| malformed("a service endorsement is not PEM text"))?;
        chain.push(first_cert(pem.as_bytes(), "service endorsement")?);
    }
    chain.push(service.clone());
    for pair in chain.windows(2) {
        pair[0]
            .check_signed_by(&pair[1], "node certificate endorsed by the service")
            .map_err(|e| CcfError::Invalid(e.to_string()))?;
    }
    check_expected(&claims, expected_claims_digest)?;
    Ok(Verified {
        leaf,
        root,
        claims_digest: claims,
        commit_evidence: evidence.to_owned(),
    })
}

fn node_spki_sha256(node: &Certificate) -> Hash {
    node.spki_sha256()
}

fn first_cert(pem: &[u8], what: &str) -> Result<Certificate, CcfError> {
    Certificate::from_pem_chain(pem)
        .map_err(|e| malformed(format!("{what}: {e}")))?
        .into_iter()
        .next()
        .ok_or_else(|| malformed(format!("{what}: no certificate")))
}

/// Verifies a CCF COSE receipt (CCF's profile of RFC 9942) against the service certificate.
pub fn verify_cose(
    receipt: &[u8],
    service: &Certificate,
    expected_claims_digest: Option<&[u8]>,
) -> Result<Verified, CcfError> {
    let sign1 = Sign1::parse(receipt).map_err(|e| malformed(e.to_string()))?;
    let vds = cose::get_int(&sign1.protected_map, cose::VDS);
    if vds != Some(cose::VDS_CCF_LEDGER_SHA256) {
        return Err(malformed(format!(
            "verifiable data structure {vds:?}, expected 2 (CCF_LEDGER_SHA256)"
        )));
    }
    let scheme = match (sign1.alg(), service.key_type()) {
        (Some(cose::ES256), "P-256") => Scheme::EcdsaP256Sha256Fixed,
        (Some(cose::ES384), "P-384") => Scheme::EcdsaP384Sha384Fixed,
        (alg, key) => {
            return Err(malformed(format!(
                "algorithm {alg:?} with a {key} service key"
            )));
        }
    };
    let proofs = match cose::get(&sign1.unprotected, cose::VDP) {
        Some(Value::Map(vdp)) => match cose::get(vdp, cose::INCLUSION_PROOFS) {
            Some(Value::Array(p)) if !p.is_empty() => p.clone(),
            _ => return Err(malformed("no inclusion proofs")),
        },
        _ => return Err(malformed("no verifiable data structure proofs (396)")),
    };
    let mut first = None;
    for proof in proofs {
        let Value::Bytes(encoded) = proof else {
            return Err(malformed("an inclusion proof is not a byte string"));
        };
        let (leaf, root, claims, evidence) = cose_proof(&encoded)?;
        let signed = cose::sig_structure(&sign1.protected, &root);
        verify::verify(
            scheme,
            service.public_key_bytes(),
            &signed,
            &sign1.signature,
        )
        .map_err(|_| {
            CcfError::Invalid("the service's signature over the Merkle root does not verify".into())
        })?;
        check_expected(&claims, expected_claims_digest)?;
        first.get_or_insert(Verified {
            leaf,
            root,
            claims_digest: claims,
            commit_evidence: evidence,
        });
    }
    first.ok_or_else(|| malformed("no inclusion proofs"))
}

/// One CCF inclusion proof (CCF's `ccf-receipt.cddl`): `{1: leaf, 2: path}` with
/// `leaf = [internal-transaction-hash, internal-evidence, data-hash]` and
/// `path = [[left: bool, hash], …]`.
fn cose_proof(encoded: &[u8]) -> Result<(Hash, Hash, Hash, String), CcfError> {
    let bad = || malformed("inclusion proof is not {1: leaf, 2: path}");
    let Value::Map(parts) = cose::decode(encoded).map_err(|e| malformed(e.to_string()))? else {
        return Err(bad());
    };
    if parts.len() != 2 {
        return Err(bad());
    }
    let (Some(Value::Array(leaf_parts)), Some(Value::Array(path))) =
        (cose::get(&parts, 1), cose::get(&parts, 2))
    else {
        return Err(bad());
    };
    let [
        Value::Bytes(write_set),
        Value::Text(evidence),
        Value::Bytes(claims),
    ] = leaf_parts.as_slice()
    else {
        return Err(malformed("leaf is not [bytes, text, bytes]"));
    };
    let (write_set, claims) = (
        hash32(write_set, "write set digest")?,
        hash32(claims, "claims digest")?,
    );
    let mut steps = Vec::new();
    for step in path {
        let Value::Array(pair) = step else {
            return Err(bad());
        };
        let [Value::Bool(left), Value::Bytes(hash)] = pair.as_slice() else {
            return Err(malformed("path element is not [bool, bytes]"));
        };
        steps.push((*left, hash32(hash, "path hash")?));
    }
    let leaf = leaf(&write_set, evidence, &claims);
    Ok((leaf, fold(leaf, &steps), claims, evidence.clone()))
}

/// Verifies a CCF receipt in either form, told apart by its first byte.
pub fn verify_any(
    receipt: &[u8],
    service: &Certificate,
    expected_claims_digest: Option<&[u8]>,
) -> Result<Verified, CcfError> {
    match receipt.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => verify_json(receipt, service, expected_claims_digest),
        Some(_) => verify_cose(receipt, service, expected_claims_digest),
        None => Err(malformed("empty receipt")),
    }
}

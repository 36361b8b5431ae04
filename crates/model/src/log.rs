//! The ledger's answers over HTTP: a page of entries ([`EntryPage`]), the newest checkpoint
//! ([`LatestCheckpoint`]) and a consistency proof ([`Consistency`]). A client checks what they
//! carry against the pinned ledger key; these only say how it is carried.

use serde::{Deserialize, Serialize};

/// `GET /ledger/entries?from=&limit=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryPage {
    /// Entries on the ledger.
    pub size: u64,
    /// The first entry listed.
    pub from: u64,
    /// The entries, in sequence.
    pub entries: Vec<ListedEntry>,
}

/// One entry of an [`EntryPage`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListedEntry {
    /// Its position.
    pub seq: u64,
    /// Whether it is a governance request (else an audit event).
    pub governance: bool,
    /// The entry, base64.
    pub entry: String,
}

/// `GET /ledger/checkpoints/latest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatestCheckpoint {
    /// Entries it covers.
    pub tree_size: u64,
    /// The Merkle root, hex (the server's word until the signature is checked).
    pub root: String,
    /// When it was signed.
    pub time: i64,
    /// The signed checkpoint (COSE_Sign1), base64.
    pub cose: String,
}

/// `GET /ledger/consistency?from=&to=`: RFC 9162's proof that the tree of size `to` extends
/// the tree of size `from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consistency {
    /// The older size.
    pub from: u64,
    /// The newer size.
    pub to: u64,
    /// The older root, hex.
    pub root_from: Option<String>,
    /// The newer root, hex.
    pub root_to: Option<String>,
    /// The proof's hashes, hex.
    pub proof: Vec<String>,
}

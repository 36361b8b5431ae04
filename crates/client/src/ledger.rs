//! The ledger as a client verifies it: every entry, under a checkpoint signed by the ledger key
//! the client pinned, and the consortium's state replayed from those entries on the client.
//!
//! This is how a workload (or a member) learns what the consortium decided without trusting
//! the server or the network in between: a changed, dropped or inserted entry changes the
//! Merkle root, and no checkpoint over that root carries the pinned key's signature. The state
//! (members and their identities, datasets, contracts and whether they are approved or revoked)
//! is then folded over the verified entries by the same governance code the server runs, so it
//! is exactly what the ledger says, not what an endpoint answers.
//!
//! What it cannot tell alone is freshness: a server may present an older, genuinely signed
//! prefix of the ledger. The key broker checks a contract's state on the current ledger before
//! it releases any key, so an older prefix earns nothing; a client that keeps the checkpoints
//! it has seen can also refuse to go back ([`VerifiedLedger::extends`]).

use base64::Engine as _;
use confide_crypto::signing::VerifyingKey;
use confide_gov::{GovError, Governance};
use confide_ledger::merkle::{self, Hash, Tree};
use confide_ledger::receipt::Checkpoint;
use confide_model::{
    Consistency, EntryPage, Event, LatestCheckpoint, ModelError, RunId, RunRecord,
};
use serde::{Deserialize, Serialize};

use crate::{Client, ClientError};

/// The most entries asked for in one page (the server's own limit).
const PAGE: u64 = 1000;

/// Why the ledger a server presented was not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerViewError {
    /// The server could not be asked.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The server has no checkpoint: its ledger is empty.
    #[error("the server's ledger is empty: there is no consortium to act on")]
    Empty,
    /// The entries the server sent do not hash to the root its checkpoint signs.
    #[error(
        "the ledger's {size} entries do not match its signed checkpoint: an entry was changed, \
         dropped or inserted on the way"
    )]
    EntriesChanged {
        /// The number of entries the checkpoint covers.
        size: u64,
    },
    /// The checkpoint does not carry the pinned ledger key's signature over the entries' root.
    #[error(
        "the ledger's checkpoint is not signed by the pinned ledger key (fingerprint {pinned}): \
         this is not the consortium's ledger"
    )]
    NotSignedByPinnedKey {
        /// The pinned key's fingerprint.
        pinned: String,
    },
    /// The ledger does not extend the one this client saw before: it was forked or rolled back.
    #[error(
        "the ledger does not extend the one seen before (size {seen}, root {root}): the server \
         forked or rolled back its history"
    )]
    Forked {
        /// The size of the ledger seen before.
        seen: u64,
        /// Its root, hex.
        root: String,
    },
    /// No run of that id is on the ledger.
    #[error("no run {0} is on the ledger")]
    NoSuchRun(RunId),
    /// The run's record on the ledger does not carry the workload's signature over its report.
    #[error("the record of run {run} on the ledger is not its workload's signed report: {why}")]
    RunNotSigned {
        /// The run.
        run: RunId,
        /// What failed.
        why: String,
    },
    /// A governance entry does not replay.
    #[error("governance entry {seq} does not replay: {error}")]
    Replay {
        /// Its position.
        seq: u64,
        /// Why.
        error: GovError,
    },
    /// The server's answer was not what the ledger endpoints promise.
    #[error("the server's ledger answer is malformed: {0}")]
    Malformed(String),
}

/// A ledger whose every entry is covered by a checkpoint signed with the pinned key.
#[derive(Debug, Clone)]
pub struct VerifiedLedger {
    entries: Vec<Vec<u8>>,
    tree: Tree,
    checkpoint: Checkpoint,
}

/// The fingerprint of a ledger key as people compare it ([`VerifyingKey::key_id`]).
pub fn key_fingerprint(key: &VerifyingKey) -> String {
    key.key_id()
}

fn malformed(what: impl Into<String>) -> LedgerViewError {
    LedgerViewError::Malformed(what.into())
}

fn b64(text: &str, what: &str) -> Result<Vec<u8>, LedgerViewError> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| malformed(format!("{what} is not base64")))
}

/// A 32-byte hash written as hex.
fn hash(text: &str) -> Option<Hash> {
    hex::decode(text).ok().and_then(|r| Hash::try_from(r).ok())
}

/// A checkpoint as a server states it, not yet checked: its COSE bytes, size and root.
type Stated = (Vec<u8>, u64, Option<Hash>);

/// The server's newest checkpoint as it states it, or `None` for an empty ledger.
fn latest(client: &Client) -> Result<Option<Stated>, LedgerViewError> {
    let latest: LatestCheckpoint = match client.get_as("/ledger/checkpoints/latest") {
        Err(ClientError::Refused { status: 404, .. }) => return Ok(None),
        other => other?,
    };
    Ok(Some((
        b64(&latest.cose, "the checkpoint")?,
        latest.tree_size,
        hash(&latest.root),
    )))
}

impl VerifiedLedger {
    /// Fetches the server's latest checkpoint and every entry it covers, and checks them
    /// against `key`.
    pub fn fetch(client: &Client, key: &VerifyingKey) -> Result<Self, LedgerViewError> {
        let (cose, size, stated_root) = latest(client)?.ok_or(LedgerViewError::Empty)?;
        let stated_root = stated_root.map(hex::encode).unwrap_or_default();
        let mut entries = Vec::new();
        while (entries.len() as u64) < size {
            let from = entries.len() as u64;
            let page: EntryPage = client.get_as(&format!(
                "/ledger/entries?from={from}&limit={}",
                PAGE.min(size - from)
            ))?;
            if page.entries.is_empty() {
                return Err(LedgerViewError::EntriesChanged { size });
            }
            for item in page.entries.iter().take((size - from) as usize) {
                if item.seq != entries.len() as u64 {
                    return Err(malformed("the entries are not in sequence"));
                }
                entries.push(b64(&item.entry, "an entry")?);
            }
        }
        Self::verify(entries, &cose, &stated_root, key)
    }

    /// Fetches and checks the ledger as [`Self::fetch`] does, and checks that it extends the
    /// checkpoint kept in `kept` (a file, as [`check_consistency`] keeps it), then keeps its
    /// own: the state a client reads is the state of the ledger it checked, not of a second
    /// answer that went back or forked after the first one passed.
    pub fn fetch_extending(
        client: &Client,
        key: &VerifyingKey,
        kept: &std::path::Path,
    ) -> Result<Self, LedgerViewError> {
        let seen = Seen::load(kept)?;
        let ledger = Self::fetch(client, key)?;
        if let Some(s) = &seen {
            ledger.extends(s.tree_size, &s.root)?;
        }
        // Kept only if newer than what is kept now: another command may have kept a newer
        // checkpoint meanwhile, and the kept one never goes back.
        let kept_now = Seen::load(kept)?;
        if kept_now.is_none_or(|k| k.tree_size < ledger.tree.len()) {
            Seen {
                tree_size: ledger.tree.len(),
                root: ledger.tree.root(),
            }
            .store(kept)?;
        }
        Ok(ledger)
    }

    /// Checks `entries` against a checkpoint (`cose`) with `key`. `stated_root` (hex, the
    /// server's word) only tells which of two failures it is.
    pub fn verify(
        entries: Vec<Vec<u8>>,
        cose: &[u8],
        stated_root: &str,
        key: &VerifyingKey,
    ) -> Result<Self, LedgerViewError> {
        let mut tree = Tree::new();
        for entry in &entries {
            tree.push(merkle::leaf_hash(entry));
        }
        let root = tree.root();
        let size = tree.len();
        let checkpoint = match Checkpoint::verify(cose, &root, key) {
            Ok(c) if c.tree_size == size => c,
            Ok(_) => return Err(LedgerViewError::EntriesChanged { size }),
            Err(_) if stated_root != hex::encode(root) => {
                return Err(LedgerViewError::EntriesChanged { size });
            }
            Err(_) => {
                return Err(LedgerViewError::NotSignedByPinnedKey {
                    pinned: key_fingerprint(key),
                });
            }
        };
        Ok(Self {
            entries,
            tree,
            checkpoint,
        })
    }

    /// The verified entries, in order.
    pub fn entries(&self) -> &[Vec<u8>] {
        &self.entries
    }

    /// The audit events of type `T` among the entries (the services' records: key releases,
    /// runs, …), in order, each read whole.
    pub fn events<T: Event>(&self) -> impl Iterator<Item = Result<T, ModelError>> + '_ {
        self.entries
            .iter()
            .filter(|e| !confide_gov::is_governance(e))
            .filter_map(|e| T::of_entry(e).transpose())
    }

    /// The record of run `id` (or of a refused run) as the ledger holds it, after checking that
    /// it is the report its workload signed: the report rebuilt from the record verifies under
    /// the signing key the record names, and its id is `id`. What the record says (inputs,
    /// output digest and location, recipients) is then the ledger's word and the workload's,
    /// not an endpoint's.
    pub fn run(&self, id: &RunId) -> Result<confide_model::RunRecord, LedgerViewError> {
        let not_signed = |why: &str| LedgerViewError::RunNotSigned {
            run: id.clone(),
            why: why.to_owned(),
        };
        let record = self
            .events::<RunRecord>()
            .find_map(|r| r.ok().filter(|r| r.run == *id))
            .ok_or_else(|| LedgerViewError::NoSuchRun(id.clone()))?;
        let (signed, signer) = record
            .signed_report()
            .map_err(|e| not_signed(&e.to_string()))?;
        signed
            .verify(&signer)
            .map_err(|e| not_signed(&e.to_string()))?;
        if signed.report.id() != *id {
            return Err(not_signed("its report has another id"));
        }
        Ok(record)
    }

    /// The checkpoint that covers them.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// Whether this ledger extends one seen before, of `size` entries with root `root`.
    pub fn extends(&self, size: u64, root: &Hash) -> Result<(), LedgerViewError> {
        if self.tree.root_at(size).as_ref() == Some(root) {
            return Ok(());
        }
        Err(LedgerViewError::Forked {
            seen: size,
            root: hex::encode(root),
        })
    }

    /// The consortium's state: the governance requests among the entries, replayed in order
    /// by the governance code the server runs (without its time limit: each was decided within
    /// it when it was accepted).
    pub fn governance(&self) -> Result<Governance, LedgerViewError> {
        let mut gov =
            Governance::new().map_err(|error| LedgerViewError::Replay { seq: 0, error })?;
        gov.set_time_limit(None);
        for (seq, entry) in (0u64..).zip(&self.entries) {
            gov.replay_entry(seq, entry)
                .map_err(|error| LedgerViewError::Replay { seq, error })?;
        }
        Ok(gov)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use confide_crypto::signing::SigningKey;

    fn signed(entries: &[Vec<u8>], key: &SigningKey) -> (Vec<u8>, String) {
        let mut tree = Tree::new();
        for e in entries {
            tree.push(merkle::leaf_hash(e));
        }
        let cp = Checkpoint::sign(key, tree.len(), tree.root(), 1_700_000_000).unwrap();
        (cp.cose, hex::encode(tree.root()))
    }

    #[test]
    fn a_ledger_verifies_only_whole_and_under_the_pinned_key() {
        let key = SigningKey::generate().unwrap();
        let entries: Vec<Vec<u8>> = (0..7u8).map(|i| vec![i; 10 + usize::from(i)]).collect();
        let (cose, root) = signed(&entries, &key);
        let ok = VerifiedLedger::verify(entries.clone(), &cose, &root, &key.verifying_key());
        assert_eq!(ok.unwrap().entries().len(), 7);

        // Every single changed byte, a dropped entry, an added one, swapped ones.
        for i in 0..entries.len() {
            for j in 0..entries[i].len() {
                let mut changed = entries.clone();
                changed[i][j] ^= 1;
                let e = VerifiedLedger::verify(changed, &cose, &root, &key.verifying_key());
                assert!(matches!(e, Err(LedgerViewError::EntriesChanged { .. })));
            }
        }
        let mut dropped = entries.clone();
        dropped.pop();
        assert!(VerifiedLedger::verify(dropped, &cose, &root, &key.verifying_key()).is_err());
        let mut added = entries.clone();
        added.push(b"x".to_vec());
        assert!(VerifiedLedger::verify(added, &cose, &root, &key.verifying_key()).is_err());
        let mut swapped = entries.clone();
        swapped.swap(1, 2);
        assert!(VerifiedLedger::verify(swapped, &cose, &root, &key.verifying_key()).is_err());

        // The same entries under another key's checkpoint.
        let other = SigningKey::generate().unwrap();
        let (forged, _) = signed(&entries, &other);
        let e = VerifiedLedger::verify(entries.clone(), &forged, &root, &key.verifying_key());
        assert!(matches!(
            e,
            Err(LedgerViewError::NotSignedByPinnedKey { .. })
        ));
    }

    #[test]
    fn a_ledger_extends_only_the_history_it_grew_from() {
        let key = SigningKey::generate().unwrap();
        let entries: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 3]).collect();
        let (cose, root) = signed(&entries, &key);
        let v =
            VerifiedLedger::verify(entries.clone(), &cose, &root, &key.verifying_key()).unwrap();
        let mut old = Tree::new();
        for e in &entries[..3] {
            old.push(merkle::leaf_hash(e));
        }
        v.extends(3, &old.root()).unwrap();
        let mut fork = Tree::new();
        for e in [&entries[0], &entries[1], &b"other".to_vec()] {
            fork.push(merkle::leaf_hash(e));
        }
        assert!(matches!(
            v.extends(3, &fork.root()),
            Err(LedgerViewError::Forked { seen: 3, .. })
        ));
        assert!(v.extends(6, &old.root()).is_err());
    }
}

/// The newest checkpoint a client has seen, kept in a file between its calls, so that a server
/// cannot present a shorter or different history later without the client noticing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The entries it covers.
    pub tree_size: u64,
    /// Their root.
    pub root: Hash,
}

/// A checkpoint as kept in a file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Kept {
    tree_size: u64,
    root: String,
}

impl Seen {
    /// The checkpoint kept in `path`, if there is one.
    pub fn load(path: &std::path::Path) -> Result<Option<Self>, LedgerViewError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(malformed(format!("reading {}: {e}", path.display()))),
        };
        let not_kept = || malformed(format!("{} is not a kept checkpoint", path.display()));
        let doc: Kept = serde_json::from_str(&text).map_err(|_| not_kept())?;
        let root = hash(&doc.root).ok_or_else(not_kept)?;
        Ok(Some(Self {
            tree_size: doc.tree_size,
            root,
        }))
    }

    /// Keeps this checkpoint in `path`, replacing the file whole.
    pub fn store(&self, path: &std::path::Path) -> Result<(), LedgerViewError> {
        let doc = Kept {
            tree_size: self.tree_size,
            root: hex::encode(self.root),
        };
        let text = serde_json::to_string(&doc)
            .map_err(|e| malformed(format!("encoding the checkpoint: {e}")))?;
        confide_crypto::files::replace(path, text.as_bytes(), 0o600)
            .map_err(|e| malformed(format!("keeping the checkpoint in {}: {e}", path.display())))
    }
}

/// Checks the server's newest checkpoint against `key` and against the checkpoint kept in
/// `kept` (a file): it must be signed by the pinned key and extend what was seen before, by a
/// consistency proof (RFC 9162 2.1.4) checked here. Keeps the newer checkpoint and returns it.
/// A server whose ledger forked or went back is refused ([`LedgerViewError::Forked`]).
pub fn check_consistency(
    client: &Client,
    key: &VerifyingKey,
    kept: &std::path::Path,
) -> Result<Option<Seen>, LedgerViewError> {
    let seen = Seen::load(kept)?;
    let forked = |s: &Seen| LedgerViewError::Forked {
        seen: s.tree_size,
        root: hex::encode(s.root),
    };
    let Some((cose, _, root)) = latest(client)? else {
        return match seen {
            Some(s) => Err(forked(&s)),
            None => Ok(None),
        };
    };
    let root = root.ok_or_else(|| malformed("the checkpoint has no root"))?;
    let checkpoint = Checkpoint::verify(&cose, &root, key).map_err(|_| {
        LedgerViewError::NotSignedByPinnedKey {
            pinned: key_fingerprint(key),
        }
    })?;
    let now = Seen {
        tree_size: checkpoint.tree_size,
        root,
    };
    if let Some(s) = &seen {
        let holds = match s.tree_size.cmp(&now.tree_size) {
            std::cmp::Ordering::Greater => false,
            std::cmp::Ordering::Equal => s.root == now.root,
            std::cmp::Ordering::Less => {
                let answer: Consistency = client.get_as(&format!(
                    "/ledger/consistency?from={}&to={}",
                    s.tree_size, now.tree_size
                ))?;
                let proof: Vec<Vec<u8>> = answer
                    .proof
                    .iter()
                    .map(|h| hex::decode(h).ok())
                    .collect::<Option<_>>()
                    .ok_or_else(|| malformed("the consistency proof is not hex"))?;
                merkle::verify_consistency(s.tree_size, now.tree_size, &s.root, &now.root, &proof)
                    .is_ok()
            }
        };
        if !holds {
            return Err(forked(s));
        }
    }
    now.store(kept)?;
    Ok(Some(now))
}

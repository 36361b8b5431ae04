//! The ledger on disk: append-only segment files of batches, each batch durable before any of
//! its entries is acknowledged, each ending with a checkpoint signed over the Merkle root.
//!
//! Layout of a ledger directory:
//!
//! ```text
//! ledger.pub                      the checkpoint key (PEM PUBLIC KEY, P-256)
//! segments/00000000000000000000.seg
//! segments/00000000000000123456.seg   named by the sequence number of their first entry
//! ```
//!
//! A segment is a run of batch frames (all integers little-endian):
//!
//! ```text
//! header   "CFDL" | version 1 | 0 0 0 | first_seq u64 | count u32 | body_len u32 | cp_len u32
//!          | SHA-256(the 28 bytes before)[0..8]
//! body     count × (len u32 | entry bytes)
//! cp       the checkpoint: COSE_Sign1 over the root of entries 0..first_seq+count
//! ```
//!
//! The header carries its own checksum; the entries and the checkpoint need none, because the
//! checkpoint's signature covers the Merkle root of every entry up to it: a changed entry, a
//! changed length or a changed checkpoint all make that signature fail.
//!
//! A batch is written with one write and made durable with fsync before [`Ledger::append`]
//! returns. On open every batch is checked (header, sequence, entry lengths, the checkpoint's
//! signature over the recomputed root, and its tree size). A batch cut short at the
//! very end of the last segment — by a crash while it was written, so never acknowledged — is
//! dropped; anything else that does not verify is an error that names the segment and offset.
//! The in-memory index maps sequence numbers to their place on disk; all state is what
//! replaying the segments gives.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use confide_crypto::digest::sha256;
use confide_crypto::signing::{SigningKey, VerifyingKey};

use crate::merkle::{self, Hash, Tree};
use crate::receipt::{Checkpoint, ReceiptError};

const MAGIC: &[u8; 4] = b"CFDL";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 36;
/// A new segment is started once the current one reaches this size.
pub const SEGMENT_TARGET: u64 = 64 << 20;
/// The largest entry accepted.
pub const MAX_ENTRY: usize = 16 << 20;
/// The most entries in one batch.
pub const MAX_BATCH: usize = 1 << 20;

/// Why the ledger refused to open or to append.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// The operating system failed; nothing was acknowledged.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// Stored data does not verify: the ledger was changed or damaged. Names where.
    #[error("{file} at offset {offset}: {what}")]
    Corrupt {
        /// The segment file.
        file: String,
        /// The byte offset of the batch.
        offset: u64,
        /// What does not verify.
        what: String,
    },
    /// The request itself was refused; nothing changed.
    #[error("refused: {0}")]
    Refused(String),
    /// A previous append failed and could not be undone; the ledger takes no more writes
    /// until it is reopened (which checks and repairs the tail).
    #[error("the ledger stopped accepting writes after a failed append; restart to recover")]
    Poisoned,
    /// The checkpoint key does not match the ledger's.
    #[error("the key does not match this ledger's checkpoint key (ledger.pub)")]
    WrongKey,
    /// A checkpoint could not be signed.
    #[error(transparent)]
    Receipt(#[from] ReceiptError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LedgerError {
    let what = what.into();
    move |source| LedgerError::Io { what, source }
}

/// An entry with its leaf hash, computed when the entry arrives (in a request handler), off the
/// commit path. The hash can only be the entry's own.
#[derive(Debug, Clone)]
pub struct Prepared {
    entry: Vec<u8>,
    leaf: Hash,
}

impl Prepared {
    /// Hashes `entry` for appending.
    pub fn new(entry: Vec<u8>) -> Self {
        let leaf = merkle::leaf_hash(&entry);
        Self { entry, leaf }
    }

    /// The entry's bytes.
    pub fn entry(&self) -> &[u8] {
        &self.entry
    }
}

/// Where an entry lives.
#[derive(Debug, Clone, Copy)]
struct Location {
    segment: u32,
    offset: u64,
    len: u32,
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    file: File,
    len: u64,
}

/// What opening found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Batches verified.
    pub batches: u64,
    /// Bytes of an incomplete final batch that were dropped (never acknowledged).
    pub dropped_bytes: u64,
}

/// An open ledger.
#[derive(Debug)]
pub struct Ledger {
    dir: PathBuf,
    key: Option<SigningKey>,
    public: VerifyingKey,
    segments: Vec<Segment>,
    index: Vec<Location>,
    tree: Tree,
    checkpoints: Vec<Checkpoint>,
    poisoned: bool,
}

/// How to treat an incomplete final batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tail {
    /// Cut it off the file (the service starting after a crash).
    Drop,
    /// Report it as an error (an audit, which changes nothing).
    Refuse,
}

impl Ledger {
    /// Opens the ledger in `dir` for appending with `key`, creating it if the directory holds
    /// none, and recovering from a crash: see the module documentation.
    pub fn open(dir: &Path, key: SigningKey) -> Result<(Self, Recovery), LedgerError> {
        let public = key.verifying_key();
        let pub_path = dir.join("ledger.pub");
        std::fs::create_dir_all(dir.join("segments"))
            .map_err(io("creating the ledger directory"))?;
        match std::fs::read_to_string(&pub_path) {
            Ok(text) => {
                let stored = VerifyingKey::from_spki_pem(&text).map_err(|_| {
                    LedgerError::Refused("ledger.pub is not a P-256 public key".into())
                })?;
                if stored != public {
                    return Err(LedgerError::WrongKey);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                write_durably(&pub_path, public.to_spki_pem().as_bytes())?;
            }
            Err(e) => return Err(io("reading ledger.pub")(e)),
        }
        let (mut ledger, recovery) = Self::load(dir, public, Tail::Drop)?;
        ledger.key = Some(key);
        Ok((ledger, recovery))
    }

    /// Opens the ledger in `dir` to read and verify it, changing nothing: every batch must
    /// verify with `public` (or, when `None`, the key in `ledger.pub`), and an incomplete
    /// final batch is an error too.
    pub fn audit(
        dir: &Path,
        public: Option<VerifyingKey>,
    ) -> Result<(Self, Recovery), LedgerError> {
        let public = match public {
            Some(k) => k,
            None => {
                let text = std::fs::read_to_string(dir.join("ledger.pub"))
                    .map_err(io("reading ledger.pub"))?;
                VerifyingKey::from_spki_pem(&text).map_err(|_| {
                    LedgerError::Refused("ledger.pub is not a P-256 public key".into())
                })?
            }
        };
        Self::load(dir, public, Tail::Refuse)
    }

    fn load(dir: &Path, public: VerifyingKey, tail: Tail) -> Result<(Self, Recovery), LedgerError> {
        let seg_dir = dir.join("segments");
        let mut names: Vec<(u64, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(&seg_dir).map_err(io("listing segments"))? {
            let path = entry.map_err(io("listing segments"))?.path();
            let first = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse::<u64>().ok());
            match first {
                Some(first) => names.push((first, path)),
                None => {
                    if path.extension().is_some_and(|e| e == "seg") {
                        return Err(LedgerError::Refused(format!(
                            "segment file with an unexpected name: {}",
                            path.display()
                        )));
                    }
                }
            }
        }
        names.sort();
        let mut ledger = Self {
            dir: dir.to_owned(),
            key: None,
            public,
            segments: Vec::new(),
            index: Vec::new(),
            tree: Tree::new(),
            checkpoints: Vec::new(),
            poisoned: false,
        };
        let mut recovery = Recovery::default();
        let count = names.len();
        for (i, (first, path)) in names.into_iter().enumerate() {
            let last = i + 1 == count;
            let file = OpenOptions::new()
                .read(true)
                .append(tail == Tail::Drop)
                .open(&path)
                .map_err(io(format!("opening {}", path.display())))?;
            let data = std::fs::read(&path).map_err(io(format!("reading {}", path.display())))?;
            let name = path.display().to_string();
            if first != ledger.index.len() as u64 {
                return Err(LedgerError::Corrupt {
                    file: name,
                    offset: 0,
                    what: format!(
                        "the segment starts at entry {first}, the ledger has {} before it",
                        ledger.index.len()
                    ),
                });
            }
            let segment = u32::try_from(ledger.segments.len()).unwrap_or(u32::MAX);
            let good = ledger.replay_segment(&data, segment, &name, last, &mut recovery)?;
            if good < data.len() as u64 {
                // Only the final batch of the final segment can be incomplete.
                recovery.dropped_bytes = data.len() as u64 - good;
                if tail == Tail::Refuse {
                    return Err(LedgerError::Corrupt {
                        file: name,
                        offset: good,
                        what: format!(
                            "the ledger ends with {} bytes of an incomplete batch (never \
                             acknowledged; a restart of the service drops it)",
                            recovery.dropped_bytes
                        ),
                    });
                }
                file.set_len(good)
                    .map_err(io(format!("truncating {name}")))?;
                file.sync_all().map_err(io(format!("syncing {name}")))?;
            }
            ledger.segments.push(Segment {
                path,
                file,
                len: good,
            });
        }
        Ok((ledger, recovery))
    }

    /// Verifies and indexes one segment's batches; returns the length of its verified prefix.
    fn replay_segment(
        &mut self,
        data: &[u8],
        segment: u32,
        name: &str,
        last: bool,
        recovery: &mut Recovery,
    ) -> Result<u64, LedgerError> {
        let mut off = 0usize;
        while off < data.len() {
            let rest = &data[off..];
            let corrupt = |what: String| LedgerError::Corrupt {
                file: name.to_owned(),
                offset: off as u64,
                what,
            };
            // A crash while the last batch was written leaves it short, or leaves zeros where
            // the file system had reserved its blocks.
            let incomplete =
                rest.len() < HEADER_LEN || (&rest[..4] != MAGIC && rest.iter().all(|&b| b == 0));
            if incomplete {
                if last {
                    return Ok(off as u64);
                }
                return Err(corrupt("the segment ends inside a batch header".into()));
            }
            let header = &rest[..HEADER_LEN];
            if &header[..4] != MAGIC || header[4] != VERSION || header[5..8] != [0, 0, 0] {
                return Err(corrupt("not a batch header (magic or version)".into()));
            }
            if sha256(&header[..28])[..8] != header[28..36] {
                return Err(corrupt("the batch header's checksum does not match".into()));
            }
            let first_seq = u64_at(header, 8);
            let count = u32_at(header, 16) as usize;
            let body_len = u32_at(header, 20) as usize;
            let cp_len = u32_at(header, 24) as usize;
            let total = HEADER_LEN + body_len + cp_len;
            if rest.len() < total {
                if last {
                    return Ok(off as u64);
                }
                return Err(corrupt("the segment ends inside a batch".into()));
            }
            let frame = &rest[..total];
            if first_seq != self.index.len() as u64 {
                return Err(corrupt(format!(
                    "the batch starts at entry {first_seq}, expected {}",
                    self.index.len()
                )));
            }
            let body = &frame[HEADER_LEN..HEADER_LEN + body_len];
            let mut at = 0usize;
            let before = self.tree.len();
            for _ in 0..count {
                let len = body
                    .get(at..at + 4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                    .ok_or_else(|| corrupt("an entry length runs past the batch".into()))?;
                let entry = body
                    .get(at + 4..at + 4 + len)
                    .ok_or_else(|| corrupt("an entry runs past the batch".into()))?;
                self.tree.push(merkle::leaf_hash(entry));
                self.index.push(Location {
                    segment,
                    offset: (off + HEADER_LEN + at + 4) as u64,
                    len: len as u32,
                });
                at += 4 + len;
            }
            if at != body_len || count == 0 {
                self.tree.truncate(before);
                return Err(corrupt("the entries do not fill the batch exactly".into()));
            }
            let cp = &frame[HEADER_LEN + body_len..HEADER_LEN + body_len + cp_len];
            let root = self.tree.root();
            let checkpoint = Checkpoint::verify(cp, &root, &self.public).map_err(|e| {
                self.tree.truncate(before);
                match e {
                    ReceiptError::BadSignature => corrupt(
                        "the checkpoint's signature does not verify over the Merkle root of the \
                         entries: an entry or the checkpoint was changed"
                            .into(),
                    ),
                    e => corrupt(format!("checkpoint: {e}")),
                }
            })?;
            if checkpoint.tree_size != self.tree.len() {
                return Err(corrupt(format!(
                    "the checkpoint is for {} entries, the ledger has {}",
                    checkpoint.tree_size,
                    self.tree.len()
                )));
            }
            self.checkpoints.push(checkpoint);
            recovery.batches += 1;
            off += total;
        }
        Ok(off as u64)
    }

    /// Appends `entries` as one batch, makes it durable, and returns the signed checkpoint.
    /// When this returns `Ok`, every entry is on disk; when it returns `Err`, none is part of
    /// the ledger.
    pub fn append(&mut self, entries: &[Vec<u8>], time: i64) -> Result<Checkpoint, LedgerError> {
        let batch: Vec<(&[u8], Hash)> = entries
            .iter()
            .map(|e| (e.as_slice(), merkle::leaf_hash(e)))
            .collect();
        self.append_leaves(&batch, time)
    }

    /// [`Ledger::append`] for entries hashed when they arrived ([`Prepared`]), so that only the
    /// tree, the write and the sync are left on the commit path.
    pub fn append_prepared(
        &mut self,
        entries: &[Prepared],
        time: i64,
    ) -> Result<Checkpoint, LedgerError> {
        let batch: Vec<(&[u8], Hash)> = entries.iter().map(|p| (p.entry(), p.leaf)).collect();
        self.append_leaves(&batch, time)
    }

    fn append_leaves(
        &mut self,
        entries: &[(&[u8], Hash)],
        time: i64,
    ) -> Result<Checkpoint, LedgerError> {
        if self.poisoned {
            return Err(LedgerError::Poisoned);
        }
        let key = self.key.as_ref().ok_or_else(|| {
            LedgerError::Refused("the ledger was opened for auditing only".into())
        })?;
        if entries.is_empty() || entries.len() > MAX_BATCH {
            return Err(LedgerError::Refused(format!(
                "a batch holds 1 to {MAX_BATCH} entries, not {}",
                entries.len()
            )));
        }
        if let Some((big, _)) = entries.iter().find(|(e, _)| e.len() > MAX_ENTRY) {
            return Err(LedgerError::Refused(format!(
                "an entry of {} bytes; the limit is {MAX_ENTRY}",
                big.len()
            )));
        }
        let first_seq = self.tree.len();
        for (_, leaf) in entries {
            self.tree.push(*leaf);
        }
        let mut frame = encode_body(first_seq, entries);
        let checkpoint = match Checkpoint::sign(key, self.tree.len(), self.tree.root(), time) {
            Ok(c) => c,
            Err(e) => {
                self.tree.truncate(first_seq);
                return Err(e.into());
            }
        };
        finish_frame(&mut frame, &checkpoint.cose);
        match self.write_frame(first_seq, &frame) {
            Ok((segment, offset)) => {
                let mut at = offset + HEADER_LEN as u64;
                for (e, _) in entries {
                    self.index.push(Location {
                        segment,
                        offset: at + 4,
                        len: e.len() as u32,
                    });
                    at += 4 + e.len() as u64;
                }
                self.checkpoints.push(checkpoint.clone());
                Ok(checkpoint)
            }
            Err(e) => {
                self.tree.truncate(first_seq);
                Err(e)
            }
        }
    }

    /// Writes a frame at the end of the current segment (or a new one) and syncs it. On
    /// failure the segment is cut back to where it was, or the ledger is poisoned.
    fn write_frame(&mut self, first_seq: u64, frame: &[u8]) -> Result<(u32, u64), LedgerError> {
        let need_new = self
            .segments
            .last()
            .is_none_or(|s| s.len > 0 && s.len + frame.len() as u64 > SEGMENT_TARGET);
        if need_new {
            let path = self
                .dir
                .join("segments")
                .join(format!("{first_seq:020}.seg"));
            let file = OpenOptions::new()
                .read(true)
                .append(true)
                .create_new(true)
                .open(&path)
                .map_err(io(format!("creating {}", path.display())))?;
            File::open(self.dir.join("segments"))
                .and_then(|d| d.sync_all())
                .map_err(io("syncing the segments directory"))?;
            self.segments.push(Segment { path, file, len: 0 });
        }
        let segment = self.segments.len() - 1;
        let seg = &mut self.segments[segment];
        let offset = seg.len;
        let result = seg
            .file
            .write_all(frame)
            .and_then(|()| seg.file.sync_data());
        match result {
            Ok(()) => {
                seg.len += frame.len() as u64;
                Ok((segment as u32, offset))
            }
            Err(e) => {
                if seg
                    .file
                    .set_len(offset)
                    .and_then(|()| seg.file.sync_all())
                    .is_err()
                {
                    self.poisoned = true;
                }
                Err(io(format!("writing {}", seg.path.display()))(e))
            }
        }
    }

    /// The number of entries.
    pub fn len(&self) -> u64 {
        self.tree.len()
    }

    /// Whether the ledger has no entries.
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// The checkpoint key.
    pub fn public_key(&self) -> &VerifyingKey {
        &self.public
    }

    /// Entry `seq`, read from disk.
    pub fn entry(&self, seq: u64) -> Result<Option<Vec<u8>>, LedgerError> {
        let Some(loc) = usize::try_from(seq).ok().and_then(|i| self.index.get(i)) else {
            return Ok(None);
        };
        let seg = &self.segments[loc.segment as usize];
        let mut buf = vec![0u8; loc.len as usize];
        seg.file
            .read_exact_at(&mut buf, loc.offset)
            .map_err(io(format!("reading {}", seg.path.display())))?;
        Ok(Some(buf))
    }

    /// Every checkpoint, oldest first.
    pub fn checkpoints(&self) -> &[Checkpoint] {
        &self.checkpoints
    }

    /// The latest checkpoint.
    pub fn latest_checkpoint(&self) -> Option<&Checkpoint> {
        self.checkpoints.last()
    }

    /// A COSE receipt for entry `seq` under the latest checkpoint.
    pub fn receipt(&self, seq: u64) -> Result<Option<Vec<u8>>, LedgerError> {
        let Some(cp) = self.checkpoints.last() else {
            return Ok(None);
        };
        let Some(path) = self.tree.inclusion_proof(seq, cp.tree_size) else {
            return Ok(None);
        };
        Ok(Some(cp.receipt(seq, &path)?))
    }

    /// The consistency proof from the tree of `old` entries to the tree of `new`.
    pub fn consistency(&self, old: u64, new: u64) -> Option<Vec<Hash>> {
        self.tree.consistency_proof(old, new)
    }

    /// The root of the first `size` entries.
    pub fn root_at(&self, size: u64) -> Option<Hash> {
        self.tree.root_at(size)
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// A batch frame's header (checkpoint length and checksum still to fill in) and body.
fn encode_body(first_seq: u64, entries: &[(&[u8], Hash)]) -> Vec<u8> {
    let body_len: usize = entries.iter().map(|(e, _)| 4 + e.len()).sum();
    let mut frame = Vec::with_capacity(HEADER_LEN + body_len + 256);
    frame.extend_from_slice(MAGIC);
    frame.extend_from_slice(&[VERSION, 0, 0, 0]);
    frame.extend_from_slice(&first_seq.to_le_bytes());
    frame.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    frame.extend_from_slice(&(body_len as u32).to_le_bytes());
    frame.extend_from_slice(&[0u8; 12]);
    for (e, _) in entries {
        frame.extend_from_slice(&(e.len() as u32).to_le_bytes());
        frame.extend_from_slice(e);
    }
    frame
}

/// Completes a frame with its checkpoint: the length and checksum in the header, the bytes at
/// the end.
fn finish_frame(frame: &mut Vec<u8>, cp: &[u8]) {
    frame[24..28].copy_from_slice(&(cp.len() as u32).to_le_bytes());
    let check = sha256(&frame[..28]);
    frame[28..36].copy_from_slice(&check[..8]);
    frame.extend_from_slice(cp);
}

/// Writes a small file so that it exists whole or not at all: temporary file, sync, rename,
/// sync the directory.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), LedgerError> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(io(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io(format!("renaming to {}", path.display())))?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("syncing the ledger directory"))?;
    }
    Ok(())
}

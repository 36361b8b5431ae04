//! The sealed profile: the master key exists only in memory, rebuilt at each start from k of
//! the n recovery shares made when the store was initialised (Shamir over GF(2^8)).
//!
//! `kms/seal.json` records the store's id, k and n, and a check value (a fixed text sealed
//! under the master key) that tells a right master key from a wrong one; it holds nothing
//! secret. A share is one line of text:
//!
//! `confide-share-1-<store id, 16 hex>-<k>-<x>-<64 hex>-<check, 8 hex>`
//!
//! where the check is the first 4 bytes of SHA-256 over the text before it, so that a mistyped
//! share is refused on its own, and a share of another store is named as such.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use confide_crypto::aead::SealingKey;
use confide_crypto::shamir::{self, Share};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{KmsError, io, replace_file};

const CHECK_TEXT: &[u8] = b"confide key broker master key";
const CHECK_AAD: &[u8] = b"confide/kms/master-check/v1";

#[derive(Debug, Serialize, Deserialize)]
struct SealFile {
    version: u32,
    store_id: String,
    threshold: u8,
    shares: u8,
    check: String,
}

fn seal_path(dir: &Path) -> PathBuf {
    dir.join("seal.json")
}

/// Whether the key store in `dir` is a sealed one (initialised with recovery shares).
pub fn is_sealed_store(dir: &Path) -> bool {
    seal_path(dir).exists()
}

fn checksum(text: &str) -> String {
    hex::encode(&confide_crypto::digest::sha256(text.as_bytes())[..4])
}

fn encode(store_id: &str, threshold: u8, share: &Share) -> Zeroizing<String> {
    let body = Zeroizing::new(format!(
        "confide-share-1-{store_id}-{threshold}-{}-{}",
        share.x,
        hex::encode(&share.y[..])
    ));
    Zeroizing::new(format!("{}-{}", &*body, checksum(&body)))
}

fn decode(text: &str) -> Result<(String, u8, Share), KmsError> {
    let bad =
        |why: &str| KmsError::Invalid(format!("the share is not a confide recovery share: {why}"));
    let text = text.trim();
    let (body, check) = text.rsplit_once('-').ok_or_else(|| bad("no checksum"))?;
    if checksum(body) != check {
        return Err(bad(
            "its checksum does not match (a character changed or is missing)",
        ));
    }
    let parts: Vec<&str> = body.split('-').collect();
    let ["confide", "share", "1", store_id, threshold, x, y] = parts[..] else {
        return Err(bad("not seven dash-separated fields"));
    };
    let threshold = threshold.parse().map_err(|_| bad("threshold"))?;
    let x = x
        .parse()
        .ok()
        .filter(|&x| x != 0)
        .ok_or_else(|| bad("index"))?;
    let y = Zeroizing::new(hex::decode(y).map_err(|_| bad("value"))?);
    Ok((store_id.to_owned(), threshold, Share { x, y }))
}

/// Initialises a sealed key store in `dir`: a fresh master key, split into `shares` recovery
/// shares of which `threshold` rebuild it. Returns the shares (to give to their holders; they
/// are not stored). Refuses if `dir` already holds a key store.
pub fn init_sealed(
    dir: &Path,
    threshold: u8,
    shares: u8,
) -> Result<Vec<Zeroizing<String>>, KmsError> {
    if is_sealed_store(dir) || dir.join("master.key").exists() {
        return Err(KmsError::Exists(format!(
            "a key store in {}",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir.join("keys")).map_err(io("creating the key store"))?;
    let master = SealingKey::generate()
        .map_err(|_| KmsError::Invalid("the random generator failed".into()))?;
    let split = shamir::split(master.expose(), threshold, shares)
        .map_err(|e| KmsError::Invalid(e.to_string()))?;
    let store_id = hex::encode(
        confide_crypto::random::array::<8>()
            .map_err(|_| KmsError::Invalid("the random generator failed".into()))?,
    );
    let check = master
        .seal(CHECK_TEXT, CHECK_AAD)
        .map_err(|_| KmsError::Invalid("sealing failed".into()))?;
    let file = SealFile {
        version: 1,
        store_id: store_id.clone(),
        threshold,
        shares,
        check: base64::engine::general_purpose::STANDARD.encode(check),
    };
    let bytes = serde_json::to_vec_pretty(&file).map_err(|e| KmsError::Invalid(e.to_string()))?;
    replace_file(&seal_path(dir), &bytes)?;
    Ok(split
        .iter()
        .map(|s| encode(&store_id, threshold, s))
        .collect())
}

/// Where unsealing stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// Distinct shares given so far.
    pub given: usize,
    /// Shares needed.
    pub threshold: u8,
}

/// Shares gathered towards the master key of a sealed store.
pub struct Unsealer {
    seal: SealFile,
    shares: Vec<Share>,
}

impl std::fmt::Debug for Unsealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Unsealer {{ given: {}, threshold: {} }}",
            self.shares.len(),
            self.seal.threshold
        )
    }
}

impl Unsealer {
    /// Starts unsealing the store in `dir`.
    pub fn new(dir: &Path) -> Result<Self, KmsError> {
        let bytes = std::fs::read(seal_path(dir)).map_err(io(format!(
            "reading {} (initialise the store with `confide kms init`)",
            seal_path(dir).display()
        )))?;
        let seal: SealFile =
            serde_json::from_slice(&bytes).map_err(|_| KmsError::Corrupt("seal.json".into()))?;
        if seal.version != 1 {
            return Err(KmsError::Corrupt("seal.json".into()));
        }
        Ok(Self {
            seal,
            shares: Vec::new(),
        })
    }

    /// Where unsealing stands.
    pub fn progress(&self) -> Progress {
        Progress {
            given: self.shares.len(),
            threshold: self.seal.threshold,
        }
    }

    /// Adds a share. With the threshold reached, rebuilds the master key and checks it: the key
    /// if right; if wrong (a share of the right store but damaged), every share is forgotten
    /// and the error says so.
    pub fn add(&mut self, text: &str) -> Result<Option<SealingKey>, KmsError> {
        let (store_id, threshold, share) = decode(text)?;
        if store_id != self.seal.store_id || threshold != self.seal.threshold {
            return Err(KmsError::Invalid(
                "the share belongs to another key store".into(),
            ));
        }
        if self.shares.iter().any(|s| s.x == share.x) {
            return Err(KmsError::Invalid(format!(
                "share {} was given already",
                share.x
            )));
        }
        self.shares.push(share);
        if self.shares.len() < usize::from(self.seal.threshold) {
            return Ok(None);
        }
        let shares = std::mem::take(&mut self.shares);
        let bytes = shamir::combine(&shares).map_err(|e| KmsError::Invalid(e.to_string()))?;
        let master = SealingKey::from_bytes(&bytes)
            .map_err(|_| KmsError::Invalid("the shares do not rebuild a 32-byte key".into()))?;
        let check = base64::engine::general_purpose::STANDARD
            .decode(&self.seal.check)
            .map_err(|_| KmsError::Corrupt("seal.json".into()))?;
        match master.open(&check, CHECK_AAD) {
            Ok(text) if &text[..] == CHECK_TEXT => Ok(Some(master)),
            _ => Err(KmsError::Invalid(
                "the shares do not rebuild this store's master key; all were forgotten, start again"
                    .into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k_of_n_shares_unseal_and_bad_shares_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let shares = init_sealed(dir.path(), 2, 3).unwrap();
        assert_eq!(shares.len(), 3);
        assert!(matches!(
            init_sealed(dir.path(), 2, 3),
            Err(KmsError::Exists(_))
        ));
        // Nothing secret on disk: no share's value in seal.json.
        let seal = std::fs::read_to_string(dir.path().join("seal.json")).unwrap();
        for s in &shares {
            assert!(!seal.contains(s.split('-').nth(6).unwrap()));
        }

        let mut u = Unsealer::new(dir.path()).unwrap();
        assert!(u.add(&shares[2]).unwrap().is_none());
        assert_eq!(
            u.progress(),
            Progress {
                given: 1,
                threshold: 2
            }
        );
        assert!(u.add(&shares[2]).is_err(), "the same share twice");
        let master = u.add(&shares[0]).unwrap().expect("two shares unseal");

        // Any other pair rebuilds the same key.
        let mut u = Unsealer::new(dir.path()).unwrap();
        u.add(&shares[1]).unwrap();
        let again = u.add(&shares[2]).unwrap().unwrap();
        assert_eq!(master.expose(), again.expose());

        // A mistyped share, a share of another store, a forged share with a good checksum.
        let mut u = Unsealer::new(dir.path()).unwrap();
        let typo = shares[0].replacen('a', "b", 1).replacen('1', "2", 1);
        assert!(u.add(&typo).unwrap_err().to_string().contains("checksum"));
        let other = tempfile::tempdir().unwrap();
        let foreign = init_sealed(other.path(), 2, 3).unwrap();
        assert!(
            u.add(&foreign[0])
                .unwrap_err()
                .to_string()
                .contains("another key store")
        );
        let (id, k, mut share) = decode(&shares[1]).unwrap();
        share.y[0] ^= 1;
        let forged = encode(&id, k, &share);
        u.add(&shares[0]).unwrap();
        let err = u.add(&forged).unwrap_err().to_string();
        assert!(err.contains("do not rebuild"), "{err}");
        assert_eq!(u.progress().given, 0);
    }
}

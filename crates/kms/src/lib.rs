//! The key broker's key store: keys sealed at rest under a master key, each with an owner, a
//! release policy in Rego and versions; and the leases under which released keys are held.
//!
//! A key's file (`keys/NAME.json`) holds its metadata and each version sealed with AES-256-GCM
//! under the master key, bound to `NAME/VERSION`; no key byte is ever written in the clear.
//! Files are replaced whole (temporary file, sync, rename), so a failed change leaves the old
//! file. Only a key's owner changes it. The development profile keeps the master key in a file
//! (`master.key`, 0600); the sealed profile rebuilds it from k of n recovery shares at every
//! start (`seal`).

#![forbid(unsafe_code)]

mod byok;
mod resources;
mod seal;

pub use byok::{Import, KekInfo};
pub use resources::{
    ATTESTED_RESOURCE_POLICY, DEFAULT_RESOURCE_POLICY, INSECURE_SIMULATED_RESOURCE_POLICY,
    MAX_RESOURCE_BYTES, ResourceInfo, ResourcePath,
};
pub use seal::{Progress, Unsealer, init_sealed, is_sealed_store};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use confide_crypto::aead::SealingKey;
use confide_model::MemberId;
use confide_policy::Policy;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use zeroize::Zeroizing;

/// The HPKE `info` under which the key broker wraps a released key to a workload's runtime key
/// (stated once, in the model the broker and the workload share).
pub use confide_model::RELEASE_INFO;
pub use confide_model::broker::{KeyInfo, Lease, LeaseView};

/// The release policy a key gets unless its owner gives one: released to no one (default
/// deny). Its owner chooses who may have it: a policy of their own, [`DATASET_RELEASE_POLICY`]
/// or [`ATTESTED_RELEASE_POLICY`]. The texts live in `confide-policy`, with their table tests.
pub const DEFAULT_RELEASE_POLICY: &str = confide_policy::RELEASE_DENY;

/// A release policy its owner may choose: the token's CPU result is affirming, or a warning
/// about the platform only (an out-of-date TCB, or simulated evidence where the development
/// profile allowed it), and its code matched a measurement the consortium trusts. A TEE kind
/// with no trusted measurement gets no key.
pub const ATTESTED_RELEASE_POLICY: &str = confide_policy::RELEASE_ATTESTED;
const RELEASE_RULE: &str = "data.confide.release.allow";

/// The release policy of a dataset's key: only to a workload running an approved contract that
/// names the dataset (the key broker has checked the contract's state, the dataset's key and
/// owner, and that the token's measurement is one the contract allows, and passes the contract
/// as `input.contract`), with an affirming or platform-warning attestation result.
pub const DATASET_RELEASE_POLICY: &str = confide_policy::RELEASE_DATASET;

/// Why the key store refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KmsError {
    /// No such key.
    #[error("no key named {0:?}")]
    NotFound(String),
    /// A key of that name exists.
    #[error("a key named {0:?} exists")]
    Exists(String),
    /// The requester is not the key's owner.
    #[error("only the key's owner may do this")]
    NotOwner,
    /// The key is revoked.
    #[error("the key {0:?} is revoked")]
    Revoked(String),
    /// The request is malformed (name, policy).
    #[error("{0}")]
    Invalid(String),
    /// The release policy said no.
    #[error("the key's release policy denies this token")]
    Denied,
    /// Stored data does not open or parse: damaged, or another master key.
    #[error("the stored key {0:?} does not open under this master key")]
    Corrupt(String),
    /// The operating system refused.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

/// A member's id made from a name, for the tests.
#[cfg(test)]
pub(crate) fn member(name: &str) -> MemberId {
    MemberId::from_bytes(&confide_crypto::digest::sha256(name.as_bytes()))
}

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> KmsError {
    let what = what.into();
    move |source| KmsError::Io { what, source }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Version {
    version: u32,
    created: i64,
    sealed: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct KeyFile {
    pub(crate) name: String,
    pub(crate) owner: MemberId,
    pub(crate) policy: String,
    pub(crate) revoked: bool,
    pub(crate) created: i64,
    pub(crate) versions: Vec<Version>,
}

/// The key store in a directory.
#[derive(Debug)]
pub struct KeyStore {
    pub(crate) dir: PathBuf,
    pub(crate) master: SealingKey,
}

pub(crate) fn check_name(name: &str) -> Result<(), KmsError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(KmsError::Invalid(format!(
            "key name {name:?}: 1 to 64 letters, digits, '-', '_' or '.', not starting with '.'"
        )))
    }
}

impl KeyStore {
    /// The store in `dir` under `master` (rebuilt from recovery shares, or the development
    /// profile's file).
    pub fn open(dir: &Path, master: SealingKey) -> Result<Self, KmsError> {
        std::fs::create_dir_all(dir.join("keys")).map_err(io("creating the key store"))?;
        Ok(Self {
            dir: dir.to_owned(),
            master,
        })
    }

    /// The development profile: the master key in `dir/master.key` (0600), made on first use.
    /// Refused for a store initialised with recovery shares.
    pub fn open_dev(dir: &Path) -> Result<Self, KmsError> {
        if is_sealed_store(dir) {
            return Err(KmsError::Invalid(format!(
                "{} is a sealed key store: start without the development profile and unseal it",
                dir.display()
            )));
        }
        std::fs::create_dir_all(dir).map_err(io("creating the key store"))?;
        let path = dir.join("master.key");
        let master = match std::fs::read(&path) {
            Ok(bytes) => SealingKey::from_bytes(&bytes).map_err(|_| {
                KmsError::Invalid(format!("{} is not a 32-byte key", path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = SealingKey::generate()
                    .map_err(|_| KmsError::Invalid("the random generator failed".into()))?;
                confide_crypto::files::write_new(&path, key.expose(), 0o600)
                    .map_err(io(format!("creating {}", path.display())))?;
                key
            }
            Err(e) => return Err(io(format!("reading {}", path.display()))(e)),
        };
        Self::open(dir, master)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join("keys").join(format!("{name}.json"))
    }

    pub(crate) fn load(&self, name: &str) -> Result<KeyFile, KmsError> {
        check_name(name)?;
        let bytes = match std::fs::read(self.path(name)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KmsError::NotFound(name.to_owned()));
            }
            Err(e) => return Err(io(format!("reading key {name}"))(e)),
        };
        serde_json::from_slice(&bytes).map_err(|_| KmsError::Corrupt(name.to_owned()))
    }

    pub(crate) fn store(&self, file: &KeyFile) -> Result<(), KmsError> {
        let bytes =
            serde_json::to_vec_pretty(file).map_err(|e| KmsError::Invalid(e.to_string()))?;
        replace_file(&self.path(&file.name), &bytes)
    }

    fn seal_version(&self, name: &str, version: u32, now: i64) -> Result<Version, KmsError> {
        let material = Zeroizing::new(
            confide_crypto::random::array::<32>()
                .map_err(|_| KmsError::Invalid("the random generator failed".into()))?,
        );
        self.seal_material(name, version, &material[..], now)
    }

    pub(crate) fn seal_material(
        &self,
        name: &str,
        version: u32,
        material: &[u8],
        now: i64,
    ) -> Result<Version, KmsError> {
        let sealed = self
            .master
            .seal(material, format!("{name}/{version}").as_bytes())
            .map_err(|_| KmsError::Invalid("sealing failed".into()))?;
        Ok(Version {
            version,
            created: now,
            sealed: base64::engine::general_purpose::STANDARD.encode(sealed),
        })
    }

    /// Creates a fresh 256-bit key `name` owned by `owner`, with `policy` (Rego, package
    /// `confide.release`, rule `allow`) or the default.
    pub fn create(
        &self,
        name: &str,
        owner: &MemberId,
        policy: Option<&str>,
        now: i64,
    ) -> Result<KeyInfo, KmsError> {
        check_name(name)?;
        if self.path(name).exists() {
            return Err(KmsError::Exists(name.to_owned()));
        }
        let policy = policy.unwrap_or(DEFAULT_RELEASE_POLICY);
        Policy::new("release.rego", policy).map_err(|e| KmsError::Invalid(e.to_string()))?;
        let file = KeyFile {
            name: name.to_owned(),
            owner: owner.clone(),
            policy: policy.to_owned(),
            revoked: false,
            created: now,
            versions: vec![self.seal_version(name, 1, now)?],
        };
        self.store(&file)?;
        Ok(info(&file))
    }

    /// Adds a new version of `name`; releases use it from now on.
    pub fn rotate(&self, name: &str, by: &MemberId, now: i64) -> Result<KeyInfo, KmsError> {
        let mut file = self.load(name)?;
        if file.owner != *by {
            return Err(KmsError::NotOwner);
        }
        if file.revoked {
            return Err(KmsError::Revoked(name.to_owned()));
        }
        let next = file.versions.iter().map(|v| v.version).max().unwrap_or(0) + 1;
        file.versions.push(self.seal_version(name, next, now)?);
        self.store(&file)?;
        Ok(info(&file))
    }

    /// Revokes `name`: it is released no more.
    pub fn revoke(&self, name: &str, by: &MemberId) -> Result<KeyInfo, KmsError> {
        let mut file = self.load(name)?;
        if file.owner != *by {
            return Err(KmsError::NotOwner);
        }
        file.revoked = true;
        self.store(&file)?;
        Ok(info(&file))
    }

    /// Deletes `name` and every version of it, for good.
    pub fn delete(&self, name: &str, by: &MemberId) -> Result<KeyInfo, KmsError> {
        let file = self.load(name)?;
        if file.owner != *by {
            return Err(KmsError::NotOwner);
        }
        std::fs::remove_file(self.path(name)).map_err(io(format!("deleting key {name}")))?;
        std::fs::File::open(self.dir.join("keys"))
            .and_then(|d| d.sync_all())
            .map_err(io("syncing the key store"))?;
        Ok(info(&file))
    }

    /// What anyone may know about `name`.
    pub fn info(&self, name: &str) -> Result<KeyInfo, KmsError> {
        Ok(info(&self.load(name)?))
    }

    /// The newest version of `name`, if the key's release policy allows `token` (the verified
    /// token's claims).
    pub fn release(
        &self,
        name: &str,
        token: &Value,
    ) -> Result<(u32, Zeroizing<Vec<u8>>), KmsError> {
        self.release_for(name, token, None)
    }

    /// [`KeyStore::release`] for a workload running `contract` (as the ledger has it, with its
    /// state), which the release policy sees as `input.contract`.
    pub fn release_for(
        &self,
        name: &str,
        token: &Value,
        contract: Option<&Value>,
    ) -> Result<(u32, Zeroizing<Vec<u8>>), KmsError> {
        let file = self.load(name)?;
        if file.revoked {
            return Err(KmsError::Revoked(name.to_owned()));
        }
        let policy = Policy::new("release.rego", &file.policy)
            .map_err(|_| KmsError::Corrupt(name.to_owned()))?;
        let input = json!({
            "token": token,
            "key": {"name": file.name, "owner": file.owner},
            "contract": contract,
        });
        if policy.eval(RELEASE_RULE, &input).ok() != Some(json!(true)) {
            return Err(KmsError::Denied);
        }
        let latest = file
            .versions
            .iter()
            .max_by_key(|v| v.version)
            .ok_or_else(|| KmsError::Corrupt(name.to_owned()))?;
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(&latest.sealed)
            .map_err(|_| KmsError::Corrupt(name.to_owned()))?;
        let material = self
            .master
            .open(&sealed, format!("{name}/{}", latest.version).as_bytes())
            .map_err(|_| KmsError::Corrupt(name.to_owned()))?;
        Ok((latest.version, material))
    }
}

/// Replaces `path` whole: a temporary file (0600), synced, renamed over it, the directory
/// synced. A failure leaves the old file.
pub(crate) fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), KmsError> {
    confide_crypto::files::replace(path, bytes, 0o600)
        .map_err(io(format!("replacing {}", path.display())))
}

pub(crate) fn info(file: &KeyFile) -> KeyInfo {
    KeyInfo {
        name: file.name.clone(),
        owner: file.owner.clone(),
        revoked: file.revoked,
        version: file.versions.iter().map(|v| v.version).max().unwrap_or(0),
    }
}

/// The leases granted, by id.
#[derive(Debug, Default)]
pub struct Leases {
    leases: BTreeMap<String, Lease>,
}

impl Leases {
    /// Records a lease.
    pub fn grant(&mut self, lease: Lease) {
        self.leases.insert(lease.id.clone(), lease);
    }

    /// Lease `id`.
    pub fn get(&self, id: &str) -> Option<&Lease> {
        self.leases.get(id)
    }

    /// Renews lease `id` of `key` for the same runtime key, until `expires`.
    pub fn renew(
        &mut self,
        id: &str,
        key: &str,
        runtime_key: &str,
        now: i64,
        expires: i64,
    ) -> Result<Lease, KmsError> {
        let lease = self
            .leases
            .get_mut(id)
            .filter(|l| l.key == key)
            .ok_or_else(|| KmsError::NotFound(format!("lease {id}")))?;
        if lease.runtime_key != runtime_key {
            return Err(KmsError::Invalid(
                "the token is for another workload key than the lease".into(),
            ));
        }
        if now > lease.expires {
            return Err(KmsError::Invalid(
                "the lease lapsed; release the key again".into(),
            ));
        }
        lease.last_heartbeat = now;
        lease.expires = expires;
        Ok(lease.clone())
    }

    /// Records a renewal of lease `id` at `at`, until `expires`, as the ledger has it; false if
    /// there is no such lease.
    pub fn heartbeat(&mut self, id: &str, at: i64, expires: i64) -> bool {
        let Some(lease) = self.leases.get_mut(id) else {
            return false;
        };
        lease.last_heartbeat = at;
        lease.expires = expires;
        true
    }

    /// Whether `key` was ever released for contract `contract` to the workload whose runtime
    /// key has digest `runtime_key` (a lapsed lease counts: the key was handed over). A key
    /// released for another contract does not count: a workload reports only on the contract
    /// it was given the keys to run.
    pub fn released_to(
        &self,
        key: &str,
        runtime_key: &str,
        contract: &confide_model::ContractId,
    ) -> bool {
        self.leases.values().any(|l| {
            l.key == key && l.runtime_key == runtime_key && l.contract.as_ref() == Some(contract)
        })
    }

    /// Every lease of `key`, with whether it has lapsed at `now`.
    pub fn of_key(&self, key: &str, now: i64) -> Vec<LeaseView> {
        self.leases
            .values()
            .filter(|l| l.key == key)
            .map(|l| LeaseView {
                lease: l.clone(),
                lapsed: now > l.expires,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sealed_owned_versioned_and_revocable() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open_dev(dir.path()).unwrap();
        let token = json!({"submods": {"sim": {"ear.status": "warning", "ear.trustworthiness-vector": {"executables": 2}}}});
        // Without a policy of its owner's choosing, a key is released to no one.
        store
            .create("k0", &crate::member("alice"), None, 1)
            .unwrap();
        assert!(matches!(store.release("k0", &token), Err(KmsError::Denied)));
        let attested = Some(ATTESTED_RELEASE_POLICY);
        store
            .create("k1", &crate::member("alice"), attested, 1)
            .unwrap();
        assert!(matches!(
            store.create("k1", &crate::member("bob"), attested, 1),
            Err(KmsError::Exists(_))
        ));
        assert!(
            store
                .create("../x", &crate::member("alice"), None, 1)
                .is_err()
        );
        assert!(
            store
                .create("k2", &crate::member("alice"), Some("package nope {"), 1)
                .is_err()
        );
        let (v1, m1) = store.release("k1", &token).unwrap();
        assert_eq!((v1, m1.len()), (1, 32));
        assert!(matches!(
            store.release(
                "k1",
                &json!({"submods": {"sev-snp": {"ear.status": "contraindicated"}}})
            ),
            Err(KmsError::Denied)
        ));
        assert!(matches!(
            store.rotate("k1", &crate::member("bob"), 2),
            Err(KmsError::NotOwner)
        ));
        store.rotate("k1", &crate::member("alice"), 2).unwrap();
        let (v2, m2) = store.release("k1", &token).unwrap();
        assert_eq!(v2, 2);
        assert_ne!(m1, m2);
        // No key byte is stored in the clear.
        for entry in std::fs::read_dir(dir.path().join("keys")).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            for m in [&m1, &m2] {
                assert!(!bytes.windows(32).any(|w| w == &m[..]));
                let b64 = base64::engine::general_purpose::STANDARD.encode(&m[..]);
                assert!(!String::from_utf8_lossy(&bytes).contains(&b64));
            }
        }
        assert!(matches!(
            store.revoke("k1", &crate::member("bob")),
            Err(KmsError::NotOwner)
        ));
        assert!(matches!(
            store.delete("k1", &crate::member("bob")),
            Err(KmsError::NotOwner)
        ));
        store.revoke("k1", &crate::member("alice")).unwrap();
        assert!(matches!(
            store.release("k1", &token),
            Err(KmsError::Revoked(_))
        ));
        store.delete("k1", &crate::member("alice")).unwrap();
        assert!(matches!(store.info("k1"), Err(KmsError::NotFound(_))));
        // Another master key opens nothing.
        std::fs::write(dir.path().join("master.key"), [9u8; 32]).unwrap();
        let other = KeyStore::open_dev(dir.path()).unwrap();
        store
            .create("k3", &crate::member("alice"), attested, 3)
            .unwrap();
        assert!(matches!(
            other.release("k3", &token),
            Err(KmsError::Corrupt(_))
        ));
    }
}

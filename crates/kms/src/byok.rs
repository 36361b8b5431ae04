//! Bring your own key: key-exchange keys (RSA 3072, private half sealed under the master key,
//! never leaving the broker) and the import of keys wrapped to them with
//! `CKM_RSA_AES_KEY_WRAP` (see `confide_crypto::byok`). Files: `keks/NAME.json`.

use std::path::PathBuf;

use base64::Engine as _;
use confide_crypto::byok::{KeyExchangeKey, OaepHash};
use confide_model::MemberId;
use confide_policy::Policy;
use serde::{Deserialize, Serialize};

use crate::{
    DEFAULT_RELEASE_POLICY, KeyFile, KeyInfo, KeyStore, KmsError, check_name, info, io,
    replace_file,
};

const KEY_LEN: usize = 32;

#[derive(Debug, Serialize, Deserialize)]
struct KekFile {
    name: String,
    owner: MemberId,
    created: i64,
    public_pem: String,
    sealed: String,
}

pub use confide_model::broker::KekInfo;

/// A wrapped key to import.
#[derive(Debug, Clone, Copy)]
pub struct Import<'a> {
    /// The key-exchange key it is wrapped to.
    pub kek: &'a str,
    /// The `CKM_RSA_AES_KEY_WRAP` blob.
    pub blob: &'a [u8],
    /// The hash of its RSA-OAEP part.
    pub hash: OaepHash,
    /// The release policy to set, if any.
    pub policy: Option<&'a str>,
}

fn aad(name: &str) -> Vec<u8> {
    format!("kek/{name}").into_bytes()
}

impl KeyStore {
    fn kek_path(&self, name: &str) -> PathBuf {
        self.dir.join("keks").join(format!("{name}.json"))
    }

    /// Makes the key-exchange key `name` for `owner` and returns its public half.
    /// A name `kek-HEX`, with 16 hex digits or more, is reserved to the member whose fingerprint
    /// begins with `HEX` (`confide dataset publish` uses such a name), so no member can take
    /// another's.
    pub fn create_kek(&self, name: &str, owner: &MemberId, now: i64) -> Result<KekInfo, KmsError> {
        check_name(name)?;
        if let Some(prefix) = name.strip_prefix("kek-")
            && prefix.len() >= 16
            && prefix.bytes().all(|b| b.is_ascii_hexdigit())
            && !owner.as_str().starts_with(&prefix.to_ascii_lowercase())
        {
            return Err(KmsError::Invalid(format!(
                "the key-exchange key name {name} is reserved to the member whose fingerprint \
                 begins with {prefix}"
            )));
        }
        let path = self.kek_path(name);
        if path.exists() {
            return Err(KmsError::Exists(format!("key-exchange key {name}")));
        }
        let kek = KeyExchangeKey::generate().map_err(|e| KmsError::Invalid(e.to_string()))?;
        let pkcs8 = kek
            .to_pkcs8()
            .map_err(|e| KmsError::Invalid(e.to_string()))?;
        let sealed = self
            .master
            .seal(&pkcs8, &aad(name))
            .map_err(|_| KmsError::Invalid("sealing failed".into()))?;
        let file = KekFile {
            name: name.to_owned(),
            owner: owner.clone(),
            created: now,
            public_pem: kek
                .public_pem()
                .map_err(|e| KmsError::Invalid(e.to_string()))?,
            sealed: base64::engine::general_purpose::STANDARD.encode(sealed),
        };
        std::fs::create_dir_all(self.dir.join("keks")).map_err(io("creating keks"))?;
        let bytes =
            serde_json::to_vec_pretty(&file).map_err(|e| KmsError::Invalid(e.to_string()))?;
        replace_file(&path, &bytes)?;
        Ok(kek_info(&file))
    }

    fn load_kek(&self, name: &str) -> Result<KekFile, KmsError> {
        check_name(name)?;
        match std::fs::read(self.kek_path(name)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|_| KmsError::Corrupt(name.into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(KmsError::NotFound(format!("key-exchange key {name}")))
            }
            Err(e) => Err(io(format!("reading key-exchange key {name}"))(e)),
        }
    }

    /// The public half of the key-exchange key `name`.
    pub fn kek(&self, name: &str) -> Result<KekInfo, KmsError> {
        Ok(kek_info(&self.load_kek(name)?))
    }

    /// Imports the 256-bit key wrapped in `import.blob` as key `name` owned by `owner`: a new
    /// key, or a new version of the owner's key of that name. Only the key-exchange key's owner
    /// imports through it.
    pub fn import(
        &self,
        name: &str,
        owner: &MemberId,
        import: Import<'_>,
        now: i64,
    ) -> Result<KeyInfo, KmsError> {
        let Import {
            kek,
            blob,
            hash,
            policy,
        } = import;
        check_name(name)?;
        let kek_file = self.load_kek(kek)?;
        if kek_file.owner != *owner {
            return Err(KmsError::NotOwner);
        }
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(&kek_file.sealed)
            .map_err(|_| KmsError::Corrupt(kek.into()))?;
        let pkcs8 = self
            .master
            .open(&sealed, &aad(kek))
            .map_err(|_| KmsError::Corrupt(kek.into()))?;
        let private =
            KeyExchangeKey::from_pkcs8(&pkcs8).map_err(|_| KmsError::Corrupt(kek.into()))?;
        let material = private
            .unwrap(blob, hash)
            .map_err(|e| KmsError::Invalid(e.to_string()))?;
        if material.len() != KEY_LEN {
            return Err(KmsError::Invalid(format!(
                "the imported key is {} bytes; confide's keys are 256 bits (32 bytes)",
                material.len()
            )));
        }
        let file = match self.load(name) {
            Ok(mut file) => {
                if file.owner != *owner {
                    return Err(KmsError::NotOwner);
                }
                if file.revoked {
                    return Err(KmsError::Revoked(name.to_owned()));
                }
                let next = file.versions.iter().map(|v| v.version).max().unwrap_or(0) + 1;
                file.versions
                    .push(self.seal_material(name, next, &material, now)?);
                if let Some(p) = policy {
                    Policy::new("release.rego", p).map_err(|e| KmsError::Invalid(e.to_string()))?;
                    file.policy = p.to_owned();
                }
                file
            }
            Err(KmsError::NotFound(_)) => {
                let policy = policy.unwrap_or(DEFAULT_RELEASE_POLICY);
                Policy::new("release.rego", policy)
                    .map_err(|e| KmsError::Invalid(e.to_string()))?;
                KeyFile {
                    name: name.to_owned(),
                    owner: owner.clone(),
                    policy: policy.to_owned(),
                    revoked: false,
                    created: now,
                    versions: vec![self.seal_material(name, 1, &material, now)?],
                }
            }
            Err(e) => return Err(e),
        };
        self.store(&file)?;
        Ok(info(&file))
    }
}

fn kek_info(file: &KekFile) -> KekInfo {
    KekInfo {
        name: file.name.clone(),
        owner: file.owner.clone(),
        public_pem: file.public_pem.clone(),
        created: file.created,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn imported_keys_are_released_as_given_and_only_through_the_owners_kek() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open_dev(dir.path()).unwrap();
        // A name made of a fingerprint prefix is that member's alone.
        let bob = format!("kek-{}", "b0".repeat(8));
        assert!(matches!(
            store.create_kek(&bob, &"a1".repeat(32).parse().unwrap(), 1),
            Err(KmsError::Invalid(_))
        ));
        store
            .create_kek(&bob, &"b0".repeat(32).parse().unwrap(), 1)
            .unwrap();
        let kek = store
            .create_kek("kek-1", &crate::member("alice"), 1)
            .unwrap();
        assert!(matches!(
            store.create_kek("kek-1", &crate::member("alice"), 1),
            Err(KmsError::Exists(_))
        ));
        let der = confide_crypto::pem_decode(&kek.public_pem, "PUBLIC KEY").unwrap();
        let target = confide_crypto::random::array::<32>().unwrap();
        let blob = confide_crypto::byok::wrap(&der, &target, OaepHash::Sha256).unwrap();
        assert!(matches!(
            store.import("byok", &crate::member("bob"), imp(&blob), 2),
            Err(KmsError::NotOwner)
        ));
        let mut changed = blob.clone();
        changed[10] ^= 1;
        assert!(
            store
                .import("byok", &crate::member("alice"), imp(&changed), 2)
                .is_err()
        );
        let short = confide_crypto::byok::wrap(&der, &target[..16], OaepHash::Sha256).unwrap();
        let err = store
            .import("byok", &crate::member("alice"), imp(&short), 2)
            .unwrap_err();
        assert!(err.to_string().contains("256 bits"), "{err}");
        assert!(
            matches!(store.info("byok"), Err(KmsError::NotFound(_))),
            "nothing half-made"
        );
        let info = store
            .import("byok", &crate::member("alice"), imp(&blob), 2)
            .unwrap();
        assert_eq!(info.version, 1);
        let token = json!({"submods": {"sim": {"ear.status": "warning", "ear.trustworthiness-vector": {"executables": 2}}}});
        let (_, released) = store.release("byok", &token).unwrap();
        assert_eq!(&released[..], &target[..]);
        // The private half of the key-exchange key is sealed: no PKCS #8 in the file.
        let file = std::fs::read_to_string(dir.path().join("keks/kek-1.json")).unwrap();
        assert!(!file.contains("PRIVATE"));
        assert!(
            !file.contains("MIIG"),
            "an unsealed RSA PKCS #8 would start so"
        );
    }

    fn imp(blob: &[u8]) -> Import<'_> {
        Import {
            kek: "kek-1",
            blob,
            hash: OaepHash::Sha256,
            policy: Some(crate::ATTESTED_RELEASE_POLICY),
        }
    }
}

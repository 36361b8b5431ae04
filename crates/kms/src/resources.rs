//! KBS resources: secrets addressed `REPO/TYPE/TAG` (the Trustee KBS protocol's resource
//! paths), each sealed under the master key bound to its path, with an owner and a Rego
//! resource policy (package `confide.resource`, rule `allow`) over the attestation token's
//! claims. Files: `resources/REPO/TYPE/TAG.json`, replaced whole like keys' files.

use std::fmt;
use std::path::PathBuf;

use base64::Engine as _;
use confide_model::MemberId;
use confide_policy::Policy;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::{KeyStore, KmsError, check_name, io, replace_file};

/// The resource policy a resource gets unless its owner gives one: given to no one (default
/// deny), until its owner sets one such as [`ATTESTED_RESOURCE_POLICY`].
pub const DEFAULT_RESOURCE_POLICY: &str = confide_policy::RESOURCE_DENY;

/// A resource policy its owner may choose: as [`crate::ATTESTED_RELEASE_POLICY`] for keys, the
/// token's CPU result is affirming or a platform warning, for code the consortium trusts.
pub const ATTESTED_RESOURCE_POLICY: &str = confide_policy::RESOURCE_ATTESTED;

/// A resource policy for the development profile only: given to a workload on simulated
/// evidence (`sim`, or Trustee's `sample`). A sealed server issues no such token.
pub const INSECURE_SIMULATED_RESOURCE_POLICY: &str = confide_policy::RESOURCE_INSECURE_SIMULATED;
const RESOURCE_RULE: &str = "data.confide.resource.allow";
/// The largest resource stored.
pub const MAX_RESOURCE_BYTES: usize = 256 * 1024;

/// A resource's address: `REPO/TYPE/TAG`, each part a name as keys have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    repo: String,
    kind: String,
    tag: String,
}

impl ResourcePath {
    /// The path `repo/kind/tag`, each part checked.
    pub fn new(repo: &str, kind: &str, tag: &str) -> Result<Self, KmsError> {
        for part in [repo, kind, tag] {
            check_name(part).map_err(|_| {
                KmsError::Invalid(format!(
                    "resource path part {part:?}: 1 to 64 letters, digits, '-', '_' or '.', not \
                     starting with '.'"
                ))
            })?;
        }
        Ok(Self {
            repo: repo.to_owned(),
            kind: kind.to_owned(),
            tag: tag.to_owned(),
        })
    }

    /// Parses `REPO/TYPE/TAG`.
    pub fn parse(text: &str) -> Result<Self, KmsError> {
        let mut parts = text.split('/');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(r), Some(k), Some(t), None) => Self::new(r, k, t),
            _ => Err(KmsError::Invalid(format!(
                "resource path {text:?} is not REPO/TYPE/TAG"
            ))),
        }
    }

    fn as_json(&self) -> Value {
        json!({"repo": self.repo, "type": self.kind, "tag": self.tag, "path": self.to_string()})
    }
}

impl fmt::Display for ResourcePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.repo, self.kind, self.tag)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct ResourceFile {
    path: String,
    owner: MemberId,
    policy: String,
    updated: i64,
    size: usize,
    sealed: String,
}

pub use confide_model::broker::ResourceInfo;

impl KeyStore {
    fn resource_file(&self, path: &ResourcePath) -> PathBuf {
        self.dir
            .join("resources")
            .join(&path.repo)
            .join(&path.kind)
            .join(format!("{}.json", path.tag))
    }

    fn load_resource(&self, path: &ResourcePath) -> Result<Option<ResourceFile>, KmsError> {
        match std::fs::read(self.resource_file(path)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|_| KmsError::Corrupt(path.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(format!("reading resource {path}"))(e)),
        }
    }

    /// Stores `content` at `path` for `owner`, with `policy` or the default. A resource that
    /// exists is replaced only by its owner, who keeps its policy unless a new one is given.
    pub fn put_resource(
        &self,
        path: &ResourcePath,
        owner: &MemberId,
        content: &[u8],
        policy: Option<&str>,
        now: i64,
    ) -> Result<ResourceInfo, KmsError> {
        if content.len() > MAX_RESOURCE_BYTES {
            return Err(KmsError::Invalid(format!(
                "the resource is {} bytes; the most is {MAX_RESOURCE_BYTES}",
                content.len()
            )));
        }
        let existing = self.load_resource(path)?;
        if existing.as_ref().is_some_and(|f| f.owner != *owner) {
            return Err(KmsError::NotOwner);
        }
        let policy = match (policy, &existing) {
            (Some(p), _) => p.to_owned(),
            (None, Some(f)) => f.policy.clone(),
            (None, None) => DEFAULT_RESOURCE_POLICY.to_owned(),
        };
        Policy::new("resource.rego", &policy).map_err(|e| KmsError::Invalid(e.to_string()))?;
        let sealed = self
            .master
            .seal(content, format!("kbs/{path}").as_bytes())
            .map_err(|_| KmsError::Invalid("sealing failed".into()))?;
        let file = ResourceFile {
            path: path.to_string(),
            owner: owner.clone(),
            policy,
            updated: now,
            size: content.len(),
            sealed: base64::engine::general_purpose::STANDARD.encode(sealed),
        };
        let target = self.resource_file(path);
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir).map_err(io("creating the resource directory"))?;
        }
        let bytes =
            serde_json::to_vec_pretty(&file).map_err(|e| KmsError::Invalid(e.to_string()))?;
        replace_file(&target, &bytes)?;
        Ok(resource_info(&file))
    }

    /// The content of `path`, if its resource policy allows `token` (the verified token's
    /// claims).
    pub fn resource(
        &self,
        path: &ResourcePath,
        token: &Value,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let file = self
            .load_resource(path)?
            .ok_or_else(|| KmsError::NotFound(path.to_string()))?;
        let policy = Policy::new("resource.rego", &file.policy)
            .map_err(|_| KmsError::Corrupt(path.to_string()))?;
        let mut resource = path.as_json();
        resource["owner"] = json!(file.owner);
        let input = json!({"token": token, "resource": resource});
        if policy.eval(RESOURCE_RULE, &input).ok() != Some(json!(true)) {
            return Err(KmsError::Denied);
        }
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(&file.sealed)
            .map_err(|_| KmsError::Corrupt(path.to_string()))?;
        self.master
            .open(&sealed, format!("kbs/{path}").as_bytes())
            .map_err(|_| KmsError::Corrupt(path.to_string()))
    }

    /// What anyone may know about the resource at `path`.
    pub fn resource_info(&self, path: &ResourcePath) -> Result<ResourceInfo, KmsError> {
        self.load_resource(path)?
            .map(|f| resource_info(&f))
            .ok_or_else(|| KmsError::NotFound(path.to_string()))
    }
}

fn resource_info(file: &ResourceFile) -> ResourceInfo {
    ResourceInfo {
        path: file.path.clone(),
        owner: file.owner.clone(),
        size: file.size,
        updated: file.updated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_sealed_owned_and_guarded_by_their_policy() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open_dev(dir.path()).unwrap();
        let path = ResourcePath::parse("default/key/demo").unwrap();
        let warning = json!({"submods": {"sev-snp": {"ear.status": "warning",
                             "ear.trustworthiness-vector": {"executables": 2}}}});
        let contraindicated = json!({"submods": {"sev-snp": {"ear.status": "contraindicated",
                                     "ear.trustworthiness-vector": {"executables": 2}}}});
        // Trusted code is a part of the attested policy: any code on a genuine TEE is not.
        let untrusted = json!({"submods": {"sev-snp": {"ear.status": "warning",
                               "ear.trustworthiness-vector": {"executables": 0}}}});
        let secret = b"the resource's secret bytes, long enough to look for";
        // Stored without a policy, a resource is given to no one.
        store
            .put_resource(&path, &crate::member("alice"), secret, None, 1)
            .unwrap();
        assert!(matches!(
            store.resource(&path, &warning),
            Err(KmsError::Denied)
        ));
        store
            .put_resource(
                &path,
                &crate::member("alice"),
                secret,
                Some(ATTESTED_RESOURCE_POLICY),
                1,
            )
            .unwrap();
        assert_eq!(&store.resource(&path, &warning).unwrap()[..], secret);
        for token in [&contraindicated, &untrusted] {
            assert!(matches!(
                store.resource(&path, token),
                Err(KmsError::Denied)
            ));
        }
        assert!(matches!(
            store.put_resource(&path, &crate::member("bob"), b"x", None, 2),
            Err(KmsError::NotOwner)
        ));
        let missing = ResourcePath::parse("default/key/other").unwrap();
        assert!(matches!(
            store.resource(&missing, &warning),
            Err(KmsError::NotFound(_))
        ));
        for bad in ["a/b", "a/b/c/d", "../b/c", "a//c", "a/b/c d"] {
            assert!(ResourcePath::parse(bad).is_err(), "{bad}");
        }
        // A policy that names the resource: only tokens whose submods say so.
        let deny_all = "package confide.resource\nimport rego.v1\ndefault allow := false\n";
        store
            .put_resource(&path, &crate::member("alice"), secret, Some(deny_all), 3)
            .unwrap();
        assert!(matches!(
            store.resource(&path, &warning),
            Err(KmsError::Denied)
        ));
        // Replacing keeps the policy unless a new one is given.
        store
            .put_resource(&path, &crate::member("alice"), b"new", None, 4)
            .unwrap();
        assert!(matches!(
            store.resource(&path, &warning),
            Err(KmsError::Denied)
        ));
        assert!(
            store
                .put_resource(
                    &path,
                    &crate::member("alice"),
                    b"x",
                    Some("package broken {"),
                    5
                )
                .is_err()
        );
        // Never in the clear on disk.
        let file = std::fs::read(dir.path().join("resources/default/key/demo.json")).unwrap();
        assert!(!file.windows(3).any(|w| w == b"new"));
        assert_eq!(store.resource_info(&path).unwrap().size, 3);
    }
}

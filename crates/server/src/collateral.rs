//! The collateral store: endorsements the attestation service was given (VCEKs and their
//! chains, PCK certificates, TCB info, QE identities, CRLs) kept so that later evidence from
//! the same platform verifies offline, without the workload sending them again.
//!
//! Collateral is kept as the bundle it came in, keyed by TEE kind and the platform it verified
//! evidence for (the SNP chip id, the DCAP FMSPC): only collateral that just verified real
//! evidence is kept. Evidence that comes without collateral is verified against each bundle
//! kept for its kind until one verifies it; when none does, the error of the first is reported
//! (an expired TCB info says so). A bundle holding CRLs is dropped at the earliest CRL's
//! `nextUpdate`: a CRL is never used from the store once stale. Files:
//! `collateral/KIND-PLATFORM.json`, replaced whole.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use base64::Engine as _;
use confide_attest::{Collateral, TeeKind};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::ServeError;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Bundle {
    kind: String,
    platform: String,
    stored: i64,
    /// The earliest `nextUpdate` of the bundle's CRLs: the bundle is dropped then.
    crl_next_update: Option<i64>,
    items: Vec<String>,
}

impl Bundle {
    fn items(&self) -> Vec<Vec<u8>> {
        self.items
            .iter()
            .filter_map(|i| base64::engine::general_purpose::STANDARD.decode(i).ok())
            .collect()
    }
}

/// The bundles kept, by file name.
#[derive(Debug)]
pub(crate) struct Store {
    dir: PathBuf,
    bundles: RwLock<BTreeMap<String, Bundle>>,
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> ServeError {
    move |source| ServeError::Io { what, source }
}

/// Parses every item into one bag; the first item that is no collateral is named.
pub(crate) fn parse(items: &[Vec<u8>]) -> Result<Collateral, String> {
    let mut collateral = Collateral::new();
    for (i, item) in items.iter().enumerate() {
        collateral
            .add(item)
            .map_err(|e| format!("collateral {i}: {e}"))?;
    }
    Ok(collateral)
}

impl Store {
    /// The store in `dir`, created if need be.
    pub(crate) fn open(dir: &Path) -> Result<Self, ServeError> {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        let mut bundles = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(io(format!("listing {}", dir.display())))? {
            let path = entry
                .map_err(io(format!("listing {}", dir.display())))?
                .path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(io(format!("reading {}", path.display())))?;
            let bundle: Bundle = serde_json::from_slice(&bytes).map_err(|e| {
                ServeError::Config(format!(
                    "{} is not a collateral bundle: {e}",
                    path.display()
                ))
            })?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            bundles.insert(name, bundle);
        }
        Ok(Self {
            dir: dir.to_owned(),
            bundles: RwLock::new(bundles),
        })
    }

    /// Keeps `items`, which just verified evidence of `kind` from `platform`, replacing what
    /// was kept for that platform.
    pub(crate) fn keep(
        &self,
        kind: TeeKind,
        platform: &str,
        items: &[Vec<u8>],
        now: i64,
    ) -> Result<(), ServeError> {
        let collateral = parse(items).map_err(ServeError::Config)?;
        let bundle = Bundle {
            kind: kind.as_str().to_owned(),
            platform: platform.to_owned(),
            stored: now,
            crl_next_update: collateral.earliest_crl_next_update().map(|t| t.secs()),
            items: items
                .iter()
                .map(|i| base64::engine::general_purpose::STANDARD.encode(i))
                .collect(),
        };
        let name = format!("{}-{platform}.json", kind.as_str());
        let path = self.dir.join(&name);
        let tmp = path.with_extension("tmp");
        let bytes =
            serde_json::to_vec_pretty(&bundle).map_err(|e| ServeError::Config(e.to_string()))?;
        let mut f =
            std::fs::File::create(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
        f.write_all(&bytes)
            .and_then(|()| f.sync_all())
            .map_err(io(format!("writing {}", tmp.display())))?;
        std::fs::rename(&tmp, &path).map_err(io(format!("replacing {}", path.display())))?;
        self.bundles
            .write()
            .map_err(|e| ServeError::Config(e.to_string()))?
            .insert(name, bundle);
        Ok(())
    }

    /// The bundles kept for `kind`, parsed; bundles with a CRL stale at `now` are dropped
    /// first, from memory and disk.
    pub(crate) fn candidates(&self, kind: TeeKind, now: i64) -> Vec<Collateral> {
        let stale: Vec<String> = match self.bundles.read() {
            Ok(b) => b
                .iter()
                .filter(|(_, b)| b.crl_next_update.is_some_and(|t| t <= now))
                .map(|(n, _)| n.clone())
                .collect(),
            Err(_) => return Vec::new(),
        };
        if !stale.is_empty()
            && let Ok(mut bundles) = self.bundles.write()
        {
            for name in stale {
                bundles.remove(&name);
                let _ = std::fs::remove_file(self.dir.join(&name));
            }
        }
        match self.bundles.read() {
            Ok(b) => b
                .values()
                .filter(|b| b.kind == kind.as_str())
                .filter_map(|b| parse(&b.items()).ok())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// What is kept, for `GET /attest/collateral`.
    pub(crate) fn list(&self) -> Value {
        let bundles: Vec<Value> = self
            .bundles
            .read()
            .map(|b| {
                b.values()
                    .map(|b| {
                        json!({
                            "kind": b.kind, "platform": b.platform, "stored": b.stored,
                            "items": b.items.len(), "crl_next_update": b.crl_next_update,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        json!({ "bundles": bundles })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata(rel: &str) -> Vec<u8> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/attestation");
        std::fs::read(root.join(rel)).unwrap()
    }

    #[test]
    fn bundles_survive_a_restart_and_stale_crls_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let vcek = vec![testdata("snp/S1-trustee-milan-vcek/test-vcek.der")];
        store.keep(TeeKind::SevSnp, "chip-a", &vcek, 1).unwrap();
        let crl = vec![testdata("sgx/G4-automata/intel_root_ca_crl.der")];
        let next_update = parse(&crl)
            .unwrap()
            .earliest_crl_next_update()
            .unwrap()
            .secs();
        store.keep(TeeKind::Sgx, "fmspc-b", &crl, 1).unwrap();
        assert!(
            store
                .keep(TeeKind::Sgx, "x", &[b"junk".to_vec()], 1)
                .is_err()
        );

        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.candidates(TeeKind::Sgx, next_update - 1).len(), 1);
        assert_eq!(store.candidates(TeeKind::Tdx, 0).len(), 0);
        // At the CRL's nextUpdate the bundle is stale: gone, from disk too.
        assert_eq!(store.candidates(TeeKind::Sgx, next_update).len(), 0);
        assert_eq!(store.candidates(TeeKind::SevSnp, next_update).len(), 1);
        assert!(!dir.path().join("sgx-fmspc-b.json").exists());
        assert_eq!(
            Store::open(dir.path()).unwrap().list()["bundles"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }
}

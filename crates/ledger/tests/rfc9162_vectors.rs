//! The RFC 9162 proof vectors of transparency-dev/merkle (testdata/merkle, see its README):
//! every valid proof verifies and every mutated one is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use base64::Engine as _;
use confide_ledger::merkle::{verify_consistency, verify_inclusion};
use serde_json::Value;

fn vectors(kind: &str) -> Vec<(PathBuf, Value)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/merkle")
        .join(kind);
    let mut out = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                let v = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
                out.push((path, v));
            }
        }
    }
    out
}

fn b64(v: &Value) -> Vec<u8> {
    v.as_str()
        .map(|s| base64::engine::general_purpose::STANDARD.decode(s).unwrap())
        .unwrap_or_default()
}

fn list(v: &Value) -> Vec<Vec<u8>> {
    v.as_array()
        .map(|a| a.iter().map(b64).collect())
        .unwrap_or_default()
}

#[test]
fn inclusion_vectors() {
    let all = vectors("inclusion");
    assert_eq!(all.len(), 98);
    for (path, v) in all {
        let result = verify_inclusion(
            &b64(&v["leafHash"]),
            v["leafIdx"].as_u64().unwrap(),
            v["treeSize"].as_u64().unwrap(),
            &list(&v["proof"]),
            &b64(&v["root"]),
        );
        assert_eq!(
            result.is_err(),
            v["wantErr"].as_bool().unwrap(),
            "{}",
            path.display()
        );
    }
}

#[test]
fn consistency_vectors() {
    let all = vectors("consistency");
    assert_eq!(all.len(), 98);
    for (path, v) in all {
        let result = verify_consistency(
            v["size1"].as_u64().unwrap(),
            v["size2"].as_u64().unwrap(),
            &b64(&v["root1"]),
            &b64(&v["root2"]),
            &list(&v["proof"]),
        );
        assert_eq!(
            result.is_err(),
            v["wantErr"].as_bool().unwrap(),
            "{}",
            path.display()
        );
    }
}

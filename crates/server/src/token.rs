//! Attestation tokens: JWTs (RFC 7519) signed with ES256 (RFC 7518), whose keys are published as
//! a JWKS so that any JWT library can check them. Keys rotate: the newest signs, every key is
//! published, so tokens issued before a rotation still verify until they expire. A key that
//! may have leaked is retired: its file is deleted and it is published no more, so every token
//! it signed stops verifying at once.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use confide_crypto::signing::{SigningKey, VerifyingKey};
use serde_json::{Value, json};

use crate::ServeError;

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The key id of a public key ([`VerifyingKey::key_id`]).
pub fn kid(key: &VerifyingKey) -> String {
    key.key_id()
}

/// The token signing keys, oldest first, with their files.
#[derive(Debug)]
pub(crate) struct KeySet {
    dir: PathBuf,
    keys: Vec<(PathBuf, SigningKey)>,
    at_rest: crate::AtRest,
}

impl KeySet {
    /// Loads the keys in `dir` (PKCS #8 files, 0600, sealed under the master key unless in the
    /// development profile), making the first if there is none.
    pub(crate) fn open(dir: &Path, at_rest: crate::AtRest) -> Result<Self, ServeError> {
        let io = |what: String| move |source| ServeError::Io { what, source };
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io(format!("listing {}", dir.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "key"))
            .collect();
        names.sort();
        let mut keys = Vec::new();
        for path in names {
            let key = crate::signing_key_file(&path, &at_rest)?;
            keys.push((path, key));
        }
        let mut set = Self {
            dir: dir.to_owned(),
            keys,
            at_rest,
        };
        if set.keys.is_empty() {
            set.rotate()?;
        }
        Ok(set)
    }

    /// Adds a new newest key, which signs from now on.
    pub(crate) fn rotate(&mut self) -> Result<(), ServeError> {
        // Numbered after the newest, so that a retired key's number is never reused.
        let next = self
            .keys
            .last()
            .and_then(|(p, _)| p.file_stem()?.to_str()?.parse::<u64>().ok())
            .map_or(0, |n| n + 1);
        let path = self.dir.join(format!("{next:06}.key"));
        if path.exists() {
            return Err(ServeError::Config(format!(
                "{} exists but is not a token key in sequence",
                path.display()
            )));
        }
        let key = crate::signing_key_file(&path, &self.at_rest)?;
        self.keys.push((path, key));
        Ok(())
    }

    /// Retires the key `kid`: deletes its file and stops publishing it. The newest key, which
    /// signs, is retired only after a rotation.
    pub(crate) fn retire(&mut self, retired: &str) -> Result<(), ServeError> {
        let at = self
            .keys
            .iter()
            .position(|(_, k)| kid(&k.verifying_key()) == retired)
            .ok_or_else(|| {
                ServeError::Config(format!("no token signing key has the kid {retired}"))
            })?;
        if at + 1 == self.keys.len() {
            return Err(ServeError::Config(format!(
                "token key {retired} is the one that signs: rotate first (--rotate-token-key)"
            )));
        }
        let (path, _) = self.keys.remove(at);
        std::fs::remove_file(&path).map_err(|source| ServeError::Io {
            what: format!("deleting {}", path.display()),
            source,
        })
    }

    /// The JWKS of every key.
    pub(crate) fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .keys
            .iter()
            .map(|(_, k)| {
                let public = k.verifying_key();
                json!({
                    "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig",
                    "kid": kid(&public), "x": b64url(public.x()), "y": b64url(public.y()),
                })
            })
            .collect();
        json!({ "keys": keys })
    }

    /// Signs `claims` as a compact JWT with the newest key.
    pub(crate) fn sign(&self, claims: &Value) -> Result<String, ServeError> {
        let (_, key) = self
            .keys
            .last()
            .ok_or_else(|| ServeError::Config("no token signing key".into()))?;
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": kid(&key.verifying_key())});
        let signing_input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let signature = key
            .sign(signing_input.as_bytes())
            .map_err(|_| ServeError::Config("signing the token failed".into()))?;
        Ok(format!("{signing_input}.{}", b64url(&signature)))
    }
}

/// Checks a compact ES256 JWT against a JWKS document and returns its claims; expiry is the
/// caller's to check. For clients and tests: it uses only the published keys.
pub fn verify_jwt(token: &str, jwks: &Value) -> Option<Value> {
    let mut parts = token.split('.');
    let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let decode = |x: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(x)
            .ok()
    };
    let header: Value = serde_json::from_slice(&decode(h)?).ok()?;
    if header["alg"] != "ES256" {
        return None;
    }
    let jwk = jwks["keys"]
        .as_array()?
        .iter()
        .find(|k| k["kid"] == header["kid"])?;
    let key =
        VerifyingKey::from_coordinates(&decode(jwk["x"].as_str()?)?, &decode(jwk["y"].as_str()?)?)
            .ok()?;
    key.verify(format!("{h}.{p}").as_bytes(), &decode(s)?)
        .ok()?;
    serde_json::from_slice(&decode(p)?).ok()
}

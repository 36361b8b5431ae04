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

/// Why a token does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not three base64url parts, or a part is not the JSON it must be.
    #[error("the token is not a compact JWT: {0}")]
    Malformed(&'static str),
    /// Signed with another algorithm than ES256.
    #[error("the token is not signed with ES256")]
    Algorithm,
    /// Its `kid` names no published key (another service's, or a retired one).
    #[error("the token's key {0:?} is not one of this service's published keys")]
    UnknownKey(String),
    /// The signature does not verify with the key its `kid` names.
    #[error("the token's signature does not verify")]
    BadSignature,
}

/// Checks a compact ES256 JWT against a JWKS document and returns its claims; issuer and
/// expiry are the caller's to check. For clients and tests: it uses only the published keys.
pub fn verify_jwt(token: &str, jwks: &Value) -> Result<Value, TokenError> {
    use TokenError::Malformed;
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Malformed("not three parts"));
    };
    let decode = |x: &str, what: &'static str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(x)
            .map_err(|_| Malformed(what))
    };
    let header: Value = serde_json::from_slice(&decode(h, "the header is not base64url")?)
        .map_err(|_| Malformed("the header is not JSON"))?;
    if header["alg"] != "ES256" {
        return Err(TokenError::Algorithm);
    }
    let unknown = || TokenError::UnknownKey(header["kid"].as_str().unwrap_or("").to_owned());
    let jwk = jwks["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|k| k["kid"] == header["kid"])
        .ok_or_else(unknown)?;
    let coordinate = |name: &str| {
        jwk[name]
            .as_str()
            .ok_or_else(unknown)
            .and_then(|c| decode(c, "a published key's coordinate is not base64url"))
    };
    let key = VerifyingKey::from_coordinates(&coordinate("x")?, &coordinate("y")?)
        .map_err(|_| unknown())?;
    key.verify(
        format!("{h}.{p}").as_bytes(),
        &decode(s, "the signature is not base64url")?,
    )
    .map_err(|_| TokenError::BadSignature)?;
    serde_json::from_slice(&decode(p, "the claims are not base64url")?)
        .map_err(|_| Malformed("the claims are not JSON"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JWT over `header` and `claims` signed by `key`.
    fn jwt(key: &SigningKey, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let signature = key.sign(input.as_bytes()).unwrap();
        format!("{input}.{}", b64url(&signature))
    }

    fn jwks(key: &VerifyingKey) -> Value {
        json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": kid(key),
                         "x": b64url(key.x()), "y": b64url(key.y())}]})
    }

    #[test]
    fn a_token_that_does_not_verify_says_why() {
        let key = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        let published = jwks(&key.verifying_key());
        let claims = json!({"iss": "x", "exp": 1});
        let header = json!({"alg": "ES256", "kid": kid(&key.verifying_key())});
        let good = jwt(&key, &header, &claims);
        assert_eq!(verify_jwt(&good, &published), Ok(claims.clone()));

        let (h, rest) = good.split_once('.').unwrap();
        let (p, sig) = rest.split_once('.').unwrap();
        let other_claims = b64url(json!({"iss": "y"}).to_string().as_bytes());
        let hs256 = json!({"alg": "HS256", "kid": kid(&key.verifying_key())});
        let cases: Vec<(String, TokenError)> = vec![
            (format!("{h}.{p}"), TokenError::Malformed("not three parts")),
            (
                format!("{good}.x"),
                TokenError::Malformed("not three parts"),
            ),
            (
                format!("!.{p}.{sig}"),
                TokenError::Malformed("the header is not base64url"),
            ),
            (jwt(&key, &hs256, &claims), TokenError::Algorithm),
            (
                jwt(&other, &json!({"alg": "ES256", "kid": "nobody"}), &claims),
                TokenError::UnknownKey("nobody".into()),
            ),
            // Signed by another key under this key's id.
            (jwt(&other, &header, &claims), TokenError::BadSignature),
            // The claims changed after signing.
            (
                format!("{h}.{other_claims}.{sig}"),
                TokenError::BadSignature,
            ),
        ];
        for (token, why) in cases {
            assert_eq!(verify_jwt(&token, &published), Err(why.clone()), "{why}");
        }
    }
}

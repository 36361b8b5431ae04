//! The public identity document that members exchange.
//!
//! ```json
//! {
//!   "confide_identity": 1,
//!   "name": "bank-a",
//!   "fingerprint": "3f2a-91bc-0d4e-77a1",
//!   "signing_key": { "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig",
//!                    "kid": "<64 hex digits>", "x": "<base64url>", "y": "<base64url>" },
//!   "hpke_key": { "suite": "DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM",
//!                 "public_key": "<base64url, 32 bytes>" }
//! }
//! ```
//!
//! The fingerprint is SHA-256 over `"confide member fingerprint v1" ‖ 0x00 ‖ SEC1 signing
//! point (65 bytes) ‖ X25519 key (32 bytes)`; the short form shown to people is its first eight
//! bytes in four hex groups, and the JWK `kid` is all of it. The name is a label and is not
//! covered: governance on the ledger binds names to keys.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use confide_crypto::digest::Sha256;
use confide_crypto::hpke::{self, HpkePublicKey};
use confide_crypto::signing::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::IdentityError;

const FINGERPRINT_LABEL: &[u8] = b"confide member fingerprint v1\0";
const DOCUMENT_VERSION: u32 = 1;

/// A member name: 1 to 64 characters from `A-Z a-z 0-9 . _ -`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MemberName(String);

impl MemberName {
    /// Checks `name` against the naming rules.
    pub fn new(name: &str) -> Result<Self, IdentityError> {
        let invalid = |reason| IdentityError::InvalidName {
            name: name.chars().take(80).collect(),
            reason,
        };
        if name.is_empty() || name.len() > 64 {
            return Err(invalid("it must be 1 to 64 characters long"));
        }
        if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(invalid("it must start with a letter or a digit"));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(invalid(
                "only letters, digits, '.', '_' and '-' are allowed",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for MemberName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// SHA-256 over both of a member's public keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    fn of(signing: &VerifyingKey, hpke: &HpkePublicKey) -> Self {
        let mut h = Sha256::new();
        h.update(FINGERPRINT_LABEL);
        h.update(&signing.to_sec1());
        h.update(hpke.as_bytes());
        Self(h.finish())
    }

    /// All 32 bytes in hex.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Display for Fingerprint {
    /// The short form: the first eight bytes as four groups of four hex digits.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, pair) in self.0[..8].chunks(2).enumerate() {
            if i > 0 {
                f.write_str("-")?;
            }
            write!(f, "{:02x}{:02x}", pair[0], pair[1])?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// A member's name and public keys: what the other members are given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicIdentity {
    name: MemberName,
    signing_key: VerifyingKey,
    hpke_key: HpkePublicKey,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    confide_identity: u32,
    name: String,
    fingerprint: String,
    signing_key: Jwk,
    hpke_key: HpkeKeyDoc,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Jwk {
    kty: String,
    crv: String,
    alg: String,
    #[serde(rename = "use")]
    use_: String,
    kid: String,
    x: String,
    y: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HpkeKeyDoc {
    suite: String,
    public_key: String,
}

impl PublicIdentity {
    /// Assembles an identity from its parts.
    pub fn new(name: MemberName, signing_key: VerifyingKey, hpke_key: HpkePublicKey) -> Self {
        Self {
            name,
            signing_key,
            hpke_key,
        }
    }

    /// The member's name.
    pub fn name(&self) -> &MemberName {
        &self.name
    }

    /// The key the member signs with.
    pub fn signing_key(&self) -> &VerifyingKey {
        &self.signing_key
    }

    /// The key data is encrypted to.
    pub fn hpke_key(&self) -> &HpkePublicKey {
        &self.hpke_key
    }

    /// The fingerprint of both keys.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.signing_key, &self.hpke_key)
    }

    /// The signing key as a JWK (RFC 7517), as JSON.
    pub fn signing_jwk(&self) -> serde_json::Value {
        serde_json::to_value(self.jwk()).unwrap_or(serde_json::Value::Null)
    }

    fn jwk(&self) -> Jwk {
        Jwk {
            kty: "EC".into(),
            crv: "P-256".into(),
            alg: "ES256".into(),
            use_: "sig".into(),
            kid: self.fingerprint().to_hex(),
            x: B64.encode(self.signing_key.x()),
            y: B64.encode(self.signing_key.y()),
        }
    }

    fn document(&self) -> Document {
        Document {
            confide_identity: DOCUMENT_VERSION,
            name: self.name.to_string(),
            fingerprint: self.fingerprint().to_string(),
            signing_key: self.jwk(),
            hpke_key: HpkeKeyDoc {
                suite: hpke::SUITE_NAME.into(),
                public_key: B64.encode(self.hpke_key.as_bytes()),
            },
        }
    }

    /// The identity document, pretty-printed JSON with a final newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(&self.document()).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Parses an identity document; `path` is only used to name the source in errors. The keys
    /// must be valid and the stated fingerprint and `kid` must be the keys' own.
    pub fn from_json(bytes: &[u8], path: &Path) -> Result<Self, IdentityError> {
        let doc: Document =
            serde_json::from_slice(bytes).map_err(|e| IdentityError::Malformed {
                path: path.to_owned(),
                what: "confide identity document",
                reason: e.to_string(),
            })?;
        Self::from_document(doc, path)
    }

    fn from_document(doc: Document, path: &Path) -> Result<Self, IdentityError> {
        let malformed = |reason: String| IdentityError::Malformed {
            path: path.to_owned(),
            what: "confide identity document",
            reason,
        };
        if doc.confide_identity != DOCUMENT_VERSION {
            return Err(malformed(format!(
                "document version {} is not supported (expected {DOCUMENT_VERSION})",
                doc.confide_identity
            )));
        }
        let jwk = &doc.signing_key;
        if (
            jwk.kty.as_str(),
            jwk.crv.as_str(),
            jwk.alg.as_str(),
            jwk.use_.as_str(),
        ) != ("EC", "P-256", "ES256", "sig")
        {
            return Err(malformed(
                "signing_key must be an EC P-256 JWK with alg ES256 and use sig".into(),
            ));
        }
        if doc.hpke_key.suite != hpke::SUITE_NAME {
            return Err(malformed(format!(
                "hpke_key suite {:?} is not supported (expected {:?})",
                doc.hpke_key.suite,
                hpke::SUITE_NAME
            )));
        }
        let decode = |field: &str, value: &str| {
            B64.decode(value)
                .map_err(|_| malformed(format!("{field} is not unpadded base64url")))
        };
        let signing_key =
            VerifyingKey::from_coordinates(&decode("x", &jwk.x)?, &decode("y", &jwk.y)?)?;
        let hpke_key = HpkePublicKey::from_bytes(&decode("public_key", &doc.hpke_key.public_key)?)?;
        let identity = Self::new(MemberName::new(&doc.name)?, signing_key, hpke_key);
        let actual = identity.fingerprint();
        if doc.fingerprint != actual.to_string() || jwk.kid != actual.to_hex() {
            return Err(IdentityError::FingerprintMismatch {
                path: path.to_owned(),
                stated: doc.fingerprint,
                actual: actual.to_string(),
            });
        }
        Ok(identity)
    }

    /// Reads an identity document from a file.
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let bytes = std::fs::read(path).map_err(|source| IdentityError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_json(&bytes, path)
    }
}

/// An identity is written as its document, and read only as a document whose keys are valid
/// and whose stated fingerprint is the keys' own (as [`PublicIdentity::from_json`]).
impl Serialize for PublicIdentity {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.document().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for PublicIdentity {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let doc = Document::deserialize(deserializer)?;
        Self::from_document(doc, Path::new("identity document")).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confide_crypto::hpke::HpkeSecretKey;
    use confide_crypto::signing::SigningKey;

    fn sample() -> PublicIdentity {
        PublicIdentity::new(
            MemberName::new("bank-a").unwrap(),
            SigningKey::generate().unwrap().verifying_key(),
            HpkeSecretKey::generate().unwrap().public_key(),
        )
    }

    #[test]
    fn document_round_trips() {
        let id = sample();
        let json = id.to_json();
        assert_eq!(
            PublicIdentity::from_json(json.as_bytes(), Path::new("x")).unwrap(),
            id
        );
        let short = id.fingerprint().to_string();
        assert_eq!(short.len(), 19);
        assert!(
            id.fingerprint()
                .to_hex()
                .starts_with(&short.replace('-', ""))
        );
    }

    #[test]
    fn tampered_documents_are_refused() {
        let id = sample();
        let other = sample();
        let json: serde_json::Value = serde_json::from_str(&id.to_json()).unwrap();
        let mut swapped = json.clone();
        swapped["hpke_key"] = serde_json::from_str::<serde_json::Value>(&other.to_json()).unwrap()
            ["hpke_key"]
            .clone();
        let err = PublicIdentity::from_json(swapped.to_string().as_bytes(), Path::new("x"));
        assert!(
            matches!(err, Err(IdentityError::FingerprintMismatch { .. })),
            "{err:?}"
        );

        let mut off_curve = json.clone();
        off_curve["signing_key"]["y"] = json["signing_key"]["x"].clone();
        assert!(
            PublicIdentity::from_json(off_curve.to_string().as_bytes(), Path::new("x")).is_err()
        );

        let mut extra = json.clone();
        extra["admin"] = true.into();
        assert!(matches!(
            PublicIdentity::from_json(extra.to_string().as_bytes(), Path::new("x")),
            Err(IdentityError::Malformed { .. })
        ));

        let mut version = json.clone();
        version["confide_identity"] = 2.into();
        assert!(PublicIdentity::from_json(version.to_string().as_bytes(), Path::new("x")).is_err());

        let mut curve = json;
        curve["signing_key"]["crv"] = "P-384".into();
        assert!(PublicIdentity::from_json(curve.to_string().as_bytes(), Path::new("x")).is_err());
    }

    #[test]
    fn names_follow_the_rules() {
        for ok in ["a", "bank-a", "Hospital_2", "x.y", &"z".repeat(64)] {
            assert!(MemberName::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            ".hidden",
            "a b",
            "a/b",
            "ä",
            &"z".repeat(65),
            "a\n",
        ] {
            assert!(
                matches!(MemberName::new(bad), Err(IdentityError::InvalidName { .. })),
                "{bad:?}"
            );
        }
    }
}

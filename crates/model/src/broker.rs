//! The key broker's bodies: what members sign to manage keys and resources ([`BrokerBody`]),
//! what a workload sends to be released a key and to renew its lease ([`ReleaseRequest`],
//! [`RenewRequest`]) and what it gets back ([`Released`], [`Renewed`]), what a key and a lease
//! are ([`KeyInfo`], [`Lease`]), and the audit events the leases are rebuilt from
//! ([`LeaseEvent`], [`Stamp`]). Reading any of them is all or nothing: no unknown field, no
//! missing one, no default.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{ContractId, MemberId, ModelError};

/// The payload of a member's signed request to the key broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum BrokerBody {
    /// Creates a key owned by the signer.
    #[serde(rename = "kms.create")]
    Create {
        /// The key's name.
        name: String,
        /// Its release policy (Rego); without one, the key is released to no one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        policy: Option<String>,
    },
    /// Adds a new version of one of the signer's keys.
    #[serde(rename = "kms.rotate")]
    Rotate {
        /// The key's name.
        name: String,
    },
    /// Revokes one of the signer's keys.
    #[serde(rename = "kms.revoke")]
    Revoke {
        /// The key's name.
        name: String,
    },
    /// Deletes one of the signer's keys, every version.
    #[serde(rename = "kms.delete")]
    Delete {
        /// The key's name.
        name: String,
    },
    /// Lists the leases of one of the signer's keys.
    #[serde(rename = "kms.leases")]
    Leases {
        /// The key's name.
        name: String,
    },
    /// Makes a key-exchange key owned by the signer.
    #[serde(rename = "kms.kek.create")]
    KekCreate {
        /// The key-exchange key's name.
        name: String,
    },
    /// Imports a key wrapped to one of the signer's key-exchange keys.
    #[serde(rename = "kms.import")]
    Import {
        /// The key's name.
        name: String,
        /// The key-exchange key it is wrapped to.
        kek: String,
        /// The `CKM_RSA_AES_KEY_WRAP` blob, base64.
        blob: String,
        /// The RSA-OAEP hash: `sha256` or `sha1`.
        hash: String,
        /// The release policy to set (Rego).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        policy: Option<String>,
    },
    /// Stores a KBS resource owned by the signer.
    #[serde(rename = "kbs.put")]
    KbsPut {
        /// `REPO/TYPE/TAG`.
        path: String,
        /// The resource, base64.
        content: String,
        /// Its release policy (Rego).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        policy: Option<String>,
    },
}

impl BrokerBody {
    /// The body's `type`, as the wire names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Create { .. } => "kms.create",
            Self::Rotate { .. } => "kms.rotate",
            Self::Revoke { .. } => "kms.revoke",
            Self::Delete { .. } => "kms.delete",
            Self::Leases { .. } => "kms.leases",
            Self::KekCreate { .. } => "kms.kek.create",
            Self::Import { .. } => "kms.import",
            Self::KbsPut { .. } => "kbs.put",
        }
    }

    /// Reads a body from its JSON, and checks its encoded fields.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ModelError> {
        let body: Self = read(bytes, "body")?;
        match &body {
            Self::Import { blob, hash, .. } => {
                base64_field(blob, "blob")?;
                if confide_crypto::byok::OaepHash::from_name(hash).is_none() {
                    return Err(ModelError::Malformed {
                        field: "hash",
                        detail: format!("{hash:?} is neither sha256 nor sha1"),
                    });
                }
            }
            Self::KbsPut { content, .. } => {
                base64_field(content, "content")?;
            }
            _ => {}
        }
        Ok(body)
    }
}

/// Decodes the standard base64 of field `field`.
pub fn base64_field(text: &str, field: &'static str) -> Result<Vec<u8>, ModelError> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| ModelError::Malformed {
            field,
            detail: "not base64".into(),
        })
}

/// Reads `T` from JSON bytes, refusing a key given twice; errors name `field`.
pub fn read<T: DeserializeOwned>(bytes: &[u8], field: &'static str) -> Result<T, ModelError> {
    crate::unique_keys(bytes, field)?;
    serde_json::from_slice(bytes).map_err(|e| ModelError::Malformed {
        field,
        detail: e.to_string(),
    })
}

/// What anyone may know about a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyInfo {
    /// Its name.
    pub name: String,
    /// The owning member.
    pub owner: MemberId,
    /// Whether it is revoked.
    pub revoked: bool,
    /// The newest version.
    pub version: u32,
}

/// The broker's answer to a key's creation, rotation, revocation or import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyAnswer {
    /// The key as it is now.
    pub key: KeyInfo,
    /// The audit event's position on the ledger.
    pub audit_seq: u64,
}

/// What anyone may know about a key-exchange key: its public half, to wrap keys to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KekInfo {
    /// Its name.
    pub name: String,
    /// The owning member: only they import through it.
    pub owner: MemberId,
    /// The RSA public key, PEM (SubjectPublicKeyInfo).
    pub public_pem: String,
    /// When it was made.
    pub created: i64,
}

/// The broker's answer about a key-exchange key: made (with its audit event), or looked up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KekAnswer {
    /// The key-exchange key.
    pub kek: KekInfo,
    /// Its creation's audit event on the ledger, when it was just made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_seq: Option<u64>,
}

/// What anyone may know about a KBS resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceInfo {
    /// `REPO/TYPE/TAG`.
    pub path: String,
    /// The owning member.
    pub owner: MemberId,
    /// Its size in bytes.
    pub size: usize,
    /// When it was last stored.
    pub updated: i64,
}

/// The broker's answer to `kbs.put`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceAnswer {
    /// The resource as stored.
    pub resource: ResourceInfo,
    /// The audit event's position on the ledger.
    pub audit_seq: u64,
}

/// The broker's answer to a key's deletion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deleted {
    /// The key as it was.
    pub deleted: KeyInfo,
    /// The audit event's position on the ledger.
    pub audit_seq: u64,
}

/// A released key held by a workload: until `expires`, renewed by presenting a fresh token for
/// the same runtime key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lease {
    /// The lease's id.
    pub id: String,
    /// The key released.
    pub key: String,
    /// The version.
    pub version: u32,
    /// SHA-256 of the workload's runtime key, hex.
    pub runtime_key: String,
    /// When it was granted.
    pub granted: i64,
    /// The last renewal (heartbeat).
    pub last_heartbeat: i64,
    /// Until when the workload may hold the key.
    pub expires: i64,
    /// The contract the key was released for (a dataset's key): every renewal checks it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<ContractId>,
}

/// A lease as its key's owner sees it listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseView {
    /// The lease.
    #[serde(flatten)]
    pub lease: Lease,
    /// Whether it had lapsed when listed.
    pub lapsed: bool,
}

/// The broker's answer to `kms.leases`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseList {
    /// The key.
    pub key: String,
    /// Its leases.
    pub leases: Vec<LeaseView>,
}

/// A workload's request for a key: `POST /keys/{name}/release`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// The attestation token of this service.
    pub token: String,
    /// The approved contract the key is asked for (a dataset's key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<ContractId>,
}

/// A workload's renewal of its lease: `POST /keys/{name}/renew`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    /// A fresh attestation token, for the runtime key the lease is held by.
    pub token: String,
    /// The lease's id.
    pub lease: String,
}

/// A released key, wrapped to the workload's runtime key: HPKE (`enc` and `ciphertext`,
/// base64) to an X25519 key, or a flattened JWE (`jwe`) to a JWK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Released {
    /// The key's name.
    pub key: String,
    /// The version released.
    pub version: u32,
    /// The lease's id.
    pub lease: String,
    /// Until when the lease holds without renewal.
    pub expires_at: i64,
    /// The release's audit event on the ledger.
    pub audit_seq: u64,
    /// HPKE's encapsulated key, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enc: Option<String>,
    /// HPKE's ciphertext, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ciphertext: Option<String>,
    /// The flattened JWE, for a JWK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwe: Option<serde_json::Value>,
}

impl Released {
    /// The HPKE-sealed key: its encapsulated key and ciphertext.
    pub fn hpke(&self) -> Result<confide_crypto::hpke::Sealed, ModelError> {
        let (Some(enc), Some(ciphertext)) = (&self.enc, &self.ciphertext) else {
            return Err(ModelError::Malformed {
                field: "enc",
                detail: "the release is not sealed with HPKE".into(),
            });
        };
        Ok(confide_crypto::hpke::Sealed {
            enc: base64_field(enc, "enc")?
                .try_into()
                .map_err(|_| ModelError::Malformed {
                    field: "enc",
                    detail: "not 32 bytes".into(),
                })?,
            ciphertext: base64_field(ciphertext, "ciphertext")?,
        })
    }
}

/// The broker's answer to a renewal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Renewed {
    /// The lease's id.
    pub lease: String,
    /// Its new expiry.
    pub expires_at: i64,
    /// The renewal's audit event on the ledger.
    pub audit_seq: u64,
}

/// A member request's signer, nonce (hex) and time, as its audit event records them: on the
/// ledger, they make the request's replay refused after a restart too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stamp {
    /// The signer.
    pub signer: MemberId,
    /// The request's nonce, hex.
    pub nonce: String,
    /// The request's time.
    pub ts: i64,
}

/// The audit events the leases are rebuilt from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum LeaseEvent {
    /// A key released to a workload under a new lease.
    #[serde(rename = "kms.release")]
    Release {
        /// The key.
        key: String,
        /// The version released.
        version: u32,
        /// The lease's id.
        lease: String,
        /// SHA-256 of the token presented, hex.
        token: String,
        /// SHA-256 of the runtime key it is held by, hex.
        runtime_key: String,
        /// Whether the evidence was simulated (absent in events of early versions).
        #[serde(default)]
        simulated: Option<bool>,
        /// When.
        at: i64,
        /// Until when (absent in events of early versions, whose leases lasted the broker's
        /// standard time from `at`).
        #[serde(default)]
        expires: Option<i64>,
        /// The contract it was released for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        contract: Option<ContractId>,
    },
    /// A lease renewed.
    #[serde(rename = "kms.renew")]
    Renew {
        /// The key.
        key: String,
        /// The lease's id.
        lease: String,
        /// When.
        at: i64,
        /// The new expiry (absent in events of early versions, as for a release).
        #[serde(default)]
        expires: Option<i64>,
    },
}

impl crate::Event for LeaseEvent {
    const TYPES: &'static [&'static str] = &["kms.release", "kms.renew"];
    const FIELD: &'static str = "lease event";
}

/// A key-exchange key made by the broker, as the ledger records it: the digest of its public
/// key, which a member checks the key it wraps to against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum KekEvent {
    /// Made.
    #[serde(rename = "kms.kek.create")]
    Created {
        /// Its name.
        kek: String,
        /// Its owner.
        owner: MemberId,
        /// SHA-256 of its SubjectPublicKeyInfo, hex.
        public_sha256: String,
        /// When.
        at: i64,
        /// The owner's request.
        request: Stamp,
    },
}

impl crate::Event for KekEvent {
    const TYPES: &'static [&'static str] = &["kms.kek.create"];
    const FIELD: &'static str = "key-exchange key event";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Event as _;

    #[test]
    fn broker_bodies_read_whole_or_not_at_all() {
        let ok = br#"{"type":"kms.import","name":"k","kek":"x","blob":"AAAA","hash":"sha1"}"#;
        assert_eq!(BrokerBody::from_json(ok).unwrap().kind(), "kms.import");
        for (bad, field) in [
            // No hash: not a silent sha256.
            (
                &br#"{"type":"kms.import","name":"k","kek":"x","blob":"AAAA"}"#[..],
                "body",
            ),
            (
                br#"{"type":"kms.import","name":"k","kek":"x","blob":"AAAA","hash":"md5"}"#,
                "hash",
            ),
            (
                br#"{"type":"kms.import","name":"k","kek":"x","blob":"!!","hash":"sha1"}"#,
                "blob",
            ),
            (
                br#"{"type":"kbs.put","path":"a/b/c","content":"***"}"#,
                "content",
            ),
            (br#"{"type":"kms.create","name":"k","policy":7}"#, "body"),
            (br#"{"type":"kms.create","name":"k","extra":1}"#, "body"),
            (br#"{"type":"kms.rotate","name":"a","name":"b"}"#, "body"),
            (br#"{"type":"kms.steal","name":"k"}"#, "body"),
            (br#"{"name":"k"}"#, "body"),
        ] {
            match BrokerBody::from_json(bad) {
                Err(ModelError::Malformed { field: f, .. }) => {
                    assert_eq!(f, field, "{}", String::from_utf8_lossy(bad))
                }
                other => panic!("{} read as {other:?}", String::from_utf8_lossy(bad)),
            }
        }
    }

    #[test]
    fn lease_events_are_read_whole_and_others_passed_over() {
        let release = br#"{"type":"kms.release","key":"k","version":2,"lease":"l","token":"t","runtime_key":"r","simulated":true,"at":5,"expires":9}"#;
        assert!(matches!(
            LeaseEvent::of_entry(release),
            Ok(Some(LeaseEvent::Release { version: 2, .. }))
        ));
        for other in [
            &br#"{"type":"kms.create","key":"k"}"#[..],
            b"not json",
            b"[1]",
            b"{}",
        ] {
            assert_eq!(LeaseEvent::of_entry(other), Ok(None));
        }
        // A lease event missing its version is damage, not version 0.
        let damaged = br#"{"type":"kms.release","key":"k","lease":"l","token":"t","runtime_key":"r","simulated":true,"at":5,"expires":9}"#;
        assert!(LeaseEvent::of_entry(damaged).is_err());
        let renew = br#"{"type":"kms.renew","key":"k","lease":"l","at":"5","expires":9}"#;
        assert!(LeaseEvent::of_entry(renew).is_err());
    }

    fn b64(bytes: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn a_release_is_opened_only_as_what_it_is() {
        let hpke = Released {
            key: "k".into(),
            version: 1,
            lease: "l".into(),
            expires_at: 1,
            audit_seq: 1,
            enc: Some(b64(&[7u8; 32])),
            ciphertext: Some(b64(b"ct")),
            jwe: None,
        };
        assert_eq!(hpke.hpke().unwrap().ciphertext, b"ct");
        let short = Released {
            enc: Some(b64(&[7u8; 31])),
            ..hpke.clone()
        };
        assert!(short.hpke().is_err());
        let jwe = Released {
            enc: None,
            ciphertext: None,
            jwe: Some(serde_json::json!({})),
            ..hpke
        };
        assert!(jwe.hpke().is_err());
    }
}

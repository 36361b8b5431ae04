//! A member's own identity on disk.
//!
//! ```text
//! HOME/              mode 0700
//!   identity.json    the public identity document (mode 0644): give it to the other members
//!   member.key       the private keys (mode 0600), text:
//!                      confide member key v1
//!                      signing-key-pkcs8 <base64url of PKCS#8 DER>
//!                      hpke-x25519 <base64url of 32 bytes>
//! ```
//!
//! `init` writes each file to a temporary name and links it into place only if nothing is
//! there, the private key first; the identity exists once `identity.json` does. A key file that
//! other users can read is refused, as ssh refuses one.

use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use confide_crypto::hpke::HpkeSecretKey;
use confide_crypto::signing::SigningKey;
use zeroize::Zeroizing;

use crate::{IdentityError, MemberName, PublicIdentity};

const PUBLIC_FILE: &str = "identity.json";
const KEY_FILE: &str = "member.key";
const KEY_FILE_HEADER: &str = "confide member key v1";

/// A member's identity with its private keys.
#[derive(Debug)]
pub struct Identity {
    public: PublicIdentity,
    signing: SigningKey,
    hpke: HpkeSecretKey,
}

impl Identity {
    /// A new identity with fresh keys.
    pub fn generate(name: MemberName) -> Result<Self, IdentityError> {
        let signing = SigningKey::generate()?;
        let hpke = HpkeSecretKey::generate()?;
        let public = PublicIdentity::new(name, signing.verifying_key(), hpke.public_key());
        Ok(Self {
            public,
            signing,
            hpke,
        })
    }

    /// The public half, to give to others.
    pub fn public(&self) -> &PublicIdentity {
        &self.public
    }

    /// The key this member signs with.
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// The key that decrypts what is encrypted to this member.
    pub fn hpke_key(&self) -> &HpkeSecretKey {
        &self.hpke
    }

    fn key_file(&self) -> Result<Zeroizing<String>, IdentityError> {
        let pkcs8 = self.signing.to_pkcs8()?;
        let hpke = self.hpke.to_bytes();
        let mut text = Zeroizing::new(String::with_capacity(256));
        text.push_str(KEY_FILE_HEADER);
        text.push_str("\nsigning-key-pkcs8 ");
        B64.encode_string(&pkcs8[..], &mut text);
        text.push_str("\nhpke-x25519 ");
        B64.encode_string(&hpke[..], &mut text);
        text.push('\n');
        Ok(text)
    }
}

/// The directory that holds a member's identity.
#[derive(Debug, Clone)]
pub struct Home {
    dir: PathBuf,
}

impl Home {
    /// The home at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the public identity document is.
    pub fn public_path(&self) -> PathBuf {
        self.dir.join(PUBLIC_FILE)
    }

    /// Where the private keys are.
    pub fn key_path(&self) -> PathBuf {
        self.dir.join(KEY_FILE)
    }

    /// Creates an identity named `name` here. Refuses if either file already exists, and leaves
    /// nothing behind if it fails.
    pub fn init(&self, name: &str) -> Result<Identity, IdentityError> {
        let name = MemberName::new(name)?;
        for path in [self.public_path(), self.key_path()] {
            if path.exists() {
                return Err(IdentityError::AlreadyExists { path });
            }
        }
        create_private_dir(&self.dir)?;
        let identity = Identity::generate(name)?;
        let key_text = identity.key_file()?;
        write_new(&self.key_path(), key_text.as_bytes(), 0o600)?;
        if let Err(e) = write_new(
            &self.public_path(),
            identity.public.to_json().as_bytes(),
            0o644,
        ) {
            // Leave no half-made identity: the key file goes if its public half could not land.
            let _ = fs::remove_file(self.key_path());
            return Err(e);
        }
        sync_dir(&self.dir)?;
        Ok(identity)
    }

    /// Loads the public identity document here, without touching the private keys.
    pub fn load_public(&self) -> Result<PublicIdentity, IdentityError> {
        let public_path = self.public_path();
        if !public_path.exists() {
            return Err(IdentityError::NotFound {
                home: self.dir.clone(),
            });
        }
        PublicIdentity::load(&public_path)
    }

    /// Loads the identity here, checking that the private keys belong to the public document.
    pub fn load(&self) -> Result<Identity, IdentityError> {
        let public = self.load_public()?;
        let key_path = self.key_path();
        check_private(&key_path)?;
        let text =
            Zeroizing::new(
                fs::read_to_string(&key_path).map_err(|source| IdentityError::Io {
                    path: key_path.clone(),
                    source,
                })?,
            );
        let (signing, hpke) = parse_key_file(&text).map_err(|reason| IdentityError::Malformed {
            path: key_path.clone(),
            what: "confide member key file",
            reason: reason.into(),
        })?;
        if signing.verifying_key() != *public.signing_key()
            || hpke.public_key() != *public.hpke_key()
        {
            return Err(IdentityError::KeysDoNotMatch {
                home: self.dir.clone(),
            });
        }
        Ok(Identity {
            public,
            signing,
            hpke,
        })
    }
}

fn parse_key_file(text: &str) -> Result<(SigningKey, HpkeSecretKey), &'static str> {
    let mut lines = text.lines();
    if lines.next() != Some(KEY_FILE_HEADER) {
        return Err("the first line must be \"confide member key v1\"");
    }
    let mut field = |name: &str| -> Result<Zeroizing<Vec<u8>>, &'static str> {
        let line = lines.next().ok_or("it ends early")?;
        let value = line
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(' '))
            .ok_or("a line is not the field expected there")?;
        B64.decode(value)
            .map(Zeroizing::new)
            .map_err(|_| "a key is not unpadded base64url")
    };
    let pkcs8 = field("signing-key-pkcs8")?;
    let hpke = field("hpke-x25519")?;
    let signing = SigningKey::from_pkcs8(&pkcs8).map_err(|_| "the signing key is not valid")?;
    let hpke = HpkeSecretKey::from_bytes(&hpke).map_err(|_| "the HPKE key is not valid")?;
    Ok((signing, hpke))
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> Result<(), IdentityError> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error(dir))
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> Result<(), IdentityError> {
    fs::create_dir_all(dir).map_err(io_error(dir))
}

/// Writes `contents` to `path` with `mode`, durably, only if `path` does not exist.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), IdentityError> {
    confide_crypto::files::write_new(path, contents, mode).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            IdentityError::AlreadyExists {
                path: path.to_owned(),
            }
        } else {
            IdentityError::Io {
                path: path.to_owned(),
                source: e,
            }
        }
    })
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), IdentityError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path)
        .map_err(io_error(path))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(IdentityError::InsecurePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> Result<(), IdentityError> {
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), IdentityError> {
    #[cfg(unix)]
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn init_then_load_gives_the_same_keys() {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::new(tmp.path().join("nested/home"));
        let made = home.init("bank-a").unwrap();
        let loaded = home.load().unwrap();
        assert_eq!(made.public(), loaded.public());
        assert_eq!(mode(&home.key_path()), 0o600);
        assert_eq!(mode(&home.public_path()), 0o644);
        assert_eq!(mode(home.dir()), 0o700);
        // The private file holds no trace of the public document and vice versa.
        let public_text = fs::read_to_string(home.public_path()).unwrap();
        assert!(!public_text.contains("pkcs8"));
        let names: Vec<_> = fs::read_dir(home.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "no temporary files left: {names:?}");
    }

    #[test]
    fn init_refuses_to_overwrite_and_changes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::new(tmp.path());
        home.init("bank-a").unwrap();
        let before = fs::read(home.key_path()).unwrap();
        assert!(matches!(
            home.init("bank-b"),
            Err(IdentityError::AlreadyExists { .. })
        ));
        assert_eq!(fs::read(home.key_path()).unwrap(), before);
        // A lone key file (an init that died half-way) is not overwritten either.
        fs::remove_file(home.public_path()).unwrap();
        assert!(matches!(
            home.init("bank-b"),
            Err(IdentityError::AlreadyExists { .. })
        ));
        assert_eq!(fs::read(home.key_path()).unwrap(), before);
    }

    #[test]
    fn load_refuses_missing_readable_mismatched_and_corrupt_keys() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::new(tmp.path().join("a"));
        assert!(matches!(home.load(), Err(IdentityError::NotFound { .. })));
        home.init("bank-a").unwrap();

        fs::set_permissions(home.key_path(), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            home.load(),
            Err(IdentityError::InsecurePermissions { mode: 0o644, .. })
        ));
        fs::set_permissions(home.key_path(), fs::Permissions::from_mode(0o600)).unwrap();

        let other = Home::new(tmp.path().join("b"));
        other.init("bank-b").unwrap();
        fs::copy(other.public_path(), home.public_path()).unwrap();
        assert!(matches!(
            home.load(),
            Err(IdentityError::KeysDoNotMatch { .. })
        ));
        fs::copy(other.key_path(), home.key_path()).unwrap();
        home.load().unwrap();

        fs::write(
            home.key_path(),
            "confide member key v1\nsigning-key-pkcs8 !!\n",
        )
        .unwrap();
        let err = home.load().unwrap_err();
        assert!(matches!(err, IdentityError::Malformed { .. }), "{err}");
    }

    #[test]
    fn invalid_names_create_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::new(tmp.path().join("h"));
        assert!(matches!(
            home.init("no spaces"),
            Err(IdentityError::InvalidName { .. })
        ));
        assert!(!home.dir().exists());
    }
}

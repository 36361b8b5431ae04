//! The blob store: where ciphertexts are kept (published datasets, run results). A local
//! directory by default; Amazon S3, Azure Blob Storage or Google Cloud Storage by URL, through
//! `object_store`. Only ciphertext ever goes there, and what is read is checked against the
//! SHA-256 digest the ledger recorded, so the store is trusted for availability only.
//!
//! | `--store`                                       | where                                |
//! |-------------------------------------------------|--------------------------------------|
//! | `DIR`, `file:///DIR`                            | a local directory (created if absent) |
//! | `s3://BUCKET[/PREFIX]`                          | Amazon S3 or an S3-compatible store   |
//! | `az://CONTAINER[/PREFIX]`, `abfss://…`, `https://ACCOUNT.blob.core.windows.net/…` | Azure Blob Storage |
//! | `gs://BUCKET[/PREFIX]`                          | Google Cloud Storage                  |
//!
//! Credentials, regions and endpoints come from the environment as `object_store` reads them
//! (`AWS_*`, `AZURE_*` / `AZURITE_*`, `GOOGLE_*`), or from options given to [`BlobStore::open`].
//!
//! Writes are whole or nothing: an object appears under its name only once all of it is
//! uploaded (a local file is written aside, synced and renamed; a large upload is one multipart
//! upload, aborted on error).

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use confide_crypto::chunked::{ReadAt, read_full};
use confide_crypto::digest::Sha256;
use confide_crypto::hpke::HpkeSecretKey;
use futures::StreamExt as _;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{
    ObjectStore, ObjectStoreExt as _, ObjectStoreScheme, PutPayload, WriteMultipart,
};

use crate::CleanroomError;

/// Uploads larger than this go up in parts of this size, several at once.
const PART_BYTES: usize = 8 << 20;
/// Parts in flight during an upload.
const PARTS_IN_FLIGHT: usize = 4;

/// A blob store opened from a `--store` value.
#[derive(Debug, Clone)]
pub struct BlobStore {
    inner: Arc<dyn ObjectStore>,
    /// The same store when it is a local directory: its files are read directly and synced
    /// after writing.
    local: Option<Arc<LocalFileSystem>>,
    prefix: StorePath,
    /// The `--store` value, without any query string (which may carry a credential).
    described: String,
}

impl BlobStore {
    /// Opens `spec`: a directory, or a `file://`, `s3://`, `az://` (and Azure's other forms) or
    /// `gs://` URL. `options` are `object_store` configuration keys (`aws_endpoint`,
    /// `azure_storage_account_key`, `google_service_account`, …) applied over what the
    /// environment says.
    pub fn open(spec: &str, options: &[(&str, &str)]) -> Result<Self, CleanroomError> {
        if !spec.contains("://") {
            return Self::open_dir(std::path::Path::new(spec), spec);
        }
        let url = url::Url::parse(spec).map_err(|e| {
            CleanroomError::Store(format!("--store {}: not a URL: {e}", redact(spec)))
        })?;
        let bad = |e: &dyn std::fmt::Display| {
            CleanroomError::Store(format!(
                "--store {}: {}",
                redact(spec),
                redact(&e.to_string())
            ))
        };
        let (scheme, path) = ObjectStoreScheme::parse(&url).map_err(|_| {
            CleanroomError::Store(format!(
                "--store {}: not a blob store URL confide knows (a directory, s3://, az:// or gs://)",
                redact(spec)
            ))
        })?;
        let prefix = StorePath::parse(path).map_err(|e| bad(&e))?;
        let inner: Arc<dyn ObjectStore> = match scheme {
            ObjectStoreScheme::Local => {
                return Self::open_dir(std::path::Path::new(url.path()), spec);
            }
            ObjectStoreScheme::AmazonS3 => Arc::new(
                configure(
                    object_store::aws::AmazonS3Builder::from_env(),
                    options,
                    |b, k, v| k.parse().map(|k| b.with_config(k, v)),
                )?
                .with_url(spec)
                .build()
                .map_err(|e| bad(&e))?,
            ),
            ObjectStoreScheme::MicrosoftAzure => Arc::new(
                configure(
                    object_store::azure::MicrosoftAzureBuilder::from_env(),
                    options,
                    |b, k, v| k.parse().map(|k| b.with_config(k, v)),
                )?
                .with_url(spec)
                .build()
                .map_err(|e| bad(&e))?,
            ),
            ObjectStoreScheme::GoogleCloudStorage => Arc::new(
                configure(
                    object_store::gcp::GoogleCloudStorageBuilder::from_env(),
                    options,
                    |b, k, v| k.parse().map(|k| b.with_config(k, v)),
                )?
                .with_url(spec)
                .build()
                .map_err(|e| bad(&e))?,
            ),
            other => {
                return Err(CleanroomError::Store(format!(
                    "--store {}: {other:?} is not a blob store confide can keep ciphertexts in \
                     (use a directory, s3://, az:// or gs://)",
                    redact(spec)
                )));
            }
        };
        Ok(Self {
            inner,
            local: None,
            prefix,
            described: redact(spec),
        })
    }

    fn open_dir(dir: &std::path::Path, spec: &str) -> Result<Self, CleanroomError> {
        let failed =
            |e: &dyn std::fmt::Display| CleanroomError::Store(format!("--store {spec}: {e}"));
        std::fs::create_dir_all(dir).map_err(|e| failed(&e))?;
        let dir = dir.canonicalize().map_err(|e| failed(&e))?;
        let local = Arc::new(LocalFileSystem::new_with_prefix(&dir).map_err(|e| failed(&e))?);
        Ok(Self {
            inner: local.clone(),
            local: Some(local),
            prefix: StorePath::default(),
            described: spec.to_owned(),
        })
    }

    fn path(&self, location: &str) -> Result<StorePath, CleanroomError> {
        let relative = StorePath::parse(location).map_err(|e| {
            CleanroomError::Store(format!(
                "{location:?} is not a location in a blob store: {e}"
            ))
        })?;
        if relative.as_ref().is_empty() {
            return Err(CleanroomError::Store("an empty location".to_owned()));
        }
        Ok(self.prefix.parts().chain(relative.parts()).collect())
    }

    fn failed(&self, doing: &str, location: &str, e: &dyn std::fmt::Display) -> CleanroomError {
        CleanroomError::Store(format!(
            "{doing} {location} in {}: {}",
            self.described,
            redact(&e.to_string())
        ))
    }

    /// Stores `bytes` at `location`.
    pub async fn put(&self, location: &str, bytes: Vec<u8>) -> Result<(), CleanroomError> {
        let path = self.path(location)?;
        self.inner
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(|e| self.failed("writing", location, &e))?;
        self.synced(location)
    }

    /// Stores everything `input` yields at `location` (in parts, when it is large); returns the
    /// number of bytes. `input` is read on the calling thread.
    pub async fn put_reader(
        &self,
        location: &str,
        mut input: impl Read,
    ) -> Result<u64, CleanroomError> {
        let path = self.path(location)?;
        let mut part = vec![0u8; PART_BYTES];
        let n = read_full(&mut input, &mut part)
            .map_err(|e| self.failed("reading for", location, &e))?;
        if n < PART_BYTES {
            part.truncate(n);
            self.put(location, part).await?;
            return Ok(n as u64);
        }
        let upload = self
            .inner
            .put_multipart(&path)
            .await
            .map_err(|e| self.failed("starting the upload of", location, &e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut total = 0u64;
        let outcome: Result<(), CleanroomError> = async {
            let mut n = n;
            while n > 0 {
                writer
                    .wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(|e| self.failed("uploading", location, &e))?;
                writer.write(&part[..n]);
                total += n as u64;
                n = read_full(&mut input, &mut part)
                    .map_err(|e| self.failed("reading for", location, &e))?;
            }
            Ok(())
        }
        .await;
        match outcome {
            Ok(()) => {
                writer
                    .finish()
                    .await
                    .map_err(|e| self.failed("finishing the upload of", location, &e))?;
            }
            Err(e) => {
                // Nothing appears under the name; the parts already sent are discarded.
                let _ = writer.abort().await;
                return Err(e);
            }
        }
        self.synced(location)?;
        Ok(total)
    }

    /// On a local store, makes a finished write durable: the file, then its directory.
    fn synced(&self, location: &str) -> Result<(), CleanroomError> {
        let Some(local) = &self.local else {
            return Ok(());
        };
        let file = local
            .path_to_filesystem(&self.path(location)?)
            .map_err(|e| self.failed("syncing", location, &e))?;
        let sync = |p: &std::path::Path| std::fs::File::open(p).and_then(|f| f.sync_all());
        sync(&file)
            .and_then(|()| file.parent().map_or(Ok(()), sync))
            .map_err(|e| self.failed("syncing", location, &e))
    }

    /// The whole object at `location`, checked against `digest` (SHA-256, hex). For small
    /// objects (results).
    pub async fn get_checked(&self, location: &str, digest: &str) -> Result<Bytes, CleanroomError> {
        let path = self.path(location)?;
        let bytes = self
            .inner
            .get(&path)
            .await
            .map_err(|e| self.failed("reading", location, &e))?
            .bytes()
            .await
            .map_err(|e| self.failed("reading", location, &e))?;
        if hex::encode(confide_crypto::digest::sha256(&bytes)) != digest {
            return Err(not_registered(location));
        }
        Ok(bytes)
    }

    /// The ciphertext at `location`, checked against the SHA-256 digest `digest` (hex) once,
    /// and then readable as often as a query scans it: a local store's own file (hashed in
    /// place), or a remote object downloaded once into a temporary file, hashed as it arrives.
    pub async fn verified(&self, location: &str, digest: &str) -> Result<Verified, CleanroomError> {
        let expected = parse_digest(digest)?;
        let path = self.path(location)?;
        let (verified, digest) = match &self.local {
            Some(local) => {
                let file = local
                    .path_to_filesystem(&path)
                    .map_err(|e| self.failed("reading", location, &e))?;
                let hashing = file.clone();
                let digest = tokio::task::spawn_blocking(move || hash_file(&hashing))
                    .await
                    .map_err(|e| self.failed("reading", location, &e))?
                    .map_err(|e| self.failed("reading", location, &e))?;
                let verified = Verified {
                    path: file,
                    _copy: None,
                };
                (verified, digest)
            }
            None => {
                let mut hasher = Sha256::new();
                let copy = tempfile::NamedTempFile::new()
                    .map_err(|e| self.failed("making room for", location, &e))?;
                let mut out = std::io::BufWriter::with_capacity(1 << 20, copy.as_file());
                let mut stream = self
                    .inner
                    .get(&path)
                    .await
                    .map_err(|e| self.failed("reading", location, &e))?
                    .into_stream();
                while let Some(piece) = stream.next().await {
                    let piece = piece.map_err(|e| self.failed("reading", location, &e))?;
                    hasher.update(&piece);
                    std::io::Write::write_all(&mut out, &piece)
                        .map_err(|e| self.failed("copying", location, &e))?;
                }
                std::io::Write::flush(&mut out)
                    .map_err(|e| self.failed("copying", location, &e))?;
                drop(out);
                let copy = copy.into_temp_path();
                let verified = Verified {
                    path: copy.to_path_buf(),
                    _copy: Some(copy),
                };
                (verified, hasher.finish())
            }
        };
        if digest != expected {
            return Err(not_registered(location));
        }
        Ok(verified)
    }

    /// [`BlobStore::verified`] for each `(location, digest)`, all at once (the hashing of local
    /// files spreads over the cores); the first failure, if any.
    pub async fn verified_all(
        &self,
        items: &[(&str, &str)],
    ) -> Result<Vec<Verified>, CleanroomError> {
        futures::future::try_join_all(
            items
                .iter()
                .map(|(location, digest)| self.verified(location, digest)),
        )
        .await
    }
}

/// The SHA-256 of a file's contents.
fn hash_file(path: &std::path::Path) -> std::io::Result<[u8; 32]> {
    confide_crypto::digest::sha256_reader(std::fs::File::open(path)?)
}

/// A ciphertext whose digest matched the ledger's, on the local file system for as long as this
/// lives (a temporary copy is deleted with it).
#[derive(Debug)]
pub struct Verified {
    path: std::path::PathBuf,
    _copy: Option<tempfile::TempPath>,
}

impl Verified {
    /// The plaintext, for a dataset key: the header read and the data key unwrapped, the body's
    /// key commitment and final chunk checked, then each read decrypting the chunks it covers.
    /// The file stays open, so a temporary copy, unlinked when this is dropped, stays readable.
    /// (Between the digest check and a read, only a holder of the dataset key could change the
    /// file without failing authentication.)
    pub fn open(self, key: &HpkeSecretKey) -> Result<Arc<dyn ReadAt>, CleanroomError> {
        let file = std::fs::File::open(&self.path)
            .map_err(|e| CleanroomError::Dataset(format!("opening the ciphertext: {e}")))?;
        let plaintext = confide_crypto::envelope::open_at(key, file)
            .map_err(|e| CleanroomError::Dataset(e.to_string()))?;
        Ok(Arc::new(plaintext))
    }
}

fn parse_digest(digest: &str) -> Result<[u8; 32], CleanroomError> {
    hex::decode(digest)
        .ok()
        .and_then(|d| d.try_into().ok())
        .ok_or_else(|| CleanroomError::Store(format!("{digest:?} is not a SHA-256 digest")))
}

/// Applies `options` to an `object_store` builder, naming any key it does not know.
fn configure<B>(
    builder: B,
    options: &[(&str, &str)],
    apply: impl Fn(B, &str, &str) -> Result<B, object_store::Error>,
) -> Result<B, CleanroomError> {
    options.iter().try_fold(builder, |b, (k, v)| {
        apply(b, &k.to_ascii_lowercase(), v)
            .map_err(|_| CleanroomError::Store(format!("unknown store option {k:?}")))
    })
}

fn not_registered(location: &str) -> CleanroomError {
    CleanroomError::Store(format!(
        "the ciphertext at {location} is not the one registered on the ledger (its SHA-256 differs)"
    ))
}

/// Cuts the query string off every URL in `text`: a pre-signed or SAS URL carries its
/// credential there.
fn redact(text: &str) -> String {
    text.split(' ')
        .map(|word| match (word.contains("://"), word.find('?')) {
            (true, Some(q)) => format!("{}?…", &word[..q]),
            _ => word.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn digest(b: &[u8]) -> String {
        hex::encode(confide_crypto::digest::sha256(b))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_local_store_round_trips_small_and_multipart_objects_and_checks_digests() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path().join("blobs").to_str().unwrap(), &[]).unwrap();
        let big: Vec<u8> = (0..PART_BYTES * 2 + 12_345)
            .map(|i| (i % 251) as u8)
            .collect();
        store
            .put("results/small.cfd", b"small".to_vec())
            .await
            .unwrap();
        assert_eq!(
            store
                .put_reader("datasets/big.cfd", &big[..])
                .await
                .unwrap(),
            big.len() as u64
        );
        assert_eq!(
            std::fs::read(dir.path().join("blobs/datasets/big.cfd")).unwrap(),
            big
        );
        // No file is left beside the objects.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("blobs/datasets"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["big.cfd"]);
        assert_eq!(
            &store
                .get_checked("results/small.cfd", &digest(b"small"))
                .await
                .unwrap()[..],
            b"small"
        );
        let refused = store
            .get_checked("results/small.cfd", &digest(b"other"))
            .await
            .unwrap_err();
        assert!(
            refused.to_string().contains("not the one registered"),
            "{refused}"
        );

        let refused = store
            .verified("datasets/big.cfd", &digest(b"small"))
            .await
            .unwrap_err();
        assert!(
            refused.to_string().contains("not the one registered"),
            "{refused}"
        );

        // A dataset verified once and read whole twice, decrypting each time, and read at a
        // position.
        let key = HpkeSecretKey::generate().unwrap();
        let mut sealed = Vec::new();
        confide_crypto::envelope::encrypt(&[key.public_key()], &big[..], &mut sealed).unwrap();
        store
            .put("datasets/sealed.cfd", sealed.clone())
            .await
            .unwrap();
        let at = store
            .verified("datasets/sealed.cfd", &digest(&sealed))
            .await
            .unwrap()
            .open(&key)
            .unwrap();
        for _ in 0..2 {
            let mut plain = vec![0u8; big.len()];
            at.read_exact_at(&mut plain, 0).unwrap();
            assert!(plain == big);
        }
        assert_eq!(at.size().unwrap(), big.len() as u64);
        let mut middle = vec![0u8; 100_000];
        at.read_exact_at(&mut middle, 12_345).unwrap();
        assert!(middle[..] == big[12_345..112_345]);
    }

    #[tokio::test]
    async fn locations_cannot_leave_the_store_and_bad_stores_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path().to_str().unwrap(), &[]).unwrap();
        for bad in ["../escape", "a/../../b", "a//b", ""] {
            let e = store.put(bad, b"x".to_vec()).await.unwrap_err();
            assert!(matches!(e, CleanroomError::Store(_)), "{bad:?}: {e}");
        }
        assert!(!dir.path().parent().unwrap().join("escape").exists());
        for (spec, why) in [
            ("memory://", "not a blob store"),
            ("s3://", "not a blob store url"),
            ("ftp://host/x", "not a blob store url"),
        ] {
            let e = BlobStore::open(spec, &[]).unwrap_err().to_string();
            assert!(e.to_lowercase().contains(why), "{spec}: {e}");
        }
        let e = BlobStore::open("s3://b", &[("no_such_option", "1")]).unwrap_err();
        assert!(e.to_string().contains("no_such_option"), "{e}");
    }

    #[test]
    fn credentials_in_urls_are_cut_from_messages() {
        assert_eq!(
            redact("GET https://a.blob.core.windows.net/c/x?sv=1&sig=SECRET failed"),
            "GET https://a.blob.core.windows.net/c/x?… failed"
        );
    }
}

//! The tables' plaintext as an `object_store` that DataFusion reads with its own CSV and Parquet
//! readers. Each object is one table's source; each ranged read decrypts only the chunks it
//! covers. DataFusion then plans a confidential scan as it plans a plain one: byte ranges read
//! in parallel, only the columns the query uses, row groups it can skip left unread.
//!
//! The store lives in the runner's memory, for one query, and refuses every write.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use confide_crypto::chunked::ReadAt;
use futures::StreamExt as _;
use futures::stream::{self, BoxStream};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

/// The URL DataFusion reaches the store by; a scheme no real store uses.
pub(crate) const URL: &str = "confide-plaintext://tables/";

const STORE: &str = "the tables' plaintext";

/// Bytes one piece of a read's stream decrypts at a time (4 chunks). Small pieces keep a scan
/// from racing ahead of the query: with 1 MiB pieces the AML benchmark's peak memory was a
/// quarter above plain DataFusion's (which reads a file in 8 KiB pieces), with 64 KiB it is
/// the same.
const PIECE: u64 = 1 << 16;

/// The tables of one query, by object name.
#[derive(Default)]
pub(crate) struct Tables {
    objects: BTreeMap<Path, Arc<dyn ReadAt>>,
}

impl Tables {
    /// Adds `source` as the object `name`; returns its URL.
    pub(crate) fn insert(&mut self, name: &str, source: Arc<dyn ReadAt>) -> String {
        self.objects.insert(Path::from(name), source);
        format!("{URL}{name}")
    }

    fn object(&self, location: &Path) -> object_store::Result<&Arc<dyn ReadAt>> {
        self.objects
            .get(location)
            .ok_or_else(|| object_store::Error::NotFound {
                path: location.to_string(),
                source: "no table of that name".into(),
            })
    }

    fn meta(location: &Path, source: &dyn ReadAt) -> object_store::Result<ObjectMeta> {
        Ok(ObjectMeta {
            location: location.clone(),
            last_modified: Default::default(),
            size: source.size().map_err(failed)?,
            e_tag: None,
            version: None,
        })
    }

    fn under(&self, prefix: Option<&Path>) -> object_store::Result<Vec<ObjectMeta>> {
        self.objects
            .iter()
            .filter(|(location, _)| prefix.is_none_or(|p| location.prefix_matches(p)))
            .map(|(location, source)| Self::meta(location, source.as_ref()))
            .collect()
    }
}

fn failed(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: error.into(),
    }
}

fn read_only(operation: &str) -> object_store::Error {
    object_store::Error::NotSupported {
        source: format!("{operation}: {STORE} are read only").into(),
    }
}

impl std::fmt::Display for Tables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{STORE} ({} tables)", self.objects.len())
    }
}

impl std::fmt::Debug for Tables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tables")
            .field("objects", &self.objects.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// `range` of `source` as a stream of pieces, each decrypted when the reader asks for it. The
/// work is done on the asking task, as DataFusion parses a piece on it: a piece is a megabyte,
/// decrypted in well under a millisecond.
fn pieces(
    source: Arc<dyn ReadAt>,
    range: Range<u64>,
) -> BoxStream<'static, object_store::Result<Bytes>> {
    let starts = (range.start..range.end).step_by(PIECE as usize);
    stream::iter(starts.map(move |at| {
        let mut piece = vec![0u8; (range.end - at).min(PIECE) as usize];
        source.read_exact_at(&mut piece, at).map_err(failed)?;
        Ok(Bytes::from(piece))
    }))
    .boxed()
}

#[async_trait::async_trait]
impl ObjectStore for Tables {
    async fn put_opts(
        &self,
        _location: &Path,
        _payload: PutPayload,
        _opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        Err(read_only("put"))
    }

    async fn put_multipart_opts(
        &self,
        _location: &Path,
        _opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Err(read_only("put"))
    }

    /// Conditions on versions and dates are ignored: an object never changes.
    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let source = self.object(location)?.clone();
        let meta = Self::meta(location, source.as_ref())?;
        let range = match &options.range {
            Some(range) => range.as_range(meta.size).map_err(failed)?,
            None => 0..meta.size,
        };
        let payload = if options.head {
            stream::empty().boxed()
        } else {
            pieces(source, range.clone())
        };
        Ok(GetResult {
            payload: GetResultPayload::Stream(payload),
            meta,
            range,
            attributes: Default::default(),
        })
    }

    /// Each range decrypted whole into one buffer (the Parquet reader asks for a row group's
    /// column chunks this way), instead of gathered from a stream of pieces.
    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let source = self.object(location)?;
        ranges
            .iter()
            .map(|range| {
                let len = usize::try_from(range.end.saturating_sub(range.start)).map_err(failed)?;
                let mut bytes = vec![0u8; len];
                source
                    .read_exact_at(&mut bytes, range.start)
                    .map_err(failed)?;
                Ok(Bytes::from(bytes))
            })
            .collect()
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        locations.map(|_| Err(read_only("delete"))).boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        match self.under(prefix) {
            Ok(objects) => stream::iter(objects.into_iter().map(Ok)).boxed(),
            Err(e) => stream::once(async { Err(e) }).boxed(),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        Ok(ListResult {
            common_prefixes: Vec::new(),
            objects: self.under(prefix)?,
        })
    }

    async fn copy_opts(
        &self,
        _from: &Path,
        _to: &Path,
        _options: CopyOptions,
    ) -> object_store::Result<()> {
        Err(read_only("copy"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use object_store::{GetRange, ObjectStoreExt as _};

    use super::*;

    #[tokio::test]
    async fn ranged_reads_give_the_plaintext_and_nothing_can_be_written() {
        let bytes: Vec<u8> = (0..3 * PIECE as u32 + 7).map(|i| (i % 251) as u8).collect();
        let mut tables = Tables::default();
        let url = tables.insert("0.csv", Arc::new(bytes.clone()));
        assert_eq!(url, "confide-plaintext://tables/0.csv");
        let path = Path::from("0.csv");

        let whole = tables.get(&path).await.unwrap().bytes().await.unwrap();
        assert!(whole == bytes);
        let across = tables.get_range(&path, 5..2 * PIECE + 9).await.unwrap();
        assert!(across[..] == bytes[5..2 * PIECE as usize + 9]);
        let ranges = [0..1, PIECE - 3..3 * PIECE + 7, 9..9];
        let got = tables.get_ranges(&path, &ranges).await.unwrap();
        for (range, got) in ranges.iter().zip(&got) {
            assert!(got[..] == bytes[range.start as usize..range.end as usize]);
        }
        let past_the_end = 0..3 * PIECE + 8;
        assert!(tables.get_ranges(&path, &[past_the_end]).await.is_err());
        for (range, expected) in [
            (GetRange::Suffix(10), bytes.len() - 10..bytes.len()),
            (GetRange::Offset(PIECE), PIECE as usize..bytes.len()),
        ] {
            let options = GetOptions {
                range: Some(range),
                ..GetOptions::default()
            };
            let got = tables.get_opts(&path, options).await.unwrap();
            assert_eq!(got.range, expected.start as u64..expected.end as u64);
            assert!(got.bytes().await.unwrap()[..] == bytes[expected]);
        }
        assert_eq!(tables.head(&path).await.unwrap().size, bytes.len() as u64);
        let listed: Vec<ObjectMeta> = tables
            .list(None)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(listed.len(), 1);

        let beyond = tables.get_range(&path, bytes.len() as u64 + 1..bytes.len() as u64 + 2);
        assert!(beyond.await.is_err());
        let missing = tables.get(&Path::from("1.csv")).await.unwrap_err();
        assert!(
            matches!(missing, object_store::Error::NotFound { .. }),
            "{missing}"
        );
        let put = tables
            .put(&path, PutPayload::from_static(b"x"))
            .await
            .unwrap_err();
        assert!(
            matches!(put, object_store::Error::NotSupported { .. }),
            "{put}"
        );
        assert!(tables.copy(&path, &Path::from("2.csv")).await.is_err());
    }
}

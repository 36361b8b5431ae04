//! Random access to a chunked message held whole (a file, or bytes in memory): any range of its
//! plaintext, decrypting only the chunks the range covers.
//!
//! A chunk's nonce depends only on its position and every chunk but the last is full, so the
//! chunk holding a plaintext byte is found by arithmetic. The plaintext's length follows from
//! the source's length; it is trusted only once the final chunk has authenticated at the
//! position that length gives it, and opening does that before any read. A message truncated
//! at a chunk boundary or inside a chunk, or with data after its end, is therefore refused at
//! once, where the streaming reader refuses it at the end; a changed chunk is refused by every
//! read that covers it.

use std::io;

use zeroize::Zeroizing;

use super::{
    BATCH_CHUNKS, CHUNK_SIZE, ChunkKey, ChunkedError, ENCRYPTED_CHUNK_SIZE, HEADER_LEN, MAX_CHUNKS,
    Suite, TAG_LEN, check_header,
};

/// Something whole that can be read at any position: a file, bytes in memory, or the
/// plaintext of a [`RandomAccessReader`].
pub trait ReadAt: Send + Sync {
    /// Its length in bytes.
    fn size(&self) -> io::Result<u64>;

    /// Fills `buf` with the bytes from `offset` on; fails if they end before `buf` is full.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl ReadAt for std::fs::File {
    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }
}

impl ReadAt for Vec<u8> {
    fn size(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let bytes = usize::try_from(offset)
            .ok()
            .and_then(|start| self.get(start..start.checked_add(buf.len())?))
            .ok_or_else(|| past_the_end(offset, buf.len(), self.len() as u64))?;
        buf.copy_from_slice(bytes);
        Ok(())
    }
}

fn past_the_end(offset: u64, len: usize, size: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("a read of {len} bytes at {offset} goes past the end, at {size}"),
    )
}

/// The plaintext of a chunked message in `source`, readable at any position. Every byte it
/// hands out comes from a chunk that authenticated at its own position.
pub struct RandomAccessReader<S: ReadAt> {
    source: S,
    /// Where the message's first chunk starts in `source`, and where the message ends.
    body: u64,
    end: u64,
    key: ChunkKey,
    /// Plaintext bytes in the message.
    len: u64,
    /// Chunks in the message, the final one included.
    chunks: u64,
}

impl<S: ReadAt> std::fmt::Debug for RandomAccessReader<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RandomAccessReader")
            .field("len", &self.len)
            .field("chunks", &self.chunks)
            .finish_non_exhaustive()
    }
}

impl<S: ReadAt> RandomAccessReader<S> {
    /// Opens the message that starts at `start` in `source` and runs to its end: checks the
    /// key commitment for `key` and `context`, then authenticates the final chunk. Fails with
    /// the [`ChunkedError`] inside the I/O error, as the streaming reader does.
    pub fn new(
        suite: Suite,
        key: &[u8],
        context: &[u8],
        source: S,
        start: u64,
    ) -> io::Result<Self> {
        let size = source.size()?;
        let message = size
            .checked_sub(start)
            .filter(|m| *m >= HEADER_LEN as u64)
            .ok_or_else(|| ChunkedError::TruncatedHeader.into_io())?;
        let mut header = [0u8; HEADER_LEN];
        source.read_exact_at(&mut header, start)?;
        let key = check_header(suite, key, context, &header).map_err(ChunkedError::into_io)?;

        let body_len = message - HEADER_LEN as u64;
        let full = body_len / ENCRYPTED_CHUNK_SIZE as u64;
        let rest = body_len % ENCRYPTED_CHUNK_SIZE as u64;
        if rest == 0 {
            return Err(ChunkedError::MissingFinalChunk { chunks: full }.into_io());
        }
        if rest < TAG_LEN as u64 {
            return Err(ChunkedError::Chunk { index: full }.into_io());
        }
        if full + 1 > MAX_CHUNKS {
            return Err(ChunkedError::TooLong.into_io());
        }
        let reader = Self {
            source,
            body: start + HEADER_LEN as u64,
            end: size,
            key,
            len: full * CHUNK_SIZE as u64 + (rest - TAG_LEN as u64),
            chunks: full + 1,
        };
        // The final chunk, authenticated now, vouches for the length.
        reader.for_each_chunk(full, 1, |index, chunk| {
            reader.open_copy(index, chunk, |_| {})
        })?;
        Ok(reader)
    }

    /// The plaintext's length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the plaintext is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads `count` chunks from chunk `first` on, a batch at a time, and hands each chunk's
    /// `(index, ciphertext and tag)` to `open`; stops at the first error.
    fn for_each_chunk(
        &self,
        first: u64,
        count: u64,
        mut open: impl FnMut(u64, &[u8]) -> Result<(), ChunkedError>,
    ) -> io::Result<()> {
        // Ciphertext only: plaintext is opened into the caller's buffer or a wiped copy.
        let mut batch = vec![0u8; count.min(BATCH_CHUNKS as u64) as usize * ENCRYPTED_CHUNK_SIZE];
        let end = first + count;
        let mut index = first;
        while index < end {
            let n = (end - index).min(BATCH_CHUNKS as u64);
            let from = self.body + index * ENCRYPTED_CHUNK_SIZE as u64;
            // Every chunk is full but the final one, which ends the source.
            let to = (from + n * ENCRYPTED_CHUNK_SIZE as u64).min(self.end);
            let bytes = &mut batch[..(to - from) as usize];
            self.source.read_exact_at(bytes, from)?;
            for chunk in bytes.chunks(ENCRYPTED_CHUNK_SIZE) {
                open(index, chunk).map_err(ChunkedError::into_io)?;
                index += 1;
            }
        }
        Ok(())
    }

    /// Opens a copy of chunk `index` in a buffer wiped afterwards and lends its plaintext to
    /// `take`: for a chunk only part of which is wanted.
    fn open_copy(
        &self,
        index: u64,
        chunk: &[u8],
        take: impl FnOnce(&[u8]),
    ) -> Result<(), ChunkedError> {
        let mut copy = Zeroizing::new([0u8; ENCRYPTED_CHUNK_SIZE]);
        let copy = &mut copy[..chunk.len()];
        copy.copy_from_slice(chunk);
        let len = self.key.open(index, copy)?;
        take(&copy[..len]);
        Ok(())
    }
}

impl<S: ReadAt> ReadAt for RandomAccessReader<S> {
    fn size(&self) -> io::Result<u64> {
        Ok(self.len)
    }

    /// Decrypts the chunks that `offset..offset + buf.len()` covers into `buf`. On an error,
    /// `buf` holds nothing of the plaintext.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|end| *end <= self.len)
            .ok_or_else(|| past_the_end(offset, buf.len(), self.len))?;
        if buf.is_empty() {
            return Ok(());
        }
        let chunk = CHUNK_SIZE as u64;
        let first = offset / chunk;
        let last = (end - 1) / chunk;
        let filled = self.for_each_chunk(first, last - first + 1, |index, ciphertext| {
            // The part of this chunk the read covers, and where it goes in `buf`.
            let chunk_start = index * chunk;
            let plain_len = ciphertext.len() - TAG_LEN;
            let from = offset.max(chunk_start);
            let to = end.min(chunk_start + plain_len as u64);
            let (at, from, to) = (
                (from - offset) as usize,
                (from - chunk_start) as usize,
                (to - chunk_start) as usize,
            );
            let out = &mut buf[at..at + (to - from)];
            if to - from == plain_len {
                // The whole chunk: opened straight into place.
                self.key.open_into(index, ciphertext, out)
            } else {
                self.open_copy(index, ciphertext, |plain| {
                    out.copy_from_slice(&plain[from..to]);
                })
            }
        });
        if filled.is_err() {
            buf.fill(0);
        }
        filled
    }
}

//! The confide encrypted file format, version 1: a header that wraps a fresh data key to each
//! recipient with HPKE, then the data under that key as a Cobblestone-256 stream whose context
//! is the SHA-256 of the header.
//!
//! ```text
//! header  = magic "CONFIDE\0" (8) ‖ version u16 BE = 1 ‖ recipient count n u16 BE (1..=1024)
//!           ‖ n × stanza
//! stanza  = recipient id (32) ‖ enc (32) ‖ wrapped data key (48)
//! body    = Cobblestone-256(data key, context = SHA-256(header), plaintext)
//! ```
//!
//! The recipient id is SHA-256 of the recipient's X25519 public key. The wrapped key is the
//! HPKE base-mode seal of the 32-byte data key to that public key with info
//! `"confide/file/v1 data key"` and the recipient id as associated data. Because the body's
//! key commitment covers the header digest, a body cannot be moved under another header and no
//! byte of the header can change without the file failing before any plaintext is produced.
//! `docs/file-format.md` is the full specification.

use std::io::{self, BufRead, Read, Write};

use zeroize::Zeroizing;

use crate::chunked::{
    self, ChunkedError, DecryptingReader, EncryptingWriter, RandomAccessReader, ReadAt, Suite,
};
use crate::digest::{SHA256_LEN, sha256};
use crate::hpke::{self, HpkePublicKey, HpkeSecretKey};
use crate::{CryptoError, random};

/// The first eight bytes of every confide encrypted file.
pub const MAGIC: [u8; 8] = *b"CONFIDE\0";
/// The format version this build writes and reads.
pub const VERSION: u16 = 1;
/// The most recipients one file may name.
pub const MAX_RECIPIENTS: usize = 1024;
/// Bytes of the header before the stanzas.
pub const FIXED_HEADER_LEN: usize = 12;
/// Bytes of one recipient stanza.
pub const STANZA_LEN: usize = SHA256_LEN + hpke::PUBLIC_KEY_LEN + WRAPPED_KEY_LEN;
/// The body suite.
pub const BODY_SUITE: Suite = Suite::Cobblestone256;

const DATA_KEY_LEN: usize = 32;
const WRAPPED_KEY_LEN: usize = DATA_KEY_LEN + hpke::TAG_LEN;
const WRAP_INFO: &[u8] = b"confide/file/v1 data key";

/// Why a file could not be encrypted or decrypted. Messages name the problem; none carries key
/// material or plaintext.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The input does not start with the confide magic bytes.
    #[error("not a confide encrypted file (it does not start with the CONFIDE magic bytes)")]
    NotConfideFile,
    /// The file is in a version of the format this build does not read.
    #[error("unsupported format version {found}; this build reads version {VERSION}")]
    UnsupportedVersion {
        /// The version the file names.
        found: u16,
    },
    /// The header names no recipients, or more than the format allows.
    #[error("the header names {count} recipients; a file names between 1 and {MAX_RECIPIENTS}")]
    RecipientCount {
        /// The count the header gives.
        count: usize,
    },
    /// The input ends inside the header.
    #[error("the file is truncated: it ends inside its header")]
    TruncatedHeader,
    /// The same recipient appears twice.
    #[error("recipient {id} is listed twice")]
    DuplicateRecipient {
        /// The repeated recipient.
        id: RecipientId,
    },
    /// The decrypting key is not among the recipients.
    #[error(
        "this file is not encrypted to your key {id}; it names {recipients} other recipient(s)"
    )]
    NotARecipient {
        /// The id of the key that tried.
        id: RecipientId,
        /// How many recipients the header names.
        recipients: usize,
    },
    /// The stanza for this key does not open: it was modified.
    #[error("the data key wrapped to your key does not decrypt: the header was modified")]
    DataKeyUnwrap,
    /// The body's key commitment does not match this header.
    #[error(
        "the body was not encrypted under this header: the header comes from another file, \
         or the header or the start of the body was modified"
    )]
    HeaderMismatch,
    /// The body failed to decrypt after the header checked out.
    #[error("{0}")]
    Body(ChunkedError),
    /// A primitive failed (for example the random generator).
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// Reading the input or writing the output failed.
    #[error("{0}")]
    Io(io::Error),
}

impl EnvelopeError {
    fn from_body_io(err: io::Error) -> Self {
        match ChunkedError::from_io(&err) {
            Some(ChunkedError::Commitment) => EnvelopeError::HeaderMismatch,
            Some(e) => EnvelopeError::Body(e.clone()),
            None => EnvelopeError::Io(err),
        }
    }
}

/// Names a recipient in a header: SHA-256 of its X25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecipientId([u8; SHA256_LEN]);

impl RecipientId {
    /// The id of `key`.
    pub fn of(key: &HpkePublicKey) -> Self {
        Self(sha256(key.as_bytes()))
    }

    /// The id's 32 bytes.
    pub fn as_bytes(&self) -> &[u8; SHA256_LEN] {
        &self.0
    }
}

impl std::fmt::Display for RecipientId {
    /// The first 8 bytes in hex, enough to tell recipients apart by eye.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for RecipientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RecipientId({self})")
    }
}

#[derive(Debug, Clone)]
struct Stanza {
    id: RecipientId,
    wrapped: hpke::Sealed,
}

/// A parsed, well-formed header: magic and version checked, 1 to 1024 distinct recipients.
#[derive(Debug, Clone)]
pub struct Header {
    bytes: Vec<u8>,
    stanzas: Vec<Stanza>,
}

impl Header {
    /// Parses a header from the start of `input`; returns it and the number of bytes it took.
    pub fn parse(input: &[u8]) -> Result<(Header, usize), EnvelopeError> {
        let count = parse_fixed(input)?;
        let len = FIXED_HEADER_LEN + count * STANZA_LEN;
        let bytes = input.get(..len).ok_or(EnvelopeError::TruncatedHeader)?;
        let mut stanzas: Vec<Stanza> = Vec::with_capacity(count);
        for raw in bytes[FIXED_HEADER_LEN..].chunks_exact(STANZA_LEN) {
            let (id, rest) = raw.split_at(SHA256_LEN);
            let (enc, wrapped) = rest.split_at(hpke::PUBLIC_KEY_LEN);
            let mut id_arr = [0u8; SHA256_LEN];
            id_arr.copy_from_slice(id);
            let id = RecipientId(id_arr);
            if stanzas.iter().any(|s| s.id == id) {
                return Err(EnvelopeError::DuplicateRecipient { id });
            }
            let mut enc_arr = [0u8; hpke::PUBLIC_KEY_LEN];
            enc_arr.copy_from_slice(enc);
            stanzas.push(Stanza {
                id,
                wrapped: hpke::Sealed {
                    enc: enc_arr,
                    ciphertext: wrapped.to_vec(),
                },
            });
        }
        Ok((
            Header {
                bytes: bytes.to_vec(),
                stanzas,
            },
            len,
        ))
    }

    /// Reads exactly one header from `input`, leaving the body unread.
    pub fn read_from<R: Read>(input: &mut R) -> Result<Header, EnvelopeError> {
        let mut bytes = vec![0u8; FIXED_HEADER_LEN];
        let got = read_up_to(input, &mut bytes)?;
        let count = parse_fixed(&bytes[..got])?;
        bytes.resize(FIXED_HEADER_LEN + count * STANZA_LEN, 0);
        if read_up_to(input, &mut bytes[FIXED_HEADER_LEN..])? < count * STANZA_LEN {
            return Err(EnvelopeError::TruncatedHeader);
        }
        Ok(Header::parse(&bytes)?.0)
    }

    /// The recipients the header names, in order.
    pub fn recipients(&self) -> impl Iterator<Item = &RecipientId> {
        self.stanzas.iter().map(|s| &s.id)
    }

    /// The header's bytes exactly as they appear in the file.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The context the body is bound to: SHA-256 of the header bytes.
    fn digest(&self) -> [u8; SHA256_LEN] {
        sha256(&self.bytes)
    }

    /// Unwraps the data key for `key`, if the header names it.
    fn unwrap_data_key(&self, key: &HpkeSecretKey) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
        let id = RecipientId::of(&key.public_key());
        let stanza =
            self.stanzas
                .iter()
                .find(|s| s.id == id)
                .ok_or(EnvelopeError::NotARecipient {
                    id,
                    recipients: self.stanzas.len(),
                })?;
        let data_key = hpke::open(key, &stanza.wrapped, WRAP_INFO, id.as_bytes())
            .map_err(|_| EnvelopeError::DataKeyUnwrap)?;
        if data_key.len() != DATA_KEY_LEN {
            return Err(EnvelopeError::DataKeyUnwrap);
        }
        Ok(data_key)
    }
}

/// Checks the magic, version and recipient count at the start of `input`; returns the count.
/// Input too short to hold them is "not a confide file" if what there is differs from the magic,
/// and "truncated" otherwise.
fn parse_fixed(input: &[u8]) -> Result<usize, EnvelopeError> {
    let seen = input.len().min(MAGIC.len());
    if input[..seen] != MAGIC[..seen] {
        return Err(EnvelopeError::NotConfideFile);
    }
    let fixed = input
        .get(..FIXED_HEADER_LEN)
        .ok_or(EnvelopeError::TruncatedHeader)?;
    let version = u16::from_be_bytes([fixed[8], fixed[9]]);
    if version != VERSION {
        return Err(EnvelopeError::UnsupportedVersion { found: version });
    }
    let count = usize::from(u16::from_be_bytes([fixed[10], fixed[11]]));
    if count == 0 || count > MAX_RECIPIENTS {
        return Err(EnvelopeError::RecipientCount { count });
    }
    Ok(count)
}

fn read_up_to<R: Read>(input: &mut R, buf: &mut [u8]) -> Result<usize, EnvelopeError> {
    chunked::read_full(input, buf).map_err(EnvelopeError::Io)
}

/// Encrypts everything read from `input` to `recipients` and writes the file to `output`.
/// Returns the number of plaintext bytes.
pub fn encrypt<R: Read, W: Write>(
    recipients: &[HpkePublicKey],
    mut input: R,
    mut output: W,
) -> Result<u64, EnvelopeError> {
    let (header, data_key) = new_header(recipients)?;
    output.write_all(&header).map_err(EnvelopeError::Io)?;
    let mut body = EncryptingWriter::new(BODY_SUITE, &*data_key, &sha256(&header), output)
        .map_err(EnvelopeError::from_body_io)?;
    body.write_from(&mut input)
        .map_err(EnvelopeError::from_body_io)?;
    let (_, plaintext_len) = body.finish().map_err(EnvelopeError::from_body_io)?;
    Ok(plaintext_len)
}

/// Encrypts a plaintext held in memory to `recipients` and returns the file. The file is the
/// one [`encrypt`] writes, but its body is sealed straight into place
/// ([`chunked::encrypt_into`]).
pub fn encrypt_bytes(
    recipients: &[HpkePublicKey],
    plaintext: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    let (mut file, data_key) = new_header(recipients)?;
    let header_len = file.len();
    let body_len = usize::try_from(chunked::ciphertext_len(plaintext.len() as u64))
        .map_err(|_| EnvelopeError::Body(ChunkedError::TooLong))?;
    file.resize(header_len + body_len, 0);
    let (header, body) = file.split_at_mut(header_len);
    chunked::encrypt_into(BODY_SUITE, &*data_key, &sha256(header), plaintext, body)
        .map_err(EnvelopeError::Body)?;
    Ok(file)
}

/// A fresh data key, and the header that wraps it to each of `recipients`.
fn new_header(
    recipients: &[HpkePublicKey],
) -> Result<(Vec<u8>, Zeroizing<[u8; DATA_KEY_LEN]>), EnvelopeError> {
    if recipients.is_empty() || recipients.len() > MAX_RECIPIENTS {
        return Err(EnvelopeError::RecipientCount {
            count: recipients.len(),
        });
    }
    let data_key = Zeroizing::new(random::array::<DATA_KEY_LEN>()?);
    let mut bytes = Vec::with_capacity(FIXED_HEADER_LEN + recipients.len() * STANZA_LEN);
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&VERSION.to_be_bytes());
    // MAX_RECIPIENTS fits in a u16, so this cannot truncate.
    bytes.extend_from_slice(&(recipients.len() as u16).to_be_bytes());
    let mut seen = Vec::with_capacity(recipients.len());
    for key in recipients {
        let id = RecipientId::of(key);
        if seen.contains(&id) {
            return Err(EnvelopeError::DuplicateRecipient { id });
        }
        seen.push(id);
        let wrapped = hpke::seal(key, WRAP_INFO, id.as_bytes(), &*data_key)?;
        bytes.extend_from_slice(id.as_bytes());
        bytes.extend_from_slice(&wrapped.enc);
        bytes.extend_from_slice(&wrapped.ciphertext);
    }
    Ok((bytes, data_key))
}

/// An encrypted file whose header named this key and whose body matches the header. Plaintext
/// comes out chunk by chunk, each authenticated; the file as a whole is genuine only once
/// [`Decryptor::next_chunk`] has returned `None`.
#[derive(Debug)]
pub struct Decryptor<R: Read> {
    header: Header,
    body: DecryptingReader<R>,
}

impl<R: Read> Decryptor<R> {
    /// Reads the header from `input`, unwraps the data key for `key`, and checks the body's key
    /// commitment against the header, all before any plaintext is produced.
    pub fn new(key: &HpkeSecretKey, mut input: R) -> Result<Self, EnvelopeError> {
        let header = Header::read_from(&mut input)?;
        let data_key = header.unwrap_data_key(key)?;
        let body = DecryptingReader::new(BODY_SUITE, &data_key, &header.digest(), input)
            .map_err(EnvelopeError::from_body_io)?;
        Ok(Self { header, body })
    }

    /// The file's header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The next chunk of authenticated plaintext, or `None` at the verified end of the file.
    pub fn next_chunk(&mut self) -> Result<Option<&[u8]>, EnvelopeError> {
        self.body.next_chunk().map_err(EnvelopeError::from_body_io)
    }

    /// Decrypts the rest of the file into `output`; returns the number of plaintext bytes.
    /// On error, whatever was written to `output` must be discarded.
    pub fn decrypt_to<W: Write + ?Sized>(mut self, output: &mut W) -> Result<u64, EnvelopeError> {
        let mut total = 0u64;
        while let Some(chunk) = self.next_chunk()? {
            output.write_all(chunk).map_err(EnvelopeError::Io)?;
            total += chunk.len() as u64;
        }
        output.flush().map_err(EnvelopeError::Io)?;
        Ok(total)
    }
}

/// Random access to the plaintext of the encrypted file in `source`, for a key its header names:
/// the header is read and the data key unwrapped, the body's key commitment is checked against
/// the header and its final chunk authenticated, all before any read. Each read then opens the
/// chunks it covers (Parquet, for one, reads its footer first).
pub fn open_at<S: ReadAt>(
    key: &HpkeSecretKey,
    source: S,
) -> Result<RandomAccessReader<S>, EnvelopeError> {
    let size = source.size().map_err(EnvelopeError::Io)?;
    let mut fixed = vec![0u8; size.min(FIXED_HEADER_LEN as u64) as usize];
    source
        .read_exact_at(&mut fixed, 0)
        .map_err(EnvelopeError::Io)?;
    let header_len = FIXED_HEADER_LEN + parse_fixed(&fixed)? * STANZA_LEN;
    if size < header_len as u64 {
        return Err(EnvelopeError::TruncatedHeader);
    }
    let mut bytes = vec![0u8; header_len];
    source
        .read_exact_at(&mut bytes, 0)
        .map_err(EnvelopeError::Io)?;
    let (header, _) = Header::parse(&bytes)?;
    let data_key = header.unwrap_data_key(key)?;
    RandomAccessReader::new(
        BODY_SUITE,
        &data_key,
        &header.digest(),
        source,
        header_len as u64,
    )
    .map_err(EnvelopeError::from_body_io)
}

/// A [`Decryptor`] as a [`Read`]: plaintext comes out of authenticated chunks only, and a file
/// that ends early or was changed makes `read` fail (with the envelope error inside), so a
/// reader that reaches a clean end of stream has read the whole genuine file.
#[derive(Debug)]
pub struct PlaintextReader<R: Read> {
    decryptor: Decryptor<R>,
}

impl<R: Read> Decryptor<R> {
    /// This decryptor as a [`Read`] and [`BufRead`] of the plaintext.
    pub fn into_reader(self) -> PlaintextReader<R> {
        PlaintextReader { decryptor: self }
    }
}

/// Lends each authenticated chunk's plaintext where it was opened, without a copy.
impl<R: Read> BufRead for PlaintextReader<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.decryptor
            .body
            .fill_buf()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, EnvelopeError::from_body_io(e)))
    }

    fn consume(&mut self, amount: usize) {
        self.decryptor.body.consume(amount);
    }
}

impl<R: Read> Read for PlaintextReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let chunk = self.fill_buf()?;
        let n = buf.len().min(chunk.len());
        buf[..n].copy_from_slice(&chunk[..n]);
        self.consume(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests;

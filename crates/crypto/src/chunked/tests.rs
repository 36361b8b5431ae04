//! Wycheproof vectors, round trips and tampering for the chunked encryption.

use std::io::{Read, Write};

use proptest::prelude::*;
use serde::Deserialize;

use super::*;
use crate::digest::sha512;

#[derive(Deserialize)]
struct VectorFile {
    #[serde(rename = "testGroups")]
    groups: Vec<Group>,
}

#[derive(Deserialize)]
struct Group {
    aead: String,
    tests: Vec<Vector>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Vector {
    tc_id: u32,
    comment: String,
    key: String,
    ctx: String,
    ct: String,
    msg_length: Option<usize>,
    msg_sha512: Option<String>,
    aead_key: Option<String>,
    base_nonce: Option<String>,
    result: String,
    flags: Vec<String>,
}

impl Vector {
    fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
    fn ciphertext(&self) -> Vec<u8> {
        let compressed = hex::decode(&self.ct).unwrap();
        let mut out = Vec::new();
        flate2::read::ZlibDecoder::new(&compressed[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    }
}

fn load(file: &str) -> (Suite, Vec<Vector>) {
    let path = format!("{}/../../testdata/aead/{file}", env!("CARGO_MANIFEST_DIR"));
    let parsed: VectorFile = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let mut suite = None;
    let mut tests = Vec::new();
    for g in parsed.groups {
        suite = Some(match g.aead.as_str() {
            "AEAD_AES_128_GCM" => Suite::Cobblestone128,
            "AEAD_AES_256_GCM" => Suite::Cobblestone256,
            other => panic!("unexpected AEAD {other}"),
        });
        tests.extend(g.tests);
    }
    (suite.unwrap(), tests)
}

/// Decrypts as a streaming consumer would: chunk by chunk, keeping what was released before an
/// error. Returns the released plaintext and the error, if any, after checking that the error
/// is sticky.
fn stream_decrypt(
    suite: Suite,
    key: &[u8],
    ctx: &[u8],
    ct: &[u8],
) -> (Vec<u8>, Option<ChunkedError>, bool) {
    let mut reader = match DecryptingReader::new(suite, key, ctx, ct) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), ChunkedError::from_io(&e).cloned(), true),
    };
    let mut out = Vec::new();
    loop {
        match reader.next_chunk() {
            Ok(Some(chunk)) => out.extend_from_slice(chunk),
            Ok(None) => return (out, None, false),
            Err(e) => {
                let again = reader.next_chunk();
                assert!(again.is_err(), "a failed decryptor must keep failing");
                let mut byte = [0u8; 1];
                assert!(
                    reader.read(&mut byte).is_err(),
                    "read after failure must fail too"
                );
                return (out, ChunkedError::from_io(&e).cloned(), false);
            }
        }
    }
}

fn check_file(file: &str) -> usize {
    let (suite, vectors) = load(file);
    let mut checked = 0;
    for v in &vectors {
        let key = hex::decode(&v.key).unwrap();
        let ctx = hex::decode(&v.ctx).unwrap();
        let ct = v.ciphertext();
        let (plain, err, at_header) = stream_decrypt(suite, &key, &ctx, &ct);
        let id = format!("{file} tcId {} ({})", v.tc_id, v.comment);
        match v.result.as_str() {
            "valid" => {
                assert!(err.is_none(), "{id}: valid vector failed: {err:?}");
                assert_eq!(Some(plain.len()), v.msg_length, "{id}: length");
                assert_eq!(
                    Some(hex::encode(sha512(&plain))),
                    v.msg_sha512,
                    "{id}: digest"
                );
                // Encryption with the vector's salt must give the vector's ciphertext exactly.
                let mut salt = [0u8; SALT_LEN];
                salt.copy_from_slice(&ct[..SALT_LEN]);
                let mut w =
                    EncryptingWriter::with_salt(suite, &key, &ctx, &salt, Vec::new()).unwrap();
                // Odd write sizes exercise the buffering across chunk boundaries.
                for piece in plain.chunks(7919) {
                    w.write_all(piece).unwrap();
                }
                let (again, n) = w.finish().unwrap();
                assert_eq!(n as usize, plain.len());
                assert!(again == ct, "{id}: re-encryption differs from the vector");
                // So must the one-shot encryption of the whole message in memory.
                let mut once = vec![0u8; ct.len()];
                encrypt_into_with_salt(suite, &key, &ctx, &salt, &plain, &mut once, 1).unwrap();
                assert!(once == ct, "{id}: encrypt_into differs from the vector");
            }
            "invalid" => {
                let err = err.unwrap_or_else(|| panic!("{id}: invalid vector decrypted"));
                if v.has("InvalidKeySize") {
                    assert!(
                        matches!(err, ChunkedError::KeyLength { .. }),
                        "{id}: {err:?}"
                    );
                }
                if v.has("HeaderFailure") {
                    assert!(at_header, "{id}: must fail before any chunk is opened");
                }
                if v.has("WrongKey") || v.has("WrongContext") {
                    assert_eq!(err, ChunkedError::Commitment, "{id}");
                }
                // A streaming decryptor may release at most the valid prefix, nothing more.
                let prefix = v.msg_length.unwrap_or(0);
                assert!(
                    plain.len() <= prefix,
                    "{id}: released {} > {prefix}",
                    plain.len()
                );
                if v.has("PartialPlaintext") && plain.len() == prefix {
                    assert_eq!(Some(hex::encode(sha512(&plain))), v.msg_sha512, "{id}");
                }
            }
            other => panic!("{id}: unknown result {other}"),
        }
        if let (Some(aead_key), Some(base_nonce)) = (&v.aead_key, &v.base_nonce) {
            let mut salt = [0u8; SALT_LEN];
            salt.copy_from_slice(&ct[..SALT_LEN]);
            let d = derive(suite, &key, &salt, &ctx).unwrap();
            assert_eq!(hex::encode(&*d.raw_key), *aead_key, "{id}: derived key");
            assert_eq!(
                hex::encode(d.key.base_nonce),
                *base_nonce,
                "{id}: base nonce"
            );
        }
        checked += 1;
    }
    checked
}

#[test]
fn wycheproof_cobblestone_256() {
    assert_eq!(
        check_file("c2sp_chunked_encryption_aes_256_gcm_test.json"),
        35
    );
}

#[test]
fn wycheproof_cobblestone_128() {
    assert_eq!(
        check_file("c2sp_chunked_encryption_aes_128_gcm_test.json"),
        35
    );
}

const KEY: [u8; 32] = [7u8; 32];

fn encrypt(plain: &[u8], ctx: &[u8]) -> Vec<u8> {
    let mut w = EncryptingWriter::new(Suite::Cobblestone256, &KEY, ctx, Vec::new()).unwrap();
    w.write_all(plain).unwrap();
    w.finish().unwrap().0
}

fn decrypt(ct: &[u8], ctx: &[u8]) -> Result<Vec<u8>, ChunkedError> {
    let mut out = Vec::new();
    let mut r = DecryptingReader::new(Suite::Cobblestone256, &KEY, ctx, ct)
        .map_err(|e| ChunkedError::from_io(&e).cloned().unwrap())?;
    r.read_to_end(&mut out)
        .map_err(|e| ChunkedError::from_io(&e).cloned().unwrap())?;
    Ok(out)
}

fn message(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// Sizes on each side of the chunk boundaries, where framing bugs live.
const EDGE_SIZES: [usize; 8] = [
    0,
    1,
    CHUNK_SIZE - 1,
    CHUNK_SIZE,
    CHUNK_SIZE + 1,
    2 * CHUNK_SIZE,
    3 * CHUNK_SIZE + 5,
    5 * CHUNK_SIZE - 1,
];

#[test]
fn round_trip_at_chunk_edges() {
    for len in EDGE_SIZES {
        let plain = message(len);
        let ct = encrypt(&plain, b"ctx");
        let chunks = len / CHUNK_SIZE + 1;
        assert_eq!(ct.len(), HEADER_LEN + len + chunks * TAG_LEN, "len {len}");
        assert_eq!(decrypt(&ct, b"ctx").unwrap(), plain, "len {len}");
    }
}

#[test]
fn encrypt_into_equals_the_writer_and_needs_the_exact_length() {
    let sizes =
        EDGE_SIZES
            .into_iter()
            .chain([6 * CHUNK_SIZE, 2 * PER_THREAD_MIN, 2 * PER_THREAD_MIN + 9]);
    for len in sizes {
        let plain = message(len);
        let expected = encrypt(&plain, b"once");
        assert_eq!(
            ciphertext_len(len as u64),
            expected.len() as u64,
            "len {len}"
        );
        let mut out = vec![0u8; expected.len()];
        encrypt_into(Suite::Cobblestone256, &KEY, b"once", &plain, &mut out).unwrap();
        // A fresh salt each time, so the bytes differ but the message is the same one.
        assert_ne!(out[..SALT_LEN], expected[..SALT_LEN], "len {len}");
        assert_eq!(decrypt(&out, b"once").unwrap(), plain, "len {len}");
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&expected[..SALT_LEN]);
        // Whatever the number of threads, and however unevenly the chunks divide among them.
        for threads in [1, 2, 3, 7] {
            out.fill(0);
            encrypt_into_with_salt(
                Suite::Cobblestone256,
                &KEY,
                b"once",
                &salt,
                &plain,
                &mut out,
                threads,
            )
            .unwrap();
            assert!(
                out == expected,
                "len {len}, {threads} threads: differs from the writer's message"
            );
        }
    }
    for wrong in [ciphertext_len(100) - 1, ciphertext_len(100) + 1, 0] {
        let mut out = vec![0xa5u8; wrong as usize];
        let err = encrypt_into(
            Suite::Cobblestone256,
            &KEY,
            b"once",
            &message(100),
            &mut out,
        )
        .unwrap_err();
        assert_eq!(
            err,
            ChunkedError::OutputLength {
                expected: ciphertext_len(100),
                actual: wrong
            }
        );
        assert!(
            out.iter().all(|&b| b == 0xa5),
            "a refused call wrote to out"
        );
    }
    let mut out = vec![0u8; ciphertext_len(3) as usize];
    assert!(matches!(
        encrypt_into(Suite::Cobblestone256, &KEY[..16], b"once", b"abc", &mut out),
        Err(ChunkedError::KeyLength { .. })
    ));
}

/// Yields its data a few bytes at a time, as a pipe might.
struct Trickle<'a>(&'a [u8], usize);

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.1.min(buf.len()).min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn write_from_a_reader_equals_writing() {
    let sizes = EDGE_SIZES
        .into_iter()
        .chain([BATCH_CHUNKS * CHUNK_SIZE + 5, 3 * BATCH_CHUNKS * CHUNK_SIZE]);
    for len in sizes {
        let plain = message(len);
        for step in [1000, CHUNK_SIZE, 3 * CHUNK_SIZE] {
            let mut w =
                EncryptingWriter::new(Suite::Cobblestone256, &KEY, b"r", Vec::new()).unwrap();
            assert_eq!(
                w.write_from(&mut Trickle(&plain, step)).unwrap(),
                len as u64
            );
            let (ct, n) = w.finish().unwrap();
            assert_eq!(n as usize, len);
            assert_eq!(
                ct.len(),
                HEADER_LEN + len + (len / CHUNK_SIZE + 1) * TAG_LEN
            );
            assert_eq!(decrypt(&ct, b"r").unwrap(), plain, "len {len} step {step}");
        }
        // A slice fills every IoSliceMut of a vectored read at once; so does a file.
        let mut w = EncryptingWriter::new(Suite::Cobblestone256, &KEY, b"r", Vec::new()).unwrap();
        w.write_all(&plain[..len / 3]).unwrap();
        assert_eq!(
            w.write_from(&mut &plain[len / 3..]).unwrap() as usize,
            len - len / 3
        );
        let (ct, _) = w.finish().unwrap();
        assert_eq!(decrypt(&ct, b"r").unwrap(), plain, "len {len} vectored");
    }
}

#[test]
fn every_truncation_is_rejected() {
    let plain = message(2 * CHUNK_SIZE + 100);
    let ct = encrypt(&plain, b"");
    let boundaries: Vec<usize> = (0..=2)
        .map(|i| HEADER_LEN + i * ENCRYPTED_CHUNK_SIZE)
        .collect();
    for &cut in &boundaries {
        let err = decrypt(&ct[..cut], b"").unwrap_err();
        assert_eq!(
            err,
            ChunkedError::MissingFinalChunk {
                chunks: ((cut - HEADER_LEN) / ENCRYPTED_CHUNK_SIZE) as u64
            }
        );
    }
    // Inside the header, inside every chunk, inside every tag, and one byte short of the end.
    let mut cuts = vec![0, 1, SALT_LEN, HEADER_LEN - 1, ct.len() - 1];
    for &b in &boundaries {
        cuts.extend([b + 1, b + TAG_LEN - 1, b + TAG_LEN, b + 4096]);
    }
    cuts.extend([boundaries[1] - 1, boundaries[1] - TAG_LEN]);
    for cut in cuts.into_iter().filter(|&c| c < ct.len()) {
        assert!(
            decrypt(&ct[..cut], b"").is_err(),
            "truncation at {cut} accepted"
        );
    }
}

#[test]
fn reordered_duplicated_and_trailing_chunks_are_rejected() {
    let ct = encrypt(&message(3 * CHUNK_SIZE + 10), b"");
    let chunk = |i: usize| {
        let start = HEADER_LEN + i * ENCRYPTED_CHUNK_SIZE;
        ct[start..(start + ENCRYPTED_CHUNK_SIZE).min(ct.len())].to_vec()
    };
    let header = ct[..HEADER_LEN].to_vec();
    let assemble = |order: &[usize]| {
        let mut out = header.clone();
        for &i in order {
            out.extend(chunk(i));
        }
        out
    };
    assert!(decrypt(&assemble(&[0, 1, 2, 3]), b"").is_ok());
    assert_eq!(
        decrypt(&assemble(&[1, 0, 2, 3]), b""),
        Err(ChunkedError::Chunk { index: 0 })
    );
    assert_eq!(
        decrypt(&assemble(&[0, 0, 1, 2, 3]), b""),
        Err(ChunkedError::Chunk { index: 1 })
    );
    assert_eq!(
        decrypt(&assemble(&[0, 1, 3]), b""),
        Err(ChunkedError::Chunk { index: 2 })
    );
    // Data after the final chunk: a copy of it, and a single stray byte.
    assert!(decrypt(&assemble(&[0, 1, 2, 3, 3]), b"").is_err());
    let mut stray = ct.clone();
    stray.push(0);
    assert!(decrypt(&stray, b"").is_err());
}

#[test]
fn wrong_key_and_wrong_context_fail_at_the_commitment() {
    let ct = encrypt(b"hello", b"ctx-a");
    assert_eq!(decrypt(&ct, b"ctx-b"), Err(ChunkedError::Commitment));
    let err =
        DecryptingReader::new(Suite::Cobblestone256, &[8u8; 32], b"ctx-a", &ct[..]).unwrap_err();
    assert_eq!(ChunkedError::from_io(&err), Some(&ChunkedError::Commitment));
    let err = DecryptingReader::new(Suite::Cobblestone256, &[8u8; 16], b"", &ct[..]).unwrap_err();
    assert!(matches!(
        ChunkedError::from_io(&err),
        Some(ChunkedError::KeyLength {
            expected: 32,
            actual: 16,
            ..
        })
    ));
}

/// Sizes around the batch boundaries.
#[test]
fn round_trip_across_batches() {
    for chunks in [
        BATCH_CHUNKS - 1,
        BATCH_CHUNKS,
        BATCH_CHUNKS + 1,
        2 * BATCH_CHUNKS + 3,
    ] {
        for extra in [0, 1, CHUNK_SIZE - 1] {
            let len = chunks * CHUNK_SIZE + extra;
            let plain = message(len);
            let ct = encrypt(&plain, b"b");
            assert_eq!(
                ct.len(),
                HEADER_LEN + len + (len / CHUNK_SIZE + 1) * TAG_LEN
            );
            assert_eq!(decrypt(&ct, b"b").unwrap(), plain, "len {len}");
        }
    }
}

#[test]
fn a_bad_chunk_in_a_batch_releases_exactly_the_chunks_before_it() {
    let plain = message(3 * BATCH_CHUNKS * CHUNK_SIZE + 99);
    let ct = encrypt(&plain, b"");
    // Chunks at the start, middle and end of the first batch, and inside later batches.
    let b = BATCH_CHUNKS;
    for bad in [0, 5, b / 2 + 3, b - 1, b, b + 6, 2 * b + 9] {
        let mut tampered = ct.clone();
        tampered[HEADER_LEN + bad * ENCRYPTED_CHUNK_SIZE + 100] ^= 0x04;
        let (released, err, _) = stream_decrypt(Suite::Cobblestone256, &KEY, b"", &tampered);
        assert_eq!(
            err,
            Some(ChunkedError::Chunk { index: bad as u64 }),
            "chunk {bad}"
        );
        assert_eq!(released, plain[..bad * CHUNK_SIZE], "chunk {bad}");
    }
    for cut in [BATCH_CHUNKS, BATCH_CHUNKS + 6, 2 * BATCH_CHUNKS] {
        let (released, err, _) = stream_decrypt(
            Suite::Cobblestone256,
            &KEY,
            b"",
            &ct[..HEADER_LEN + cut * ENCRYPTED_CHUNK_SIZE],
        );
        assert_eq!(
            err,
            Some(ChunkedError::MissingFinalChunk { chunks: cut as u64 })
        );
        assert_eq!(released, plain[..cut * CHUNK_SIZE]);
    }
}

#[test]
fn salts_differ_between_messages() {
    assert_ne!(
        encrypt(b"same", b"")[..SALT_LEN],
        encrypt(b"same", b"")[..SALT_LEN]
    );
}

#[test]
fn a_writer_dropped_without_finish_leaves_a_truncated_message() {
    let mut out = Vec::new();
    {
        let mut w = EncryptingWriter::new(Suite::Cobblestone256, &KEY, b"", &mut out).unwrap();
        w.write_all(&message(CHUNK_SIZE + 1)).unwrap();
    }
    assert!(decrypt(&out, b"").is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trip_any_size_any_split(
        len in prop_oneof![Just(0usize), Just(1), Just(CHUNK_SIZE - 1), Just(CHUNK_SIZE),
                           Just(CHUNK_SIZE + 1), 0usize..(4 * CHUNK_SIZE + 3)],
        split in 1usize..20_000,
        ctx in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let plain = message(len);
        let mut w = EncryptingWriter::new(Suite::Cobblestone256, &KEY, &ctx, Vec::new()).unwrap();
        for piece in plain.chunks(split) {
            w.write_all(piece).unwrap();
        }
        let (ct, n) = w.finish().unwrap();
        prop_assert_eq!(n as usize, len);
        // Read back through small reads too.
        let mut r = DecryptingReader::new(Suite::Cobblestone256, &KEY, &ctx, &ct[..]).unwrap();
        let mut back = Vec::new();
        let mut buf = vec![0u8; split.min(5000)];
        loop {
            let k = r.read(&mut buf).unwrap();
            if k == 0 { break; }
            back.extend_from_slice(&buf[..k]);
        }
        prop_assert_eq!(back, plain);
    }

    #[test]
    fn any_flipped_bit_is_rejected(
        len in 0usize..(3 * CHUNK_SIZE),
        pos in any::<proptest::sample::Index>(),
        bit in 0u8..8,
    ) {
        let mut ct = encrypt(&message(len), b"c");
        let at = pos.index(ct.len());
        ct[at] ^= 1 << bit;
        prop_assert!(decrypt(&ct, b"c").is_err());
    }
}

fn random_access(ct: Vec<u8>, ctx: &[u8]) -> Result<RandomAccessReader<Vec<u8>>, ChunkedError> {
    RandomAccessReader::new(Suite::Cobblestone256, &KEY, ctx, ct, 0)
        .map_err(|e| ChunkedError::from_io(&e).cloned().unwrap())
}

fn read_range(reader: &RandomAccessReader<Vec<u8>>, from: usize, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    reader.read_exact_at(&mut out, from as u64).unwrap();
    out
}

#[test]
fn random_access_reads_every_range_at_the_chunk_edges() {
    for len in EDGE_SIZES.into_iter().chain([40 * CHUNK_SIZE + 3]) {
        let plain = message(len);
        let reader = random_access(encrypt(&plain, b"ctx"), b"ctx").unwrap();
        assert_eq!(reader.len(), len as u64);
        // Starts and ends on each side of every chunk boundary, and the whole message in
        // one read (more than a batch of chunks for the largest).
        let mut points = vec![0, 1, len.saturating_sub(1), len];
        // Every boundary of the small messages; the batch edges of the large one.
        for b in [1, 2, 3, 4, 5, 16, 17, 32, 33, 40].map(|i| i * CHUNK_SIZE) {
            points.extend([b - 1, b, b + 1]);
        }
        points.retain(|&p| p <= len);
        for &from in &points {
            for &to in points.iter().filter(|&&to| to >= from) {
                assert!(
                    read_range(&reader, from, to - from) == plain[from..to],
                    "len {len}: {from}..{to}"
                );
            }
        }
        // Past the end is an error, not a short read.
        let mut one = [0u8; 1];
        let past = reader.read_exact_at(&mut one, len as u64).unwrap_err();
        assert_eq!(past.kind(), std::io::ErrorKind::UnexpectedEof);
        assert!(past.to_string().contains("past the end"), "{past}");
    }
}

#[test]
fn random_access_refuses_truncation_and_trailing_data_at_open() {
    let plain = message(2 * CHUNK_SIZE + 100);
    let ct = encrypt(&plain, b"");
    for i in 0..=2u64 {
        let cut = HEADER_LEN + i as usize * ENCRYPTED_CHUNK_SIZE;
        assert_eq!(
            random_access(ct[..cut].to_vec(), b"").unwrap_err(),
            ChunkedError::MissingFinalChunk { chunks: i }
        );
    }
    assert_eq!(
        random_access(ct[..HEADER_LEN - 1].to_vec(), b"").unwrap_err(),
        ChunkedError::TruncatedHeader
    );
    // Inside a chunk, inside the final chunk's tag, one byte short, one byte over.
    let b = HEADER_LEN + ENCRYPTED_CHUNK_SIZE;
    for cut in [b + 1, b + TAG_LEN - 1, b + 4096, ct.len() - 1] {
        assert!(
            random_access(ct[..cut].to_vec(), b"").is_err(),
            "truncation at {cut} accepted"
        );
    }
    let mut stray = ct.clone();
    stray.push(0);
    assert!(random_access(stray, b"").is_err());
    assert_eq!(
        random_access(ct.clone(), b"other").unwrap_err(),
        ChunkedError::Commitment
    );
    let wrong_key = RandomAccessReader::new(Suite::Cobblestone256, &[8u8; 32], b"", ct, 0)
        .map_err(|e| ChunkedError::from_io(&e).cloned().unwrap());
    assert_eq!(wrong_key.unwrap_err(), ChunkedError::Commitment);
}

#[test]
fn random_access_refuses_exactly_the_reads_that_cover_a_changed_chunk() {
    let plain = message(3 * CHUNK_SIZE + 10);
    let mut ct = encrypt(&plain, b"");
    ct[HEADER_LEN + ENCRYPTED_CHUNK_SIZE + 77] ^= 0x10; // inside chunk 1
    let reader = random_access(ct.clone(), b"").unwrap();
    assert!(read_range(&reader, 0, CHUNK_SIZE) == plain[..CHUNK_SIZE]);
    assert!(read_range(&reader, 2 * CHUNK_SIZE, CHUNK_SIZE + 10) == plain[2 * CHUNK_SIZE..]);
    for (from, len) in [(CHUNK_SIZE, 1), (CHUNK_SIZE - 1, 2), (0, plain.len())] {
        let mut out = vec![0xAAu8; len];
        let err = reader.read_exact_at(&mut out, from as u64).unwrap_err();
        assert_eq!(
            ChunkedError::from_io(&err),
            Some(&ChunkedError::Chunk { index: 1 })
        );
        assert!(
            out.iter().all(|&b| b == 0),
            "a failed read left bytes behind"
        );
    }
    // Chunks swapped: each is refused at the other's position.
    let mut swapped = encrypt(&plain, b"");
    let (a, b) = (HEADER_LEN, HEADER_LEN + ENCRYPTED_CHUNK_SIZE);
    let first = swapped[a..b].to_vec();
    swapped.copy_within(b..b + ENCRYPTED_CHUNK_SIZE, a);
    swapped[b..b + ENCRYPTED_CHUNK_SIZE].copy_from_slice(&first);
    let reader = random_access(swapped, b"").unwrap();
    let mut out = vec![0u8; 10];
    let err = reader.read_exact_at(&mut out, 5).unwrap_err();
    assert_eq!(
        ChunkedError::from_io(&err),
        Some(&ChunkedError::Chunk { index: 0 })
    );
}

#[test]
fn random_access_reads_a_file_at_an_offset() {
    let plain = message(2 * CHUNK_SIZE + 7);
    let mut bytes = b"prefix".to_vec();
    bytes.extend(encrypt(&plain, b"ctx"));
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(&bytes).unwrap();
    let reader = RandomAccessReader::new(Suite::Cobblestone256, &KEY, b"ctx", file, 6).unwrap();
    let mut out = vec![0u8; CHUNK_SIZE + 2];
    reader
        .read_exact_at(&mut out, CHUNK_SIZE as u64 - 1)
        .unwrap();
    assert!(out == plain[CHUNK_SIZE - 1..2 * CHUNK_SIZE + 1]);
}

//! Round trips and every kind of bad input the file format must refuse.

use proptest::prelude::*;

use super::*;
use crate::chunked::{CHUNK_SIZE, ENCRYPTED_CHUNK_SIZE, HEADER_LEN as BODY_HEADER_LEN};

fn keys(n: usize) -> Vec<HpkeSecretKey> {
    (0..n).map(|_| HpkeSecretKey::generate().unwrap()).collect()
}

fn seal(to: &[&HpkeSecretKey], plain: &[u8]) -> Vec<u8> {
    let publics: Vec<_> = to.iter().map(|k| k.public_key()).collect();
    let mut out = Vec::new();
    let n = encrypt(&publics, plain, &mut out).unwrap();
    assert_eq!(n as usize, plain.len());
    out
}

fn open(key: &HpkeSecretKey, file: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    let mut out = Vec::new();
    Decryptor::new(key, file)?.decrypt_to(&mut out)?;
    Ok(out)
}

fn message(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 253) as u8).collect()
}

fn header_len(recipients: usize) -> usize {
    FIXED_HEADER_LEN + recipients * STANZA_LEN
}

#[test]
fn every_recipient_can_decrypt_and_no_one_else() {
    let k = keys(4);
    let plain = message(CHUNK_SIZE * 2 + 3);
    let file = seal(&[&k[0], &k[1], &k[2]], &plain);
    for key in &k[..3] {
        assert_eq!(open(key, &file).unwrap(), plain);
    }
    match open(&k[3], &file) {
        Err(EnvelopeError::NotARecipient { id, recipients: 3 }) => {
            assert_eq!(id, RecipientId::of(&k[3].public_key()))
        }
        other => panic!("expected NotARecipient, got {other:?}"),
    }
    let (header, len) = Header::parse(&file).unwrap();
    assert_eq!(len, header_len(3));
    let ids: Vec<_> = header.recipients().copied().collect();
    assert_eq!(
        ids,
        k[..3]
            .iter()
            .map(|k| RecipientId::of(&k.public_key()))
            .collect::<Vec<_>>()
    );
}

#[test]
fn sizes_at_chunk_edges_round_trip_with_the_documented_length() {
    let k = keys(1);
    for len in [
        0,
        1,
        CHUNK_SIZE - 1,
        CHUNK_SIZE,
        CHUNK_SIZE + 1,
        3 * CHUNK_SIZE,
    ] {
        let chunks = len / CHUNK_SIZE + 1;
        let streamed = seal(&[&k[0]], &message(len));
        let in_memory = encrypt_bytes(&[k[0].public_key()], &message(len)).unwrap();
        for file in [streamed, in_memory] {
            assert_eq!(
                file.len(),
                header_len(1) + BODY_HEADER_LEN + len + 16 * chunks
            );
            assert_eq!(open(&k[0], &file).unwrap(), message(len));
        }
    }
}

#[test]
fn an_in_memory_file_opens_for_every_recipient_and_no_one_else() {
    let k = keys(3);
    let plain = message(5 * CHUNK_SIZE + 11);
    let file = encrypt_bytes(&[k[0].public_key(), k[1].public_key()], &plain).unwrap();
    assert_eq!(open(&k[0], &file).unwrap(), plain);
    assert_eq!(open(&k[1], &file).unwrap(), plain);
    assert!(matches!(
        open(&k[2], &file),
        Err(EnvelopeError::NotARecipient { recipients: 2, .. })
    ));
}

#[test]
fn every_header_bit_flip_is_caught_before_any_plaintext() {
    let k = keys(2);
    let file = seal(&[&k[0], &k[1]], b"the ledger is the source of truth");
    for byte in 0..header_len(2) {
        for bit in 0..8 {
            let mut bad = file.clone();
            bad[byte] ^= 1 << bit;
            // The header is checked in Decryptor::new, before any chunk is opened.
            assert!(
                Decryptor::new(&k[0], &bad[..]).is_err(),
                "byte {byte} bit {bit}"
            );
        }
    }
}

#[test]
fn a_header_from_another_file_is_refused() {
    let k = keys(1);
    let in_memory = |plain: &[u8]| encrypt_bytes(&[k[0].public_key()], plain).unwrap();
    let streamed = (seal(&[&k[0]], b"file a"), seal(&[&k[0]], b"file b"));
    for (a, b) in [streamed, (in_memory(b"file a"), in_memory(b"file b"))] {
        let h = header_len(1);
        let mut spliced = b[..h].to_vec();
        spliced.extend_from_slice(&a[h..]);
        assert!(matches!(
            open(&k[0], &spliced),
            Err(EnvelopeError::HeaderMismatch)
        ));
    }
}

#[test]
fn unknown_version_bad_magic_and_bad_counts_are_named() {
    let k = keys(1);
    let file = seal(&[&k[0]], b"x");
    let mut v2 = file.clone();
    v2[9] = 2;
    assert!(matches!(
        open(&k[0], &v2),
        Err(EnvelopeError::UnsupportedVersion { found: 2 })
    ));
    assert!(matches!(
        open(&k[0], b"name,amount\n"),
        Err(EnvelopeError::NotConfideFile)
    ));
    assert!(matches!(
        open(&k[0], b"id"),
        Err(EnvelopeError::NotConfideFile)
    ));
    assert!(matches!(
        open(&k[0], b""),
        Err(EnvelopeError::TruncatedHeader)
    ));
    assert!(matches!(
        open(&k[0], &file[..5]),
        Err(EnvelopeError::TruncatedHeader)
    ));
    for count in [0u16, 1025, u16::MAX] {
        let mut bad = file.clone();
        bad[10..12].copy_from_slice(&count.to_be_bytes());
        assert!(
            matches!(open(&k[0], &bad), Err(EnvelopeError::RecipientCount { count: c }) if c == usize::from(count))
        );
    }
    let mut two = file[..FIXED_HEADER_LEN].to_vec();
    two[11] = 2;
    two.extend_from_slice(&file[FIXED_HEADER_LEN..header_len(1)]);
    two.extend_from_slice(&file[FIXED_HEADER_LEN..header_len(1)]);
    assert!(matches!(
        Header::parse(&two),
        Err(EnvelopeError::DuplicateRecipient { .. })
    ));
}

#[test]
fn truncation_reordering_and_duplication_of_chunks_are_refused() {
    let k = keys(1);
    let file = seal(&[&k[0]], &message(3 * CHUNK_SIZE + 7));
    let body = header_len(1) + BODY_HEADER_LEN;
    let boundary = |i: usize| body + i * ENCRYPTED_CHUNK_SIZE;
    for i in 0..=3 {
        let err = open(&k[0], &file[..boundary(i)]).unwrap_err();
        assert!(
            matches!(err, EnvelopeError::Body(ChunkedError::MissingFinalChunk { chunks }) if chunks == i as u64),
            "cut at chunk {i}: {err:?}"
        );
        // Inside the chunk.
        assert!(
            open(&k[0], &file[..boundary(i) + 17]).is_err(),
            "cut inside chunk {i}"
        );
    }
    for cut in [header_len(1) - 1, header_len(1), body - 1, file.len() - 1] {
        assert!(open(&k[0], &file[..cut]).is_err(), "cut at {cut}");
    }
    let chunk = |i: usize| file[boundary(i)..boundary(i + 1).min(file.len())].to_vec();
    let with = |order: &[usize]| {
        let mut out = file[..body].to_vec();
        for &i in order {
            out.extend(chunk(i));
        }
        out
    };
    assert_eq!(
        open(&k[0], &with(&[0, 1, 2, 3])).unwrap(),
        message(3 * CHUNK_SIZE + 7)
    );
    assert!(matches!(
        open(&k[0], &with(&[0, 2, 1, 3])),
        Err(EnvelopeError::Body(ChunkedError::Chunk { index: 1 }))
    ));
    assert!(matches!(
        open(&k[0], &with(&[0, 1, 1, 2, 3])),
        Err(EnvelopeError::Body(ChunkedError::Chunk { index: 2 }))
    ));
}

#[test]
fn encrypt_refuses_no_recipients_and_duplicates() {
    let k = keys(1);
    let mut out = Vec::new();
    assert!(matches!(
        encrypt(&[], &b"x"[..], &mut out),
        Err(EnvelopeError::RecipientCount { count: 0 })
    ));
    let pk = k[0].public_key();
    assert!(matches!(
        encrypt(&[pk, pk], &b"x"[..], &mut out),
        Err(EnvelopeError::DuplicateRecipient { .. })
    ));
    assert!(matches!(
        encrypt_bytes(&[], b"x"),
        Err(EnvelopeError::RecipientCount { count: 0 })
    ));
    assert!(matches!(
        encrypt_bytes(&[pk, pk], b"x"),
        Err(EnvelopeError::DuplicateRecipient { .. })
    ));
}

#[test]
fn errors_do_not_carry_secrets() {
    let k = keys(2);
    let file = seal(&[&k[0]], b"secret plaintext");
    let err = open(&k[1], &file).unwrap_err().to_string();
    assert!(!err.contains("secret plaintext"));
    assert!(err.contains("not encrypted to your key"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_flipped_bit_anywhere_is_refused(
        len in prop_oneof![Just(0usize), Just(CHUNK_SIZE), 0usize..(2 * CHUNK_SIZE + 100)],
        pos in any::<proptest::sample::Index>(),
        bit in 0u8..8,
    ) {
        let k = HpkeSecretKey::generate().unwrap();
        let mut file = seal(&[&k], &message(len));
        let at = pos.index(file.len());
        file[at] ^= 1 << bit;
        prop_assert!(open(&k, &file).is_err());
    }

    #[test]
    fn parse_never_panics_and_round_trips_its_own_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok((header, len)) = Header::parse(&data) {
            prop_assert_eq!(header.as_bytes(), &data[..len]);
        }
    }
}

#[test]
fn the_plaintext_reader_gives_the_file_and_fails_on_a_cut() {
    use std::io::Read as _;
    let key = HpkeSecretKey::generate().unwrap();
    let plaintext: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let mut file = Vec::new();
    encrypt(&[key.public_key()], &plaintext[..], &mut file).unwrap();
    let mut out = Vec::new();
    Decryptor::new(&key, &file[..])
        .unwrap()
        .into_reader()
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, plaintext);
    let cut = &file[..file.len() - 100];
    let mut out = Vec::new();
    let err = Decryptor::new(&key, cut)
        .unwrap()
        .into_reader()
        .read_to_end(&mut out)
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(
        matches!(
            err.get_ref()
                .and_then(|e| e.downcast_ref::<EnvelopeError>()),
            Some(EnvelopeError::Body(ChunkedError::Chunk { .. }))
        ),
        "{err:?}"
    );
}

#[test]
fn the_plaintext_reader_lends_whole_chunks_and_consumes_in_any_steps() {
    let key = HpkeSecretKey::generate().unwrap();
    let plaintext = message(3 * CHUNK_SIZE + 77);
    let file = seal(&[&key], &plaintext);
    let mut reader = Decryptor::new(&key, &file[..]).unwrap().into_reader();
    let mut out = Vec::new();
    let mut lent = Vec::new();
    for step in [1, 5000, CHUNK_SIZE, 3].into_iter().cycle() {
        let buf = reader.fill_buf().unwrap();
        if buf.is_empty() {
            break;
        }
        lent.push(buf.len());
        let take = step.min(buf.len());
        out.extend_from_slice(&buf[..take]);
        reader.consume(take);
    }
    assert_eq!(out, plaintext);
    // A fresh chunk is lent whole: its first lending is the chunk's full length.
    assert_eq!(lent[0], CHUNK_SIZE);
    assert!(lent.iter().all(|&n| n <= CHUNK_SIZE));
    // A flipped bit in the last chunk fails the lending of that chunk, after the earlier ones.
    let mut bad = file.clone();
    let last = bad.len() - 20;
    bad[last] ^= 1;
    let mut reader = Decryptor::new(&key, &bad[..]).unwrap().into_reader();
    let mut good = 0;
    let err = loop {
        match reader.fill_buf() {
            Ok(buf) => {
                let n = buf.len();
                assert!(n > 0, "the end was reached despite the flipped bit");
                good += n;
                reader.consume(n);
            }
            Err(e) => break e,
        }
    };
    assert_eq!(good, 3 * CHUNK_SIZE);
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(
        reader.fill_buf().is_err(),
        "a failed reader must keep failing"
    );
}

#[test]
fn random_access_opens_for_recipients_only_and_checks_the_header_first() {
    let k = keys(3);
    let plain = message(3 * CHUNK_SIZE + 17);
    let file = seal(&[&k[0], &k[1]], &plain);
    for key in &k[..2] {
        let reader = open_at(key, file.clone()).unwrap();
        assert_eq!(reader.len(), plain.len() as u64);
        let mut middle = vec![0u8; CHUNK_SIZE + 2];
        reader
            .read_exact_at(&mut middle, CHUNK_SIZE as u64 - 1)
            .unwrap();
        assert!(middle == plain[CHUNK_SIZE - 1..2 * CHUNK_SIZE + 1]);
    }
    assert!(matches!(
        open_at(&k[2], file.clone()),
        Err(EnvelopeError::NotARecipient { recipients: 2, .. })
    ));
    // Another file's header over this body; a flipped header bit; a cut inside the header or
    // at a chunk boundary: each is refused before any read.
    let other = seal(&[&k[0], &k[1]], b"another file");
    let h = header_len(2);
    let mut spliced = other[..h].to_vec();
    spliced.extend_from_slice(&file[h..]);
    assert!(matches!(
        open_at(&k[0], spliced),
        Err(EnvelopeError::HeaderMismatch)
    ));
    let mut flipped = file.clone();
    flipped[h - 1] ^= 1;
    assert!(open_at(&k[0], flipped).is_err());
    for cut in [0, 5, FIXED_HEADER_LEN, h - 1] {
        let refused = open_at(&k[0], file[..cut].to_vec()).unwrap_err();
        assert!(
            matches!(
                refused,
                EnvelopeError::TruncatedHeader | EnvelopeError::NotConfideFile
            ),
            "cut at {cut}: {refused}"
        );
    }
    let cut = h + BODY_HEADER_LEN + ENCRYPTED_CHUNK_SIZE;
    assert!(matches!(
        open_at(&k[0], file[..cut].to_vec()),
        Err(EnvelopeError::Body(ChunkedError::MissingFinalChunk {
            chunks: 1
        }))
    ));
}

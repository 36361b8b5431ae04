//! The CCF JSON receipts in testdata/receipts (real Azure Confidential Ledger receipts, see its
//! README) verify against their service certificates, and nothing else does: not the other
//! service's certificate, not a receipt with any byte of a signed value changed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use confide_attest::Certificate;
use confide_ledger::ccf;
use serde_json::Value;

fn folder(name: &str) -> (Vec<u8>, Certificate, Value) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/receipts")
        .join(name);
    let receipt = std::fs::read(dir.join("receipt.json")).unwrap();
    let cert = Certificate::from_pem_chain(&std::fs::read(dir.join("service_cert.pem")).unwrap())
        .unwrap()
        .remove(0);
    let case = serde_json::from_slice(&std::fs::read(dir.join("case.json")).unwrap()).unwrap();
    (receipt, cert, case)
}

#[test]
fn both_receipts_verify_with_their_leaf_and_root() {
    for name in ["ccf-json-receipt-1", "ccf-json-receipt-2"] {
        let (receipt, cert, case) = folder(name);
        let v = ccf::verify_any(&receipt, &cert, None).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            hex::encode(v.leaf),
            case["expected"]["leaf"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(
            hex::encode(v.root),
            case["expected"]["root"].as_str().unwrap(),
            "{name}"
        );
        // The expected entry digest is checked when given.
        ccf::verify_any(&receipt, &cert, Some(&v.claims_digest)).unwrap();
        let err = ccf::verify_any(&receipt, &cert, Some(&[0xee; 32])).unwrap_err();
        assert!(matches!(err, ccf::CcfError::OtherEntry(_)), "{err}");
    }
}

#[test]
fn the_other_service_certificate_is_refused() {
    let (r1, c1, _) = folder("ccf-json-receipt-1");
    let (r2, c2, _) = folder("ccf-json-receipt-2");
    assert!(ccf::verify_any(&r1, &c2, None).is_err());
    assert!(ccf::verify_any(&r2, &c1, None).is_err());
}

/// Every hex or base64 character of every signed value changed to another of its alphabet.
#[test]
fn every_changed_character_of_a_signed_value_is_refused() {
    for name in ["ccf-json-receipt-1", "ccf-json-receipt-2"] {
        let (receipt, cert, _) = folder(name);
        let doc: Value = serde_json::from_slice(&receipt).unwrap();
        let mut paths: Vec<Vec<String>> = Vec::new();
        collect_strings(&doc, &mut Vec::new(), &mut paths);
        let mut tried = 0;
        for path in paths {
            let last = path.last().unwrap().as_str();
            if last == "cert" || last == "node_id" || last == "nodeId" {
                continue; // the node certificate is swept below through its endorsement
            }
            let original = get(&doc, &path).as_str().unwrap().to_owned();
            for i in 0..original.len() {
                let mut changed = original.clone().into_bytes();
                changed[i] = if changed[i] == b'0' { b'1' } else { b'0' };
                let mut tampered = doc.clone();
                *get_mut(&mut tampered, &path) = Value::String(String::from_utf8(changed).unwrap());
                let bytes = serde_json::to_vec(&tampered).unwrap();
                tried += 1;
                assert!(
                    ccf::verify_any(&bytes, &cert, None).is_err(),
                    "{name}: {path:?}[{i}] changed and still verified"
                );
            }
        }
        assert!(tried > 200, "{tried}");
    }
}

fn collect_strings(v: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Value::String(_) => out.push(at.clone()),
        Value::Object(m) => {
            for (k, child) in m {
                at.push(k.clone());
                collect_strings(child, at, out);
                at.pop();
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                at.push(i.to_string());
                collect_strings(child, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn get<'a>(v: &'a Value, path: &[String]) -> &'a Value {
    path.iter().fold(v, |v, k| match v {
        Value::Array(a) => &a[k.parse::<usize>().unwrap()],
        _ => &v[k.as_str()],
    })
}

fn get_mut<'a>(v: &'a mut Value, path: &[String]) -> &'a mut Value {
    path.iter().fold(v, |v, k| match v {
        Value::Array(a) => &mut a[k.parse::<usize>().unwrap()],
        _ => &mut v[k.as_str()],
    })
}

/// A COSE receipt in CCF's profile (`ccf-receipt.cddl`), built from the leaf and path of real
/// JSON receipt 2 and signed with a test service key (tests/data, see its README): it verifies,
/// gives the same leaf and root as the JSON form, and any changed byte is refused.
#[test]
fn cose_receipts_in_the_ccf_profile() {
    use ciborium::value::Value as Cbor;
    use confide_ledger::cose;

    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let key = confide_crypto::signing::SigningKey::from_pkcs8(
        &std::fs::read(data.join("service.key.pk8")).unwrap(),
    )
    .unwrap();
    let cert = Certificate::from_pem_chain(&std::fs::read(data.join("service_cert.pem")).unwrap())
        .unwrap()
        .remove(0);
    let (json_receipt, _, case) = folder("ccf-json-receipt-2");
    let doc: Value = serde_json::from_slice(&json_receipt).unwrap();
    let h = |s: &Value| Cbor::Bytes(hex::decode(s.as_str().unwrap()).unwrap());
    let lc = &doc["leafComponents"];
    let leaf = Cbor::Array(vec![
        h(&lc["writeSetDigest"]),
        Cbor::Text(lc["commitEvidence"].as_str().unwrap().into()),
        h(&lc["claimsDigest"]),
    ]);
    let path: Vec<Cbor> = doc["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| match (p.get("left"), p.get("right")) {
            (Some(l), _) => Cbor::Array(vec![Cbor::Bool(true), h(l)]),
            (_, Some(r)) => Cbor::Array(vec![Cbor::Bool(false), h(r)]),
            _ => unreachable!(),
        })
        .collect();
    let proof = cose::encode(&Cbor::Map(vec![
        (cose::int(1), leaf),
        (cose::int(2), Cbor::Array(path)),
    ]));
    let protected = cose::encode(&Cbor::Map(vec![
        (cose::int(cose::ALG), cose::int(cose::ES256)),
        (cose::int(cose::VDS), cose::int(cose::VDS_CCF_LEDGER_SHA256)),
        (
            Cbor::Text("ccf.v1".into()),
            Cbor::Map(vec![(Cbor::Text("txid".into()), Cbor::Text("2.36".into()))]),
        ),
    ]));
    let root = hex::decode(case["expected"]["root"].as_str().unwrap()).unwrap();
    let signature = key.sign(&cose::sig_structure(&protected, &root)).unwrap();
    let sign1 = cose::Sign1::parse(&cose::encode(&Cbor::Tag(
        18,
        Box::new(Cbor::Array(vec![
            Cbor::Bytes(protected),
            Cbor::Map(vec![(
                cose::int(cose::VDP),
                Cbor::Map(vec![(
                    cose::int(cose::INCLUSION_PROOFS),
                    Cbor::Array(vec![Cbor::Bytes(proof)]),
                )]),
            )]),
            Cbor::Null,
            Cbor::Bytes(signature.to_vec()),
        ])),
    )))
    .unwrap();
    let receipt = sign1.to_bytes();

    let v = ccf::verify_any(&receipt, &cert, None).unwrap();
    assert_eq!(
        hex::encode(v.root),
        case["expected"]["root"].as_str().unwrap()
    );
    assert_eq!(
        hex::encode(v.leaf),
        case["expected"]["leaf"].as_str().unwrap()
    );
    let (_, other_cert, _) = folder("ccf-json-receipt-1");
    assert!(ccf::verify_any(&receipt, &other_cert, None).is_err());
    // Every bit flip is refused, but for one that re-encodes the same receipt: CBOR's
    // `undefined` for the detached payload's `nil`, which the CBOR decoder reads alike and which
    // changes nothing that is verified.
    let original = cose::Sign1::parse(&receipt).unwrap();
    for i in 0..receipt.len() {
        for bit in 0..8 {
            let mut t = receipt.clone();
            t[i] ^= 1 << bit;
            if ccf::verify_any(&t, &cert, None).is_ok() {
                assert_eq!(
                    cose::Sign1::parse(&t).unwrap(),
                    original,
                    "byte {i} bit {bit}"
                );
                assert_eq!((receipt[i], t[i]), (0xf6, 0xf7), "byte {i} bit {bit}");
            }
        }
    }
}

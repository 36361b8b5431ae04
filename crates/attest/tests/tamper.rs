//! Tampering with real evidence is always detected: every single-bit flip of the signed part of
//! the evidence and of its signature, every single-bit flip of the endorsing certificate, and
//! every truncation is rejected, with zero false accepts. This is a sweep over every bit, not a
//! sample. Bytes a format leaves unsigned (the reserved tail of an SNP report's signature field,
//! padding after a DCAP quote) are not part of the sweep: changing them changes nothing verified.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use confide_attest::snp::EndorsedKey;
use confide_attest::{Collateral, Inputs, TrustAnchors, UnixTime, Verifier};
use serde_json::Value;

struct Fixture {
    evidence: Vec<u8>,
    collateral_files: Vec<Vec<u8>>,
    now: UnixTime,
}

fn fixture(rel: &str) -> Fixture {
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/attestation")
        .join(rel);
    let case: Value =
        serde_json::from_slice(&std::fs::read(dir.join("case.json")).unwrap()).unwrap();
    let name = evidence_name(&case);
    let evidence =
        confide_attest::decode_text(&std::fs::read(dir.join(name)).unwrap()).into_owned();
    let collateral_files = case["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            let role = f["role"].as_str().unwrap();
            !role.starts_with("evidence") && !role.starts_with("informational")
        })
        .map(|f| std::fs::read(dir.join(f["name"].as_str().unwrap())).unwrap())
        .collect();
    Fixture {
        evidence,
        collateral_files,
        now: UnixTime::from_secs(case["verification_time"]["unix"].as_i64().unwrap()),
    }
}

impl Fixture {
    fn collateral(&self) -> Collateral {
        let mut c = Collateral::new();
        for f in &self.collateral_files {
            c.add(f).unwrap();
        }
        c
    }

    fn verifier(&self) -> &'static dyn Verifier {
        confide_attest::detect(&self.evidence).unwrap()
    }
}

/// Flips each bit of `range` in a copy of `bytes` and asserts `accepts` says no to every one.
fn sweep(bytes: &[u8], range: std::ops::Range<usize>, what: &str, accepts: impl Fn(&[u8]) -> bool) {
    let mut copy = bytes.to_vec();
    let mut accepted = Vec::new();
    for i in range.clone() {
        for bit in 0..8 {
            copy[i] ^= 1 << bit;
            if accepts(&copy) {
                accepted.push((i, bit));
            }
            copy[i] ^= 1 << bit;
        }
    }
    assert!(
        accepted.is_empty(),
        "{what}: {} of {} bit flips accepted, first at {:?}",
        accepted.len(),
        range.len() * 8,
        accepted.first()
    );
}

fn snp(rel: &str) {
    let f = fixture(rel);
    let anchors = TrustAnchors::builtin().unwrap();
    let inputs = Inputs {
        anchors: &anchors,
        now: f.now,
        insecure_allow_simulated_tee: false,
    };
    let collateral = f.collateral();
    let key = EndorsedKey::find(&collateral, &inputs).unwrap();
    key.verify_report(&f.evidence).unwrap();

    // The signed report (0x000..0x2A0) and the signature's r and s (0x2A0..0x330).
    sweep(&f.evidence, 0..0x330, "SNP report", |r| {
        key.verify_report(r).is_ok()
    });

    // The endorsing certificate, byte for byte as given.
    let vek = key.certificate().der().to_vec();
    let others: Vec<&Vec<u8>> = f.collateral_files.iter().filter(|c| **c != vek).collect();
    let verifier = f.verifier();
    sweep(&vek, 0..vek.len(), "VCEK/VLEK certificate", |cert| {
        let mut c = Collateral::new();
        if c.add(cert).is_err() {
            return false;
        }
        for o in &others {
            // Other files may be chains that include the genuine VEK; leave it out.
            let mut chain = Collateral::new();
            if chain.add(o).is_ok() {
                for cert in chain_certs(o) {
                    if cert != vek {
                        let _ = c.add(&cert);
                    }
                }
            }
        }
        verifier.verify(&f.evidence, &c, &inputs).is_ok()
    });

    truncations(&f, &collateral, &inputs, f.evidence.len());
}

/// The DER certificates in a collateral file (PEM or DER).
fn chain_certs(file: &[u8]) -> Vec<Vec<u8>> {
    match confide_attest::Certificate::from_pem_chain(file) {
        Ok(certs) if !certs.is_empty() => certs.iter().map(|c| c.der().to_vec()).collect(),
        _ => confide_attest::Certificate::from_der(file)
            .map(|c| vec![c.der().to_vec()])
            .unwrap_or_default(),
    }
}

fn truncations(f: &Fixture, collateral: &Collateral, inputs: &Inputs<'_>, end: usize) {
    let verifier = f.verifier();
    for len in 0..end {
        assert!(
            verifier
                .verify(&f.evidence[..len], collateral, inputs)
                .is_err(),
            "truncation to {len} bytes accepted"
        );
    }
}

fn dcap(rel: &str, sweep_pck_certificate: bool) {
    let f = fixture(rel);
    let anchors = TrustAnchors::builtin().unwrap();
    let inputs = Inputs {
        anchors: &anchors,
        now: f.now,
        insecure_allow_simulated_tee: false,
    };
    let collateral = f.collateral();
    let verifier = f.verifier();
    verifier.verify(&f.evidence, &collateral, &inputs).unwrap();
    let accepts = |q: &[u8]| verifier.verify(q, &collateral, &inputs).is_ok();

    // Everything before the PCK chain: header, body, quote signature, attestation key, QE
    // report and its signature, QE authentication data, and every length and type field.
    let pem_start = find(&f.evidence, b"-----BEGIN CERTIFICATE-----").unwrap();
    sweep(&f.evidence, 0..pem_start, "DCAP quote", accepts);

    if sweep_pck_certificate {
        // The PCK leaf certificate as the quote carries it (PEM).
        let pem_end =
            pem_start + find(&f.evidence[pem_start..], b"-----END CERTIFICATE-----").unwrap();
        sweep(&f.evidence, pem_start..pem_end, "PCK certificate", accepts);
    }

    let signed_len = usize::try_from(
        verifier
            .verify(&f.evidence, &collateral, &inputs)
            .unwrap()
            .details()["quote_signed_length"]
            .as_u64()
            .unwrap(),
    )
    .unwrap();
    let sig_len = u32::from_le_bytes(f.evidence[signed_len..signed_len + 4].try_into().unwrap());
    truncations(&f, &collateral, &inputs, signed_len + 4 + sig_len as usize);
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn snp_s1_vcek() {
    snp("snp/S1-trustee-milan-vcek");
}

#[test]
fn snp_s2_vlek() {
    snp("snp/S2-trustee-milan-vlek");
}

#[test]
fn snp_s3_debug() {
    snp("snp/S3-go-sev-guest-milan");
}

#[test]
fn snp_s4() {
    snp("snp/S4-virtee-milan");
}

#[test]
fn snp_s7_aci() {
    snp("snp/S7-aci-milan");
}

#[test]
fn tdx_t1_v4() {
    dcap("tdx/T1-dcap-qvl-v4", true);
}

#[test]
fn tdx_t2_v5() {
    dcap("tdx/T2-dcap-qvl-v5-tcb-not-supported", false);
}

#[test]
fn tdx_t4_raw_pcs() {
    dcap("tdx/T4-go-tdx-guest-spr-e4", false);
}

#[test]
fn tdx_t6_no_crls() {
    dcap("tdx/T6-go-tdx-qpl", false);
}

#[test]
fn sgx_g1_v3() {
    dcap("sgx/G1-dcap-qvl", true);
}

#[test]
fn sgx_g4_raw_pcs() {
    dcap("sgx/G4-automata", false);
}

/// The evidence file of a case: named by the case, or the file whose role is evidence.
fn evidence_name(case: &Value) -> &str {
    case["cases"][0]["evidence"].as_str().unwrap_or_else(|| {
        case["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["role"].as_str().unwrap().starts_with("evidence"))
            .and_then(|f| f["name"].as_str())
            .unwrap()
    })
}

#[test]
fn nvidia_n1_hopper() {
    let f = fixture("nvidia/N1-nvtrust-hopper");
    let anchors = TrustAnchors::builtin().unwrap();
    let inputs = Inputs {
        anchors: &anchors,
        now: f.now,
        insecure_allow_simulated_tee: false,
    };
    let collateral = f.collateral();
    let verifier = f.verifier();
    let claims = verifier.verify(&f.evidence, &collateral, &inputs).unwrap();
    let signed = usize::try_from(claims.details()["signed_length"].as_u64().unwrap()).unwrap();

    // The whole signed transcript and its signature.
    sweep(&f.evidence, 0..signed + 96, "SPDM transcript", |t| {
        verifier.verify(t, &collateral, &inputs).is_ok()
    });

    // The attestation key's certificate.
    let chain = chain_certs(&f.collateral_files[0]);
    sweep(
        &chain[0],
        0..chain[0].len(),
        "GPU attestation certificate",
        |leaf| {
            let mut c = Collateral::new();
            if c.add(leaf).is_err() {
                return false;
            }
            for cert in &chain[1..] {
                c.add(cert).unwrap();
            }
            verifier.verify(&f.evidence, &c, &inputs).is_ok()
        },
    );

    truncations(&f, &collateral, &inputs, signed + 96);
}

/// Azure vTPM evidence built from the case's separate files, as Trustee's v1 JSON, with
/// `edit` applied to the HCL report, the TPM quote message or the TPM signature.
fn azure_evidence(dir: &Path, part: &str, at: usize, bit: u8) -> Vec<u8> {
    use base64::Engine as _;
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let mut hcl = read("hcl-report.bin");
    let tpm: Value = serde_json::from_slice(&read("tpm-quote-v1.json")).unwrap();
    let mut message = hex::decode(tpm["message"].as_str().unwrap()).unwrap();
    let mut signature = hex::decode(tpm["signature"].as_str().unwrap()).unwrap();
    let mut td_quote = std::fs::read(dir.join("td-quote.bin")).ok();
    match part {
        "hcl" => hcl[at] ^= 1 << bit,
        "message" => message[at] ^= 1 << bit,
        "signature" => signature[at] ^= 1 << bit,
        "td_quote" => td_quote.as_mut().unwrap()[at] ^= 1 << bit,
        _ => {}
    }
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let mut doc = serde_json::json!({
        "version": 1,
        "hcl_report": b64(&hcl),
        "tpm_quote": {"message": hex::encode(&message), "signature": hex::encode(&signature), "pcrs": tpm["pcrs"]},
    });
    if let Some(q) = td_quote {
        doc["td_quote"] = Value::from(b64(&q));
    }
    serde_json::to_vec(&doc).unwrap()
}

fn azure(rel: &str, hardware_signed: std::ops::Range<usize>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/attestation")
        .join(rel);
    let case: Value =
        serde_json::from_slice(&std::fs::read(dir.join("case.json")).unwrap()).unwrap();
    let now = UnixTime::from_secs(case["verification_time"]["unix"].as_i64().unwrap());
    let anchors = TrustAnchors::builtin().unwrap();
    let inputs = Inputs {
        anchors: &anchors,
        now,
        insecure_allow_simulated_tee: false,
    };
    let mut collateral = Collateral::new();
    if dir.join("vcek.pem").exists() {
        collateral
            .add(&std::fs::read(dir.join("vcek.pem")).unwrap())
            .unwrap();
    }
    let genuine = azure_evidence(&dir, "", 0, 0);
    let verifier = confide_attest::detect(&genuine).unwrap();
    let claims = verifier.verify(&genuine, &collateral, &inputs).unwrap();
    let var_len = claims.details()["hcl"]["var_data_len"].as_u64().unwrap() as usize;
    let tpm: Value =
        serde_json::from_slice(&std::fs::read(dir.join("tpm-quote-v1.json")).unwrap()).unwrap();
    let message_len = tpm["message"].as_str().unwrap().len() / 2;
    let signature_len = tpm["signature"].as_str().unwrap().len() / 2;
    let mut accepted = Vec::new();
    let mut parts: Vec<(&str, std::ops::Range<usize>)> = vec![
        ("hcl", 1236..1236 + var_len),
        ("message", 0..message_len),
        ("signature", 0..signature_len),
    ];
    if dir.join("td-quote.bin").exists() {
        parts.push(("td_quote", hardware_signed));
    } else {
        parts.push(("hcl", 32 + hardware_signed.start..32 + hardware_signed.end));
    }
    let mut flips = 0;
    for (part, range) in parts {
        for at in range {
            for bit in 0..8 {
                flips += 1;
                let evidence = azure_evidence(&dir, part, at, bit);
                if verifier.verify(&evidence, &collateral, &inputs).is_ok() {
                    accepted.push((part, at, bit));
                }
            }
        }
    }
    assert!(
        accepted.is_empty(),
        "{} of {flips} flips accepted: {:?}",
        accepted.len(),
        &accepted[..accepted.len().min(5)]
    );
}

#[test]
fn azure_snp_vtpm() {
    // The SNP report's signed bytes and signature inside the HCL report.
    azure("azure-snp-vtpm", 0..0x330);
}

#[test]
fn azure_tdx_vtpm() {
    // The TD quote's header, body, signature, QE report and binding (before its PCK chain).
    let quote = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/attestation/azure-tdx-vtpm/td-quote.bin"),
    )
    .unwrap();
    let pem = find(&quote, b"-----BEGIN").unwrap();
    azure("azure-tdx-vtpm", 0..pem);
}

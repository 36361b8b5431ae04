//! NVIDIA Hopper GPUs: an SPDM 1.1 GET_MEASUREMENTS transcript signed by the GPU's attestation
//! key, whose certificate chains to the NVIDIA Device Identity CA (pinned by key).
//!
//! The transcript is the 37-byte request (version 0x11, code 0xE0, attributes with "signature
//! requested", operation 0xFF for every block, the requester's 32-byte nonce, slot id)
//! followed by the MEASUREMENTS response (DSP0274 1.1, 10.11), parsed field by field: header,
//! measurement record of DMTF blocks, responder nonce, opaque data, and a 96-byte ECDSA
//! P-384/SHA-384 signature over every byte before it. Parsing is structural because real
//! transcripts may carry bytes after the signature. NVIDIA's opaque data is a list of
//! (type u16, length u16, value) fields: driver and VBIOS versions, SKU, project and, on newer
//! drivers, the FWID that must equal the one in the attestation key's certificate (TCG DICE
//! TcbInfo extension, 2.23.133.5.4.1).
//!
//! The nonce a caller challenges with is the *requester* nonce; it is the claims' report data.
//! Comparing the measurements with NVIDIA's signed reference manifests (RIMs) is appraisal,
//! outside this module.

use std::collections::BTreeMap;

use confide_crypto::digest::sha256;
use confide_crypto::verify::Scheme;
use serde_json::{Value, json};

use crate::claims::{Hex, Tcb, TeeKind, VerifiedClaims};
use crate::der::{Reader, TAG_OCTET_STRING};
use crate::roots::{NVIDIA_ROOT_SPKI, pinned};
use crate::x509::{Certificate, KeyKind};
use crate::{AttestError, Collateral, Inputs, Verifier};

const REQUEST_LEN: usize = 37;
const SIGNATURE_LEN: usize = 96;
const OID_DICE_TCB_INFO: &str = "2.23.133.5.4.1";
const MAX_CHAIN: usize = 8;

/// A parsed transcript, borrowing the input.
struct Transcript<'a> {
    nonce: &'a [u8],
    param1: u8,
    param2: u8,
    slot_id: u8,
    blocks: BTreeMap<u8, &'a [u8]>,
    number_of_blocks: u8,
    responder_nonce: &'a [u8],
    opaque: Vec<(u16, &'a [u8])>,
    signed: &'a [u8],
    signature: &'a [u8],
    trailing: &'a [u8],
}

fn take<'a>(data: &'a [u8], at: &mut usize, n: usize, what: &str) -> Result<&'a [u8], AttestError> {
    let end = at
        .checked_add(n)
        .filter(|&e| e <= data.len())
        .ok_or_else(|| {
            AttestError::malformed(format!("SPDM transcript: {what} ends past the data"))
        })?;
    let out = &data[*at..end];
    *at = end;
    Ok(out)
}

fn le(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .rev()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
}

impl<'a> Transcript<'a> {
    fn parse(data: &'a [u8]) -> Result<Self, AttestError> {
        let mut at = 0;
        let req = take(data, &mut at, REQUEST_LEN, "GET_MEASUREMENTS request")?;
        if req[0] != 0x11 || req[1] != 0xe0 {
            return Err(AttestError::unsupported(format!(
                "SPDM request version {:#04x} code {:#04x} (expected 1.1 GET_MEASUREMENTS)",
                req[0], req[1]
            )));
        }
        if req[2] & 1 == 0 {
            return Err(AttestError::malformed(
                "SPDM request did not ask for a signature",
            ));
        }
        let header = take(data, &mut at, 8, "MEASUREMENTS header")?;
        if header[0] != 0x11 || header[1] != 0x60 {
            return Err(AttestError::unsupported(format!(
                "SPDM response version {:#04x} code {:#04x} (expected 1.1 MEASUREMENTS)",
                header[0], header[1]
            )));
        }
        let number_of_blocks = header[4];
        let record = take(data, &mut at, le(&header[5..8]), "measurement record")?;
        let mut blocks = BTreeMap::new();
        let mut r = 0;
        for _ in 0..number_of_blocks {
            let head = take(record, &mut r, 4, "measurement block header")?;
            let block = take(record, &mut r, le(&head[2..4]), "measurement block")?;
            if head[1] != 0x01 {
                return Err(AttestError::unsupported(format!(
                    "measurement block {} in specification {:#x} (only DMTF)",
                    head[0], head[1]
                )));
            }
            let mut b = 0;
            let value_head = take(block, &mut b, 3, "DMTF measurement header")?;
            let value = take(block, &mut b, le(&value_head[1..3]), "DMTF measurement")?;
            if b != block.len() || blocks.insert(head[0], value).is_some() {
                return Err(AttestError::malformed(format!(
                    "measurement block {} (size or duplicate index)",
                    head[0]
                )));
            }
        }
        if r != record.len() {
            return Err(AttestError::malformed(
                "measurement record longer than its blocks",
            ));
        }
        let responder_nonce = take(data, &mut at, 32, "responder nonce")?;
        let opaque_len = le(take(data, &mut at, 2, "opaque data length")?);
        let opaque_data = take(data, &mut at, opaque_len, "opaque data")?;
        let mut opaque = Vec::new();
        let mut o = 0;
        while o < opaque_data.len() {
            let head = take(opaque_data, &mut o, 4, "opaque field header")?;
            let ty = u16::try_from(le(&head[0..2])).unwrap_or(u16::MAX);
            opaque.push((
                ty,
                take(opaque_data, &mut o, le(&head[2..4]), "opaque field")?,
            ));
        }
        let signed = &data[..at];
        let signature = take(data, &mut at, SIGNATURE_LEN, "signature")?;
        Ok(Self {
            nonce: &req[4..36],
            param1: req[2],
            param2: req[3],
            slot_id: req[36],
            blocks,
            number_of_blocks,
            responder_nonce,
            opaque,
            signed,
            signature,
            trailing: &data[at..],
        })
    }

    fn field(&self, ty: u16) -> Option<&'a [u8]> {
        self.opaque.iter().find(|(t, _)| *t == ty).map(|(_, v)| *v)
    }

    fn text(&self, ty: u16) -> Option<String> {
        self.field(ty).map(|v| {
            let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
            String::from_utf8_lossy(&v[..end]).into_owned()
        })
    }
}

/// The FWID in a TCG DICE TcbInfo extension: the first 48-byte OCTET STRING inside it.
fn dice_fwid(cert: &Certificate) -> Option<Vec<u8>> {
    fn walk(data: &[u8], depth: usize) -> Option<Vec<u8>> {
        let mut r = Reader::new(data);
        while !r.is_empty() {
            let tlv = r.next().ok()?;
            if tlv.tag == TAG_OCTET_STRING && tlv.value.len() == 48 {
                return Some(tlv.value.to_vec());
            }
            if tlv.tag & 0x20 != 0
                && depth < 6
                && let Some(found) = walk(tlv.value, depth + 1)
            {
                return Some(found);
            }
        }
        None
    }
    walk(cert.extension(OID_DICE_TCB_INFO)?, 0)
}

/// The NVIDIA GPU verifier.
#[derive(Debug, Clone, Copy, Default)]
pub struct NvidiaVerifier;

impl Verifier for NvidiaVerifier {
    fn kind(&self) -> TeeKind {
        TeeKind::NvidiaGpu
    }

    fn recognises(&self, evidence: &[u8]) -> bool {
        Transcript::parse(evidence).is_ok()
    }

    fn verify(
        &self,
        evidence: &[u8],
        collateral: &Collateral,
        inputs: &Inputs<'_>,
    ) -> Result<VerifiedClaims, AttestError> {
        let t = Transcript::parse(evidence)?;
        let root =
            inputs
                .anchors
                .nvidia_root
                .as_ref()
                .ok_or_else(|| AttestError::UntrustedRoot {
                    what: "no NVIDIA root is trusted".into(),
                })?;
        // The attestation key: the certificate whose key signed the transcript.
        let leaf = collateral
            .certificates
            .iter()
            .filter(|c| c.key_kind() == KeyKind::P384)
            .find(|c| {
                c.verify_signature(Scheme::EcdsaP384Sha384Fixed, t.signed, t.signature, "")
                    .is_ok()
            })
            .ok_or_else(|| {
                if collateral.certificates.is_empty() {
                    AttestError::missing("the GPU's attestation certificate chain")
                } else {
                    AttestError::signature("SPDM transcript signed by the GPU attestation key")
                }
            })?;
        // Up the chain by issuer to a certificate the pinned root signed.
        let mut chain = vec![leaf];
        loop {
            let last = chain[chain.len() - 1];
            if last
                .check_signed_by(root, "NVIDIA Device Identity CA")
                .is_ok()
            {
                break;
            }
            if chain.len() >= MAX_CHAIN {
                return Err(AttestError::UntrustedRoot {
                    what: "the GPU certificate chain does not reach the NVIDIA root".into(),
                });
            }
            let issuer = collateral
                .certificates
                .iter()
                .filter(|c| !c.is_self_issued())
                .find(|c| last.check_signed_by(c, "").is_ok())
                .ok_or_else(|| AttestError::UntrustedRoot {
                    what: format!(
                        "no issuer of {:?} leads to the NVIDIA Device Identity CA",
                        last.common_name()
                    ),
                })?;
            chain.push(issuer);
        }
        pinned(root, NVIDIA_ROOT_SPKI, "NVIDIA Device Identity CA")?;
        root.check_valid_at(inputs.now, "NVIDIA Device Identity CA certificate")?;
        for cert in &chain {
            cert.check_valid_at(
                inputs.now,
                &format!("GPU certificate {:?}", cert.common_name()),
            )?;
        }
        let cert_fwid = dice_fwid(leaf);
        let fwid = t.field(20);
        if let Some(reported) = fwid
            && cert_fwid.as_deref() != Some(reported)
        {
            return Err(AttestError::mismatch(
                "the FWID in the opaque data differs from the attestation certificate's",
            ));
        }
        // The architecture, from the device's certificate names (GH100 is Hopper).
        let arch = chain
            .iter()
            .any(|c| c.common_name().contains("GH100"))
            .then_some("HOPPER");
        Ok(claims(&t, cert_fwid, chain.len() + 1, arch))
    }
}

fn claims(
    t: &Transcript<'_>,
    cert_fwid: Option<Vec<u8>>,
    chain_len: usize,
    arch: Option<&str>,
) -> VerifiedClaims {
    let vbios = t.field(6).filter(|v| v.len() >= 5).map(|v| {
        format!(
            "{:02x}.{:02x}.{:02x}.{:02x}.{:02x}",
            v[3], v[2], v[1], v[0], v[4]
        )
    });
    let measurements: BTreeMap<String, Value> = t
        .blocks
        .iter()
        .map(|(i, v)| (i.to_string(), Value::from(hex::encode(v))))
        .collect();
    let concatenated: Vec<u8> = t.blocks.values().flat_map(|v| v.iter().copied()).collect();
    let details = json!({
        "nonce": hex::encode(t.nonce),
        "responder_nonce": hex::encode(t.responder_nonce),
        "request_param1_signature_requested": t.param1 & 1,
        "request_param2_measurement_op": t.param2,
        "slot_id": t.slot_id,
        "number_of_blocks": t.number_of_blocks,
        "driver_version": t.text(3),
        "vbios_version": vbios,
        "project": t.text(17),
        "project_sku": t.text(18),
        "chip_sku": t.text(15),
        "fwid": t.field(20).map(hex::encode),
        "protected_pcie_status": t.field(21).map(|v| String::from_utf8_lossy(v).into_owned()),
        "measurements": measurements,
        "measurements_sha256": hex::encode(sha256(&concatenated)),
        "signed_length": t.signed.len(),
        "total_length": t.signed.len() + SIGNATURE_LEN,
        "trailing_bytes_after_signature": hex::encode(t.trailing),
        "cert_chain_length": chain_len,
        "arch": arch,
        "fwid_from_leaf_cert": cert_fwid.map(hex::encode),
        "opaque_fields": t.opaque.iter().map(|(ty, v)| json!({"type": ty, "value": hex::encode(v)})).collect::<Vec<_>>(),
    });
    let mut named = BTreeMap::new();
    named.insert("measurements_sha256", Hex(sha256(&concatenated).to_vec()));
    VerifiedClaims {
        kind: TeeKind::NvidiaGpu,
        simulated: false,
        debug: false,
        measurements: named,
        report_data: Hex::from(t.nonce),
        host_data: None,
        platform_id: None,
        tcb: Tcb {
            status: None,
            advisory_ids: Vec::new(),
            svns: BTreeMap::new(),
        },
        details,
        report: Hex::from(t.signed),
    }
}

//! Intel DCAP: TDX quotes (v4, v5) and SGX quotes (v3), verified by the full algorithm.
//!
//! 1. The quote is parsed by its length fields ([`quote`]).
//! 2. The PCK chain in the quote must end at the Intel SGX Root CA, pinned by key; each link's
//!    signature and validity are checked, and, where CRLs are given, the root CA's CRL and the
//!    PCK CA's CRL (Processor or Platform, by issuer) must be current and not list the chain.
//! 3. The attestation key signs header ‖ body; the PCK leaf signs the QE report; the QE report
//!    data binds the attestation key: `SHA-256(key ‖ QE auth data) ‖ 0³²`.
//! 4. TCB info and QE identity are checked over their exact signed bytes with the TCB signing
//!    key (which must chain to the pinned root), inside their issueDate..nextUpdate window, and
//!    must be for this FMSPC, PCE and TEE.
//! 5. The QE must match its identity; the platform's TCB (PCK certificate SVNs, and TEE_TCB_SVN
//!    for TDX) is matched against the TCB levels; the TDX module against its identity; the
//!    three statuses converge into one with the advisories of each ([`tcb`]).
//!
//! Revocation is checked when the CRLs are given; when they are not, the claims say so
//! (`details.revocation_checked`), so that a policy can require it.

mod quote;
mod tcb;

use std::collections::BTreeMap;

use confide_crypto::digest::sha256;
use confide_crypto::verify::Scheme;
use serde_json::{Value, json};

use crate::claims::{Hex, Tcb, TeeKind, VerifiedClaims};
use crate::collateral::SignedJson;
use crate::der::{self, Reader};
use crate::roots::{INTEL_ROOT_SPKI, pinned};
use crate::x509::{Certificate, Crl, KeyKind};
use crate::{AttestError, Collateral, Inputs, ReasonCode, TcbStatus, UnixTime, Verifier};

use quote::{BodyType, Quote, SgxReport, TdReport};
use tcb::{PlatformTcb, QeIdentity, TcbInfo};

const OID_SGX_EXTENSIONS: &str = "1.2.840.113741.1.13.1";
const TCB_SIGNING_CN: &str = "Intel SGX TCB Signing";
const PCK_LEAF_CN: &str = "Intel SGX PCK Certificate";

/// The TDX verifier.
#[derive(Debug, Clone, Copy, Default)]
pub struct TdxVerifier;

/// The SGX verifier.
#[derive(Debug, Clone, Copy, Default)]
pub struct SgxVerifier;

impl Verifier for TdxVerifier {
    fn kind(&self) -> TeeKind {
        TeeKind::Tdx
    }

    fn recognises(&self, evidence: &[u8]) -> bool {
        Quote::parse(evidence).is_ok_and(|q| q.body_type != BodyType::Sgx)
    }

    fn verify(
        &self,
        evidence: &[u8],
        collateral: &Collateral,
        inputs: &Inputs<'_>,
    ) -> Result<VerifiedClaims, AttestError> {
        verify_quote(evidence, TeeKind::Tdx, collateral, inputs)
    }
}

impl Verifier for SgxVerifier {
    fn kind(&self) -> TeeKind {
        TeeKind::Sgx
    }

    fn recognises(&self, evidence: &[u8]) -> bool {
        Quote::parse(evidence).is_ok_and(|q| q.body_type == BodyType::Sgx)
    }

    fn verify(
        &self,
        evidence: &[u8],
        collateral: &Collateral,
        inputs: &Inputs<'_>,
    ) -> Result<VerifiedClaims, AttestError> {
        verify_quote(evidence, TeeKind::Sgx, collateral, inputs)
    }
}

/// What the PCK certificate's SGX extension says about the platform.
#[derive(Debug, Clone, Default)]
struct PckInfo {
    fmspc: Vec<u8>,
    pce_id: Vec<u8>,
    components: [u8; 16],
    pce_svn: u16,
    cpu_svn: Vec<u8>,
    sgx_type: Option<u64>,
}

impl PckInfo {
    fn parse(cert: &Certificate) -> Result<Self, AttestError> {
        let ext = cert
            .extension(OID_SGX_EXTENSIONS)
            .ok_or_else(|| AttestError::malformed("PCK certificate without the SGX extension"))?;
        let what = "PCK SGX extension";
        let mut info = Self::default();
        let mut found = (false, false, false, false);
        let mut outer = Reader::new(ext);
        let mut items = Reader::new(outer.expect(der::TAG_SEQUENCE, what)?);
        while !items.is_empty() {
            let mut item = Reader::new(items.expect(der::TAG_SEQUENCE, what)?);
            let oid = der::oid_string(item.expect(der::TAG_OID, what)?)?;
            let value = item.next()?;
            match oid.strip_prefix(OID_SGX_EXTENSIONS) {
                Some(".2") => {
                    let mut tcb = Reader::new(value.value);
                    while !tcb.is_empty() {
                        let mut comp = Reader::new(tcb.expect(der::TAG_SEQUENCE, what)?);
                        let oid = der::oid_string(comp.expect(der::TAG_OID, what)?)?;
                        let v = comp.next()?;
                        let suffix = oid.rsplit('.').next().unwrap_or_default();
                        match suffix.parse::<usize>() {
                            Ok(n @ 1..=16) => {
                                let svn = der::unsigned(v.value, "PCK TCB component")?;
                                info.components[n - 1] = u8::try_from(svn).map_err(|_| {
                                    AttestError::malformed("PCK TCB component above 255")
                                })?;
                            }
                            Ok(17) => {
                                let svn = der::unsigned(v.value, "PCK PCESVN")?;
                                info.pce_svn = u16::try_from(svn)
                                    .map_err(|_| AttestError::malformed("PCK PCESVN"))?;
                                found.0 = true;
                            }
                            Ok(18) => info.cpu_svn = v.value.to_vec(),
                            _ => {}
                        }
                    }
                }
                Some(".3") => {
                    info.pce_id = value.value.to_vec();
                    found.1 = true;
                }
                Some(".4") => {
                    info.fmspc = value.value.to_vec();
                    found.2 = true;
                }
                Some(".5") => {
                    info.sgx_type = Some(der::unsigned(value.value, "PCK SGX type")?);
                    found.3 = true;
                }
                _ => {}
            }
        }
        if !(found.0 && found.1 && found.2) || info.fmspc.len() != 6 || info.pce_id.len() != 2 {
            return Err(AttestError::malformed(
                "PCK SGX extension: missing or malformed PCESVN, PCE-ID or FMSPC",
            ));
        }
        Ok(info)
    }
}

/// The PCK chain of a quote, checked up to the pinned root.
struct PckChain {
    leaf: Certificate,
    intermediate: Certificate,
}

fn check_pck_chain(
    pem: &[u8],
    collateral: &Collateral,
    inputs: &Inputs<'_>,
    revocation: &mut BTreeMap<&'static str, bool>,
) -> Result<PckChain, AttestError> {
    let certs = Certificate::from_pem_chain(pem)?;
    let [leaf, intermediate, root]: [Certificate; 3] = certs.try_into().map_err(|v: Vec<_>| {
        AttestError::malformed(format!(
            "PCK chain in the quote has {} certificates, expected leaf, CA and root",
            v.len()
        ))
    })?;
    if inputs.anchors.intel_root.is_none() {
        return Err(AttestError::UntrustedRoot {
            what: "no Intel root is trusted".into(),
        });
    }
    pinned(
        &root,
        INTEL_ROOT_SPKI,
        "PCK chain root is not the Intel SGX Root CA key",
    )?;
    if leaf.common_name() != PCK_LEAF_CN || ca_type(&intermediate) == "unknown" {
        return Err(AttestError::mismatch(format!(
            "PCK chain names {:?} issued by {:?}, not an Intel SGX PCK certificate and CA",
            leaf.common_name(),
            intermediate.common_name()
        )));
    }
    root.check_signed_by(&root, "Intel root self-signature")?;
    intermediate.check_signed_by(&root, "PCK CA signed by the Intel root")?;
    leaf.check_signed_by(&intermediate, "PCK certificate signed by the PCK CA")?;
    root.check_valid_at(inputs.now, "Intel SGX Root CA certificate")?;
    intermediate.check_valid_at(inputs.now, "PCK CA certificate")?;
    leaf.check_valid_at(inputs.now, "PCK certificate")?;
    let root_crl = find_crl(collateral, &root);
    if let Some(crl) = root_crl {
        crl.check(&root, inputs.now, "Intel root CA CRL")?;
        crl.check_not_revoked(&intermediate, "the PCK CA is on the root CA CRL")?;
    }
    revocation.insert("root_ca_crl", root_crl.is_some());
    let pck_crl = find_crl(collateral, &intermediate);
    if let Some(crl) = pck_crl {
        crl.check(&intermediate, inputs.now, "PCK CRL")?;
        crl.check_not_revoked(&leaf, "the PCK certificate is on the PCK CRL")?;
    }
    revocation.insert("pck_crl", pck_crl.is_some());
    Ok(PckChain { leaf, intermediate })
}

fn find_crl<'c>(collateral: &'c Collateral, issuer: &Certificate) -> Option<&'c Crl> {
    collateral.crls.iter().find(|c| c.is_issued_by(issuer))
}

/// Checks Intel-signed JSON: a certificate in the collateral, signed by the pinned root, valid
/// now and not on the root's CRL, must have signed exactly these bytes.
fn check_signed_json(
    json: &SignedJson,
    what: &str,
    root: &Certificate,
    collateral: &Collateral,
    now: UnixTime,
) -> Result<(), AttestError> {
    // Intel signs TCB info and QE identity with the "Intel SGX TCB Signing" key only.
    let mut signers = collateral.certificates.iter().filter(|c| {
        c.key_kind() == KeyKind::P256
            && c.common_name() == TCB_SIGNING_CN
            && c.verify_signature(
                Scheme::EcdsaP256Sha256Fixed,
                &json.signed,
                &json.signature,
                what,
            )
            .is_ok()
    });
    let Some(signer) = signers.next() else {
        let any_signing_cert = collateral
            .certificates
            .iter()
            .any(|c| c.common_name() == TCB_SIGNING_CN);
        return Err(if any_signing_cert {
            AttestError::signature(format!("{what} signed by the TCB signing key"))
        } else {
            AttestError::missing(format!("the TCB signing certificate for the {what}"))
        });
    };
    signer.check_signed_by(
        root,
        &format!("{what} signing certificate signed by the Intel root"),
    )?;
    signer.check_valid_at(now, &format!("{what} signing certificate"))?;
    if let Some(crl) = find_crl(collateral, root) {
        crl.check_not_revoked(
            signer,
            &format!("the {what} signing certificate is revoked"),
        )?;
    }
    Ok(())
}

fn verify_quote(
    evidence: &[u8],
    expected: TeeKind,
    collateral: &Collateral,
    inputs: &Inputs<'_>,
) -> Result<VerifiedClaims, AttestError> {
    let kind = Quote::parse(evidence)?.body_type.tee_kind();
    if kind != expected {
        return Err(AttestError::mismatch(format!(
            "a {kind} quote was given to the {expected} verifier"
        )));
    }
    PreparedCollateral::new(kind, collateral, inputs)?.verify(evidence)
}

/// A PCK chain verified once, with what its leaf says about the platform.
#[derive(Debug)]
struct CheckedPck {
    leaf: Certificate,
    pck_ca: &'static str,
    info: PckInfo,
    revocation: BTreeMap<&'static str, bool>,
}

/// Collateral for one TEE kind, checked once at one time: the TCB info and QE identity
/// signatures, windows and kinds, and (memoised) the PCK chain of the last platform seen. The
/// per-quote work is then the quote and QE report signatures and the TCB evaluation; keep one
/// while the collateral is current.
#[derive(Debug)]
pub struct PreparedCollateral<'c> {
    kind: TeeKind,
    collateral: &'c Collateral,
    inputs: Inputs<'c>,
    info: TcbInfo,
    identity: QeIdentity,
    pck: std::sync::Mutex<Option<(Vec<u8>, std::sync::Arc<CheckedPck>)>>,
}

impl<'c> PreparedCollateral<'c> {
    /// Checks the TCB info and QE identity in `collateral` for quotes of `kind`.
    pub fn new(
        kind: TeeKind,
        collateral: &'c Collateral,
        inputs: &Inputs<'c>,
    ) -> Result<Self, AttestError> {
        let root =
            inputs
                .anchors
                .intel_root
                .as_ref()
                .ok_or_else(|| AttestError::UntrustedRoot {
                    what: "no Intel root is trusted".into(),
                })?;
        let tcb_json = collateral
            .tcb_info
            .as_ref()
            .ok_or_else(|| AttestError::missing("Intel TCB info for this platform's FMSPC"))?;
        let qe_json = collateral
            .qe_identity
            .as_ref()
            .ok_or_else(|| AttestError::missing("Intel QE identity"))?;
        check_signed_json(tcb_json, "TCB info", root, collateral, inputs.now)?;
        check_signed_json(qe_json, "QE identity", root, collateral, inputs.now)?;
        let info: TcbInfo = serde_json::from_slice(&tcb_json.signed)
            .map_err(|e| AttestError::malformed(format!("TCB info JSON ({e})")))?;
        let identity: QeIdentity = serde_json::from_slice(&qe_json.signed)
            .map_err(|e| AttestError::malformed(format!("QE identity JSON ({e})")))?;
        tcb::check_window("TCB info", &info.issue_date, &info.next_update, inputs.now)?;
        tcb::check_window(
            "QE identity",
            &identity.issue_date,
            &identity.next_update,
            inputs.now,
        )?;
        let (info_id, qe_id) = match kind {
            TeeKind::Tdx => ("TDX", "TD_QE"),
            _ => ("SGX", "QE"),
        };
        let info_kind_ok = match info.id.as_deref() {
            Some(id) => id == info_id,
            None => kind == TeeKind::Sgx, // TCB info v2 has no id and is SGX only
        };
        if !info_kind_ok || (kind == TeeKind::Tdx && info.version < 3) {
            return Err(AttestError::mismatch(format!(
                "TCB info is for {:?} v{}, the quote is {kind}",
                info.id, info.version
            )));
        }
        if identity.id != qe_id || identity.version != 2 {
            return Err(AttestError::mismatch(format!(
                "QE identity is {} v{}, expected {qe_id} v2",
                identity.id, identity.version
            )));
        }
        Ok(Self {
            kind,
            collateral,
            inputs: *inputs,
            info,
            identity,
            pck: std::sync::Mutex::new(None),
        })
    }

    /// The PCK chain carried in a quote, checked (or found already checked).
    fn pck(&self, pem: &[u8]) -> Result<std::sync::Arc<CheckedPck>, AttestError> {
        if let Ok(memo) = self.pck.lock()
            && let Some((known, checked)) = memo.as_ref()
            && known.as_slice() == pem
        {
            return Ok(checked.clone());
        }
        let mut revocation = BTreeMap::new();
        let chain = check_pck_chain(pem, self.collateral, &self.inputs, &mut revocation)?;
        let info = PckInfo::parse(&chain.leaf)?;
        let checked = std::sync::Arc::new(CheckedPck {
            pck_ca: ca_type(&chain.intermediate),
            leaf: chain.leaf,
            info,
            revocation,
        });
        if let Ok(mut memo) = self.pck.lock() {
            *memo = Some((pem.to_vec(), checked.clone()));
        }
        Ok(checked)
    }

    /// Verifies one quote against the prepared collateral.
    pub fn verify(&self, evidence: &[u8]) -> Result<VerifiedClaims, AttestError> {
        let q = Quote::parse(evidence)?;
        let kind = q.body_type.tee_kind();
        if kind != self.kind {
            return Err(AttestError::mismatch(format!(
                "a {kind} quote against {} collateral",
                self.kind
            )));
        }
        let pck = self.pck(q.pck_chain_pem)?;
        authenticate(&q, &pck)?;
        let appraisal = self.appraise(&q, &pck)?;
        Ok(claims(&q, &pck, Some(appraisal)))
    }

    /// Appraises an authentic quote's TCB: the platform against the TCB levels, the TDX module
    /// against its identity, the QE against its identity, and the converged status.
    fn appraise(&self, q: &Quote<'_>, checked: &CheckedPck) -> Result<Appraisal, AttestError> {
        let (info, identity, pck) = (&self.info, &self.identity, &checked.info);
        if !info.fmspc.eq_ignore_ascii_case(&hex::encode(&pck.fmspc)) {
            return Err(AttestError::mismatch(format!(
                "TCB info is for FMSPC {}, the PCK certificate's is {}",
                info.fmspc,
                hex::encode_upper(&pck.fmspc)
            )));
        }
        if !info.pce_id.eq_ignore_ascii_case(&hex::encode(&pck.pce_id)) {
            return Err(AttestError::mismatch(
                "TCB info PCE-ID differs from the PCK certificate's",
            ));
        }

        // The quoting enclave.
        let qe = SgxReport(q.qe_report);
        if tcb::decode_hex(&identity.mrsigner, "QE identity mrsigner")? != qe.mr_signer() {
            return Err(AttestError::mismatch(
                "QE MRSIGNER differs from the QE identity",
            ));
        }
        if identity.isvprodid != qe.isv_prod_id() {
            return Err(AttestError::mismatch(
                "QE ISVPRODID differs from the QE identity",
            ));
        }
        if !tcb::masked_equal(
            &qe.misc_select().to_le_bytes(),
            &identity.miscselect,
            &identity.miscselect_mask,
            "QE MISCSELECT",
        )? {
            return Err(AttestError::mismatch(
                "QE MISCSELECT differs from the QE identity",
            ));
        }
        if !tcb::masked_equal(
            qe.attributes(),
            &identity.attributes,
            &identity.attributes_mask,
            "QE ATTRIBUTES",
        )? {
            return Err(AttestError::mismatch(
                "QE ATTRIBUTES differ from the QE identity",
            ));
        }
        let qe_level = identity
            .tcb_levels
            .iter()
            .find(|l| l.tcb.isvsvn <= qe.isv_svn())
            .ok_or_else(|| AttestError::TcbUnknown {
                what: format!(
                    "QE ISVSVN {} matches no level of the QE identity",
                    qe.isv_svn()
                ),
                code: ReasonCode::QeTcbNotSupported,
            })?;
        let qe_status = tcb::parse_status(&qe_level.tcb_status, "QE identity level")?;

        // The platform, the TDX module, and the converged status.
        let td = (q.body_type != BodyType::Sgx).then_some(TdReport(q.body));
        let platform = PlatformTcb {
            sgx_components: pck.components,
            pce_svn: pck.pce_svn,
            tdx_components: td.map(|t| t.tee_tcb_svn()),
        };
        let matched = tcb::match_platform(info, &platform)?;
        let module = match td {
            Some(t) if matched.is_some() => Some(tcb::appraise_module(
                info,
                t.tee_tcb_svn(),
                t.mr_signer_seam(),
                t.seam_attributes(),
            )?),
            _ => None,
        };
        let (status, advisory_ids) = match &matched {
            None => (TcbStatus::NotSupported, Vec::new()),
            Some(m) => {
                let mut status = m.status;
                let mut advisories = m.advisory_ids.clone();
                if let Some(mm) = module.as_ref().and_then(|m| m.matched.as_ref()) {
                    status = tcb::converge(status, mm.status);
                    push_unique(&mut advisories, &mm.advisory_ids);
                }
                status = tcb::converge(status, qe_status);
                push_unique(&mut advisories, &qe_level.advisory_ids);
                (status, advisories)
            }
        };
        let details = json!({
            "tcb_status": status.as_str(),
            "advisory_ids": advisory_ids.clone(),
            "platform_tcb_status": matched.as_ref().map_or(TcbStatus::NotSupported, |m| m.status).as_str(),
            "matched_tcb_level": matched.as_ref().map(|m| json!({
                "tcbDate": m.tcb_date, "tcbStatus": m.status.as_str(), "advisoryIDs": m.advisory_ids,
            })),
            "qe_tcb_status": qe_status.as_str(),
            "qe_advisory_ids": qe_level.advisory_ids.clone(),
            "tdx_module_identity": module.as_ref().and_then(|m| Some(json!({
                "id": m.id.clone(),
                "status": m.matched.as_ref()?.status.as_str(),
                "advisoryIDs": m.matched.as_ref()?.advisory_ids.clone(),
            }))),
            "tcb_evaluation_data_number": info.tcb_evaluation_data_number,
            "qe_identity_tcb_evaluation_data_number": identity.tcb_evaluation_data_number,
        });
        Ok(Appraisal {
            status,
            advisory_ids,
            details,
        })
    }
}

/// The result of appraising a platform's TCB with Intel's collateral.
#[derive(Debug)]
struct Appraisal {
    status: TcbStatus,
    advisory_ids: Vec<String>,
    details: Value,
}

/// Checks that a quote is authentic: signed by its attestation key, which the QE report binds,
/// which the (already checked) PCK certificate signed.
fn authenticate(q: &Quote<'_>, pck: &CheckedPck) -> Result<(), AttestError> {
    let mut att_key = [0u8; 65];
    att_key[0] = 0x04;
    att_key[1..].copy_from_slice(q.attestation_key);
    confide_crypto::verify::verify(
        Scheme::EcdsaP256Sha256Fixed,
        &att_key,
        q.signed,
        q.signature,
    )
    .map_err(|_| AttestError::signature("quote signed by its attestation key"))?;
    pck.leaf.verify_signature(
        Scheme::EcdsaP256Sha256Fixed,
        q.qe_report,
        q.qe_report_signature,
        "QE report signed by the PCK certificate",
    )?;
    let qe = SgxReport(q.qe_report);
    let mut bound = q.attestation_key.to_vec();
    bound.extend_from_slice(q.qe_auth_data);
    let report_data = qe.report_data();
    if report_data[..32] != sha256(&bound) || report_data[32..].iter().any(|&b| b != 0) {
        return Err(AttestError::mismatch(
            "QE report data does not bind the attestation key (SHA-256 of key and auth data)",
        ));
    }
    Ok(())
}

/// Checks a TDX quote's authenticity only (signatures, QE binding, PCK chain to the pinned root,
/// CRLs when given), without appraising its TCB: for evidence whose TCB collateral is not at
/// hand, such as an Azure TDX VM's. The claims say `tcb_status: null`; a policy that needs the
/// TCB status must refuse them.
pub(crate) fn authenticate_only(
    evidence: &[u8],
    collateral: &Collateral,
    inputs: &Inputs<'_>,
) -> Result<VerifiedClaims, AttestError> {
    let q = Quote::parse(evidence)?;
    let mut revocation = BTreeMap::new();
    let chain = check_pck_chain(q.pck_chain_pem, collateral, inputs, &mut revocation)?;
    let pck = CheckedPck {
        info: PckInfo::parse(&chain.leaf)?,
        pck_ca: ca_type(&chain.intermediate),
        leaf: chain.leaf,
        revocation,
    };
    authenticate(&q, &pck)?;
    Ok(claims(&q, &pck, None))
}

/// Which PCK CA issued the PCK certificate; it selects the PCK CRL.
fn ca_type(intermediate: &Certificate) -> &'static str {
    match intermediate.common_name() {
        "Intel SGX PCK Processor CA" => "Processor",
        "Intel SGX PCK Platform CA" => "Platform",
        _ => "unknown",
    }
}

/// The claims of an authentic quote, with its TCB appraisal if there was one.
fn claims(q: &Quote<'_>, checked: &CheckedPck, appraisal: Option<Appraisal>) -> VerifiedClaims {
    let pck = &checked.info;
    let qe = SgxReport(q.qe_report);
    let kind = q.body_type.tee_kind();
    let mut details = json!({
        "quote_version": q.version,
        "tee_type": if kind == TeeKind::Tdx { "TDX" } else { "SGX" },
        "body_type": q.body_type.number(),
        "qe_svn": q.qe_svn,
        "pce_svn": q.pce_svn,
        "fmspc": hex::encode_upper(&pck.fmspc),
        "pck_ca": checked.pck_ca,
        "pck_tcb_components": pck.components.to_vec(),
        "pck_pcesvn": pck.pce_svn,
        "pck_cpusvn": hex::encode(&pck.cpu_svn),
        "pceid": hex::encode(&pck.pce_id),
        "sgx_type": pck.sgx_type,
        "qe_isv_svn": qe.isv_svn(),
        "qe_mr_signer": hex::encode(qe.mr_signer()),
        "qe_isv_prod_id": qe.isv_prod_id(),
        "quote_signed_length": q.signed.len(),
        "trailing_bytes_after_quote": q.trailing,
        "revocation_checked": checked.revocation,
        "tcb_status": null,
    });
    let (status, advisory_ids) = match appraisal {
        Some(a) => {
            if let (Some(map), Value::Object(more)) = (details.as_object_mut(), a.details) {
                map.extend(more);
            }
            (Some(a.status), a.advisory_ids)
        }
        None => {
            if let Some(map) = details.as_object_mut() {
                map.insert(
                    "tcb_status_note".into(),
                    Value::from("not appraised: no TCB info and QE identity were given"),
                );
            }
            (None, Vec::new())
        }
    };
    let mut measurements = BTreeMap::new();
    let mut svns = BTreeMap::new();
    svns.insert("qe_isv_svn".to_owned(), u64::from(qe.isv_svn()));
    svns.insert("pce_svn".to_owned(), u64::from(pck.pce_svn));
    let td = (kind == TeeKind::Tdx).then_some(TdReport(q.body));
    let (debug, report_data, host_data) = if let Some(t) = td {
        measurements.insert("mr_td", Hex::from(t.mr_td()));
        measurements.insert("mr_seam", Hex::from(t.mr_seam()));
        for (i, name) in ["rtmr0", "rtmr1", "rtmr2", "rtmr3"].into_iter().enumerate() {
            measurements.insert(name, Hex::from(t.rtmr(i)));
        }
        svns.insert("tdx_module_svn".to_owned(), u64::from(t.tee_tcb_svn()[0]));
        svns.insert(
            "tdx_module_version".to_owned(),
            u64::from(t.tee_tcb_svn()[1]),
        );
        if let Some(map) = details.as_object_mut() {
            let mut put = |k: &str, v: &[u8]| {
                map.insert(k.into(), Value::from(hex::encode(v)));
            };
            put("tee_tcb_svn", t.tee_tcb_svn());
            put("mr_seam", t.mr_seam());
            put("mr_signer_seam", t.mr_signer_seam());
            put("seam_attributes", t.seam_attributes());
            put("td_attributes", t.td_attributes());
            put("xfam", t.xfam());
            put("mr_td", t.mr_td());
            put("mr_config_id", t.mr_config_id());
            put("mr_owner", t.mr_owner());
            put("mr_owner_config", t.mr_owner_config());
            put("rtmr0", t.rtmr(0));
            put("rtmr1", t.rtmr(1));
            put("rtmr2", t.rtmr(2));
            put("rtmr3", t.rtmr(3));
            put("report_data", t.report_data());
            if let (Some(svn2), Some(service)) = (t.tee_tcb_svn2(), t.mr_service_td()) {
                put("tee_tcb_svn2", svn2);
                put("mr_service_td", service);
            }
            map.insert("debug".into(), Value::from(t.debug()));
            map.insert("sept_ve_disable".into(), Value::from(t.sept_ve_disable()));
        }
        (t.debug(), t.report_data(), t.mr_config_id())
    } else {
        let e = SgxReport(q.body);
        measurements.insert("mr_enclave", Hex::from(e.mr_enclave()));
        measurements.insert("mr_signer", Hex::from(e.mr_signer()));
        svns.insert("isv_svn".to_owned(), u64::from(e.isv_svn()));
        svns.insert("isv_prod_id".to_owned(), u64::from(e.isv_prod_id()));
        svns.insert("config_svn".to_owned(), u64::from(e.config_svn()));
        if let Some(map) = details.as_object_mut() {
            map.insert("cpu_svn".into(), Value::from(hex::encode(e.cpu_svn())));
            map.insert("misc_select".into(), Value::from(e.misc_select()));
            map.insert(
                "attributes".into(),
                Value::from(hex::encode(e.attributes())),
            );
            map.insert(
                "mr_enclave".into(),
                Value::from(hex::encode(e.mr_enclave())),
            );
            map.insert("mr_signer".into(), Value::from(hex::encode(e.mr_signer())));
            map.insert("isv_prod_id".into(), Value::from(e.isv_prod_id()));
            map.insert("isv_svn".into(), Value::from(e.isv_svn()));
            map.insert("config_id".into(), Value::from(hex::encode(e.config_id())));
            map.insert(
                "report_data".into(),
                Value::from(hex::encode(e.report_data())),
            );
            map.insert("debug".into(), Value::from(e.debug()));
        }
        (e.debug(), e.report_data(), e.config_id())
    };
    VerifiedClaims {
        kind,
        simulated: false,
        debug,
        measurements,
        report_data: Hex::from(report_data),
        host_data: Some(Hex::from(host_data)),
        platform_id: Some(Hex(pck.fmspc.clone())),
        tcb: Tcb {
            status,
            advisory_ids,
            svns,
        },
        details,
        report: Hex::from(q.signed),
    }
}

fn push_unique(into: &mut Vec<String>, from: &[String]) {
    for id in from {
        if !into.contains(id) {
            into.push(id.clone());
        }
    }
}

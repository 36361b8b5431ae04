//! configfs-tsm against a stand-in for the kernel's side of the ABI on a temporary directory,
//! serving recorded real reports: an SEV-SNP report with its host certificate table, and a TDX
//! quote. What comes out verifies with `confide-attest`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::Cell;
use std::path::{Path, PathBuf};

use confide_attest::{Collateral, Inputs, TeeKind, TrustAnchors, UnixTime, Verifier};
use confide_attester::tsm::{ConfigFs, Tsm};
use confide_attester::{Attester, AttesterError};

fn testdata(rel: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/attestation")
            .join(rel),
    )
    .unwrap()
}

/// The kernel's behaviour as `Documentation/ABI/testing/configfs-tsm` gives it: mkdir creates
/// the entry with `provider` and `generation`; every write bumps `generation`; `inblob` takes
/// at most 64 bytes; the report appears in `outblob` (and `auxblob`); rmdir removes it all.
struct FakeKernel {
    provider: &'static str,
    report: Vec<u8>,
    auxblob: Option<Vec<u8>>,
    /// Another process writing to the same entry between our write and our read.
    interfere: bool,
    created: Cell<Option<PathBuf>>,
}

impl FakeKernel {
    fn new(provider: &'static str, report: Vec<u8>, auxblob: Option<Vec<u8>>) -> Self {
        Self {
            provider,
            report,
            auxblob,
            interfere: false,
            created: Cell::new(None),
        }
    }

    fn bump(&self, entry: &Path) {
        let g: u64 = std::fs::read_to_string(entry.join("generation"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        std::fs::write(entry.join("generation"), format!("{}\n", g + 1)).unwrap();
    }
}

impl ConfigFs for &FakeKernel {
    fn create_dir(&self, path: &Path) -> std::io::Result<()> {
        std::fs::create_dir(path)?;
        std::fs::write(path.join("provider"), format!("{}\n", self.provider))?;
        std::fs::write(path.join("generation"), "0\n")?;
        self.created.set(Some(path.to_owned()));
        Ok(())
    }

    fn write(&self, path: &Path, data: &[u8]) -> std::io::Result<()> {
        let entry = path.parent().unwrap();
        if path.file_name().unwrap() == "inblob" {
            if data.len() > 64 {
                return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
            }
            std::fs::write(path, data)?;
            self.bump(entry);
            std::fs::write(entry.join("outblob"), &self.report)?;
            if let Some(aux) = &self.auxblob {
                std::fs::write(entry.join("auxblob"), aux)?;
            }
            if self.interfere {
                self.bump(entry);
            }
            Ok(())
        } else {
            Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied))
        }
    }

    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn remove_dir(&self, path: &Path) -> std::io::Result<()> {
        std::fs::remove_dir_all(path)
    }
}

/// An SEV-SNP host certificate table holding `certs` (GUID, offset, length; zero entry).
fn cert_table(certs: &[(u128, &[u8])]) -> Vec<u8> {
    let header = 24 * (certs.len() + 1);
    let mut table = Vec::new();
    let mut body = Vec::new();
    for (guid, der) in certs {
        table.extend_from_slice(&guid.to_be_bytes());
        table.extend_from_slice(&u32::try_from(header + body.len()).unwrap().to_le_bytes());
        table.extend_from_slice(&u32::try_from(der.len()).unwrap().to_le_bytes());
        body.extend_from_slice(der);
    }
    table.extend_from_slice(&[0u8; 24]);
    table.extend_from_slice(&body);
    table
}

fn report_data_of(report: &[u8], at: usize) -> [u8; 64] {
    report[at..at + 64].try_into().unwrap()
}

#[test]
fn snp_report_with_its_certificate_table_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let report = testdata("snp/S1-trustee-milan-vcek/test-report.bin");
    let vcek = testdata("snp/S1-trustee-milan-vcek/test-vcek.der");
    let table = cert_table(&[(0x63da758d_e664_4564_adc5_f4b93be8accd, &vcek)]);
    let kernel = FakeKernel::new("sev_guest", report.clone(), Some(table));
    let tsm = Tsm::new(&kernel, dir.path().to_owned());

    let collected = tsm.collect(&report_data_of(&report, 0x50)).unwrap();
    assert_eq!(collected.kind, TeeKind::SevSnp);
    assert_eq!(collected.evidence, report);
    // The entry is gone afterwards.
    assert!(!kernel.created.take().unwrap().exists());

    // The auxblob is collateral as it is: the verifier reads the certificate table.
    let mut collateral = Collateral::new();
    collateral
        .add(collected.auxblob.as_deref().unwrap())
        .unwrap();
    let anchors = TrustAnchors::builtin().unwrap();
    let inputs = Inputs {
        anchors: &anchors,
        now: UnixTime::parse_rfc3339("2025-06-01T00:00:00Z").unwrap(),
        insecure_allow_simulated_tee: false,
    };
    let claims = confide_attest::snp::SnpVerifier
        .verify(&collected.evidence, &collateral, &inputs)
        .unwrap();
    assert_eq!(claims.report_data(), &report[0x50..0x90]);
}

#[test]
fn tdx_quote() {
    let dir = tempfile::tempdir().unwrap();
    let quote = testdata("tdx/T1-dcap-qvl-v4/tdx_quote");
    let kernel = FakeKernel::new("tdx_guest", quote.clone(), None);
    let collected = Tsm::new(&kernel, dir.path().to_owned())
        .collect(&report_data_of(&quote, 48 + 520))
        .unwrap();
    assert_eq!((collected.kind, collected.auxblob), (TeeKind::Tdx, None));
    assert_eq!(collected.evidence, quote);
}

#[test]
fn a_report_for_other_data_is_refused_and_the_entry_removed() {
    let dir = tempfile::tempdir().unwrap();
    let report = testdata("snp/S1-trustee-milan-vcek/test-report.bin");
    let kernel = FakeKernel::new("sev_guest", report, None);
    let err = Tsm::new(&kernel, dir.path().to_owned())
        .collect(&[0x42; 64])
        .unwrap_err();
    assert!(
        matches!(&err, AttesterError::Protocol(m) if m.contains("report data")),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn a_concurrent_writer_is_detected_by_generation() {
    let dir = tempfile::tempdir().unwrap();
    let report = testdata("snp/S1-trustee-milan-vcek/test-report.bin");
    let mut kernel = FakeKernel::new("sev_guest", report.clone(), None);
    kernel.interfere = true;
    let err = Tsm::new(&kernel, dir.path().to_owned())
        .collect(&report_data_of(&report, 0x50))
        .unwrap_err();
    assert!(
        matches!(&err, AttesterError::Protocol(m) if m.contains("generation")),
        "{err}"
    );
}

#[test]
fn an_unknown_provider_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = FakeKernel::new("arm_cca_guest", vec![0; 100], None);
    let err = Tsm::new(&kernel, dir.path().to_owned())
        .collect(&[0; 64])
        .unwrap_err();
    assert!(
        matches!(&err, AttesterError::Protocol(m) if m.contains("provider")),
        "{err}"
    );
}

#[test]
fn without_a_tee_detection_fails_and_sim_is_explicit() {
    if Path::new(confide_attester::TSM_REPORT_DIR).exists() {
        return; // a real TEE guest: nothing to check here
    }
    assert!(matches!(Attester::detect(), Err(AttesterError::NoTee(_))));
    let sim = Attester::Sim.collect(&[9; 64]).unwrap();
    assert_eq!(sim.kind, TeeKind::Sim);
    let anchors = TrustAnchors::builtin().unwrap();
    let inputs = Inputs {
        anchors: &anchors,
        now: UnixTime::from_secs(0),
        insecure_allow_simulated_tee: false,
    };
    // Simulated evidence still needs the insecure switch to verify.
    assert!(
        confide_attest::sim::SimVerifier
            .verify(&sim.evidence, &Collateral::new(), &inputs)
            .is_err()
    );
}

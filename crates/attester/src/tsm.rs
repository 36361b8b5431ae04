//! configfs-tsm: the Linux kernel's interface for TEE reports (TDX and SEV-SNP guests), as
//! `Documentation/ABI/testing/configfs-tsm` describes it.
//!
//! A report is requested by creating a directory under `/sys/kernel/config/tsm/report`,
//! writing up to 64 bytes of report data to its `inblob`, and reading `outblob` (the report or
//! quote) and `auxblob` (SEV-SNP: the host's certificate table). `provider` names the TEE
//! (`sev_guest`, `tdx_guest`), and `generation` counts writes to the entry, so a reader can
//! tell that someone else wrote to it between its write and its read. The entry is removed
//! afterwards, whatever happened.
//!
//! The file operations go through [`ConfigFs`], so tests can stand in for the kernel's side of
//! the ABI on a temporary directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use confide_attest::TeeKind;

use crate::{AttesterError, Collected};

/// The file operations the interface needs. [`RealFs`] is the operating system's.
pub trait ConfigFs {
    /// Creates one directory (configfs creates the entry's attributes with it).
    fn create_dir(&self, path: &Path) -> std::io::Result<()>;
    /// Writes a whole attribute.
    fn write(&self, path: &Path, data: &[u8]) -> std::io::Result<()>;
    /// Reads a whole attribute.
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>>;
    /// Removes an entry.
    fn remove_dir(&self, path: &Path) -> std::io::Result<()>;
}

/// The real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealFs;

impl ConfigFs for RealFs {
    fn create_dir(&self, path: &Path) -> std::io::Result<()> {
        std::fs::create_dir(path)
    }
    fn write(&self, path: &Path, data: &[u8]) -> std::io::Result<()> {
        std::fs::write(path, data)
    }
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        std::fs::read(path)
    }
    fn remove_dir(&self, path: &Path) -> std::io::Result<()> {
        std::fs::remove_dir(path)
    }
}

/// A configfs-tsm report directory.
#[derive(Debug)]
pub struct Tsm<F> {
    fs: F,
    root: PathBuf,
}

static ENTRY: AtomicU64 = AtomicU64::new(0);

impl<F: ConfigFs> Tsm<F> {
    /// The interface rooted at `root` (normally `/sys/kernel/config/tsm/report`).
    pub fn new(fs: F, root: PathBuf) -> Self {
        Self { fs, root }
    }

    /// Requests a report binding `report_data`.
    pub fn collect(&self, report_data: &[u8; 64]) -> Result<Collected, AttesterError> {
        let entry = self.root.join(format!(
            "confide-{}-{}",
            std::process::id(),
            ENTRY.fetch_add(1, Ordering::Relaxed)
        ));
        self.fs
            .create_dir(&entry)
            .map_err(|source| AttesterError::Io {
                what: format!("creating the report entry {}", entry.display()),
                source,
            })?;
        let result = self.request(&entry, report_data);
        let removed = self.fs.remove_dir(&entry);
        let collected = result?;
        removed.map_err(|source| AttesterError::Io {
            what: format!("removing the report entry {}", entry.display()),
            source,
        })?;
        Ok(collected)
    }

    fn read(&self, entry: &Path, name: &str) -> Result<Vec<u8>, AttesterError> {
        self.fs
            .read(&entry.join(name))
            .map_err(|source| AttesterError::Io {
                what: format!("reading {name}"),
                source,
            })
    }

    fn generation(&self, entry: &Path) -> Result<u64, AttesterError> {
        let text = self.read(entry, "generation")?;
        String::from_utf8_lossy(&text)
            .trim()
            .parse()
            .map_err(|_| AttesterError::Protocol("generation is not a number".into()))
    }

    fn request(&self, entry: &Path, report_data: &[u8; 64]) -> Result<Collected, AttesterError> {
        let provider = self.read(entry, "provider")?;
        let kind = match String::from_utf8_lossy(&provider).trim() {
            "sev_guest" => TeeKind::SevSnp,
            "tdx_guest" => TeeKind::Tdx,
            other => {
                return Err(AttesterError::Protocol(format!(
                    "unknown provider {other:?} (expected sev_guest or tdx_guest)"
                )));
            }
        };
        let before = self.generation(entry)?;
        self.fs
            .write(&entry.join("inblob"), report_data)
            .map_err(|source| AttesterError::Io {
                what: "writing inblob".into(),
                source,
            })?;
        let evidence = self.read(entry, "outblob")?;
        let auxblob = match self.fs.read(&entry.join("auxblob")) {
            Ok(b) if !b.is_empty() => Some(b),
            Ok(_) => None,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(AttesterError::Io {
                    what: "reading auxblob".into(),
                    source,
                });
            }
        };
        let after = self.generation(entry)?;
        if after != before + 1 {
            return Err(AttesterError::Protocol(format!(
                "the entry was written by someone else while the report was made \
                 (generation {before} before, {after} after); nothing was returned"
            )));
        }
        if bound_report_data(kind, &evidence) != Some(report_data.as_slice()) {
            return Err(AttesterError::Protocol(format!(
                "the {kind} report does not carry the report data that was written"
            )));
        }
        Ok(Collected {
            kind,
            evidence,
            auxblob,
        })
    }
}

/// Where the report data sits in the report the provider returns.
fn bound_report_data(kind: TeeKind, report: &[u8]) -> Option<&[u8]> {
    match kind {
        // SEV-SNP ATTESTATION_REPORT: REPORT_DATA at 0x50.
        TeeKind::SevSnp => report.get(0x50..0x90),
        // TDX quote v4: 48-byte header, TD report body with REPORTDATA at 520.
        TeeKind::Tdx => match report.get(..2) {
            Some([4, 0]) => report.get(48 + 520..48 + 584),
            // v5: a 6-byte body descriptor after the header.
            Some([5, 0]) => report.get(54 + 520..54 + 584),
            _ => None,
        },
        _ => None,
    }
}

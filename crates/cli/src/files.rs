//! `confide encrypt` and `confide decrypt`: streaming, constant memory, and all-or-nothing
//! output files.
//!
//! With `--out`, output goes to a temporary file in the same directory that is synced and
//! renamed over the target only once everything succeeded, so a failure never leaves a partial
//! or unauthenticated file at the target. Without it, output streams to stdout; if decryption
//! then fails, the exit status is non-zero and what was already written must be discarded.
//!
//! Reading and writing happen on threads of their own ([`crate::pipe`]), so the kernel's copies
//! overlap the cryptography.

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use confide_crypto::envelope::{self, Decryptor};
use confide_identity::{Home, PublicIdentity};
use tempfile::NamedTempFile;

use crate::pipe::{ReadAhead, WriteBehind};
use crate::progress::Progress;

#[derive(Debug, Args)]
pub(crate) struct EncryptArgs {
    /// A recipient's public identity document (from `confide member show --json`).
    /// Repeat for several recipients.
    #[arg(long = "to", value_name = "ID_FILE", required = true)]
    to: Vec<PathBuf>,
    /// The file to encrypt; stdin when absent or "-".
    #[arg(long = "in", value_name = "FILE")]
    input: Option<PathBuf>,
    /// Where to write the encrypted file; stdout when absent or "-".
    #[arg(long = "out", value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct DecryptArgs {
    /// The encrypted file; stdin when absent or "-".
    #[arg(long = "in", value_name = "FILE")]
    input: Option<PathBuf>,
    /// Where to write the plaintext (mode 0600), only after the whole file authenticated;
    /// stdout when absent or "-".
    #[arg(long = "out", value_name = "FILE")]
    output: Option<PathBuf>,
}

pub(crate) fn encrypt(args: EncryptArgs) -> anyhow::Result<()> {
    let mut recipients = Vec::with_capacity(args.to.len());
    for path in &args.to {
        let id = PublicIdentity::load(path).context("reading a recipient")?;
        recipients.push(*id.hpke_key());
    }
    let (input, len) = open_input(args.input.as_deref())?;
    let mut output = Output::open(args.output.as_deref(), 0o644)?;
    if output.is_terminal() {
        bail!(
            "refusing to write an encrypted file to a terminal; use --out FILE or redirect stdout"
        );
    }
    let mut input = Progress::new(input, len, "encrypting");
    envelope::encrypt(&recipients, &mut input, output.writer()).context("encrypting")?;
    input.finish();
    output.commit()
}

pub(crate) fn decrypt(args: DecryptArgs, home: &Home) -> anyhow::Result<()> {
    let identity = home.load().context("loading your identity")?;
    let (input, len) = open_input(args.input.as_deref())?;
    let mut output = Output::open(args.output.as_deref(), 0o600)?;
    let mut input = Progress::new(input, len, "decrypting");
    let result =
        Decryptor::new(identity.hpke_key(), &mut input).and_then(|d| d.decrypt_to(output.writer()));
    input.finish();
    if let Err(e) = result {
        let note = if output.is_stdout() {
            "; the plaintext already written to stdout is not authentic and must be discarded"
        } else {
            "; nothing was written"
        };
        return Err(anyhow::Error::new(e).context(format!("decryption failed{note}")));
    }
    output.commit()
}

/// The input, read ahead on its own thread, and its size when it is a file.
fn open_input(path: Option<&Path>) -> anyhow::Result<(ReadAhead, Option<u64>)> {
    match path {
        None => Ok((ReadAhead::new(io::stdin()), None)),
        Some(p) if p == Path::new("-") => Ok((ReadAhead::new(io::stdin()), None)),
        Some(p) => {
            let file = File::open(p).with_context(|| format!("opening {}", p.display()))?;
            let len = file
                .metadata()
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len());
            Ok((ReadAhead::new(file), len))
        }
    }
}

/// A command's output, written behind on its own thread: stdout, or a temporary file that
/// replaces the target on commit.
enum Output {
    Stdout(WriteBehind<io::Stdout>),
    File {
        writer: WriteBehind<NamedTempFile>,
        target: PathBuf,
    },
}

impl Output {
    fn open(path: Option<&Path>, mode: u32) -> anyhow::Result<Self> {
        let target = match path {
            None => return Ok(Self::stdout()),
            Some(p) if p == Path::new("-") => return Ok(Self::stdout()),
            Some(p) => p.to_owned(),
        };
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".confide-partial-")
            .tempfile_in(&dir)
            .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
        set_mode(tmp.as_file(), mode).with_context(|| {
            format!("setting the mode of a temporary file in {}", dir.display())
        })?;
        Ok(Self::File {
            writer: WriteBehind::new(tmp),
            target,
        })
    }

    fn stdout() -> Self {
        Self::Stdout(WriteBehind::new(io::stdout()))
    }

    fn is_stdout(&self) -> bool {
        matches!(self, Self::Stdout(_))
    }

    fn is_terminal(&self) -> bool {
        matches!(self, Self::Stdout(_)) && io::stdout().is_terminal()
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Self::Stdout(w) => w,
            Self::File { writer, .. } => writer,
        }
    }

    /// Makes the output final: flushes stdout, or syncs the temporary file and renames it over
    /// the target. Dropping an uncommitted file output deletes the temporary file.
    fn commit(self) -> anyhow::Result<()> {
        match self {
            Self::Stdout(w) => w.finish().map(drop).context("writing to stdout"),
            Self::File { writer, target } => {
                let tmp = writer
                    .finish()
                    .with_context(|| format!("writing {}", target.display()))?;
                tmp.as_file()
                    .sync_all()
                    .with_context(|| format!("syncing {}", target.display()))?;
                tmp.persist(&target).map_err(|e| e.error).with_context(|| {
                    format!("moving the output into place at {}", target.display())
                })?;
                sync_parent(&target);
                Ok(())
            }
        }
    }
}

#[cfg(unix)]
fn set_mode(file: &File, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_file: &File, _mode: u32) -> io::Result<()> {
    Ok(())
}

/// Makes the rename durable. Best effort: the file itself is already synced.
fn sync_parent(target: &Path) {
    #[cfg(unix)]
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
}

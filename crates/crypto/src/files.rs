//! Writing key material and results to files whole or not at all: every secret file of
//! confide (keys, sealed keys, fetched results) is written through these two functions, so
//! that a crash or a full disk never leaves a half-written file under the final name, and a
//! secret file is never readable by others, not even for a moment.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// Writes `bytes` to the new file `path` with permissions `mode`, durably: written and synced
/// under a temporary name in the same directory, then linked to `path` only if nothing is
/// there (an existing file is an [`io::ErrorKind::AlreadyExists`] error and is left as it was).
/// On a file system without hard links (vfat, some network shares) the file is created in
/// place, exclusively, and removed again if writing it fails.
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let tmp = written_aside(path, bytes, mode)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(e),
        Err(_) => {
            let written = create(path, mode).and_then(|mut f| {
                f.write_all(bytes)
                    .and_then(|()| f.sync_all())
                    .inspect_err(|_| {
                        let _ = std::fs::remove_file(path);
                    })
            });
            written?;
        }
    }
    sync_parent(path)
}

/// A new file at `path` (never an existing one) with exactly `mode`, whatever the umask.
fn create(path: &Path, mode: u32) -> io::Result<File> {
    use std::os::unix::fs::PermissionsExt as _;
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    Ok(file)
}

/// Replaces `path` (or creates it) with `bytes` and permissions `mode`, durably: written and
/// synced under a temporary name in the same directory, then renamed over it. A failure leaves
/// the old file.
pub fn replace(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let tmp = written_aside(path, bytes, mode)?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_parent(path)
}

/// `bytes` in a new file beside `path`, created with `mode` (so never readable by others) and
/// synced; its path.
fn written_aside(path: &Path, bytes: &[u8], mode: u32) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    let random = crate::random::array::<8>().map_err(io::Error::other)?;
    let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{suffix}.tmp"));
    let tmp = path.with_file_name(tmp_name);
    let written =
        create(&tmp, mode).and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()));
    match written {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => File::open(".")?.sync_all(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect()
    }

    #[test]
    fn a_new_file_is_whole_private_and_never_clobbers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        write_new(&path, b"secret", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"secret");
        assert_eq!(mode(&path), 0o600);
        let again = write_new(&path, b"other", 0o600).unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"secret");
        assert!(leftovers(dir.path()).is_empty());
        // A directory that does not exist: an error, and nothing written.
        assert!(write_new(&dir.path().join("no/key"), b"x", 0o600).is_err());
    }

    #[test]
    fn a_replaced_file_is_the_old_or_the_new() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        replace(&path, b"one", 0o600).unwrap();
        replace(&path, b"two", 0o644).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(mode(&path), 0o644);
        // Renaming over a directory fails: the directory stays, and no temporary is left.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir(&blocked).unwrap();
        std::fs::write(blocked.join("inside"), b"x").unwrap();
        assert!(replace(&blocked, b"three", 0o600).is_err());
        assert!(blocked.is_dir());
        assert!(leftovers(dir.path()).is_empty());
    }
}

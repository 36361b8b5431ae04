//! The `confide` binary, run as a user would run it: identities in temporary homes, real files,
//! real pipes. Every refusal must exit non-zero, say why, and leave nothing at the output path.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const CHUNK: usize = 16 * 1024;
/// Bytes before the first body chunk for a file with `n` recipients: the envelope header and
/// the Cobblestone salt and commitment.
fn body_start(n: usize) -> usize {
    12 + 112 * n + 56
}

struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn confide(&self, args: &[&str]) -> Output {
        self.confide_with_input(args, None)
    }

    fn confide_with_input(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_confide"))
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("CONFIDE_HOME")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(data) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            let data = data.to_vec();
            std::thread::spawn(move || {
                let _ = pipe.write_all(&data);
            });
        }
        child.wait_with_output().unwrap()
    }

    /// Creates a member and writes its public identity to `NAME.json`.
    fn member(&self, name: &str) -> PathBuf {
        let home = self.path(name);
        let out = self.confide(&[
            "--home",
            home.to_str().unwrap(),
            "member",
            "init",
            "--name",
            name,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let show = self.confide(&["--home", home.to_str().unwrap(), "member", "show", "--json"]);
        assert!(show.status.success());
        let id = self.path(&format!("{name}.json"));
        fs::write(&id, &show.stdout).unwrap();
        id
    }

    fn encrypt(&self, to: &[&Path], plain: &[u8]) -> Vec<u8> {
        let input = self.path("plain.in");
        fs::write(&input, plain).unwrap();
        let out = self.path("cipher.out");
        let mut args = vec!["encrypt".to_string()];
        for id in to {
            args.extend(["--to".into(), id.to_str().unwrap().into()]);
        }
        args.extend(["--in".into(), input.to_str().unwrap().into()]);
        args.extend(["--out".into(), out.to_str().unwrap().into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let res = self.confide(&args);
        assert!(
            res.status.success(),
            "{}",
            String::from_utf8_lossy(&res.stderr)
        );
        fs::read(out).unwrap()
    }

    /// Decrypts `file` as `member` into `out.bin`; returns (success, stderr).
    fn decrypt(&self, member: &str, file: &[u8]) -> (bool, String) {
        let input = self.path("cipher.in");
        fs::write(&input, file).unwrap();
        let home = self.path(member);
        let res = self.confide(&[
            "--home",
            home.to_str().unwrap(),
            "decrypt",
            "--in",
            input.to_str().unwrap(),
            "--out",
            self.path("out.bin").to_str().unwrap(),
        ]);
        (
            res.status.success(),
            String::from_utf8_lossy(&res.stderr).into_owned(),
        )
    }

    /// Asserts a decryption is refused with `reason`, leaves `out.bin` as it was, and leaves
    /// no temporary file behind.
    fn refused(&self, member: &str, file: &[u8], reason: &str) {
        let before = fs::read(self.path("out.bin")).ok();
        let (ok, stderr) = self.decrypt(member, file);
        assert!(!ok, "accepted a file that should be refused ({reason})");
        assert!(stderr.contains(reason), "expected {reason:?} in: {stderr}");
        assert!(stderr.contains("nothing was written"), "{stderr}");
        assert_eq!(
            fs::read(self.path("out.bin")).ok(),
            before,
            "the output path changed"
        );
        let leftovers: Vec<_> = fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(".confide-partial")
            })
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 256) as u8).collect()
}

#[test]
fn init_refuses_to_overwrite_and_keys_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let w = World::new();
    w.member("bank-a");
    let key = w.path("bank-a/member.key");
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let before = fs::read(&key).unwrap();
    let again = w.confide(&["--home", "bank-a", "member", "init", "--name", "bank-a"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
    assert_eq!(fs::read(&key).unwrap(), before);
}

#[test]
fn member_show_prints_the_public_identity() {
    let w = World::new();
    let id = w.member("hospital-1");
    let doc: serde_json::Value = serde_json::from_slice(&fs::read(&id).unwrap()).unwrap();
    assert_eq!(doc["name"], "hospital-1");
    assert_eq!(doc["signing_key"]["crv"], "P-256");
    assert_eq!(
        doc,
        serde_json::from_slice::<serde_json::Value>(
            &fs::read(w.path("hospital-1/identity.json")).unwrap()
        )
        .unwrap()
    );
    let human = w.confide(&["--home", "hospital-1", "member", "show"]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains(doc["fingerprint"].as_str().unwrap()),
        "{text}"
    );
    // The environment variable works as --home does.
    let via_env = Command::new(env!("CARGO_BIN_EXE_confide"))
        .args(["member", "show", "--json"])
        .env("CONFIDE_HOME", w.path("hospital-1"))
        .output()
        .unwrap();
    assert_eq!(via_env.stdout, fs::read(&id).unwrap());
    let missing = w.confide(&["--home", "nobody", "member", "show"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("confide member init"));
}

#[test]
fn recipients_decrypt_and_others_are_refused() {
    let w = World::new();
    let a = w.member("a");
    let b = w.member("b");
    w.member("c");
    let plain = data(3 * CHUNK + 11);
    let file = w.encrypt(&[&a, &b], &plain);
    for m in ["a", "b"] {
        let (ok, err) = w.decrypt(m, &file);
        assert!(ok, "{err}");
        assert_eq!(fs::read(w.path("out.bin")).unwrap(), plain);
    }
    w.refused("c", &file, "not encrypted to your key");
}

#[test]
fn tampering_truncation_reordering_and_splicing_are_refused() {
    let w = World::new();
    let a = w.member("a");
    let plain = data(4 * CHUNK + 100);
    let file = w.encrypt(&[&a], &plain);
    // A previous good output must survive every failed attempt untouched.
    fs::write(w.path("out.bin"), b"previous contents").unwrap();

    let start = body_start(1);
    let full = CHUNK + 16;
    for at in [
        0,
        9,
        20,
        100,
        start - 1,
        start + 5,
        start + full + 3,
        file.len() - 1,
    ] {
        let mut bad = file.clone();
        bad[at] ^= 0x01;
        w.refused("a", &bad, "decryption failed");
    }
    for i in 0..=4 {
        let cut = start + i * full;
        w.refused("a", &file[..cut], "truncated");
        w.refused("a", &file[..cut + 100], "does not authenticate");
    }
    w.refused("a", &file[..50], "truncated");

    let chunk =
        |i: usize| file[start + i * full..(start + (i + 1) * full).min(file.len())].to_vec();
    let mut reordered = file[..start].to_vec();
    for i in [0, 2, 1, 3, 4] {
        reordered.extend(chunk(i));
    }
    w.refused("a", &reordered, "chunk 1 does not authenticate");
    let mut duplicated = file[..start].to_vec();
    for i in [0, 1, 1, 2, 3, 4] {
        duplicated.extend(chunk(i));
    }
    w.refused("a", &duplicated, "chunk 2 does not authenticate");
    let mut trailing = file.clone();
    trailing.extend_from_slice(b"extra");
    w.refused("a", &trailing, "does not authenticate");

    let other = w.encrypt(&[&a], &data(10));
    let mut spliced = other[..12 + 112].to_vec();
    spliced.extend_from_slice(&file[12 + 112..]);
    w.refused("a", &spliced, "not encrypted under this header");

    let mut v9 = file.clone();
    v9[8..10].copy_from_slice(&9u16.to_be_bytes());
    w.refused("a", &v9, "unsupported format version 9");
    w.refused(
        "a",
        b"name,balance\nalice,10\n",
        "not a confide encrypted file",
    );
    assert_eq!(fs::read(w.path("out.bin")).unwrap(), b"previous contents");
}

#[test]
fn streams_through_pipes() {
    let w = World::new();
    let a = w.member("a");
    let plain = data(2 * CHUNK + 1);
    let enc = w.confide_with_input(&["encrypt", "--to", a.to_str().unwrap()], Some(&plain));
    assert!(
        enc.status.success(),
        "{}",
        String::from_utf8_lossy(&enc.stderr)
    );
    let dec = w.confide_with_input(&["--home", "a", "decrypt"], Some(&enc.stdout));
    assert!(
        dec.status.success(),
        "{}",
        String::from_utf8_lossy(&dec.stderr)
    );
    assert_eq!(dec.stdout, plain);

    // A corrupted stream fails with a non-zero status and tells the user to discard stdout.
    let mut bad = enc.stdout.clone();
    let last = bad.len() - 3;
    bad[last] ^= 0x80;
    let dec = w.confide_with_input(&["--home", "a", "decrypt"], Some(&bad));
    assert!(!dec.status.success());
    assert!(String::from_utf8_lossy(&dec.stderr).contains("must be discarded"));
    // Only the two chunks that authenticated were released, never the tampered final one.
    assert_eq!(dec.stdout, plain[..2 * CHUNK]);
}

#[test]
fn bad_recipient_files_are_named() {
    let w = World::new();
    fs::write(w.path("bogus.json"), "{\"name\": 1}").unwrap();
    fs::write(w.path("plain"), b"x").unwrap();
    let out = w.confide(&[
        "encrypt",
        "--to",
        "bogus.json",
        "--in",
        "plain",
        "--out",
        "x.cfd",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bogus.json") && err.contains("not a valid confide identity document"),
        "{err}"
    );
    assert!(!w.path("x.cfd").exists());
}

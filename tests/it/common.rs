//! Helpers shared by the integration tests: run the binary, make recipes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A `boxwright` command with an environment that cannot leak into results.
pub fn boxwright() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_boxwright"));
    for var in [
        "VERSION",
        "OWNER",
        "SOURCE_DATE_EPOCH",
        "ARCH",
        "OS",
        "BOXWRIGHT_CACHE_MAX",
        "BOXWRIGHT_UNPACKED_LAYER_MAX",
    ] {
        c.env_remove(var);
    }
    // Builds keep their layer cache under target/, not in the user's cache.
    c.env(
        "XDG_CACHE_HOME",
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("xdg-cache"),
    );
    c
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(cmd: &mut Command) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("running boxwright");
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into(),
        stderr: String::from_utf8_lossy(&stderr).into(),
    }
}

/// Insists that `r` exited with `code`; shows its output otherwise.
pub fn assert_code(r: &Run, code: i32) {
    assert_eq!(
        r.code, code,
        "exit code\nstdout:\n{}\nstderr:\n{}",
        r.stdout, r.stderr
    );
}

/// Insists that `r` succeeded; shows its output otherwise.
pub fn assert_ok(r: &Run) {
    assert_code(r, 0);
}

/// Run and insist on success; returns stdout trimmed.
pub fn ok(cmd: &mut Command) -> String {
    let r = run(cmd);
    assert_eq!(
        r.code, 0,
        "command failed: {cmd:?}\nstdout: {}\nstderr: {}",
        r.stdout, r.stderr
    );
    r.stdout.trim().to_string()
}

/// Run an external tool (skopeo, umoci, ...) and insist on success.
pub fn tool(program: &str, args: &[&str]) -> String {
    crate::support::tools::succeed(Command::new(program).args(args))
}

pub fn write(path: &Path, content: &str) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(path, content).unwrap();
}

pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Copy a directory tree (files, dirs, symlinks), preserving modes.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    let mut names: Vec<_> = std::fs::read_dir(from)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    // Create in reverse order so that the copy's directory order differs.
    names.sort();
    names.reverse();
    for name in names {
        let (src, dst) = (from.join(&name), to.join(&name));
        let meta = std::fs::symlink_metadata(&src).unwrap();
        if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src).unwrap(), &dst).unwrap();
        } else if meta.is_dir() {
            copy_tree(&src, &dst);
            std::fs::set_permissions(&dst, meta.permissions()).unwrap();
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

pub fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Deterministic incompressible-ish bytes (xorshift64*), different per seed.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The `manifest.json` of the docker-archive at `path`.
pub fn docker_archive_manifest(path: &Path) -> serde_json::Value {
    let mut ar = tar::Archive::new(std::fs::File::open(path).unwrap());
    ar.entries()
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.path().unwrap().to_str() == Some("manifest.json"))
        .map(|e| serde_json::from_reader(e).unwrap())
        .unwrap_or_else(|| panic!("no manifest.json in {}", path.display()))
}

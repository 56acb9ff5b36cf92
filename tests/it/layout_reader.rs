//! The guarded layout reader through the binary: symbolic links, FIFOs,
//! devices, oversized documents, wrong sizes and corrupt blobs in a layout
//! are refused by `inspect`, `push` and `build` (base layouts) as bad input
//! naming the file (exit 2), without hanging, without sending a byte of the
//! file, and without putting it into a new layout; `inspect --check`
//! reports them per blob (exit 1). Commands that could hang on a FIFO run
//! under a deadline, so that a regression fails instead of hanging.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::common::{assert_code, boxwright, write, Run};
use crate::env::Env;
use crate::support::{tempdir, tiny_oci_layout, FaultProxy, Registry};

/// Run `cmd` and give up (killing it, failing the test) after 20 s.
pub fn run_bounded(cmd: &mut Command) -> Run {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting boxwright");
    let started = Instant::now();
    while child.try_wait().expect("waiting").is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} still running after 20 s: it hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("collecting output");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

pub fn blob_file(layout: &Path, digest: &str) -> PathBuf {
    layout.join("blobs/sha256").join(&digest["sha256:".len()..])
}

/// Write `data` as a blob of `layout`; its digest.
pub fn put(layout: &Path, data: &[u8]) -> String {
    let d = sha256(data);
    fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    fs::write(blob_file(layout, &d), data).unwrap();
    d
}

/// A linux/amd64 image in `layout` (config and manifest written, layers
/// described by `(digest, size)` and left to the caller), named `tag`.
pub fn image_of(layout: &Path, layers: &[(String, u64)], tag: &str) -> (String, Vec<u8>) {
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.0.clone()).collect::<Vec<_>>()},
    }))
    .unwrap();
    let config_digest = put(layout, &config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": layers.iter().map(|(d, s)| json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": s,
        })).collect::<Vec<_>>(),
    }))
    .unwrap();
    let manifest_digest = put(layout, &manifest);
    write_index(layout, &manifest_digest, manifest.len() as u64, tag);
    (manifest_digest, manifest)
}

pub fn write_index(layout: &Path, manifest_digest: &str, size: u64, tag: &str) {
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let _ = fs::remove_file(layout.join("index.json"));
    fs::write(layout.join("index.json"), index.to_string()).unwrap();
}

fn inspect(layout: &Path, extra: &[&str]) -> Run {
    run_bounded(boxwright().arg("inspect").args(extra).arg(layout))
}

/// `build` of a one-layer recipe whose base is the layout `base`, into `out`.
fn build_on(base: &Path, out: &Path) -> Run {
    let dir = out.parent().unwrap();
    let recipe = dir.join("app.toml");
    write(
        &recipe,
        &format!(
            "[image]\nname = \"app\"\nbase = \"oci:{}\"\n\n[[layer]]\n[[layer.entry]]\ncontent = \"app\"\ndest = \"/app.txt\"\n",
            base.display()
        ),
    );
    run_bounded(
        boxwright()
            .args(["build", "--quiet", "-o"])
            .arg(out)
            .arg(&recipe),
    )
}

fn push(env: &Env, layout: &Path, to: &str) -> Run {
    run_bounded(env.cmd().arg("push").arg(layout).args(["--to", to]))
}

/// Exit 2, the message naming `file` and saying `what`.
fn refused(r: &Run, file: &Path, what: &str) {
    assert_code(r, 2);
    assert!(
        r.stderr.contains(&file.display().to_string()) && r.stderr.contains(what),
        "expected {what:?} naming {}:\n{}",
        file.display(),
        r.stderr
    );
}

/// Nothing but `keep` in `dir`: no output, no temporary directory.
fn only(dir: &Path, keep: &[&str]) {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, keep, "left in {}", dir.display());
}

/// Figure: a layer blob that is a symbolic link to /etc/passwd, described
/// with /etc/passwd's own digest and size, is refused by push (before any
/// request), by a build on it (no output, no temp dir), and reported by
/// `inspect --check`; plain inspect, which reads no layer, succeeds.
#[test]
fn a_symlinked_blob_with_matching_digest_and_size_is_refused_everywhere() {
    let t = tempdir();
    let base = t.path().join("base");
    let passwd = fs::read("/etc/passwd").unwrap();
    let d = sha256(&passwd);
    fs::create_dir_all(base.join("blobs/sha256")).unwrap();
    symlink("/etc/passwd", blob_file(&base, &d)).unwrap();
    image_of(&base, &[(d.clone(), passwd.len() as u64)], "1");
    let file = blob_file(&base, &d);

    assert_code(&inspect(&base, &[]), 0);
    let r = inspect(&base, &["--check", "--json"]);
    assert_code(&r, 1);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let layer = &v["check"]["blobs"][2];
    assert_eq!(layer["digest"], d.as_str());
    assert_eq!(layer["status"], "not-regular", "{v}");

    let registry = Registry::start();
    let r = push(
        &Env::new(),
        &base,
        &format!("{}/acme/app:1", registry.host()),
    );
    refused(&r, &file, "symbolic link");
    assert!(registry.stored_blobs().is_empty(), "nothing was uploaded");

    let out = t.path().join("out");
    refused(&build_on(&base, &out), &file, "symbolic link");
    only(t.path(), &["app.toml", "base"]);
}

/// Figure: a manifest that is a symbolic link (to a file outside holding the
/// manifest's exact bytes) is refused by inspect, push and build (exit 2),
/// and reported by `inspect --check` (exit 1).
#[test]
fn a_symlinked_manifest_is_refused() {
    let t = tempdir();
    let base = t.path().join("base");
    let img = tiny_oci_layout(&base, "1", b"symlinked manifest");
    let file = blob_file(&base, &img.manifest_digest);
    let outside = t.path().join("manifest.json");
    fs::rename(&file, &outside).unwrap();
    symlink(&outside, &file).unwrap();
    refused(&inspect(&base, &[]), &file, "symbolic link");
    let r = inspect(&base, &["--check"]);
    assert_code(&r, 1);
    assert!(
        r.stdout.contains("not-regular") && r.stdout.contains("symbolic link"),
        "{}",
        r.stdout
    );
    let registry = Registry::start();
    let r = push(
        &Env::new(),
        &base,
        &format!("{}/acme/app:1", registry.host()),
    );
    refused(&r, &file, "symbolic link");
    refused(
        &build_on(&base, &t.path().join("out")),
        &file,
        "symbolic link",
    );
}

/// Figure: index.json as a FIFO (nobody writing) makes inspect, push and
/// build exit 2 at once, naming it; none of them waits for a writer.
#[test]
fn a_fifo_index_json_is_refused_without_hanging() {
    let t = tempdir();
    let base = t.path().join("base");
    tiny_oci_layout(&base, "1", b"fifo index");
    let index = base.join("index.json");
    fs::remove_file(&index).unwrap();
    mkfifo(&index);
    refused(&inspect(&base, &[]), &index, "FIFO");
    refused(&inspect(&base, &["--check"]), &index, "FIFO");
    let r = push(&Env::new(), &base, "127.0.0.1:9/acme/app:1");
    refused(&r, &index, "FIFO");
    refused(&build_on(&base, &t.path().join("out")), &index, "FIFO");
}

/// Figure: a layer blob that is a FIFO is reported by `inspect --check`
/// (exit 1) and refused by push and build (exit 2), none of them hanging.
#[test]
fn a_fifo_blob_is_refused_without_hanging() {
    let t = tempdir();
    let base = t.path().join("base");
    let img = tiny_oci_layout(&base, "1", b"fifo blob");
    let file = blob_file(&base, &img.layer_digest);
    fs::remove_file(&file).unwrap();
    mkfifo(&file);
    let r = inspect(&base, &["--check"]);
    assert_code(&r, 1);
    assert!(
        r.stdout.contains("not-regular") && r.stdout.contains("FIFO"),
        "{}",
        r.stdout
    );
    let registry = Registry::start();
    let r = push(
        &Env::new(),
        &base,
        &format!("{}/acme/app:1", registry.host()),
    );
    refused(&r, &file, "FIFO");
    refused(&build_on(&base, &t.path().join("out")), &file, "FIFO");
    only(t.path(), &["app.toml", "base"]);
}

/// Figure: a base layer that is a symbolic link to /dev/zero (described as
/// 1 GiB) is refused at once: the build neither runs for ever nor leaves a
/// temporary directory.
#[test]
fn a_dev_zero_base_layer_is_refused() {
    let t = tempdir();
    let base = t.path().join("base");
    let d = sha256(b"not really");
    fs::create_dir_all(base.join("blobs/sha256")).unwrap();
    symlink("/dev/zero", blob_file(&base, &d)).unwrap();
    image_of(&base, &[(d.clone(), 1 << 30)], "1");
    let started = Instant::now();
    refused(
        &build_on(&base, &t.path().join("out")),
        &blob_file(&base, &d),
        "symbolic link",
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    only(t.path(), &["app.toml", "base"]);
}

/// Figure: a 2 GiB sparse index.json is refused by its size (inspect exits
/// 2 within seconds, naming it), never read into memory.
#[test]
fn a_huge_sparse_index_json_is_refused_by_size() {
    let t = tempdir();
    let base = t.path().join("base");
    tiny_oci_layout(&base, "1", b"huge index");
    let index = base.join("index.json");
    let f = fs::OpenOptions::new().write(true).open(&index).unwrap();
    f.set_len(2 << 30).unwrap();
    let started = Instant::now();
    refused(&inspect(&base, &[]), &index, "too big");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// Figure: index.json describing the manifest with a wrong size (one byte
/// more, or less) is refused by inspect, push and build, naming the
/// manifest's file, even though the manifest's digest is right.
#[test]
fn a_size_mismatch_in_index_json_is_refused() {
    for delta in [1i64, -1] {
        let t = tempdir();
        let base = t.path().join("base");
        let img = tiny_oci_layout(&base, "1", b"size mismatch");
        let size = (img.manifest.len() as i64 + delta) as u64;
        write_index(&base, &img.manifest_digest, size, "1");
        let file = blob_file(&base, &img.manifest_digest);
        let what = if delta > 0 { "truncated" } else { "too long" };
        refused(&inspect(&base, &[]), &file, what);
        let r = push(&Env::new(), &base, "127.0.0.1:9/acme/app:1");
        refused(&r, &file, what);
        refused(&build_on(&base, &t.path().join("out")), &file, what);
    }
}

/// Figure: a layer with the right size but corrupt bytes is never sent:
/// the push fails as bad input (exit 2) before the layer's first byte (the upload requests carry
/// less than the layer's 64 KiB, the config's few hundred bytes at most),
/// the registry stores nothing of it, and the error names the file.
#[test]
fn a_corrupt_blob_is_never_uploaded() {
    let t = tempdir();
    let base = t.path().join("base");
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..65536)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let img = tiny_oci_layout(&base, "1", &noise);
    assert!(
        img.layer_size > 60_000,
        "the layer does not compress: {}",
        img.layer_size
    );
    let file = blob_file(&base, &img.layer_digest);
    let mut bytes = fs::read(&file).unwrap();
    bytes[100] ^= 0xff;
    fs::write(&file, bytes).unwrap();
    let registry = Registry::start();
    let proxy = FaultProxy::start(&registry);
    let r = push(&Env::new(), &base, &format!("{}/acme/app:1", proxy.host()));
    assert_code(&r, 2);
    assert!(
        r.stderr.contains(&file.display().to_string()) && r.stderr.contains("corrupt"),
        "{}",
        r.stderr
    );
    let sent: u64 = proxy
        .log()
        .iter()
        .filter(|e| e.path.contains("/blobs/uploads/"))
        .map(|e| e.body_bytes)
        .sum();
    assert!(sent < 10_000, "{sent} bytes sent");
    assert!(!registry.stored_blobs().contains(&img.layer_digest));
    let r = inspect(&base, &["--check"]);
    assert_code(&r, 1);
    assert!(r.stdout.contains("corrupt"), "{}", r.stdout);
}

/// Figure: a hard-linked blob is a regular file: inspect --check, push and
/// build take it; the build's output holds its own copy of every blob, none
/// a symbolic link.
#[test]
fn hard_linked_blobs_are_regular_files() {
    let t = tempdir();
    let base = t.path().join("base");
    let img = tiny_oci_layout(&base, "1", b"hard link");
    let file = blob_file(&base, &img.layer_digest);
    let outside = t.path().join("layer.bin");
    fs::rename(&file, &outside).unwrap();
    fs::hard_link(&outside, &file).unwrap();
    assert_code(&inspect(&base, &["--check"]), 0);
    let out = t.path().join("out");
    assert_code(&build_on(&base, &out), 0);
    for e in fs::read_dir(out.join("blobs/sha256")).unwrap() {
        let m = fs::symlink_metadata(e.unwrap().path()).unwrap();
        assert!(m.file_type().is_file());
    }
    let registry = Registry::start();
    assert_code(
        &push(
            &Env::new(),
            &base,
            &format!("{}/acme/app:1", registry.host()),
        ),
        0,
    );
}

pub fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    let r = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
    assert_eq!(
        r,
        0,
        "mkfifo {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// Figure: a base layout whose layer claims a media type no layer has (the
/// bytes are a good gzip tar) is refused, exit 2, naming the type; no
/// output is written.
#[test]
fn a_base_layer_of_another_media_type_is_refused() {
    let t = tempdir();
    let base = t.path().join("base");
    let img = tiny_oci_layout(&base, "1", b"a layer");
    let text = String::from_utf8(img.manifest).unwrap();
    let evil = text.replace(
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/x-evil",
    );
    assert_ne!(evil, text);
    let digest = put(&base, evil.as_bytes());
    write_index(&base, &digest, evil.len() as u64, "1");
    let r = build_on(&base, &t.path().join("out"));
    assert_code(&r, 2);
    assert!(r.stderr.contains("application/x-evil"), "{}", r.stderr);
    assert!(!t.path().join("out").exists());
}

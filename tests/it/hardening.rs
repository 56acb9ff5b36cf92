//! The registry client against misbehaving registries, through the real
//! binary: a registry that never answers, transient 503s on upload POSTs and
//! HEADs, mounts refused by the token server or failing with 5xx, and a
//! 1-byte chunked upload. Every test states the figure it checks.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{assert_code, assert_ok, boxwright, run, Run};
use crate::env::Env;
use crate::support::{
    skopeo, tempdir, tiny_oci_layout, Fault, FaultProxy, Injected, LogEntry, Registry, Scripted,
    TinyImage, TokenServer,
};

/// `boxwright push LAYOUT --to TO EXTRA...` in `env`.
fn push(env: &Env, layout: &Path, to: &str, extra: &[&str]) -> Run {
    run(env
        .cmd()
        .arg("push")
        .arg(layout)
        .args(["--to", to])
        .args(extra))
}

fn image(seed: &[u8]) -> (tempfile::TempDir, PathBuf, TinyImage) {
    let dir = tempdir();
    let layout = dir.path().join("layout");
    let img = tiny_oci_layout(&layout, "1", seed);
    (dir, layout, img)
}

fn upload_bytes(log: &[LogEntry]) -> u64 {
    log.iter()
        .filter(|e| e.path.contains("/blobs/uploads/"))
        .map(|e| e.body_bytes)
        .sum()
}

/// A "registry" that accepts every connection and never says a word.
/// Figures: with BOXWRIGHT_READ_TIMEOUT=2 and --retries 1 the push
/// ends with exit 1 in under 40 s (it used to hang for ever), and stderr
/// names the registry and the timeout.
#[test]
fn push_to_a_registry_that_never_answers_fails_within_the_timeout() {
    let silent = Scripted::silent();
    let host = silent.host();
    let (_d, layout, _) = image(b"silent");
    let client = Env::new();
    let started = Instant::now();
    let mut child = client
        .cmd()
        .env("BOXWRIGHT_READ_TIMEOUT", "2")
        .arg("push")
        .arg(&layout)
        .args(["--to", &format!("{host}/acme/app:1"), "--retries", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = started + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("boxwright push still running after 90 s against a silent registry");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let took = started.elapsed();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(took < Duration::from_secs(40), "took {took:?}\n{stderr}");
    assert!(stderr.contains(&host), "{stderr}");
    assert!(stderr.contains("timed out"), "{stderr}");
}

/// A `BOXWRIGHT_READ_TIMEOUT` that is not a number of seconds above 0 (a
/// unit, zero, one too big for a timeout) is refused before any request,
/// as a bad `BOXWRIGHT_CACHE_MAX` or `SOURCE_DATE_EPOCH` is, rather than
/// taken silently as the default or crashing. Figures: exit 2 for each, the
/// registry holds no blob; an empty value is the default, and the push works.
#[test]
fn a_bad_read_timeout_from_the_environment_is_refused_before_any_request() {
    let reg = Registry::start();
    let (_d, layout, _) = image(b"read timeout");
    let to = format!("{}/acme/app:1", reg.host());
    for bad in ["30s", "0", "-1", "1e30", "NaN"] {
        let r = run(Env::new()
            .cmd()
            .env("BOXWRIGHT_READ_TIMEOUT", bad)
            .arg("push")
            .arg(&layout)
            .args(["--to", &to]));
        assert_code(&r, 2);
        assert!(
            r.stderr.contains("BOXWRIGHT_READ_TIMEOUT"),
            "{bad}: {}",
            r.stderr
        );
        assert!(reg.stored_blobs().is_empty(), "{bad}: a blob was pushed");
    }
    let r = run(Env::new()
        .cmd()
        .env("BOXWRIGHT_READ_TIMEOUT", "")
        .arg("push")
        .arg(&layout)
        .args(["--to", &to]));
    assert_ok(&r);
}

/// A 503 on the first upload POST and on a blob HEAD are retried (both are
/// idempotent: a POST only opens an upload session). Figures: exit 0, both
/// faults were injected, each blob's bytes arrived once, and the registry
/// serves the image's digest.
#[test]
fn push_survives_503_on_the_first_upload_post_and_on_a_head() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg);
    let (_d, layout, img) = image(b"post and head");
    proxy.fail_next("HEAD", Fault::Unavailable);
    proxy.fail_next("POST", Fault::Unavailable);
    let r = push(
        &Env::new(),
        &layout,
        &format!("{}/acme/app:1", proxy.host()),
        &[],
    );
    assert_ok(&r);
    let log = proxy.log();
    assert_eq!(
        proxy.injected_count(Injected::Fault(Fault::Unavailable)),
        2,
        "{log:#?}"
    );
    let first_post = log.iter().find(|e| e.method == "POST").unwrap();
    assert_eq!(first_post.status, Some(503), "{log:#?}");
    assert_eq!(upload_bytes(&log), img.blob_bytes, "{log:#?}");
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/acme/app:1", proxy.host()),
    ]);
    assert_eq!(raw.as_bytes(), img.manifest.as_slice());
}

/// Mounts need a token with pull on the source too. `carol` may push `mirror/*` but not pull
/// `acme/app`, the mount source: the token she gets lacks the source scope
/// and the registry refuses the mount. Figures: exit 0, every blob's bytes
/// uploaded once into `mirror/app`, no blob mounted.
#[test]
fn mount_refused_for_lack_of_source_scope_falls_back_to_upload() {
    let tokens = TokenServer::builder()
        .user("alice", "alice-pass", &["pull", "push"])
        .user_access("carol", "carol-pass", &[("mirror/*", &["pull", "push"])])
        .anonymous(None)
        .start();
    let reg = Registry::with_token_auth(&tokens);
    let proxy = FaultProxy::start(&reg);
    let host = proxy.host();
    let (_d, layout, img) = image(b"scoped mount");
    assert_ok(&push(
        &Env::with_auths(&[(&host, "alice", "alice-pass")]),
        &layout,
        &format!("{host}/acme/app:1"),
        &[],
    ));
    proxy.reset();
    let r = push(
        &Env::with_auths(&[(&host, "carol", "carol-pass")]),
        &layout,
        &format!("{host}/mirror/app:1"),
        &["--mount-from", &format!("{host}/acme/app"), "--json"],
    );
    assert_ok(&r);
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    let t = &report["targets"][0];
    assert_eq!(t["ok"], true, "{report:#}");
    assert_eq!(t["blobs_mounted"], 0, "{report:#}");
    assert_eq!(t["blobs_uploaded"], 2, "{report:#}");
    let log = proxy.log();
    assert!(
        log.iter().any(|e| e.method == "POST"
            && e.query.as_deref().is_some_and(|q| q.contains("mount="))
            && e.status == Some(401)),
        "{log:#?}"
    );
    assert_eq!(upload_bytes(&log), img.blob_bytes, "{log:#?}");
}

/// A mount is only an optimisation, so its failure must not fail the push.
/// The mount POST answers 500 and `--retries 0`
/// leaves no retry: that used to fail the whole registry. Figures: exit 0,
/// the faulted POST carried `mount=`, the blobs arrived by plain upload.
#[test]
fn mount_failing_with_500_falls_back_to_upload() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg);
    let host = proxy.host();
    let (_d, layout, img) = image(b"failing mount");
    let client = Env::new();
    assert_ok(&push(&client, &layout, &format!("{host}/acme/app:1"), &[]));
    proxy.reset();
    proxy.fail_next("POST", Fault::InternalError);
    let r = push(
        &client,
        &layout,
        &format!("{host}/mirror/app:1"),
        &[
            "--mount-from",
            &format!("{host}/acme/app"),
            "--retries",
            "0",
            "--json",
        ],
    );
    assert_ok(&r);
    let log = proxy.log();
    let faulted: Vec<&LogEntry> = log
        .iter()
        .filter(|e| e.injected == Some(Injected::Fault(Fault::InternalError)))
        .collect();
    assert_eq!(faulted.len(), 1, "{log:#?}");
    assert!(faulted[0]
        .query
        .as_deref()
        .is_some_and(|q| q.contains("mount=")));
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    let t = &report["targets"][0];
    assert_eq!(t["ok"], true, "{report:#}");
    // One blob was mounted, the one whose mount failed was uploaded.
    assert_eq!(t["blobs_uploaded"], 1, "{report:#}");
    assert_eq!(t["blobs_mounted"], 1, "{report:#}");
    assert!(upload_bytes(&log) > 0 && upload_bytes(&log) < img.blob_bytes);
}

/// The reference registry answers a 1-byte chunk with `Range: 0-0`, which
/// then means one byte held (not none). `bench` uploads one 1-byte blob in
/// 1 MiB chunks to a real registry. Figures: exit 0, one PATCH with `Content-Range: 0-0`, no
/// failed upload, no retry.
#[test]
fn chunked_upload_of_a_one_byte_blob() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg);
    let r = run(boxwright().arg("bench").args([
        "--to",
        &format!("{}/bench/one", proxy.host()),
        "--blobs",
        "1",
        "--size",
        "1",
        "--mode",
        "chunked",
        "--chunk-size",
        "1MiB",
        "--concurrency",
        "1",
        "--json",
    ]));
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let run0 = &v["runs"][0];
    assert_eq!(run0["failed_uploads"], 0, "{run0:#}");
    assert_eq!(run0["retries"], 0, "{run0:#}");
    let log = proxy.log();
    let patches: Vec<&LogEntry> = log.iter().filter(|e| e.method == "PATCH").collect();
    assert_eq!(patches.len(), 1, "{log:#?}");
    assert_eq!(patches[0].content_range.as_deref(), Some("0-0"));
    assert_eq!(patches[0].body_bytes, 1);
}

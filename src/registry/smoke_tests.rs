//! Smoke test against a real `docker-registry` started by the test itself on
//! a free loopback port (skipped with a message when the binary is absent).
//! The shared harness in `tests/support/` covers auth, faults and figures.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;

use super::blobs::{MountResult, UploadMode};
use super::client::{Client, ClientOptions};
use super::credentials::CredentialStore;
use crate::oci::{
    canonical_json, Descriptor, Digest, Manifest, MEDIA_TYPE_CONFIG, MEDIA_TYPE_LAYER_GZIP,
    MEDIA_TYPE_MANIFEST,
};
use crate::progress;

pub(crate) struct TestRegistry {
    child: Child,
    pub host: String,
    _dir: tempfile::TempDir,
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Start an anonymous registry; `None` when `docker-registry` is missing.
pub(crate) fn start_registry() -> Option<TestRegistry> {
    if Command::new("docker-registry")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!("docker-registry not installed: skipping the smoke test");
        return None;
    }
    let dir = tempfile::tempdir().ok()?;
    let port = free_port();
    let cfg = dir.path().join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: smoke\n",
            dir.path().join("data").display()
        ),
    )
    .ok()?;
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let reg = TestRegistry {
        child,
        host: format!("127.0.0.1:{port}"),
        _dir: dir,
    };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(reg);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("docker-registry did not start on port {port}");
}

pub(crate) fn write_random(dir: &Path, name: &str, size: usize) -> (PathBuf, Digest) {
    let mut data = vec![0u8; size];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ size as u64 ^ name.len() as u64;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let p = dir.join(name);
    std::fs::write(&p, &data).unwrap();
    (p, Digest::of(&data))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_mounts_manifests_against_real_registry() {
    let Some(reg) = start_registry() else { return };
    let r = reg.host.as_str();
    let client = Client::new(
        ClientOptions::default(),
        CredentialStore::default(),
        progress::silent(),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();

    // Three blobs, three upload modes; sizes not multiples of the chunk.
    let (p1, d1) = write_random(tmp.path(), "l1", 3 * 1024 * 1024 + 17);
    let (p2, d2) = write_random(tmp.path(), "l2", 2 * 1024 * 1024 + 5);
    let (p3, d3) = write_random(tmp.path(), "l3", 1000);
    assert_eq!(client.blob_exists(r, "a/app", &d1).await.unwrap(), None);
    client
        .upload_blob(
            r,
            "a/app",
            &d1,
            3 * 1024 * 1024 + 17,
            &p1,
            UploadMode::Monolithic,
            None,
            None,
        )
        .await
        .unwrap();
    client
        .upload_blob(
            r,
            "a/app",
            &d2,
            2 * 1024 * 1024 + 5,
            &p2,
            UploadMode::Chunked(1024 * 1024),
            None,
            None,
        )
        .await
        .unwrap();
    client
        .upload_blob(r, "a/app", &d3, 1000, &p3, UploadMode::Streamed, None, None)
        .await
        .unwrap();
    assert_eq!(
        client.blob_exists(r, "a/app", &d1).await.unwrap(),
        Some(3 * 1024 * 1024 + 17)
    );
    assert_eq!(
        client.blob_exists(r, "a/app", &d2).await.unwrap(),
        Some(2 * 1024 * 1024 + 5)
    );

    // Mount into another repository: 201, no bytes.
    let before = client.stats(r).bytes_sent;
    assert!(matches!(
        client.mount_blob(r, "b/app", &d1, "a/app").await,
        MountResult::Mounted
    ));
    assert_eq!(client.stats(r).bytes_sent, before);
    assert!(client.blob_exists(r, "b/app", &d1).await.unwrap().is_some());
    // Mount of an unknown blob: 202 opens a session we can upload on.
    let (p4, d4) = write_random(tmp.path(), "l4", 4096);
    match client.mount_blob(r, "b/app", &d4, "a/app").await {
        MountResult::Session(s) => client
            .upload_blob(
                r,
                "b/app",
                &d4,
                4096,
                &p4,
                UploadMode::Monolithic,
                Some(s),
                None,
            )
            .await
            .unwrap(),
        other => panic!("expected a session, got {other:?}"),
    };
    assert!(client.blob_exists(r, "b/app", &d4).await.unwrap().is_some());

    // A wrong digest is refused and reported as such.
    let wrong = Digest::of(b"not the content");
    let e = client
        .upload_blob(
            r,
            "a/app",
            &wrong,
            1000,
            &p3,
            UploadMode::Monolithic,
            None,
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(400), "{e}");
    assert!(e.to_string().contains("DIGEST_INVALID"), "{e}");
    assert!(!e.to_string().contains("_state"), "{e}");

    // Manifest by digest, then tags.
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MEDIA_TYPE_MANIFEST.into()),
        artifact_type: None,
        config: Descriptor::new(MEDIA_TYPE_CONFIG, d3.clone(), 1000),
        layers: vec![
            Descriptor::new(MEDIA_TYPE_LAYER_GZIP, d1.clone(), 3 * 1024 * 1024 + 17),
            Descriptor::new(MEDIA_TYPE_LAYER_GZIP, d2.clone(), 2 * 1024 * 1024 + 5),
        ],
        subject: None,
        annotations: Default::default(),
    };
    let bytes = Bytes::from(canonical_json(&manifest));
    let md = Digest::of(&bytes);
    assert_eq!(
        client
            .put_manifest(r, "a/app", md.as_str(), bytes.clone(), MEDIA_TYPE_MANIFEST)
            .await
            .unwrap(),
        md
    );
    for t in ["1.0", "latest", "a", "b"] {
        client
            .put_manifest(r, "a/app", t, bytes.clone(), MEDIA_TYPE_MANIFEST)
            .await
            .unwrap();
    }
    let info = client
        .head_manifest(r, "a/app", "latest")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.digest, md);
    assert_eq!(info.media_type, MEDIA_TYPE_MANIFEST);
    assert_eq!(info.size, bytes.len() as u64);
    assert_eq!(
        client.head_manifest(r, "a/app", "nope").await.unwrap(),
        None
    );
    let (got, raw) = client.get_manifest(r, "a/app", md.as_str()).await.unwrap();
    assert_eq!((got.digest, raw), (md.clone(), bytes.to_vec()));
    let mut tags = client.list_tags(r, "a/app").await.unwrap();
    tags.sort();
    assert_eq!(tags, ["1.0", "a", "b", "latest"]);

    // Download, checked.
    let out = tmp.path().join("download");
    assert_eq!(
        client
            .get_blob_to_file(r, "b/app", &d1, 3 * 1024 * 1024 + 17, &out)
            .await
            .unwrap(),
        3 * 1024 * 1024 + 17
    );
    assert_eq!(Digest::of(&std::fs::read(&out).unwrap()), d1);
    let stats = client.stats(r);
    assert_eq!(stats.retries, 0);
    assert!(stats.requests.get("HEAD").copied().unwrap_or(0) >= 6);
}

pub(crate) struct Recorder(pub std::sync::Mutex<Vec<String>>);
impl crate::progress::Reporter for Recorder {
    fn log(&self, _: crate::progress::Level, msg: &str) {
        self.0.lock().unwrap().push(msg.to_string());
    }
    fn start(&self, _: &str, _: &str, _: Option<u64>) {}
    fn advance(&self, _: &str, _: u64) {}
    fn finish(&self, _: &str, _: &str) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_sends_ranges_and_logs_no_state() {
    let Some(reg) = start_registry() else { return };
    let r = reg.host.as_str();
    let rec = std::sync::Arc::new(Recorder(Default::default()));
    let client = Client::new(
        ClientOptions::default(),
        CredentialStore::default(),
        rec.clone(),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let size = 2 * 1024 * 1024 + 5;
    let (p, d) = write_random(tmp.path(), "c", size);
    client
        .upload_blob(
            r,
            "c/app",
            &d,
            size as u64,
            &p,
            UploadMode::Chunked(1024 * 1024),
            None,
            None,
        )
        .await
        .unwrap();
    let log = rec.0.lock().unwrap().clone();
    let patches = log.iter().filter(|l| l.starts_with("PATCH ")).count();
    assert_eq!(patches, 3, "{log:#?}");
    assert!(log.iter().all(|l| !l.contains("_state")), "{log:#?}");
    assert_eq!(client.stats(r).bytes_sent, size as u64);
}

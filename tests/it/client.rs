//! The registry client of the library (`boxwright::registry::Client`) on its
//! own: every blob, mount, manifest and tag operation against a real
//! `docker-registry`, and its hardening against registries that misbehave
//! (played by the scripted servers of `support`). Every test states the
//! figure it checks.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use boxwright::oci::{
    canonical_json, Descriptor, Digest, Manifest, MEDIA_TYPE_CONFIG, MEDIA_TYPE_LAYER_GZIP,
    MEDIA_TYPE_MANIFEST,
};
use boxwright::progress::{self, Level, Reporter};
use boxwright::registry::{
    AuthError, Client, ClientOptions, Credential, CredentialStore, ErrorKind, Held, MountResult,
    Pace, Secret, UploadMode,
};
use bytes::Bytes;

use crate::support::{tempdir, Answer, FaultProxy, LogEntry, Registry, Scripted};

fn client(opts: ClientOptions) -> Client {
    Client::new(opts, CredentialStore::default(), progress::silent())
        .expect("a client with default options")
}

fn fast_retries(max_retries: u32) -> ClientOptions {
    let mut o = ClientOptions::default();
    o.retry.max_retries = max_retries;
    o.retry.base = Duration::from_millis(10);
    o
}

/// `size` pseudo-random bytes in `dir/name`, and their digest.
fn write_random(dir: &Path, name: &str, size: usize) -> (PathBuf, Digest) {
    let data = crate::common::noise(size, size as u64 ^ name.len() as u64);
    let p = dir.join(name);
    std::fs::write(&p, &data).expect("writing a test blob");
    (p, Digest::of(&data))
}

/// Keeps every message the client logs, at every level.
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Reporter for Recorder {
    fn log(&self, _: Level, msg: &str) {
        self.0.lock().unwrap().push(msg.to_string());
    }
    fn start(&self, _: &str, _: &str, _: Option<u64>) {}
    fn advance(&self, _: &str, _: u64) {}
    fn finish(&self, _: &str, _: &str) {}
}

fn patches(log: &[LogEntry]) -> Vec<&LogEntry> {
    log.iter().filter(|e| e.method == "PATCH").collect()
}

/// Figures: three blobs in the three upload modes (sizes not multiples of
/// the chunk) are then present with their sizes; a mount of a blob the
/// registry holds is 201 and sends no byte; a mount of an unknown blob opens
/// a session (202) that an upload completes; a wrong digest is refused with
/// 400 `DIGEST_INVALID` and the error does not leak the session's `_state`;
/// a manifest put by digest and under four tags is found by HEAD and GET and
/// the tags are listed; a download is checked against its digest; no retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_mounts_manifests_against_real_registry() {
    let reg = Registry::start();
    let r = reg.host();
    let r = r.as_str();
    let client = client(ClientOptions::default());
    let tmp = tempdir();

    let (s1, s2) = (3 * 1024 * 1024 + 17, 2 * 1024 * 1024 + 5);
    let (p1, d1) = write_random(tmp.path(), "l1", s1);
    let (p2, d2) = write_random(tmp.path(), "l2", s2);
    let (p3, d3) = write_random(tmp.path(), "l3", 1000);
    let (s1, s2) = (s1 as u64, s2 as u64);
    assert_eq!(
        client.repo(r, "a/app").blob_exists(&d1).await.unwrap(),
        None
    );
    client
        .repo(r, "a/app")
        .upload_blob(&d1, s1, &p1, UploadMode::Monolithic, None, None)
        .await
        .unwrap();
    client
        .repo(r, "a/app")
        .upload_blob(&d2, s2, &p2, UploadMode::Chunked(1 << 20), None, None)
        .await
        .unwrap();
    client
        .repo(r, "a/app")
        .upload_blob(&d3, 1000, &p3, UploadMode::Streamed, None, None)
        .await
        .unwrap();
    assert_eq!(
        client.repo(r, "a/app").blob_exists(&d1).await.unwrap(),
        Some(Held { size: Some(s1) })
    );
    assert_eq!(
        client.repo(r, "a/app").blob_exists(&d2).await.unwrap(),
        Some(Held { size: Some(s2) })
    );

    // Mount into another repository: 201, no bytes.
    let before = client.stats(r).bytes_sent;
    assert!(matches!(
        client.repo(r, "b/app").mount_blob(&d1, "a/app").await,
        MountResult::Mounted
    ));
    assert_eq!(client.stats(r).bytes_sent, before);
    assert!(client
        .repo(r, "b/app")
        .blob_exists(&d1)
        .await
        .unwrap()
        .is_some());
    // Mount of an unknown blob: 202 opens a session we can upload on.
    let (p4, d4) = write_random(tmp.path(), "l4", 4096);
    match client.repo(r, "b/app").mount_blob(&d4, "a/app").await {
        MountResult::Session(s) => client
            .repo(r, "b/app")
            .upload_blob(&d4, 4096, &p4, UploadMode::Monolithic, Some(s), None)
            .await
            .unwrap(),
        other => panic!("expected a session, got {other:?}"),
    };
    assert!(client
        .repo(r, "b/app")
        .blob_exists(&d4)
        .await
        .unwrap()
        .is_some());

    // A wrong digest is refused and reported as such.
    let wrong = Digest::of(b"not the content");
    let e = client
        .repo(r, "a/app")
        .upload_blob(&wrong, 1000, &p3, UploadMode::Monolithic, None, None)
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
            Descriptor::new(MEDIA_TYPE_LAYER_GZIP, d1.clone(), s1),
            Descriptor::new(MEDIA_TYPE_LAYER_GZIP, d2.clone(), s2),
        ],
        subject: None,
        annotations: Default::default(),
    };
    let bytes = Bytes::from(canonical_json(&manifest));
    let md = Digest::of(&bytes);
    let put = client
        .repo(r, "a/app")
        .put_manifest(md.as_str(), bytes.clone(), MEDIA_TYPE_MANIFEST)
        .await
        .unwrap();
    assert_eq!(put, md);
    for t in ["1.0", "latest", "a", "b"] {
        client
            .repo(r, "a/app")
            .put_manifest(t, bytes.clone(), MEDIA_TYPE_MANIFEST)
            .await
            .unwrap();
    }
    let info = client
        .repo(r, "a/app")
        .head_manifest("latest")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.digest, md);
    assert_eq!(info.media_type, MEDIA_TYPE_MANIFEST);
    assert_eq!(info.size, bytes.len() as u64);
    assert_eq!(
        client.repo(r, "a/app").head_manifest("nope").await.unwrap(),
        None
    );
    let (got, raw) = client
        .repo(r, "a/app")
        .get_manifest(md.as_str())
        .await
        .unwrap();
    assert_eq!((got.digest, raw), (md.clone(), bytes.to_vec()));
    let mut tags = client.repo(r, "a/app").list_tags().await.unwrap();
    tags.sort();
    assert_eq!(tags, ["1.0", "a", "b", "latest"]);

    // Download, checked.
    let out = tmp.path().join("download");
    let got = client
        .repo(r, "b/app")
        .get_blob_to_file(&d1, s1, &out)
        .await
        .unwrap();
    assert_eq!(got, s1);
    assert_eq!(Digest::of(&std::fs::read(&out).unwrap()), d1);
    let stats = client.stats(r);
    assert_eq!(stats.retries, 0);
    assert!(stats.requests.get("HEAD").copied().unwrap_or(0) >= 6);
}

/// Figures: a 2 MiB + 5 bytes blob in 1 MiB chunks arrives as exactly three
/// PATCHes with the ranges `0-1048575`, `1048576-2097151`, `2097152-2097156`
/// and the blob's bytes (counted by the proxy and by the client); the
/// client logged its requests, and no log line shows the upload session's
/// `_state` (a registry secret carried in the session URL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_sends_ranges_and_logs_no_state() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg);
    let r = proxy.host();
    let r = r.as_str();
    let rec = Arc::new(Recorder::default());
    let client = Client::new(
        ClientOptions::default(),
        CredentialStore::default(),
        rec.clone(),
    )
    .unwrap();
    let tmp = tempdir();
    let size = 2 * 1024 * 1024 + 5;
    let (p, d) = write_random(tmp.path(), "c", size);
    let size = size as u64;
    client
        .repo(r, "c/app")
        .upload_blob(&d, size, &p, UploadMode::Chunked(1 << 20), None, None)
        .await
        .unwrap();
    let log = proxy.log();
    let ranges: Vec<Option<&str>> = patches(&log)
        .iter()
        .map(|e| e.content_range.as_deref())
        .collect();
    assert_eq!(
        ranges,
        [
            Some("0-1048575"),
            Some("1048576-2097151"),
            Some("2097152-2097156")
        ],
        "{log:#?}"
    );
    let patched: u64 = patches(&log).iter().map(|e| e.body_bytes).sum();
    assert_eq!(patched, size, "{log:#?}");
    assert_eq!(client.stats(r).bytes_sent, size);
    let lines = rec.0.lock().unwrap().clone();
    assert!(lines.iter().any(|l| l.contains("PATCH")), "{lines:#?}");
    assert!(lines.iter().all(|l| !l.contains("_state")), "{lines:#?}");
}

/// A chunked upload of a 1-byte blob. The reference registry acknowledges
/// the chunk `0-0` with `Range: 0-0`, which after that chunk means one byte
/// held (not zero). Figures: one PATCH `0-0` of 1 byte, the blob present
/// with size 1, no retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_of_one_byte_against_real_registry() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg);
    let r = proxy.host();
    let r = r.as_str();
    let mut opts = fast_retries(2);
    opts.read_timeout = Duration::from_secs(10);
    let c = client(opts);
    let tmp = tempdir();
    let (p, d) = write_random(tmp.path(), "one", 1);
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        c.repo(r, "one/app")
            .upload_blob(&d, 1, &p, UploadMode::Chunked(1 << 20), None, None),
    )
    .await
    .expect("upload hung");
    let log = proxy.log();
    out.unwrap_or_else(|e| panic!("{e}\n{log:#?}"));
    assert_eq!(
        c.repo(r, "one/app").blob_exists(&d).await.unwrap(),
        Some(Held { size: Some(1) })
    );
    let p = patches(&log);
    assert_eq!(p.len(), 1, "{log:#?}");
    assert_eq!(p[0].content_range.as_deref(), Some("0-0"), "{log:#?}");
    assert_eq!(p[0].body_bytes, 1, "{log:#?}");
    assert_eq!(c.stats(r).retries, 0, "{log:#?}");
}

/// A registry that accepts connections and never answers ends each attempt
/// after the read timeout (it used to hang for ever); the error, a retried
/// transport error, names the registry. Figures: 1 retry x 1 s timeout,
/// done in under 10 s, the `/v2/` ping tried twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_registry_times_out_and_is_retried() {
    let srv = Scripted::silent();
    let host = srv.host();
    let mut opts = fast_retries(1);
    opts.read_timeout = Duration::from_secs(1);
    let c = client(opts);
    let d = Digest::of(b"x");
    let started = Instant::now();
    let e = tokio::time::timeout(
        Duration::from_secs(20),
        c.repo(&host, "a/b").blob_exists(&d),
    )
    .await
    .expect("the client hung on a silent registry")
    .unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(matches!(e.kind, ErrorKind::Transport(_)), "{e}");
    assert!(e.is_temporary());
    let msg = e.to_string();
    assert!(msg.contains(&host), "{msg}");
    assert!(msg.contains("timed out"), "{msg}");
    assert_eq!(srv.requests().len(), 2, "{:?}", srv.requests());
}

fn oci_error(status: &str, code: &str, message: &str) -> Answer {
    let body = serde_json::json!({"errors": [{"code": code, "message": message}]});
    Answer::json(status, &body.to_string())
}

/// The retry decision looks at the OCI error code, not only the status:
/// GHCR's 403 "secondary rate limit" and a transient `BLOB_UPLOAD_UNKNOWN`
/// on the upload POST are retried, a real 403 `DENIED` is answered at once.
/// Figures: 3 POSTs, the third opens the session (2 retries); the DENIED
/// adds no retry and its code is shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_follow_the_error_code_not_only_the_status() {
    let posts = Arc::new(AtomicUsize::new(0));
    let p = posts.clone();
    let srv = Scripted::start(move |req| match (req.method.as_str(), req.path()) {
        ("GET", "/v2/") => Answer::new("200 OK"),
        ("POST", "/v2/ok/app/blobs/uploads/") => match p.fetch_add(1, Ordering::SeqCst) {
            0 => oci_error(
                "403 Forbidden",
                "DENIED",
                "You have exceeded a secondary rate limit.",
            ),
            1 => oci_error(
                "404 Not Found",
                "BLOB_UPLOAD_UNKNOWN",
                "blob upload unknown to registry",
            ),
            _ => Answer::new("202 Accepted").header("Location", "/v2/ok/app/blobs/uploads/s1"),
        },
        ("POST", _) => oci_error(
            "403 Forbidden",
            "DENIED",
            "requested access to the resource is denied",
        ),
        _ => Answer::new("404 Not Found"),
    });
    let host = srv.host();
    let c = client(fast_retries(3));
    let d = Digest::of(b"x");
    let s = c.repo(&host, "ok/app").start_upload(&d).await.unwrap();
    assert_eq!(s.location.path(), "/v2/ok/app/blobs/uploads/s1");
    assert_eq!(posts.load(Ordering::SeqCst), 3);
    assert_eq!(c.stats(&host).retries, 2);
    let e = c
        .repo(&host, "denied/app")
        .start_upload(&d)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(403));
    assert!(e.to_string().contains("DENIED"), "{e}");
    assert_eq!(c.stats(&host).retries, 2);
}

/// A token server that refuses the mount's scope set (push on the target,
/// pull on a source the user may not read) fails the mount before its POST
/// is sent; that is a refused mount, not an error, and a plain upload then
/// gets a token for the target alone. Figures: `Refused` naming the token
/// server's HTTP 403, no POST sent for the mount, then an upload session
/// opened with a target-only token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_whose_token_is_refused_is_a_refused_mount() {
    let realm: Arc<Mutex<String>> = Arc::default();
    let r = realm.clone();
    let srv = Scripted::start(move |req| {
        let path = req.path();
        let challenge = format!(r#"Bearer realm="{}",service="test""#, r.lock().unwrap());
        match req.method.as_str() {
            "GET" if path == "/v2/" => {
                Answer::new("401 Unauthorized").header("WWW-Authenticate", &challenge)
            }
            "GET" if path == "/token" && req.target.contains("secret%2Fsrc") => {
                oci_error("403 Forbidden", "DENIED", "no pull on secret/src")
            }
            "GET" if path == "/token" => Answer::new("200 OK").body(r#"{"token":"t"}"#),
            "POST" if path == "/v2/dst/app/blobs/uploads/" => {
                Answer::new("202 Accepted").header("Location", "/v2/dst/app/blobs/uploads/s1")
            }
            _ => Answer::new("404 Not Found"),
        }
    });
    let host = srv.host();
    *realm.lock().unwrap() = format!("http://{host}/token");
    let c = client(fast_retries(1));
    c.set_credential(&host, basic("carol", "pw"));
    let d = Digest::of(b"x");
    match c.repo(&host, "dst/app").mount_blob(&d, "secret/src").await {
        MountResult::Refused(why) => assert!(why.contains("HTTP 403"), "{why}"),
        other => panic!("expected a refused mount, got {other:?}"),
    }
    let seen = srv.requests();
    assert!(!seen.iter().any(|q| q.method == "POST"), "{seen:?}");
    let s = c.repo(&host, "dst/app").start_upload(&d).await.unwrap();
    assert_eq!(s.location.path(), "/v2/dst/app/blobs/uploads/s1");
}

/// A registry reached over plain HTTP (here on loopback, which always is)
/// whose token realm is plain http on another host would have the
/// password cross a network in clear text: it is refused before anything
/// is sent. Figures: the error is a refused realm (not a realm that could
/// not be reached), naming the registry and the realm, without the
/// password; the registry saw only its `GET /v2/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_never_go_in_clear_to_a_realm_on_another_host() {
    const PASSWORD: &str = "clear-text-password-3";
    let srv = Scripted::start(|req| match req.path() {
        "/v2/" => Answer::new("401 Unauthorized").header(
            "WWW-Authenticate",
            r#"Bearer realm="http://auth.example.invalid/token",service="test""#,
        ),
        _ => Answer::new("404 Not Found"),
    });
    let host = srv.host();
    let c = client(fast_retries(0));
    c.set_credential(&host, basic("bob", PASSWORD));
    let e = c
        .repo(&host, "a/app")
        .blob_exists(&Digest::of(b"x"))
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind, ErrorKind::Auth(AuthError::BadRealm { .. })),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(text.contains(&host), "{text}");
    assert!(text.contains("auth.example.invalid"), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
    let paths: Vec<String> = srv.requests().iter().map(|r| r.target.clone()).collect();
    assert_eq!(paths, ["/v2/"]);
}

/// A token realm holding its own `user:password@` does not make the
/// token request carry a second `Authorization` beside the credentials (as
/// docker, only those are sent). Figures: the token request has exactly
/// one `Authorization`, the credentials' Basic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_realm_with_userinfo_gets_only_the_credentials() {
    let realm: Arc<Mutex<String>> = Arc::default();
    let r = realm.clone();
    let srv = Scripted::start(move |req| {
        let challenge = format!(r#"Bearer realm="{}",service="test""#, r.lock().unwrap());
        match req.path() {
            "/v2/" => Answer::new("401 Unauthorized").header("WWW-Authenticate", &challenge),
            "/token" => Answer::json("200 OK", r#"{"token":"userinfo-token-1"}"#),
            _ => Answer::new("404 Not Found"),
        }
    });
    let host = srv.host();
    *realm.lock().unwrap() = format!("http://realm-user:realm-pass@{host}/token");
    let c = client(fast_retries(0));
    let password = Secret::new("userinfo-password-5");
    let ours = boxwright::registry::credentials::basic_authorization("bob", &password);
    c.set_credential(
        &host,
        Credential::Basic {
            username: "bob".into(),
            password,
        },
    );
    let held = c.repo(&host, "a/app").blob_exists(&Digest::of(b"x")).await;
    assert!(matches!(held, Ok(None)), "{held:?}");
    let seen = srv.requests();
    let token = seen
        .iter()
        .find(|q| q.path() == "/token")
        .expect("a token request");
    let auths: Vec<&str> = (token.headers.iter())
        .filter(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(auths, [ours.as_str()]);
}

/// Many tokens (a long run, or a token server that hands out a new one for
/// every scope) never push the credentials out of what is hidden in a
/// registry's words: a token server that echoes the password after 500
/// fresh tokens (1500 forms of them, more than the 1024 tokens' forms kept)
/// is shown without it. Figures: 500 tokens handed out, then the refusal's
/// text holds `***` and not the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tokens_never_unhide_the_password() {
    const PASSWORD: &str = "many-tokens-password-7";
    let realm: Arc<Mutex<String>> = Arc::default();
    let r = realm.clone();
    let issued = Arc::new(AtomicUsize::new(0));
    let n = issued.clone();
    let srv = Scripted::start(move |req| {
        let challenge = format!(r#"Bearer realm="{}",service="test""#, r.lock().unwrap());
        match req.path() {
            "/v2/" => Answer::new("401 Unauthorized").header("WWW-Authenticate", &challenge),
            "/token" if req.target.contains("last%2Fapp") => oci_error(
                "400 Bad Request",
                "DENIED",
                &format!("you are bob:{PASSWORD}, password {PASSWORD}"),
            ),
            "/token" => {
                // '/' and '+' give each token two more url-encoded forms.
                let i = n.fetch_add(1, Ordering::SeqCst);
                Answer::json("200 OK", &format!(r#"{{"token":"tok/{i}+padding"}}"#))
            }
            _ => Answer::new("404 Not Found"),
        }
    });
    let host = srv.host();
    *realm.lock().unwrap() = format!("http://{host}/token");
    let c = client(fast_retries(0));
    c.set_credential(&host, basic("bob", PASSWORD));
    let d = Digest::of(b"x");
    for i in 0..500 {
        let held = c.repo(&host, &format!("r{i}/app")).blob_exists(&d).await;
        assert!(matches!(held, Ok(None)), "{held:?}");
    }
    assert_eq!(issued.load(Ordering::SeqCst), 500);
    let e = c
        .repo(&host, "last/app")
        .blob_exists(&d)
        .await
        .unwrap_err()
        .to_string();
    assert!(!e.contains(PASSWORD), "{e}");
    assert!(e.contains("***"), "{e}");
}

/// A registry that sends more bytes than the descriptor's size (here:
/// without end) is cut off at once; the error names the digest and the
/// size, is not temporary, and no temp file is left. Figures: done in under
/// 10 s, the directory empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_longer_than_the_descriptor_is_aborted() {
    let srv = Scripted::start(|req| match (req.method.as_str(), req.path()) {
        ("GET", "/v2/") => Answer::new("200 OK"),
        ("GET", p) if p.contains("/blobs/") => Answer::Endless,
        _ => Answer::new("404 Not Found"),
    });
    let host = srv.host();
    let c = client(fast_retries(1));
    let d = Digest::of(b"0123456789");
    let dir = tempdir();
    let dest = dir.path().join("blob");
    let e = tokio::time::timeout(
        Duration::from_secs(10),
        c.repo(&host, "a/b").get_blob_to_file(&d, 10, &dest),
    )
    .await
    .expect("the download did not stop at the descriptor's size")
    .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(d.as_str()), "{msg}");
    assert!(msg.contains("10"), "{msg}");
    assert!(!e.is_temporary(), "{msg}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A registry that sends a blob download's bytes slowly, each well within
/// the read timeout, fails the pace once its grace has passed, long before
/// the deadline of the size it claims: a final (not temporary) deadline
/// naming the registry, the digest and the rate, asked once. Figures: with
/// a grace of 1 s and a floor of 1 KiB/s, a 50-byte blob sent a byte per
/// 50 ms (20 B/s) fails in under 2 s (it would take 2.5 s; its deadline is
/// 60 s), and no temp file is left; with a floor of 8 B/s it arrives whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_slower_than_the_pace_fails_after_its_grace() {
    let blob = "z".repeat(50);
    let d = Digest::of(blob.as_bytes());
    let served = blob.clone();
    let srv = Scripted::start(move |req| match (req.method.as_str(), req.path()) {
        ("GET", "/v2/") => Answer::new("200 OK"),
        ("GET", p) if p.contains("/blobs/") => Answer::new("200 OK")
            .body(&served)
            .trickled(Duration::from_millis(50)),
        _ => Answer::new("404 Not Found"),
    });
    let host = srv.host();
    let mut opts = fast_retries(3);
    opts.pace = Pace {
        grace: Duration::from_secs(1),
        floor: 1024,
    };
    let c = client(opts);
    let dir = tempdir();
    let dest = dir.path().join("blob");
    let started = Instant::now();
    let e = tokio::time::timeout(
        Duration::from_secs(15),
        c.repo(&host, "a/b").get_blob_to_file(&d, 50, &dest),
    )
    .await
    .expect("the trickling download was not stopped by its pace")
    .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(e.kind, ErrorKind::Deadline(_)), "{e:?}");
    assert!(!e.is_temporary(), "{e}");
    let msg = e.to_string();
    for said in [host.as_str(), d.as_str(), "B/s"] {
        assert!(msg.contains(said), "{msg}");
    }
    let gets = srv
        .requests()
        .iter()
        .filter(|q| q.path().contains("/blobs/"))
        .count();
    assert_eq!(gets, 1);
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");

    // Above the floor, past the grace, the blob arrives whole and checked.
    let mut opts = fast_retries(0);
    opts.pace = Pace {
        grace: Duration::from_secs(1),
        floor: 8,
    };
    let c = client(opts);
    let n = c
        .repo(&host, "a/b")
        .get_blob_to_file(&d, 50, &dest)
        .await
        .unwrap();
    assert_eq!(n, 50);
}

/// Basic credentials of `username` and `password`.
fn basic(username: &str, password: &str) -> Credential {
    Credential::Basic {
        username: username.into(),
        password: Secret::new(password),
    }
}

//! Tests of the client's hardening against misbehaving registries, each
//! with a small scripted HTTP/1.1 server on a loopback port (one request per
//! connection, `Connection: close`), and one against a real `docker-registry`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use super::blobs::UploadMode;
use super::client::{Client, ClientOptions};
use super::credentials::CredentialStore;
use super::error::ErrorKind;
use super::smoke_tests::{start_registry, write_random};
use crate::oci::Digest;
use crate::progress;

/// What the scripted server does with one request.
enum Answer {
    /// Write these bytes (a whole HTTP answer) and close.
    Raw(Vec<u8>),
    /// A 200 with a chunked body that never ends (64 KiB chunks of zeros).
    Endless,
    /// Read the request, then say nothing and keep the connection open.
    Silent,
}

fn answer(status: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut s = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    Answer::Raw(s.into_bytes())
}

type Script = dyn Fn(&str, &str) -> Answer + Send + Sync;

/// A scripted server: `script(method, path)` decides each answer (the
/// query, if any, stays on the path). Returns
/// its `127.0.0.1:PORT` and the requests seen (`"METHOD /path"`).
async fn serve(script: Arc<Script>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                continue;
            };
            let script = script.clone();
            let log = log.clone();
            tokio::spawn(async move {
                // Headers, then the body by Content-Length.
                let mut buf = Vec::new();
                let mut tmp = [0u8; 8192];
                let head_end = loop {
                    if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break p + 4;
                    }
                    match sock.read(&mut tmp).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let mut first = head.lines().next().unwrap_or("").split(' ');
                let method = first.next().unwrap_or("").to_string();
                let target = first.next().unwrap_or("").to_string();
                let path = target;
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                let mut have = buf.len() - head_end;
                while have < len {
                    match sock.read(&mut tmp).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => have += n,
                    }
                }
                let shown = path.split('?').next().unwrap_or("");
                log.lock().unwrap().push(format!("{method} {shown}"));
                match script(&method, &path) {
                    Answer::Raw(bytes) => {
                        let _ = sock.write_all(&bytes).await;
                        let _ = sock.shutdown().await;
                    }
                    Answer::Endless => {
                        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
                        if sock.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        let chunk = [0u8; 64 * 1024];
                        loop {
                            let size = format!("{:x}\r\n", chunk.len());
                            if sock.write_all(size.as_bytes()).await.is_err()
                                || sock.write_all(&chunk).await.is_err()
                                || sock.write_all(b"\r\n").await.is_err()
                            {
                                return;
                            }
                        }
                    }
                    Answer::Silent => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                }
            });
        }
    });
    (host, seen)
}

fn client(opts: ClientOptions) -> Client {
    Client::new(opts, CredentialStore::default(), progress::silent()).unwrap()
}

fn fast_retries(max_retries: u32) -> ClientOptions {
    let mut o = ClientOptions::default();
    o.retry.max_retries = max_retries;
    o.retry.base = Duration::from_millis(10);
    o
}

/// Finding 1: a registry that accepts connections and never answers ends
/// each attempt after the read timeout; the error (a retried transport
/// error) names the registry. Figure: 1 retry x 1 s timeout, done < 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_registry_times_out_and_is_retried() {
    let (host, seen) = serve(Arc::new(|_: &str, _: &str| Answer::Silent)).await;
    let mut opts = fast_retries(1);
    opts.read_timeout = Duration::from_secs(1);
    let c = client(opts);
    let d = Digest::of(b"x");
    let started = Instant::now();
    let e = tokio::time::timeout(Duration::from_secs(20), c.blob_exists(&host, "a/b", &d))
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
    // The /v2/ ping was tried twice (one retry).
    assert_eq!(seen.lock().unwrap().len(), 2, "{:?}", seen.lock().unwrap());
}

/// Finding 4: the retry decision looks at the OCI error code, not only the
/// status: GHCR's 403 "secondary rate limit" and a transient
/// `BLOB_UPLOAD_UNKNOWN` on the upload POST are retried, a real 403 DENIED
/// is answered at once. Figure: 3 POSTs, the third opens the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_follow_the_error_code_not_only_the_status() {
    let posts = Arc::new(AtomicUsize::new(0));
    let p = posts.clone();
    let (host, _) = serve(Arc::new(move |m: &str, path: &str| {
        let json = [("Content-Type", "application/json")];
        match (m, path) {
            ("GET", "/v2/") => answer("200 OK", &[], ""),
            ("POST", "/v2/ok/app/blobs/uploads/") => match p.fetch_add(1, Ordering::SeqCst) {
                0 => answer(
                    "403 Forbidden",
                    &json,
                    r#"{"errors":[{"code":"DENIED","message":"You have exceeded a secondary rate limit."}]}"#,
                ),
                1 => answer(
                    "404 Not Found",
                    &json,
                    r#"{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN","message":"blob upload unknown to registry"}]}"#,
                ),
                _ => answer(
                    "202 Accepted",
                    &[("Location", "/v2/ok/app/blobs/uploads/s1")],
                    "",
                ),
            },
            ("POST", _) => answer(
                "403 Forbidden",
                &json,
                r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#,
            ),
            _ => answer("404 Not Found", &[], ""),
        }
    }))
    .await;
    let c = client(fast_retries(3));
    let d = Digest::of(b"x");
    let s = c.start_upload(&host, "ok/app", &d).await.unwrap();
    assert_eq!(s.location.path(), "/v2/ok/app/blobs/uploads/s1");
    assert_eq!(posts.load(Ordering::SeqCst), 3);
    assert_eq!(c.stats(&host).retries, 2);
    // A plain DENIED is not temporary: no retry, its code shown.
    let e = c.start_upload(&host, "denied/app", &d).await.unwrap_err();
    assert_eq!(e.status(), Some(403));
    assert!(e.to_string().contains("DENIED"), "{e}");
    assert_eq!(c.stats(&host).retries, 2);
}

/// Finding 5: a token server that refuses the mount's scope set (push on
/// the target, pull on a source the user may not read) fails the mount
/// before its POST is sent; that is a refused mount, not an error, and a
/// plain upload then gets a token for the target alone. Figures: Refused
/// naming the token server's answer, no mount POST sent, then an upload
/// session opened with a target-only token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_whose_token_is_refused_is_a_refused_mount() {
    let realm: Arc<Mutex<String>> = Arc::default();
    let r = realm.clone();
    let (host, seen) = serve(Arc::new(move |m: &str, path: &str| {
        let auth = format!(
            r#"Bearer realm="{}",service="test""#,
            r.lock().unwrap().as_str()
        );
        match m {
            "GET" if path == "/v2/" => {
                answer("401 Unauthorized", &[("WWW-Authenticate", &auth)], "")
            }
            "GET" if path.starts_with("/token") && path.contains("secret%2Fsrc") => answer(
                "403 Forbidden",
                &[("Content-Type", "application/json")],
                r#"{"errors":[{"code":"DENIED","message":"no pull on secret/src"}]}"#,
            ),
            "GET" if path.starts_with("/token") => answer("200 OK", &[], r#"{"token":"t"}"#),
            "POST" if path == "/v2/dst/app/blobs/uploads/" => answer(
                "202 Accepted",
                &[("Location", "/v2/dst/app/blobs/uploads/s1")],
                "",
            ),
            _ => answer("404 Not Found", &[], ""),
        }
    }))
    .await;
    *realm.lock().unwrap() = format!("http://{host}/token");
    let c = client(fast_retries(1));
    c.set_credential(
        &host,
        super::credentials::Credential::Basic {
            username: "carol".into(),
            password: super::credentials::Secret::new("pw"),
        },
    );
    let d = Digest::of(b"x");
    match c.mount_blob(&host, "dst/app", &d, "secret/src").await {
        super::blobs::MountResult::Refused(why) => {
            assert!(why.contains("HTTP 403"), "{why}")
        }
        other => panic!("expected a refused mount, got {other:?}"),
    }
    assert!(
        !seen.lock().unwrap().iter().any(|l| l.starts_with("POST")),
        "{:?}",
        seen.lock().unwrap()
    );
    let s = c.start_upload(&host, "dst/app", &d).await.unwrap();
    assert_eq!(s.location.path(), "/v2/dst/app/blobs/uploads/s1");
}

/// Finding 6: a registry that sends more bytes than the descriptor's size
/// (here: without end) is cut off at once; the error names the digest and
/// no temp file is left. Figure: done < 10 s, directory empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_longer_than_the_descriptor_is_aborted() {
    let (host, _) = serve(Arc::new(|m: &str, path: &str| match (m, path) {
        ("GET", "/v2/") => answer("200 OK", &[], ""),
        ("GET", p) if p.contains("/blobs/") => Answer::Endless,
        _ => answer("404 Not Found", &[], ""),
    }))
    .await;
    let c = client(fast_retries(1));
    let d = Digest::of(b"0123456789");
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("blob");
    let e = tokio::time::timeout(
        Duration::from_secs(10),
        c.get_blob_to_file(&host, "a/b", &d, 10, &dest),
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

/// Finding 7: a chunked upload of a 1-byte blob. The reference registry
/// acknowledges the chunk `0-0` with `Range: 0-0`, which after that chunk
/// means one byte held. Figure: one PATCH, blob present with size 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_of_one_byte_against_real_registry() {
    let Some(reg) = start_registry() else { return };
    let r = reg.host.as_str();
    let rec = Arc::new(super::smoke_tests::Recorder(Default::default()));
    let mut opts = fast_retries(2);
    opts.read_timeout = Duration::from_secs(10);
    let c = Client::new(opts, CredentialStore::default(), rec.clone()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (p, d) = write_random(tmp.path(), "one", 1);
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        c.upload_blob(
            r,
            "one/app",
            &d,
            1,
            &p,
            UploadMode::Chunked(1024 * 1024),
            None,
            None,
        ),
    )
    .await
    .expect("upload hung");
    let log = rec.0.lock().unwrap().clone();
    out.unwrap_or_else(|e| panic!("{e}\n{log:#?}"));
    assert_eq!(c.blob_exists(r, "one/app", &d).await.unwrap(), Some(1));
    let patches = log.iter().filter(|l| l.starts_with("PATCH ")).count();
    assert_eq!(patches, 1, "{log:#?}");
    assert_eq!(c.stats(r).retries, 0, "{log:#?}");
}

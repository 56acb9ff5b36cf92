//! Test harness: real registries, a token server and a fault-injecting proxy,
//! all on free loopback ports, all stopped and cleaned up on `Drop`.
//!
//! Why: no machine here reaches ghcr.io or Docker Hub, so the integration tests
//! reproduce their behaviour with the reference registry (CNCF distribution
//! v2), a token server written for the tests (GHCR and Docker Hub hand out
//! bearer tokens per repository scope) and a proxy that injects the faults
//! those registries show: 429 with `Retry-After`, 5xx, dropped connections,
//! GHCR's 4 MiB cap on a PATCH, mounts answered 202 (an upload session)
//! instead of 201, `BLOB_UPLOAD_UNKNOWN` on a live session. What even the
//! proxy cannot imitate (a registry that never answers, endless bodies, tag
//! pagination) is played by the small [`scripted`] servers.
//!
//! Programs required (`scripts/test` installs their Debian packages; a test
//! that cannot run one FAILS saying so, see [`tools`]):
//! - `docker-registry` (the `docker-registry serve CONFIG.yml` binary),
//! - `htpasswd` (package `apache2-utils`, for basic-auth registries),
//! - `skopeo` (a real client to push through the harness),
//! - `umoci`, `oci-image-tool` (real consumers of OCI layouts),
//! - `jq` (used by `scripts/action.sh`, which the action tests run),
//! - `openssl` (an HTTPS token realm for the TLS tests, see [`tls`]).
//!
//! ```ignore
//! let tokens = TokenServer::start();                 // alice/secret: pull,push; anonymous: pull
//! let registry = Registry::with_token_auth(&tokens); // docker-registry on 127.0.0.1:PORT
//! let proxy = FaultProxy::start(&registry);          // push to proxy.host() instead
//! proxy.configure(|c| c.patch_cap = Some(4 << 20));
//! // ... run boxwright against proxy.host() ...
//! assert_eq!(proxy.bytes_received("PUT") + proxy.bytes_received("PATCH"), layer_len);
//! ```
//!
//! Everything is synchronous from the test's point of view: the in-process
//! servers run on their own small tokio runtime, so they work from `#[test]`
//! and `#[tokio::test]` alike.

#![allow(dead_code, unused_imports)]

mod layout;
mod proxy;
mod registry;
pub mod scripted;
mod tls;
mod token;
pub mod tools;

pub use layout::{tiny_oci_layout, TinyImage};
pub use proxy::{Fault, FaultConfig, FaultProxy, Injected, LogEntry, GHCR_PATCH_CAP};
pub use registry::Registry;
pub use scripted::{dead_host, Answer, Scripted};
pub use tls::{tls_host, TestCa, TlsTokenRealm};
pub use token::{Access, TokenRequest, TokenServer, TokenServerBuilder, PASSWORD, USER};

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bind port 0, read it, release it).
///
/// Prefer keeping the listener where you can (the in-process servers do);
/// this is for child processes that must bind themselves.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0 for a free port")
}

/// A temp dir removed on drop, named `boxwright-it-*` for easy debugging.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("boxwright-it-")
        .tempdir()
        .expect("creating a temp dir")
}

/// Runs `skopeo --insecure-policy ARGS...`, returns its stdout; panics with
/// the command line and its stderr when it fails.
///
/// `--insecure-policy` spares the tests from needing `/etc/containers/policy.json`.
pub fn skopeo(args: &[&str]) -> String {
    match try_skopeo(args) {
        Ok(out) => out,
        Err(err) => panic!("{err}"),
    }
}

/// Like [`skopeo`], but returns a failed run (command line, status, stderr)
/// as `Err`; a skopeo that cannot be run at all still fails the test.
pub fn try_skopeo(args: &[&str]) -> Result<String, String> {
    let out = tools::output(Command::new("skopeo").arg("--insecure-policy").args(args));
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "skopeo {} failed ({}):\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Waits until `addr` answers a plain HTTP `GET path` with any status line,
/// or `timeout` passes. Returns the status code.
pub(crate) fn wait_http(addr: SocketAddr, path: &str, timeout: Duration) -> Option<u16> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = http_status(addr, path) {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One blocking `GET path HTTP/1.0`; the status code, or `None` if nothing answered.
fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Reads a file for a panic message; never fails.
pub(crate) fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()))
}

/// A tokio runtime owned by an in-process server, shut down (without
/// blocking, so it is safe inside async tests) on drop.
pub(crate) struct ServerRuntime(Option<tokio::runtime::Runtime>);

impl ServerRuntime {
    pub(crate) fn new(name: &str) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(name)
            .enable_all()
            .build()
            .expect("building a tokio runtime for a test server");
        ServerRuntime(Some(rt))
    }

    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        self.0.as_ref().expect("runtime alive").handle()
    }
}

impl Drop for ServerRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// A standard-library listener on 127.0.0.1:0, made ready for tokio.
pub(crate) fn bind_loopback() -> std::net::TcpListener {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    l.set_nonblocking(true).expect("non-blocking listener");
    l
}

/// Formats Unix seconds as RFC 3339 UTC (`1970-01-01T00:00:00Z`).
pub(crate) fn rfc3339(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Unix time in seconds.
pub(crate) fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

//! The registry pair shared by the verify, copy and index tests: registry A
//! (token auth, GHCR-like) and B (basic auth, Docker-Hub-like), each behind a
//! fault proxy, and a docker config holding both credentials.

use std::collections::BTreeMap;
use std::process::Command;

use base64::Engine as _;

use crate::common::{boxwright, run, write, Run};
use crate::support::{skopeo, tempdir, FaultProxy, LogEntry, Registry, TokenServer};

pub const BASIC_USER: &str = "bob";
pub const BASIC_PASS: &str = "basic-Pa55-81c2aa";
pub const TOKEN_USER: &str = "alice";
pub const TOKEN_PASS: &str = "token-Pa55-3f90d4";

/// Registry A (token auth) and B (basic auth), each behind a proxy.
pub struct Pair {
    _basic: Registry,
    _tokens: TokenServer,
    _token: Registry,
    /// A: GHCR-like.
    pub a: FaultProxy,
    /// B: Docker-Hub-like.
    pub b: FaultProxy,
    pub env: tempfile::TempDir,
}

impl Pair {
    pub fn start() -> Pair {
        let basic = Registry::with_basic_auth(BASIC_USER, BASIC_PASS);
        let tokens = TokenServer::builder()
            .user(TOKEN_USER, TOKEN_PASS, &["pull", "push"])
            .start();
        let token = Registry::with_token_auth(&tokens);
        let a = FaultProxy::start(&token);
        let b = FaultProxy::start(&basic);
        let env = tempdir();
        let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
        let cfg = serde_json::json!({"auths": {
            a.host(): {"auth": b64(format!("{TOKEN_USER}:{TOKEN_PASS}"))},
            b.host(): {"auth": b64(format!("{BASIC_USER}:{BASIC_PASS}"))},
        }});
        write(&env.path().join("docker/config.json"), &cfg.to_string());
        Pair {
            _basic: basic,
            _tokens: tokens,
            _token: token,
            a,
            b,
            env,
        }
    }

    /// `boxwright` with this pair's credentials and a private HOME.
    pub fn cmd(&self) -> Command {
        let mut c = boxwright();
        c.env("DOCKER_CONFIG", self.env.path().join("docker"))
            .env("HOME", self.env.path())
            .env("XDG_CACHE_HOME", self.env.path().join("cache"))
            .env("NO_COLOR", "1");
        for v in ["REGISTRY_AUTH_FILE", "SSL_CERT_FILE", "CI", "GITHUB_TOKEN"] {
            c.env_remove(v);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        run(self.cmd().args(args))
    }

    pub fn reset(&self) {
        self.a.reset();
        self.b.reset();
    }

    pub fn creds(&self, p: &FaultProxy) -> String {
        if p.host() == self.a.host() {
            format!("{TOKEN_USER}:{TOKEN_PASS}")
        } else {
            format!("{BASIC_USER}:{BASIC_PASS}")
        }
    }

    /// The raw manifest bytes of `reference` on `p`, read by skopeo.
    pub fn raw(&self, p: &FaultProxy, reference: &str) -> String {
        let creds = self.creds(p);
        skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            &creds,
            &format!("docker://{reference}"),
        ])
    }
}

pub fn assert_code(r: &Run, code: i32) {
    assert_eq!(
        r.code, code,
        "exit code\nstdout:\n{}\nstderr:\n{}",
        r.stdout, r.stderr
    );
}

/// Request-body bytes the proxy received (blobs and manifests).
pub fn body_bytes(p: &FaultProxy) -> u64 {
    ["PUT", "PATCH", "POST"]
        .iter()
        .map(|m| p.bytes_received(m))
        .sum()
}

/// Body bytes of blob uploads only.
pub fn blob_upload_bytes(log: &[LogEntry]) -> u64 {
    log.iter()
        .filter(|e| e.path.contains("/blobs/uploads/"))
        .map(|e| e.body_bytes)
        .sum()
}

/// Successful blob upload PUTs, per `digest=`.
pub fn uploads_by_digest(log: &[LogEntry]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for e in log {
        if e.method == "PUT" && e.path.contains("/blobs/uploads/") && e.status == Some(201) {
            let q = e.query.clone().unwrap_or_default();
            let d = reqwest::Url::parse(&format!("http://x/?{q}"))
                .unwrap()
                .query_pairs()
                .find(|(k, _)| k == "digest")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            *m.entry(d).or_default() += 1;
        }
    }
    m
}

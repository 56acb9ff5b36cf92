//! The registry pair shared by the verify, copy and index tests: registry A
//! (token auth, GHCR-like) and B (basic auth, Docker-Hub-like), each behind a
//! fault proxy, and a docker config holding both credentials.

use std::process::Command;

use base64::Engine as _;

use crate::common::{boxwright, run, write, Run};
use crate::support::{skopeo, tempdir, FaultProxy, Registry, TokenServer};

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

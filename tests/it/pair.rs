//! The registry pair of a dual push, shared by the push, verify, copy and
//! index tests: registry A (bearer tokens from the test token server,
//! GHCR-like) and B (htpasswd basic auth, Docker-Hub-like), each behind a
//! counting fault proxy, and a client environment logged in to both.

use std::collections::BTreeMap;
use std::process::Command;

use crate::common::{run, Run};
use crate::env::Env;
use crate::support::{skopeo, FaultProxy, LogEntry, Registry, TokenServer};

pub const BASIC_USER: &str = "bob";
pub const BASIC_PASS: &str = "basic-Pa55-81c2aa";
pub const TOKEN_USER: &str = "alice";
pub const TOKEN_PASS: &str = "token-Pa55-3f90d4";

/// Registry A (token auth) and B (basic auth), each behind a proxy.
pub struct Pair {
    /// A's token server: what scopes were asked, by whom; expired tokens.
    pub tokens: TokenServer,
    /// A's registry itself (its storage), behind [`Pair::a`].
    pub reg_a: Registry,
    /// B's registry itself (its storage), behind [`Pair::b`].
    pub reg_b: Registry,
    /// A: GHCR-like.
    pub a: FaultProxy,
    /// B: Docker-Hub-like.
    pub b: FaultProxy,
    /// Logged in to A (as `alice`) and B (as `bob`).
    pub env: Env,
}

impl Pair {
    pub fn start() -> Pair {
        let reg_b = Registry::with_basic_auth(BASIC_USER, BASIC_PASS);
        let tokens = TokenServer::builder()
            .user(TOKEN_USER, TOKEN_PASS, &["pull", "push"])
            .start();
        let reg_a = Registry::with_token_auth(&tokens);
        let a = FaultProxy::start(&reg_a);
        let b = FaultProxy::start(&reg_b);
        let env = Env::with_auths(&[
            (&a.host(), TOKEN_USER, TOKEN_PASS),
            (&b.host(), BASIC_USER, BASIC_PASS),
        ]);
        Pair {
            tokens,
            reg_a,
            reg_b,
            a,
            b,
            env,
        }
    }

    /// B's proxy then A's.
    pub fn proxies(&self) -> [&FaultProxy; 2] {
        [&self.b, &self.a]
    }

    /// `boxwright` logged in to both registries, with a private HOME.
    pub fn cmd(&self) -> Command {
        self.env.cmd()
    }

    pub fn run(&self, args: &[&str]) -> Run {
        run(self.cmd().args(args))
    }

    pub fn reset(&self) {
        self.a.reset();
        self.b.reset();
    }

    /// `user:password` for the registry behind `p`.
    pub fn creds(&self, p: &FaultProxy) -> String {
        if p.host() == self.a.host() {
            token_creds()
        } else {
            basic_creds()
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

/// B's `user:password`.
pub fn basic_creds() -> String {
    format!("{BASIC_USER}:{BASIC_PASS}")
}

/// A's `user:password`.
pub fn token_creds() -> String {
    format!("{TOKEN_USER}:{TOKEN_PASS}")
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

//! The core against registries served over HTTPS (GHCR and Docker Hub are
//! only reached that way): push, pull and login with basic and token auth,
//! trusting a test CA given with `--ca-file`; an unknown CA fails naming the
//! registry and `--ca-file`; credentials never go to a plain-HTTP token
//! realm of an HTTPS registry.

use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;

use serde_json::Value;

use crate::common::{assert_ok, run, Run};
use crate::env::Env;
use crate::support::{
    tempdir, tiny_oci_layout, Registry, TestCa, TlsTokenRealm, TokenServer, PASSWORD, USER,
};

/// `boxwright login HOST -u USER --password-stdin EXTRA...`, `pass` on stdin.
fn login(env: &Env, host: &str, user: &str, pass: &str, extra: &[&str]) -> Run {
    let mut child = env
        .cmd()
        .args(["login", host, "-u", user, "--password-stdin"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{pass}\n").as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into(),
        stderr: String::from_utf8_lossy(&o.stderr).into(),
    }
}

fn push(env: &Env, layout: &Path, to: &str, extra: &[&str]) -> Run {
    run(env
        .cmd()
        .arg("push")
        .arg(layout)
        .args(["--to", to, "--json"])
        .args(extra))
}

fn pull(env: &Env, reference: &str, out: &Path, extra: &[&str]) -> Run {
    run(env
        .cmd()
        .arg("pull")
        .arg(reference)
        .arg("-o")
        .arg(out)
        .arg("--cache-dir")
        .arg(env.cache())
        .args(["--json"])
        .args(extra))
}

/// Figures, against an HTTPS registry with basic auth: login, push and pull
/// with `--ca-file` all succeed; the pulled manifest digest is the pushed
/// one; without `--ca-file`, push, pull and login fail with exit 1 naming
/// the registry and suggesting `--ca-file`, and login then writes nothing.
#[test]
fn basic_auth_registry_over_tls() {
    let ca = TestCa::new();
    let reg = Registry::with_basic_auth_tls("bob", "bob-pass", &ca);
    let host = reg.host();
    let ca_file = ca.ca_path();
    let ca_arg = ["--ca-file", ca_file.to_str().unwrap()];
    let env = Env::new();
    let dir = tempdir();
    let layout = dir.path().join("layout");
    let img = tiny_oci_layout(&layout, "1", b"tls basic");
    let to = format!("{host}/acme/app:1");

    // An unknown CA: every command names the registry and --ca-file.
    for r in [
        login(&env, &host, "bob", "bob-pass", &[]),
        push(&env, &layout, &to, &["--retries", "0"]),
        pull(&env, &to, &dir.path().join("no"), &["--retries", "0"]),
    ] {
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert!(r.stderr.contains(&host), "{}", r.stderr);
        assert!(r.stderr.contains("--ca-file"), "{}", r.stderr);
    }
    assert!(!env.config_dir().join("config.json").exists());

    assert_ok(&login(&env, &host, "bob", "bob-pass", &ca_arg));
    let r = push(&env, &layout, &to, &ca_arg);
    assert_ok(&r);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["digest"], img.manifest_digest.as_str(), "{}", r.stdout);
    let r = pull(&env, &to, &dir.path().join("pulled"), &ca_arg);
    assert_ok(&r);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["digest"], img.manifest_digest.as_str(), "{}", r.stdout);

    // bench measures the same registry (exit 0: every transfer went) only
    // when it trusts the CA.
    let bench = |extra: &[&str]| {
        run(env
            .cmd()
            .args(["bench", "--to", &format!("{host}/acme/bench")])
            .args(["--blobs", "1", "--size", "1KiB", "--concurrency", "1"])
            .args(["--mode", "monolithic", "--quiet"])
            .args(extra))
    };
    assert_ok(&bench(&ca_arg));
    assert_eq!(bench(&[]).code, 1, "bench trusted an unknown CA");
}

/// Figures, against an HTTPS registry with token auth whose realm is HTTPS
/// too (same CA): login (a token without scope) and push (pull and push
/// tokens) succeed with `--ca-file`, and a pull with the
/// stored credentials gets the pushed digest.
#[test]
fn token_auth_registry_over_tls() {
    let ca = TestCa::new();
    let tokens = TokenServer::start();
    let realm = TlsTokenRealm::start(
        &ca,
        &tokens,
        USER,
        &[
            &[],
            &["repository:acme/app:pull"],
            &["repository:acme/app:pull,push"],
        ],
    );
    let reg = Registry::with_token_auth_tls(&tokens, &realm.realm(), &ca);
    let host = reg.host();
    let ca_file = ca.ca_path();
    let ca_arg = ["--ca-file", ca_file.to_str().unwrap()];
    let env = Env::new();
    let dir = tempdir();
    let layout = dir.path().join("layout");
    let img = tiny_oci_layout(&layout, "1", b"tls token");
    let to = format!("{host}/acme/app:1");

    let r = login(&env, &host, USER, PASSWORD, &ca_arg);
    assert!(r.code == 0, "{}\nrealm log:\n{}", r.stderr, realm.log());
    let r = push(&env, &layout, &to, &ca_arg);
    assert!(r.code == 0, "{}\nrealm log:\n{}", r.stderr, realm.log());
    let r = pull(&env, &to, &dir.path().join("pulled"), &ca_arg);
    assert_ok(&r);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["digest"], img.manifest_digest.as_str(), "{}", r.stdout);
}

/// Figures: an HTTPS registry whose token realm is plain HTTP: login with
/// credentials fails (exit 1) saying it refuses to send them, and the token
/// server never saw the user; an anonymous pull may still use that realm
/// (its token request carries no user).
#[test]
fn credentials_never_go_to_a_plain_http_realm_of_an_https_registry() {
    let ca = TestCa::new();
    let tokens = TokenServer::start();
    let reg = Registry::with_token_auth_tls(&tokens, &tokens.realm(), &ca);
    let host = reg.host();
    let ca_file = ca.ca_path();
    let ca_arg = ["--ca-file", ca_file.to_str().unwrap()];
    let env = Env::new();

    let r = login(&env, &host, USER, PASSWORD, &ca_arg);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("refusing to send credentials"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains(PASSWORD), "{}", r.stderr);
    // The realm is at fault, not the credentials.
    assert!(!r.stderr.contains("check the user name"), "{}", r.stderr);
    let sent: Vec<_> = tokens
        .requests()
        .into_iter()
        .filter(|t| t.user.is_some())
        .collect();
    assert!(sent.is_empty(), "credentials reached the realm: {sent:#?}");

    // Anonymous: the realm is asked, without a user (nothing to pull: 404).
    let dir = tempdir();
    let r = pull(
        &env,
        &format!("{host}/acme/none:1"),
        &dir.path().join("out"),
        &ca_arg,
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(!tokens.requests().is_empty());
    assert!(tokens.requests().iter().all(|t| t.user.is_none()));
}

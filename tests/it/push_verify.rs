//! `push --verify` checks the pushed references with the client that
//! pushed: the credentials are looked up once and the registry's challenge
//! and tokens the push got are reused, instead of a second client logging
//! in again.

use crate::common::{assert_ok, run};
use crate::env::Env;
use crate::support::{tempdir, tiny_oci_layout, FaultProxy, Registry, TokenServer, PASSWORD, USER};

/// Figures: `push --verify` to a token-auth registry pings `GET /v2/` once
/// (one client learns the challenge once; a second client pinged again),
/// the verification's HEAD comes after the push's manifest PUT, and it
/// reports ok.
#[test]
fn verify_after_push_reuses_the_pushers_client() {
    let tokens = TokenServer::start();
    let reg = Registry::with_token_auth(&tokens);
    let proxy = FaultProxy::start(&reg);
    let host = proxy.host();
    let env = Env::with_auths(&[(&host, USER, PASSWORD)]);
    let dir = tempdir();
    let layout = dir.path().join("layout");
    tiny_oci_layout(&layout, "1", b"verify reuse");

    let r = run(env.cmd().arg("push").arg(&layout).args([
        "--to",
        &format!("{host}/acme/two:1"),
        "--verify",
        "--json",
    ]));
    assert_ok(&r);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["verify"]["ok"], true, "{}", r.stdout);
    let log = proxy.log();
    let pings = log
        .iter()
        .filter(|e| e.method == "GET" && e.path == "/v2/")
        .count();
    assert_eq!(pings, 1, "{log:#?}");
    let put = log
        .iter()
        .rposition(|e| e.method == "PUT" && e.path.contains("/manifests/"))
        .unwrap();
    assert!(
        log[put..]
            .iter()
            .any(|e| e.method == "HEAD" && e.path == "/v2/acme/two/manifests/1"),
        "{log:#?}"
    );
}

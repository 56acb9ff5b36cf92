//! `push --verify` checks the pushed references with the client that
//! pushed: the credentials are looked up once and the tokens the push got
//! are reused, instead of a second client logging in again.

use crate::common::{assert_ok, run};
use crate::env::Env;
use crate::support::{tempdir, tiny_oci_layout, Registry, TokenServer, PASSWORD, USER};

/// Figures: a push to a token-auth registry asks the token server N times;
/// the same push with `--verify` (to another repository) asks it N times
/// too, and the verification reports ok.
#[test]
fn verify_after_push_reuses_the_pushers_tokens() {
    let tokens = TokenServer::start();
    let reg = Registry::with_token_auth(&tokens);
    let host = reg.host();
    let env = Env::with_auths(&[(&host, USER, PASSWORD)]);
    let dir = tempdir();
    let layout = dir.path().join("layout");
    tiny_oci_layout(&layout, "1", b"verify reuse");

    let plain = run(env
        .cmd()
        .arg("push")
        .arg(&layout)
        .args(["--to", &format!("{host}/acme/one:1")]));
    assert_ok(&plain);
    let without = tokens.requests().len();
    tokens.clear_requests();

    let verified = run(env.cmd().arg("push").arg(&layout).args([
        "--to",
        &format!("{host}/acme/two:1"),
        "--verify",
        "--json",
    ]));
    assert_ok(&verified);
    let v: serde_json::Value = serde_json::from_str(&verified.stdout).unwrap();
    assert_eq!(v["verify"]["ok"], true, "{}", verified.stdout);
    let with = tokens.requests();
    assert_eq!(
        with.len(),
        without,
        "the verification asked for tokens again: {with:#?}"
    );
}

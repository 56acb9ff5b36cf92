//! `push --verify` checks the pushed references with the client that
//! pushed: the credentials are looked up once and the registry's challenge
//! and tokens the push got are reused, instead of a second client logging
//! in again.

use crate::common::{assert_code, assert_ok, run};
use crate::env::Env;
use crate::support::{
    tempdir, tiny_oci_layout, Answer, FaultProxy, Registry, Scripted, TokenServer, PASSWORD, USER,
};

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

/// `--verify` judges every reference against the pushed digest: a registry
/// that keeps serving its tags' old digest after the push (a stale cache in
/// front of it) is the one reported, even when its references outnumber
/// the fresh ones. Figures: exit 1; `verify.digest` is the pushed digest,
/// `verify.mismatched` the stale registry's two references and not the
/// fresh registry's, and the error names a stale one.
#[test]
fn verify_after_push_blames_the_registry_serving_a_stale_tag_even_when_it_has_more_tags() {
    let fresh = Registry::start();
    let image = crate::push::build_image(&[30_000], 81);
    let stale_digest = crate::common::sha256(b"an earlier release");
    let sizes = image.blobs.clone();
    let stale_head = stale_digest.clone();
    let stale = Scripted::start(move |req| {
        let path = req.path();
        match (req.method.as_str(), path) {
            (_, "/v2/") => Answer::json("200 OK", "{}"),
            ("HEAD", p) if p.contains("/blobs/") => {
                let d = p.rsplit('/').next().unwrap_or_default();
                match sizes.get(d) {
                    // The body is only there for its Content-Length.
                    Some(size) => Answer::new("200 OK")
                        .header("Docker-Content-Digest", d)
                        .body(&"x".repeat(*size as usize)),
                    None => Answer::json("404 Not Found", r#"{"errors":[]}"#),
                }
            }
            ("HEAD", p) if p.contains("/manifests/") => Answer::new("200 OK")
                .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                .header("Docker-Content-Digest", &stale_head),
            ("PUT", p) if p.contains("/manifests/") => Answer::new("201 Created"),
            _ => Answer::json("404 Not Found", r#"{"errors":[]}"#),
        }
    });
    let on_fresh = format!("{}/acme/app:1", fresh.host());
    let on_stale = [
        format!("{}/acme/app:1", stale.host()),
        format!("{}/acme/app:latest", stale.host()),
    ];
    let mut to = vec![on_fresh.clone()];
    to.extend(on_stale.iter().cloned());
    let r = crate::push::push(&Env::new(), &image, &to, &["--verify", "--json"]);
    assert_code(&r, 1);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let v = &doc["verify"];
    assert_eq!(v["digest"], image.digest.as_str(), "{doc:#}");
    let mismatched: Vec<&str> = (v["mismatched"].as_array().unwrap().iter())
        .filter_map(|m| m.as_str())
        .collect();
    assert_eq!(
        mismatched,
        on_stale.iter().map(String::as_str).collect::<Vec<_>>(),
        "{doc:#}"
    );
    assert!(r.stderr.contains(&on_stale[0]), "{}", r.stderr);
}

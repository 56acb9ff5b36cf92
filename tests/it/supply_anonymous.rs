//! `verify --anonymous`: per reference, can the image be pulled without
//! credentials? Against a plain registry, a basic-auth one, and two token
//! registries (one whose token server gives anonymous pull tokens, one
//! that refuses anonymous callers). The check with credentials still runs
//! and decides the exit code.

use serde_json::Value;

use crate::common::*;
use crate::env::Env;
use crate::push::{build_image, push};
use crate::support::{Registry, TokenServer};

const USER: &str = "carol";
const PASS: &str = "anon-check-Pa55-5d1e";

#[test]
fn supply_verify_anonymous_reports_each_registry() {
    let plain = Registry::start();
    let basic = Registry::with_basic_auth(USER, PASS);
    let open_tokens = TokenServer::builder()
        .user(USER, PASS, &["pull", "push"])
        .start();
    let open = Registry::with_token_auth(&open_tokens);
    let closed_tokens = TokenServer::builder()
        .user(USER, PASS, &["pull", "push"])
        .anonymous(None)
        .start();
    let closed = Registry::with_token_auth(&closed_tokens);
    let env = Env::with_auths(&[
        (&basic.host(), USER, PASS),
        (&open.host(), USER, PASS),
        (&closed.host(), USER, PASS),
    ]);
    let image = build_image(&[3000], 11);
    let refs: Vec<String> = [&plain, &basic, &open, &closed]
        .iter()
        .map(|r| format!("{}/acme/app:1", r.host()))
        .collect();
    assert_ok(&push(&env, &image, &refs, &[]));
    open_tokens.clear_requests();
    closed_tokens.clear_requests();

    let mut c = env.cmd();
    c.args(["verify", "--anonymous", "--json"]).args(&refs);
    let r = run(&mut c);
    assert_ok(&r);
    let doc: Value = serde_json::from_str(&r.stdout).unwrap();
    // With credentials, every reference names the image.
    assert_eq!(doc["ok"], true, "{doc}");
    assert_eq!(doc["digest"], image.digest.as_str());
    let rows = doc["anonymous"].as_array().unwrap();
    let got: Vec<(&str, bool, &str, Value)> = rows
        .iter()
        .map(|a| {
            (
                a["registry"].as_str().unwrap(),
                a["anonymous_pull"].as_bool().unwrap(),
                a["status"].as_str().unwrap(),
                a["http_status"].clone(),
            )
        })
        .collect();
    let (p, b, o, c) = (plain.host(), basic.host(), open.host(), closed.host());
    assert_eq!(
        got,
        [
            (p.as_str(), true, "ok", Value::from(200)),
            (b.as_str(), false, "unauthorized", Value::from(401)),
            (o.as_str(), true, "ok", Value::from(200)),
            // The token server refused an anonymous token: no registry answer.
            (c.as_str(), false, "unauthorized", Value::Null),
        ],
        "{doc}"
    );
    assert_eq!(rows[0]["digest"], image.digest.as_str());
    assert_eq!(rows[2]["digest"], image.digest.as_str());
    assert!(rows[3]["error"].as_str().is_some());
    // The probe sends no credentials on purpose: its errors point at
    // anonymous access (a private repository, anonymous pulls refused),
    // not at the credentials.
    assert!(
        rows[1]["error"]
            .as_str()
            .unwrap()
            .contains("refuses anonymous pulls"),
        "{doc}"
    );
    for row in [&rows[1], &rows[3]] {
        let e = row["error"].as_str().unwrap();
        assert!(!e.contains("check the credentials"), "{e}");
        assert!(!e.contains("credentials were refused"), "{e}");
    }

    // The anonymous requests carried no credentials: each token server saw
    // an anonymous caller (granted pull on one, refused on the other).
    let anon = |t: &TokenServer| -> Vec<u16> {
        t.requests()
            .iter()
            .filter(|q| q.user.is_none())
            .map(|q| q.status)
            .collect()
    };
    assert!(
        anon(&open_tokens).contains(&200),
        "{:?}",
        open_tokens.requests()
    );
    assert!(
        anon(&closed_tokens).contains(&401),
        "{:?}",
        closed_tokens.requests()
    );
    assert!(!format!("{}{}", r.stdout, r.stderr).contains(PASS));

    // Not an error by itself, and text output works too.
    let mut c = env.cmd();
    c.args(["verify", "--anonymous"]).args(&refs);
    let text = run(&mut c);
    assert_ok(&text);
    assert_eq!(
        text.stdout
            .lines()
            .filter(|l| l.contains("acme/app:1"))
            .count(),
        8,
        "{}",
        text.stdout
    );
}

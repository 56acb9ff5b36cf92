//! How a push with several targets is orchestrated, checked against what
//! the registries really hold: targets on one registry that fail on their
//! own, a tag moved from another image, and what the `--json` report and
//! exit code say about them.

use serde_json::Value;

use crate::common::{assert_code, assert_ok, run};
use crate::env::Env;
use crate::push::{remote_digest, write_recipe};
use crate::support::{tempdir, FaultProxy, Registry, TokenServer};

fn report(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("--json output: {e}\n{stdout}"))
}

fn target<'a>(report: &'a Value, reference: &str) -> &'a Value {
    (report["targets"].as_array().expect("targets"))
        .iter()
        .find(|t| t["reference"] == reference)
        .unwrap_or_else(|| panic!("no target {reference} in {report:#}"))
}

/// A registry where `carol` may push `acme/*` and only pull `mirror/*`,
/// and nobody anonymous may do anything.
fn scoped_registry() -> (TokenServer, Registry) {
    let tokens = TokenServer::builder()
        .user_access(
            "carol",
            "carol-pass",
            &[("acme/*", &["pull", "push"]), ("mirror/*", &["pull"])],
        )
        .anonymous(None)
        .start();
    let reg = Registry::with_token_auth(&tokens);
    (tokens, reg)
}

/// A primary and an optional backup on one registry, the backup's
/// repository read-only for the user: the backup fails on its own and the
/// primary is pushed and tagged. Figures: exit 0, the primary's tag serves
/// the built digest, the backup is `ok: false` with an error naming its
/// repository, and nothing is tagged there.
#[test]
fn an_optional_repository_that_refuses_the_push_does_not_fail_the_primary_on_its_registry() {
    let (_tokens, reg) = scoped_registry();
    let proxy = FaultProxy::start(&reg);
    let host = proxy.host();
    let dir = tempdir();
    let targets = format!(
        "\n[[target]]\nref = \"{host}/acme/app\"\n\n\
         [[target]]\nref = \"{host}/mirror/app\"\nrole = \"backup\"\noptional = true\n"
    );
    let recipe = write_recipe(dir.path(), &[150_000, 90_000], 71, &targets);
    let env = Env::with_auths(&[(&host, "carol", "carol-pass")]);
    let r = run(env
        .cmd()
        .args([
            "build",
            "--platform",
            "linux/amd64",
            "--push",
            "--json",
            "--no-layout",
        ])
        .arg(&recipe));
    assert_ok(&r);
    let doc = report(&r.stdout);
    let push = &doc["push"];
    let digest = push["digest"].as_str().expect("digest").to_string();
    let primary = target(push, &format!("{host}/acme/app:1.0"));
    assert_eq!(primary["ok"], true, "{push:#}");
    let backup = target(push, &format!("{host}/mirror/app:1.0"));
    assert_eq!(backup["ok"], false, "{push:#}");
    let why = backup["error"].as_str().unwrap_or_default();
    assert!(why.contains("mirror/app"), "{why}");
    assert_eq!(
        remote_digest(&format!("{host}/acme/app:1.0"), Some("carol:carol-pass")),
        digest
    );
    let log = proxy.log();
    assert!(
        !log.iter()
            .any(|e| e.method == "PUT" && e.path.contains("/mirror/app/manifests/")),
        "{log:#?}"
    );
}

/// The same two repositories, both required (`push --to`): the push
/// fails (exit 1), but only the repository that refused it is reported
/// failed; the other holds the image under its tag.
#[test]
fn a_required_repository_that_refuses_the_push_is_the_only_one_reported_failed() {
    let (_tokens, reg) = scoped_registry();
    let proxy = FaultProxy::start(&reg);
    let host = proxy.host();
    let image = crate::push::build_image(&[120_000], 72);
    let env = Env::with_auths(&[(&host, "carol", "carol-pass")]);
    let to = [format!("{host}/mirror/app:1"), format!("{host}/acme/app:1")];
    let r = crate::push::push(&env, &image, &to, &["--json"]);
    assert_code(&r, 1);
    let doc = report(&r.stdout);
    assert_eq!(target(&doc, &to[1])["ok"], true, "{doc:#}");
    assert_eq!(target(&doc, &to[0])["ok"], false, "{doc:#}");
    assert_eq!(
        remote_digest(&to[1], Some("carol:carol-pass")),
        image.digest
    );
}

/// A tag that names another image already is moved to the pushed one, as
/// `docker push` moves it, and the report says what it named before.
/// Figures: both tags serve the new digest; `replaced` is the old digest
/// for the moved tag, null for the new tag and for a re-push.
#[test]
fn a_tag_moved_from_another_image_is_reported_with_the_digest_it_named() {
    let reg = Registry::start();
    let host = reg.host();
    let env = Env::new();
    let old = crate::push::build_image(&[40_000], 73);
    let new = crate::push::build_image(&[40_000], 74);
    let moved = format!("{host}/acme/app:1");
    let fresh = format!("{host}/acme/app:2");
    assert_ok(&crate::push::push(
        &env,
        &old,
        std::slice::from_ref(&moved),
        &[],
    ));
    let to = [moved.clone(), fresh.clone()];
    let r = crate::push::push(&env, &new, &to, &["--json"]);
    assert_ok(&r);
    let doc = report(&r.stdout);
    assert_eq!(
        target(&doc, &moved)["replaced"],
        old.digest.as_str(),
        "{doc:#}"
    );
    assert_eq!(target(&doc, &fresh)["replaced"], Value::Null, "{doc:#}");
    for t in &to {
        assert_eq!(remote_digest(t, None), new.digest, "{t}");
    }
    let again = crate::push::push(&env, &new, &to, &["--json"]);
    assert_ok(&again);
    let doc = report(&again.stdout);
    for t in &to {
        assert_eq!(target(&doc, t)["replaced"], Value::Null, "{doc:#}");
    }
}

//! References and mount sources refused before any request: a registry
//! named without a repository (which Docker's rules would send to Docker
//! Hub as `docker.io/library/HOST`), and a `--mount-from` on a registry no
//! target is on. Each test runs the commands against a real registry behind
//! a proxy that counts what arrives: nothing may.

use crate::common::{assert_code, assert_ok, run, Run};
use crate::env::Env;
use crate::push::{build_image, push};
use crate::support::{FaultProxy, Registry};

fn refused(r: &Run, what: &[&str]) {
    assert_code(r, 2);
    for w in what {
        assert!(r.stderr.contains(w), "{w:?} not in\n{}", r.stderr);
    }
}

#[test]
fn a_registry_without_a_repository_is_refused_by_every_command() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg);
    let env = Env::new();
    let image = build_image(&[10_000], 71);
    let host = proxy.host();
    let said = [
        "names a registry but no repository",
        "HOST/REPOSITORY[:TAG]",
    ];
    for to in [host.as_str(), "ghcr.io", "localhost"] {
        let r = push(&env, &image, &[to.to_string()], &["--json"]);
        refused(&r, &said);
        assert!(r.stderr.contains(to), "{to}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "{}", r.stdout);
    }
    let r = push(&env, &image, std::slice::from_ref(&host), &[]);
    let bare = host.split(':').next().unwrap();
    assert!(
        r.stderr.contains(&format!("docker.io/library/{bare}")),
        "{}",
        r.stderr
    );
    for args in [
        vec!["bench", "--to", host.as_str(), "--json"],
        vec!["tags", host.as_str(), "--json"],
        vec!["verify", host.as_str(), "--json"],
        vec!["pull", host.as_str(), "-o", "unused"],
    ] {
        let r = run(env.cmd().args(&args));
        refused(&r, &said);
    }
    let app = format!("{host}/acme/app:1.0");
    let r = run(env.cmd().args(["copy", &app, &host, "--json"]));
    refused(&r, &said);
    assert!(proxy.log().is_empty(), "{:#?}", proxy.log());

    // The repository written out is pushed.
    let r = push(&env, &image, &[app], &["--json"]);
    assert_ok(&r);
}

#[test]
fn a_mount_source_on_no_targets_registry_is_refused() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg);
    let env = Env::new();
    let image = build_image(&[10_000], 72);
    let host = proxy.host();
    let to = [format!("{host}/acme/app:1.0")];
    let r = push(&env, &image, &to, &["--mount-from", "acme/app", "--json"]);
    refused(&r, &["docker.io/acme/app", &host]);
    let r = push(
        &env,
        &image,
        &to,
        &["--mount-from", "ghcr.io/acme/base", "--json"],
    );
    refused(&r, &["ghcr.io/acme/base"]);
    let src = format!("{host}/acme/app:1.0");
    let r = run(env.cmd().args([
        "copy",
        &src,
        &format!("{host}/acme/copy:1.0"),
        "--mount-from",
        "acme/app",
        "--json",
    ]));
    refused(&r, &["docker.io/acme/app"]);
    assert!(proxy.log().is_empty(), "{:#?}", proxy.log());

    // On the target's registry it is taken.
    let r = push(
        &env,
        &image,
        &to,
        &["--mount-from", &format!("{host}/acme/base"), "--json"],
    );
    assert_ok(&r);
}

/// A destination naming a digest (`DST@sha256:...`) that is not the one
/// written there: `copy` (with and without `--platform`) and `index`
/// refuse it (exit 2, naming it and the digest that would be written)
/// before sending anything, instead of uploading every blob and failing
/// at the tag.
#[test]
fn a_destination_naming_another_digest_is_refused_before_anything_is_sent() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg);
    let env = Env::new();
    let image = build_image(&[10_000], 73);
    let host = proxy.host();
    let src = format!("{host}/acme/app:1.0");
    assert_ok(&push(&env, &image, std::slice::from_ref(&src), &[]));
    let other = format!("sha256:{}", "ab".repeat(32));
    let writes = |proxy: &FaultProxy| {
        (proxy.log().into_iter())
            .filter(|e| e.method != "GET" && e.method != "HEAD")
            .count()
    };
    proxy.reset();
    for pinned in [
        format!("{host}/acme/copy@{other}"),
        format!("{host}/acme/copy:1.0@{other}"),
    ] {
        for extra in [&[][..], &["--platform", "linux/amd64"][..]] {
            let r = run(env.cmd().args(["copy", &src, &pinned]).args(extra));
            refused(&r, &[pinned.as_str(), image.digest.as_str()]);
            assert_eq!(writes(&proxy), 0, "{:#?}", proxy.log());
        }
    }
    let source = format!("{host}/acme/app@{}", image.digest);
    let pinned = format!("{host}/acme/index@{other}");
    let r = run(env.cmd().args(["index", &source, "--to", &pinned]));
    refused(
        &r,
        &[pinned.as_str(), "names another digest than the index"],
    );
    assert_eq!(writes(&proxy), 0, "{:#?}", proxy.log());

    // The digest copied is taken.
    let same = format!("{host}/acme/copy@{}", image.digest);
    assert_ok(&run(env.cmd().args(["copy", &src, &same])));
}

/// A source with a tag and a digest (`REPO:TAG@sha256:...`) is both, as
/// `verify` takes it: when the tag names another image, `copy` refuses it
/// (exit 2, naming the digest the tag names) before sending anything,
/// instead of writing that tag on the destination to an image the source's
/// tag does not name.
#[test]
fn copy_refuses_a_source_whose_tag_and_digest_disagree() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg);
    let env = Env::new();
    let (one, two) = (build_image(&[10_000], 74), build_image(&[10_000], 75));
    let host = proxy.host();
    let tagged = format!("{host}/acme/app:1.0");
    assert_ok(&push(&env, &one, std::slice::from_ref(&tagged), &[]));
    let other = format!("{host}/acme/app@");
    assert_ok(&push(&env, &two, &[other], &[]));
    proxy.reset();
    let dst = format!("{host}/acme/copy");
    let src = format!("{tagged}@{}", two.digest);
    let r = run(env.cmd().args(["copy", &src, &dst]));
    refused(&r, &["tag and digest disagree", &src, &one.digest]);
    let writes = (proxy.log().into_iter())
        .filter(|e| e.method != "GET" && e.method != "HEAD")
        .count();
    assert_eq!(writes, 0, "{:#?}", proxy.log());

    // When they agree, the tag is copied with the image.
    let src = format!("{tagged}@{}", one.digest);
    assert_ok(&run(env.cmd().args(["copy", &src, &dst])));
    let r = run(env.cmd().args(["verify", &tagged, &format!("{dst}:1.0")]));
    assert_ok(&r);
}

/// An `index --annotation` whose key has white space around it (`KEY =
/// VALUE`, a quoting slip) or a control character in it is refused (exit
/// 2) before any request, instead of written as a key that only looks like
/// the one meant.
#[test]
fn an_index_annotation_key_with_white_space_around_it_is_refused() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg);
    let env = Env::new();
    let host = proxy.host();
    let source = format!("{host}/acme/app@sha256:{}", "ab".repeat(32));
    let to = format!("{host}/acme/app:1.0");
    for bad in [
        "org.opencontainers.image.version = 1.4.0",
        " org.opencontainers.image.version=1.4.0",
        "a\u{1b}[2Jb=1",
        "=1",
        "novalue",
    ] {
        let r = run(env
            .cmd()
            .args(["index", &source, "--to", &to, "--annotation", bad]));
        refused(&r, &["--annotation"]);
    }
    assert!(proxy.log().is_empty(), "{:#?}", proxy.log());
}

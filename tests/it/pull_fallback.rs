//! `pull` falls back per blob: once a registry served the manifest, a blob
//! it cannot give (corrupt, missing) comes from the next reference that
//! holds the same digest, and the JSON report says which and why.

use std::path::Path;

use boxwright::image::remote::{resolve_first, resolve_policy, NotServed};
use boxwright::progress;
use boxwright::registry::{Client, ClientOptions, CredentialStore, ErrorKind, Reference};
use serde_json::Value;

use crate::common::{assert_ok, run, sha256};
use crate::env::Env;
use crate::support::{dead_host, tempdir, tiny_oci_layout, FaultProxy, Registry, TinyImage};

/// The tiny image pushed to `repo` of each of `hosts`.
fn seed(env: &Env, dir: &Path, hosts: &[&str], repo: &str) -> TinyImage {
    let layout = dir.join("layout");
    let img = tiny_oci_layout(&layout, "1", b"per-blob fallback");
    let mut c = env.cmd();
    c.arg("push").arg(&layout);
    for h in hosts {
        c.args(["--to", &format!("{h}/{repo}:1")]);
    }
    assert_ok(&run(&mut c));
    img
}

/// `pull PRIMARY --fallback FALLBACK --json`: its report.
fn pull(env: &Env, primary: &str, fallback: &str, out: &Path) -> Value {
    let r = run(env
        .cmd()
        .arg("pull")
        .arg(primary)
        .args(["--fallback", fallback, "--json", "-o"])
        .arg(out)
        .arg("--cache-dir")
        .arg(env.cache()));
    assert_ok(&r);
    serde_json::from_str(&r.stdout).unwrap()
}

/// Every cached blob holds the bytes its name says.
fn cache_is_sound(env: &Env, img: &TinyImage) {
    let held = env.cached();
    assert_eq!(held.len(), 2, "{held:?}");
    for d in [&img.config_digest, &img.layer_digest] {
        assert!(held.contains(d), "{d} not in {held:?}");
        let hex = d.trim_start_matches("sha256:");
        let bytes = std::fs::read(env.cache().join("sha256").join(hex)).unwrap();
        assert_eq!(&sha256(&bytes), d);
    }
}

/// Figures: the primary serves the manifest but corrupts every blob; the
/// pull succeeds with the image's digest, both blobs (config and layer)
/// listed in `blob_fallbacks` as from the fallback with a digest mismatch,
/// and the cache holds the right bytes.
#[test]
fn corrupt_blobs_on_the_primary_come_from_the_fallback() {
    let (a, b) = (Registry::start(), Registry::start());
    let env = Env::new();
    let dir = tempdir();
    let img = seed(&env, dir.path(), &[&a.host(), &b.host()], "acme/app");
    let proxy = FaultProxy::start(&a);
    proxy.configure(|c| c.corrupt_blobs = true);
    let v = pull(
        &env,
        &format!("{}/acme/app:1", proxy.host()),
        &format!("{}/acme/app:1", b.host()),
        &dir.path().join("out"),
    );
    assert_eq!(v["digest"], img.manifest_digest.as_str(), "{v}");
    assert_eq!(v["served"]["registry"], proxy.host().as_str(), "{v}");
    let fell: &Vec<Value> = v["blob_fallbacks"].as_array().unwrap();
    assert_eq!(fell.len(), 2, "{v}");
    for f in fell {
        assert_eq!(
            f["source"],
            format!("{}/acme/app", b.host()).as_str(),
            "{v}"
        );
        assert!(
            f["error"].as_str().unwrap().contains("digest mismatch"),
            "{v}"
        );
    }
    cache_is_sound(&env, &img);
}

/// Figures: the primary lost the layer's data (404); only the layer comes
/// from the fallback, the config from the primary.
#[test]
fn a_blob_missing_on_the_primary_comes_from_the_fallback() {
    let (a, b) = (Registry::start(), Registry::start());
    let env = Env::new();
    let dir = tempdir();
    let img = seed(&env, dir.path(), &[&a.host(), &b.host()], "acme/app");
    let hex = img.layer_digest.trim_start_matches("sha256:");
    let data = a
        .storage_dir()
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex);
    std::fs::remove_dir_all(&data).unwrap();
    let v = pull(
        &env,
        &format!("{}/acme/app:1", a.host()),
        &format!("{}/acme/app:1", b.host()),
        &dir.path().join("out"),
    );
    assert_eq!(v["digest"], img.manifest_digest.as_str(), "{v}");
    let fell: &Vec<Value> = v["blob_fallbacks"].as_array().unwrap();
    assert_eq!(fell.len(), 1, "{v}");
    assert_eq!(fell[0]["digest"], img.layer_digest.as_str(), "{v}");
    assert_eq!(fell[0]["source"], format!("{}/acme/app", b.host()).as_str());
    cache_is_sound(&env, &img);
}

/// `resolve_first` over `refs` with the resolve step's retry policy: its
/// error.
async fn resolve_error(refs: &[String]) -> anyhow::Error {
    let opts = ClientOptions {
        retry: resolve_policy(),
        ..ClientOptions::default()
    };
    let client = Client::new(opts, CredentialStore::default(), progress::silent()).unwrap();
    let refs: Vec<Reference> = refs.iter().map(|r| Reference::parse(r).unwrap()).collect();
    match resolve_first(&client, &refs, &progress::silent()).await {
        Ok(served) => panic!("{} served", served.reference),
        Err(e) => e,
    }
}

/// Figures: a reference missing from both registries (each answers 404) and
/// one whose two registries are down both fail as `NotServed` with two
/// attempts, worded as before; the first has every attempt 404, the second
/// every attempt a transport failure with no status. It is not bad input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_everywhere_is_told_apart_from_unreachable() {
    let (a, b) = (Registry::start(), Registry::start());
    let missing = [
        format!("{}/acme/none:1", a.host()),
        format!("{}/acme/none:1", b.host()),
    ];
    let err = resolve_error(&missing).await;
    let not = err.downcast_ref::<NotServed>().expect("a NotServed");
    assert_eq!(not.attempts.len(), 2, "{err:#}");
    assert!(not.all_not_found(), "{err:#}");
    for (attempt, r) in not.attempts.iter().zip(&missing) {
        assert_eq!(&attempt.reference, r);
        assert_eq!(attempt.error.status(), Some(404), "{:?}", attempt.error);
    }
    assert_eq!(
        err.to_string(),
        format!(
            "no registry served {}: {}: {}; {}: {}",
            missing[0], missing[0], not.attempts[0].error, missing[1], not.attempts[1].error
        )
    );
    assert!(!boxwright::error::is_bad_input(&err));

    let down = [
        format!("{}/acme/none:1", dead_host()),
        format!("{}/acme/none:1", dead_host()),
    ];
    let err = resolve_error(&down).await;
    let not = err.downcast_ref::<NotServed>().expect("a NotServed");
    assert_eq!(not.attempts.len(), 2, "{err:#}");
    assert!(!not.all_not_found(), "{err:#}");
    for attempt in &not.attempts {
        assert_eq!(attempt.error.status(), None, "{:?}", attempt.error);
        assert!(
            matches!(attempt.error.kind, ErrorKind::Transport(_)),
            "{:?}",
            attempt.error
        );
    }
    assert!(!boxwright::error::is_bad_input(&err));
}

/// Two references that cannot be reached before a third that serves: the
/// pull succeeds from the third, and both the summary and the JSON name
/// every reference that did not serve, in order.
#[test]
fn the_summary_names_every_reference_that_did_not_serve() {
    let env = Env::new();
    let reg = Registry::start();
    let dir = tempdir();
    let img = seed(&env, dir.path(), &[&reg.host()], "acme/app");
    let down = [
        format!("{}/acme/app:1", dead_host()),
        format!("{}/acme/app:1", dead_host()),
    ];
    let serving = format!("{}/acme/app:1", reg.host());
    let r = run(env
        .cmd()
        .arg("pull")
        .arg(&down[0])
        .args([
            "--fallback",
            &down[1],
            "--fallback",
            &serving,
            "--json",
            "-o",
        ])
        .arg(dir.path().join("out"))
        .arg("--cache-dir")
        .arg(env.cache()));
    assert_ok(&r);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["digest"], img.manifest_digest.as_str(), "{v:#}");
    assert_eq!(v["served"]["reference"], serving.as_str(), "{v:#}");
    assert_eq!(v["served"]["fallback"], true, "{v:#}");
    let skipped: Vec<&str> = v["served"]["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["reference"].as_str().unwrap())
        .collect();
    assert_eq!(skipped, [down[0].as_str(), down[1].as_str()]);
    let summary = r
        .stderr
        .lines()
        .find(|l| l.contains("pulled "))
        .unwrap_or_else(|| panic!("no summary:\n{}", r.stderr));
    assert!(
        summary.contains(&format!(
            "(fallback; {}, {} did not serve)",
            down[0], down[1]
        )),
        "{summary}"
    );
}

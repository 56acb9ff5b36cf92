//! `pull` falls back per blob: once a registry served the manifest, a blob
//! it cannot give (corrupt, missing) comes from the next reference that
//! holds the same digest, and the JSON report says which and why.

use std::path::Path;

use serde_json::Value;

use crate::common::{assert_ok, run, sha256};
use crate::env::Env;
use crate::support::{tempdir, tiny_oci_layout, FaultProxy, Registry, TinyImage};

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

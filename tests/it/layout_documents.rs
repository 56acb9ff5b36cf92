//! What a layout's documents must say, through the binary: an `oci-layout`
//! file that is not `{"imageLayoutVersion":"1.x..."}`, a manifest or index
//! whose `schemaVersion` is not 2, and a base whose config lists another
//! number of diff IDs than its manifest has layers (from a layout or from a
//! registry) are refused by `inspect`, `push` and `build` as bad input
//! (exit 2) naming the file, the digest or the base, before anything is
//! sent or written.

use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::common::{assert_code, write, Run};
use crate::env::Env;
use crate::layout_reader::{blob_file, put, run_bounded, write_index};
use crate::support::{tempdir, tiny_oci_layout, Registry};

fn inspect(layout: &Path) -> Run {
    run_bounded(Env::new().cmd().arg("inspect").arg(layout))
}

fn push(layout: &Path, to: &str) -> Run {
    run_bounded(Env::new().cmd().arg("push").arg(layout).args(["--to", to]))
}

/// `build` of a one-layer recipe on `base` (`oci:DIR` or a registry
/// reference), into `out`.
fn build_on(env: &Env, base: &str, out: &Path) -> Run {
    let dir = out.parent().unwrap();
    let recipe = dir.join("app.toml");
    write(
        &recipe,
        &format!(
            "[image]\nname = \"app\"\nbase = {base:?}\n\n[[layer]]\n[[layer.entry]]\ncontent = \"app\"\ndest = \"/app.txt\"\n"
        ),
    );
    run_bounded(
        env.cmd()
            .args(["build", "--quiet", "--cache-dir"])
            .arg(dir.join("cache"))
            .arg("-o")
            .arg(out)
            .arg(&recipe),
    )
}

/// Exit 2, the message holding each of `wanted`.
fn refused(r: &Run, wanted: &[&str]) {
    assert_code(r, 2);
    for w in wanted {
        assert!(r.stderr.contains(w), "expected {w:?} in:\n{}", r.stderr);
    }
}

/// Replace the manifest of the tiny layout at `dir` by `edit` of it
/// (re-addressed, named by index.json); the new manifest's file.
fn edit_manifest(dir: &Path, manifest: &[u8], edit: impl FnOnce(&mut Value)) -> String {
    let mut v: Value = serde_json::from_slice(manifest).unwrap();
    edit(&mut v);
    let bytes = serde_json::to_vec(&v).unwrap();
    let digest = put(dir, &bytes);
    write_index(dir, &digest, bytes.len() as u64, "1");
    blob_file(dir, &digest).display().to_string()
}

/// Figure: an `oci-layout` file that is not JSON, has no
/// `imageLayoutVersion`, or a version other than 1.x makes inspect, push
/// and a build on the layout exit 2, naming the file and what it should
/// hold; a 1.x version other than 1.0.0 is read.
#[test]
fn a_bad_oci_layout_file_is_refused_naming_it() {
    for content in [
        &b"garbage"[..],
        b"{}",
        br#"{"imageLayoutVersion":"2.0.0"}"#,
        br#"{"imageLayoutVersion":1}"#,
    ] {
        let t = tempdir();
        let base = t.path().join("base");
        tiny_oci_layout(&base, "1", b"bad oci-layout");
        let marker = base.join("oci-layout");
        fs::write(&marker, content).unwrap();
        let file = marker.display().to_string();
        let should = r#"{"imageLayoutVersion":"1.0.0"}"#;
        refused(&inspect(&base), &[&file, should]);
        refused(&push(&base, "127.0.0.1:9/acme/app:1"), &[&file, should]);
        let out = t.path().join("out");
        let base_ref = format!("oci:{}", base.display());
        refused(&build_on(&Env::new(), &base_ref, &out), &[&file, should]);
        assert!(!out.exists());
    }
    let t = tempdir();
    let base = t.path().join("base");
    tiny_oci_layout(&base, "1", b"layout 1.1");
    fs::write(
        base.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.1.0"}"#,
    )
    .unwrap();
    assert_code(&inspect(&base), 0);
}

/// Figure: a layout without an `oci-layout` file is not a layout: inspect,
/// push and build exit 2 naming the directory.
#[test]
fn a_layout_without_an_oci_layout_file_is_refused() {
    let t = tempdir();
    let base = t.path().join("base");
    tiny_oci_layout(&base, "1", b"no oci-layout");
    fs::remove_file(base.join("oci-layout")).unwrap();
    let dir = base.display().to_string();
    refused(&inspect(&base), &[&dir, "oci-layout"]);
    refused(&push(&base, "127.0.0.1:9/acme/app:1"), &[&dir]);
    let base_ref = format!("oci:{}", base.display());
    refused(
        &build_on(&Env::new(), &base_ref, &t.path().join("out")),
        &[&dir],
    );
}

/// Figure: a manifest of `schemaVersion` 3 and an index.json of
/// `schemaVersion` 7 are refused by inspect, push and build (exit 2),
/// naming the manifest's file or index.json; push sends nothing.
#[test]
fn a_schema_version_other_than_2_is_refused() {
    let t = tempdir();
    let base = t.path().join("base");
    let img = tiny_oci_layout(&base, "1", b"schema 3");
    let file = edit_manifest(&base, &img.manifest, |v| v["schemaVersion"] = 3.into());
    let registry = Registry::start();
    refused(&inspect(&base), &[&file, "schemaVersion 3"]);
    let r = push(&base, &format!("{}/acme/app:1", registry.host()));
    refused(&r, &[&file, "schemaVersion 3"]);
    assert!(registry.stored_blobs().is_empty(), "nothing was uploaded");
    let base_ref = format!("oci:{}", base.display());
    let out = t.path().join("out");
    refused(
        &build_on(&Env::new(), &base_ref, &out),
        &[&file, "schemaVersion 3"],
    );
    assert!(!out.exists());

    let t = tempdir();
    let base = t.path().join("base");
    tiny_oci_layout(&base, "1", b"schema 7");
    let index = base.join("index.json");
    let mut v: Value = serde_json::from_slice(&fs::read(&index).unwrap()).unwrap();
    v["schemaVersion"] = 7.into();
    fs::write(&index, v.to_string()).unwrap();
    let file = index.display().to_string();
    refused(&inspect(&base), &[&file, "schemaVersion 7"]);
    refused(&push(&base, "127.0.0.1:9/acme/app:1"), &[&file]);
    let base_ref = format!("oci:{}", base.display());
    refused(
        &build_on(&Env::new(), &base_ref, &t.path().join("out")),
        &[&file],
    );
}

/// Figure: a base whose config lists two diff IDs for its one layer is
/// refused before the build, whether it is a layout or a registry image
/// (the same image pushed), exit 2 naming the base and both counts; no
/// output is written.
#[test]
fn a_base_with_more_diff_ids_than_layers_is_refused() {
    let t = tempdir();
    let base = t.path().join("base");
    let img = tiny_oci_layout(&base, "1", b"two diff ids");
    let config_file = blob_file(&base, &img.config_digest);
    let mut config: Value = serde_json::from_slice(&fs::read(&config_file).unwrap()).unwrap();
    let id = config["rootfs"]["diff_ids"][0].clone();
    config["rootfs"]["diff_ids"] = Value::Array(vec![id.clone(), id]);
    let config = serde_json::to_vec(&config).unwrap();
    let config_digest = put(&base, &config);
    edit_manifest(&base, &img.manifest, |v| {
        v["config"]["digest"] = config_digest.clone().into();
        v["config"]["size"] = config.len().into();
    });
    let counts = ["2 diff IDs", "1 layer;"];
    // `inspect` shows it; `inspect --check` fails its config as invalid.
    let judged = |target: &str| {
        assert_code(&run_bounded(Env::new().cmd().arg("inspect").arg(target)), 0);
        let r = run_bounded(
            Env::new()
                .cmd()
                .args(["inspect", "--check", "--json", target]),
        );
        assert_code(&r, 1);
        let v: Value = serde_json::from_str(&r.stdout).unwrap();
        let blobs = v["check"]["blobs"].as_array().unwrap();
        let bad: Vec<&Value> = blobs.iter().filter(|b| b["status"] != "ok").collect();
        assert_eq!(bad.len(), 1, "{blobs:?}");
        assert_eq!(bad[0]["digest"], config_digest.as_str());
        assert_eq!(bad[0]["status"], "invalid");
        let why = bad[0]["detail"].as_str().unwrap();
        assert!(counts.iter().all(|c| why.contains(c)), "{why}");
    };
    judged(base.to_str().unwrap());

    let env = Env::new();
    let base_ref = format!("oci:{}", base.display());
    let out = t.path().join("out");
    let r = build_on(&env, &base_ref, &out);
    refused(&r, &[&base_ref, counts[0], counts[1]]);
    assert!(!out.exists());

    let registry = Registry::start();
    let remote = format!("{}/base/img:1", registry.host());
    assert_code(&push(&base, &remote), 0);
    judged(&remote);
    let r = build_on(&env, &remote, &out);
    refused(&r, &[&remote, counts[0], counts[1]]);
    assert!(!out.exists());
}

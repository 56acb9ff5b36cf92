//! `build --push` without a layout (no `-o`, or `--no-layout`): nothing is
//! written locally, and a registry base's layers are never downloaded for
//! targets on the base's registry (mounted there), and downloaded at most
//! once for the others. Bytes are counted by the fault proxy, both ways.

use std::path::Path;

use serde_json::Value;

use crate::common::{assert_code, assert_ok, run, Run};
use crate::env::Env;
use crate::pair::{blob_upload_bytes, uploads_by_digest};
use crate::pull::{app_recipe, build_base, push_base};
use crate::support::{tempdir, FaultProxy, LogEntry, Registry};

/// `build --json --push` of `recipe` in `work` (no `-o`), with an empty blob cache.
fn build_push(env: &Env, work: &Path, recipe: &Path, to: &[String], extra: &[&str]) -> Run {
    let cache = work.join("cache");
    let mut c = env.cmd();
    c.current_dir(work)
        .args(["build", "--json", "--push", "--cache-dir"])
        .arg(&cache)
        .args(extra);
    for t in to {
        c.args(["--to", t]);
    }
    run(c.arg(recipe))
}

/// Response bytes of the blob GETs of `digest` in `log`, and how many GETs.
fn downloaded(log: &[LogEntry], digest: &str) -> (u64, usize) {
    let gets: Vec<&LogEntry> = log
        .iter()
        .filter(|e| e.method == "GET" && e.path.ends_with(&format!("/blobs/{digest}")))
        .collect();
    (gets.iter().map(|e| e.response_bytes).sum(), gets.len())
}

#[test]
fn build_push_without_a_layout_downloads_no_base_layer_for_its_own_registry() {
    let env = Env::new();
    let reg = Registry::start();
    let p = FaultProxy::start(&reg);
    let base = build_base();
    push_base(&env, &base, &p.host());
    p.reset();

    let work = tempdir();
    let base_ref = format!("{}/base/img:1.0", p.host());
    let recipe = app_recipe(work.path(), &base_ref, &[], &["linux/amd64"]);
    let to = [
        format!("{}/app/x:1", p.host()),
        format!("{}/app/y:1", p.host()),
    ];
    let r = build_push(&env, work.path(), &recipe, &to, &[]);
    assert_ok(&r);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let log = p.log();

    // Figure: 0 base-layer bytes downloaded (no GET of any base layer),
    // and none uploaded: each is mounted (201) into both repositories.
    let amd = base.amd64();
    for (l, _) in &amd.layers {
        assert_eq!(downloaded(&log, l), (0, 0), "{l}: {log:#?}");
        let mounts = log
            .iter()
            .filter(|e| {
                e.method == "POST"
                    && e.status == Some(201)
                    && e.query_param("mount").as_deref() == Some(l.as_str())
            })
            .count();
        assert_eq!(mounts, 2, "{l}: {log:#?}");
    }
    // The base's repository is asked for the base's layers only.
    let asked: Vec<String> = log
        .iter()
        .filter(|e| e.query_param("from").as_deref() == Some("base/img"))
        .filter_map(|e| e.query_param("mount"))
        .collect();
    assert!(
        asked.iter().all(|d| amd.layers.iter().any(|(l, _)| l == d)),
        "{asked:?}"
    );
    let ups = uploads_by_digest(&log);
    assert!(
        amd.layers.iter().all(|(l, _)| !ups.contains_key(l)),
        "{ups:?}"
    );
    // What was downloaded at all: manifests and the base's config.
    let blob_gets: u64 = log
        .iter()
        .filter(|e| e.method == "GET" && e.path.contains("/blobs/"))
        .map(|e| e.response_bytes)
        .sum();
    assert!(blob_gets > 0 && blob_gets < 10_000, "{blob_gets}: {log:#?}");
    // Nothing written locally; the report names no layout.
    assert!(!work.path().join("out").exists());
    assert!(v["build"].get("layout").is_none(), "{v:#}");
    let cached: Vec<String> = std::fs::read_dir(work.path().join("cache/sha256"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| format!("sha256:{}", e.file_name().to_string_lossy()))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        amd.layers.iter().all(|(l, _)| !cached.contains(l)),
        "{cached:?}"
    );
    // Both targets name the image (the registry took its manifest, whose
    // layers it holds).
    for t in v["push"]["targets"].as_array().unwrap() {
        assert_eq!(t["ok"], true, "{t}");
        assert_eq!(t["digest"], v["push"]["digest"]);
    }
}

#[test]
fn build_push_without_a_layout_fetches_a_base_on_another_registry_once() {
    let env = Env::new();
    let (reg_a, reg_b, reg_c) = (Registry::start(), Registry::start(), Registry::start());
    let (pa, pb, pc) = (
        FaultProxy::start(&reg_a),
        FaultProxy::start(&reg_b),
        FaultProxy::start(&reg_c),
    );
    let base = build_base();
    push_base(&env, &base, &pa.host());
    pa.reset();

    let work = tempdir();
    let base_ref = format!("{}/base/img:1.0", pa.host());
    let recipe = app_recipe(work.path(), &base_ref, &[], &["linux/amd64"]);
    let to = [
        format!("{}/app/x:1", pb.host()),
        format!("{}/app/x:1", pc.host()),
    ];
    let r = build_push(&env, work.path(), &recipe, &to, &["--no-layout"]);
    assert_ok(&r);
    let log_a = pa.log();
    // Figure: each base layer downloaded once, its size in bytes, and
    // uploaded once to each of the two other registries.
    for (l, size) in &base.amd64().layers {
        assert_eq!(downloaded(&log_a, l), (*size, 1), "{l}: {log_a:#?}");
        for p in [&pb, &pc] {
            assert_eq!(uploads_by_digest(&p.log()).get(l), Some(&1), "{l}");
        }
    }
    assert_eq!(blob_upload_bytes(&log_a), 0);
    assert!(!work.path().join("out").exists());
    // What was downloaded and uploaded is remembered next to the cache.
    let record = std::fs::read_to_string(work.path().join("cache/blob-locations")).unwrap();
    for (l, _) in &base.amd64().layers {
        for line in [
            format!("{} base/img {l}", pa.host()),
            format!("{} app/x {l}", pb.host()),
            format!("{} app/x {l}", pc.host()),
        ] {
            assert!(record.lines().any(|x| x == line), "{line} not in {record}");
        }
    }
}

#[test]
fn no_layout_goes_with_neither_an_output_nor_an_archive() {
    let env = Env::new();
    let work = tempdir();
    let recipe = app_recipe(
        work.path(),
        "127.0.0.1:1/base/img:1.0",
        &[],
        &["linux/amd64"],
    );
    let to = ["127.0.0.1:1/app/x:1".to_string()];
    let r = build_push(
        &env,
        work.path(),
        &recipe,
        &to,
        &["--no-layout", "-o", "out/x"],
    );
    assert_code(&r, 2);
    let r = build_push(
        &env,
        work.path(),
        &recipe,
        &to,
        &["--no-layout", "--format", "oci-archive"],
    );
    assert_code(&r, 2);
    assert!(r.stderr.contains("--no-layout"), "{}", r.stderr);
}

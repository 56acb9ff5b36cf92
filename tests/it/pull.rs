//! Registry bases in `build` and `boxwright pull`, against real
//! `docker-registry` instances behind counting fault proxies. The base is a
//! two-platform index (a shared layer plus one layer per architecture) that
//! boxwright builds and pushes first. Every test states the figure it checks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{assert_ok, boxwright, noise, ok, run, sha256, write};
use crate::env::Env;
use crate::pair::{blob_upload_bytes, uploads_by_digest};
use crate::support::{dead_host, skopeo, tempdir, FaultProxy, Registry};

/// One platform of the base image.
#[derive(Debug, Clone)]
pub(crate) struct BasePlatform {
    pub manifest: String,
    pub config: String,
    /// Layer digest -> size, in order.
    pub layers: Vec<(String, u64)>,
    pub diff_ids: Vec<String>,
    pub history: Value,
}

/// The base: a two-platform index pushed to a registry as `base/img:1.0`.
pub(crate) struct Base {
    _dir: tempfile::TempDir,
    pub layout: PathBuf,
    pub index: String,
    pub platforms: BTreeMap<String, BasePlatform>,
}

impl Base {
    pub fn amd64(&self) -> &BasePlatform {
        &self.platforms["linux/amd64"]
    }
    pub fn arm64(&self) -> &BasePlatform {
        &self.platforms["linux/arm64"]
    }
    /// Every blob of the index (configs and layers).
    pub fn blobs(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .platforms
            .values()
            .flat_map(|p| {
                std::iter::once(p.config.clone()).chain(p.layers.iter().map(|(d, _)| d.clone()))
            })
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// Build the base index: layer `common` (same for both platforms) and layer
/// `arch` (its own bytes per architecture).
pub(crate) fn build_base() -> Base {
    let dir = tempdir();
    let d = dir.path();
    std::fs::write(d.join("common.bin"), noise(40_000, 1)).unwrap();
    for (i, arch) in ["amd64", "arm64"].iter().enumerate() {
        std::fs::create_dir_all(d.join("arch").join(arch)).unwrap();
        std::fs::write(
            d.join("arch").join(arch).join("tool"),
            noise(30_000, 10 + i as u64),
        )
        .unwrap();
    }
    write(
        &d.join("base.toml"),
        r#"tags = ["1.0"]

[image]
name = "base"
platforms = ["linux/amd64", "linux/arm64"]

[config]
workdir = "/srv"

[config.env]
BASE_HOME = "/srv"

[[layer]]
name = "common"

[[layer.entry]]
src = "common.bin"
dest = "/srv/common.bin"

[[layer]]
name = "arch"

[[layer.entry]]
src = "arch/${ARCH}/tool"
dest = "/usr/local/bin/tool"
"#,
    );
    let layout = d.join("layout");
    let out = ok(boxwright()
        .args(["build", "--quiet", "--json", "-o"])
        .arg(&layout)
        .arg(d.join("base.toml")));
    let v: Value = serde_json::from_str(&out).unwrap();
    let mut platforms = BTreeMap::new();
    for img in v["images"].as_array().unwrap() {
        let config = img["config"]["digest"].as_str().unwrap().to_string();
        let cfg: Value = serde_json::from_slice(
            &std::fs::read(layout.join("blobs/sha256").join(&config[7..])).unwrap(),
        )
        .unwrap();
        let layers: Vec<(String, u64)> = img["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["digest"].as_str().unwrap().to_string(),
                    l["size"].as_u64().unwrap(),
                )
            })
            .collect();
        platforms.insert(
            img["platform"].as_str().unwrap().to_string(),
            BasePlatform {
                manifest: img["manifest"]["digest"].as_str().unwrap().to_string(),
                config,
                layers,
                diff_ids: cfg["rootfs"]["diff_ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_str().unwrap().to_string())
                    .collect(),
                history: cfg["history"].clone(),
            },
        );
    }
    let base = Base {
        _dir: dir,
        layout,
        index: v["digest"].as_str().unwrap().to_string(),
        platforms,
    };
    // The shared layer is one blob; the arch layers differ.
    assert_eq!(base.amd64().layers[0], base.arm64().layers[0]);
    assert_ne!(base.amd64().layers[1], base.arm64().layers[1]);
    base
}

/// Push the base layout to `host/base/img:1.0`.
pub(crate) fn push_base(env: &Env, base: &Base, host: &str) {
    let out = ok(env
        .cmd()
        .args(["push", "--quiet"])
        .arg(&base.layout)
        .args(["--to", &format!("{host}/base/img:1.0")]));
    assert_eq!(out, base.index);
}

/// A recipe on `base` (with `fallback`s) adding one layer.
pub(crate) fn app_recipe(
    dir: &Path,
    base: &str,
    fallback: &[String],
    platforms: &[&str],
) -> PathBuf {
    std::fs::write(dir.join("app.bin"), noise(20_000, 99)).unwrap();
    let fb: Vec<String> = fallback.iter().map(|f| format!("{f:?}")).collect();
    let pl: Vec<String> = platforms.iter().map(|p| format!("{p:?}")).collect();
    let r = dir.join("app.toml");
    write(
        &r,
        &format!(
            r#"tags = ["1"]

[image]
name = "app"
base = {base:?}
base_fallback = [{}]
platforms = [{}]

[config.env]
APP = "1"

[[layer]]
name = "app"

[[layer.entry]]
src = "app.bin"
dest = "/srv/app.bin"
"#,
            fb.join(", "),
            pl.join(", ")
        ),
    );
    r
}

fn read_json(layout: &Path, digest: &str) -> Value {
    serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(&digest[7..])).unwrap())
        .unwrap()
}

#[test]
fn build_on_a_registry_base_mounts_its_layers_there_and_uploads_them_once_elsewhere() {
    let env = Env::new();
    let (reg_a, reg_b) = (Registry::start(), Registry::start());
    let (pa, pb) = (FaultProxy::start(&reg_a), FaultProxy::start(&reg_b));
    let base = build_base();
    push_base(&env, &base, &pa.host());
    pa.reset();

    let work = tempdir();
    let base_ref = format!("{}/base/img:1.0", pa.host());
    let recipe = app_recipe(work.path(), &base_ref, &[], &["linux/amd64"]);
    let out = work.path().join("out");
    let r = run(env
        .cmd()
        .args(["build", "--json", "--push", "-o"])
        .arg(&out)
        .arg("--cache-dir")
        .arg(env.cache())
        .args(["--to", &format!("{}/app/x:1", pa.host())])
        .args(["--to", &format!("{}/app/x:1", pb.host())])
        .arg(&recipe));
    assert_ok(&r);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["build"]["base"]["registry"], pa.host(), "{v:#}");
    assert_eq!(v["build"]["base"]["fallback"], false);
    // The user is told which registry served (the JSON above says it too).
    assert!(r.stderr.contains(&pa.host()), "{}", r.stderr);

    let amd = base.amd64();
    let base_layers: Vec<&String> = amd.layers.iter().map(|(d, _)| d).collect();
    let image = &v["build"]["images"][0];
    let all_blobs: Vec<(String, u64)> = std::iter::once(&image["config"])
        .chain(image["layers"].as_array().unwrap())
        .map(|d| {
            (
                d["digest"].as_str().unwrap().to_string(),
                d["size"].as_u64().unwrap(),
            )
        })
        .collect();
    let own_bytes: u64 = all_blobs
        .iter()
        .filter(|(d, _)| !base_layers.contains(&d))
        .map(|(_, s)| s)
        .sum();

    // Figure, registry A: every base layer mounted (POST ?mount=&from=base/img
    // answered 201), none uploaded; the blob bytes sent are the app's only.
    let log_a = pa.log();
    for l in &base_layers {
        let mounted = log_a.iter().any(|e| {
            e.method == "POST"
                && e.status == Some(201)
                && e.query_param("mount").as_deref() == Some(l.as_str())
                && e.query_param("from").as_deref() == Some("base/img")
        });
        assert!(mounted, "base layer {l} not mounted on A: {log_a:#?}");
    }
    let up_a = uploads_by_digest(&log_a);
    assert!(
        base_layers.iter().all(|l| !up_a.contains_key(*l)),
        "{up_a:#?}"
    );
    assert_eq!(blob_upload_bytes(&log_a), own_bytes, "{log_a:#?}");
    // Nothing of the base was downloaded from A but the amd64 manifest path.
    assert!(!log_a
        .iter()
        .any(|e| e.method == "GET" && e.path.ends_with(&base.arm64().layers[1].0)));

    // Figure, registry B: each base layer uploaded exactly once.
    let up_b = uploads_by_digest(&pb.log());
    for l in &base_layers {
        assert_eq!(up_b.get(*l), Some(&1), "{up_b:#?}");
    }

    // Figure, cache: the amd64 layers, never the arm64-only layer.
    let cached = env.cached();
    for l in &base_layers {
        assert!(cached.contains(l), "{l} not cached: {cached:?}");
    }
    assert!(
        !cached.contains(&base.arm64().layers[1].0),
        "the arm64 layer was never needed: {cached:?}"
    );
    assert!(!cached.contains(&base.arm64().config));

    // The built config: base diff IDs and history first, then the recipe's;
    // env merged; the manifest names the base that served and its digest.
    let manifest_digest = image["manifest"]["digest"].as_str().unwrap();
    let manifest = read_json(&out, manifest_digest);
    let config = read_json(&out, image["config"]["digest"].as_str().unwrap());
    let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    assert_eq!(diff_ids.len(), amd.diff_ids.len() + 1);
    assert_eq!(diff_ids[..amd.diff_ids.len()], amd.diff_ids[..]);
    let history = config["history"].as_array().unwrap();
    let base_history = amd.history.as_array().unwrap();
    assert_eq!(history[..base_history.len()], base_history[..]);
    assert_eq!(history.len(), base_history.len() + 1);
    let env_list = config["config"]["Env"].to_string();
    assert!(env_list.contains("BASE_HOME=/srv") && env_list.contains("APP=1"));
    assert_eq!(config["config"]["WorkingDir"], "/srv");
    let ann = &manifest["annotations"];
    assert_eq!(ann["org.opencontainers.image.base.name"], base_ref);
    assert_eq!(ann["org.opencontainers.image.base.digest"], amd.manifest);
    // Both registries serve the same digest.
    for host in [pa.host(), pb.host()] {
        let raw = skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{host}/app/x:1"),
        ]);
        assert_eq!(sha256(raw.as_bytes()), v["build"]["digest"]);
    }
}

#[test]
fn a_base_without_a_recipe_platform_is_bad_input_naming_both() {
    let env = Env::new();
    let reg = Registry::start();
    let base = build_base();
    push_base(&env, &base, &reg.host());
    let work = tempdir();
    let base_ref = format!("{}/base/img:1.0", reg.host());
    let recipe = app_recipe(
        work.path(),
        &base_ref,
        &[],
        &["linux/amd64", "linux/riscv64"],
    );
    let r = run(env
        .cmd()
        .arg("build")
        .arg("-o")
        .arg(work.path().join("out"))
        .arg("--cache-dir")
        .arg(env.cache())
        .arg(&recipe));
    // Figure: exit 2, and the message names the base, the platform and what it has.
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains(&base_ref), "{}", r.stderr);
    assert!(r.stderr.contains("linux/riscv64"), "{}", r.stderr);
    assert!(
        r.stderr.contains("linux/amd64, linux/arm64"),
        "{}",
        r.stderr
    );
    assert!(!work.path().join("out").exists());
}

#[test]
fn build_falls_back_when_the_base_primary_is_stopped() {
    let env = Env::new();
    let reg = Registry::start();
    let base = build_base();
    push_base(&env, &base, &reg.host());
    let work = tempdir();
    let primary = format!("{}/base/img:1.0", dead_host());
    let fallback = format!("{}/base/img:1.0", reg.host());
    let recipe = app_recipe(
        work.path(),
        &primary,
        std::slice::from_ref(&fallback),
        &["linux/arm64"],
    );
    let out = work.path().join("out");
    let started = Instant::now();
    let r = run(env
        .cmd()
        .args(["build", "--json", "-o"])
        .arg(&out)
        .arg("--cache-dir")
        .arg(env.cache())
        .arg(&recipe));
    assert_ok(&r);
    // Figure: the fallback served, said on stderr and in the JSON, quickly.
    assert!(started.elapsed() < Duration::from_secs(20));
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["base"]["reference"], fallback, "{v:#}");
    assert_eq!(v["base"]["fallback"], true);
    assert_eq!(v["base"]["skipped"][0]["reference"], primary);
    assert!(r.stderr.contains(&reg.host()), "{}", r.stderr);
    let manifest = read_json(&out, v["images"][0]["manifest"]["digest"].as_str().unwrap());
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.base.name"],
        fallback
    );
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.base.digest"],
        base.arm64().manifest
    );
    // The arm64 build cached the arm64 layers only.
    let cached = env.cached();
    assert!(cached.contains(&base.arm64().layers[1].0));
    assert!(!cached.contains(&base.amd64().layers[1].0));
}

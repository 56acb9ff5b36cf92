//! The library's build-and-push (`boxwright::build::publish`) against a real
//! `docker-registry`, called from async code as the binary calls it, and
//! `build_image`'s account of what it wrote checked against the layout.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use boxwright::build::publish::{build_and_push, PublishOptions, Published};
use boxwright::build::{build_image, BuildOptions};
use boxwright::cache::BlobCache;
use boxwright::image::layout::{Layout, LayoutImage};
use boxwright::image::remote::RegistryBase;
use boxwright::image::{walk, Graph, ImageSource};
use boxwright::layer::{Codec, Compression};
use boxwright::progress::{Level, Reporter};
use boxwright::push::{PushOptions, PushTarget};
use boxwright::recipe::{self, LoadOptions, Plan, Vars};
use boxwright::registry::CredentialStore;
use boxwright::supply::artifact::Kind;
use boxwright::supply::evidence::SupplyOptions;
use boxwright::supply::sbom::SbomFormat;

use crate::common::*;
use crate::support::{tempdir, FaultProxy, Registry};

fn load(recipe: &Path, sets: &[(&str, &str)]) -> Plan {
    let opts = LoadOptions {
        vars: Vars {
            sets: sets
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            defaults: Default::default(),
            use_env: false,
            ..Default::default()
        },
        context: None,
        platforms: None,
        ..Default::default()
    };
    recipe::load(recipe, &opts).unwrap()
}

fn build_options(output: &Path) -> BuildOptions {
    BuildOptions {
        jobs: 2,
        ..BuildOptions::new(output)
    }
}

fn publish_options(to: &[String], verify: bool) -> PublishOptions {
    PublishOptions {
        supply: None,
        targets: to.iter().map(|t| PushTarget::parse(t).unwrap()).collect(),
        push: PushOptions::default(),
        credentials: CredentialStore::default(),
        verify,
        keep_layout: true,
    }
}

/// A recipe of two layers (`name`, one file each), on `base` when given.
fn write_recipe(dir: &Path, name: &str, base: Option<&str>, seed: u64) -> std::path::PathBuf {
    let mut text = format!("tags = [\"1\"]\n\n[image]\nname = \"{name}\"\n");
    if let Some(b) = base {
        text.push_str(&format!("base = {b:?}\n"));
    }
    for (i, len) in [300_000usize, 40_000].iter().enumerate() {
        let file = format!("{name}{i}.bin");
        std::fs::write(dir.join(&file), noise(*len, seed + i as u64)).unwrap();
        text.push_str(&format!(
            "\n[[layer]]\nname = \"{name}{i}\"\n\n[[layer.entry]]\nsrc = \"{file}\"\ndest = \"/srv/{file}\"\n"
        ));
    }
    let r = dir.join(format!("{name}.toml"));
    write(&r, &text);
    r
}

async fn publish(plan: Plan, build: BuildOptions, to: &[String]) -> Published {
    build_and_push(Arc::new(plan), build, publish_options(to, true))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_and_push_pushes_what_it_built_and_verifies_it() {
    let reg = Registry::start();
    let dir = tempdir();
    let plan = load(&write_recipe(dir.path(), "app", None, 1), &[]);
    let out = dir.path().join("out");
    let to = [
        format!("{}/acme/app:1", reg.host()),
        format!("{}/acme/by-digest@", reg.host()),
    ];
    let p = publish(plan, build_options(&out), &to).await;
    assert!(p.error().is_none(), "{:?}", p.error());
    assert_eq!(p.push.digest, p.build.digest);
    // The layout is committed and names the pushed digest.
    let layout = Layout::open(&out).unwrap();
    assert_eq!(layout.resolve(None).unwrap().digest, p.build.digest);
    // The untagged target is reported by digest, and verified as such.
    let pinned = format!("{}/acme/by-digest@{}", reg.host(), p.build.digest);
    assert_eq!(p.push.targets[1].reference, pinned);
    let v = p.verify.as_ref().expect("verified");
    assert!(v.ok && v.digest.as_ref() == Some(&p.build.digest), "{v:?}");
    assert_eq!(v.references.len(), 2);
    // Each blob went in once: two layers and the config.
    assert_eq!(p.push.targets[0].blobs_uploaded, 3);
    let doc = p.to_json().unwrap();
    assert_eq!(doc["build"]["digest"], p.build.digest.to_string());
    assert_eq!(doc["push"]["digest"], p.build.digest.to_string());
    assert_eq!(doc["verify"]["ok"], true);
}

/// SBOM and provenance, unsigned.
fn evidence() -> SupplyOptions {
    SupplyOptions {
        sbom: Some(SbomFormat::Spdx),
        provenance: true,
        ..Default::default()
    }
}

/// GET `url`: status and body.
async fn get(url: &str) -> (u16, Vec<u8>) {
    let resp = reqwest::Client::new()
        .get(url)
        .header(
            "accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
        )
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.bytes().await.unwrap().to_vec())
}

/// A reporter that, at the first thing it hears once the build has written
/// its layout at `out` (the build then announces it), removes the image
/// manifest's file from the layout, as another process cleaning it might:
/// the evidence, made from the layout, then cannot be made.
struct RemoveManifestOnceWritten {
    out: PathBuf,
    done: AtomicBool,
}

impl RemoveManifestOnceWritten {
    fn hear(&self) {
        let index = self.out.join("index.json");
        if !index.exists() || self.done.swap(true, Ordering::SeqCst) {
            return;
        }
        let doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(index).unwrap()).unwrap();
        let digest = doc["manifests"][0]["digest"].as_str().unwrap();
        let hex = digest.trim_start_matches("sha256:");
        std::fs::remove_file(self.out.join("blobs/sha256").join(hex)).unwrap();
    }
}

impl Reporter for RemoveManifestOnceWritten {
    fn log(&self, _: Level, _: &str) {
        self.hear()
    }
    fn start(&self, _: &str, _: &str, _: Option<u64>) {
        self.hear()
    }
    fn advance(&self, _: &str, _: u64) {
        self.hear()
    }
    fn finish(&self, _: &str, _: &str) {
        self.hear()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_that_cannot_be_made_fails_the_run_before_any_manifest_or_tag() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg);
    let dir = tempdir();
    let plan = load(&write_recipe(dir.path(), "app", None, 60), &[]);
    let out = dir.path().join("out");
    let mut build = build_options(&out);
    let remover = Arc::new(RemoveManifestOnceWritten {
        out: out.clone(),
        done: AtomicBool::new(false),
    });
    build.reporter = remover.clone();
    let to = [
        format!("{}/acme/app:1", proxy.host()),
        format!("{}/acme/mirror:1", proxy.host()),
    ];
    let mut publish = publish_options(&to, false);
    publish.supply = Some(evidence());
    let got = build_and_push(Arc::new(plan), build, publish).await;
    assert!(
        remover.done.load(Ordering::SeqCst),
        "the layout was never written"
    );
    let e = got.expect_err("the run succeeded without its evidence");
    // Figure: the error is the build's (I/O, exit 1, not bad input) and
    // not one manifest PUT reached the registry (the image and its tags
    // were pushed before the evidence was made), and no tag is listed.
    assert!(!boxwright::error::is_bad_input(&e), "{e:#}");
    let log = proxy.log();
    let manifest_puts = log
        .iter()
        .filter(|l| l.method == "PUT" && l.path.contains("/manifests/"))
        .count();
    assert_eq!(manifest_puts, 0, "{e:#}\n{log:#?}");
    for repo in ["acme/app", "acme/mirror"] {
        let (status, body) = get(&format!("{}/v2/{repo}/tags/list", reg.url())).await;
        let tags: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        assert!(
            status == 404 || tags["tags"].as_array().is_none_or(|t| t.is_empty()),
            "{repo}: {status} {tags}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provenance_records_the_recipe_bytes_the_build_was_planned_from() {
    let reg = Registry::start();
    let dir = tempdir();
    let recipe = write_recipe(dir.path(), "app", None, 70);
    let planned = std::fs::read(&recipe).unwrap();
    let plan = load(&recipe, &[]);
    // Edited after planning, as during a long build: not what was built.
    let mut edited = planned.clone();
    edited.extend_from_slice(b"\n# edited while the image was building\n");
    std::fs::write(&recipe, &edited).unwrap();
    let to = [format!("{}/acme/app:1", reg.host())];
    let mut publish = publish_options(&to, false);
    publish.supply = Some(evidence());
    let out = dir.path().join("out");
    let p = build_and_push(Arc::new(plan), build_options(&out), publish)
        .await
        .unwrap();
    assert!(p.error().is_none(), "{:?}", p.error());
    let attached = &p.supply.as_ref().expect("attached").repositories[0];
    let prov = (attached.artifacts.iter())
        .find(|a| a.kind == Kind::Provenance)
        .expect("a provenance");
    let url = format!("{}/v2/acme/app", reg.url());
    let (status, manifest) = get(&format!("{url}/manifests/{}", prov.digest)).await;
    assert_eq!(status, 200);
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let (status, payload) = get(&format!("{url}/blobs/{layer}")).await;
    assert_eq!(status, 200);
    let statement: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    let recorded = &statement["predicate"]["buildDefinition"]["externalParameters"]["recipe"];
    // Figure: the sha256 of the bytes planned from, not of the file as it
    // was when the push ended.
    assert_eq!(
        recorded["digest"]["sha256"].as_str(),
        Some(sha256(&planned).trim_start_matches("sha256:"))
    );
}

/// A two-layer image (recipe `seed`) built in `dir` and pushed to `reg` as
/// `acme/base:1`: its reference.
async fn push_base(reg: &Registry, dir: &Path, seed: u64) -> String {
    let base_ref = format!("{}/acme/base:1", reg.host());
    let base = load(&write_recipe(dir, "base", None, seed), &[]);
    let to = std::slice::from_ref(&base_ref);
    let pushed = publish(base, build_options(&dir.join("base")), to).await;
    assert!(pushed.error().is_none(), "{:?}", pushed.error());
    base_ref
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_and_push_on_a_registry_base_mounts_the_base_layers() {
    let reg = Registry::start();
    let dir = tempdir();
    let base_ref = push_base(&reg, dir.path(), 10).await;

    let plan = load(&write_recipe(dir.path(), "app", Some(&base_ref), 20), &[]);
    let mut build = build_options(&dir.path().join("out"));
    let cache = dir.path().join("cache");
    // A registry base is synchronous: made (and dropped) off the runtime.
    build.registry_base = Some(
        tokio::task::spawn_blocking(move || {
            RegistryBase::new(
                Default::default(),
                CredentialStore::default(),
                BlobCache::new(Some(cache))?,
                boxwright::progress::silent(),
            )
        })
        .await
        .unwrap()
        .map(Arc::new)
        .unwrap(),
    );
    let to = [format!("{}/acme/app:1", reg.host())];
    let p = publish(plan, build, &to).await;
    assert!(p.error().is_none(), "{:?}", p.error());
    let served = p.build.base.as_ref().expect("a registry base");
    assert_eq!(served.reference, base_ref);
    // The base's two layers are mounted from its repository; the app's two
    // layers and its config are uploaded.
    let t = &p.push.targets[0];
    assert_eq!((t.blobs_mounted, t.blobs_uploaded), (2, 3), "{t:?}");
    assert!(p.verify.as_ref().is_some_and(|v| v.ok));
}

#[tokio::test]
async fn build_image_accounts_for_the_layout_it_wrote() {
    let dir = tempdir();
    let plan = load(
        &root().join("recipes/r2d.toml"),
        &[("VERSION", "1.4.0"), ("OWNER", "acme")],
    );
    let out = dir.path().join("r2d");
    let built = build_image(&plan, &build_options(&out)).unwrap();
    let read = LayoutImage::open(&out, Some("latest")).unwrap();
    let (got, want) = (
        walk(&built.content).await.unwrap(),
        walk(&read).await.unwrap(),
    );
    assert_eq!(got.root.digest, built.result.digest);
    let id = |d: &boxwright::oci::Descriptor| (d.digest.clone(), d.media_type.clone(), d.size);
    assert_eq!(id(&got.root), id(&want.root));
    let manifests = |g: &Graph| -> Vec<(String, String, Vec<u8>)> {
        g.manifests
            .iter()
            .map(|(d, b)| (d.digest.to_string(), d.media_type.clone(), b.to_vec()))
            .collect()
    };
    assert_eq!(manifests(&got), manifests(&want));
    assert_eq!(got.blobs, want.blobs);
    for d in &got.blobs {
        let path = built.content.blob(d).await.unwrap();
        assert_eq!(path, read.blob(d).await.unwrap(), "{}", d.digest);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), d.size);
    }
}

#[test]
fn a_compression_level_out_of_range_is_bad_input_not_an_abort() {
    let dir = tempdir();
    let plan = load(&write_recipe(dir.path(), "app", None, 3), &[]);
    let out = dir.path().join("out");
    for (codec, level) in [
        (Codec::Gzip, 0),
        (Codec::Gzip, 10),
        (Codec::Gzip, -5),
        (Codec::Zstd, 99),
    ] {
        let opts = BuildOptions {
            compression: Compression { codec, level },
            ..build_options(&out)
        };
        // Figure: an error of bad input (the level named), nothing written;
        // gzip's 99 aborted the whole process from a compression thread.
        let Err(e) = build_image(&plan, &opts) else {
            panic!("level {level} was not refused")
        };
        assert!(boxwright::error::is_bad_input(&e), "{e:#}");
        assert!(format!("{e:#}").contains(&level.to_string()), "{e:#}");
        assert!(!out.exists());
    }
}

#[test]
fn a_download_planned_on_a_current_thread_runtime_is_an_error_not_a_hang() {
    let dir = tempdir();
    std::fs::write(
        dir.path().join("r.toml"),
        format!(
            "[image]\nname = \"t\"\n[[layer]]\n[[layer.entry]]\nurl = \"http://127.0.0.1:9/f\"\nsha256 = \"{}\"\ndest = \"/f\"\n",
            "0".repeat(64)
        ),
    )
    .unwrap();
    let recipe = dir.path().join("r.toml");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let got = rt.block_on(async { recipe::load(&recipe, &LoadOptions::default()).map(|_| ()) });
        let _ = tx.send(got.map_err(|e| format!("{e:#}")));
    });
    // Figure: an answer within 20 s (it waited for ever), saying what runtime is needed.
    let got = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("planning a download on a current-thread runtime hung");
    let e = got.expect_err("planned");
    assert!(e.contains("multi-threaded tokio runtime"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_base_is_built_from_a_runtime_worker_thread() {
    let reg = Registry::start();
    let dir = tempdir();
    let base_ref = push_base(&reg, dir.path(), 30).await;
    let plan = load(&write_recipe(dir.path(), "app", Some(&base_ref), 40), &[]);
    let cache = BlobCache::new(Some(dir.path().join("cache"))).unwrap();
    // Figure: made and used right on a worker thread (no spawn_blocking),
    // the base resolves and the build completes; it panicked ("Cannot
    // start a runtime from within a runtime").
    let rb = RegistryBase::new(
        Default::default(),
        CredentialStore::default(),
        cache,
        boxwright::progress::silent(),
    )
    .unwrap();
    let opts = BuildOptions {
        registry_base: Some(Arc::new(rb)),
        ..build_options(&dir.path().join("out"))
    };
    let built = build_image(&plan, &opts).unwrap();
    assert_eq!(
        built.result.base.as_ref().map(|b| b.reference.as_str()),
        Some(base_ref.as_str())
    );
    let layers = &built.result.images[0].layers;
    assert_eq!(layers.iter().filter(|l| l.source == "base").count(), 2);
}

/// Figure: the R2D recipe's targets take the pipeline's three secrets as
/// they are kept, base64-encoded (`REPO_API_KEY` for GHCR with
/// `GITHUB_ACTOR`, `DOCKERHUB_USERNAME_ENCODED` and
/// `DOCKERHUB_API_KEY_ENCODED` for Docker Hub), and decode each; Docker Hub
/// is the optional backup.
#[test]
fn r2d_targets_take_the_pipelines_base64_secrets_as_they_are() {
    use boxwright::registry::credentials::Credential;
    let plan = load(
        &root().join("recipes/r2d.toml"),
        &[("VERSION", "1.4.0"), ("OWNER", "acme")],
    );
    let targets = PushTarget::from_recipe(&plan.targets, &plan.tags).unwrap();
    let secrets = [
        ("GITHUB_ACTOR", "octocat".to_string()),
        ("REPO_API_KEY", b64("ghp_repo-token")),
        ("DOCKERHUB_USERNAME_ENCODED", b64("acmebot")),
        ("DOCKERHUB_API_KEY_ENCODED", b64("dckr_pat_hub-token")),
    ];
    let env = |k: &str| {
        secrets
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.clone())
    };
    let mut seen = Vec::new();
    for t in &targets {
        let creds = t.credentials.as_ref().expect("credentials from the recipe");
        let Credential::Basic { username, password } = creds.resolve(&env).unwrap() else {
            panic!("{}: not a user and password", t.reference);
        };
        seen.push((
            t.reference.to_string(),
            username,
            password.expose().to_string(),
            t.optional,
        ));
    }
    let want = |r: &str, u: &str, p: &str, optional: bool| {
        (r.to_string(), u.to_string(), p.to_string(), optional)
    };
    assert_eq!(
        seen,
        [
            want(
                "ghcr.io/acme/diagram-to-iac-r2d:1.4.0",
                "octocat",
                "ghp_repo-token",
                false
            ),
            want(
                "ghcr.io/acme/diagram-to-iac-r2d:latest",
                "octocat",
                "ghp_repo-token",
                false
            ),
            want(
                "docker.io/acme/diagram-to-iac-r2d:1.4.0",
                "acmebot",
                "dckr_pat_hub-token",
                true
            ),
            want(
                "docker.io/acme/diagram-to-iac-r2d:latest",
                "acmebot",
                "dckr_pat_hub-token",
                true
            ),
        ]
    );
}

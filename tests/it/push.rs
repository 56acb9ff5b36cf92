//! `boxwright push` against real `docker-registry` instances: one behind
//! htpasswd basic auth, one behind bearer tokens from the test token server,
//! each behind a fault proxy that counts what arrives; and the helpers that
//! build and push images for the other push tests (`build_push`,
//! `push_faults`, `login`). Every test states the figure it checks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::common::{assert_ok, boxwright, noise, ok, run, sha256, write, Run};
use crate::env::Env;
use crate::pair::{blob_upload_bytes, body_bytes, uploads_by_digest, Pair};
use crate::support::{skopeo, tempdir, Fault, FaultProxy, Injected, LogEntry};

/// A built image: its layout and what a registry must receive.
pub(crate) struct Image {
    pub _dir: tempfile::TempDir,
    pub layout: PathBuf,
    pub digest: String,
    pub manifest_size: u64,
    /// Unique blobs (config + layers): digest -> size.
    pub blobs: BTreeMap<String, u64>,
}

impl Image {
    pub fn blob_bytes(&self) -> u64 {
        self.blobs.values().sum()
    }
}

/// A recipe with one layer per entry of `layers` (bytes of noise each).
pub(crate) fn recipe_text(
    layers: &[usize],
    seed: u64,
    targets: &str,
) -> (String, Vec<(String, Vec<u8>)>) {
    let mut text = String::from("tags = [\"1.0\"]\n\n[image]\nname = \"pushed\"\n\n");
    let mut files = Vec::new();
    for (i, len) in layers.iter().enumerate() {
        let name = format!("l{i}.bin");
        files.push((name.clone(), noise(*len, seed * 100 + i as u64)));
        text.push_str(&format!(
            "[[layer]]\nname = \"l{i}\"\n\n[[layer.entry]]\nsrc = \"{name}\"\ndest = \"/data/{name}\"\n\n"
        ));
    }
    text.push_str(targets);
    (text, files)
}

pub(crate) fn write_recipe(dir: &Path, layers: &[usize], seed: u64, targets: &str) -> PathBuf {
    let (text, files) = recipe_text(layers, seed, targets);
    for (name, data) in files {
        std::fs::write(dir.join(name), data).unwrap();
    }
    let r = dir.join("recipe.toml");
    write(&r, &text);
    r
}

/// Reads what a layout holds (single-platform image).
pub(crate) fn read_layout(layout: &Path) -> (String, u64, BTreeMap<String, u64>) {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let top = &index["manifests"][0];
    let digest = top["digest"].as_str().unwrap().to_string();
    let path = layout.join("blobs/sha256").join(&digest[7..]);
    let bytes = std::fs::read(path).unwrap();
    let m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let mut blobs = BTreeMap::new();
    for d in std::iter::once(&m["config"]).chain(m["layers"].as_array().unwrap()) {
        blobs.insert(
            d["digest"].as_str().unwrap().to_string(),
            d["size"].as_u64().unwrap(),
        );
    }
    (digest, bytes.len() as u64, blobs)
}

pub(crate) fn build_image(layers: &[usize], seed: u64) -> Image {
    let dir = tempdir();
    let recipe = write_recipe(dir.path(), layers, seed, "");
    let layout = dir.path().join("layout");
    let digest = ok(boxwright()
        .args(["build", "--quiet", "-o"])
        .arg(&layout)
        .arg(&recipe));
    let (d, manifest_size, blobs) = read_layout(&layout);
    assert_eq!(d, digest);
    Image {
        _dir: dir,
        layout,
        digest,
        manifest_size,
        blobs,
    }
}

pub(crate) fn push(env: &Env, image: &Image, to: &[String], extra: &[&str]) -> Run {
    let mut c = env.cmd();
    c.arg("push").arg(&image.layout);
    for t in to {
        c.args(["--to", t]);
    }
    c.args(extra);
    run(&mut c)
}

fn manifest_puts(log: &[LogEntry]) -> Vec<&LogEntry> {
    log.iter()
        .filter(|e| e.method == "PUT" && e.path.contains("/manifests/"))
        .collect()
}

/// The sha256 of the raw manifest a registry serves for `reference`.
pub(crate) fn remote_digest(reference: &str, creds: Option<&str>) -> String {
    let mut args = vec!["inspect", "--raw", "--tls-verify=false"];
    if let Some(c) = creds {
        args.extend(["--creds", c]);
    }
    let r = format!("docker://{reference}");
    args.push(&r);
    sha256(skopeo(&args).as_bytes())
}

/// `HOST/acme/app:TAG` for every tag on both registries of `pair` (B first).
pub(crate) fn app_refs(pair: &Pair, tags: &[&str]) -> Vec<String> {
    pair.proxies()
        .iter()
        .flat_map(|p| {
            tags.iter()
                .map(|tag| format!("{}/acme/app:{tag}", p.host()))
        })
        .collect()
}

/// The digest of the manifest the registry behind `p` serves for
/// `HOST/REPO:TAG` (`repo_tag`), read with its credentials.
pub(crate) fn served(pair: &Pair, p: &FaultProxy, repo_tag: &str) -> String {
    sha256(pair.raw(p, &format!("{}/{repo_tag}", p.host())).as_bytes())
}

/// Insists that both registries of `pair` serve `digest` for `acme/app`
/// under every tag.
pub(crate) fn assert_served(pair: &Pair, tags: &[&str], digest: &str) {
    for p in pair.proxies() {
        for tag in tags {
            assert_eq!(
                served(pair, p, &format!("acme/app:{tag}")),
                digest,
                "{tag} on {}",
                p.host()
            );
        }
    }
}

#[test]
fn push_dual_sends_each_blob_once_per_registry_and_manifests_after_blobs() {
    let pair = Pair::start();
    let env = &pair.env;
    let image = build_image(&[3 << 20, 1 << 20, 200_000], 1);
    let to = app_refs(&pair, &["1.4.0", "latest"]);
    let r = push(env, &image, &to, &[]);
    assert_ok(&r);
    let push_tokens = pair.tokens.requests();
    assert_eq!(r.stdout.trim(), image.digest);

    for p in pair.proxies() {
        let log = p.log();
        // Figure: request-body bytes = unique blobs once + the manifest once per tag.
        let body: u64 = body_bytes(p);
        assert_eq!(
            body,
            image.blob_bytes() + 2 * image.manifest_size,
            "registry {}: {log:#?}",
            p.host()
        );
        // Figure: each blob uploaded exactly once.
        let ups = uploads_by_digest(&log);
        assert_eq!(ups.len(), image.blobs.len(), "{ups:?}");
        assert!(ups.values().all(|&n| n == 1), "{ups:?}");
        for d in image.blobs.keys() {
            assert_eq!(ups.get(d), Some(&1), "{d} on {}", p.host());
        }
        // Figure: no manifest PUT arrives before the last blob request
        // (every blob confirmed present first).
        let first_manifest = log
            .iter()
            .position(|e| e.method == "PUT" && e.path.contains("/manifests/"))
            .unwrap();
        let last_blob = log
            .iter()
            .rposition(|e| e.path.contains("/blobs/"))
            .unwrap();
        assert!(last_blob < first_manifest, "{log:#?}");
        assert!(log[..first_manifest]
            .iter()
            .filter(|e| e.method == "PUT")
            .all(|e| e.status == Some(201)));
        assert_eq!(manifest_puts(&log).len(), 2);
    }
    // Both registries serve the same manifest under both tags.
    assert_served(&pair, &["1.4.0", "latest"], &image.digest);
    // The token server was asked for push on the target, never more, and
    // by the push for each scope set once, though its blobs start together.
    let reqs = pair.tokens.requests();
    assert!(reqs.iter().all(|t| t.status == 200), "{reqs:#?}");
    assert!(reqs
        .iter()
        .flat_map(|t| &t.scopes)
        .all(|s| s.starts_with("repository:acme/app:")));
    let mut sets: Vec<Vec<&String>> = push_tokens
        .iter()
        .map(|t| {
            let mut s: Vec<&String> = t.scopes.iter().collect();
            s.sort();
            s
        })
        .collect();
    let asked = sets.len();
    sets.sort();
    sets.dedup();
    assert_eq!(
        sets.len(),
        asked,
        "a scope set asked twice: {push_tokens:#?}"
    );
}

#[test]
fn push_again_sends_zero_blob_bytes_and_heads_only() {
    let pair = Pair::start();
    let env = &pair.env;
    let image = build_image(&[1 << 20, 300_000], 2);
    let to = app_refs(&pair, &["1", "latest"]);
    assert_ok(&push(env, &image, &to, &[]));
    for p in pair.proxies() {
        p.reset();
    }
    let r = push(env, &image, &to, &["--json"]);
    assert_ok(&r);
    for p in pair.proxies() {
        let log = p.log();
        // Figure: zero body bytes, only HEAD (plus the /v2/ ping GET).
        let methods: std::collections::BTreeSet<&str> =
            log.iter().map(|e| e.method.as_str()).collect();
        assert!(
            methods.iter().all(|m| *m == "HEAD" || *m == "GET"),
            "{log:#?}"
        );
        assert!(log
            .iter()
            .filter(|e| e.method == "GET")
            .all(|e| e.path == "/v2/"));
        assert_eq!(p.count("GET"), 1, "one ping: {log:#?}");
        assert_eq!(log.iter().map(|e| e.body_bytes).sum::<u64>(), 0);
        // One HEAD per blob, per manifest tag.
        assert_eq!(p.count("HEAD"), image.blobs.len() as u64 + 2, "{log:#?}");
    }
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    for t in report["targets"].as_array().unwrap() {
        assert_eq!(t["ok"], true);
        assert_eq!(t["bytes_sent"], 0);
        assert_eq!(t["blobs_uploaded"], 0);
        assert_eq!(t["blobs_present"], image.blobs.len());
        assert_eq!(t["digest"], image.digest.as_str());
    }
}

/// Pushes to `acme/app`, then to `mirror/app` on the same registry with
/// `--mount-from acme/app`; returns the proxy log of the second push.
fn push_then_mount(pair: &Pair, proxy: &FaultProxy, image: &Image, env: &Env) -> Vec<LogEntry> {
    let host = proxy.host();
    assert_ok(&push(env, image, &[format!("{host}/acme/app:1")], &[]));
    proxy.reset();
    pair.tokens.clear_requests();
    let r = push(
        env,
        image,
        &[format!("{host}/mirror/app:1")],
        &["--mount-from", &format!("{host}/acme/app"), "--json"],
    );
    assert_ok(&r);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let t = &report["targets"][0];
    assert_eq!(t["blobs_mounted"], image.blobs.len(), "{report:#}");
    assert_eq!(t["bytes_sent"], 0);
    proxy.log()
}

#[test]
fn push_to_second_repository_mounts_every_blob_on_both_registries() {
    let pair = Pair::start();
    let env = &pair.env;
    let image = build_image(&[2 << 20, 100_000], 3);
    for p in pair.proxies() {
        let log = push_then_mount(&pair, p, &image, env);
        // Figure: zero blob bytes; one mount POST per blob, each answered 201.
        assert_eq!(blob_upload_bytes(&log), 0, "{log:#?}");
        let posts: Vec<&LogEntry> = log.iter().filter(|e| e.method == "POST").collect();
        assert_eq!(posts.len(), image.blobs.len(), "{log:#?}");
        assert!(posts.iter().all(|e| e.status == Some(201)), "{log:#?}");
        assert!(posts.iter().all(|e| e
            .query
            .as_deref()
            .is_some_and(|q| q.contains("mount=") && q.contains("from=acme%2Fapp"))));
    }
    // On the token registry the mount token carries pull on the source.
    let reqs = pair.tokens.requests();
    let mount_req = reqs
        .iter()
        .find(|r| r.scopes.iter().any(|s| s == "repository:acme/app:pull"))
        .unwrap_or_else(|| panic!("no token asked pull on the source: {reqs:#?}"));
    assert!(mount_req
        .scopes
        .iter()
        .any(|s| s == "repository:mirror/app:pull,push"));
    assert!(mount_req
        .granted
        .iter()
        .any(|a| a.name == "acme/app" && a.actions.contains(&"pull".to_string())));
}

#[test]
fn push_mount_answered_202_continues_on_the_returned_session() {
    let pair = Pair::start();
    let env = &pair.env;
    let image = build_image(&[1 << 20, 50_000], 4);
    for p in pair.proxies() {
        let host = p.host();
        assert_ok(&push(env, &image, &[format!("{host}/acme/app:1")], &[]));
        p.reset();
        p.configure(|c| c.mount_202 = true);
        let r = push(
            env,
            &image,
            &[format!("{host}/mirror/app:1")],
            &["--mount-from", &format!("{host}/acme/app")],
        );
        assert_ok(&r);
        let log = p.log();
        // Figure: one POST per blob (the mount, answered 202), no second
        // POST; the bytes go once on the session it opened.
        let posts: Vec<&LogEntry> = log.iter().filter(|e| e.method == "POST").collect();
        assert_eq!(posts.len(), image.blobs.len(), "{log:#?}");
        assert!(posts
            .iter()
            .all(|e| e.status == Some(202) && e.injected == Some(Injected::Mount202)));
        assert_eq!(blob_upload_bytes(&log), image.blob_bytes());
        assert_eq!(served(&pair, p, "mirror/app:1"), image.digest);
    }
}

#[test]
fn push_strict_mount_query_passes_with_only_mount_and_from() {
    let pair = Pair::start();
    let env = &pair.env;
    let image = build_image(&[500_000], 5);
    for p in pair.proxies() {
        p.configure(|c| c.strict_mount_query = true);
        let log = push_then_mount(&pair, p, &image, env);
        // Figure: no request refused for its query; every mount 201.
        assert_eq!(p.injected_count(Injected::BadMountQuery), 0, "{log:#?}");
        for e in log.iter().filter(|e| e.method == "POST") {
            let keys: Vec<String> = e.query_pairs().into_iter().map(|(k, _)| k).collect();
            assert_eq!(keys, ["mount", "from"]);
            assert_eq!(e.status, Some(201));
        }
    }
}

#[test]
fn push_then_skopeo_copy_back_gives_the_local_digests() {
    let pair = Pair::start();
    let env = &pair.env;
    let image = build_image(&[1 << 20, 200_000], 8);
    let to = app_refs(&pair, &["1"]);
    assert_ok(&push(env, &image, &to, &[]));
    for p in pair.proxies() {
        let creds = pair.creds(p);
        let out = tempdir();
        let dest = format!("oci:{}:1", out.path().join("copy").display());
        skopeo(&[
            "copy",
            "--src-tls-verify=false",
            "--src-creds",
            &creds,
            &format!("docker://{}/acme/app:1", p.host()),
            &dest,
        ]);
        // Figure: the copy's manifest digest and blob digests are the build's.
        let (digest, _, blobs) = read_layout(&out.path().join("copy"));
        assert_eq!(digest, image.digest);
        assert_eq!(blobs, image.blobs);
    }
}

#[test]
fn push_rerun_after_failure_uploads_only_what_is_missing() {
    let pair = Pair::start();
    let env = &pair.env;
    let image = build_image(&[1 << 20, 700_000, 400_000, 100_000], 11);
    let p = &pair.b;
    let to = [format!("{}/acme/app:1", p.host())];
    // Half of the blob PUTs fail (seeded) and nothing is retried: some
    // blobs get in, the others do not.
    p.set_seed(7);
    p.configure(|c| {
        c.fault_rate = 0.5;
        c.fault_methods = vec!["PUT".into()];
        c.fault_kinds = vec![Fault::InternalError];
    });
    let r = push(env, &image, &to, &["--retries", "0"]);
    p.set_fault_rate(0.0);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("500"), "{}", r.stderr);
    let stored = pair.reg_b.stored_blobs();
    let missing: u64 = image
        .blobs
        .iter()
        .filter(|(d, _)| !stored.contains(d))
        .map(|(_, s)| s)
        .sum();
    assert!(
        missing > 0 && missing < image.blob_bytes(),
        "not a partial failure: {missing} of {} bytes missing",
        image.blob_bytes()
    );
    p.reset();
    let r = push(env, &image, &to, &[]);
    assert_ok(&r);
    // Figure: the re-run's blob bytes are exactly the blobs that were missing.
    assert_eq!(blob_upload_bytes(&p.log()), missing);
    assert_eq!(served(&pair, p, "acme/app:1"), image.digest);
}

#[test]
fn a_destination_named_twice_is_pushed_and_reported_once() {
    let pair = Pair::start();
    let image = build_image(&[300_000], 5);
    let repo = format!("{}/acme/dup", pair.a.host());
    // `R` means `R:latest`: the same destination, as a `$VERSION` that is
    // `latest` beside `latest` would name it.
    let to = [repo.clone(), format!("{repo}:latest")];
    let r = push(&pair.env, &image, &to, &["--json"]);
    // Figure: exit 0, one target row, ok, naming the digest.
    assert_ok(&r);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let targets = report["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 1, "{report:#}");
    assert_eq!(targets[0]["reference"], format!("{repo}:latest"));
    assert_eq!(targets[0]["ok"], true, "{report:#}");
    assert_eq!(targets[0]["digest"], image.digest.as_str());
}

#[test]
fn push_refuses_bad_flags_with_exit_2() {
    let env = Env::new();
    for args in [
        vec![
            "push",
            "x",
            "--to",
            "localhost:5000/a:1",
            "--jobs-per-registry",
            "0",
        ],
        vec![
            "push",
            "x",
            "--to",
            "localhost:5000/a:1",
            "--chunk-size",
            "0",
        ],
        vec![
            "push",
            "x",
            "--to",
            "localhost:5000/a:1",
            "--chunk-size",
            "lots",
        ],
        vec!["push", "x", "--to", "ghcr.io/Acme/App:1"],
        vec!["push", "x", "--to", "ghcr.io/acme/app:bad tag"],
        vec!["push", "x"],
    ] {
        let r = run(env.cmd().args(&args));
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("error"), "{args:?}: {}", r.stderr);
    }
    // A layout that is not there: bad input too.
    let r = run(env
        .cmd()
        .args(["push", "/nonexistent-layout", "--to", "localhost:1/a/b:1"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
}

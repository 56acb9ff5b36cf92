//! `boxwright push`, `build --push` and `login` against real `docker-registry`
//! instances: one behind htpasswd basic auth, one behind bearer tokens from
//! the test token server, each behind a fault proxy that counts what
//! arrives. Every test states the figure it checks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::{assert_ok, b64, boxwright, noise, ok, run, sha256, write, Run};
use crate::env::Env;
use crate::pair::{
    basic_creds, blob_upload_bytes, token_creds, uploads_by_digest, Pair, BASIC_PASS, BASIC_USER,
    TOKEN_PASS, TOKEN_USER,
};
use crate::support::{
    dead_host, skopeo, tempdir, Fault, FaultProxy, Injected, LogEntry, GHCR_PATCH_CAP,
};

/// A built image: its layout and what a registry must receive.
struct Image {
    _dir: tempfile::TempDir,
    layout: PathBuf,
    digest: String,
    manifest_size: u64,
    /// Unique blobs (config + layers): digest -> size.
    blobs: BTreeMap<String, u64>,
}

impl Image {
    fn blob_bytes(&self) -> u64 {
        self.blobs.values().sum()
    }
}

/// A recipe with one layer per entry of `layers` (bytes of noise each).
fn recipe_text(layers: &[usize], seed: u64, targets: &str) -> (String, Vec<(String, Vec<u8>)>) {
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

fn write_recipe(dir: &Path, layers: &[usize], seed: u64, targets: &str) -> PathBuf {
    let (text, files) = recipe_text(layers, seed, targets);
    for (name, data) in files {
        std::fs::write(dir.join(name), data).unwrap();
    }
    let r = dir.join("recipe.toml");
    write(&r, &text);
    r
}

/// Reads what a layout holds (single-platform image).
fn read_layout(layout: &Path) -> (String, u64, BTreeMap<String, u64>) {
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

fn build_image(layers: &[usize], seed: u64) -> Image {
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

fn push(env: &Env, image: &Image, to: &[String], extra: &[&str]) -> Run {
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
fn remote_digest(reference: &str, creds: Option<&str>) -> String {
    let mut args = vec!["inspect", "--raw", "--tls-verify=false"];
    if let Some(c) = creds {
        args.extend(["--creds", c]);
    }
    let r = format!("docker://{reference}");
    args.push(&r);
    sha256(skopeo(&args).as_bytes())
}

#[test]
fn push_dual_sends_each_blob_once_per_registry_and_manifests_after_blobs() {
    let pair = Pair::start();
    let env = &pair.env;
    let image = build_image(&[3 << 20, 1 << 20, 200_000], 1);
    let to: Vec<String> = pair
        .proxies()
        .iter()
        .flat_map(|p| {
            [
                format!("{}/acme/app:1.4.0", p.host()),
                format!("{}/acme/app:latest", p.host()),
            ]
        })
        .collect();
    let r = push(&env, &image, &to, &[]);
    assert_ok(&r);
    assert_eq!(r.stdout.trim(), image.digest);

    for p in pair.proxies() {
        let log = p.log();
        // Figure: request-body bytes = unique blobs once + the manifest once per tag.
        let body: u64 = ["PUT", "PATCH", "POST"]
            .iter()
            .map(|m| p.bytes_received(m))
            .sum();
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
    for (p, creds) in [(&pair.b, basic_creds()), (&pair.a, token_creds())] {
        for tag in ["1.4.0", "latest"] {
            let d = remote_digest(&format!("{}/acme/app:{tag}", p.host()), Some(&creds));
            assert_eq!(d, image.digest);
        }
    }
    // The token server was asked for push on the target, never more.
    let reqs = pair.tokens.requests();
    assert!(reqs.iter().all(|t| t.status == 200), "{reqs:#?}");
    assert!(reqs
        .iter()
        .flat_map(|t| &t.scopes)
        .all(|s| s.starts_with("repository:acme/app:")));
}

#[test]
fn push_again_sends_zero_blob_bytes_and_heads_only() {
    let pair = Pair::start();
    let env = &pair.env;
    let image = build_image(&[1 << 20, 300_000], 2);
    let to: Vec<String> = pair
        .proxies()
        .iter()
        .flat_map(|p| {
            [
                format!("{}/acme/app:1", p.host()),
                format!("{}/acme/app:latest", p.host()),
            ]
        })
        .collect();
    assert_ok(&push(&env, &image, &to, &[]));
    for p in pair.proxies() {
        p.reset();
    }
    let r = push(&env, &image, &to, &["--json"]);
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
        let log = push_then_mount(&pair, p, &image, &env);
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
        assert_ok(&push(&env, &image, &[format!("{host}/acme/app:1")], &[]));
        p.reset();
        p.configure(|c| c.mount_202 = true);
        let r = push(
            &env,
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
        assert_eq!(
            remote_digest(
                &format!("{host}/mirror/app:1"),
                Some(&if host == pair.b.host() {
                    basic_creds()
                } else {
                    token_creds()
                })
            ),
            image.digest
        );
    }
}

#[test]
fn push_strict_mount_query_passes_with_only_mount_and_from() {
    let pair = Pair::start();
    let env = &pair.env;
    let image = build_image(&[500_000], 5);
    for p in pair.proxies() {
        p.configure(|c| c.strict_mount_query = true);
        let log = push_then_mount(&pair, p, &image, &env);
        // Figure: no request refused for its query; every mount 201.
        assert_eq!(p.injected_count(Injected::BadMountQuery), 0, "{log:#?}");
        for e in log.iter().filter(|e| e.method == "POST") {
            let keys: Vec<String> =
                reqwest::Url::parse(&format!("http://x/?{}", e.query.as_deref().unwrap_or("")))
                    .unwrap()
                    .query_pairs()
                    .map(|(k, _)| k.into_owned())
                    .collect();
            assert_eq!(keys, ["mount", "from"]);
            assert_eq!(e.status, Some(201));
        }
    }
}

#[test]
fn push_survives_twenty_percent_faults_and_registries_agree() {
    let pair = Pair::start();
    let env = &pair.env;
    let image = build_image(&[2 << 20, 1 << 20, 300_000, 100_000], 6);
    for (i, p) in pair.proxies().into_iter().enumerate() {
        p.set_seed(1000 + i as u64);
        p.set_fault_rate(0.2);
    }
    let to: Vec<String> = pair
        .proxies()
        .iter()
        .flat_map(|p| {
            [
                format!("{}/acme/app:1", p.host()),
                format!("{}/acme/app:latest", p.host()),
            ]
        })
        .collect();
    let r = push(&env, &image, &to, &["--json", "--verbose"]);
    for p in pair.proxies() {
        p.set_fault_rate(0.0);
    }
    assert_ok(&r);
    let injected: usize = pair.proxies().iter().map(|p| p.faults().len()).sum();
    assert!(injected >= 3, "the proxies injected only {injected} faults");
    // Figure: both registries hold identical digests, equal to the local build.
    for (p, creds) in [(&pair.b, basic_creds()), (&pair.a, token_creds())] {
        for tag in ["1", "latest"] {
            assert_eq!(
                remote_digest(&format!("{}/acme/app:{tag}", p.host()), Some(&creds)),
                image.digest
            );
        }
        let stored = match p.host() == pair.b.host() {
            true => pair.reg_b.stored_blobs(),
            false => pair.reg_a.stored_blobs(),
        };
        for d in image.blobs.keys() {
            assert!(stored.contains(d), "{d} missing on {}", p.host());
        }
    }
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    // Figure: retries are reported per registry only (4 targets, none
    // claiming a per-target count it cannot have).
    let targets = report["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 4);
    assert!(
        targets.iter().all(|t| t.get("retries").is_none()),
        "{report:#}"
    );
    let retries: u64 = report["registries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["retries"].as_u64().unwrap())
        .sum();
    assert!(retries > 0, "{report:#}");
}

#[test]
fn push_chunked_honours_the_4mib_patch_cap() {
    let pair = Pair::start();
    let env = &pair.env;
    let image = build_image(&[10 << 20, 100_000], 7);
    for p in pair.proxies() {
        p.configure(|c| c.patch_cap = Some(GHCR_PATCH_CAP));
    }
    let to: Vec<String> = pair
        .proxies()
        .iter()
        .map(|p| format!("{}/acme/app:1", p.host()))
        .collect();
    let r = push(&env, &image, &to, &["--chunk-size", "8MiB"]);
    assert_ok(&r);
    for p in pair.proxies() {
        let log = p.log();
        let patches: Vec<&LogEntry> = log.iter().filter(|e| e.method == "PATCH").collect();
        // Figure: every accepted PATCH is at most 4 MiB; the 8 MiB chunk was
        // refused once per big blob, then the size was halved.
        assert!(patches
            .iter()
            .filter(|e| e.status == Some(202))
            .all(|e| e.body_bytes <= GHCR_PATCH_CAP));
        let refused = p.injected_count(Injected::PatchTooLarge);
        assert_eq!(refused, 1, "{log:#?}");
        let accepted: u64 = patches
            .iter()
            .filter(|e| e.status == Some(202))
            .map(|e| e.body_bytes)
            .sum();
        assert_eq!(accepted, image.blob_bytes());
    }
    assert_eq!(
        remote_digest(
            &format!("{}/acme/app:1", pair.a.host()),
            Some(&token_creds())
        ),
        image.digest
    );
}

/// The `digest=` of a logged upload PUT.
fn digest_param(e: &LogEntry) -> String {
    let q = e.query.clone().unwrap_or_default();
    reqwest::Url::parse(&format!("http://x/?{q}"))
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "digest")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// `registries[].retries` of a `push --json` report, by registry.
fn retries_by_registry(report: &serde_json::Value) -> BTreeMap<String, u64> {
    report["registries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["registry"].as_str().unwrap().to_string(),
                r["retries"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Push `image` to both registries of `pair` (`acme/app:1`) with `extra`
/// flags and `--json`, after `arm` queued a fault on `pair.a` (the
/// GHCR-like one); check what both must hold whatever the fault was.
fn push_with_fault_on_token_registry(
    pair: &Pair,
    image: &Image,
    extra: &[&str],
    arm: impl FnOnce(&FaultProxy),
) -> (serde_json::Value, Vec<LogEntry>) {
    let env = &pair.env;
    let to: Vec<String> = pair
        .proxies()
        .iter()
        .map(|p| format!("{}/acme/app:1", p.host()))
        .collect();
    arm(&pair.a);
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    let r = push(&env, image, &to, &args);
    assert_ok(&r);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    for (p, creds, reg) in [
        (&pair.b, basic_creds(), &pair.reg_b),
        (&pair.a, token_creds(), &pair.reg_a),
    ] {
        assert_eq!(
            remote_digest(&format!("{}/acme/app:1", p.host()), Some(&creds)),
            image.digest
        );
        let stored = reg.stored_blobs();
        for d in image.blobs.keys() {
            assert!(stored.contains(d), "{d} missing on {}", p.host());
        }
        // Each blob completed (PUT answered 201) exactly once per registry.
        let uploads = uploads_by_digest(&p.log());
        assert_eq!(uploads.len(), image.blobs.len(), "{uploads:?}");
        assert!(uploads.values().all(|&n| n == 1), "{uploads:?}");
    }
    // Figure: one retry, on the faulted registry only.
    let retries = retries_by_registry(&report);
    assert_eq!(retries[&pair.a.host()], 1, "{report:#}");
    assert_eq!(retries[&pair.b.host()], 0, "{report:#}");
    (report, pair.a.log())
}

#[test]
fn push_recovers_from_blob_upload_unknown_on_the_final_put() {
    let pair = Pair::start();
    let image = build_image(&[1 << 20, 300_000], 21);
    let (_, log) = push_with_fault_on_token_registry(&pair, &image, &[], |p| {
        p.fail_next("PUT", Fault::UploadUnknown)
    });
    let faulted: Vec<&LogEntry> = log.iter().filter(|e| e.injected.is_some()).collect();
    assert_eq!(faulted.len(), 1, "{log:#?}");
    assert_eq!(faulted[0].method, "PUT");
    assert_eq!(faulted[0].status, Some(404));
    let lost = image.blobs[&digest_param(faulted[0])];
    // Figure: the session is abandoned and the blob sent again on a new one:
    // one POST more than blobs, and blob bytes = image + the lost blob once.
    let posts = log.iter().filter(|e| e.method == "POST").count();
    assert_eq!(posts, image.blobs.len() + 1, "{log:#?}");
    assert_eq!(blob_upload_bytes(&log), image.blob_bytes() + lost);
}

#[test]
fn push_chunked_recovers_from_blob_upload_unknown_on_a_middle_patch() {
    let pair = Pair::start();
    let image = build_image(&[3 << 20, 100_000], 22);
    let (_, log) =
        push_with_fault_on_token_registry(&pair, &image, &["--chunk-size", "1MiB"], |p| {
            p.fail_next_chunk(1 << 20, Fault::UploadUnknown)
        });
    let faulted: Vec<&LogEntry> = log.iter().filter(|e| e.injected.is_some()).collect();
    assert_eq!(faulted.len(), 1, "{log:#?}");
    assert_eq!(faulted[0].method, "PATCH");
    assert_eq!(faulted[0].status, Some(404));
    assert_eq!(
        faulted[0].content_range.as_deref(),
        Some("1048576-2097151"),
        "the second chunk of the 3 MiB layer"
    );
    // Figure: the upload restarts from byte 0 on a new session: the chunks
    // accepted add up to the image plus the one chunk the lost session held.
    let accepted: u64 = log
        .iter()
        .filter(|e| e.method == "PATCH" && e.status == Some(202))
        .map(|e| e.body_bytes)
        .sum();
    assert_eq!(accepted, image.blob_bytes() + (1 << 20));
    assert!(log
        .iter()
        .filter(|e| e.method == "PATCH" && e.status == Some(202))
        .all(|e| e.body_bytes <= 1 << 20));
    let posts = log.iter().filter(|e| e.method == "POST").count();
    assert_eq!(posts, image.blobs.len() + 1, "{log:#?}");
}

#[test]
fn push_waits_for_retry_after_on_a_429_put() {
    let pair = Pair::start();
    let env = &pair.env;
    let image = build_image(&[200_000], 23);
    let p = &pair.b;
    let timed = |repo: &str| {
        let started = std::time::Instant::now();
        let r = push(
            &env,
            &image,
            &[format!("{}/{repo}:1", p.host())],
            &["--json", "--verbose"],
        );
        let secs = started.elapsed().as_secs_f64();
        assert_ok(&r);
        (secs, r)
    };
    // A warm-up, then the fastest of two clean pushes, one before and one
    // after the faulted one (each to a fresh repository, so each uploads
    // everything), as the baseline.
    timed("warm/app");
    let before = timed("base1/app").0;
    p.reset();
    p.fail_next("PUT", Fault::TooManyRequests);
    let (faulted, r) = timed("slow/app");
    let log = p.log();
    let baseline = before.min(timed("base2/app").0).min(timed("base3/app").0);
    assert_eq!(
        p.injected_count(Injected::Fault(Fault::TooManyRequests)),
        1,
        "{log:#?}"
    );
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(retries_by_registry(&report)[&p.host()], 1, "{report:#}");
    assert!(r.stderr.contains("[retry after 1s]"), "{}", r.stderr);
    // Figure: the restarted upload's POST came at least 1 s after the 429
    // (the proxy's clock).
    let at = log
        .iter()
        .position(|e| e.injected.is_some())
        .expect("the 429");
    let posts_after: Vec<&LogEntry> = log[at + 1..]
        .iter()
        .filter(|e| e.method == "POST")
        .collect();
    assert_eq!(posts_after.len(), 1, "{log:#?}");
    let gap = posts_after[0].arrived - log[at].arrived;
    assert!(gap.as_secs_f64() >= 1.0, "{gap:?}");
    // Figure: Retry-After: 1 costs at least 0.9 s more than a clean push.
    eprintln!("retry-after: faulted {faulted:.3} s, baseline {baseline:.3} s, gap {gap:?}");
    assert!(
        faulted - baseline >= 0.9,
        "faulted {faulted:.3} s vs baseline {baseline:.3} s"
    );
    assert_eq!(
        remote_digest(&format!("{}/slow/app:1", p.host()), Some(&basic_creds())),
        image.digest
    );
}

#[test]
fn push_then_skopeo_copy_back_gives_the_local_digests() {
    let pair = Pair::start();
    let env = &pair.env;
    let image = build_image(&[1 << 20, 200_000], 8);
    let to: Vec<String> = pair
        .proxies()
        .iter()
        .map(|p| format!("{}/acme/app:1", p.host()))
        .collect();
    assert_ok(&push(&env, &image, &to, &[]));
    for (p, creds) in [(&pair.b, basic_creds()), (&pair.a, token_creds())] {
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
fn build_push_uses_recipe_targets_and_optional_failures_only_warn() {
    let pair = Pair::start();
    let env = Env::new(); // no config.json: credentials come from the recipe
    let dir = tempdir();
    let dead = dead_host();
    let targets = format!(
        r#"
[[target]]
ref = "{}/acme/app"
username_env = "T_USER"
password_env = "T_PASS"

[[target]]
ref = "{}/acme/app"
role = "backup"
username_env = "B_USER"
password_env = "B_PASS_ENCODED"
encoding = "base64"

[[target]]
ref = "{dead}/acme/app"
role = "backup"
optional = true
"#,
        pair.a.host(),
        pair.b.host()
    );
    let recipe = write_recipe(dir.path(), &[2 << 20, 1 << 20, 300_000], 9, &targets);
    std::fs::write(
        dir.path().join("recipe.toml"),
        std::fs::read_to_string(&recipe)
            .unwrap()
            .replace("tags = [\"1.0\"]", "tags = [\"1.0\", \"latest\"]"),
    )
    .unwrap();
    let layout = dir.path().join("out");
    let r = run(env
        .cmd()
        .args(["build", "--push", "--retries", "1", "-o"])
        .arg(&layout)
        .arg(&recipe)
        .env("T_USER", TOKEN_USER)
        .env("T_PASS", TOKEN_PASS)
        .env("B_USER", BASIC_USER)
        .env("B_PASS_ENCODED", b64(BASIC_PASS)));
    assert_ok(&r);
    let (digest, manifest_size, blobs) = read_layout(&layout);
    assert_eq!(r.stdout.trim(), digest);
    // Figure: the optional target's failure is one warning naming it.
    assert!(
        r.stderr.contains("warning:") && r.stderr.contains(&dead),
        "{}",
        r.stderr
    );
    // Figure: all tags on both registries, each blob sent once per registry.
    let blob_bytes: u64 = blobs.values().sum();
    for (p, creds) in [(&pair.b, basic_creds()), (&pair.a, token_creds())] {
        for tag in ["1.0", "latest"] {
            assert_eq!(
                remote_digest(&format!("{}/acme/app:{tag}", p.host()), Some(&creds)),
                digest
            );
        }
        let body: u64 = ["PUT", "PATCH", "POST"]
            .iter()
            .map(|m| p.bytes_received(m))
            .sum();
        assert_eq!(body, blob_bytes + 2 * manifest_size);
    }

    // A required target that fails: exit 1, naming registry, repository, status.
    let r = run(env
        .cmd()
        .args(["build", "--push", "--retries", "1", "-o"])
        .arg(&layout)
        .arg(&recipe)
        .env("T_USER", TOKEN_USER)
        .env("T_PASS", TOKEN_PASS)
        .env("B_USER", BASIC_USER)
        .env("B_PASS_ENCODED", b64("wrong-password")));
    assert_eq!(r.code, 1, "{}", r.stderr);
    let last = r.stderr.lines().last().unwrap_or("");
    let err = &r.stderr[r.stderr.find("error:").expect("an error line")..];
    assert!(err.contains(&pair.b.host()), "{}", r.stderr);
    assert!(err.contains("acme/app"), "{}", r.stderr);
    assert!(err.contains("401"), "{}", r.stderr);
    // Every target has a line in the summary (3 targets x 2 tags).
    for tag in ["1.0", "latest"] {
        for host in [pair.a.host(), pair.b.host(), dead.clone()] {
            let name = format!("{host}/acme/app:{tag}");
            assert!(
                r.stderr.contains(&name),
                "no line for {name}: {last}\n{}",
                r.stderr
            );
        }
    }
}

#[test]
fn build_push_streams_layers_before_the_build_ends() {
    // The first layer is small, the last big: with one compression job the
    // small layer's upload must arrive at the registry before the build
    // commits, i.e. before the first manifest, while the big one compresses.
    let pair = Pair::start();
    let env = &pair.env;
    let dir = tempdir();
    let targets = format!("[[target]]\nref = \"{}/acme/app\"\n", pair.b.host());
    let recipe = write_recipe(dir.path(), &[200_000, 24 << 20], 10, &targets);
    let layout = dir.path().join("out");
    let r = run(env
        .cmd()
        .args(["build", "--push", "--verbose", "--jobs", "1", "-o"])
        .arg(&layout)
        .arg(&recipe));
    assert_ok(&r);
    let (digest, _, blobs) = read_layout(&layout);
    assert_eq!(r.stdout.trim(), digest);
    // Figure: the small layer's upload line comes before the big layer's
    // "built" line in the log (the stream does not wait for the build).
    let small = blobs
        .iter()
        .find(|(_, s)| **s < 1 << 20 && **s > 100_000)
        .unwrap()
        .0;
    let ready = r
        .stderr
        .find(&format!("layer {small} ready"))
        .unwrap_or_else(|| panic!("{}", r.stderr));
    let big_done = r
        .stderr
        .find("l1: sha256:")
        .unwrap_or_else(|| panic!("{}", r.stderr));
    assert!(ready < big_done, "{}", r.stderr);
    let sent = r.stderr[..big_done]
        .matches(&format!(
            "PUT http://{}/v2/acme/app/blobs/uploads/",
            pair.b.host()
        ))
        .count();
    assert!(
        sent >= 1,
        "no blob PUT before the big layer finished:\n{}",
        r.stderr
    );
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
    let r = push(&env, &image, &to, &["--retries", "0"]);
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
    let r = push(&env, &image, &to, &[]);
    assert_ok(&r);
    // Figure: the re-run's blob bytes are exactly the blobs that were missing.
    assert_eq!(blob_upload_bytes(&p.log()), missing);
    assert_eq!(remote_digest(&to[0], Some(&basic_creds())), image.digest);
}

#[test]
fn login_writes_config_json_that_push_uses_and_logout_removes_it() {
    let pair = Pair::start();
    let env = Env::new();
    let image = build_image(&[100_000], 12);
    let mut c = env.cmd();
    c.args([
        "login",
        &pair.b.host(),
        "-u",
        BASIC_USER,
        "--password-stdin",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{BASIC_PASS}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Figure: config.json holds base64(user:password) under the registry, as docker writes it.
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.config_dir().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(
        cfg["auths"][pair.b.host()]["auth"],
        b64(&format!("{BASIC_USER}:{BASIC_PASS}"))
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(env.config_dir().join("config.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "config.json is readable by others");
    let to = [format!("{}/acme/app:1", pair.b.host())];
    assert_ok(&push(&env, &image, &to, &[]));
    ok(env.cmd().args(["logout", &pair.b.host()]));
    let r = push(&env, &image, &to, &["--retries", "0"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("401"), "{}", r.stderr);
}

/// `boxwright login HOST -u USER --password-stdin EXTRA...` with `pass` on stdin.
fn login_with(env: &Env, host: &str, user: &str, pass: &str, extra: &[&str]) -> Run {
    let mut child = env
        .cmd()
        .args(["login", host, "-u", user, "--password-stdin"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{pass}\n").as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into(),
        stderr: String::from_utf8_lossy(&o.stderr).into(),
    }
}

#[test]
fn login_checks_credentials_with_the_registry_before_writing() {
    let pair = Pair::start();
    let env = Env::new();
    let cfg_path = env.config_dir().join("config.json");
    let before = "{\n  \"auths\": {\n    \"quay.io\": {\"auth\": \"cTpw\"}\n  }\n}\n";
    write(&cfg_path, before);
    for (p, user, pass) in [
        (&pair.b, BASIC_USER, BASIC_PASS),
        (&pair.a, TOKEN_USER, TOKEN_PASS),
    ] {
        let host = p.host();
        let wrong = format!("{pass}-wrong");
        pair.tokens.clear_requests();
        p.reset();
        let r = login_with(&env, &host, user, &wrong, &[]);
        // Figure: a wrong password is exit 1, config.json byte for byte as
        // before, and neither password nor its base64 in the output.
        assert_eq!(r.code, 1, "{host}: {}", r.stderr);
        assert!(r.stderr.contains("refused the credentials"), "{}", r.stderr);
        assert!(
            r.stderr.contains("config.json was not changed"),
            "{}",
            r.stderr
        );
        let all = format!("{}{}", r.stdout, r.stderr);
        for secret in [
            wrong.clone(),
            b64(&format!("{user}:{wrong}")),
            pass.to_string(),
        ] {
            assert!(!all.contains(&secret), "printed a secret:\n{all}");
        }
        assert_eq!(std::fs::read_to_string(&cfg_path).unwrap(), before);
        // Figure: the check is `GET /v2/` only (nothing written upstream).
        let log = p.log();
        assert!(!log.is_empty());
        assert!(
            log.iter().all(|e| e.method == "GET" && e.path == "/v2/"),
            "{log:#?}"
        );
        if host == pair.a.host() {
            // Figure: one token request, with the user's credentials and no
            // scope, refused with 401; the registry never saw a token.
            let t = pair.tokens.requests();
            assert_eq!(t.len(), 1, "{t:#?}");
            assert_eq!(t[0].user.as_deref(), Some(user));
            assert!(t[0].scopes.is_empty());
            assert_eq!(t[0].status, 401);
            assert!(log.iter().all(|e| !e.authorization), "{log:#?}");
        } else {
            // Figure: Basic credentials sent and answered 401.
            assert!(log.iter().any(|e| e.authorization && e.status == Some(401)));
        }

        pair.tokens.clear_requests();
        p.reset();
        let r = login_with(&env, &host, user, pass, &[]);
        assert_ok(&r);
        // Figure: the right password is written (base64 user:pass) and the
        // other entry is kept; the registry answered 200 to an authorized /v2/.
        let cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
        assert_eq!(cfg["auths"][&host]["auth"], b64(&format!("{user}:{pass}")));
        assert_eq!(cfg["auths"]["quay.io"]["auth"], "cTpw");
        assert!(p
            .log()
            .iter()
            .any(|e| e.path == "/v2/" && e.authorization && e.status == Some(200)));
        if host == pair.a.host() {
            let t = pair.tokens.requests();
            assert_eq!(t.iter().filter(|t| t.status == 200).count(), 1, "{t:#?}");
        }
        // Put the file back for the next registry.
        write(&cfg_path, before);
    }
}

#[test]
fn login_to_an_unreachable_registry_fails_and_no_verify_stores_anyway() {
    let env = Env::new();
    let cfg_path = env.config_dir().join("config.json");
    let host = dead_host();
    let started = std::time::Instant::now();
    let r = login_with(&env, &host, "u", "p-secret-1", &[]);
    // Figure: exit 1 within 10 s (2 quick retries), nothing written.
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(r.stderr.contains("could not reach"), "{}", r.stderr);
    assert!(!cfg_path.exists());
    // Figure: --no-verify writes without a single request (exit 0).
    let r = login_with(&env, &host, "u", "p-secret-1", &["--no-verify"]);
    assert_ok(&r);
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    assert_eq!(cfg["auths"][&host]["auth"], b64("u:p-secret-1"));
    assert!(!format!("{}{}", r.stdout, r.stderr).contains("p-secret-1"));
}

#[test]
fn secrets_never_appear_in_any_output() {
    let pair = Pair::start();
    let env = Env::new();
    let dir = tempdir();
    let targets = format!(
        "[[target]]\nref = \"{}/acme/app\"\nusername_env = \"T_USER\"\npassword_env = \"T_PASS\"\n\n[[target]]\nref = \"{}/acme/app\"\nusername_env = \"B_USER\"\npassword_env = \"B_PASS\"\nencoding = \"base64\"\n",
        pair.a.host(),
        pair.b.host()
    );
    let recipe = write_recipe(dir.path(), &[300_000], 13, &targets);
    let layout = dir.path().join("out");
    let mut outputs: Vec<(String, Run)> = Vec::new();
    let creds_env = |c: &mut Command| {
        c.env("T_USER", TOKEN_USER)
            .env("T_PASS", TOKEN_PASS)
            .env("B_USER", BASIC_USER)
            .env("B_PASS", b64(BASIC_PASS));
    };
    let mut c = env.cmd();
    c.args(["--verbose", "build", "--push", "-o"])
        .arg(&layout)
        .arg(&recipe);
    creds_env(&mut c);
    outputs.push(("build --push".into(), run(&mut c)));
    // login for both, then push with --json, inspect.
    for (host, user, pass) in [
        (pair.b.host(), BASIC_USER, BASIC_PASS),
        (pair.a.host(), TOKEN_USER, TOKEN_PASS),
    ] {
        let mut child = env
            .cmd()
            .args(["--verbose", "login", &host, "-u", user, "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(pass.as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        outputs.push((
            format!("login {host}"),
            Run {
                code: o.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&o.stdout).into(),
                stderr: String::from_utf8_lossy(&o.stderr).into(),
            },
        ));
    }
    let mut c = env.cmd();
    c.args(["--verbose", "push", "--json"]).arg(&layout);
    for p in pair.proxies() {
        c.args(["--to", &format!("{}/other/app:2", p.host())]);
    }
    outputs.push(("push".into(), run(&mut c)));
    let mut c = env.cmd();
    c.args(["--verbose", "inspect"]).arg(&layout);
    outputs.push(("inspect".into(), run(&mut c)));
    // Failures print errors: a wrong password must not echo either.
    let mut c = env.cmd();
    c.args(["--verbose", "build", "--push", "--retries", "0", "-o"])
        .arg(&layout)
        .arg(&recipe);
    creds_env(&mut c);
    c.env("B_PASS", b64(&format!("{BASIC_PASS}-wrong")));
    outputs.push(("build --push (wrong password)".into(), run(&mut c)));

    let needles = [
        BASIC_PASS.to_string(),
        TOKEN_PASS.to_string(),
        b64(BASIC_PASS),
        b64(&format!("{BASIC_USER}:{BASIC_PASS}")),
        b64(&format!("{TOKEN_USER}:{TOKEN_PASS}")),
        // Any JWT the token server issued (header `{"` base64url-encoded).
        "eyJ".to_string(),
    ];
    for (i, (what, r)) in outputs.iter().enumerate() {
        let expected = if i + 1 == outputs.len() { 1 } else { 0 };
        assert_eq!(r.code, expected, "{what}: {}", r.stderr);
        let all = format!("{}{}", r.stdout, r.stderr);
        for n in &needles {
            assert!(
                !all.contains(n.as_str()),
                "{what} printed a secret ({n}):\n{all}"
            );
        }
    }
    // --verbose really was verbose (requests are logged).
    assert!(outputs[0].1.stderr.contains("debug:"));
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

#[test]
fn push_refreshes_a_refused_token_once_and_goes_on() {
    let pair = Pair::start();
    let env = &pair.env;
    let image = build_image(&[300_000], 14);
    // The first tokens are already expired (the registry answers 401); as
    // soon as one was issued, the server goes back to valid tokens.
    pair.tokens.set_issue_expired(true);
    let to = [format!("{}/acme/app:1", pair.a.host())];
    let child = env
        .cmd()
        .args(["push"])
        .arg(&image.layout)
        .args(["--to", &to[0]])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while pair.tokens.requests().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    pair.tokens.set_issue_expired(false);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = pair.a.log();
    // Figure: at least one authorized request answered 401, then replayed
    // with a fresh token and answered; the push completes.
    let refused = log
        .iter()
        .filter(|e| e.authorization && e.status == Some(401))
        .count();
    assert!(refused >= 1, "{log:#?}");
    assert_eq!(remote_digest(&to[0], Some(&token_creds())), image.digest);

    // Tokens that are always refused: each request refreshes once, then the
    // push fails naming the 401 (no endless loop).
    pair.tokens.set_issue_expired(true);
    let r = push(
        &env,
        &image,
        &[format!("{}/other/app:1", pair.a.host())],
        &["--retries", "0"],
    );
    pair.tokens.set_issue_expired(false);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("401"), "{}", r.stderr);
}

#[test]
fn login_fails_when_the_credential_helper_fails() {
    // A helper that closes its stdin and fails: the write of the secret to it
    // breaks the pipe. That is a failure (exit 1), not a closed stdout.
    let env = Env::new();
    let bin = env.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-bad");
    write(&helper, "#!/bin/sh\nexec 0<&-\nsleep 0.3\nexit 3\n");
    crate::common::chmod(&helper, 0o755);
    let cfg_path = env.config_dir().join("config.json");
    write(&cfg_path, "{\"credsStore\": \"bad\"}\n");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = env
        .cmd()
        .env("PATH", path)
        .args([
            "login",
            "registry.example:5000",
            "-u",
            "bob",
            "--password-stdin",
            "--no-verify",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"helper-secret-91\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("bad"), "the helper is named: {stderr}");
    assert!(!stderr.contains("helper-secret-91"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&cfg_path).unwrap(),
        "{\"credsStore\": \"bad\"}\n"
    );
}

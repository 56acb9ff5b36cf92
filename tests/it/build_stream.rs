//! `boxwright build --push` streaming each layer to every registry as it is
//! compressed: one upload session per registry and layer, one `PATCH` of
//! the whole stream where the registry takes any size (`PATCH`es with
//! `Content-Range` of at most the chunk size under a cap), the digest on
//! the final `PUT`; a session that fails falls back to uploading the
//! finished file; a layer from the layer cache is not streamed. Every test
//! states the figure it checks, from what the proxies logged.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{assert_ok, run, Run};
use crate::env::Env;
use crate::pair::{blob_upload_bytes, uploads_by_digest, Pair};
use crate::push::{assert_served, read_layout, write_recipe};
use crate::support::{
    dead_host, tempdir, Fault, FaultProxy, Injected, LogEntry, Registry, Scripted, GHCR_PATCH_CAP,
};

/// `build --push --json -o layout recipe --to A/acme/app:1.0 --to B/acme/app:1.0`,
/// with `extra` flags.
fn build_push(pair: &Pair, recipe: &Path, layout: &Path, extra: &[&str]) -> Run {
    let mut cmd = pair.cmd();
    cmd.args(["build", "--push", "--json", "-o"])
        .arg(layout)
        .arg(recipe);
    for p in pair.proxies() {
        cmd.args(["--to", &format!("{}/acme/app:1.0", p.host())]);
    }
    run(cmd.args(extra))
}

/// The blobs of the layout (digest -> size) and the digest of the layer
/// named `name` in the `build --push --json` report.
fn layer_digest(doc: &serde_json::Value, name: &str) -> String {
    let layers = doc["build"]["images"][0]["layers"].as_array().unwrap();
    let l = layers.iter().find(|l| l["source"] == name);
    l.and_then(|l| l["digest"].as_str())
        .unwrap_or_else(|| panic!("no layer {name}: {doc:#}"))
        .to_string()
}

/// The `PATCH`es of the upload session whose `PUT` named `digest` (a
/// session keeps its path across requests), and that `PUT`.
fn session_of<'a>(log: &'a [LogEntry], digest: &str) -> (Vec<&'a LogEntry>, &'a LogEntry) {
    let put = log
        .iter()
        .find(|e| {
            e.method == "PUT"
                && e.status == Some(201)
                && e.path.contains("/blobs/uploads/")
                && e.query_param("digest").as_deref() == Some(digest)
        })
        .unwrap_or_else(|| panic!("no PUT of {digest}: {log:#?}"));
    let patches = log
        .iter()
        .filter(|e| e.method == "PATCH" && e.path == put.path)
        .collect();
    (patches, put)
}

/// Every blob of the layout is stored once on each registry, and each
/// registry received each blob's bytes exactly once.
fn assert_once_per_registry(pair: &Pair, blobs: &BTreeMap<String, u64>) {
    let total: u64 = blobs.values().sum();
    for (p, reg) in [(&pair.a, &pair.reg_a), (&pair.b, &pair.reg_b)] {
        let stored = reg.stored_blobs();
        for d in blobs.keys() {
            assert!(stored.contains(d), "{d} missing on {}", p.host());
        }
        let log = p.log();
        let once: BTreeMap<String, usize> = blobs.keys().map(|d| (d.clone(), 1)).collect();
        assert_eq!(uploads_by_digest(&log), once, "{}", p.host());
        assert_eq!(blob_upload_bytes(&log), total, "{}", p.host());
    }
}

#[test]
fn build_push_streams_each_layer_once_per_registry_while_compressing() {
    let pair = Pair::start();
    let dir = tempdir();
    // A 30 MiB layer (noise: as big compressed), over three times what a
    // registry's stream buffers, and a small one.
    let recipe = write_recipe(dir.path(), &[30 << 20, 300_000], 21, "");
    let layout = dir.path().join("out");
    let r = build_push(&pair, &recipe, &layout, &["--jobs", "1"]);
    assert_ok(&r);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let (digest, _, blobs) = read_layout(&layout);
    let (big, small) = (layer_digest(&doc, "l0"), layer_digest(&doc, "l1"));
    let big_done = std::fs::metadata(layout.join("blobs/sha256").join(&big[7..]))
        .and_then(|m| m.modified())
        .unwrap();
    for p in pair.proxies() {
        let log = p.log();
        // Figure: a registry with no chunk cap gets each layer as one
        // PATCH of the whole stream (no Content-Range: its length was not
        // known when it started), then a PUT with the digest and no body.
        for layer in [&big, &small] {
            let (patches, put) = session_of(&log, layer);
            assert_eq!(put.body_bytes, 0, "{put:#?}");
            assert_eq!(patches.len(), 1, "{patches:#?}");
            assert_eq!(patches[0].status, Some(202), "{:#?}", patches[0]);
            assert_eq!(patches[0].content_range, None, "{:#?}", patches[0]);
            assert_eq!(patches[0].body_bytes, blobs[layer.as_str()], "{layer}");
        }
        let (patches, _) = session_of(&log, &big);
        // Figure: the big layer's first chunk reached the registry before
        // the layer was finished: it was sent while being compressed. Not a
        // race: the compressor cannot get more than the stream's buffer
        // (about 13 MiB) ahead of what the registry took.
        assert!(
            patches[0].arrived_at < big_done,
            "the first PATCH of {big} on {} came after the layer was written",
            p.host()
        );
    }
    // Figure: every blob is stored once per registry, its bytes sent once.
    assert_once_per_registry(&pair, &blobs);
    assert_served(&pair, &["1.0"], &digest);
    for t in doc["push"]["targets"].as_array().unwrap() {
        assert_eq!(t["blobs_uploaded"], 3, "{t:#}");
    }

    // Figure: built again with the same layer cache, the layers are cache
    // hits: not streamed, found by HEAD, no blob byte sent again.
    pair.reset();
    let r = build_push(&pair, &recipe, &dir.path().join("again"), &[]);
    assert_ok(&r);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let layers = doc["build"]["images"][0]["layers"].as_array().unwrap();
    assert!(layers.iter().all(|l| l["cached"] == true), "{doc:#}");
    for p in pair.proxies() {
        let log = p.log();
        assert_eq!(p.count("PATCH"), 0, "{log:#?}");
        assert_eq!(blob_upload_bytes(&log), 0, "{log:#?}");
        for layer in [&big, &small] {
            assert!(
                log.iter()
                    .any(|e| e.method == "HEAD" && e.path.ends_with(layer.as_str())),
                "no HEAD of {layer}: {log:#?}"
            );
        }
    }
    assert_served(&pair, &["1.0"], &digest);
}

#[test]
fn a_release_over_an_existing_tag_sends_only_its_changed_layer_without_a_layer_cache() {
    let pair = Pair::start();
    let dir = tempdir();
    let recipe = write_recipe(dir.path(), &[4 << 20, 300_000], 23, "");
    assert_ok(&build_push(&pair, &recipe, &dir.path().join("first"), &[]));
    // The next release changes the small layer's file; built with no layer
    // cache (as on a CI runner that keeps none), every layer is built anew
    // and its digest known only once it is finished.
    std::fs::write(dir.path().join("l1.bin"), crate::common::noise(300_000, 99)).unwrap();
    pair.reset();
    let layout = dir.path().join("second");
    let r = build_push(&pair, &recipe, &layout, &["--no-cache"]);
    assert_ok(&r);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let (digest, _, blobs) = read_layout(&layout);
    let (kept, changed) = (layer_digest(&doc, "l0"), layer_digest(&doc, "l1"));
    let config = doc["build"]["images"][0]["config"]["digest"]
        .as_str()
        .unwrap_or_else(|| panic!("no config digest: {doc:#}"))
        .to_string();
    for p in pair.proxies() {
        let log = p.log();
        // Figure: the registries hold the tag, so nothing is streamed:
        // the unchanged 4 MiB layer is found by HEAD and not sent again,
        // and each registry receives only the changed layer and the
        // config, once each.
        assert_eq!(p.count("PATCH"), 0, "{log:#?}");
        assert!(
            log.iter()
                .any(|e| e.method == "HEAD" && e.status == Some(200) && e.path.ends_with(&kept)),
            "no HEAD found {kept} on {}: {log:#?}",
            p.host()
        );
        let sent = BTreeMap::from([(changed.clone(), 1), (config.clone(), 1)]);
        assert_eq!(uploads_by_digest(&log), sent, "{}", p.host());
        assert_eq!(
            blob_upload_bytes(&log),
            blobs[&changed] + blobs[&config],
            "{}",
            p.host()
        );
    }
    assert_served(&pair, &["1.0"], &digest);
}

#[test]
fn build_push_falls_back_to_the_file_when_a_stream_fails() {
    let pair = Pair::start();
    let dir = tempdir();
    let recipe = write_recipe(dir.path(), &[10 << 20, 300_000], 22, "");
    let layout = dir.path().join("out");
    // A answers 500 to the first layer's stream; B drops its connection.
    pair.a.fail_next("PATCH", Fault::InternalError);
    pair.b.fail_next("PATCH", Fault::DropConnection);
    let r = build_push(&pair, &recipe, &layout, &["--jobs", "1"]);
    assert_ok(&r);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let (digest, _, blobs) = read_layout(&layout);
    let big = layer_digest(&doc, "l0");
    let expected = [
        (&pair.a, &pair.reg_a, Injected::Fault(Fault::InternalError)),
        (&pair.b, &pair.reg_b, Injected::Fault(Fault::DropConnection)),
    ];
    for (p, reg, fault) in expected {
        let log = p.log();
        // Figure: the fault hit a PATCH of the streamed session, which was
        // then cancelled; the big layer was uploaded once, from its file.
        let hit = log
            .iter()
            .find(|e| e.injected == Some(fault))
            .unwrap_or_else(|| panic!("no {fault:?} on {}: {log:#?}", p.host()));
        assert_eq!(hit.method, "PATCH");
        assert!(
            log.iter()
                .any(|e| e.method == "DELETE" && e.path == hit.path),
            "the failed session was not cancelled on {}: {log:#?}",
            p.host()
        );
        assert_eq!(uploads_by_digest(&log)[&big], 1, "{log:#?}");
        let (patches, _) = session_of(&log, &big);
        assert!(patches.is_empty(), "{patches:#?}");
        // Figure: the registry holds every blob, checked by its digest.
        let stored = reg.stored_blobs();
        for d in blobs.keys() {
            assert!(stored.contains(d), "{d} missing on {}", p.host());
        }
    }
    assert_served(&pair, &["1.0"], &digest);
}

/// What a `build --push` of a 9 MiB and a small layer (recipe `seed`) to
/// two registries with GHCR's PATCH cap left: the pair, the image digest,
/// its blobs and the digest of the big layer.
struct Capped {
    pair: Pair,
    digest: String,
    blobs: BTreeMap<String, u64>,
    big: String,
}

fn capped_build_push(seed: u64, args: &[&str]) -> Capped {
    let pair = Pair::start();
    let dir = tempdir();
    let recipe = write_recipe(dir.path(), &[9 << 20, 100_000], seed, "");
    for p in pair.proxies() {
        p.configure(|c| c.patch_cap = Some(GHCR_PATCH_CAP));
    }
    let layout = dir.path().join("out");
    let r = build_push(&pair, &recipe, &layout, args);
    assert_ok(&r);
    let (digest, _, blobs) = read_layout(&layout);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let big = layer_digest(&doc, "l0");
    Capped {
        pair,
        digest,
        blobs,
        big,
    }
}

#[test]
fn build_push_streams_within_a_4mib_patch_cap() {
    // A registry with GHCR's cap that is not named ghcr.io: the cap is
    // given as the chunk size, as a user would.
    let Capped {
        pair,
        digest,
        blobs,
        big,
    } = capped_build_push(23, &["--no-cache", "--chunk-size", "4MiB"]);
    for p in pair.proxies() {
        let log = p.log();
        // Figure: no PATCH over the cap, none refused, and the big layer
        // streamed in 3 consecutive chunks with Content-Range.
        assert_eq!(p.injected_count(Injected::PatchTooLarge), 0, "{log:#?}");
        assert!(log
            .iter()
            .filter(|e| e.method == "PATCH")
            .all(|e| e.body_bytes <= GHCR_PATCH_CAP));
        let (patches, _) = session_of(&log, &big);
        assert_eq!(patches.len(), 3, "{patches:#?}");
        let mut next = 0u64;
        for e in &patches {
            let end = next + e.body_bytes - 1;
            assert_eq!(e.content_range.as_deref(), Some(&*format!("{next}-{end}")));
            next = end + 1;
        }
        assert_eq!(next, blobs[big.as_str()]);
    }
    assert_once_per_registry(&pair, &blobs);
    assert_served(&pair, &["1.0"], &digest);
}

#[test]
fn build_push_stream_refused_over_the_cap_falls_back_to_halved_chunks() {
    let Capped {
        pair, digest, big, ..
    } = capped_build_push(24, &["--chunk-size", "8MiB"]);
    // Figure: chunks asked over the cap are refused (416) on the stream,
    // and the layer then goes from its file in halved chunks: every
    // accepted PATCH within the cap, the layer stored once, the image whole
    // on both registries.
    for p in pair.proxies() {
        let log = p.log();
        // Once on the stream, whose session is then cancelled, once on the
        // upload from the file, which halves its chunks.
        assert_eq!(p.injected_count(Injected::PatchTooLarge), 2, "{log:#?}");
        let refused = log
            .iter()
            .find(|e| e.injected == Some(Injected::PatchTooLarge))
            .unwrap();
        assert!(
            log.iter()
                .any(|e| e.method == "DELETE" && e.path == refused.path),
            "{log:#?}"
        );
        assert!(log
            .iter()
            .filter(|e| e.method == "PATCH" && e.status == Some(202))
            .all(|e| e.body_bytes <= GHCR_PATCH_CAP));
        assert_eq!(uploads_by_digest(&log)[&big], 1, "{log:#?}");
    }
    assert_served(&pair, &["1.0"], &digest);
}

#[test]
fn build_push_tags_a_live_registry_while_another_is_still_failing() {
    let reg = Registry::start();
    let dir = tempdir();
    let recipe = write_recipe(dir.path(), &[2 << 20, 300_000], 24, "");
    let dead = dead_host();
    let env = Env::new();
    let started = Instant::now();
    // Each round of the dead registry's retries takes 1.9 s at least.
    let mut child = env
        .cmd()
        .args([
            "build",
            "--push",
            "--quiet",
            "--retries",
            "4",
            "--no-layout",
        ])
        .args(["--to", &format!("{}/acme/app:1.0", reg.host())])
        .args(["--to", &format!("{dead}/acme/app:1.0")])
        .arg(&recipe)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("{}/v2/acme/app/manifests/1.0", reg.url());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::new();
    let accept = "application/vnd.oci.image.manifest.v1+json";
    let served_after = loop {
        let head = rt.block_on(client.head(&url).header("accept", accept).send());
        if head.is_ok_and(|r| r.status() == 200) {
            break started.elapsed();
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "build --push ended before the live registry served the tag"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let ended = started.elapsed();
    // Figure: exit 1 (the dead registry failed), and the live registry
    // served its tag at least a second before the command ended: it did
    // not wait for the other registry's layers to fail.
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        served_after + Duration::from_secs(1) < ended,
        "served after {served_after:?}, ended after {ended:?}"
    );
    // Figure: served before one round of the dead registry's retries
    // (1.875 s at least) could have ended: asking whether the targets hold
    // a tag waits for no retries.
    assert!(
        served_after < Duration::from_millis(1800),
        "served after {served_after:?}"
    );
}

#[test]
fn a_silent_registry_does_not_hide_that_another_holds_the_release() {
    let reg = Registry::start();
    let live = FaultProxy::start(&reg);
    let silent = Scripted::silent();
    let dir = tempdir();
    let recipe = write_recipe(dir.path(), &[1 << 20, 300_000], 25, "");
    let env = Env::new();
    let to_live = format!("{}/acme/app:1.0", live.host());
    let first = run(env
        .cmd()
        .args([
            "build",
            "--push",
            "--quiet",
            "--no-layout",
            "--to",
            &to_live,
        ])
        .arg(&recipe));
    assert_ok(&first);
    std::fs::write(dir.path().join("l1.bin"), crate::common::noise(300_000, 98)).unwrap();
    live.reset();
    // The silent registry's read timeout outlasts the 5 s given to the
    // question of which registries hold a tag.
    let r = run(env
        .cmd()
        .env("BOXWRIGHT_READ_TIMEOUT", "6")
        .args([
            "build",
            "--push",
            "--json",
            "--no-cache",
            "--no-layout",
            "--retries",
            "0",
        ])
        .args([
            "--to",
            &to_live,
            "--to",
            &format!("{}/acme/app:1.0", silent.host()),
        ])
        .arg(&recipe));
    assert_eq!(r.code, 1, "{}", r.stderr);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let changed = layer_digest(&doc, "l1");
    // Figure: the live registry's answer was kept though the silent one
    // never came: nothing was streamed there, and of the layers only the
    // changed one was sent.
    let log = live.log();
    assert_eq!(live.count("PATCH"), 0, "{log:#?}");
    let sent = uploads_by_digest(&log);
    assert_eq!(sent.get(&changed), Some(&1), "{log:#?}");
    assert_eq!(sent.len(), 2, "the changed layer and the config: {sent:#?}");
}

#[test]
fn an_unreachable_registry_spends_its_retries_once_in_a_build_push() {
    let reg = Registry::start();
    let dead = Registry::start();
    let dropping = FaultProxy::start(&dead);
    dropping.configure(|c| {
        c.fault_rate = 1.0;
        c.fault_kinds = vec![Fault::DropConnection];
    });
    let dir = tempdir();
    let recipe = write_recipe(dir.path(), &[1 << 20, 300_000, 200_000], 26, "");
    let r = run(Env::new()
        .cmd()
        .args(["build", "--push", "--json", "--no-layout", "--retries", "2"])
        .args(["--to", &format!("{}/acme/app:1.0", reg.host())])
        .args(["--to", &format!("{}/acme/app:1.0", dropping.host())])
        .arg(&recipe));
    assert_eq!(r.code, 1, "{}", r.stderr);
    let log = dropping.log();
    // Figure: the registry that never answers was asked once whether it
    // holds the tag (not retried), then pinged once with its two retries;
    // after that nothing more: no other layer streamed there, no upload
    // from a file, no manifest, each of which spent its retries again.
    assert_eq!(log.len(), 4, "{log:#?}");
    assert!(
        log.iter().all(|e| e.method == "GET" && e.path == "/v2/"),
        "{log:#?}"
    );
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let failed = &doc["push"]["targets"][1];
    assert_eq!(failed["ok"], false, "{doc:#}");
    assert_eq!(doc["push"]["targets"][0]["ok"], true, "{doc:#}");
}

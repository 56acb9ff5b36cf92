//! `boxwright push` through faults the registries show: random 5xx and
//! dropped connections, GHCR's 4 MiB PATCH cap, `BLOB_UPLOAD_UNKNOWN` on a
//! live upload session, 429 with `Retry-After`. Every test states the figure
//! it checks, from the JSON report and what the proxies counted.

use std::collections::BTreeMap;

use crate::common::assert_ok;
use crate::pair::{blob_upload_bytes, uploads_by_digest, Pair};
use crate::push::{app_refs, assert_served, build_image, push, served, Image};
use crate::support::{tempdir, Fault, FaultProxy, Injected, LogEntry, GHCR_PATCH_CAP};

#[test]
fn push_survives_twenty_percent_faults_and_registries_agree() {
    let pair = Pair::start();
    let env = &pair.env;
    let image = build_image(&[2 << 20, 1 << 20, 300_000, 100_000], 6);
    for (i, p) in pair.proxies().into_iter().enumerate() {
        p.set_seed(1000 + i as u64);
        p.set_fault_rate(0.2);
    }
    let to = app_refs(&pair, &["1", "latest"]);
    let r = push(env, &image, &to, &["--json", "--verbose"]);
    for p in pair.proxies() {
        p.set_fault_rate(0.0);
    }
    assert_ok(&r);
    let injected: usize = pair.proxies().iter().map(|p| p.faults().len()).sum();
    assert!(injected >= 3, "the proxies injected only {injected} faults");
    // Figure: both registries hold identical digests, equal to the local build.
    assert_served(&pair, &["1", "latest"], &image.digest);
    for p in pair.proxies() {
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
    let r = push(env, &image, &to, &["--chunk-size", "8MiB"]);
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
    assert_eq!(served(&pair, &pair.a, "acme/app:1"), image.digest);
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
    let r = push(env, image, &to, &args);
    assert_ok(&r);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    for (p, reg) in [(&pair.b, &pair.reg_b), (&pair.a, &pair.reg_a)] {
        assert_eq!(served(pair, p, "acme/app:1"), image.digest);
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
        // A cache of its own: no memory of the earlier pushes' repositories
        // to mount from.
        let cache = tempdir();
        let cache = cache.path().to_str().unwrap();
        let started = std::time::Instant::now();
        let r = push(
            env,
            &image,
            &[format!("{}/{repo}:1", p.host())],
            &["--json", "--verbose", "--cache-dir", cache],
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
    assert_eq!(served(&pair, p, "slow/app:1"), image.digest);
}

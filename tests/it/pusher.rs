//! The library's pusher (`boxwright::push::push`) on its own, without the
//! binary: a two-platform index to several repositories on two real
//! registries, each behind a counting proxy, and a push whose optional
//! target is down. Every test states the figure it checks, from the push
//! report and from what the proxies received.

use std::path::{Path, PathBuf};
use std::time::Duration;

use boxwright::image::layout::{LayoutImage, LayoutWriter};
use boxwright::image::walk;
use boxwright::oci::{
    self, canonical_json, Descriptor, Digest, Index, Manifest, Platform, MEDIA_TYPE_INDEX,
};
use boxwright::progress;
use boxwright::push::{push, PushError, PushFailed, PushOptions, PushTarget};
use boxwright::registry::client::default_client;
use boxwright::registry::{ErrorKind, RegistryError};

use crate::common::noise;
use crate::pair::body_bytes;
use crate::support::{dead_host, tempdir, FaultProxy, LogEntry, Registry};

/// Size of the layer both platforms share.
const SHARED: u64 = 1024 * 1024 + 3;

/// `size` pseudo-random bytes in `dir/name`, and their digest.
fn write_random(dir: &Path, name: &str, size: u64) -> (PathBuf, Digest) {
    let data = noise(size as usize, size ^ name.len() as u64);
    let p = dir.join(name);
    std::fs::write(&p, &data).expect("writing a test blob");
    (p, Digest::of(&data))
}

/// A layout `dir/layout` whose tag `1.0` is an index of two platforms
/// sharing one layer. Returns it with the bytes and the number of its
/// unique blobs (configs and layers).
fn two_platform_layout(dir: &Path) -> (PathBuf, u64, u64) {
    let dest = dir.join("layout");
    let w = LayoutWriter::create(&dest).unwrap();
    let scratch = dir.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let (shared, ds) = write_random(&scratch, "shared", SHARED);
    w.import_blob(&shared, &ds).unwrap();
    let (mut unique, mut count) = (SHARED, 1);
    let mut manifests = Vec::new();
    for (i, arch) in ["amd64", "arm64"].iter().enumerate() {
        let own_size = 200_000 + i as u64;
        let (own, d) = write_random(&scratch, arch, own_size);
        w.import_blob(&own, &d).unwrap();
        let cfg = w
            .write_blob(
                oci::MEDIA_TYPE_CONFIG,
                format!(r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}}}}"#).as_bytes(),
            )
            .unwrap();
        unique += own_size + cfg.size;
        count += 2;
        let m = Manifest {
            schema_version: 2,
            media_type: Some(oci::MEDIA_TYPE_MANIFEST.into()),
            artifact_type: None,
            config: cfg,
            layers: vec![
                Descriptor::new(oci::MEDIA_TYPE_LAYER_GZIP, ds.clone(), SHARED),
                Descriptor::new(oci::MEDIA_TYPE_LAYER_GZIP, d, own_size),
            ],
            subject: None,
            annotations: Default::default(),
        };
        let mut md = w
            .write_blob(oci::MEDIA_TYPE_MANIFEST, &canonical_json(&m))
            .unwrap();
        md.platform = Some(Platform::parse(&format!("linux/{arch}")).unwrap());
        manifests.push(md);
    }
    let mut top = w
        .write_blob(MEDIA_TYPE_INDEX, &canonical_json(&Index::new(manifests)))
        .unwrap();
    top.annotations
        .insert(oci::ANNOTATION_REF_NAME.into(), "1.0".into());
    w.commit(vec![top]).unwrap();
    (dest, unique, count)
}

fn is_blob_write(e: &LogEntry) -> bool {
    (e.method == "PUT" || e.method == "POST" || e.method == "PATCH") && e.path.contains("/blobs/")
}

/// Figures, for three targets on registry A (two tags of `acme/r2d`, one of
/// `mirror/r2d`) and two on B: every blob is uploaded once per registry
/// (into `acme/r2d`) and mounted into `mirror/r2d`, sending nothing; each
/// registry receives the unique blobs once plus the platform manifests once
/// per repository and the index once per tag, which is also the report's
/// byte count; no retry; no manifest PUT arrives before the last blob
/// request; every tag names the index. Again: HEADs and one `/v2/` ping
/// only, zero bytes, every blob found present.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_push_sends_each_blob_once_per_registry_then_heads_only() {
    let (reg_a, reg_b) = (Registry::start(), Registry::start());
    let (a, b) = (FaultProxy::start(&reg_a), FaultProxy::start(&reg_b));
    let tmp = tempdir();
    let (layout, unique_bytes, blob_count) = two_platform_layout(tmp.path());
    let targets: Vec<PushTarget> = [
        format!("{}/acme/r2d:1.4.0", a.host()),
        format!("{}/acme/r2d:latest", a.host()),
        format!("{}/mirror/r2d:1.4.0", a.host()),
        format!("{}/acme/r2d:1.4.0", b.host()),
        format!("{}/acme/r2d:latest", b.host()),
    ]
    .iter()
    .map(|s| PushTarget::parse(s).unwrap())
    .collect();
    let report = push(
        layout.to_str().unwrap(),
        targets.clone(),
        PushOptions::default(),
        progress::silent(),
    )
    .await
    .unwrap()
    .0;
    assert!(report.succeeded(), "{report:#?}");
    assert_eq!(report.targets.len(), 5);
    assert!(report
        .targets
        .iter()
        .all(|t| t.ok && t.digest.as_ref() == Some(&report.digest)));
    let t = |r: &str| report.targets.iter().find(|t| t.reference == r).unwrap();
    for proxy in [&a, &b] {
        let up = t(&format!("{}/acme/r2d:1.4.0", proxy.host()));
        assert_eq!(
            (up.blobs_uploaded, up.blobs_mounted, up.bytes_sent),
            (blob_count, 0, unique_bytes),
            "{up:#?}"
        );
    }
    let m = t(&format!("{}/mirror/r2d:1.4.0", a.host()));
    assert_eq!(
        (m.blobs_mounted, m.blobs_uploaded, m.bytes_sent),
        (blob_count, 0, 0),
        "{m:#?}"
    );

    let manifest_bytes: u64 = {
        let img = LayoutImage::open(&layout, None).unwrap();
        let g = walk(&img).await.unwrap();
        g.manifests.iter().map(|(_, b)| b.len() as u64).sum()
    };
    let index_size = report.size;
    for (proxy, repos, tags) in [(&a, 2, 3), (&b, 1, 2)] {
        let reg = report
            .registries
            .iter()
            .find(|r| r.registry == proxy.host())
            .unwrap();
        // Platform manifests by digest in each repository, the index once
        // per tag (not by digest too: the tag PUT stores it).
        let expected = unique_bytes + repos * (manifest_bytes - index_size) + tags * index_size;
        assert_eq!(reg.bytes_sent, expected, "{reg:#?}");
        let received: u64 = body_bytes(proxy);
        assert_eq!(received, expected, "{:#?}", proxy.log());
        assert_eq!(reg.retries, 0, "{reg:#?}");
        let log = proxy.log();
        let last_blob = log.iter().rposition(is_blob_write);
        let first_manifest = log
            .iter()
            .position(|e| e.method == "PUT" && e.path.contains("/manifests/"));
        assert!(
            last_blob.is_some() && last_blob < first_manifest,
            "{log:#?}"
        );
        assert!(
            log.iter()
                .filter(|e| e.method == "PUT")
                .all(|e| e.status == Some(201)),
            "{log:#?}"
        );
    }
    let client = default_client().unwrap();
    for t in &targets {
        let r = &t.reference;
        let info = client
            .repo(&r.registry, &r.repository)
            .head_manifest(r.tag.as_deref().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(info.digest, report.digest);
        assert_eq!(info.media_type, MEDIA_TYPE_INDEX);
    }

    a.reset();
    b.reset();
    let again = push(
        layout.to_str().unwrap(),
        targets,
        PushOptions::default(),
        progress::silent(),
    )
    .await
    .unwrap()
    .0;
    assert!(again.succeeded(), "{again:#?}");
    for reg in &again.registries {
        assert_eq!(reg.bytes_sent, 0, "{reg:#?}");
        let methods: Vec<&String> = reg.requests.keys().collect();
        assert_eq!(methods, ["GET", "HEAD"], "{reg:#?}");
        assert_eq!(reg.requests["GET"], 1, "only the /v2/ ping");
    }
    for proxy in [&a, &b] {
        let log = proxy.log();
        assert!(
            log.iter()
                .all(|e| e.method == "HEAD" || (e.method == "GET" && e.path == "/v2/")),
            "{log:#?}"
        );
        assert_eq!(log.iter().map(|e| e.body_bytes).sum::<u64>(), 0);
    }
    assert!(again
        .targets
        .iter()
        .all(|t| t.blobs_uploaded == 0 && t.blobs_present == blob_count));
}

/// Figures: a push to a live registry and to an optional target where
/// nothing listens succeeds with one warning; the failed target's error
/// names its host; the report has no error; the live registry holds the
/// index under the tag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_target_failure_only_warns() {
    let reg = Registry::start();
    let tmp = tempdir();
    let (layout, _, _) = two_platform_layout(tmp.path());
    let dead = dead_host();
    let mut backup = PushTarget::parse(&format!("{dead}/acme/r2d:1")).unwrap();
    backup.optional = true;
    let targets = vec![
        PushTarget::parse(&format!("{}/acme/r2d:1", reg.host())).unwrap(),
        backup,
    ];
    let mut opts = PushOptions::default();
    opts.client.retry.max_retries = 1;
    opts.client.retry.base = Duration::from_millis(10);
    let report = push(
        &format!("{}:1.0", layout.display()),
        targets,
        opts,
        progress::silent(),
    )
    .await
    .unwrap()
    .0;
    assert!(report.succeeded(), "{report:#?}");
    assert_eq!(report.warnings().len(), 1, "{report:#?}");
    let failed: Vec<_> = report.targets.iter().filter(|t| !t.ok).collect();
    assert_eq!(failed.len(), 1, "{report:#?}");
    let e = failed[0].error.as_ref().unwrap().to_string();
    assert!(e.contains(&dead), "{e}");
    assert!(report.error().is_none());
    let info = default_client()
        .unwrap()
        .repo(&reg.host(), "acme/r2d")
        .head_manifest("1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.digest, report.digest);
}

/// The primary's tag is served while the backup is still failing: each
/// registry goes on to its manifests once its own blobs are in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_registry_does_not_hold_back_another_registrys_tags() {
    let reg = Registry::start();
    let tmp = tempdir();
    let (layout, _, _) = two_platform_layout(tmp.path());
    let dead = dead_host();
    let targets = vec![
        PushTarget::parse(&format!("{}/acme/r2d:1", reg.host())).unwrap(),
        PushTarget::parse(&format!("{dead}/acme/r2d:1")).unwrap(),
    ];
    let mut opts = PushOptions::default();
    // The dead registry's retries take at least 0.4 + 0.8 + 1.6 s.
    opts.client.retry.max_retries = 3;
    opts.client.retry.base = Duration::from_millis(800);
    let started = std::time::Instant::now();
    let image = format!("{}:1.0", layout.display());
    let pushing =
        tokio::spawn(async move { push(&image, targets, opts, progress::silent()).await });
    let client = default_client().unwrap();
    let served_after = loop {
        let head = client
            .repo(&reg.host(), "acme/r2d")
            .head_manifest("1")
            .await;
        if matches!(head, Ok(Some(_))) {
            break started.elapsed();
        }
        assert!(
            !pushing.is_finished(),
            "the push ended before the tag was served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let report = pushing.await.unwrap().unwrap().0;
    let ended = started.elapsed();
    // Figure: the live registry's tag was served at least a second before
    // the push ended on the dead registry's last retry.
    assert!(
        served_after + Duration::from_secs(1) < ended,
        "served after {served_after:?}, push ended after {ended:?}"
    );
    let (live, down) = (&report.registries[0], &report.registries[1]);
    assert!(live.ok && !down.ok, "{report:#?}");
    // Figure: each registry's seconds are its own.
    assert!(live.seconds + 1.0 < down.seconds, "{report:#?}");
    // Figure: the blobs that waited for the dead registry's first answer
    // shared its failure: one round of pings (`GET /v2/`, the first try
    // and 3 retries), not one round per blob.
    assert_eq!(down.requests.get("GET"), Some(&4), "{report:#?}");
    assert!(report.targets[0].ok && !report.targets[1].ok, "{report:#?}");
}

/// A required target where nothing listens: the report's error reads as it
/// always has, and its chain holds the target's `PushError` and, under it,
/// the registry error of a transport failure naming the dead host; it is
/// not bad input (exit 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_targets_error_keeps_the_registry_error() {
    let tmp = tempdir();
    let (layout, _, _) = two_platform_layout(tmp.path());
    let dead = dead_host();
    let target = format!("{dead}/acme/r2d:1");
    let mut opts = PushOptions::default();
    opts.client.retry.max_retries = 1;
    opts.client.retry.base = Duration::from_millis(10);
    let report = push(
        &format!("{}:1.0", layout.display()),
        vec![PushTarget::parse(&target).unwrap()],
        opts,
        progress::silent(),
    )
    .await
    .unwrap()
    .0;
    let err = report.error().expect("the push failed");
    let why = report.targets[0].error.as_ref().unwrap();
    assert_eq!(err.to_string(), format!("push failed for {target}: {why}"));
    let failed = err.downcast_ref::<PushFailed>().expect("a PushFailed");
    assert_eq!(failed.failures().len(), 1);
    assert!(err.chain().any(|e| e.is::<PushError>()), "{err:?}");
    let registry = err
        .chain()
        .find_map(|e| e.downcast_ref::<RegistryError>())
        .unwrap_or_else(|| panic!("no RegistryError in {err:?}"));
    assert!(
        matches!(registry.kind, ErrorKind::Transport(_)),
        "{registry:?}"
    );
    assert_eq!(registry.context.registry, dead);
    assert_eq!(registry.status(), None);
    assert!(!boxwright::error::is_bad_input(&err));
    // Shown on one line, each text once.
    assert_eq!(
        boxwright::error::one_line(&err).to_string(),
        err.to_string()
    );
}

use super::*;
use crate::image::layout::LayoutWriter;
use crate::oci::{self, Descriptor};
use crate::oci::{canonical_json, Index, Manifest, Platform};
use crate::registry::smoke_tests::{start_registry, write_random, Recorder};
use std::path::PathBuf;

/// A layout with an index of two platforms sharing one layer.
fn two_platform_layout(dir: &Path) -> (PathBuf, u64, usize) {
    let dest = dir.join("layout");
    let w = LayoutWriter::create(&dest).unwrap();
    let scratch = dir.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let (shared, ds) = write_random(&scratch, "shared", 1024 * 1024 + 3);
    let mut unique: u64 = 1024 * 1024 + 3;
    let mut count = 1;
    w.import_blob(&shared, &ds).unwrap();
    let mut manifests = Vec::new();
    for (i, arch) in ["amd64", "arm64"].iter().enumerate() {
        let (own, d) = write_random(&scratch, arch, 200_000 + i);
        w.import_blob(&own, &d).unwrap();
        let cfg = w
            .write_blob(
                oci::MEDIA_TYPE_CONFIG,
                format!(r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}}}}"#).as_bytes(),
            )
            .unwrap();
        unique += 200_000 + i as u64 + cfg.size;
        count += 2;
        let m = Manifest {
            schema_version: 2,
            media_type: Some(oci::MEDIA_TYPE_MANIFEST.into()),
            artifact_type: None,
            config: cfg,
            layers: vec![
                Descriptor::new(oci::MEDIA_TYPE_LAYER_GZIP, ds.clone(), 1024 * 1024 + 3),
                Descriptor::new(oci::MEDIA_TYPE_LAYER_GZIP, d, 200_000 + i as u64),
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
    let idx = w
        .write_blob(
            oci::MEDIA_TYPE_INDEX,
            &canonical_json(&Index::new(manifests)),
        )
        .unwrap();
    let mut top = idx;
    top.annotations
        .insert(oci::ANNOTATION_REF_NAME.into(), "1.0".into());
    w.commit(vec![top]).unwrap();
    (dest, unique, count)
}

fn opts() -> PushOptions {
    PushOptions::default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_push_sends_each_blob_once_per_registry_then_heads_only() {
    let (Some(a), Some(b)) = (start_registry(), start_registry()) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (layout, unique_bytes, blob_count) = two_platform_layout(tmp.path());
    let targets: Vec<PushTarget> = [
        format!("{}/acme/r2d:1.4.0", a.host),
        format!("{}/acme/r2d:latest", a.host),
        format!("{}/mirror/r2d:1.4.0", a.host),
        format!("{}/acme/r2d:1.4.0", b.host),
        format!("{}/acme/r2d:latest", b.host),
    ]
    .iter()
    .map(|s| PushTarget::parse(s).unwrap())
    .collect();
    let rec = Arc::new(Recorder(Default::default()));
    let report = push(
        layout.to_str().unwrap(),
        targets.clone(),
        opts(),
        rec.clone(),
    )
    .await
    .unwrap()
    .0;
    assert!(report.succeeded(), "{:#?}", report);
    assert_eq!(report.targets.len(), 5);
    assert!(report
        .targets
        .iter()
        .all(|t| t.digest.as_ref() == Some(&report.digest)));
    // Registry A: every blob uploaded once into acme/r2d, mounted into mirror/r2d.
    let t = |r: &str| report.targets.iter().find(|t| t.reference == r).unwrap();
    let a1 = t(&format!("{}/acme/r2d:1.4.0", a.host));
    assert_eq!(
        (a1.blobs_uploaded, a1.bytes_sent),
        (blob_count as u64, unique_bytes)
    );
    let m = t(&format!("{}/mirror/r2d:1.4.0", a.host));
    assert_eq!(
        (m.blobs_mounted, m.blobs_uploaded, m.bytes_sent),
        (blob_count as u64, 0, 0)
    );
    let b1 = t(&format!("{}/acme/r2d:1.4.0", b.host));
    assert_eq!(
        (b1.blobs_uploaded, b1.bytes_sent),
        (blob_count as u64, unique_bytes)
    );
    // Body bytes per registry: unique blobs once, plus the manifests.
    let manifest_bytes: u64 = {
        let img = LayoutImage::open(&layout, None).unwrap();
        let g = walk(&img).await.unwrap();
        g.manifests.iter().map(|(_, b)| b.len() as u64).sum()
    };
    for reg in &report.registries {
        let repos = if reg.registry == a.host { 2 } else { 1 };
        let tags = if reg.registry == a.host { 3 } else { 2 };
        // Platform manifests by digest in each repo, the index once per
        // tag (not by digest too: the tag PUT stores it).
        let index_size = report.size;
        assert_eq!(
            reg.bytes_sent,
            unique_bytes + repos * (manifest_bytes - index_size) + tags * index_size,
            "{reg:#?}"
        );
        assert_eq!(reg.retries, 0);
    }
    // Registries hold the index under every tag.
    let client = crate::registry::client::default_client().unwrap();
    for t in &targets {
        let r = &t.reference;
        let info = client
            .repo_of(r)
            .head_manifest(r.tag.as_deref().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(info.digest, report.digest);
        assert_eq!(info.media_type, oci::MEDIA_TYPE_INDEX);
    }
    // No manifest PUT before the last blob upload on each registry.
    let log = rec.0.lock().unwrap().clone();
    for reg in [&a.host, &b.host] {
        let lines: Vec<&String> = log.iter().filter(|l| l.contains(reg.as_str())).collect();
        let last_blob = lines.iter().rposition(|l| {
            (l.starts_with("PUT ") || l.starts_with("POST ")) && l.contains("/blobs/")
        });
        let first_manifest = lines
            .iter()
            .position(|l| l.starts_with("PUT ") && l.contains("/manifests/"));
        assert!(last_blob < first_manifest, "{lines:#?}");
    }

    // Again: HEAD requests only (plus the /v2/ ping), zero bytes.
    let again = push(
        layout.to_str().unwrap(),
        targets,
        opts(),
        crate::progress::silent(),
    )
    .await
    .unwrap()
    .0;
    assert!(again.succeeded());
    for reg in &again.registries {
        assert_eq!(reg.bytes_sent, 0, "{reg:#?}");
        let methods: Vec<&String> = reg.requests.keys().collect();
        assert_eq!(methods, ["GET", "HEAD"], "{reg:#?}");
        assert_eq!(reg.requests["GET"], 1, "only the /v2/ ping");
    }
    assert!(again
        .targets
        .iter()
        .all(|t| t.blobs_uploaded == 0 && t.blobs_present == blob_count as u64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_target_failure_only_warns() {
    let Some(a) = start_registry() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (layout, _, _) = two_platform_layout(tmp.path());
    // A port where nothing listens.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut backup = PushTarget::parse(&format!("127.0.0.1:{dead}/acme/r2d:1")).unwrap();
    backup.optional = true;
    let targets = vec![
        PushTarget::parse(&format!("{}/acme/r2d:1", a.host)).unwrap(),
        backup,
    ];
    let mut o = opts();
    o.client.retry.max_retries = 1;
    o.client.retry.base = std::time::Duration::from_millis(10);
    let report = push(
        &format!("{}:1.0", layout.display()),
        targets,
        o,
        crate::progress::silent(),
    )
    .await
    .unwrap()
    .0;
    assert!(report.succeeded(), "{report:#?}");
    assert_eq!(report.warnings().len(), 1);
    let failed = report.targets.iter().find(|t| !t.ok).unwrap();
    let e = failed.error.as_ref().unwrap().to_string();
    assert!(e.contains(&format!("127.0.0.1:{dead}")), "{e}");
    assert!(report.error().is_none());
}

use super::*;
use crate::oci::{canonical_json, Index, Manifest, MEDIA_TYPE_CONFIG, MEDIA_TYPE_INDEX};
use futures_util::FutureExt as _;

fn manifest(img: &mut MemoryImage, blobs: &[&[u8]]) -> Descriptor {
    let d = |b: &[u8], mt: &str| Descriptor::of_bytes(mt, b);
    let m = Manifest {
        schema_version: 2,
        media_type: Some(oci::MEDIA_TYPE_MANIFEST.into()),
        artifact_type: None,
        config: d(blobs[0], MEDIA_TYPE_CONFIG),
        layers: blobs[1..]
            .iter()
            .map(|b| d(b, oci::MEDIA_TYPE_LAYER_GZIP))
            .collect(),
        subject: None,
        annotations: Default::default(),
    };
    let bytes = Bytes::from(canonical_json(&m));
    img.add_manifest(bytes.clone());
    Descriptor::of_bytes(oci::MEDIA_TYPE_MANIFEST, &bytes)
}

fn index(img: &mut MemoryImage, children: Vec<Descriptor>) -> Descriptor {
    let bytes = Bytes::from(canonical_json(&Index::new(children)));
    img.add_manifest(bytes.clone());
    Descriptor::of_bytes(MEDIA_TYPE_INDEX, &bytes)
}

fn walk_now(img: &MemoryImage) -> Result<Graph> {
    // A memory image never waits: the walk finishes in one poll.
    walk(img).now_or_never().expect("ready")
}

#[test]
fn children_come_first_and_blobs_once() {
    let mut img = MemoryImage::new(Descriptor::of_bytes(MEDIA_TYPE_INDEX, b""));
    let a = manifest(&mut img, &[b"cfg-a", b"shared", b"own-a"]);
    let b = manifest(&mut img, &[b"cfg-b", b"shared", b"own-b"]);
    let top = index(&mut img, vec![a.clone(), b.clone(), a.clone()]);
    img.root = top.clone();
    let g = walk_now(&img).unwrap();
    let order: Vec<&Digest> = g.manifests.iter().map(|(d, _)| &d.digest).collect();
    assert_eq!(order, [&a.digest, &b.digest, &top.digest]);
    let blobs: Vec<Digest> = g.blobs.iter().map(|d| d.digest.clone()).collect();
    let of = |b: &[u8]| Digest::of(b);
    assert_eq!(
        blobs,
        [
            of(b"cfg-a"),
            of(b"shared"),
            of(b"own-a"),
            of(b"cfg-b"),
            of(b"own-b")
        ]
    );
    assert_eq!(g.root.digest, top.digest);
    assert_eq!(g.root_bytes().map(|b| Digest::of(b)), Some(top.digest));
}

#[test]
fn nesting_is_limited() {
    let mut img = MemoryImage::new(Descriptor::of_bytes(MEDIA_TYPE_INDEX, b""));
    let mut top = manifest(&mut img, &[b"cfg"]);
    for _ in 0..MAX_DEPTH {
        top = index(&mut img, vec![top]);
    }
    img.root = top.clone();
    assert!(
        walk_now(&img).is_ok(),
        "{MAX_DEPTH} levels of index are fine"
    );
    img.root = index(&mut img, vec![top]);
    let e = walk_now(&img).unwrap_err();
    assert!(crate::error::is_bad_input(&e));
    assert!(format!("{e}").contains("nested too deep"), "{e}");
}

#[test]
fn non_distributable_layers_are_left_out() {
    let mut img = MemoryImage::new(Descriptor::of_bytes(MEDIA_TYPE_INDEX, b""));
    let mut foreign = Descriptor::of_bytes(
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        b"windows",
    );
    foreign.urls = Some(vec!["https://example.com/layer".into()]);
    let m = Manifest {
        schema_version: 2,
        media_type: Some(oci::MEDIA_TYPE_MANIFEST.into()),
        artifact_type: None,
        config: Descriptor::of_bytes(MEDIA_TYPE_CONFIG, b"cfg"),
        layers: vec![
            foreign.clone(),
            Descriptor::of_bytes(oci::MEDIA_TYPE_LAYER_GZIP, b"l"),
        ],
        subject: None,
        annotations: Default::default(),
    };
    let bytes = Bytes::from(canonical_json(&m));
    img.root = Descriptor::of_bytes(oci::MEDIA_TYPE_MANIFEST, &bytes);
    img.add_manifest(bytes);
    let g = walk_now(&img).unwrap();
    assert_eq!(g.blobs.len(), 2);
    assert_eq!(g.left_out.len(), 1);
    assert_eq!(g.left_out[0].1.digest, foreign.digest);
}

#[test]
fn schema_1_is_refused() {
    let bytes = Bytes::from_static(br#"{"schemaVersion":1,"fsLayers":[]}"#);
    let mut img = MemoryImage::new(Descriptor::of_bytes(oci::MEDIA_TYPE_MANIFEST, &bytes));
    img.add_manifest(bytes);
    assert!(crate::error::is_bad_input(&walk_now(&img).unwrap_err()));
}

#[test]
fn other_schema_versions_are_refused_naming_the_digest() {
    for doc in [
        &br#"{"schemaVersion":3,"config":{},"layers":[]}"#[..],
        br#"{"schemaVersion":7,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#,
        br#"{"manifests":[]}"#,
    ] {
        let bytes = Bytes::from_static(doc);
        let root = Descriptor::of_bytes(oci::MEDIA_TYPE_MANIFEST, &bytes);
        let mut img = MemoryImage::new(root.clone());
        img.add_manifest(bytes);
        let e = walk_now(&img).unwrap_err();
        assert!(crate::error::is_bad_input(&e));
        let text = format!("{e:#}");
        assert!(text.contains(root.digest.as_str()), "{text}");
        assert!(text.contains("schemaVersion"), "{text}");
    }
}

#[test]
fn diff_ids_must_number_the_layers() {
    let mut img = MemoryImage::new(Descriptor::of_bytes(MEDIA_TYPE_INDEX, b""));
    let root = manifest(&mut img, &[b"config", b"layer 1", b"layer 2"]);
    let m: Manifest = serde_json::from_slice(&img.manifests[&root.digest]).unwrap();
    let mut config = oci::ImageConfig::default();
    config.rootfs.diff_ids = vec![Digest::of(b"1"), Digest::of(b"2")];
    check_diff_ids("base oci:x", &m, &config).unwrap();
    config.rootfs.diff_ids.pop();
    let e = check_diff_ids("base oci:x", &m, &config).unwrap_err();
    assert!(crate::error::is_bad_input(&e));
    let text = e.to_string();
    assert!(text.contains("base oci:x"), "{text}");
    assert!(
        text.contains("1 diff ID ") && text.contains("2 layers"),
        "{text}"
    );
}

/// A manifest whose config descriptor claims more than a document may
/// have is refused by the walk (bad input), before any blob is asked for:
/// every command that walks an image (copy, pull, push) refuses it as
/// `read_config` does. At the cap it walks.
#[test]
fn a_config_over_the_document_cap_is_refused_by_the_walk() {
    let cap = layout::guard::MAX_DOCUMENT;
    for (size, refused) in [(cap, false), (cap + 1, true), (u64::MAX, true)] {
        let mut img = MemoryImage::new(Descriptor::of_bytes(MEDIA_TYPE_INDEX, b""));
        let m = Manifest {
            schema_version: 2,
            media_type: Some(oci::MEDIA_TYPE_MANIFEST.into()),
            artifact_type: None,
            config: Descriptor::new(MEDIA_TYPE_CONFIG, Digest::of(b"huge"), size),
            layers: Vec::new(),
            subject: None,
            annotations: Default::default(),
        };
        let bytes = Bytes::from(canonical_json(&m));
        img.add_manifest(bytes.clone());
        img.root = Descriptor::of_bytes(oci::MEDIA_TYPE_MANIFEST, &bytes);
        match walk_now(&img) {
            Ok(g) => assert!(!refused && g.blobs.len() == 1, "{size}"),
            Err(e) => {
                assert!(refused, "{size}: {e:#}");
                assert!(crate::error::is_bad_input(&e), "{e:#}");
            }
        }
    }
}

/// A manifest's bytes are checked against its descriptor's size: the
/// mismatch says which way.
#[test]
fn check_size_compares_the_bytes_with_the_descriptor() {
    let d = Descriptor::of_bytes(oci::MEDIA_TYPE_MANIFEST, b"{}");
    assert!(check_size(&d, b"{}").is_ok());
    let short = Descriptor {
        size: 10,
        ..d.clone()
    };
    let e = check_size(&short, b"{}").unwrap_err();
    assert_eq!((e.expected, e.actual), (10, 2));
    assert!(e.to_string().contains(d.digest.as_str()), "{e}");
}

/// A docker-archive reads its config as every reader does: one over the
/// document cap is refused before it is read, naming the cap, and no
/// archive is written; one at the cap is archived.
#[tokio::test]
async fn a_docker_archive_refuses_a_config_over_the_document_cap() {
    let dir = tempfile::tempdir().unwrap();
    let cap = layout::guard::MAX_DOCUMENT as usize;
    for (size, refused) in [(cap, false), (cap + 1, true)] {
        let head = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"x":""#;
        let mut config = head.to_vec();
        config.resize(size - 2, b'a');
        config.extend_from_slice(b"\"}");
        let path = dir.path().join(format!("config-{size}"));
        std::fs::write(&path, &config).unwrap();
        let mut img = MemoryImage::new(Descriptor::of_bytes(MEDIA_TYPE_INDEX, b""));
        img.root = manifest(&mut img, &[&config]);
        img.add_blob(Digest::of(&config), path);
        let out = dir.path().join(format!("image-{size}.tar"));
        let res = sink::write_docker_archive(&img, &out, &[]).await;
        match res {
            Ok(()) => assert!(!refused && out.exists(), "{size}"),
            Err(e) => {
                let text = format!("{e:#}");
                assert!(refused, "{size}: {text}");
                assert!(crate::error::is_bad_input(&e), "{text}");
                assert!(text.contains("a config may have"), "{text}");
                assert!(!out.exists(), "{size}");
            }
        }
    }
}

//! `inspect` of indexes that are not a plain list of platforms: one
//! manifest listed under several entries (fetched once, however often it
//! is listed), and indexes nested in the root (walked, their images shown).

use std::path::Path;

use serde_json::{json, Value};

use crate::common::{assert_ok, run, sha256};
use crate::env::Env;
use crate::support::{tempdir, tiny_oci_layout, FaultProxy, Registry, TinyImage};

const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// The descriptor of the manifest of `img`.
fn entry(img: &TinyImage) -> Value {
    json!({"mediaType": MANIFEST, "digest": img.manifest_digest, "size": img.manifest.len()})
}

/// Writes the index listing `entries` as a blob of the layout at `dir`:
/// its descriptor.
fn put_index(dir: &Path, entries: Vec<Value>) -> Value {
    let bytes = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": INDEX, "manifests": entries,
    }))
    .unwrap();
    let digest = sha256(&bytes);
    let hex = digest.trim_start_matches("sha256:");
    std::fs::write(dir.join("blobs/sha256").join(hex), &bytes).unwrap();
    json!({"mediaType": INDEX, "digest": digest, "size": bytes.len()})
}

/// A layout at `dir` holding two tiny images (`a`, `b`) whose root, tagged
/// `1`, is the index `root` builds of them (writing any nested index with
/// [`put_index`]).
fn index_layout(
    dir: &Path,
    root: impl FnOnce(&TinyImage, &TinyImage) -> Vec<Value>,
) -> (TinyImage, TinyImage, String) {
    let a = tiny_oci_layout(dir, "a", b"image a");
    let b = tiny_oci_layout(dir, "b", b"image b");
    let mut top = put_index(dir, root(&a, &b));
    top["annotations"] = json!({"org.opencontainers.image.ref.name": "1"});
    let digest = top["digest"].as_str().unwrap().to_string();
    let index = json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": [top]});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    (a, b, digest)
}

/// Pushes the layout at `dir` to `host` as `acme/app:1`: the reference.
fn push(env: &Env, dir: &Path, host: &str) -> String {
    let reference = format!("{host}/acme/app:1");
    assert_ok(&run(env
        .cmd()
        .arg("push")
        .arg(dir)
        .args(["--to", &reference])));
    reference
}

/// How many requests `proxy` saw with `method` for a path ending in `tail`.
fn asked(proxy: &FaultProxy, method: &str, tail: &str) -> usize {
    proxy
        .log()
        .iter()
        .filter(|e| e.method == method && e.path.ends_with(tail))
        .count()
}

/// Figures: an index listing manifest `a` twice (and `b` once); `inspect`
/// shows one image per entry, but GETs each manifest once and each config
/// once; `inspect --check` GETs each manifest once too (the check and the
/// report share them) and HEADs each config and layer once.
#[test]
fn a_manifest_listed_twice_is_fetched_once() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg);
    let env = Env::new();
    let dir = tempdir();
    let layout = dir.path().join("layout");
    let (a, b, _) = index_layout(&layout, |a, b| vec![entry(a), entry(b), entry(a)]);
    let reference = push(&env, &layout, &proxy.host());

    proxy.reset();
    let cache = tempdir();
    let r = run(env
        .cmd()
        .args(["inspect", "--json", &reference, "--cache-dir"])
        .arg(cache.path()));
    assert_ok(&r);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let images = v["images"].as_array().unwrap();
    let digests: Vec<&str> = images
        .iter()
        .map(|i| i["manifest_digest"].as_str().unwrap())
        .collect();
    assert_eq!(
        digests,
        [&a.manifest_digest, &b.manifest_digest, &a.manifest_digest].map(String::as_str)
    );
    assert_eq!(images[0], images[2]);
    for img in [&a, &b] {
        assert_eq!(
            asked(&proxy, "GET", &img.manifest_digest),
            1,
            "{:?}",
            proxy.log()
        );
        assert_eq!(
            asked(&proxy, "GET", &img.config_digest),
            1,
            "{:?}",
            proxy.log()
        );
    }

    proxy.reset();
    let r = run(env.cmd().args(["inspect", "--check", "--json", &reference]));
    assert_ok(&r);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["check"]["ok"], true, "{v}");
    assert_eq!(v["images"].as_array().unwrap().len(), 3, "{v}");
    for img in [&a, &b] {
        assert_eq!(
            asked(&proxy, "GET", &img.manifest_digest),
            1,
            "{:?}",
            proxy.log()
        );
        assert_eq!(
            asked(&proxy, "HEAD", &img.config_digest),
            1,
            "{:?}",
            proxy.log()
        );
        assert_eq!(
            asked(&proxy, "HEAD", &img.layer_digest),
            1,
            "{:?}",
            proxy.log()
        );
    }
}

/// Figures: a root index listing image `a` and an index nested in it that
/// lists image `b`; plain `inspect` of the layout and of the registry
/// image shows both images, `b` with the nested index it is listed in
/// (`nested_in`), the same in both; the text report names `b` and the
/// nested index too. The nested index's image was left out, unexplained.
#[test]
fn a_nested_index_shows_its_images() {
    let reg = Registry::start();
    let env = Env::new();
    let dir = tempdir();
    let layout = dir.path().join("layout");
    let mut nested = None;
    let (a, b, _) = index_layout(&layout, |a, b| {
        let n = put_index(&layout, vec![entry(b)]);
        nested = Some(n["digest"].as_str().unwrap().to_string());
        vec![entry(a), n]
    });
    let nested = nested.unwrap();
    let reference = push(&env, &layout, &reg.host());

    let inspect = |target: &str, json: bool| {
        let mut c = env.cmd();
        c.arg("inspect").arg(target);
        if json {
            c.arg("--json");
        }
        let r = run(&mut c);
        assert_ok(&r);
        r.stdout
    };
    let local: Value = serde_json::from_str(&inspect(layout.to_str().unwrap(), true)).unwrap();
    let images = local["images"].as_array().unwrap();
    assert_eq!(images.len(), 2, "{local}");
    assert_eq!(images[0]["manifest_digest"], a.manifest_digest.as_str());
    assert!(images[0].get("nested_in").is_none(), "{local}");
    assert_eq!(images[1]["manifest_digest"], b.manifest_digest.as_str());
    assert_eq!(images[1]["nested_in"], json!([nested]));
    assert_eq!(
        images[1]["manifest"]["layers"][0]["digest"],
        b.layer_digest.as_str()
    );

    let remote: Value = serde_json::from_str(&inspect(&reference, true)).unwrap();
    assert_eq!(remote["images"], local["images"]);

    let text = inspect(&reference, false);
    assert!(text.contains(&b.manifest_digest), "{text}");
    assert!(text.contains(&nested), "{text}");
}

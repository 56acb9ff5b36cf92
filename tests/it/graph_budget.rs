//! A registry serving an index of thousands of distinct indexes, or of
//! indexes as large as a manifest may be, is read only as far as one
//! image's budget of manifests (`boxwright::image::budget`): `copy`,
//! `inspect` and `inspect --check` stop there with bad input (exit 2) or,
//! for the check, `invalid` blobs, and the registry sees no manifest GET
//! past the limit; the artifacts `copy` carries along are read within the
//! same budget.

use std::collections::HashMap;

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use boxwright::image::{MAX_MANIFESTS, MAX_MANIFEST_BYTES};

use crate::common::{assert_code, run, Run};
use crate::env::Env;
use crate::support::{tempdir, Registry, Scripted};

pub const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MT_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

pub fn digest(body: &str) -> String {
    format!("sha256:{:x}", Sha256::digest(body))
}

pub fn descriptor(media_type: &str, body: &str) -> Value {
    json!({"mediaType": media_type, "digest": digest(body), "size": body.len()})
}

/// An empty index told apart from the others by `n`, padded to at least
/// `pad` bytes.
fn child(n: usize, pad: usize) -> String {
    json!({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [],
           "annotations": {"n": n.to_string(), "pad": "x".repeat(pad)}})
    .to_string()
}

/// The index listing `children`.
fn index_of(children: &[String]) -> String {
    let entries: Vec<Value> = children.iter().map(|c| descriptor(MT_INDEX, c)).collect();
    json!({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": entries}).to_string()
}

/// A registry serving, as `acme/app`, `root` under the tag `1` and by
/// digest, `documents` by digest as manifests (of the media type each
/// declares) and `blobs` by digest; the referrers API of each subject of
/// `referrers` lists its artifacts, and every other question is answered
/// 404. Every request is recorded.
pub fn registry(
    root: (&str, String),
    documents: Vec<String>,
    blobs: &[String],
    referrers: Vec<(String, Vec<Value>)>,
) -> Scripted {
    Scripted::serving(registry_paths(root, documents, blobs, referrers))
}

/// What [`registry`] serves, by path: its media type and body.
pub fn registry_paths(
    root: (&str, String),
    documents: Vec<String>,
    blobs: &[String],
    referrers: Vec<(String, Vec<Value>)>,
) -> HashMap<String, (String, String)> {
    let mut paths: HashMap<String, (String, String)> = HashMap::new();
    let (root_type, root_body) = root;
    paths.insert(
        "/v2/acme/app/manifests/1".into(),
        (root_type.into(), root_body.clone()),
    );
    paths.insert(
        format!("/v2/acme/app/manifests/{}", digest(&root_body)),
        (root_type.into(), root_body),
    );
    for body in documents {
        let mt = serde_json::from_str::<Value>(&body).unwrap()["mediaType"]
            .as_str()
            .unwrap()
            .to_string();
        paths.insert(
            format!("/v2/acme/app/manifests/{}", digest(&body)),
            (mt, body),
        );
    }
    for body in blobs {
        let path = format!("/v2/acme/app/blobs/{}", digest(body));
        paths.insert(path, ("application/octet-stream".into(), body.clone()));
    }
    for (subject, artifacts) in referrers {
        let listing = json!({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": artifacts});
        paths.insert(
            format!("/v2/acme/app/referrers/{subject}"),
            (MT_INDEX.into(), listing.to_string()),
        );
    }
    paths
}

/// An image of one layer, as `(config, layer, manifest)`.
pub fn one_layer_image() -> (String, String, String) {
    let config = json!({"architecture": "amd64", "os": "linux",
                        "rootfs": {"type": "layers", "diff_ids": []}})
    .to_string();
    let layer = "layer".to_string();
    let image = json!({"schemaVersion": 2, "mediaType": MT_MANIFEST,
                       "config": descriptor(MT_CONFIG, &config),
                       "layers": [descriptor(MT_LAYER, &layer)]})
    .to_string();
    (config, layer, image)
}

/// Manifest GETs the registry has answered.
fn manifest_gets(srv: &Scripted) -> usize {
    (srv.requests().iter())
        .filter(|r| r.method == "GET" && r.path().contains("/manifests/"))
        .count()
}

/// Runs `args` against `srv` and returns the run and the manifest GETs it made.
fn counted(srv: &Scripted, env: &Env, args: &[&str]) -> (Run, usize) {
    let before = manifest_gets(srv);
    let cache = tempdir();
    let r = run(env.cmd().args(args).arg("--cache-dir").arg(cache.path()));
    (r, manifest_gets(srv) - before)
}

/// `copy FLAGS` of `srv`'s `acme/app:1` to a registry of its own: the run
/// and the manifest GETs it made.
pub fn copy_counted(srv: &Scripted, flags: &[&str]) -> (Run, usize) {
    let reference = format!("{}/acme/app:1", srv.host());
    let dest = Registry::start();
    let to = format!("{}/acme/copy:1", dest.host());
    let mut args = vec!["copy", "--retries", "0"];
    args.extend(flags);
    args.extend([reference.as_str(), to.as_str()]);
    counted(srv, &Env::new(), &args)
}

/// Figures: an index of 20,000 tiny distinct indexes. `copy --no-referrers`
/// and `inspect` each stop at the limit of distinct manifests, exit 2
/// naming the registry and the limit, with about that many manifest GETs
/// (all 20,000 were fetched, and an index of large ones grew to gigabytes).
#[test]
fn an_index_of_too_many_indexes_is_refused_at_the_limit() {
    let children: Vec<String> = (0..MAX_MANIFESTS * 2).map(|n| child(n, 0)).collect();
    let srv = registry((MT_INDEX, index_of(&children)), children, &[], vec![]);
    let reference = format!("{}/acme/app:1", srv.host());
    let dest = Registry::start();
    let to = format!("{}/acme/copy:1", dest.host());
    let env = Env::new();
    let copy = ["copy", "--no-referrers", "--retries", "0", &reference, &to];
    for args in [&copy[..], &["inspect", &reference]] {
        let (r, gets) = counted(&srv, &env, args);
        assert_code(&r, 2);
        assert!(
            r.stderr.contains(&srv.host()) && r.stderr.contains(&MAX_MANIFESTS.to_string()),
            "{args:?}: {}",
            r.stderr
        );
        assert!(
            (MAX_MANIFESTS - 2..=MAX_MANIFESTS + 2).contains(&gets),
            "{args:?}: {gets} manifest GETs"
        );
    }
    assert!(dest.stored_blobs().is_empty(), "a refused copy sent blobs");
}

/// Twenty indexes of about 4 MB each: the 64 MiB of manifests one image
/// may have hold the root and 16 of them, and the next is refused by its
/// descriptor's size before it is fetched.
fn large_children() -> (String, Vec<String>, usize) {
    let children: Vec<String> = (0..20).map(|n| child(n, 4_000_000)).collect();
    let root = index_of(&children);
    let fit = (MAX_MANIFEST_BYTES as usize - root.len()) / children[0].len();
    assert!(fit < children.len());
    (root, children, fit)
}

/// Figures: `copy --no-referrers` of an index of large indexes is exit 2
/// naming the byte limit after the root and the children that fit are
/// fetched; `inspect --check` reports the children past it `invalid`
/// without asking for them (the root and all 20 were fetched before).
#[test]
fn an_index_of_large_indexes_stops_at_the_byte_limit() {
    let (root, children, fit) = large_children();
    let srv = registry((MT_INDEX, root), children.clone(), &[], vec![]);
    let reference = format!("{}/acme/app:1", srv.host());
    let env = Env::new();

    let (r, gets) = copy_counted(&srv, &["--no-referrers"]);
    assert_code(&r, 2);
    assert!(
        r.stderr.contains(&MAX_MANIFEST_BYTES.to_string()),
        "{}",
        r.stderr
    );
    assert_eq!(gets, 1 + fit);

    let (r, gets) = counted(&srv, &env, &["inspect", "--check", "--json", &reference]);
    assert_code(&r, 1);
    assert_eq!(gets, 1 + fit);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let blobs = v["check"]["blobs"].as_array().unwrap();
    let refused: Vec<&Value> = blobs.iter().filter(|b| b["status"] == "invalid").collect();
    assert_eq!(refused.len(), children.len() - fit, "{v}");
    let detail = refused[0]["detail"].as_str().unwrap();
    assert!(detail.contains(&MAX_MANIFEST_BYTES.to_string()), "{detail}");
}

/// Figures: an image whose one referrer is an index of large indexes:
/// `copy` sends the image, then reads the artifact only as far as the
/// budget goes and exits 2, the subject's error naming the limit.
#[test]
fn a_carried_artifact_is_read_within_the_budget() {
    let (artifact, children, fit) = large_children();
    let (config, layer, image) = one_layer_image();
    let mut listed = descriptor(MT_INDEX, &artifact);
    listed["artifactType"] = json!("application/example");
    let mut documents = children;
    documents.push(artifact);
    let srv = registry(
        (MT_MANIFEST, image.clone()),
        documents,
        &[config, layer],
        vec![(digest(&image), vec![listed])],
    );
    let (r, gets) = copy_counted(&srv, &["--json"]);
    assert_code(&r, 2);
    // The image (by digest), the artifact index, the children that fit.
    assert_eq!(gets, 2 + fit, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["destinations"][0]["ok"], true, "{v}");
    let subject = &v["referrers"]["subjects"][0];
    assert_eq!(v["referrers"]["ok"], false, "{v}");
    let error = subject["error"].as_str().unwrap();
    assert!(error.contains(&MAX_MANIFEST_BYTES.to_string()), "{error}");
}

//! What `verify --key` reads of the artifacts attached to an image is
//! bounded: an artifact listing more payload layers than one is read of
//! (`MAX_ARTIFACT_LAYERS`), or that would take those read of the image
//! past `MAX_PAYLOADS`, or past `MAX_PAYLOAD_BYTES` by the sizes its
//! payloads declare, is refused with a note and counted invalid, and none
//! of its payloads is asked for. What `copy` carries along is bounded by
//! the same bytes and number of blobs: an artifact past them is passed
//! over with a note, none of its blobs asked for.

use serde_json::{json, Value};

use boxwright::supply::referrers::{
    MAX_ARTIFACT_LAYERS, MAX_PAYLOAD, MAX_PAYLOADS, MAX_PAYLOAD_BYTES,
};

use crate::common::{assert_code, assert_ok, run, Run};
use crate::env::Env;
use crate::graph_budget::{
    copy_counted, descriptor, digest, one_layer_image, registry, registry_paths, MT_INDEX,
    MT_MANIFEST,
};
use crate::support::{tempdir, Scripted};

const SIGNATURE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

/// A cosign signature artifact about `subject` holding `layers` signature
/// layers (payloads the registry does not hold), told apart by `n`.
fn signatures(subject: &str, n: usize, layers: usize) -> String {
    let empty = "{}";
    let layers: Vec<Value> = (0..layers)
        .map(|i| {
            let mut d = descriptor(SIMPLE_SIGNING, &format!("payload {n} {i}"));
            d["annotations"] = json!({"dev.cosignproject.cosign/signature": "MEUCIQ=="});
            d
        })
        .collect();
    json!({"schemaVersion": 2, "mediaType": MT_MANIFEST, "artifactType": SIGNATURE,
           "config": descriptor("application/vnd.oci.empty.v1+json", empty),
           "layers": layers,
           "subject": {"mediaType": MT_MANIFEST, "digest": subject, "size": 2}})
    .to_string()
}

/// The descriptors of `artifacts` as a referrers list gives them.
fn listed(artifacts: &[String]) -> Vec<Value> {
    (artifacts.iter())
        .map(|a| {
            let mut d = descriptor(MT_MANIFEST, a);
            d["artifactType"] = json!(SIGNATURE);
            d
        })
        .collect()
}

/// `verify --json --key` (a key of its own) of `acme/app:1`, the image
/// `image` (digest `subject`) with `artifacts` as its referrers, on a
/// registry that holds no blob.
fn verify_json(image: String, subject: &str, artifacts: Vec<String>) -> (Scripted, Run) {
    let listed = listed(&artifacts);
    let srv = registry(
        (MT_MANIFEST, image),
        artifacts,
        &[],
        vec![(subject.to_string(), listed)],
    );
    let (env, dir) = with_key();
    let r = run(env
        .cmd()
        .args(["verify", "--json", "--retries", "0", "--key"])
        .arg(dir.path().join("cosign.pub"))
        .arg(format!("{}/acme/app:1", srv.host())));
    (srv, r)
}

/// An environment, and a directory holding a key pair made in it
/// (`cosign.key`, `cosign.pub`).
fn with_key() -> (Env, tempfile::TempDir) {
    let env = Env::new();
    let dir = tempdir();
    assert_ok(&run(env
        .cmd()
        .args(["keygen", "--output-key-prefix"])
        .arg(dir.path().join("cosign"))));
    (env, dir)
}

/// The notes of a `verify --json` reference's `held` that refuse an
/// artifact.
fn refused(held: &Value) -> Vec<&str> {
    (held["notes"].as_array().unwrap().iter())
        .filter_map(Value::as_str)
        .filter(|n| n.contains("refused, none fetched"))
        .collect()
}

/// The digests of the blobs `srv` was asked for, in order.
fn blob_gets(srv: &Scripted) -> Vec<String> {
    (srv.requests().iter())
        .filter(|q| q.method == "GET" && q.path().contains("/blobs/"))
        .map(|q| q.path().rsplit('/').next().unwrap().to_string())
        .collect()
}

/// An image manifest of no layers.
fn empty_image() -> String {
    json!({"schemaVersion": 2, "mediaType": MT_MANIFEST,
                       "config": descriptor("application/vnd.oci.image.config.v1+json", "{}"),
                       "layers": []})
    .to_string()
}

/// Figures: an image whose referrers are one signature artifact of 1,000
/// layers and twenty of 60. The first is refused whole (more than 64
/// layers); seventeen of the others are read (1,020 payloads), the last
/// three refused (they would pass 1,024); the registry is asked for the
/// 1,020 payloads and no other (all 2,200 were asked for, one request
/// each), and `--json` counts the four refused artifacts invalid, each
/// with a note naming its limit, and the payloads it could not fetch (the
/// registry has none) unread.
#[test]
fn verify_reads_a_bounded_number_of_payloads() {
    let image = empty_image();
    let subject = digest(&image);
    let mut artifacts = vec![signatures(&subject, 0, 1_000)];
    artifacts.extend((1..=20).map(|n| signatures(&subject, n, 60)));
    let (srv, r) = verify_json(image, &subject, artifacts);
    assert_code(&r, 1);

    let read = 17 * 60;
    assert!(read <= MAX_PAYLOADS && read + 60 > MAX_PAYLOADS);
    let blob_gets = blob_gets(&srv).len();
    assert_eq!(blob_gets, read);

    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let held = &v["supply"]["references"][0];
    // Each payload asked for is missing: unread, and the refused invalid.
    assert_eq!(held["unread"]["signature"], read, "{held}");
    assert_eq!(held["invalid"]["signature"], 4, "{held}");
    let notes = refused(held);
    assert_eq!(notes.len(), 4, "{notes:#?}");
    assert!(notes[0].contains("1000 payload layers"), "{}", notes[0]);
    assert!(notes[0].contains(&format!("the {MAX_ARTIFACT_LAYERS} ")));
    for n in &notes[1..] {
        assert!(n.contains(&format!("the {MAX_PAYLOADS} ")), "{n}");
    }
}

/// A signature artifact like [`signatures`]' of one layer, whose payload
/// declares `size` bytes.
fn signature_of_size(subject: &str, n: usize, size: u64) -> String {
    let mut a: Value = serde_json::from_str(&signatures(subject, n, 1)).unwrap();
    a["layers"][0]["size"] = json!(size);
    a.to_string()
}

/// Figures: an image whose referrers are one signature artifact whose
/// payload declares 1 GiB, then six whose payloads declare 60 MiB each.
/// The first is never fetched (over the 64 MiB of one payload) and takes
/// none of the 256 MiB read of one image; four of the others are read
/// (240 MiB), the last two refused (they would pass 256 MiB): the
/// registry is asked for those four payloads and no other, and `--json`
/// counts the two refused invalid, each with a note naming the registry,
/// repository and subject, and the five not fetched unread.
#[test]
fn verify_reads_a_bounded_number_of_payload_bytes() {
    let image = empty_image();
    let subject = digest(&image);
    let each: u64 = 60 << 20;
    assert!(4 * each <= MAX_PAYLOAD_BYTES && 5 * each > MAX_PAYLOAD_BYTES);
    assert!(each <= MAX_PAYLOAD);
    let mut artifacts = vec![signature_of_size(&subject, 0, 1 << 30)];
    artifacts.extend((1..=6).map(|n| signature_of_size(&subject, n, each)));
    let (srv, r) = verify_json(image, &subject, artifacts);
    assert_code(&r, 1);

    let blob_gets = blob_gets(&srv).len();
    assert_eq!(blob_gets, 4);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let held = &v["supply"]["references"][0];
    assert_eq!(held["unread"]["signature"], 5, "{held}");
    assert_eq!(held["invalid"]["signature"], 2, "{held}");
    let notes = refused(held);
    assert_eq!(notes.len(), 2, "{notes:#?}");
    for n in notes {
        assert!(
            n.contains(&format!("{}/acme/app@{subject}", srv.host())),
            "{n}"
        );
        assert!(n.contains(&format!("{} bytes", each)), "{n}");
    }
}

/// `copy --json` from `srv`, which succeeds having asked the source for
/// the blobs `served` and no other, and carries the artifacts `carried`
/// (documents) and no other: the report of the image's artifacts.
fn copy_carrying(srv: &Scripted, served: &[String], carried: &[&String]) -> Value {
    let (r, _) = copy_counted(srv, &["--json"]);
    assert_ok(&r);
    let mut gets = blob_gets(srv);
    gets.sort();
    let mut expected: Vec<String> = served.iter().map(|b| digest(b)).collect();
    expected.sort();
    assert_eq!(gets, expected, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["referrers"]["ok"], true, "{v}");
    let subject = v["referrers"]["subjects"][0].clone();
    let digests: Vec<&str> = (subject["artifacts"].as_array().unwrap().iter())
        .map(|a| a["digest"].as_str().unwrap())
        .collect();
    let want: Vec<String> = carried.iter().map(|a| digest(a)).collect();
    assert_eq!(digests, want, "{subject}");
    subject
}

/// Figures: an image (a config and a layer) whose referrers are three
/// signature artifacts of one payload each: the first and last of a few
/// bytes, the second declaring as many bytes as one image's artifacts may
/// carry with their empty config, which would fit alone but not after the
/// first; its cosign `.sig` tag lists a signature declaring as many.
/// `copy` sends the image and carries the first and last artifacts, and
/// passes the second and the tag over, each with a note naming the
/// registry, repository, subject and bytes (exit 0): the source is asked
/// for the image's blobs and the carried artifacts' and never for the
/// payloads passed over.
#[test]
fn copy_carries_a_bounded_number_of_payload_bytes() {
    let (config, layer, image) = one_layer_image();
    let subject = digest(&image);
    let empty = "{}".to_string();
    let big = MAX_PAYLOAD_BYTES - empty.len() as u64;
    let artifacts = vec![
        signatures(&subject, 1, 1),
        signature_of_size(&subject, 2, big),
        signatures(&subject, 3, 1),
    ];
    let payload = |n: usize| format!("payload {n} 0");
    let listed = listed(&artifacts);
    let served = [config, layer, empty, payload(1), payload(3)];
    let sig = signature_of_size(&subject, 4, big);
    let sig_tag = format!("sha256-{}.sig", subject.trim_start_matches("sha256:"));
    let mut documents = artifacts.clone();
    documents.push(sig.clone());
    let mut paths = registry_paths(
        (MT_MANIFEST, image),
        documents,
        &served,
        vec![(subject.clone(), listed)],
    );
    paths.insert(
        format!("/v2/acme/app/manifests/{sig_tag}"),
        (MT_MANIFEST.to_string(), sig),
    );
    let srv = Scripted::serving(paths);
    let carried = copy_carrying(&srv, &served, &[&artifacts[0], &artifacts[2]]);
    assert_eq!(carried["cosign_tags"], json!([]), "{carried}");
    let notes = carried["notes"].as_array().unwrap();
    assert_eq!(notes.len(), 2, "{notes:#?}");
    for (note, what) in notes.iter().zip([digest(&artifacts[1]), sig_tag]) {
        let note = note.as_str().unwrap();
        assert!(note.contains(&what), "{note}");
        assert!(
            note.contains(&format!("{}/acme/app@{subject}", srv.host())),
            "{note}"
        );
        assert!(note.contains(&format!("{big} bytes")), "{note}");
    }
}

/// Figures: an image whose referrers are three signature artifacts, the
/// second listing 1,100 payloads (each a few bytes): `copy` carries the
/// first and last and passes the second over with a note naming the
/// image and how many blobs it lists, since its blobs would take those
/// carried past `MAX_PAYLOADS`: none of them is asked of the source.
#[test]
fn copy_carries_a_bounded_number_of_payloads() {
    let (config, layer, image) = one_layer_image();
    let subject = digest(&image);
    let many = MAX_PAYLOADS + 76;
    let artifacts = vec![
        signatures(&subject, 1, 1),
        signatures(&subject, 2, many),
        signatures(&subject, 3, 1),
    ];
    let payload = |n: usize| format!("payload {n} 0");
    let served = [config, layer, "{}".to_string(), payload(1), payload(3)];
    let srv = registry(
        (MT_MANIFEST, image),
        artifacts.clone(),
        &served,
        vec![(subject.clone(), listed(&artifacts))],
    );
    let carried = copy_carrying(&srv, &served, &[&artifacts[0], &artifacts[2]]);
    let notes = carried["notes"].as_array().unwrap();
    assert_eq!(notes.len(), 1, "{notes:#?}");
    let note = notes[0].as_str().unwrap();
    assert!(note.contains(&digest(&artifacts[1])), "{note}");
    assert!(note.contains(&format!("lists {many} blobs")), "{note}");
    assert!(note.contains(&format!("the {MAX_PAYLOADS} ")), "{note}");
}

/// Figures: a referrers tag (`sha256-<hex>`, the referrers API absent)
/// that is not JSON, or JSON without a `manifests` list, is bad input
/// (exit 2) naming the tag, not an image with no artifacts.
#[test]
fn a_referrers_tag_that_is_not_an_index_is_bad_input() {
    let image = empty_image();
    let subject = digest(&image);
    let tag = format!("sha256-{}", subject.trim_start_matches("sha256:"));
    let (env, dir) = with_key();
    for listing in ["not json", r#"{"schemaVersion":2,"layers":[]}"#] {
        let paths = [
            ("1".to_string(), (MT_MANIFEST, image.clone())),
            (subject.clone(), (MT_MANIFEST, image.clone())),
            (tag.clone(), (MT_INDEX, listing.to_string())),
        ]
        .into_iter()
        .map(|(r, (mt, body))| {
            (
                format!("/v2/acme/app/manifests/{r}"),
                (mt.to_string(), body),
            )
        })
        .collect();
        let srv = Scripted::serving(paths);
        let reference = format!("{}/acme/app:1", srv.host());
        let r = run(env
            .cmd()
            .args(["verify", "--retries", "0", "--key"])
            .arg(dir.path().join("cosign.pub"))
            .arg(&reference));
        assert_code(&r, 2);
        assert!(r.stderr.contains(&tag), "{}", r.stderr);
    }
}

//! `copy` carries what is attached to an image along with it: a signed
//! image with SBOM and provenance on A (whose proxy plays the referrers
//! API), copied to B (the reference registry: the `sha256-<hex>` tag) and
//! to C (a third registry whose proxy plays the referrers API), verifies
//! with the key on every destination; a re-run sends nothing; a listed
//! artifact gone at the source is passed over with a note; `--no-referrers`
//! copies the image alone.

use serde_json::Value;

use crate::common::*;
use crate::pair::{blob_upload_bytes, uploads_by_digest, Pair};
use crate::supply::{
    build_push, delete_b, keygen, manifest_b, no_secrets, recipe, verify_json, PASSWORD,
};
use crate::support::{tempdir, FaultProxy, Injected, Registry};

const SIGNATURE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
const DSSE: &str = "application/vnd.dsse.envelope.v1+json";

fn copy_json(pair: &Pair, args: &[&str]) -> (Run, Value) {
    let r = run(pair.cmd().arg("copy").arg("--json").args(args));
    let doc = serde_json::from_str(&r.stdout).unwrap_or(Value::Null);
    (r, doc)
}

/// Requests that write (PUT, PATCH, POST) on `p`.
fn writes(p: &FaultProxy) -> Vec<String> {
    p.log()
        .iter()
        .filter(|e| ["PUT", "PATCH", "POST"].contains(&e.method.as_str()))
        .map(|e| format!("{} {}", e.method, e.path))
        .collect()
}

#[test]
fn supply_copy_carries_signatures_sbom_and_provenance_to_every_destination() {
    let pair = Pair::start();
    pair.a.configure(|c| c.referrers_api = true);
    let reg_c = Registry::start();
    let c = FaultProxy::start(&reg_c);
    c.configure(|x| x.referrers_api = true);
    let dir = tempdir();
    let (key, public) = keygen(&pair, dir.path());
    let r = recipe(dir.path(), "apps", 21);
    let src = format!("{}/acme/apps:1.0", pair.a.host());
    let pushed = build_push(
        &pair,
        dir.path(),
        &r,
        &[&src],
        &[
            "--sign-key",
            key.to_str().unwrap(),
            "--sbom",
            "--provenance",
            "--cosign-tags",
        ],
    );
    assert_ok(&pushed);
    no_secrets(&pushed, &key);
    let digest = pushed.stdout.trim().to_string();
    let hex = digest.trim_start_matches("sha256:").to_string();

    // A -> B (tag fallback) and C (referrers API), a fresh blob cache.
    pair.reset();
    let cache = tempdir();
    let cache_dir = cache.path().to_str().unwrap();
    let b_dst = format!("{}/acme/apps2", pair.b.host());
    let c_dst = format!("{}/backup/apps", c.host());
    let (run1, rep) = copy_json(&pair, &["--cache-dir", cache_dir, &src, &b_dst, &c_dst]);
    assert_ok(&run1);
    assert_eq!(rep["digest"], digest.as_str());
    let carried = &rep["referrers"];
    assert_eq!(carried["ok"], true, "{rep:#}");
    assert_eq!(carried["artifacts"], 3, "{rep:#}");
    // Figure: each artifact blob (the empty config and three payloads)
    // left A once, though two registries needed it.
    assert_eq!(carried["blobs_downloaded"], 4, "{rep:#}");
    let subjects = carried["subjects"].as_array().unwrap();
    assert_eq!(subjects.len(), 1, "one image, one subject");
    let s = &subjects[0];
    assert_eq!(s["subject"], digest.as_str());
    assert_eq!(s["source_mode"], "referrers-api");
    let kinds: Vec<&str> = s["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["signature", "sbom", "provenance"], "{s:#}");
    assert_eq!(
        s["cosign_tags"],
        serde_json::json!([format!("sha256-{hex}.sig"), format!("sha256-{hex}.att")])
    );
    let repos = s["repositories"].as_array().unwrap();
    assert_eq!(repos.len(), 2);
    assert_eq!(repos[0]["registry"], pair.b.host().as_str());
    assert_eq!(repos[0]["mode"], "tag-schema");
    assert_eq!(repos[1]["registry"], c.host().as_str());
    assert_eq!(repos[1]["mode"], "referrers-api");
    assert!(
        run1.stderr.contains("artifacts carried along: 3"),
        "{}",
        run1.stderr
    );

    // B lists the same artifacts in its referrers tag as A's API does,
    // and holds cosign's legacy tags.
    let index = manifest_b(&pair, "acme/apps2", &format!("sha256-{hex}")).expect("referrers tag");
    let listed: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["artifactType"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [SIGNATURE, DSSE, DSSE], "{index:#}");
    let listed_digests: Vec<&Value> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["digest"])
        .collect();
    let carried_digests: Vec<&Value> = s["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["digest"])
        .collect();
    assert_eq!(listed_digests, carried_digests);
    for suffix in ["sig", "att"] {
        assert!(manifest_b(&pair, "acme/apps2", &format!("sha256-{hex}.{suffix}")).is_some());
    }
    // C answered the referrers API: no referrers tag written there.
    assert!(c.injected_count(Injected::Referrers) > 0);
    assert!(!c
        .log()
        .iter()
        .any(|e| e.method == "PUT" && e.path.ends_with(&format!("/manifests/sha256-{hex}"))));
    // Figure: each blob (image and artifacts) uploaded at most once per
    // destination.
    for p in [&pair.b, &c] {
        let ups = uploads_by_digest(&p.log());
        assert!(ups.values().all(|&n| n == 1), "{ups:?}");
    }

    // verify --key --require sbom passes on the source and both copies.
    let b_ref = format!("{b_dst}:1.0");
    let c_ref = format!("{c_dst}:1.0");
    let (v, doc) = verify_json(
        &pair,
        &public,
        &["--require", "sbom,provenance"],
        &[&src, &b_ref, &c_ref],
    );
    assert_ok(&v);
    let held = doc["supply"]["references"].as_array().unwrap();
    for h in held {
        assert_eq!(h["ok"], true, "{h:#}");
        assert_eq!(h["attestations"]["sbom"].as_array().unwrap().len(), 1);
    }
    assert_eq!(held[1]["mode"], "tag-schema");
    assert_eq!(held[2]["mode"], "referrers-api");

    // Figure: a re-run sends nothing: no blob byte, no write at all.
    pair.reset();
    c.reset();
    let (run2, rep2) = copy_json(&pair, &["--cache-dir", cache_dir, &src, &b_dst, &c_dst]);
    assert_ok(&run2);
    assert_eq!(rep2["up_to_date"], true);
    assert_eq!(rep2["referrers"]["artifacts"], 3, "{rep2:#}");
    assert_eq!(rep2["referrers"]["blobs_downloaded"], 0);
    for p in [&pair.b, &c] {
        assert_eq!(blob_upload_bytes(&p.log()), 0);
        assert!(writes(p).is_empty(), "{:?}", writes(p));
    }

    // A listed artifact gone at the source is passed over with a note:
    // B's plain SBOM manifest deleted while its referrers tag lists it,
    // then B (tag fallback, read) -> C (another repository).
    let sbom_manifest = index["manifests"][1]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        delete_b(&pair, &format!("acme/apps2/manifests/{sbom_manifest}")),
        202
    );
    let c_other = format!("{}/other/apps:1.0", c.host());
    let (run3, rep3) = copy_json(&pair, &[&b_ref, &c_other]);
    assert_ok(&run3);
    let s3 = &rep3["referrers"]["subjects"][0];
    assert_eq!(s3["source_mode"], "tag-schema");
    assert_eq!(s3["artifacts"].as_array().unwrap().len(), 2, "{s3:#}");
    let notes = s3["notes"].to_string();
    assert!(
        notes.contains(&sbom_manifest) && notes.contains("passed over"),
        "{s3:#}"
    );
    let (v, _) = verify_json(&pair, &public, &["--require", "provenance"], &[&c_other]);
    assert_ok(&v);

    // --no-referrers: the image alone.
    pair.reset();
    let bare = format!("{}/acme/apps3:1.0", pair.b.host());
    let (run4, rep4) = copy_json(&pair, &["--no-referrers", &src, &bare]);
    assert_ok(&run4);
    assert_eq!(rep4["referrers"], Value::Null);
    assert!(manifest_b(&pair, "acme/apps3", &format!("sha256-{hex}")).is_none());
    let puts: Vec<String> = writes(&pair.b)
        .into_iter()
        .filter(|w| w.starts_with("PUT") && w.contains("/manifests/"))
        .collect();
    assert_eq!(puts, ["PUT /v2/acme/apps3/manifests/1.0".to_string()]);
    let (v, _) = verify_json(&pair, &public, &[], &[&bare]);
    assert_code(&v, 1);
    assert!(!format!("{}{}", run4.stderr, v.stderr).contains(PASSWORD));
}

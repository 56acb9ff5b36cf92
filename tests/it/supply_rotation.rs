//! A key rotation with cosign's legacy tags: an image signed with key A,
//! then with key B, holds both signatures in its `sha256-<hex>.sig` tag,
//! though the two layers have one digest (cosign's payload does not depend
//! on the key; the signature is in the layer's annotation). With the
//! referrers hidden (A's proxy no longer plays the API, B's referrers tag
//! deleted), `verify --key` with either key reads the legacy tag alone and
//! passes; signing again with A adds nothing; `copy` carries both.

use serde_json::Value;

use crate::common::*;
use crate::pair::Pair;
use crate::supply::{
    build_push, delete_b, get_b, keygen, manifest_b, pushed_hex, recipe, refs, verify_json,
    PASSWORD,
};
use crate::support::tempdir;

const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// `sign --cosign-tags --key KEY REFS...`.
fn sign_legacy(pair: &Pair, key: &std::path::Path, refs: &[&str]) -> Run {
    run(pair
        .cmd()
        .env("COSIGN_PASSWORD", PASSWORD)
        .args(["sign", "--cosign-tags", "--key"])
        .arg(key)
        .args(refs))
}

/// The layers of a `.sig` manifest: (digest, signature annotation).
fn signatures(manifest: &Value) -> Vec<(String, String)> {
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["digest"].as_str().unwrap().to_string(),
                l["annotations"][SIGNATURE_ANNOTATION]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect()
}

/// Figures: the `.sig` tag lists 2 layers on each registry after A then
/// B signed, one digest and two signatures; with only that tag readable,
/// `verify --key` passes with each key (1 valid signature, the other key's
/// 1 invalid); signing with A again writes no `.sig` manifest; a copy's
/// `.sig` lists the same 2 layers and verifies with B's key.
#[test]
fn supply_a_second_key_s_signature_reaches_the_legacy_sig_tag() {
    let pair = Pair::start();
    pair.a.configure(|c| c.referrers_api = true);
    let (dir_a, dir_b) = (tempdir(), tempdir());
    let (key_a, pub_a) = keygen(&pair, dir_a.path());
    let (key_b, pub_b) = keygen(&pair, dir_b.path());
    let r = recipe(dir_a.path(), "rot", 31);
    let (a_ref, b_ref) = refs(&pair, "acme/rot", "1");
    let args = ["--sign-key", key_a.to_str().unwrap(), "--cosign-tags"];
    let pushed = build_push(&pair, dir_a.path(), &r, &[&a_ref, &b_ref], &args);
    assert_ok(&pushed);
    let hex = pushed_hex(&pushed);
    assert_ok(&sign_legacy(&pair, &key_b, &[&a_ref, &b_ref]));

    let sig_tag = format!("sha256-{hex}.sig");
    let sig_on_a = || -> Value {
        serde_json::from_str(&pair.raw(&pair.a, &format!("{}/acme/rot:{sig_tag}", pair.a.host())))
            .unwrap()
    };
    let sig_on_b = || manifest_b(&pair, "acme/rot", &sig_tag).expect("the .sig tag on B");
    for m in [sig_on_a(), sig_on_b()] {
        let layers = signatures(&m);
        assert_eq!(layers.len(), 2, "{m:#}");
        assert_eq!(layers[0].0, layers[1].0, "one payload: {m:#}");
        assert_ne!(layers[0].1, layers[1].1, "two signatures: {m:#}");
    }

    // Only the legacy tags readable: A's API hidden by its proxy, B's
    // referrers tag deleted.
    pair.a.configure(|c| c.referrers_api = false);
    let (status, index) = get_b(
        &pair,
        &format!("acme/rot/manifests/sha256-{hex}"),
        "application/vnd.oci.image.index.v1+json",
    );
    assert_eq!(status, 200);
    let index_digest = sha256(&index);
    assert_eq!(
        delete_b(&pair, &format!("acme/rot/manifests/{index_digest}")),
        202
    );
    for public in [&pub_b, &pub_a] {
        let (v, doc) = verify_json(&pair, public, &[], &[&a_ref, &b_ref]);
        assert_ok(&v);
        for h in doc["supply"]["references"].as_array().unwrap() {
            assert_eq!(h["mode"], "tag-schema", "{h:#}");
            assert_eq!(h["signatures"].as_array().unwrap().len(), 1, "{h:#}");
            assert_eq!(h["invalid"]["signature"], 1, "the other key's: {h:#}");
            let notes = h["notes"].to_string();
            assert!(notes.contains(&sig_tag), "read from the .sig tag: {h:#}");
        }
    }

    // Signing with A again: the .sig tag already holds that signature.
    pair.reset();
    assert_ok(&sign_legacy(&pair, &key_a, &[&a_ref, &b_ref]));
    for p in pair.proxies() {
        let puts: Vec<String> = (p.log().iter())
            .filter(|e| e.method == "PUT" && e.path.ends_with(&format!("/manifests/{sig_tag}")))
            .map(|e| e.path.clone())
            .collect();
        assert!(puts.is_empty(), "{puts:?}");
    }
    assert_eq!(signatures(&sig_on_a()).len(), 2);
    assert_eq!(signatures(&sig_on_b()).len(), 2);

    // copy carries the .sig tag with both signatures.
    let dst = format!("{}/acme/rot-copy", pair.b.host());
    let copied = run(pair.cmd().args(["copy", &b_ref, &dst]));
    assert_ok(&copied);
    let m = manifest_b(&pair, "acme/rot-copy", &sig_tag).expect("the .sig tag of the copy");
    assert_eq!(signatures(&m), signatures(&sig_on_b()), "{m:#}");
    let (v, doc) = verify_json(&pair, &pub_b, &[], &[&format!("{dst}:1")]);
    assert_ok(&v);
    assert_eq!(doc["supply"]["references"][0]["mode"], "tag-schema");
}

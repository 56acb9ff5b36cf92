//! cosign's legacy tags, `sha256-<hex>.sig` and `.att`: one manifest whose
//! layers are every signature (or attestation) of the image, for verifiers
//! that read only those. Ours are added to the layers already there, which
//! are kept as they are.
//!
//! A layer is already there only when the whole descriptor is: a cosign
//! signature layer's digest is its payload's (the simple-signing document,
//! the same whichever key signs it), and the signature itself is in its
//! annotations, beside cosign's certificate, chain, bundle and timestamp.
//! Matching on the digest alone would drop the signature of a second key.

use anyhow::{anyhow, Result};
use bytes::Bytes;
use serde_json::{json, Value};

use super::referrers;
use crate::oci::{canonical_json, Descriptor, MEDIA_TYPE_CONFIG, MEDIA_TYPE_MANIFEST};
use crate::push::{BlobBytes, Pusher};
use crate::registry::Reference;

/// Write the legacy tag `tag` in `r` with `ours` added to the layers it
/// lists; nothing when they are all there. `dir` holds its config.
pub async fn write(
    pusher: &Pusher,
    r: &Reference,
    tag: &str,
    ours: &[&Descriptor],
    dir: &std::path::Path,
) -> Result<()> {
    let client = pusher.client();
    let (reg, repo) = (r.registry.as_str(), r.repository.as_str());
    let existing = referrers::tagged(client, reg, repo, tag).await?;
    let Some(layers) = merged(existing.as_ref(), ours)? else {
        return Ok(());
    };
    // cosign's config: the layers as the image's diff IDs (they are not
    // compressed), with the zero times it writes.
    let diff_ids: Vec<&Value> = layers.iter().map(|l| &l["digest"]).collect();
    let config = canonical_json(&json!({
        "architecture": "",
        "config": {},
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }));
    let config_desc = Descriptor::of_bytes(MEDIA_TYPE_CONFIG, &config);
    let path = dir.join(config_desc.digest.hex());
    std::fs::write(&path, &config)?;
    pusher
        .push_blob_to(reg, &config_desc, BlobBytes::File(&path))
        .await;
    if let Some(e) = pusher.registry_failure(reg) {
        return Err(anyhow!("the config of {tag} could not be stored: {e}"));
    }
    let manifest = canonical_json(&json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_MANIFEST,
        "config": config_desc,
        "layers": layers,
    }));
    client
        .repo(reg, repo)
        .put_manifest(tag, Bytes::from(manifest), MEDIA_TYPE_MANIFEST)
        .await
        .map_err(|e| anyhow!("writing {tag}: {e}"))?;
    Ok(())
}

/// The layers of the legacy tag's manifest `existing` (none when there is
/// no tag) with each of `ours` that is not among them added; `None` when
/// the tag exists and lists them all.
fn merged(existing: Option<&Value>, ours: &[&Descriptor]) -> Result<Option<Vec<Value>>> {
    let mut layers: Vec<Value> = existing
        .and_then(|m| m["layers"].as_array().cloned())
        .unwrap_or_default();
    let mut changed = existing.is_none();
    for d in ours {
        if !layers.iter().any(|l| is(l, d)) {
            layers.push(serde_json::to_value(d)?);
            changed = true;
        }
    }
    Ok(changed.then_some(layers))
}

/// Whether the listed layer `l` is `d`, descriptor for descriptor
/// (digest, media type, size, annotations and the rest).
fn is(l: &Value, d: &Descriptor) -> bool {
    serde_json::from_value::<Descriptor>(l.clone()).is_ok_and(|l| l == *d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Digest;
    use crate::supply::keys::SigningKey;
    use crate::supply::sign;

    fn signature_layer(key: &SigningKey, subject: &Descriptor) -> Descriptor {
        sign::signature(key, subject, "r.io/acme/app").layer
    }

    #[test]
    fn a_second_key_s_signature_is_added_and_the_same_one_is_not() {
        let subject = Descriptor::of_bytes(MEDIA_TYPE_MANIFEST, b"image");
        let (a, b) = (SigningKey::generate(), SigningKey::generate());
        let by_a = signature_layer(&a, &subject);
        let by_b = signature_layer(&b, &subject);
        assert_eq!(by_a.digest, by_b.digest, "one payload, whichever key");

        let first = merged(None, &[&by_a])
            .unwrap()
            .expect("a new tag is written");
        let tag = json!({"layers": first});
        let both = merged(Some(&tag), &[&by_b])
            .unwrap()
            .expect("key B's signature is added");
        assert_eq!(both.len(), 2);
        assert_eq!(both[1], serde_json::to_value(&by_b).unwrap());

        let tag = json!({"layers": both});
        assert!(
            merged(Some(&tag), &[&by_a, &by_b]).unwrap().is_none(),
            "signing again with either key adds nothing"
        );
    }

    #[test]
    fn a_layer_of_another_tool_is_kept_as_it_is_and_differs_by_its_bundle() {
        let subject = Descriptor::of_bytes(MEDIA_TYPE_MANIFEST, b"image");
        let ours = signature_layer(&SigningKey::generate(), &subject);
        // What cosign writes with the same signature, and its tlog bundle.
        let mut theirs = serde_json::to_value(&ours).unwrap();
        theirs["annotations"]["dev.sigstore.cosign/bundle"] = json!("{\"Payload\":{}}");
        let foreign = json!({"mediaType": "application/x-other",
            "digest": Digest::of(b"f").to_string(), "size": 1, "data": "Zg=="});
        let tag = json!({"layers": [theirs.clone(), foreign.clone()]});
        let layers = merged(Some(&tag), &[&ours]).unwrap().unwrap();
        assert_eq!(layers[..2], [theirs, foreign], "kept, unknown fields too");
        assert_eq!(layers[2], serde_json::to_value(&ours).unwrap());
    }
}

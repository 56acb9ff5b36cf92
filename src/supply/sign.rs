//! Signatures and attestations as cosign makes them, so that cosign (and
//! the tools that read cosign's format) verify what boxwright signs:
//!
//! - a signature is the simple-signing payload `{"critical": {"identity":
//!   {"docker-reference": REPO}, "image": {"docker-manifest-digest":
//!   DIGEST}, "type": "cosign container image signature"}, "optional":
//!   null}`, signed with ECDSA P-256 over SHA-256; the payload is a layer of
//!   type `application/vnd.dev.cosign.simplesigning.v1+json` whose
//!   `dev.cosignproject.cosign/signature` annotation holds the base64 DER
//!   signature;
//! - an attestation is an in-toto statement about the image digest, wrapped
//!   in a DSSE envelope (payload type `application/vnd.in-toto+json`, the
//!   signature over the envelope's PAE), stored as a layer of type
//!   `application/vnd.dsse.envelope.v1+json` with a `predicateType`
//!   annotation.
//!
//! Without a key, an SBOM or provenance is attached unsigned: the document
//! (or statement) itself, of its own media type.

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::artifact::{Artifact, Kind};
use super::keys::{SigningKey, VerifyingKey};
use super::provenance::STATEMENT_TYPE;
use super::sbom::SbomFormat;
use super::{
    ANNOTATION_PREDICATE_TYPE, ANNOTATION_SIGNATURE, ARTIFACT_SIGNATURE, MEDIA_TYPE_DSSE,
    MEDIA_TYPE_IN_TOTO, MEDIA_TYPE_SIMPLE_SIGNING,
};
use crate::oci::{canonical_json, Descriptor, Digest, ANNOTATION_CREATED};

/// The `critical.type` of a cosign image signature's payload, the only one
/// cosign (and `verify`) takes for an image's signature.
pub const SIGNATURE_TYPE: &str = "cosign container image signature";

/// The simple-signing payload for `repository` (`ghcr.io/acme/app`) at
/// `digest`, byte for byte as cosign writes it.
pub fn simple_signing_payload(repository: &str, digest: &Digest) -> Vec<u8> {
    let v = json!({
        "critical": {
            "identity": {"docker-reference": repository},
            "image": {"docker-manifest-digest": digest.to_string()},
            "type": SIGNATURE_TYPE,
        },
        "optional": null,
    });
    canonical_json(&v)
}

/// What a simple-signing payload claims.
#[derive(Debug, Deserialize)]
pub struct SimpleSigning {
    pub critical: Critical,
}

#[derive(Debug, Deserialize)]
pub struct Critical {
    pub identity: Identity,
    pub image: SignedImage,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Deserialize)]
pub struct Identity {
    #[serde(rename = "docker-reference")]
    pub docker_reference: String,
}

#[derive(Debug, Deserialize)]
pub struct SignedImage {
    #[serde(rename = "docker-manifest-digest")]
    pub docker_manifest_digest: String,
}

/// Annotations common to the artifacts of one image: its creation time,
/// so that the artifacts of the same build are the same bytes.
fn base_annotations(created: Option<&str>) -> BTreeMap<String, String> {
    created
        .map(|c| BTreeMap::from([(ANNOTATION_CREATED.to_string(), c.to_string())]))
        .unwrap_or_default()
}

/// The signature artifact of `subject` as pushed to `repository`
/// (`REGISTRY/REPO`).
pub fn signature(key: &SigningKey, subject: &Descriptor, repository: &str) -> Artifact {
    let payload = simple_signing_payload(repository, &subject.digest);
    let sig = B64.encode(key.sign(&payload));
    let layer = BTreeMap::from([(ANNOTATION_SIGNATURE.to_string(), sig)]);
    let mut a = Artifact::new(
        Kind::Signature,
        subject,
        ARTIFACT_SIGNATURE,
        MEDIA_TYPE_SIMPLE_SIGNING,
        payload,
        layer,
        BTreeMap::new(),
    );
    a.only = Some(repository.to_string());
    a
}

/// Check a simple-signing layer: the signature is `key`'s over `payload`,
/// the payload is of cosign's image signature type ([`SIGNATURE_TYPE`]:
/// a signed document of another type, such as an atomic container
/// signature, is not this image's signature) and names `digest`. Returns
/// the repository it names.
pub fn check_signature(
    key: &VerifyingKey,
    payload: &[u8],
    signature_b64: &str,
    digest: &Digest,
) -> Result<String> {
    let sig = B64
        .decode(signature_b64.trim())
        .map_err(|_| anyhow!("the signature annotation is not base64"))?;
    if !key.verify(payload, &sig) {
        return Err(anyhow!(
            "the signature does not verify with key {}",
            key.id()
        ));
    }
    let claims: SimpleSigning = serde_json::from_slice(payload)
        .map_err(|_| anyhow!("the signed payload is not a simple-signing document"))?;
    let kind = &claims.critical.kind;
    if kind != SIGNATURE_TYPE {
        // Shown in a note: at most 64 characters of what the payload says.
        let shown: String = kind.chars().take(64).collect();
        let more = if shown.len() < kind.len() { "..." } else { "" };
        return Err(anyhow!(
            "the signed payload is of type {shown:?}{more}, not {SIGNATURE_TYPE:?}"
        ));
    }
    if claims.critical.image.docker_manifest_digest != digest.as_str() {
        return Err(anyhow!(
            "the signature is for {}, not {digest}",
            claims.critical.image.docker_manifest_digest
        ));
    }
    Ok(claims.critical.identity.docker_reference)
}

/// An in-toto statement v1 about `digest` under `names`, with `predicate`.
pub fn statement(
    names: &[String],
    digest: &Digest,
    predicate_type: &str,
    predicate: Value,
) -> Value {
    let mut names = names.to_vec();
    names.sort();
    names.dedup();
    json!({
        "_type": STATEMENT_TYPE,
        "subject": names
            .iter()
            .map(|n| json!({"name": n, "digest": {"sha256": digest.hex()}}))
            .collect::<Vec<_>>(),
        "predicateType": predicate_type,
        "predicate": predicate,
    })
}

/// DSSE's pre-authentication encoding.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// A DSSE envelope.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub payload: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    #[serde(default)]
    pub keyid: String,
    pub sig: String,
}

/// `statement` signed by `key` in a DSSE envelope (as `cosign attest`).
pub fn envelope(key: &SigningKey, statement: &Value) -> Vec<u8> {
    let payload = canonical_json(statement);
    let sig = key.sign(&pae(MEDIA_TYPE_IN_TOTO, &payload));
    canonical_json(&Envelope {
        payload_type: MEDIA_TYPE_IN_TOTO.into(),
        payload: B64.encode(&payload),
        signatures: vec![EnvelopeSignature {
            keyid: String::new(),
            sig: B64.encode(sig),
        }],
    })
}

/// Most signatures of one DSSE envelope checked: an envelope has one per
/// key that signed it, and each check costs an ECDSA verification, so an
/// envelope of hundreds of thousands (a few MiB) would take minutes.
pub const MAX_ENVELOPE_SIGNATURES: usize = 16;

/// Open a DSSE envelope: some signature is `key`'s; returns the statement.
/// An envelope of more than [`MAX_ENVELOPE_SIGNATURES`] signatures is
/// refused, none of them checked.
pub fn open_envelope(key: &VerifyingKey, bytes: &[u8]) -> Result<Value> {
    let env: Envelope =
        serde_json::from_slice(bytes).map_err(|_| anyhow!("not a DSSE envelope"))?;
    if env.signatures.len() > MAX_ENVELOPE_SIGNATURES {
        return Err(anyhow!(
            "the envelope has {} signatures, more than the {MAX_ENVELOPE_SIGNATURES} boxwright checks: refused, none checked",
            env.signatures.len()
        ));
    }
    let payload = B64
        .decode(&env.payload)
        .map_err(|_| anyhow!("the envelope's payload is not base64"))?;
    let signed = pae(&env.payload_type, &payload);
    let ok = env.signatures.iter().any(|s| {
        B64.decode(&s.sig)
            .is_ok_and(|sig| key.verify(&signed, &sig))
    });
    if !ok {
        return Err(anyhow!(
            "no signature of the envelope verifies with key {}",
            key.id()
        ));
    }
    serde_json::from_slice(&payload).map_err(|_| anyhow!("the envelope's payload is not JSON"))
}

/// Whether an in-toto statement is about `digest`.
pub fn statement_names(statement: &Value, digest: &Digest) -> bool {
    statement["subject"].as_array().is_some_and(|subjects| {
        subjects
            .iter()
            .any(|s| s["digest"]["sha256"].as_str() == Some(digest.hex()))
    })
}

/// An attestation artifact of `statement`: signed (DSSE) with `key`, or
/// unsigned (the statement itself) without.
pub fn attestation(
    key: Option<&SigningKey>,
    subject: &Descriptor,
    statement: &Value,
    created: Option<&str>,
) -> Artifact {
    let predicate_type = statement["predicateType"].as_str().unwrap_or_default();
    let kind = Kind::of_predicate(predicate_type);
    let layer = BTreeMap::from([(
        ANNOTATION_PREDICATE_TYPE.to_string(),
        predicate_type.to_string(),
    )]);
    let mut annotations = base_annotations(created);
    annotations.extend(layer.clone());
    let (media_type, payload) = match key {
        Some(k) => (MEDIA_TYPE_DSSE, envelope(k, statement)),
        None => (MEDIA_TYPE_IN_TOTO, canonical_json(statement)),
    };
    Artifact::new(
        kind,
        subject,
        media_type,
        media_type,
        payload,
        layer,
        annotations,
    )
}

/// An SBOM as an artifact: signed, an attestation whose predicate is the
/// document; unsigned, the document itself (`artifactType` = its media type).
pub fn sbom(
    key: Option<&SigningKey>,
    subject: &Descriptor,
    names: &[String],
    format: SbomFormat,
    document: &[u8],
    created: Option<&str>,
) -> Result<Artifact> {
    let doc: Value =
        serde_json::from_slice(document).map_err(|_| anyhow!("the SBOM is not a JSON document"))?;
    if key.is_some() {
        let st = statement(names, &subject.digest, format.predicate_type(), doc);
        return Ok(attestation(key, subject, &st, created));
    }
    let mut annotations = base_annotations(created);
    annotations.insert(
        ANNOTATION_PREDICATE_TYPE.to_string(),
        format.predicate_type().to_string(),
    );
    Ok(Artifact::new(
        Kind::Sbom,
        subject,
        format.media_type(),
        format.media_type(),
        canonical_json(&doc),
        BTreeMap::new(),
        annotations,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::MEDIA_TYPE_MANIFEST;

    #[test]
    fn the_payload_is_cosigns() {
        let d = Digest::of(b"x");
        let p = String::from_utf8(simple_signing_payload("ghcr.io/acme/app", &d)).unwrap();
        assert_eq!(
            p,
            format!(
                "{{\"critical\":{{\"identity\":{{\"docker-reference\":\"ghcr.io/acme/app\"}},\"image\":{{\"docker-manifest-digest\":\"{d}\"}},\"type\":\"cosign container image signature\"}},\"optional\":null}}"
            )
        );
    }

    #[test]
    fn signatures_and_envelopes_check_out_and_tampering_is_caught() {
        let key = SigningKey::generate();
        let public = key.verifying_key();
        let subject = Descriptor::of_bytes(MEDIA_TYPE_MANIFEST, b"image");
        let a = signature(&key, &subject, "ghcr.io/acme/app");
        let sig = &a.layer.annotations[ANNOTATION_SIGNATURE];
        let named = check_signature(&public, &a.payload, sig, &subject.digest).unwrap();
        assert_eq!(named, "ghcr.io/acme/app");
        assert!(check_signature(&public, &a.payload, sig, &Digest::of(b"other")).is_err());
        let other = SigningKey::generate().verifying_key();
        assert!(check_signature(&other, &a.payload, sig, &subject.digest).is_err());

        let st = statement(
            &["ghcr.io/acme/app".into()],
            &subject.digest,
            "https://slsa.dev/provenance/v1",
            json!({}),
        );
        let env = envelope(&key, &st);
        let opened = open_envelope(&public, &env).unwrap();
        assert!(statement_names(&opened, &subject.digest));
        assert!(!statement_names(&opened, &Digest::of(b"other")));
        let mut tampered: Value = serde_json::from_slice(&env).unwrap();
        tampered["payloadType"] = json!("text/plain");
        assert!(open_envelope(&public, &serde_json::to_vec(&tampered).unwrap()).is_err());
        assert_eq!(pae("t", b"ab"), b"DSSEv1 1 t 2 ab");
    }

    /// A payload signed by the key and naming the digest, but of another
    /// `critical.type` than cosign's image signature, is not counted: its
    /// error names the type.
    #[test]
    fn a_signed_payload_of_another_type_is_not_an_image_signature() {
        let key = SigningKey::generate();
        let digest = Digest::of(b"image");
        for kind in [
            "atomic container signature",
            "",
            "cosign container image signature ",
        ] {
            let payload = canonical_json(&json!({
                "critical": {
                    "identity": {"docker-reference": "ghcr.io/acme/app"},
                    "image": {"docker-manifest-digest": digest.to_string()},
                    "type": kind,
                },
                "optional": null,
            }));
            let sig = B64.encode(key.sign(&payload));
            let e = check_signature(&key.verifying_key(), &payload, &sig, &digest).unwrap_err();
            assert!(e.to_string().contains(&format!("of type {kind:?}")), "{e}");
        }
    }

    #[test]
    fn one_valid_signature_among_a_few_counts_and_too_many_are_refused() {
        let key = SigningKey::generate();
        let other = SigningKey::generate();
        let digest = Digest::of(b"image");
        let st = statement(
            &["r.io/a".into()],
            &digest,
            "https://slsa.dev/provenance/v1",
            json!({}),
        );
        let mine: Envelope = serde_json::from_slice(&envelope(&key, &st)).unwrap();
        let theirs: Envelope = serde_json::from_slice(&envelope(&other, &st)).unwrap();
        let with = |n: usize| {
            let mut env: Envelope = serde_json::from_slice(&envelope(&other, &st)).unwrap();
            env.signatures = (1..n)
                .map(|_| EnvelopeSignature {
                    keyid: String::new(),
                    sig: theirs.signatures[0].sig.clone(),
                })
                .chain([EnvelopeSignature {
                    keyid: String::new(),
                    sig: mine.signatures[0].sig.clone(),
                }])
                .collect();
            canonical_json(&env)
        };
        let public = key.verifying_key();
        let opened = open_envelope(&public, &with(MAX_ENVELOPE_SIGNATURES)).unwrap();
        assert!(statement_names(&opened, &digest));
        let e = open_envelope(&public, &with(MAX_ENVELOPE_SIGNATURES + 1)).unwrap_err();
        assert!(
            e.to_string().contains("17 signatures, more than the 16"),
            "{e}"
        );
    }
}

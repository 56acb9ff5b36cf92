//! An artifact attached to an image: a small image whose manifest has the
//! image as `subject`, an `artifactType`, the OCI empty config (`{}`) and one
//! layer holding the payload (a signature, an SBOM, an attestation).
//! [`Artifact::image`] makes it a [`MemoryImage`], which the pusher takes
//! like any other image.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use serde::Serialize;

use super::MEDIA_TYPE_EMPTY;
use crate::image::MemoryImage;
use crate::oci::{self, canonical_json, Descriptor, Digest, Manifest};

/// What an artifact is evidence of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Signature,
    Sbom,
    Provenance,
    /// An attestation of another predicate type.
    Other,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Signature => "signature",
            Kind::Sbom => "sbom",
            Kind::Provenance => "provenance",
            Kind::Other => "attestation",
        }
    }

    /// `signature`, `sbom`, `provenance` (the values of `--require`).
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "signature" => Some(Kind::Signature),
            "sbom" => Some(Kind::Sbom),
            "provenance" => Some(Kind::Provenance),
            _ => None,
        }
    }

    /// The kind of an attestation with predicate type `t`.
    pub fn of_predicate(t: &str) -> Kind {
        if t == super::provenance::PREDICATE_TYPE || t.starts_with("https://slsa.dev/provenance/") {
            Kind::Provenance
        } else if super::sbom::SbomFormat::of_type(t).is_some() {
            Kind::Sbom
        } else {
            Kind::Other
        }
    }
}

/// An artifact, ready to push.
#[derive(Clone, Debug)]
pub struct Artifact {
    pub kind: Kind,
    /// The manifest's descriptor, with its `artifactType` and annotations
    /// (as a referrers list shows it).
    pub descriptor: Descriptor,
    pub manifest: Bytes,
    /// The payload layer.
    pub layer: Descriptor,
    pub payload: Bytes,
    /// Only for this repository (`REGISTRY/REPO`): a signature names the
    /// repository it is pushed to.
    pub only: Option<String>,
}

/// The OCI empty config: `{}`.
pub const EMPTY_CONFIG: &[u8] = b"{}";

/// The empty config's descriptor.
pub fn empty_config() -> Descriptor {
    Descriptor::of_bytes(MEDIA_TYPE_EMPTY, EMPTY_CONFIG)
}

impl Artifact {
    /// An artifact of `artifact_type` about `subject`, holding `payload` as
    /// one layer of `layer_media_type`.
    pub fn new(
        kind: Kind,
        subject: &Descriptor,
        artifact_type: &str,
        layer_media_type: &str,
        payload: Vec<u8>,
        layer_annotations: BTreeMap<String, String>,
        annotations: BTreeMap<String, String>,
    ) -> Artifact {
        let mut layer = Descriptor::of_bytes(layer_media_type, &payload);
        layer.annotations = layer_annotations;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(oci::MEDIA_TYPE_MANIFEST.into()),
            artifact_type: Some(artifact_type.into()),
            config: empty_config(),
            layers: vec![layer.clone()],
            subject: Some(Descriptor::new(
                &subject.media_type,
                subject.digest.clone(),
                subject.size,
            )),
            annotations: annotations.clone(),
        };
        let bytes = canonical_json(&manifest);
        let mut descriptor = Descriptor::of_bytes(oci::MEDIA_TYPE_MANIFEST, &bytes);
        descriptor.artifact_type = Some(artifact_type.into());
        descriptor.annotations = annotations;
        Artifact {
            kind,
            descriptor,
            manifest: Bytes::from(bytes),
            layer,
            payload: Bytes::from(payload),
            only: None,
        }
    }

    pub fn digest(&self) -> &Digest {
        &self.descriptor.digest
    }

    /// The artifact as an image whose blobs are files in `dir`.
    pub fn image(&self, dir: &Path) -> Result<MemoryImage> {
        let mut img = MemoryImage::new(self.descriptor.clone());
        img.add_manifest(self.manifest.clone());
        for (d, bytes) in [
            (&empty_config(), EMPTY_CONFIG),
            (&self.layer, &self.payload[..]),
        ] {
            let path = dir.join(d.digest.hex());
            std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
            img.add_blob(d.digest.clone(), path);
        }
        Ok(img)
    }

    /// Whether this artifact goes to `registry`/`repository`.
    pub fn goes_to(&self, registry: &str, repository: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| *o == format!("{registry}/{repository}"))
    }
}

/// A small SPDX SBOM about `subject`, for tests.
#[cfg(test)]
pub(crate) fn test_sbom(subject: &Descriptor, annotations: BTreeMap<String, String>) -> Artifact {
    Artifact::new(
        Kind::Sbom,
        subject,
        "application/spdx+json",
        "application/spdx+json",
        br#"{"spdxVersion":"SPDX-2.3"}"#.to_vec(),
        BTreeMap::new(),
        annotations,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{walk, ImageSource as _};

    #[tokio::test]
    async fn an_artifact_is_a_small_image_about_its_subject() {
        let subject = Descriptor::of_bytes(oci::MEDIA_TYPE_MANIFEST, b"image");
        let mut ann = BTreeMap::new();
        ann.insert("k".to_string(), "v".to_string());
        let a = test_sbom(&subject, ann);
        let m: serde_json::Value = serde_json::from_slice(&a.manifest).unwrap();
        assert_eq!(m["subject"]["digest"], subject.digest.to_string());
        assert_eq!(m["config"]["mediaType"], MEDIA_TYPE_EMPTY);
        assert_eq!(m["artifactType"], "application/spdx+json");
        assert_eq!(a.descriptor.annotations["k"], "v");
        let dir = tempfile::tempdir().unwrap();
        let img = a.image(dir.path()).unwrap();
        let g = walk(&img).await.unwrap();
        assert_eq!(g.blobs.len(), 2);
        assert_eq!(img.root().digest, *a.digest());
    }
}

//! `inspect`: what an OCI layout holds (manifest, config, layers, sizes,
//! digests), read-only like the other operations on built images.

use serde::Serialize;

use anyhow::Result;

use crate::image::layout::Layout;
use crate::oci::{self, Descriptor, Digest, ImageConfig, Index, Manifest};

#[derive(Debug, Serialize)]
pub struct Inspection {
    /// The descriptor that was inspected (from index.json).
    pub descriptor: Descriptor,
    /// Set when the descriptor is an index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<Index>,
    pub images: Vec<ImageInfo>,
}

#[derive(Debug, Serialize)]
pub struct ImageInfo {
    pub platform: String,
    pub manifest_digest: Digest,
    pub manifest: Manifest,
    pub config: ImageConfig,
}

/// Inspect image `name` (or the only image) of the layout at `layout`.
pub fn inspect(layout: &Layout, name: Option<&str>) -> Result<Inspection> {
    let descriptor = layout.resolve(name)?;
    let mut images = Vec::new();
    let mut index = None;
    let manifests = if oci::is_index_media_type(&descriptor.media_type) {
        let idx: Index = layout.read_json(&descriptor)?;
        let m = idx.manifests.clone();
        index = Some(idx);
        m
    } else {
        vec![descriptor.clone()]
    };
    for d in manifests {
        if !oci::is_manifest_media_type(&d.media_type) {
            continue;
        }
        let manifest: Manifest = layout.read_json(&d)?;
        let config: ImageConfig = layout.read_json(&manifest.config)?;
        let platform = format!(
            "{}/{}{}",
            config.os,
            config.architecture,
            config
                .variant
                .as_ref()
                .map(|v| format!("/{v}"))
                .unwrap_or_default()
        );
        images.push(ImageInfo {
            platform,
            manifest_digest: d.digest.clone(),
            manifest,
            config,
        });
    }
    Ok(Inspection {
        descriptor,
        index,
        images,
    })
}

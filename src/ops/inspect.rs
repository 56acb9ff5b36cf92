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

/// Human-readable form of an inspection.
pub fn render(i: &Inspection) -> String {
    let mut s = String::new();
    let d = &i.descriptor;
    s += &format!("{}  {}  {} bytes\n", d.digest, d.media_type, d.size);
    for img in &i.images {
        s += &format!(
            "\nplatform  {}\nmanifest  {}\n",
            img.platform, img.manifest_digest
        );
        let c = &img.manifest.config;
        s += &format!("config    {}  {} bytes\n", c.digest, c.size);
        if let Some(created) = &img.config.created {
            s += &format!("created   {created}\n");
        }
        let total: u64 = img.manifest.layers.iter().map(|l| l.size).sum();
        s += &format!(
            "layers    {} ({} bytes)\n",
            img.manifest.layers.len(),
            total
        );
        for (n, l) in img.manifest.layers.iter().enumerate() {
            let diff = img
                .config
                .rootfs
                .diff_ids
                .get(n)
                .map(|d| d.to_string())
                .unwrap_or_default();
            s += &format!(
                "  {:>2}  {}  {:>12}  {}\n      diffID {}\n",
                n + 1,
                l.digest,
                l.size,
                l.media_type,
                diff
            );
        }
        if let Some(rc) = &img.config.config {
            if let Some(ep) = &rc.entrypoint {
                s += &format!("entrypoint {ep:?}\n");
            }
            if let Some(cmd) = &rc.cmd {
                s += &format!("cmd       {cmd:?}\n");
            }
            if let Some(w) = &rc.working_dir {
                s += &format!("workdir   {w}\n");
            }
            if let Some(u) = &rc.user {
                s += &format!("user      {u}\n");
            }
            for e in rc.env.iter().flatten() {
                s += &format!("env       {e}\n");
            }
            for (k, v) in rc.labels.iter().flatten() {
                s += &format!("label     {k}={v}\n");
            }
        }
        for (k, v) in &img.manifest.annotations {
            s += &format!("annotation {k}={v}\n");
        }
    }
    s
}

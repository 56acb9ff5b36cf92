//! `inspect`: what an OCI layout holds (manifest, config, layers, sizes,
//! digests), read-only like the other operations on built images. Plain
//! inspection reads `index.json`, manifests and configs, never a layer;
//! [`check`] (`inspect --check`) reads every blob to its end.

use serde::Serialize;

use anyhow::Result;

use crate::image::layout::{guard, Layout};
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
        let platform = config.platform.to_string();
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

/// What `inspect --check` found for one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlobStatus {
    /// Present, of its size, with its digest (and, for a manifest or
    /// index, a document that parses).
    Ok,
    Missing,
    /// Shorter than its descriptor says.
    Truncated,
    /// Longer than its descriptor says.
    Oversized,
    /// Its bytes do not match its digest.
    Corrupt,
    /// A symbolic link, FIFO, device, directory or socket, or unreadable.
    NotRegular,
    /// A manifest or index that does not parse.
    Invalid,
    /// A non-distributable layer that is absent, as such layers may be.
    Foreign,
}

impl BlobStatus {
    /// The name in `--json` and in the text report.
    pub fn name(self) -> &'static str {
        match self {
            BlobStatus::Ok => "ok",
            BlobStatus::Missing => "missing",
            BlobStatus::Truncated => "truncated",
            BlobStatus::Oversized => "oversized",
            BlobStatus::Corrupt => "corrupt",
            BlobStatus::NotRegular => "not-regular",
            BlobStatus::Invalid => "invalid",
            BlobStatus::Foreign => "foreign",
        }
    }

    pub fn failed(self) -> bool {
        !matches!(self, BlobStatus::Ok | BlobStatus::Foreign)
    }
}

/// One blob of `inspect --check`.
#[derive(Debug, Clone, Serialize)]
pub struct BlobCheck {
    pub digest: Digest,
    pub size: u64,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub status: BlobStatus,
    /// Why, when the status is not `ok`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Every blob reachable from an image of a layout, checked.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// True when no blob failed.
    pub ok: bool,
    /// Manifests and indexes (parents before children), configs and layers,
    /// each once.
    pub blobs: Vec<BlobCheck>,
}

impl Check {
    pub fn failed(&self) -> usize {
        self.blobs.iter().filter(|b| b.status.failed()).count()
    }
}

/// Check every blob of image `name` (or the only image) of `layout`:
/// present, a regular file of its descriptor's size, with its digest (read
/// to the end, streaming). Manifests and indexes that check out are parsed
/// and their children checked in turn; a blob that fails is reported, never
/// an error (errors are for a layout that cannot be opened or an unknown
/// name).
pub fn check(layout: &Layout, name: Option<&str>) -> Result<Check> {
    let root = layout.resolve(name)?;
    let mut blobs: Vec<BlobCheck> = Vec::new();
    let mut queue = std::collections::VecDeque::from([(root, 0usize)]);
    while let Some((d, depth)) = queue.pop_front() {
        if blobs.iter().any(|b| b.digest == d.digest) {
            continue;
        }
        let (mut status, mut detail) = check_blob(layout, &d);
        if status == BlobStatus::Missing && oci::is_non_distributable(&d.media_type) {
            status = BlobStatus::Foreign;
        }
        let is_document =
            oci::is_index_media_type(&d.media_type) || oci::is_manifest_media_type(&d.media_type);
        if status == BlobStatus::Ok && is_document {
            match children(layout, &d, depth) {
                Ok(c) => queue.extend(c.into_iter().map(|c| (c, depth + 1))),
                Err(e) => {
                    status = BlobStatus::Invalid;
                    detail = Some(format!("{e:#}"));
                }
            }
        }
        blobs.push(BlobCheck {
            digest: d.digest.clone(),
            size: d.size,
            media_type: d.media_type.clone(),
            status,
            detail,
        });
    }
    Ok(Check {
        ok: !blobs.iter().any(|b| b.status.failed()),
        blobs,
    })
}

/// The blobs a manifest or index (already checked) names.
fn children(layout: &Layout, d: &Descriptor, depth: usize) -> Result<Vec<Descriptor>> {
    let bytes = layout.read_blob(d)?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)?;
    if v.get("manifests").is_some() || oci::is_index_media_type(&d.media_type) {
        if depth >= crate::image::MAX_DEPTH {
            anyhow::bail!("indexes nested too deep");
        }
        let index: Index = serde_json::from_value(v)?;
        return Ok(index.manifests);
    }
    let m: Manifest = serde_json::from_value(v)?;
    Ok(std::iter::once(m.config).chain(m.layers).collect())
}

fn check_blob(layout: &Layout, d: &Descriptor) -> (BlobStatus, Option<String>) {
    let path = layout.blob_path(&d.digest);
    if std::fs::symlink_metadata(&path).is_err() {
        return (BlobStatus::Missing, None);
    }
    let f = match guard::open(layout.root(), &guard::blob_components(&d.digest)) {
        Ok(f) => f,
        Err(e) => return (BlobStatus::NotRegular, Some(format!("{e:#}"))),
    };
    let len = f.meta.len();
    if len != d.size {
        let status = if len < d.size {
            BlobStatus::Truncated
        } else {
            BlobStatus::Oversized
        };
        return (
            status,
            Some(format!("{len} bytes, the descriptor says {}", d.size)),
        );
    }
    match guard::hash(&f.file) {
        Ok((digest, n)) if n == d.size && digest == d.digest => (BlobStatus::Ok, None),
        Ok((digest, n)) if n == d.size => (
            BlobStatus::Corrupt,
            Some(format!("its bytes hash to {digest}")),
        ),
        Ok((_, n)) => (
            BlobStatus::Truncated,
            Some(format!("{n} bytes read, the descriptor says {}", d.size)),
        ),
        Err(e) => (
            BlobStatus::NotRegular,
            Some(format!("reading {}: {e}", path.display())),
        ),
    }
}

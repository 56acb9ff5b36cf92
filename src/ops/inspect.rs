//! `inspect`: what an image holds (manifest, config, layers, sizes,
//! digests), from any [`ImageSource`]: an OCI layout or a registry. Plain
//! inspection reads the manifests and configs, never a layer. `inspect
//! --check` checks every blob: in a layout, read to its end ([`check`]); in
//! a registry, asked for with HEAD, present and of its size
//! ([`check_registry`]).

use std::collections::{HashMap, HashSet, VecDeque};

use serde::Serialize;

use anyhow::Result;

use crate::error::bad_input;
use crate::image::{parse_document, read_config, Budget, ImageSource};
use crate::oci::{self, Descriptor, Digest, ImageConfig, Index, Manifest, Platform};

mod check;
pub use check::{check, check_registry, BlobCheck, BlobStatus, Check};

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
    /// The indexes nested in the root through which the image is listed,
    /// outermost first; empty (and left out of `--json`) for an image the
    /// root lists itself, or that is the root.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nested_in: Vec<Digest>,
    pub manifest: Manifest,
    pub config: ImageConfig,
}

/// Inspect the image `src` serves: its root and, for an index, every image
/// manifest it lists, one per entry, in order; a nested index's images
/// where it is listed (each distinct nested index walked once, as deep as
/// [`crate::image::MAX_DEPTH`]). With `platform`, only the root's image of
/// that platform (bad input when it has none). Each with its config; each
/// distinct manifest and config read once, within one [`Budget`]. Layers
/// are not read.
pub async fn inspect(src: &dyn ImageSource, platform: Option<&Platform>) -> Result<Inspection> {
    let descriptor = src.root().clone();
    let mut images = Vec::new();
    let mut index = None;
    let mut budget = Budget::default();
    // What to show, in order, each with the nested indexes it is listed in.
    let mut pending: VecDeque<(Descriptor, Vec<Digest>)> =
        if oci::is_index_media_type(&descriptor.media_type) {
            budget.admit(&descriptor, &src.locate(&descriptor))?;
            let idx: Index = parse_document(src, &descriptor, &src.manifest(&descriptor).await?)?;
            let m = match platform {
                None => idx.manifests.clone(),
                Some(p) => vec![oci::select_platform(&idx, p).cloned().ok_or_else(|| {
                    bad_input(format!(
                        "{} has no {p} image (it offers: {})",
                        src.locate(&descriptor),
                        oci::offered_platforms(&idx).join(", ")
                    ))
                })?],
            };
            index = Some(idx);
            m.into_iter().map(|d| (d, Vec::new())).collect()
        } else {
            VecDeque::from([(descriptor.clone(), Vec::new())])
        };
    let mut walked: HashSet<Digest> = HashSet::new();
    // Each distinct manifest (and its config) is read once: an index may
    // list one manifest under several entries.
    let mut read: HashMap<Digest, (Manifest, ImageConfig)> = HashMap::new();
    while let Some((d, nested_in)) = pending.pop_front() {
        if oci::is_index_media_type(&d.media_type) {
            if !walked.insert(d.digest.clone()) {
                continue;
            }
            budget.admit(&d, &src.locate(&d))?;
            let nested: Index = parse_document(src, &d, &src.manifest(&d).await?)?;
            // This index is at depth `nested_in.len() + 1` (the root at 0);
            // its entries, one deeper, must be within MAX_DEPTH, as for the
            // graph walker.
            if !nested.manifests.is_empty() && nested_in.len() + 2 > crate::image::MAX_DEPTH {
                return Err(bad_input(format!(
                    "{}: indexes nested too deep",
                    src.locate(&d)
                )));
            }
            let mut path = nested_in;
            path.push(d.digest.clone());
            for child in nested.manifests.into_iter().rev() {
                pending.push_front((child, path.clone()));
            }
            continue;
        }
        if !oci::is_manifest_media_type(&d.media_type) {
            continue;
        }
        let (manifest, config) = match read.get(&d.digest) {
            Some(known) => known.clone(),
            None => {
                let known = read_image(src, &d, &mut budget).await?;
                read.insert(d.digest.clone(), known.clone());
                known
            }
        };
        // A single image is shown for --platform only when it is of it.
        if let Some(p) = platform.filter(|p| index.is_none() && !p.matches(&config.platform)) {
            return Err(bad_input(format!(
                "{} is a single {} image, not {p}",
                src.locate(&descriptor),
                config.platform
            )));
        }
        let platform = config.platform.to_string();
        images.push(ImageInfo {
            platform,
            manifest_digest: d.digest.clone(),
            nested_in,
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

/// The image manifest `d` of `src` and its config, parsed, each admitted
/// to `budget` first.
async fn read_image(
    src: &dyn ImageSource,
    d: &Descriptor,
    budget: &mut Budget,
) -> Result<(Manifest, ImageConfig)> {
    budget.admit(d, &src.locate(d))?;
    let manifest: Manifest = parse_document(src, d, &src.manifest(d).await?)?;
    budget.admit(&manifest.config, &src.locate(d))?;
    let config: ImageConfig = parse_document(
        src,
        &manifest.config,
        &read_config(src, &manifest.config, &src.locate(d)).await?,
    )?;
    Ok((manifest, config))
}

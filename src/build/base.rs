//! The image a recipe starts from, for one platform: nothing (`scratch`), an
//! image in an OCI layout on disk, or a registry image (with fallbacks).
//! Its layers are put into the layout being written (each handed to the
//! build's layer hook, like the recipe's layers) and its config is returned
//! for the recipe's config to be applied on top.
//!
//! Registry bases go through [`RegistryBase`] (resolution with fallback,
//! layers through the blob cache); this file is its only user in the build.

use std::sync::Arc;

use anyhow::{anyhow, Context, Result};

use crate::cache::BlobCache;
use crate::error::bad_input;
use crate::image::layout::{Layout, LayoutWriter};
use crate::image::remote::{RegistryBase, ServedReport};
use crate::oci::{self, Descriptor, Digest, ImageConfig, Index, Manifest, Platform};
use crate::recipe::Base;
use crate::registry::{CredentialStore, Reference};

use super::BuildOptions;

/// A base image resolved for one platform: its layers and config.
pub(super) struct BaseImage {
    /// `org.opencontainers.image.base.name`: the recipe's text for a layout,
    /// the reference that served for a registry base.
    pub name: String,
    pub served: Option<ServedReport>,
    pub manifest_digest: Digest,
    /// Layer descriptors with their diff IDs.
    pub layers: Vec<(Descriptor, Digest)>,
    pub config: ImageConfig,
}

/// The client for a registry base: the caller's ([`BuildOptions::registry_base`])
/// or one with defaults. `None` unless the base is a registry image.
///
/// Blocking: a [`RegistryBase`] runs its own requests to completion.
pub(super) fn registry_client(
    base: &Base,
    opts: &BuildOptions,
) -> Result<Option<Arc<RegistryBase>>> {
    match (base, &opts.registry_base) {
        (Base::Registry { .. }, Some(r)) => Ok(Some(r.clone())),
        (Base::Registry { .. }, None) => Ok(Some(Arc::new(RegistryBase::new(
            Default::default(),
            CredentialStore::from_env(),
            BlobCache::new(None)?,
            opts.reporter.clone(),
        )?))),
        _ => Ok(None),
    }
}

/// The repository that serves a registry base (resolved now, remembered for
/// the build): a push mounts the base's layers from there. `None` for other
/// bases.
///
/// Blocking, like [`registry_client`].
pub(super) fn mount_source(
    base: &Base,
    registry: Option<&RegistryBase>,
) -> Result<Option<Reference>> {
    match (base, registry) {
        (
            Base::Registry {
                reference,
                fallback,
            },
            Some(rb),
        ) => Ok(Some(rb.resolve(reference, fallback)?.reference)),
        _ => Ok(None),
    }
}

/// The base of `platform`, its layers put into `writer`.
pub(super) fn resolve(
    base: &Base,
    platform: &Platform,
    writer: &LayoutWriter,
    opts: &BuildOptions,
    registry: Option<&RegistryBase>,
) -> Result<Option<BaseImage>> {
    match base {
        Base::Scratch => Ok(None),
        Base::Oci { dir, name, display } => {
            from_layout(dir, name.as_deref(), display, platform, writer, opts).map(Some)
        }
        Base::Registry {
            reference,
            fallback,
        } => {
            let registry = registry.ok_or_else(|| anyhow!("no registry client for the base"))?;
            from_registry(registry, reference, fallback, platform, writer, opts).map(Some)
        }
    }
}

/// A base in an OCI layout: its image for `platform` (from an index, the
/// entry whose platform matches), every layer checked against its digest
/// while copied.
fn from_layout(
    dir: &std::path::Path,
    name: Option<&str>,
    display: &str,
    platform: &Platform,
    writer: &LayoutWriter,
    opts: &BuildOptions,
) -> Result<BaseImage> {
    let layout = Layout::open(dir).with_context(|| format!("opening base {display}"))?;
    let top = layout
        .resolve(name)
        .with_context(|| format!("base {display}"))?;
    let manifest_desc = if oci::is_index_media_type(&top.media_type) {
        let index: Index = layout.read_json(&top)?;
        let found = index
            .manifests
            .iter()
            .find(|d| d.platform.as_ref().is_some_and(|p| platform.matches(p)));
        match found {
            Some(d) => d.clone(),
            None => {
                let have: Vec<String> = index
                    .manifests
                    .iter()
                    .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
                    .collect();
                return Err(bad_input(format!(
                    "base {display} has no image for platform {platform} (it has: {})",
                    have.join(", ")
                )));
            }
        }
    } else {
        top
    };
    let manifest: Manifest = layout.read_json(&manifest_desc)?;
    let config: ImageConfig = layout.read_json(&manifest.config)?;
    if config.os != platform.os || config.architecture != platform.architecture {
        return Err(bad_input(format!(
            "base {display} is for {}/{}, but the recipe builds {platform}",
            config.os, config.architecture
        )));
    }
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(anyhow!(
            "base {display}: its config lists {} diff IDs for {} layers",
            config.rootfs.diff_ids.len(),
            manifest.layers.len()
        ));
    }
    for l in &manifest.layers {
        let src = layout.blob_path(&l.digest);
        writer
            .import_verified_blob(&src, l)
            .with_context(|| format!("copying base layer {} from {display}", l.digest))?;
        if let Some(hook) = &opts.on_layer {
            hook(l, &writer.blob_path(&l.digest));
        }
    }
    let layers = manifest
        .layers
        .iter()
        .cloned()
        .zip(config.rootfs.diff_ids.iter().cloned())
        .collect();
    Ok(BaseImage {
        name: display.to_string(),
        served: None,
        manifest_digest: manifest_desc.digest,
        layers,
        config,
    })
}

/// A registry base for `platform`: resolved on the first registry that
/// answers, its layers downloaded through the blob cache (digest-checked)
/// and linked into the layout being written.
fn from_registry(
    registry: &RegistryBase,
    reference: &str,
    fallback: &[String],
    platform: &Platform,
    writer: &LayoutWriter,
    opts: &BuildOptions,
) -> Result<BaseImage> {
    let parts = registry.image(reference, fallback, platform)?;
    let what = parts.served.reference.to_string();
    for (l, path) in &parts.layers {
        writer
            .import_blob(path, &l.digest)
            .with_context(|| format!("copying base layer {} of {what}", l.digest))?;
        if let Some(hook) = &opts.on_layer {
            hook(l, &writer.blob_path(&l.digest));
        }
    }
    let layers = parts
        .layers
        .iter()
        .map(|(d, _)| d.clone())
        .zip(parts.image.config.rootfs.diff_ids.iter().cloned())
        .collect();
    Ok(BaseImage {
        name: what,
        served: Some(parts.served.report()),
        manifest_digest: parts.image.descriptor.digest.clone(),
        layers,
        config: parts.image.config,
    })
}

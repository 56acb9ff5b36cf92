//! The image a recipe starts from, for one platform: nothing (`scratch`), an
//! image in an OCI layout on disk, or a registry image (with fallbacks).
//! Both kinds are read the same way, as an [`ImageSource`] (the layout's
//! files through its guarded reader, the registry's blobs through the blob
//! cache), with the one platform rule of [`oci::select_platform`]. The
//! base's layers are put into the layout being written (each handed to the
//! build's layer hook, like the recipe's layers) and its config is returned
//! for the recipe's config to be applied on top.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Wake};

use anyhow::{anyhow, Context, Result};
use futures_util::stream::{self, StreamExt as _, TryStreamExt as _};

use crate::cache::BlobCache;
use crate::error::bad_input;
use crate::image::layout::{LayoutImage, LayoutWriter};
use crate::image::remote::{
    oci_layer_media_type, select, RegistryBase, RegistryImage, ServedReport,
};
use crate::image::{check_diff_ids, parse_document, read_config, ImageSource};
use crate::oci::{self, Descriptor, Digest, ImageConfig, Index, Manifest, Platform};
use crate::recipe::Base;
use crate::registry::{CredentialStore, Reference};

use super::BuildOptions;

/// How many layers of a layout base are read at a time.
const LAYOUT_JOBS: usize = 4;

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
    /// The layers were left in the registry, not put into the layout
    /// ([`BuildOptions::throwaway`]).
    pub remote_layers: bool,
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

/// A registry base resolved now (and remembered for the build): the
/// repository that serves it, from which a push mounts its layers, and the
/// base as a source of its blobs. `None` for other bases.
///
/// Blocking, like [`registry_client`].
pub(super) fn served(
    base: &Base,
    registry: Option<&RegistryBase>,
) -> Result<Option<(Reference, RegistryImage)>> {
    match (base, registry) {
        (
            Base::Registry {
                reference,
                fallback,
            },
            Some(rb),
        ) => {
            let served = rb.resolve(reference, fallback)?;
            Ok(Some((served.reference.clone(), rb.source(&served))))
        }
        _ => Ok(None),
    }
}

/// A base opened as a source of its blobs, with what names it.
struct Opened<'a> {
    src: Box<dyn ImageSource + 'a>,
    /// The recipe's text for a layout; the reference that served.
    name: String,
    served: Option<ServedReport>,
    /// The client whose runtime runs a registry base's requests.
    registry: Option<&'a RegistryBase>,
}

impl Opened<'_> {
    fn what(&self) -> String {
        format!("base {}", self.name)
    }

    /// Run `f`: on the registry client's runtime, or here for a layout.
    fn block_on<F: Future>(&self, f: F) -> F::Output {
        match self.registry {
            Some(rb) => rb.block_on(f),
            None => block_here(f),
        }
    }
}

/// `base` opened (a registry base resolved now, with its fallbacks);
/// `None` for `scratch`. A registry base needs `registry`.
fn open<'a>(base: &Base, registry: Option<&'a RegistryBase>) -> Result<Option<Opened<'a>>> {
    Ok(Some(match base {
        Base::Scratch => return Ok(None),
        Base::Oci { dir, name, display } => Opened {
            src: Box::new(
                LayoutImage::open(dir, name.as_deref())
                    .with_context(|| format!("opening base {display}"))?,
            ),
            name: display.to_string(),
            served: None,
            registry: None,
        },
        Base::Registry {
            reference,
            fallback,
        } => {
            let rb = registry.ok_or_else(|| anyhow!("no registry client for the base"))?;
            let served = rb.resolve(reference, fallback)?;
            Opened {
                src: Box::new(rb.source(&served)),
                name: served.reference.to_string(),
                served: Some(served.report()),
                registry: Some(rb),
            }
        }
    }))
}

/// The base of `platform`, its layers put into `writer` (a registry base's
/// left in the registry for a [`BuildOptions::throwaway`] build).
pub(super) fn resolve(
    base: &Base,
    platform: &Platform,
    writer: &LayoutWriter,
    opts: &BuildOptions,
    registry: Option<&RegistryBase>,
) -> Result<Option<BaseImage>> {
    let Some(b) = open(base, registry)? else {
        return Ok(None);
    };
    let to = Target {
        platform,
        writer,
        opts,
    };
    let (jobs, leave) = match b.registry {
        Some(rb) => (rb.jobs(), opts.throwaway),
        None => (LAYOUT_JOBS, false),
    };
    let (manifest_digest, layers, config) =
        b.block_on(import(&*b.src, &b.what(), &to, jobs, leave))?;
    Ok(Some(BaseImage {
        name: b.name,
        served: b.served,
        manifest_digest,
        layers,
        config,
        remote_layers: leave,
    }))
}

/// The config of `base` for `platform` (`None` for `scratch`), read when a
/// recipe is planned. Blocking, like [`registry_client`]; a registry base
/// needs `registry`.
pub(crate) fn base_config(
    base: &Base,
    platform: &Platform,
    registry: Option<&RegistryBase>,
) -> Result<Option<ImageConfig>> {
    let Some(b) = open(base, registry)? else {
        return Ok(None);
    };
    let (_, _, config) = b.block_on(platform_image(&*b.src, &b.what(), platform))?;
    Ok(Some(config))
}

/// Where a base's layers go.
struct Target<'a> {
    platform: &'a Platform,
    writer: &'a LayoutWriter,
    opts: &'a BuildOptions,
}

/// The image of `src` for the target's platform (from an index, by the one
/// selection rule), checked against the platform, its layers (each
/// digest-checked by the source) put into the layout being written, or
/// with `leave_layers` not read at all (only their descriptors are used).
/// Returns the manifest's digest, the layers with their diff IDs, and the
/// config.
async fn import(
    src: &dyn ImageSource,
    what: &str,
    to: &Target<'_>,
    jobs: usize,
    leave_layers: bool,
) -> Result<(Digest, Vec<(Descriptor, Digest)>, ImageConfig)> {
    let (manifest_desc, manifest, config) = platform_image(src, what, to.platform).await?;
    let oci_layer = |l: &Descriptor| {
        let mut d = l.clone();
        d.media_type = oci_layer_media_type(&d.media_type).to_string();
        d
    };
    if leave_layers {
        let layers = manifest.layers.iter().map(oci_layer);
        let layers = layers.zip(config.rootfs.diff_ids.iter().cloned()).collect();
        return Ok((manifest_desc.digest, layers, config));
    }
    let paths: Vec<_> = stream::iter(&manifest.layers)
        .map(|l| src.blob(l))
        .buffered(jobs.max(1))
        .try_collect()
        .await
        .with_context(|| format!("reading the layers of {what}"))?;
    let mut layers = Vec::new();
    for ((l, path), diff_id) in manifest
        .layers
        .iter()
        .zip(paths)
        .zip(&config.rootfs.diff_ids)
    {
        let d = oci_layer(l);
        to.writer
            .import_descriptor(&path, &d)
            .with_context(|| format!("copying base layer {} of {what}", d.digest))?;
        if let Some(hook) = &to.opts.on_layer {
            hook(&d, &to.writer.blob_path(&d.digest));
        }
        layers.push((d, diff_id.clone()));
    }
    Ok((manifest_desc.digest, layers, config))
}

/// The image of `src` for `platform` (from an index, by the one selection
/// rule): its manifest's descriptor, the manifest and the config, checked
/// against the platform.
async fn platform_image(
    src: &dyn ImageSource,
    what: &str,
    platform: &Platform,
) -> Result<(Descriptor, Manifest, ImageConfig)> {
    let root = src.root().clone();
    let top = src
        .manifest(&root)
        .await
        .with_context(|| what.to_string())?;
    let shape: serde_json::Value = parse_document(src, &root, &top)?;
    let is_index = oci::is_index_media_type(&root.media_type) || shape.get("manifests").is_some();
    let (manifest_desc, manifest): (Descriptor, Manifest) = if is_index {
        let index: Index = parse_document(src, &root, &top)?;
        let d = select(&index, platform, what)?;
        let bytes = src.manifest(&d).await.with_context(|| what.to_string())?;
        let m = parse_document(src, &d, &bytes)?;
        (d, m)
    } else {
        let m = parse_document(src, &root, &top)?;
        (root, m)
    };
    if let Some((n, l)) =
        (manifest.layers.iter().enumerate()).find(|(_, l)| !oci::is_layer_media_type(&l.media_type))
    {
        return Err(bad_input(format!(
            "{what}: its layer {} ({}) has media type {:?}, which is not a layer's \
             (tar, tar+gzip or tar+zstd); use another base",
            n + 1,
            l.digest,
            l.media_type
        )));
    }
    let config_bytes = read_config(src, &manifest.config, what).await?;
    let config: ImageConfig = parse_document(src, &manifest.config, &config_bytes)?;
    if config.platform.os != platform.os || config.platform.architecture != platform.architecture {
        return Err(bad_input(format!(
            "{what} is for {}/{}, but the recipe builds {platform}",
            config.platform.os, config.platform.architecture
        )));
    }
    check_diff_ids(what, &manifest, &config)?;
    check_history(what, &manifest, &config)?;
    Ok((manifest_desc, manifest, config))
}

/// Refuse a base whose history describes more layers (entries without
/// `empty_layer`) than it has: the built image's history would not match
/// its layers, and buildah refuses to build on such an image. One that
/// describes fewer (none, often) is filled in by the build's config.
fn check_history(what: &str, manifest: &oci::Manifest, config: &ImageConfig) -> Result<()> {
    let (described, layers) = (config.described_layers(), manifest.layers.len());
    if described <= layers {
        return Ok(());
    }
    Err(bad_input(format!(
        "{what}: its config's history describes {described} layers (entries without \
         empty_layer) but its manifest has {layers}; a history entry describes one layer \
         or is marked empty_layer: use another base"
    )))
}

/// Run `f` on this thread. A layout's reads are file reads, which need no
/// async runtime (the build may run outside one).
fn block_here<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = TaskContext::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

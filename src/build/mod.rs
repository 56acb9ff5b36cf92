//! Plan -> layers (built in parallel) -> config -> manifest (-> index for
//! several platforms) -> OCI layout: [`build_image`] returns what it wrote,
//! ready to push without reading the layout back.
//!
//! `base` brings in the image a recipe starts from, `config` makes each
//! platform's image config, and [`publish`] runs a build while pushing its
//! layers as they are finished.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use serde::Serialize;

use crate::image::layout::guard::MAX_DOCUMENT;
use crate::image::layout::{blob_path, LayoutWriter};
use crate::image::remote::{RegistryBase, ServedReport};
use crate::image::MemoryImage;
use crate::layer::{self, BuiltLayer, Compression};
use crate::oci::{self, canonical_json, Descriptor, Digest, Index, Manifest};
use crate::progress::{Level, SharedReporter};
use crate::recipe::{LayerPlan, Plan};

pub mod archive;
mod base;
pub mod cache;
pub mod check;
mod config;
pub mod publish;
mod stream;

pub(crate) use base::base_config;
use base::BaseImage;
use cache::LayerCache;

/// How to build.
#[derive(Clone)]
pub struct BuildOptions {
    /// The OCI layout directory to write (replaced when it exists).
    pub output: PathBuf,
    /// Threads for compression and parallel layers (at least 1).
    pub jobs: usize,
    pub compression: Compression,
    pub reporter: SharedReporter,
    /// Called with each layer blob as soon as it is in the layout being
    /// written (recipe layers when finished, base layers when imported), from
    /// the build's worker threads. [`publish::build_and_push`] hands these to
    /// the pusher so uploads start while other layers still compress. The path is inside
    /// a temporary directory that [`build`] renames when it commits: a
    /// receiver that reads it later must link or copy it first. Keep the
    /// callback quick (send on a channel); `None` costs nothing.
    pub on_layer: Option<LayerHook>,
    /// Called from the build's worker threads when a recipe layer starts
    /// to be written (not for a layer taken from the layer cache, nor a
    /// base layer): the [`LayerStream`] it returns is handed the layer's
    /// compressed bytes as they are produced, then told how the layer
    /// ended, before [`BuildOptions::on_layer`] hears of it.
    /// [`publish::build_and_push`] streams them to the registries. Keep it
    /// quick; `None` costs nothing.
    pub on_layer_start: Option<LayerStartHook>,
    /// How a registry base (`base = "REGISTRY/REPO:TAG"`) is reached: client
    /// settings, credentials and blob cache. `None`: defaults (the default
    /// cache, HTTPS except for loopback hosts). [`publish::build_and_push`]
    /// resolves it before the build starts, to mount the base's layers from
    /// the registry that served it.
    pub registry_base: Option<Arc<RegistryBase>>,
    /// The layout is thrown away once pushed (`build --push` without a
    /// layout): a registry base's layers are left out of it, never
    /// downloaded (the push mounts them, or fetches them once for another
    /// registry), and it is not announced as written.
    pub throwaway: bool,
    /// Log `wrote DIR (DIGEST)` once the layout is written. Off when the
    /// layout is only what something else is made from (an archive, which
    /// is announced under its own name).
    pub announce: bool,
    /// Where layers whose inputs are unchanged are taken from instead of
    /// being built again (`None`: every layer is built).
    pub layer_cache: Option<Arc<LayerCache>>,
}

impl BuildOptions {
    /// Build into `output` with the defaults: one thread per CPU, gzip at
    /// level 1, no output, no hooks, the default registry client for a
    /// registry base, no layer cache. Change fields as needed:
    /// `BuildOptions { jobs: 2, ..BuildOptions::new(dir) }`.
    pub fn new(output: impl Into<PathBuf>) -> BuildOptions {
        BuildOptions {
            output: output.into(),
            jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            compression: Compression::default(),
            reporter: crate::progress::silent(),
            on_layer: None,
            on_layer_start: None,
            registry_base: None,
            throwaway: false,
            announce: true,
            layer_cache: None,
        }
    }
}

/// See [`BuildOptions::on_layer`].
pub type LayerHook = Arc<dyn Fn(&Descriptor, &Path) + Send + Sync>;

/// See [`BuildOptions::on_layer_start`]; `None`: nothing to stream.
pub type LayerStartHook = Arc<dyn Fn(&LayerPlan) -> Option<Box<dyn LayerStream>> + Send + Sync>;

/// Where one layer's compressed bytes go as they are produced.
pub trait LayerStream: Send {
    /// The next bytes of the blob.
    fn write(&mut self, bytes: &[u8]);
    /// The layer is done: `Some` with its blob when it was written whole,
    /// `None` when its build failed.
    fn finish(self: Box<Self>, blob: Option<&Descriptor>);
}

fn is_empty_path(p: &Path) -> bool {
    p.as_os_str().is_empty()
}

/// What a build produced.
#[derive(Debug, Clone, Serialize)]
pub struct BuildResult {
    /// The image digest: the index's when there are several platforms.
    pub digest: Digest,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub size: u64,
    /// Empty (and left out of the JSON) when no layout was kept.
    #[serde(skip_serializing_if = "is_empty_path")]
    pub layout: PathBuf,
    pub tags: Vec<String>,
    pub images: Vec<ImageResult>,
    pub timings: Timings,
    /// For a registry base: the reference that served it, and those skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<ServedReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageResult {
    pub platform: String,
    pub manifest: Descriptor,
    pub config: Descriptor,
    pub layers: Vec<LayerResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LayerResult {
    #[serde(flatten)]
    pub descriptor: Descriptor,
    #[serde(rename = "diffID")]
    pub diff_id: Digest,
    /// Where the layer comes from: a recipe layer's name, or `base`.
    pub source: String,
    /// Whether the layer was taken from the layer cache (never for a base layer).
    pub cached: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Timings {
    pub total_ms: u128,
    pub layers_ms: Vec<u128>,
}

/// What [`build_image`] produced: the report, and the image as a push
/// takes it (no need to read the layout back).
#[derive(Debug, Clone)]
pub struct BuiltImage {
    pub result: BuildResult,
    /// The root descriptor, the manifests' exact bytes (children before the
    /// index) and the config and layer blobs as files of the committed layout.
    pub content: MemoryImage,
}

/// Build `plan` into an OCI layout.
pub fn build(plan: &Plan, opts: &BuildOptions) -> Result<BuildResult> {
    build_image(plan, opts).map(|b| b.result)
}

/// Build `plan` into an OCI layout, and say what is in it.
pub fn build_image(plan: &Plan, opts: &BuildOptions) -> Result<BuiltImage> {
    let started = Instant::now();
    opts.compression.check()?;
    let writer = LayoutWriter::create(&opts.output)?;
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(opts.jobs)
            .thread_name(|i| format!("compress-{i}"))
            .build()
            .context("starting the compression threads")?,
    );

    let registry = base::registry_client(&plan.base, opts)?;
    let bases: Vec<Option<BaseImage>> = plan
        .platforms
        .iter()
        .map(|p| base::resolve(&plan.base, &p.platform, &writer, opts, registry.as_deref()))
        .collect::<Result<_>>()
        .map_err(|e| writer.explain(e))?;

    // Each distinct layer plan is built once, even when several platforms share it.
    let mut unique: Vec<Arc<LayerPlan>> = Vec::new();
    for p in &plan.platforms {
        for l in &p.layers {
            if !unique.iter().any(|u| Arc::ptr_eq(u, l)) {
                unique.push(l.clone());
            }
        }
    }
    let labels: Vec<String> = unique.iter().map(|l| layer_label(plan, l)).collect();
    let (built, layers_ms) = LayerJobs {
        mtime: plan.created as u64,
        opts,
        pool: &pool,
        writer: &writer,
    }
    .build(&unique, &labels)
    .map_err(|e| writer.explain(e))?;
    if let Some(c) = &opts.layer_cache {
        if let Err(e) = c.finish() {
            opts.reporter.log(
                Level::Warn,
                &format!("layer cache {}: {e:#}", c.dir().display()),
            );
        }
    }
    let built_for = |l: &Arc<LayerPlan>| -> Result<&(BuiltLayer, bool)> {
        unique
            .iter()
            .position(|u| Arc::ptr_eq(u, l))
            .map(|i| &built[i])
            .ok_or_else(|| anyhow!("layer {:?} was not built", l.name))
    };

    let created = oci::rfc3339(plan.created);
    let mut images = Vec::new();
    let mut manifests = Vec::new();
    for (p, base) in plan.platforms.iter().zip(&bases) {
        let recipe_built: Vec<&(BuiltLayer, bool)> =
            p.layers.iter().map(built_for).collect::<Result<_>>()?;
        let recipe_layers: Vec<&BuiltLayer> = recipe_built.iter().map(|(l, _)| l).collect();
        let config = config::image_config(plan, p, base.as_ref(), &recipe_layers, &created);
        let config_desc = writer
            .write_blob(
                oci::MEDIA_TYPE_CONFIG,
                &document(&p.platform, "config", &config)?,
            )
            .map_err(|e| writer.explain(e))?;
        let mut layers = Vec::new();
        for (d, diff) in base.iter().flat_map(|b| &b.layers) {
            layers.push(LayerResult {
                descriptor: d.clone(),
                diff_id: diff.clone(),
                source: "base".into(),
                cached: false,
            });
        }
        for (plan_layer, (l, cached)) in p.layers.iter().zip(recipe_built) {
            layers.push(LayerResult {
                descriptor: l.descriptor.clone(),
                diff_id: l.diff_id.clone(),
                source: plan_layer.name.clone(),
                cached: *cached,
            });
        }
        if layers.len() > MAX_DOCKER_LAYERS {
            opts.reporter.log(
                Level::Warn,
                &format!(
                    "the {} image has {} layers; Docker refuses to run an image of more than \
                     {MAX_DOCKER_LAYERS} (max depth exceeded): set max_layers on a Python layer, \
                     or join layers",
                    p.platform,
                    layers.len()
                ),
            );
        }
        let mut annotations = p.annotations.clone();
        if let Some(b) = base {
            annotations.insert(oci::ANNOTATION_BASE_NAME.into(), b.name.clone());
            annotations.insert(
                oci::ANNOTATION_BASE_DIGEST.into(),
                b.manifest_digest.to_string(),
            );
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(oci::MEDIA_TYPE_MANIFEST.into()),
            artifact_type: None,
            config: config_desc.clone(),
            layers: layers.iter().map(|l| l.descriptor.clone()).collect(),
            subject: None,
            annotations,
        };
        let bytes = document(&p.platform, "manifest", &manifest)?;
        let mut manifest_desc = writer
            .write_blob(oci::MEDIA_TYPE_MANIFEST, &bytes)
            .map_err(|e| writer.explain(e))?;
        manifest_desc.platform = Some(p.platform.clone());
        manifests.push((manifest_desc.clone(), Bytes::from(bytes)));
        images.push(ImageResult {
            platform: p.platform.to_string(),
            manifest: manifest_desc,
            config: config_desc,
            layers,
        });
    }

    let top = if images.len() == 1 {
        images[0].manifest.clone()
    } else {
        let mut index = Index::new(images.iter().map(|i| i.manifest.clone()).collect());
        index.manifests.sort_by(|a, b| a.platform.cmp(&b.platform));
        index.annotations = plan.platforms[0].annotations.clone();
        // A push puts children first, in the index's order.
        manifests.sort_by(|(a, _), (b, _)| a.platform.cmp(&b.platform));
        let bytes = canonical_json(&index);
        if bytes.len() as u64 > MAX_DOCUMENT {
            return Err(too_large("the image index", bytes.len()));
        }
        let desc = writer
            .write_blob(oci::MEDIA_TYPE_INDEX, &bytes)
            .map_err(|e| writer.explain(e))?;
        manifests.push((desc.clone(), Bytes::from(bytes)));
        desc
    };
    let refs = plan
        .tags
        .iter()
        .map(|t| {
            let mut d = top.clone();
            d.annotations
                .insert(oci::ANNOTATION_REF_NAME.into(), t.clone());
            d
        })
        .collect();
    let layout = writer.commit(refs)?;
    if opts.announce && !opts.throwaway {
        opts.reporter.log(
            Level::Info,
            &format!("wrote {} ({})", layout.display(), top.digest),
        );
    }
    let remote: Vec<&Digest> = bases
        .iter()
        .flatten()
        .filter(|b| b.remote_layers)
        .flat_map(|b| b.layers.iter().map(|(d, _)| &d.digest))
        .collect();
    let content = content(&layout, top.clone(), manifests, &images, &remote);
    let result = BuildResult {
        digest: top.digest.clone(),
        media_type: top.media_type.clone(),
        size: top.size,
        layout,
        tags: plan.tags.clone(),
        images,
        timings: Timings {
            total_ms: started.elapsed().as_millis(),
            layers_ms,
        },
        base: bases.iter().flatten().find_map(|b| b.served.clone()),
    };
    Ok(BuiltImage { result, content })
}

/// The most layers Docker's layer store stacks (its maximum depth); podman
/// takes more. An image past it is built, with a warning.
const MAX_DOCKER_LAYERS: usize = 125;

/// `doc` (the config or manifest of `platform`'s image) in canonical JSON,
/// refused when it is larger than registries and boxwright's own readers
/// take a document: the build would write what it cannot push.
fn document(platform: &oci::Platform, what: &str, doc: &impl Serialize) -> Result<Vec<u8>> {
    let bytes = canonical_json(doc);
    if bytes.len() as u64 > MAX_DOCUMENT {
        return Err(too_large(&format!("the {what} of {platform}"), bytes.len()));
    }
    Ok(bytes)
}

/// Bad input: `what` would be `n` bytes, past [`MAX_DOCUMENT`].
fn too_large(what: &str, n: usize) -> anyhow::Error {
    crate::error::bad_input(format!(
        "{what} would be {n} bytes, more than the {} MiB registries take in a document; \
         use fewer layers, platforms or annotations, or shorter [config] values",
        MAX_DOCUMENT >> 20
    ))
}

/// The image as a push takes it: the manifests' bytes, and each blob at
/// its path in the committed `layout` (but for the base layers `remote`
/// left in their registry).
fn content(
    layout: &Path,
    root: Descriptor,
    manifests: Vec<(Descriptor, Bytes)>,
    images: &[ImageResult],
    remote: &[&Digest],
) -> MemoryImage {
    let mut image = MemoryImage::new(root);
    for (_, bytes) in manifests {
        image.add_manifest(bytes);
    }
    for i in images {
        let descriptors = std::iter::once(&i.config).chain(i.layers.iter().map(|l| &l.descriptor));
        for d in descriptors.filter(|d| !remote.contains(&&d.digest)) {
            image.add_blob(d.digest.clone(), blob_path(layout, &d.digest));
        }
    }
    image
}

/// A layer's name in progress lines, with the platforms it is built for
/// when not all of the recipe's share it: `tools (linux/arm64)`.
fn layer_label(plan: &Plan, layer: &Arc<LayerPlan>) -> String {
    let users: Vec<String> = plan
        .platforms
        .iter()
        .filter(|p| p.layers.iter().any(|l| Arc::ptr_eq(l, layer)))
        .map(|p| p.platform.to_string())
        .collect();
    if users.len() == plan.platforms.len() {
        layer.name.clone()
    } else {
        format!("{} ({})", layer.name, users.join(", "))
    }
}

/// A layer as built, and whether it came from the layer cache.
type Built = (BuiltLayer, bool);

/// What every layer of one image is built with: the time in its headers,
/// the options, the compression pool and the layout being written.
struct LayerJobs<'a> {
    mtime: u64,
    opts: &'a BuildOptions,
    pool: &'a Arc<rayon::ThreadPool>,
    writer: &'a LayoutWriter,
}

impl LayerJobs<'_> {
    /// Build the layers, up to `jobs` at a time, sharing one compression pool;
    /// `labels[i]` names layer `i` in progress lines.
    fn build(
        &self,
        layers: &[Arc<LayerPlan>],
        labels: &[String],
    ) -> Result<(Vec<Built>, Vec<u128>)> {
        let (opts, writer) = (self.opts, self.writer);
        let next = AtomicUsize::new(0);
        type Slot = Option<(Result<Built>, Duration)>;
        let results: Mutex<Vec<Slot>> = Mutex::new((0..layers.len()).map(|_| None).collect());
        let workers = opts.jobs.min(layers.len()).max(1);
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let (Some(plan), Some(label)) = (layers.get(i), labels.get(i)) else {
                        break;
                    };
                    let id = format!("layer-{i}");
                    let reporter = &opts.reporter;
                    reporter.start(&id, label, Some(plan.content_size()));
                    let t = Instant::now();
                    let result = self
                        .one(plan, &mut |n| reporter.advance(&id, n))
                        .with_context(|| format!("building layer {:?}", plan.name));
                    if let (Ok((l, _)), Some(hook)) = (&result, &opts.on_layer) {
                        hook(&l.descriptor, &writer.blob_path(&l.descriptor.digest));
                    }
                    match &result {
                        Ok((l, cached)) => reporter.finish(
                            &id,
                            &format!(
                                "{label}: {} ({} bytes{})",
                                l.descriptor.digest,
                                l.descriptor.size,
                                if *cached { ", cached" } else { "" }
                            ),
                        ),
                        Err(_) => reporter.finish(&id, &format!("{label}: failed")),
                    }
                    let failed = result.is_err();
                    results.lock().expect("no panics while holding the lock")[i] =
                        Some((result, t.elapsed()));
                    if failed {
                        // Let the other workers stop picking new layers.
                        next.store(layers.len(), Ordering::SeqCst);
                    }
                });
            }
        });
        let mut built = Vec::new();
        let mut times = Vec::new();
        for r in results.into_inner().expect("workers are done") {
            let (r, t) =
                r.ok_or_else(|| anyhow!("a layer was not built because another one failed"))?;
            built.push(r?);
            times.push(t.as_millis());
        }
        Ok((built, times))
    }

    /// One layer: from the layer cache when its key has an entry, else built
    /// (and stored in the cache when its inputs did not change meanwhile).
    /// The flag says whether it came from the cache.
    fn one(&self, plan: &LayerPlan, on_bytes: &mut dyn FnMut(u64)) -> Result<(BuiltLayer, bool)> {
        let (mtime, opts, pool, writer) = (self.mtime, self.opts, self.pool, self.writer);
        let Some(cache) = &opts.layer_cache else {
            let l = self.write(plan, on_bytes)?;
            return Ok((l, false));
        };
        let settings = cache::key::settings(mtime, opts.compression);
        let key = cache.key(plan, &settings, pool)?;
        if let Some(l) = cache.get(&key, writer)? {
            on_bytes(plan.content_size());
            opts.reporter.log(
                Level::Debug,
                &format!("layer cache hit for {:?}: {}", plan.name, key.hex()),
            );
            return Ok((l, true));
        }
        let l = self.write(plan, on_bytes)?;
        // An input that changed while the layer was written must not be cached
        // under the key of what it was before.
        if cache.key_now(plan, &settings, pool)? != key {
            return Ok((l, false));
        }
        if let Err(e) = cache.put(&key, &l, &writer.blob_path(&l.descriptor.digest)) {
            opts.reporter.log(
                Level::Warn,
                &format!("layer cache {}: {e:#}", cache.dir().display()),
            );
        }
        Ok((l, false))
    }

    /// Write one layer, its compressed bytes handed to the stream
    /// [`BuildOptions::on_layer_start`] gives, if any.
    fn write(&self, plan: &LayerPlan, on_bytes: &mut dyn FnMut(u64)) -> Result<BuiltLayer> {
        let (opts, pool, writer) = (self.opts, self.pool, self.writer);
        let mut stream = opts.on_layer_start.as_ref().and_then(|start| start(plan));
        let streaming = stream.is_some();
        let mut copy = |b: &[u8]| {
            if let Some(s) = stream.as_mut() {
                s.write(b);
            }
        };
        let on_compressed = streaming.then_some(&mut copy as layer::OnCompressed);
        let built = layer::build_layer(
            plan,
            self.mtime,
            opts.compression,
            pool,
            writer,
            on_bytes,
            on_compressed,
        );
        if let Some(s) = stream {
            s.finish(built.as_ref().ok().map(|l| &l.descriptor));
        }
        built
    }
}

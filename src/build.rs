//! Plan -> layers (built in parallel) -> config -> manifest (-> index for
//! several platforms) -> OCI layout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use serde::Serialize;

use crate::error::bad_input;
use crate::image::remote::{RegistryBase, ServedReport};
use crate::layer::{self, BuiltLayer, Compression};
use crate::layout::{Layout, LayoutWriter};
use crate::oci::{
    self, canonical_json, Descriptor, Digest, History, ImageConfig, Index, Manifest, Platform,
    RootFs, RuntimeConfig,
};
use crate::progress::{Level, SharedReporter};
use crate::recipe::{Base, LayerPlan, Plan, PlatformPlan};

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
    /// the build's worker threads. `build --push` hands these to the pusher
    /// so uploads start while other layers still compress. The path is inside
    /// a temporary directory that [`build`] renames when it commits: a
    /// receiver that reads it later must link or copy it first. Keep the
    /// callback quick (send on a channel); `None` costs nothing.
    pub on_layer: Option<LayerHook>,
    /// How a registry base (`base = "REGISTRY/REPO:TAG"`) is reached: client
    /// settings, credentials and blob cache. `None`: defaults (the default
    /// cache, HTTPS except for loopback hosts). Built by the caller so that
    /// `build --push` can learn which registry served the base (to mount its
    /// layers) before the build starts.
    pub registry_base: Option<Arc<RegistryBase>>,
}

/// See [`BuildOptions::on_layer`].
pub type LayerHook = Arc<dyn Fn(&Descriptor, &Path) + Send + Sync>;

/// What a build produced.
#[derive(Debug, Clone, Serialize)]
pub struct BuildResult {
    /// The image digest: the index's when there are several platforms.
    pub digest: Digest,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub size: u64,
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
}

#[derive(Debug, Clone, Serialize)]
pub struct Timings {
    pub total_ms: u128,
    pub layers_ms: Vec<u128>,
}

/// A base image resolved for one platform: its layers and config.
struct BaseImage {
    /// `org.opencontainers.image.base.name`: the recipe's text for a layout,
    /// the reference that served for a registry base.
    name: String,
    served: Option<ServedReport>,
    manifest_digest: Digest,
    layers: Vec<(Descriptor, Digest)>,
    config: ImageConfig,
}

/// Build `plan` into an OCI layout.
pub fn build(plan: &Plan, opts: &BuildOptions) -> Result<BuildResult> {
    let started = Instant::now();
    let writer = LayoutWriter::create(&opts.output)?;
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(opts.jobs)
            .thread_name(|i| format!("compress-{i}"))
            .build()
            .context("starting the compression threads")?,
    );

    let registry_base = match (&plan.base, &opts.registry_base) {
        (Base::Registry { .. }, Some(r)) => Some(r.clone()),
        (Base::Registry { .. }, None) => Some(Arc::new(RegistryBase::new(
            Default::default(),
            crate::registry::CredentialStore::from_env(),
            crate::cache::BlobCache::new(None)?,
            opts.reporter.clone(),
        )?)),
        _ => None,
    };
    let bases: Vec<Option<BaseImage>> = plan
        .platforms
        .iter()
        .map(|p| {
            resolve_base(
                &plan.base,
                &p.platform,
                &writer,
                opts,
                registry_base.as_deref(),
            )
        })
        .collect::<Result<_>>()?;

    // Each distinct layer plan is built once, even when several platforms share it.
    let mut unique: Vec<Arc<LayerPlan>> = Vec::new();
    for p in &plan.platforms {
        for l in &p.layers {
            if !unique.iter().any(|u| Arc::ptr_eq(u, l)) {
                unique.push(l.clone());
            }
        }
    }
    let (built, layers_ms) = build_layers(&unique, plan.created as u64, opts, &pool, &writer)?;
    let built_for = |l: &Arc<LayerPlan>| -> &BuiltLayer {
        let i = unique
            .iter()
            .position(|u| Arc::ptr_eq(u, l))
            .expect("every layer was built");
        &built[i]
    };

    let created = oci::rfc3339(plan.created);
    let mut images = Vec::new();
    for (p, base) in plan.platforms.iter().zip(&bases) {
        let recipe_layers: Vec<&BuiltLayer> = p.layers.iter().map(built_for).collect();
        let config = image_config(plan, p, base.as_ref(), &recipe_layers, &created);
        let config_desc = writer.write_blob(oci::MEDIA_TYPE_CONFIG, &canonical_json(&config))?;
        let mut layers = Vec::new();
        for (d, diff) in base.iter().flat_map(|b| &b.layers) {
            layers.push(LayerResult {
                descriptor: d.clone(),
                diff_id: diff.clone(),
                source: "base".into(),
            });
        }
        for (plan_layer, l) in p.layers.iter().zip(&recipe_layers) {
            layers.push(LayerResult {
                descriptor: l.descriptor.clone(),
                diff_id: l.diff_id.clone(),
                source: plan_layer.name.clone(),
            });
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
        let mut manifest_desc =
            writer.write_blob(oci::MEDIA_TYPE_MANIFEST, &canonical_json(&manifest))?;
        manifest_desc.platform = Some(p.platform.clone());
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
        writer.write_blob(oci::MEDIA_TYPE_INDEX, &canonical_json(&index))?
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
    opts.reporter.log(
        Level::Info,
        &format!("wrote {} ({})", layout.display(), top.digest),
    );
    Ok(BuildResult {
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
    })
}

/// Build the layers, up to `jobs` at a time, sharing one compression pool.
fn build_layers(
    layers: &[Arc<LayerPlan>],
    mtime: u64,
    opts: &BuildOptions,
    pool: &Arc<rayon::ThreadPool>,
    writer: &LayoutWriter,
) -> Result<(Vec<BuiltLayer>, Vec<u128>)> {
    let next = AtomicUsize::new(0);
    type Slot = Option<(Result<BuiltLayer>, Duration)>;
    let results: Mutex<Vec<Slot>> = Mutex::new((0..layers.len()).map(|_| None).collect());
    let workers = opts.jobs.min(layers.len()).max(1);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(plan) = layers.get(i) else { break };
                let id = format!("layer-{i}");
                let reporter = &opts.reporter;
                reporter.start(&id, &plan.name, Some(plan.content_size()));
                let t = Instant::now();
                let result =
                    layer::build_layer(plan, mtime, opts.compression, pool, writer, &mut |n| {
                        reporter.advance(&id, n)
                    })
                    .with_context(|| format!("building layer {:?}", plan.name));
                if let (Ok(l), Some(hook)) = (&result, &opts.on_layer) {
                    hook(&l.descriptor, &writer.blob_path(&l.descriptor.digest));
                }
                match &result {
                    Ok(l) => reporter.finish(
                        &id,
                        &format!(
                            "{}: {} ({} bytes)",
                            plan.name, l.descriptor.digest, l.descriptor.size
                        ),
                    ),
                    Err(_) => reporter.finish(&id, &format!("{}: failed", plan.name)),
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

fn resolve_base(
    base: &Base,
    platform: &Platform,
    writer: &LayoutWriter,
    opts: &BuildOptions,
    registry: Option<&RegistryBase>,
) -> Result<Option<BaseImage>> {
    let (dir, name, display) = match base {
        Base::Scratch => return Ok(None),
        Base::Oci { dir, name, display } => (dir, name, display),
        Base::Registry {
            reference,
            fallback,
        } => {
            let registry = registry.ok_or_else(|| anyhow!("no registry client for the base"))?;
            return registry_base(registry, reference, fallback, platform, writer, opts).map(Some);
        }
    };
    let layout = Layout::open(dir).with_context(|| format!("opening base {display}"))?;
    let top = layout
        .resolve(name.as_deref())
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
    Ok(Some(BaseImage {
        name: display.clone(),
        served: None,
        manifest_digest: manifest_desc.digest,
        layers,
        config,
    }))
}

/// A registry base for `platform`: resolved on the first registry that
/// answers, its layers downloaded through the blob cache (digest-checked)
/// and linked into the layout being written.
fn registry_base(
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

fn image_config(
    plan: &Plan,
    p: &PlatformPlan,
    base: Option<&BaseImage>,
    layers: &[&BuiltLayer],
    created: &str,
) -> ImageConfig {
    let mut cfg = base.map(|b| b.config.clone()).unwrap_or_default();
    let c = &p.config;
    let mut rc = cfg.config.take().unwrap_or_default();
    if !c.env.is_empty() {
        let mut env = rc.env.take().unwrap_or_default();
        for (k, v) in &c.env {
            let entry = format!("{k}={v}");
            match env
                .iter_mut()
                .find(|e| e.split('=').next() == Some(k.as_str()))
            {
                Some(e) => *e = entry,
                None => env.push(entry),
            }
        }
        rc.env = Some(env);
    }
    if let Some(ep) = &c.entrypoint {
        rc.entrypoint = Some(ep.clone());
        // As with Dockerfile ENTRYPOINT: a new entrypoint drops the base's CMD.
        rc.cmd = None;
    }
    if let Some(cmd) = &c.cmd {
        rc.cmd = Some(cmd.clone());
    }
    set(&mut rc.working_dir, &c.workdir);
    set(&mut rc.user, &c.user);
    set(&mut rc.stop_signal, &c.stop_signal);
    if !c.labels.is_empty() {
        rc.labels
            .get_or_insert_with(BTreeMap::new)
            .extend(c.labels.clone());
    }
    for port in &c.exposed_ports {
        rc.exposed_ports
            .get_or_insert_with(BTreeMap::new)
            .insert(port.clone(), serde_json::json!({}));
    }
    for v in &c.volumes {
        rc.volumes
            .get_or_insert_with(BTreeMap::new)
            .insert(v.clone(), serde_json::json!({}));
    }
    cfg.config = (rc != RuntimeConfig::default()).then_some(rc);
    cfg.created = Some(created.to_string());
    if plan.author.is_some() {
        cfg.author = plan.author.clone();
    }
    cfg.architecture = p.platform.architecture.clone();
    cfg.os = p.platform.os.clone();
    cfg.variant = p.platform.variant.clone();
    let mut diff_ids: Vec<Digest> = base
        .map(|b| b.layers.iter().map(|(_, d)| d.clone()).collect())
        .unwrap_or_default();
    diff_ids.extend(layers.iter().map(|l| l.diff_id.clone()));
    cfg.rootfs = RootFs {
        kind: "layers".into(),
        diff_ids,
    };
    for l in &p.layers {
        cfg.history.push(History {
            created: Some(created.to_string()),
            created_by: Some(format!("boxwright build: {}", l.name)),
            comment: Some("boxwright".into()),
            ..Default::default()
        });
    }
    cfg
}

fn set(field: &mut Option<String>, value: &Option<String>) {
    if value.is_some() {
        *field = value.clone();
    }
}

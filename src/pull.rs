//! Images from registries, with fallbacks: the registry half of `build`'s
//! registry bases and of `boxwright pull`.
//!
//! A reference is resolved on the first registry that answers ([`resolve_first`]):
//! a 404, 429, 5xx, or a failed/timed-out connection moves on to the next
//! one; anything else (401, a digest mismatch) stops, because another mirror
//! would not fix it. Resolution uses a client whose retry policy gives up
//! quickly ([`resolve_policy`]) so that a struggling primary hands over in
//! about a second. Everything after that comes from the registry that
//! served: platform manifests by digest, then configs and layers through the
//! content-addressed [`BlobCache`], each blob checked against its digest
//! while it streams to disk (a corrupt blob never gets a name in the cache).
//!
//! [`RemoteImages`] is the async API; [`RegistryBase`] wraps it for the
//! synchronous build; [`pull`] writes an OCI layout, an `oci-archive` (a tar
//! of that layout) or a `docker-archive` (`docker load` / `podman load`
//! format, uncompressed layers).

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::{anyhow, Context as _, Result};
use futures_util::stream::{self, StreamExt as _, TryStreamExt as _};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::cache::BlobCache;
use crate::error::bad_input;
use crate::layout::LayoutWriter;
use crate::oci::{self, Descriptor, Digest, ImageConfig, Index, Manifest, Platform};
use crate::progress::{Level, SharedReporter};
use crate::registry::{
    Client, ClientOptions, CredentialStore, ErrorKind, ManifestInfo, Reference, RegistryError,
    RetryPolicy,
};

/// The retry policy of the resolve step: one retry, short delays (and a
/// `Retry-After` over two seconds is not waited for), so that a primary
/// answering 503 or 429 hands over to the fallback promptly.
pub fn resolve_policy() -> RetryPolicy {
    RetryPolicy {
        max_retries: 1,
        base: Duration::from_millis(100),
        max_delay: Duration::from_secs(2),
    }
}

/// How long resolving one reference may take (retry included) before the
/// next one is tried: a registry that accepts connections but never answers
/// counts as down.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether a failure to resolve on one registry moves on to the next
/// reference: not found (404), rate-limited (429), server errors (5xx, 408)
/// and transport failures (refused, reset, timed out).
pub fn moves_on(e: &RegistryError) -> bool {
    match e.status() {
        Some(404 | 408 | 429) => true,
        Some(s) => s >= 500,
        None => matches!(e.kind, ErrorKind::Transport(_)),
    }
}

/// A reference that was tried and did not serve.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub reference: String,
    pub error: String,
}

/// A reference resolved on the registry that answered.
#[derive(Debug, Clone)]
pub struct Served {
    /// The reference that served.
    pub reference: Reference,
    /// The first reference asked for (the primary).
    pub requested: Reference,
    /// Position of `reference` in the list tried (0: the primary).
    pub position: usize,
    /// The top-level manifest or index, as served.
    pub info: ManifestInfo,
    pub bytes: Vec<u8>,
    /// The references tried before, with why each did not serve.
    pub skipped: Vec<Attempt>,
}

impl Served {
    pub fn is_index(&self) -> bool {
        oci::is_index_media_type(&self.info.media_type)
    }

    /// A short report (`--json`, `BuildResult`).
    pub fn report(&self) -> ServedReport {
        ServedReport {
            reference: self.reference.to_string(),
            requested: self.requested.to_string(),
            registry: self.reference.registry.clone(),
            fallback: self.position > 0,
            digest: self.info.digest.clone(),
            media_type: self.info.media_type.clone(),
            skipped: self.skipped.clone(),
        }
    }
}

/// Which registry served an image, for reports.
#[derive(Debug, Clone, Serialize)]
pub struct ServedReport {
    /// The reference that served.
    pub reference: String,
    /// The primary reference.
    pub requested: String,
    pub registry: String,
    /// True when a fallback served.
    pub fallback: bool,
    /// Digest of the top-level manifest or index served.
    pub digest: Digest,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// References tried first, and why they did not serve.
    pub skipped: Vec<Attempt>,
}

/// GET the manifest of each reference in turn until one serves.
#[allow(clippy::result_large_err)] // RegistryError carries its context; cold path
pub async fn resolve_first(
    client: &Client,
    refs: &[Reference],
    reporter: &SharedReporter,
) -> Result<Served> {
    let requested = refs
        .first()
        .cloned()
        .ok_or_else(|| bad_input("no image reference given"))?;
    let mut skipped = Vec::new();
    for (position, r) in refs.iter().enumerate() {
        let answer = tokio::time::timeout(
            RESOLVE_TIMEOUT,
            client.get_manifest(&r.registry, &r.repository, &r.object()),
        )
        .await
        .unwrap_or_else(|_| {
            Err(RegistryError::new(
                crate::registry::ErrorContext {
                    operation: "fetching manifest".into(),
                    registry: r.registry.clone(),
                    repository: Some(r.repository.clone()),
                    object: Some(r.object()),
                },
                ErrorKind::Transport(format!("no answer within {}s", RESOLVE_TIMEOUT.as_secs())),
            ))
        });
        match answer {
            Ok((info, bytes)) => {
                if !oci::is_index_media_type(&info.media_type)
                    && !oci::is_manifest_media_type(&info.media_type)
                {
                    return Err(anyhow!(
                        "{r} is a {:?}, not an image manifest or index",
                        info.media_type
                    ));
                }
                return Ok(Served {
                    reference: r.clone(),
                    requested,
                    position,
                    info,
                    bytes,
                    skipped,
                });
            }
            Err(e) if moves_on(&e) && position + 1 < refs.len() => {
                reporter.log(
                    Level::Warn,
                    &format!("{r}: {e}; trying {}", refs[position + 1]),
                );
                skipped.push(Attempt {
                    reference: r.to_string(),
                    error: e.to_string(),
                });
            }
            Err(e) if skipped.is_empty() => {
                return Err(anyhow::Error::new(e).context(format!("resolving {r}")))
            }
            Err(e) => {
                skipped.push(Attempt {
                    reference: r.to_string(),
                    error: e.to_string(),
                });
                let detail: Vec<String> = skipped
                    .iter()
                    .map(|a| format!("{}: {}", a.reference, a.error))
                    .collect();
                return Err(anyhow!(
                    "no registry served {requested}: {}",
                    detail.join("; ")
                ));
            }
        }
    }
    Err(anyhow!("no registry served {requested}"))
}

/// The image manifest for `platform` in `index` (exact platform, a missing
/// wanted variant matching any). Bad input, naming both, when it lacks one.
pub fn select_platform(index: &Index, platform: &Platform, what: &str) -> Result<Descriptor> {
    if let Some(d) = index
        .manifests
        .iter()
        .filter(|d| oci::is_manifest_media_type(&d.media_type))
        .find(|d| d.platform.as_ref().is_some_and(|p| platform.matches(p)))
    {
        return Ok(d.clone());
    }
    let have: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
        .filter(|p| p != "unknown/unknown")
        .collect();
    Err(bad_input(format!(
        "{what} has no image for platform {platform} (it has: {}); build for those with --platform or pick another base",
        if have.is_empty() {
            "none".to_string()
        } else {
            have.join(", ")
        }
    )))
}

/// The OCI media type for a layer media type (Docker's gzip layers are the
/// same bytes as OCI's).
pub fn oci_layer_media_type(mt: &str) -> &str {
    match mt {
        oci::MEDIA_TYPE_DOCKER_LAYER_GZIP => oci::MEDIA_TYPE_LAYER_GZIP,
        other => other,
    }
}

/// One platform's image of a served reference.
#[derive(Debug, Clone)]
pub struct RemoteImage {
    /// The manifest's descriptor (with `platform` when it came from an index).
    pub descriptor: Descriptor,
    pub manifest_bytes: Vec<u8>,
    pub manifest: Manifest,
    pub config_bytes: Vec<u8>,
    pub config: ImageConfig,
}

/// Counts of what went through the cache.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct CacheCounts {
    pub blobs_downloaded: u64,
    pub bytes_downloaded: u64,
    pub blobs_cached: u64,
}

/// Reading images from registries through a blob cache.
pub struct RemoteImages {
    /// For blobs and manifests by digest: the caller's retry policy.
    client: Client,
    /// For resolving references: [`resolve_policy`].
    fast: Client,
    cache: BlobCache,
    reporter: SharedReporter,
    jobs: usize,
    counts: Mutex<CacheCounts>,
}

impl RemoteImages {
    /// Blocking (reads CA files): call outside the async runtime.
    pub fn new(
        opts: ClientOptions,
        store: CredentialStore,
        cache: BlobCache,
        reporter: SharedReporter,
    ) -> Result<RemoteImages> {
        let fast_opts = ClientOptions {
            retry: resolve_policy(),
            ..opts.clone()
        };
        let jobs = opts.jobs_per_registry.max(1);
        Ok(RemoteImages {
            client: Client::new(opts, store.clone(), reporter.clone())?,
            fast: Client::new(fast_opts, store, reporter.clone())?,
            cache,
            reporter,
            jobs,
            counts: Mutex::new(CacheCounts::default()),
        })
    }

    pub fn cache(&self) -> &BlobCache {
        &self.cache
    }

    pub fn counts(&self) -> CacheCounts {
        self.counts.lock().map(|c| *c).unwrap_or_default()
    }

    /// Resolve on the first reference that serves; says which on the reporter.
    pub async fn resolve(&self, refs: &[Reference]) -> Result<Served> {
        let served = resolve_first(&self.fast, refs, &self.reporter).await?;
        let how = if served.position > 0 {
            format!(" (fallback {} of {})", served.position, refs.len() - 1)
        } else {
            String::new()
        };
        self.reporter.log(
            Level::Info,
            &format!(
                "{} served by {}{how}: {}",
                served.reference, served.reference.registry, served.info.digest
            ),
        );
        Ok(served)
    }

    /// The manifest of `desc` from the registry that served.
    async fn manifest(&self, served: &Served, desc: &Descriptor) -> Result<(Vec<u8>, Manifest)> {
        let r = &served.reference;
        let (info, bytes) = self
            .client
            .get_manifest(&r.registry, &r.repository, desc.digest.as_str())
            .await?;
        if !oci::is_manifest_media_type(&info.media_type) {
            return Err(anyhow!(
                "{}@{}: expected an image manifest, got {:?}",
                r.name(),
                desc.digest,
                info.media_type
            ));
        }
        let m: Manifest = serde_json::from_slice(&bytes)
            .with_context(|| format!("parsing manifest {} of {r}", desc.digest))?;
        Ok((bytes, m))
    }

    /// The image for `platform` (`None`: the served manifest itself, or
    /// bad input when the reference is an index).
    pub async fn image(&self, served: &Served, platform: Option<&Platform>) -> Result<RemoteImage> {
        let r = &served.reference;
        let (descriptor, manifest_bytes, manifest) = if served.is_index() {
            let index: Index = serde_json::from_slice(&served.bytes)
                .with_context(|| format!("parsing the index of {r}"))?;
            let Some(p) = platform else {
                return Err(bad_input(format!(
                    "{r} is a multi-platform index: choose one with --platform"
                )));
            };
            let desc = select_platform(&index, p, &r.to_string())?;
            let (bytes, m) = self.manifest(served, &desc).await?;
            (desc, bytes, m)
        } else {
            let m: Manifest = serde_json::from_slice(&served.bytes)
                .with_context(|| format!("parsing the manifest of {r}"))?;
            let desc = Descriptor::new(
                &served.info.media_type,
                served.info.digest.clone(),
                served.info.size,
            );
            (desc, served.bytes.clone(), m)
        };
        let path = self.blob(served, &manifest.config).await?;
        let config_bytes = std::fs::read(&path)
            .with_context(|| format!("reading config {} from the cache", manifest.config.digest))?;
        let config: ImageConfig = serde_json::from_slice(&config_bytes)
            .with_context(|| format!("parsing config {} of {r}", manifest.config.digest))?;
        if let Some(p) = platform {
            if config.os != p.os || config.architecture != p.architecture {
                return Err(bad_input(format!(
                    "{r} is for {}/{}, not {p}",
                    config.os, config.architecture
                )));
            }
        }
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(anyhow!(
                "{r}: its config lists {} diff IDs for {} layers",
                config.rootfs.diff_ids.len(),
                manifest.layers.len()
            ));
        }
        Ok(RemoteImage {
            descriptor,
            manifest_bytes,
            manifest,
            config_bytes,
            config,
        })
    }

    /// Blob `d` in the cache, downloaded from the registry that served when
    /// missing (streamed, digest-checked, temp file + rename).
    pub async fn blob(&self, served: &Served, d: &Descriptor) -> Result<PathBuf> {
        let r = &served.reference;
        if self.cache.contains(&d.digest, d.size) {
            self.reporter
                .log(Level::Debug, &format!("cache: {} already held", d.digest));
            if let Ok(mut c) = self.counts.lock() {
                c.blobs_cached += 1;
            }
            return Ok(self.cache.path(&d.digest));
        }
        let path = self
            .cache
            .fetch(&self.client, &r.registry, &r.repository, &d.digest, d.size)
            .await
            .with_context(|| format!("blob {} of {r}", d.digest))?;
        self.reporter.log(
            Level::Debug,
            &format!("cache: {} downloaded ({} bytes)", d.digest, d.size),
        );
        if let Ok(mut c) = self.counts.lock() {
            c.blobs_downloaded += 1;
            c.bytes_downloaded += d.size;
        }
        Ok(path)
    }

    /// Several blobs, `jobs_per_registry` at a time; paths in input order.
    pub async fn blobs(&self, served: &Served, descs: &[Descriptor]) -> Result<Vec<PathBuf>> {
        stream::iter(descs.iter())
            .map(|d| self.blob(served, d))
            .buffered(self.jobs)
            .try_collect()
            .await
    }
}

/// A registry base for the synchronous build: resolved once for all
/// platforms (memoised), each platform's image fetched on demand.
pub struct RegistryBase {
    images: RemoteImages,
    rt: tokio::runtime::Runtime,
    served: OnceLock<Served>,
}

/// A registry base's image for one platform, its layers in the cache.
#[derive(Debug, Clone)]
pub struct BaseParts {
    pub served: Served,
    pub image: RemoteImage,
    /// Layer descriptors (media types made OCI) with their cached files.
    pub layers: Vec<(Descriptor, PathBuf)>,
}

impl RegistryBase {
    /// Blocking: call outside any async runtime.
    pub fn new(
        opts: ClientOptions,
        store: CredentialStore,
        cache: BlobCache,
        reporter: SharedReporter,
    ) -> Result<RegistryBase> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("base-fetch")
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        Ok(RegistryBase {
            images: RemoteImages::new(opts, store, cache, reporter)?,
            rt,
            served: OnceLock::new(),
        })
    }

    /// Resolve `reference`, then each of `fallback`, until one serves. The
    /// first successful answer is kept for later calls.
    pub fn resolve(&self, reference: &str, fallback: &[String]) -> Result<Served> {
        if let Some(s) = self.served.get() {
            return Ok(s.clone());
        }
        let refs = std::iter::once(reference)
            .chain(fallback.iter().map(String::as_str))
            .map(|s| Reference::parse(s).with_context(|| format!("base {s:?}")))
            .collect::<Result<Vec<_>>>()?;
        let served = self
            .rt
            .block_on(self.images.resolve(&refs))
            .with_context(|| format!("resolving base {reference}"))?;
        Ok(self.served.get_or_init(|| served).clone())
    }

    /// The base image for `platform`, its layers downloaded into the cache.
    pub fn image(
        &self,
        reference: &str,
        fallback: &[String],
        platform: &Platform,
    ) -> Result<BaseParts> {
        let served = self.resolve(reference, fallback)?;
        let what = format!("base {}", served.reference);
        self.rt.block_on(async {
            let image = self
                .images
                .image(&served, Some(platform))
                .await
                .with_context(|| what.clone())?;
            let paths = self
                .images
                .blobs(&served, &image.manifest.layers)
                .await
                .with_context(|| format!("downloading the layers of {what}"))?;
            let layers = image
                .manifest
                .layers
                .iter()
                .zip(paths)
                .map(|(d, p)| {
                    let mut d = d.clone();
                    d.media_type = oci_layer_media_type(&d.media_type).to_string();
                    (d, p)
                })
                .collect();
            Ok(BaseParts {
                served: served.clone(),
                image,
                layers,
            })
        })
    }

    pub fn counts(&self) -> CacheCounts {
        self.images.counts()
    }
}

/// What `pull` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PullFormat {
    /// An OCI image layout directory.
    Oci,
    /// A tar of the OCI layout.
    OciArchive,
    /// `docker save` format: `manifest.json`, config, uncompressed layer tars.
    DockerArchive,
}

/// Which platforms to pull.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlatformChoice {
    /// Everything the reference names (the whole index).
    All,
    One(Platform),
}

/// How to pull.
#[derive(Clone, Debug)]
pub struct PullOptions {
    /// The primary reference, then the fallbacks, in order.
    pub references: Vec<Reference>,
    pub output: PathBuf,
    pub format: PullFormat,
    /// `None`: all platforms for OCI formats, linux/amd64 for docker-archive.
    pub platform: Option<PlatformChoice>,
}

/// What a pull did.
#[derive(Clone, Debug, Serialize)]
pub struct PullResult {
    /// The digest of what was written at the top: the served index, or the
    /// platform manifest when one platform was picked.
    pub digest: Digest,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub served: ServedReport,
    pub platforms: Vec<String>,
    pub format: PullFormat,
    pub output: PathBuf,
    /// Configs per platform (docker-archive: the image ID).
    pub configs: Vec<Digest>,
    #[serde(flatten)]
    pub cache: CacheCounts,
}

/// Pull an image into `opts.output`.
pub async fn pull(images: &RemoteImages, opts: &PullOptions) -> Result<PullResult> {
    let platform = match (&opts.platform, opts.format) {
        (Some(PlatformChoice::All), PullFormat::DockerArchive) => {
            return Err(bad_input(
                "--format docker-archive holds one platform: give --platform os/arch, not all",
            ))
        }
        (Some(c), _) => c.clone(),
        (None, PullFormat::DockerArchive) => {
            PlatformChoice::One(Platform::parse("linux/amd64").map_err(bad_input)?)
        }
        (None, _) => PlatformChoice::All,
    };
    let served = images.resolve(&opts.references).await?;
    let r = served.reference.clone();
    // The image manifests to write, with their platform.
    let mut list: Vec<RemoteImage> = Vec::new();
    let (top, top_bytes) = match (&platform, served.is_index()) {
        (PlatformChoice::All, true) => {
            let index: Index = serde_json::from_slice(&served.bytes)
                .with_context(|| format!("parsing the index of {r}"))?;
            for d in &index.manifests {
                if !oci::is_manifest_media_type(&d.media_type) {
                    return Err(anyhow!(
                        "{r}: index entry {} is a {:?}; nested indexes are not supported, pick a platform with --platform",
                        d.digest,
                        d.media_type
                    ));
                }
                let sub = Served {
                    info: ManifestInfo {
                        digest: d.digest.clone(),
                        media_type: d.media_type.clone(),
                        size: d.size,
                    },
                    bytes: images.manifest(&served, d).await?.0,
                    ..served.clone()
                };
                let mut img = images.image(&sub, None).await?;
                img.descriptor = d.clone();
                list.push(img);
            }
            let desc = Descriptor::new(
                &served.info.media_type,
                served.info.digest.clone(),
                served.info.size,
            );
            (desc, Some(served.bytes.clone()))
        }
        (PlatformChoice::All, false) => {
            let img = images.image(&served, None).await?;
            let d = img.descriptor.clone();
            list.push(img);
            (d, None)
        }
        (PlatformChoice::One(p), _) => {
            let img = images.image(&served, Some(p)).await?;
            let mut d = img.descriptor.clone();
            d.platform = None;
            list.push(img);
            (d, None)
        }
    };
    // Layers (and configs, already fetched) through the cache.
    let mut seen = HashSet::new();
    let mut layers = Vec::new();
    for img in &list {
        for l in &img.manifest.layers {
            if seen.insert(l.digest.clone()) {
                layers.push(l.clone());
            }
        }
    }
    images
        .blobs(&served, &layers)
        .await
        .with_context(|| format!("downloading the layers of {r}"))?;
    let platforms: Vec<String> = list
        .iter()
        .map(|i| {
            let mut s = format!("{}/{}", i.config.os, i.config.architecture);
            if let Some(v) = &i.config.variant {
                s.push('/');
                s.push_str(v);
            }
            s
        })
        .collect();
    let configs = list
        .iter()
        .map(|i| i.manifest.config.digest.clone())
        .collect();
    let cache = images.cache().clone();
    let output = opts.output.clone();
    let format = opts.format;
    let name = ref_name(&served.requested);
    let repo_tag = served
        .requested
        .tag
        .as_ref()
        .map(|_| served.requested.to_string());
    let top2 = top.clone();
    tokio::task::spawn_blocking(move || match format {
        PullFormat::Oci => {
            write_layout(&cache, &output, &top2, top_bytes.as_deref(), &list, name).map(|_| ())
        }
        PullFormat::OciArchive => {
            let tmp = sibling_tempdir(&output)?;
            let dir = tmp.path().join("layout");
            write_layout(&cache, &dir, &top2, top_bytes.as_deref(), &list, name)?;
            write_tar_atomically(&output, |b| append_tree(b, &dir, Path::new("")))
        }
        PullFormat::DockerArchive => {
            let tmp = sibling_tempdir(&output)?;
            write_docker_archive(&cache, &output, tmp.path(), &list[0], repo_tag)
        }
    })
    .await
    .context("the writing task failed")?
    .with_context(|| format!("writing {}", opts.output.display()))?;
    Ok(PullResult {
        digest: top.digest.clone(),
        media_type: top.media_type.clone(),
        served: served.report(),
        platforms,
        format: opts.format,
        output: opts.output.clone(),
        configs,
        cache: images.counts(),
    })
}

/// The layout ref name for a reference: its tag (`latest` when it has
/// neither tag nor digest), none for a digest-only reference.
fn ref_name(r: &Reference) -> Option<String> {
    match (&r.tag, &r.digest) {
        (Some(t), _) => Some(t.clone()),
        (None, None) => Some("latest".into()),
        (None, Some(_)) => None,
    }
}

fn sibling_tempdir(output: &Path) -> Result<tempfile::TempDir> {
    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("creating output directory {}", parent.display()))?;
    tempfile::Builder::new()
        .prefix(".boxwright-pull-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a temporary directory in {}", parent.display()))
}

/// An OCI layout: manifests (and the index) byte for byte as served, blobs
/// linked or copied from the cache.
fn write_layout(
    cache: &BlobCache,
    dir: &Path,
    top: &Descriptor,
    index_bytes: Option<&[u8]>,
    images: &[RemoteImage],
    name: Option<String>,
) -> Result<PathBuf> {
    let writer = LayoutWriter::create(dir)?;
    for img in images {
        writer.write_blob(&img.descriptor.media_type, &img.manifest_bytes)?;
        for d in std::iter::once(&img.manifest.config).chain(&img.manifest.layers) {
            writer.import_blob(&cache.path(&d.digest), &d.digest)?;
        }
    }
    if let Some(b) = index_bytes {
        let d = writer.write_blob(&top.media_type, b)?;
        if d.digest != top.digest {
            return Err(anyhow!("index bytes do not match {}", top.digest));
        }
    }
    let mut entry = top.clone();
    if let Some(n) = name {
        entry.annotations.insert(oci::ANNOTATION_REF_NAME.into(), n);
    }
    writer.commit(vec![entry])
}

/// Write a tar to `dest` through a temp file + rename.
fn write_tar_atomically(
    dest: &Path,
    fill: impl FnOnce(&mut tar::Builder<BufWriter<File>>) -> Result<()>,
) -> Result<()> {
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".boxwright-archive-")
        .tempfile_in(&parent)
        .with_context(|| format!("creating a temporary file in {}", parent.display()))?;
    let file = tmp.reopen().context("opening the temporary archive")?;
    let mut b = tar::Builder::new(BufWriter::new(file));
    fill(&mut b)?;
    let mut w = b.into_inner().context("finishing the archive")?;
    w.flush().context("writing the archive")?;
    w.get_ref().sync_all().context("writing the archive")?;
    drop(w);
    tmp.persist(dest)
        .map_err(|e| anyhow!("storing {}: {}", dest.display(), e.error))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o644))?;
    Ok(())
}

fn file_header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

fn append_file<W: Write>(b: &mut tar::Builder<W>, name: &Path, path: &Path) -> Result<()> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = f.metadata()?.len();
    let mut h = file_header(len);
    b.append_data(&mut h, name, BufReader::new(f))
        .with_context(|| format!("archiving {}", path.display()))
}

fn append_bytes<W: Write>(b: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> Result<()> {
    let mut h = file_header(bytes.len() as u64);
    b.append_data(&mut h, name, bytes)
        .with_context(|| format!("archiving {name}"))
}

/// Files and directories of `dir`, sorted, with fixed owners, modes and times.
fn append_tree<W: Write>(b: &mut tar::Builder<W>, dir: &Path, prefix: &Path) -> Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()?;
    names.sort();
    for n in names {
        let path = dir.join(&n);
        let name = prefix.join(&n);
        if path.is_dir() {
            let mut h = tar::Header::new_ustar();
            h.set_size(0);
            h.set_mode(0o755);
            h.set_mtime(0);
            h.set_uid(0);
            h.set_gid(0);
            h.set_entry_type(tar::EntryType::Directory);
            b.append_data(&mut h, &name, std::io::empty())?;
            append_tree(b, &path, &name)?;
        } else {
            append_file(b, &name, &path)?;
        }
    }
    Ok(())
}

/// A reader of a layer's tar, whatever its compression (sniffed: gzip,
/// zstd, or none).
fn layer_reader(path: &Path) -> Result<Box<dyn Read>> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut magic = [0u8; 4];
    let n = f.read(&mut magic)?;
    let f = BufReader::new(File::open(path)?);
    Ok(match &magic[..n] {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::MultiGzDecoder::new(f)),
        [0x28, 0xb5, 0x2f, 0xfd] => {
            Box::new(zstd::stream::read::Decoder::new(f).context("starting the zstd decoder")?)
        }
        _ => Box::new(f),
    })
}

/// A `docker save` archive: `manifest.json` (Config, RepoTags, Layers), the
/// config under its digest (so the image ID is the config digest), and each
/// layer uncompressed as `<diffID hex>.tar`, checked against its diff ID.
fn write_docker_archive(
    cache: &BlobCache,
    dest: &Path,
    scratch: &Path,
    img: &RemoteImage,
    repo_tag: Option<String>,
) -> Result<()> {
    let mut tars = Vec::new();
    for (l, diff_id) in img.manifest.layers.iter().zip(&img.config.rootfs.diff_ids) {
        let out = scratch.join(format!("{}.tar", diff_id.hex()));
        if !out.exists() {
            let mut r = layer_reader(&cache.path(&l.digest))?;
            let mut w = BufWriter::new(File::create(&out)?);
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = r
                    .read(&mut buf)
                    .with_context(|| format!("decompressing layer {}", l.digest))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                w.write_all(&buf[..n])?;
            }
            w.flush()?;
            let got = Digest::from_sha256(hasher.finalize().into());
            if &got != diff_id {
                return Err(anyhow!(
                    "layer {} uncompresses to {got}, but the config's diff ID is {diff_id}",
                    l.digest
                ));
            }
        }
        tars.push((format!("{}.tar", diff_id.hex()), out));
    }
    let config_name = format!("{}.json", img.manifest.config.digest.hex());
    let manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": repo_tag.into_iter().collect::<Vec<_>>(),
        "Layers": tars.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
    }]);
    let manifest_bytes = serde_json::to_vec(&manifest)?;
    let mut added = HashSet::new();
    write_tar_atomically(dest, |b| {
        append_bytes(b, &config_name, &img.config_bytes)?;
        for (name, path) in &tars {
            if added.insert(name.clone()) {
                append_file(b, Path::new(name), path)?;
            }
        }
        append_bytes(b, "manifest.json", &manifest_bytes)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(kind: ErrorKind) -> RegistryError {
        RegistryError::new(Default::default(), kind)
    }

    #[test]
    fn what_moves_on_to_the_fallback() {
        let status = |s| {
            err(ErrorKind::Status {
                status: s,
                errors: vec![],
            })
        };
        for s in [404, 429, 500, 502, 503, 504] {
            assert!(moves_on(&status(s)), "{s}");
        }
        for s in [400, 401, 403] {
            assert!(!moves_on(&status(s)), "{s}");
        }
        assert!(moves_on(&err(ErrorKind::Transport("timed out".into()))));
        assert!(!moves_on(&err(ErrorKind::DigestMismatch {
            expected: "a".into(),
            actual: "b".into()
        })));
    }

    #[test]
    fn missing_platform_names_both() {
        let mut d = Descriptor::new(oci::MEDIA_TYPE_MANIFEST, Digest::of(b"x"), 1);
        d.platform = Some(Platform::parse("linux/amd64").unwrap());
        let index = Index::new(vec![d]);
        let want = Platform::parse("linux/riscv64").unwrap();
        let e = select_platform(&index, &want, "base reg/x:1").unwrap_err();
        let text = format!("{e:#}");
        assert!(text.contains("linux/riscv64") && text.contains("base reg/x:1"));
        assert!(text.contains("linux/amd64"));
        assert!(crate::error::is_bad_input(&e));
        let ok = select_platform(&index, &Platform::parse("linux/amd64").unwrap(), "x").unwrap();
        assert_eq!(ok.digest, Digest::of(b"x"));
    }

    #[test]
    fn docker_layers_become_oci() {
        assert_eq!(
            oci_layer_media_type(oci::MEDIA_TYPE_DOCKER_LAYER_GZIP),
            oci::MEDIA_TYPE_LAYER_GZIP
        );
        assert_eq!(
            oci_layer_media_type(oci::MEDIA_TYPE_LAYER_ZSTD),
            oci::MEDIA_TYPE_LAYER_ZSTD
        );
    }
}

//! `copy`: an image or a multi-platform index from one registry repository to
//! others, bytes and digests unchanged (e.g. re-seeding a backup registry
//! that missed a push).
//!
//! It is a push whose blobs come from a registry instead of a layout: the
//! destinations go through the same [`Pusher`] (HEAD first, each blob at
//! most once per destination registry, mounts within a registry, manifests
//! after blobs, platform manifests by digest, the index or tag last), with
//! the source repository as a mount source on its own registry. A blob is
//! downloaded only when some destination registry lacks it and cannot mount
//! it, at most once per run, streamed into the [`BlobCache`] (checked
//! against its digest) and uploaded from that file.
//!
//! Before anything is fetched, the source is resolved with HEAD and every
//! destination is HEADed: when all already name the source digest the copy
//! ends there (no manifest GET, which Docker Hub would count as a pull).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context as _};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde::Serialize;
use tokio::sync::OnceCell;

use crate::cache::BlobCache;
use crate::error::bad_input;
use crate::oci::{self, Descriptor, Digest, Platform};
use crate::progress::{Level, SharedReporter};
use crate::push::{BlobSource, ImageContent, PushOptions, PushReport, PushTarget, Pusher};
use crate::registry::{Client, CredentialStore, Reference};

/// How to copy.
#[derive(Clone, Debug, Default)]
pub struct CopyOptions {
    /// Client settings, chunk size and extra mount sources (the source
    /// repository is always added).
    pub push: PushOptions,
    /// Copy only this platform's manifest out of an index (`--platform`);
    /// the destinations then name that manifest. `None`: everything (`--all`).
    pub platform: Option<Platform>,
    /// The blob cache (`--cache-dir`); `None`: the default location.
    pub cache_dir: Option<PathBuf>,
}

/// Where a destination without tag or digest points: the source's tag, or
/// (for a source given by digest only) no tag at all, the image being
/// pushed by digest.
pub fn destination_reference(src: &Reference, dst: &Reference) -> Reference {
    let mut d = dst.clone();
    if d.tag.is_none() && d.digest.is_none() {
        d.tag = src.tag.clone();
    }
    d
}

/// Blobs of a registry repository, fetched into the cache on first need.
pub struct RegistryBlobs {
    client: Arc<Client>,
    cache: BlobCache,
    registry: String,
    repository: String,
    cells: Mutex<HashMap<Digest, Arc<OnceCell<PathBuf>>>>,
    downloaded_blobs: AtomicU64,
    downloaded_bytes: AtomicU64,
    cache_hits: AtomicU64,
}

impl RegistryBlobs {
    pub fn new(client: Arc<Client>, cache: BlobCache, source: &Reference) -> RegistryBlobs {
        RegistryBlobs {
            client,
            cache,
            registry: source.registry.clone(),
            repository: source.repository.clone(),
            cells: Mutex::new(HashMap::new()),
            downloaded_blobs: AtomicU64::new(0),
            downloaded_bytes: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
        }
    }

    fn cell(&self, d: &Digest) -> Arc<OnceCell<PathBuf>> {
        match self.cells.lock() {
            Ok(mut m) => m.entry(d.clone()).or_default().clone(),
            Err(_) => Arc::new(OnceCell::new()),
        }
    }

    async fn fetch(&self, desc: &Descriptor) -> anyhow::Result<PathBuf> {
        if self.cache.contains(&desc.digest, desc.size) {
            self.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(self.cache.path(&desc.digest));
        }
        let path = self
            .cache
            .fetch(
                &self.client,
                &self.registry,
                &self.repository,
                &desc.digest,
                desc.size,
            )
            .await
            .with_context(|| {
                format!(
                    "downloading blob {} from {}/{}",
                    desc.digest, self.registry, self.repository
                )
            })?;
        let got = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if got != desc.size {
            return Err(anyhow!(
                "blob {} from {}/{} has {got} bytes, its descriptor says {}",
                desc.digest,
                self.registry,
                self.repository,
                desc.size
            ));
        }
        self.downloaded_blobs.fetch_add(1, Ordering::Relaxed);
        self.downloaded_bytes
            .fetch_add(desc.size, Ordering::Relaxed);
        Ok(path)
    }
}

impl RegistryBlobs {
    /// Blobs downloaded and their bytes, and cache hits, so far.
    pub fn downloaded(&self) -> (u64, u64, u64) {
        (
            self.downloaded_blobs.load(Ordering::Relaxed),
            self.downloaded_bytes.load(Ordering::Relaxed),
            self.cache_hits.load(Ordering::Relaxed),
        )
    }

    /// The registry and repository the blobs come from.
    pub fn source(&self) -> (&str, &str) {
        (&self.registry, &self.repository)
    }
}

impl BlobSource for RegistryBlobs {
    fn file<'a>(&'a self, desc: &'a Descriptor) -> BoxFuture<'a, anyhow::Result<PathBuf>> {
        Box::pin(async move {
            let cell = self.cell(&desc.digest);
            cell.get_or_try_init(|| self.fetch(desc)).await.cloned()
        })
    }
}

/// The outcome of a copy.
#[derive(Clone, Debug, Serialize)]
pub struct CopyReport {
    /// The source as resolved (`registry/repo:tag`).
    pub source: String,
    /// The digest the destinations name (the source's, or with
    /// `--platform` the chosen platform manifest's).
    pub digest: Digest,
    pub media_type: String,
    pub platform: Option<String>,
    /// True when every destination already named the digest: nothing sent.
    pub up_to_date: bool,
    /// Manifests copied (index and platform manifests).
    pub manifests: usize,
    /// Unique blobs of the image and their total size.
    pub blobs: usize,
    pub blob_bytes: u64,
    /// Blobs downloaded from the source (at most once each), and cache hits.
    pub blobs_downloaded: u64,
    pub bytes_downloaded: u64,
    pub cache_hits: u64,
    /// The push to the destinations (absent when up to date).
    pub push: Option<PushReport>,
}

impl CopyReport {
    pub fn succeeded(&self) -> bool {
        self.push.as_ref().is_none_or(|p| p.succeeded())
    }

    pub fn error(&self) -> Option<anyhow::Error> {
        self.push.as_ref().and_then(|p| p.error())
    }
}

/// Copy `source` to `destinations`. Errors are for problems before any
/// destination is written (bad references, source not found, unreadable
/// manifests); destination failures are in the report.
pub async fn copy(
    source: &Reference,
    destinations: &[Reference],
    opts: CopyOptions,
    reporter: SharedReporter,
) -> anyhow::Result<CopyReport> {
    if destinations.is_empty() {
        return Err(bad_input("copy needs at least one destination"));
    }
    let dests: Vec<Reference> = destinations
        .iter()
        .map(|d| destination_reference(source, d))
        .collect();
    for d in &dests {
        if d.registry == source.registry
            && d.repository == source.repository
            && d.tag == source.tag
            && d.digest.is_none()
        {
            return Err(bad_input(format!(
                "{d} is the source itself; name another repository or tag"
            )));
        }
    }
    let mut push_opts = opts.push.clone();
    push_opts.mount_sources.push(Reference {
        tag: None,
        digest: None,
        ..source.clone()
    });
    let targets: Vec<PushTarget> = dests
        .iter()
        .map(|d| PushTarget {
            reference: d.clone(),
            optional: false,
            credentials: None,
        })
        .collect();
    let pusher = Pusher::new(
        targets,
        push_opts,
        CredentialStore::from_env(),
        reporter.clone(),
    )
    .await?;
    let client = pusher.client().clone();
    let src_name = source.to_string();

    // The source, by HEAD.
    let head = client
        .head_manifest(&source.registry, &source.repository, &source.object())
        .await
        .with_context(|| format!("resolving {src_name}"))?
        .ok_or_else(|| anyhow!("{src_name} does not exist (manifest unknown)"))?;
    reporter.log(
        Level::Info,
        &format!("{src_name}: {} ({})", head.digest, head.media_type),
    );

    // Destinations already there? (Only known before any GET without --platform.)
    if opts.platform.is_none() && all_hold(&client, &dests, &head.digest).await {
        reporter.log(
            Level::Info,
            &format!("every destination already names {}", head.digest),
        );
        return Ok(up_to_date(&src_name, &head.digest, &head.media_type, None));
    }

    // Fetch the manifests (by digest, each checked), children first.
    let mut manifests: Vec<(Descriptor, Bytes)> = Vec::new();
    let mut blobs: Vec<Descriptor> = Vec::new();
    let (root_bytes, root_mt) = fetch_manifest(&client, source, &head.digest).await?;
    let root = Descriptor::new(&root_mt, head.digest.clone(), root_bytes.len() as u64);
    let mut platform_shown = None;
    let root = match (&opts.platform, oci::is_index_media_type(&root_mt)) {
        (Some(want), true) => {
            let index: oci::Index = serde_json::from_slice(&root_bytes)
                .with_context(|| format!("parsing index {} of {src_name}", head.digest))?;
            let offered: Vec<String> = index
                .manifests
                .iter()
                .filter_map(|m| m.platform.as_ref().map(|p| p.to_string()))
                .collect();
            let child = index
                .manifests
                .iter()
                .find(|m| m.platform.as_ref().is_some_and(|p| want.matches(p)))
                .ok_or_else(|| {
                    bad_input(format!(
                        "{src_name} has no {want} image (it offers: {})",
                        offered.join(", ")
                    ))
                })?
                .clone();
            platform_shown = Some(want.to_string());
            if all_hold(&client, &dests, &child.digest).await {
                return Ok(up_to_date(
                    &src_name,
                    &child.digest,
                    &child.media_type,
                    platform_shown,
                ));
            }
            collect(&client, source, &child, &mut manifests, &mut blobs, 0).await?;
            child
        }
        (Some(want), false) => {
            reporter.log(
                Level::Warn,
                &format!("{src_name} is a single image, not an index: copied whole (--platform {want} ignored)"),
            );
            collect_known(
                &client,
                source,
                &root,
                root_bytes,
                &mut manifests,
                &mut blobs,
                0,
            )
            .await?;
            root
        }
        (None, _) => {
            collect_known(
                &client,
                source,
                &root,
                root_bytes,
                &mut manifests,
                &mut blobs,
                0,
            )
            .await?;
            root
        }
    };
    let root = manifests
        .iter()
        .find(|(d, _)| d.digest == root.digest)
        .map(|(d, _)| d.clone())
        .unwrap_or(root);

    let cache = BlobCache::new(opts.cache_dir.clone())?;
    let content = ImageContent {
        root: root.clone(),
        manifests: manifests.clone(),
        blobs: blobs
            .iter()
            .map(|d| (d.clone(), cache.path(&d.digest)))
            .collect(),
    };
    let source_blobs = RegistryBlobs::new(client.clone(), cache, source);
    pusher.start_progress(content.total_blob_bytes());
    let report = pusher.push_image_from(&content, &source_blobs).await;
    Ok(CopyReport {
        source: src_name,
        digest: root.digest.clone(),
        media_type: root.media_type.clone(),
        platform: platform_shown,
        up_to_date: false,
        manifests: manifests.len(),
        blobs: blobs.len(),
        blob_bytes: content.total_blob_bytes(),
        blobs_downloaded: source_blobs.downloaded_blobs.load(Ordering::Relaxed),
        bytes_downloaded: source_blobs.downloaded_bytes.load(Ordering::Relaxed),
        cache_hits: source_blobs.cache_hits.load(Ordering::Relaxed),
        push: Some(report),
    })
}

fn up_to_date(src: &str, d: &Digest, mt: &str, platform: Option<String>) -> CopyReport {
    CopyReport {
        source: src.to_string(),
        digest: d.clone(),
        media_type: mt.to_string(),
        platform,
        up_to_date: true,
        manifests: 0,
        blobs: 0,
        blob_bytes: 0,
        blobs_downloaded: 0,
        bytes_downloaded: 0,
        cache_hits: 0,
        push: None,
    }
}

/// Whether every destination already names `digest` (HEAD each; a
/// destination without tag is checked by digest).
async fn all_hold(client: &Client, dests: &[Reference], digest: &Digest) -> bool {
    let heads = futures_util::future::join_all(dests.iter().map(|d| {
        let what = d.tag.clone().unwrap_or_else(|| digest.to_string());
        async move {
            if d.digest.as_ref().is_some_and(|p| p != digest) {
                return false;
            }
            matches!(
                client.head_manifest(&d.registry, &d.repository, &what).await,
                Ok(Some(info)) if &info.digest == digest
            )
        }
    }))
    .await;
    heads.into_iter().all(|h| h)
}

/// GET a manifest by digest from the source (checked against the digest);
/// its bytes and media type.
async fn fetch_manifest(
    client: &Client,
    source: &Reference,
    d: &Digest,
) -> anyhow::Result<(Bytes, String)> {
    let (info, bytes) = client
        .get_manifest(&source.registry, &source.repository, d.as_str())
        .await
        .with_context(|| format!("fetching manifest {d} of {}", source.name()))?;
    if info.media_type.is_empty() {
        return Err(anyhow!(
            "manifest {d} of {} has no media type",
            source.name()
        ));
    }
    Ok((Bytes::from(bytes), info.media_type))
}

async fn collect(
    client: &Client,
    source: &Reference,
    desc: &Descriptor,
    manifests: &mut Vec<(Descriptor, Bytes)>,
    blobs: &mut Vec<Descriptor>,
    depth: usize,
) -> anyhow::Result<()> {
    if manifests.iter().any(|(d, _)| d.digest == desc.digest) {
        return Ok(());
    }
    let (bytes, mt) = fetch_manifest(client, source, &desc.digest).await?;
    let mut d = desc.clone();
    d.media_type = mt;
    collect_known(client, source, &d, bytes, manifests, blobs, depth).await
}

/// Add the manifest `desc` (whose bytes are known) after its children and
/// blobs.
fn collect_known<'a>(
    client: &'a Client,
    source: &'a Reference,
    desc: &'a Descriptor,
    bytes: Bytes,
    manifests: &'a mut Vec<(Descriptor, Bytes)>,
    blobs: &'a mut Vec<Descriptor>,
    depth: usize,
) -> BoxFuture<'a, anyhow::Result<()>> {
    Box::pin(async move {
        if depth > 4 {
            return Err(anyhow!("{}: indexes nested too deep", desc.digest));
        }
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("parsing manifest {}", desc.digest))?;
        if v.get("schemaVersion").and_then(|s| s.as_u64()) == Some(1) {
            return Err(bad_input(format!(
                "{} of {} is a Docker schema 1 manifest, which boxwright does not copy",
                desc.digest,
                source.name()
            )));
        }
        let list = |key: &str| -> anyhow::Result<Vec<Descriptor>> {
            match v.get(key) {
                None | Some(serde_json::Value::Null) => Ok(Vec::new()),
                Some(x) => serde_json::from_value(x.clone())
                    .with_context(|| format!("parsing {key} of manifest {}", desc.digest)),
            }
        };
        if oci::is_index_media_type(&desc.media_type) || v.get("manifests").is_some() {
            for child in list("manifests")? {
                collect(client, source, &child, manifests, blobs, depth + 1).await?;
            }
        } else {
            let mut own = list("layers")?;
            if let Some(cfg) = v.get("config") {
                let cfg: Descriptor = serde_json::from_value(cfg.clone())
                    .with_context(|| format!("parsing config of manifest {}", desc.digest))?;
                own.insert(0, cfg);
            }
            let seen: HashSet<Digest> = blobs.iter().map(|b| b.digest.clone()).collect();
            let mut seen = seen;
            for b in own {
                if is_foreign(&b) {
                    client.reporter().log(
                        Level::Warn,
                        &format!(
                            "{}: non-distributable layer {} left out (registries fetch it from its URLs)",
                            desc.digest, b.digest
                        ),
                    );
                    continue;
                }
                if seen.insert(b.digest.clone()) {
                    blobs.push(b);
                }
            }
        }
        if !manifests.iter().any(|(d, _)| d.digest == desc.digest) {
            manifests.push((desc.clone(), bytes));
        }
        Ok(())
    })
}

/// Foreign / non-distributable layers (Windows base layers) live outside
/// registries; they are never uploaded.
fn is_foreign(d: &Descriptor) -> bool {
    d.media_type.contains("foreign") || d.media_type.contains("nondistributable")
}

/// [`copy`] on a runtime of its own, for synchronous callers.
pub fn copy_blocking(
    source: &Reference,
    destinations: &[Reference],
    opts: CopyOptions,
    reporter: SharedReporter,
) -> anyhow::Result<CopyReport> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(copy(source, destinations, opts, reporter))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_inherit_the_source_tag() {
        let src = Reference::parse("ghcr.io/acme/r2d:1.4.0").unwrap();
        let d = destination_reference(&src, &Reference::parse("docker.io/acme/r2d").unwrap());
        assert_eq!(d.to_string(), "docker.io/acme/r2d:1.4.0");
        let d = destination_reference(&src, &Reference::parse("docker.io/acme/r2d:b").unwrap());
        assert_eq!(d.to_string(), "docker.io/acme/r2d:b");
        let pinned = Reference::parse(
            "ghcr.io/acme/r2d@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        )
        .unwrap();
        let d = destination_reference(&pinned, &Reference::parse("docker.io/acme/r2d").unwrap());
        assert!(d.tag.is_none() && d.digest.is_none());
    }
}

//! Blobs and manifests of one registry repository: the one fetch through
//! the blob cache (each digest at most once per run, a failure forgotten,
//! other repositories asked when this one cannot give a blob), manifests
//! fetched by digest (each at most once per run: on Docker Hub every
//! manifest GET counts as a pull), and the [`ImageSource`] of an image in a
//! registry.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context as _, Result};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde::Serialize;

use crate::cache::BlobCache;
use crate::error::Failure;
use crate::image::once::OnceMap;
use crate::image::{check_size, ImageSource};
use crate::oci::{total_size, Descriptor, Digest};
use crate::progress::Level;
use crate::registry::{Client, ErrorKind, Held, ManifestInfo, Reference, RegistryError, Repo};

/// Counts of what went through the cache.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct CacheCounts {
    pub blobs_downloaded: u64,
    pub bytes_downloaded: u64,
    pub blobs_cached: u64,
}

impl std::ops::Add for CacheCounts {
    type Output = CacheCounts;

    fn add(self, o: CacheCounts) -> CacheCounts {
        CacheCounts {
            blobs_downloaded: self.blobs_downloaded + o.blobs_downloaded,
            bytes_downloaded: total_size([self.bytes_downloaded, o.bytes_downloaded]),
            blobs_cached: self.blobs_cached + o.blobs_cached,
        }
    }
}

/// A blob the repository that served could not give, fetched from another
/// reference's repository instead (pull's JSON report lists them).
#[derive(Debug, Clone, Serialize)]
pub struct BlobFallback {
    pub digest: Digest,
    /// `registry/repository` the blob came from.
    pub source: String,
    /// Why the repository that served did not give it (serialised as its
    /// text; the cause chain is kept).
    pub error: Failure,
}

/// Blobs of a registry repository, fetched into the cache on first need;
/// from other repositories (fallbacks) when it cannot give one.
pub struct RemoteBlobs {
    client: Arc<Client>,
    cache: BlobCache,
    registry: String,
    repository: String,
    /// `(registry, repository)` asked, in order, for a blob the repository
    /// does not give.
    fallbacks: Vec<(String, String)>,
    fetched: OnceMap<Digest, PathBuf>,
    /// Manifests GET by digest, with their media types.
    manifests: OnceMap<Digest, (Bytes, String)>,
    counts: Mutex<CacheCounts>,
    fell_back: Mutex<Vec<BlobFallback>>,
}

impl RemoteBlobs {
    pub fn new(client: Arc<Client>, cache: BlobCache, registry: &str, repository: &str) -> Self {
        RemoteBlobs {
            client,
            cache,
            registry: registry.to_string(),
            repository: repository.to_string(),
            fallbacks: Vec::new(),
            fetched: OnceMap::default(),
            manifests: OnceMap::default(),
            counts: Mutex::new(CacheCounts::default()),
            fell_back: Mutex::new(Vec::new()),
        }
    }

    /// Ask the repositories of `refs`, in order, for a blob this repository
    /// cannot give (missing, corrupt, too slow, unreachable).
    pub fn with_fallbacks(mut self, refs: &[Reference]) -> Self {
        self.fallbacks = refs
            .iter()
            .map(|r| (r.registry.clone(), r.repository.clone()))
            .filter(|(reg, repo)| (reg, repo) != (&self.registry, &self.repository))
            .collect();
        self
    }

    /// The blobs fetched from a fallback so far.
    pub fn fallbacks_used(&self) -> Vec<BlobFallback> {
        self.fell_back.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// The registry and repository the blobs come from.
    pub fn source(&self) -> (&str, &str) {
        (&self.registry, &self.repository)
    }

    /// The client that fetches them.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The repository the blobs come from, to ask it.
    pub fn repo(&self) -> Repo<'_> {
        self.client.repo(&self.registry, &self.repository)
    }

    /// GET a manifest by digest (checked by the client against it): its
    /// bytes and media type. Each digest is asked for at most once per run
    /// (a digest names the same bytes for ever); a failure is forgotten, so
    /// that the next caller asks again.
    pub async fn manifest(&self, d: &Digest) -> Result<(Bytes, String)> {
        self.manifests
            .get_or_try_init(d, || self.manifest_once(d))
            .await
    }

    async fn manifest_once(&self, d: &Digest) -> Result<(Bytes, String)> {
        let repo = self.repo();
        let (info, bytes) = repo
            .get_manifest(d.as_str())
            .await
            .with_context(|| format!("fetching manifest {d} of {repo}"))?;
        if info.media_type.is_empty() {
            return Err(anyhow!("manifest {d} of {repo} has no media type"));
        }
        Ok((Bytes::from(bytes), info.media_type))
    }

    /// Blobs downloaded and their bytes, and cache hits, so far.
    pub fn counts(&self) -> CacheCounts {
        self.counts.lock().map(|c| *c).unwrap_or_default()
    }

    fn count(&self, f: impl FnOnce(&mut CacheCounts)) {
        if let Ok(mut c) = self.counts.lock() {
            f(&mut c);
        }
    }

    /// Blob `d` in the cache, downloaded when missing (streamed,
    /// digest-checked, temp file + rename); at most once per run.
    pub async fn fetch(&self, d: &Descriptor) -> Result<PathBuf> {
        self.fetched
            .get_or_try_init(&d.digest, || self.fetch_once(d))
            .await
    }

    async fn fetch_once(&self, d: &Descriptor) -> Result<PathBuf> {
        let reporter = self.client.reporter();
        if self.cache.holds(&d.digest, Some(d.size)) {
            reporter.log(Level::Debug, &format!("cache: {} already held", d.digest));
            self.count(|c| c.blobs_cached += 1);
            return Ok(self.cache.path(&d.digest));
        }
        let first = match self.fetch_from(self.repo(), d).await {
            Ok(path) => return Ok(path),
            Err(e) if self.fallbacks.is_empty() || is_local(&e) => return Err(e),
            Err(e) => Failure::from(e),
        };
        let mut tried = vec![first.to_string()];
        for (reg, name) in &self.fallbacks {
            let repo = self.client.repo(reg, name);
            reporter.log(
                Level::Warn,
                &format!("{first}; fetching blob {} from {repo}", d.digest),
            );
            match self.fetch_from(repo, d).await {
                Ok(path) => {
                    if let Ok(mut v) = self.fell_back.lock() {
                        v.push(BlobFallback {
                            digest: d.digest.clone(),
                            source: repo.to_string(),
                            error: first.clone(),
                        });
                    }
                    return Ok(path);
                }
                Err(e) if is_local(&e) => return Err(e),
                Err(e) => tried.push(format!("{e:#}")),
            }
        }
        Err(anyhow!(
            "no registry gave blob {}: {}",
            d.digest,
            tried.join("; ")
        ))
    }

    /// Blob `d` from `repo` into the cache (streamed, digest-checked).
    async fn fetch_from(&self, repo: Repo<'_>, d: &Descriptor) -> Result<PathBuf> {
        let path = self
            .cache
            .fetch(repo, &d.digest, d.size)
            .await
            .with_context(|| format!("downloading blob {} from {repo}", d.digest))?;
        let got = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if got != d.size {
            return Err(anyhow!(
                "blob {} from {repo} has {got} bytes, its descriptor says {}",
                d.digest,
                d.size
            ));
        }
        self.client.reporter().log(
            Level::Debug,
            &format!(
                "cache: {} downloaded from {repo} ({} bytes)",
                d.digest, d.size
            ),
        );
        self.count(|c| {
            c.blobs_downloaded += 1;
            c.bytes_downloaded = total_size([c.bytes_downloaded, d.size]);
        });
        Ok(path)
    }
}

/// A failure here, not at the registry (the cache's disk): another
/// registry would not help.
fn is_local(e: &anyhow::Error) -> bool {
    e.downcast_ref::<RegistryError>()
        .is_some_and(|r| matches!(r.kind, ErrorKind::Io(_)))
}

/// An image (or index) in a registry repository: manifests by digest
/// (unless already known), blobs through the cache; its own repository is
/// a mount source on its registry.
pub struct RegistryImage {
    blobs: Arc<RemoteBlobs>,
    root: Descriptor,
    /// Manifests already fetched (resolving GETs the root), by digest.
    known: HashMap<Digest, Bytes>,
}

impl RegistryImage {
    pub fn new(blobs: Arc<RemoteBlobs>, root: Descriptor) -> Self {
        RegistryImage {
            blobs,
            root,
            known: HashMap::new(),
        }
    }

    /// The manifest or index `info` names, whose bytes were fetched
    /// already: they are its root's, served without a request.
    pub fn fetched(blobs: Arc<RemoteBlobs>, info: &ManifestInfo, bytes: Bytes) -> Self {
        let root = Descriptor::new(&info.media_type, info.digest.clone(), info.size);
        RegistryImage::new(blobs, root).with_known([bytes])
    }

    /// GET the manifest or index `digest` of the repository `blobs` reads,
    /// and open it: its root has the media type served.
    pub async fn open(blobs: Arc<RemoteBlobs>, digest: &Digest) -> Result<Self> {
        let (bytes, media_type) = blobs.manifest(digest).await?;
        let info = ManifestInfo {
            digest: digest.clone(),
            media_type,
            size: bytes.len() as u64,
        };
        Ok(RegistryImage::fetched(blobs, &info, bytes))
    }

    /// Manifest bytes already at hand, served without a request.
    pub fn with_known(mut self, manifests: impl IntoIterator<Item = Bytes>) -> Self {
        for b in manifests {
            self.known.insert(Digest::of(&b), b);
        }
        self
    }

    /// The same repository with another root (a platform manifest of it).
    pub fn with_root(&self, root: Descriptor) -> RegistryImage {
        RegistryImage {
            blobs: self.blobs.clone(),
            root,
            known: self.known.clone(),
        }
    }

    /// The client that asks the repository.
    pub fn client(&self) -> &Client {
        self.blobs.client()
    }

    /// Blob `d` as the repository holds it (HEAD), `None` when it is not
    /// there.
    pub async fn head_blob(&self, d: &Digest) -> Result<Option<Held>, RegistryError> {
        self.blobs.repo().blob_exists(d).await
    }

    /// GET a manifest by digest (checked by the client against it).
    pub async fn fetch_manifest(&self, d: &Digest) -> Result<(Bytes, String)> {
        self.blobs.manifest(d).await
    }
}

impl ImageSource for RegistryImage {
    fn root(&self) -> &Descriptor {
        &self.root
    }

    /// The bytes of `desc`, checked against its digest and against its
    /// size: a [`crate::image::SizeMismatch`] when the descriptor says another size.
    fn manifest<'a>(&'a self, desc: &'a Descriptor) -> BoxFuture<'a, Result<Bytes>> {
        Box::pin(async move {
            let bytes = match self.known.get(&desc.digest) {
                Some(b) => b.clone(),
                None => self.fetch_manifest(&desc.digest).await?.0,
            };
            check_size(desc, &bytes).with_context(|| {
                let (reg, repo) = self.blobs.source();
                format!("fetching manifest {} of {reg}/{repo}", desc.digest)
            })?;
            Ok(bytes)
        })
    }

    fn blob<'a>(&'a self, desc: &'a Descriptor) -> BoxFuture<'a, Result<PathBuf>> {
        Box::pin(self.blobs.fetch(desc))
    }

    /// `registry/repository@digest`.
    fn locate(&self, desc: &Descriptor) -> String {
        let (reg, repo) = self.blobs.source();
        format!("{reg}/{repo}@{}", desc.digest)
    }

    fn mount_hints(&self, registry: &str, _desc: &Descriptor) -> Vec<String> {
        let (reg, repo) = self.blobs.source();
        if reg == registry {
            vec![repo.to_string()]
        } else {
            Vec::new()
        }
    }
}

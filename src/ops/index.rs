//! `index`: an OCI image index assembled from single-platform images that
//! are already in registries (one per CI runner, pushed by digest), written
//! to one or more target tags on any registries.
//!
//! Only small documents are read: each source manifest (GET by digest,
//! checked) and its config blob (through the [`BlobCache`]), whose `os`,
//! `architecture`, `variant` and `os.version` give the entry's platform.
//! Layers are not downloaded unless a target registry lacks them: the
//! targets go through the same [`Pusher`] as `push` and `copy` (HEAD first,
//! each blob at most once per target registry, manifests after blobs), with
//! an [`ImageSource`] that knows which source repository holds each blob. On
//! a source's own registry that repository is the mount source (mounts are
//! never asked of a repository that lacks the blob); on other registries the
//! blob is downloaded once per run into the cache and uploaded from there.
//!
//! The index lists the platform manifests sorted by platform (as `build`
//! sorts them), carries `mediaType`, the `--annotation`s, and is serialised
//! with [`oci::canonical_json`]: the same sources give the same digest.
//!
//! A source that is itself an index is refused (exit 2) with its platform
//! manifests listed, so that the user can name them: flattening would make
//! the result depend on which of its entries were picked.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, Context as _, Result};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde::Serialize;

use crate::cache::BlobCache;
use crate::error::bad_input;
use crate::image::remote::{parse_json, CacheCounts, RegistryImage, RemoteBlobs};
use crate::image::{walk, ImageSource};
use crate::oci::{self, Descriptor, Digest, Platform};
use crate::progress::{Level, SharedReporter};
use crate::push::{pin_untagged, PushOptions, PushReport, PushTarget, Pusher};
use crate::registry::Reference;

/// How to assemble and push an index.
#[derive(Clone, Debug, Default)]
pub struct IndexOptions {
    /// Client settings, chunk size and extra mount sources.
    pub push: PushOptions,
    /// Annotations of the index (`--annotation KEY=VALUE`).
    pub annotations: BTreeMap<String, String>,
    /// The blob cache (`--cache-dir`); `None`: the default location.
    pub cache_dir: Option<PathBuf>,
}

/// One entry of the index.
#[derive(Clone, Debug, Serialize)]
pub struct EntryReport {
    /// The source reference as given (`registry/repo@sha256:...`).
    pub source: String,
    pub platform: String,
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
}

/// The outcome of `index`.
#[derive(Clone, Debug, Serialize)]
pub struct IndexReport {
    /// The index digest every target names.
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    /// The entries in index order (sorted by platform).
    pub manifests: Vec<EntryReport>,
    /// Unique blobs of all platforms and their total size.
    pub blobs: usize,
    pub blob_bytes: u64,
    /// Blobs downloaded from the sources (configs included; at most once
    /// each), their bytes, and blobs found in the cache.
    pub blobs_downloaded: u64,
    pub bytes_downloaded: u64,
    pub cache_hits: u64,
    pub push: PushReport,
}

impl IndexReport {
    pub fn succeeded(&self) -> bool {
        self.push.succeeded()
    }

    pub fn error(&self) -> Option<anyhow::Error> {
        self.push.error()
    }
}

/// The new index over several source repositories: the index and the
/// platform manifests in memory; each blob fetched from the first source
/// that lists it, and mounted from every source repository on the target's
/// registry that lists it.
struct Composed {
    root: Descriptor,
    manifests: HashMap<Digest, Bytes>,
    repos: Vec<Arc<RemoteBlobs>>,
    holders: HashMap<Digest, Vec<usize>>,
}

impl Composed {
    fn add_holder(&mut self, d: &Digest, i: usize) {
        let v = self.holders.entry(d.clone()).or_default();
        if !v.contains(&i) {
            v.push(i);
        }
    }

    fn counts(&self) -> CacheCounts {
        self.repos
            .iter()
            .fold(CacheCounts::default(), |acc, r| acc + r.counts())
    }
}

impl ImageSource for Composed {
    fn root(&self) -> &Descriptor {
        &self.root
    }

    fn manifest<'a>(&'a self, desc: &'a Descriptor) -> BoxFuture<'a, Result<Bytes>> {
        crate::image::held(&self.manifests, desc, "manifest")
    }

    fn blob<'a>(&'a self, desc: &'a Descriptor) -> BoxFuture<'a, Result<PathBuf>> {
        Box::pin(async move {
            let first = self
                .holders
                .get(&desc.digest)
                .and_then(|v| v.first())
                .copied()
                .ok_or_else(|| anyhow!("internal: no source lists blob {}", desc.digest))?;
            self.repos[first].fetch(desc).await
        })
    }

    fn mount_hints(&self, registry: &str, desc: &Descriptor) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for &i in self.holders.get(&desc.digest).into_iter().flatten() {
            let (reg, repo) = self.repos[i].source();
            if reg == registry && !out.iter().any(|r| r == repo) {
                out.push(repo.to_string());
            }
        }
        out
    }
}

/// A source image, read.
struct Source {
    reference: Reference,
    descriptor: Descriptor,
    bytes: Bytes,
    config: Descriptor,
    /// Its blobs (config and layers), as the walk finds them.
    blobs: Vec<Descriptor>,
}

/// Assemble the index of `sources` (each `REGISTRY/REPO@sha256:...`, one
/// platform each) and push it to `targets`. Errors are for problems before
/// any target is written (bad input, unreadable sources, two sources of one
/// platform); target failures are in the report.
pub async fn index(
    sources: &[Reference],
    targets: Vec<PushTarget>,
    opts: IndexOptions,
    reporter: SharedReporter,
) -> Result<IndexReport> {
    if sources.is_empty() {
        return Err(bad_input(
            "index needs at least one source image (REGISTRY/REPO@sha256:...)",
        ));
    }
    for s in sources {
        if s.digest.is_none() {
            return Err(bad_input(format!(
                "source {s} has no digest: name each platform's image by digest \
                 (REGISTRY/REPO@sha256:..., as printed by `push` or `build --push`)"
            )));
        }
    }
    // Targets that name a digest: it must be the index's, known once the
    // sources are read.
    let pinned: Vec<(String, Digest)> = (targets.iter())
        .filter_map(|t| Some((t.reference.to_string(), t.reference.digest.clone()?)))
        .collect();
    let pusher = Pusher::with_env_credentials(targets, opts.push.clone(), reporter.clone()).await?;
    let client = pusher.client().clone();
    let cache = BlobCache::new(opts.cache_dir.clone())?;
    let repos: Vec<Arc<RemoteBlobs>> = sources
        .iter()
        .map(|s| {
            Arc::new(RemoteBlobs::new(
                client.clone(),
                cache.clone(),
                &s.registry,
                &s.repository,
            ))
        })
        .collect();

    // Every source manifest (by digest, checked), in parallel.
    let fetched = futures_util::future::join_all(
        sources
            .iter()
            .zip(&repos)
            .map(|(s, r)| read_manifest(r, s, &reporter)),
    )
    .await;
    let read: Vec<Source> = fetched.into_iter().collect::<Result<_>>()?;

    // Each config (small, through the cache) gives the platform.
    let mut entries: Vec<(Descriptor, String)> = Vec::new();
    for (i, src) in read.iter().enumerate() {
        let path = repos[i]
            .fetch(&src.config)
            .await
            .with_context(|| format!("reading the config of {}", src.reference))?;
        let bytes = tokio::fs::read(&path)
            .await
            .with_context(|| format!("reading {}", path.display()))?;
        let platform = platform_of(&bytes)
            .with_context(|| format!("config {} of {}", src.config.digest, src.reference))?;
        if let Some((_, other)) = entries
            .iter()
            .find(|(d, _)| d.platform.as_ref() == Some(&platform))
        {
            return Err(bad_input(format!(
                "two sources are {platform} images: {other} and {}; an index holds one image per platform",
                src.reference
            )));
        }
        let mut d = src.descriptor.clone();
        d.platform = Some(platform.clone());
        reporter.log(
            Level::Info,
            &format!("{}: {platform} ({})", src.reference, d.media_type),
        );
        entries.push((d, src.reference.to_string()));
    }

    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by(|&a, &b| entries[a].0.platform.cmp(&entries[b].0.platform));
    let mut index = oci::Index::new(order.iter().map(|&i| entries[i].0.clone()).collect());
    index.annotations = opts.annotations.clone();
    let index_bytes = Bytes::from(oci::canonical_json(&index));
    let root = Descriptor::of_bytes(oci::MEDIA_TYPE_INDEX, &index_bytes);
    if let Some((t, _)) = pinned.iter().find(|(_, d)| *d != root.digest) {
        return Err(bad_input(format!(
            "--to {t} names another digest than the index, {}: give it without a digest, \
             or as REPO@ to push the index by digest only",
            root.digest
        )));
    }
    reporter.log(
        Level::Info,
        &format!("index {} ({} platforms)", root.digest, entries.len()),
    );

    let mut image = Composed {
        root: root.clone(),
        manifests: HashMap::from([(root.digest.clone(), index_bytes)]),
        repos,
        holders: HashMap::new(),
    };
    for (i, src) in read.iter().enumerate() {
        image
            .manifests
            .insert(src.descriptor.digest.clone(), src.bytes.clone());
        for b in &src.blobs {
            image.add_holder(&b.digest, i);
        }
    }
    let graph = walk(&image).await?;
    pusher.start_progress(graph.blob_bytes());
    let mut push = pusher.push_graph(&image, &graph).await;
    // A `REPO@` target is named `REPO@DIGEST`, as `push` names it.
    pin_untagged(&mut push);
    let counts = image.counts();
    Ok(IndexReport {
        digest: root.digest.clone(),
        media_type: root.media_type.clone(),
        size: root.size,
        manifests: order
            .iter()
            .map(|&i| {
                let (d, name) = &entries[i];
                EntryReport {
                    source: name.clone(),
                    platform: d
                        .platform
                        .as_ref()
                        .map(|p| p.to_string())
                        .unwrap_or_default(),
                    digest: d.digest.clone(),
                    media_type: d.media_type.clone(),
                    size: d.size,
                }
            })
            .collect(),
        blobs: graph.blobs.len(),
        blob_bytes: graph.blob_bytes(),
        blobs_downloaded: counts.blobs_downloaded,
        bytes_downloaded: counts.bytes_downloaded,
        cache_hits: counts.blobs_cached,
        push,
    })
}

/// GET a source manifest by digest; refuse indexes, schema 1 and artifacts.
async fn read_manifest(
    repo: &Arc<RemoteBlobs>,
    s: &Reference,
    reporter: &SharedReporter,
) -> Result<Source> {
    let name = s.to_string();
    let digest = s
        .digest
        .clone()
        .ok_or_else(|| anyhow!("{name} has no digest"))?;
    let (info, bytes) = repo
        .repo()
        .get_manifest(digest.as_str())
        .await
        .with_context(|| format!("fetching source manifest {name}"))?;
    // A document that does not parse is bad input, as in every command.
    let v: serde_json::Value = parse_json(&bytes, || format!("source manifest {name}"))?;
    if v.get("schemaVersion").and_then(|x| x.as_u64()) == Some(1) {
        return Err(bad_input(format!(
            "{name} is a Docker schema 1 manifest, which an index cannot hold"
        )));
    }
    if oci::is_index_media_type(&info.media_type) || v.get("manifests").is_some() {
        let children: Vec<String> = v
            .get("manifests")
            .and_then(|m| serde_json::from_value::<Vec<Descriptor>>(m.clone()).ok())
            .unwrap_or_default()
            .iter()
            .map(|c| {
                let p = c.platform.as_ref().map(|p| p.to_string());
                format!(
                    "{}@{} ({})",
                    s.name(),
                    c.digest,
                    p.as_deref().unwrap_or("no platform")
                )
            })
            .collect();
        return Err(bad_input(format!(
            "{name} is an image index, not a single-platform image; name its platform images instead: {}",
            if children.is_empty() { "(it lists none)".to_string() } else { children.join(", ") }
        )));
    }
    if !oci::is_manifest_media_type(&info.media_type) {
        return Err(bad_input(format!(
            "{name} has media type {:?}, not an image manifest",
            info.media_type
        )));
    }
    let manifest: oci::Manifest = parse_json(&bytes, || format!("source manifest {name}"))?;
    let cmt = manifest.config.media_type.as_str();
    if cmt != oci::MEDIA_TYPE_CONFIG && cmt != oci::MEDIA_TYPE_DOCKER_CONFIG {
        return Err(bad_input(format!(
            "{name} is not a container image (its config is {cmt:?}): an artifact has no platform"
        )));
    }
    let bytes = Bytes::from(bytes);
    let image = RegistryImage::fetched(repo.clone(), &info, bytes.clone());
    let descriptor = image.root().clone();
    let graph = walk(&image).await?;
    graph.warn_left_out(reporter);
    Ok(Source {
        reference: s.clone(),
        descriptor,
        bytes,
        config: manifest.config,
        blobs: graph.blobs,
    })
}

/// The platform an image config declares (`os`, `architecture`, and
/// `variant`, `os.version`, `os.features` when present).
pub fn platform_of(config: &[u8]) -> anyhow::Result<Platform> {
    let v: serde_json::Value = serde_json::from_slice(config)
        .map_err(|e| bad_input(format!("the config is not JSON: {e}")))?;
    let field = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let (Some(os), Some(architecture)) = (field("os"), field("architecture")) else {
        return Err(bad_input(
            "the config names no os and architecture, so the image has no platform",
        ));
    };
    let os_features = v
        .get("os.features")
        .and_then(|x| serde_json::from_value::<Vec<String>>(x.clone()).ok())
        .filter(|f| !f.is_empty());
    let variant = field("variant");
    // What goes into the index is what an index may hold: a platform
    // `Platform::parse` takes, and no control character anywhere.
    let named = format!(
        "{os}/{architecture}{}",
        variant
            .as_deref()
            .map_or(String::new(), |v| format!("/{v}"))
    );
    Platform::parse(&named).map_err(|e| bad_input(format!("the config's platform: {e}")))?;
    let os_version = field("os.version");
    let odd = |t: &str| t.chars().any(char::is_control);
    if os_version.as_deref().is_some_and(odd) || os_features.iter().flatten().any(|f| odd(f)) {
        return Err(bad_input(format!(
            "the config's platform {named:?} holds characters no platform has"
        )));
    }
    Ok(Platform {
        architecture,
        os,
        os_version,
        os_features,
        variant,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_comes_from_the_config() {
        let p = platform_of(br#"{"architecture":"arm","os":"linux","variant":"v7","rootfs":{}}"#)
            .unwrap();
        assert_eq!(p.to_string(), "linux/arm/v7");
        assert!(platform_of(br#"{"os":"linux"}"#).is_err());
        assert!(platform_of(b"not json").is_err());
        // What an index may not hold is bad input, named.
        for config in [
            r#"{"architecture":"amd64\u001b[2J","os":"linux"}"#,
            r#"{"architecture":"x86-64","os":"linux"}"#,
            r#"{"architecture":"arm","os":"linux","variant":"v7\n"}"#,
            r#"{"architecture":"amd64","os":"windows","os.version":"10.0\u0007"}"#,
        ] {
            let e = platform_of(config.as_bytes()).unwrap_err();
            assert!(crate::error::is_bad_input(&e), "{config}: {e:#}");
            assert!(format!("{e:#}").contains("platform"), "{config}: {e:#}");
        }
    }

    #[test]
    fn entries_sort_amd64_before_arm64_and_arm_variants_in_order() {
        let mut ps: Vec<Platform> = ["linux/arm64", "linux/arm/v7", "linux/amd64", "linux/arm/v6"]
            .iter()
            .map(|s| Platform::parse(s).unwrap())
            .collect();
        ps.sort();
        let names: Vec<String> = ps.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            names,
            ["linux/amd64", "linux/arm/v6", "linux/arm/v7", "linux/arm64"]
        );
    }
}

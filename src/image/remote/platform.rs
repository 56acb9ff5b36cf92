//! One platform's image out of a served reference, for `pull` and for the
//! registry bases of `build` ([`RegistryBase`], a synchronous handle for
//! code running on a blocking thread of the one async runtime).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{anyhow, Context as _, Result};
use futures_util::stream::{self, StreamExt as _, TryStreamExt as _};
use tokio::runtime::Handle;

use super::{
    resolve_first, resolve_policy, BlobFallback, CacheCounts, RegistryImage, RemoteBlobs, Served,
};
use crate::cache::BlobCache;
use crate::error::bad_input;
use crate::image::layout::guard::read_document_at;
use crate::image::{check_config_size, check_size};
use crate::oci::{self, Descriptor, ImageConfig, Index, Manifest, Platform};
use crate::progress::{Level, SharedReporter};
use crate::registry::{Client, ClientOptions, CredentialStore, Reference};

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
pub struct PlatformImage {
    /// The manifest's descriptor (with `platform` when it came from an index).
    pub descriptor: Descriptor,
    pub manifest_bytes: Vec<u8>,
    pub manifest: Manifest,
    pub config_bytes: Vec<u8>,
    pub config: ImageConfig,
}

/// Reading images from registries through a blob cache.
pub struct RemoteImages {
    /// For blobs and manifests by digest: the caller's retry policy.
    client: Arc<Client>,
    /// For resolving references: [`resolve_policy`].
    fast: Client,
    cache: BlobCache,
    reporter: SharedReporter,
    jobs: usize,
    /// One blob fetcher per repository that served.
    repos: Mutex<Vec<Arc<RemoteBlobs>>>,
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
            client: Arc::new(Client::new(opts, store.clone(), reporter.clone())?),
            fast: Client::new(fast_opts, store, reporter.clone())?,
            cache,
            reporter,
            jobs,
            repos: Mutex::new(Vec::new()),
        })
    }

    /// [`RemoteImages::new`] on a blocking thread, for async callers.
    pub async fn connect(
        opts: ClientOptions,
        store: CredentialStore,
        cache: BlobCache,
        reporter: SharedReporter,
    ) -> Result<RemoteImages> {
        tokio::task::spawn_blocking(move || RemoteImages::new(opts, store, cache, reporter))
            .await
            .context("the client task failed")?
    }

    pub fn cache(&self) -> &BlobCache {
        &self.cache
    }

    /// The image that `served` names, as an [`ImageSource`](crate::image::ImageSource):
    /// its manifests and blobs fetched (digest-checked, blobs through the
    /// cache) from the registry that served, a blob it cannot give from the
    /// other references.
    pub fn open(&self, served: &Served) -> RegistryImage {
        RegistryImage::fetched(
            self.blobs_of(served),
            &served.info,
            bytes::Bytes::from(served.bytes.clone()),
        )
    }

    /// Resolve `refs` ([`RemoteImages::resolve`]) and open the image that
    /// serves ([`RemoteImages::open`]).
    pub async fn open_first(&self, refs: &[Reference]) -> Result<(Served, RegistryImage)> {
        let served = self.resolve(refs).await?;
        let image = self.open(&served);
        Ok((served, image))
    }

    pub fn counts(&self) -> CacheCounts {
        let repos = self.repos.lock().map(|r| r.clone()).unwrap_or_default();
        repos
            .iter()
            .fold(CacheCounts::default(), |acc, r| acc + r.counts())
    }

    /// Blobs fetched from another reference than the one that served.
    pub fn blob_fallbacks(&self) -> Vec<BlobFallback> {
        let repos = self.repos.lock().map(|r| r.clone()).unwrap_or_default();
        repos.iter().flat_map(|r| r.fallbacks_used()).collect()
    }

    /// The blobs of the repository that served (the other references as
    /// fallbacks for a blob it cannot give).
    pub fn blobs_of(&self, served: &Served) -> Arc<RemoteBlobs> {
        let r = &served.reference;
        let made = || {
            let b = RemoteBlobs::new(
                self.client.clone(),
                self.cache.clone(),
                &r.registry,
                &r.repository,
            );
            Arc::new(b.with_fallbacks(&served.alternates))
        };
        let Ok(mut repos) = self.repos.lock() else {
            return made();
        };
        if let Some(b) = repos
            .iter()
            .find(|b| b.source() == (&r.registry, &r.repository))
        {
            return b.clone();
        }
        let b = made();
        repos.push(b.clone());
        b
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

    /// The image manifest `desc` from the registry that served.
    pub async fn manifest(
        &self,
        served: &Served,
        desc: &Descriptor,
    ) -> Result<(Vec<u8>, Manifest)> {
        let r = &served.reference;
        let (info, bytes) = self
            .client
            .repo_of(r)
            .get_manifest(desc.digest.as_str())
            .await?;
        check_size(desc, &bytes)
            .with_context(|| format!("fetching manifest {} of {r}", desc.digest))?;
        if !oci::is_manifest_media_type(&info.media_type) {
            return Err(anyhow!(
                "{}@{}: expected an image manifest, got {:?}",
                r.name(),
                desc.digest,
                info.media_type
            ));
        }
        let m: Manifest = parse_json(&bytes, || format!("manifest {} of {r}", desc.digest))?;
        Ok((bytes, m))
    }

    /// The image for `platform` (`None`: the served manifest itself, or
    /// bad input when the reference is an index).
    pub async fn image(
        &self,
        served: &Served,
        platform: Option<&Platform>,
    ) -> Result<PlatformImage> {
        let r = &served.reference;
        let (descriptor, manifest_bytes, manifest) = if served.is_index() {
            let index: Index = parse_json(&served.bytes, || format!("the index of {r}"))?;
            let Some(p) = platform else {
                return Err(bad_input(format!(
                    "{r} is a multi-platform index: choose one with --platform"
                )));
            };
            let desc = select(&index, p, &r.to_string())?;
            let (bytes, m) = self.manifest(served, &desc).await?;
            (desc, bytes, m)
        } else {
            let m: Manifest = parse_json(&served.bytes, || format!("the manifest of {r}"))?;
            let desc = Descriptor::new(
                &served.info.media_type,
                served.info.digest.clone(),
                served.info.size,
            );
            (desc, served.bytes.clone(), m)
        };
        check_config_size(&manifest.config, &r.to_string())?;
        let path = self
            .blobs_of(served)
            .fetch(&manifest.config)
            .await
            .with_context(|| format!("blob {} of {r}", manifest.config.digest))?;
        let config_bytes = read_document_at(&path, &manifest.config)
            .with_context(|| format!("reading config {} from the cache", manifest.config.digest))?;
        let config: ImageConfig = parse_json(&config_bytes, || {
            format!("config {} of {r}", manifest.config.digest)
        })?;
        if let Some(p) = platform {
            if config.platform.os != p.os || config.platform.architecture != p.architecture {
                return Err(bad_input(format!(
                    "{r} is for {}/{}, not {p}",
                    config.platform.os, config.platform.architecture
                )));
            }
        }
        crate::image::check_diff_ids(&r.to_string(), &manifest, &config)?;
        Ok(PlatformImage {
            descriptor,
            manifest_bytes,
            manifest,
            config_bytes,
            config,
        })
    }

    /// Several blobs, `jobs_per_registry` at a time; paths in input order.
    pub async fn blobs(&self, served: &Served, descs: &[Descriptor]) -> Result<Vec<PathBuf>> {
        let repo = self.blobs_of(served);
        let r = &served.reference;
        stream::iter(descs.iter())
            .map(|d| {
                let repo = repo.clone();
                async move {
                    repo.fetch(d)
                        .await
                        .with_context(|| format!("blob {} of {r}", d.digest))
                }
            })
            .buffered(self.jobs)
            .try_collect()
            .await
    }
}

/// The JSON document `bytes` (`what` names it): bad input when it does not
/// parse, as every command takes a malformed document a registry serves.
pub fn parse_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: impl FnOnce() -> String,
) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| bad_input(format!("parsing {}: {e}", what())))
}

/// The image manifest for `platform` in `index`, by the one selection rule;
/// bad input naming both when it has none.
pub fn select(index: &Index, platform: &Platform, what: &str) -> Result<Descriptor> {
    if let Some(d) = oci::select_platform(index, platform) {
        return Ok(d.clone());
    }
    let have = oci::offered_platforms(index);
    Err(bad_input(format!(
        "{what} has no image for platform {platform} (it has: {}); pick one of its platforms with --platform, or another image",
        if have.is_empty() {
            "none".to_string()
        } else {
            have.join(", ")
        }
    )))
}

/// A registry base for the synchronous build: resolved once for all
/// platforms (memoised), each platform's image fetched on demand. Its
/// methods block on the async runtime it was created in, so they must be
/// called from a blocking thread of it (`spawn_blocking`) or from a thread
/// outside any runtime, never from async code.
pub struct RegistryBase {
    images: RemoteImages,
    rt: Handle,
    served: OnceLock<Served>,
}

impl RegistryBase {
    /// Blocking (reads CA files). Needs a multi-threaded runtime (see
    /// [`crate::blocking`]; errors without).
    pub fn new(
        opts: ClientOptions,
        store: CredentialStore,
        cache: BlobCache,
        reporter: SharedReporter,
    ) -> Result<RegistryBase> {
        let rt = crate::blocking::runtime("registry bases")?;
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
            .block_on(self.images.resolve(&refs))
            .with_context(|| format!("resolving base {reference}"))?;
        Ok(self.served.get_or_init(|| served).clone())
    }

    pub fn counts(&self) -> CacheCounts {
        self.images.counts()
    }

    /// The image that `served` names, as an [`ImageSource`](crate::image::ImageSource):
    /// its manifests and blobs fetched (digest-checked) through the cache.
    pub fn source(&self, served: &Served) -> RegistryImage {
        self.images.open(served)
    }

    /// Run `f` to completion on the runtime this handle was made in (from a
    /// blocking thread, like the other methods).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        crate::blocking::block_on(&self.rt, f)
    }

    /// How many blobs are fetched at a time.
    pub fn jobs(&self) -> usize {
        self.images.jobs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Digest;

    #[test]
    fn missing_platform_names_both() {
        let mut d = Descriptor::new(oci::MEDIA_TYPE_MANIFEST, Digest::of(b"x"), 1);
        d.platform = Some(Platform::parse("linux/amd64").unwrap());
        let index = Index::new(vec![d]);
        let want = Platform::parse("linux/riscv64").unwrap();
        let e = select(&index, &want, "base reg/x:1").unwrap_err();
        let text = format!("{e:#}");
        assert!(text.contains("linux/riscv64") && text.contains("base reg/x:1"));
        assert!(text.contains("linux/amd64"));
        assert!(crate::error::is_bad_input(&e));
        let ok = select(&index, &Platform::parse("linux/amd64").unwrap(), "x").unwrap();
        assert_eq!(ok.digest, Digest::of(b"x"));
    }

    /// A document that does not parse is bad input naming it, as it is
    /// from every command that reads one.
    #[test]
    fn a_malformed_document_is_bad_input() {
        for bad in [
            &b"not json"[..],
            br#"{"schemaVersion":2,"layers":[{"size":-1}]}"#,
        ] {
            let e = parse_json::<Manifest>(bad, || "the manifest of x".into()).unwrap_err();
            assert!(crate::error::is_bad_input(&e), "{e:#}");
            assert!(e.to_string().contains("the manifest of x"), "{e:#}");
        }
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

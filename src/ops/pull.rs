//! `boxwright pull`: an image from the first registry that serves it
//! (with fallbacks) into an OCI layout, an `oci-archive` (a tar of that
//! layout) or a `docker-archive` (`docker load` / `podman load` format,
//! uncompressed layers). The registry image is walked like any other
//! image, its blobs fetched through the cache, and the result written by
//! the library's sinks ([`Sink`]), as `build --format` writes its archives.

use std::path::PathBuf;

use anyhow::{anyhow, Context as _, Result};
use bytes::Bytes;
use serde::Serialize;

use crate::error::bad_input;
use crate::image::remote::{
    parse_json, BlobFallback, CacheCounts, PlatformImage, RemoteImages, Served, ServedReport,
};
use crate::image::sink::Sink;
use crate::image::walk;
use crate::oci::{self, Descriptor, Digest, Index, Platform};
use crate::registry::{ManifestInfo, Reference};

/// What `pull` writes.
pub use crate::image::sink::Format as PullFormat;

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
    /// Blobs the registry that served could not give, each fetched from a
    /// fallback reference (with where from, and why).
    pub blob_fallbacks: Vec<BlobFallback>,
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
    let requested =
        (opts.references.first()).ok_or_else(|| bad_input("no image reference given"))?;
    let sink = Sink::new(
        opts.format,
        &opts.output,
        ref_name(requested),
        repo_tags(requested),
    );
    sink.check()?;
    let served = images.resolve(&opts.references).await?;
    let r = served.reference.clone();
    // The image manifests to write, with their platform.
    let mut list: Vec<PlatformImage> = Vec::new();
    let mut known = Vec::new();
    let top = match (&platform, served.is_index()) {
        (PlatformChoice::All, true) => {
            let index: Index = parse_json(&served.bytes, || format!("the index of {r}"))?;
            for d in &index.manifests {
                if !oci::is_manifest_media_type(&d.media_type) {
                    return Err(anyhow!(
                        "{r}: index entry {} is a {:?}, and nested indexes are not followed; pull that index itself ({}@{})",
                        d.digest,
                        d.media_type,
                        r.name(),
                        d.digest
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
            known.push(Bytes::from(served.bytes.clone()));
            Descriptor::new(
                &served.info.media_type,
                served.info.digest.clone(),
                served.info.size,
            )
        }
        (PlatformChoice::All, false) => {
            let img = images.image(&served, None).await?;
            let d = img.descriptor.clone();
            list.push(img);
            d
        }
        (PlatformChoice::One(p), _) => {
            let img = images.image(&served, Some(p)).await?;
            let mut d = img.descriptor.clone();
            d.platform = None;
            list.push(img);
            d
        }
    };
    known.extend(list.iter().map(|i| Bytes::from(i.manifest_bytes.clone())));
    let source = images
        .open(&served)
        .with_root(top.clone())
        .with_known(known);
    let graph = walk(&source).await?;
    // Layers (and configs, already fetched) through the cache, then the
    // sink takes them from there.
    images
        .blobs(&served, &graph.blobs)
        .await
        .with_context(|| format!("downloading the layers of {r}"))?;
    let platforms: Vec<String> = list.iter().map(|i| i.config.platform.to_string()).collect();
    let configs = list
        .iter()
        .map(|i| i.manifest.config.digest.clone())
        .collect();
    sink.write(&source)
        .await
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
        blob_fallbacks: images.blob_fallbacks(),
    })
}

/// A docker-archive's `RepoTags` for a reference: `NAME:TAG`, as
/// `docker save` writes it (`latest` when it has neither tag nor digest;
/// never its digest, which `docker load` refuses in a tag), none for a
/// digest-only reference.
fn repo_tags(r: &Reference) -> Vec<String> {
    ref_name(r)
        .map(|tag| format!("{}:{tag}", r.name()))
        .into_iter()
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_tags_are_name_and_tag_as_docker_save_writes_them() {
        let tags = |s: &str| repo_tags(&Reference::parse(s).unwrap());
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(tags("r.io/acme/app:1"), ["r.io/acme/app:1"]);
        assert_eq!(tags(&format!("r.io/acme/app:1@{d}")), ["r.io/acme/app:1"]);
        assert_eq!(tags("r.io/acme/app"), ["r.io/acme/app:latest"]);
        assert!(tags(&format!("r.io/acme/app@{d}")).is_empty());
    }
}

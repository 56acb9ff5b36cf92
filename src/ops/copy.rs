//! `copy`: an image or a multi-platform index from one registry repository to
//! others, bytes and digests unchanged (e.g. re-seeding a backup registry
//! that missed a push).
//!
//! The source is a [`RegistryImage`] handed to the same [`Pusher`] as a
//! layout (HEAD first, each blob at most once per destination registry,
//! mounts within a registry, manifests after blobs, platform manifests by
//! digest, the index or tag last); its repository is the first mount
//! source on its own registry. A blob is downloaded only when some
//! destination registry lacks it and cannot mount it, at most once per run,
//! streamed into the blob cache (checked against its digest) and uploaded
//! from that file.
//!
//! Before anything is fetched, the source is resolved with HEAD and every
//! destination is HEADed: when all already name the source digest the
//! image is not copied again (no manifest GET, which Docker Hub would count
//! as a pull).
//!
//! Then, unless asked not to, what is attached to each copied manifest
//! (signatures, SBOMs, provenance: the source's referrers and cosign's
//! legacy tags) is carried to every destination that holds the image
//! ([`carry`]), also when the image was there already: that is how a backup
//! that got the image without its artifacts is mended. For an index that
//! every destination holds, this GETs the index once from the source to
//! find its platform manifests.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, Context as _, Result};
use serde::Serialize;

use crate::cache::BlobCache;
use crate::error::{bad_input, Failure, Failures};
use crate::image::remote::{parse_json, RegistryImage, RemoteBlobs};
use crate::image::{parse_document, read_config, walk, Budget, ImageSource as _};
use crate::oci::{self, Descriptor, Digest, Platform};
use crate::progress::{Level, SharedReporter};
use crate::push::{pin_untagged, PushError, PushOptions, PushReport, PushTarget, Pusher};
use crate::registry::{Client, Reference};
use crate::supply::attach::AttachOptions;
use crate::supply::carry::{carry, CarryReport};
use crate::supply::evidence::pushed_repositories;

/// How to copy.
#[derive(Clone, Debug, Default)]
pub struct CopyOptions {
    /// Client settings, chunk size and extra mount sources (the source
    /// repository is always tried first).
    pub push: PushOptions,
    /// Copy only this platform's manifest out of an index (`--platform`);
    /// the destinations then name that manifest. `None`: everything (`--all`).
    pub platform: Option<Platform>,
    /// The blob cache (`--cache-dir`); `None`: the default location.
    pub cache_dir: Option<PathBuf>,
    /// Copy the image only, not what is attached to it (`--no-referrers`).
    pub no_referrers: bool,
    /// Copy to destinations that already name the digest too, asking each
    /// for every blob (`--repair`): puts back a blob a registry lost.
    pub repair: bool,
    /// How artifacts are written on the destinations (`--cosign-tags`).
    pub attach: AttachOptions,
}

/// A destination as given: a reference, or (`REPO@`, a trailing `@` as
/// `push --to` takes it) a repository the image goes to by digest only,
/// writing no tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyDestination {
    pub reference: Reference,
    /// `REPO@`: by digest only, whatever the source's tag.
    pub by_digest: bool,
}

impl CopyDestination {
    /// Parse `REGISTRY/REPO[:TAG][@DIGEST]`, or `REGISTRY/REPO@` (errors are
    /// bad input).
    pub fn parse(s: &str) -> Result<CopyDestination> {
        if s.ends_with('@') {
            let t = PushTarget::parse(s)?;
            return Ok(CopyDestination {
                reference: t.reference,
                by_digest: true,
            });
        }
        Ok(CopyDestination {
            reference: Reference::parse(s)?,
            by_digest: false,
        })
    }

    /// The reference written to: `REPO@` as it is, anything else through
    /// [`destination_reference`].
    pub fn resolve(&self, src: &Reference) -> Reference {
        if self.by_digest {
            self.reference.clone()
        } else {
            destination_reference(src, &self.reference)
        }
    }
}

/// The name a destination is reported by: as written to, or for one
/// without tag or digest (by digest only) `REPO@DIGEST`, the reference that
/// names it, as `push` reports such a target.
fn shown(d: &Reference, digest: &Digest) -> String {
    if d.tag.is_none() && d.digest.is_none() {
        format!("{d}@{digest}")
    } else {
        d.to_string()
    }
}

/// Where a destination without tag or digest points: the source's tag
/// (`latest` for a source named without one, as it is resolved), or (for a
/// source given by digest only) no tag at all, the image being pushed by
/// digest. So `DST` and `DST:latest` beside it are one destination.
pub fn destination_reference(src: &Reference, dst: &Reference) -> Reference {
    let mut d = dst.clone();
    if d.tag.is_none() && d.digest.is_none() {
        d.tag = match (&src.tag, &src.digest) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
    }
    d
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
    /// True when every destination already named the digest: no blob or
    /// manifest of the image sent (artifacts may still be, see `referrers`).
    pub up_to_date: bool,
    /// Every destination, in the order given, and whether it names the
    /// digest now: also when it was up to date and nothing was sent.
    pub destinations: Vec<Destination>,
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
    /// What is attached to the copied manifests, carried along (absent
    /// with `--no-referrers`).
    pub referrers: Option<CarryReport>,
}

/// One destination of a copy.
#[derive(Clone, Debug, Serialize)]
pub struct Destination {
    /// The destination as written to (`registry/repo:tag`, or
    /// `registry/repo@digest` when the image goes by digest only).
    pub reference: String,
    pub registry: String,
    /// True when the destination names [`CopyReport::digest`] after the run.
    pub ok: bool,
    /// The digest it names (when ok).
    pub digest: Option<Digest>,
    /// True when it named the digest before the copy (checked by HEAD).
    pub up_to_date: bool,
    /// Why it does not (when not ok).
    pub error: Option<PushError>,
}

impl Destination {
    /// Each of `dests`, with `held` saying whether it named `digest` before
    /// the copy, and what `push` (when there was one) says of it.
    fn all(
        dests: &[Reference],
        held: &[bool],
        digest: &Digest,
        push: Option<&PushReport>,
    ) -> Vec<Destination> {
        dests
            .iter()
            .zip(held)
            .map(|(d, &up_to_date)| {
                let reference = shown(d, digest);
                let pushed = push.and_then(|p| p.targets.iter().find(|t| t.reference == reference));
                let (ok, error) = match (pushed, up_to_date) {
                    (Some(t), _) => (t.ok, t.error.clone()),
                    (None, held) => (held, None),
                };
                Destination {
                    registry: d.registry.clone(),
                    reference,
                    ok,
                    digest: ok.then(|| digest.clone()),
                    up_to_date,
                    error,
                }
            })
            .collect()
    }
}

impl CopyReport {
    pub fn succeeded(&self) -> bool {
        self.push.as_ref().is_none_or(|p| p.succeeded())
            && self.referrers.as_ref().is_none_or(|r| r.ok)
    }

    pub fn error(&self) -> Option<anyhow::Error> {
        let push = self.push.as_ref().and_then(|p| p.error());
        let referrers = self.referrers.as_ref().and_then(|r| r.error());
        match (push, referrers) {
            (Some(p), Some(r)) => Some(anyhow::Error::new(Failures::new(
                format!("{p}; {r}"),
                vec![Failure::from(p), Failure::from(r)],
            ))),
            (p, r) => p.or(r),
        }
    }

    fn up_to_date(
        src: &str,
        d: &Descriptor,
        platform: Option<String>,
        dests: &[Reference],
    ) -> CopyReport {
        CopyReport {
            source: src.to_string(),
            digest: d.digest.clone(),
            media_type: d.media_type.clone(),
            platform,
            up_to_date: true,
            destinations: Destination::all(dests, &vec![true; dests.len()], &d.digest, None),
            manifests: 0,
            blobs: 0,
            blob_bytes: 0,
            blobs_downloaded: 0,
            bytes_downloaded: 0,
            cache_hits: 0,
            push: None,
            referrers: None,
        }
    }
}

/// Copy `source` to `destinations`. Errors are for problems before any
/// destination is written (bad references, source not found, unreadable
/// manifests); destination failures are in the report.
pub async fn copy(
    source: &Reference,
    destinations: &[CopyDestination],
    opts: CopyOptions,
    reporter: SharedReporter,
) -> Result<CopyReport> {
    if destinations.is_empty() {
        return Err(bad_input("copy needs at least one destination"));
    }
    let dests: Vec<Reference> = destinations.iter().map(|d| d.resolve(source)).collect();
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
    let targets = dests.iter().cloned().map(PushTarget::plain).collect();
    let pusher = Pusher::with_env_credentials(targets, opts.push.clone(), reporter.clone()).await?;
    let client = pusher.client().clone();
    let src_name = source.to_string();

    // The source, by HEAD.
    let head = client
        .repo_of(source)
        .head_manifest(&source.object())
        .await
        .with_context(|| format!("resolving {src_name}"))?
        .ok_or_else(|| {
            let hint = match source.digest {
                None => crate::registry::error::missing_tag_hint(&source.name()),
                Some(_) => String::new(),
            };
            anyhow!("{src_name} does not exist (manifest unknown){hint}")
        })?;
    reporter.log(
        Level::Info,
        &format!("{src_name}: {} ({})", head.digest, head.media_type),
    );
    // A source with a tag and a digest is both, as `verify` takes it: the
    // destinations get that tag, so it must name that digest.
    if let (Some(tag), Some(_)) = (&source.tag, &source.digest) {
        let named = client
            .repo_of(source)
            .head_manifest(tag)
            .await
            .with_context(|| format!("resolving the tag of {src_name}"))?;
        if let Some(other) = named.filter(|n| n.digest != head.digest) {
            return Err(bad_input(format!(
                "tag and digest disagree: {src_name}: its tag names {}; name the source \
                 by digest alone ({}@{}) to copy that image",
                other.digest,
                source.name(),
                head.digest
            )));
        }
    }
    let head_desc = Descriptor::new(&head.media_type, head.digest.clone(), head.size);

    let remote_blobs = || -> Result<Arc<RemoteBlobs>> {
        let cache = BlobCache::new(opts.cache_dir.clone())?;
        Ok(Arc::new(RemoteBlobs::new(
            client.clone(),
            cache,
            &source.registry,
            &source.repository,
        )))
    };
    let all_repos = crate::registry::reference::repositories(&dests);
    // What is attached to `subjects`, to `repos` (unless --no-referrers).
    let carry_along =
        |blobs: Arc<RemoteBlobs>, subjects: Vec<Descriptor>, repos: Vec<Reference>| {
            let (pusher, opts, reporter) = (&pusher, &opts, &reporter);
            async move {
                if opts.no_referrers || repos.is_empty() {
                    return Ok::<_, anyhow::Error>(None);
                }
                let done = carry(pusher, &blobs, &subjects, &repos, &opts.attach, reporter).await?;
                Ok(Some(done))
            }
        };

    if opts.platform.is_none() {
        refuse_other_digests(&dests, &head.digest)?;
    }
    // Destinations already there? (Only known before any GET without --platform.)
    let mut held = match opts.platform {
        None => holding(&client, &dests, &head.digest).await,
        Some(_) => vec![false; dests.len()],
    };
    if opts.platform.is_none() && !opts.repair && held.iter().all(|h| *h) {
        reporter.log(
            Level::Info,
            &format!("every destination already names {}", head.digest),
        );
        let mut report = CopyReport::up_to_date(&src_name, &head_desc, None, &dests);
        if !opts.no_referrers {
            let blobs = remote_blobs()?;
            let subjects = with_children(&blobs, &head_desc).await?;
            report.referrers = carry_along(blobs, subjects, all_repos).await?;
        }
        return Ok(report);
    }

    let blobs = remote_blobs()?;
    let whole = RegistryImage::open(blobs.clone(), &head.digest).await?;
    // At hand since the open: no second request.
    let root_bytes = whole.manifest(whole.root()).await?;
    let root_mt = whole.root().media_type.clone();
    // With --platform, the one manifest copied: an index's entry for it, or
    // a single image when it is of that platform.
    let chosen = match (&opts.platform, oci::is_index_media_type(&root_mt)) {
        (Some(want), true) => {
            let index: oci::Index = parse_json(&root_bytes, || {
                format!("index {} of {src_name}", head.digest)
            })?;
            let child = oci::select_platform(&index, want).cloned().ok_or_else(|| {
                bad_input(format!(
                    "{src_name} has no {want} image (it offers: {})",
                    oci::offered_platforms(&index).join(", ")
                ))
            })?;
            Some((want, child))
        }
        (Some(want), false) => {
            let root = whole.root().clone();
            let manifest: oci::Manifest = parse_document(&whole, &root, &root_bytes)?;
            let config = read_config(&whole, &manifest.config, &src_name).await?;
            let config: oci::ImageConfig = parse_document(&whole, &manifest.config, &config)?;
            if !want.matches(&config.platform) {
                return Err(bad_input(format!(
                    "{src_name} is a single {} image, not {want}: copy it without --platform",
                    config.platform
                )));
            }
            Some((want, root))
        }
        (None, _) => None,
    };
    let mut platform_shown = None;
    let image = match chosen {
        Some((want, child)) => {
            refuse_other_digests(&dests, &child.digest)?;
            platform_shown = Some(want.to_string());
            held = holding(&client, &dests, &child.digest).await;
            if !opts.repair && held.iter().all(|h| *h) {
                let mut report = CopyReport::up_to_date(&src_name, &child, platform_shown, &dests);
                report.referrers = carry_along(blobs, vec![child], all_repos).await?;
                return Ok(report);
            }
            whole.with_root(child)
        }
        None => whole,
    };
    let graph = walk(&image)
        .await
        .with_context(|| format!("reading {src_name}"))?;
    graph.warn_left_out(&reporter);
    pusher.start_progress(graph.blob_bytes());
    let mut report = pusher.push_graph(&image, &graph).await;
    pin_untagged(&mut report);
    let counts = blobs.counts();
    let subjects = graph.manifests.iter().map(|(d, _)| d.clone()).collect();
    let referrers = carry_along(blobs, subjects, pushed_repositories(&report)).await?;
    let root = image.root();
    Ok(CopyReport {
        source: src_name,
        digest: root.digest.clone(),
        media_type: graph.root.media_type.clone(),
        platform: platform_shown,
        up_to_date: false,
        destinations: Destination::all(&dests, &held, &root.digest, Some(&report)),
        manifests: graph.manifests.len(),
        blobs: graph.blobs.len(),
        blob_bytes: graph.blob_bytes(),
        blobs_downloaded: counts.blobs_downloaded,
        bytes_downloaded: counts.bytes_downloaded,
        cache_hits: counts.blobs_cached,
        push: Some(report),
        referrers,
    })
}

/// A destination that names a digest (`DST@sha256:...`) must name the one
/// copied: another could never be written there, so it is bad input,
/// refused before anything is sent.
fn refuse_other_digests(dests: &[Reference], digest: &Digest) -> Result<()> {
    match dests
        .iter()
        .find(|d| d.digest.as_ref().is_some_and(|p| p != digest))
    {
        Some(d) => Err(bad_input(format!(
            "destination {d} names another digest than the image copied, {digest}: \
             give it without a digest, or with that one"
        ))),
        None => Ok(()),
    }
}

/// `root` and, when it is an index, the manifests it lists (the index
/// fetched from the source), children first: within a [`Budget`], as the
/// walk of the image would take them, so that an index listing more than
/// an image may have is refused here too.
async fn with_children(blobs: &Arc<RemoteBlobs>, root: &Descriptor) -> Result<Vec<Descriptor>> {
    let mut out = Vec::new();
    if oci::is_index_media_type(&root.media_type) {
        let image = RegistryImage::open(blobs.clone(), &root.digest).await?;
        let bytes = image.manifest(image.root()).await?;
        let index: oci::Index = parse_json(&bytes, || format!("index {}", root.digest))?;
        let mut budget = Budget::default();
        for d in std::iter::once(image.root()).chain(&index.manifests) {
            budget.admit(d, &image.locate(d))?;
        }
        out.extend(index.manifests);
    }
    out.push(root.clone());
    Ok(out)
}

/// Whether each destination already names `digest` (HEAD each; a
/// destination without tag is checked by digest), in order.
async fn holding(client: &Client, dests: &[Reference], digest: &Digest) -> Vec<bool> {
    futures_util::future::join_all(dests.iter().map(|d| {
        let what = d.tag.clone().unwrap_or_else(|| digest.to_string());
        async move {
            if d.digest.as_ref().is_some_and(|p| p != digest) {
                return false;
            }
            matches!(
                client.repo_of(d).head_manifest(&what).await,
                Ok(Some(info)) if &info.digest == digest
            )
        }
    }))
    .await
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
        let untagged = Reference::parse("ghcr.io/acme/r2d").unwrap();
        let dst = Reference::parse("docker.io/acme/r2d").unwrap();
        let d = destination_reference(&untagged, &dst);
        assert_eq!(d.to_string(), "docker.io/acme/r2d:latest");
        // `REPO@`: by digest only, whatever the source's tag; reported by
        // the digest it names.
        let by_digest = CopyDestination::parse("docker.io/acme/r2d@").unwrap();
        let d = by_digest.resolve(&src);
        assert!(d.tag.is_none() && d.digest.is_none(), "{d}");
        let digest = Digest::of(b"x");
        assert_eq!(shown(&d, &digest), format!("docker.io/acme/r2d@{digest}"));
        for bad in ["docker.io/acme/r2d:1@", "docker.io/Acme/r2d@"] {
            let e = CopyDestination::parse(bad).unwrap_err();
            assert!(crate::error::is_bad_input(&e), "{bad}: {e:#}");
        }
        let plain = CopyDestination::parse("docker.io/acme/r2d").unwrap();
        assert_eq!(plain.resolve(&src).to_string(), "docker.io/acme/r2d:1.4.0");
    }
}

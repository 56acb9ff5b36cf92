//! Carrying what is attached to an image along with a copy of it (`copy`):
//! for each copied manifest, the artifacts the source lists for it (the
//! referrers API or the `sha256-<hex>` tag, read by [`referrers::listed`])
//! and cosign's legacy `.sig` / `.att` tags, written on every destination
//! as a push's evidence is ([`list_in_repos`]): each blob through the
//! copy's [`Pusher`] (HEAD, then a mount or one upload per registry; the
//! bytes fetched from the source, once, only when some registry lacks
//! them), then the manifests by digest, the referrers tag where the
//! destination has no referrers API, and the legacy tags. A listed artifact
//! that cannot be read at the source is a note and passed over, as
//! `verify` does. All the artifacts of one carry are read within one
//! [`Budget`], as one image's manifests are: past it, the subject being
//! read fails (bad input) and the subjects after it are not read. Their
//! blobs are carried up to [`referrers::MAX_PAYLOAD_BYTES`] and
//! [`referrers::MAX_PAYLOADS`] blobs in all, each distinct blob counted once
//! (by its declared size) before any is fetched:
//! an artifact that would pass it is passed over with a note (as `verify`
//! refuses it), and the image is copied without it.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::{anyhow, Context as _, Result};
use futures_util::stream::{self, StreamExt as _};
use serde::Serialize;

use super::artifact::Kind;
use super::attach::{list_in_repos, AttachOptions, Attached, Listing, RepoReport};
use super::referrers::{self, classify, passed_over, unread_note, Mode, PayloadBytes};
use crate::error::{Failure, Failures};
use crate::image::remote::{RegistryImage, RemoteBlobs};
use crate::image::{walk_within, Budget, Graph};
use crate::oci::{self, Descriptor, Digest, Manifest};
use crate::progress::{Level, SharedReporter};
use crate::push::{BlobBytes, Pusher};
use crate::registry::Reference;

/// What was carried for one copied manifest.
#[derive(Clone, Debug, Serialize)]
pub struct Carried {
    /// The copied manifest the artifacts are about.
    pub subject: Digest,
    /// Where the source lists them (`referrers-api` or `tag-schema`).
    pub source_mode: Option<Mode>,
    /// The artifacts read at the source and written on the destinations.
    pub artifacts: Vec<Attached>,
    /// cosign's legacy tags found at the source; their signatures and
    /// attestations are kept in the same tags on the destinations.
    pub cosign_tags: Vec<String>,
    /// Listed artifacts that could not be read at the source, passed over.
    pub notes: Vec<String>,
    pub ok: bool,
    /// Why the source's artifacts could not be listed (serialised as its
    /// text).
    pub error: Option<Failure>,
    /// Per destination repository (none when the source has nothing).
    pub repositories: Vec<RepoReport>,
}

/// What [`carry`] did.
#[derive(Clone, Debug, Serialize)]
pub struct CarryReport {
    pub ok: bool,
    /// Artifacts carried (each manifest once, over all subjects).
    pub artifacts: usize,
    /// Artifact blobs downloaded from the source, and their bytes.
    pub blobs_downloaded: u64,
    pub bytes_downloaded: u64,
    pub subjects: Vec<Carried>,
}

impl CarryReport {
    /// The error naming every subject and repository that failed: a
    /// [`Failures`] holding each of their errors.
    pub fn error(&self) -> Option<anyhow::Error> {
        let mut text = Vec::new();
        let mut failed = Vec::new();
        for c in &self.subjects {
            if let Some(e) = &c.error {
                text.push(format!("{}: {e}", c.subject));
                failed.push(e.clone());
            }
            for e in c.repositories.iter().filter_map(|r| r.error.as_ref()) {
                text.push(e.to_string());
                failed.push(e.clone());
            }
        }
        (!failed.is_empty()).then(|| {
            let message = format!("carrying the artifacts failed: {}", text.join("; "));
            anyhow::Error::new(Failures::new(message, failed))
        })
    }
}

/// What the artifacts of one carry have taken: their manifests, and the
/// declared bytes of their blobs (each distinct blob once).
#[derive(Default)]
struct Taken {
    budget: Budget,
    blobs: HashSet<Digest>,
    bytes: PayloadBytes,
}

impl Taken {
    /// Take the blobs of `found` (`what`, attached to `image`) not taken
    /// yet, by their declared sizes; when they would pass
    /// [`referrers::MAX_PAYLOAD_BYTES`], or their number
    /// [`referrers::MAX_PAYLOADS`], take none and give the note that passes
    /// it over.
    fn blobs_of(&mut self, image: &str, what: &str, found: &Found) -> Result<(), String> {
        let mut new = HashSet::new();
        let bytes = crate::oci::total_size(
            (found.blobs.iter())
                .filter(|b| !self.blobs.contains(&b.digest) && new.insert(b.digest.clone()))
                .map(|b| b.size),
        );
        let taken = if self.blobs.len() + new.len() > referrers::MAX_PAYLOADS {
            Err(format!(
                "{what} lists {} blobs not carried yet, which would take those carried of \
                 {image} past the {} boxwright carries of one image",
                new.len(),
                referrers::MAX_PAYLOADS
            ))
        } else {
            self.bytes.take(image, what, bytes)
        };
        taken.map_err(|why| {
            format!(
                "{why}: not carried, none of its blobs fetched; the image is copied \
                 without it: check what the source attaches to it, and attach anew \
                 on the destinations what belongs there (`boxwright sign`, `boxwright attest`)"
            )
        })?;
        self.blobs.extend(new);
        Ok(())
    }
}

/// An artifact read at the source: how it is written, and where its blobs are.
struct Found {
    listing: Listing,
    image: RegistryImage,
    blobs: Vec<Descriptor>,
}

/// Write on every repository of `repos` what the source of `source` lists
/// for each of `subjects`, through `pusher` (whose targets cover `repos`).
pub async fn carry(
    pusher: &Pusher,
    source: &Arc<RemoteBlobs>,
    subjects: &[Descriptor],
    repos: &[Reference],
    opts: &AttachOptions,
    reporter: &SharedReporter,
) -> Result<CarryReport> {
    let before = source.counts();
    let dir = tempfile::Builder::new()
        .prefix("boxwright-carry-")
        .tempdir()?;
    let mut out = Vec::new();
    let mut taken = Taken::default();
    let mut spent: Option<Failure> = None;
    for subject in subjects {
        let mut c = Carried {
            subject: subject.digest.clone(),
            source_mode: None,
            artifacts: Vec::new(),
            cosign_tags: Vec::new(),
            notes: Vec::new(),
            ok: false,
            error: None,
            repositories: Vec::new(),
        };
        let read = match &spent {
            Some(f) => Err(f.clone()),
            None => read_source(source, &subject.digest, &mut c, &mut taken)
                .await
                .map_err(Failure::from),
        };
        match read {
            Err(e) => {
                if taken.budget.refused().is_some() {
                    spent = Some(e.clone());
                }
                c.error = Some(e);
            }
            Ok((found, legacy)) => {
                if !found.is_empty() || !legacy.is_empty() {
                    push_blobs(pusher, &found, &legacy).await;
                    let listings: Vec<Listing> = found.iter().map(|f| f.listing.clone()).collect();
                    let legacy_layers: Vec<(&'static str, Vec<Descriptor>)> = legacy
                        .iter()
                        .map(|(s, f)| (*s, f.listing.layers.clone()))
                        .collect();
                    c.repositories = list_in_repos(
                        pusher,
                        repos,
                        subject,
                        &listings,
                        &legacy_layers,
                        opts,
                        dir.path(),
                    )
                    .await;
                }
                c.ok = c.repositories.iter().all(|r| r.ok);
            }
        }
        log(&c, reporter);
        out.push(c);
    }
    let after = source.counts();
    let mut manifests: Vec<&Digest> = out
        .iter()
        .flat_map(|c| c.artifacts.iter().map(|a| &a.digest))
        .collect();
    manifests.sort();
    manifests.dedup();
    Ok(CarryReport {
        ok: out.iter().all(|c| c.ok),
        artifacts: manifests.len(),
        blobs_downloaded: after.blobs_downloaded - before.blobs_downloaded,
        bytes_downloaded: after.bytes_downloaded - before.bytes_downloaded,
        subjects: out,
    })
}

type Legacy = Vec<(&'static str, Found)>;

/// The artifacts listed for `subject` at the source and its legacy tags,
/// each read (manifests fetched, blobs not yet) within `taken`'s budget
/// (one that does not fit fails the subject), and kept when its blobs fit
/// the bytes left (one that does not is a note).
async fn read_source(
    source: &Arc<RemoteBlobs>,
    subject: &Digest,
    c: &mut Carried,
    taken: &mut Taken,
) -> Result<(Vec<Found>, Legacy)> {
    let client = source.client();
    let (reg, repo) = source.source();
    let (mode, listed) = referrers::listed(client, reg, repo, subject)
        .await
        .with_context(|| format!("listing what is attached to {subject} in {reg}/{repo}"))?;
    c.source_mode = Some(mode);
    let image = format!("{reg}/{repo}@{subject}");
    let mut found = Vec::new();
    for d in listed {
        let what = format!("artifact {} in {}", d.digest, mode.name());
        match read_one(source, &d, &mut taken.budget).await {
            Ok(f) => {
                if let Err(note) = taken.blobs_of(&image, &what, &f) {
                    c.notes.push(note);
                    continue;
                }
                c.artifacts.push(Attached {
                    kind: f.listing.kind,
                    digest: d.digest.clone(),
                    artifact_type: d.artifact_type.clone().unwrap_or_default(),
                });
                found.push(f);
            }
            Err(e) if taken.budget.refused().is_some() => return Err(e),
            Err(e) => c.notes.push(unread_note(&d.digest, mode, &e)),
        }
    }
    let mut legacy = Vec::new();
    for (suffix, tag, d) in referrers::legacy_tags(client, reg, repo, subject).await? {
        match read_one(source, &d, &mut taken.budget).await {
            Ok(mut f) => {
                // The tag's config is written anew on each destination
                // with the layers it then lists; only the layers are sent.
                f.blobs = f.listing.layers.clone();
                if let Err(note) = taken.blobs_of(&image, &format!("tag {tag}"), &f) {
                    c.notes.push(note);
                    continue;
                }
                c.cosign_tags.push(tag);
                legacy.push((suffix, f));
            }
            Err(e) if taken.budget.refused().is_some() => return Err(e),
            Err(e) => c.notes.push(passed_over(&tag, &e)),
        }
    }
    Ok((found, legacy))
}

/// One manifest at the source (an artifact, or a legacy tag's manifest) and
/// what it takes with it, within `budget`.
async fn read_one(source: &Arc<RemoteBlobs>, d: &Descriptor, budget: &mut Budget) -> Result<Found> {
    let root = Descriptor::new(&d.media_type, d.digest.clone(), d.size);
    let image = RegistryImage::new(source.clone(), root);
    let graph: Graph = walk_within(&image, budget).await?;
    let (kind, layers) = match graph.root_bytes() {
        Some(bytes) if !oci::is_index_media_type(&graph.root.media_type) => {
            let m: Manifest = serde_json::from_slice(bytes)
                .map_err(|e| anyhow!("{} is not an image manifest: {e}", d.digest))?;
            let artifact_type = d
                .artifact_type
                .clone()
                .or(m.artifact_type)
                .unwrap_or(m.config.media_type);
            let kind = m
                .layers
                .first()
                .map_or(Kind::Other, |l| classify(&artifact_type, l).0);
            (kind, m.layers)
        }
        _ => (Kind::Other, Vec::new()),
    };
    Ok(Found {
        listing: Listing {
            kind,
            descriptor: d.clone(),
            manifests: graph.manifests.clone(),
            layers,
            only: None,
        },
        blobs: graph.blobs.clone(),
        image,
    })
}

/// Every blob of what was found, through the pusher (HEAD first, each once
/// per registry), a few at a time.
async fn push_blobs(pusher: &Pusher, found: &[Found], legacy: &Legacy) {
    let jobs = pusher.client().options().jobs_per_registry.max(1) * 2;
    let all = found
        .iter()
        .chain(legacy.iter().map(|(_, f)| f))
        .flat_map(|f| f.blobs.iter().map(move |b| (f, b)));
    stream::iter(all)
        .for_each_concurrent(jobs, |(f, b)| {
            pusher.push_blob_from(b, BlobBytes::Source(&f.image))
        })
        .await;
}

/// One line per destination, and the notes.
fn log(c: &Carried, reporter: &SharedReporter) {
    for n in &c.notes {
        reporter.log(Level::Warn, &format!("{}: {n}", c.subject));
    }
    if let Some(e) = &c.error {
        reporter.log(Level::Warn, &format!("{}: {e}", c.subject));
    }
    for r in &c.repositories {
        match &r.error {
            None => {
                let kinds: Vec<&str> = r.artifacts.iter().map(|a| a.kind.name()).collect();
                let mut what = kinds.join(", ");
                if !c.cosign_tags.is_empty() {
                    if !what.is_empty() {
                        what.push_str("; ");
                    }
                    what.push_str(&c.cosign_tags.join(", "));
                }
                reporter.log(
                    Level::Info,
                    &format!(
                        "{}/{}: carried {what} of {} ({})",
                        r.registry,
                        r.repository,
                        c.subject,
                        r.mode.map_or("", |m| m.name())
                    ),
                );
            }
            Some(e) => reporter.log(Level::Warn, &format!("carrying failed: {e}")),
        }
    }
}

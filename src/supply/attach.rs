//! Attaching artifacts to a pushed image on every target repository.
//!
//! Blobs go through the image's [`Pusher`] (HEAD -> mount -> upload, once
//! per registry). Then, per repository: the artifact manifests by digest;
//! then, where the registry answers the referrers API, nothing more (it
//! lists manifests by their `subject` itself); elsewhere the referrers tag
//! schema: the index tagged `sha256-<hex>` is read, what other tools listed
//! there is kept, ours are added with their `artifactType` and annotations
//! (as the referrers API would show them), and it is written back, only
//! after every artifact it lists is in. On request, cosign's legacy
//! `.sig` / `.att` tags are written as well, for verifiers that read only
//! those. A repository that fails is reported with the registry and the
//! object that failed; no tag is written there.
//!
//! The step after the blobs ([`list_in_repos`]) takes [`Listing`]s, so that
//! `copy` writes artifacts read off another registry the same way.

use std::collections::BTreeSet;

use anyhow::{anyhow, Context as _, Result};
use bytes::Bytes;
use serde::Serialize;
use serde_json::{json, Value};

use super::artifact::{Artifact, Kind};
use super::referrers::{self, fallback_tag, legacy_tag, Mode};
use crate::error::{Failure, Failures};
use crate::image::MemoryImage;
use crate::oci::{canonical_json, Descriptor, Digest, MEDIA_TYPE_INDEX};
use crate::push::{BlobBytes, Pusher};
use crate::registry::{Client, Reference};

/// How to attach.
#[derive(Clone, Debug, Default)]
pub struct AttachOptions {
    /// Also write cosign's legacy `sha256-<hex>.sig` / `.att` tags.
    pub legacy_tags: bool,
}

/// What was attached in one repository.
#[derive(Clone, Debug, Serialize)]
pub struct RepoReport {
    pub registry: String,
    pub repository: String,
    pub ok: bool,
    /// Where the referrers are listed (`referrers-api` or `tag-schema`).
    pub mode: Option<Mode>,
    /// The tags written (the referrers tag, legacy tags).
    pub tags: Vec<String>,
    pub artifacts: Vec<Attached>,
    /// Referrers other tools listed in the referrers tag, kept.
    pub kept: usize,
    /// Why the repository failed, as `REGISTRY/REPO: why` (serialised as
    /// that text); the cause chain is kept.
    pub error: Option<Failure>,
}

/// One artifact in a repository.
#[derive(Clone, Debug, Serialize)]
pub struct Attached {
    pub kind: Kind,
    pub digest: Digest,
    #[serde(rename = "artifactType")]
    pub artifact_type: String,
}

/// What [`attach`] did, per repository.
#[derive(Clone, Debug, Serialize)]
pub struct AttachReport {
    pub subject: Digest,
    pub ok: bool,
    pub repositories: Vec<RepoReport>,
}

impl AttachReport {
    /// The error naming every repository that failed, and saying what was
    /// attached in the others (or that nothing was), or `None`: a
    /// [`Failures`] holding each repository's error, bad input (exit 2)
    /// when one of them is.
    pub fn error(&self) -> Option<anyhow::Error> {
        let failed: Vec<Failure> = self
            .repositories
            .iter()
            .filter_map(|r| r.error.clone())
            .collect();
        (!failed.is_empty()).then(|| {
            let message = format!(
                "attaching to {} failed: {}; {}",
                self.subject,
                failed
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
                self.done()
            );
            anyhow::Error::new(Failures::new(message, failed))
        })
    }

    /// What was attached where: `attached in REPO (KINDS), ...`, or that
    /// nothing was.
    pub fn done(&self) -> String {
        let done: Vec<String> = self
            .repositories
            .iter()
            .filter(|r| r.ok)
            .map(|r| {
                let kinds: Vec<&str> = r.artifacts.iter().map(|a| a.kind.name()).collect();
                format!("{}/{} ({})", r.registry, r.repository, kinds.join(", "))
            })
            .collect();
        if done.is_empty() {
            "nothing was attached in any repository".to_string()
        } else {
            format!("attached in {} only", done.join(", "))
        }
    }
}

/// An artifact as it is written in a repository once its blobs are in:
/// its manifests by digest, then listed where readers look. Made from an
/// [`Artifact`] of this run, or from one read off another registry (`copy`).
#[derive(Clone, Debug)]
pub struct Listing {
    pub kind: Kind,
    /// The manifest's descriptor as a referrers list shows it (with its
    /// `artifactType` and annotations).
    pub descriptor: Descriptor,
    /// The manifests to store by digest, children first, its own last.
    pub manifests: Vec<(Descriptor, Bytes)>,
    /// Its payload layers (what cosign's legacy tags list).
    pub layers: Vec<Descriptor>,
    /// Only for this repository (`REGISTRY/REPO`), as [`Artifact::only`].
    pub only: Option<String>,
}

impl Listing {
    pub fn digest(&self) -> &Digest {
        &self.descriptor.digest
    }

    fn goes_to(&self, registry: &str, repository: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| *o == format!("{registry}/{repository}"))
    }
}

impl From<&Artifact> for Listing {
    fn from(a: &Artifact) -> Listing {
        Listing {
            kind: a.kind,
            descriptor: a.descriptor.clone(),
            manifests: vec![(a.descriptor.clone(), a.manifest.clone())],
            layers: vec![a.layer.clone()],
            only: a.only.clone(),
        }
    }
}

/// Layers cosign's legacy tags are to list whatever the options say, by
/// suffix (`sig`, `att`): those read from another registry's legacy tags.
pub type LegacyLayers = [(&'static str, Vec<Descriptor>)];

/// Attach `artifacts` (all about `subject`) in every repository of `repos`
/// through `pusher`, whose targets must cover those repositories.
pub async fn attach(
    pusher: &Pusher,
    repos: &[Reference],
    subject: &Descriptor,
    artifacts: &[Artifact],
    opts: &AttachOptions,
) -> Result<AttachReport> {
    let dir = tempfile::Builder::new()
        .prefix("boxwright-attach-")
        .tempdir()?;
    let images = artifacts
        .iter()
        .map(|a| a.image(dir.path()))
        .collect::<Result<Vec<MemoryImage>>>()?;
    let uploads = artifacts.iter().zip(&images).flat_map(|(a, img)| {
        [super::artifact::empty_config(), a.layer.clone()]
            .into_iter()
            .map(move |d| async move {
                let bytes = BlobBytes::Source(img);
                match a.only.as_deref().and_then(|o| Reference::parse(o).ok()) {
                    Some(only) => pusher.push_blob_to(&only.registry, &d, bytes).await,
                    None => pusher.push_blob_from(&d, bytes).await,
                }
            })
    });
    futures_util::future::join_all(uploads).await;
    let listings: Vec<Listing> = artifacts.iter().map(Listing::from).collect();
    let repositories =
        list_in_repos(pusher, repos, subject, &listings, &[], opts, dir.path()).await;
    Ok(AttachReport {
        subject: subject.digest.clone(),
        ok: repositories.iter().all(|r| r.ok),
        repositories,
    })
}

/// The step of [`attach`] after the blobs: in every repository of `repos`,
/// the manifests of `listings` (those that go there) by digest, then the
/// referrers tag where the registry has no referrers API, then cosign's
/// legacy tags (with `legacy`'s layers, and with every signature and
/// attestation when `opts` asks). `dir` holds the legacy tags' configs.
pub async fn list_in_repos(
    pusher: &Pusher,
    repos: &[Reference],
    subject: &Descriptor,
    listings: &[Listing],
    legacy: &LegacyLayers,
    opts: &AttachOptions,
    dir: &std::path::Path,
) -> Vec<RepoReport> {
    let per_repo = repos.iter().map(|r| async move {
        let mine: Vec<&Listing> = listings
            .iter()
            .filter(|a| a.goes_to(&r.registry, &r.repository))
            .collect();
        let mut report = RepoReport {
            registry: r.registry.clone(),
            repository: r.repository.clone(),
            ok: false,
            mode: None,
            tags: Vec::new(),
            artifacts: mine
                .iter()
                .map(|a| Attached {
                    kind: a.kind,
                    digest: a.digest().clone(),
                    artifact_type: a.descriptor.artifact_type.clone().unwrap_or_default(),
                })
                .collect(),
            kept: 0,
            error: None,
        };
        let done = in_repo(pusher, r, subject, &mine, legacy, opts, dir, &mut report).await;
        match done {
            Ok(()) => report.ok = true,
            Err(e) => {
                let e = e.context(format!("{}/{}", r.registry, r.repository));
                report.error = Some(Failure::from(e));
            }
        }
        report
    });
    futures_util::future::join_all(per_repo).await
}

#[allow(clippy::too_many_arguments)]
async fn in_repo(
    pusher: &Pusher,
    r: &Reference,
    subject: &Descriptor,
    mine: &[&Listing],
    legacy_layers: &LegacyLayers,
    opts: &AttachOptions,
    dir: &std::path::Path,
    report: &mut RepoReport,
) -> Result<()> {
    let client = pusher.client();
    let (reg, repo) = (r.registry.as_str(), r.repository.as_str());
    if let Some(e) = pusher.registry_failure(reg) {
        return Err(anyhow::Error::new(e).context("the artifact blobs could not be stored"));
    }
    for a in mine {
        for (d, bytes) in &a.manifests {
            put_once(client, reg, repo, &d.digest, bytes, &d.media_type)
                .await
                .with_context(|| {
                    format!(
                        "the registry refused the {} artifact manifest {}",
                        a.kind.name(),
                        d.digest
                    )
                })?;
        }
    }
    let api = referrers::referrers_api(client, reg, repo, &subject.digest).await?;
    if api.is_some() {
        report.mode = Some(Mode::ReferrersApi);
    } else {
        report.mode = Some(Mode::TagSchema);
        let tag = fallback_tag(&subject.digest);
        let existing = referrers::tagged(client, reg, repo, &tag).await?;
        let descriptors: Vec<&Descriptor> = mine.iter().map(|a| &a.descriptor).collect();
        let (index, kept) = merge_index(existing, &descriptors)?;
        report.kept = kept;
        if let Some(bytes) = index {
            client
                .repo(reg, repo)
                .put_manifest(&tag, Bytes::from(bytes), MEDIA_TYPE_INDEX)
                .await
                .map_err(|e| anyhow!("writing the referrers tag {tag}: {e}"))?;
        }
        report.tags.push(tag);
    }
    let mut tags: Vec<(&str, Vec<&Descriptor>)> = vec![("sig", Vec::new()), ("att", Vec::new())];
    if opts.legacy_tags {
        for a in mine {
            for layer in &a.layers {
                if a.kind == Kind::Signature {
                    tags[0].1.push(layer);
                }
                if layer.media_type == super::MEDIA_TYPE_DSSE {
                    tags[1].1.push(layer);
                }
            }
        }
    }
    for (suffix, layers) in legacy_layers {
        if let Some((_, into)) = tags.iter_mut().find(|(s, _)| s == suffix) {
            for l in layers {
                // The whole descriptor: layers of two keys share a digest.
                if !into.contains(&l) {
                    into.push(l);
                }
            }
        }
    }
    for (suffix, layers) in tags {
        if layers.is_empty() {
            continue;
        }
        let tag = legacy_tag(&subject.digest, suffix);
        super::legacy::write(pusher, r, &tag, &layers, dir).await?;
        report.tags.push(tag);
    }
    Ok(())
}

/// PUT a manifest by digest unless the repository has it.
async fn put_once(
    client: &Client,
    reg: &str,
    repo: &str,
    digest: &Digest,
    bytes: &Bytes,
    media_type: &str,
) -> Result<()> {
    let present = client
        .repo(reg, repo)
        .head_manifest(digest.as_str())
        .await?;
    if present.is_none_or(|p| &p.digest != digest) {
        client
            .repo(reg, repo)
            .put_manifest(digest.as_str(), bytes.clone(), media_type)
            .await?;
    }
    Ok(())
}

/// The referrers index with the descriptors `mine` added to `existing` (whose entries, and
/// their fields, are kept as they are). `None` when nothing changes; also
/// how many entries of others were kept.
pub fn merge_index(
    existing: Option<Value>,
    mine: &[&Descriptor],
) -> Result<(Option<Vec<u8>>, usize)> {
    let mut index = match existing {
        Some(v) if v.get("manifests").is_some_and(Value::is_array) => v,
        Some(_) => {
            return Err(anyhow!(
                "the referrers tag holds something that is not an image index; not overwriting it"
            ))
        }
        None => json!({"schemaVersion": 2, "mediaType": MEDIA_TYPE_INDEX, "manifests": []}),
    };
    let list = index["manifests"]
        .as_array_mut()
        .ok_or_else(|| anyhow!("internal: index without manifests"))?;
    let present: BTreeSet<String> = list
        .iter()
        .filter_map(|d| d["digest"].as_str().map(str::to_string))
        .collect();
    let ours: BTreeSet<String> = mine.iter().map(|d| d.digest.to_string()).collect();
    let kept = present.difference(&ours).count();
    let mut changed = false;
    let mut added = BTreeSet::new();
    for d in mine {
        if !present.contains(d.digest.as_str()) && added.insert(&d.digest) {
            list.push(serde_json::to_value(d)?);
            changed = true;
        }
    }
    Ok((changed.then(|| canonical_json(&index)), kept))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::MEDIA_TYPE_MANIFEST;
    use crate::push::PushError;
    use crate::registry::{ErrorKind, RegistryError};
    use crate::supply::sign;

    fn failed(repository: &str, e: anyhow::Error) -> RepoReport {
        RepoReport {
            registry: "r".into(),
            repository: repository.into(),
            ok: false,
            mode: None,
            tags: Vec::new(),
            artifacts: Vec::new(),
            kept: 0,
            error: Some(Failure::from(e.context(format!("r/{repository}")))),
        }
    }

    #[test]
    fn a_repository_failed_on_a_broken_auth_file_is_bad_input() {
        let broken = RegistryError::new(
            Default::default(),
            ErrorKind::Credentials("auth file is not JSON".into()),
        );
        let blobs = anyhow::Error::new(PushError::Registry(broken.clone()))
            .context("the artifact blobs could not be stored");
        let report = AttachReport {
            subject: Digest::of(b"image"),
            ok: false,
            repositories: vec![
                failed("a", anyhow!("the registry refused it")),
                failed("b", blobs),
            ],
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(
            json["repositories"][1]["error"],
            format!("r/b: the artifact blobs could not be stored: {broken}").as_str()
        );
        let err = report.error().unwrap();
        assert_eq!(
            err.to_string(),
            format!(
                "attaching to {} failed: r/a: the registry refused it; {}; \
                 nothing was attached in any repository",
                report.subject,
                json["repositories"][1]["error"].as_str().unwrap()
            )
        );
        assert!(crate::error::is_bad_input(&err));
        assert!(err.chain().any(|e| e.is::<PushError>()));
        assert!(err
            .chain()
            .find_map(|e| e.downcast_ref::<RegistryError>())
            .is_some_and(RegistryError::is_bad_input));
    }

    #[test]
    fn merging_keeps_the_entries_of_others_and_adds_ours_once() {
        let subject = Descriptor::of_bytes(MEDIA_TYPE_MANIFEST, b"image");
        let st = sign::statement(
            &[],
            &subject.digest,
            "https://slsa.dev/provenance/v1",
            json!({}),
        );
        let ours = sign::attestation(None, &subject, &st, None);
        let foreign = json!({"mediaType": MEDIA_TYPE_MANIFEST, "digest": Digest::of(b"f").to_string(), "size": 9, "artifactType": "application/x-other", "data": "e30="});
        let existing =
            json!({"schemaVersion": 2, "mediaType": MEDIA_TYPE_INDEX, "manifests": [foreign]});
        let (bytes, kept) = merge_index(Some(existing), &[&ours.descriptor]).unwrap();
        assert_eq!(kept, 1);
        let merged: Value = serde_json::from_slice(&bytes.unwrap()).unwrap();
        assert_eq!(
            merged["manifests"][0], foreign,
            "kept as it was, unknown fields too"
        );
        assert_eq!(
            merged["manifests"][1]["artifactType"],
            "application/vnd.in-toto+json"
        );
        assert_eq!(
            merged["manifests"][1]["annotations"]["predicateType"],
            "https://slsa.dev/provenance/v1",
            "annotations pulled up into the index"
        );
        let (again, _) = merge_index(Some(merged), &[&ours.descriptor]).unwrap();
        assert!(again.is_none(), "nothing to write the second time");
        assert!(merge_index(Some(json!({"layers": []})), &[&ours.descriptor]).is_err());
        let (fresh, kept) = merge_index(None, &[&ours.descriptor]).unwrap();
        assert_eq!(kept, 0);
        assert!(fresh.is_some());
    }
}

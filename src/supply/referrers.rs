//! Finding what is attached to an image, in every form a registry may hold:
//!
//! - the referrers API (`GET /v2/<name>/referrers/<digest>`, an index of
//!   the manifests whose `subject` is the digest), where the registry has it;
//! - the referrers tag schema, its fallback: an index tagged
//!   `sha256-<hex of the digest>` that writers keep up to date (GHCR and
//!   Docker Hub have no referrers API, so this is what they hold);
//! - cosign's legacy tags `sha256-<hex>.sig` and `sha256-<hex>.att`, one
//!   manifest whose layers are the signatures (or attestations).
//!
//! [`list`] reads the referrers (API or tag), [`items`] every payload layer
//! of every form, [`payload`] one layer's bytes. What is read of one image
//! is bounded: [`MAX_REFERRERS`] artifacts, [`MAX_ARTIFACT_LAYERS`] payload
//! layers in each, [`MAX_PAYLOADS`] in all and [`MAX_PAYLOAD_BYTES`] of
//! them by their declared sizes; an artifact past these is refused with a
//! note, none of its payloads fetched.

use std::ops::ControlFlow;

use anyhow::{anyhow, Result};
use reqwest::StatusCode;
use serde::Serialize;
use serde_json::Value;

use super::artifact::Kind;
use super::{ANNOTATION_PREDICATE_TYPE, ARTIFACT_SIGNATURE, MEDIA_TYPE_DSSE};
use crate::error::bad_input;
use crate::oci::{Descriptor, Digest, MEDIA_TYPE_INDEX};
use crate::registry::pages::Listing;
use crate::registry::{AuthError, Client, ErrorContext, ErrorKind, RegistryError};

/// Largest payload read back (an SBOM of a big image is a few MiB).
pub const MAX_PAYLOAD: u64 = 64 << 20;

/// Most payload layers read of one artifact: a signature, SBOM or
/// attestation manifest has one, and cosign's legacy `.sig` tag one per
/// signature of the image. One listing more is refused (each layer would
/// cost a request).
pub const MAX_ARTIFACT_LAYERS: usize = 64;

/// Most payload layers read of all the artifacts of one image together;
/// an artifact that would take them past it is refused.
pub const MAX_PAYLOADS: usize = 1024;

/// Most bytes of payloads read of one image, all together, by the sizes
/// their descriptors declare (as much as a layout's artifacts may hold):
/// an artifact that would take them past it is refused before any is
/// fetched. A payload larger than [`MAX_PAYLOAD`] is never fetched and
/// takes none of it.
pub const MAX_PAYLOAD_BYTES: u64 = 4 * MAX_PAYLOAD;

/// The tag of the referrers tag schema for `subject`.
pub fn fallback_tag(subject: &Digest) -> String {
    format!("sha256-{}", subject.hex())
}

/// cosign's legacy tag (`sig` or `att`) for `subject`.
pub fn legacy_tag(subject: &Digest, suffix: &str) -> String {
    format!("sha256-{}.{suffix}", subject.hex())
}

/// Where a registry lists referrers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// It answers the referrers API.
    ReferrersApi,
    /// It does not: the `sha256-<hex>` tag lists them.
    TagSchema,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::ReferrersApi => "referrers API",
            Mode::TagSchema => "referrers tag",
        }
    }
}

fn ctx(op: &str, registry: &str, repo: &str, object: &str) -> ErrorContext {
    ErrorContext {
        operation: op.to_string(),
        registry: registry.to_string(),
        repository: Some(repo.to_string()),
        object: Some(object.to_string()),
    }
}

/// The referrers API's answer, every page; `None` when the registry does
/// not have the API (404, 400, 405 or 501 to the first page, or an answer
/// that is not an index). Pages that do not end are an error, as a tag
/// list's are.
pub async fn referrers_api(
    client: &Client,
    registry: &str,
    repo: &str,
    subject: &Digest,
) -> Result<Option<Vec<Value>>, RegistryError> {
    let c = ctx("listing referrers", registry, repo, subject.as_str());
    let listing = Listing {
        what: "the referrers index",
        first: client.url(registry, &format!("{repo}/referrers/{subject}"))?,
        accept: Some(MEDIA_TYPE_INDEX),
        absent: &[
            StatusCode::NOT_FOUND,
            StatusCode::BAD_REQUEST,
            StatusCode::METHOD_NOT_ALLOWED,
            StatusCode::NOT_IMPLEMENTED,
        ],
    };
    let mut out = Vec::new();
    let found = client
        .repo(registry, repo)
        .read_pages(listing, &c, |body| {
            let page = serde_json::from_slice::<Value>(&body).ok();
            match page.as_ref().and_then(|v| v.get("manifests")?.as_array()) {
                Some(manifests) => {
                    out.extend(manifests.iter().cloned());
                    Ok(ControlFlow::Continue(()))
                }
                None => Ok(ControlFlow::Break(())),
            }
        })
        .await?;
    Ok(found.then_some(out))
}

/// The document tagged `tag`, parsed; `None` when the tag does not exist.
pub async fn tagged(
    client: &Client,
    registry: &str,
    repo: &str,
    tag: &str,
) -> Result<Option<Value>> {
    if client
        .repo(registry, repo)
        .head_manifest(tag)
        .await?
        .is_none()
    {
        return Ok(None);
    }
    let (_, bytes) = client.repo(registry, repo).get_manifest(tag).await?;
    let v = serde_json::from_slice(&bytes)
        .map_err(|_| bad_input(format!("{registry}/{repo}:{tag} is not JSON")))?;
    Ok(Some(v))
}

/// The referrers of `subject` and where they were listed.
pub async fn list(
    client: &Client,
    registry: &str,
    repo: &str,
    subject: &Digest,
) -> Result<(Mode, Vec<Value>)> {
    if let Some(found) = referrers_api(client, registry, repo, subject).await? {
        return Ok((Mode::ReferrersApi, found));
    }
    let tag = fallback_tag(subject);
    let manifests = match tagged(client, registry, repo, &tag).await? {
        None => Vec::new(),
        Some(index) => index
            .get("manifests")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| {
                bad_input(format!(
                    "{registry}/{repo}:{tag} is not an image index (no manifests list), \
                     which this tag of the referrers tag schema must be"
                ))
            })?,
    };
    Ok((Mode::TagSchema, manifests))
}

/// One payload found attached to an image.
#[derive(Clone, Debug, Serialize)]
pub struct Item {
    /// `referrers API`, `referrers tag`, or the legacy tag it came from.
    pub source: String,
    /// The manifest holding it.
    pub manifest: Digest,
    pub artifact_type: String,
    pub kind: Kind,
    /// Whether it is signed (a cosign signature or a DSSE envelope).
    pub signed: bool,
    pub layer: Descriptor,
}

pub(crate) fn classify(artifact_type: &str, layer: &Descriptor) -> (Kind, bool) {
    let predicate = layer
        .annotations
        .get(ANNOTATION_PREDICATE_TYPE)
        .map(String::as_str)
        .unwrap_or(artifact_type);
    if artifact_type == ARTIFACT_SIGNATURE || layer.media_type == super::MEDIA_TYPE_SIMPLE_SIGNING {
        return (Kind::Signature, true);
    }
    let signed = layer.media_type == MEDIA_TYPE_DSSE;
    (Kind::of_predicate(predicate), signed)
}

/// One artifact manifest read: its payload layers as items, or, when it
/// lists more than [`MAX_ARTIFACT_LAYERS`], its kind and how many it lists
/// (none parsed).
enum Read {
    Items(Vec<Item>),
    TooMany { kind: Kind, layers: usize },
}

/// The layers of the manifest `manifest` as items.
async fn manifest_items(
    client: &Client,
    registry: &str,
    repo: &str,
    manifest: &str,
    source: &str,
    artifact_type: Option<&str>,
) -> Result<Read> {
    let (info, bytes) = client.repo(registry, repo).get_manifest(manifest).await?;
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|_| anyhow!("{registry}/{repo}@{manifest} is not JSON"))?;
    let artifact_type = artifact_type
        .map(str::to_string)
        .or_else(|| v["artifactType"].as_str().map(str::to_string))
        .unwrap_or_default();
    let listed = v["layers"].as_array().map_or(0, Vec::len);
    if listed > MAX_ARTIFACT_LAYERS {
        let first = serde_json::from_value::<Descriptor>(v["layers"][0].clone()).ok();
        let kind = first.map_or(Kind::Other, |l| classify(&artifact_type, &l).0);
        return Ok(Read::TooMany {
            kind,
            layers: listed,
        });
    }
    let layers: Vec<Descriptor> = serde_json::from_value(v["layers"].clone()).unwrap_or_default();
    Ok(Read::Items(
        layers
            .into_iter()
            .map(|layer| {
                let (kind, signed) = classify(&artifact_type, &layer);
                Item {
                    source: source.to_string(),
                    manifest: info.digest.clone(),
                    artifact_type: artifact_type.clone(),
                    kind,
                    signed,
                    layer,
                }
            })
            .collect(),
    ))
}

/// Most artifacts read for one image; a listing naming more is refused
/// (each costs two requests, and a registry could list thousands).
pub const MAX_REFERRERS: usize = 256;

/// The artifacts listed for `subject` (referrers API or tag), each once,
/// and where they were listed; more than [`MAX_REFERRERS`] is an error.
pub async fn listed(
    client: &Client,
    registry: &str,
    repo: &str,
    subject: &Digest,
) -> Result<(Mode, Vec<Descriptor>)> {
    let (mode, referrers) = list(client, registry, repo, subject).await?;
    let mut seen = std::collections::HashSet::new();
    let listed: Vec<Descriptor> = referrers
        .into_iter()
        .filter_map(|r| serde_json::from_value::<Descriptor>(r).ok())
        .filter(|d| seen.insert(d.digest.clone()))
        .collect();
    if listed.len() > MAX_REFERRERS {
        return Err(anyhow!(
            "{registry}/{repo}: {} artifacts are attached to {subject}, more than the {MAX_REFERRERS} boxwright reads",
            listed.len()
        ));
    }
    Ok((mode, listed))
}

/// The note for a listed artifact that could not be read, passed over.
pub fn unread_note(artifact: &Digest, mode: Mode, e: &anyhow::Error) -> String {
    passed_over(&format!("artifact {artifact} in {}", mode.name()), e)
}

/// The note for `what` (an artifact, a legacy tag) that could not be read,
/// passed over.
pub fn passed_over(what: &str, e: &anyhow::Error) -> String {
    format!("{what} could not be read, passed over: {e:#}")
}

/// Whether `e` means the registry could not be asked at all (no answer,
/// none in time, or its token server unreachable), rather than that one
/// artifact is missing or broken: what is attached cannot be judged then.
fn unanswered(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<RegistryError>())
        .any(|r| {
            matches!(
                r.kind,
                ErrorKind::Transport(_)
                    | ErrorKind::Deadline(_)
                    | ErrorKind::Auth(AuthError::Unreachable { .. })
            )
        })
}

/// The manifest digests of cosign's legacy tags of `subject` that exist
/// in `repo`, with their suffix (`sig`, `att`) and tag.
pub async fn legacy_tags(
    client: &Client,
    registry: &str,
    repo: &str,
    subject: &Digest,
) -> Result<Vec<(&'static str, String, Descriptor)>> {
    let mut out = Vec::new();
    for suffix in ["sig", "att"] {
        let tag = legacy_tag(subject, suffix);
        if let Some(info) = client.repo(registry, repo).head_manifest(&tag).await? {
            let d = Descriptor::new(&info.media_type, info.digest, info.size);
            out.push((suffix, tag, d));
        }
    }
    Ok(out)
}

/// What is attached to an image, as [`items`] reads it.
#[derive(Clone, Debug)]
pub struct Payloads {
    /// Where referrers are listed.
    pub mode: Mode,
    /// Every payload layer read, at most [`MAX_PAYLOADS`].
    pub items: Vec<Item>,
    /// The bytes the payloads of `items` declare (those of at most
    /// [`MAX_PAYLOAD`]), at most [`MAX_PAYLOAD_BYTES`].
    pub bytes: PayloadBytes,
    /// A note for each listed artifact or legacy tag that could not be
    /// read, passed over.
    pub unread: Vec<String>,
    /// Artifacts refused for listing more payload layers or bytes than are
    /// read ([`MAX_ARTIFACT_LAYERS`], [`MAX_PAYLOADS`],
    /// [`MAX_PAYLOAD_BYTES`]), each with its kind and a note naming the
    /// limit; none of their payloads is fetched.
    pub refused: Vec<(Kind, String)>,
}

/// The bytes a payload of `items` will be fetched for declare: those of
/// at most [`MAX_PAYLOAD`] (a larger one is never fetched).
fn fetched_bytes(items: &[Item]) -> u64 {
    crate::oci::total_size(
        (items.iter())
            .map(|i| i.layer.size)
            .filter(|s| *s <= MAX_PAYLOAD),
    )
}

/// The bytes of payloads taken of one image so far, by the sizes their
/// descriptors declare, at most [`MAX_PAYLOAD_BYTES`]: what `verify` and
/// `sbom` read, and what `copy` carries.
#[derive(Clone, Copy, Debug, Default)]
pub struct PayloadBytes(u64);

impl PayloadBytes {
    /// Take `bytes` more, declared by `what` attached to `image`
    /// (`REGISTRY/REPO@SUBJECT`); when they would pass
    /// [`MAX_PAYLOAD_BYTES`], take none and say why.
    pub fn take(&mut self, image: &str, what: &str, bytes: u64) -> Result<(), String> {
        let total = self.0.saturating_add(bytes);
        if total > MAX_PAYLOAD_BYTES {
            return Err(format!(
                "{what} declares {bytes} bytes of payloads, which would take those read of \
                 {image} past the {} boxwright reads of one image",
                crate::render::human_bytes(MAX_PAYLOAD_BYTES)
            ));
        }
        self.0 = total;
        Ok(())
    }
}

impl Payloads {
    /// Take the artifact `what` read as `read`, or refuse it; `image`
    /// (`REGISTRY/REPO@SUBJECT`) is what it is attached to.
    fn take(&mut self, image: &str, what: &str, read: Read) {
        let refusal = match read {
            Read::TooMany { kind, layers } => (
                kind,
                format!(
                    "{what} lists {layers} payload layers, more than the {MAX_ARTIFACT_LAYERS} \
                     boxwright reads of one artifact: refused, none fetched"
                ),
            ),
            Read::Items(items) if self.items.len() + items.len() > MAX_PAYLOADS => (
                items.first().map_or(Kind::Other, |i| i.kind),
                format!(
                    "{what} lists {} payload layers, which would take those read of the image \
                     past the {MAX_PAYLOADS} boxwright reads: refused, none fetched",
                    items.len()
                ),
            ),
            Read::Items(items) => match self.bytes.take(image, what, fetched_bytes(&items)) {
                Ok(()) => return self.items.extend(items),
                Err(why) => (
                    items.first().map_or(Kind::Other, |i| i.kind),
                    format!("{why}: refused, none fetched"),
                ),
            },
        };
        self.refused.push(refusal);
    }
}

/// Every payload attached to `subject` in `repo`: the referrers (API or
/// tag) and cosign's legacy tags; also where referrers are listed, a note
/// for each listed artifact or legacy tag that could not be read (deleted
/// since it was listed, refused, or not a manifest), which is then passed
/// over, and the artifacts refused for their number of payloads. A
/// registry that does not answer at all is an error.
pub async fn items(
    client: &Client,
    registry: &str,
    repo: &str,
    subject: &Digest,
) -> Result<Payloads> {
    let (mode, listed) = listed(client, registry, repo, subject).await?;
    let image = format!("{registry}/{repo}@{subject}");
    let mut out = Payloads {
        mode,
        items: Vec::new(),
        bytes: PayloadBytes::default(),
        unread: Vec::new(),
        refused: Vec::new(),
    };
    for d in listed {
        match manifest_items(
            client,
            registry,
            repo,
            d.digest.as_str(),
            mode.name(),
            d.artifact_type.as_deref(),
        )
        .await
        {
            Ok(read) => {
                let what = format!("artifact {} in {}", d.digest, mode.name());
                out.take(&image, &what, read)
            }
            Err(e) if unanswered(&e) => return Err(e),
            Err(e) => out.unread.push(unread_note(&d.digest, mode, &e)),
        }
    }
    for (suffix, tag, _) in legacy_tags(client, registry, repo, subject).await? {
        let artifact_type = match suffix {
            "sig" => ARTIFACT_SIGNATURE,
            _ => MEDIA_TYPE_DSSE,
        };
        let source = format!("tag {tag}");
        match manifest_items(client, registry, repo, &tag, &source, Some(artifact_type)).await {
            Ok(read) => out.take(&image, &source, read),
            Err(e) if unanswered(&e) => return Err(e),
            Err(e) => out.unread.push(passed_over(&source, &e)),
        }
    }
    Ok(out)
}

/// The bytes of a payload layer (at most [`MAX_PAYLOAD`]), checked against
/// its digest.
pub async fn payload(
    client: &Client,
    registry: &str,
    repo: &str,
    layer: &Descriptor,
) -> Result<Vec<u8>> {
    if layer.size > MAX_PAYLOAD {
        return Err(anyhow!(
            "{registry}/{repo}: payload {} is {} bytes, more than boxwright reads",
            layer.digest,
            layer.size
        ));
    }
    // Through a file: a download that is retried starts the file again.
    let tmp = tempfile::NamedTempFile::new()?;
    client
        .repo(registry, repo)
        .get_blob_to_file(&layer.digest, layer.size, tmp.path())
        .await?;
    let out = std::fs::read(tmp.path())?;
    if Digest::of(&out) != layer.digest {
        return Err(anyhow!(
            "{registry}/{repo}: payload {} does not match its digest",
            layer.digest
        ));
    }
    Ok(out)
}

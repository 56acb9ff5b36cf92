//! Manifests on one registry, once every blob is confirmed there: child
//! manifests by digest, then the root (by digest only where no target tags
//! it), then the tags; a tag that already names the image is left alone.
//! A target repository the registry refused gets nothing, and its targets
//! fail with that refusal.

use bytes::Bytes;
use futures_util::stream::{self, StreamExt as _};

use super::blobs::RegistryPush;
use super::report::PushError;
use super::targets::PushTarget;
use crate::image::Graph;
use crate::oci::Digest;
use crate::registry::{Client, Repo};

/// What a target names after the push.
#[derive(Clone, Debug)]
pub struct Tagged {
    /// The image's digest.
    pub digest: Digest,
    /// The digest the target's tag named before this push moved it to the
    /// image (as `docker push` moves a tag); `None` for a new tag, one that
    /// named the image already, or a push by digest.
    pub replaced: Option<Digest>,
}

/// The outcome for each target of `r`, keyed by its reference string; each
/// is also recorded in `r` as soon as it is known.
pub async fn push_manifests(
    client: &Client,
    r: &RegistryPush,
    targets: &[&PushTarget],
    graph: &Graph,
) -> Vec<(String, Result<Tagged, PushError>)> {
    let unconfirmed = graph.blobs.iter().find(|d| !r.confirmed(&d.digest));
    if let (None, Some(d)) = (r.failure(), unconfirmed) {
        r.fail(PushError::Unconfirmed(d.digest.clone()));
    }
    if let Some(e) = r.failure() {
        return targets
            .iter()
            .map(|t| {
                let e = r.repo_failure(&t.reference.repository).unwrap_or(e.clone());
                let (reference, outcome) = (t.reference.to_string(), Err(e));
                r.record(&reference, &outcome);
                (reference, outcome)
            })
            .collect();
    }
    let reg = r.registry();
    let per_repo = futures_util::future::join_all(r.group.repos.iter().map(|repo| async move {
        if let Some(e) = r.repo_failure(repo) {
            return (repo, Err(e));
        }
        // The root goes in by tag when a target tags it here: a PUT by
        // digest first would send the same bytes once more.
        let tagged = targets
            .iter()
            .any(|t| &t.reference.repository == repo && t.reference.tag.is_some());
        (repo, in_repo(client.repo(reg, repo), graph, tagged).await)
    }))
    .await;
    let mut out = Vec::new();
    for (repo, res) in &per_repo {
        // Tags go in side by side (the registry's request limit holds);
        // the outcomes stay in target order.
        let mine = targets.iter().filter(|t| &t.reference.repository == *repo);
        let writes: Vec<_> = mine
            .map(|t| write_tag(client, r, repo, t, res, graph))
            .collect();
        out.extend(
            stream::iter(writes)
                .buffered(TAGS_IN_FLIGHT)
                .collect::<Vec<_>>()
                .await,
        );
    }
    out
}

/// Tags of one repository written at once; the registry's request limit
/// (`--jobs-per-registry`) bounds what is really in flight.
const TAGS_IN_FLIGHT: usize = 16;

/// Tag `t` unless its repository failed, and record the outcome in `r`
/// as soon as it is known: a run stopped later still tells which tags it
/// wrote (`PushWatch`).
async fn write_tag(
    client: &Client,
    r: &RegistryPush,
    repo: &str,
    t: &PushTarget,
    res: &Result<(), PushError>,
    graph: &Graph,
) -> (String, Result<Tagged, PushError>) {
    let outcome = match res {
        Err(e) => Err(e.clone()),
        Ok(()) => tag(client.repo(r.registry(), repo), t, graph).await,
    };
    let reference = t.reference.to_string();
    r.record(&reference, &outcome);
    (reference, outcome)
}

async fn in_repo(repo: Repo<'_>, graph: &Graph, root_by_tag: bool) -> Result<(), PushError> {
    for (desc, bytes) in &graph.manifests {
        if root_by_tag && desc.digest == graph.root.digest {
            continue;
        }
        let reference = desc.digest.to_string();
        let present = repo
            .head_manifest(&reference)
            .await
            .map_err(PushError::Registry)?;
        if present.is_some_and(|p| p.digest == desc.digest) {
            continue;
        }
        repo.put_manifest(&reference, bytes.clone(), &desc.media_type)
            .await
            .map_err(PushError::Registry)?;
    }
    Ok(())
}

async fn tag(repo: Repo<'_>, t: &PushTarget, graph: &Graph) -> Result<Tagged, PushError> {
    let root = &graph.root.digest;
    if let Some(d) = &t.reference.digest {
        if d != root {
            return Err(PushError::DigestMismatch {
                named: d.clone(),
                image: root.clone(),
            });
        }
    }
    let done = |replaced| Tagged {
        digest: root.clone(),
        replaced,
    };
    let Some(tag) = &t.reference.tag else {
        return Ok(done(None));
    };
    let current = repo.head_manifest(tag).await.map_err(PushError::Registry)?;
    let replaced = match current {
        Some(c) if &c.digest == root => return Ok(done(None)),
        current => current.map(|c| c.digest),
    };
    let bytes: Bytes = graph
        .root_bytes()
        .cloned()
        .ok_or_else(|| PushError::Other("internal: root manifest missing".into()))?;
    repo.put_manifest(tag, bytes, &graph.root.media_type)
        .await
        .map_err(PushError::Registry)?;
    Ok(done(replaced))
}

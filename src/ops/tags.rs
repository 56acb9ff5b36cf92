//! `tags`: the tag lists of several repositories side by side, following
//! pagination, optionally with each tag's digest (by HEAD).
//!
//! Takes a [`Client`] and never prints; the binary renders the report
//! ([`render::verify::tags`](crate::render::verify::tags)) or serialises it.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::stream::{self, StreamExt as _};
use serde::Serialize;

use crate::oci::Digest;
use crate::registry::{Client, Reference, RegistryError};

/// One repository's column in [`TagsReport`].
#[derive(Clone, Debug, Serialize)]
pub struct RepoTags {
    /// `registry/repository`.
    pub repository: String,
    pub tags: Vec<String>,
    pub error: Option<RegistryError>,
}

/// Presence of one tag in each repository.
#[derive(Clone, Debug, Serialize)]
pub struct TagRow {
    pub tag: String,
    /// Per repository (same order as [`TagsReport::repositories`]): whether
    /// it has the tag.
    pub present: Vec<bool>,
    /// Per repository: the tag's digest, when asked for (`--digests`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digests: Option<Vec<Option<Digest>>>,
    /// Present everywhere (and, with digests, naming one digest everywhere).
    pub same: bool,
}

/// The outcome of [`list_tags`].
#[derive(Clone, Debug, Serialize)]
pub struct TagsReport {
    pub repositories: Vec<RepoTags>,
    /// Every tag seen, in natural order (`1.9` before `1.10`).
    pub tags: Vec<TagRow>,
}

/// List the tags of every repository (following `Link` pagination, with
/// `?n=page_size` when given) and line them up; with `digests`, HEAD every
/// (repository, tag) pair for its digest.
pub async fn list_tags(
    client: &Client,
    repositories: &[Reference],
    page_size: Option<u32>,
    digests: bool,
) -> TagsReport {
    let lists = futures_util::future::join_all(repositories.iter().map(|r| async move {
        let res = client.repo_of(r).list_tags_paged(page_size).await;
        match res {
            Ok(tags) => RepoTags {
                repository: r.name(),
                tags,
                error: None,
            },
            Err(e) => RepoTags {
                repository: r.name(),
                tags: Vec::new(),
                error: Some(e),
            },
        }
    }))
    .await;
    let all: BTreeSet<String> = lists.iter().flat_map(|l| l.tags.iter().cloned()).collect();
    let mut all: Vec<String> = all.into_iter().collect();
    all.sort_by(|a, b| natural_cmp(a, b));
    let mut found: BTreeMap<(usize, String), Option<Digest>> = BTreeMap::new();
    if digests {
        let jobs = client.options().jobs_per_registry.max(1) * 2;
        let pairs: Vec<(usize, String)> = lists
            .iter()
            .enumerate()
            .flat_map(|(i, l)| l.tags.iter().map(move |t| (i, t.clone())))
            .collect();
        let heads: Vec<((usize, String), Option<Digest>)> = stream::iter(pairs)
            .map(|(i, tag)| {
                let r = &repositories[i];
                async move {
                    let d = client
                        .repo_of(r)
                        .head_manifest(&tag)
                        .await
                        .ok()
                        .flatten()
                        .map(|info| info.digest);
                    ((i, tag), d)
                }
            })
            .buffer_unordered(jobs)
            .collect()
            .await;
        found.extend(heads);
    }
    let tags = all
        .into_iter()
        .map(|tag| {
            let present: Vec<bool> = lists.iter().map(|l| l.tags.contains(&tag)).collect();
            let ds: Option<Vec<Option<Digest>>> = digests.then(|| {
                (0..lists.len())
                    .map(|i| found.get(&(i, tag.clone())).cloned().flatten())
                    .collect()
            });
            let everywhere = present.iter().all(|p| *p);
            let same = everywhere
                && ds.as_ref().is_none_or(|v| {
                    v.first()
                        .is_some_and(|f| f.is_some() && v.iter().all(|d| d == f))
                });
            TagRow {
                tag,
                present,
                digests: ds,
                same,
            }
        })
        .collect();
    TagsReport {
        repositories: lists,
        tags,
    }
}

impl TagsReport {
    /// Tags missing somewhere or differing, for a one-line summary.
    pub fn differences(&self) -> Vec<String> {
        self.tags
            .iter()
            .filter(|t| !t.same)
            .map(|t| t.tag.clone())
            .collect()
    }
}

/// Compare with digit runs as numbers: `1.9 < 1.10`, `v2 < v10`.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(c), Some(d)) if c.is_ascii_digit() && d.is_ascii_digit() => {
                let nx = x.iter().take_while(|c| c.is_ascii_digit()).count();
                let ny = y.iter().take_while(|c| c.is_ascii_digit()).count();
                let (dx, dy) = (&x[..nx], &y[..ny]);
                let tx = dx.iter().skip_while(|c| **c == b'0').count();
                let ty = dy.iter().skip_while(|c| **c == b'0').count();
                let o = tx.cmp(&ty).then_with(|| dx[nx - tx..].cmp(&dy[ny - ty..]));
                if o != Ordering::Equal {
                    return o;
                }
                x = &x[nx..];
                y = &y[ny..];
            }
            (Some(c), Some(d)) => {
                if c != d {
                    return c.cmp(d);
                }
                x = &x[1..];
                y = &y[1..];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order() {
        let mut v = vec!["1.10", "latest", "1.9", "1.9.1", "01.9", "edge"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["01.9", "1.9", "1.9.1", "1.10", "edge", "latest"]);
    }
}

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

/// One repository's column in [`TagsReport`]. In JSON, `tags` is `null`
/// for a repository that could not be listed (not known, not empty).
#[derive(Clone, Debug)]
pub struct RepoTags {
    /// `registry/repository`.
    pub repository: String,
    pub tags: Vec<String>,
    pub error: Option<RegistryError>,
}

impl Serialize for RepoTags {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut m = s.serialize_struct("RepoTags", 3)?;
        m.serialize_field("repository", &self.repository)?;
        m.serialize_field("tags", &self.error.is_none().then_some(&self.tags))?;
        m.serialize_field("error", &self.error)?;
        m.end()
    }
}

/// Presence of one tag in each repository.
#[derive(Clone, Debug, Serialize)]
pub struct TagRow {
    pub tag: String,
    /// Per repository (same order as [`TagsReport::repositories`]): whether
    /// it has the tag; `None` when the repository could not be listed (not
    /// known, which is not the same as absent).
    pub present: Vec<Option<bool>>,
    /// Per repository: the tag's digest, when asked for (`--digests`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digests: Option<Vec<Option<Digest>>>,
    /// Present in every repository that could be listed (and, with digests,
    /// naming one digest in all of them). A repository that could not be
    /// listed is left out: it makes no row differ.
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
            let present: Vec<Option<bool>> = lists
                .iter()
                .map(|l| l.error.is_none().then(|| l.tags.contains(&tag)))
                .collect();
            let ds: Option<Vec<Option<Digest>>> = digests.then(|| {
                (0..lists.len())
                    .map(|i| found.get(&(i, tag.clone())).cloned().flatten())
                    .collect()
            });
            let same = same_in_listed(&present, ds.as_deref());
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

/// Whether a tag is the same in every repository that could be listed
/// (`present` not `None`): present in each, and with `digests`, each
/// digest known and all equal.
fn same_in_listed(present: &[Option<bool>], digests: Option<&[Option<Digest>]>) -> bool {
    let listed: Vec<usize> = (0..present.len())
        .filter(|&i| present[i].is_some())
        .collect();
    if !listed.iter().all(|&i| present[i] == Some(true)) {
        return false;
    }
    let Some(ds) = digests else {
        return true;
    };
    let mut known = listed.iter().map(|&i| ds.get(i).cloned().flatten());
    match known.next() {
        Some(Some(first)) => known.all(|d| d.as_ref() == Some(&first)),
        _ => false,
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

    /// The one-line verdict once every repository was listed: how many
    /// tags, and which are not the same everywhere.
    pub fn summary(&self) -> String {
        let tags = match self.tags.len() {
            1 => "1 tag".to_string(),
            n => format!("{n} tags"),
        };
        let diff = self.differences();
        match (self.repositories.as_slice(), diff.is_empty()) {
            ([one], true) => format!("{tags} in {}", one.repository),
            // Alone, a tag differs only when its digest was not resolved.
            ([one], false) => format!(
                "{tags} in {}, {} without a resolved digest: {}",
                one.repository,
                diff.len(),
                diff.join(", ")
            ),
            (_, true) => format!(
                "{tags}, the same in all {} repositories",
                self.repositories.len()
            ),
            (_, false) => format!(
                "{tags}, {} not the same everywhere: {}",
                diff.len(),
                diff.join(", ")
            ),
        }
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

    #[test]
    fn a_repository_that_could_not_be_listed_makes_no_row_differ() {
        let (d1, d2) = (Some(Digest::of(b"1")), Some(Digest::of(b"2")));
        let both = [Some(true), Some(true)];
        let unlisted = [Some(true), None];
        assert!(same_in_listed(&both, None));
        assert!(!same_in_listed(&[Some(true), Some(false)], None));
        assert!(same_in_listed(&unlisted, None));
        assert!(same_in_listed(&[None, Some(true)], None));
        assert!(same_in_listed(&unlisted, Some(&[d1.clone(), None])));
        assert!(same_in_listed(&both, Some(&[d1.clone(), d1.clone()])));
        assert!(!same_in_listed(&both, Some(&[d1.clone(), d2])));
        assert!(!same_in_listed(&both, Some(&[d1, None])));
        assert!(!same_in_listed(&[None, Some(true)], Some(&[None, None])));
    }

    #[test]
    fn the_summary_words_one_repository_as_one() {
        let repo = |name: &str| RepoTags {
            repository: name.into(),
            tags: vec!["1.0".into()],
            error: None,
        };
        let row = |tag: &str, same: bool| TagRow {
            tag: tag.into(),
            present: vec![Some(true)],
            digests: None,
            same,
        };
        let mut r = TagsReport {
            repositories: vec![repo("ghcr.io/acme/app")],
            tags: vec![row("1.0", true), row("1.1", true)],
        };
        assert_eq!(r.summary(), "2 tags in ghcr.io/acme/app");
        r.tags[1].same = false;
        assert_eq!(
            r.summary(),
            "2 tags in ghcr.io/acme/app, 1 without a resolved digest: 1.1"
        );
        r.tags.pop();
        assert_eq!(r.summary(), "1 tag in ghcr.io/acme/app");
        r.repositories.push(repo("docker.io/acme/app"));
        assert_eq!(r.summary(), "1 tag, the same in all 2 repositories");
        r.tags.push(row("1.1", false));
        assert_eq!(r.summary(), "2 tags, 1 not the same everywhere: 1.1");
    }
}

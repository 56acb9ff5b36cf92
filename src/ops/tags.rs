//! `tags`: the tag lists of several repositories side by side, following
//! pagination, optionally with each tag's digest (by HEAD). A listed name
//! that is not a valid tag (a registry's newline or escape sequence that
//! would forge a row) is left out and kept, made printable, in
//! [`RepoTags::invalid_tags`].
//!
//! Takes a [`Client`] and never prints; the binary renders the report
//! ([`render::verify::tags`](crate::render::verify::tags)) or serialises it.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use futures_util::stream::{self, StreamExt as _};
use serde::Serialize;

use crate::oci::Digest;
use crate::registry::reference::is_valid_tag;
use crate::registry::{Client, Reference, RegistryError};
use crate::render::text::one_line;

/// One repository's column in [`TagsReport`]. In JSON, `tags` is `null`
/// for a repository that could not be listed (not known, not empty).
#[derive(Clone, Debug)]
pub struct RepoTags {
    /// `registry/repository`.
    pub repository: String,
    /// The valid tags listed, in the registry's order.
    pub tags: Vec<String>,
    /// Listed names that are not valid tags, left out of `tags`, each with
    /// its control characters escaped ([`one_line`]).
    pub invalid_tags: Vec<String>,
    pub error: Option<RegistryError>,
}

impl RepoTags {
    /// The listing of `repository`: its valid tags kept, the others set
    /// aside in [`RepoTags::invalid_tags`].
    pub fn listed(repository: String, listed: Vec<String>) -> RepoTags {
        let (tags, invalid): (Vec<String>, Vec<String>) =
            listed.into_iter().partition(|t| is_valid_tag(t));
        RepoTags {
            repository,
            tags,
            invalid_tags: invalid.iter().map(|t| one_line(t).into_owned()).collect(),
            error: None,
        }
    }
}

impl Serialize for RepoTags {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut m = s.serialize_struct("RepoTags", 4)?;
        m.serialize_field("repository", &self.repository)?;
        m.serialize_field("tags", &self.error.is_none().then_some(&self.tags))?;
        m.serialize_field("invalid_tags", &self.invalid_tags)?;
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
            Ok(tags) => RepoTags::listed(r.name(), tags),
            Err(e) => RepoTags {
                repository: r.name(),
                tags: Vec::new(),
                invalid_tags: Vec::new(),
                error: Some(e),
            },
        }
    }))
    .await;
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
    let tags = line_up(&lists, digests.then_some(&found));
    TagsReport {
        repositories: lists,
        tags,
    }
}

/// A row per tag of any list, in natural order; with `found` (the digests
/// resolved per list and tag), each row's digests. Each list is looked up
/// in a set: a registry's 100,000 tags are lined up in well under a second.
fn line_up(
    lists: &[RepoTags],
    found: Option<&BTreeMap<(usize, String), Option<Digest>>>,
) -> Vec<TagRow> {
    let sets: Vec<Option<HashSet<&str>>> = lists
        .iter()
        .map(|l| {
            l.error
                .is_none()
                .then(|| l.tags.iter().map(String::as_str).collect())
        })
        .collect();
    let all: BTreeSet<&str> = lists
        .iter()
        .flat_map(|l| l.tags.iter().map(String::as_str))
        .collect();
    let mut all: Vec<&str> = all.into_iter().collect();
    all.sort_by(|a, b| natural_cmp(a, b));
    all.into_iter()
        .map(|tag| {
            let present: Vec<Option<bool>> = sets
                .iter()
                .map(|set| set.as_ref().map(|set| set.contains(tag)))
                .collect();
            let ds: Option<Vec<Option<Digest>>> = found.map(|found| {
                (0..lists.len())
                    .map(|i| found.get(&(i, tag.to_string())).cloned().flatten())
                    .collect()
            });
            let same = same_in_listed(&present, ds.as_deref());
            TagRow {
                tag: tag.to_string(),
                present,
                digests: ds,
                same,
            }
        })
        .collect()
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
        // The table and `--json` name them all; the summary, the first few.
        let named = match diff.len() {
            n if n > SUMMARY_NAMES => format!(
                "{} and {} more",
                diff[..SUMMARY_NAMES].join(", "),
                n - SUMMARY_NAMES
            ),
            _ => diff.join(", "),
        };
        match (self.repositories.as_slice(), diff.is_empty()) {
            ([one], true) => format!("{tags} in {}", one.repository),
            // Alone, a tag differs only when its digest was not resolved.
            ([one], false) => format!(
                "{tags} in {}, {} without a resolved digest: {}",
                one.repository,
                diff.len(),
                named
            ),
            (_, true) => format!(
                "{tags}, the same in all {} repositories",
                self.repositories.len()
            ),
            (_, false) => format!("{tags}, {} not the same everywhere: {}", diff.len(), named),
        }
    }
}

/// How many differing tags [`TagsReport::summary`] names.
const SUMMARY_NAMES: usize = 10;

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
    fn names_that_are_not_tags_are_set_aside_printable() {
        let listed = ["1.0", "bad\nrow", "\x1b[2J", ".hidden", "-x", "", "ok_2"];
        let l = RepoTags::listed(
            "r.io/a".into(),
            listed.iter().map(|t| t.to_string()).collect(),
        );
        assert_eq!(l.tags, ["1.0", "ok_2"]);
        assert_eq!(
            l.invalid_tags,
            ["bad\\nrow", "\\u{1b}[2J", ".hidden", "-x", ""]
        );
        let too_long = "a".repeat(129);
        let l = RepoTags::listed(
            "r.io/a".into(),
            vec![too_long.clone(), too_long[1..].into()],
        );
        assert_eq!((l.tags.len(), l.invalid_tags.len()), (1, 1));
    }

    #[test]
    fn a_hundred_thousand_tags_line_up() {
        // Each list is looked up through a set: one scan of each list per
        // tag made this take minutes.
        let tags: Vec<String> = (0..100_000).map(|i| format!("1.{i}")).collect();
        let a = RepoTags::listed("a.io/r".into(), tags.clone());
        let b = RepoTags::listed("b.io/r".into(), tags[1..].to_vec());
        let rows = line_up(&[a, b], None);
        assert_eq!(rows.len(), 100_000);
        assert_eq!(rows[0].tag, "1.0");
        assert_eq!(rows[0].present, [Some(true), Some(false)]);
        assert!(!rows[0].same && rows[1].same && rows[99_999].same);
    }

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
        let repo = |name: &str| RepoTags::listed(name.into(), vec!["1.0".into()]);
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
        // Many differing tags: the first ten are named, the rest counted.
        r.tags = (0..25).map(|i| row(&format!("2.{i}"), false)).collect();
        assert_eq!(
            r.summary(),
            "25 tags, 25 not the same everywhere: 2.0, 2.1, 2.2, 2.3, 2.4, 2.5, \
             2.6, 2.7, 2.8, 2.9 and 15 more"
        );
    }
}

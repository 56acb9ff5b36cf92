//! `verify` and `tags`: read-only checks across registries.
//!
//! [`verify`] answers "does every reference name the same image?" with one
//! `HEAD` per reference (Docker Hub does not count HEADs against its pull
//! limit; a GET happens only when a registry answers a HEAD without
//! `Docker-Content-Digest`). [`list_tags`] puts the tag lists of several
//! repositories side by side, following pagination, optionally with each
//! tag's digest (again by HEAD).
//!
//! Both take a [`Client`] and never print; the binary renders the reports
//! ([`VerifyReport::render`], [`TagsReport::render`]) or serialises them.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::stream::{self, StreamExt as _};
use serde::Serialize;

use crate::oci::Digest;
use crate::registry::{Client, Reference};

/// What one reference resolved to.
#[derive(Clone, Debug, Serialize)]
pub struct Resolved {
    /// The reference as normalised (`docker.io/library/alpine:latest`).
    pub reference: String,
    pub registry: String,
    pub repository: String,
    /// `ok`, `missing` (404), `differs` (not the common digest) or `error`.
    pub status: Status,
    pub digest: Option<Digest>,
    pub media_type: Option<String>,
    pub size: Option<u64>,
    pub error: Option<String>,
}

/// The verdict on one reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Missing,
    Differs,
    Error,
}

/// The outcome of [`verify`].
#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    /// True when every reference resolved, all to one digest.
    pub ok: bool,
    /// The digest most references name (ties: the earliest reference's).
    pub digest: Option<Digest>,
    pub references: Vec<Resolved>,
    /// References that do not exist (tag or digest unknown, or no repository).
    pub missing: Vec<String>,
    /// References that name another digest than [`VerifyReport::digest`].
    pub mismatched: Vec<String>,
    /// References that could not be resolved (auth, network, 5xx after retries).
    pub errors: Vec<String>,
}

/// Resolve every reference by `HEAD` on its manifest (in parallel, within
/// the client's per-registry limit) and compare the digests. A reference
/// without tag or digest means `:latest`; with a digest, that digest is
/// asked for.
pub async fn verify(client: &Client, references: &[Reference]) -> VerifyReport {
    let jobs = client.options().jobs_per_registry.max(1) * 2;
    let resolved: Vec<Resolved> = stream::iter(references.iter())
        .map(|r| resolve(client, r))
        .buffered(jobs)
        .collect()
        .await;
    judge(resolved)
}

async fn resolve(client: &Client, r: &Reference) -> Resolved {
    let mut shown = r.clone();
    if shown.tag.is_none() && shown.digest.is_none() {
        shown.tag = Some("latest".into());
    }
    let mut out = Resolved {
        reference: shown.to_string(),
        registry: r.registry.clone(),
        repository: r.repository.clone(),
        status: Status::Ok,
        digest: None,
        media_type: None,
        size: None,
        error: None,
    };
    match client
        .head_manifest(&r.registry, &r.repository, &shown.object())
        .await
    {
        Ok(Some(info)) => {
            // A reference with both a tag and a digest must agree on both.
            if let (Some(_), Some(pinned)) = (&r.tag, &r.digest) {
                if pinned != &info.digest {
                    out.status = Status::Differs;
                }
            }
            out.digest = Some(info.digest);
            out.media_type = Some(info.media_type);
            out.size = Some(info.size);
        }
        Ok(None) => out.status = Status::Missing,
        Err(e) => {
            out.status = Status::Error;
            out.error = Some(e.to_string());
        }
    }
    out
}

/// Pick the common digest and mark the odd ones out.
fn judge(mut resolved: Vec<Resolved>) -> VerifyReport {
    let mut votes: Vec<(Digest, usize)> = Vec::new();
    for r in &resolved {
        if let (Status::Ok, Some(d)) = (r.status, &r.digest) {
            match votes.iter_mut().find(|(v, _)| v == d) {
                Some((_, n)) => *n += 1,
                None => votes.push((d.clone(), 1)),
            }
        }
    }
    // max_by_key keeps the last maximum; iterate reversed to keep the first.
    let digest = votes
        .iter()
        .rev()
        .max_by_key(|(_, n)| *n)
        .map(|(d, _)| d.clone());
    for r in &mut resolved {
        if r.status == Status::Ok && r.digest != digest {
            r.status = Status::Differs;
        }
    }
    let with = |s: Status| -> Vec<String> {
        resolved
            .iter()
            .filter(|r| r.status == s)
            .map(|r| r.reference.clone())
            .collect()
    };
    let (missing, mismatched, errors) = (
        with(Status::Missing),
        with(Status::Differs),
        with(Status::Error),
    );
    VerifyReport {
        ok: !resolved.is_empty() && resolved.iter().all(|r| r.status == Status::Ok),
        digest,
        missing,
        mismatched,
        errors,
        references: resolved,
    }
}

impl VerifyReport {
    /// The table for stdout: reference, digest, media type, registry, and
    /// the status of references that are not ok.
    pub fn render(&self) -> String {
        let rows: Vec<[String; 5]> = self
            .references
            .iter()
            .map(|r| {
                [
                    r.reference.clone(),
                    r.digest
                        .as_ref()
                        .map_or_else(|| "-".to_string(), |d| d.to_string()),
                    r.media_type.clone().unwrap_or_else(|| "-".into()),
                    r.registry.clone(),
                    match r.status {
                        Status::Ok => String::new(),
                        Status::Missing => "MISSING".into(),
                        Status::Differs => "DIFFERS".into(),
                        Status::Error => "ERROR".into(),
                    },
                ]
            })
            .collect();
        table(
            &["REFERENCE", "DIGEST", "MEDIA TYPE", "REGISTRY", ""],
            &rows,
        )
    }

    /// Why the check failed (one line per kind of problem), or `None`.
    pub fn problem(&self) -> Option<String> {
        if self.ok {
            return None;
        }
        let mut parts = Vec::new();
        if !self.mismatched.is_empty() {
            let odd: Vec<String> = self
                .references
                .iter()
                .filter(|r| r.status == Status::Differs)
                .map(|r| {
                    format!(
                        "{} names {}",
                        r.reference,
                        r.digest.as_ref().map_or("?", |d| d.as_str())
                    )
                })
                .collect();
            let agree = self
                .references
                .iter()
                .filter(|r| r.status == Status::Ok)
                .count();
            parts.push(format!(
                "digests differ: {} (while {agree} other reference(s) name {})",
                odd.join(", "),
                self.digest.as_ref().map_or("?", |d| d.as_str())
            ));
        }
        if !self.missing.is_empty() {
            parts.push(format!("not found: {}", self.missing.join(", ")));
        }
        for r in self.references.iter().filter(|r| r.status == Status::Error) {
            parts.push(format!(
                "{}: {}",
                r.reference,
                r.error.as_deref().unwrap_or("unknown error")
            ));
        }
        if parts.is_empty() {
            parts.push("no reference given".into());
        }
        Some(parts.join("; "))
    }
}

/// One repository's column in [`TagsReport`].
#[derive(Clone, Debug, Serialize)]
pub struct RepoTags {
    /// `registry/repository`.
    pub repository: String,
    pub tags: Vec<String>,
    pub error: Option<String>,
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
        let res = client
            .list_tags_paged(&r.registry, &r.repository, page_size)
            .await;
        match res {
            Ok(tags) => RepoTags {
                repository: r.name(),
                tags,
                error: None,
            },
            Err(e) => RepoTags {
                repository: r.name(),
                tags: Vec::new(),
                error: Some(e.to_string()),
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
                        .head_manifest(&r.registry, &r.repository, &tag)
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
    /// The side-by-side table: a row per tag, a column per repository
    /// (`yes`, `-`, or a short digest with `--digests`), and `*` on rows
    /// that differ between repositories.
    pub fn render(&self) -> String {
        let mut header: Vec<&str> = vec!["TAG"];
        header.extend(self.repositories.iter().map(|r| r.repository.as_str()));
        header.push("");
        let rows: Vec<Vec<String>> = self
            .tags
            .iter()
            .map(|row| {
                let mut v = vec![row.tag.clone()];
                for (i, p) in row.present.iter().enumerate() {
                    let cell = match (&row.digests, p) {
                        (_, false) => "-".to_string(),
                        (Some(ds), true) => ds[i]
                            .as_ref()
                            .map_or_else(|| "?".into(), |d| short(d).to_string()),
                        (None, true) => "yes".to_string(),
                    };
                    v.push(cell);
                }
                v.push(if row.same { String::new() } else { "*".into() });
                v
            })
            .collect();
        table(&header, &rows)
    }

    /// Tags missing somewhere or differing, for a one-line summary.
    pub fn differences(&self) -> Vec<String> {
        self.tags
            .iter()
            .filter(|t| !t.same)
            .map(|t| t.tag.clone())
            .collect()
    }
}

/// `sha256:` and the first 12 hex digits.
fn short(d: &Digest) -> &str {
    let s = d.as_str();
    let cut = d.algorithm().len() + 1 + 12;
    &s[..cut.min(s.len())]
}

/// Left-aligned columns separated by three spaces; trailing blanks trimmed.
fn table<R: AsRef<[String]>>(header: &[&str], rows: &[R]) -> String {
    let cols = header.len();
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.as_ref().iter().enumerate().take(cols) {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            l.push_str(c);
            if i + 1 < cells.len() {
                let pad = width[i] - c.chars().count() + 3;
                l.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for r in rows {
        line(r.as_ref().iter().map(String::as_str).collect());
    }
    out
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

    fn ok(r: &str, d: &[u8]) -> Resolved {
        Resolved {
            reference: r.into(),
            registry: "r".into(),
            repository: "x".into(),
            status: Status::Ok,
            digest: Some(Digest::of(d)),
            media_type: Some("m".into()),
            size: Some(1),
            error: None,
        }
    }

    #[test]
    fn the_odd_one_out_is_named() {
        let rep = judge(vec![ok("a", b"1"), ok("b", b"2"), ok("c", b"1")]);
        assert!(!rep.ok);
        assert_eq!(rep.digest, Some(Digest::of(b"1")));
        assert_eq!(rep.mismatched, ["b"]);
        let p = rep.problem().unwrap();
        assert!(p.contains("b names sha256:"), "{p}");
    }

    #[test]
    fn missing_references_fail_and_agreement_passes() {
        let mut m = ok("b", b"1");
        m.status = Status::Missing;
        m.digest = None;
        let rep = judge(vec![ok("a", b"1"), m]);
        assert!(!rep.ok);
        assert_eq!(rep.missing, ["b"]);
        assert!(rep.mismatched.is_empty());
        assert!(judge(vec![ok("a", b"1"), ok("b", b"1")]).ok);
        assert!(!judge(vec![]).ok);
    }

    #[test]
    fn ties_keep_the_first_references_digest() {
        let rep = judge(vec![ok("a", b"1"), ok("b", b"2")]);
        assert_eq!(rep.digest, Some(Digest::of(b"1")));
        assert_eq!(rep.mismatched, ["b"]);
    }

    #[test]
    fn natural_order() {
        let mut v = vec!["1.10", "latest", "1.9", "1.9.1", "01.9", "edge"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["01.9", "1.9", "1.9.1", "1.10", "edge", "latest"]);
    }

    #[test]
    fn tables_align() {
        let t = table(
            &["A", "BB", ""],
            &[
                vec!["xxx".to_string(), "y".into(), String::new()],
                vec!["z".to_string(), "w".into(), "*".into()],
            ],
        );
        assert_eq!(t, "A     BB\nxxx   y\nz     w    *\n");
    }
}

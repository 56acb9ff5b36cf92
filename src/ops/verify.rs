//! `verify`: does every reference name the same image?
//!
//! One `HEAD` per reference (Docker Hub does not count HEADs against its
//! pull limit; a GET happens only when a registry answers a HEAD without
//! `Docker-Content-Digest`). [`verify_pushed`] runs the check after a push,
//! waiting for registries whose tags lag behind.
//!
//! Takes a [`Client`] and never prints; the binary renders the report
//! ([`render::verify::verify`](crate::render::verify::verify)) or serialises it.

use std::time::Duration;

use anyhow::{Context as _, Result};
use futures_util::stream::{self, StreamExt as _};
use serde::Serialize;

use crate::oci::Digest;
use crate::progress::{Level, SharedReporter};
use crate::push::PushReport;
use crate::registry::{
    AuthError, Client, ClientOptions, CredentialStore, ErrorKind, Reference, RegistryError,
};

/// What one reference resolved to.
#[derive(Clone, Debug, Serialize)]
pub struct Resolved {
    /// The reference as normalised (`docker.io/library/alpine:latest`).
    pub reference: String,
    pub registry: String,
    pub repository: String,
    /// `ok`, `missing` (404, or the tag of a `REPO:TAG@DIGEST` is not
    /// there), `differs` (not the common digest, or that tag names another
    /// digest than the reference gives) or `error`.
    pub status: Status,
    pub digest: Option<Digest>,
    pub media_type: Option<String>,
    pub size: Option<u64>,
    pub error: Option<RegistryError>,
    /// The reference gives a tag and a digest, and the tag names another
    /// digest (then in [`Resolved::digest`]).
    #[serde(skip)]
    pub tag_moved: bool,
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
    /// The digest most references name (ties: the earliest reference's);
    /// after a push, the pushed digest, whatever the others name.
    pub digest: Option<Digest>,
    pub references: Vec<Resolved>,
    /// References that do not exist (tag or digest unknown, or no repository).
    pub missing: Vec<String>,
    /// References that name another digest than [`VerifyReport::digest`],
    /// and `REPO:TAG@DIGEST` references whose tag names another digest.
    pub mismatched: Vec<String>,
    /// References that could not be resolved (auth, network, 5xx after retries).
    pub errors: Vec<String>,
}

/// Resolve every reference by `HEAD` on its manifest (in parallel, within
/// the client's per-registry limit) and compare the digests. A reference
/// without tag or digest means `:latest`; with a digest only, that digest
/// is asked for; with a tag and a digest, the tag is, and must name that
/// digest.
pub async fn verify(client: &Client, references: &[Reference]) -> VerifyReport {
    check(client, references, None).await
}

/// [`verify`], every reference expected to name `expected` when given
/// (after a push: a registry serving a stale tag is the odd one out even
/// when its references are the most).
async fn check(
    client: &Client,
    references: &[Reference],
    expected: Option<&Digest>,
) -> VerifyReport {
    let jobs = client.options().jobs_per_registry.max(1) * 2;
    let resolved: Vec<Resolved> = stream::iter(references.iter())
        .map(|r| resolve(client, r))
        .buffered(jobs)
        .collect()
        .await;
    judge(resolved, expected)
}

async fn resolve(client: &Client, r: &Reference) -> Resolved {
    let shown = r.or_latest();
    let mut out = Resolved {
        reference: shown.to_string(),
        registry: r.registry.clone(),
        repository: r.repository.clone(),
        status: Status::Ok,
        digest: None,
        media_type: None,
        size: None,
        error: None,
        tag_moved: false,
    };
    // A reference with both a tag and a digest is checked as both: the tag
    // is resolved, and must name that digest. Asking for the digest alone
    // would find it in the repository whatever the tag names.
    let (object, pinned) = match (&r.tag, &r.digest) {
        (Some(tag), Some(d)) => (tag.clone(), Some(d)),
        _ => (shown.object(), None),
    };
    match client.repo_of(r).head_manifest(&object).await {
        Ok(Some(info)) => {
            if pinned.is_some_and(|d| d != &info.digest) {
                out.status = Status::Differs;
                out.tag_moved = true;
            }
            out.digest = Some(info.digest);
            out.media_type = Some(info.media_type);
            out.size = Some(info.size);
        }
        Ok(None) => out.status = Status::Missing,
        Err(e) => {
            out.status = Status::Error;
            out.error = Some(e);
        }
    }
    out
}

/// Pick the common digest (`expected` when given) and mark the odd ones
/// out.
fn judge(mut resolved: Vec<Resolved>, expected: Option<&Digest>) -> VerifyReport {
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
    let digest = expected.cloned().or_else(|| {
        (votes.iter().rev())
            .max_by_key(|(_, n)| *n)
            .map(|(d, _)| d.clone())
    });
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
    /// Whether a reference failed on the user's own input (a broken auth
    /// file), not on its registry.
    pub fn is_bad_input(&self) -> bool {
        self.references
            .iter()
            .any(|r| r.error.as_ref().is_some_and(RegistryError::is_bad_input))
    }

    /// Why the check failed (one line per kind of problem), or `None`.
    pub fn problem(&self) -> Option<String> {
        if self.ok {
            return None;
        }
        let mut parts = Vec::new();
        let named = |r: &Resolved| r.digest.as_ref().map_or("?", |d| d.as_str()).to_string();
        let moved: Vec<String> = self
            .references
            .iter()
            .filter(|r| r.status == Status::Differs && r.tag_moved)
            .map(|r| format!("{}: its tag names {}", r.reference, named(r)))
            .collect();
        if !moved.is_empty() {
            parts.push(format!("tag and digest disagree: {}", moved.join(", ")));
        }
        if self
            .references
            .iter()
            .any(|r| r.status == Status::Differs && !r.tag_moved)
        {
            let odd: Vec<String> = self
                .references
                .iter()
                .filter(|r| r.status == Status::Differs && !r.tag_moved)
                .map(|r| format!("{} names {}", r.reference, named(r)))
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
            // A backup that missed a push is the usual cause: say how to
            // put the image there from a reference that holds it.
            let copy = self
                .references
                .iter()
                .find(|r| r.status == Status::Ok)
                .map(|r| {
                    format!(
                        " (`boxwright copy {} DEST` puts the image there from one that holds it)",
                        r.reference
                    )
                })
                .unwrap_or_default();
            parts.push(format!("not found: {}{copy}", self.missing.join(", ")));
        }
        for r in self.references.iter().filter(|r| r.status == Status::Error) {
            match &r.error {
                Some(e) => parts.push(format!("{}: {e}", r.reference)),
                None => parts.push(format!("{}: unknown error", r.reference)),
            }
        }
        if parts.is_empty() {
            parts.push("no reference given".into());
        }
        Some(parts.join("; "))
    }
}

/// After a push: HEAD every reference pushed successfully, with `client`
/// (the push's credentials). Tags read right after a push may lag on some
/// registries (GHCR): a report that is not ok, or names another digest than
/// the pushed one, is retried after 1, 2 and 4 s. `None` when no target was
/// pushed.
pub async fn verify_pushed(
    client: &Client,
    report: &PushReport,
    reporter: &SharedReporter,
) -> Result<Option<VerifyReport>> {
    let refs = report
        .targets
        .iter()
        .filter(|t| t.ok)
        .map(|t| {
            Reference::parse(&t.reference).with_context(|| format!("reference {}", t.reference))
        })
        .collect::<Result<Vec<_>>>()?;
    if refs.is_empty() {
        return Ok(None);
    }
    let mut delay = Duration::from_secs(1);
    for attempt in 0.. {
        let v = check(client, &refs, Some(&report.digest)).await;
        let pushed_digest = v.digest.as_ref() == Some(&report.digest);
        if (v.ok && pushed_digest) || attempt == 3 {
            match v.problem() {
                None if pushed_digest => reporter.log(
                    Level::Info,
                    &format!(
                        "verify: all {} references name {}",
                        refs.len(),
                        report.digest
                    ),
                ),
                None => {}
                Some(p) => reporter.log(Level::Warn, &format!("verify: {p}")),
            }
            return Ok(Some(v));
        }
        reporter.log(
            Level::Debug,
            &format!(
                "verify: not yet consistent ({}), again in {}s",
                v.problem().unwrap_or_else(|| "another digest".into()),
                delay.as_secs()
            ),
        );
        tokio::time::sleep(delay).await;
        delay *= 2;
    }
    Ok(None)
}

impl VerifyReport {
    /// The error of a verification after a push of `pushed` that did not
    /// confirm it: a problem, or every reference naming another digest.
    pub fn after_push_error(&self, pushed: &Digest) -> Option<anyhow::Error> {
        match self.problem() {
            Some(p) => Some(anyhow::anyhow!("verify after push failed: {p}")),
            None if self.digest.as_ref() != Some(pushed) => Some(anyhow::anyhow!(
                "verify after push failed: the references name {}, not the pushed {pushed}",
                self.digest
                    .as_ref()
                    .map_or_else(|| "nothing".to_string(), |d| d.to_string()),
            )),
            None => None,
        }
    }
}

/// Whether one reference can be pulled without credentials
/// (`verify --anonymous`).
#[derive(Clone, Debug, Serialize)]
pub struct Anonymous {
    pub reference: String,
    pub registry: String,
    pub anonymous_pull: bool,
    pub status: Access,
    /// The registry's HTTP status for the anonymous request (none when it
    /// gave no answer, or its token server refused an anonymous token).
    pub http_status: Option<u16>,
    pub digest: Option<Digest>,
    /// What the anonymous request met (serialised as its text).
    pub error: Option<RegistryError>,
}

/// What an anonymous pull met.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// Pulled: the image is public.
    Ok,
    /// 401, or no anonymous token: credentials are needed.
    Unauthorized,
    /// 403: refused.
    Forbidden,
    /// 404: not visible without credentials (GHCR hides private packages so).
    NotFound,
    /// No answer, or another status.
    Error,
}

/// For every reference, ask for its manifest with no credentials at all
/// (no auth file, no `GITHUB_TOKEN`; a token registry is asked for an
/// anonymous token). A `HEAD`, which Docker Hub does not count against its
/// pull limit, needs the same pull access as a `GET`. Never an error by
/// itself: the answer is in each [`Anonymous`].
pub async fn anonymous(
    opts: ClientOptions,
    references: &[Reference],
    reporter: &SharedReporter,
) -> Result<Vec<Anonymous>> {
    let client = Client::new(opts, CredentialStore::default(), reporter.clone())?;
    let jobs = client.options().jobs_per_registry.max(1) * 2;
    Ok(stream::iter(references.iter())
        .map(|r| anonymous_one(&client, r))
        .buffered(jobs)
        .collect()
        .await)
}

async fn anonymous_one(client: &Client, r: &Reference) -> Anonymous {
    let shown = r.or_latest();
    let (status, http_status, digest, error) =
        match client.repo_of(r).head_manifest(&shown.object()).await {
            Ok(Some(info)) => (Access::Ok, Some(200), Some(info.digest), None),
            Ok(None) => (Access::NotFound, Some(404), None, None),
            Err(e) => {
                let e = e.sent_anonymously();
                let access = match (e.status(), &e.kind) {
                    (Some(401), _) | (None, ErrorKind::Auth(AuthError::Rejected { .. })) => {
                        Access::Unauthorized
                    }
                    (Some(403), _) => Access::Forbidden,
                    (Some(404), _) => Access::NotFound,
                    _ => Access::Error,
                };
                (access, e.status(), None, Some(e))
            }
        };
    Anonymous {
        reference: shown.to_string(),
        registry: r.registry.clone(),
        anonymous_pull: status == Access::Ok,
        status,
        http_status,
        digest,
        error,
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
            tag_moved: false,
        }
    }

    #[test]
    fn the_odd_one_out_is_named() {
        let rep = judge(vec![ok("a", b"1"), ok("b", b"2"), ok("c", b"1")], None);
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
        let rep = judge(vec![ok("a", b"1"), m], None);
        assert!(!rep.ok);
        assert_eq!(rep.missing, ["b"]);
        assert!(rep.mismatched.is_empty());
        assert!(judge(vec![ok("a", b"1"), ok("b", b"1")], None).ok);
        assert!(!judge(vec![], None).ok);
    }

    #[test]
    fn ties_keep_the_first_references_digest() {
        let rep = judge(vec![ok("a", b"1"), ok("b", b"2")], None);
        assert_eq!(rep.digest, Some(Digest::of(b"1")));
        assert_eq!(rep.mismatched, ["b"]);
    }

    #[test]
    fn a_tag_that_names_another_digest_than_its_reference_gives_is_named() {
        let mut moved = ok("b:latest@sha256:1", b"2");
        moved.status = Status::Differs;
        moved.tag_moved = true;
        let rep = judge(vec![ok("a", b"1"), moved], None);
        assert!(!rep.ok);
        assert_eq!(rep.digest, Some(Digest::of(b"1")));
        assert_eq!(rep.mismatched, ["b:latest@sha256:1"]);
        let p = rep.problem().unwrap();
        let two = Digest::of(b"2");
        assert_eq!(
            p,
            format!("tag and digest disagree: b:latest@sha256:1: its tag names {two}")
        );
    }
}

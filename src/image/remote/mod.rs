//! Images in registries, resolved with fallbacks.
//!
//! A reference is resolved on the first registry that answers ([`resolve_first`]):
//! a 404, 429, 5xx, or a failed/timed-out connection moves on to the next
//! one; anything else (401, a digest mismatch) stops, because another mirror
//! would not fix it. Resolution uses a client whose retry policy gives up
//! quickly ([`resolve_policy`]) so that a struggling primary hands over in
//! about a second. Everything after that comes from the registry that
//! served: manifests by digest ([`RegistryImage`]), configs and layers
//! through the content-addressed blob cache ([`RemoteBlobs`]), each blob
//! checked against its digest while it streams to disk and fetched at most
//! once per run. A blob that registry cannot give (missing, corrupt, too
//! slow) is fetched from the other references in turn: its digest names the
//! same bytes everywhere.

mod blobs;
mod platform;

pub use blobs::{BlobFallback, CacheCounts, RegistryImage, RemoteBlobs};
pub use platform::{
    oci_layer_media_type, parse_json, select, PlatformImage, RegistryBase, RemoteImages,
};

use std::time::Duration;

use anyhow::{anyhow, Result};
use serde::Serialize;

use crate::error::bad_input;
use crate::oci::{self, Digest};
use crate::progress::{Level, SharedReporter};
use crate::registry::transport::limits;
use crate::registry::{Client, ErrorKind, ManifestInfo, Reference, RegistryError, RetryPolicy};

/// The retry policy of the resolve step: one retry, short delays (and a
/// `Retry-After` over two seconds is not waited for), so that a primary
/// answering 503 or 429 hands over to the fallback promptly.
pub fn resolve_policy() -> RetryPolicy {
    RetryPolicy {
        max_retries: 1,
        base: Duration::from_millis(100),
        max_delay: Duration::from_secs(2),
    }
}

/// How long resolving one reference may take (retry included) before the
/// next one is tried: a registry that accepts connections but never answers
/// counts as down. The same as one attempt's deadline for a document, so
/// that a manifest trickling in fails in the same time wherever it is read.
pub const RESOLVE_TIMEOUT: Duration = limits::DOCUMENT_DEADLINE;

/// Whether a failure to resolve on one registry moves on to the next
/// reference: not found (404), rate-limited (429), server errors (5xx, 408),
/// transport failures (refused, reset, timed out) and answers too slow to
/// arrive within their deadline.
pub fn moves_on(e: &RegistryError) -> bool {
    match e.status() {
        Some(404 | 408 | 429) => true,
        Some(s) => s >= 500,
        None => matches!(e.kind, ErrorKind::Transport(_) | ErrorKind::Deadline(_)),
    }
}

/// A reference that was tried and did not serve.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub reference: String,
    /// Why it did not serve (serialised as its text).
    pub error: RegistryError,
}

/// No reference given to [`resolve_first`] served: each with why, in order.
/// Shown as `no registry served PRIMARY: REF: why; ...`. The registry
/// errors are in [`NotServed::attempts`] (the text already holds them, so
/// they are not its `source()`): a reference missing everywhere (all 404,
/// [`NotServed::all_not_found`]) can be told apart from registries that
/// could not be reached.
#[derive(Debug, Clone)]
pub struct NotServed {
    /// The primary reference.
    pub requested: Reference,
    /// Every reference tried, the last one's error ending the search.
    pub attempts: Vec<Attempt>,
}

impl NotServed {
    /// True when every registry answered that it does not have the
    /// reference (404).
    pub fn all_not_found(&self) -> bool {
        self.attempts.iter().all(|a| a.error.status() == Some(404))
    }

    /// The error that ended the search.
    pub fn last(&self) -> Option<&RegistryError> {
        self.attempts.last().map(|a| &a.error)
    }
}

impl std::fmt::Display for NotServed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no registry served {}", self.requested)?;
        for (i, a) in self.attempts.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { "; " })?;
            write!(f, "{}: {}", a.reference, a.error)?;
        }
        Ok(())
    }
}

impl std::error::Error for NotServed {}

/// A reference resolved on the registry that answered.
#[derive(Debug, Clone)]
pub struct Served {
    /// The reference that served.
    pub reference: Reference,
    /// The first reference asked for (the primary).
    pub requested: Reference,
    /// Position of `reference` in the list tried (0: the primary).
    pub position: usize,
    /// The top-level manifest or index, as served.
    pub info: ManifestInfo,
    pub bytes: Vec<u8>,
    /// The references tried before, with why each did not serve.
    pub skipped: Vec<Attempt>,
    /// Every other reference given, in order: where a blob is fetched when
    /// the registry that served cannot give it (a digest names the same
    /// bytes everywhere).
    pub alternates: Vec<Reference>,
}

impl Served {
    pub fn is_index(&self) -> bool {
        oci::is_index_media_type(&self.info.media_type)
    }

    /// A short report (`--json`, `BuildResult`).
    pub fn report(&self) -> ServedReport {
        ServedReport {
            reference: self.reference.to_string(),
            requested: self.requested.to_string(),
            registry: self.reference.registry.clone(),
            fallback: self.position > 0,
            digest: self.info.digest.clone(),
            media_type: self.info.media_type.clone(),
            skipped: self.skipped.clone(),
        }
    }
}

/// Which registry served an image, for reports.
#[derive(Debug, Clone, Serialize)]
pub struct ServedReport {
    /// The reference that served.
    pub reference: String,
    /// The primary reference.
    pub requested: String,
    pub registry: String,
    /// True when a fallback served.
    pub fallback: bool,
    /// Digest of the top-level manifest or index served.
    pub digest: Digest,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// References tried first, and why they did not serve.
    pub skipped: Vec<Attempt>,
}

/// GET the manifest of each reference in turn until one serves.
#[allow(clippy::result_large_err)] // RegistryError carries its context; cold path
pub async fn resolve_first(
    client: &Client,
    refs: &[Reference],
    reporter: &SharedReporter,
) -> Result<Served> {
    let requested = refs
        .first()
        .cloned()
        .ok_or_else(|| bad_input("no image reference given"))?;
    let mut skipped = Vec::new();
    for (position, r) in refs.iter().enumerate() {
        let answer =
            tokio::time::timeout(RESOLVE_TIMEOUT, client.repo_of(r).get_manifest(&r.object()))
                .await
                .unwrap_or_else(|_| {
                    Err(RegistryError::new(
                        crate::registry::ErrorContext {
                            operation: "fetching manifest".into(),
                            registry: r.registry.clone(),
                            repository: Some(r.repository.clone()),
                            object: Some(r.object()),
                        },
                        ErrorKind::Transport(format!(
                            "no complete answer within {}s (timed out)",
                            RESOLVE_TIMEOUT.as_secs()
                        )),
                    ))
                });
        match answer {
            Ok((info, bytes)) => {
                if !oci::is_index_media_type(&info.media_type)
                    && !oci::is_manifest_media_type(&info.media_type)
                {
                    return Err(anyhow!(
                        "{r} is a {:?}, not an image manifest or index",
                        info.media_type
                    ));
                }
                let alternates = refs
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != position)
                    .map(|(_, a)| a.clone())
                    .collect();
                return Ok(Served {
                    reference: r.clone(),
                    requested,
                    position,
                    info,
                    bytes,
                    skipped,
                    alternates,
                });
            }
            Err(e) if moves_on(&e) && position + 1 < refs.len() => {
                reporter.log(
                    Level::Warn,
                    &format!("{r}: {e}; trying {}", refs[position + 1]),
                );
                skipped.push(Attempt {
                    reference: r.to_string(),
                    error: e,
                });
            }
            Err(e) if skipped.is_empty() => {
                return Err(anyhow::Error::new(e).context(format!("resolving {r}")))
            }
            Err(e) => {
                skipped.push(Attempt {
                    reference: r.to_string(),
                    error: e,
                });
                return Err(anyhow::Error::new(NotServed {
                    requested,
                    attempts: skipped,
                }));
            }
        }
    }
    Err(anyhow::Error::new(NotServed {
        requested,
        attempts: skipped,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(kind: ErrorKind) -> RegistryError {
        RegistryError::new(Default::default(), kind)
    }

    #[test]
    fn not_served_reads_as_before_and_keeps_each_error() {
        let status = |s| {
            err(ErrorKind::Status {
                status: s,
                errors: vec![],
            })
        };
        let attempt = |r: &str, error| Attempt {
            reference: r.into(),
            error,
        };
        let missing = NotServed {
            requested: Reference::parse("a.io/x:1").unwrap(),
            attempts: vec![
                attempt("a.io/x:1", status(404)),
                attempt("b.io/x:1", status(404)),
            ],
        };
        let (e404, refused) = (status(404), err(ErrorKind::Transport("refused".into())));
        assert_eq!(
            missing.to_string(),
            format!("no registry served a.io/x:1: a.io/x:1: {e404}; b.io/x:1: {e404}")
        );
        assert!(missing.all_not_found());
        let down = NotServed {
            attempts: vec![
                attempt("a.io/x:1", status(404)),
                attempt("b.io/x:1", refused.clone()),
            ],
            ..missing
        };
        assert!(!down.all_not_found());
        assert_eq!(down.last().unwrap().to_string(), refused.to_string());
        let json = serde_json::to_value(&down.attempts[1]).unwrap();
        assert_eq!(json["error"], refused.to_string().as_str());
    }

    #[test]
    fn what_moves_on_to_the_fallback() {
        let status = |s| {
            err(ErrorKind::Status {
                status: s,
                errors: vec![],
            })
        };
        for s in [404, 429, 500, 502, 503, 504] {
            assert!(moves_on(&status(s)), "{s}");
        }
        for s in [400, 401, 403] {
            assert!(!moves_on(&status(s)), "{s}");
        }
        assert!(moves_on(&err(ErrorKind::Transport("timed out".into()))));
        assert!(moves_on(&err(ErrorKind::Deadline("too slow".into()))));
        assert!(!moves_on(&err(ErrorKind::DigestMismatch {
            expected: "a".into(),
            actual: "b".into()
        })));
    }
}

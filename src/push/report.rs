//! What a push did, per target and per registry. Failures are kept as
//! values ([`PushError`]: which registry, repository, digest, status and
//! error codes) and rendered as text only when the report is shown or
//! serialised, as the same strings the `--json` document has always had.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use anyhow::anyhow;
use serde::{Serialize, Serializer};

use crate::oci::Digest;
use crate::registry::RegistryError;

/// Why a target or a registry failed.
#[derive(Clone, Debug)]
pub enum PushError {
    /// A manifest or tag request failed.
    Registry(RegistryError),
    /// A blob could not be made present (a registry answer, or its bytes
    /// could not be read or fetched); the whole cause chain is kept.
    Blob(Arc<anyhow::Error>),
    /// The target names a digest, and the image has another.
    DigestMismatch { named: Digest, image: Digest },
    /// A blob the manifests need was not confirmed on the registry.
    Unconfirmed(Digest),
    /// The target was never reached.
    NotPushed,
    /// Anything else, as text.
    Other(String),
}

impl PushError {
    /// The registry error underneath, when there is one.
    pub fn registry_error(&self) -> Option<&RegistryError> {
        match self {
            PushError::Registry(e) => Some(e),
            PushError::Blob(e) => e.chain().find_map(|c| c.downcast_ref::<RegistryError>()),
            _ => None,
        }
    }

    /// Whether the push failed on its own input (a layout blob that is
    /// corrupt, missing or of the wrong size; a broken auth file), not on a
    /// registry.
    pub fn is_bad_input(&self) -> bool {
        match self {
            PushError::Blob(e) => crate::error::is_bad_input(e),
            PushError::Registry(e) => e.is_bad_input(),
            _ => false,
        }
    }

    /// The HTTP status of the failed request.
    pub fn status(&self) -> Option<u16> {
        self.registry_error().and_then(|e| e.status())
    }

    /// The registry's own error codes (`MANIFEST_INVALID`, `DENIED`, ...).
    pub fn codes(&self) -> Vec<String> {
        match self.registry_error().map(|e| &e.kind) {
            Some(crate::registry::ErrorKind::Status { errors, .. }) => {
                errors.iter().map(|e| e.code.clone()).collect()
            }
            _ => Vec::new(),
        }
    }

    /// The registry and repository the failed request went to.
    pub fn location(&self) -> Option<(&str, Option<&str>)> {
        self.registry_error()
            .map(|e| (e.context.registry.as_str(), e.context.repository.as_deref()))
    }

    /// The digest concerned, when the failure is about one.
    pub fn digest(&self) -> Option<&Digest> {
        match self {
            PushError::DigestMismatch { named, .. } => Some(named),
            PushError::Unconfirmed(d) => Some(d),
            _ => None,
        }
    }
}

impl fmt::Display for PushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::Registry(e) => write!(f, "{e}"),
            PushError::Blob(e) => write!(f, "{e:#}"),
            PushError::DigestMismatch { named, image } => write!(
                f,
                "the target names digest {named}, but the image's digest is {image}"
            ),
            PushError::Unconfirmed(d) => write!(f, "blob {d} was not confirmed"),
            PushError::NotPushed => f.write_str("not pushed"),
            PushError::Other(s) => f.write_str(s),
        }
    }
}

impl Serialize for PushError {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl From<String> for PushError {
    fn from(s: String) -> PushError {
        PushError::Other(s)
    }
}

/// What was pushed to one target.
#[derive(Clone, Debug, Serialize)]
pub struct TargetReport {
    pub reference: String,
    pub registry: String,
    pub optional: bool,
    pub ok: bool,
    /// The digest the target now names (when ok).
    pub digest: Option<Digest>,
    pub error: Option<PushError>,
    /// Blobs of the image in this target's repository, by how they got there.
    pub blobs_uploaded: u64,
    pub blobs_mounted: u64,
    pub blobs_present: u64,
    /// Blob bytes uploaded into this target's repository.
    pub bytes_sent: u64,
    // No `retries` here: a blob is uploaded once per registry for all of its
    // targets, so retries cannot be told apart per target. They are counted
    // per registry, in `RegistryReport::retries`.
    pub seconds: f64,
}

/// Per-registry figures.
#[derive(Clone, Debug, Serialize)]
pub struct RegistryReport {
    pub registry: String,
    pub ok: bool,
    pub error: Option<PushError>,
    /// Requests by method, retries included.
    pub requests: BTreeMap<String, u64>,
    /// All request body bytes (blobs and manifests, retries included).
    pub bytes_sent: u64,
    /// Attempts repeated on this registry after a temporary failure
    /// (requests, upload restarts and resumes), for all its targets together.
    pub retries: u64,
    pub seconds: f64,
}

/// The outcome of a push.
#[derive(Clone, Debug, Serialize)]
pub struct PushReport {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub targets: Vec<TargetReport>,
    pub registries: Vec<RegistryReport>,
}

fn why(e: &Option<PushError>) -> String {
    e.as_ref()
        .map_or_else(|| "unknown error".to_string(), |e| e.to_string())
}

impl PushReport {
    /// True when every non-optional target holds the image.
    pub fn succeeded(&self) -> bool {
        self.targets.iter().all(|t| t.ok || t.optional)
    }

    /// One line per failed optional target.
    pub fn warnings(&self) -> Vec<String> {
        self.targets
            .iter()
            .filter(|t| !t.ok && t.optional)
            .map(|t| format!("optional target {} failed: {}", t.reference, why(&t.error)))
            .collect()
    }

    /// The `--json` document.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// An error naming every failed required target, when there is one.
    /// A failure on the push's own input is bad input (exit 2).
    pub fn error(&self) -> Option<anyhow::Error> {
        let failed: Vec<&TargetReport> = self
            .targets
            .iter()
            .filter(|t| !t.ok && !t.optional)
            .collect();
        if failed.is_empty() {
            return None;
        }
        let lines: Vec<String> = failed
            .iter()
            .map(|t| format!("{}: {}", t.reference, why(&t.error)))
            .collect();
        let message = format!("push failed for {}", lines.join("; "));
        let input = failed
            .iter()
            .any(|t| t.error.as_ref().is_some_and(PushError::is_bad_input));
        Some(if input {
            crate::error::bad_input(message)
        } else {
            anyhow!(message)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{error::ApiError, ErrorContext, ErrorKind};

    #[test]
    fn errors_render_as_text_and_keep_their_fields() {
        let e = RegistryError::new(
            ErrorContext {
                operation: "uploading manifest".into(),
                registry: "ghcr.io".into(),
                repository: Some("acme/r2d".into()),
                object: Some("1.0".into()),
            },
            ErrorKind::Status {
                status: 400,
                errors: vec![ApiError {
                    code: "MANIFEST_INVALID".into(),
                    message: String::new(),
                }],
            },
        );
        let text = e.to_string();
        let p = PushError::Registry(e.clone());
        assert_eq!(p.to_string(), text);
        assert_eq!(serde_json::to_value(&p).unwrap(), text.as_str());
        assert_eq!(p.status(), Some(400));
        assert_eq!(p.codes(), ["MANIFEST_INVALID"]);
        assert_eq!(p.location(), Some(("ghcr.io", Some("acme/r2d"))));
        // A blob failure keeps its whole chain, rendered as `{:#}`.
        let chained = anyhow::Error::new(e).context("uploading blob");
        let rendered = format!("{chained:#}");
        let b = PushError::Blob(Arc::new(chained));
        assert_eq!(b.to_string(), rendered);
        assert_eq!(b.status(), Some(400));
    }
}

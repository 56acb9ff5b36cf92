//! What a push did, per target and per registry. Failures are kept as
//! values ([`PushError`]: which registry, repository, digest, status and
//! error codes) and rendered as text only when the report is shown or
//! serialised, as the same strings the `--json` document has always had.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Serialize, Serializer};

use crate::oci::Digest;
use crate::registry::{EnvCredentialError, RegistryError};

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
    /// The run was stopped (`--timeout`, SIGINT, SIGTERM) before this
    /// target was done: its tag was not written by this run.
    Stopped,
    /// An optional target left out before the push: a credential variable
    /// of its own is missing, empty or badly encoded (named, never its
    /// value). Nothing is sent there.
    Credentials(EnvCredentialError),
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
            PushError::Credentials(_) => true,
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
            PushError::Blob(e) => crate::error::write_chain(f, &***e),
            PushError::DigestMismatch { named, image } => write!(
                f,
                "the target names digest {named}, but the image's digest is {image}"
            ),
            PushError::Unconfirmed(d) => write!(f, "blob {d} was not confirmed"),
            PushError::NotPushed => f.write_str("not pushed"),
            PushError::Stopped => f.write_str("not done: the run was stopped first"),
            PushError::Credentials(e) => write!(f, "not pushed: {e}"),
            PushError::Other(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for PushError {
    /// The registry error, or the blob's error as it was returned; its text
    /// is part of this one's.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PushError::Registry(e) => Some(e),
            PushError::Blob(e) => Some(&***e),
            PushError::Credentials(e) => Some(e),
            _ => None,
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
    /// The digest the target's tag named before the push moved it to the
    /// image, as `docker push` moves a tag (`None`: a new tag, one that
    /// named the image already, or a failed target).
    pub replaced: Option<Digest>,
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
    /// The targets whose failure fails the push: the required ones that
    /// failed, or every target when none holds the image (optional targets
    /// only warn while another target holds it).
    fn failures(&self) -> impl Iterator<Item = &TargetReport> {
        let none_ok = self.targets.iter().all(|t| !t.ok);
        self.targets
            .iter()
            .filter(move |t| !t.ok && (!t.optional || none_ok))
    }

    /// True when every non-optional target holds the image, and some target
    /// does.
    pub fn succeeded(&self) -> bool {
        self.failures().next().is_none()
    }

    /// One line per failed optional target, while another target holds the
    /// image.
    pub fn warnings(&self) -> Vec<String> {
        if self.targets.iter().all(|t| !t.ok) {
            return Vec::new();
        }
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

    /// An error naming every target whose failure fails the push (see
    /// [`PushReport::succeeded`]), when there is one: a
    /// [`PushFailed`], whose chain reaches the targets' [`PushError`]s and
    /// the registry errors under them. A failure on the push's own input is
    /// bad input (exit 2).
    pub fn error(&self) -> Option<anyhow::Error> {
        let failed: Vec<(String, PushError)> = self
            .failures()
            .map(|t| {
                let e = t
                    .error
                    .clone()
                    .unwrap_or_else(|| PushError::Other("unknown error".to_string()));
                (t.reference.clone(), e)
            })
            .collect();
        (!failed.is_empty()).then(|| anyhow::Error::new(PushFailed { failed }))
    }
}

/// The targets whose failure failed a push, each with its error, as
/// [`PushReport::error`] returns them: shown as `push failed for REF: why;
/// ...`. Its source is the first failure on the push's own input, or else
/// the first failure, so that `chain()` reaches a [`PushError`] and the
/// [`RegistryError`] under it.
#[derive(Clone, Debug)]
pub struct PushFailed {
    failed: Vec<(String, PushError)>,
}

impl PushFailed {
    /// Each failed target's reference and error, in target order.
    pub fn failures(&self) -> &[(String, PushError)] {
        &self.failed
    }
}

impl fmt::Display for PushFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("push failed for ")?;
        for (i, (reference, e)) in self.failed.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{reference}: {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PushFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        let first_input = self.failed.iter().find(|(_, e)| e.is_bad_input());
        first_input
            .or(self.failed.first())
            .map(|(_, e)| e as &(dyn std::error::Error + 'static))
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

    fn target(reference: &str, error: Option<PushError>) -> TargetReport {
        TargetReport {
            reference: reference.into(),
            registry: "r".into(),
            optional: false,
            ok: error.is_none(),
            digest: None,
            replaced: None,
            error,
            blobs_uploaded: 0,
            blobs_mounted: 0,
            blobs_present: 0,
            bytes_sent: 0,
            seconds: 0.0,
        }
    }

    fn report(targets: Vec<TargetReport>) -> PushReport {
        PushReport {
            digest: Digest::of(b"x"),
            media_type: String::new(),
            size: 0,
            targets,
            registries: Vec::new(),
        }
    }

    #[test]
    fn the_error_reads_as_before_and_reaches_the_registry_error() {
        let refused = RegistryError::new(
            ErrorContext {
                operation: "uploading blob".into(),
                registry: "r".into(),
                ..Default::default()
            },
            ErrorKind::Transport("connection refused".into()),
        );
        let blob = PushError::Blob(Arc::new(
            anyhow::Error::new(refused.clone()).context("blob sha256:1"),
        ));
        let r = report(vec![
            target("r/a:1", Some(PushError::NotPushed)),
            target("r/ok:1", None),
            target("r/b:1", Some(blob.clone())),
            target("r/c:1", None),
        ]);
        let mut unknown = r.clone();
        unknown.targets[3].ok = false;
        let err = r.error().unwrap();
        let text = format!("push failed for r/a:1: not pushed; r/b:1: {blob}");
        assert_eq!(err.to_string(), text);
        assert_eq!(crate::error::one_line(&err).to_string(), text);
        let failed = err.downcast_ref::<PushFailed>().unwrap();
        assert_eq!(failed.failures().len(), 2);
        // The first failure is the source; nothing under `NotPushed`.
        assert!(matches!(
            err.chain()
                .nth(1)
                .and_then(|e| e.downcast_ref::<PushError>()),
            Some(PushError::NotPushed)
        ));
        assert!(!crate::error::is_bad_input(&err));
        // Only the blob failure: its registry error is on the chain.
        let only = report(vec![target("r/b:1", Some(blob))]).error().unwrap();
        let found = only
            .chain()
            .find_map(|e| e.downcast_ref::<RegistryError>())
            .unwrap();
        assert!(matches!(found.kind, ErrorKind::Transport(_)));
        // A target failed without an error says so.
        assert!(unknown
            .error()
            .unwrap()
            .to_string()
            .ends_with("; r/c:1: unknown error"));
        assert!(report(vec![target("r/ok:1", None)]).error().is_none());
    }

    #[test]
    fn a_failure_on_the_pushs_own_input_is_bad_input_and_the_source() {
        let broken = RegistryError::new(
            ErrorContext::default(),
            ErrorKind::Credentials("auth file is not JSON".into()),
        );
        let r = report(vec![
            target("r/a:1", Some(PushError::NotPushed)),
            target("r/b:1", Some(PushError::Registry(broken))),
        ]);
        let err = r.error().unwrap();
        assert!(crate::error::is_bad_input(&err));
        assert!(matches!(
            err.chain()
                .nth(1)
                .and_then(|e| e.downcast_ref::<PushError>()),
            Some(PushError::Registry(_))
        ));
    }

    #[test]
    fn optional_targets_warn_while_another_holds_the_image_and_fail_when_none_does() {
        let optional = |reference: &str, error: Option<PushError>| TargetReport {
            optional: true,
            ..target(reference, error)
        };
        let one_ok = report(vec![
            target("r/a:1", None),
            optional("r/b:1", Some(PushError::NotPushed)),
        ]);
        assert!(one_ok.succeeded());
        assert!(one_ok.error().is_none());
        assert_eq!(one_ok.warnings().len(), 1);

        let none_ok = report(vec![
            optional("r/a:1", Some(PushError::NotPushed)),
            optional("r/b:1", Some(PushError::NotPushed)),
        ]);
        assert!(!none_ok.succeeded());
        assert!(none_ok.warnings().is_empty());
        let failed = none_ok.error().unwrap();
        assert_eq!(
            failed
                .downcast_ref::<PushFailed>()
                .unwrap()
                .failures()
                .len(),
            2
        );
    }
}

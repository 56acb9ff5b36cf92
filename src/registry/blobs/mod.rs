//! Blob operations: existence (HEAD), cross-repository mount, upload from a
//! file (`upload`: monolithic, streamed, chunked), download (`download`:
//! to a file or streamed to a caller), deletion, and cancelling an upload
//! session that will not be completed.
//!
//! Every upload reads its bytes from a file, reopened for each attempt; no
//! blob is ever held in memory. A [`StreamUpload`] holds one chunk at a
//! time, and is not retried: its caller uploads the file instead. `Location` headers are used as given
//! (relative or absolute, with their query), `digest=` is appended to them,
//! and the `Docker-Content-Digest` of the answer is checked.

mod download;
mod upload;

pub use upload::StreamUpload;

use std::path::Path;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};

use super::client::{Body, Request, Response};
use super::error::{ErrorContext, ErrorKind, RegistryError};
use super::headers::with_digest;
use super::repo::Repo;
use super::transport::auth::{delete_scope, pull_scope, push_scope};
use super::transport::RetryBudget;
use crate::oci::Digest;

/// Default chunk size for chunked uploads: GHCR's cap on a `PATCH` body
/// (see [`super::hosts`]), which other registries take as well.
pub const DEFAULT_CHUNK_SIZE: u64 = 4 * 1024 * 1024;

/// Longest wait for the registry to acknowledge a cancelled upload session:
/// cancelling is a courtesy, it must never hold up (or fail) a push.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(10);

/// How to send a blob's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadMode {
    /// `PUT <Location>&digest=` with the whole body; falls back to chunked
    /// when the registry refuses it.
    Monolithic,
    /// One `PATCH` with the whole body and no `Content-Range`, then `PUT`.
    Streamed,
    /// `PATCH`es of this many bytes with `Content-Range`, then `PUT`.
    Chunked(u64),
}

/// The answer to a mount request.
#[derive(Debug)]
pub enum MountResult {
    /// 201: the blob is now in the target repository.
    Mounted,
    /// 202: not mounted, but an upload session was opened: continue on it,
    /// or give it back with [`Repo::cancel_upload`].
    Session(UploadSession),
    /// 401, 400, 403, 404, ...: upload plainly. Holds the reason, for logs.
    Refused(String),
}

/// An open upload session.
#[derive(Clone, Debug)]
pub struct UploadSession {
    /// Where the session continues (updated as chunks are acknowledged).
    pub location: Url,
    /// `OCI-Chunk-Min-Length`, when the registry sent it.
    pub chunk_min: Option<u64>,
}

/// What an upload did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UploadOutcome {
    /// How the bytes went in the end (after any fallback).
    pub mode: UploadMode,
}

fn protocol(c: &ErrorContext, msg: impl Into<String>) -> RegistryError {
    RegistryError::new(c.clone(), ErrorKind::Protocol(msg.into()))
}

fn session_from(resp: &Response, c: &ErrorContext) -> Result<UploadSession, RegistryError> {
    let location = match resp.location() {
        Some(Ok(u)) => u,
        Some(Err(e)) => return Err(protocol(c, e)),
        None => {
            return Err(protocol(
                c,
                "the registry opened an upload without a Location",
            ))
        }
    };
    let chunk_min = resp
        .header("oci-chunk-min-length")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&n| n > 0);
    Ok(UploadSession {
        location,
        chunk_min,
    })
}

/// Check an answer's `Docker-Content-Digest` (when present) against ours.
fn check_digest_header(
    resp: &Response,
    want: &Digest,
    c: &ErrorContext,
) -> Result<(), RegistryError> {
    if let Some(got) = resp.header("docker-content-digest") {
        if got.trim() != want.as_str() {
            return Err(RegistryError::new(
                c.clone(),
                ErrorKind::DigestMismatch {
                    expected: want.to_string(),
                    actual: got.trim().to_string(),
                },
            ));
        }
    }
    Ok(())
}

/// A blob a registry answered HEAD for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    /// Its size, when the answer gave one (`Content-Length`).
    pub size: Option<u64>,
}

impl Held {
    /// False only when the registry named a size other than `want` (the
    /// blob is truncated in its storage): an answer without a size is
    /// taken at its word.
    pub fn is_of_size(&self, want: u64) -> bool {
        self.size.is_none_or(|n| n == want)
    }
}

impl Repo<'_> {
    /// `HEAD /v2/<repo>/blobs/<digest>`: `Some` when present.
    pub async fn blob_exists(self, digest: &Digest) -> Result<Option<Held>, RegistryError> {
        let c = self.ctx("checking blob", digest);
        let url = self.url(&format!("blobs/{digest}"))?;
        let req = Request::new(Method::HEAD, url, vec![pull_scope(self.repository())]);
        let resp = self.send(req, &c).await?;
        match resp.status {
            StatusCode::OK => {
                check_digest_header(&resp, digest, &c)?;
                let size = resp
                    .header("content-length")
                    .and_then(|v| v.trim().parse::<u64>().ok());
                self.learn(digest);
                Ok(Some(Held { size }))
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(resp.into_error(c).await),
        }
    }

    /// `POST /v2/<repo>/blobs/uploads/?mount=<digest>&from=<source>`, with a
    /// token holding push on this repository and pull on `source` (another
    /// repository of the same registry).
    ///
    /// A mount is only ever an optimisation: any failure (a token server
    /// refusing the source's pull scope before the POST is sent, 5xx after
    /// the retries, an odd answer) is [`MountResult::Refused`], and the
    /// caller uploads plainly with the target's scopes only.
    pub async fn mount_blob(self, digest: &Digest, source: &str) -> MountResult {
        match self.try_mount(digest, source).await {
            Ok(r) => r,
            Err(e) => MountResult::Refused(e.to_string()),
        }
    }

    async fn try_mount(self, digest: &Digest, source: &str) -> Result<MountResult, RegistryError> {
        let c = self.ctx("mounting blob", digest);
        let mut url = self.url("blobs/uploads/")?;
        url.query_pairs_mut()
            .append_pair("mount", digest.as_str())
            .append_pair("from", source);
        let scopes = vec![push_scope(self.repository()), pull_scope(source)];
        let resp = self
            .send(Request::new(Method::POST, url, scopes), &c)
            .await?;
        match resp.status {
            StatusCode::CREATED => {
                check_digest_header(&resp, digest, &c)?;
                self.learn(digest);
                Ok(MountResult::Mounted)
            }
            StatusCode::ACCEPTED => Ok(MountResult::Session(session_from(&resp, &c)?)),
            _ => {
                let e = resp.into_error(c).await;
                Ok(MountResult::Refused(e.kind.to_string()))
            }
        }
    }

    /// `POST /v2/<repo>/blobs/uploads/`: open an upload session.
    pub async fn start_upload(self, digest: &Digest) -> Result<UploadSession, RegistryError> {
        let c = self.ctx("starting upload of blob", digest);
        self.open_upload(&c, &self.client().retry_budget()).await
    }

    /// [`Repo::start_upload`] as a step of an upload whose retries are
    /// spent from `budget`.
    async fn open_upload(
        self,
        c: &ErrorContext,
        budget: &RetryBudget,
    ) -> Result<UploadSession, RegistryError> {
        let url = self.url("blobs/uploads/")?;
        let req = Request::new(Method::POST, url, vec![push_scope(self.repository())]);
        let resp = self.send_within(req, c, budget).await?;
        if resp.status != StatusCode::ACCEPTED {
            return Err(resp.into_error(c.clone()).await);
        }
        session_from(&resp, c)
    }

    /// `DELETE <Location>`: give back an upload session of this repository
    /// that will not be completed (a mount's session not used, an upload
    /// restarted on a new session), so that the registry frees what it
    /// holds for it. Best effort: one attempt, bounded in time, its failure
    /// only logged.
    pub async fn cancel_upload(self, session: &UploadSession) {
        let c = ErrorContext {
            object: None,
            ..self.ctx("cancelling upload session", "")
        };
        let req = Request::new(
            Method::DELETE,
            session.location.clone(),
            vec![push_scope(self.repository())],
        )
        .no_retry();
        let sent = tokio::time::timeout(CANCEL_TIMEOUT, self.send(req, &c));
        let outcome = match sent.await {
            Ok(Ok(resp)) => resp.status.as_u16().to_string(),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {}s", CANCEL_TIMEOUT.as_secs()),
        };
        self.client()
            .log(&format!("{self}: upload session cancelled: {outcome}"));
    }

    /// `DELETE /v2/<repo>/blobs/<digest>`: `true` when deleted, `false`
    /// when the registry did not hold it (404). Registries may refuse
    /// deletion (405 or `UNSUPPORTED` when it is disabled, 401/403).
    pub async fn delete_blob(self, digest: &Digest) -> Result<bool, RegistryError> {
        let c = self.ctx("deleting blob", digest);
        let url = self.url(&format!("blobs/{digest}"))?;
        let req = Request::new(Method::DELETE, url, vec![delete_scope(self.repository())]);
        let resp = self.send(req, &c).await?;
        match resp.status {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(resp.into_error(c).await),
        }
    }
}

/// The `PUT <Location>&digest=` that completes an upload session (not
/// retried on its own: a failed session is restarted by the caller).
fn digest_put(location: &Url, repo: &str, digest: &Digest) -> Request {
    Request::new(
        Method::PUT,
        with_digest(location, digest.as_str()),
        vec![push_scope(repo)],
    )
    .no_retry()
}

fn file_body(path: &Path, offset: u64, len: u64) -> Body {
    Body::File {
        path: path.to_path_buf(),
        offset,
        len,
    }
}

#[cfg(test)]
mod tests {
    use super::Held;

    #[test]
    fn only_another_size_named_by_the_registry_makes_a_held_blob_wrong() {
        assert!(Held { size: Some(5) }.is_of_size(5));
        assert!(!Held { size: Some(4) }.is_of_size(5));
        assert!(!Held { size: Some(6) }.is_of_size(5));
        // No Content-Length: not a reason to send the blob again.
        assert!(Held { size: None }.is_of_size(5));
    }
}

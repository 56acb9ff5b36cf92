//! Uploading a blob from a file: monolithic, streamed or chunked, on a
//! fresh session or on one a mount opened; and [`StreamUpload`], the same
//! chunked `PATCH`es for a blob whose bytes are handed over as they are
//! produced, its digest given at the end.
//!
//! Every retry of one upload, at whatever step (opening the session, a
//! request, a lost chunk, a restart on a new session), is spent from the
//! upload's one [`RetryBudget`]. A session given up (the upload restarts on
//! a new one, falls back to chunks, or fails) is cancelled.

use std::path::Path;

use bytes::Bytes;
use reqwest::header::{CONTENT_RANGE, CONTENT_TYPE, RANGE};
use reqwest::{Method, StatusCode, Url};

use super::{
    check_digest_header, digest_put, file_body, protocol, UploadMode, UploadOutcome, UploadSession,
};
use crate::oci::Digest;
use crate::progress::Level;
use crate::registry::client::{Body, OnceBody, Request, Response};

/// The deadline of a streamed `PATCH` is that of a blob of this size.
const MAX_STREAMED: u64 = 1 << 40;
use crate::registry::error::{ErrorContext, RegistryError};
use crate::registry::headers::parse_range;
use crate::registry::repo::Repo;
use crate::registry::transport::auth::push_scope;
use crate::registry::transport::RetryBudget;

/// Chunks are never halved below this after a 416.
const MIN_HALVED_CHUNK: u64 = 256 * 1024;

/// Whether a failed monolithic PUT means "this registry does not take
/// monolithic uploads" (then chunked is tried).
fn refuses_monolithic(e: &RegistryError) -> bool {
    matches!(e.status(), Some(405 | 413 | 416 | 501)) || e.has_code("UNSUPPORTED")
}

/// `Range` of an upload status: `0-0` is what the reference registry says
/// for an empty session as well as for one byte. `sent_end` is the last
/// byte of the chunk this answer acknowledges, if any: after a chunk that
/// ended at byte 0, `0-0` means one byte held; otherwise (a status query)
/// it is taken as empty.
fn received_from(resp: &Response, sent_end: Option<u64>) -> Option<u64> {
    let v = resp.header("range")?;
    let v = v.trim();
    if (v == "0-0" || v == "bytes=0-0") && sent_end != Some(0) {
        return Some(0);
    }
    parse_range(v)
}

/// What the requests of one upload share: the repository, the progress
/// task, the error context and the retry budget.
struct Sender<'a> {
    repo: Repo<'a>,
    progress: Option<String>,
    c: ErrorContext,
    budget: RetryBudget,
}

/// One blob upload from a file in progress.
struct Upload<'a> {
    tx: Sender<'a>,
    digest: &'a Digest,
    size: u64,
    path: &'a Path,
}

/// An upload whose bytes come as they are produced, on one session, in
/// `PATCH`es with `Content-Range` (or one `PATCH` of the whole stream where
/// a registry takes any size); its digest is given by the final `PUT`.
/// Nothing is retried: the bytes are not kept, so a failure is for the
/// caller to handle (with [`Repo::upload_blob`] from the finished file).
pub struct StreamUpload<'a> {
    tx: Sender<'a>,
    session: UploadSession,
    sent: u64,
}

impl<'a> Repo<'a> {
    /// Open a session for a [`StreamUpload`] of `what` (a blob whose digest
    /// is not known yet, named in errors).
    pub async fn start_stream_upload(
        self,
        what: &str,
        progress: Option<String>,
    ) -> Result<StreamUpload<'a>, RegistryError> {
        let tx = Sender {
            repo: self,
            progress,
            c: self.ctx("streaming blob", what),
            budget: self.client().retry_budget(),
        };
        let session = self.open_upload(&tx.c, &tx.budget).await?;
        Ok(StreamUpload {
            tx,
            session,
            sent: 0,
        })
    }
}

impl StreamUpload<'_> {
    /// `OCI-Chunk-Min-Length`, when the registry sent it: every chunk but
    /// the last must be at least this long.
    pub fn chunk_min(&self) -> Option<u64> {
        self.session.chunk_min
    }

    /// Bytes stored so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// `PATCH` the next `bytes` (not empty).
    pub async fn send(&mut self, bytes: Bytes) -> Result<(), RegistryError> {
        let (offset, len) = (self.sent, bytes.len() as u64);
        let held = self
            .tx
            .patch(&mut self.session, offset, len, Body::Bytes(bytes))
            .await?;
        if held != offset + len {
            return Err(protocol(
                &self.tx.c,
                format!(
                    "the registry answered Range 0-{} after chunk {offset}-{}",
                    held.saturating_sub(1),
                    offset + len - 1
                ),
            ));
        }
        self.sent = held;
        Ok(())
    }

    /// `PATCH` every byte of `body`, in one request of a length not known
    /// in advance (the spec's streamed upload), as they are made.
    pub async fn send_all(&mut self, body: OnceBody) -> Result<(), RegistryError> {
        // The length is not known: the deadline is that of the largest blob
        // a registry takes, and a stalled producer ends the body instead.
        let req = self
            .tx
            .on_session(Method::PATCH, &self.session.location)
            .transfer(MAX_STREAMED)
            .body(Body::Once(body));
        let resp = self.tx.send(req).await?;
        if resp.status != StatusCode::ACCEPTED && resp.status != StatusCode::NO_CONTENT {
            return Err(resp.into_error(self.tx.c.clone()).await);
        }
        if let Some(Ok(u)) = resp.location() {
            self.session.location = u;
        }
        let held = received_from(&resp, None).ok_or_else(|| {
            protocol(
                &self.tx.c,
                "the registry did not say (Range) how much it stored",
            )
        })?;
        self.sent = held;
        Ok(())
    }

    /// `PUT <Location>&digest=`: the blob is complete.
    pub async fn finish(&mut self, digest: &Digest) -> Result<(), RegistryError> {
        let repo = self.tx.repo;
        let req = digest_put(&self.session.location, repo.repository(), digest);
        self.tx.c.object = Some(digest.to_string());
        self.tx.finish(req, digest).await?;
        repo.learn(digest);
        Ok(())
    }

    /// Give the session back (`DELETE`): it will not be completed.
    pub async fn cancel(self) {
        self.tx.repo.cancel_upload(&self.session).await;
    }
}

impl Repo<'_> {
    /// Upload the blob `digest` of `size` bytes from `path`. `session`
    /// continues a session opened by a mount answered 202. Temporary failures
    /// restart the upload on a fresh session (chunked uploads resume first),
    /// within the upload's retry budget.
    pub async fn upload_blob(
        self,
        digest: &Digest,
        size: u64,
        path: &Path,
        mode: UploadMode,
        mut session: Option<UploadSession>,
        progress: Option<String>,
    ) -> Result<UploadOutcome, RegistryError> {
        let up = Upload {
            tx: Sender {
                repo: self,
                progress,
                c: self.ctx("uploading blob", digest),
                budget: self.client().retry_budget(),
            },
            digest,
            size,
            path,
        };
        let mut mode = mode;
        loop {
            let mut s = match session.take() {
                Some(s) => s,
                // Opening the session shares the upload's retry budget: a
                // 503 or a transient BLOB_UPLOAD_UNKNOWN here is one more
                // attempt, not the end of the upload.
                None => match self.open_upload(&up.tx.c, &up.tx.budget).await {
                    Ok(s) => s,
                    Err(e) if e.is_temporary() => {
                        if !self.retry_after_failure(&up.tx.budget, &e).await {
                            return Err(e);
                        }
                        continue;
                    }
                    Err(e) => return Err(e),
                },
            };
            let result = match mode {
                UploadMode::Monolithic => up.monolithic(&s).await,
                UploadMode::Streamed => up.streamed(&mut s).await,
                UploadMode::Chunked(n) => up.chunked(&mut s, n).await,
            };
            let Err(e) = result else {
                self.learn(digest);
                return Ok(UploadOutcome { mode });
            };
            self.cancel_upload(&s).await;
            if mode == UploadMode::Monolithic && refuses_monolithic(&e) {
                self.client().reporter().log(
                    Level::Debug,
                    &format!("{e}; falling back to a chunked upload"),
                );
                mode = UploadMode::Chunked(self.host().chunk_size());
            } else if !e.is_temporary() || !self.retry_after_failure(&up.tx.budget, &e).await {
                return Err(e);
            }
        }
    }

    /// Ask an upload session how many bytes it holds (`GET <Location>` ->
    /// 204 + `Range`). Returns the new Location too.
    async fn upload_status(
        self,
        location: &Url,
        c: &ErrorContext,
        budget: &RetryBudget,
    ) -> Result<(u64, Url), RegistryError> {
        let req = Request::new(
            Method::GET,
            location.clone(),
            vec![push_scope(self.repository())],
        );
        let resp = self.send_within(req, c, budget).await?;
        if resp.status != StatusCode::NO_CONTENT && resp.status != StatusCode::OK {
            return Err(resp.into_error(c.clone()).await);
        }
        let held = received_from(&resp, None).unwrap_or(0);
        let next = match resp.location() {
            Some(Ok(u)) => u,
            _ => location.clone(),
        };
        Ok((held, next))
    }
}

impl Sender<'_> {
    /// A request on the session (not retried by itself: the upload resumes
    /// or restarts instead).
    fn on_session(&self, method: Method, location: &Url) -> Request {
        Request::new(
            method,
            location.clone(),
            vec![push_scope(self.repo.repository())],
        )
        .header(CONTENT_TYPE, "application/octet-stream")
        .progress(self.progress.clone())
        .no_retry()
    }

    async fn send(&self, req: Request) -> Result<Response, RegistryError> {
        self.repo.send_within(req, &self.c, &self.budget).await
    }

    /// `PUT <Location>&digest=`, with `body` when there is one.
    async fn finish(&self, req: Request, digest: &Digest) -> Result<(), RegistryError> {
        let resp = self.send(req).await?;
        if resp.status != StatusCode::CREATED && resp.status != StatusCode::NO_CONTENT {
            return Err(resp.into_error(self.c.clone()).await);
        }
        check_digest_header(&resp, digest, &self.c)
    }

    /// `PATCH` of `len` bytes from `body`, bytes `offset..` of the blob, on
    /// the session: how many bytes the session holds after it (as its
    /// `Range` says; without one, all sent so far).
    async fn patch(
        &self,
        s: &mut UploadSession,
        offset: u64,
        len: u64,
        body: Body,
    ) -> Result<u64, RegistryError> {
        let end = offset + len - 1;
        let req = self
            .on_session(Method::PATCH, &s.location)
            .header(CONTENT_RANGE, &format!("{offset}-{end}"))
            .body(body);
        let resp = self.send(req).await?;
        if resp.status != StatusCode::ACCEPTED && resp.status != StatusCode::NO_CONTENT {
            return Err(resp.into_error(self.c.clone()).await);
        }
        if let Some(Ok(u)) = resp.location() {
            s.location = u;
        }
        Ok(match resp.header(RANGE.as_str()) {
            Some(_) => received_from(&resp, Some(end)).unwrap_or(end + 1),
            None => end + 1,
        })
    }
}

impl Upload<'_> {
    async fn monolithic(&self, s: &UploadSession) -> Result<(), RegistryError> {
        let req = digest_put(&s.location, self.tx.repo.repository(), self.digest)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(file_body(self.path, 0, self.size))
            .progress(self.tx.progress.clone());
        self.tx.finish(req, self.digest).await
    }

    async fn streamed(&self, s: &mut UploadSession) -> Result<(), RegistryError> {
        let req = self
            .tx
            .on_session(Method::PATCH, &s.location)
            .body(file_body(self.path, 0, self.size));
        let resp = self.tx.send(req).await?;
        if resp.status != StatusCode::ACCEPTED && resp.status != StatusCode::NO_CONTENT {
            return Err(resp.into_error(self.tx.c.clone()).await);
        }
        match resp.location() {
            Some(Ok(u)) => s.location = u,
            Some(Err(e)) => return Err(protocol(&self.tx.c, e)),
            None => {}
        }
        // Free the PATCH's request slot before the PUT waits for one: holding
        // it deadlocks as soon as `jobs_per_registry` uploads are in flight.
        drop(resp);
        self.tx
            .finish(
                digest_put(&s.location, self.tx.repo.repository(), self.digest),
                self.digest,
            )
            .await
    }

    async fn chunked(&self, s: &mut UploadSession, chunk: u64) -> Result<(), RegistryError> {
        let (registry, size) = (self.tx.repo.registry(), self.size);
        let min = s.chunk_min.unwrap_or(1).max(1);
        let mut chunk = chunk.max(min);
        let mut offset = 0u64;
        while offset < size {
            let len = chunk.min(size - offset);
            let end = offset + len - 1;
            let outcome = match self
                .tx
                .patch(s, offset, len, file_body(self.path, offset, len))
                .await
            {
                Ok(held) if held != end + 1 => {
                    // The registry holds a different amount: resume from it.
                    if self.tx.budget.spend().is_none() {
                        return Err(protocol(
                            &self.tx.c,
                            format!("the registry keeps answering Range 0-{} after chunk {offset}-{end}", held.saturating_sub(1)),
                        ));
                    }
                    offset = held.min(size);
                    continue;
                }
                Ok(_) => {
                    offset = end + 1;
                    self.tx.budget.progressed();
                    Ok(())
                }
                Err(e) => Err(e),
            };
            if let Err(e) = outcome {
                if e.status() == Some(416) && len > min && len > MIN_HALVED_CHUNK {
                    // A PATCH over the registry's cap (GHCR: 4 MiB) answers
                    // 416: send smaller chunks from now on.
                    chunk = (len / 2).max(min).max(MIN_HALVED_CHUNK);
                    self.tx.repo.client().reporter().log(
                        Level::Debug,
                        &format!(
                            "{registry}: a {len}-byte chunk was refused (416); chunks of {chunk} bytes from now on"
                        ),
                    );
                }
                let resumable = e.status() == Some(416)
                    || (e.is_temporary() && !e.has_code("BLOB_UPLOAD_UNKNOWN"));
                if !resumable || !self.tx.repo.retry_after_failure(&self.tx.budget, &e).await {
                    return Err(e);
                }
                // 416 or a lost chunk: ask the session where it stands.
                let (held, next) = self
                    .tx
                    .repo
                    .upload_status(&s.location, &self.tx.c, &self.tx.budget)
                    .await?;
                s.location = next;
                offset = held.min(size);
            }
        }
        self.tx
            .finish(
                digest_put(&s.location, self.tx.repo.repository(), self.digest),
                self.digest,
            )
            .await
    }
}

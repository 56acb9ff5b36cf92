//! Uploading a blob from a file: monolithic, streamed or chunked, on a
//! fresh session or on one a mount opened.
//!
//! Every retry of one upload, at whatever step (opening the session, a
//! request, a lost chunk, a restart on a new session), is spent from the
//! upload's one [`RetryBudget`]. A session given up (the upload restarts on
//! a new one, falls back to chunks, or fails) is cancelled.

use std::path::Path;

use reqwest::header::{CONTENT_RANGE, CONTENT_TYPE, RANGE};
use reqwest::{Method, StatusCode, Url};

use super::{
    check_digest_header, digest_put, file_body, protocol, UploadMode, UploadOutcome, UploadSession,
};
use crate::oci::Digest;
use crate::progress::Level;
use crate::registry::client::{Request, Response};
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

/// One blob upload in progress: what is sent, and its retry budget.
struct Upload<'a> {
    repo: Repo<'a>,
    digest: &'a Digest,
    size: u64,
    path: &'a Path,
    progress: Option<String>,
    c: ErrorContext,
    budget: RetryBudget,
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
            repo: self,
            digest,
            size,
            path,
            progress,
            c: self.ctx("uploading blob", digest),
            budget: self.client().retry_budget(),
        };
        let mut mode = mode;
        loop {
            let mut s = match session.take() {
                Some(s) => s,
                // Opening the session shares the upload's retry budget: a
                // 503 or a transient BLOB_UPLOAD_UNKNOWN here is one more
                // attempt, not the end of the upload.
                None => match self.open_upload(&up.c, &up.budget).await {
                    Ok(s) => s,
                    Err(e) if e.is_temporary() => {
                        if !self.retry_after_failure(&up.budget, &e).await {
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
            } else if !e.is_temporary() || !self.retry_after_failure(&up.budget, &e).await {
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

impl Upload<'_> {
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
    async fn finish(&self, req: Request) -> Result<(), RegistryError> {
        let resp = self.send(req).await?;
        if resp.status != StatusCode::CREATED && resp.status != StatusCode::NO_CONTENT {
            return Err(resp.into_error(self.c.clone()).await);
        }
        check_digest_header(&resp, self.digest, &self.c)
    }

    async fn monolithic(&self, s: &UploadSession) -> Result<(), RegistryError> {
        let req = digest_put(&s.location, self.repo.repository(), self.digest)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(file_body(self.path, 0, self.size))
            .progress(self.progress.clone());
        self.finish(req).await
    }

    async fn streamed(&self, s: &mut UploadSession) -> Result<(), RegistryError> {
        let req = self
            .on_session(Method::PATCH, &s.location)
            .body(file_body(self.path, 0, self.size));
        let resp = self.send(req).await?;
        if resp.status != StatusCode::ACCEPTED && resp.status != StatusCode::NO_CONTENT {
            return Err(resp.into_error(self.c.clone()).await);
        }
        match resp.location() {
            Some(Ok(u)) => s.location = u,
            Some(Err(e)) => return Err(protocol(&self.c, e)),
            None => {}
        }
        // Free the PATCH's request slot before the PUT waits for one: holding
        // it deadlocks as soon as `jobs_per_registry` uploads are in flight.
        drop(resp);
        self.finish(digest_put(&s.location, self.repo.repository(), self.digest))
            .await
    }

    async fn chunked(&self, s: &mut UploadSession, chunk: u64) -> Result<(), RegistryError> {
        let (registry, size) = (self.repo.registry(), self.size);
        let min = s.chunk_min.unwrap_or(1).max(1);
        let mut chunk = chunk.max(min);
        let mut offset = 0u64;
        while offset < size {
            let len = chunk.min(size - offset);
            let end = offset + len - 1;
            let req = self
                .on_session(Method::PATCH, &s.location)
                .header(CONTENT_RANGE, &format!("{offset}-{end}"))
                .body(file_body(self.path, offset, len));
            let outcome = match self.send(req).await {
                Ok(resp)
                    if resp.status == StatusCode::ACCEPTED
                        || resp.status == StatusCode::NO_CONTENT =>
                {
                    if let Some(Ok(u)) = resp.location() {
                        s.location = u;
                    }
                    let held = match resp.header(RANGE.as_str()) {
                        Some(_) => received_from(&resp, Some(end)).unwrap_or(end + 1),
                        None => end + 1,
                    };
                    if held != end + 1 {
                        // The registry holds a different amount: resume from it.
                        if self.budget.spend().is_none() {
                            return Err(protocol(
                                &self.c,
                                format!("the registry keeps answering Range 0-{} after chunk {offset}-{end}", held.saturating_sub(1)),
                            ));
                        }
                        offset = held.min(size);
                        continue;
                    }
                    offset = end + 1;
                    self.budget.progressed();
                    Ok(())
                }
                Ok(resp) => Err(resp.into_error(self.c.clone()).await),
                Err(e) => Err(e),
            };
            if let Err(e) = outcome {
                if e.status() == Some(416) && len > min && len > MIN_HALVED_CHUNK {
                    // A PATCH over the registry's cap (GHCR: 4 MiB) answers
                    // 416: send smaller chunks from now on.
                    chunk = (len / 2).max(min).max(MIN_HALVED_CHUNK);
                    self.repo.client().reporter().log(
                        Level::Debug,
                        &format!(
                            "{registry}: a {len}-byte chunk was refused (416); chunks of {chunk} bytes from now on"
                        ),
                    );
                }
                let resumable = e.status() == Some(416)
                    || (e.is_temporary() && !e.has_code("BLOB_UPLOAD_UNKNOWN"));
                if !resumable || !self.repo.retry_after_failure(&self.budget, &e).await {
                    return Err(e);
                }
                // 416 or a lost chunk: ask the session where it stands.
                let (held, next) = self
                    .repo
                    .upload_status(&s.location, &self.c, &self.budget)
                    .await?;
                s.location = next;
                offset = held.min(size);
            }
        }
        self.finish(digest_put(&s.location, self.repo.repository(), self.digest))
            .await
    }
}

//! Blob operations: existence (HEAD), cross-repository mount, upload from a
//! file (monolithic, streamed, chunked) and download to a file.
//!
//! Every upload reads its bytes from a file, reopened for each attempt; no
//! blob is ever held in memory. `Location` headers are used as given
//! (relative or absolute, with their query), `digest=` is appended to them,
//! and the `Docker-Content-Digest` of the answer is checked.

use std::path::{Path, PathBuf};

use reqwest::header::{CONTENT_TYPE, RANGE};
use reqwest::{Method, StatusCode, Url};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use super::auth::{pull_scope, push_scope};
use super::client::{Body, Client, Request, Response};
use super::error::{ErrorContext, ErrorKind, RegistryError};
use super::headers::{parse_range, with_digest};
use crate::oci::Digest;

/// Default chunk size for chunked uploads (GHCR refuses PATCHes above 4 MiB).
pub const DEFAULT_CHUNK_SIZE: u64 = 4 * 1024 * 1024;

/// Chunks are never halved below this after a 416.
const MIN_HALVED_CHUNK: u64 = 256 * 1024;

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
    /// 202: not mounted, but an upload session was opened: continue on it.
    Session(UploadSession),
    /// 401, 400, 403, 404, ...: upload plainly. Holds the reason, for logs.
    Refused(String),
}

/// An open upload session.
#[derive(Clone, Debug)]
pub struct UploadSession {
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

fn ctx(op: &str, registry: &str, repo: &str, digest: &Digest) -> ErrorContext {
    ErrorContext {
        operation: op.to_string(),
        registry: registry.to_string(),
        repository: Some(repo.to_string()),
        object: Some(digest.to_string()),
    }
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

impl Client {
    /// `HEAD /v2/<repo>/blobs/<digest>`: `Some(size)` when present.
    pub async fn blob_exists(
        &self,
        registry: &str,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        let c = ctx("checking blob", registry, repo, digest);
        let url = self.url(registry, &format!("{repo}/blobs/{digest}"))?;
        let req = Request::new(Method::HEAD, url, vec![pull_scope(repo)]);
        let resp = self.send(registry, req, &c).await?;
        match resp.status {
            StatusCode::OK => {
                check_digest_header(&resp, digest, &c)?;
                let size = resp
                    .header("content-length")
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                Ok(Some(size))
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(resp.into_error(c).await),
        }
    }

    /// `POST /v2/<repo>/blobs/uploads/?mount=<digest>&from=<source>`, with a
    /// token holding push on `repo` and pull on `source`.
    ///
    /// A mount is only ever an optimisation: any failure (a token server
    /// refusing the source's pull scope before the POST is sent, 5xx after
    /// the retries, an odd answer) is [`MountResult::Refused`], and the
    /// caller uploads plainly with the target's scopes only.
    pub async fn mount_blob(
        &self,
        registry: &str,
        repo: &str,
        digest: &Digest,
        source: &str,
    ) -> MountResult {
        match self.try_mount(registry, repo, digest, source).await {
            Ok(r) => r,
            Err(e) => MountResult::Refused(e.to_string()),
        }
    }

    async fn try_mount(
        &self,
        registry: &str,
        repo: &str,
        digest: &Digest,
        source: &str,
    ) -> Result<MountResult, RegistryError> {
        let c = ctx("mounting blob", registry, repo, digest);
        let mut url = self.url(registry, &format!("{repo}/blobs/uploads/"))?;
        url.query_pairs_mut()
            .append_pair("mount", digest.as_str())
            .append_pair("from", source);
        let req = Request::new(
            Method::POST,
            url,
            vec![push_scope(repo), pull_scope(source)],
        );
        let resp = self.send(registry, req, &c).await?;
        match resp.status {
            StatusCode::CREATED => {
                check_digest_header(&resp, digest, &c)?;
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
    pub async fn start_upload(
        &self,
        registry: &str,
        repo: &str,
        digest: &Digest,
    ) -> Result<UploadSession, RegistryError> {
        self.open_upload(registry, repo, digest, true).await
    }

    /// [`Client::start_upload`]; `retry: false` leaves temporary failures to
    /// the caller's own retry loop (and budget).
    async fn open_upload(
        &self,
        registry: &str,
        repo: &str,
        digest: &Digest,
        retry: bool,
    ) -> Result<UploadSession, RegistryError> {
        let c = ctx("starting upload of blob", registry, repo, digest);
        let url = self.url(registry, &format!("{repo}/blobs/uploads/"))?;
        let mut req = Request::new(Method::POST, url, vec![push_scope(repo)]);
        req.retry = retry;
        let resp = self.send(registry, req, &c).await?;
        if resp.status != StatusCode::ACCEPTED {
            return Err(resp.into_error(c).await);
        }
        session_from(&resp, &c)
    }

    /// Upload the blob `digest` of `size` bytes from `path`. `session`
    /// continues a session opened by a mount answered 202. Temporary failures
    /// restart the upload on a fresh session (chunked uploads resume first),
    /// within the retry budget.
    #[allow(clippy::too_many_arguments)]
    pub async fn upload_blob(
        &self,
        registry: &str,
        repo: &str,
        digest: &Digest,
        size: u64,
        path: &Path,
        mode: UploadMode,
        mut session: Option<UploadSession>,
        progress: Option<String>,
    ) -> Result<UploadOutcome, RegistryError> {
        let c = ctx("uploading blob", registry, repo, digest);
        let mut mode = mode;
        let mut attempt = 0;
        loop {
            let s = match session.take() {
                Some(s) => s,
                // Opening the session shares the upload's retry budget: a
                // 503 or a transient BLOB_UPLOAD_UNKNOWN here is one more
                // attempt, not the end of the upload.
                None => match self.open_upload(registry, repo, digest, false).await {
                    Ok(s) => s,
                    Err(e) if e.is_temporary() => {
                        attempt += 1;
                        if !self.backoff(registry, attempt, &e).await {
                            return Err(e);
                        }
                        continue;
                    }
                    Err(e) => return Err(e),
                },
            };
            let result = match mode {
                UploadMode::Monolithic => {
                    self.put_monolithic(registry, repo, digest, size, path, &s, &progress, &c)
                        .await
                }
                UploadMode::Streamed => {
                    self.patch_streamed(registry, repo, digest, size, path, &s, &progress, &c)
                        .await
                }
                UploadMode::Chunked(n) => {
                    self.upload_chunked(registry, repo, digest, size, path, s, n, &progress, &c)
                        .await
                }
            };
            match result {
                Ok(()) => return Ok(UploadOutcome { mode }),
                Err(e) if mode == UploadMode::Monolithic && refuses_monolithic(&e) => {
                    self.reporter().log(
                        crate::progress::Level::Debug,
                        &format!("{e}; falling back to a chunked upload"),
                    );
                    mode = UploadMode::Chunked(DEFAULT_CHUNK_SIZE);
                }
                Err(e) if e.is_temporary() => {
                    attempt += 1;
                    if !self.backoff(registry, attempt, &e).await {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn put_monolithic(
        &self,
        registry: &str,
        repo: &str,
        digest: &Digest,
        size: u64,
        path: &Path,
        s: &UploadSession,
        progress: &Option<String>,
        c: &ErrorContext,
    ) -> Result<(), RegistryError> {
        let req = digest_put(&s.location, repo, digest)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(file_body(path, 0, size))
            .progress(progress.clone());
        self.finish_put(registry, req, digest, c).await
    }

    async fn finish_put(
        &self,
        registry: &str,
        req: Request,
        digest: &Digest,
        c: &ErrorContext,
    ) -> Result<(), RegistryError> {
        let resp = self.send(registry, req, c).await?;
        if resp.status != StatusCode::CREATED && resp.status != StatusCode::NO_CONTENT {
            return Err(resp.into_error(c.clone()).await);
        }
        check_digest_header(&resp, digest, c)
    }

    #[allow(clippy::too_many_arguments)]
    async fn patch_streamed(
        &self,
        registry: &str,
        repo: &str,
        digest: &Digest,
        size: u64,
        path: &Path,
        s: &UploadSession,
        progress: &Option<String>,
        c: &ErrorContext,
    ) -> Result<(), RegistryError> {
        let req = Request::new(Method::PATCH, s.location.clone(), vec![push_scope(repo)])
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(file_body(path, 0, size))
            .progress(progress.clone())
            .no_retry();
        let resp = self.send(registry, req, c).await?;
        if resp.status != StatusCode::ACCEPTED && resp.status != StatusCode::NO_CONTENT {
            return Err(resp.into_error(c.clone()).await);
        }
        let next = match resp.location() {
            Some(Ok(u)) => u,
            Some(Err(e)) => return Err(protocol(c, e)),
            None => s.location.clone(),
        };
        // Free the PATCH's request slot before the PUT waits for one: holding
        // it deadlocks as soon as `jobs_per_registry` uploads are in flight.
        drop(resp);
        self.finish_put(registry, digest_put(&next, repo, digest), digest, c)
            .await
    }

    /// Ask an upload session how many bytes it holds (`GET <Location>` ->
    /// 204 + `Range`). Returns the new Location too.
    pub async fn upload_status(
        &self,
        registry: &str,
        repo: &str,
        location: &Url,
        c: &ErrorContext,
    ) -> Result<(u64, Url), RegistryError> {
        let req = Request::new(Method::GET, location.clone(), vec![push_scope(repo)]);
        let resp = self.send(registry, req, c).await?;
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

    #[allow(clippy::too_many_arguments)]
    async fn upload_chunked(
        &self,
        registry: &str,
        repo: &str,
        digest: &Digest,
        size: u64,
        path: &Path,
        s: UploadSession,
        chunk: u64,
        progress: &Option<String>,
        c: &ErrorContext,
    ) -> Result<(), RegistryError> {
        let min = s.chunk_min.unwrap_or(1).max(1);
        let mut chunk = chunk.max(min);
        let mut location = s.location;
        let mut offset = 0u64;
        let mut resumes = 0u32;
        while offset < size {
            let len = chunk.min(size - offset);
            let end = offset + len - 1;
            let req = Request::new(Method::PATCH, location.clone(), vec![push_scope(repo)])
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(reqwest::header::CONTENT_RANGE, &format!("{offset}-{end}"))
                .body(file_body(path, offset, len))
                .progress(progress.clone())
                .no_retry();
            let outcome = match self.send(registry, req, c).await {
                Ok(resp)
                    if resp.status == StatusCode::ACCEPTED
                        || resp.status == StatusCode::NO_CONTENT =>
                {
                    if let Some(Ok(u)) = resp.location() {
                        location = u;
                    }
                    let held = match resp.header(RANGE.as_str()) {
                        Some(_) => received_from(&resp, Some(end)).unwrap_or(end + 1),
                        None => end + 1,
                    };
                    if held != end + 1 {
                        // The registry holds a different amount: resume from it.
                        resumes += 1;
                        if resumes > self.options().retry.max_retries {
                            return Err(protocol(
                                c,
                                format!("the registry keeps answering Range 0-{} after chunk {offset}-{end}", held.saturating_sub(1)),
                            ));
                        }
                        offset = held.min(size);
                        continue;
                    }
                    offset = end + 1;
                    Ok(())
                }
                Ok(resp) => Err(resp.into_error(c.clone()).await),
                Err(e) => Err(e),
            };
            if let Err(e) = outcome {
                if e.status() == Some(416) && len > min && len > MIN_HALVED_CHUNK {
                    // A PATCH over the registry's cap (GHCR: 4 MiB) answers
                    // 416: send smaller chunks from now on.
                    chunk = (len / 2).max(min).max(MIN_HALVED_CHUNK);
                    self.reporter().log(
                        crate::progress::Level::Debug,
                        &format!(
                            "{registry}: a {len}-byte chunk was refused (416); chunks of {chunk} bytes from now on"
                        ),
                    );
                }
                let resumable = e.status() == Some(416)
                    || (e.is_temporary() && !e.has_code("BLOB_UPLOAD_UNKNOWN"));
                resumes += 1;
                if !resumable || !self.backoff(registry, resumes, &e).await {
                    return Err(e);
                }
                // 416 or a lost chunk: ask the session where it stands.
                let (held, next) = self.upload_status(registry, repo, &location, c).await?;
                location = next;
                offset = held.min(size);
            }
        }
        self.finish_put(registry, digest_put(&location, repo, digest), digest, c)
            .await
    }

    /// Download a blob of `size` bytes (from its descriptor) into `dest`
    /// (temp file in the same directory, checked against `digest`, then
    /// renamed). A registry sending more than `size` bytes is cut off as
    /// soon as it does, and the temp file removed. Returns its size.
    pub async fn get_blob_to_file(
        &self,
        registry: &str,
        repo: &str,
        digest: &Digest,
        size: u64,
        dest: &Path,
    ) -> Result<u64, RegistryError> {
        let c = ctx("downloading blob", registry, repo, digest);
        let mut attempt = 0;
        loop {
            match self
                .try_get_blob(registry, repo, digest, size, dest, &c)
                .await
            {
                Ok(n) => return Ok(n),
                Err(e) if e.is_temporary() => {
                    attempt += 1;
                    if !self.backoff(registry, attempt, &e).await {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn try_get_blob(
        &self,
        registry: &str,
        repo: &str,
        digest: &Digest,
        size: u64,
        dest: &Path,
        c: &ErrorContext,
    ) -> Result<u64, RegistryError> {
        let too_long = |n: u64| {
            protocol(
                c,
                format!("the registry sent {n} bytes or more for blob {digest}, whose descriptor says {size}; download aborted"),
            )
        };
        let io = |what: &str, p: &Path, e: std::io::Error| {
            RegistryError::new(
                c.clone(),
                ErrorKind::Io(format!("{what} {}: {e}", p.display())),
            )
        };
        let url = self.url(registry, &format!("{repo}/blobs/{digest}"))?;
        let req = Request::new(Method::GET, url, vec![pull_scope(repo)]);
        let mut resp = self.send(registry, req, c).await?;
        if resp.status != StatusCode::OK {
            return Err(resp.into_error(c.clone()).await);
        }
        if let Some(n) = resp
            .header("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&n| n > size)
        {
            return Err(too_long(n));
        }
        let tmp = temp_path(dest);
        let mut file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| io("creating", &tmp, e))?;
        let mut hasher = Sha256::new();
        let mut n = 0u64;
        let result: Result<(), RegistryError> = async {
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|k| RegistryError::new(c.clone(), k))?
            {
                n += chunk.len() as u64;
                if n > size {
                    return Err(too_long(n));
                }
                hasher.update(&chunk);
                file.write_all(&chunk)
                    .await
                    .map_err(|e| io("writing", &tmp, e))?;
            }
            file.sync_all().await.map_err(|e| io("writing", &tmp, e))?;
            let got = Digest::from_sha256(hasher.finalize().into());
            if &got != digest {
                return Err(RegistryError::new(
                    c.clone(),
                    ErrorKind::DigestMismatch {
                        expected: digest.to_string(),
                        actual: got.to_string(),
                    },
                ));
            }
            tokio::fs::rename(&tmp, dest)
                .await
                .map_err(|e| io("renaming to", dest, e))
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result.map(|()| n)
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

fn temp_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "blob".into());
    dest.with_file_name(format!(".{name}.{:016x}.part", rand::random::<u64>()))
}

//! Downloading a blob: to a file (checked, then renamed into place) or
//! streamed to a caller, never more than the descriptor's size, the digest
//! checked as the bytes go. Every retry of one download is spent from the
//! download's one [`RetryBudget`].

use std::path::{Path, PathBuf};

use bytes::Bytes;
use reqwest::{Method, StatusCode};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use super::protocol;
use crate::oci::Digest;
use crate::registry::client::{Request, Response};
use crate::registry::error::{ErrorContext, ErrorKind, RegistryError};
use crate::registry::repo::Repo;
use crate::registry::transport::auth::pull_scope;
use crate::registry::transport::RetryBudget;

/// The body of one blob GET: at most `size` bytes, hashed as they come.
struct BlobStream<'a> {
    resp: Response,
    digest: &'a Digest,
    size: u64,
    received: u64,
    hasher: Sha256,
    c: &'a ErrorContext,
}

impl BlobStream<'_> {
    fn too_long(&self, n: u64) -> RegistryError {
        protocol(
            self.c,
            format!(
                "the registry sent {n} bytes or more for blob {}, whose descriptor says {}; download aborted",
                self.digest, self.size
            ),
        )
    }

    /// The next piece; `None` at the end, once the digest matched.
    async fn next(&mut self) -> Result<Option<Bytes>, RegistryError> {
        let chunk = self
            .resp
            .chunk()
            .await
            .map_err(|k| RegistryError::new(self.c.clone(), k))?;
        let Some(chunk) = chunk else {
            let got = Digest::from_sha256(std::mem::take(&mut self.hasher).finalize().into());
            if &got != self.digest {
                return Err(RegistryError::new(
                    self.c.clone(),
                    ErrorKind::DigestMismatch {
                        expected: self.digest.to_string(),
                        actual: got.to_string(),
                    },
                ));
            }
            return Ok(None);
        };
        self.received += chunk.len() as u64;
        if self.received > self.size {
            return Err(self.too_long(self.received));
        }
        self.hasher.update(&chunk);
        Ok(Some(chunk))
    }
}

impl Repo<'_> {
    /// `GET /v2/<repo>/blobs/<digest>`, refused early when the registry
    /// announces more than `size` bytes.
    async fn open_blob<'a>(
        self,
        digest: &'a Digest,
        size: u64,
        c: &'a ErrorContext,
        budget: &RetryBudget,
    ) -> Result<BlobStream<'a>, RegistryError> {
        let url = self.url(&format!("blobs/{digest}"))?;
        let req =
            Request::new(Method::GET, url, vec![pull_scope(self.repository())]).download(size);
        let resp = self.send_within(req, c, budget).await?;
        if resp.status != StatusCode::OK {
            return Err(resp.into_error(c.clone()).await);
        }
        let stream = BlobStream {
            resp,
            digest,
            size,
            received: 0,
            hasher: Sha256::new(),
            c,
        };
        if let Some(n) = stream
            .resp
            .header("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&n| n > size)
        {
            return Err(stream.too_long(n));
        }
        Ok(stream)
    }

    /// Stream the blob `digest` of `size` bytes to `sink`, piece by piece,
    /// checked against its digest; nothing is kept. Temporary failures start
    /// over (the sink sees the bytes again) within one retry budget.
    /// Returns the size.
    pub async fn read_blob(
        self,
        digest: &Digest,
        size: u64,
        mut sink: impl FnMut(&[u8]) + Send,
    ) -> Result<u64, RegistryError> {
        let c = self.ctx("pulling blob", digest);
        let budget = self.client().retry_budget();
        loop {
            let result: Result<u64, RegistryError> = async {
                let mut blob = self.open_blob(digest, size, &c, &budget).await?;
                while let Some(chunk) = blob.next().await? {
                    sink(&chunk);
                }
                Ok(blob.received)
            }
            .await;
            match result {
                Err(e) if e.is_temporary() => {
                    if !self.retry_after_failure(&budget, &e).await {
                        return Err(e);
                    }
                }
                other => return other,
            }
        }
    }

    /// Download a blob of `size` bytes (from its descriptor) into `dest`
    /// (temp file in the same directory, checked against `digest`, then
    /// renamed). A registry sending more than `size` bytes is cut off as
    /// soon as it does, and the temp file removed. Returns its size.
    pub async fn get_blob_to_file(
        self,
        digest: &Digest,
        size: u64,
        dest: &Path,
    ) -> Result<u64, RegistryError> {
        let c = self.ctx("downloading blob", digest);
        let budget = self.client().retry_budget();
        loop {
            match self.try_get_blob(digest, size, dest, &c, &budget).await {
                Err(e) if e.is_temporary() => {
                    if !self.retry_after_failure(&budget, &e).await {
                        return Err(e);
                    }
                }
                Ok(n) => {
                    self.learn(digest);
                    return Ok(n);
                }
                other => return other,
            }
        }
    }

    async fn try_get_blob(
        self,
        digest: &Digest,
        size: u64,
        dest: &Path,
        c: &ErrorContext,
        budget: &RetryBudget,
    ) -> Result<u64, RegistryError> {
        let io = |what: &str, p: &Path, e: std::io::Error| {
            RegistryError::new(
                c.clone(),
                ErrorKind::Io(format!("{what} {}: {e}", p.display())),
            )
        };
        let mut blob = self.open_blob(digest, size, c, budget).await?;
        let part = Part(temp_path(dest));
        let tmp = &part.0;
        let mut file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| io("creating", tmp, e))?;
        let result: Result<(), RegistryError> = async {
            while let Some(chunk) = blob.next().await? {
                file.write_all(&chunk)
                    .await
                    .map_err(|e| io("writing", tmp, e))?;
            }
            file.sync_all().await.map_err(|e| io("writing", tmp, e))?;
            tokio::fs::rename(tmp, dest)
                .await
                .map_err(|e| io("renaming to", dest, e))
        }
        .await;
        if result.is_ok() {
            part.keep();
        }
        result.map(|()| blob.received)
    }
}

/// A download's temporary file, removed when dropped: on an error, and
/// when the download is dropped half-way (the run cancelled), so that no
/// `.part` file is left in the cache. Kept once renamed into place.
struct Part(PathBuf);

impl Part {
    fn keep(mut self) {
        self.0 = PathBuf::new();
    }
}

impl Drop for Part {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

fn temp_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "blob".into());
    dest.with_file_name(format!(".{name}.{:016x}.part", rand::random::<u64>()))
}

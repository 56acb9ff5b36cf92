//! Manifest and tag operations: HEAD (resolve a tag without spending Docker
//! Hub pull quota), GET, PUT (Content-Type = the manifest's mediaType, the
//! answered digest compared with ours) and tag listing with `Link`
//! pagination.

use std::ops::ControlFlow;

use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode};

use super::client::{Body, Request, Response};
use super::error::{ErrorContext, ErrorKind, RegistryError};
use super::pages::Listing;
use super::repo::Repo;
use super::transport::auth::{pull_scope, push_scope};
use super::transport::limits::MAX_MANIFEST_SIZE;
use super::transport::{RetryBudget, RetryPolicy};
use crate::oci::{
    Digest, MEDIA_TYPE_DOCKER_LIST, MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_INDEX,
    MEDIA_TYPE_MANIFEST,
};

/// What a registry says about a manifest.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ManifestInfo {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
}

fn accept_all() -> String {
    [
        MEDIA_TYPE_INDEX,
        MEDIA_TYPE_MANIFEST,
        MEDIA_TYPE_DOCKER_LIST,
        MEDIA_TYPE_DOCKER_MANIFEST,
    ]
    .join(", ")
}

fn header_digest(resp: &Response, c: &ErrorContext) -> Result<Option<Digest>, RegistryError> {
    match resp.header("docker-content-digest") {
        None => Ok(None),
        Some(v) => v.trim().parse::<Digest>().map(Some).map_err(|e| {
            RegistryError::new(
                c.clone(),
                ErrorKind::Protocol(format!("Docker-Content-Digest: {e}")),
            )
        }),
    }
}

fn media_type_of(resp: &Response) -> String {
    resp.header("content-type")
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_string())
        .unwrap_or_default()
}

impl Repo<'_> {
    /// `HEAD /v2/<repo>/manifests/<reference>`: `None` on 404. When the
    /// registry omits `Docker-Content-Digest`, falls back to a GET.
    pub async fn head_manifest(
        self,
        reference: &str,
    ) -> Result<Option<ManifestInfo>, RegistryError> {
        let c = self.ctx("resolving manifest", reference);
        let url = self.url(&format!("manifests/{reference}"))?;
        let req = Request::new(Method::HEAD, url, vec![pull_scope(self.repository())])
            .header(ACCEPT, &accept_all());
        let resp = self.send(req, &c).await?;
        match resp.status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            _ => return Err(resp.into_error(c).await),
        }
        let media_type = media_type_of(&resp);
        let size = resp
            .header("content-length")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        match header_digest(&resp, &c)? {
            Some(digest) => Ok(Some(ManifestInfo {
                digest,
                media_type,
                size,
            })),
            None => {
                drop(resp);
                self.get_manifest(reference)
                    .await
                    .map(|(info, _)| Some(info))
            }
        }
    }

    /// Whether `reference` names a manifest here, asked as a pusher asks
    /// (`HEAD` with the push scope, so the token serves the push that
    /// follows) and once: a guess that may be wrong, never retried, not
    /// even the first contact with a registry that does not answer.
    pub async fn holds_manifest(self, reference: &str) -> Result<bool, RegistryError> {
        let c = self.ctx("resolving manifest", reference);
        let url = self.url(&format!("manifests/{reference}"))?;
        let req = Request::new(Method::HEAD, url, vec![push_scope(self.repository())])
            .header(ACCEPT, &accept_all())
            .no_retry();
        let once = RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        };
        let resp = self.send_within(req, &c, &RetryBudget::new(&once)).await?;
        match resp.status {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(resp.into_error(c).await),
        }
    }

    /// `GET /v2/<repo>/manifests/<reference>`: the exact bytes and what they
    /// are. A digest reference is checked against the bytes.
    pub async fn get_manifest(
        self,
        reference: &str,
    ) -> Result<(ManifestInfo, Vec<u8>), RegistryError> {
        let c = self.ctx("fetching manifest", reference);
        let url = self.url(&format!("manifests/{reference}"))?;
        let req = Request::new(Method::GET, url, vec![pull_scope(self.repository())])
            .header(ACCEPT, &accept_all());
        let resp = self.send(req, &c).await?;
        if resp.status != StatusCode::OK {
            return Err(resp.into_error(c).await);
        }
        let mut media_type = media_type_of(&resp);
        let answered = header_digest(&resp, &c)?;
        let bytes = resp
            .bytes_limited(MAX_MANIFEST_SIZE, "the manifest")
            .await
            .map_err(|k| RegistryError::new(c.clone(), k))?;
        let digest = Digest::of(&bytes);
        let expected = reference.parse::<Digest>().ok().or(answered);
        if let Some(want) = expected {
            if want != digest {
                return Err(RegistryError::new(
                    c,
                    ErrorKind::DigestMismatch {
                        expected: want.to_string(),
                        actual: digest.to_string(),
                    },
                ));
            }
        }
        if let Some(mt) = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| {
                v.get("mediaType")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
        {
            media_type = mt;
        }
        Ok((
            ManifestInfo {
                digest,
                media_type,
                size: bytes.len() as u64,
            },
            bytes,
        ))
    }

    /// `PUT /v2/<repo>/manifests/<reference>` with `Content-Type` =
    /// `media_type`. Returns the digest, checked against the registry's.
    pub async fn put_manifest(
        self,
        reference: &str,
        bytes: Bytes,
        media_type: &str,
    ) -> Result<Digest, RegistryError> {
        let digest = Digest::of(&bytes);
        let c = self.ctx("putting manifest", reference);
        let url = self.url(&format!("manifests/{reference}"))?;
        let req = Request::new(Method::PUT, url, vec![push_scope(self.repository())])
            .header(CONTENT_TYPE, media_type)
            .body(Body::Bytes(bytes));
        let resp = self.send(req, &c).await?;
        if resp.status != StatusCode::CREATED && resp.status != StatusCode::OK {
            return Err(resp.into_error(c).await);
        }
        if let Some(answered) = header_digest(&resp, &c)? {
            if answered != digest {
                return Err(RegistryError::new(
                    c,
                    ErrorKind::DigestMismatch {
                        expected: digest.to_string(),
                        actual: answered.to_string(),
                    },
                ));
            }
        }
        Ok(digest)
    }

    /// All tags of a repository, following `Link: <...>; rel="next"`.
    pub async fn list_tags(self) -> Result<Vec<String>, RegistryError> {
        self.list_tags_paged(None).await
    }

    /// [`Repo::list_tags`] asking for pages of `page_size` tags (`?n=`);
    /// later pages are the `Link` URLs the registry answers (which carry
    /// `n` and `last`), used as given. A list that does not end is an error
    /// (see `Repo::read_pages`).
    pub async fn list_tags_paged(
        self,
        page_size: Option<u32>,
    ) -> Result<Vec<String>, RegistryError> {
        let c = self.ctx("listing", "tags");
        let mut first = self.url("tags/list")?;
        if let Some(n) = page_size {
            first.query_pairs_mut().append_pair("n", &n.to_string());
        }
        // A 404 is an error: the repository does not exist (a typo in its
        // name must not read as a repository without tags).
        let listing = Listing {
            what: "the tag list",
            first,
            accept: None,
            absent: &[],
        };
        #[derive(serde::Deserialize)]
        struct Page {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let mut tags = Vec::new();
        self.read_pages(listing, &c, |body| {
            let page: Page = serde_json::from_slice(&body)
                .map_err(|_| "the tag list is not JSON".to_string())?;
            tags.extend(page.tags.unwrap_or_default());
            Ok(ControlFlow::Continue(()))
        })
        .await?;
        Ok(tags)
    }
}

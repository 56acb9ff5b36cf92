//! A request as data, and its answer.
//!
//! A [`Request`] says everything about one logical request (method, URL,
//! headers, a [`Body`] that can be produced again for every attempt (or,
//! for a blob streamed as it is made, only once), the
//! token scopes it needs, whether it may be retried by itself, and which
//! progress bar its bytes advance); [`Client::send`](crate::registry::Client::send)
//! turns it into attempts. A [`Response`] holds the registry's request slot
//! until dropped.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_util::stream::BoxStream;
use reqwest::header::{HeaderMap, HeaderValue, LOCATION};
use reqwest::{Method, StatusCode, Url};

use super::limiter::Slot;
use super::limits;
use super::retry::parse_retry_after;
use crate::registry::error::{
    parse_error_body, transport_text, ErrorContext, ErrorKind, RegistryError,
};
use crate::registry::headers::resolve_location;

/// A request body that can be produced again for every attempt.
#[derive(Clone, Debug)]
pub enum Body {
    Empty,
    Bytes(Bytes),
    /// `len` bytes of the file at `path` from `offset`, reopened per attempt.
    File {
        path: PathBuf,
        offset: u64,
        len: u64,
    },
    /// Bytes handed over as they are made, of a length not known yet: sent
    /// without `Content-Length` by the first attempt only; a second attempt
    /// fails, and the caller falls back to a body it can produce again.
    Once(OnceBody),
}

/// See [`Body::Once`].
#[derive(Clone)]
pub struct OnceBody(Arc<Mutex<Option<BoxStream<'static, std::io::Result<Bytes>>>>>);

impl OnceBody {
    pub fn new(s: BoxStream<'static, std::io::Result<Bytes>>) -> OnceBody {
        OnceBody(Arc::new(Mutex::new(Some(s))))
    }

    /// The stream, to the first caller only.
    pub(super) fn take(&self) -> Option<BoxStream<'static, std::io::Result<Bytes>>> {
        self.0.lock().ok()?.take()
    }
}

impl std::fmt::Debug for OnceBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnceBody")
    }
}

impl Body {
    pub fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::File { len, .. } => *len,
            Body::Once(_) => 0,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One request to a registry.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Body,
    /// Token scopes this request needs.
    pub scopes: Vec<String>,
    /// Retry this request by itself on temporary failures. Upload data
    /// requests (PATCH, PUT on a session) set this to false: their caller
    /// restarts or resumes the session instead.
    pub retry: bool,
    /// Reporter task that body bytes advance.
    pub progress: Option<String>,
    /// Total time for one attempt, the answer's body included (see
    /// [`limits`]): a document's unless the request moves a blob.
    pub deadline: Duration,
    /// The answer's body is a blob download, held to the client's
    /// [`limits::Pace`].
    pub paced: bool,
}

impl Request {
    pub fn new(method: Method, url: Url, scopes: Vec<String>) -> Request {
        Request {
            method,
            url,
            headers: HeaderMap::new(),
            body: Body::Empty,
            scopes,
            retry: true,
            progress: None,
            deadline: limits::DOCUMENT_DEADLINE,
            paced: false,
        }
    }

    pub fn header(mut self, name: reqwest::header::HeaderName, value: &str) -> Request {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }

    /// The body; a file's bytes are a blob transfer, given the deadline of
    /// their size.
    pub fn body(mut self, body: Body) -> Request {
        if let Body::File { len, .. } = body {
            self = self.transfer(len);
        }
        self.body = body;
        self
    }

    /// The request moves `bytes` of a blob (either way): its deadline is
    /// [`limits::transfer_deadline`] rather than a document's.
    pub fn transfer(mut self, bytes: u64) -> Request {
        self.deadline = self.deadline.max(limits::transfer_deadline(bytes));
        self
    }

    /// The request downloads a blob of `bytes`: the deadline of a
    /// transfer, and the answer's body is held to the client's pace.
    pub fn download(mut self, bytes: u64) -> Request {
        self.paced = true;
        self.transfer(bytes)
    }

    pub fn no_retry(mut self) -> Request {
        self.retry = false;
        self
    }

    pub fn progress(mut self, id: Option<String>) -> Request {
        self.progress = id;
        self
    }
}

/// An answer. It holds the registry's request slot until dropped, so that a
/// streamed download counts against the per-registry limit.
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The URL that answered (after redirects).
    pub url: Url,
    pub(super) inner: reqwest::Response,
    /// The body, when it was read already (error answers, see
    /// [`Response::buffer_error`]).
    pub(super) buffered: Option<Bytes>,
    /// When the whole answer must have arrived, and the request's deadline
    /// (for messages).
    pub(super) deadline: (Instant, Duration),
    /// For a download: its pace, when its headers arrived, and the bytes
    /// of its body so far.
    pub(super) pace: Option<(limits::Pace, Instant, u64)>,
    pub(super) _slot: Slot,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `Location` resolved against the answering URL.
    pub fn location(&self) -> Option<Result<Url, String>> {
        self.header(LOCATION.as_str())
            .map(|l| resolve_location(&self.url, l))
    }

    /// Read the whole body, `what` (for messages: "the manifest"), refusing
    /// more than `limit` bytes: as soon as `Content-Length` announces more,
    /// or as soon as more arrived.
    pub async fn bytes_limited(mut self, limit: usize, what: &str) -> Result<Vec<u8>, ErrorKind> {
        let too_large = || {
            ErrorKind::Protocol(format!(
                "{what} is larger than {limit} bytes, the most accepted; not read further"
            ))
        };
        let announced = self
            .header("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok());
        if announced.is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let mut out = Vec::new();
        while let Some(chunk) = self.chunk().await? {
            if out.len() + chunk.len() > limit {
                return Err(too_large());
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// The next piece of a streamed body; [`ErrorKind::Deadline`] once the
    /// request's deadline passed, or a download's pace fell below its floor.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, ErrorKind> {
        if let Some(b) = self.buffered.take() {
            return Ok(Some(b));
        }
        let (at, total) = self.deadline;
        let due = self.pace.map(|(pace, began, got)| pace.due(began, got));
        let until = due.map_or(at, |due| due.min(at));
        match tokio::time::timeout_at(until.into(), self.inner.chunk()).await {
            Ok(read) => {
                let read = read.map_err(|e| ErrorKind::Transport(transport_text(e)))?;
                if let (Some((_, _, got)), Some(c)) = (&mut self.pace, &read) {
                    *got += c.len() as u64;
                }
                Ok(read)
            }
            Err(_) => match self.pace {
                Some((pace, began, got)) if until < at => {
                    Err(ErrorKind::Deadline(pace.failure(began, got)))
                }
                _ => Err(ErrorKind::Deadline(format!(
                    "the answer was not complete within {}s: the registry sends too slowly",
                    total.as_secs()
                ))),
            },
        }
    }

    /// Read an error answer's body (at most [`limits::MAX_ERROR_BODY`],
    /// the rest left unread) and describe it; the
    /// answer is given back with its body kept, so that a caller can still
    /// read it. `None` when the body could not be read (then the error is
    /// a transport error).
    pub(super) async fn buffer_error(
        mut self,
        context: &ErrorContext,
    ) -> Result<(Option<Response>, RegistryError), RegistryError> {
        const LIMIT: usize = limits::MAX_ERROR_BODY;
        let mut body = Vec::new();
        loop {
            match self.chunk().await {
                Ok(Some(c)) => {
                    let room = LIMIT.saturating_sub(body.len());
                    body.extend_from_slice(&c[..c.len().min(room)]);
                    if body.len() >= LIMIT {
                        break;
                    }
                }
                Ok(None) => break,
                Err(k) => return Err(RegistryError::new(context.clone(), k)),
            }
        }
        self.buffered = Some(Bytes::from(body));
        let status = self.status.as_u16();
        let errors = parse_error_body(self.buffered.as_deref().unwrap_or_default());
        let mut e = RegistryError::new(context.clone(), ErrorKind::Status { status, errors });
        e.ratelimit_remaining = self.header("ratelimit-remaining").map(str::to_string);
        e.retry_after = self
            .header("retry-after")
            .and_then(|v| parse_retry_after(v, SystemTime::now()))
            .map(|d| d.as_secs());
        Ok((Some(self), e))
    }

    /// Turn an unexpected answer into a [`RegistryError`] with the
    /// registry's diagnostics.
    pub async fn into_error(self, context: ErrorContext) -> RegistryError {
        let status = self.status.as_u16();
        let ratelimit = self.header("ratelimit-remaining").map(str::to_string);
        let retry_after = self
            .header("retry-after")
            .and_then(|v| parse_retry_after(v, SystemTime::now()))
            .map(|d| d.as_secs());
        let body = self
            .bytes_limited(limits::MAX_ERROR_BODY, "the error answer")
            .await
            .unwrap_or_default();
        let mut e = RegistryError::new(
            context,
            ErrorKind::Status {
                status,
                errors: parse_error_body(&body),
            },
        );
        e.ratelimit_remaining = ratelimit;
        e.retry_after = retry_after;
        e
    }
}

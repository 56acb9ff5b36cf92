//! The HTTP side of the registry client: one `reqwest::Client` (rustls) for
//! every registry, a per-registry limit on requests in flight, auth, retries
//! with backoff, replayable bodies, and statistics.
//!
//! Rules kept here so that no caller can forget them:
//! - HTTPS, except for loopback hosts and hosts listed as insecure;
//! - credentials only ever go to the registry's own origin (scheme, host and
//!   port): redirects are followed by hand, and an absolute upload `Location`
//!   on another host, or an https -> http redirect, gets no `Authorization`;
//! - a request body is a [`Body`] that can be rebuilt for each attempt (a file
//!   is reopened), never a consumed stream;
//! - logs show method, host and path, never a query string, header value,
//!   credential or token.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt as _;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, LOCATION};
use reqwest::{Method, StatusCode, Url};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};

use super::auth::{self, Challenge, TokenCache};
use super::credentials::{Credential, CredentialStore};
use super::error::{
    is_retryable_status, parse_error_body, transport_text, ErrorContext, ErrorKind, RegistryError,
};
use super::headers::{redact, resolve_location, same_origin};
use super::reference::api_host;
use super::retry::{parse_retry_after, RetryPolicy};
use crate::error::bad_input;
use crate::progress::{self, Level, SharedReporter};

/// Default number of requests in flight per registry.
pub const DEFAULT_JOBS_PER_REGISTRY: usize = 4;

/// Settings of a [`Client`].
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Requests in flight per registry host (`--jobs-per-registry`); > 0.
    pub jobs_per_registry: usize,
    /// Hosts (registry names, with port if any) reached over plain HTTP.
    pub insecure: Vec<String>,
    /// Extra PEM CA bundle (`--ca-file`); `SSL_CERT_FILE` is honoured too.
    pub ca_file: Option<PathBuf>,
    pub retry: RetryPolicy,
    pub user_agent: String,
    /// Longest wait for the next bytes of an answer (headers or body) once
    /// a request is sent: a registry that accepts the connection and goes
    /// silent fails the attempt (a temporary error, retried) instead of
    /// hanging. Default 60 s; `BOXWRIGHT_READ_TIMEOUT` (seconds) overrides.
    pub read_timeout: Duration,
    /// Bound on a whole token request and `GET /v2/` ping (small answers,
    /// so a total limit is safe there, unlike on blob transfers).
    pub auth_timeout: Duration,
}

/// The environment variable that overrides [`ClientOptions::read_timeout`].
pub const READ_TIMEOUT_ENV: &str = "BOXWRIGHT_READ_TIMEOUT";

fn read_timeout_from_env() -> Option<Duration> {
    let v = std::env::var(READ_TIMEOUT_ENV).ok()?;
    let secs: f64 = v.trim().parse().ok()?;
    (secs.is_finite() && secs > 0.0).then(|| Duration::from_secs_f64(secs))
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            jobs_per_registry: DEFAULT_JOBS_PER_REGISTRY,
            insecure: Vec::new(),
            ca_file: None,
            retry: RetryPolicy::default(),
            user_agent: format!("boxwright/{}", env!("CARGO_PKG_VERSION")),
            read_timeout: read_timeout_from_env().unwrap_or(Duration::from_secs(60)),
            auth_timeout: Duration::from_secs(60),
        }
    }
}

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
}

impl Body {
    pub fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::File { len, .. } => *len,
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
        }
    }

    pub fn header(mut self, name: reqwest::header::HeaderName, value: &str) -> Request {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }

    pub fn body(mut self, body: Body) -> Request {
        self.body = body;
        self
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
    inner: reqwest::Response,
    /// The body, when it was read already (error answers, see
    /// [`Response::buffer_error`]).
    buffered: Option<Bytes>,
    _permit: OwnedSemaphorePermit,
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

    /// Read the whole body, refusing more than `limit` bytes.
    pub async fn bytes_limited(mut self, limit: usize) -> Result<Vec<u8>, ErrorKind> {
        let mut out = Vec::new();
        while let Some(chunk) = self.chunk().await? {
            if out.len() + chunk.len() > limit {
                return Err(ErrorKind::Protocol(format!(
                    "the answer is larger than {limit} bytes"
                )));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// The next piece of a streamed body.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, ErrorKind> {
        if let Some(b) = self.buffered.take() {
            return Ok(Some(b));
        }
        self.inner
            .chunk()
            .await
            .map_err(|e| ErrorKind::Transport(transport_text(e)))
    }

    /// Read an error answer's body (at most 64 KiB) and describe it; the
    /// answer is given back with its body kept, so that a caller can still
    /// read it. `None` when the body could not be read (then the error is
    /// a transport error).
    async fn buffer_error(
        mut self,
        context: &ErrorContext,
    ) -> Result<(Option<Response>, RegistryError), RegistryError> {
        const LIMIT: usize = 64 * 1024;
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
        let body = self.bytes_limited(64 * 1024).await.unwrap_or_default();
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

/// Counters for one registry (for the push summary).
#[derive(Default)]
struct Stats {
    requests: Mutex<BTreeMap<String, u64>>,
    bytes_sent: AtomicU64,
    retries: AtomicU64,
}

/// A copy of a registry's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatsSnapshot {
    /// Requests sent by method (`HEAD`, `PUT`, ...), retries included.
    pub requests: BTreeMap<String, u64>,
    /// Request body bytes sent (retries included).
    pub bytes_sent: u64,
    /// Attempts repeated after a temporary failure.
    pub retries: u64,
}

/// One request as it went to a registry, for a [`RequestObserver`].
#[derive(Clone, Copy, Debug)]
pub struct RequestEvent<'a> {
    /// The registry the request was sent for (as given to [`Client::send`]).
    pub registry: &'a str,
    pub method: &'a Method,
    /// The answer's status; `None` when no answer came (connection refused,
    /// reset, timeout).
    pub status: Option<u16>,
    /// From sending (after a request slot was free) to the answer's headers;
    /// for a request with a body this includes sending the body.
    pub elapsed: Duration,
    /// Request-body bytes.
    pub body_bytes: u64,
}

/// Sees every attempt of every request the client sends (retries and
/// redirects included); `boxwright bench` records latencies with it.
/// Called on the request's task: keep it short and never block.
pub trait RequestObserver: Send + Sync {
    fn observe(&self, event: &RequestEvent<'_>);
}

struct Host {
    registry: String,
    base: Url,
    sem: Arc<Semaphore>,
    credential: OnceCell<Option<Credential>>,
    challenge: OnceCell<Mutex<Option<Challenge>>>,
    stats: Stats,
}

/// The registry client. Cheap to share (`Arc`); one per process is enough.
pub struct Client {
    http: reqwest::Client,
    opts: ClientOptions,
    store: CredentialStore,
    tokens: TokenCache,
    hosts: Mutex<HashMap<String, Arc<Host>>>,
    explicit: Mutex<HashMap<String, Credential>>,
    reporter: SharedReporter,
    observer: OnceLock<Arc<dyn RequestObserver>>,
}

/// True for `localhost`, `127.0.0.0/8` and `::1` (with or without port).
pub fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        registry.rsplit_once(':').map_or(registry, |(h, p)| {
            if p.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                registry
            }
        })
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<Ipv4Addr>().is_ok_and(|a| a.is_loopback())
        || host.parse::<Ipv6Addr>().is_ok_and(|a| a.is_loopback())
}

impl Client {
    /// Build the client. Reads the CA files (blocking; call it before the
    /// network work starts, or from `spawn_blocking`).
    pub fn new(
        opts: ClientOptions,
        store: CredentialStore,
        reporter: SharedReporter,
    ) -> anyhow::Result<Client> {
        if opts.jobs_per_registry == 0 {
            return Err(bad_input("--jobs-per-registry must be at least 1"));
        }
        let mut builder = reqwest::Client::builder()
            .user_agent(opts.user_agent.clone())
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(opts.read_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .use_rustls_tls();
        let mut ca_files: Vec<PathBuf> = opts.ca_file.iter().cloned().collect();
        if let Some(f) = std::env::var_os("SSL_CERT_FILE").filter(|v| !v.is_empty()) {
            ca_files.push(PathBuf::from(f));
        }
        for f in &ca_files {
            let pem = std::fs::read(f)
                .with_context(|| format!("reading CA file {}", f.display()))
                .map_err(|e| bad_input(format!("{e:#}")))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|_| bad_input(format!("{} holds no PEM certificate", f.display())))?;
            if certs.is_empty() {
                return Err(bad_input(format!(
                    "{} holds no PEM certificate",
                    f.display()
                )));
            }
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let http = builder.build().context("setting up the HTTP client")?;
        Ok(Client {
            http,
            opts,
            store,
            tokens: TokenCache::default(),
            hosts: Mutex::new(HashMap::new()),
            explicit: Mutex::new(HashMap::new()),
            reporter,
            observer: OnceLock::new(),
        })
    }

    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    pub fn reporter(&self) -> &SharedReporter {
        &self.reporter
    }

    /// Install the observer of every request attempt; only the first call
    /// takes effect (returns false otherwise).
    pub fn set_observer(&self, observer: Arc<dyn RequestObserver>) -> bool {
        self.observer.set(observer).is_ok()
    }

    /// Use these credentials for `registry` instead of looking them up.
    /// Must be called before the first request to that registry.
    pub fn set_credential(&self, registry: &str, credential: Credential) {
        if let Ok(mut m) = self.explicit.lock() {
            m.insert(registry.to_string(), credential);
        }
    }

    /// `scheme://api-host` of a registry.
    pub fn base_url(&self, registry: &str) -> Result<Url, RegistryError> {
        let insecure = is_loopback(registry)
            || self.opts.insecure.iter().any(|h| {
                h.eq_ignore_ascii_case(registry) || h.eq_ignore_ascii_case(api_host(registry))
            });
        let scheme = if insecure { "http" } else { "https" };
        Url::parse(&format!("{scheme}://{}/", api_host(registry))).map_err(|_| {
            RegistryError::new(
                ErrorContext {
                    operation: "connecting".into(),
                    registry: registry.to_string(),
                    ..Default::default()
                },
                ErrorKind::Protocol(format!("{registry:?} is not a valid host")),
            )
        })
    }

    /// `<base>/v2/<path>`.
    pub fn url(&self, registry: &str, path: &str) -> Result<Url, RegistryError> {
        let base = self.base_url(registry)?;
        base.join(&format!("v2/{path}")).map_err(|_| {
            RegistryError::new(
                ErrorContext {
                    operation: "building a URL".into(),
                    registry: registry.to_string(),
                    ..Default::default()
                },
                ErrorKind::Protocol(format!("invalid path {path:?}")),
            )
        })
    }

    fn host(&self, registry: &str) -> Result<Arc<Host>, RegistryError> {
        let mut hosts = self.hosts.lock().map_err(|_| {
            RegistryError::new(
                ErrorContext {
                    operation: "connecting".into(),
                    registry: registry.to_string(),
                    ..Default::default()
                },
                ErrorKind::Protocol("internal lock poisoned".into()),
            )
        })?;
        if let Some(h) = hosts.get(registry) {
            return Ok(h.clone());
        }
        let h = Arc::new(Host {
            registry: registry.to_string(),
            base: self.base_url(registry)?,
            sem: Arc::new(Semaphore::new(self.opts.jobs_per_registry)),
            credential: OnceCell::new(),
            challenge: OnceCell::new(),
            stats: Stats::default(),
        });
        hosts.insert(registry.to_string(), h.clone());
        Ok(h)
    }

    /// Counters of one registry.
    pub fn stats(&self, registry: &str) -> StatsSnapshot {
        let Ok(h) = self.host(registry) else {
            return StatsSnapshot::default();
        };
        StatsSnapshot {
            requests: h
                .stats
                .requests
                .lock()
                .map(|m| m.clone())
                .unwrap_or_default(),
            bytes_sent: h.stats.bytes_sent.load(Ordering::Relaxed),
            retries: h.stats.retries.load(Ordering::Relaxed),
        }
    }

    /// The credentials used for `registry` (explicit, else looked up once).
    pub async fn credential(&self, registry: &str) -> anyhow::Result<Option<Credential>> {
        let host = self.host(registry)?;
        let cred = host
            .credential
            .get_or_try_init(|| async {
                if let Some(c) = self
                    .explicit
                    .lock()
                    .ok()
                    .and_then(|m| m.get(registry).cloned())
                {
                    self.log(&format!("{registry}: using explicit credentials"));
                    return Ok::<_, anyhow::Error>(Some(c));
                }
                let store = self.store.clone();
                let reg = registry.to_string();
                let found = tokio::task::spawn_blocking(move || store.lookup(&reg))
                    .await
                    .context("credential lookup task failed")?
                    .with_context(|| format!("looking up credentials for {registry}"))?;
                match &found {
                    Some((_, src)) => self.log(&format!("{registry}: credentials from {src}")),
                    None => self.log(&format!("{registry}: no credentials, anonymous")),
                }
                Ok(found.map(|(c, _)| c))
            })
            .await?;
        Ok(cred.clone())
    }

    fn log(&self, msg: &str) {
        self.reporter.log(Level::Debug, msg);
    }

    /// A transport error for messages; a timeout says how long we waited.
    fn transport_text(&self, e: reqwest::Error) -> String {
        if e.is_timeout() {
            format!(
                "no answer within {}s (timed out): {}",
                self.opts.read_timeout.as_secs_f64(),
                transport_text(e)
            )
        } else {
            transport_text(e)
        }
    }

    /// Learn the registry's challenge with `GET /v2/` (once per registry).
    async fn challenge(
        &self,
        host: &Host,
        ctx: &ErrorContext,
    ) -> Result<Option<Challenge>, RegistryError> {
        let cell = host
            .challenge
            .get_or_try_init(|| async {
                let url = host.base.join("v2/").map_err(|_| {
                    RegistryError::new(ctx.clone(), ErrorKind::Protocol("bad base URL".into()))
                })?;
                let mut attempt = 0;
                loop {
                    let _permit = host.sem.clone().acquire_owned().await.map_err(|_| {
                        RegistryError::new(ctx.clone(), ErrorKind::Protocol("closed".into()))
                    })?;
                    count(&host.stats, "GET");
                    let res = self
                        .http
                        .get(url.clone())
                        .timeout(self.opts.auth_timeout)
                        .send()
                        .await;
                    let failure = match res {
                        Ok(resp) => {
                            let status = resp.status().as_u16();
                            let ratelimit = resp
                                .headers()
                                .get("ratelimit-remaining")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string);
                            let rl = ratelimit
                                .as_deref()
                                .map(|v| format!(" (ratelimit-remaining {v})"))
                                .unwrap_or_default();
                            self.log(&format!("GET {} -> {status}{rl}", redact(&url)));
                            if status == 401 {
                                let challenges: Vec<Challenge> = resp
                                    .headers()
                                    .get_all("www-authenticate")
                                    .iter()
                                    .filter_map(|v| v.to_str().ok())
                                    .flat_map(auth::parse_challenges)
                                    .collect();
                                return Ok(Mutex::new(auth::preferred(&challenges)));
                            }
                            if status < 300 || status == 404 {
                                // 404: not a /v2/ ping endpoint; try anonymous.
                                return Ok(Mutex::new(None));
                            }
                            let ra = resp
                                .headers()
                                .get("retry-after")
                                .and_then(|v| v.to_str().ok())
                                .and_then(|v| parse_retry_after(v, SystemTime::now()));
                            let mut err = RegistryError::new(
                                ctx.clone(),
                                ErrorKind::Status {
                                    status,
                                    errors: vec![],
                                },
                            );
                            // Docker Hub's quota and wait, as on other answers.
                            err.ratelimit_remaining = ratelimit;
                            err.retry_after = ra.map(|d| d.as_secs());
                            if !is_retryable_status(status) {
                                return Err(err);
                            }
                            (err, ra)
                        }
                        Err(e) => (
                            RegistryError::new(
                                ctx.clone(),
                                ErrorKind::Transport(self.transport_text(e)),
                            ),
                            None,
                        ),
                    };
                    attempt += 1;
                    let delay = (attempt <= self.opts.retry.max_retries)
                        .then(|| self.opts.retry.delay(attempt, failure.1))
                        .flatten();
                    match delay {
                        Some(d) => {
                            host.stats.retries.fetch_add(1, Ordering::Relaxed);
                            self.log(&format!(
                                "{}: {}; retrying in {d:?}",
                                host.registry, failure.0
                            ));
                            tokio::time::sleep(d).await;
                        }
                        None => return Err(failure.0),
                    }
                }
            })
            .await?;
        Ok(cell.lock().ok().and_then(|c| c.clone()))
    }

    /// The `Authorization` value for a request to `host` needing `scopes`.
    async fn authorization(
        &self,
        host: &Host,
        scopes: &[String],
        ctx: &ErrorContext,
    ) -> Result<Option<HeaderValue>, RegistryError> {
        let auth_err = |m: String| RegistryError::new(ctx.clone(), ErrorKind::Auth(m));
        let challenge = self.challenge(host, ctx).await?;
        let Some(challenge) = challenge else {
            return Ok(None);
        };
        let cred = self
            .credential(&host.registry)
            .await
            .map_err(|e| auth_err(format!("{e:#}")))?;
        let value = match challenge {
            Challenge::Basic => match cred {
                Some(Credential::Basic { username, password }) => {
                    let raw = format!("{username}:{}", password.expose());
                    format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(raw)
                    )
                }
                _ => return Ok(None),
            },
            Challenge::Bearer(b) => {
                if let Some(t) = self.tokens.get(&host.registry, scopes) {
                    format!("Bearer {}", t.expose())
                } else {
                    let policy = auth::TokenPolicy {
                        allow_plain_http: host.base.scheme() == "http",
                        timeout: self.opts.auth_timeout,
                    };
                    let t = auth::fetch_token(&self.http, &b, scopes, cred.as_ref(), &policy)
                        .await
                        .map_err(auth_err)?;
                    self.log(&format!(
                        "{}: token for {} obtained",
                        host.registry,
                        auth::scope_key(scopes)
                    ));
                    let v = format!("Bearer {}", t.value.expose());
                    self.tokens.put(&host.registry, scopes, t);
                    v
                }
            }
        };
        let mut hv = HeaderValue::from_str(&value).map_err(|_| {
            auth_err("the credential holds characters not allowed in a header".into())
        })?;
        hv.set_sensitive(true);
        Ok(Some(hv))
    }

    async fn body_for(
        &self,
        host: &Arc<Host>,
        body: &Body,
        progress: &Option<String>,
        ctx: &ErrorContext,
    ) -> Result<Option<reqwest::Body>, RegistryError> {
        match body {
            Body::Empty => Ok(None),
            Body::Bytes(b) => {
                host.stats
                    .bytes_sent
                    .fetch_add(b.len() as u64, Ordering::Relaxed);
                Ok(Some(reqwest::Body::from(b.clone())))
            }
            Body::File { path, offset, len } => {
                let io = |e: std::io::Error| {
                    RegistryError::new(
                        ctx.clone(),
                        ErrorKind::Io(format!("reading {}: {e}", path.display())),
                    )
                };
                let mut f = tokio::fs::File::open(path).await.map_err(io)?;
                f.seek(std::io::SeekFrom::Start(*offset))
                    .await
                    .map_err(io)?;
                let reader = f.take(*len);
                let host = host.clone();
                let reporter = self.reporter.clone();
                let progress = progress.clone();
                let stream = tokio_util::io::ReaderStream::with_capacity(reader, 256 * 1024).map(
                    move |chunk| {
                        if let Ok(c) = &chunk {
                            let n = c.len() as u64;
                            host.stats.bytes_sent.fetch_add(n, Ordering::Relaxed);
                            if let Some(id) = &progress {
                                reporter.advance(id, n);
                            }
                        }
                        chunk
                    },
                );
                Ok(Some(reqwest::Body::wrap_stream(stream)))
            }
        }
    }

    /// Send a request to `registry`, with auth, redirects, and retries (when
    /// `req.retry`). Any answer that is not retried is returned, whatever its
    /// status; the caller decides what it means.
    pub async fn send(
        &self,
        registry: &str,
        req: Request,
        ctx: &ErrorContext,
    ) -> Result<Response, RegistryError> {
        let host = self.host(registry)?;
        let mut url = req.url.clone();
        let mut attempt: u32 = 0;
        let mut refreshed_auth = false;
        let mut redirects = 0;
        loop {
            let to_registry = same_origin(&url, &host.base);
            let auth = if to_registry {
                self.authorization(&host, &req.scopes, ctx).await?
            } else {
                None
            };
            let permit = host.sem.clone().acquire_owned().await.map_err(|_| {
                RegistryError::new(ctx.clone(), ErrorKind::Protocol("client closed".into()))
            })?;
            let mut headers = req.headers.clone();
            if let Some(a) = auth {
                headers.insert(AUTHORIZATION, a);
            }
            let body = self.body_for(&host, &req.body, &req.progress, ctx).await?;
            if body.is_some() || matches!(req.method, Method::PUT | Method::POST | Method::PATCH) {
                headers.insert(CONTENT_LENGTH, HeaderValue::from(req.body.len()));
            }
            let mut rb = self
                .http
                .request(req.method.clone(), url.clone())
                .headers(headers);
            if let Some(b) = body {
                rb = rb.body(b);
            }
            count(&host.stats, req.method.as_str());
            let shown = format!("{} {}", req.method, redact(&url));
            let started = Instant::now();
            let result = rb.send().await;
            if let Some(o) = self.observer.get() {
                o.observe(&RequestEvent {
                    registry,
                    method: &req.method,
                    status: result.as_ref().ok().map(|r| r.status().as_u16()),
                    elapsed: started.elapsed(),
                    body_bytes: req.body.len(),
                });
            }
            let (err, retry_after) = match result {
                Err(e) => {
                    let text = self.transport_text(e);
                    self.log(&format!("{shown} -> {text}"));
                    (
                        RegistryError::new(ctx.clone(), ErrorKind::Transport(text)),
                        None,
                    )
                }
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    let rl = headers
                        .get("ratelimit-remaining")
                        .and_then(|v| v.to_str().ok())
                        .map(|v| format!(" (ratelimit-remaining {v})"))
                        .unwrap_or_default();
                    self.log(&format!("{shown} -> {}{rl}", status.as_u16()));
                    let response = Response {
                        status,
                        headers,
                        url: url.clone(),
                        inner: resp,
                        buffered: None,
                        _permit: permit,
                    };
                    if status.is_redirection()
                        && matches!(req.method, Method::GET | Method::HEAD)
                        && redirects < 5
                    {
                        if let Some(Ok(next)) = response.location() {
                            redirects += 1;
                            url = next;
                            continue;
                        }
                    }
                    if status == StatusCode::UNAUTHORIZED && to_registry && !refreshed_auth {
                        refreshed_auth = true;
                        let fresh: Vec<Challenge> = response
                            .headers
                            .get_all("www-authenticate")
                            .iter()
                            .filter_map(|v| v.to_str().ok())
                            .flat_map(auth::parse_challenges)
                            .collect();
                        if let Some(c) = auth::preferred(&fresh) {
                            if let Some(cell) = host.challenge.get() {
                                if let Ok(mut g) = cell.lock() {
                                    *g = Some(c);
                                }
                            }
                        }
                        self.tokens.invalidate(&host.registry, &req.scopes);
                        let has_challenge = self.challenge(&host, ctx).await?.is_some();
                        if has_challenge {
                            drop(response);
                            continue;
                        }
                        return Ok(response);
                    }
                    if !req.retry || status.as_u16() < 400 {
                        return Ok(response);
                    }
                    // Whether an error is temporary can depend on its OCI
                    // error code (`BLOB_UPLOAD_UNKNOWN`, `TOOMANYREQUESTS`,
                    // GHCR's 403 "secondary rate limit"), not only on the
                    // status: read the (small) error body, keep it for the
                    // caller when the answer is not retried.
                    let ra = response
                        .header("retry-after")
                        .and_then(|v| parse_retry_after(v, SystemTime::now()));
                    let (response, err) = match response.buffer_error(ctx).await {
                        Ok(pair) => pair,
                        Err(e) => (None, e),
                    };
                    match response {
                        Some(r) if !err.is_temporary() => return Ok(r),
                        _ => (err, ra),
                    }
                }
            };
            if !req.retry {
                return Err(err);
            }
            attempt += 1;
            let delay = if attempt <= self.opts.retry.max_retries {
                self.opts.retry.delay(attempt, retry_after)
            } else {
                None
            };
            let Some(delay) = delay else {
                return Err(err);
            };
            host.stats.retries.fetch_add(1, Ordering::Relaxed);
            self.log(&format!(
                "{err}; retry {attempt}/{} in {}ms",
                self.opts.retry.max_retries,
                delay.as_millis()
            ));
            tokio::time::sleep(delay).await;
        }
    }

    /// Check the credentials of `registry` as `docker login` does: `GET /v2/`
    /// with them. For a Bearer challenge a token is fetched first with the
    /// credentials and no scope (the token server refuses bad credentials
    /// with 401); for a Basic challenge they go on the request itself. A
    /// registry that answers `/v2/` without a challenge accepts anything, as
    /// with docker. Errors: the token server's refusal
    /// ([`ErrorKind::Auth`]), the registry's 401/403 ([`ErrorKind::Status`]),
    /// or no answer ([`ErrorKind::Transport`]).
    pub async fn check_credentials(&self, registry: &str) -> Result<(), RegistryError> {
        let ctx = ErrorContext {
            operation: "checking the credentials".into(),
            registry: registry.to_string(),
            ..Default::default()
        };
        let url = self.url(registry, "")?;
        let resp = self
            .send(registry, Request::new(Method::GET, url, Vec::new()), &ctx)
            .await?;
        if resp.status.is_success() {
            return Ok(());
        }
        Err(resp.into_error(ctx).await)
    }

    /// Count a retry done by a caller (upload restarts and resumes).
    pub fn count_retry(&self, registry: &str) {
        if let Ok(h) = self.host(registry) {
            h.stats.retries.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sleep before a caller-level retry; false when the budget is spent.
    pub async fn backoff(&self, registry: &str, attempt: u32, err: &RegistryError) -> bool {
        if attempt > self.opts.retry.max_retries {
            return false;
        }
        let ra = err.retry_after.map(Duration::from_secs);
        let Some(d) = self.opts.retry.delay(attempt, ra) else {
            return false;
        };
        self.count_retry(registry);
        self.log(&format!(
            "{err}; retry {attempt}/{} in {}ms",
            self.opts.retry.max_retries,
            d.as_millis()
        ));
        tokio::time::sleep(d).await;
        true
    }
}

fn count(stats: &Stats, method: &str) {
    if let Ok(mut m) = stats.requests.lock() {
        *m.entry(method.to_string()).or_default() += 1;
    }
}

/// A client with default options, credentials from the environment and no
/// reporting; for tests and simple tools.
pub fn default_client() -> anyhow::Result<Client> {
    Client::new(
        ClientOptions::default(),
        CredentialStore::from_env(),
        progress::silent(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.3.4.5",
            "[::1]:5000",
            "[::1]",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "ghcr.io",
            "docker.io",
            "10.0.0.1:5000",
            "localhost.example.com",
            "[::2]:5000",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn schemes() {
        let opts = ClientOptions {
            insecure: vec!["registry.lan:5000".into()],
            ..Default::default()
        };
        let c = Client::new(opts, CredentialStore::default(), progress::silent()).unwrap();
        assert_eq!(c.base_url("ghcr.io").unwrap().as_str(), "https://ghcr.io/");
        assert_eq!(
            c.base_url("docker.io").unwrap().as_str(),
            "https://registry-1.docker.io/"
        );
        assert_eq!(
            c.base_url("localhost:5000").unwrap().as_str(),
            "http://localhost:5000/"
        );
        assert_eq!(
            c.base_url("registry.lan:5000").unwrap().as_str(),
            "http://registry.lan:5000/"
        );
        assert_eq!(
            c.url("ghcr.io", "acme/x/blobs/sha256:00").unwrap().as_str(),
            "https://ghcr.io/v2/acme/x/blobs/sha256:00"
        );
    }

    #[test]
    fn zero_jobs_refused() {
        let opts = ClientOptions {
            jobs_per_registry: 0,
            ..Default::default()
        };
        let e = Client::new(opts, CredentialStore::default(), progress::silent())
            .err()
            .unwrap();
        assert!(crate::error::is_bad_input(&e));
    }
}

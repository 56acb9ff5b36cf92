//! An in-process HTTP/1.1 reverse proxy in front of a [`Registry`] that
//! counts what clients send and injects the faults real registries show.
//!
//! It forwards the `Host` header unchanged, so the registry's absolute
//! `Location` headers point back at the proxy. Bodies stream both ways (a
//! 100 MiB blob never sits in memory). Every request is logged in arrival
//! order, with the status returned and the request-body bytes received;
//! every injected fault is logged too.
//!
//! Faults are deterministic for a given seed and request order; the
//! configuration can change at any time from the test. This file holds the
//! settings, the log and the test-facing handle; `forward` answers requests.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::{bind_loopback, Registry, ServerRuntime};

mod forward;

use forward::{handle, is_upload_session, query_pairs};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = BoxBody<Bytes, BoxError>;

/// A fault the proxy can inject instead of forwarding a request (randomly,
/// see [`FaultConfig::fault_rate`], or once, see [`FaultProxy::fail_next`]).
/// The request never reaches the registry, so its upload session is intact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 429 with `Retry-After: 1` and an OCI `TOOMANYREQUESTS` error body.
    TooManyRequests,
    /// 500 with an OCI `UNKNOWN` error body.
    InternalError,
    /// 503 with an OCI `UNAVAILABLE` error body.
    Unavailable,
    /// Reads about half of the request body (nothing for a bodiless
    /// request), then closes the connection without answering.
    DropConnection,
    /// 404 with an OCI `BLOB_UPLOAD_UNKNOWN` error body, as GHCR answers
    /// transiently to a PATCH or PUT on an upload session. Only requests on
    /// an upload session (`.../blobs/uploads/<id>`, PATCH, PUT or GET) get
    /// it; other requests pass untouched and leave a one-shot one queued.
    /// Not in the default random mix.
    UploadUnknown,
}

impl Fault {
    /// Whether this fault may be injected into `method path`.
    fn applies(self, method: &str, path: &str) -> bool {
        match self {
            Fault::UploadUnknown => is_upload_session(method, path),
            _ => true,
        }
    }
}

/// Why a logged request did not go through untouched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Injected {
    /// A [`Fault`] answered instead of the registry.
    Fault(Fault),
    /// A chunked PATCH over [`FaultConfig::patch_cap`] answered 416.
    PatchTooLarge,
    /// A mount POST forwarded without `mount`/`from` (registry answered 202).
    Mount202,
    /// A POST with query parameters other than `mount`/`from` answered 400.
    BadMountQuery,
    /// A blob GET whose first byte was altered.
    CorruptBlob,
    /// A referrers API request answered by the proxy ([`FaultConfig::referrers_api`]).
    Referrers,
    /// A manifest with a `subject` or `artifactType` refused
    /// ([`FaultConfig::refuse_artifacts`]).
    ArtifactRefused,
}

/// One request as the proxy saw it.
#[derive(Clone, Debug)]
pub struct LogEntry {
    pub method: String,
    pub path: String,
    /// The raw query string, if any (as the client sent it).
    pub query: Option<String>,
    /// The request's `Content-Range` header (chunked uploads), if any.
    pub content_range: Option<String>,
    /// Whether the request carried an `Authorization` header.
    pub authorization: bool,
    /// Status returned to the client; `None` if the connection was dropped
    /// or the response is still pending.
    pub status: Option<u16>,
    /// Request-body bytes received from the client (including bodies
    /// drained for an injected fault).
    pub body_bytes: u64,
    /// Response-body bytes forwarded from the registry to the client (so
    /// far, for an answer still streaming; injected answers count 0).
    pub response_bytes: u64,
    pub injected: Option<Injected>,
    /// When the request's headers arrived.
    pub arrived: std::time::Instant,
    /// The same moment on the wall clock, comparable with file times (a
    /// blob's modification time tells when it was finished).
    pub arrived_at: std::time::SystemTime,
}

impl LogEntry {
    /// The query's parameters, decoded, in order.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        query_pairs(self.query.as_deref())
    }

    /// The decoded value of the query parameter `key` (`digest`, `mount`, ...).
    pub fn query_param(&self, key: &str) -> Option<String> {
        self.query_pairs()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }
}

/// Fault settings, changed at run time with [`FaultProxy::configure`].
#[derive(Clone, Debug)]
pub struct FaultConfig {
    /// Probability (0.0..=1.0) that a request gets a random fault drawn from
    /// `fault_kinds`. Default 0.
    pub fault_rate: f64,
    /// The mix random faults are drawn from (uniformly). Default: all four.
    pub fault_kinds: Vec<Fault>,
    /// Methods random faults apply to (e.g. `["PATCH", "PUT"]`); empty = all.
    pub fault_methods: Vec<String>,
    /// GHCR's cap: a PATCH with `Content-Range` whose body is over this many
    /// bytes answers 416. Default `None` (no cap); GHCR's is `4 << 20`.
    pub patch_cap: Option<u64>,
    /// Answer mounts 202: forward `POST ...?mount=&from=` without those
    /// parameters, so the registry opens a plain upload session.
    pub mount_202: bool,
    /// Docker Hub: a `POST .../blobs/uploads/` with any query parameter other
    /// than `mount` and `from` answers 400.
    pub strict_mount_query: bool,
    /// Blob GETs (`/v2/<repo>/blobs/<digest>`, 200) serve altered bytes.
    pub corrupt_blobs: bool,
    /// Headers added to every response, e.g. `("ratelimit-remaining", "42;w=21600")`.
    pub extra_headers: Vec<(String, String)>,
    /// Play a registry with the OCI 1.1 referrers API (the reference
    /// registry has none): manifests pushed with a `subject` are recorded,
    /// and `GET /v2/<name>/referrers/<digest>` answers their index.
    pub referrers_api: bool,
    /// Play a registry that refuses OCI 1.1 artifacts: a manifest PUT with
    /// a `subject` or an `artifactType` answers 400 `MANIFEST_INVALID`.
    pub refuse_artifacts: bool,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            fault_rate: 0.0,
            fault_kinds: vec![
                Fault::TooManyRequests,
                Fault::InternalError,
                Fault::Unavailable,
                Fault::DropConnection,
            ],
            fault_methods: Vec::new(),
            patch_cap: None,
            mount_202: false,
            strict_mount_query: false,
            corrupt_blobs: false,
            extra_headers: Vec::new(),
            referrers_api: false,
            refuse_artifacts: false,
        }
    }
}

/// GHCR's PATCH cap, for [`FaultConfig::patch_cap`].
pub const GHCR_PATCH_CAP: u64 = 4 << 20;

#[derive(Default, Clone, Copy)]
struct Counter {
    requests: u64,
    bytes: u64,
}

/// A queued one-shot fault.
struct OneShot {
    /// A method, or `"*"` for any.
    method: String,
    fault: Fault,
    /// Only a request whose `Content-Range` starts at or after this offset
    /// (a chunk in the middle of a chunked upload).
    min_offset: Option<u64>,
    /// Only a request whose path ends with this (one manifest, one tag).
    path_end: Option<String>,
}

impl OneShot {
    fn matches(&self, method: &str, path: &str, content_range: Option<&str>) -> bool {
        (self.method == "*" || self.method == method)
            && self.fault.applies(method, path)
            && self.path_end.as_ref().is_none_or(|end| path.ends_with(end))
            && self.min_offset.is_none_or(|min| {
                content_range
                    .and_then(|r| r.trim().trim_start_matches("bytes=").split('-').next())
                    .and_then(|start| start.trim().parse::<u64>().ok())
                    .is_some_and(|start| start >= min)
            })
    }
}

struct State {
    config: FaultConfig,
    /// Consumed in order, each by the first request it matches.
    one_shot: VecDeque<OneShot>,
    rng: StdRng,
    log: Vec<LogEntry>,
    counters: BTreeMap<String, Counter>,
    /// Bumped by `reset()` so in-flight requests do not write into a new log.
    generation: u64,
    /// With [`FaultConfig::referrers_api`]: (repository, subject digest) ->
    /// descriptors of the manifests stored with that subject.
    referrers: BTreeMap<(String, String), Vec<serde_json::Value>>,
}

struct Shared {
    state: Mutex<State>,
    upstream: SocketAddr,
    client: Client<HttpConnector, Body>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not poison the proxy for the others.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Where a request's log entry is, valid while `generation` matches.
#[derive(Clone)]
struct Slot {
    shared: Arc<Shared>,
    generation: u64,
    index: usize,
    method: String,
}

impl Slot {
    fn with<F: FnOnce(&mut LogEntry, &mut Counter)>(&self, f: F) {
        let mut st = self.shared.lock();
        if st.generation != self.generation {
            return;
        }
        let State { log, counters, .. } = &mut *st;
        let counter = counters.entry(self.method.clone()).or_default();
        if let Some(e) = log.get_mut(self.index) {
            f(e, counter);
        }
    }

    fn add_bytes(&self, n: u64) {
        self.with(|e, c| {
            e.body_bytes += n;
            c.bytes += n;
        });
    }

    fn add_response_bytes(&self, n: u64) {
        self.with(|e, _| e.response_bytes += n);
    }

    fn finish(&self, status: Option<u16>, injected: Option<Injected>) {
        self.with(|e, _| {
            e.status = status;
            if injected.is_some() {
                e.injected = injected;
            }
        });
    }
}

/// The proxy. Stops on drop.
///
/// ```ignore
/// let reg = Registry::start();
/// let proxy = FaultProxy::start(&reg);
/// proxy.fail_next("PATCH", Fault::Unavailable);        // the next PATCH gets 503
/// proxy.configure(|c| c.patch_cap = Some(GHCR_PATCH_CAP));
/// // ... push to proxy.host() ...
/// assert_eq!(proxy.count("POST"), 2);
/// ```
pub struct FaultProxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    _rt: ServerRuntime,
}

impl FaultProxy {
    /// A proxy in front of `registry`, no faults, seed 42.
    pub fn start(registry: &Registry) -> FaultProxy {
        FaultProxy::start_to(registry.addr(), 42)
    }

    /// A proxy in front of `registry` whose random faults follow `seed`.
    pub fn with_seed(registry: &Registry, seed: u64) -> FaultProxy {
        FaultProxy::start_to(registry.addr(), seed)
    }

    /// A proxy in front of any HTTP/1.1 server.
    pub fn start_to(upstream: SocketAddr, seed: u64) -> FaultProxy {
        let listener = bind_loopback();
        let addr = listener.local_addr().expect("proxy address");
        let rt = ServerRuntime::new("fault-proxy");
        let client = {
            let _guard = rt.handle().enter();
            Client::builder(TokioExecutor::new()).build_http::<Body>()
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                config: FaultConfig::default(),
                one_shot: VecDeque::new(),
                rng: StdRng::seed_from_u64(seed),
                log: Vec::new(),
                counters: BTreeMap::new(),
                generation: 0,
                referrers: BTreeMap::new(),
            }),
            upstream,
            client,
        });
        let s = shared.clone();
        rt.handle().spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(s.clone(), req));
                    // Errors here are dropped connections (injected or by
                    // the client, or TLS probes): nothing to report.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        FaultProxy {
            shared,
            addr,
            _rt: rt,
        }
    }

    /// `127.0.0.1:PORT`: use it as the registry host in image references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes the fault settings; applies to requests arriving from now on.
    pub fn configure(&self, f: impl FnOnce(&mut FaultConfig)) {
        f(&mut self.shared.lock().config);
    }

    /// Shorthand: random faults from the default mix with probability `rate`.
    pub fn set_fault_rate(&self, rate: f64) {
        self.configure(|c| c.fault_rate = rate);
    }

    /// Restarts the random sequence from `seed`.
    pub fn set_seed(&self, seed: u64) {
        self.shared.lock().rng = StdRng::seed_from_u64(seed);
    }

    /// One-shot: the next request with `method` (`"*"`: any) gets `fault`.
    /// Several calls queue up, each consumed once.
    pub fn fail_next(&self, method: &str, fault: Fault) {
        self.shared.lock().one_shot.push_back(OneShot {
            method: method.to_ascii_uppercase(),
            fault,
            min_offset: None,
            path_end: None,
        });
    }

    /// One-shot: the next request with `method` whose path ends with
    /// `path_end` (`/manifests/TAG`) gets `fault`.
    pub fn fail_next_path(&self, method: &str, path_end: &str, fault: Fault) {
        self.shared.lock().one_shot.push_back(OneShot {
            method: method.to_ascii_uppercase(),
            fault,
            min_offset: None,
            path_end: Some(path_end.to_string()),
        });
    }

    /// One-shot: the next chunked PATCH whose `Content-Range` starts at or
    /// after `min_offset` (so not a blob's first chunk when > 0) gets `fault`.
    pub fn fail_next_chunk(&self, min_offset: u64, fault: Fault) {
        self.shared.lock().one_shot.push_back(OneShot {
            method: "PATCH".into(),
            fault,
            min_offset: Some(min_offset),
            path_end: None,
        });
    }

    /// Every request since the start (or the last [`reset`](Self::reset)), in arrival order.
    pub fn log(&self) -> Vec<LogEntry> {
        self.shared.lock().log.clone()
    }

    /// The logged requests that got something injected.
    pub fn faults(&self) -> Vec<LogEntry> {
        self.log()
            .into_iter()
            .filter(|e| e.injected.is_some())
            .collect()
    }

    /// How many requests got `what` injected.
    pub fn injected_count(&self, what: Injected) -> usize {
        self.shared
            .lock()
            .log
            .iter()
            .filter(|e| e.injected == Some(what))
            .count()
    }

    /// Requests received with `method` (e.g. `"PATCH"`).
    pub fn count(&self, method: &str) -> u64 {
        let st = self.shared.lock();
        st.counters.get(method).map_or(0, |c| c.requests)
    }

    /// Request-body bytes received with `method`, faulted requests included.
    pub fn bytes_received(&self, method: &str) -> u64 {
        let st = self.shared.lock();
        st.counters.get(method).map_or(0, |c| c.bytes)
    }

    /// Clears the log and counters (not the configuration or queued one-shot faults).
    pub fn reset(&self) {
        let mut st = self.shared.lock();
        st.log.clear();
        st.counters.clear();
        st.generation += 1;
    }
}

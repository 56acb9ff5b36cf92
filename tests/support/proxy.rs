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
//! configuration can change at any time from the test.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{bind_loopback, Registry, ServerRuntime};

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
    pub injected: Option<Injected>,
    /// When the request's headers arrived.
    pub arrived: std::time::Instant,
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
}

impl OneShot {
    fn matches(&self, method: &str, path: &str, content_range: Option<&str>) -> bool {
        (self.method == "*" || self.method == method)
            && self.fault.applies(method, path)
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
        });
    }

    /// One-shot: the next chunked PATCH whose `Content-Range` starts at or
    /// after `min_offset` (so not a blob's first chunk when > 0) gets `fault`.
    pub fn fail_next_chunk(&self, min_offset: u64, fault: Fault) {
        self.shared.lock().one_shot.push_back(OneShot {
            method: "PATCH".into(),
            fault,
            min_offset: Some(min_offset),
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

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

fn oci_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({"errors": [{"code": code, "message": message, "detail": null}]});
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(body.to_string()))
        .expect("valid response")
}

/// Reads the rest of a body, counting it; errors end the read quietly.
async fn drain(body: &mut Incoming, slot: &Slot) {
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    slot.add_bytes(d.len() as u64);
                }
            }
            Err(_) => return,
        }
    }
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
];

fn strip_hop_by_hop(headers: &mut hyper::HeaderMap) {
    for h in HOP_BY_HOP {
        headers.remove(*h);
    }
}

fn is_upload_start(method: &str, path: &str) -> bool {
    method == "POST" && path.ends_with("/blobs/uploads/")
}

/// A request on an open upload session: `/v2/<name>/blobs/uploads/<id>`
/// (GHCR spells it `/blobs/upload/<id>`).
fn is_upload_session(method: &str, path: &str) -> bool {
    matches!(method, "PATCH" | "PUT" | "GET")
        && ["/blobs/uploads/", "/blobs/upload/"].iter().any(|m| {
            path.split_once(m)
                .is_some_and(|(head, id)| head.starts_with("/v2/") && !id.is_empty())
        })
}

fn is_blob_get(method: &str, path: &str) -> bool {
    method == "GET" && path.starts_with("/v2/") && {
        match path.rsplit_once("/blobs/") {
            Some((_, digest)) => digest.contains(':'),
            None => false,
        }
    }
}

/// `/v2/<name>/referrers/<digest>` -> (name, digest).
fn referrers_path(path: &str) -> Option<(String, String)> {
    let (name, digest) = path.strip_prefix("/v2/")?.rsplit_once("/referrers/")?;
    Some((name.to_string(), digest.to_string()))
}

fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://x/?{}", query.unwrap_or("")))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, BoxError> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(String::from);
    let content_range = req
        .headers()
        .get("content-range")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let authorization = req.headers().contains_key("authorization");

    // Arrival: log it, count it, decide what to inject.
    let (slot, fault, config) = {
        let mut st = shared.lock();
        st.log.push(LogEntry {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            content_range,
            authorization,
            status: None,
            body_bytes: 0,
            injected: None,
            arrived: std::time::Instant::now(),
        });
        let index = st.log.len() - 1;
        st.counters.entry(method.clone()).or_default().requests += 1;
        let mut fault = None;
        let range = st.log[index].content_range.clone();
        if let Some(pos) = st
            .one_shot
            .iter()
            .position(|o| o.matches(&method, &path, range.as_deref()))
        {
            fault = st.one_shot.remove(pos).map(|o| o.fault);
        } else if st.config.fault_rate > 0.0
            && !st.config.fault_kinds.is_empty()
            && (st.config.fault_methods.is_empty()
                || st
                    .config
                    .fault_methods
                    .iter()
                    .any(|m| m.eq_ignore_ascii_case(&method)))
        {
            let rate = st.config.fault_rate.clamp(0.0, 1.0);
            if st.rng.random_bool(rate) {
                let n = st.config.fault_kinds.len();
                let k = st.rng.random_range(0..n);
                fault = Some(st.config.fault_kinds[k]).filter(|f| f.applies(&method, &path));
            }
        }
        let slot = Slot {
            shared: shared.clone(),
            generation: st.generation,
            index,
            method: method.clone(),
        };
        (slot, fault, st.config.clone())
    };

    let (mut parts, mut body) = req.into_parts();
    let content_length: Option<u64> = parts
        .headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());

    let finish = |mut resp: Response<Body>, injected: Option<Injected>| {
        for (k, v) in &config.extra_headers {
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                resp.headers_mut().append(k, v);
            }
        }
        slot.finish(Some(resp.status().as_u16()), injected);
        Ok(resp)
    };

    if let Some(fault) = fault {
        let injected = Some(Injected::Fault(fault));
        let resp = match fault {
            Fault::DropConnection => {
                let want = content_length.map_or(1, |n| (n / 2).max(1));
                let mut got = 0u64;
                while got < want {
                    match body.frame().await {
                        Some(Ok(f)) => {
                            if let Some(d) = f.data_ref() {
                                got += d.len() as u64;
                                slot.add_bytes(d.len() as u64);
                            }
                        }
                        _ => break,
                    }
                }
                slot.finish(None, injected);
                return Err("injected fault: connection dropped".into());
            }
            Fault::TooManyRequests => {
                let mut r = oci_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TOOMANYREQUESTS",
                    "injected: too many requests",
                );
                r.headers_mut()
                    .insert("retry-after", HeaderValue::from_static("1"));
                r
            }
            Fault::InternalError => oci_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "UNKNOWN",
                "injected: internal server error",
            ),
            Fault::Unavailable => oci_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "injected: service unavailable",
            ),
            Fault::UploadUnknown => oci_error(
                StatusCode::NOT_FOUND,
                "BLOB_UPLOAD_UNKNOWN",
                "injected: blob upload unknown to registry",
            ),
        };
        // Read the whole body first so the client sees the answer, not a
        // broken pipe (which is what DropConnection is for).
        drain(&mut body, &slot).await;
        return finish(resp, injected);
    }

    let mut injected = None;
    let mut forward_query = query.clone();

    if is_upload_start(&method, &path) {
        let pairs = query_pairs(query.as_deref());
        if config.strict_mount_query && pairs.iter().any(|(k, _)| k != "mount" && k != "from") {
            drain(&mut body, &slot).await;
            let resp = oci_error(
                StatusCode::BAD_REQUEST,
                "UNSUPPORTED",
                "injected: only `mount` and `from` are accepted on this endpoint",
            );
            return finish(resp, Some(Injected::BadMountQuery));
        }
        if config.mount_202 && pairs.iter().any(|(k, _)| k == "mount") {
            let rest: Vec<_> = pairs
                .iter()
                .filter(|(k, _)| k != "mount" && k != "from")
                .collect();
            forward_query = if rest.is_empty() {
                None
            } else {
                let mut s = reqwest::Url::parse("http://x/").expect("static url");
                s.query_pairs_mut().extend_pairs(rest);
                s.query().map(String::from)
            };
            injected = Some(Injected::Mount202);
        }
    }

    // The PATCH cap: decide from Content-Length, or by buffering up to the
    // cap (never more) when the body is chunked.
    let mut prefix: Option<Bytes> = None;
    if let (Some(cap), true) = (
        config.patch_cap,
        method == "PATCH" && parts.headers.contains_key("content-range"),
    ) {
        let over = match content_length {
            Some(n) => n > cap,
            None => {
                let mut buf = BytesMut::new();
                while (buf.len() as u64) <= cap {
                    match body.frame().await {
                        Some(Ok(f)) => {
                            if let Some(d) = f.data_ref() {
                                slot.add_bytes(d.len() as u64);
                                buf.extend_from_slice(d);
                            }
                        }
                        Some(Err(e)) => return Err(e.into()),
                        None => break,
                    }
                }
                let over = buf.len() as u64 > cap;
                prefix = Some(buf.freeze());
                over
            }
        };
        if over {
            drain(&mut body, &slot).await;
            let resp = oci_error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "BLOB_UPLOAD_INVALID",
                &format!("injected: chunk over the {cap}-byte PATCH cap"),
            );
            return finish(resp, Some(Injected::PatchTooLarge));
        }
    }

    // Referrers: a manifest PUT is small, so it is read whole to see its
    // subject; a referrers request is answered from what was seen.
    let mut subject_of_put = None;
    if config.referrers_api && method == "GET" {
        if let Some((repo, digest)) = referrers_path(&path) {
            drain(&mut body, &slot).await;
            let list = shared
                .lock()
                .referrers
                .get(&(repo, digest))
                .cloned()
                .unwrap_or_default();
            let index = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": list,
            });
            let resp = Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/vnd.oci.image.index.v1+json")
                .body(full(index.to_string()))
                .expect("valid response");
            return finish(resp, Some(Injected::Referrers));
        }
    }
    if (config.referrers_api || config.refuse_artifacts)
        && method == "PUT"
        && prefix.is_none()
        && path.contains("/manifests/")
    {
        let mut buf = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let f = frame?;
            if let Some(d) = f.data_ref() {
                slot.add_bytes(d.len() as u64);
                buf.extend_from_slice(d);
            }
        }
        let bytes = buf.freeze();
        let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let is_artifact = doc.get("subject").is_some() || doc.get("artifactType").is_some();
        if config.refuse_artifacts && is_artifact {
            let resp = oci_error(
                StatusCode::BAD_REQUEST,
                "MANIFEST_INVALID",
                "injected: manifests with a subject or an artifactType are not accepted",
            );
            return finish(resp, Some(Injected::ArtifactRefused));
        }
        if let (true, Some(subject)) = (config.referrers_api, doc["subject"]["digest"].as_str()) {
            let repo = path
                .trim_start_matches("/v2/")
                .rsplit_once("/manifests/")
                .map(|(r, _)| r.to_string())
                .unwrap_or_default();
            let artifact_type = doc["artifactType"]
                .as_str()
                .or(doc["config"]["mediaType"].as_str())
                .unwrap_or_default();
            let mut desc = serde_json::json!({
                "mediaType": doc["mediaType"],
                "digest": format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes))),
                "size": bytes.len(),
                "artifactType": artifact_type,
            });
            if doc.get("annotations").is_some() {
                desc["annotations"] = doc["annotations"].clone();
            }
            subject_of_put = Some(((repo, subject.to_string()), desc));
        }
        prefix = Some(bytes);
    }

    // Forward, counting the body as it streams through.
    let uri = match &forward_query {
        Some(q) => format!("http://{}{}?{}", shared.upstream, path, q),
        None => format!("http://{}{}", shared.upstream, path),
    };
    parts.uri = uri.parse()?;
    strip_hop_by_hop(&mut parts.headers);
    let out_body: Body = match prefix {
        // The buffered prefix was the whole body (the cap was not exceeded).
        Some(buf) => {
            if content_length.is_none() {
                parts.headers.remove("content-length");
            }
            full(buf)
        }
        None => {
            let counting = slot.clone();
            body.map_frame(move |f: Frame<Bytes>| {
                if let Some(d) = f.data_ref() {
                    counting.add_bytes(d.len() as u64);
                }
                f
            })
            .map_err(BoxError::from)
            .boxed()
        }
    };
    let upstream_resp = match shared
        .client
        .request(Request::from_parts(parts, out_body))
        .await
    {
        Ok(r) => r,
        Err(e) => {
            let resp = oci_error(
                StatusCode::BAD_GATEWAY,
                "UNKNOWN",
                &format!("fault proxy: upstream request failed: {e}"),
            );
            return finish(resp, injected);
        }
    };
    let (mut rparts, rbody) = upstream_resp.into_parts();
    strip_hop_by_hop(&mut rparts.headers);
    if let (Some((key, desc)), true) = (subject_of_put, rparts.status.is_success()) {
        let mut st = shared.lock();
        let list = st.referrers.entry(key).or_default();
        if !list.iter().any(|d| d["digest"] == desc["digest"]) {
            list.push(desc);
        }
    }
    let rbody: Body =
        if config.corrupt_blobs && rparts.status == StatusCode::OK && is_blob_get(&method, &path) {
            injected = Some(Injected::CorruptBlob);
            let mut first = true;
            rbody
                .map_frame(move |f: Frame<Bytes>| match f.into_data() {
                    Ok(d) if first && !d.is_empty() => {
                        first = false;
                        let mut b = BytesMut::from(&d[..]);
                        b[0] ^= 0xff;
                        Frame::data(b.freeze())
                    }
                    Ok(d) => Frame::data(d),
                    Err(f) => f,
                })
                .map_err(BoxError::from)
                .boxed()
        } else {
            rbody.map_err(BoxError::from).boxed()
        };
    finish(Response::from_parts(rparts, rbody), injected)
}

//! The registry client: its settings, and what it keeps per registry (the
//! base URL and scheme, credentials, request slots, quirks and counters).
//! Sending is in [`super::transport`]; the operations of the distribution
//! API are methods of a [`super::Repo`] (`client.repo(registry, name)`), in
//! [`super::blobs`] and [`super::manifests`].
//!
//! HTTPS is used for every registry except loopback hosts and hosts listed
//! as insecure.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use reqwest::{Method, Url};
use tokio::sync::OnceCell;

use super::credentials::{Credential, CredentialStore};
use super::error::{ErrorContext, ErrorKind, RegistryError};
use super::hosts::{host_config, HostConfig};
use super::known::KnownBlobs;
use super::reference::api_host;
use super::transport::auth::TokenCache;
use super::transport::limiter::Limiter;
pub use super::transport::limits::Pace;
use super::transport::RegistryState;
use crate::error::bad_input;
use crate::progress::{self, Level, SharedReporter};

pub use super::transport::{
    Body, OnceBody, Request, RequestEvent, RequestObserver, Response, RetryBudget, RetryPolicy,
    StatsSnapshot,
};

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
    /// Every attempt also has a total deadline by kind (see
    /// [`super::transport::limits`]).
    pub read_timeout: Duration,
    /// The least average rate of a blob download once its grace has
    /// passed (default 64 KiB/s after 60 s); see
    /// [`super::transport::limits`] for how it goes with the read timeout
    /// and the deadline.
    pub pace: Pace,
    /// The record of where blobs live ([`KnownBlobs`]), kept across runs:
    /// every blob found, mounted, uploaded or downloaded is remembered, and
    /// the pusher asks it for mount sources. `None`: nothing remembered.
    pub known: Option<Arc<KnownBlobs>>,
}

/// The environment variable that overrides [`ClientOptions::read_timeout`].
pub const READ_TIMEOUT_ENV: &str = "BOXWRIGHT_READ_TIMEOUT";

/// The longest [`READ_TIMEOUT_ENV`] taken, in seconds: a day.
const MAX_READ_TIMEOUT_SECS: f64 = 86_400.0;

/// [`READ_TIMEOUT_ENV`]: `None` when unset or empty; a value that is not a
/// number of seconds above 0 and at most a day is bad input naming the
/// variable, never taken silently as the default.
fn read_timeout_from_env() -> anyhow::Result<Option<Duration>> {
    let v = match std::env::var(READ_TIMEOUT_ENV) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => return Ok(None),
    };
    match v.trim().parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs <= MAX_READ_TIMEOUT_SECS => {
            Ok(Some(Duration::from_secs_f64(secs)))
        }
        _ => Err(bad_input(format!(
            "{READ_TIMEOUT_ENV}={v:?} is not a number of seconds above 0 and at most \
             {MAX_READ_TIMEOUT_SECS} (e.g. 60 or 2.5); unset it for the default, 60"
        ))),
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            jobs_per_registry: DEFAULT_JOBS_PER_REGISTRY,
            insecure: Vec::new(),
            ca_file: None,
            retry: RetryPolicy::default(),
            user_agent: format!("boxwright/{}", env!("CARGO_PKG_VERSION")),
            // A bad value is refused by `Client::new`.
            read_timeout: read_timeout_from_env()
                .ok()
                .flatten()
                .unwrap_or(Duration::from_secs(60)),
            pace: Pace::default(),
            known: None,
        }
    }
}

/// The registry client. Cheap to share (`Arc`); one per process is enough.
pub struct Client {
    pub(super) http: reqwest::Client,
    pub(super) opts: ClientOptions,
    store: CredentialStore,
    pub(super) tokens: TokenCache,
    registries: Mutex<HashMap<String, Arc<RegistryState>>>,
    explicit: Mutex<HashMap<String, Credential>>,
    pub(super) reporter: SharedReporter,
    pub(super) observer: OnceLock<Arc<dyn RequestObserver>>,
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
        read_timeout_from_env()?;
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
            let pem = crate::input::read_capped(f, crate::input::MAX_CA_FILE)
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
            registries: Mutex::new(HashMap::new()),
            explicit: Mutex::new(HashMap::new()),
            reporter,
            observer: OnceLock::new(),
        })
    }

    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    /// The record of where blobs live, when there is one.
    pub fn known(&self) -> Option<&KnownBlobs> {
        self.opts.known.as_deref()
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
            protocol_error(
                "connecting",
                registry,
                format!("{registry:?} is not a valid host"),
            )
        })
    }

    /// `<base>/v2/<path>`.
    pub fn url(&self, registry: &str, path: &str) -> Result<Url, RegistryError> {
        let base = self.base_url(registry)?;
        base.join(&format!("v2/{path}")).map_err(|_| {
            protocol_error("building a URL", registry, format!("invalid path {path:?}"))
        })
    }

    /// The quirks of `registry` (see [`HostConfig`]).
    pub fn host(&self, registry: &str) -> HostConfig {
        host_config(registry)
    }

    /// What the client keeps for `registry`, made on first use.
    pub(super) fn state(&self, registry: &str) -> Result<Arc<RegistryState>, RegistryError> {
        let mut registries = self
            .registries
            .lock()
            .map_err(|_| protocol_error("connecting", registry, "internal lock poisoned".into()))?;
        if let Some(h) = registries.get(registry) {
            return Ok(h.clone());
        }
        let h = Arc::new(RegistryState {
            registry: registry.to_string(),
            base: self.base_url(registry)?,
            limiter: Limiter::new(self.opts.jobs_per_registry),
            credential: OnceCell::new(),
            challenge: OnceCell::new(),
            challenge_failed: Default::default(),
            stats: Default::default(),
        });
        registries.insert(registry.to_string(), h.clone());
        Ok(h)
    }

    /// Why `registry` cannot be reached, when its first contact (`GET
    /// /v2/`) failed after its retries and nothing has reached it since:
    /// what is still to be sent there fails at once with this error
    /// rather than spending its retries again.
    pub fn unreachable(&self, registry: &str) -> Option<RegistryError> {
        let host = self.state(registry).ok()?;
        if host.challenge.get().is_some() {
            return None;
        }
        let failed = host.challenge_failed.lock().ok()?;
        failed.as_ref().map(|(_, e)| e.clone())
    }

    /// Counters of one registry.
    pub fn stats(&self, registry: &str) -> StatsSnapshot {
        self.state(registry)
            .map(|h| h.stats.snapshot())
            .unwrap_or_default()
    }

    /// The credentials used for `registry` (explicit, else looked up once).
    pub async fn credential(&self, registry: &str) -> anyhow::Result<Option<Credential>> {
        let host = self.state(registry)?;
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

    pub(super) fn log(&self, msg: &str) {
        self.reporter.log(Level::Debug, msg);
    }

    /// Check the credentials of `registry` as `docker login` does: `GET /v2/`
    /// with them. For a Bearer challenge a token is fetched first with the
    /// credentials and no scope (the token server refuses bad credentials
    /// with 401); for a Basic challenge they go on the request itself. A
    /// registry that answers `/v2/` without a challenge accepts anything, as
    /// with docker. Errors: the registry's 401/403 ([`ErrorKind::Status`]),
    /// no answer ([`ErrorKind::Transport`]), or the token server's
    /// ([`ErrorKind::Auth`]: a refusal, its own failure, no answer, a realm
    /// that is not asked, an answer that is not a token).
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

/// An error of this client's own making about `registry` (not the registry's).
fn protocol_error(operation: &str, registry: &str, message: String) -> RegistryError {
    RegistryError::new(
        ErrorContext {
            operation: operation.into(),
            registry: registry.to_string(),
            ..Default::default()
        },
        ErrorKind::Protocol(message),
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

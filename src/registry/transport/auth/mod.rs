//! Authentication of requests to a registry.
//!
//! The registry's challenge is learnt once, with `GET /v2/` (the ping); its
//! credentials are looked up once (explicit, else from the credential
//! store); then every request to the registry's own origin gets an
//! `Authorization`: the credentials themselves for a Basic challenge, or a
//! bearer token for the request's scopes, fetched from the challenge's realm
//! and cached. A 401 on a request refreshes the challenge and drops the
//! token, once per request.

pub mod challenge;
pub mod token;

use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use reqwest::header::HeaderValue;
use reqwest::Method;

pub use challenge::{parse_challenges, preferred, BearerChallenge, Challenge};
pub use token::{delete_scope, pull_scope, push_scope, scope_key, Token, TokenCache};

use super::limits;
use super::observer::RequestEvent;
use super::request::Response;
use super::retry::{parse_retry_after, RetryBudget};
use super::RegistryState;
use crate::registry::client::Client;
use crate::registry::credentials::{basic_authorization, Credential, Secret};
use crate::registry::error::{
    is_retryable_status, AuthError, ErrorContext, ErrorKind, RegistryError,
};
use crate::registry::headers::redact;

/// The preferred challenge of an answer's `WWW-Authenticate` headers.
fn challenge_of(headers: &reqwest::header::HeaderMap) -> Option<Challenge> {
    let all: Vec<Challenge> = headers
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(parse_challenges)
        .collect();
    preferred(&all)
}

fn ratelimit_note(headers: &reqwest::header::HeaderMap) -> String {
    headers
        .get("ratelimit-remaining")
        .and_then(|v| v.to_str().ok())
        .map(|v| format!(" (ratelimit-remaining {v})"))
        .unwrap_or_default()
}

impl Client {
    /// Learn the registry's challenge with `GET /v2/` (once per registry;
    /// its retries are spent from `budget`, the operation that needed it).
    pub(in crate::registry) async fn challenge(
        &self,
        host: &RegistryState,
        ctx: &ErrorContext,
        budget: &RetryBudget,
    ) -> Result<Option<Challenge>, RegistryError> {
        let asked = Instant::now();
        let cell = host
            .challenge
            .get_or_try_init(|| async {
                // Another request learnt, while this one waited, that the
                // registry cannot be reached: its failure is this one's.
                let failed = host.challenge_failed.lock().ok().and_then(|f| f.clone());
                if let Some((_, err)) = failed.filter(|(at, _)| *at >= asked) {
                    return Err(RegistryError::new(ctx.clone(), err.kind));
                }
                let url = host.base.join("v2/").map_err(|_| {
                    RegistryError::new(ctx.clone(), ErrorKind::Protocol("bad base URL".into()))
                })?;
                loop {
                    let (err, retry_after) = match self.ping(host, &url, ctx).await? {
                        Ok(challenge) => return Ok(Mutex::new(challenge)),
                        Err(failure) => failure,
                    };
                    match budget.next_delay(retry_after) {
                        Some(d) => {
                            host.stats.count_retry();
                            self.log(&format!("{}: {err}; retrying in {d:?}", host.registry));
                            tokio::time::sleep(d).await;
                        }
                        None => {
                            // Only a failure after retries says the
                            // registry cannot be reached.
                            if budget.allows_retries() {
                                if let Ok(mut f) = host.challenge_failed.lock() {
                                    *f = Some((Instant::now(), err.clone()));
                                }
                            }
                            return Err(err);
                        }
                    }
                }
            })
            .await?;
        Ok(cell.lock().ok().and_then(|c| c.clone()))
    }

    /// One `GET /v2/`: the challenge (`None`: anonymous), a temporary
    /// failure with the registry's `Retry-After`, or a final error.
    #[allow(clippy::type_complexity)]
    async fn ping(
        &self,
        host: &RegistryState,
        url: &reqwest::Url,
        ctx: &ErrorContext,
    ) -> Result<
        Result<Option<Challenge>, (RegistryError, Option<std::time::Duration>)>,
        RegistryError,
    > {
        let _slot = host.limiter.acquire(ctx).await?;
        host.stats.count_request("GET");
        let started = Instant::now();
        let res = self
            .http
            .get(url.clone())
            .timeout(limits::DOCUMENT_DEADLINE)
            .send()
            .await;
        if let Some(o) = self.observer.get() {
            o.observe(&RequestEvent {
                registry: &host.registry,
                method: &Method::GET,
                status: res.as_ref().ok().map(|r| r.status().as_u16()),
                elapsed: started.elapsed(),
                body_bytes: 0,
                ping: true,
            });
        }
        let resp = match res {
            Ok(resp) => resp,
            Err(e) => {
                let kind = ErrorKind::Transport(self.transport_text(e));
                return Ok(Err((RegistryError::new(ctx.clone(), kind), None)));
            }
        };
        let status = resp.status().as_u16();
        let headers = resp.headers();
        self.log(&format!(
            "GET {} -> {status}{}",
            redact(url),
            ratelimit_note(headers)
        ));
        if status == 401 {
            return Ok(Ok(challenge_of(headers)));
        }
        if status < 300 || status == 404 {
            // 404: not a /v2/ ping endpoint; try anonymous.
            return Ok(Ok(None));
        }
        let ra = headers
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
        err.ratelimit_remaining = headers
            .get("ratelimit-remaining")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        err.retry_after = ra.map(|d| d.as_secs());
        if !is_retryable_status(status) {
            return Err(err);
        }
        Ok(Err((err, ra)))
    }

    /// The `Authorization` value for a request to `host` needing `scopes`.
    pub(in crate::registry) async fn authorization(
        &self,
        host: &RegistryState,
        scopes: &[String],
        ctx: &ErrorContext,
        budget: &RetryBudget,
    ) -> Result<Option<HeaderValue>, RegistryError> {
        let auth_err = |a: AuthError| {
            let retry_after = match &a {
                AuthError::TokenServer { retry_after, .. } => *retry_after,
                _ => None,
            };
            let mut err = RegistryError::new(ctx.clone(), ErrorKind::Auth(a));
            err.retry_after = retry_after;
            err
        };
        let Some(challenge) = self.challenge(host, ctx, budget).await? else {
            return Ok(None);
        };
        let cred = self.credential(&host.registry).await.map_err(|e| {
            let text = format!("{e:#}");
            let kind = if crate::error::is_bad_input(&e) {
                ErrorKind::Credentials(text)
            } else {
                ErrorKind::Auth(AuthError::Credential(text))
            };
            RegistryError::new(ctx.clone(), kind)
        })?;
        let value = match challenge {
            Challenge::Basic => match cred {
                Some(Credential::Basic { username, password }) => {
                    basic_authorization(&username, &password)
                }
                _ => return Ok(None),
            },
            Challenge::Bearer(b) => {
                let t = self
                    .token(host, &b, scopes, cred.as_ref())
                    .await
                    .map_err(auth_err)?;
                format!("Bearer {}", t.expose())
            }
        };
        let mut hv = HeaderValue::from_str(&value).map_err(|_| {
            auth_err(AuthError::Credential(
                "the credential holds characters not allowed in a header".into(),
            ))
        })?;
        hv.set_sensitive(true);
        Ok(Some(hv))
    }

    /// A token for `scopes`, from the cache or else from the realm.
    /// Requests that need the same scopes at once ask once; the others wait
    /// for that token.
    async fn token(
        &self,
        host: &RegistryState,
        challenge: &BearerChallenge,
        scopes: &[String],
        cred: Option<&Credential>,
    ) -> Result<Secret, AuthError> {
        if let Some(t) = self.tokens.get(&host.registry, scopes) {
            return Ok(t);
        }
        let _turn = self.tokens.turn(&host.registry, scopes).await;
        if let Some(t) = self.tokens.get(&host.registry, scopes) {
            return Ok(t);
        }
        let policy = token::TokenPolicy {
            allow_plain_http: host.base.scheme() == "http",
            plain_http_hosts: (host.base.host_str().map(str::to_string).into_iter())
                .chain(self.opts.insecure.iter().cloned())
                .collect(),
        };
        let t = token::fetch_token(&self.http, challenge, scopes, cred, &policy).await?;
        self.log(&format!(
            "{}: token for {} obtained",
            host.registry,
            scope_key(scopes)
        ));
        let value = t.value.clone();
        self.tokens.put(&host.registry, scopes, t);
        Ok(value)
    }

    /// After a 401 from the registry: take its fresh challenge, drop the
    /// token of these scopes. True when the request should be sent again
    /// (the registry asks for credentials we can provide anew).
    pub(in crate::registry) async fn refresh_after_401(
        &self,
        host: &RegistryState,
        response: &Response,
        scopes: &[String],
        ctx: &ErrorContext,
        budget: &RetryBudget,
    ) -> Result<bool, RegistryError> {
        if let Some(c) = challenge_of(&response.headers) {
            if let Some(cell) = host.challenge.get() {
                if let Ok(mut g) = cell.lock() {
                    *g = Some(c);
                }
            }
        }
        self.tokens.invalidate(&host.registry, scopes);
        Ok(self.challenge(host, ctx, budget).await?.is_some())
    }
}

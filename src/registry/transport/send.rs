//! [`Client::send`]: one logical request, as attempts.
//!
//! Each attempt takes a request slot, carries `Authorization` when it goes
//! to the registry's origin, and is shown to the observer. A redirect is
//! followed, a 401 refreshes the credentials once, and a temporary failure
//! (no answer, 5xx, 429, or a temporary OCI error code) is tried again after
//! a backoff spent from the operation's [`RetryBudget`].

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH};
use reqwest::{Method, StatusCode, Url};

use super::observer::RequestEvent;
use super::request::{Body, Request, Response};
use super::retry::{parse_retry_after, RetryBudget};
use super::{redirect, RegistryState};
use crate::registry::client::Client;
use crate::registry::error::{transport_text, ErrorContext, ErrorKind, RegistryError};
use crate::registry::headers::redact;

/// How one attempt ended: an answer to look at, or a failure to retry.
type Attempt = Result<Response, (RegistryError, Option<Duration>)>;

impl Client {
    /// A fresh retry budget (`--retries`) for one logical operation.
    pub fn retry_budget(&self) -> RetryBudget {
        RetryBudget::new(&self.opts.retry)
    }

    /// Send a request to `registry`, with auth, redirects, and retries (when
    /// `req.retry`) from a budget of its own. Any answer that is not retried
    /// is returned, whatever its status; the caller decides what it means.
    pub async fn send(
        &self,
        registry: &str,
        req: Request,
        ctx: &ErrorContext,
    ) -> Result<Response, RegistryError> {
        self.send_within(registry, req, ctx, &self.retry_budget())
            .await
    }

    /// [`Client::send`] as one step of a larger operation: its retries are
    /// spent from the operation's `budget`.
    pub async fn send_within(
        &self,
        registry: &str,
        req: Request,
        ctx: &ErrorContext,
        budget: &RetryBudget,
    ) -> Result<Response, RegistryError> {
        let host = self.state(registry)?;
        let mut url = req.url.clone();
        let mut refreshed_auth = false;
        let mut redirects = 0;
        loop {
            let to_registry = redirect::may_authorize(&url, &host.base);
            let (err, retry_after) = match self.attempt(&host, &req, &url, ctx, budget).await? {
                Err(failure) => failure,
                Ok(response) => {
                    if let Some(next) = redirect::next_hop(&req.method, &response, redirects) {
                        redirects += 1;
                        url = next;
                        continue;
                    }
                    if response.status == StatusCode::UNAUTHORIZED && to_registry && !refreshed_auth
                    {
                        refreshed_auth = true;
                        let again = self
                            .refresh_after_401(&host, &response, &req.scopes, ctx, budget)
                            .await?;
                        if again {
                            continue;
                        }
                        return Ok(response);
                    }
                    if !req.retry || response.status.as_u16() < 400 {
                        return Ok(response);
                    }
                    match temporary_failure(response, ctx).await {
                        Ok(response) => return Ok(response),
                        Err(failure) => failure,
                    }
                }
            };
            if !req.retry || !self.wait_retry(&host, budget, &err, retry_after).await {
                return Err(err);
            }
        }
    }

    /// Send one attempt to `url`. The outer error is final (credentials,
    /// a body file that cannot be read); the inner one is a transport
    /// failure or a token server's temporary one, worth retrying.
    async fn attempt(
        &self,
        host: &Arc<RegistryState>,
        req: &Request,
        url: &Url,
        ctx: &ErrorContext,
        budget: &RetryBudget,
    ) -> Result<Attempt, RegistryError> {
        let auth = if redirect::may_authorize(url, &host.base) {
            match self.authorization(host, &req.scopes, ctx, budget).await {
                Ok(auth) => auth,
                // A token server that failed for now (5xx, 429, no answer)
                // is asked again as the registry would be, after its
                // `Retry-After`. (A ping that failed has spent its own
                // retries already.)
                Err(err) if err.is_temporary() && matches!(err.kind, ErrorKind::Auth(_)) => {
                    let ra = err.retry_after.map(Duration::from_secs);
                    return Ok(Err((err, ra)));
                }
                Err(err) => return Err(err),
            }
        } else {
            None
        };
        let slot = host.limiter.acquire(ctx).await?;
        let mut headers = req.headers.clone();
        if let Some(a) = auth {
            headers.insert(AUTHORIZATION, a);
        }
        let body = self
            .attempt_body(host, &req.body, &req.progress, ctx)
            .await?;
        let known_length = !matches!(req.body, Body::Once(_));
        if known_length
            && (body.is_some() || matches!(req.method, Method::PUT | Method::POST | Method::PATCH))
        {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(req.body.len()));
        }
        let mut rb = self
            .http
            .request(req.method.clone(), url.clone())
            .headers(headers);
        if let Some(b) = body {
            rb = rb.body(b);
        }
        host.stats.count_request(req.method.as_str());
        let shown = format!("{} {}", req.method, redact(url));
        let started = Instant::now();
        let deadline = started + req.deadline;
        let result = match tokio::time::timeout_at(deadline.into(), rb.send()).await {
            Ok(result) => result.map_err(|e| self.transport_text(e)),
            // No headers within the whole deadline: no answer, as a timeout.
            Err(_) => Err(format!(
                "no answer within {}s (timed out)",
                req.deadline.as_secs()
            )),
        };
        if let Some(o) = self.observer.get() {
            o.observe(&RequestEvent {
                registry: &host.registry,
                method: &req.method,
                status: result.as_ref().ok().map(|r| r.status().as_u16()),
                elapsed: started.elapsed(),
                body_bytes: req.body.len(),
                ping: false,
            });
        }
        let resp = match result {
            Ok(resp) => resp,
            Err(text) => {
                self.log(&format!("{shown} -> {text}"));
                let err = RegistryError::new(ctx.clone(), ErrorKind::Transport(text));
                return Ok(Err((err, None)));
            }
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        let rl = headers
            .get("ratelimit-remaining")
            .and_then(|v| v.to_str().ok())
            .map(|v| format!(" (ratelimit-remaining {v})"))
            .unwrap_or_default();
        self.log(&format!("{shown} -> {}{rl}", status.as_u16()));
        Ok(Ok(Response {
            status,
            headers,
            url: url.clone(),
            inner: resp,
            buffered: None,
            deadline: (deadline, req.deadline),
            pace: req.paced.then(|| (self.opts.pace, Instant::now(), 0)),
            _slot: slot,
        }))
    }

    /// Spend a retry of `budget` after `err`: count it, log it and wait.
    /// False when the budget is spent (or the registry asks for a longer
    /// wait than allowed): then `err` is the operation's error.
    pub(in crate::registry) async fn wait_retry(
        &self,
        host: &RegistryState,
        budget: &RetryBudget,
        err: &RegistryError,
        retry_after: Option<Duration>,
    ) -> bool {
        let Some(delay) = budget.next_delay(retry_after) else {
            return false;
        };
        host.stats.count_retry();
        self.log(&format!(
            "{err}; retry {}/{} in {}ms",
            budget.used(),
            budget.max_retries(),
            delay.as_millis()
        ));
        tokio::time::sleep(delay).await;
        true
    }

    /// [`Client::wait_retry`] for a failure seen above [`Client::send`]
    /// (an upload to restart, a download to try again), with the
    /// registry's `Retry-After` the error carries.
    pub(in crate::registry) async fn retry_after_failure(
        &self,
        registry: &str,
        budget: &RetryBudget,
        err: &RegistryError,
    ) -> bool {
        let Ok(host) = self.state(registry) else {
            return false;
        };
        let ra = err.retry_after.map(Duration::from_secs);
        self.wait_retry(&host, budget, err, ra).await
    }

    /// A transport error for messages; a timeout says how long we waited.
    pub(in crate::registry) fn transport_text(&self, e: reqwest::Error) -> String {
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
}

/// An error answer to a retryable request: whether it is temporary can
/// depend on its OCI error code (`BLOB_UPLOAD_UNKNOWN`, `TOOMANYREQUESTS`,
/// GHCR's 403 "secondary rate limit"), not only on the status, so its
/// (small) body is read; it is kept for the caller when the answer is final.
async fn temporary_failure(
    response: Response,
    ctx: &ErrorContext,
) -> Result<Response, (RegistryError, Option<Duration>)> {
    let ra = response
        .header("retry-after")
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let (response, err) = match response.buffer_error(ctx).await {
        Ok(pair) => pair,
        Err(e) => (None, e),
    };
    match response {
        Some(r) if !err.is_temporary() => Ok(r),
        _ => Err((err, ra)),
    }
}

//! What the client lets others see of its traffic: an observer of every
//! attempt (`boxwright bench` records latencies with it) and the counters of
//! each registry (requests by method, bytes sent, retries) that the push
//! report shows.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use reqwest::Method;

/// Counters for one registry (for the push summary).
#[derive(Default)]
pub struct Stats {
    pub requests: Mutex<BTreeMap<String, u64>>,
    pub bytes_sent: AtomicU64,
    pub retries: AtomicU64,
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
    /// The registry the request was sent for (as given to
    /// [`Client::send`](crate::registry::Client::send)).
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
    /// The `GET /v2/` that learns the registry's challenge: a 401 is the
    /// answer it expects, not a refusal.
    pub ping: bool,
}

/// Sees every attempt of every request the client sends to a registry
/// (retries, redirects and the `GET /v2/` ping included); `boxwright bench`
/// records latencies and errors with it.
/// Called on the request's task: keep it short and never block.
pub trait RequestObserver: Send + Sync {
    fn observe(&self, event: &RequestEvent<'_>);
}

impl Stats {
    /// Count one attempt of a `method` request.
    pub fn count_request(&self, method: &str) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry(method.to_string()).or_default() += 1;
        }
    }

    pub fn count_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_sent(&self, bytes: u64) {
        self.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            requests: self.requests.lock().map(|m| m.clone()).unwrap_or_default(),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
        }
    }
}

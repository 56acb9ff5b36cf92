//! Retries: the policy (exponential backoff with jitter, bounded, and
//! `Retry-After`) and the budget that one logical operation spends.
//!
//! An operation (resolving a manifest, uploading a blob, downloading one)
//! may go through several requests and several layers that each want to try
//! again: the request itself after a 503, the upload after its session was
//! lost, the chunked upload after a lost chunk. They all draw from ONE
//! [`RetryBudget`] made for the operation, so that `--retries N` means N
//! retries of the operation whatever layer retries, never N at every layer.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How many times and how long to retry a temporary failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so `max_retries + 1` attempts).
    pub max_retries: u32,
    /// Delay before the first retry; doubled each time.
    pub base: Duration,
    /// Longest delay between two attempts (backoff and `Retry-After` alike).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 6,
            base: Duration::from_millis(250),
            max_delay: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The backoff before retry number `attempt` (1-based): a random delay
    /// in `[d/2, d]` where `d = min(base * 2^(attempt-1), max_delay)`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let d = self.base.saturating_mul(1u32 << exp).min(self.max_delay);
        let half = d / 2;
        let jitter_ms = rand::random_range(0..=half.as_millis().max(1) as u64);
        (half + Duration::from_millis(jitter_ms)).min(d.max(Duration::from_millis(1)))
    }

    /// The delay before retry number `attempt`, honouring the registry's
    /// `Retry-After` (never shorter than it asks, never longer than
    /// `max_delay`). `None` when the registry asks for more than `max_delay`:
    /// then waiting is pointless and the error should surface.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Option<Duration> {
        let b = self.backoff(attempt);
        match retry_after {
            Some(ra) if ra > self.max_delay => None,
            Some(ra) => Some(ra.max(b).min(self.max_delay)),
            None => Some(b),
        }
    }
}

/// The retries left to one logical operation, shared by all its attempts.
/// `Sync`, so that it can be lent to every request of the operation.
#[derive(Debug)]
pub struct RetryBudget {
    policy: RetryPolicy,
    used: AtomicU32,
}

impl RetryBudget {
    pub fn new(policy: &RetryPolicy) -> RetryBudget {
        RetryBudget {
            policy: policy.clone(),
            used: AtomicU32::new(0),
        }
    }

    /// Whether this budget holds any retry at all (a question asked once,
    /// on purpose, holds none).
    pub fn allows_retries(&self) -> bool {
        self.policy.max_retries > 0
    }

    /// Spend one retry after a temporary failure: the delay to wait before
    /// it (honouring the registry's `Retry-After`), or `None` when the budget
    /// is spent or the registry asks for a longer wait than the policy
    /// allows; then the failure should surface.
    pub fn next_delay(&self, retry_after: Option<Duration>) -> Option<Duration> {
        let attempt = self.spend()?;
        self.policy.delay(attempt, retry_after)
    }

    /// Spend one retry that needs no wait (resuming an upload from where
    /// the registry says it stands): the retry's number, or `None` when the
    /// budget is spent.
    pub fn spend(&self) -> Option<u32> {
        let attempt = self.used.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        (attempt <= self.policy.max_retries).then_some(attempt)
    }

    /// The operation made progress (a chunk of an upload was stored): the
    /// retries spent so far were not in vain, and the budget is whole again.
    /// A long chunked upload then survives sporadic faults, while one that
    /// keeps failing at the same point still stops after `max_retries`.
    pub fn progressed(&self) {
        self.used.store(0, Ordering::Relaxed);
    }

    /// Retries spent so far.
    pub fn used(&self) -> u32 {
        self.used
            .load(Ordering::Relaxed)
            .min(self.policy.max_retries)
    }

    pub fn max_retries(&self) -> u32 {
        self.policy.max_retries
    }
}

/// Parse a `Retry-After` value: delta-seconds or an HTTP date (IMF-fixdate,
/// as `Sun, 06 Nov 1994 08:49:37 GMT`), relative to `now`. Dates in the past
/// give zero.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return v.parse::<u64>().ok().map(Duration::from_secs);
    }
    let when = parse_http_date(v)?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs() as i64;
    Some(Duration::from_secs((when - now).max(0) as u64))
}

/// Seconds since the epoch of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub fn parse_http_date(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, mon, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = MONTHS.iter().position(|x| x.eq_ignore_ascii_case(mon))? + 1;
    if day.len() != 2 || year.len() != 4 || time.len() != 8 {
        return None;
    }
    let rfc = format!("{year}-{m:02}-{day}T{time}Z");
    crate::oci::parse_rfc3339(&rfc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_and_grows() {
        let p = RetryPolicy::default();
        for attempt in 1..=40 {
            let full = p
                .base
                .saturating_mul(1u32 << (attempt - 1).min(30))
                .min(p.max_delay);
            for _ in 0..20 {
                let d = p.backoff(attempt);
                assert!(d <= full, "attempt {attempt}: {d:?} > {full:?}");
                assert!(d >= full / 2, "attempt {attempt}: {d:?} < half of {full:?}");
            }
        }
        assert!(p.backoff(1) <= Duration::from_millis(250));
        assert!(p.backoff(40) <= Duration::from_secs(60));
    }

    #[test]
    fn retry_after_is_honoured_within_bounds() {
        let p = RetryPolicy::default();
        let d = p.delay(1, Some(Duration::from_secs(3))).unwrap();
        assert!(d >= Duration::from_secs(3) && d <= Duration::from_secs(60));
        assert_eq!(p.delay(1, Some(Duration::from_secs(3600))), None);
        assert!(p.delay(2, None).unwrap() <= Duration::from_millis(500));
    }

    fn fast(max_retries: u32) -> RetryPolicy {
        RetryPolicy {
            max_retries,
            base: Duration::from_millis(1),
            max_delay: Duration::from_secs(10),
        }
    }

    #[test]
    fn budget_is_shared_by_all_attempts() {
        let budget = RetryBudget::new(&fast(3));
        let layer = |b: &RetryBudget| b.next_delay(None).is_some();
        // Two layers (a request and the upload around it) draw from one budget.
        assert!(layer(&budget));
        assert_eq!(budget.spend(), Some(2));
        assert!(layer(&budget));
        assert_eq!(budget.used(), 3);
        assert!(!layer(&budget), "a spent budget stops every layer");
        assert_eq!(budget.spend(), None);
        assert_eq!(budget.used(), 3);
        assert_eq!(RetryBudget::new(&fast(0)).next_delay(None), None);
    }

    #[test]
    fn progress_makes_the_budget_whole_again() {
        let b = RetryBudget::new(&fast(2));
        assert!(b.spend().is_some() && b.spend().is_some());
        assert!(b.spend().is_none());
        b.progressed();
        assert_eq!(b.used(), 0);
        assert!(b.spend().is_some() && b.spend().is_some());
        assert!(b.spend().is_none());
    }

    #[test]
    fn budget_honours_retry_after() {
        let budget = RetryBudget::new(&fast(5));
        let d = budget.next_delay(Some(Duration::from_secs(2))).unwrap();
        assert!(d >= Duration::from_secs(2) && d <= Duration::from_secs(10));
        // Longer than the policy's longest wait: give up instead of hanging.
        assert_eq!(budget.next_delay(Some(Duration::from_secs(11))), None);
        assert_eq!(budget.used(), 2);
    }

    #[test]
    fn parses_retry_after() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("", now), None);
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
    }
}

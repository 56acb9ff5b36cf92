//! What a bench run found (the report types); `render::bench` shows them
//! as tables, CSV or JSON.

use std::collections::BTreeMap;

use serde::Serialize;

use super::BenchMode;

/// Latency of one request kind in one run, in milliseconds (nearest-rank
/// percentiles over every attempt; `None` when there was none).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

impl Latency {
    pub(super) fn of(mut samples: Vec<f64>) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_by(f64::total_cmp);
        let pick = |p: f64| {
            let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
            round3(samples[rank.clamp(1, samples.len()) - 1])
        };
        Latency {
            count: samples.len() as u64,
            p50_ms: Some(pick(50.0)),
            p95_ms: Some(pick(95.0)),
            p99_ms: Some(pick(99.0)),
            max_ms: samples.last().copied().map(round3),
        }
    }
}

/// What happened to a run's blobs afterwards.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cleanup {
    /// `deleted`, `kept` (asked with `--keep`), `nothing` (no blob of the run
    /// reached the registry, so none was to delete), `unsupported` (the
    /// registry refuses deletion: 405 or `UNSUPPORTED`), `denied` (401/403)
    /// or `failed`.
    pub outcome: String,
    /// Blobs deleted (or already absent).
    pub deleted: u64,
    /// Blobs left in the registry.
    pub left: u64,
    /// The registry's answer when it did not delete.
    pub detail: Option<String>,
}

/// The figures of one (registry, mode, concurrency) run.
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    pub registry: String,
    pub repository: String,
    pub mode: BenchMode,
    pub concurrency: usize,
    /// 0-based run index (the blobs derive from seed and this).
    pub run: usize,
    pub blobs: usize,
    pub blob_size: u64,
    /// Payload bytes of the run (blobs x blob_size).
    pub bytes: u64,
    /// Request-body bytes actually sent (retries included).
    pub bytes_sent: u64,
    /// Payload bytes of the blobs whose upload succeeded (`upload_mb_per_s`
    /// is these over `upload_secs`).
    pub bytes_uploaded: u64,
    /// Payload bytes of the blobs pulled back whole and digest-checked;
    /// `None` without `--pull`.
    pub bytes_pulled: Option<u64>,
    pub upload_secs: f64,
    pub upload_mb_per_s: f64,
    /// `None` without `--pull`.
    pub pull_secs: Option<f64>,
    pub pull_mb_per_s: Option<f64>,
    pub cleanup_secs: f64,
    /// Upload + pull + cleanup.
    pub wall_secs: f64,
    /// Requests sent by kind (every attempt).
    pub requests: BTreeMap<String, u64>,
    /// Latency per kind; always holds HEAD, POST, PATCH, PUT and GET.
    pub latency_ms: BTreeMap<String, Latency>,
    /// Attempts repeated after a temporary failure.
    pub retries: u64,
    /// Error answers by status (`"503"`, ...) and `"transport"`.
    pub errors: BTreeMap<String, u64>,
    pub errors_total: u64,
    /// Blobs whose upload failed for good.
    pub failed_uploads: u64,
    /// Blobs whose pull failed for good (digest mismatch included).
    pub failed_pulls: u64,
    /// Blobs already present before the upload (an earlier run with the same seed).
    pub already_present: u64,
    /// The first few failures, for the log.
    pub failures: Vec<String>,
    pub cleanup: Cleanup,
}

impl RunResult {
    /// Blob transfers that failed for good.
    pub fn failed(&self) -> u64 {
        self.failed_uploads + self.failed_pulls
    }
}

/// The whole benchmark.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub seed: u64,
    pub blobs: usize,
    pub blob_size: u64,
    pub chunk_size: u64,
    pub pull: bool,
    /// Runs in execution order: mode, then concurrency, then target, so
    /// registries compared at one setting run one after the other.
    pub runs: Vec<RunResult>,
    /// Whole command, blob generation included.
    pub wall_secs: f64,
}

impl BenchReport {
    /// Blob transfers that failed for good, over all runs.
    pub fn failed(&self) -> u64 {
        self.runs.iter().map(RunResult::failed).sum()
    }
}

pub(super) fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

pub(super) fn mb_per_s(bytes: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        return 0.0;
    }
    ((bytes as f64 / 1e6 / secs) * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let l = Latency::of((1..=100).map(f64::from).collect());
        assert_eq!(
            (l.count, l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms),
            (100, Some(50.0), Some(95.0), Some(99.0), Some(100.0))
        );
        let l = Latency::of(vec![3.0]);
        assert_eq!((l.p50_ms, l.p99_ms), (Some(3.0), Some(3.0)));
        assert_eq!(Latency::of(vec![]), Latency::default());
    }
}

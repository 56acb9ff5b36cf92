//! What a bench run found, and how it is shown: the JSON report, the CSV
//! rows and the table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::{BenchMode, KINDS};

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
    /// `deleted`, `kept` (asked with `--keep`), `unsupported` (the registry
    /// refuses deletion: 405 or `UNSUPPORTED`), `denied` (401/403) or `failed`.
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

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into())
    }

    /// One header line, one line per run; latencies as
    /// `<kind>_{count,p50_ms,p95_ms,p99_ms}` columns, errors as `503:2;transport:1`.
    pub fn to_csv(&self) -> String {
        let mut head: Vec<String> = [
            "registry",
            "repository",
            "mode",
            "concurrency",
            "run",
            "blobs",
            "blob_size",
            "bytes",
            "bytes_sent",
            "upload_secs",
            "upload_mb_per_s",
            "pull_secs",
            "pull_mb_per_s",
            "cleanup_secs",
            "wall_secs",
            "retries",
            "errors_total",
            "errors",
            "failed_uploads",
            "failed_pulls",
            "already_present",
            "cleanup",
            "cleanup_left",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for k in KINDS {
            let k = k.to_ascii_lowercase();
            for f in ["count", "p50_ms", "p95_ms", "p99_ms"] {
                head.push(format!("{k}_{f}"));
            }
        }
        let mut out = head.join(",");
        out.push('\n');
        let opt = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
        for r in &self.runs {
            let mut row: Vec<String> = vec![
                csv_field(&r.registry),
                csv_field(&r.repository),
                r.mode.name().into(),
                r.concurrency.to_string(),
                r.run.to_string(),
                r.blobs.to_string(),
                r.blob_size.to_string(),
                r.bytes.to_string(),
                r.bytes_sent.to_string(),
                r.upload_secs.to_string(),
                r.upload_mb_per_s.to_string(),
                opt(r.pull_secs),
                opt(r.pull_mb_per_s),
                r.cleanup_secs.to_string(),
                r.wall_secs.to_string(),
                r.retries.to_string(),
                r.errors_total.to_string(),
                csv_field(&errors_text(&r.errors, ";")),
                r.failed_uploads.to_string(),
                r.failed_pulls.to_string(),
                r.already_present.to_string(),
                r.cleanup.outcome.clone(),
                r.cleanup.left.to_string(),
            ];
            for k in KINDS {
                let l = r.latency_ms.get(k).cloned().unwrap_or_default();
                row.push(l.count.to_string());
                row.push(opt(l.p50_ms));
                row.push(opt(l.p95_ms));
                row.push(opt(l.p99_ms));
            }
            out.push_str(&row.join(","));
            out.push('\n');
        }
        out
    }

    /// Two readable tables (throughput, then latencies) and the notes about
    /// cleanup and failures.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "bench: {} blobs x {} per run, seed {}, {} run(s) in {:.1}s (MB = 10^6 bytes)",
            self.blobs,
            human(self.blob_size),
            self.seed,
            self.runs.len(),
            self.wall_secs
        );
        let mut rows = vec![vec![
            "REGISTRY/REPO".to_string(),
            "MODE".into(),
            "CONC".into(),
            "UP MB/s".into(),
            "PULL MB/s".into(),
            "WALL s".into(),
            "RETRIES".into(),
            "ERRORS".into(),
            "FAILED".into(),
            "CLEANUP".into(),
        ]];
        for r in &self.runs {
            rows.push(vec![
                format!("{}/{}", r.registry, r.repository),
                r.mode.name().into(),
                r.concurrency.to_string(),
                format!("{:.1}", r.upload_mb_per_s),
                r.pull_mb_per_s
                    .map(|v| format!("{v:.1}"))
                    .unwrap_or_else(|| "-".into()),
                format!("{:.2}", r.wall_secs),
                r.retries.to_string(),
                if r.errors.is_empty() {
                    "-".into()
                } else {
                    errors_text(&r.errors, " ")
                },
                r.failed().to_string(),
                match r.cleanup.outcome.as_str() {
                    "deleted" => format!("deleted {}", r.cleanup.deleted),
                    other => format!("{other}, {} left", r.cleanup.left),
                },
            ]);
        }
        out.push_str(&table(&rows, 3));
        out.push_str("\nrequest latency, ms: p50 / p95 / p99 (count)\n");
        let mut rows = vec![vec![
            "REGISTRY/REPO".to_string(),
            "MODE".into(),
            "CONC".into(),
        ]];
        rows[0].extend(KINDS.iter().map(|k| k.to_string()));
        for r in &self.runs {
            let mut row = vec![
                format!("{}/{}", r.registry, r.repository),
                r.mode.name().into(),
                r.concurrency.to_string(),
            ];
            for k in KINDS {
                row.push(match r.latency_ms.get(k) {
                    Some(Latency {
                        count,
                        p50_ms: Some(a),
                        p95_ms: Some(b),
                        p99_ms: Some(c),
                        ..
                    }) => format!("{} / {} / {} ({count})", ms(*a), ms(*b), ms(*c)),
                    _ => "-".into(),
                });
            }
            rows.push(row);
        }
        out.push_str(&table(&rows, 3));
        // One note per repository and kind, not one per run.
        let mut notes: Vec<String> = Vec::new();
        let mut per_repo: BTreeMap<String, (u64, u64, Vec<String>)> = BTreeMap::new();
        for r in &self.runs {
            let repo = format!("{}/{}", r.registry, r.repository);
            let who = format!("{repo} {} x{}", r.mode.name(), r.concurrency);
            match r.cleanup.outcome.as_str() {
                "deleted" | "kept" => {}
                "unsupported" => {
                    let e = per_repo.entry(repo.clone()).or_default();
                    e.0 += r.cleanup.left;
                    if e.2.is_empty() {
                        e.2.push(r.cleanup.detail.clone().unwrap_or_else(|| "405".into()));
                    }
                }
                other => notes.push(format!(
                    "{who}: cleanup {other} ({}); {} blob(s) left",
                    r.cleanup.detail.as_deref().unwrap_or("?"),
                    r.cleanup.left
                )),
            }
            per_repo.entry(repo).or_default().1 += r.already_present;
            for f in &r.failures {
                notes.push(format!("{who}: {f}"));
            }
        }
        for (repo, (left, present, detail)) in per_repo {
            if let Some(d) = detail.first() {
                notes.push(format!(
                    "{repo}: the registry does not allow deleting blobs ({d}); {left} blob(s) left there"
                ));
            }
            if present > 0 {
                notes.push(format!(
                    "{repo}: {present} blob(s) were already there before their upload (an earlier bench with seed {} kept them), so the registry may have deduplicated them; use another --seed",
                    self.seed
                ));
            }
        }
        if !notes.is_empty() {
            out.push('\n');
            for n in notes {
                let _ = writeln!(out, "note: {n}");
            }
        }
        out
    }
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

pub(super) fn human(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Left-aligned text columns; columns from `numeric_from` on are right-aligned.
fn table(rows: &[Vec<String>], numeric_from: usize) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c > 0 {
                line.push_str("  ");
            }
            if c >= numeric_from && c != cols - 1 {
                let _ = write!(line, "{cell:>w$}", w = widths[c]);
            } else {
                let _ = write!(line, "{cell:<w$}", w = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn errors_text(errors: &BTreeMap<String, u64>, sep: &str) -> String {
    errors
        .iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect::<Vec<_>>()
        .join(sep)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
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

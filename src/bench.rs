//! `boxwright bench`: upload (and pull) throughput and request latency
//! against one or more registries, to choose a registry, a concurrency and an
//! upload mode, and to watch a registry's health over time.
//!
//! It measures the registry, not the machine:
//! - every run (one target x mode x concurrency) uploads its own blobs,
//!   derived from `(seed, run index, blob index)` with a fixed generator, so
//!   no registry can dedupe one run against another;
//! - the blobs of a run are written to a temp dir and hashed in one pass
//!   *before* its timer starts (streamed in 1 MiB pieces, never whole in
//!   memory), and deleted after it;
//! - pulls hash the answer as it streams and write nothing to disk.
//!
//! Before the first run each registry is warmed up (auth ping, token,
//! connection, and one `HEAD` for [`WARM_UP_PROBE`]'s digest), unmeasured.
//! Each blob goes as a pusher sends it: `HEAD` (404 expected), `POST`, then
//! the mode's `PATCH`es and `PUT`. Request latencies are recorded per attempt
//! by a [`RequestObserver`] on the client (time to the answer's headers, so a
//! `PUT` with a body includes sending the body); errors are counted by status
//! (a `HEAD` answered 404 is not an error) plus `transport` for requests
//! that got no answer. After the timed part the blobs are deleted
//! (`DELETE /v2/<repo>/blobs/<digest>`) unless `keep`; a registry that
//! refuses deletion (405 / `UNSUPPORTED`) is reported as such, with how many
//! blobs were left behind.
//!
//! MB in every figure is 10^6 bytes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context as _;
use futures_util::stream::{self, StreamExt as _};
use rayon::prelude::*;
use reqwest::Method;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::error::bad_input;
use crate::oci::Digest;
use crate::progress::{Level, SharedReporter};
use crate::registry::error::RegistryError;
use crate::registry::{
    Client, ClientOptions, CredentialStore, Reference, RequestEvent, RequestObserver, UploadMode,
};

/// The request kinds whose latencies are reported, in table order.
pub const KINDS: [&str; 5] = ["HEAD", "POST", "PATCH", "PUT", "GET"];

/// Largest accepted `--concurrency` value.
pub const MAX_CONCURRENCY: usize = 1024;

/// How the blobs' bytes are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchMode {
    /// `POST`, one `PUT` with the whole body.
    Monolithic,
    /// `POST`, `PATCH`es of `chunk_size` with `Content-Range`, `PUT`.
    Chunked,
    /// `POST`, one `PATCH` with the whole body, `PUT`.
    Streamed,
}

impl BenchMode {
    pub const ALL: [BenchMode; 3] = [
        BenchMode::Monolithic,
        BenchMode::Chunked,
        BenchMode::Streamed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BenchMode::Monolithic => "monolithic",
            BenchMode::Chunked => "chunked",
            BenchMode::Streamed => "streamed",
        }
    }

    /// `monolithic`, `chunked` or `streamed`.
    pub fn parse(s: &str) -> Result<BenchMode, String> {
        BenchMode::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                format!("unknown upload mode {s:?} (expected monolithic, chunked or streamed)")
            })
    }

    fn upload_mode(self, chunk_size: u64) -> UploadMode {
        match self {
            BenchMode::Monolithic => UploadMode::Monolithic,
            BenchMode::Chunked => UploadMode::Chunked(chunk_size),
            BenchMode::Streamed => UploadMode::Streamed,
        }
    }
}

/// A repository to benchmark: `REGISTRY/REPO`, no tag or digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BenchTarget {
    pub registry: String,
    pub repository: String,
}

impl BenchTarget {
    /// Parse `REGISTRY/REPO` (normalised as image references are:
    /// `docker.io/acme/bench`, `ghcr.io/acme/bench`, `localhost:5000/bench`).
    pub fn parse(s: &str) -> Result<BenchTarget, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("an empty --to; expected REGISTRY/REPO, e.g. ghcr.io/acme/bench".into());
        }
        let r: Reference = Reference::parse(s).map_err(|e| format!("{e:#}"))?;
        if r.tag.is_some() || r.digest.is_some() {
            return Err(format!(
                "{s:?} names a tag or digest; bench takes a repository (REGISTRY/REPO)"
            ));
        }
        Ok(BenchTarget {
            registry: r.registry,
            repository: r.repository,
        })
    }

    /// `registry/repository`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

/// Parse a size: a whole number with an optional unit `B`, `KB`/`MB`/`GB`
/// (powers of 1000) or `KiB`/`MiB`/`GiB` (powers of 1024), case-insensitive.
/// Zero is refused.
///
/// ```
/// use boxwright::bench::parse_size;
/// assert_eq!(parse_size("64MiB"), Ok(64 << 20));
/// assert_eq!(parse_size("512KiB"), Ok(512 << 10));
/// assert_eq!(parse_size("1MB"), Ok(1_000_000));
/// assert_eq!(parse_size("4096"), Ok(4096));
/// assert!(parse_size("0MiB").is_err());
/// ```
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!(
            "{s:?} is not a size (expected e.g. 64MiB, 512KiB, 1GB or a number of bytes)"
        ));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is too large a size"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1_000,
        "mb" | "m" => 1_000_000,
        "gb" | "g" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {s:?} (use B, KB, MB, GB, KiB, MiB or GiB)"
            ))
        }
    };
    let v = n
        .checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large a size"))?;
    if v == 0 {
        return Err(format!("a size must be at least 1 byte, not {s:?}"));
    }
    Ok(v)
}

/// Parse one concurrency value (1..=[`MAX_CONCURRENCY`]).
pub fn parse_concurrency(s: &str) -> Result<usize, String> {
    let n: usize = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of uploads in flight"))?;
    if n == 0 || n > MAX_CONCURRENCY {
        return Err(format!(
            "concurrency must be between 1 and {MAX_CONCURRENCY}, not {n}"
        ));
    }
    Ok(n)
}

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub targets: Vec<BenchTarget>,
    /// Blobs per run.
    pub blobs: usize,
    /// Bytes per blob.
    pub size: u64,
    /// Blobs in flight, one run per value.
    pub concurrency: Vec<usize>,
    pub modes: Vec<BenchMode>,
    /// PATCH size of the chunked mode.
    pub chunk_size: u64,
    /// Pull every blob back after the upload (GET, digest-checked).
    pub pull: bool,
    pub seed: u64,
    /// Leave the blobs in the registries.
    pub keep: bool,
    /// Hosts reached over plain HTTP (loopback always is).
    pub insecure: Vec<String>,
    /// Where to generate the blobs [default: the system temp dir].
    pub work_dir: Option<PathBuf>,
}

impl BenchOptions {
    /// Refuse what cannot be measured ([`crate::error::BadInput`]).
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.targets.is_empty() {
            return Err(bad_input(
                "nothing to benchmark: give at least one --to REGISTRY/REPO",
            ));
        }
        if self.blobs == 0 {
            return Err(bad_input("--blobs must be at least 1"));
        }
        if self.size == 0 {
            return Err(bad_input("--size must be at least 1 byte"));
        }
        if self.chunk_size == 0 {
            return Err(bad_input("--chunk-size must be at least 1 byte"));
        }
        if self.concurrency.is_empty() || self.concurrency.contains(&0) {
            return Err(bad_input("--concurrency values must be at least 1"));
        }
        if self.modes.is_empty() {
            return Err(bad_input("give at least one --mode"));
        }
        Ok(())
    }
}

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
    fn of(mut samples: Vec<f64>) -> Latency {
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

fn human(n: u64) -> String {
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

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn mb_per_s(bytes: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        return 0.0;
    }
    ((bytes as f64 / 1e6 / secs) * 10.0).round() / 10.0
}

// ---------------------------------------------------------------------------
// Blob generation

/// xoshiro256** seeded through splitmix64: fixed forever (unlike `rand`'s
/// `SmallRng`), fast, and plenty random for blobs no registry can dedupe.
struct BlobRng([u64; 4]);

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl BlobRng {
    fn new(seed: u64, run: u64, index: u64) -> BlobRng {
        let mut x = seed;
        let mut x = splitmix64(&mut x) ^ run;
        let mut x = splitmix64(&mut x) ^ index;
        let mut s = [0u64; 4];
        for v in &mut s {
            *v = splitmix64(&mut x);
        }
        BlobRng(s)
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Write blob `index` of run `run` (`size` bytes) to `path` and return its
/// digest, in one pass of 1 MiB pieces.
pub fn generate_blob(
    path: &Path,
    seed: u64,
    run: u64,
    index: u64,
    size: u64,
) -> std::io::Result<Digest> {
    let mut rng = BlobRng::new(seed, run, index);
    let mut file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill(&mut buf[..n]);
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])?;
        left -= n as u64;
    }
    file.flush()?;
    Ok(Digest::from_sha256(hasher.finalize().into()))
}

struct Blob {
    path: PathBuf,
    digest: Digest,
}

// ---------------------------------------------------------------------------
// Recording

#[derive(Default)]
struct Accum {
    latencies: BTreeMap<String, Vec<f64>>,
    requests: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
}

/// Collects the request events of the run in progress (one registry at a
/// time; events of other registries and outside runs are ignored).
#[derive(Default)]
struct Recorder {
    current: Mutex<Option<(String, Accum)>>,
}

impl Recorder {
    fn begin(&self, registry: &str) {
        if let Ok(mut g) = self.current.lock() {
            *g = Some((registry.to_string(), Accum::default()));
        }
    }

    fn end(&self) -> Accum {
        self.current
            .lock()
            .ok()
            .and_then(|mut g| g.take())
            .map(|(_, a)| a)
            .unwrap_or_default()
    }
}

impl RequestObserver for Recorder {
    fn observe(&self, e: &RequestEvent<'_>) {
        let Ok(mut g) = self.current.lock() else {
            return;
        };
        let Some((registry, acc)) = g.as_mut() else {
            return;
        };
        if registry != e.registry {
            return;
        }
        let kind = e.method.as_str().to_string();
        *acc.requests.entry(kind.clone()).or_default() += 1;
        acc.latencies
            .entry(kind)
            .or_default()
            .push(e.elapsed.as_secs_f64() * 1000.0);
        let error = match e.status {
            None => Some("transport".to_string()),
            Some(404) if *e.method == Method::HEAD => None,
            Some(s) if s >= 400 => Some(s.to_string()),
            Some(_) => None,
        };
        if let Some(k) = error {
            *acc.errors.entry(k).or_default() += 1;
        }
    }
}

// ---------------------------------------------------------------------------
// Running

/// Run the benchmark. Errors are for problems before or outside the
/// measurements (bad options, the work dir, blob generation); failed
/// transfers are counted in the report ([`BenchReport::failed`]).
pub async fn bench(
    opts: BenchOptions,
    store: CredentialStore,
    reporter: SharedReporter,
) -> anyhow::Result<BenchReport> {
    opts.validate()?;
    let started = Instant::now();
    let max_conc = opts.concurrency.iter().copied().max().unwrap_or(1);
    let client_opts = ClientOptions {
        jobs_per_registry: max_conc,
        insecure: opts.insecure.clone(),
        ..ClientOptions::default()
    };
    let rep = reporter.clone();
    let client = tokio::task::spawn_blocking(move || Client::new(client_opts, store, rep))
        .await
        .context("client setup task failed")??;
    let client = Arc::new(client);
    let recorder = Arc::new(Recorder::default());
    client.set_observer(recorder.clone());

    let work = match &opts.work_dir {
        Some(d) => tempfile::Builder::new()
            .prefix("boxwright-bench-")
            .tempdir_in(d),
        None => tempfile::Builder::new()
            .prefix("boxwright-bench-")
            .tempdir(),
    }
    .context("creating the blob directory")?;

    // Warm up each registry outside the measurements: the auth ping, a token,
    // a connection. A registry that fails here is still measured (its
    // failures are what the report is for).
    for t in &opts.targets {
        let probe = Digest::of(WARM_UP_PROBE);
        if let Err(e) = client.blob_exists(&t.registry, &t.repository, &probe).await {
            reporter.log(Level::Warn, &format!("{}: warm-up failed: {e}", t.name()));
        }
    }

    let mut plan = Vec::new();
    for &mode in &opts.modes {
        for &conc in &opts.concurrency {
            for t in &opts.targets {
                plan.push((mode, conc, t.clone()));
            }
        }
    }
    let total = plan.len();
    let mut runs = Vec::with_capacity(total);
    let mut refused: Vec<String> = Vec::new();
    for (run, (mode, conc, target)) in plan.into_iter().enumerate() {
        let dir = work.path().join(format!("run-{run}"));
        reporter.log(
            Level::Info,
            &format!(
                "run {}/{total}: generating {} blobs of {} for {} {} x{conc}",
                run + 1,
                opts.blobs,
                human(opts.size),
                target.name(),
                mode.name()
            ),
        );
        let blobs = generate(&dir, opts.seed, run as u64, opts.blobs, opts.size).await?;
        let result = run_one(
            &client, &recorder, &reporter, &opts, &target, mode, conc, run, &blobs,
        )
        .await;
        let _ = tokio::fs::remove_dir_all(&dir).await;
        if result.cleanup.outcome == "unsupported" && !refused.contains(&target.name()) {
            refused.push(target.name());
            reporter.log(
                Level::Warn,
                &format!(
                    "{}: the registry does not allow deleting blobs ({}); every run leaves its {} blob(s) there",
                    target.name(),
                    result.cleanup.detail.as_deref().unwrap_or("405"),
                    opts.blobs
                ),
            );
        }
        runs.push(result);
    }
    Ok(BenchReport {
        seed: opts.seed,
        blobs: opts.blobs,
        blob_size: opts.size,
        chunk_size: opts.chunk_size,
        pull: opts.pull,
        runs,
        wall_secs: round3(started.elapsed().as_secs_f64()),
    })
}

/// [`bench`] on a runtime of its own, for synchronous callers.
pub fn bench_blocking(
    opts: BenchOptions,
    store: CredentialStore,
    reporter: SharedReporter,
) -> anyhow::Result<BenchReport> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(bench(opts, store, reporter))
}

/// Generate a run's blobs on the rayon pool (never on tokio's workers).
async fn generate(
    dir: &Path,
    seed: u64,
    run: u64,
    count: usize,
    size: u64,
) -> anyhow::Result<Vec<Blob>> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<Blob>> {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        (0..count)
            .into_par_iter()
            .map(|i| {
                let path = dir.join(format!("blob-{i}"));
                let digest = generate_blob(&path, seed, run, i as u64, size)
                    .with_context(|| format!("writing blob {}", path.display()))?;
                Ok(Blob { path, digest })
            })
            .collect()
    })
    .await
    .context("blob generation task failed")?
}

const MAX_FAILURES_SHOWN: usize = 5;

/// The content whose digest the warm-up HEAD asks for (never uploaded).
pub const WARM_UP_PROBE: &[u8] = b"boxwright bench warm-up probe";

#[allow(clippy::too_many_arguments)]
async fn run_one(
    client: &Arc<Client>,
    recorder: &Recorder,
    reporter: &SharedReporter,
    opts: &BenchOptions,
    target: &BenchTarget,
    mode: BenchMode,
    conc: usize,
    run: usize,
    blobs: &[Blob],
) -> RunResult {
    let registry = target.registry.as_str();
    let repo = target.repository.as_str();
    let label = format!("{} {} x{conc}", target.name(), mode.name());
    let bytes = opts.size * blobs.len() as u64;
    let before = client.stats(registry);
    let mut failures: Vec<String> = Vec::new();

    // Upload.
    recorder.begin(registry);
    let up_id = format!("bench:{run}:upload");
    reporter.start(&up_id, &format!("{label} upload"), Some(bytes));
    let upload_mode = mode.upload_mode(opts.chunk_size);
    let t0 = Instant::now();
    let results: Vec<(usize, Result<bool, RegistryError>)> = stream::iter(blobs.iter().enumerate())
        .map(|(i, b)| {
            let up_id = up_id.clone();
            async move {
                let r = async {
                    let present = client
                        .blob_exists(registry, repo, &b.digest)
                        .await?
                        .is_some();
                    client
                        .upload_blob(
                            registry,
                            repo,
                            &b.digest,
                            opts.size,
                            &b.path,
                            upload_mode,
                            None,
                            Some(up_id),
                        )
                        .await?;
                    Ok(present)
                }
                .await;
                (i, r)
            }
        })
        .buffer_unordered(conc)
        .collect()
        .await;
    let upload_secs = t0.elapsed().as_secs_f64();
    let mut uploaded = vec![false; blobs.len()];
    let mut already_present = 0;
    let mut failed_uploads = 0;
    for (i, r) in results {
        match r {
            Ok(present) => {
                uploaded[i] = true;
                already_present += u64::from(present);
            }
            Err(e) => {
                failed_uploads += 1;
                if failures.len() < MAX_FAILURES_SHOWN {
                    failures.push(format!("upload failed: {e}"));
                }
            }
        }
    }
    let upload_mb = mb_per_s(bytes, upload_secs);
    reporter.finish(
        &up_id,
        &format!(
            "{label}: uploaded {} in {upload_secs:.2}s ({upload_mb:.1} MB/s){}",
            human(bytes),
            if failed_uploads > 0 {
                format!(", {failed_uploads} failed")
            } else {
                String::new()
            }
        ),
    );

    // Pull.
    let mut failed_pulls = 0;
    let (pull_secs, pull_mb) = if opts.pull {
        let pull_id = format!("bench:{run}:pull");
        let pulled_bytes = opts.size * uploaded.iter().filter(|u| **u).count() as u64;
        reporter.start(&pull_id, &format!("{label} pull"), Some(pulled_bytes));
        let t1 = Instant::now();
        let results: Vec<Result<u64, RegistryError>> = stream::iter(
            blobs
                .iter()
                .zip(&uploaded)
                .filter(|(_, ok)| **ok)
                .map(|(b, _)| b),
        )
        .map(|b| {
            let pull_id = pull_id.clone();
            async move {
                pull_blob(
                    client, reporter, registry, repo, &b.digest, opts.size, &pull_id,
                )
                .await
            }
        })
        .buffer_unordered(conc)
        .collect()
        .await;
        let secs = t1.elapsed().as_secs_f64();
        for r in results {
            if let Err(e) = r {
                failed_pulls += 1;
                if failures.len() < MAX_FAILURES_SHOWN {
                    failures.push(format!("pull failed: {e}"));
                }
            }
        }
        let mb = mb_per_s(pulled_bytes, secs);
        reporter.finish(
            &pull_id,
            &format!(
                "{label}: pulled {} in {secs:.2}s ({mb:.1} MB/s){}",
                human(pulled_bytes),
                if failed_pulls > 0 {
                    format!(", {failed_pulls} failed")
                } else {
                    String::new()
                }
            ),
        );
        (Some(round3(secs)), Some(mb))
    } else {
        (None, None)
    };
    let acc = recorder.end();
    let after = client.stats(registry);

    // Cleanup (not measured).
    let t2 = Instant::now();
    let present: Vec<&Digest> = blobs
        .iter()
        .zip(&uploaded)
        .filter(|(_, ok)| **ok)
        .map(|(b, _)| &b.digest)
        .collect();
    let cleanup = if opts.keep {
        Cleanup {
            outcome: "kept".into(),
            deleted: 0,
            left: present.len() as u64,
            detail: None,
        }
    } else {
        cleanup(client, registry, repo, &present, conc).await
    };
    let cleanup_secs = t2.elapsed().as_secs_f64();

    let mut latency_ms: BTreeMap<String, Latency> = KINDS
        .iter()
        .map(|k| (k.to_string(), Latency::default()))
        .collect();
    for (k, v) in acc.latencies {
        latency_ms.insert(k, Latency::of(v));
    }
    let mut requests: BTreeMap<String, u64> = KINDS.iter().map(|k| (k.to_string(), 0)).collect();
    requests.extend(acc.requests);
    let errors_total = acc.errors.values().sum();
    let pull_part = pull_secs.unwrap_or(0.0);
    RunResult {
        registry: registry.to_string(),
        repository: repo.to_string(),
        mode,
        concurrency: conc,
        run,
        blobs: blobs.len(),
        blob_size: opts.size,
        bytes,
        bytes_sent: after.bytes_sent.saturating_sub(before.bytes_sent),
        upload_secs: round3(upload_secs),
        upload_mb_per_s: upload_mb,
        pull_secs,
        pull_mb_per_s: pull_mb,
        cleanup_secs: round3(cleanup_secs),
        wall_secs: round3(upload_secs + pull_part + cleanup_secs),
        requests,
        latency_ms,
        retries: after.retries.saturating_sub(before.retries),
        errors: acc.errors,
        errors_total,
        failed_uploads,
        failed_pulls,
        already_present,
        failures,
        cleanup,
    }
}

/// GET a blob of `size` bytes, hashing it as it streams (nothing written;
/// stopped as soon as more than `size` bytes arrive); retried on temporary
/// failures within the client's budget.
async fn pull_blob(
    client: &Client,
    reporter: &SharedReporter,
    registry: &str,
    repo: &str,
    digest: &Digest,
    size: u64,
    progress: &str,
) -> Result<u64, RegistryError> {
    client
        .read_blob(registry, repo, digest, size, |chunk| {
            reporter.advance(progress, chunk.len() as u64)
        })
        .await
}

/// What one DELETE said.
enum Deleted {
    Yes,
    Unsupported(String),
    Denied(String),
    Failed(String),
}

/// Classify a DELETE answer: 202/200/204 deleted, 404 already gone, 405 or
/// `UNSUPPORTED` refused by configuration, 401/403 denied.
fn classify_delete(status: u16, err: Option<&RegistryError>) -> Deleted {
    let text = || {
        err.map(|e| e.kind.to_string())
            .unwrap_or_else(|| status.to_string())
    };
    match status {
        200 | 202 | 204 | 404 => Deleted::Yes,
        405 => Deleted::Unsupported(text()),
        _ if err.is_some_and(|e| e.has_code("UNSUPPORTED")) => Deleted::Unsupported(text()),
        401 | 403 => Deleted::Denied(text()),
        _ => Deleted::Failed(text()),
    }
}

async fn delete_blob(client: &Client, registry: &str, repo: &str, digest: &Digest) -> Deleted {
    match client.delete_blob(registry, repo, digest).await {
        Ok(_) => Deleted::Yes,
        Err(e) => match e.status() {
            Some(s) => classify_delete(s, Some(&e)),
            None => Deleted::Failed(e.to_string()),
        },
    }
}

/// Delete the run's blobs; stop at the first refusal (the registry refuses
/// them all).
async fn cleanup(
    client: &Client,
    registry: &str,
    repo: &str,
    digests: &[&Digest],
    conc: usize,
) -> Cleanup {
    let mut deleted = 0u64;
    let mut refusal: Option<(&'static str, String)> = None;
    for batch in digests.chunks(conc.max(1)) {
        let answers: Vec<Deleted> = stream::iter(batch.iter())
            .map(|d| delete_blob(client, registry, repo, d))
            .buffer_unordered(conc.max(1))
            .collect()
            .await;
        for a in answers {
            match a {
                Deleted::Yes => deleted += 1,
                Deleted::Unsupported(t) => refusal = refusal.or(Some(("unsupported", t))),
                Deleted::Denied(t) => refusal = refusal.or(Some(("denied", t))),
                Deleted::Failed(t) => refusal = refusal.or(Some(("failed", t))),
            }
        }
        if matches!(refusal, Some(("unsupported" | "denied", _))) {
            break;
        }
    }
    let left = digests.len() as u64 - deleted;
    match refusal {
        Some((outcome, detail)) => Cleanup {
            outcome: outcome.into(),
            deleted,
            left,
            detail: Some(detail),
        },
        None => Cleanup {
            outcome: "deleted".into(),
            deleted,
            left,
            detail: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{ErrorContext, ErrorKind};

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("512kib"), Ok(512 << 10));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_size("1 MiB"), Ok(1 << 20));
        assert_eq!(parse_size("17"), Ok(17));
        for bad in [
            "0",
            "0MiB",
            "",
            "MiB",
            "12XB",
            "-1",
            "1.5MiB",
            "99999999999999GiB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn concurrency_and_modes() {
        assert_eq!(parse_concurrency("16"), Ok(16));
        assert!(parse_concurrency("0").is_err());
        assert!(parse_concurrency("x").is_err());
        assert!(parse_concurrency("100000").is_err());
        assert_eq!(BenchMode::parse("Chunked"), Ok(BenchMode::Chunked));
        assert!(BenchMode::parse("parallel").is_err());
    }

    #[test]
    fn targets() {
        let t = BenchTarget::parse("ghcr.io/acme/bench").unwrap();
        assert_eq!(
            (t.registry.as_str(), t.repository.as_str()),
            ("ghcr.io", "acme/bench")
        );
        let t = BenchTarget::parse("127.0.0.1:5000/bench").unwrap();
        assert_eq!(t.name(), "127.0.0.1:5000/bench");
        assert!(BenchTarget::parse("").is_err());
        assert!(BenchTarget::parse("ghcr.io/acme/bench:v1").is_err());
    }

    #[test]
    fn blobs_are_seeded_and_distinct() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        let a = generate_blob(&p("a"), 7, 0, 0, 3 << 20 | 5).unwrap();
        let a2 = generate_blob(&p("a2"), 7, 0, 0, 3 << 20 | 5).unwrap();
        let b = generate_blob(&p("b"), 7, 1, 0, 3 << 20 | 5).unwrap();
        let c = generate_blob(&p("c"), 7, 0, 1, 3 << 20 | 5).unwrap();
        let d = generate_blob(&p("d"), 8, 0, 0, 3 << 20 | 5).unwrap();
        assert_eq!(a, a2);
        assert_eq!(
            std::fs::read(p("a")).unwrap(),
            std::fs::read(p("a2")).unwrap()
        );
        assert_eq!(Digest::of(&std::fs::read(p("a")).unwrap()), a);
        assert_eq!(std::fs::metadata(p("a")).unwrap().len(), 3 << 20 | 5);
        for other in [&b, &c, &d] {
            assert_ne!(&a, other);
        }
    }

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

    #[test]
    fn delete_refusals() {
        assert!(matches!(classify_delete(202, None), Deleted::Yes));
        assert!(matches!(classify_delete(404, None), Deleted::Yes));
        assert!(matches!(
            classify_delete(405, None),
            Deleted::Unsupported(_)
        ));
        assert!(matches!(classify_delete(403, None), Deleted::Denied(_)));
        assert!(matches!(classify_delete(500, None), Deleted::Failed(_)));
        let e = RegistryError::new(
            ErrorContext::default(),
            ErrorKind::Status {
                status: 400,
                errors: crate::registry::error::parse_error_body(
                    br#"{"errors":[{"code":"UNSUPPORTED","message":"The operation is unsupported."}]}"#,
                ),
            },
        );
        assert!(matches!(
            classify_delete(400, Some(&e)),
            Deleted::Unsupported(_)
        ));
    }
}

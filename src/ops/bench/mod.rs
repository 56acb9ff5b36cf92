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
//! by a [`RequestObserver`](crate::registry::RequestObserver) on the client (time to the answer's headers, so a
//! `PUT` with a body includes sending the body); errors are counted by status
//! (a `HEAD` answered 404 is not an error, nor the 401 challenge of the
//! `GET /v2/` ping) plus `transport` for attempts that got no answer, the
//! pings of a registry that never answers included. After the timed part the blobs are deleted
//! (`DELETE /v2/<repo>/blobs/<digest>`) unless `keep`; a registry that
//! refuses deletion (405 / `UNSUPPORTED`) is reported as such, with how many
//! blobs were left behind.
//!
//! MB in every figure is 10^6 bytes.

mod blobs;
mod report;
mod run;

use std::path::PathBuf;

use serde::Serialize;

use crate::error::bad_input;
use crate::registry::{Reference, UploadMode};

/// The request kinds whose latencies are reported, in table order.
pub const KINDS: [&str; 5] = ["HEAD", "POST", "PATCH", "PUT", "GET"];

pub use blobs::generate_blob;
pub use report::{BenchReport, Cleanup, Latency, RunResult};
pub use run::{bench, WARM_UP_PROBE};

/// Largest accepted `--concurrency` value.
pub const MAX_CONCURRENCY: usize = 1024;

/// Largest seed, 2^53 - 1: JSON readers that hold numbers as doubles (most
/// do) keep every seed up to it exact, so a report's seed
/// given back to `--seed` regenerates the same blobs.
pub const MAX_SEED: u64 = (1 << 53) - 1;

/// A random seed in `0..=MAX_SEED`.
pub fn random_seed() -> u64 {
    rand::random_range(0..=MAX_SEED)
}

/// Parse a `--seed` value (0..=[`MAX_SEED`]).
pub fn parse_seed(s: &str) -> Result<u64, String> {
    let n: u64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a whole number"))?;
    if n > MAX_SEED {
        return Err(format!(
            "a seed is at most {MAX_SEED} (2^53 - 1), so that JSON readers keep it exact"
        ));
    }
    Ok(n)
}

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
    /// Extra CA certificates (PEM) to trust.
    pub ca_file: Option<PathBuf>,
    /// Where to generate the blobs [default: the system temp dir].
    pub work_dir: Option<PathBuf>,
}

/// The most `PATCH`es a chunked upload of one blob may take: a 64 GiB blob
/// in 1 MiB chunks. More is a mistyped `--chunk-size` (`4` for `4MiB`),
/// which would run for hours and keep a latency sample for each request.
const MAX_PATCHES: u64 = 65_536;

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
        let patches = self.size.div_ceil(self.chunk_size);
        if self.modes.contains(&BenchMode::Chunked) && patches > MAX_PATCHES {
            return Err(bad_input(format!(
                "--chunk-size {} would send {patches} PATCH requests per blob of --size {} \
                 (at most {MAX_PATCHES}); give a larger --chunk-size, such as 4MiB",
                crate::render::human_bytes(self.chunk_size),
                crate::render::human_bytes(self.size),
            )));
        }
        if self.concurrency.is_empty() || self.concurrency.contains(&0) {
            return Err(bad_input("--concurrency values must be at least 1"));
        }
        if self.modes.is_empty() {
            return Err(bad_input("give at least one --mode"));
        }
        if self.seed > MAX_SEED {
            return Err(bad_input(format!(
                "--seed must be at most {MAX_SEED} (2^53 - 1)"
            )));
        }
        if let Some(d) = self.work_dir.as_ref().filter(|d| !d.is_dir()) {
            return Err(bad_input(format!(
                "--work-dir {}: no such directory; give an existing one with room for --blobs x --size",
                d.display()
            )));
        }
        Ok(())
    }

    /// Where the run's blob directory goes: `work_dir`, else the temp dir.
    fn work_parent(&self) -> PathBuf {
        self.work_dir.clone().unwrap_or_else(std::env::temp_dir)
    }

    /// Make room for the run in its work dir, and refuse it when its blobs
    /// still do not fit: blob directories of benches that died (their lock
    /// held by no one) are removed first, since they would be counted
    /// against the space. Returns the directory the blob directory goes in.
    fn prepare_work_parent(&self) -> anyhow::Result<PathBuf> {
        let parent = self.work_parent();
        crate::image::layout::remove_stale(&parent, run::WORK_PREFIX);
        blobs::check_room(&parent, self.blobs, self.size, self.work_dir.is_some())?;
        Ok(parent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn seeds_stay_exact_as_doubles() {
        for _ in 0..1000 {
            let s = random_seed();
            assert!(s <= MAX_SEED);
            assert_eq!(s as f64 as u64, s);
        }
        assert_eq!(MAX_SEED as f64 as u64, MAX_SEED);
        assert_eq!(parse_seed("9007199254740991"), Ok(MAX_SEED));
        assert_eq!(parse_seed("0"), Ok(0));
        assert!(parse_seed("9007199254740992").is_err());
        assert!(parse_seed("18446744073709551615").is_err());
        assert!(parse_seed("-1").is_err());
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
}

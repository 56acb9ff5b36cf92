//! Running a bench: warm-up, the timed uploads (and pulls) of each run, the
//! request recorder, and the clean-up of the run's blobs.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context as _;
use futures_util::stream::{self, StreamExt as _};
use rayon::prelude::*;
use reqwest::Method;

use super::blobs::{generate_blob, Blob};
use super::report::{mb_per_s, round3, BenchReport, Cleanup, Latency, RunResult};
use super::{BenchMode, BenchOptions, BenchTarget, KINDS};
use crate::oci::Digest;
use crate::progress::{Level, SharedReporter};
use crate::registry::error::RegistryError;
use crate::registry::{
    Client, ClientOptions, CredentialStore, Repo, RequestEvent, RequestObserver,
};

/// The name of a bench's blob directory, in `--work-dir` or the temp dir.
pub(super) const WORK_PREFIX: &str = "boxwright-bench-";

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
            // The ping's 401 is the registry's challenge, as expected.
            Some(401) if e.ping => None,
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
    let parent = opts.prepare_work_parent()?;
    let started = Instant::now();
    let max_conc = opts.concurrency.iter().copied().max().unwrap_or(1);
    let client_opts = ClientOptions {
        jobs_per_registry: max_conc,
        insecure: opts.insecure.clone(),
        ca_file: opts.ca_file.clone(),
        ..ClientOptions::default()
    };
    let rep = reporter.clone();
    let client = tokio::task::spawn_blocking(move || Client::new(client_opts, store, rep))
        .await
        .context("client setup task failed")??;
    let client = Arc::new(client);
    let recorder = Arc::new(Recorder::default());
    client.set_observer(recorder.clone());

    let work = (tempfile::Builder::new().prefix(WORK_PREFIX))
        .tempdir_in(&parent)
        .context("creating the blob directory")?;
    let _lock = crate::image::layout::lock_dir(work.path())?;

    // Warm up each registry outside the measurements: the auth ping, a token,
    // a connection. A registry that fails here is still measured (its
    // failures are what the report is for), unless the failure is the
    // user's to mend (an auth file that cannot be read): every request
    // would fail alike, so the run stops before any blob is generated.
    for t in &opts.targets {
        let probe = Digest::of(WARM_UP_PROBE);
        let repo = client.repo(&t.registry, &t.repository);
        if let Err(e) = repo.blob_exists(&probe).await {
            if crate::error::is_bad_input_cause(&e) {
                return Err(anyhow::Error::new(e).context(format!("{}: warm-up", t.name())));
            }
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
                "{}: generating {} blobs of {} for {} {} x{conc}",
                run_heading(run, total),
                opts.blobs,
                crate::render::human_bytes(opts.size),
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

/// How progress names run `run` of `total`: by the 0-based index the
/// report's `run` holds, with its place in the order.
fn run_heading(run: usize, total: usize) -> String {
    format!("run {run} ({} of {total})", run + 1)
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

/// Keep the first few failures of a run, for its report.
fn note_failure(failures: &mut Vec<String>, phase: &str, e: &RegistryError) {
    if failures.len() < MAX_FAILURES_SHOWN {
        failures.push(format!("{phase} failed: {e}"));
    }
}

/// End a phase's progress bar with its figures; returns its MB/s.
fn phase_done(
    reporter: &SharedReporter,
    id: &str,
    what: &str,
    bytes: u64,
    secs: f64,
    failed: u64,
) -> f64 {
    let mb = mb_per_s(bytes, secs);
    let failed = if failed > 0 {
        format!(", {failed} failed")
    } else {
        String::new()
    };
    reporter.finish(
        id,
        &format!(
            "{what} {} in {secs:.2}s ({mb:.1} MB/s){failed}",
            crate::render::human_bytes(bytes)
        ),
    );
    mb
}

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
    let repo = client.repo(&target.registry, &target.repository);
    let registry = repo.registry();
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
                    let present = repo.blob_exists(&b.digest).await?.is_some();
                    repo.upload_blob(
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
                note_failure(&mut failures, "upload", &e);
            }
        }
    }
    // Only the blobs the registry took count as uploaded.
    let bytes_uploaded = opts.size * uploaded.iter().filter(|u| **u).count() as u64;
    let upload_mb = phase_done(
        reporter,
        &up_id,
        &format!("{label}: uploaded"),
        bytes_uploaded,
        upload_secs,
        failed_uploads,
    );

    // Pull.
    let mut failed_pulls = 0;
    // Nothing uploaded, nothing to pull back: no pull figures at all.
    let (pull_secs, pull_mb, bytes_pulled) = if opts.pull && uploaded.iter().any(|u| *u) {
        let pull_id = format!("bench:{run}:pull");
        let to_pull = bytes_uploaded;
        reporter.start(&pull_id, &format!("{label} pull"), Some(to_pull));
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
            async move { pull_blob(repo, reporter, &b.digest, opts.size, &pull_id).await }
        })
        .buffer_unordered(conc)
        .collect()
        .await;
        let secs = t1.elapsed().as_secs_f64();
        // Only the blobs that came back whole, digest checked, count as pulled.
        let mut pulled_bytes = 0;
        for r in results {
            match r {
                Ok(n) => pulled_bytes += n,
                Err(e) => {
                    failed_pulls += 1;
                    note_failure(&mut failures, "pull", &e);
                }
            }
        }
        let mb = phase_done(
            reporter,
            &pull_id,
            &format!("{label}: pulled"),
            pulled_bytes,
            secs,
            failed_pulls,
        );
        (Some(round3(secs)), Some(mb), Some(pulled_bytes))
    } else {
        (None, None, None)
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
    let cleanup = if present.is_empty() {
        // No blob of the run reached the registry: nothing to delete or keep.
        Cleanup {
            outcome: "nothing".into(),
            deleted: 0,
            left: 0,
            detail: None,
        }
    } else if opts.keep {
        Cleanup {
            outcome: "kept".into(),
            deleted: 0,
            left: present.len() as u64,
            detail: None,
        }
    } else {
        cleanup(repo, &present, conc).await
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
        repository: repo.repository().to_string(),
        mode,
        concurrency: conc,
        run,
        blobs: blobs.len(),
        blob_size: opts.size,
        bytes,
        bytes_sent: after.bytes_sent.saturating_sub(before.bytes_sent),
        bytes_uploaded,
        bytes_pulled,
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
    repo: Repo<'_>,
    reporter: &SharedReporter,
    digest: &Digest,
    size: u64,
    progress: &str,
) -> Result<u64, RegistryError> {
    repo.read_blob(digest, size, |chunk| {
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

async fn delete_blob(repo: Repo<'_>, digest: &Digest) -> Deleted {
    match repo.delete_blob(digest).await {
        Ok(_) => Deleted::Yes,
        Err(e) => match e.status() {
            Some(s) => classify_delete(s, Some(&e)),
            None => Deleted::Failed(e.to_string()),
        },
    }
}

/// Delete the run's blobs; stop at the first refusal (the registry refuses
/// them all).
async fn cleanup(repo: Repo<'_>, digests: &[&Digest], conc: usize) -> Cleanup {
    let mut deleted = 0u64;
    let mut refusal: Option<(&'static str, String)> = None;
    for batch in digests.chunks(conc.max(1)) {
        let answers: Vec<Deleted> = stream::iter(batch.iter())
            .map(|d| delete_blob(repo, d))
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
    fn progress_names_runs_by_the_report_index() {
        // The report's first run is `run: 0`; progress names it so too.
        assert!(run_heading(0, 12).starts_with("run 0 "));
        assert!(run_heading(11, 12).starts_with("run 11 "));
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

//! The text forms of a `bench` report: two readable tables (throughput,
//! then request latencies) with notes about cleanup and failures, for
//! stderr; and CSV, one line per run, for stdout.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::ops::bench::{BenchReport, Latency, KINDS};

use super::human_bytes;
use super::table::{self, Style};

/// Columns two spaces apart; the figures (from CONC on) right-aligned.
const STYLE: Style = Style {
    gap: 2,
    right_from: Some(3),
};

/// One header line, one line per run; latencies as
/// `<kind>_{count,p50_ms,p95_ms,p99_ms}` columns, errors as `503:2;transport:1`.
pub fn csv(report: &BenchReport) -> String {
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
        "bytes_uploaded",
        "bytes_pulled",
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
    for r in &report.runs {
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
            r.bytes_uploaded.to_string(),
            r.bytes_pulled.map(|b| b.to_string()).unwrap_or_default(),
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
pub fn tables(report: &BenchReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "bench: {} blobs x {} per run, seed {}, {} run(s) in {:.1}s (MB = 10^6 bytes)",
        report.blobs,
        human_bytes(report.blob_size),
        report.seed,
        report.runs.len(),
        report.wall_secs
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
    for r in &report.runs {
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
                "nothing" => "nothing to delete".into(),
                other => format!("{other}, {} left", r.cleanup.left),
            },
        ]);
    }
    out.push_str(&table::render(&rows, STYLE));
    out.push_str("\nrequest latency, ms: p50 / p95 / p99 (count)\n");
    let mut rows = vec![vec![
        "REGISTRY/REPO".to_string(),
        "MODE".into(),
        "CONC".into(),
    ]];
    rows[0].extend(KINDS.iter().map(|k| k.to_string()));
    for r in &report.runs {
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
    out.push_str(&table::render(&rows, STYLE));
    // One note per repository and kind, not one per run.
    let mut notes: Vec<String> = Vec::new();
    let mut per_repo: BTreeMap<String, (u64, u64, Vec<String>)> = BTreeMap::new();
    for r in &report.runs {
        let repo = format!("{}/{}", r.registry, r.repository);
        let who = format!("{repo} {} x{}", r.mode.name(), r.concurrency);
        match r.cleanup.outcome.as_str() {
            "deleted" | "kept" | "nothing" => {}
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
                report.seed
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

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::bench::{BenchMode, Cleanup, RunResult};

    fn run(registry: &str, mode: BenchMode, outcome: &str) -> RunResult {
        let lat = |count| Latency {
            count,
            p50_ms: Some(1.234),
            p95_ms: Some(12.5),
            p99_ms: Some(150.0),
            max_ms: Some(200.0),
        };
        RunResult {
            registry: registry.into(),
            repository: "acme/bench".into(),
            mode,
            concurrency: 16,
            run: 0,
            blobs: 8,
            blob_size: 16 << 20,
            bytes: 8 * (16 << 20),
            bytes_sent: 8 * (16 << 20),
            bytes_uploaded: 7 * (16 << 20),
            bytes_pulled: (outcome == "deleted").then_some(7 * (16 << 20)),
            upload_secs: 2.5,
            upload_mb_per_s: 53.7,
            pull_secs: None,
            pull_mb_per_s: (outcome == "deleted").then_some(120.0),
            cleanup_secs: 0.2,
            wall_secs: 2.75,
            requests: BTreeMap::from([("HEAD".to_string(), 8)]),
            latency_ms: BTreeMap::from([("HEAD".to_string(), lat(8)), ("PUT".to_string(), lat(8))]),
            retries: 1,
            errors: BTreeMap::from([("503".to_string(), 2), ("transport".to_string(), 1)]),
            errors_total: 3,
            failed_uploads: 1,
            failed_pulls: 0,
            already_present: 2,
            failures: vec!["blob 3: 503, \"busy\"".into()],
            cleanup: Cleanup {
                outcome: outcome.into(),
                deleted: 8,
                left: 0,
                detail: (outcome != "deleted").then(|| "405 Method Not Allowed".into()),
            },
        }
    }

    #[test]
    fn tables_and_csv() {
        let report = BenchReport {
            seed: 42,
            blobs: 8,
            blob_size: 16 << 20,
            chunk_size: 4 << 20,
            pull: true,
            runs: vec![
                run("localhost:5000", BenchMode::Monolithic, "deleted"),
                run("ghcr.io", BenchMode::Chunked, "unsupported"),
                run("docker.io", BenchMode::Streamed, "denied"),
                RunResult {
                    bytes_uploaded: 0,
                    upload_mb_per_s: 0.0,
                    failed_uploads: 8,
                    already_present: 0,
                    cleanup: Cleanup {
                        outcome: "nothing".into(),
                        deleted: 0,
                        left: 0,
                        detail: None,
                    },
                    ..run("quay.io", BenchMode::Monolithic, "nothing")
                },
            ],
            wall_secs: 9.5,
        };
        assert_eq!(tables(&report), include_str!("testdata/bench.txt"));
        assert_eq!(csv(&report), include_str!("testdata/bench.csv"));
        assert!(tables(&report).contains("16.0 MiB"));
    }
}

//! GitHub Actions support: the job summary of a push.
//!
//! When a command runs in GitHub Actions (`GITHUB_ACTIONS=true`), `push`,
//! `build --push`, `copy` and `index` append a Markdown table to the file
//! named by
//! `$GITHUB_STEP_SUMMARY`, which GitHub shows on the run's page: per target
//! the reference, the digest it names, the bytes sent and the blobs
//! uploaded, mounted and skipped (already present), then per registry the
//! requests, bytes and retries, and the verdict of `--verify` when it ran.
//! Outside Actions nothing is written. The table holds only references,
//! digests, figures and registry error texts, never a credential.
//!
//! Progress in Actions is plain lines: the binary's reporter (`src/ui.rs`)
//! never draws bars when `CI` is set or `GITHUB_ACTIONS=true`, even if stderr
//! is a terminal.
//!
//! ```
//! use boxwright::render::summary::escape_cell;
//! assert_eq!(escape_cell("a|b\nc"), "a\\|b c");
//! ```

use std::io::Write as _;
use std::path::PathBuf;

use super::human_bytes;
use crate::ops::copy::CopyReport;
use crate::ops::verify::VerifyReport;
use crate::push::PushReport;

/// True when running as a GitHub Actions step.
pub fn in_actions() -> bool {
    std::env::var("GITHUB_ACTIONS").as_deref() == Ok("true")
}

/// The step summary file, when running in Actions and GitHub named one.
pub fn step_summary_path() -> Option<PathBuf> {
    summary_path_from(|k| std::env::var(k).ok())
}

/// [`step_summary_path`] with the environment given as a function.
fn summary_path_from(env: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if env("GITHUB_ACTIONS").as_deref() != Some("true") {
        return None;
    }
    env("GITHUB_STEP_SUMMARY")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

/// Make text safe inside one Markdown table cell: no `|`, no line breaks.
pub fn escape_cell(s: &str) -> String {
    s.replace('|', "\\|")
        .replace("\r\n", " ")
        .replace(['\n', '\r'], " ")
}

/// The Markdown of one push: a heading (`title`, e.g. the command and the
/// recipe), the targets table, the registries table, and the verify verdict
/// when `verify` is given. Ends with a blank line so that summaries of
/// several steps stay apart.
pub fn push_summary(title: &str, report: &PushReport, verify: Option<&VerifyReport>) -> String {
    let mut md = String::new();
    let verdict = if report.succeeded() {
        "pushed"
    } else {
        "push failed"
    };
    md.push_str(&format!(
        "### {}: {verdict} `{}`\n\n",
        escape_cell(title),
        report.digest
    ));
    md.push_str(
        "| target | status | digest | bytes sent | uploaded | mounted | skipped (present) |\n",
    );
    md.push_str("|---|---|---|--:|--:|--:|--:|\n");
    for t in &report.targets {
        let status = match (&t.error, t.ok, t.optional) {
            (_, true, _) => "ok".to_string(),
            (e, false, optional) => format!(
                "{}: {}",
                if optional {
                    "failed (optional)"
                } else {
                    "failed"
                },
                e.as_ref().map_or("unknown error".into(), |e| e.to_string())
            ),
        };
        let digest = t
            .digest
            .as_ref()
            .map_or_else(|| "-".to_string(), |d| format!("`{d}`"));
        md.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} | {} |\n",
            escape_cell(&t.reference),
            escape_cell(&status),
            digest,
            human_bytes(t.bytes_sent),
            t.blobs_uploaded,
            t.blobs_mounted,
            t.blobs_present
        ));
    }
    md.push('\n');
    md.push_str("| registry | status | requests | bytes sent (all bodies) | retries | seconds |\n");
    md.push_str("|---|---|---|--:|--:|--:|\n");
    for r in &report.registries {
        let requests: Vec<String> = r
            .requests
            .iter()
            .map(|(method, n)| format!("{method} {n}"))
            .collect();
        let status = match &r.error {
            None => "ok".to_string(),
            Some(e) => format!("failed: {e}"),
        };
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.1} |\n",
            escape_cell(&r.registry),
            escape_cell(&status),
            requests.join(", "),
            human_bytes(r.bytes_sent),
            r.retries,
            r.seconds
        ));
    }
    if let Some(v) = verify {
        md.push('\n');
        match v.problem() {
            None => md.push_str(&format!(
                "**verify**: all {} references name `{}` (HEAD only).\n",
                v.references.len(),
                v.digest
                    .as_ref()
                    .map_or_else(|| "-".to_string(), |d| d.to_string())
            )),
            Some(p) => md.push_str(&format!("**verify failed**: {}\n", escape_cell(&p))),
        }
    }
    md.push('\n');
    md
}

/// The Markdown of one copy: the push's tables when anything was sent;
/// when every destination already named the image, a heading saying so
/// and one row per destination.
pub fn copy_summary(title: &str, report: &CopyReport) -> String {
    if let Some(push) = &report.push {
        return push_summary(title, push, None);
    }
    let verdict = match report.destinations.iter().all(|d| d.error.is_none()) {
        true => "up to date",
        false => "copy failed",
    };
    let mut md = format!(
        "### {}: {verdict} `{}`\n\n| destination | status |\n|---|---|\n",
        escape_cell(title),
        report.digest
    );
    for d in &report.destinations {
        let status = match &d.error {
            None => "up to date".to_string(),
            Some(e) => format!("failed: {e}"),
        };
        md.push_str(&format!(
            "| `{}` | {} |\n",
            escape_cell(&d.reference),
            escape_cell(&status)
        ));
    }
    md.push('\n');
    md
}

/// Append `markdown` to the step summary when running in Actions. Returns
/// whether anything was written; an unwritable file is an error for the
/// caller to report (as a warning: the push itself is done).
pub fn append_step_summary(markdown: &str) -> std::io::Result<bool> {
    append_to(step_summary_path(), markdown)
}

fn append_to(path: Option<PathBuf>, markdown: &str) -> std::io::Result<bool> {
    let Some(path) = path else {
        return Ok(false);
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    f.write_all(markdown.as_bytes())?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::{RegistryReport, TargetReport};
    use std::collections::BTreeMap;

    fn report() -> PushReport {
        let digest: crate::oci::Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
        let target = |reference: &str, ok: bool, optional: bool| TargetReport {
            reference: reference.into(),
            registry: reference.split('/').next().unwrap().into(),
            optional,
            ok,
            digest: ok.then(|| digest.clone()),
            replaced: None,
            error: (!ok).then(|| "401 UNAUTHORIZED | denied\nagain".to_string().into()),
            blobs_uploaded: 3,
            blobs_mounted: 1,
            blobs_present: 2,
            bytes_sent: 3 * 1024 * 1024,
            seconds: 1.5,
        };
        PushReport {
            digest: digest.clone(),
            media_type: crate::oci::MEDIA_TYPE_INDEX.into(),
            size: 500,
            targets: vec![
                target("ghcr.io/acme/r2d:1.4.0", true, false),
                target("docker.io/acme/r2d:1.4.0", false, true),
            ],
            registries: vec![RegistryReport {
                registry: "ghcr.io".into(),
                ok: true,
                error: None,
                requests: BTreeMap::from([("HEAD".to_string(), 7), ("PUT".to_string(), 4)]),
                bytes_sent: 3 * 1024 * 1024 + 900,
                retries: 1,
                seconds: 2.0,
            }],
        }
    }

    #[test]
    fn summary_has_one_row_per_target_and_registry() {
        let md = push_summary("boxwright build --push recipes/r2d.toml", &report(), None);
        let rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| ")).collect();
        // Figure: 2 header rows + 2 targets + 1 registry.
        assert_eq!(rows.len(), 5, "{md}");
        assert!(md.contains(&format!(
            "| `ghcr.io/acme/r2d:1.4.0` | ok | `sha256:{}` | 3.0 MiB | 3 | 1 | 2 |",
            "ab".repeat(32)
        )));
        // An error's `|` and line break cannot break the table.
        assert!(md.contains("failed (optional): 401 UNAUTHORIZED \\| denied again"));
        assert!(
            md.contains("| ghcr.io | ok | HEAD 7, PUT 4 | 3.0 MiB | 1 | 2.0 |"),
            "{md}"
        );
        assert!(md.ends_with("\n\n"));
    }

    #[test]
    fn summary_is_appended_only_in_actions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("summary.md");
        std::fs::write(&path, "earlier step\n").unwrap();
        let file = path.to_string_lossy().into_owned();
        let env = |actions: Option<&'static str>| {
            let file = file.clone();
            move |k: &str| match k {
                "GITHUB_ACTIONS" => actions.map(String::from),
                "GITHUB_STEP_SUMMARY" => Some(file.clone()),
                _ => None,
            }
        };
        assert_eq!(summary_path_from(env(None)), None);
        assert_eq!(summary_path_from(env(Some("false"))), None);
        assert!(!append_to(summary_path_from(env(None)), "x\n").unwrap());
        assert!(append_to(summary_path_from(env(Some("true"))), "second\n").unwrap());
        // Figure: appended after what an earlier step wrote, nothing else.
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "earlier step\nsecond\n"
        );
    }
}

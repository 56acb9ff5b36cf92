//! `boxwright index --to REF... SRC@sha256:... SRC@sha256:...`: one OCI
//! image index from single-platform images already in registries (e.g. one
//! per CI runner), pushed to every `--to`.
//!
//! stdout: the index digest (or the `--json` report); stderr: one line per
//! source (its platform), per target and per registry. Exit 2 for bad input
//! (a source without digest, a source that is an index or has no platform,
//! two sources of one platform), 1 when a target failed.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;

use boxwright::ops::index::IndexOptions;
use boxwright::progress::{Level, SharedReporter};

use super::args::{parse_all, parse_target, parse_targets, UploadArgs};
use super::stdout::{print, print_json};

#[derive(Args, Debug)]
pub struct IndexArgs {
    /// The platform images: REGISTRY/REPOSITORY@sha256:DIGEST, one per
    /// platform, on any registries. Each must be a single-platform image.
    #[arg(value_name = "SRC", required = true, num_args = 1.., value_parser = parse_source)]
    pub sources: Vec<String>,
    /// Where the index goes: REGISTRY/REPOSITORY[:TAG] (repeatable; no tag:
    /// latest; REPO@ pushes it by digest only).
    #[arg(long = "to", value_name = "REF", required = true, value_parser = parse_target)]
    pub to: Vec<String>,
    /// An annotation of the index, KEY=VALUE (repeatable), e.g.
    /// org.opencontainers.image.version=1.4.0.
    #[arg(long = "annotation", value_name = "KEY=VALUE", value_parser = parse_annotation)]
    pub annotations: Vec<(String, String)>,
    /// Blob cache directory (configs, and blobs copied across registries)
    /// [default: $XDG_CACHE_HOME/boxwright/blobs].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Print the report (index digest, entries with platform and source,
    /// blobs downloaded, per target uploaded/mounted/present and bytes) as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub upload: UploadArgs,
}

fn parse_source(s: &str) -> Result<String, String> {
    let r = boxwright::registry::Reference::parse(s).map_err(|e| format!("{e:#}"))?;
    if r.digest.is_none() {
        return Err(format!(
            "{s:?} has no digest: give each platform's image as REGISTRY/REPO@sha256:..."
        ));
    }
    Ok(s.to_string())
}

fn parse_annotation(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// `boxwright index`.
pub async fn run(args: IndexArgs, reporter: SharedReporter) -> Result<()> {
    let sources = parse_all(&args.sources)?;
    let targets = parse_targets(&args.to)?;
    let annotations: BTreeMap<String, String> = args.annotations.iter().cloned().collect();
    let opts = IndexOptions {
        push: args.upload.push_options()?,
        annotations,
        cache_dir: args.cache_dir.clone(),
    };
    let report = boxwright::ops::index::index(&sources, targets, opts, reporter.clone())
        .await
        .context("assembling the image index")?;
    for w in report.push.warnings() {
        reporter.log(Level::Warn, &w);
    }
    if args.json {
        print_json(&report)?;
    } else if report.succeeded() {
        print(&format!("{}\n", report.digest))?;
    }
    if report.succeeded() {
        let platforms: Vec<&str> = report
            .manifests
            .iter()
            .map(|m| m.platform.as_str())
            .collect();
        reporter.log(
            Level::Info,
            &format!(
                "index {} ({}): {} blobs ({} bytes) downloaded",
                report.digest,
                platforms.join(", "),
                report.blobs_downloaded,
                report.bytes_downloaded
            ),
        );
    }
    match report.error() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

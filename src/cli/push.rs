//! `boxwright push`, and the printing shared with `boxwright build --push`.
//!
//! stdout carries only the digest (or the `--json` report); progress, one
//! line per target and warnings go to stderr through the reporter. The exit
//! code is 1 when a non-optional target does not hold the image.

use anyhow::Result;
use clap::Args;

use boxwright::ops::verify::{verify_pushed, VerifyReport};
use boxwright::progress::{Level, SharedReporter};
use boxwright::push::{by_digest, parse_targets, pin_untagged, PushReport};
use boxwright::render::summary;
use boxwright::supply::attach::AttachReport;
use boxwright::supply::layout::{push_layout, LayoutPush};

use super::args::{parse_target, AfterPushArgs, UploadArgs};
use super::stdout::{print, print_json};

#[derive(Args, Debug)]
pub struct PushArgs {
    /// OCI layout directory, optionally with :NAME to pick an image by its ref name.
    pub layout: String,
    /// Destination REGISTRY/REPOSITORY[:TAG][@DIGEST] (repeatable; no tag: latest; REPO@: by digest only, no tag).
    #[arg(long = "to", value_name = "REF", required = true, value_parser = parse_target)]
    pub to: Vec<String>,
    #[command(flatten)]
    pub upload: UploadArgs,
    /// Print the push report (per target: digest, blobs uploaded/mounted/present,
    /// bytes, time; per registry: requests, bytes, retries) as JSON instead of
    /// the digest; also when --timeout or a signal stops the push (what was
    /// done before, with "stopped").
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub after: AfterPushArgs,
}

/// Print the outcome: the digest (or JSON) on stdout, the summary on
/// stderr; an error when a required target failed.
///
/// With `--verify`, its report goes into the JSON (`verify`), and a failed
/// verification is an error; so with the artifacts a layout held
/// (`supply`), attached after the image.
pub fn finish_with(
    report: &PushReport,
    verified: Option<&VerifyReport>,
    supply: Option<&AttachReport>,
    json: bool,
    reporter: &SharedReporter,
) -> Result<()> {
    for w in report.warnings() {
        reporter.log(Level::Warn, &w);
    }
    if json {
        let mut doc = report.to_json();
        if let (Some(v), Some(obj)) = (verified, doc.as_object_mut()) {
            obj.insert("verify".into(), serde_json::to_value(v)?);
        }
        if let (Some(s), Some(obj)) = (supply, doc.as_object_mut()) {
            obj.insert("supply".into(), serde_json::to_value(s)?);
        }
        print_json(&doc)?;
    } else if report.succeeded() {
        print(&format!("{}\n", report.digest))?;
    }
    if let Some(e) = report.error() {
        return Err(e);
    }
    verified
        .and_then(|v| v.after_push_error(&report.digest))
        .or_else(|| supply.and_then(AttachReport::error))
        .map_or(Ok(()), Err)
}

/// `boxwright push LAYOUT[:NAME] --to REF...`.
pub async fn run(args: PushArgs, reporter: SharedReporter) -> Result<()> {
    let targets = by_digest(parse_targets(&args.to)?, args.after.by_digest);
    let mut opts = args.upload.push_options()?;
    super::stopped::on_stop(&mut opts, args.json, super::stopped::Shape::Flat);
    let LayoutPush {
        mut report,
        client,
        supply,
    } = push_layout(&args.layout, targets, opts, reporter.clone()).await?;
    pin_untagged(&mut report);
    let verified = if args.after.verify {
        // The pusher's client: its credentials and tokens are reused.
        verify_pushed(&client, &report, &reporter).await?
    } else {
        None
    };
    github_summary(
        &format!("boxwright push {}", args.layout),
        &report,
        verified.as_ref(),
        &reporter,
    );
    finish_with(
        &report,
        verified.as_ref(),
        supply.as_ref(),
        args.json,
        &reporter,
    )
}

/// In GitHub Actions, append the push's table to `$GITHUB_STEP_SUMMARY`
/// (a failure to write it only warns: the push is done).
pub fn github_summary(
    title: &str,
    report: &PushReport,
    verified: Option<&VerifyReport>,
    reporter: &SharedReporter,
) {
    append_summary(&summary::push_summary(title, report, verified), reporter);
}

/// In GitHub Actions, append `md` to `$GITHUB_STEP_SUMMARY` (a failure to
/// write it only warns: the work is done).
pub fn append_summary(md: &str, reporter: &SharedReporter) {
    if let Err(e) = summary::append_step_summary(md) {
        reporter.log(
            Level::Warn,
            &format!("could not append to $GITHUB_STEP_SUMMARY: {e}"),
        );
    }
}

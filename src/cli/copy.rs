//! `boxwright copy SRC DST [DST...]`: an image or index between registries
//! or repositories, digest preserved, with what is attached to it
//! (signatures, SBOM, provenance) unless `--no-referrers`.
//!
//! stdout: the digest the destinations name (or the `--json` report);
//! stderr: progress and a summary. Exit 1 when a destination failed or the
//! source cannot be read, 2 for bad input.

use anyhow::{Context as _, Result};
use clap::Args;

use boxwright::oci::{Digest, Platform};
use boxwright::ops::copy::{CopyDestination, CopyOptions, CopyReport};
use boxwright::progress::{Level, SharedReporter};
use boxwright::render::summary;
use boxwright::supply::attach::AttachOptions;

use super::args::{parse_all, parse_destination, parse_platform, parse_reference, UploadArgs};
use super::stdout::{print_outcome, Outcome};

#[derive(Args, Debug)]
pub struct CopyArgs {
    /// The source: REGISTRY/REPOSITORY[:TAG][@DIGEST] (no tag: latest).
    #[arg(value_name = "SRC", value_parser = parse_reference)]
    pub source: String,
    /// Destinations: REGISTRY/REPOSITORY[:TAG] (no tag: the source's tag);
    /// REGISTRY/REPOSITORY@ (a trailing @) copies by digest only, writing no tag.
    #[arg(value_name = "DST", required = true, num_args = 1.., value_parser = parse_destination)]
    pub destinations: Vec<String>,
    /// Copy the whole index, every platform (the default).
    #[arg(long, conflicts_with = "platform")]
    pub all: bool,
    /// Copy only this platform (os/arch[/variant]) out of an index; the
    /// destinations then name that platform's manifest. A single image is
    /// copied only when it is of this platform.
    #[arg(long, value_name = "PLATFORM", value_parser = parse_platform)]
    pub platform: Option<Platform>,
    /// Copy the image only: not the signatures, SBOMs and attestations
    /// attached to it (the referrers API or `sha256-<hex>` tag, and
    /// cosign's legacy tags), which are carried along by default.
    #[arg(long)]
    pub no_referrers: bool,
    /// Also write cosign's legacy `sha256-<hex>.sig` / `.att` tags for the
    /// signatures and attestations carried along.
    #[arg(long, conflicts_with = "no_referrers")]
    pub cosign_tags: bool,
    /// Copy even to destinations that already name the digest: every blob
    /// is asked for there (HEAD) and what is missing is sent, which repairs
    /// a registry that lost a blob (`inspect --check` finds one); as
    /// regctl's --force-recursive.
    #[arg(long)]
    pub repair: bool,
    /// Print the copy report (source, digest, every destination and whether
    /// it names the digest, also when it was up to date already, blobs
    /// downloaded, per destination blobs uploaded/mounted/present and
    /// bytes, the artifacts carried along) as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub upload: UploadArgs,
}

/// `boxwright copy`.
pub async fn run(args: CopyArgs, reporter: SharedReporter) -> Result<()> {
    let src = parse_all(std::slice::from_ref(&args.source))?.remove(0);
    let dsts = (args.destinations.iter())
        .map(|s| CopyDestination::parse(s).with_context(|| format!("destination {s}")))
        .collect::<Result<Vec<_>>>()?;
    let mut opts = CopyOptions {
        push: args.upload.push_options()?,
        platform: args.platform.clone(),
        cache_dir: args.upload.cache_dir.clone(),
        no_referrers: args.no_referrers,
        repair: args.repair,
        attach: AttachOptions {
            legacy_tags: args.cosign_tags,
        },
    };
    super::stopped::on_stop(&mut opts.push, args.json, super::stopped::Shape::Nested);
    let report = boxwright::ops::copy::copy(&src, &dsts, opts, reporter.clone())
        .await
        .with_context(|| format!("copying {}", args.source))?;
    print_outcome(&reporter, args.json, &report)?;
    let title = format!("boxwright copy {}", args.source);
    super::push::append_summary(&summary::copy_summary(&title, &report), &reporter);
    if report.succeeded() {
        let how = if report.up_to_date {
            "already there".to_string()
        } else {
            format!(
                "{} manifests, {} blobs; {} blobs ({} bytes) downloaded",
                report.manifests, report.blobs, report.blobs_downloaded, report.bytes_downloaded
            )
        };
        reporter.log(
            Level::Info,
            &format!("copied {} ({}): {how}", report.source, report.digest),
        );
        if let Some(r) = &report.referrers {
            let notes: usize = r.subjects.iter().map(|c| c.notes.len()).sum();
            let legacy: usize = r.subjects.iter().map(|c| c.cosign_tags.len()).sum();
            let mut line = format!(
                "artifacts carried along: {} ({} cosign tags); {} blobs ({} bytes) downloaded",
                r.artifacts, legacy, r.blobs_downloaded, r.bytes_downloaded
            );
            if notes > 0 {
                line.push_str(&format!("; {notes} listed at the source could not be read"));
            }
            reporter.log(Level::Info, &line);
        }
    }
    match report.error() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

impl Outcome for CopyReport {
    fn warnings(&self) -> Vec<String> {
        self.push.as_ref().map(|p| p.warnings()).unwrap_or_default()
    }
    fn succeeded(&self) -> bool {
        CopyReport::succeeded(self)
    }
    fn digest(&self) -> &Digest {
        &self.digest
    }
}

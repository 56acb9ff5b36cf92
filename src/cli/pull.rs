//! `boxwright pull REF [--fallback REF]... -o PATH`: stdout carries the
//! digest (or the `--json` report); which registry served, skipped
//! references and cache figures go to stderr.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::{Args, ValueEnum};

use boxwright::cache::BlobCache;
use boxwright::image::remote::RemoteImages;
use boxwright::oci::Platform;
use boxwright::ops::pull::{self, PlatformChoice, PullFormat, PullOptions};
use boxwright::progress::{Level, SharedReporter};
use boxwright::registry::{CredentialStore, Reference};

use super::args::{parse_reference, ConnectionArgs};
use super::stdout::{print, print_json};

#[derive(Args, Debug)]
pub struct PullArgs {
    /// The image: REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST] (no tag: latest).
    #[arg(value_parser = parse_reference)]
    pub reference: String,
    /// Another copy of the image, tried in order when the ones before answer
    /// 404, 429, 5xx or cannot be reached (repeatable).
    #[arg(long, value_name = "REF", value_parser = parse_reference)]
    pub fallback: Vec<String>,
    /// Where to write: a layout directory (oci) or a file (archives).
    #[arg(short, long, value_name = "PATH")]
    pub output: PathBuf,
    /// os/arch[/variant], or `all` [default: all for oci and oci-archive,
    /// linux/amd64 for docker-archive].
    #[arg(long, value_name = "PLATFORM", value_parser = parse_platform_choice)]
    pub platform: Option<PlatformChoice>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = PullFormatArg::Oci)]
    pub format: PullFormatArg,
    /// Blob cache [default: $XDG_CACHE_HOME/boxwright/blobs].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Print a JSON report (digest, which registry served, platforms, cache
    /// figures) instead of the digest.
    #[arg(long)]
    pub json: bool,
}

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
pub enum PullFormatArg {
    /// An OCI image layout directory.
    Oci,
    /// A tar of the OCI layout (`skopeo ... oci-archive:FILE`).
    OciArchive,
    /// `docker load` / `podman load` format, one platform.
    DockerArchive,
}

fn parse_platform_choice(s: &str) -> Result<PlatformChoice, String> {
    if s == "all" {
        return Ok(PlatformChoice::All);
    }
    Platform::parse(s).map(PlatformChoice::One)
}

pub async fn run(args: PullArgs, reporter: SharedReporter) -> Result<()> {
    let references = std::iter::once(&args.reference)
        .chain(&args.fallback)
        .map(|s| Reference::parse(s))
        .collect::<Result<Vec<_>>>()?;
    let cache = BlobCache::new(args.cache_dir.clone())?;
    let images = RemoteImages::new(
        args.connection
            .options_with_cache(args.cache_dir.as_deref()),
        CredentialStore::from_env(),
        cache,
        reporter.clone(),
    )?;
    let opts = PullOptions {
        references,
        output: args.output.clone(),
        format: match args.format {
            PullFormatArg::Oci => PullFormat::Oci,
            PullFormatArg::OciArchive => PullFormat::OciArchive,
            PullFormatArg::DockerArchive => PullFormat::DockerArchive,
        },
        platform: args.platform.clone(),
    };
    let result = pull::pull(&images, &opts)
        .await
        .with_context(|| format!("pulling {}", args.reference))?;
    let s = &result.served;
    let via = if s.fallback {
        // Every reference tried before the one that served, in order.
        let not: Vec<&str> = s.skipped.iter().map(|a| a.reference.as_str()).collect();
        let not = if not.is_empty() {
            s.requested.clone()
        } else {
            not.join(", ")
        };
        format!(" (fallback; {not} did not serve)")
    } else {
        String::new()
    };
    reporter.log(
        Level::Info,
        &format!(
            "pulled {} from {}{via} into {}: {} blob(s) downloaded ({} bytes), {} from the cache",
            s.reference,
            s.registry,
            result.output.display(),
            result.cache.blobs_downloaded,
            result.cache.bytes_downloaded,
            result.cache.blobs_cached
        ),
    );
    if args.json {
        print_json(&result)
    } else {
        Ok(print(&format!("{}\n", result.digest))?)
    }
}

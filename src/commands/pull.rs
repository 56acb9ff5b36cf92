//! `boxwright pull REF [--fallback REF]... -o PATH`: stdout carries the
//! digest (or the `--json` report); which registry served, skipped
//! references and cache figures go to stderr.

use std::io::Write as _;

use anyhow::{Context as _, Result};

use boxwright::cache::BlobCache;
use boxwright::image::remote::RemoteImages;
use boxwright::ops::pull::{self, PullFormat, PullOptions};
use boxwright::progress::{Level, SharedReporter};
use boxwright::registry::{ClientOptions, CredentialStore, Reference};

use crate::cli::{PullArgs, PullFormatArg};

pub fn run(args: PullArgs, reporter: SharedReporter) -> Result<()> {
    let references = std::iter::once(&args.reference)
        .chain(&args.fallback)
        .map(|s| Reference::parse(s))
        .collect::<Result<Vec<_>>>()?;
    let mut client = ClientOptions {
        jobs_per_registry: usize::from(args.jobs_per_registry),
        insecure: args.insecure_registry.clone(),
        ca_file: args.ca_file.clone(),
        ..ClientOptions::default()
    };
    client.retry.max_retries = args.retries;
    let cache = BlobCache::new(args.cache_dir.clone())?;
    let images = RemoteImages::new(client, CredentialStore::from_env(), cache, reporter.clone())?;
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = rt
        .block_on(pull::pull(&images, &opts))
        .with_context(|| format!("pulling {}", args.reference))?;
    let s = &result.served;
    let via = if s.fallback {
        format!(" (fallback; {} did not serve)", s.requested)
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
    let mut out = crate::commands::stdout();
    if args.json {
        out.write_all(&serde_json::to_vec_pretty(&result)?)?;
        writeln!(out)?;
    } else {
        writeln!(out, "{}", result.digest)?;
    }
    out.flush()?;
    Ok(())
}

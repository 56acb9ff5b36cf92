//! `boxwright bench`: flags, and printing the report on stdout once the runs
//! are done: the tables, or the `--json` or `--csv` document (the tables
//! then go to stderr with the progress, unless `--quiet`). The measuring is
//! in [`boxwright::ops::bench`].

use std::path::PathBuf;

use anyhow::{anyhow, Result};
use clap::Args;

use boxwright::ops::bench::{self, BenchMode, BenchOptions, BenchTarget};
use boxwright::progress::{Level, SharedReporter};
use boxwright::registry::CredentialStore;
use boxwright::render;

use super::args::InsecureArgs;
use super::stdout::{print, print_json};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Repository to benchmark, REGISTRY/REPO (repeatable: registries are compared side by side).
    #[arg(long = "to", value_name = "REGISTRY/REPO", required = true, value_parser = BenchTarget::parse)]
    pub to: Vec<BenchTarget>,
    /// Blobs uploaded per run.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub blobs: u32,
    /// Size of each blob: a number with B, KB, MB, GB, KiB, MiB or GiB.
    #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = render::parse_size)]
    pub size: u64,
    /// Blobs in flight, comma-separated: one run per value.
    #[arg(long, value_name = "N,N,...", value_delimiter = ',', default_value = "1,4,16", value_parser = bench::parse_concurrency)]
    pub concurrency: Vec<usize>,
    /// Upload modes, comma-separated: monolithic, chunked, streamed.
    #[arg(long, value_name = "MODE,...", value_delimiter = ',', default_value = "monolithic,chunked", value_parser = BenchMode::parse)]
    pub mode: Vec<BenchMode>,
    /// PATCH size in chunked mode (GHCR refuses more than 4MiB).
    #[arg(long, value_name = "SIZE", default_value = "4MiB", value_parser = render::parse_size)]
    pub chunk_size: u64,
    /// Also pull every blob back (GET, digest-checked) and time it.
    #[arg(long)]
    pub pull: bool,
    /// Seed of the generated blobs, 0 to 2^53-1 [default: random; the report shows it].
    #[arg(long, value_parser = bench::parse_seed)]
    pub seed: Option<u64>,
    /// Print the report as JSON on stdout (the tables go to stderr).
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print the report as CSV on stdout, one line per registry, mode and
    /// concurrency (the tables go to stderr).
    #[arg(long)]
    pub csv: bool,
    #[command(flatten)]
    pub insecure: InsecureArgs,
    /// Extra CA certificates (PEM) to trust; SSL_CERT_FILE is honoured too.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Leave the uploaded blobs in the registries.
    #[arg(long)]
    pub keep: bool,
    /// Directory for the generated blobs (needs blobs x size free) [default: the temp dir].
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
}

/// Run the benchmark; Err (exit 1) when some transfer failed for good,
/// after the report is printed.
pub async fn run(args: BenchArgs, reporter: SharedReporter) -> Result<()> {
    let opts = BenchOptions {
        targets: args.to,
        blobs: args.blobs as usize,
        size: args.size,
        concurrency: args.concurrency,
        modes: args.mode,
        chunk_size: args.chunk_size,
        pull: args.pull,
        seed: args.seed.unwrap_or_else(bench::random_seed),
        keep: args.keep,
        insecure: args.insecure.insecure_registry,
        ca_file: args.ca_file,
        work_dir: args.work_dir,
    };
    let report = bench::bench(opts, CredentialStore::from_env(), reporter.clone()).await?;
    let tables = render::bench::tables(&report);
    if args.json || args.csv {
        // The document is the result; the tables stay for the eye, on
        // stderr, as `push --json` keeps its per-target lines there.
        reporter.log(Level::Info, &format!("\n{}", tables.trim_end()));
    }
    if args.json {
        print_json(&report)?;
    } else if args.csv {
        print(&render::bench::csv(&report))?;
    } else {
        print(&tables)?;
    }
    let failed = report.failed();
    if failed > 0 {
        return Err(anyhow!(
            "{failed} blob transfer(s) failed for good; the report counts them"
        ));
    }
    Ok(())
}

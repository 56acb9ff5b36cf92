//! Command-line definitions (clap derive). Raw flags are checked here, before
//! any work starts: `--jobs 0` and friends are refused with exit code 2.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "boxwright",
    version,
    about = "Daemonless, reproducible container-image builder that pushes to several registries at once"
)]
pub struct Cli {
    /// Print nothing but results (no progress, no logs).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Also print debug lines (requests, retries, cache decisions); never credentials.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build a recipe into an OCI image layout; prints the image digest.
    Build(BuildArgs),
    /// Show what an OCI layout holds: manifest, config, layers, sizes, digests.
    Inspect(InspectArgs),
    /// Measure upload (and pull) throughput, request latency and errors against registries.
    Bench(crate::commands::bench::BenchArgs),
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// The recipe (TOML).
    pub recipe: PathBuf,
    /// Output OCI layout directory [default: ./out/<image name>].
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Set a recipe variable: NAME=VALUE (repeatable; wins over the environment and [vars]).
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_set)]
    pub sets: Vec<(String, String)>,
    /// Threads for compression and layers [default: number of cores].
    #[arg(short, long, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,
    /// Layer compression.
    #[arg(long, value_enum, default_value_t = CompressionArg::Gzip)]
    pub compression: CompressionArg,
    /// Compression level [default: gzip 1, zstd 3].
    #[arg(long)]
    pub level: Option<i32>,
    /// Build context directory [default: the recipe's `context`, else its directory].
    #[arg(long)]
    pub context: Option<PathBuf>,
    /// Build only these platforms (comma-separated os/arch[/variant]) instead of the recipe's.
    #[arg(long, value_delimiter = ',')]
    pub platform: Option<Vec<String>>,
    /// Print one JSON document (digests, descriptors, diffIDs, timings) instead of the digest.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// OCI layout directory, optionally with :NAME to pick an image by its ref name.
    pub layout: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
pub enum CompressionArg {
    Gzip,
    Zstd,
    None,
}

fn parse_set(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not NAME=VALUE"))?;
    if !crate_is_name(k) {
        return Err(format!(
            "{k:?} is not a variable name (letters, digits and _, not starting with a digit)"
        ));
    }
    Ok((k.to_string(), v.to_string()))
}

fn crate_is_name(k: &str) -> bool {
    boxwright::recipe::vars::is_name(k)
}

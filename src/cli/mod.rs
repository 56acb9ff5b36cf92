//! The command line: clap definitions and one thin `run` per command, which
//! turns flags into the library's options, calls the library, and prints
//! the result on stdout (everything else goes to stderr through the
//! reporter). Flags shared by several commands are defined once in
//! [`args`] and flattened.

pub mod archive;
pub mod args;
pub mod attest;
pub mod bench;
pub mod build;
pub mod cache;
pub mod completions;
pub mod copy;
pub mod index;
pub mod inspect;
pub mod keygen;
pub mod login;
pub mod pull;
pub mod push;
pub mod sbom;
pub mod schema;
pub mod sign;
pub mod stdout;
pub mod stopped;
pub mod tags;
pub mod verify;

use anyhow::Result;
use clap::{Parser, Subcommand};

pub use stdout::{stdout, StdoutClosed};

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
    /// Stop the run when it takes longer than this (90s, 10m, 2h), as a
    /// SIGTERM would, and exit 124 [env: BOXWRIGHT_TIMEOUT].
    #[arg(long, global = true, value_name = "DURATION", env = "BOXWRIGHT_TIMEOUT",
          hide_env = true, value_parser = args::parse_duration)]
    pub timeout: Option<std::time::Duration>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build a recipe into an OCI image layout; prints the image digest.
    Build(build::BuildArgs),
    /// Show what an OCI layout or a registry image holds: manifest, config, layers, sizes, digests.
    Inspect(inspect::InspectArgs),
    /// Push an OCI layout to one or more registries at once; prints the digest.
    Push(push::PushArgs),
    /// Store credentials for a registry in docker's config.json (as `docker login`).
    Login(login::LoginArgs),
    /// Remove a registry's credentials from docker's config.json.
    Logout(login::LogoutArgs),
    /// Check that references name one image (HEAD only); exit 1 naming the odd ones out.
    Verify(verify::VerifyArgs),
    /// Tag lists of repositories side by side (follows pagination).
    Tags(tags::TagsArgs),
    /// Copy an image or multi-platform index between registries, digest preserved.
    Copy(copy::CopyArgs),
    /// Pull an image from the first registry that serves it (fallbacks) into
    /// an OCI layout or archive; prints the digest.
    Pull(pull::PullArgs),
    /// Measure upload (and pull) throughput, request latency and errors against registries.
    Bench(bench::BenchArgs),
    /// Assemble an OCI image index from single-platform images already in
    /// registries (by digest) and push it to every --to; prints its digest.
    Index(index::IndexArgs),
    /// Print a shell completion script (bash, zsh or fish) on stdout.
    Completions(completions::CompletionsArgs),
    /// Print the JSON Schema of the recipe format (for editors: taplo, Even
    /// Better TOML).
    Schema(schema::SchemaArgs),
    /// Make an ECDSA P-256 key pair for signing (cosign-compatible).
    Keygen(keygen::KeygenArgs),
    /// Sign pushed images on every registry named (cosign-compatible).
    Sign(sign::SignArgs),
    /// Attach a signed SBOM or provenance to pushed images on every registry named.
    Attest(attest::AttestArgs),
    /// Print the SBOM attached to a pushed image.
    Sbom(sbom::SbomArgs),
    /// The layer cache: its size (`stats`), and eviction (`prune`).
    Cache(cache::CacheArgs),
}

/// Run the parsed command line on the process's runtime.
pub async fn run(cli: Cli) -> Result<()> {
    let (reporter, _bars) = crate::ui::reporter(cli.quiet, cli.verbose);
    match cli.command {
        Command::Build(args) => build::run(args, reporter).await,
        Command::Inspect(args) => inspect::run(args, reporter).await,
        Command::Push(args) => push::run(args, reporter).await,
        Command::Login(args) => login::run_login(args, reporter).await,
        Command::Logout(args) => login::run_logout(args, reporter),
        Command::Verify(args) => verify::run(args, reporter).await,
        Command::Tags(args) => tags::run(args, reporter).await,
        Command::Copy(args) => copy::run(args, reporter).await,
        Command::Pull(args) => pull::run(args, reporter).await,
        Command::Bench(args) => bench::run(args, reporter).await,
        Command::Index(args) => index::run(args, reporter).await,
        Command::Completions(args) => completions::run(args),
        Command::Schema(args) => schema::run(args),
        Command::Keygen(args) => keygen::run(args, reporter),
        Command::Sign(args) => sign::run(args, reporter).await,
        Command::Attest(args) => attest::run(args, reporter).await,
        Command::Sbom(args) => sbom::run(args, reporter).await,
        Command::Cache(args) => cache::run(args),
    }
}

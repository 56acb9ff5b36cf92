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
    /// Push an OCI layout to one or more registries at once; prints the digest.
    Push(PushArgs),
    /// Store credentials for a registry in docker's config.json (as `docker login`).
    Login(LoginArgs),
    /// Remove a registry's credentials from docker's config.json.
    Logout(LogoutArgs),
    /// Check that references name one image (HEAD only); exit 1 naming the odd ones out.
    Verify(crate::commands::verify::VerifyArgs),
    /// Tag lists of repositories side by side (follows pagination).
    Tags(crate::commands::tags::TagsArgs),
    /// Copy an image or multi-platform index between registries, digest preserved.
    Copy(crate::commands::copy::CopyArgs),
    /// Pull an image from the first registry that serves it (fallbacks) into
    /// an OCI layout or archive; prints the digest.
    Pull(PullArgs),
    /// Measure upload (and pull) throughput, request latency and errors against registries.
    Bench(crate::commands::bench::BenchArgs),
    /// Assemble an OCI image index from single-platform images already in
    /// registries (by digest) and push it to every --to; prints its digest.
    Index(crate::commands::index::IndexArgs),
    /// Print a shell completion script (bash, zsh or fish) on stdout.
    Completions(crate::commands::completions::CompletionsArgs),
    /// Print the JSON Schema of the recipe format (for editors: taplo, Even
    /// Better TOML).
    Schema(crate::commands::schema::SchemaArgs),
}

/// Flags shared by `push` and `build --push`.
#[derive(Args, Debug, Clone)]
pub struct RegistryArgs {
    /// Requests in flight per registry.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs_per_registry: u16,
    /// Upload blobs in chunks of SIZE (e.g. 4MiB, 8MiB, 1048576) instead of one
    /// streamed PUT [default: whole blobs; 4 MiB chunks for big layers on ghcr.io].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub chunk_size: Option<u64>,
    /// Reach this registry (HOST[:PORT]) over plain HTTP (repeatable). Loopback
    /// hosts always are.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registry: Vec<String>,
    /// Extra CA certificates (PEM) to trust; SSL_CERT_FILE is honoured too.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Retries of a failed request or upload (429, 5xx, dropped connections)
    /// before the target fails.
    #[arg(long, value_name = "N", default_value_t = 6)]
    pub retries: u32,
    /// A repository (REGISTRY/REPO) that may already hold some blobs, e.g. an
    /// earlier push or the base image's: blobs are mounted from it instead of
    /// uploaded, on the same registry (repeatable).
    #[arg(long = "mount-from", value_name = "REPO", value_parser = parse_target)]
    pub mount_from: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// OCI layout directory, optionally with :NAME to pick an image by its ref name.
    pub layout: String,
    /// Destination REGISTRY/REPOSITORY[:TAG][@DIGEST] (repeatable; no tag: latest).
    #[arg(long = "to", value_name = "REF", required = true, value_parser = parse_target)]
    pub to: Vec<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Print the push report (per target: digest, blobs uploaded/mounted/present,
    /// bytes, retries, time) as JSON instead of the digest.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub after: AfterPushArgs,
}

/// What `push` and `build --push` do besides pushing.
#[derive(Args, Debug, Clone, Default)]
pub struct AfterPushArgs {
    /// Push by digest only: drop every tag (the recipe's and --to's) and put
    /// the image into each repository as REPO@DIGEST, e.g. one platform of a
    /// multi-platform build that `boxwright index` assembles later.
    #[arg(long)]
    pub by_digest: bool,
    /// After the push, check with HEAD requests (as `boxwright verify`, with
    /// the push's credentials) that every pushed reference names the digest;
    /// exit 1 otherwise. A tag read right after a push is retried a few
    /// times (eventually consistent registries).
    #[arg(long)]
    pub verify: bool,
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// The registry (ghcr.io, docker.io, HOST:PORT).
    pub registry: String,
    /// User name (any non-empty name for ghcr.io with a token).
    #[arg(short, long)]
    pub username: String,
    /// Read the password or token from stdin (the only way to give it).
    #[arg(long, required = true)]
    pub password_stdin: bool,
    /// Store the credentials without checking them with the registry (offline use).
    #[arg(long)]
    pub no_verify: bool,
    /// Reach the registry over plain HTTP when checking (loopback hosts always are).
    #[arg(long)]
    pub insecure: bool,
}

#[derive(Args, Debug)]
pub struct LogoutArgs {
    /// The registry (ghcr.io, docker.io, HOST:PORT).
    pub registry: String,
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
    /// Push to the recipe's [[target]]s (each with every tag) while building:
    /// each layer's upload starts as soon as it is compressed.
    #[arg(long)]
    pub push: bool,
    /// With --push: an extra destination REF (repeatable); one naming a
    /// recipe target's repository replaces that target's tags, keeping its
    /// credentials.
    #[arg(long = "to", value_name = "REF", requires = "push", value_parser = parse_target)]
    pub to: Vec<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    pub after: AfterPushArgs,
    /// Blob cache for registry bases [default: $XDG_CACHE_HOME/boxwright/blobs].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

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
    pub platform: Option<boxwright::ops::pull::PlatformChoice>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = PullFormatArg::Oci)]
    pub format: PullFormatArg,
    /// Blob cache [default: $XDG_CACHE_HOME/boxwright/blobs].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Reach this registry (HOST[:PORT]) over plain HTTP (repeatable). Loopback
    /// hosts always are.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registry: Vec<String>,
    /// Extra CA certificates (PEM) to trust; SSL_CERT_FILE is honoured too.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Retries of a failed blob download (429, 5xx, dropped connections).
    /// Resolving the reference retries once, then moves on to --fallback.
    #[arg(long, value_name = "N", default_value_t = 6)]
    pub retries: u32,
    /// Downloads in flight per registry.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs_per_registry: u16,
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

fn parse_reference(s: &str) -> Result<String, String> {
    boxwright::registry::Reference::parse(s)
        .map(|_| s.to_string())
        .map_err(|e| format!("{e:#}"))
}

fn parse_platform_choice(s: &str) -> Result<boxwright::ops::pull::PlatformChoice, String> {
    if s == "all" {
        return Ok(boxwright::ops::pull::PlatformChoice::All);
    }
    boxwright::oci::Platform::parse(s).map(boxwright::ops::pull::PlatformChoice::One)
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

/// `--to`: a reference that parses (checked again, with the same code, later).
fn parse_target(s: &str) -> Result<String, String> {
    boxwright::push::PushTarget::parse(s)
        .map(|_| s.to_string())
        .map_err(|e| format!("{e:#}"))
}

/// A byte size: `4194304`, `512KiB`, `4MiB`, `4M`, `1GiB`, `1G` (binary
/// units; `KB`/`MB`/`GB` are decimal). Zero is refused.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 4MiB, 8MiB, 1048576)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {s:?} (use KiB, MiB, GiB)"
            ))
        }
    };
    let v = n
        .checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))?;
    if v == 0 {
        return Err("the size must be at least 1 byte".into());
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("8MiB"), Ok(8 << 20));
        assert_eq!(parse_size("4M"), Ok(4 << 20));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("2kb"), Ok(2000));
        assert!(parse_size("0").is_err());
        assert!(parse_size("0MiB").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("4 parsecs").is_err());
    }
}

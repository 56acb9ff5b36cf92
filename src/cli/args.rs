//! Flags shared by several commands, defined once and flattened into each
//! command's arguments, and the parsers of raw values (references, sizes,
//! durations, `NAME=VALUE`). Values are checked here, before any work starts: clap
//! refuses a bad one with exit code 2.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;

use boxwright::oci::Platform;
use boxwright::progress::SharedReporter;
use boxwright::push::{parse_targets, PushOptions, PushTarget};
use boxwright::registry::{Client, ClientOptions, CredentialStore, KnownBlobs, Reference};
use boxwright::render::parse_size;

/// `--insecure-registry`: on its own for `bench`, which sets nothing else
/// of the connection.
#[derive(Args, Debug, Clone)]
pub struct InsecureArgs {
    /// Reach this registry (HOST[:PORT]) over plain HTTP (repeatable). Loopback
    /// hosts always are.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registry: Vec<String>,
}

/// How the registry client connects: the flags of every command that talks
/// to registries (`bench` takes only `--insecure-registry`, `login` its own
/// `--insecure`).
#[derive(Args, Debug, Clone)]
pub struct ConnectionArgs {
    /// Requests in flight per registry.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs_per_registry: u16,
    #[command(flatten)]
    pub insecure: InsecureArgs,
    /// Extra CA certificates (PEM) to trust; SSL_CERT_FILE is honoured too.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Retries of a failed request or transfer (429, 5xx, dropped connections).
    /// `pull` resolves a reference with one retry, then moves on to --fallback.
    #[arg(long, value_name = "N", default_value_t = 6)]
    pub retries: u32,
}

impl ConnectionArgs {
    /// The client's options from the flags, remembering where blobs live in
    /// the record next to the blob cache at `cache_dir` (`--cache-dir`, else
    /// the default cache).
    pub fn options_with_cache(&self, cache_dir: Option<&Path>) -> ClientOptions {
        ClientOptions {
            known: KnownBlobs::for_cache(cache_dir).map(Arc::new),
            ..self.options()
        }
    }

    /// The client's options from the flags.
    pub fn options(&self) -> ClientOptions {
        let mut o = ClientOptions {
            jobs_per_registry: usize::from(self.jobs_per_registry),
            insecure: self.insecure.insecure_registry.clone(),
            ca_file: self.ca_file.clone(),
            ..ClientOptions::default()
        };
        o.retry.max_retries = self.retries;
        o
    }

    /// The client, with credentials from docker's config.json (or
    /// `$REGISTRY_AUTH_FILE`).
    pub fn client(&self, reporter: &SharedReporter) -> Result<Client> {
        Client::new(
            self.options(),
            CredentialStore::from_env(),
            reporter.clone(),
        )
    }
}

/// The flags of commands that upload: `push`, `build --push`, `copy`, `index`.
#[derive(Args, Debug, Clone)]
pub struct UploadArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Upload blobs in `PATCH` requests of SIZE (e.g. 4MiB, 8MiB, 1048576),
    /// each with its `Content-Range`, then a `PUT` [default: each blob whole,
    /// in the `PUT` that closes its session; a layer `build --push` streams,
    /// in one `PATCH`; 4 MiB chunks for big layers on ghcr.io].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub chunk_size: Option<u64>,
    /// A repository (REGISTRY/REPO) that may already hold some blobs, e.g. an
    /// earlier push or the base image's: blobs are mounted from it instead of
    /// uploaded, on the same registry (repeatable).
    #[arg(long = "mount-from", value_name = "REPO", value_parser = parse_target)]
    pub mount_from: Vec<String>,
    /// Blob cache directory: base layers, and blobs copied across
    /// registries [default: $XDG_CACHE_HOME/boxwright/blobs].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

impl UploadArgs {
    /// The client's options, with the record of where blobs live next to
    /// the blob cache.
    pub fn client_options(&self) -> ClientOptions {
        self.connection
            .options_with_cache(self.cache_dir.as_deref())
    }

    /// The pusher's options from the flags.
    pub fn push_options(&self) -> Result<PushOptions> {
        let mount_sources = parse_targets(&self.mount_from)?
            .into_iter()
            .map(|t| t.reference)
            .collect();
        Ok(PushOptions {
            client: self.client_options(),
            chunk_size: self.chunk_size,
            mount_sources,
            watch: None,
        })
    }
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

/// A reference that parses (bad input otherwise), kept as written.
pub fn parse_reference(s: &str) -> Result<String, String> {
    checked(s, Reference::parse)
}

/// `--to`: a push target that parses (checked again, with the same code, later).
pub fn parse_target(s: &str) -> Result<String, String> {
    checked(s, PushTarget::parse)
}

/// A `copy` destination: a reference, or `REPO@` (by digest only).
pub fn parse_destination(s: &str) -> Result<String, String> {
    checked(s, boxwright::ops::copy::CopyDestination::parse)
}

/// `s` as written, once `parse` takes it; its error with its causes else.
fn checked<T>(s: &str, parse: fn(&str) -> Result<T>) -> Result<String, String> {
    parse(s)
        .map(|_| s.to_string())
        .map_err(|e| format!("{e:#}"))
}

/// References already checked by clap, parsed (errors are bad input).
pub fn parse_all(refs: &[String]) -> Result<Vec<Reference>> {
    refs.iter()
        .map(|s| Reference::parse(s).with_context(|| format!("reference {s}")))
        .collect()
}

/// `os/arch[/variant]`.
pub fn parse_platform(s: &str) -> Result<Platform, String> {
    Platform::parse(s)
}

/// `--set NAME=VALUE`.
pub fn parse_set(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not NAME=VALUE"))?;
    if !boxwright::recipe::vars::is_name(k) {
        return Err(format!(
            "{k:?} is not a variable name (letters, digits and _, not starting with a digit)"
        ));
    }
    Ok((k.to_string(), v.to_string()))
}

/// The longest `--timeout`: 30 days.
const MAX_TIMEOUT: Duration = Duration::from_secs(30 * 24 * 3600);

/// A duration: a whole number of seconds (`90`), or a whole number with a
/// unit `s`, `m` or `h` (`90s`, `10m`, `2h`), as `timeout(1)` reads it.
/// Zero and more than 30 days are refused. The value may come from the
/// environment, which a user does not see on the command line: the error
/// names both sources.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    duration(s).map_err(|e| {
        format!(
            "{e}; it is the value of --timeout, or of BOXWRIGHT_TIMEOUT when no --timeout is given"
        )
    })
}

fn duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit_secs = match unit.trim() {
        "" | "s" => Some(1),
        "m" => Some(60),
        "h" => Some(3600),
        _ => None,
    };
    let (Some(unit_secs), Ok(n)) = (unit_secs, num.parse::<u64>()) else {
        return Err(format!(
            "{s:?} is not a duration (expected a whole number of seconds, or one with s, m or h: 90s, 10m, 2h)"
        ));
    };
    let d = Duration::from_secs(n.saturating_mul(unit_secs));
    if d.is_zero() || d > MAX_TIMEOUT {
        return Err(format!(
            "{s:?}: a duration is more than 0 s and at most 30 days"
        ));
    }
    Ok(d)
}

//! `boxwright cache stats` and `boxwright cache prune`: the layer cache's
//! size, and eviction down to a bound (least recently used first).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};

use boxwright::build::cache::{CacheStats, LayerCache, Pruned, DEFAULT_MAX};
use boxwright::cache::BlobCache;
use boxwright::render::bytes::human_bytes;

use super::stdout::{print, print_json};
use boxwright::bail_input;
use boxwright::error::bad_input;
use boxwright::render::parse_size;

/// The layer cache's flags, shared by `build` and `cache`.
#[derive(Args, Debug, Clone)]
pub struct LayerCacheArgs {
    /// Size bound of the layer cache: the least recently used layers are
    /// removed after a build to stay under it (e.g. 10GiB, 512MiB)
    /// [default: $BOXWRIGHT_CACHE_MAX, else 10GiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub cache_max: Option<u64>,
}

impl LayerCacheArgs {
    /// The layer cache beside the blob cache at `dir` (the default one when `None`).
    pub fn open(&self, dir: Option<PathBuf>) -> Result<Arc<LayerCache>> {
        let explicit = dir.is_some();
        let blobs = BlobCache::new(dir)?;
        Ok(Arc::new(LayerCache::open(blobs, explicit, self.max()?)?))
    }

    /// `--cache-max`, else `$BOXWRIGHT_CACHE_MAX` (a bad value is named as
    /// the variable's), else 10 GiB.
    pub fn max(&self) -> Result<u64> {
        if let Some(m) = self.cache_max {
            return Ok(m);
        }
        match std::env::var("BOXWRIGHT_CACHE_MAX") {
            Ok(v) if !v.is_empty() => {
                parse_size(&v).map_err(|e| bad_input(format!("BOXWRIGHT_CACHE_MAX={v:?}: {e}")))
            }
            _ => Ok(DEFAULT_MAX),
        }
    }
}

#[derive(Args, Debug)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub command: CacheCommand,
}

#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// How many layers the layer cache holds and how big they are.
    Stats(StatsArgs),
    /// Remove the least recently used layers until the cache fits --max-size.
    Prune(PruneArgs),
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Blob cache directory, as given to `build --cache-dir` (the layer
    /// cache is its `layers/`) [default: $XDG_CACHE_HOME/boxwright/blobs,
    /// layers in $XDG_CACHE_HOME/boxwright/layers].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    #[command(flatten)]
    pub layer_cache: LayerCacheArgs,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Blob cache directory, as given to `build --cache-dir` (the layer
    /// cache is its `layers/`) [default: $XDG_CACHE_HOME/boxwright/blobs,
    /// layers in $XDG_CACHE_HOME/boxwright/layers].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Keep at most this many bytes of layers [default: --cache-max, else 10GiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_size: Option<u64>,
    #[command(flatten)]
    pub layer_cache: LayerCacheArgs,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: CacheArgs) -> Result<()> {
    match args.command {
        CacheCommand::Stats(a) => {
            let stats = match made(a.cache_dir)? {
                Made::Cache(dir) => a.layer_cache.open(dir)?.stats(),
                Made::Nothing(dir) => empty(dir, a.layer_cache.max()?),
            };
            if a.json {
                return print_json(&stats);
            }
            Ok(print(&stats_text(&stats))?)
        }
        CacheCommand::Prune(a) => {
            let made = made(a.cache_dir)?;
            let max = match a.max_size {
                Some(m) => m,
                None => a.layer_cache.max()?,
            };
            let pruned = match made {
                Made::Cache(dir) => a.layer_cache.open(dir)?.prune(max)?,
                Made::Nothing(dir) => Pruned {
                    removed_entries: 0,
                    removed_bytes: 0,
                    after: empty(dir, max),
                },
            };
            if a.json {
                return print_json(&pruned);
            }
            Ok(print(&format!(
                "removed {} layers ({})\n{}",
                pruned.removed_entries,
                human_bytes(pruned.removed_bytes),
                stats_text(&pruned.after)
            ))?)
        }
    }
}

/// A `--cache-dir` given to `cache stats` or `cache prune` must be a cache
/// already: a mistyped one is named, not created empty and reported as
/// holding nothing.
fn existing(dir: Option<PathBuf>) -> Result<Option<PathBuf>> {
    match &dir {
        Some(d) if !d.is_dir() => bail_input!(
            "--cache-dir {}: no such directory; give the directory `build --cache-dir` used",
            d.display()
        ),
        _ => Ok(dir),
    }
}

/// Whether a build made the layer cache that `cache stats` and `cache
/// prune` read.
enum Made {
    /// It is there: open it (with the `--cache-dir`, if any).
    Cache(Option<PathBuf>),
    /// It is not, at this path: nothing to report or remove, and nothing is
    /// created to say so.
    Nothing(PathBuf),
}

fn made(dir: Option<PathBuf>) -> Result<Made> {
    let dir = existing(dir)?;
    let root = match &dir {
        Some(d) => d.clone(),
        None => boxwright::cache::default_dir()
            .context("no cache directory: set XDG_CACHE_HOME or HOME, or pass --cache-dir")?,
    };
    let layers = LayerCache::dir_for(&root, dir.is_some());
    Ok(if layers.is_dir() {
        Made::Cache(dir)
    } else {
        Made::Nothing(layers)
    })
}

fn empty(dir: PathBuf, max_bytes: u64) -> CacheStats {
    CacheStats {
        dir,
        entries: 0,
        bytes: 0,
        max_bytes,
    }
}

fn stats_text(s: &CacheStats) -> String {
    format!(
        "{}: {} layers, {} of {}\n",
        s.dir.display(),
        s.entries,
        human_bytes(s.bytes),
        human_bytes(s.max_bytes)
    )
}

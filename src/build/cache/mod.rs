//! The layer cache: a layer whose inputs are unchanged is copied from an
//! earlier build instead of being built again.
//!
//! `<layers>/<key>.json` names the layer a key built (digest, size, media
//! type, diffID); the blob itself is in the blob cache. Every hit is checked:
//! the blob is hashed before it is linked (or copied) into the layout, and a missing,
//! damaged or mismatched entry is a miss (and removed), never a wrong layer.
//! Entries and blobs are written through temp files and renamed, so two
//! builds can share the cache. An entry's mtime is its last use: eviction
//! removes the least recently used first, down to a size bound.

pub mod key;

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};

use crate::cache::BlobCache;
use crate::image::layout::LayoutWriter;
use crate::layer::{BuiltLayer, Compression, HashingWriter};
use crate::oci::{Descriptor, Digest};
use crate::recipe::LayerPlan;

pub use key::Key;
use key::StatIndex;

/// The default size bound: 10 GiB.
pub const DEFAULT_MAX: u64 = 10 << 30;

/// The cached layers, next to the blob cache that holds their blobs.
pub struct LayerCache {
    dir: PathBuf,
    blobs: BlobCache,
    max: u64,
    index: Mutex<StatIndex>,
}

/// What one entry says.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    media_type: String,
    digest: Digest,
    size: u64,
    #[serde(rename = "diffID")]
    diff_id: Digest,
    tar_size: u64,
}

/// What `cache stats` reports.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheStats {
    pub dir: PathBuf,
    pub entries: usize,
    /// Bytes of the layer blobs the entries name (each blob once).
    pub bytes: u64,
    pub max_bytes: u64,
}

/// What a prune removed.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pruned {
    pub removed_entries: usize,
    pub removed_bytes: u64,
    pub after: CacheStats,
}

impl LayerCache {
    /// The cache beside `blobs`: `<blob cache>/../layers` for the default
    /// blob cache, `<blob cache>/layers` for a `--cache-dir`. `max` bounds
    /// its size.
    pub fn open(blobs: BlobCache, explicit_dir: bool, max: u64) -> Result<LayerCache> {
        let dir = match blobs.root().parent() {
            Some(p) if !explicit_dir => p.join("layers"),
            _ => blobs.root().join("layers"),
        };
        fs::create_dir_all(&dir)
            .with_context(|| format!("creating the layer cache {}", dir.display()))?;
        let index = Mutex::new(StatIndex::load(&dir.join("stat-index")));
        Ok(LayerCache {
            dir,
            blobs,
            max,
            index,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key of `plan` built with these settings, file contents hashed on `pool`.
    pub fn key(
        &self,
        plan: &LayerPlan,
        mtime: u64,
        compression: Compression,
        pool: &rayon::ThreadPool,
    ) -> Result<Key> {
        key::layer_key(plan, mtime, compression, &self.index, pool)
    }

    fn entry_path(&self, key: &Key) -> PathBuf {
        self.dir.join(format!("{}.json", key.hex()))
    }

    /// The layer `key` built, copied into `layout` after checking its
    /// digest; `None` when there is no good entry (a bad one is removed).
    pub fn get(&self, key: &Key, layout: &LayoutWriter) -> Result<Option<BuiltLayer>> {
        let entry = self.entry_path(key);
        let Some(record) = read_record(&entry) else {
            let _ = fs::remove_file(&entry);
            return Ok(None);
        };
        let src = self.blobs.path(&record.digest);
        let Ok(mut f) = open_regular(&src, record.size) else {
            let _ = fs::remove_file(&entry);
            return Ok(None);
        };
        // Hashed here, then linked (or copied) into the layout.
        let mut w = HashingWriter::new(std::io::sink());
        let mut r = std::io::BufReader::with_capacity(1 << 20, (&mut f).take(record.size));
        let read = std::io::copy(&mut r, &mut w);
        let (_, digest, size) = w.finish();
        if read.is_err() || digest != record.digest || size != record.size {
            // A damaged blob: neither it nor the entry may be used again.
            let _ = fs::remove_file(&entry);
            let _ = fs::remove_file(&src);
            return Ok(None);
        }
        layout.import_blob(&src, &digest)?;
        // The entry's mtime is its last use.
        let _ = File::options()
            .write(true)
            .open(&entry)
            .and_then(|f| f.set_modified(SystemTime::now()));
        Ok(Some(BuiltLayer {
            descriptor: Descriptor::new(&record.media_type, record.digest, record.size),
            diff_id: record.diff_id,
            tar_size: record.tar_size,
        }))
    }

    /// Remember that `key` built `layer`, whose blob is at `blob`.
    pub fn put(&self, key: &Key, layer: &BuiltLayer, blob: &Path) -> Result<()> {
        let d = &layer.descriptor;
        let dest = self.blobs.path(&d.digest);
        if !self.blobs.contains(&d.digest, d.size) {
            let dir = dest.parent().ok_or_else(|| anyhow!("no blob directory"))?;
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let n = NEXT.fetch_add(1, Ordering::SeqCst);
            let tmp = dir.join(format!(".tmp-layer-{}-{n}", std::process::id()));
            let _ = fs::remove_file(&tmp);
            if fs::hard_link(blob, &tmp).is_err() {
                fs::copy(blob, &tmp)
                    .with_context(|| format!("copying a layer into {}", dir.display()))?;
            }
            fs::rename(&tmp, &dest)
                .with_context(|| format!("storing a layer at {}", dest.display()))?;
        }
        let record = Record {
            media_type: d.media_type.clone(),
            digest: d.digest.clone(),
            size: d.size,
            diff_id: layer.diff_id.clone(),
            tar_size: layer.tar_size,
        };
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.dir)?;
        serde_json::to_writer(&mut tmp, &record)?;
        tmp.flush()?;
        tmp.persist(self.entry_path(key))
            .map_err(|e| anyhow!("storing a layer cache entry: {}", e.error))?;
        Ok(())
    }

    /// Save what was learnt of file hashes, and keep the cache under its bound.
    pub fn finish(&self) -> Result<Pruned> {
        self.index
            .lock()
            .expect("no panics with the lock")
            .save(&self.dir.join("stat-index"))?;
        self.prune(self.max)
    }

    /// How many entries there are and how big their blobs are.
    pub fn stats(&self) -> CacheStats {
        let entries = self.entries();
        let mut seen = HashSet::new();
        let bytes = entries
            .iter()
            .filter(|e| seen.insert(e.record.digest.clone()))
            .map(|e| e.record.size)
            .sum();
        CacheStats {
            dir: self.dir.clone(),
            entries: entries.len(),
            bytes,
            max_bytes: self.max,
        }
    }

    /// Remove the least recently used entries (and the blobs no other entry
    /// names) until the blobs take at most `max` bytes; also stray temp files
    /// older than an hour.
    pub fn prune(&self, max: u64) -> Result<Pruned> {
        let mut entries = self.entries();
        entries.sort_by_key(|e| e.used);
        let mut total: u64 = 0;
        let mut refs: std::collections::HashMap<Digest, usize> = Default::default();
        for e in &entries {
            let n = refs.entry(e.record.digest.clone()).or_default();
            if *n == 0 {
                total += e.record.size;
            }
            *n += 1;
        }
        let (mut removed_entries, mut removed_bytes) = (0, 0);
        for e in &entries {
            if total <= max {
                break;
            }
            let _ = fs::remove_file(&e.path);
            removed_entries += 1;
            let n = refs.get_mut(&e.record.digest).expect("counted above");
            *n -= 1;
            if *n == 0 {
                let _ = fs::remove_file(self.blobs.path(&e.record.digest));
                total -= e.record.size;
                removed_bytes += e.record.size;
            }
        }
        self.remove_stray_temps();
        Ok(Pruned {
            removed_entries,
            removed_bytes,
            after: CacheStats {
                max_bytes: max,
                ..self.stats()
            },
        })
    }

    fn entries(&self) -> Vec<Entry> {
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        dir.filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .filter_map(|e| {
                let path = e.path();
                let record = read_record(&path)?;
                let used = e.metadata().ok()?.modified().ok()?;
                Some(Entry { path, record, used })
            })
            .collect()
    }

    fn remove_stray_temps(&self) {
        let old = SystemTime::now() - Duration::from_secs(3600);
        let dirs = [self.dir.clone(), self.blobs.root().join("sha256")];
        for e in dirs.iter().filter_map(|d| fs::read_dir(d).ok()).flatten() {
            let Ok(e) = e else { continue };
            let stale = e
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < old);
            if stale && e.file_name().to_string_lossy().starts_with(".tmp-") {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

struct Entry {
    path: PathBuf,
    record: Record,
    used: SystemTime,
}

/// An entry's record, or `None` when it is missing, too big or not one.
fn read_record(path: &Path) -> Option<Record> {
    let mut buf = Vec::new();
    File::open(path)
        .ok()?
        .take(64 * 1024)
        .read_to_end(&mut buf)
        .ok()?;
    serde_json::from_slice(&buf).ok()
}

/// `path` opened without following a symlink, if it is a regular file of `size` bytes.
fn open_regular(path: &Path, size: u64) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let m = f.metadata()?;
    if !m.is_file() || m.len() != size {
        return Err(std::io::Error::other("not the cached blob"));
    }
    Ok(f)
}

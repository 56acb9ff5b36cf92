//! The layer cache: a layer whose inputs are unchanged is copied from an
//! earlier build instead of being built again.
//!
//! `<layers>/<key>.json` names the layer a key built (digest, size, media
//! type, diffID); the blob itself is in the blob cache. Every hit is checked:
//! the blob is hashed before it is linked (or copied) into the layout (ahead
//! of the hit, while the recipe is planned, for the blobs the recipe's last
//! build used: `ahead.rs`), and a missing, damaged or mismatched entry is a
//! miss (and removed), never a wrong layer.
//! Entries and blobs are written through temp files and renamed, so two
//! builds can share the cache. An entry's mtime is its last use: eviction
//! removes the least recently used first, down to a size bound.

mod ahead;
pub mod key;

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, Context, Result};
use rayon::ThreadPool;
use serde::{Deserialize, Serialize};

use crate::cache::BlobCache;
use crate::image::layout::LayoutWriter;
use crate::input::open_own;
use crate::layer::BuiltLayer;
use crate::oci::Hashing;
use crate::oci::{Descriptor, Digest};
use crate::recipe::{Canon, LayerPlan, Stamp};
use ahead::Ahead;
use sha2::{Digest as _, Sha256};

pub use key::Key;
use key::{KeyMemo, StatIndex};

/// The default size bound: 10 GiB.
pub const DEFAULT_MAX: u64 = 10 << 30;

/// The cached layers, next to the blob cache that holds their blobs.
pub struct LayerCache {
    dir: PathBuf,
    blobs: BlobCache,
    max: u64,
    /// Loaded when a key is first taken by a walk.
    index: OnceLock<Mutex<StatIndex>>,
    memo: Mutex<KeyMemo>,
    /// The recipe being built ([`LayerCache::expect`]) and the blobs
    /// checked ahead for it.
    recipe: OnceLock<(String, Arc<Ahead>)>,
    /// The blobs this build took from the cache or put into it.
    used: Mutex<Vec<Digest>>,
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
    /// [`Record::seal`] of the other fields and the entry's key: an entry
    /// edited, or moved to another key's name, does not match it.
    #[serde(default)]
    seal: String,
}

impl Record {
    fn seal(&self, key: &Key) -> String {
        let mut c = Canon::new(b"boxwright layer cache entry 1");
        c.bytes(key.hex().as_bytes());
        c.bytes(self.media_type.as_bytes());
        c.bytes(self.digest.as_str().as_bytes());
        c.bytes(&self.size.to_be_bytes());
        c.bytes(self.diff_id.as_str().as_bytes());
        c.bytes(&self.tar_size.to_be_bytes());
        hex::encode(c.finish())
    }
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
        let dir = LayerCache::dir_for(blobs.root(), explicit_dir);
        crate::cache::own_dir(blobs.root(), &dir)?;
        fs::create_dir_all(&dir)
            .with_context(|| format!("creating the layer cache {}", dir.display()))?;
        let index = OnceLock::new();
        let memo = Mutex::new(KeyMemo::load(&dir.join("key-memo")));
        Ok(LayerCache {
            dir,
            blobs,
            max,
            index,
            memo,
            recipe: OnceLock::new(),
            used: Mutex::default(),
        })
    }

    /// Where [`LayerCache::open`] keeps the cache beside the blob cache at
    /// `blob_root`.
    pub fn dir_for(blob_root: &Path, explicit_dir: bool) -> PathBuf {
        match blob_root.parent() {
            Some(p) if !explicit_dir => p.join("layers"),
            _ => blob_root.join("layers"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A build of `recipe` is starting: check, on a thread of its own, the
    /// blobs its last build took from the cache, which are its likely hits.
    pub fn expect(&self, recipe: &Path) {
        let Some(id) = recipe_id(recipe) else {
            return;
        };
        let blobs = read_recent(&self.dir.join(RECENT))
            .remove(&id)
            .unwrap_or_default()
            .into_iter()
            .map(|d| {
                let path = self.blobs.path(&d);
                (d, path)
            })
            .collect();
        let _ = self.recipe.set((id, Ahead::start(blobs)));
    }

    /// The key of `plan` built with `settings` ([`key::settings`]):
    /// remembered for the stamps its planning walk saw, or taken by
    /// [`LayerCache::key_now`] (and remembered when that walk saw the same
    /// stamps, all settled).
    pub fn key(&self, plan: &LayerPlan, settings: &[u8; 32], pool: &ThreadPool) -> Result<Key> {
        let id = KeyMemo::id(settings, &plan.stamps());
        if let Some(k) = self.memo.lock().expect("no panics with the lock").get(&id) {
            return Ok(k);
        }
        let at = SystemTime::now();
        let (k, seen) = key::layer_key(plan, settings, self.index(), pool)?;
        if seen == plan.stamps() && key::settled(seen.newest_change_ns, at) {
            self.memo
                .lock()
                .expect("no panics with the lock")
                .put(id, &k);
        }
        Ok(k)
    }

    /// The key of `plan` from its entries as they are now, file contents
    /// hashed on `pool` (those whose stamps the index knows are not read).
    pub fn key_now(&self, plan: &LayerPlan, settings: &[u8; 32], pool: &ThreadPool) -> Result<Key> {
        Ok(key::layer_key(plan, settings, self.index(), pool)?.0)
    }

    fn index(&self) -> &Mutex<StatIndex> {
        self.index
            .get_or_init(|| Mutex::new(StatIndex::load(&self.dir.join("stat-index"))))
    }

    fn entry_path(&self, key: &Key) -> PathBuf {
        self.dir.join(format!("{}.json", key.hex()))
    }

    /// The layer `key` built, copied into `layout` after checking its
    /// digest; `None` when there is no good entry (a bad one is removed).
    pub fn get(&self, key: &Key, layout: &LayoutWriter) -> Result<Option<BuiltLayer>> {
        let entry = self.entry_path(key);
        let Some(record) = read_record(&entry).filter(|r| r.seal == r.seal(key)) else {
            let _ = fs::remove_file(&entry);
            return Ok(None);
        };
        let src = self.blobs.path(&record.digest);
        let Ok(mut f) = open_regular(&src, record.size) else {
            let _ = fs::remove_file(&entry);
            return Ok(None);
        };
        // Hashed here (unless this very file was hashed ahead), then linked
        // (or copied) into the layout.
        let ahead = self.recipe.get().and_then(|(_, a)| a.wait(&record.digest));
        let checked = ahead.is_some_and(|stamp| {
            f.metadata()
                .is_ok_and(|m| Stamp::of(&m) == stamp && m.len() == record.size)
        });
        if !checked {
            let mut w = Hashing::new(std::io::sink());
            let mut r = std::io::BufReader::with_capacity(1 << 20, (&mut f).take(record.size));
            let read = std::io::copy(&mut r, &mut w);
            let (_, digest, size) = w.finish();
            if read.is_err() || digest != record.digest || size != record.size {
                // A damaged blob: neither it nor the entry may be used again.
                let _ = fs::remove_file(&entry);
                let _ = fs::remove_file(&src);
                return Ok(None);
            }
        }
        layout.import_opened(&f, &src, &record.digest, record.size)?;
        self.used
            .lock()
            .expect("no panics with the lock")
            .push(record.digest.clone());
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
        // A blob of that size already there is kept unread: every hit hashes
        // its blob, and one that is damaged is removed then and stored again.
        let present = fs::symlink_metadata(&dest).is_ok_and(|m| m.is_file() && m.len() == d.size);
        if !present {
            // A directory there (a restored cache) would refuse the rename.
            crate::cache::clear_for_file(&dest);
            let dir = dest.parent().ok_or_else(|| anyhow!("no blob directory"))?;
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let n = NEXT.fetch_add(1, Ordering::SeqCst);
            let tmp = dir.join(format!(".tmp-layer-{}-{n}", std::process::id()));
            let _ = fs::remove_file(&tmp);
            let stored = (|| {
                if fs::hard_link(blob, &tmp).is_err() {
                    fs::copy(blob, &tmp)
                        .with_context(|| format!("copying a layer into {}", dir.display()))?;
                }
                fs::rename(&tmp, &dest)
                    .with_context(|| format!("storing a layer at {}", dest.display()))
            })();
            if stored.is_err() {
                // A part copied into a full disk would stay there and fill it.
                let _ = fs::remove_file(&tmp);
            }
            stored?;
        }
        self.used
            .lock()
            .expect("no panics with the lock")
            .push(d.digest.clone());
        let mut record = Record {
            media_type: d.media_type.clone(),
            digest: d.digest.clone(),
            size: d.size,
            diff_id: layer.diff_id.clone(),
            tar_size: layer.tar_size,
            seal: String::new(),
        };
        record.seal = record.seal(key);
        let entry = self.entry_path(key);
        make_way(&entry)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.dir)
            .with_context(|| format!("storing an entry in {}", self.dir.display()))?;
        let stored = || format!("storing {}", entry.display());
        serde_json::to_writer(&mut tmp, &record).with_context(stored)?;
        tmp.flush().with_context(stored)?;
        tmp.persist(&entry)
            .map_err(|e| anyhow!("storing {}: {}", entry.display(), e.error))?;
        Ok(())
    }

    /// Save what was learnt of file hashes and keys, and keep the cache
    /// under its bound.
    pub fn finish(&self) -> Result<Pruned> {
        if let Some((_, ahead)) = self.recipe.get() {
            ahead.stop();
        }
        if let Some(index) = self.index.get() {
            index
                .lock()
                .expect("no panics with the lock")
                .save(&self.dir.join("stat-index"))?;
        }
        self.memo
            .lock()
            .expect("no panics with the lock")
            .save(&self.dir.join("key-memo"))?;
        if let Some((id, _)) = self.recipe.get() {
            let used = std::mem::take(&mut *self.used.lock().expect("no panics with the lock"));
            write_recent(&self.dir.join(RECENT), id, used)?;
        }
        self.prune(self.max)
    }

    /// How many entries there are and how big their blobs are.
    pub fn stats(&self) -> CacheStats {
        self.stats_of(&self.entries(), self.max)
    }

    /// The stats of these entries, bounded by `max`.
    fn stats_of(&self, entries: &[Entry], max: u64) -> CacheStats {
        let mut seen = HashSet::new();
        let bytes = entries
            .iter()
            .filter(|e| seen.insert(e.record.digest.clone()))
            .fold(0u64, |sum, e| sum.saturating_add(e.record.size));
        CacheStats {
            dir: self.dir.clone(),
            entries: entries.len(),
            bytes,
            max_bytes: max,
        }
    }

    /// Remove the least recently used entries (and the blobs no other entry
    /// names) until the blobs take at most `max` bytes; also stray temp files
    /// older than an hour. Each entry is read once: every build prunes, and
    /// the cache may hold thousands of entries.
    pub fn prune(&self, max: u64) -> Result<Pruned> {
        // An entry no hit can take (damaged, edited, under another key's
        // name) goes first: it names no layer.
        let mut removed_entries = 0;
        let mut entries = Vec::new();
        for (path, entry) in self.entry_files() {
            match entry {
                Some(e) => entries.push(e),
                None if fs::remove_file(&path).is_ok() => removed_entries += 1,
                None => {}
            }
        }
        entries.sort_by_key(|e| e.used);
        let mut total: u64 = 0;
        let mut refs: std::collections::HashMap<Digest, usize> = Default::default();
        for e in &entries {
            let n = refs.entry(e.record.digest.clone()).or_default();
            if *n == 0 {
                // Sizes come from files anyone could edit: no overflow.
                total = total.saturating_add(e.record.size);
            }
            *n += 1;
        }
        let mut removed_bytes = 0u64;
        let mut gone = 0;
        for e in &entries {
            if total <= max {
                break;
            }
            let _ = fs::remove_file(&e.path);
            removed_entries += 1;
            gone += 1;
            let n = refs.get_mut(&e.record.digest).expect("counted above");
            *n -= 1;
            if *n == 0 {
                let _ = fs::remove_file(self.blobs.path(&e.record.digest));
                total = total.saturating_sub(e.record.size);
                removed_bytes = removed_bytes.saturating_add(e.record.size);
            }
        }
        self.remove_stray_temps();
        Ok(Pruned {
            removed_entries,
            removed_bytes,
            after: self.stats_of(&entries[gone..], max),
        })
    }

    /// The entries a hit could take: sealed for the key they are named by.
    fn entries(&self) -> Vec<Entry> {
        self.entry_files().filter_map(|(_, e)| e).collect()
    }

    /// Every file of the cache named as an entry (`<key>.json`), with its
    /// entry when it is a good one.
    fn entry_files(&self) -> impl Iterator<Item = (PathBuf, Option<Entry>)> {
        fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let key = Key::from_hex(name.strip_suffix(".json")?)?;
                let path = e.path();
                let entry = (|| {
                    let record = read_record(&path).filter(|r| r.seal == r.seal(&key))?;
                    let used = e.metadata().ok()?.modified().ok()?;
                    Some(Entry {
                        path: path.clone(),
                        record,
                        used,
                    })
                })();
                Some((path, entry))
            })
    }

    fn remove_stray_temps(&self) {
        let old = SystemTime::now() - Duration::from_secs(3600);
        let dirs = [self.dir.clone(), self.blobs.root().join("sha256")];
        for e in dirs.iter().filter_map(|d| fs::read_dir(d).ok()).flatten() {
            let Ok(e) = e else { continue };
            // The name first: the blob directory holds every cached blob.
            if !e.file_name().as_encoded_bytes().starts_with(b".tmp-") {
                continue;
            }
            let stale = e
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < old);
            if stale {
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
    open_own(path)
        .ok()?
        .0
        .take(64 * 1024)
        .read_to_end(&mut buf)
        .ok()?;
    serde_json::from_slice(&buf).ok()
}

/// Where the blobs each recipe's last build used are kept.
const RECENT: &str = "recent";
/// At most this many recipes are remembered there.
const MAX_RECIPES: usize = 64;

/// What the file of recent builds says: by recipe (the sha256 of its path), the blobs
/// its last build used. Empty when missing, too big or damaged.
fn read_recent(path: &Path) -> BTreeMap<String, Vec<Digest>> {
    let mut buf = Vec::new();
    let read = open_own(path).and_then(|(f, _)| f.take(1 << 20).read_to_end(&mut buf));
    read.ok()
        .and_then(|_| serde_json::from_slice(&buf).ok())
        .unwrap_or_default()
}

/// How the file of recent builds names a recipe: the sha256 of its path.
fn recipe_id(recipe: &Path) -> Option<String> {
    let path = recipe.canonicalize().ok()?;
    Some(hex::encode(Sha256::digest(
        path.as_os_str().as_encoded_bytes(),
    )))
}

/// Remember that recipe `id` used `blobs` (temp + rename; a concurrent
/// build's write may be lost, which only costs checking at the hits).
fn write_recent(path: &Path, id: &str, blobs: Vec<Digest>) -> Result<()> {
    let mut recent = read_recent(path);
    recent.remove(id);
    let mut seen = HashSet::new();
    let blobs = blobs
        .into_iter()
        .filter(|d| seen.insert(d.clone()))
        .collect();
    while recent.len() >= MAX_RECIPES {
        recent.pop_first();
    }
    recent.insert(id.to_string(), blobs);
    make_way(path)?;
    let dir = path.parent().ok_or_else(|| anyhow!("no directory"))?;
    let stored = || format!("storing {}", path.display());
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .with_context(stored)?;
    serde_json::to_writer(&mut tmp, &recent).with_context(stored)?;
    tmp.flush().with_context(stored)?;
    tmp.persist(path)
        .map_err(|e| anyhow!("storing {}: {}", path.display(), e.error))?;
    Ok(())
}

/// Make way for the cache file `path` (an entry, `key-memo`, `stat-index`,
/// `recent`): a directory there, which the cache never makes, is removed
/// when it is empty; one that holds anything is left as it is, and the
/// error names it and what to do, so that the build warns once about it,
/// not with a failed rename.
fn make_way(path: &Path) -> Result<()> {
    let Ok(m) = fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !m.is_dir() || fs::remove_dir(path).is_ok() {
        return Ok(());
    }
    Err(anyhow!(
        "{} is a directory where the layer cache keeps a file (the cache did not make it): \
         what goes there is not cached until it is moved away or removed (`rm -r` it if \
         nothing in it is needed)",
        path.display()
    ))
}

/// `path` opened without following a symlink, if it is a regular file of `size` bytes.
fn open_regular(path: &Path, size: u64) -> std::io::Result<File> {
    let (f, m) = open_own(path)?;
    if m.len() != size {
        return Err(std::io::Error::other("not the cached blob"));
    }
    Ok(f)
}

#[cfg(test)]
mod tests;

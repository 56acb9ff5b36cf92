//! A layer's cache key: sha256 over a canonical serialisation of everything
//! that decides the layer's bytes.
//!
//! The key is taken over the layer's entry stream, the same stream the tar
//! writer reads, so every source kind (files, trees, inline text, url
//! downloads, python wheels) is covered by one rule: each entry's path, type,
//! mode, owner (ids and names), link target and content (sha256 of a file's
//! bytes, or of inline bytes; a wheel member's sha256 as its install was
//! planned, from the wheel's RECORD, so nothing is decompressed, and the
//! member is checked against it when the layer is written), then the
//! compression, its level and block
//! size, the compression crates' versions, the tar format version and the
//! `created` time written into every header.
//!
//! Entries are read in order in batches whose file contents are hashed in
//! parallel on the build's pool, so a cold build's keying is spread over
//! `--jobs` threads. Hashing file content is what a nothing-changed rebuild
//! would cost, so [`StatIndex`] remembers each file's sha256 under its
//! `(dev, inode, size, mtime_ns, ctime_ns)`. A rewrite changes the ctime
//! (which no `touch -d` can set back), so it is hashed again; a file whose
//! ctime is within [`RACY`] of the moment it was hashed is not remembered,
//! since a rewrite within the clock's granularity could keep it. By the
//! same rule, [`KeyMemo`] remembers a whole layer's key under the stamps of
//! its entries, which the planning walk already takes: a rebuild with
//! nothing changed walks its inputs once.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};
use sha2::{Digest as _, Sha256};

use crate::input::{open_own, open_regular};
use crate::layer::{tar, Compression};
use crate::recipe::{Canon, Entry, EntryKind, LayerPlan, Stamp, Stamps, StampsOf};
use rayon::prelude::*;

/// Files whose ctime is this close to the time they were hashed are hashed
/// again next time.
pub const RACY: Duration = Duration::from_secs(2);

/// The crates that write compressed bytes, with their versions, as locked
/// when this binary was built.
const COMPRESSORS: [&str; 5] = ["flate2", "zlib-rs", "zstd", "zstd-safe", "zstd-sys"];

/// A layer's cache key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key([u8; 32]);

impl Key {
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The key [`Key::hex`] wrote as `hex`, if it is one.
    pub(super) fn from_hex(hex: &str) -> Option<Key> {
        let mut k = [0; 32];
        hex::decode_to_slice(hex, &mut k).ok()?;
        Some(Key(k))
    }

    #[cfg(test)]
    pub(crate) fn test(n: u8) -> Key {
        Key([n; 32])
    }
}

/// `name version` of each compression crate in the lock file this binary
/// was built with.
fn compressor_versions() -> &'static str {
    static VERSIONS: OnceLock<String> = OnceLock::new();
    VERSIONS.get_or_init(|| {
        let lock = include_str!("../../../Cargo.lock");
        let mut out = String::new();
        for block in lock.split("[[package]]") {
            let field = |k: &str| {
                block.lines().find_map(|l| {
                    l.strip_prefix(k)
                        .and_then(|v| v.trim().strip_prefix('='))
                        .map(|v| v.trim().trim_matches('"').to_string())
                })
            };
            if let (Some(name), Some(version)) = (field("name "), field("version ")) {
                if COMPRESSORS.contains(&name.as_str()) {
                    out.push_str(&format!("{name} {version}\n"));
                }
            }
        }
        out
    })
}

/// What decides a layer's bytes besides its entries: the compression, its
/// level and block size, the compression crates' versions, the tar format
/// and the time in every header.
pub fn settings(mtime: u64, compression: Compression) -> [u8; 32] {
    let mut c = Canon::new(b"boxwright layer settings 1");
    c.num(u64::from(tar::FORMAT_VERSION));
    c.bytes(compression.codec.name().as_bytes());
    c.num(compression.level as i64 as u64);
    c.num(compression.codec.block_size() as u64);
    c.bytes(compressor_versions().as_bytes());
    c.num(mtime);
    c.finish()
}

/// Entries are keyed in batches of this many, the contents of a batch
/// hashed in parallel.
const BATCH: usize = 256;

/// The key of `plan` built with `settings`, file contents hashed on `pool`,
/// and the [`Stamps`] of the entries it read.
pub fn layer_key(
    plan: &LayerPlan,
    settings: &[u8; 32],
    index: &Mutex<StatIndex>,
    pool: &rayon::ThreadPool,
) -> Result<(Key, Stamps)> {
    let mut c = Canon::new(b"boxwright layer cache 2");
    c.bytes(settings);
    let mut stamps = StampsOf::default();
    let mut entries = plan.entries()?;
    loop {
        let batch: Vec<Entry> = entries.by_ref().take(BATCH).collect::<Result<_>>()?;
        if batch.is_empty() {
            break;
        }
        let contents: Vec<Option<(u64, [u8; 32])>> = pool.install(|| {
            batch
                .par_iter()
                .map(|e| content(e, index))
                .collect::<Result<_>>()
        })?;
        for (e, content) in batch.iter().zip(contents) {
            stamps.add(e)?;
            c.entry(e, content)?;
        }
    }
    Ok((Key(c.finish()), stamps.finish()))
}

/// Whether a file last changed at `ctime_ns` cannot have been rewritten
/// since `at` without its ctime moving.
pub fn settled(ctime_ns: i64, at: SystemTime) -> bool {
    let at = at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    at.saturating_sub(ctime_ns) >= RACY.as_nanos() as i64
}

/// A bounded map of fixed-size byte keys to fixed-size byte values, kept in
/// one file of the cache as records of `K + V` bytes: read whole (empty when
/// the file is missing or damaged), emptied when it would pass its bound,
/// rewritten whole (temp + rename) when it changed. A concurrent build's
/// file may be overwritten, which only costs work done again.
pub struct RecordMap<const K: usize, const V: usize> {
    map: HashMap<[u8; K], [u8; V]>,
    max: usize,
    changed: bool,
}

impl<const K: usize, const V: usize> RecordMap<K, V> {
    fn empty(max: usize) -> Self {
        RecordMap {
            map: HashMap::new(),
            max,
            changed: false,
        }
    }

    fn load(path: &Path, max: usize) -> Self {
        let n = K + V;
        let mut buf = Vec::new();
        let read =
            open_own(path).and_then(|(f, _)| f.take((n * max) as u64 + 1).read_to_end(&mut buf));
        let mut m = Self::empty(max);
        if read.is_ok() && buf.len() % n == 0 && buf.len() <= n * max {
            for r in buf.chunks_exact(n) {
                let k = r[..K].try_into().expect("K bytes");
                m.map.insert(k, r[K..].try_into().expect("V bytes"));
            }
        }
        m
    }

    fn get(&self, k: &[u8; K]) -> Option<&[u8; V]> {
        self.map.get(k)
    }

    fn insert(&mut self, k: [u8; K], v: [u8; V]) {
        if self.map.len() >= self.max {
            self.map.clear();
        }
        self.map.insert(k, v);
        self.changed = true;
    }

    fn save(&mut self, path: &Path) -> Result<()> {
        if !self.changed {
            return Ok(());
        }
        super::make_way(path)?;
        let dir = path.parent().ok_or_else(|| anyhow!("no directory"))?;
        let write = || -> std::io::Result<()> {
            let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
            let mut w = std::io::BufWriter::new(tmp.as_file_mut());
            for (k, v) in &self.map {
                w.write_all(k)?;
                w.write_all(v)?;
            }
            w.flush()?;
            drop(w);
            tmp.persist(path).map_err(|e| e.error)?;
            Ok(())
        };
        write().map_err(|e| anyhow!("storing {}: {e}", path.display()))?;
        self.changed = false;
        Ok(())
    }
}

/// Numbers as big-endian bytes, one after another.
fn be<const N: usize>(nums: &[u64]) -> [u8; N] {
    let mut b = [0; N];
    for (i, n) in nums.iter().enumerate() {
        b[i * 8..i * 8 + 8].copy_from_slice(&n.to_be_bytes());
    }
    b
}

/// What [`layer_key`] remembers of file hashes, kept in one file of the
/// cache: each file's sha256 under its (dev, inode), with the size, mtime
/// and ctime it had when hashed.
pub struct StatIndex(RecordMap<16, 56>);

/// At most this many files are remembered (the index stays under 8 MiB).
const MAX_RECORDS: usize = 100_000;

impl Default for StatIndex {
    fn default() -> Self {
        StatIndex(RecordMap::empty(MAX_RECORDS))
    }
}

impl StatIndex {
    /// The index saved at `path`; empty when there is none or it is damaged.
    pub fn load(path: &Path) -> StatIndex {
        StatIndex(RecordMap::load(path, MAX_RECORDS))
    }

    /// Write the index to `path` if it changed.
    pub fn save(&mut self, path: &Path) -> Result<()> {
        self.0.save(path)
    }

    /// Size, mtime and ctime: what must not have changed.
    fn fields(stamp: &Stamp, size: u64) -> [u8; 24] {
        be(&[size, stamp.mtime_ns as u64, stamp.ctime_ns as u64])
    }

    fn get(&self, stamp: &Stamp, size: u64) -> Option<[u8; 32]> {
        let v = self.0.get(&be(&[stamp.dev, stamp.ino]))?;
        (v[..24] == Self::fields(stamp, size)).then(|| v[24..].try_into().expect("32 bytes"))
    }

    /// Remember `sha` for the file `stamp` and `size` describe, unless it
    /// was changed within [`RACY`] of `hashed_at`.
    fn put(&mut self, stamp: &Stamp, size: u64, sha: [u8; 32], hashed_at: SystemTime) {
        if !settled(stamp.ctime_ns, hashed_at) {
            return;
        }
        let mut v = [0; 56];
        v[..24].copy_from_slice(&Self::fields(stamp, size));
        v[24..].copy_from_slice(&sha);
        self.0.insert(be(&[stamp.dev, stamp.ino]), v);
    }
}

/// The keys of layers whose entries had given [`Stamps`]: what lets a
/// rebuild with nothing changed find its key from the planning walk alone,
/// reading no file. An entry is made only when every file had settled
/// (see [`settled`]) when the key was taken, by the rule of [`StatIndex`].
pub struct KeyMemo(RecordMap<32, 32>);

/// At most this many layers are remembered.
const MAX_KEYS: usize = 10_000;

impl Default for KeyMemo {
    fn default() -> Self {
        KeyMemo(RecordMap::empty(MAX_KEYS))
    }
}

impl KeyMemo {
    /// Where `stamps` built with `settings` is remembered.
    pub fn id(settings: &[u8; 32], stamps: &Stamps) -> [u8; 32] {
        let mut c = Canon::new(b"boxwright layer memo 1");
        c.bytes(settings);
        c.bytes(&stamps.digest);
        c.finish()
    }

    pub fn load(path: &Path) -> KeyMemo {
        KeyMemo(RecordMap::load(path, MAX_KEYS))
    }

    pub fn save(&mut self, path: &Path) -> Result<()> {
        self.0.save(path)
    }

    /// The key remembered under `id`. Values are stored bound to their
    /// id (XOR a hash of it), so that a value moved to another id, or
    /// damaged, reads back as a key no entry has: a miss, never the key of
    /// another layer.
    pub fn get(&self, id: &[u8; 32]) -> Option<Key> {
        self.0.get(id).map(|v| Key(bound(id, v)))
    }

    pub fn put(&mut self, id: [u8; 32], key: &Key) {
        let v = bound(&id, &key.0);
        self.0.insert(id, v);
    }
}

/// `v` XOR a hash of `id`: its own inverse.
fn bound(id: &[u8; 32], v: &[u8; 32]) -> [u8; 32] {
    let mut c = Canon::new(b"boxwright key memo binding 1");
    c.bytes(id);
    let pad = c.finish();
    std::array::from_fn(|i| v[i] ^ pad[i])
}

/// The size and sha256 of a file entry's content (`None` for other kinds);
/// a file's from the index when its stamp is unchanged.
fn content(e: &Entry, index: &Mutex<StatIndex>) -> Result<Option<(u64, [u8; 32])>> {
    Ok(match &e.kind {
        EntryKind::File { src, size, stamp } => {
            Some((*size, file_sha256(src, *size, stamp, index)?))
        }
        EntryKind::Inline(data) => Some((data.len() as u64, Sha256::digest(data).into())),
        EntryKind::Hashed { size, sha256, .. } => Some((*size, *sha256)),
        EntryKind::Dir | EntryKind::Symlink(_) | EntryKind::Hardlink(_) => None,
    })
}

/// The sha256 of the first `size` bytes of `src` (what the tar writer
/// writes), from the index when `stamp`, the file as walked, is known.
fn file_sha256(src: &Path, size: u64, stamp: &Stamp, index: &Mutex<StatIndex>) -> Result<[u8; 32]> {
    if let Some(sha) = index
        .lock()
        .expect("no panics with the lock")
        .get(stamp, size)
    {
        return Ok(sha);
    }
    let at = SystemTime::now();
    let (mut f, meta) = open_regular(src).map_err(|err| crate::input::opening_source(src, err))?;
    let whole = meta.len() == size;
    let mut h = crate::oci::Hashing::new(std::io::sink());
    let n = std::io::copy(&mut (&mut f).take(size), &mut h)
        .with_context(|| format!("reading {}", src.display()))?;
    if n != size {
        return Err(anyhow!(
            "{} shrank while the layer was being built; build again",
            src.display()
        ));
    }
    let sha = h.finish_sha256().1;
    if whole {
        index
            .lock()
            .expect("no panics with the lock")
            .put(&Stamp::of(&meta), size, sha, at);
    }
    Ok(sha)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::os::unix::fs::MetadataExt;

    /// As the key walk hashes it: stamped by a stat now.
    fn sha(path: &Path, index: &Mutex<StatIndex>) -> [u8; 32] {
        let meta = std::fs::metadata(path).unwrap();
        file_sha256(path, meta.len(), &Stamp::of(&meta), index).unwrap()
    }

    #[test]
    fn a_rewrite_with_the_same_size_and_mtime_is_hashed_again() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"aaaa").unwrap();
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let index = Mutex::new(StatIndex::default());
        let meta = std::fs::metadata(&p).unwrap();
        // As if hashed well after the file was written, so it is remembered.
        let first: [u8; 32] = Sha256::digest(b"aaaa").into();
        index
            .lock()
            .unwrap()
            .put(&Stamp::of(&meta), 4, first, SystemTime::now() + RACY * 2);
        assert_eq!(sha(&p, &index), first, "unchanged: from the index");

        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&p, b"bbbb").unwrap();
        let f = File::options().write(true).open(&p).unwrap();
        f.set_modified(old).unwrap();
        let meta2 = std::fs::metadata(&p).unwrap();
        assert_eq!((meta2.len(), meta2.mtime()), (meta.len(), meta.mtime()));
        assert_eq!(sha(&p, &index), <[u8; 32]>::from(Sha256::digest(b"bbbb")));
    }

    #[test]
    fn files_changed_just_now_are_not_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"x").unwrap();
        let index = Mutex::new(StatIndex::default());
        sha(&p, &index);
        assert!(index.lock().unwrap().0.map.is_empty());
    }

    #[test]
    fn the_index_round_trips_and_a_damaged_one_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"x").unwrap();
        let meta = std::fs::metadata(&p).unwrap();
        let mut index = StatIndex::default();
        let stamp = Stamp::of(&meta);
        index.put(&stamp, 1, [7; 32], SystemTime::now() + RACY * 2);
        let saved = dir.path().join("index");
        index.save(&saved).unwrap();
        assert_eq!(StatIndex::load(&saved).get(&stamp, 1), Some([7; 32]));
        std::fs::write(&saved, b"short").unwrap();
        assert!(StatIndex::load(&saved).0.map.is_empty());
    }

    #[test]
    fn the_key_memo_round_trips_and_a_damaged_one_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let stamps = Stamps {
            digest: [1; 32],
            newest_change_ns: 0,
        };
        let id = KeyMemo::id(&[2; 32], &stamps);
        assert_ne!(id, KeyMemo::id(&[3; 32], &stamps), "settings are in the id");
        let mut memo = KeyMemo::default();
        memo.put(id, &Key([9; 32]));
        let saved = dir.path().join("memo");
        memo.save(&saved).unwrap();
        assert_eq!(KeyMemo::load(&saved).get(&id), Some(Key([9; 32])));
        std::fs::write(&saved, [0; 65]).unwrap();
        assert!(KeyMemo::load(&saved).0.map.is_empty());
    }

    #[test]
    fn the_compression_crates_are_found_in_the_lock_file() {
        let v = compressor_versions();
        assert!(v.contains("flate2 "), "{v}");
        assert!(v.contains("zstd "), "{v}");
    }

    /// A memo value moved to another id reads back as no layer's key.
    #[test]
    fn memo_values_are_bound_to_their_id() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let (ka, kb) = (Key::test(1), Key::test(2));
        let mut memo = KeyMemo::default();
        memo.put(a, &ka);
        memo.put(b, &kb);
        assert_eq!(memo.get(&a).unwrap().0, ka.0);
        assert_eq!(memo.get(&b).unwrap().0, kb.0);
        let (va, vb) = (*memo.0.get(&a).unwrap(), *memo.0.get(&b).unwrap());
        memo.0.insert(a, vb);
        memo.0.insert(b, va);
        for got in [memo.get(&a).unwrap().0, memo.get(&b).unwrap().0] {
            assert!(got != ka.0 && got != kb.0);
        }
    }
}

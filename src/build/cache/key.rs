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
//! costs, so
//! [`StatIndex`] remembers each file's sha256 under its
//! `(dev, inode, size, mtime_ns, ctime_ns)`. A rewrite changes the ctime
//! (which no `touch -d` can set back), so it is hashed again; a file whose
//! ctime is within [`RACY`] of the moment it was hashed is not remembered,
//! since a rewrite within the clock's granularity could keep it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};
use sha2::{Digest as _, Sha256};

use crate::layer::{tar, Compression};
use crate::recipe::{Entry, EntryKind, LayerPlan};
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
}

/// `name version` of each compression crate in the lock file this binary
/// was built with.
fn compressor_versions() -> String {
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
}

/// Length-prefixed fields into a hasher: no two field lists serialise alike.
struct Canon(Sha256);

impl Canon {
    fn bytes(&mut self, b: &[u8]) {
        self.0.update((b.len() as u64).to_be_bytes());
        self.0.update(b);
    }
    fn num(&mut self, n: u64) {
        self.0.update(n.to_be_bytes());
    }
}

/// Entries are keyed in batches of this many, the contents of a batch
/// hashed in parallel.
const BATCH: usize = 256;

/// The key of `plan` built with `compression`, every header's time `mtime`;
/// file contents are hashed on `pool`.
pub fn layer_key(
    plan: &LayerPlan,
    mtime: u64,
    compression: Compression,
    index: &Mutex<StatIndex>,
    pool: &rayon::ThreadPool,
) -> Result<Key> {
    let mut c = Canon(Sha256::new());
    c.bytes(b"boxwright layer cache 1");
    c.num(u64::from(tar::FORMAT_VERSION));
    c.bytes(compression.codec.name().as_bytes());
    c.num(compression.level as i64 as u64);
    c.num(compression.codec.block_size() as u64);
    c.bytes(compressor_versions().as_bytes());
    c.num(mtime);
    let mut entries = plan.hashed_entries()?;
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
            c.bytes(&e.path);
            c.num(u64::from(e.mode));
            c.num(e.uid);
            c.num(e.gid);
            c.bytes(e.uname.as_bytes());
            c.bytes(e.gname.as_bytes());
            match (&e.kind, content) {
                (EntryKind::Dir, _) => c.bytes(b"dir"),
                (EntryKind::Symlink(t), _) => {
                    c.bytes(b"symlink");
                    c.bytes(t);
                }
                (EntryKind::Hardlink(t), _) => {
                    c.bytes(b"hardlink");
                    c.bytes(t);
                }
                (_, Some((size, sha256))) => {
                    c.bytes(b"file");
                    c.num(size);
                    c.bytes(&sha256);
                }
                (_, None) => return Err(anyhow!("a file entry without content")),
            }
        }
    }
    Ok(Key(c.0.finalize().into()))
}

/// A file's identity on disk; any rewrite changes at least the ctime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        Stamp {
            size: m.len(),
            mtime_ns: m.mtime().saturating_mul(1_000_000_000) + m.mtime_nsec(),
            ctime_ns: m.ctime().saturating_mul(1_000_000_000) + m.ctime_nsec(),
        }
    }
}

/// What [`layer_key`] remembers of file hashes, kept in one file of the cache.
#[derive(Default)]
pub struct StatIndex {
    map: HashMap<(u64, u64), (Stamp, [u8; 32])>,
    changed: bool,
}

/// One record: dev, inode, size, mtime_ns, ctime_ns, sha256.
const RECORD: usize = 8 * 5 + 32;
/// At most this many files are remembered (the index stays under 8 MiB).
const MAX_RECORDS: usize = 100_000;

impl StatIndex {
    /// The index saved at `path`; empty when there is none or it is damaged.
    pub fn load(path: &Path) -> StatIndex {
        let mut map = HashMap::new();
        let mut buf = Vec::new();
        let read = File::open(path).and_then(|f| {
            f.take((RECORD * MAX_RECORDS) as u64 + 1)
                .read_to_end(&mut buf)
        });
        if read.is_ok() && buf.len() % RECORD == 0 && buf.len() <= RECORD * MAX_RECORDS {
            for r in buf.chunks_exact(RECORD) {
                let n = |i: usize| u64::from_be_bytes(r[i * 8..i * 8 + 8].try_into().unwrap());
                let stamp = Stamp {
                    size: n(2),
                    mtime_ns: n(3) as i64,
                    ctime_ns: n(4) as i64,
                };
                map.insert((n(0), n(1)), (stamp, r[40..].try_into().unwrap()));
            }
        }
        StatIndex {
            map,
            changed: false,
        }
    }

    /// Write the index to `path` (temp + rename) if it changed; a concurrent
    /// build's index may be overwritten, which only costs hashing again.
    pub fn save(&mut self, path: &Path) -> Result<()> {
        if !self.changed {
            return Ok(());
        }
        let dir = path.parent().ok_or_else(|| anyhow!("no directory"))?;
        let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        for ((dev, ino), (s, sha)) in self.map.iter().take(MAX_RECORDS) {
            for n in [*dev, *ino, s.size, s.mtime_ns as u64, s.ctime_ns as u64] {
                w.write_all(&n.to_be_bytes())?;
            }
            w.write_all(sha)?;
        }
        w.flush()?;
        drop(w);
        tmp.persist(path)?;
        self.changed = false;
        Ok(())
    }

    fn get(&self, m: &std::fs::Metadata) -> Option<[u8; 32]> {
        match self.map.get(&(m.dev(), m.ino())) {
            Some((s, sha)) if *s == Stamp::of(m) => Some(*sha),
            _ => None,
        }
    }

    /// Remember `sha` for the file `m` describes, unless it was changed
    /// within [`RACY`] of `hashed_at`.
    fn put(&mut self, m: &std::fs::Metadata, sha: [u8; 32], hashed_at: SystemTime) {
        let stamp = Stamp::of(m);
        let at = hashed_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        if at.saturating_sub(stamp.ctime_ns) < RACY.as_nanos() as i64 {
            return;
        }
        if self.map.len() >= MAX_RECORDS {
            self.map.clear();
        }
        self.map.insert((m.dev(), m.ino()), (stamp, sha));
        self.changed = true;
    }
}

/// The sha256 of the first `size` bytes of `src` (what the tar writer
/// writes), from the index when the file is unchanged.
/// The size and sha256 of a file entry's content (`None` for other kinds).
fn content(e: &Entry, index: &Mutex<StatIndex>) -> Result<Option<(u64, [u8; 32])>> {
    Ok(match &e.kind {
        EntryKind::File { src, size } => Some((*size, file_sha256(src, *size, index)?)),
        EntryKind::Inline(data) => Some((data.len() as u64, Sha256::digest(data).into())),
        EntryKind::Hashed { size, sha256 } => Some((*size, *sha256)),
        EntryKind::Dir | EntryKind::Symlink(_) | EntryKind::Hardlink(_) => None,
    })
}

fn file_sha256(src: &Path, size: u64, index: &Mutex<StatIndex>) -> Result<[u8; 32]> {
    let at = SystemTime::now();
    let stat = std::fs::metadata(src).with_context(|| format!("reading {}", src.display()))?;
    if stat.len() == size {
        if let Some(sha) = index.lock().expect("no panics with the lock").get(&stat) {
            return Ok(sha);
        }
    }
    let mut f = File::open(src).with_context(|| format!("opening {}", src.display()))?;
    let meta = f.metadata()?;
    let whole = meta.len() == size;
    let mut h = Sha256::new();
    let n = std::io::copy(&mut (&mut f).take(size), &mut HashWrite(&mut h))
        .with_context(|| format!("reading {}", src.display()))?;
    if n != size {
        return Err(anyhow!(
            "{} shrank while the layer was being built; build again",
            src.display()
        ));
    }
    let sha: [u8; 32] = h.finalize().into();
    if whole {
        index
            .lock()
            .expect("no panics with the lock")
            .put(&meta, sha, at);
    }
    Ok(sha)
}

struct HashWrite<'a>(&'a mut Sha256);

impl Write for HashWrite<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(path: &Path, index: &Mutex<StatIndex>) -> [u8; 32] {
        let size = std::fs::metadata(path).unwrap().len();
        file_sha256(path, size, index).unwrap()
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
            .put(&meta, first, SystemTime::now() + RACY * 2);
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
        assert!(index.lock().unwrap().map.is_empty());
    }

    #[test]
    fn the_index_round_trips_and_a_damaged_one_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"x").unwrap();
        let meta = std::fs::metadata(&p).unwrap();
        let mut index = StatIndex::default();
        index.put(&meta, [7; 32], SystemTime::now() + RACY * 2);
        let saved = dir.path().join("index");
        index.save(&saved).unwrap();
        assert_eq!(StatIndex::load(&saved).get(&meta), Some([7; 32]));
        std::fs::write(&saved, b"short").unwrap();
        assert!(StatIndex::load(&saved).map.is_empty());
    }

    #[test]
    fn the_compression_crates_are_found_in_the_lock_file() {
        let v = compressor_versions();
        assert!(v.contains("flate2 "), "{v}");
        assert!(v.contains("zstd "), "{v}");
    }
}

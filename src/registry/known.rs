//! A memory of where blobs live, kept across runs (as containers/image's
//! blob info cache): `(registry, repository, digest)` locations, learned
//! from every push (HEAD hit, mount, upload), download and check, and asked
//! by the pusher for mount sources before it uploads a blob that a target
//! repository lacks.
//!
//! The record is the file `blob-locations` next to the blob cache, one
//! location per line (`REGISTRY REPOSITORY DIGEST`), newest last. Lines are
//! appended under an exclusive `flock` on `blob-locations.lock`, so that
//! processes running at once never interleave; when the file grows past
//! [`MAX_BYTES`] it is rewritten (temp file + rename, under the same lock)
//! with the newest [`KEEP`] distinct locations. Lines that do not parse are
//! ignored. It holds names and digests only, never a credential.
//!
//! Everything here is an optimisation: a record that cannot be read,
//! written or locked (within `LOCK_WAIT`) is skipped, never an error.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::oci::Digest;

/// The record's file name, next to the blob cache.
pub const FILE_NAME: &str = "blob-locations";
/// Past this size the record is compacted.
pub const MAX_BYTES: u64 = 2 * 1024 * 1024;
/// Locations kept by a compaction (the newest).
pub const KEEP: usize = 8192;
/// Longest line read; longer ones are junk.
const MAX_LINE: usize = 600;
/// Longest wait for another process's lock.
const LOCK_WAIT: Duration = Duration::from_secs(2);
/// How the record and its lock are opened for writing: never through a
/// symbolic link (a cache restored from elsewhere may hold one, pointing
/// anywhere), never waiting on a named pipe. Whatever is there that is not
/// a regular file is removed first.
const OWN: i32 = libc::O_NOFOLLOW | libc::O_NONBLOCK;

/// One location: a repository of a registry holds a blob.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Location {
    registry: String,
    repository: String,
    digest: String,
}

impl Location {
    fn new(registry: &str, repository: &str, digest: &Digest) -> Option<Location> {
        let ok = |s: &str| {
            !s.is_empty() && s.len() <= 255 && s.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
        };
        (ok(registry) && ok(repository)).then(|| Location {
            registry: registry.to_string(),
            repository: repository.to_string(),
            digest: digest.to_string(),
        })
    }

    fn parse(line: &str) -> Option<Location> {
        if line.len() > MAX_LINE {
            return None;
        }
        let mut parts = line.split(' ');
        let (reg, repo, d) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        Location::new(reg, repo, &d.parse::<Digest>().ok()?)
    }

    fn line(&self) -> String {
        format!("{} {} {}\n", self.registry, self.repository, self.digest)
    }
}

/// Locations in order (newest last), and as a set.
#[derive(Default)]
struct Seen {
    list: Vec<Location>,
    set: HashSet<Location>,
}

impl Seen {
    fn read(path: &Path) -> Seen {
        let list = read_record(path);
        let set = list.iter().cloned().collect();
        Seen { list, set }
    }
}

/// The persistent record of blob locations (see the module documentation).
pub struct KnownBlobs {
    path: PathBuf,
    /// The record as read once, with what this process added.
    seen: Mutex<Option<Seen>>,
}

impl std::fmt::Debug for KnownBlobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnownBlobs")
            .field("path", &self.path)
            .finish()
    }
}

impl KnownBlobs {
    /// The record in the file `path`.
    pub fn at(path: impl Into<PathBuf>) -> KnownBlobs {
        KnownBlobs {
            path: path.into(),
            seen: Mutex::new(None),
        }
    }

    /// The record next to the blob cache: `DIR/blob-locations` for
    /// `--cache-dir DIR`, else `$XDG_CACHE_HOME/boxwright/blob-locations`
    /// (`~/.cache/boxwright/...`). `None` when there is no cache directory,
    /// or when the default's `boxwright/` is a symbolic link (a cache
    /// restored from elsewhere may point it anywhere; see
    /// [`crate::cache::own_dir`]): the memory is then not kept.
    pub fn for_cache(dir: Option<&Path>) -> Option<KnownBlobs> {
        let base = match dir {
            Some(d) => d.to_path_buf(),
            None => {
                let base = crate::cache::default_dir()?.parent()?.to_path_buf();
                crate::cache::own_dir(&base, &base).ok()?;
                base
            }
        };
        Some(KnownBlobs::at(base.join(FILE_NAME)))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with_seen<T>(&self, f: impl FnOnce(&mut Seen) -> T) -> Option<T> {
        let mut guard = self.seen.lock().ok()?;
        let seen = guard.get_or_insert_with(|| Seen::read(&self.path));
        Some(f(seen))
    }

    /// Repositories of `registry` remembered to hold `digest`, newest first.
    pub fn repositories(&self, registry: &str, digest: &Digest) -> Vec<String> {
        let d = digest.to_string();
        self.with_seen(|seen| {
            let mut out: Vec<String> = Vec::new();
            for l in seen.list.iter().rev() {
                if l.registry == registry && l.digest == d && !out.contains(&l.repository) {
                    out.push(l.repository.clone());
                }
            }
            out
        })
        .unwrap_or_default()
    }

    /// Remember that `repository` of `registry` holds `digest` (appended to
    /// the record unless this process already knows it).
    pub fn learn(&self, registry: &str, repository: &str, digest: &Digest) {
        let Some(loc) = Location::new(registry, repository, digest) else {
            return;
        };
        let fresh = self
            .with_seen(|seen| {
                let fresh = seen.set.insert(loc.clone());
                if fresh {
                    seen.list.push(loc.clone());
                }
                fresh
            })
            .unwrap_or(false);
        if fresh {
            let _ = self.append(&loc);
        }
    }

    /// Forget that `repository` of `registry` holds `digest` (it did not).
    pub fn forget(&self, registry: &str, repository: &str, digest: &Digest) {
        let Some(loc) = Location::new(registry, repository, digest) else {
            return;
        };
        self.with_seen(|seen| {
            seen.set.remove(&loc);
            seen.list.retain(|l| l != &loc);
        });
        let _ = self.rewrite(|all| all.retain(|l| l != &loc));
    }

    fn append(&self, loc: &Location) -> io::Result<()> {
        let _lock = self.lock()?;
        crate::cache::clear_for_file(&self.path);
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .custom_flags(OWN)
            .open(&self.path)?;
        f.write_all(loc.line().as_bytes())?;
        if f.metadata()?.len() > MAX_BYTES {
            drop(f);
            compact_locked(&self.path, |_| {})?;
        }
        Ok(())
    }

    fn rewrite(&self, edit: impl FnOnce(&mut Vec<Location>)) -> io::Result<()> {
        let _lock = self.lock()?;
        compact_locked(&self.path, edit)
    }

    /// The exclusive lock on `<record>.lock`, waited for at most [`LOCK_WAIT`].
    fn lock(&self) -> io::Result<File> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut name = self.path.clone().into_os_string();
        name.push(".lock");
        let name = PathBuf::from(name);
        crate::cache::clear_for_file(&name);
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags(OWN)
            .open(name)?;
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            // SAFETY: flock only reads the descriptor number, which `f`
            // keeps open for the duration of the call.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(f);
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EWOULDBLOCK) || Instant::now() > deadline {
                return Err(e);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Read the record: the locations that parse, oldest first. At most twice
/// [`MAX_BYTES`] are read (a record another process is compacting, or one
/// grown by hand, is cut short, never read whole).
fn read_record(path: &Path) -> Vec<Location> {
    let mut text = Vec::new();
    if let Ok((f, _)) = crate::input::open_own(path) {
        let _ = f.take(2 * MAX_BYTES).read_to_end(&mut text);
    }
    String::from_utf8_lossy(&text)
        .lines()
        .filter_map(Location::parse)
        .collect()
}

/// Rewrite the record with `edit` applied and only the newest [`KEEP`]
/// distinct locations, through a temp file renamed into place. The caller
/// holds the lock.
fn compact_locked(path: &Path, edit: impl FnOnce(&mut Vec<Location>)) -> io::Result<()> {
    let mut all = read_record(path);
    edit(&mut all);
    let mut seen = HashSet::new();
    let mut keep: Vec<&Location> = Vec::new();
    let mut bytes = 0u64;
    for l in all.iter().rev() {
        if keep.len() >= KEEP || bytes >= MAX_BYTES / 2 {
            break;
        }
        if seen.insert(l) {
            bytes += l.line().len() as u64;
            keep.push(l);
        }
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    for l in keep.iter().rev() {
        tmp.write_all(l.line().as_bytes())?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Digest {
        Digest::of(s.as_bytes())
    }

    #[test]
    fn learns_forgets_and_survives_a_new_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let k = KnownBlobs::at(&path);
        k.learn("reg:5000", "a", &d("x"));
        k.learn("reg:5000", "b", &d("x"));
        k.learn("reg:5000", "a", &d("x"));
        k.learn("other", "c", &d("x"));
        assert_eq!(k.repositories("reg:5000", &d("x")), ["b", "a"]);
        let again = KnownBlobs::at(&path);
        assert_eq!(again.repositories("reg:5000", &d("x")), ["b", "a"]);
        assert_eq!(again.repositories("other", &d("x")), ["c"]);
        assert!(again.repositories("reg:5000", &d("y")).is_empty());
        again.forget("reg:5000", "b", &d("x"));
        assert_eq!(again.repositories("reg:5000", &d("x")), ["a"]);
        assert_eq!(
            KnownBlobs::at(&path).repositories("reg:5000", &d("x")),
            ["a"]
        );
    }

    #[test]
    fn corrupt_lines_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let good = format!("reg r {}\n", d("x"));
        let junk = format!(
            "garbage\nreg r sha256:zz\n\u{0}\u{1}\nreg r {} extra\n{}\nreg  {}\n",
            d("x"),
            "y".repeat(5000),
            d("x")
        );
        std::fs::write(&path, format!("{junk}{good}")).unwrap();
        let k = KnownBlobs::at(&path);
        assert_eq!(k.repositories("reg", &d("x")), ["r"]);
    }

    /// A cache restored from elsewhere may hold a link (or a directory)
    /// where the record and its lock go: nothing is written through it,
    /// and the locations are remembered all the same.
    #[test]
    fn a_link_or_a_directory_in_place_of_the_record_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let outside = dir.path().join("outside");
        std::fs::write(&outside, b"keep").unwrap();
        std::os::unix::fs::symlink(&outside, &path).unwrap();
        std::os::unix::fs::symlink(&outside, dir.path().join("blob-locations.lock")).unwrap();
        KnownBlobs::at(&path).learn("reg", "a", &d("x"));
        assert_eq!(std::fs::read(&outside).unwrap(), b"keep");
        assert_eq!(KnownBlobs::at(&path).repositories("reg", &d("x")), ["a"]);
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir_all(path.join("inner")).unwrap();
        KnownBlobs::at(&path).learn("reg", "b", &d("x"));
        assert_eq!(KnownBlobs::at(&path).repositories("reg", &d("x")), ["b"]);
    }

    #[test]
    fn names_that_would_break_a_line_are_not_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let k = KnownBlobs::at(dir.path().join(FILE_NAME));
        k.learn("reg", "a b", &d("x"));
        k.learn("reg", "a\nb", &d("x"));
        k.learn("", "a", &d("x"));
        assert!(!dir.path().join(FILE_NAME).exists());
    }

    #[test]
    fn writers_at_once_lose_no_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::thread::scope(|s| {
            for w in 0..4 {
                let path = &path;
                s.spawn(move || {
                    let k = KnownBlobs::at(path);
                    for i in 0..200 {
                        k.learn("reg", &format!("w{w}/r{i}"), &d("x"));
                    }
                });
            }
        });
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 800);
        assert!(text.lines().all(|l| Location::parse(l).is_some()));
        assert_eq!(
            KnownBlobs::at(&path).repositories("reg", &d("x")).len(),
            800
        );
    }

    #[test]
    fn stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let k = KnownBlobs::at(&path);
        let repo = |i: usize| format!("team/{}-{i}", "r".repeat(200));
        let n = 20_000;
        for i in 0..n {
            k.learn("registry.example:5000", &repo(i), &d("x"));
            if i % 1000 == 0 {
                let len = std::fs::metadata(&path).unwrap().len();
                assert!(len <= MAX_BYTES, "{len} bytes after {i}");
            }
        }
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines <= KEEP && lines > 1000, "{lines} lines");
        let newest = KnownBlobs::at(&path).repositories("registry.example:5000", &d("x"));
        assert_eq!(newest[0], repo(n - 1));
        assert_eq!(newest.len(), lines);
    }
}

//! Checking cached blobs ahead of their hits.
//!
//! A rebuild with nothing changed spends its time on two things, one after
//! the other: walking the inputs to find each layer's key, then hashing each
//! hit's blob. The blobs the previous build of the same recipe took from the
//! cache are the likely hits, so they are hashed on a thread of their own
//! while the recipe is planned and walked. A hit whose blob was checked
//! ahead is not hashed again when its file is still the one that was hashed:
//! the same `(dev, inode, mtime, ctime)` and size, its mtime settled (by the
//! stat index's rule) before the hashing began. A wrong guess costs one hash
//! on a core the walk leaves idle; checking stops when the build finishes.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::SystemTime;

use super::key::settled;
use crate::input::open_own;
use crate::oci::Digest;
use crate::oci::Hashing;
use crate::recipe::Stamp;

/// Blobs being checked on a thread of their own.
#[derive(Default)]
pub struct Ahead {
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
}

#[derive(Default)]
struct State {
    /// Not checked yet.
    queued: HashSet<Digest>,
    /// Checked: the stamp of the file that hashed to the digest; `None`
    /// when it did not, could not be read, or had changed just before.
    checked: HashMap<Digest, Option<Stamp>>,
}

impl Ahead {
    /// Start checking each blob (its digest and path), in order.
    pub fn start(blobs: Vec<(Digest, PathBuf)>) -> Arc<Ahead> {
        let ahead = Arc::new(Ahead::default());
        ahead.lock().queued = blobs.iter().map(|(d, _)| d.clone()).collect();
        let worker = Done(ahead.clone());
        let spawned = std::thread::Builder::new()
            .name("layer-cache-ahead".into())
            .spawn(move || {
                for (digest, path) in blobs {
                    let stamp = check(&path, &digest, &worker.0.stop);
                    let mut s = worker.0.lock();
                    s.queued.remove(&digest);
                    s.checked.insert(digest, stamp);
                    worker.0.changed.notify_all();
                }
            });
        if spawned.is_err() {
            ahead.lock().queued.clear();
        }
        ahead
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("no panics with the lock")
    }

    /// The stamp of the file that was found to hash to `digest`, waiting
    /// while it is still to be checked; `None` when it was not checked or
    /// did not match.
    pub fn wait(&self, digest: &Digest) -> Option<Stamp> {
        let mut s = self.lock();
        while s.queued.contains(digest) {
            s = self.changed.wait(s).expect("no panics with the lock");
        }
        s.checked.get(digest).copied().flatten()
    }

    /// Leave the blobs not checked yet (a later hit hashes its own).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Clears the queue when the checking thread ends, however it ends, so
/// that nobody waits for it.
struct Done(Arc<Ahead>);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.lock().queued.clear();
        self.0.changed.notify_all();
    }
}

/// The stamp of the regular file at `path` if it hashes to `digest` and
/// had settled before it was read; `None` otherwise or when stopped.
fn check(path: &Path, digest: &Digest, stop: &AtomicBool) -> Option<Stamp> {
    let at = SystemTime::now();
    let (mut f, meta) = open_own(path).ok()?;
    let stamp = Stamp::of(&meta);
    // The mtime, not the ctime, must have settled: a blob's ctime moves
    // whenever it is linked into a layout or a layout holding it is
    // removed, which every build does; its bytes are written only before
    // it is renamed into the cache. A write after this point moves the
    // mtime (settled, so it cannot stay the same) and the ctime, and the
    // hit sees a different stamp.
    if !meta.is_file() || !settled(stamp.mtime_ns, at) {
        return None;
    }
    let mut w = Hashing::new(std::io::sink());
    let mut buf = vec![0; 1 << 20];
    loop {
        if stop.load(Ordering::SeqCst) {
            return None;
        }
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => std::io::Write::write_all(&mut w, &buf[..n]).ok()?,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    let (_, got, size) = w.finish();
    (got == *digest && size == meta.len()).then_some(stamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_blob_that_hashes_to_its_digest_and_had_settled_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let (good, bad, fresh) = (
            dir.path().join("good"),
            dir.path().join("bad"),
            dir.path().join("fresh"),
        );
        std::fs::write(&good, b"layer").unwrap();
        std::fs::write(&bad, b"LAYER").unwrap();
        std::thread::sleep(super::super::key::RACY + std::time::Duration::from_millis(100));
        std::fs::write(&fresh, b"fresh").unwrap();
        // A link moves the ctime, as linking into a layout does: no matter.
        std::fs::hard_link(&good, dir.path().join("linked")).unwrap();
        let d = Digest::of(b"layer");
        let f = Digest::of(b"fresh");
        let missing = Digest::of(b"missing");
        let a = Ahead::start(vec![
            (d.clone(), good.clone()),
            (Digest::of(b"other"), bad),
            (f.clone(), fresh),
            (missing.clone(), dir.path().join("none")),
        ]);
        let meta = std::fs::metadata(&good).unwrap();
        assert_eq!(a.wait(&d), Some(Stamp::of(&meta)));
        assert_eq!(a.wait(&Digest::of(b"other")), None, "wrong content");
        assert_eq!(a.wait(&f), None, "changed just before: hashed at its hit");
        assert_eq!(a.wait(&missing), None);
        assert_eq!(a.wait(&Digest::of(b"never asked")), None, "no wait");
    }
}

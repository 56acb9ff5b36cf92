//! The content-addressed blob cache shared by every command that downloads
//! (registry bases, `pull`, `copy`).
//!
//! Blobs live at `<root>/sha256/<hex>`; they are written through a temp file
//! in the same directory, checked against their digest, and renamed into
//! place, so a killed process leaves at most a stray `.part` file, never a
//! corrupt blob under a digest name.

use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest as _, Sha256};

use crate::oci::Digest;
use crate::registry::Repo;

/// Where downloaded blobs are kept.
#[derive(Debug, Clone)]
pub struct BlobCache {
    root: PathBuf,
}

impl BlobCache {
    /// The cache at `dir`, else `$XDG_CACHE_HOME/boxwright/blobs`, else
    /// `~/.cache/boxwright/blobs`.
    pub fn new(dir: Option<PathBuf>) -> Result<BlobCache> {
        let chosen = dir.is_some();
        let root = match dir {
            Some(d) => d,
            None => default_dir()
                .context("no cache directory: set XDG_CACHE_HOME or HOME, or pass --cache-dir")?,
        };
        // The default's `boxwright/blobs` is made by boxwright too.
        if !chosen {
            if let Some(parent) = root.parent() {
                own_dir(&root, parent)?;
            }
            own_dir(&root, &root)?;
        }
        for sub in ["sha256", "downloads", "members"] {
            own_dir(&root, &root.join(sub))?;
        }
        // A file in the way is the user's to move (exit 2), not a failure.
        for dir in [root.clone(), root.join("sha256")] {
            if std::fs::metadata(&dir).is_ok_and(|m| !m.is_dir()) {
                return Err(crate::error::bad_input(format!(
                    "the blob cache {}: {} is not a directory; give --cache-dir a directory",
                    root.display(),
                    dir.display()
                )));
            }
        }
        std::fs::create_dir_all(root.join("sha256"))
            .with_context(|| format!("creating the blob cache {}", root.display()))?;
        Ok(BlobCache { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where blob `d` is (or would be) kept.
    pub fn path(&self, d: &Digest) -> PathBuf {
        self.root.join(d.algorithm()).join(d.hex())
    }

    /// Whether the cache holds `d` (with `size` bytes, when given): the
    /// file is read and hashed on every hit, so that a damaged or replaced
    /// blob is never handed out. One that is not `d` (other bytes, a
    /// symbolic link, not a regular file) is removed, and the caller fetches
    /// it again (a directory in its place too, with what it holds: nothing
    /// but a blob belongs there); one of another size than asked is left
    /// alone (the asker's size may be the wrong one).
    pub fn holds(&self, d: &Digest, size: Option<u64>) -> bool {
        let path = self.path(d);
        let checked = || -> std::io::Result<Option<bool>> {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(&path)?;
            let meta = file.metadata()?;
            if !meta.is_file() {
                return Ok(Some(false));
            }
            if size.is_some_and(|s| s != meta.len()) {
                return Ok(None);
            }
            let mut hash = Sha256::new();
            std::io::copy(&mut file.take(meta.len()), &mut hash)?;
            Ok(Some(Digest::from_sha256(hash.finalize().into()) == *d))
        };
        match checked() {
            Ok(Some(true)) => true,
            Ok(None) => false,
            Ok(Some(false)) | Err(_) => {
                discard(&path);
                false
            }
        }
    }

    /// The cached file of blob `d`, downloading it from `repo` first when
    /// missing. The download is streamed and checked against `d`.
    pub async fn fetch(&self, repo: Repo<'_>, d: &Digest, size: u64) -> Result<PathBuf> {
        let path = self.path(d);
        if self.holds(d, Some(size)) {
            return Ok(path);
        }
        repo.get_blob_to_file(d, size, &path).await?;
        Ok(path)
    }

    /// The digests held, for tests and `--verbose` reports.
    pub fn digests(&self) -> Vec<Digest> {
        let mut v: Vec<Digest> = std::fs::read_dir(self.root.join("sha256"))
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                format!("sha256:{}", e.file_name().to_string_lossy())
                    .parse()
                    .ok()
            })
            .collect();
        v.sort();
        v
    }
}

/// Refuse a symbolic link at `dir`, a directory the cache at `root` makes
/// itself: a cache restored from elsewhere (a CI cache) may point one
/// anywhere, and what is written there (blobs pulled from a registry,
/// under names boxwright chooses) would land outside the cache. A link
/// the user made is theirs to remove (exit 2; nothing is removed here).
pub fn own_dir(root: &Path, dir: &Path) -> Result<()> {
    if std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(crate::error::bad_input(format!(
            "the cache {}: {} is a symbolic link; boxwright follows no link inside its cache, \
             so that nothing it writes lands elsewhere: remove the link (`rm {}`), or give \
             --cache-dir the directory it points to",
            root.display(),
            dir.display(),
            dir.display()
        )));
    }
    Ok(())
}

/// Remove whatever is at `path` (a directory with what it holds).
fn discard(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            let _ = std::fs::remove_dir_all(path);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(path);
        }
        Err(_) => {}
    }
}

/// Make way for a file the cache writes at `path` (a partial download, a
/// record, a blob): anything there that is not a regular file, which the
/// cache never makes (a symbolic link, a named pipe, a directory with what
/// it holds), is removed, so that it is neither written through, waited
/// on, nor in the way for ever.
pub fn clear_for_file(path: &Path) {
    if std::fs::symlink_metadata(path).is_ok_and(|m| !m.is_file()) {
        discard(path);
    }
}

/// The default blob cache: `$XDG_CACHE_HOME/boxwright/blobs`, else
/// `~/.cache/boxwright/blobs`.
pub fn default_dir() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(x) => PathBuf::from(x),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".cache"),
    };
    Some(base.join("boxwright").join("blobs"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_content_addressed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = BlobCache::new(Some(dir.path().to_path_buf())).unwrap();
        let d = Digest::of(b"hello");
        assert!(!cache.holds(&d, Some(5)));
        std::fs::write(cache.path(&d), b"hello").unwrap();
        assert!(cache.holds(&d, Some(5)) && cache.holds(&d, None));
        assert!(!cache.holds(&d, Some(6)), "a size mismatch is a miss");
        assert_eq!(cache.digests(), vec![d.clone()]);
        // Damaged in place (same size), or replaced by a link to the right
        // bytes: a miss, and the file is gone so that it is fetched again.
        std::fs::write(cache.path(&d), b"hellO").unwrap();
        assert!(!cache.holds(&d, Some(5)));
        assert!(!cache.path(&d).exists());
        let elsewhere = dir.path().join("hello");
        std::fs::write(&elsewhere, b"hello").unwrap();
        std::os::unix::fs::symlink(&elsewhere, cache.path(&d)).unwrap();
        assert!(!cache.holds(&d, None));
        assert!(std::fs::symlink_metadata(cache.path(&d)).is_err());
        // A directory where the blob goes would refuse the download's
        // rename for ever: it is removed too.
        std::fs::create_dir_all(cache.path(&d).join("inner")).unwrap();
        std::fs::write(cache.path(&d).join("inner/x"), b"x").unwrap();
        assert!(!cache.holds(&d, Some(5)));
        assert!(std::fs::symlink_metadata(cache.path(&d)).is_err());
        assert!(elsewhere.exists());
    }

    /// A restored cache whose own directories link elsewhere is refused,
    /// and nothing is written where they point.
    #[test]
    fn a_link_in_place_of_a_directory_of_the_cache_is_bad_input() {
        for sub in ["sha256", "downloads", "members"] {
            let dir = tempfile::tempdir().unwrap();
            let (root, outside) = (dir.path().join("c"), dir.path().join("outside"));
            std::fs::create_dir_all(&root).unwrap();
            std::fs::create_dir_all(&outside).unwrap();
            std::os::unix::fs::symlink(&outside, root.join(sub)).unwrap();
            let err = BlobCache::new(Some(root.clone())).unwrap_err();
            assert!(crate::error::is_bad_input(&err), "{sub}: {err:#}");
            assert!(err.to_string().contains(&*root.join(sub).to_string_lossy()));
            assert!(std::fs::symlink_metadata(root.join(sub)).is_ok(), "{sub}");
            assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "{sub}");
        }
    }

    #[test]
    fn a_file_in_place_of_the_cache_is_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let inner = dir.path().join("inner");
        std::fs::create_dir(&inner).unwrap();
        std::fs::write(inner.join("sha256"), b"").unwrap();
        for root in [file, inner] {
            let err = BlobCache::new(Some(root.clone())).unwrap_err();
            assert!(crate::error::is_bad_input(&err), "{err:#}");
            assert!(err.to_string().contains("is not a directory"), "{err:#}");
        }
    }
}

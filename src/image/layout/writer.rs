//! Writing a new OCI layout: everything goes into a temporary directory
//! beside the output (`.NAME.tmp-*`): blobs through temp file + rename,
//! `index.json` last, and the whole directory moved into place at the very
//! end, so that a failed or killed build never leaves a half-written layout
//! under the output name.
//!
//! A build killed with `kill -9` cannot remove its temporary directory, so
//! each holds a lock file (`.lock`, an exclusive `flock` taken before the
//! file gets its name and held until the directory is moved into place);
//! the kernel drops the lock when the process dies, however it dies. The
//! next build of the same output removes the temporary directories of that
//! output whose lock nobody holds. (A pid in the name would need a liveness
//! check that pid reuse and pid namespaces make unreliable.) A directory
//! without a lock file is left alone.

use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};

use super::guard::{self, FileId};
use super::{blob_path, OCI_LAYOUT_CONTENT, OCI_LAYOUT_FILE};
use crate::error::bad_input;
use crate::oci::{self, canonical_json, Descriptor, Digest, Index};

const LOCK_FILE: &str = ".lock";

/// A layout being written. Everything goes into a temporary directory next to
/// the destination; [`LayoutWriter::commit`] writes `index.json` and moves
/// it into place. Dropping the writer without committing removes it.
pub struct LayoutWriter {
    /// The output as the caller named it (returned by `commit`).
    dest: PathBuf,
    /// The same place with the parent resolved, so that `-o .` works.
    target: PathBuf,
    tmp: Option<tempfile::TempDir>,
    /// Holds the temporary directory's lock while the writer lives.
    _lock: File,
}

impl LayoutWriter {
    /// Start writing a layout that will end up at `dest`.
    pub fn create(dest: &Path) -> Result<LayoutWriter> {
        check_destination(dest)?;
        let target = resolve_target(dest)?;
        let (parent, name) = match (target.parent(), target.file_name()) {
            (Some(p), Some(n)) => (p.to_path_buf(), n.to_string_lossy().into_owned()),
            _ => {
                return Err(bad_input(format!(
                    "{}: cannot be an output directory",
                    dest.display()
                )))
            }
        };
        let prefix = crate::image::output::layout_temp_prefix(&name);
        remove_stale(&parent, &prefix);
        let tmp = tempfile::Builder::new()
            .prefix(&prefix)
            .tempdir_in(&parent)
            .with_context(|| format!("creating a temporary directory in {}", parent.display()))?;
        let lock = lock_dir(tmp.path())?;
        let blobs = tmp.path().join("blobs").join("sha256");
        fs::create_dir_all(&blobs).with_context(|| format!("creating {}", blobs.display()))?;
        Ok(LayoutWriter {
            dest: dest.to_path_buf(),
            target,
            tmp: Some(tmp),
            _lock: lock,
        })
    }

    /// Refuse, before any work, an output [`LayoutWriter::create`] would
    /// refuse: under a file, or a path that holds something other than an
    /// OCI layout or an empty directory.
    pub fn check_output(dest: &Path) -> Result<()> {
        crate::image::output::check_parent(dest)?;
        check_destination(dest)
    }

    /// The directory being written (blobs can be renamed into it directly).
    pub fn root(&self) -> &Path {
        match &self.tmp {
            Some(t) => t.path(),
            None => &self.target,
        }
    }

    /// Where the blob `d` is (or will be) in the layout being written.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        blob_path(self.root(), d)
    }

    /// A temporary file for a blob being streamed; rename it with [`LayoutWriter::place_blob`].
    pub fn temp_blob(&self) -> Result<tempfile::NamedTempFile> {
        let dir = self.root().join("blobs").join("sha256");
        tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&dir)
            .with_context(|| format!("creating a temporary blob file in {}", dir.display()))
    }

    /// Move a finished temporary blob to its content address.
    pub fn place_blob(&self, tmp: tempfile::NamedTempFile, d: &Digest) -> Result<()> {
        let path = blob_path(self.root(), d);
        tmp.persist(&path)
            .map_err(|e| anyhow!("storing blob {d} at {}: {}", path.display(), e.error))?;
        Ok(())
    }

    /// Write a small blob (JSON document) and return its descriptor.
    pub fn write_blob(&self, media_type: &str, bytes: &[u8]) -> Result<Descriptor> {
        let desc = Descriptor::of_bytes(media_type, bytes);
        let path = blob_path(self.root(), &desc.digest);
        if !path.exists() {
            let mut tmp = self.temp_blob()?;
            tmp.write_all(bytes)
                .and_then(|()| tmp.flush())
                .with_context(|| format!("writing {}", tmp.path().display()))?;
            self.place_blob(tmp, &desc.digest)?;
        }
        Ok(desc)
    }

    /// Put blob `d` (from another layout or the cache) into the layout: a
    /// regular file only (opened without following a symbolic link), hard
    /// linked when it already has the layout's mode (0644, so that nothing
    /// changes the source's permissions), copied otherwise. Its bytes are
    /// not checked here: the caller has them from an image source, which
    /// checks digests.
    pub fn import_blob(&self, src: &Path, d: &Digest) -> Result<()> {
        self.import(src, d, None)
    }

    /// Like [`LayoutWriter::import_blob`], checking the size of `d` first.
    pub fn import_descriptor(&self, src: &Path, d: &Descriptor) -> Result<()> {
        self.import(src, &d.digest, Some(d.size))
    }

    fn import(&self, src: &Path, d: &Digest, size: Option<u64>) -> Result<()> {
        let dest = blob_path(self.root(), d);
        if dest.exists() {
            return Ok(());
        }
        let opened = open_regular(src).with_context(|| format!("importing blob {d}"))?;
        if let Some(size) = size {
            if opened.meta.len() != size {
                return Err(bad_input(format!(
                    "{}: blob {d} has {} bytes, its descriptor says {size}",
                    src.display(),
                    opened.meta.len()
                )));
            }
        }
        self.import_opened(&opened.file, src, d, opened.meta.len())
    }

    /// Add blob `d`, the first `size` bytes of `file`, already open (and
    /// checked by the caller), whose name is `src`: hard-linked when `src`
    /// still names that very file at that size, else copied from `file`
    /// itself, so what goes in is always what was checked, even when the
    /// name was removed or reused meanwhile.
    pub fn import_opened(&self, file: &File, src: &Path, d: &Digest, size: u64) -> Result<()> {
        let dest = blob_path(self.root(), d);
        if dest.exists() {
            return Ok(());
        }
        let meta = file.metadata()?;
        let id = FileId::of(&meta);
        let linkable = meta.mode() & 0o777 == 0o644 && meta.len() == size;
        if linkable && fs::hard_link(src, &dest).is_ok() {
            let linked = fs::symlink_metadata(&dest).map(|m| FileId::of(&m));
            if linked.ok() == Some(id) {
                return Ok(());
            }
            fs::remove_file(&dest).with_context(|| format!("removing {}", dest.display()))?;
        }
        let mut tmp = self.temp_blob()?;
        let mut from = file;
        from.seek(io::SeekFrom::Start(0))?;
        let copied = io::copy(&mut from.take(size), tmp.as_file_mut())
            .with_context(|| format!("copying {} to {}", src.display(), tmp.path().display()))?;
        if copied != size {
            return Err(anyhow!("{} shrank while it was copied", src.display()));
        }
        self.place_blob(tmp, d)
    }

    /// When `e` is the file system running out of space (or quota), say
    /// which directory was being written.
    pub fn explain(&self, e: anyhow::Error) -> anyhow::Error {
        name_full_disk(e, self.root())
    }

    /// Write `oci-layout` and `index.json` (last), then move the layout to its
    /// destination, replacing an older one there.
    pub fn commit(mut self, manifests: Vec<Descriptor>) -> Result<PathBuf> {
        let tmp = self
            .tmp
            .take()
            .ok_or_else(|| anyhow!("layout committed twice"))?;
        let root = tmp.path();
        let written = (|| {
            write_file(&root.join(OCI_LAYOUT_FILE), OCI_LAYOUT_CONTENT)?;
            let mut index = Index::new(manifests);
            index.manifests.sort_by(|a, b| {
                let name = |d: &Descriptor| d.annotations.get(oci::ANNOTATION_REF_NAME).cloned();
                name(a).cmp(&name(b)).then_with(|| a.digest.cmp(&b.digest))
            });
            write_file(&root.join("index.json"), &canonical_json(&index))?;
            let lock = root.join(LOCK_FILE);
            fs::remove_file(&lock).with_context(|| format!("removing {}", lock.display()))?;
            set_permissions_tree(root)
        })();
        if let Err(e) = written {
            return Err(name_full_disk(e, root));
        }
        let tmp_path = tmp.keep();
        let placed = self.place(&tmp_path);
        if placed.is_err() {
            let _ = fs::remove_dir_all(&tmp_path);
        }
        placed.map(|()| self.dest.clone())
    }

    /// Move the finished layout at `tmp_path` to the destination: renamed
    /// there when nothing is there, its entries moved in when an empty
    /// directory is there (which may be the current directory: `-o .`), or
    /// replacing an older layout (put back on failure).
    fn place(&self, tmp_path: &Path) -> Result<()> {
        check_destination(&self.target)?;
        let dest = &self.target;
        if !dest.exists() {
            return fs::rename(tmp_path, dest)
                .with_context(|| format!("moving the new layout to {}", dest.display()));
        }
        if is_empty_dir(dest) {
            // index.json last: the layout is complete once it is there.
            for name in ["blobs", OCI_LAYOUT_FILE, "index.json"] {
                fs::rename(tmp_path.join(name), dest.join(name))
                    .with_context(|| format!("moving {name} into {}", dest.display()))?;
            }
            fs::set_permissions(dest, fs::Permissions::from_mode(0o755))
                .with_context(|| format!("setting the mode of {}", dest.display()))?;
            let _ = fs::remove_dir_all(tmp_path);
            return Ok(());
        }
        let trash = tmp_path.with_file_name(crate::image::output::layout_old_name(
            &dest.file_name().unwrap_or_default().to_string_lossy(),
        ));
        fs::rename(dest, &trash)
            .with_context(|| format!("moving the old {} aside", dest.display()))?;
        if let Err(e) = fs::rename(tmp_path, dest) {
            let _ = fs::rename(&trash, dest);
            return Err(e).with_context(|| format!("moving the new layout to {}", dest.display()));
        }
        let _ = fs::remove_dir_all(trash);
        Ok(())
    }
}

/// `dest` with its parent resolved (created when missing), so that `.`,
/// `..` and a trailing `/` name the real directory and its parent.
fn resolve_target(dest: &Path) -> Result<PathBuf> {
    if dest.exists() {
        return fs::canonicalize(dest).with_context(|| format!("resolving {}", dest.display()));
    }
    let parent = crate::image::output_parent(dest)?;
    let parent =
        fs::canonicalize(&parent).with_context(|| format!("resolving {}", parent.display()))?;
    match dest.file_name() {
        Some(n) => Ok(parent.join(n)),
        None => Err(bad_input(format!(
            "{}: cannot be an output directory",
            dest.display()
        ))),
    }
}

/// The output may be replaced only when it is absent, an empty directory, or
/// an OCI layout (an earlier build).
fn check_destination(dest: &Path) -> Result<()> {
    if !dest.exists() || dest.join(OCI_LAYOUT_FILE).exists() || is_empty_dir(dest) {
        return Ok(());
    }
    Err(bad_input(format!(
        "{}: exists and is not an OCI layout; choose another output directory with -o",
        dest.display()
    )))
}

fn is_empty_dir(p: &Path) -> bool {
    fs::read_dir(p)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false)
}

/// Take the lock of a new temporary directory: locked under another name,
/// then renamed, so that no one ever sees `.lock` unlocked while its
/// writer lives.
pub(crate) fn lock_dir(dir: &Path) -> Result<File> {
    let fresh = dir.join(".lock-new");
    let f = File::create(&fresh).with_context(|| format!("creating {}", fresh.display()))?;
    if !try_lock(&f).with_context(|| format!("locking {}", fresh.display()))? {
        return Err(anyhow!("{} is locked by another process", fresh.display()));
    }
    let lock = dir.join(LOCK_FILE);
    fs::rename(&fresh, &lock).with_context(|| format!("creating {}", lock.display()))?;
    Ok(f)
}

/// An exclusive `flock` on `f`, without waiting: false when another
/// process holds it.
fn try_lock(f: &File) -> io::Result<bool> {
    // SAFETY: flock only reads the descriptor number, which `f` keeps open
    // for the duration of the call.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Remove the temporary directories named `prefix*` in `parent` that were
/// left by runs that died (builds, benches): those whose lock file nobody
/// holds.
/// Best effort: whatever cannot be read or removed is left alone.
pub(crate) fn remove_stale(parent: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry.file_name().to_string_lossy().starts_with(prefix)
            && entry.file_type().is_ok_and(|t| t.is_dir())
            && open_regular(&entry.path().join(LOCK_FILE))
                .ok()
                .is_some_and(|l| try_lock(&l.file).unwrap_or(false));
        if stale {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// `path`, opened if it is a regular file (no symbolic link followed).
fn open_regular(path: &Path) -> Result<guard::LayoutFile> {
    match (path.parent(), path.file_name().and_then(|n| n.to_str())) {
        (Some(dir), Some(name)) => guard::open(dir, &[name]),
        _ => Err(bad_input(format!("{}: not a file", path.display()))),
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// `e`, saying that `dir` was being written when it comes from a full file
/// system or an exceeded quota.
fn name_full_disk(e: anyhow::Error, dir: &Path) -> anyhow::Error {
    let full = e.chain().any(|c| {
        c.downcast_ref::<io::Error>().is_some_and(|io| {
            io.kind() == io::ErrorKind::StorageFull
                || matches!(io.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        })
    });
    if full {
        return e.context(format!("no space left writing {}", dir.display()));
    }
    e
}

/// Give the layout ordinary permissions (directories 0755, files 0644) so that
/// what is written does not depend on the process umask or on tempfile's 0600.
fn set_permissions_tree(dir: &Path) -> Result<()> {
    let failed = |p: &Path| format!("setting the mode of {}", p.display());
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).with_context(|| failed(dir))?;
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let path = entry.path();
        let ft = entry.file_type().with_context(|| failed(&path))?;
        if ft.is_dir() {
            set_permissions_tree(&path)?;
        } else if ft.is_file()
            && entry.metadata().with_context(|| failed(&path))?.mode() & 0o777 != 0o644
        {
            // Hard-linked blobs are 0644 already (see `import_blob`).
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644))
                .with_context(|| failed(&path))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_opened_blob_goes_in_as_it_was_checked_whatever_its_name_holds_now() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("blob");
        let d = Digest::of(b"checked");
        for replace in [false, true] {
            fs::write(&src, b"checked").unwrap();
            fs::set_permissions(&src, fs::Permissions::from_mode(0o644)).unwrap();
            let file = File::open(&src).unwrap();
            // The name is removed, or reused for other bytes, after the check.
            fs::remove_file(&src).unwrap();
            if replace {
                fs::write(&src, b"CHECKED").unwrap();
                fs::set_permissions(&src, fs::Permissions::from_mode(0o644)).unwrap();
            }
            let w = LayoutWriter::create(&dir.path().join(format!("out-{replace}"))).unwrap();
            w.import_opened(&file, &src, &d, 7).unwrap();
            assert_eq!(fs::read(w.blob_path(&d)).unwrap(), b"checked");
        }
    }

    #[test]
    fn a_full_disk_is_named_and_other_errors_are_left_alone() {
        let dir = Path::new("/out/.x.tmp-1");
        let full = anyhow::Error::new(io::Error::from_raw_os_error(libc::ENOSPC)).context("layer");
        assert!(format!("{:#}", name_full_disk(full, dir))
            .starts_with("no space left writing /out/.x.tmp-1: layer"));
        let other = anyhow::Error::new(io::Error::from_raw_os_error(libc::EACCES));
        assert!(!format!("{:#}", name_full_disk(other, dir)).contains("no space"));
    }

    #[test]
    fn a_lock_held_elsewhere_is_not_taken() {
        let t = tempfile::tempdir().unwrap();
        let held = lock_dir(t.path()).unwrap();
        let again = File::open(t.path().join(LOCK_FILE)).unwrap();
        assert!(!try_lock(&again).unwrap());
        drop(held);
        assert!(try_lock(&again).unwrap());
    }
}

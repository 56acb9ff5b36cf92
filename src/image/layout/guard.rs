//! The one way boxwright reads a file of an OCI layout on disk (`oci-layout`,
//! `index.json`, manifests, configs, layer blobs).
//!
//! A layout is input from anywhere (a download, another tool, a shared
//! directory), so none of its files is trusted to be what its name says:
//! each is opened without following a symbolic link and without blocking (a
//! FIFO would otherwise hang the open), then checked on the open descriptor
//! to be a regular file, so that a layout cannot make boxwright read (or
//! push, or copy into a new layout) `/etc/passwd`, `/dev/zero` or a pipe.
//! Blob paths are made from strictly parsed digests (`sha256:` and 64
//! lowercase hex digits), so no `..` can appear in them, and the directories
//! on the way (`blobs`, `blobs/sha256`) must be real directories. Sizes are
//! checked against descriptors before a byte is used, JSON documents are
//! capped at [`MAX_DOCUMENT`], and digests are checked before a document is
//! parsed or a blob handed on. Every refusal is bad input naming the layout
//! and the file.

use std::fs::{File, Metadata};
use std::io::{self, Read, Seek};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::error::bad_input;
use crate::input::kind_of;
use crate::oci::{Descriptor, Digest};

/// The largest JSON document (index, manifest, config) read into memory:
/// 4 MiB, the limit registries put on manifests.
pub const MAX_DOCUMENT: u64 = 4 << 20;

/// What a file's content is known by while it does not change: a check done
/// on a file is valid for as long as its identity is the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
}

impl FileId {
    pub fn of(meta: &Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        }
    }
}

/// A file of a layout, open, known to be a regular file.
pub struct LayoutFile {
    pub file: File,
    pub meta: Metadata,
    /// The full path, for messages.
    pub path: PathBuf,
}

/// The path of blob `d` inside a layout, as components.
pub fn blob_components(d: &Digest) -> [&str; 3] {
    ["blobs", d.algorithm(), d.hex()]
}

/// Open the file `rel` (path components) of the layout at `root`.
pub fn open(root: &Path, rel: &[&str]) -> Result<LayoutFile> {
    let mut path = root.to_path_buf();
    let (last, dirs) = rel
        .split_last()
        .ok_or_else(|| bad_input(format!("{}: no file named", root.display())))?;
    for d in dirs {
        path.push(d);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(m) => return Err(refusal(root, &path, kind_of(&m))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(refusal(root, &path, "missing"))
            }
            Err(e) => return Err(io_error(e, &path)),
        }
    }
    path.push(last);
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(&path);
    let file = match opened {
        Ok(f) => f,
        Err(e) => {
            // Say what is there instead of the bare errno (ELOOP for a
            // symbolic link, ENXIO for a socket...).
            return Err(match std::fs::symlink_metadata(&path) {
                Ok(m) if !m.file_type().is_file() => refusal(root, &path, kind_of(&m)),
                Err(m) if m.kind() == io::ErrorKind::NotFound => refusal(root, &path, "missing"),
                _ => io_error(e, &path),
            });
        }
    };
    let meta = file.metadata().map_err(|e| io_error(e, &path))?;
    if !meta.file_type().is_file() {
        return Err(refusal(root, &path, kind_of(&meta)));
    }
    Ok(LayoutFile { file, meta, path })
}

/// Read the JSON document `rel` of the layout at `root`: at most
/// [`MAX_DOCUMENT`] bytes, and when its descriptor is known, exactly its
/// size and digest.
pub fn read_document(root: &Path, rel: &[&str], desc: Option<&Descriptor>) -> Result<Vec<u8>> {
    if let Some(d) = desc {
        if d.size > MAX_DOCUMENT {
            return Err(too_big(
                root,
                &join(root, rel),
                d.size,
                "its descriptor says",
            ));
        }
    }
    let f = open(root, rel)?;
    let len = f.meta.len();
    if let Some(d) = desc {
        check_size(root, &f, d)?;
    }
    if len > MAX_DOCUMENT {
        return Err(too_big(root, &f.path, len, "it has"));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    (&f.file)
        .take(MAX_DOCUMENT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(e, &f.path))?;
    if bytes.len() as u64 != len {
        return Err(changed(root, &f.path));
    }
    if let Some(d) = desc {
        if Digest::of(&bytes) != d.digest {
            return Err(corrupt(root, &f.path, &d.digest));
        }
    }
    Ok(bytes)
}

/// Open blob `d` of the layout at `root`, checking its size (not its bytes).
pub fn open_blob(root: &Path, d: &Descriptor) -> Result<LayoutFile> {
    let f = open(root, &blob_components(&d.digest))?;
    check_size(root, &f, d)?;
    Ok(f)
}

/// Read blob `d` of the layout at `root` to its end, checking its size and
/// digest; the identity of the file that was read.
pub fn verify_blob(root: &Path, d: &Descriptor) -> Result<FileId> {
    let f = open_blob(root, d)?;
    check_digest(root, &f, d)
}

/// Read the open blob `f` from its start to its end, checking that it holds
/// the bytes of `d`; the identity of the file that was read.
pub fn check_digest(root: &Path, f: &LayoutFile, d: &Descriptor) -> Result<FileId> {
    let id = FileId::of(&f.meta);
    let mut r = &f.file;
    let (digest, size) = r
        .rewind()
        .and_then(|()| hash(r))
        .map_err(|e| io_error(e, &f.path))?;
    let after = f.file.metadata().map_err(|e| io_error(e, &f.path))?;
    if size != d.size || FileId::of(&after) != id {
        return Err(changed(root, &f.path));
    }
    if digest != d.digest {
        return Err(corrupt(root, &f.path, &d.digest));
    }
    Ok(id)
}

/// The digest and length of what `r` holds from where it is to its end.
pub fn hash(mut r: impl Read) -> io::Result<(Digest, u64)> {
    let mut h = crate::oci::Hashing::new(io::sink());
    io::copy(&mut r, &mut h)?;
    let (_, digest, size) = h.finish();
    Ok((digest, size))
}

fn check_size(root: &Path, f: &LayoutFile, d: &Descriptor) -> Result<()> {
    let len = f.meta.len();
    if len == d.size {
        return Ok(());
    }
    let what = if len < d.size {
        "truncated"
    } else {
        "too long"
    };
    Err(bad_input(format!(
        "{}: {what}: it has {len} bytes, its descriptor says {} (OCI layout {})",
        f.path.display(),
        d.size,
        root.display()
    )))
}

fn join(root: &Path, rel: &[&str]) -> PathBuf {
    rel.iter().fold(root.to_path_buf(), |p, c| p.join(c))
}

fn refusal(root: &Path, path: &Path, what: &str) -> anyhow::Error {
    if what == "missing" {
        return bad_input(format!(
            "{}: missing from the OCI layout {}",
            path.display(),
            root.display()
        ));
    }
    bad_input(format!(
        "{}: is {what}; the OCI layout {} may hold only regular files and directories",
        path.display(),
        root.display()
    ))
}

fn too_big(root: &Path, path: &Path, size: u64, how: &str) -> anyhow::Error {
    bad_input(format!(
        "{}: too big for a JSON document of the OCI layout {}: {how} {size} bytes, at most {MAX_DOCUMENT} are read",
        path.display(),
        root.display()
    ))
}

fn corrupt(root: &Path, path: &Path, digest: &Digest) -> anyhow::Error {
    bad_input(format!(
        "{}: corrupt: its content does not match its digest {digest} (OCI layout {})",
        path.display(),
        root.display()
    ))
}

fn changed(root: &Path, path: &Path) -> anyhow::Error {
    bad_input(format!(
        "{}: changed while it was read (OCI layout {})",
        path.display(),
        root.display()
    ))
}

/// An I/O error, with the path (exit 1: not the layout's fault).
fn io_error(e: io::Error, path: &Path) -> anyhow::Error {
    anyhow::Error::new(e).context(format!("reading {}", path.display()))
}

/// Read the JSON document at `path`, a file outside any layout (a cached
/// blob), with the same checks as a layout's documents.
pub fn read_document_at(path: &Path, desc: &Descriptor) -> Result<Vec<u8>> {
    match (path.parent(), path.file_name().and_then(|n| n.to_str())) {
        (Some(dir), Some(name)) => read_document(dir, &[name], Some(desc)),
        _ => Err(bad_input(format!("{}: not a file", path.display()))),
    }
}

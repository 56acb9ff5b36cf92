//! What a layer holds: tar entries, their order, and when two entries for
//! one path are the same; and how entries are hashed canonically ([`Canon`]),
//! by content for a layer's cache key or by file stamps ([`Stamps`]) for
//! finding that key again without reading a file.

use std::cmp::Ordering;
use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use sha2::{Digest as _, Sha256};

/// One tar entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    /// Path in the image without leading `/` (raw bytes: names need not be UTF-8).
    pub path: Vec<u8>,
    pub kind: EntryKind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub uname: String,
    pub gname: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EntryKind {
    Dir,
    /// A file on disk, of this size when walked, and as it was then.
    File {
        src: PathBuf,
        size: u64,
        stamp: Stamp,
    },
    Inline(Vec<u8>),
    /// A file known by its size and sha256, whose content is costly to
    /// produce (a wheel member, decompressed): a layer's cache key and
    /// planning read these two; only the tar writer asks `produce` for the
    /// bytes, which go straight into the layer, never held whole.
    Hashed {
        size: u64,
        sha256: [u8; 32],
        produce: Producer,
    },
    Symlink(Vec<u8>),
    /// A hard link to the earlier entry with this path.
    Hardlink(Vec<u8>),
}

/// Writes a [`EntryKind::Hashed`] file's content to the layer: exactly its
/// size, with its sha256, or an error (then the layer is not made).
#[derive(Clone)]
pub struct Producer(pub Arc<WriteTo>);

/// What a [`Producer`] calls: write the bytes to the writer given.
pub type WriteTo = dyn Fn(&mut dyn Write) -> Result<()> + Send + Sync;

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Producer")
    }
}

/// A hashed file is its size and sha256: any two producers of those give
/// the same bytes.
impl PartialEq for Producer {
    fn eq(&self, _: &Producer) -> bool {
        true
    }
}

impl Eq for Producer {}

impl std::hash::Hash for Producer {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

/// A file as a walk saw it: which file it is and when it last changed.
/// Any write to a file moves its ctime, which no call can set back; so a
/// file with the same stamp as before, whose ctime was already well in the
/// past then, holds what it held (the layer cache's rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stamp {
    pub dev: u64,
    pub ino: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

impl Stamp {
    pub fn of(m: &fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            mtime_ns: m.mtime().saturating_mul(1_000_000_000) + m.mtime_nsec(),
            ctime_ns: m.ctime().saturating_mul(1_000_000_000) + m.ctime_nsec(),
        }
    }

    fn bytes(&self) -> [u8; 32] {
        let mut b = [0; 32];
        for (i, n) in [
            self.dev,
            self.ino,
            self.mtime_ns as u64,
            self.ctime_ns as u64,
        ]
        .into_iter()
        .enumerate()
        {
            b[i * 8..i * 8 + 8].copy_from_slice(&n.to_be_bytes());
        }
        b
    }
}

/// Length-prefixed fields into a sha256: no two field lists serialise alike.
pub struct Canon(Sha256);

impl Canon {
    /// A hasher whose fields follow `domain`.
    pub fn new(domain: &[u8]) -> Canon {
        let mut c = Canon(Sha256::new());
        c.bytes(domain);
        c
    }
    pub fn bytes(&mut self, b: &[u8]) {
        self.0.update((b.len() as u64).to_be_bytes());
        self.0.update(b);
    }
    pub fn num(&mut self, n: u64) {
        self.0.update(n.to_be_bytes());
    }
    /// `e`'s path, attributes and type, then its content as `content` (size
    /// and a 32-byte identity), which a file-like entry must have.
    pub fn entry(&mut self, e: &Entry, content: Option<(u64, [u8; 32])>) -> Result<()> {
        self.bytes(&e.path);
        self.num(u64::from(e.mode));
        self.num(e.uid);
        self.num(e.gid);
        self.bytes(e.uname.as_bytes());
        self.bytes(e.gname.as_bytes());
        match (&e.kind, content) {
            (EntryKind::Dir, _) => self.bytes(b"dir"),
            (EntryKind::Symlink(t), _) => {
                self.bytes(b"symlink");
                self.bytes(t);
            }
            (EntryKind::Hardlink(t), _) => {
                self.bytes(b"hardlink");
                self.bytes(t);
            }
            (_, Some((size, id))) => {
                self.bytes(b"file");
                self.num(size);
                self.bytes(&id);
            }
            (_, None) => {
                return Err(anyhow::anyhow!(
                    "{}: a file entry without content",
                    String::from_utf8_lossy(&e.path)
                ))
            }
        }
        Ok(())
    }
    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

/// A layer's entries as walked, without reading a file: each entry's
/// fields with a file's size and [`Stamp`] in place of its content (inline
/// and hashed content by its sha256). Two walks with the same stamps saw
/// the same files, unless one was rewritten within the clock's granularity
/// of its ctime, which `newest_change_ns` lets a reader rule out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamps {
    pub digest: [u8; 32],
    /// The latest ctime of a file entry (0 when there is none).
    pub newest_change_ns: i64,
}

/// Takes [`Stamps`] over entries, one at a time.
pub struct StampsOf {
    canon: Canon,
    newest_change_ns: i64,
}

impl Default for StampsOf {
    fn default() -> Self {
        StampsOf {
            canon: Canon::new(b"boxwright layer stamps 1"),
            newest_change_ns: 0,
        }
    }
}

impl StampsOf {
    pub fn add(&mut self, e: &Entry) -> Result<()> {
        let content = match &e.kind {
            EntryKind::File { size, stamp, .. } => {
                self.newest_change_ns = self.newest_change_ns.max(stamp.ctime_ns);
                Some((*size, stamp.bytes()))
            }
            EntryKind::Inline(data) => Some((data.len() as u64, Sha256::digest(data).into())),
            EntryKind::Hashed { size, sha256, .. } => Some((*size, *sha256)),
            EntryKind::Dir | EntryKind::Symlink(_) | EntryKind::Hardlink(_) => None,
        };
        self.canon.entry(e, content)
    }
    pub fn finish(self) -> Stamps {
        Stamps {
            digest: self.canon.finish(),
            newest_change_ns: self.newest_change_ns,
        }
    }
}

/// (device, inode) of a file with several links.
pub(crate) type Inode = (u64, u64);

/// Tar order: path components in order (`/` sorts below every byte a name
/// can hold, so `a/b` comes before `a.txt`), without allocating a key.
pub(crate) fn cmp_paths(a: &[u8], b: &[u8]) -> Ordering {
    let f = |&c: &u8| if c == b'/' { 0 } else { c };
    a.iter().map(f).cmp(b.iter().map(f))
}

/// Append one path component.
pub(crate) fn push_name(path: &mut Vec<u8>, name: &[u8]) {
    if !path.is_empty() {
        path.push(b'/');
    }
    path.extend_from_slice(name);
}

pub(crate) fn same_attrs(a: &Entry, b: &Entry) -> bool {
    (a.mode, a.uid, a.gid, &a.uname, &a.gname) == (b.mode, b.uid, b.gid, &b.uname, &b.gname)
}

/// Whether two entries hold the same thing (files compared byte by byte).
pub(crate) fn same_content(a: &Entry, b: &Entry) -> Result<bool> {
    Ok(match (&a.kind, &b.kind) {
        (
            EntryKind::File {
                src: x, size: sx, ..
            },
            EntryKind::File {
                src: y, size: sy, ..
            },
        ) => x == y || (sx == sy && files_equal(x, y)?),
        (EntryKind::File { src, size, .. }, EntryKind::Inline(data))
        | (EntryKind::Inline(data), EntryKind::File { src, size, .. }) => {
            *size == data.len() as u64 && fs::read(src)? == *data
        }
        (EntryKind::Hashed { size, sha256, .. }, EntryKind::Inline(data))
        | (EntryKind::Inline(data), EntryKind::Hashed { size, sha256, .. }) => {
            *size == data.len() as u64 && Sha256::digest(data)[..] == sha256[..]
        }
        (x, y) => x == y,
    })
}

fn files_equal(a: &Path, b: &Path) -> Result<bool> {
    let (mut fa, mut fb) = (fs::File::open(a)?, fs::File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let na = read_full(&mut fa, &mut ba)?;
        let nb = read_full(&mut fb, &mut bb)?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// An entry with default attributes (0644, root), for tests.
#[cfg(test)]
pub(crate) fn test_entry(path: &[u8], kind: EntryKind) -> Entry {
    Entry {
        path: path.to_vec(),
        kind,
        mode: 0o644,
        uid: 0,
        gid: 0,
        uname: String::new(),
        gname: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_sort_before_siblings_with_longer_names() {
        let mut v: Vec<&[u8]> = vec![b"a.txt", b"a/b", b"a"];
        v.sort_by(|a, b| cmp_paths(a, b));
        assert_eq!(v, vec![&b"a"[..], b"a/b", b"a.txt"]);
    }
}

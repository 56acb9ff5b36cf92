//! What a layer holds: tar entries, their order, and when two entries for
//! one path are the same.

use std::cmp::Ordering;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

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
    /// A file on disk, of this size when walked.
    File {
        src: PathBuf,
        size: u64,
    },
    Inline(Vec<u8>),
    /// A file known only by its size and sha256: what a layer's cache key
    /// reads instead of content that is costly to produce (a wheel member,
    /// decompressed). Never written: [`crate::recipe::LayerPlan::entries`]
    /// gives the content itself.
    Hashed {
        size: u64,
        sha256: [u8; 32],
    },
    Symlink(Vec<u8>),
    /// A hard link to the earlier entry with this path.
    Hardlink(Vec<u8>),
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
        (EntryKind::File { src: x, size: sx }, EntryKind::File { src: y, size: sy }) => {
            x == y || (sx == sy && files_equal(x, y)?)
        }
        (EntryKind::File { src, size }, EntryKind::Inline(data))
        | (EntryKind::Inline(data), EntryKind::File { src, size }) => {
            *size == data.len() as u64 && fs::read(src)? == *data
        }
        (EntryKind::Hashed { size, sha256 }, EntryKind::Inline(data))
        | (EntryKind::Inline(data), EntryKind::Hashed { size, sha256 }) => {
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

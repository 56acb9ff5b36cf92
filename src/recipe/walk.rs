//! Resolve one `[[layer]]` into the sorted list of tar entries it holds.
//!
//! The walk happens before anything is written, so that every bad input
//! (missing `src`, escaping symlink, device file, conflicting `dest`) is found
//! first. Entries are keyed by their path in the image and kept sorted by
//! path components, which is the order the tar is written in; parent
//! directories are added; files seen twice through hard links become tar
//! hard links. Only metadata is kept in memory, never file contents.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use anyhow::Result;
use globset::{Glob, GlobSet, GlobSetBuilder};

use super::schema::{Attrs, EntrySection, LayerSection, Str};
use super::Source;
use crate::error::bad_input;

/// Everything a layer holds, in tar order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LayerPlan {
    pub name: String,
    pub entries: Vec<Entry>,
}

impl LayerPlan {
    /// Bytes of file content in the layer (for progress).
    pub fn content_size(&self) -> u64 {
        self.entries
            .iter()
            .map(|e| match &e.kind {
                EntryKind::File { size, .. } => *size,
                EntryKind::Inline(b) => b.len() as u64,
                _ => 0,
            })
            .sum()
    }
}

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
    /// A file on disk, of this size when planned.
    File {
        src: PathBuf,
        size: u64,
    },
    Inline(Vec<u8>),
    Symlink(Vec<u8>),
    /// A hard link to the earlier entry with this path.
    Hardlink(Vec<u8>),
}

/// Tar order: path components in order (`/` sorts below every byte a name
/// can hold, so `a/b` comes before `a.txt`), without allocating a key.
fn cmp_paths(a: &[u8], b: &[u8]) -> Ordering {
    let f = |&c: &u8| if c == b'/' { 0 } else { c };
    a.iter().map(f).cmp(b.iter().map(f))
}

/// An entry with where the recipe asked for it and, for files with several
/// links, their (device, inode).
type Collected = (Entry, Range<usize>, Option<(u64, u64)>);

struct Collector<'a> {
    src: &'a Source,
    context: &'a Path,
    /// In the order the recipe asked for them; sorted and merged by `finish`.
    entries: Vec<Collected>,
}

/// The effective attributes of an entry: the entry's own, else the layer's.
struct Effective {
    mode: Option<u32>,
    dir_mode: Option<u32>,
    uid: u64,
    gid: u64,
    uname: String,
    gname: String,
}

pub(crate) fn plan_layer(
    src: &Source,
    context: &Path,
    index: usize,
    layer: &LayerSection,
    expand: &dyn Fn(&Str) -> Result<String>,
) -> Result<LayerPlan> {
    let name = match &layer.name {
        Some(n) => expand(n)?,
        None => format!("layer {}", index + 1),
    };
    if layer.entries.is_empty() {
        return Err(bad_input(format!(
            "{}: layer {name:?} has no [[layer.entry]]",
            src.path.display()
        )));
    }
    let mut c = Collector {
        src,
        context,
        entries: Vec::new(),
    };
    for spanned in &layer.entries {
        let span = spanned.span();
        let e = spanned.get_ref();
        let attrs = effective(&layer.attrs(), &e.attrs(), expand)?;
        c.add_entry(e, span, &attrs, expand)?;
    }
    c.finish(name)
}

fn effective(
    layer: &Attrs,
    entry: &Attrs,
    expand: &dyn Fn(&Str) -> Result<String>,
) -> Result<Effective> {
    let name = |e: &Option<Str>, l: &Option<Str>| -> Result<String> {
        match e.as_ref().or(l.as_ref()) {
            Some(s) => expand(s),
            None => Ok(String::new()),
        }
    };
    Ok(Effective {
        mode: entry
            .mode
            .as_ref()
            .or(layer.mode.as_ref())
            .map(|m| m.get_ref().0),
        dir_mode: entry
            .dir_mode
            .as_ref()
            .or(layer.dir_mode.as_ref())
            .map(|m| m.get_ref().0),
        uid: entry.uid.or(layer.uid).unwrap_or(0),
        gid: entry.gid.or(layer.gid).unwrap_or(0),
        uname: name(&entry.uname, &layer.uname)?,
        gname: name(&entry.gname, &layer.gname)?,
    })
}

impl Effective {
    fn entry(&self, path: Vec<u8>, kind: EntryKind, mode: u32) -> Entry {
        Entry {
            path,
            kind,
            mode,
            uid: self.uid,
            gid: self.gid,
            uname: self.uname.clone(),
            gname: self.gname.clone(),
        }
    }
}

impl Collector<'_> {
    fn add_entry(
        &mut self,
        e: &EntrySection,
        span: Range<usize>,
        attrs: &Effective,
        expand: &dyn Fn(&Str) -> Result<String>,
    ) -> Result<()> {
        let dest_text = expand(&e.dest)?;
        let dest = normalize_dest(&dest_text).map_err(|m| self.src.err(e.dest.span(), m))?;
        let kinds = [
            e.src.is_some(),
            e.content.is_some(),
            e.symlink.is_some(),
            e.dir,
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if kinds != 1 {
            return Err(self.src.err(
                span,
                "an entry needs exactly one of `src`, `content`, `symlink` or `dir = true`",
            ));
        }
        if !e.exclude.is_empty() && e.src.is_none() {
            return Err(self
                .src
                .err(span, "`exclude` only applies to a directory `src`"));
        }
        let entry = |kind: EntryKind, mode: u32| attrs.entry(dest.clone(), kind, mode);
        if let Some(content) = &e.content {
            let text = expand(content)?;
            return self.insert(
                entry(
                    EntryKind::Inline(text.into_bytes()),
                    attrs.mode.unwrap_or(0o644),
                ),
                span,
                None,
            );
        }
        if let Some(target) = &e.symlink {
            let t = expand(target)?;
            if t.is_empty() {
                return Err(self.src.err(target.span(), "symlink target is empty"));
            }
            return self.insert(
                entry(
                    EntryKind::Symlink(t.into_bytes()),
                    attrs.mode.unwrap_or(0o777),
                ),
                span,
                None,
            );
        }
        if e.dir {
            return self.insert(
                entry(EntryKind::Dir, attrs.mode.unwrap_or(0o755)),
                span,
                None,
            );
        }
        let src_str = e.src.as_ref().expect("one kind is set");
        let rel = expand(src_str)?;
        let path = self.context.join(&rel);
        let loc = |m: String| self.src.err(src_str.span(), m);
        let meta = fs::symlink_metadata(&path).map_err(|err| {
            loc(format!(
                "src {rel:?} ({}) cannot be read: {err}",
                path.display()
            ))
        })?;
        let canonical = path.canonicalize().map_err(|err| {
            loc(format!(
                "src {rel:?} ({}) cannot be resolved: {err}",
                path.display()
            ))
        })?;
        let followed = e.follow_symlinks && meta.file_type().is_symlink();
        if !canonical.starts_with(self.context) && !followed {
            return Err(loc(format!(
                "src {rel:?} resolves to {}, outside the build context {}{}",
                canonical.display(),
                self.context.display(),
                if meta.file_type().is_symlink() {
                    " (set follow_symlinks = true on the entry to copy what it points at)"
                } else {
                    ""
                }
            )));
        }
        let excludes =
            build_excludes(&e.exclude, expand).map_err(|m| self.src.err(span.clone(), m))?;
        let target_meta = fs::metadata(&canonical)?;
        if target_meta.is_dir() {
            // With `dest = "/"` the tree's contents go to the root, which has no entry.
            let dest_dir = dest.clone();
            if !dest_dir.is_empty() {
                let mode = attrs.dir_mode.unwrap_or(target_meta.mode() & 0o7777);
                self.insert(
                    Entry {
                        kind: EntryKind::Dir,
                        mode,
                        ..entry(EntryKind::Dir, 0)
                    },
                    span.clone(),
                    None,
                )?;
            }
            self.walk_dir(
                &canonical,
                &canonical,
                &dest_dir,
                &excludes,
                e.follow_symlinks,
                attrs,
                &span,
            )
        } else {
            let mut file_dest = dest.clone();
            if dest_text.ends_with('/') {
                push_name(
                    &mut file_dest,
                    canonical.file_name().map(|n| n.as_bytes()).unwrap_or(b""),
                );
            }
            let kind = self.file_kind(&canonical, &target_meta, &span)?;
            let mode = attrs.mode.unwrap_or(target_meta.mode() & 0o7777);
            let inode = (target_meta.nlink() > 1).then(|| (target_meta.dev(), target_meta.ino()));
            self.insert(
                Entry {
                    path: file_dest,
                    ..entry(kind, mode)
                },
                span,
                inode,
            )
        }
    }

    fn file_kind(
        &self,
        path: &Path,
        meta: &fs::Metadata,
        span: &Range<usize>,
    ) -> Result<EntryKind> {
        let ft = meta.file_type();
        if ft.is_file() {
            return Ok(EntryKind::File {
                src: path.to_path_buf(),
                size: meta.len(),
            });
        }
        let what = if ft.is_block_device() || ft.is_char_device() {
            "a device file"
        } else if ft.is_socket() {
            "a socket"
        } else if ft.is_fifo() {
            "a named pipe"
        } else {
            "not a regular file"
        };
        Err(self.src.err(
            span.clone(),
            format!(
                "{} is {what}; only regular files, directories and symlinks can go into a layer",
                path.display()
            ),
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn walk_dir(
        &mut self,
        root: &Path,
        dir: &Path,
        dest: &[u8],
        excludes: &GlobSet,
        follow: bool,
        attrs: &Effective,
        span: &Range<usize>,
    ) -> Result<()> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .map_err(|e| {
                self.src.err(
                    span.clone(),
                    format!("reading directory {}: {e}", dir.display()),
                )
            })?
            .map(|r| r.map(|d| d.file_name()))
            .collect::<std::io::Result<_>>()?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let path = dir.join(&name);
            let rel = path.strip_prefix(root).unwrap_or(&path);
            if excludes.is_match(rel) {
                continue;
            }
            let mut child = dest.to_vec();
            push_name(&mut child, name.as_bytes());
            let meta = fs::symlink_metadata(&path)?;
            let base = |kind: EntryKind, mode: u32| attrs.entry(child.clone(), kind, mode);
            let ft = meta.file_type();
            if ft.is_symlink() {
                let target = fs::read_link(&path)?;
                // Links that stay inside the context, or inside the tree being
                // copied (a followed `src` outside the context), stay links.
                if target.is_absolute()
                    || lexically_inside(&path, &target, self.context)
                    || lexically_inside(&path, &target, root)
                {
                    // Absolute targets are paths in the image, not on this machine.
                    self.insert(
                        base(
                            EntryKind::Symlink(target.as_os_str().as_bytes().to_vec()),
                            0o777,
                        ),
                        span.clone(),
                        None,
                    )?;
                    continue;
                }
                if !follow {
                    return Err(self.src.err(
                        span.clone(),
                        format!(
                            "symlink {} -> {} points outside the build context {}; set follow_symlinks = true on the entry to copy what it points at, or remove the link",
                            path.display(),
                            target.display(),
                            self.context.display()
                        ),
                    ));
                }
                let resolved = path.canonicalize().map_err(|e| {
                    self.src.err(
                        span.clone(),
                        format!("following symlink {}: {e}", path.display()),
                    )
                })?;
                let tmeta = fs::metadata(&resolved)?;
                if tmeta.is_dir() {
                    self.insert(
                        base(
                            EntryKind::Dir,
                            attrs.dir_mode.unwrap_or(tmeta.mode() & 0o7777),
                        ),
                        span.clone(),
                        None,
                    )?;
                    self.walk_dir(&resolved, &resolved, &child, excludes, follow, attrs, span)?;
                } else {
                    let kind = self.file_kind(&resolved, &tmeta, span)?;
                    self.insert(
                        base(kind, attrs.mode.unwrap_or(tmeta.mode() & 0o7777)),
                        span.clone(),
                        None,
                    )?;
                }
            } else if ft.is_dir() {
                self.insert(
                    base(
                        EntryKind::Dir,
                        attrs.dir_mode.unwrap_or(meta.mode() & 0o7777),
                    ),
                    span.clone(),
                    None,
                )?;
                self.walk_dir(root, &path, &child, excludes, follow, attrs, span)?;
            } else {
                let kind = self.file_kind(&path, &meta, span)?;
                let inode = (meta.nlink() > 1).then(|| (meta.dev(), meta.ino()));
                self.insert(
                    base(kind, attrs.mode.unwrap_or(meta.mode() & 0o7777)),
                    span.clone(),
                    inode,
                )?;
            }
        }
        Ok(())
    }

    fn insert(
        &mut self,
        entry: Entry,
        span: Range<usize>,
        inode: Option<(u64, u64)>,
    ) -> Result<()> {
        self.entries.push((entry, span, inode));
        Ok(())
    }

    /// Two entries for one path: directories merge (the later attributes
    /// win, as with COPY); identical files or links are kept once; anything
    /// else is a conflict.
    fn merge(&self, first: &mut Collected, later: Collected) -> Result<()> {
        let (old, old_span, _) = &*first;
        let entry = &later.0;
        if old.kind == EntryKind::Dir && entry.kind == EntryKind::Dir {
            *first = (later.0, later.1, None);
            return Ok(());
        }
        if same_content(old, entry)? && same_attrs(old, entry) {
            return Ok(());
        }
        Err(bad_input(format!(
            "{}: dest /{} is written twice with different contents or attributes (first at {}); remove one of the entries or exclude the path",
            self.src.at(later.1.clone()),
            String::from_utf8_lossy(&entry.path),
            self.src.at(old_span.clone()),
        )))
    }

    fn finish(mut self, name: String) -> Result<LayerPlan> {
        // A stable sort keeps the recipe's order among entries of one path.
        let mut entries = std::mem::take(&mut self.entries);
        entries.sort_by(|a, b| cmp_paths(&a.0.path, &b.0.path));
        // Merge entries of one path in place (a second vector would double
        // the peak memory of a large tree).
        let mut kept = 0;
        for i in 0..entries.len() {
            if kept > 0 && entries[kept - 1].0.path == entries[i].0.path {
                let later = entries[i].clone();
                self.merge(&mut entries[kept - 1], later)?;
            } else {
                entries.swap(kept, i);
                kept += 1;
            }
        }
        entries.truncate(kept);
        // Parent directories of every entry.
        let find = |entries: &[Collected], p: &[u8]| {
            entries.binary_search_by(|c| cmp_paths(&c.0.path, p)).ok()
        };
        let mut missing: Vec<Vec<u8>> = Vec::new();
        for (entry, span, _) in &entries {
            let mut p = entry.path.as_slice();
            while let Some(i) = p.iter().rposition(|&b| b == b'/') {
                p = &p[..i];
                match find(&entries, p) {
                    Some(j) if entries[j].0.kind != EntryKind::Dir => {
                        return Err(bad_input(format!(
                            "{}: /{} needs /{} to be a directory, but {} makes it a file or link",
                            self.src.at(span.clone()),
                            String::from_utf8_lossy(&entry.path),
                            String::from_utf8_lossy(p),
                            self.src.at(entries[j].1.clone())
                        )));
                    }
                    Some(_) => break,
                    None if missing.last().is_some_and(|m| m.as_slice() == p) => break,
                    None => missing.push(p.to_vec()),
                }
            }
        }
        missing.sort_by(|a, b| cmp_paths(a, b));
        missing.dedup();
        if !missing.is_empty() {
            entries.extend(missing.into_iter().map(|p| {
                let dir = Entry {
                    path: p,
                    kind: EntryKind::Dir,
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                    uname: String::new(),
                    gname: String::new(),
                };
                (dir, 0..0, None)
            }));
            entries.sort_by(|a, b| cmp_paths(&a.0.path, &b.0.path));
        }
        // Files reached twice through hard links become tar hard links to the
        // first, when both carry the same attributes (a link has none of its own).
        let mut seen: HashMap<(u64, u64), Entry> = HashMap::new();
        let entries = entries
            .into_iter()
            .map(|(mut e, _, inode)| {
                if let Some(ino) = inode {
                    match seen.get(&ino) {
                        Some(first) if same_attrs(first, &e) => {
                            e.kind = EntryKind::Hardlink(first.path.clone())
                        }
                        Some(_) => {}
                        None => {
                            seen.insert(ino, e.clone());
                        }
                    }
                }
                e
            })
            .collect();
        Ok(LayerPlan { name, entries })
    }
}

/// `/opt/r2d/` -> `opt/r2d`; refuses relative paths and `..`.
fn normalize_dest(dest: &str) -> Result<Vec<u8>, String> {
    if !dest.starts_with('/') {
        return Err(format!(
            "dest {dest:?} must be an absolute path in the image, e.g. \"/opt/app\""
        ));
    }
    let mut parts = Vec::new();
    for c in Path::new(dest).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => parts.push(n.as_bytes()),
            Component::ParentDir => return Err(format!("dest {dest:?} must not contain `..`")),
            Component::Prefix(_) => return Err(format!("dest {dest:?} is not a Unix path")),
        }
    }
    Ok(parts.join(&b'/'))
}

fn push_name(path: &mut Vec<u8>, name: &[u8]) {
    if !path.is_empty() {
        path.push(b'/');
    }
    path.extend_from_slice(name);
}

/// Whether a relative symlink at `link` pointing at `target` stays inside `context`.
fn lexically_inside(link: &Path, target: &Path, context: &Path) -> bool {
    let mut resolved: Vec<Component> = link
        .parent()
        .unwrap_or(Path::new("/"))
        .components()
        .collect();
    for c in target.components() {
        match c {
            Component::ParentDir => {
                if resolved.len() <= 1 {
                    return false;
                }
                resolved.pop();
            }
            Component::Normal(_) => resolved.push(c),
            _ => {}
        }
    }
    resolved.iter().collect::<PathBuf>().starts_with(context)
}

fn build_excludes(
    globs: &[Str],
    expand: &dyn Fn(&Str) -> Result<String>,
) -> Result<GlobSet, String> {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        let text = expand(g).map_err(|e| e.to_string())?;
        let glob = Glob::new(text.trim_end_matches('/'))
            .map_err(|e| format!("exclude pattern {text:?} is not a valid glob: {e}"))?;
        b.add(glob);
    }
    b.build().map_err(|e| e.to_string())
}

fn same_attrs(a: &Entry, b: &Entry) -> bool {
    (a.mode, a.uid, a.gid, &a.uname, &a.gname) == (b.mode, b.uid, b.gid, &b.uname, &b.gname)
}

fn same_content(a: &Entry, b: &Entry) -> Result<bool> {
    Ok(match (&a.kind, &b.kind) {
        (EntryKind::File { src: x, size: sx }, EntryKind::File { src: y, size: sy }) => {
            x == y || (sx == sy && files_equal(x, y)?)
        }
        (EntryKind::File { src, size }, EntryKind::Inline(data))
        | (EntryKind::Inline(data), EntryKind::File { src, size }) => {
            *size == data.len() as u64 && fs::read(src)? == *data
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dest_is_normalised_and_checked() {
        assert_eq!(normalize_dest("/opt//r2d/./app/").unwrap(), b"opt/r2d/app");
        assert_eq!(normalize_dest("/").unwrap(), b"");
        assert!(normalize_dest("opt/x").unwrap_err().contains("absolute"));
        assert!(normalize_dest("/opt/../etc").unwrap_err().contains(".."));
    }

    #[test]
    fn components_sort_before_siblings_with_longer_names() {
        let mut v: Vec<&[u8]> = vec![b"a.txt", b"a/b", b"a"];
        v.sort_by(|a, b| cmp_paths(a, b));
        assert_eq!(v, vec![&b"a"[..], b"a/b", b"a.txt"]);
    }

    #[test]
    fn symlink_escape_is_lexical() {
        let ctx = Path::new("/ctx");
        assert!(lexically_inside(
            Path::new("/ctx/a/link"),
            Path::new("../b"),
            ctx
        ));
        assert!(!lexically_inside(
            Path::new("/ctx/a/link"),
            Path::new("../../etc/passwd"),
            ctx
        ));
    }
}

//! Resolve one `[[layer]]` into the stream of tar entries it holds.
//!
//! A layer plan keeps its resolved entry sources (a `src` tree, a file, a
//! content, a link, a directory), not the entries they expand to: each source
//! yields its entries lazily in tar order (a depth-first walk with each
//! directory's names sorted by bytes is the order of path components), and the
//! layer's stream is their merge. Equal paths arrive adjacent and are merged
//! or refused, parent directories are added, and files seen twice through
//! hard links become tar hard links. Memory is bounded by the depth and width
//! of the trees, plus one record per file with several links.
//!
//! The stream runs once when planning, so that every bad input (missing
//! `src`, escaping symlink, device file, conflicting `dest`) is found before
//! anything is written, and again while the tar is written.

use std::cmp::Ordering;
use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use anyhow::Result;
use globset::{Glob, GlobSet, GlobSetBuilder};

use super::schema::{Attrs, EntrySection, LayerSection, Str};
use super::Source;
use crate::error::bad_input;

/// A layer: its resolved sources, in recipe order. [`LayerPlan::entries`]
/// gives its tar entries.
#[derive(Debug, PartialEq, Eq)]
pub struct LayerPlan {
    pub name: String,
    context: PathBuf,
    sources: Vec<Resolved>,
    /// Bytes of file content, as planned.
    content_size: u64,
}

/// One `[[layer.entry]]`, checked: the entry it makes itself (none for a
/// tree copied to `/`), and the tree under it, if any.
#[derive(Debug, PartialEq, Eq)]
struct Resolved {
    entry: Option<Entry>,
    /// (device, inode) of a `src` file with several links.
    inode: Option<Inode>,
    tree: Option<Tree>,
    /// Where the recipe asked for it: `file:line:col`.
    at: String,
}

/// A directory `src`: `root` (canonical) is copied to `dest`.
#[derive(Debug, PartialEq, Eq)]
struct Tree {
    root: PathBuf,
    dest: Vec<u8>,
    excludes: Vec<String>,
    follow: bool,
    attrs: Effective,
}

impl LayerPlan {
    /// Bytes of file content in the layer (for progress).
    pub fn content_size(&self) -> u64 {
        self.content_size
    }

    /// The layer's tar entries, in tar order, read from disk as they go.
    pub fn entries(&self) -> Result<Entries<'_>> {
        let mut heads = Vec::new();
        for (i, s) in self.sources.iter().enumerate() {
            let walk = match &s.tree {
                Some(t) => Some(Walk::new(t, &self.context, &s.at)?),
                None => None,
            };
            let first = s.entry.clone().map(|entry| Item {
                entry,
                src: i,
                inode: s.inode,
            });
            let mut stream = SourceStream {
                first,
                walk,
                src: i,
            };
            let head = stream.next()?;
            heads.push((head, stream));
        }
        Ok(Entries {
            plan: self,
            heads,
            chain: Vec::new(),
            seen: HashMap::new(),
            out: VecDeque::new(),
            done: false,
        })
    }
}

/// (device, inode) of a file with several links.
type Inode = (u64, u64);

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

/// An entry with the index of its source and, for files with several
/// links, their (device, inode).
#[derive(Debug)]
struct Item {
    entry: Entry,
    src: usize,
    inode: Option<Inode>,
}

/// The effective attributes of an entry: the entry's own, else the layer's.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    let mut sources = Vec::new();
    for spanned in &layer.entries {
        let attrs = effective(&layer.attrs(), &spanned.get_ref().attrs(), expand)?;
        sources.push(resolve(src, context, spanned, attrs, expand)?);
    }
    let mut plan = LayerPlan {
        name,
        context: context.to_path_buf(),
        sources,
        content_size: 0,
    };
    // The checking pass: walk everything once before anything is written.
    let mut size = 0;
    for e in plan.entries()? {
        size += match e?.kind {
            EntryKind::File { size, .. } => size,
            EntryKind::Inline(b) => b.len() as u64,
            _ => 0,
        };
    }
    plan.content_size = size;
    Ok(plan)
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

/// Check one `[[layer.entry]]` and resolve its `src`, if any.
fn resolve(
    src: &Source,
    context: &Path,
    spanned: &toml::Spanned<EntrySection>,
    attrs: Effective,
    expand: &dyn Fn(&Str) -> Result<String>,
) -> Result<Resolved> {
    let span = spanned.span();
    let e = spanned.get_ref();
    let at = src.at(span.clone());
    let dest_text = expand(&e.dest)?;
    let dest = normalize_dest(&dest_text).map_err(|m| src.err(e.dest.span(), m))?;
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
        return Err(src.err(
            span,
            "an entry needs exactly one of `src`, `content`, `symlink` or `dir = true`",
        ));
    }
    if !e.exclude.is_empty() && e.src.is_none() {
        return Err(src.err(span, "`exclude` only applies to a directory `src`"));
    }
    let one = |entry: Entry, inode: Option<Inode>| Resolved {
        entry: Some(entry),
        inode,
        tree: None,
        at: at.clone(),
    };
    if let Some(content) = &e.content {
        let text = expand(content)?;
        let kind = EntryKind::Inline(text.into_bytes());
        return Ok(one(
            attrs.entry(dest, kind, attrs.mode.unwrap_or(0o644)),
            None,
        ));
    }
    if let Some(target) = &e.symlink {
        let t = expand(target)?;
        if t.is_empty() {
            return Err(src.err(target.span(), "symlink target is empty"));
        }
        let kind = EntryKind::Symlink(t.into_bytes());
        return Ok(one(
            attrs.entry(dest, kind, attrs.mode.unwrap_or(0o777)),
            None,
        ));
    }
    if e.dir {
        let mode = attrs.mode.unwrap_or(0o755);
        return Ok(one(attrs.entry(dest, EntryKind::Dir, mode), None));
    }
    let src_str = e.src.as_ref().expect("one kind is set");
    let rel = expand(src_str)?;
    let path = context.join(&rel);
    let loc = |m: String| src.err(src_str.span(), m);
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
    if !canonical.starts_with(context) && !followed {
        return Err(loc(format!(
            "src {rel:?} resolves to {}, outside the build context {}{}",
            canonical.display(),
            context.display(),
            if meta.file_type().is_symlink() {
                " (set follow_symlinks = true on the entry to copy what it points at)"
            } else {
                ""
            }
        )));
    }
    let excludes = e
        .exclude
        .iter()
        .map(expand)
        .collect::<Result<Vec<_>>>()
        .map_err(|err| src.err(span.clone(), err))?;
    build_excludes(&excludes).map_err(|m| src.err(span.clone(), m))?;
    let target_meta = fs::metadata(&canonical)?;
    if target_meta.is_dir() {
        // With `dest = "/"` the tree's contents go to the root, which has no entry.
        let entry = (!dest.is_empty()).then(|| {
            let mode = attrs.dir_mode.unwrap_or(target_meta.mode() & 0o7777);
            attrs.entry(dest.clone(), EntryKind::Dir, mode)
        });
        Ok(Resolved {
            entry,
            inode: None,
            tree: Some(Tree {
                root: canonical,
                dest,
                excludes,
                follow: e.follow_symlinks,
                attrs,
            }),
            at,
        })
    } else {
        let mut file_dest = dest;
        if dest_text.ends_with('/') {
            push_name(
                &mut file_dest,
                canonical.file_name().map(|n| n.as_bytes()).unwrap_or(b""),
            );
        }
        let kind = file_kind(&at, &canonical, &target_meta)?;
        let mode = attrs.mode.unwrap_or(target_meta.mode() & 0o7777);
        let inode = (target_meta.nlink() > 1).then(|| (target_meta.dev(), target_meta.ino()));
        Ok(one(attrs.entry(file_dest, kind, mode), inode))
    }
}

fn err_at(at: &str, msg: impl std::fmt::Display) -> anyhow::Error {
    bad_input(format!("{at}: {msg}"))
}

fn file_kind(at: &str, path: &Path, meta: &fs::Metadata) -> Result<EntryKind> {
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
    Err(err_at(
        at,
        format!(
            "{} is {what}; only regular files, directories and symlinks can go into a layer",
            path.display()
        ),
    ))
}

/// The entries of one source in tar order: its own entry, then its tree.
struct SourceStream<'a> {
    first: Option<Item>,
    walk: Option<Walk<'a>>,
    src: usize,
}

impl SourceStream<'_> {
    fn next(&mut self) -> Result<Option<Item>> {
        if let Some(item) = self.first.take() {
            return Ok(Some(item));
        }
        let Some(walk) = &mut self.walk else {
            return Ok(None);
        };
        Ok(walk.next()?.map(|(entry, inode)| Item {
            entry,
            src: self.src,
            inode,
        }))
    }
}

/// A depth-first walk of a tree with each directory's names sorted by bytes.
struct Walk<'a> {
    tree: &'a Tree,
    context: &'a Path,
    at: &'a str,
    excludes: GlobSet,
    /// The directories being walked, outermost first.
    stack: Vec<Frame>,
}

struct Frame {
    /// The tree the directory is in (excludes are relative to it).
    root: PathBuf,
    dir: PathBuf,
    dest: Vec<u8>,
    names: std::vec::IntoIter<OsString>,
}

impl<'a> Walk<'a> {
    fn new(tree: &'a Tree, context: &'a Path, at: &'a str) -> Result<Self> {
        let excludes = build_excludes(&tree.excludes).map_err(|m| err_at(at, m))?;
        let mut w = Walk {
            tree,
            context,
            at,
            excludes,
            stack: Vec::new(),
        };
        w.enter(&tree.root, &tree.root, tree.dest.clone())?;
        Ok(w)
    }

    fn enter(&mut self, root: &Path, dir: &Path, dest: Vec<u8>) -> Result<()> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .map_err(|e| err_at(self.at, format!("reading directory {}: {e}", dir.display())))?
            .map(|r| r.map(|d| d.file_name()))
            .collect::<std::io::Result<_>>()?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        self.stack.push(Frame {
            root: root.to_path_buf(),
            dir: dir.to_path_buf(),
            dest,
            names: names.into_iter(),
        });
        Ok(())
    }

    fn next(&mut self) -> Result<Option<(Entry, Option<Inode>)>> {
        let attrs = &self.tree.attrs;
        loop {
            let Some(frame) = self.stack.last_mut() else {
                return Ok(None);
            };
            let Some(name) = frame.names.next() else {
                self.stack.pop();
                continue;
            };
            let path = frame.dir.join(&name);
            let rel = path.strip_prefix(&frame.root).unwrap_or(&path);
            if self.excludes.is_match(rel) {
                continue;
            }
            let root = frame.root.clone();
            let mut child = frame.dest.clone();
            push_name(&mut child, name.as_bytes());
            let meta = fs::symlink_metadata(&path)?;
            let ft = meta.file_type();
            if ft.is_symlink() {
                let target = fs::read_link(&path)?;
                // Links that stay inside the context, or inside the tree being
                // copied (a followed `src` outside the context), stay links.
                if target.is_absolute()
                    || lexically_inside(&path, &target, self.context)
                    || lexically_inside(&path, &target, &root)
                {
                    // Absolute targets are paths in the image, not on this machine.
                    let kind = EntryKind::Symlink(target.as_os_str().as_bytes().to_vec());
                    return Ok(Some((attrs.entry(child, kind, 0o777), None)));
                }
                if !self.tree.follow {
                    return Err(err_at(
                        self.at,
                        format!(
                            "symlink {} -> {} points outside the build context {}; set follow_symlinks = true on the entry to copy what it points at, or remove the link",
                            path.display(),
                            target.display(),
                            self.context.display()
                        ),
                    ));
                }
                let resolved = path.canonicalize().map_err(|e| {
                    err_at(
                        self.at,
                        format!("following symlink {}: {e}", path.display()),
                    )
                })?;
                let tmeta = fs::metadata(&resolved)?;
                if tmeta.is_dir() {
                    let mode = attrs.dir_mode.unwrap_or(tmeta.mode() & 0o7777);
                    let entry = attrs.entry(child.clone(), EntryKind::Dir, mode);
                    self.enter(&resolved, &resolved, child)?;
                    return Ok(Some((entry, None)));
                }
                let kind = file_kind(self.at, &resolved, &tmeta)?;
                let mode = attrs.mode.unwrap_or(tmeta.mode() & 0o7777);
                return Ok(Some((attrs.entry(child, kind, mode), None)));
            }
            if ft.is_dir() {
                let mode = attrs.dir_mode.unwrap_or(meta.mode() & 0o7777);
                let entry = attrs.entry(child.clone(), EntryKind::Dir, mode);
                self.enter(&root, &path, child)?;
                return Ok(Some((entry, None)));
            }
            let kind = file_kind(self.at, &path, &meta)?;
            let inode = (meta.nlink() > 1).then(|| (meta.dev(), meta.ino()));
            let mode = attrs.mode.unwrap_or(meta.mode() & 0o7777);
            return Ok(Some((attrs.entry(child, kind, mode), inode)));
        }
    }
}

/// A layer's entries in tar order: the merge of its sources' streams.
pub struct Entries<'a> {
    plan: &'a LayerPlan,
    /// Each source's next entry, and the source.
    heads: Vec<(Option<Item>, SourceStream<'a>)>,
    /// The entries emitted last that are ancestors of one another, outermost
    /// first: (path, is a directory, source; none for an added parent).
    chain: Vec<(Vec<u8>, bool, Option<usize>)>,
    /// The first entry of each (device, inode) with several links.
    seen: HashMap<Inode, Entry>,
    out: VecDeque<Entry>,
    done: bool,
}

impl Iterator for Entries<'_> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        loop {
            if let Some(e) = self.out.pop_front() {
                return Some(Ok(e));
            }
            if self.done {
                return None;
            }
            let step = match self.next_merged() {
                Ok(Some(item)) => self.emit(item),
                Ok(None) => {
                    self.done = true;
                    Ok(())
                }
                Err(e) => Err(e),
            };
            if let Err(e) = step {
                self.done = true;
                return Some(Err(e));
            }
        }
    }
}

impl Entries<'_> {
    fn at(&self, src: usize) -> &str {
        &self.plan.sources[src].at
    }

    /// The smallest head; among equal paths the first source (recipe order).
    fn pop_min(&mut self) -> Result<Option<Item>> {
        let mut min: Option<usize> = None;
        for (i, (head, _)) in self.heads.iter().enumerate() {
            if let Some(h) = head {
                let better = match min {
                    None => true,
                    Some(m) => {
                        let cur = self.heads[m].0.as_ref().expect("min has a head");
                        cmp_paths(&h.entry.path, &cur.entry.path) == Ordering::Less
                    }
                };
                if better {
                    min = Some(i);
                }
            }
        }
        let Some(m) = min else { return Ok(None) };
        let (head, stream) = &mut self.heads[m];
        let item = head.take();
        *head = stream.next()?;
        Ok(item)
    }

    /// The next path, with all its entries merged.
    fn next_merged(&mut self) -> Result<Option<Item>> {
        let Some(mut first) = self.pop_min()? else {
            return Ok(None);
        };
        while self
            .heads
            .iter()
            .any(|(h, _)| h.as_ref().is_some_and(|h| h.entry.path == first.entry.path))
        {
            let later = self.pop_min()?.expect("a head matched");
            self.merge(&mut first, later)?;
        }
        Ok(Some(first))
    }

    /// Two entries for one path: directories merge (the later attributes
    /// win, as with COPY); identical files or links are kept once; anything
    /// else is a conflict.
    fn merge(&self, first: &mut Item, later: Item) -> Result<()> {
        let (old, entry) = (&first.entry, &later.entry);
        if old.kind == EntryKind::Dir && entry.kind == EntryKind::Dir {
            *first = Item {
                inode: None,
                ..later
            };
            return Ok(());
        }
        if same_content(old, entry)? && same_attrs(old, entry) {
            return Ok(());
        }
        Err(bad_input(format!(
            "{}: dest /{} is written twice with different contents or attributes (first at {}); remove one of the entries or exclude the path",
            self.at(later.src),
            String::from_utf8_lossy(&entry.path),
            self.at(first.src),
        )))
    }

    /// Queue `item` after its missing parent directories, as a hard link if
    /// it is a second link to a file.
    fn emit(&mut self, item: Item) -> Result<()> {
        let Item {
            mut entry,
            src,
            inode,
        } = item;
        let path = &entry.path;
        while let Some((p, _, _)) = self.chain.last() {
            if path.len() > p.len() && path.starts_with(p) && path[p.len()] == b'/' {
                break;
            }
            self.chain.pop();
        }
        let start = match self.chain.last() {
            Some((p, false, by)) => {
                return Err(bad_input(format!(
                    "{}: /{} needs /{} to be a directory, but {} makes it a file or link",
                    self.at(src),
                    String::from_utf8_lossy(path),
                    String::from_utf8_lossy(p),
                    self.at(by.expect("added parents are directories")),
                )));
            }
            Some((p, true, _)) => p.len() + 1,
            None => 0,
        };
        for i in start..path.len() {
            if path[i] == b'/' {
                let parent = path[..i].to_vec();
                self.chain.push((parent.clone(), true, None));
                self.out.push_back(Entry {
                    path: parent,
                    kind: EntryKind::Dir,
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                    uname: String::new(),
                    gname: String::new(),
                });
            }
        }
        self.chain
            .push((path.clone(), entry.kind == EntryKind::Dir, Some(src)));
        // Files reached twice through hard links become tar hard links to the
        // first, when both carry the same attributes (a link has none of its own).
        if let Some(ino) = inode {
            match self.seen.get(&ino) {
                Some(first) if same_attrs(first, &entry) => {
                    entry.kind = EntryKind::Hardlink(first.path.clone())
                }
                Some(_) => {}
                None => {
                    self.seen.insert(ino, entry.clone());
                }
            }
        }
        self.out.push_back(entry);
        Ok(())
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

fn build_excludes(globs: &[String]) -> Result<GlobSet, String> {
    let mut b = GlobSetBuilder::new();
    for text in globs {
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

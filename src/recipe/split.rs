//! `split = "auto"` on a `[[layer]]`: its files cut into layers by how often
//! they change. Stable files (libraries, archives, images, fonts, files of
//! 256 KiB or more, anything under a vendored directory such as
//! `node_modules/`, and the recipe's `stable` globs) go apart from the
//! changing rest (sources, configs), so that a release that edits a few
//! source files changes one layer. With a budget above two layers, the
//! stable files are cut further by their top-level directory, largest first.
//!
//! The cut is planned from paths, sizes and globs alone, so the same tree
//! always gives the same layers. Each layer is the layer's entry streams
//! filtered: a directory goes into every part that holds something below it
//! (an empty one into the changing part), and the links of a file with
//! several stay in one part, so a tar hard link always points into its own
//! layer.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::Result;
use globset::{Glob, GlobSet, GlobSetBuilder};

use super::entry::{cmp_paths, Entry, EntryKind, Inode};
use super::sources::{EntrySource, Stream};

/// Files of at least this size are stable.
const BIG: u64 = 256 * 1024;

/// Directories whose contents are someone else's code, kept as shipped.
const VENDORED: &[&str] = &[
    "node_modules",
    "site-packages",
    "dist-packages",
    "vendor",
    "third_party",
];

/// Extensions of binaries, packages and data that are rebuilt rarely.
const STABLE_EXT: &[&str] = &[
    "so", "a", "o", "dll", "dylib", "wasm", "whl", "egg", "jar", "war", "ear", "png", "jpg",
    "jpeg", "gif", "webp", "avif", "ico", "bmp", "tif", "tiff", "mp3", "mp4", "ogg", "webm",
    "woff", "woff2", "ttf", "otf", "eot", "zip", "tar", "gz", "tgz", "bz2", "xz", "zst", "7z",
    "pdf", "db", "sqlite", "bin", "onnx", "pt", "parquet",
];

/// The plan of one split: which part each file goes into.
#[derive(Debug)]
pub(crate) struct Split {
    /// The recipe's `stable` globs, as written.
    globs: Vec<String>,
    set: GlobSet,
    /// The part of each stable group (a top-level directory of a tree, or
    /// `""` for files outside one).
    groups: BTreeMap<Vec<u8>, usize>,
    /// The part shared by the stable groups beyond the budget.
    rest: Option<usize>,
    /// The part of the changing files; the last.
    changing: usize,
    /// The part of each file with several links: that of its first link.
    inodes: HashMap<Inode, usize>,
}

impl PartialEq for Split {
    fn eq(&self, o: &Split) -> bool {
        (
            &self.globs,
            &self.groups,
            self.rest,
            self.changing,
            &self.inodes,
        ) == (&o.globs, &o.groups, o.rest, o.changing, &o.inodes)
    }
}

impl Eq for Split {}

/// The `stable` globs, checked: the index of a bad one and why.
pub(super) fn globs(globs: &[String]) -> Result<GlobSet, (usize, String)> {
    let mut b = GlobSetBuilder::new();
    for (i, text) in globs.iter().enumerate() {
        let g = Glob::new(text.trim_end_matches('/')).map_err(|e| {
            (
                i,
                format!("stable pattern {text:?} is not a valid glob: {e}"),
            )
        })?;
        b.add(g);
    }
    b.build().map_err(|e| (0, e.to_string()))
}

/// One file (or link) as the plan sees it.
#[derive(Clone)]
struct Seen {
    path: Vec<u8>,
    group: Option<Vec<u8>>,
    size: u64,
}

impl Split {
    /// Plan the split of these sources into at most `max` layers (2 or
    /// more): returns it with the parts' names, suffixes of the layer's name.
    pub(super) fn plan(
        sources: &[(EntrySource, String)],
        context: &Path,
        globs: Vec<String>,
        set: GlobSet,
        max: usize,
    ) -> Result<(Split, Vec<String>)> {
        let mut split = Split {
            globs,
            set,
            groups: BTreeMap::new(),
            rest: None,
            changing: 0,
            inodes: HashMap::new(),
        };
        let mut sizes: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        let mut linked: HashMap<Inode, Seen> = HashMap::new();
        for (source, at) in sources {
            let base = source.tree_dest();
            for item in source.entries(context, at)? {
                let (e, inode) = item?;
                if e.kind == EntryKind::Dir {
                    continue;
                }
                let seen = Seen {
                    group: split.group(&e, base),
                    size: size_of(&e),
                    path: e.path,
                };
                match inode {
                    Some(ino) => {
                        let first = linked.entry(ino).or_insert_with(|| seen.clone());
                        if cmp_paths(&seen.path, &first.path).is_lt() {
                            *first = seen;
                        }
                    }
                    None => {
                        if let Some(g) = seen.group {
                            *sizes.entry(g).or_default() += seen.size;
                        }
                    }
                }
            }
        }
        for seen in linked.values() {
            if let Some(g) = &seen.group {
                *sizes.entry(g.clone()).or_default() += seen.size;
            }
        }
        // Largest groups first, ties by name: a function of paths and sizes.
        let mut order: Vec<(Vec<u8>, u64)> = sizes.into_iter().collect();
        order.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let budget = max - 1;
        let mut names = Vec::new();
        if order.len() <= budget {
            for (g, _) in &order {
                split.groups.insert(g.clone(), names.len());
                names.push(group_name(g));
            }
        } else {
            for (g, _) in &order[..budget - 1] {
                split.groups.insert(g.clone(), names.len());
                names.push(group_name(g));
            }
            split.rest = Some(names.len());
            names.push("rest".to_string());
        }
        let mut names: Vec<String> = match names.len() {
            1 => vec!["stable".to_string()],
            _ => names.into_iter().map(|n| format!("stable: {n}")).collect(),
        };
        split.changing = names.len();
        names.push("changing".to_string());
        for (ino, seen) in &linked {
            let part = split.part_of_group(seen.group.as_deref());
            split.inodes.insert(*ino, part);
        }
        Ok((split, names))
    }

    /// The stable group of a file or link, none when it is changing. `base`
    /// is the image path of the tree it comes from.
    fn group(&self, e: &Entry, base: Option<&[u8]>) -> Option<Vec<u8>> {
        let (rel, in_tree) = match base.and_then(|b| relative(&e.path, b)) {
            Some(rel) => (rel, true),
            None => (&e.path[..], false),
        };
        let mut parts: Vec<&[u8]> = rel.split(|&c| c == b'/').collect();
        let name = parts.pop().unwrap_or_default();
        let stable = parts
            .iter()
            .any(|p| VENDORED.iter().any(|v| v.as_bytes() == *p))
            || stable_name(name)
            || size_of(e) >= BIG
            || (in_tree && self.set.is_match(Path::new(OsStr::from_bytes(rel))));
        if !stable {
            return None;
        }
        let top = match (in_tree, parts.first()) {
            (true, Some(top)) => top.to_vec(),
            _ => Vec::new(),
        };
        Some(top)
    }

    fn part_of_group(&self, group: Option<&[u8]>) -> usize {
        match group {
            None => self.changing,
            Some(g) => self
                .groups
                .get(g)
                .copied()
                .or(self.rest)
                .unwrap_or(self.changing),
        }
    }

    /// The part a file or link goes into.
    fn part_of(&self, e: &Entry, inode: Option<Inode>, base: Option<&[u8]>) -> usize {
        if let Some(part) = inode.and_then(|i| self.inodes.get(&i)) {
            return *part;
        }
        self.part_of_group(self.group(e, base).as_deref())
    }

    /// The entries of `stream` that go into `part`, with the directories
    /// they need. `base` is the image path of the stream's tree, if any.
    pub(super) fn filter<'a>(
        &'a self,
        stream: Stream<'a>,
        base: Option<&'a [u8]>,
        part: usize,
    ) -> Stream<'a> {
        let mut f = Filter {
            split: self,
            stream,
            base,
            part,
            pending: Vec::new(),
            out: VecDeque::new(),
            done: false,
        };
        Box::new(std::iter::from_fn(move || f.next()))
    }
}

/// A directory whose fate is not known yet.
struct Pending {
    entry: Entry,
    /// Already put out, because something of the part is below it.
    emitted: bool,
    /// Something (of any part) is below it.
    has_child: bool,
}

struct Filter<'a> {
    split: &'a Split,
    stream: Stream<'a>,
    base: Option<&'a [u8]>,
    part: usize,
    /// The open directories, outermost first.
    pending: Vec<Pending>,
    out: VecDeque<(Entry, Option<Inode>)>,
    done: bool,
}

impl Filter<'_> {
    fn next(&mut self) -> Option<Result<(Entry, Option<Inode>)>> {
        loop {
            if let Some(e) = self.out.pop_front() {
                return Some(Ok(e));
            }
            if self.done {
                return None;
            }
            match self.stream.next() {
                None => {
                    self.close(None);
                    self.done = true;
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Some(Ok((entry, inode))) => self.take(entry, inode),
            }
        }
    }

    /// Close the open directories that `path` is not below (all at the end).
    fn close(&mut self, path: Option<&[u8]>) {
        while let Some(top) = self.pending.last() {
            if path.is_some_and(|p| relative(p, &top.entry.path).is_some_and(|r| !r.is_empty())) {
                return;
            }
            let Some(top) = self.pending.pop() else {
                return;
            };
            if !top.emitted && !top.has_child && self.part == self.split.changing {
                self.put(top.entry, None);
            }
        }
    }

    fn take(&mut self, entry: Entry, inode: Option<Inode>) {
        self.close(Some(&entry.path));
        if let Some(parent) = self.pending.last_mut() {
            parent.has_child = true;
        }
        if entry.kind == EntryKind::Dir {
            self.pending.push(Pending {
                entry,
                emitted: false,
                has_child: false,
            });
        } else if self.split.part_of(&entry, inode, self.base) == self.part {
            self.put(entry, inode);
        }
    }

    /// Put out `entry` after the open directories not yet put out.
    fn put(&mut self, entry: Entry, inode: Option<Inode>) {
        for p in self.pending.iter_mut().filter(|p| !p.emitted) {
            p.emitted = true;
            self.out.push_back((p.entry.clone(), None));
        }
        self.out.push_back((entry, inode));
    }
}

/// `path` relative to the directory `base` (both without a leading `/`):
/// empty for `base` itself, none when it is not below it.
fn relative<'p>(path: &'p [u8], base: &[u8]) -> Option<&'p [u8]> {
    if base.is_empty() {
        return Some(path);
    }
    let rest = path.strip_prefix(base)?;
    match rest.first() {
        None => Some(rest),
        Some(b'/') => Some(&rest[1..]),
        Some(_) => None,
    }
}

fn size_of(e: &Entry) -> u64 {
    match &e.kind {
        EntryKind::File { size, .. } => *size,
        EntryKind::Inline(b) => b.len() as u64,
        _ => 0,
    }
}

/// Whether a file name says binary or data: a stable extension, or a
/// versioned shared library (`libz.so.1.3`).
fn stable_name(name: &[u8]) -> bool {
    let name = String::from_utf8_lossy(name).to_ascii_lowercase();
    if name.contains(".so.") {
        return true;
    }
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => STABLE_EXT.contains(&ext),
        _ => false,
    }
}

/// How a group is named in the history: its directory, or `./` for the
/// files at the top of a tree and outside trees.
fn group_name(g: &[u8]) -> String {
    match g {
        [] => "./".to_string(),
        g => format!("{}/", String::from_utf8_lossy(g)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_say_binary_or_data() {
        for n in ["libz.so", "libz.so.1.3", "app.JAR", "logo.png", "x.tar.gz"] {
            assert!(stable_name(n.as_bytes()), "{n}");
        }
        for n in ["main.py", "so", ".so", "config.yaml", "README", "a.soap"] {
            assert!(!stable_name(n.as_bytes()), "{n}");
        }
    }

    #[test]
    fn relative_paths_are_below_the_base_only() {
        assert_eq!(relative(b"opt/app/x", b"opt/app"), Some(&b"x"[..]));
        assert_eq!(relative(b"opt/app", b"opt/app"), Some(&b""[..]));
        assert_eq!(relative(b"opt/apple", b"opt/app"), None);
        assert_eq!(relative(b"x/y", b""), Some(&b"x/y"[..]));
    }
}

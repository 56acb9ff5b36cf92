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
//! filtered: a directory goes into every part that holds something below it,
//! from any source (an empty one into the changing part), so that no part
//! gets an added parent where the whole layer has the source's directory;
//! and the links of a file with several stay in one part, so a tar hard
//! link always points into its own layer.

use std::collections::{BTreeMap, HashMap};
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
    /// The parts that hold something below each directory.
    dirs: HashMap<Vec<u8>, Vec<usize>>,
}

impl PartialEq for Split {
    fn eq(&self, o: &Split) -> bool {
        self.globs == o.globs
            && self.groups == o.groups
            && (self.rest, self.changing) == (o.rest, o.changing)
            && self.inodes == o.inodes
            && self.dirs == o.dirs
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
            dirs: HashMap::new(),
        };
        let mut sizes: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        let mut linked: HashMap<Inode, Seen> = HashMap::new();
        for (source, at) in sources {
            let base = source.tree_dest();
            for item in source.entries(context, at, true)? {
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
        // Which parts hold something below each directory; directories with
        // no file below them (empty, or holding only such) go to the
        // changing part.
        let mut dirs = Vec::new();
        for (source, at) in sources {
            let base = source.tree_dest();
            for item in source.entries(context, at, true)? {
                let (e, inode) = item?;
                if e.kind == EntryKind::Dir {
                    dirs.push(e.path);
                } else {
                    let part = split.part_of(&e, inode, base);
                    split.mark_above(&e.path, part);
                }
            }
        }
        dirs.retain(|d| !split.dirs.contains_key(d));
        for d in &dirs {
            split.mark_above(d, split.changing);
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

    /// The entries of `stream` that go into `part`. `base` is the image
    /// path of the stream's tree, if any.
    pub(super) fn filter<'a>(
        &'a self,
        stream: Stream<'a>,
        base: Option<&'a [u8]>,
        part: usize,
    ) -> Stream<'a> {
        Box::new(stream.filter(move |item| match item {
            Ok((e, inode)) => self.keeps(e, *inode, base, part),
            Err(_) => true,
        }))
    }

    /// Whether `part` holds this entry: a directory when something of the
    /// part is below it (the changing part when nothing is), anything else
    /// when it is the entry's part.
    fn keeps(&self, e: &Entry, inode: Option<Inode>, base: Option<&[u8]>, part: usize) -> bool {
        if e.kind == EntryKind::Dir {
            return match self.dirs.get(&e.path) {
                Some(parts) => parts.contains(&part),
                None => part == self.changing,
            };
        }
        self.part_of(e, inode, base) == part
    }

    /// Note that `part` holds something below each directory above `path`.
    /// Innermost first, stopping at a directory that has it already: the
    /// directories above that one have it too, so a tree thousands of
    /// directories deep costs no more than its paths.
    fn mark_above(&mut self, path: &[u8], part: usize) {
        for i in (0..path.len()).rev().filter(|&i| path[i] == b'/') {
            match self.dirs.get_mut(&path[..i]) {
                Some(parts) if parts.contains(&part) => return,
                Some(parts) => parts.push(part),
                None => {
                    self.dirs.insert(path[..i].to_vec(), vec![part]);
                }
            }
        }
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
        EntryKind::File { size, .. } | EntryKind::Hashed { size, .. } => *size,
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
    fn each_directory_lists_the_parts_below_it_in_the_order_first_seen() {
        let mut split = Split {
            globs: Vec::new(),
            set: GlobSet::empty(),
            groups: BTreeMap::new(),
            rest: None,
            changing: 0,
            inodes: HashMap::new(),
            dirs: HashMap::new(),
        };
        for (path, part) in [
            ("a/b/c/f", 1),
            ("a/b/g", 0),
            ("a/x/h", 1),
            ("a/b/c/k", 0),
            ("a/b/c/d/e/l", 2),
            ("m", 2),
        ] {
            split.mark_above(path.as_bytes(), part);
        }
        let mut dirs: Vec<(String, Vec<usize>)> = (split.dirs.iter())
            .map(|(d, p)| (String::from_utf8(d.clone()).unwrap(), p.clone()))
            .collect();
        dirs.sort();
        let want = [
            ("a", vec![1, 0, 2]),
            ("a/b", vec![1, 0, 2]),
            ("a/b/c", vec![1, 0, 2]),
            ("a/b/c/d", vec![2]),
            ("a/b/c/d/e", vec![2]),
            ("a/x", vec![1]),
        ];
        let want: Vec<(String, Vec<usize>)> =
            want.into_iter().map(|(d, p)| (d.to_string(), p)).collect();
        assert_eq!(dirs, want);
    }

    #[test]
    fn relative_paths_are_below_the_base_only() {
        assert_eq!(relative(b"opt/app/x", b"opt/app"), Some(&b"x"[..]));
        assert_eq!(relative(b"opt/app", b"opt/app"), Some(&b""[..]));
        assert_eq!(relative(b"opt/apple", b"opt/app"), None);
        assert_eq!(relative(b"x/y", b""), Some(&b"x/y"[..]));
    }
}

//! A layer's tar entries: the merge of its sources' streams.
//!
//! Each source (`sources/`) yields its entries in tar order, so the layer's
//! stream is a k-way merge of them. Equal paths arrive adjacent and are
//! merged or refused, missing parent directories are added (in an image's
//! first layer only, see [`Entries::new`]), and files seen twice through
//! hard links become tar hard links. Memory is bounded by the
//! number of sources and the depth of paths, plus one record per file with
//! several links.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, VecDeque};

use anyhow::{anyhow, Result};

use super::entry::{cmp_paths, same_attrs, same_content, Entry, EntryKind, Inode};
use super::sources::Stream;
use crate::error::bad_input;

/// The longest path in the image, in bytes (Linux's `PATH_MAX`).
pub(crate) const PATH_MAX: usize = 4096;
/// The longest name of one file in the image, in bytes (Linux's `NAME_MAX`).
pub(crate) const NAME_MAX: usize = 255;

/// Why no system could unpack a file at `path`, if none could.
fn too_long(path: &[u8]) -> Option<String> {
    if path.len() > PATH_MAX {
        return Some(format!(
            "is {} bytes long; a path in the image is at most {PATH_MAX} (Linux's PATH_MAX)",
            path.len()
        ));
    }
    let part = path.split(|&b| b == b'/').find(|p| p.len() > NAME_MAX)?;
    Some(format!(
        "has a part of {} bytes; a file name is at most {NAME_MAX} (Linux's NAME_MAX)",
        part.len()
    ))
}

/// An entry with the index of its source and, for files with several
/// links, their (device, inode).
#[derive(Debug)]
struct Item {
    entry: Entry,
    src: usize,
    inode: Option<Inode>,
}

/// A layer's entries in tar order: the merge of its sources' streams.
pub struct Entries<'a> {
    /// Each source's next entry, and the rest of its stream.
    heads: Vec<(Option<Item>, Stream<'a>)>,
    /// The sources that have a head, smallest first: by [`order_key`], then
    /// in recipe order. A layer of thousands of entries, each its own
    /// source, is merged without scanning every source per entry.
    order: BinaryHeap<Reverse<(Vec<u8>, usize)>>,
    /// Where each source is in the recipe (`file:line:col`), for errors.
    ats: Vec<&'a str>,
    /// The entries emitted last that are ancestors of one another, outermost
    /// first: (path, is a directory, source; none for an added parent).
    chain: Vec<(Vec<u8>, bool, Option<usize>)>,
    /// The first entry of each (device, inode) with several links.
    seen: HashMap<Inode, Entry>,
    /// Whether missing parent directories are written (see [`Entries::new`]).
    parents: bool,
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

/// A path as a key that sorts as [`cmp_paths`] does (`/` as the lowest
/// byte; names hold no NUL).
fn order_key(path: &[u8]) -> Vec<u8> {
    path.iter()
        .map(|&c| if c == b'/' { 0 } else { c })
        .collect()
}

impl<'a> Entries<'a> {
    /// The merge of `streams` (each sorted in tar order, with where its
    /// source is in the recipe), in the recipe's order of sources.
    ///
    /// With `parents`, the missing parent directories of its entries are
    /// written (0755 root), as the first layer of an image from scratch
    /// needs. Without, they are checked but not written: a layer above a
    /// base or another layer leaves them to the layers below, as Docker's
    /// COPY leaves an existing directory alone, since unpackers give a
    /// directory entry's mode and owner to the directory that is already
    /// there (a base's 1777 `/tmp`, a user's home), and make one that is
    /// missing 0755 root.
    pub(super) fn new(streams: Vec<(Stream<'a>, &'a str)>, parents: bool) -> Result<Self> {
        let mut heads = Vec::new();
        let mut ats = Vec::new();
        let mut order = BinaryHeap::new();
        for (src, (mut stream, at)) in streams.into_iter().enumerate() {
            let head = next_item(&mut stream, src)?;
            if let Some(h) = &head {
                order.push(Reverse((order_key(&h.entry.path), src)));
            }
            heads.push((head, stream));
            ats.push(at);
        }
        Ok(Entries {
            heads,
            order,
            ats,
            chain: Vec::new(),
            seen: HashMap::new(),
            parents,
            out: VecDeque::new(),
            done: false,
        })
    }

    /// The smallest head; among equal paths the first source (recipe order).
    fn pop_min(&mut self) -> Result<Option<Item>> {
        let Some(Reverse((_, m))) = self.order.pop() else {
            return Ok(None);
        };
        let (head, stream) = &mut self.heads[m];
        let item = head.take();
        *head = next_item(stream, m)?;
        if let Some(next) = &*head {
            self.order.push(Reverse((order_key(&next.entry.path), m)));
        }
        if let (Some(next), Some(item)) = (&*head, &item) {
            if cmp_paths(&next.entry.path, &item.entry.path) == Ordering::Less {
                return Err(anyhow!(
                    "{}: entries out of tar order: /{} after /{}",
                    self.ats[m],
                    String::from_utf8_lossy(&next.entry.path),
                    String::from_utf8_lossy(&item.entry.path)
                ));
            }
        }
        Ok(item)
    }

    /// The next path, with all its entries merged.
    fn next_merged(&mut self) -> Result<Option<Item>> {
        let Some(mut first) = self.pop_min()? else {
            return Ok(None);
        };
        let key = order_key(&first.entry.path);
        while self.order.peek().is_some_and(|Reverse((k, _))| *k == key) {
            let Some(later) = self.pop_min()? else { break };
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
            self.ats[later.src],
            String::from_utf8_lossy(&entry.path),
            self.ats[first.src],
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
        if let Some(why) = too_long(path) {
            return Err(bad_input(format!(
                "{}: /{} {why}; no system could unpack it: give the file a shorter path",
                self.ats[src],
                String::from_utf8_lossy(path)
            )));
        }
        while let Some((p, _, _)) = self.chain.last() {
            if path.len() > p.len() && path.starts_with(p) && path[p.len()] == b'/' {
                break;
            }
            self.chain.pop();
        }
        let start = match self.chain.last() {
            Some((p, false, by)) => {
                // Added parents are directories, so `by` is always a source.
                let by = by.map_or("an added parent", |b| self.ats[b]);
                return Err(bad_input(format!(
                    "{}: /{} needs /{} to be a directory, but {by} makes it a file or link",
                    self.ats[src],
                    String::from_utf8_lossy(path),
                    String::from_utf8_lossy(p),
                )));
            }
            Some((p, true, _)) => p.len() + 1,
            None => 0,
        };
        for i in start..path.len() {
            if path[i] == b'/' {
                let parent = path[..i].to_vec();
                self.chain.push((parent.clone(), true, None));
                if !self.parents {
                    continue;
                }
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

fn next_item(stream: &mut Stream, src: usize) -> Result<Option<Item>> {
    Ok(stream
        .next()
        .transpose()?
        .map(|(entry, inode)| Item { entry, src, inode }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: EntryKind) -> Entry {
        crate::recipe::entry::test_entry(path.as_bytes(), kind)
    }

    fn dir(path: &str) -> Entry {
        Entry {
            mode: 0o700,
            ..entry(path, EntryKind::Dir)
        }
    }

    fn text(path: &str, s: &str) -> Entry {
        entry(path, EntryKind::Inline(s.as_bytes().to_vec()))
    }

    fn stream(entries: Vec<(Entry, Option<Inode>)>) -> Stream<'static> {
        Box::new(entries.into_iter().map(Ok))
    }

    fn merge(sources: Vec<Vec<Entry>>) -> Result<Vec<Entry>> {
        let streams = sources
            .into_iter()
            .map(|s| (stream(s.into_iter().map(|e| (e, None)).collect()), "r:1:1"))
            .collect();
        Entries::new(streams, true)?.collect()
    }

    fn paths(entries: &[Entry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| String::from_utf8_lossy(&e.path).into_owned())
            .collect()
    }

    #[test]
    fn sources_interleave_in_tar_order_with_parents_added() {
        let out = merge(vec![
            vec![text("b/z", "1")],
            vec![dir("a"), text("a/x", "2"), text("a.txt", "3")],
            vec![text("a/b/c", "4")],
        ])
        .unwrap();
        assert_eq!(
            paths(&out),
            ["a", "a/b", "a/b/c", "a/x", "a.txt", "b", "b/z"]
        );
        // Added parents are 0755 root:root; the source's own directory keeps its mode.
        assert_eq!(out[0].mode, 0o700);
        assert_eq!((out[1].mode, &out[1].kind), (0o755, &EntryKind::Dir));
    }

    #[test]
    fn a_layer_above_others_leaves_its_missing_parents_to_them() {
        let streams = vec![
            (stream(vec![(text("tmp/x/f", "1"), None)]), "r:1:1"),
            (
                stream(vec![(dir("srv"), None), (text("srv/g", "2"), None)]),
                "r:2:1",
            ),
        ];
        let out: Vec<Entry> = Entries::new(streams, false)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        // A source's own directory is written; parents it lacks are not.
        assert_eq!(paths(&out), ["srv", "srv/g", "tmp/x/f"]);
        // They are still checked: a file where a directory is needed is refused.
        let streams = vec![
            (stream(vec![(text("x", "file"), None)]), "r:1:1"),
            (stream(vec![(text("x/y/z", "under"), None)]), "r:2:1"),
        ];
        let err = Entries::new(streams, false)
            .unwrap()
            .collect::<Result<Vec<_>>>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("/x/y/z needs /x to be a directory"), "{err}");
    }

    #[test]
    fn equal_paths_merge_directories_and_keep_identical_files_once() {
        let later_dir = Entry {
            mode: 0o750,
            ..dir("d")
        };
        let out = merge(vec![
            vec![dir("d"), text("d/f", "same")],
            vec![later_dir, text("d/f", "same")],
        ])
        .unwrap();
        assert_eq!(paths(&out), ["d", "d/f"]);
        assert_eq!(out[0].mode, 0o750, "the later directory's attributes win");
    }

    #[test]
    fn conflicts_name_both_sources() {
        let streams = vec![
            (stream(vec![(text("f", "a"), None)]), "r:1:1"),
            (stream(vec![(text("f", "b"), None)]), "r:5:1"),
        ];
        let err = Entries::new(streams, true)
            .unwrap()
            .collect::<Result<Vec<_>>>()
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("r:5:1: dest /f is written twice"), "{err}");
        assert!(err.contains("first at r:1:1"), "{err}");

        let err = merge(vec![vec![text("x", "file")], vec![text("x/y", "under")]])
            .unwrap_err()
            .to_string();
        assert!(err.contains("/x/y needs /x to be a directory"), "{err}");
    }

    #[test]
    fn second_links_to_one_inode_become_hard_links() {
        let ino = Some((1, 42));
        let file = |p: &str| entry(p, EntryKind::Inline(b"x".to_vec()));
        let streams = vec![(stream(vec![(file("a"), ino), (file("b"), ino)]), "r:1:1")];
        let out: Vec<Entry> = Entries::new(streams, true)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(out[1].kind, EntryKind::Hardlink(b"a".to_vec()));
    }

    #[test]
    fn paths_no_system_could_unpack_are_refused_naming_the_source() {
        let longest = format!("{}ff", "d/".repeat(2047));
        let widest = format!("d/{}", "n".repeat(255));
        assert_eq!(longest.len(), 4096);
        assert!(merge(vec![vec![text(&longest, "x"), text(&widest, "x")]]).is_ok());
        for (path, why) in [
            (format!("{longest}f"), "is 4097 bytes long"),
            (format!("{widest}n"), "has a part of 256 bytes"),
        ] {
            let err = merge(vec![vec![text("a", "1")], vec![text(&path, "x")]])
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("r:1:1: /") && err.contains(why),
                "{why}: {err}"
            );
            assert!(err.contains("no system could unpack it"), "{err}");
        }
    }

    #[test]
    fn a_source_out_of_order_is_an_error_not_a_wrong_tar() {
        let err = merge(vec![vec![text("b", "1"), text("a", "2")]])
            .unwrap_err()
            .to_string();
        assert!(err.contains("out of tar order"), "{err}");
    }

    #[test]
    fn many_sources_merge_without_scanning_each_per_entry() {
        // A generated recipe: one `content` entry per file, in no order,
        // each path twice (identical entries are kept once).
        let n = 30_000;
        let sources: Vec<Vec<Entry>> = (0..2 * n)
            .map(|i| (i * 7919) % n)
            .map(|f| vec![text(&format!("d{}/f{f}", f % 97), "x")])
            .collect();
        let t = std::time::Instant::now();
        let out = merge(sources).unwrap();
        assert!(
            t.elapsed() < std::time::Duration::from_secs(20),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(out.len(), n + 97);
        let in_order = out
            .windows(2)
            .all(|w| cmp_paths(&w[0].path, &w[1].path).is_lt());
        assert!(in_order);
    }
}

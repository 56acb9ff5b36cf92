//! A directory `src`, copied to `dest`: the directory's own entry (none when
//! `dest` is `/`, which has no entry, or in a layer above others), then a depth-first walk with each
//! directory's names sorted by bytes, which is tar order. Memory is bounded
//! by the depth and width of the tree.
//!
//! Symlinks whose targets stay inside the build context (or inside the tree
//! being copied) stay links; others are refused, or with `follow_symlinks`
//! replaced by what they point at. `exclude` globs are relative to the tree.

use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};

use anyhow::Result;
use globset::{Glob, GlobSet, GlobSetBuilder};

use super::file::file_kind;
use super::{err_at, Effective, EntryCx, Stream};

static REVERSED: AtomicUsize = AtomicUsize::new(0);

/// While one is alive, each directory's names are reversed as read, before
/// they are sorted: `build --check-reproducible` uses it to show that the
/// order a file system lists names in never reaches the tar.
pub struct ReversedReadOrder(());

impl ReversedReadOrder {
    #[allow(clippy::new_without_default)]
    pub fn new() -> ReversedReadOrder {
        REVERSED.fetch_add(1, AtomicOrdering::SeqCst);
        ReversedReadOrder(())
    }
}

impl Drop for ReversedReadOrder {
    fn drop(&mut self) {
        REVERSED.fetch_sub(1, AtomicOrdering::SeqCst);
    }
}
use crate::image::OutputPlace;
use crate::recipe::entry::{push_name, Entry, EntryKind, Inode};

/// A directory `src`: `root` (canonical) is copied to `dest`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Tree {
    /// The entry of `dest` itself; none for `/`.
    own: Option<Entry>,
    root: PathBuf,
    dest: Vec<u8>,
    excludes: Vec<String>,
    follow: bool,
    attrs: Effective,
    /// The build's output, never copied.
    output: Option<OutputPlace>,
}

impl Tree {
    pub(super) fn new(
        cx: &EntryCx,
        root: PathBuf,
        meta: &fs::Metadata,
        excludes: Vec<String>,
    ) -> Tree {
        let attrs = &cx.attrs;
        let own = (!cx.dest.is_root()).then(|| {
            let mode = attrs.dir_mode.unwrap_or(meta.mode() & 0o7777);
            attrs.entry(cx.dest.path.clone(), EntryKind::Dir, mode)
        });
        Tree {
            own,
            root,
            dest: cx.dest.path.clone(),
            excludes,
            follow: cx.section.follow_symlinks,
            attrs: attrs.clone(),
            output: cx.env.output.clone(),
        }
    }

    /// Where the tree goes in the image, without the leading `/`.
    pub(super) fn dest(&self) -> &[u8] {
        &self.dest
    }

    /// The tree's entries; with `own`, `dest`'s own entry first. A layer
    /// above others leaves `dest` to them, as it leaves the parents of its
    /// entries: its mode and owner would replace those of the directory
    /// already there (a base's 1777 `/tmp`), and Docker's `COPY` of a
    /// directory copies its contents, not the directory itself.
    pub(super) fn entries<'a>(
        &'a self,
        context: &'a Path,
        at: &'a str,
        own: bool,
    ) -> Result<Stream<'a>> {
        let mut walk = Walk::new(self, context, at)?;
        let own = self.own.clone().filter(|_| own).map(|e| Ok((e, None)));
        Ok(Box::new(own.into_iter().chain(std::iter::from_fn(
            move || walk.next().transpose(),
        ))))
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
    /// The directory's (device, inode): a followed link that leads back to
    /// a directory still being walked is a loop.
    id: Inode,
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
        let meta = fs::metadata(&tree.root).map_err(|e| {
            err_at(
                at,
                format!("reading directory {}: {e}", tree.root.display()),
            )
        })?;
        let id = (meta.dev(), meta.ino());
        w.enter(&tree.root, &tree.root, id, tree.dest.clone())?;
        Ok(w)
    }

    fn enter(&mut self, root: &Path, dir: &Path, id: Inode, dest: Vec<u8>) -> Result<()> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .map_err(|e| err_at(self.at, format!("reading directory {}: {e}", dir.display())))?
            .map(|r| r.map(|d| d.file_name()))
            .collect::<std::io::Result<_>>()
            .map_err(|e| err_at(self.at, format!("reading directory {}: {e}", dir.display())))?;
        if REVERSED.load(AtomicOrdering::SeqCst) > 0 {
            names.reverse();
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        self.stack.push(Frame {
            root: root.to_path_buf(),
            dir: dir.to_path_buf(),
            id,
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
            if let Some(out) = &self.tree.output {
                if out.holds(&frame.dir, &name) {
                    continue;
                }
            }
            let path = frame.dir.join(&name);
            if !self.excludes.is_empty() {
                let rel = path.strip_prefix(&frame.root).unwrap_or(&path);
                if self.excludes.is_match(rel) {
                    continue;
                }
            }
            let root = frame.root.clone();
            let mut child = frame.dest.clone();
            push_name(&mut child, name.as_bytes());
            let here = |e: std::io::Error| err_at(self.at, format!("{}: {e}", path.display()));
            let meta = fs::symlink_metadata(&path).map_err(here)?;
            if let Some(out) = &self.tree.output {
                if meta.is_dir() && out.only_output_in(&path) {
                    continue;
                }
            }
            // A link followed out of the tree is copied as what it points
            // at: a directory as a tree of its own, a file without the
            // hard-link check.
            let (root, path, meta, linked, link) = if !meta.file_type().is_symlink() {
                (root, path, meta, true, None)
            } else {
                let target = fs::read_link(&path).map_err(here)?;
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
                let tmeta = fs::metadata(&resolved)
                    .map_err(|e| err_at(self.at, format!("{}: {e}", resolved.display())))?;
                (
                    resolved.clone(),
                    resolved,
                    tmeta,
                    false,
                    Some((path, target)),
                )
            };
            if meta.is_dir() {
                let id = (meta.dev(), meta.ino());
                if let (Some((link, target)), Some(outer)) =
                    (&link, self.stack.iter().find(|f| f.id == id))
                {
                    return Err(err_at(
                        self.at,
                        format!(
                            "symlink {} -> {} leads back to {}, which this entry is already copying: following it would never end; remove the link, or exclude it",
                            link.display(),
                            target.display(),
                            outer.dir.display()
                        ),
                    ));
                }
                let mode = attrs.dir_mode.unwrap_or(meta.mode() & 0o7777);
                let entry = attrs.entry(child.clone(), EntryKind::Dir, mode);
                self.enter(&root, &path, id, child)?;
                return Ok(Some((entry, None)));
            }
            let kind = file_kind(self.at, &path, &meta)?;
            let inode = (linked && meta.nlink() > 1).then(|| (meta.dev(), meta.ino()));
            let mode = attrs.mode.unwrap_or(meta.mode() & 0o7777);
            return Ok(Some((attrs.entry(child, kind, mode), inode)));
        }
    }
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

pub(super) fn build_excludes(globs: &[String]) -> Result<GlobSet, String> {
    let mut b = GlobSetBuilder::new();
    for text in globs {
        let glob = Glob::new(text.trim_end_matches('/'))
            .map_err(|e| format!("exclude pattern {text:?} is not a valid glob: {e}"))?;
        b.add(glob);
    }
    b.build().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// The tree `app/` of `ctx` (canonical), following links.
    fn followed(ctx: &Path) -> Tree {
        Tree {
            own: None,
            root: ctx.join("app"),
            dest: b"app".to_vec(),
            excludes: Vec::new(),
            follow: true,
            attrs: Effective::default(),
            output: None,
        }
    }

    #[test]
    fn followed_links_that_loop_are_refused_not_walked_for_ever() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().canonicalize().unwrap();
        let ctx = top.join("ctx");
        for d in ["ctx/app", "o", "o2"] {
            fs::create_dir_all(top.join(d)).unwrap();
        }
        fs::write(top.join("o/f"), "f").unwrap();
        let link = |target: &str, at: &str| std::os::unix::fs::symlink(target, top.join(at));
        // Two links to one directory outside the context copy it twice.
        link("../../o", "ctx/app/a").unwrap();
        link("../../o", "ctx/app/b").unwrap();
        let tree = followed(&ctx);
        let entries: Vec<_> = tree.entries(&ctx, "r:1:1", true).unwrap().collect();
        let paths: Vec<String> = entries
            .iter()
            .map(|e| String::from_utf8_lossy(&e.as_ref().unwrap().0.path).into_owned())
            .collect();
        assert_eq!(paths, ["app/a", "app/a/f", "app/b", "app/b/f"]);

        // o/m -> o2 and o2/n -> o: each followed link leads on to the other.
        link("../o2", "o/m").unwrap();
        link("../o", "o2/n").unwrap();
        let mut walk = tree.entries(&ctx, "r:1:1", true).unwrap();
        let err = walk
            .by_ref()
            .take(100)
            .find_map(Result::err)
            .expect("the walk stops with an error");
        let err = err.to_string();
        assert!(
            err.starts_with("r:1:1: symlink ") && err.contains("o2/n -> ../o leads back to"),
            "{err}"
        );
        assert!(err.contains("already copying"), "{err}");
    }
}

//! `src = "path"`: a file or directory of the build context. The path must
//! resolve inside the context, unless it is itself a symlink and the entry
//! sets `follow_symlinks`. A directory is walked by `tree.rs`; a file is
//! one entry (named after the source when `dest` ends with `/` or is the
//! image root), keeping its
//! own mode bits unless the entry or layer gives a mode.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::Result;

use super::{err_at, tree, EntryCx, EntrySource};
use crate::recipe::entry::{push_name, EntryKind, Stamp};

pub(super) fn resolve(cx: &EntryCx) -> Result<EntrySource> {
    let (e, attrs) = (cx.section, &cx.attrs);
    let Some(src_str) = &e.src else {
        unreachable!("resolved only when `src` is set")
    };
    let rel = (cx.expand)(src_str)?;
    let path = cx.context.join(&rel);
    let loc = |m: String| cx.recipe.err(src_str.span(), m);
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
    if !canonical.starts_with(cx.context) && !followed {
        return Err(loc(format!(
            "src {rel:?} resolves to {}, outside the build context {}{}",
            canonical.display(),
            cx.context.display(),
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
        .map(cx.expand)
        .collect::<Result<Vec<_>>>()
        .map_err(|err| cx.recipe.err(cx.span.clone(), err))?;
    tree::build_excludes(&excludes).map_err(|m| cx.recipe.err(cx.span.clone(), m))?;
    let target_meta = fs::metadata(&canonical)?;
    if target_meta.is_dir() {
        return Ok(EntrySource::Tree(tree::Tree::new(
            cx,
            canonical,
            &target_meta,
            excludes,
        )));
    }
    // Named as `src` names it, as COPY and `cp -L` do: a link `current`
    // to `app-1.2.conf` is copied as `current`.
    let named = Path::new(&rel).file_name().or(canonical.file_name());
    let file_dest = match named {
        Some(name) if cx.dest.is_dir() => {
            let mut path = cx.dest.path.clone();
            push_name(&mut path, name.as_bytes());
            path
        }
        _ => cx.dest_entry()?,
    };
    let kind = file_kind(&cx.at, &canonical, &target_meta)?;
    let mode = attrs.mode.unwrap_or(target_meta.mode() & 0o7777);
    let inode = (target_meta.nlink() > 1).then(|| (target_meta.dev(), target_meta.ino()));
    Ok(EntrySource::One {
        entry: attrs.entry(file_dest, kind, mode),
        inode,
    })
}

/// A regular file as an entry kind; anything else that is not a directory or
/// a symlink (devices, sockets, pipes) is refused.
pub(super) fn file_kind(at: &str, path: &Path, meta: &fs::Metadata) -> Result<EntryKind> {
    let ft = meta.file_type();
    if ft.is_file() {
        return Ok(EntryKind::File {
            src: path.to_path_buf(),
            size: meta.len(),
            stamp: Stamp::of(meta),
        });
    }
    let what = crate::input::kind_of(meta);
    Err(err_at(
        at,
        format!(
            "{} is {what}; only regular files, directories and symlinks can go into a layer",
            path.display()
        ),
    ))
}

//! `symlink = "target"`: a symbolic link at `dest`. The target is a path in
//! the image and is not checked against this machine.

use anyhow::Result;

use super::{EntryCx, EntrySource};
use crate::recipe::entry::EntryKind;

pub(super) fn resolve(cx: &EntryCx) -> Result<EntrySource> {
    let Some(target) = &cx.section.symlink else {
        unreachable!("resolved only when `symlink` is set")
    };
    let t = (cx.expand)(target)?;
    if t.is_empty() || t.contains('\0') {
        return Err(cx.recipe.err(
            target.span(),
            format!("symlink target {t:?} is empty or contains a NUL byte"),
        ));
    }
    // Linux's PATH_MAX, as for `dest`: no system can make a longer link.
    if t.len() > 4096 {
        return Err(cx.recipe.err(
            target.span(),
            format!(
                "symlink target is {} bytes long; a link's target is at most 4096",
                t.len()
            ),
        ));
    }
    cx.attrs.one(cx, EntryKind::Symlink(t.into_bytes()), 0o777)
}

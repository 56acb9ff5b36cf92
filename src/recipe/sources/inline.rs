//! `content = "..."`: a file written from the recipe's own text (after
//! variables), mode 0644 unless the entry or layer gives one.

use anyhow::Result;

use super::{EntryCx, EntrySource};
use crate::recipe::entry::EntryKind;

pub(super) fn resolve(cx: &EntryCx) -> Result<EntrySource> {
    let Some(content) = &cx.section.content else {
        unreachable!("resolved only when `content` is set")
    };
    let text = (cx.expand)(content)?;
    cx.attrs
        .one(cx, EntryKind::Inline(text.into_bytes()), 0o644)
}

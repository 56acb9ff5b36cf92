//! `dir = true`: an empty directory at `dest`, mode 0755 unless the entry
//! or layer gives one.

use anyhow::Result;

use super::{EntryCx, EntrySource};
use crate::recipe::entry::EntryKind;

pub(super) fn resolve(cx: &EntryCx) -> Result<EntrySource> {
    cx.attrs.one(cx, EntryKind::Dir, 0o755)
}

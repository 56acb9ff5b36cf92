//! `python = { lock = ... }`: not yet installable.

use anyhow::Result;

use super::{EntryCx, EntrySource};

pub(super) fn resolve(cx: &EntryCx) -> Result<EntrySource> {
    Err(super::err_at(
        &cx.at,
        "python entries are not supported yet",
    ))
}

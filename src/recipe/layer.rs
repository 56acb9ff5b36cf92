//! One `[[layer]]` resolved: its entries' sources in recipe order, checked.
//! A plan keeps the sources, not the entries they expand to; its entry
//! stream ([`LayerPlan::entries`]) runs once when planning, so that every bad
//! input (missing `src`, escaping symlink, device file, conflicting `dest`)
//! is found before anything is written, and again while the tar is written.

use std::path::{Path, PathBuf};

use anyhow::Result;
use toml::Spanned;

use super::entry::EntryKind;
use super::schema::{LayerSection, Str};
use super::sources::{self, Effective, EntrySource};
use super::walk::Entries;
use super::Source;

/// A layer: its resolved sources, in recipe order. [`LayerPlan::entries`]
/// gives its tar entries.
#[derive(Debug, PartialEq, Eq)]
pub struct LayerPlan {
    pub name: String,
    context: PathBuf,
    /// Each source, with where the recipe asked for it (`file:line:col`).
    sources: Vec<(EntrySource, String)>,
    /// Bytes of file content, as planned.
    content_size: u64,
}

impl LayerPlan {
    /// Bytes of file content in the layer (for progress).
    pub fn content_size(&self) -> u64 {
        self.content_size
    }

    /// The layer's tar entries, in tar order, read from disk as they go.
    pub fn entries(&self) -> Result<Entries<'_>> {
        let streams = self
            .sources
            .iter()
            .map(|(s, at)| Ok((s.entries(&self.context, at)?, at.as_str())))
            .collect::<Result<Vec<_>>>()?;
        Entries::new(streams)
    }
}

pub(crate) fn plan_layer(
    src: &Source,
    context: &Path,
    index: usize,
    spanned: &Spanned<LayerSection>,
    expand: &dyn Fn(&Str) -> Result<String>,
) -> Result<LayerPlan> {
    let layer = spanned.get_ref();
    let name = match &layer.name {
        Some(n) => expand(n)?,
        None => format!("layer {}", index + 1),
    };
    if layer.entries.is_empty() {
        return Err(src.err(
            spanned.span(),
            format!("layer {name:?} has no [[layer.entry]]; give it at least one"),
        ));
    }
    let mut resolved = Vec::new();
    for spanned in &layer.entries {
        let attrs = Effective::of(src, &layer.attrs(), &spanned.get_ref().attrs(), expand)?;
        let source = sources::resolve(src, context, spanned, attrs, expand)?;
        resolved.push((source, src.at(spanned.span())));
    }
    let mut plan = LayerPlan {
        name,
        context: context.to_path_buf(),
        sources: resolved,
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

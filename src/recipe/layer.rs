//! One `[[layer]]` resolved: its entries' sources in recipe order, checked;
//! or, for a `[layer.python]`, one layer per package (or per group of the
//! smallest under `max_layers`, or one for all with `split = "one"`).
//! A `split = "auto"` layer becomes its stable and changing parts
//! (`split.rs`), each the same sources filtered.
//! A plan keeps the sources, not the entries they expand to; its entry
//! stream ([`LayerPlan::entries`]) runs once when planning, so that every bad
//! input (missing `src`, escaping symlink, device file, conflicting `dest`)
//! is found before anything is written, and again while the tar is written.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use toml::Spanned;

use super::entry::{EntryKind, Stamps, StampsOf};
use super::schema::{Attrs, LayerSection, PythonSection, Str};
use super::sources::python::{self, Place};
use super::sources::{self, Effective, EntrySource, PlanEnv};
use super::split::{self as auto, Split as AutoSplit};
use super::walk::Entries;
use super::Source;
use crate::supply::sbom::Component;

/// A layer: its resolved sources, in recipe order. [`LayerPlan::entries`]
/// gives its tar entries.
#[derive(Debug, PartialEq, Eq)]
pub struct LayerPlan {
    pub name: String,
    context: PathBuf,
    /// Each source, with where the recipe asked for it (`file:line:col`).
    sources: Arc<Vec<(EntrySource, String)>>,
    /// With `split = "auto"`: the split and which of its parts this is.
    part: Option<(Arc<AutoSplit>, usize)>,
    /// Whether it writes the missing parents of its entries: only the
    /// first layer of an image from scratch does (see [`Entries::new`]).
    parents: bool,
    /// Whether it is (a part of) the recipe's first `[[layer]]` on scratch,
    /// whose directory `src`s write their `dest` directory too; every other
    /// layer leaves it to the layers below, as it leaves the parents.
    on_scratch: bool,
    /// Bytes of file content, as planned.
    content_size: u64,
    /// Tar entries, as planned.
    entry_count: usize,
    /// The entries as the planning walk saw them.
    stamps: Stamps,
}

/// The default prefix of `[layer.python]`.
const PYTHON_PREFIX: &str = "/usr/local";

impl LayerPlan {
    /// Bytes of file content in the layer (for progress).
    pub fn content_size(&self) -> u64 {
        self.content_size
    }

    /// The entries as planned, for the layer cache to find the key it
    /// took over the same stamps without reading a file.
    pub fn stamps(&self) -> Stamps {
        self.stamps
    }

    /// The layer's tar entries, in tar order, read from disk as they go.
    /// Content costly to produce (a wheel member) stands as
    /// [`EntryKind::Hashed`]: the cache key and planning read its size and
    /// sha256, and only the tar writer produces its bytes.
    pub fn entries(&self) -> Result<Entries<'_>> {
        let streams = self
            .sources
            .iter()
            .map(|(s, at)| {
                let stream = s.entries(&self.context, at, self.on_scratch)?;
                let stream = match &self.part {
                    Some((split, part)) => split.filter(stream, s.tree_dest(), *part),
                    None => stream,
                };
                Ok((stream, at.as_str()))
            })
            .collect::<Result<Vec<_>>>()?;
        Entries::new(streams, self.parents)
    }

    /// What the layer's sources report to the SBOM beyond its files (URL
    /// downloads, Python packages).
    pub fn components(&self) -> Vec<Component> {
        self.sources
            .iter()
            .flat_map(|(s, _)| s.components())
            .collect()
    }
}

/// What planning a `[[layer]]` takes besides its table: the same for every
/// layer of a platform but `first`.
#[derive(Clone, Copy)]
pub(crate) struct LayerCx<'a> {
    pub src: &'a Source,
    pub context: &'a Path,
    pub expand: &'a dyn Fn(&Str) -> Result<String>,
    pub env: &'a PlanEnv,
    /// The recipe's first `[[layer]]` on scratch: the first of its layers
    /// writes its entries' missing parent directories.
    pub first: bool,
}

/// The layers of one `[[layer]]`: one, or for a `[layer.python]` one per
/// package (or group of packages); none when no package applies.
pub(crate) fn plan_layers(
    cx: LayerCx,
    index: usize,
    spanned: &Spanned<LayerSection>,
) -> Result<Vec<LayerPlan>> {
    let LayerCx {
        src,
        context,
        expand,
        env,
        first,
    } = cx;
    let layer = spanned.get_ref();
    let name = match (&layer.name, &layer.python) {
        (Some(n), _) => expand(n)?,
        (None, Some(_)) => "python".to_string(),
        (None, None) => format!("layer {}", index + 1),
    };
    let Some(py) = &layer.python else {
        return plan_layer(cx, name, spanned);
    };
    if let Some(span) = auto_span(layer) {
        return Err(src.err(
            span,
            "split, stable and max_layers on a [[layer]] cut its [[layer.entry]] trees; a [layer.python] takes split = \"package\" or \"one\" and max_layers in its own table",
        ));
    }
    if let Some(first) = layer.entries.first() {
        return Err(src.err(
            first.span(),
            format!("layer {name:?} has a [layer.python] table and [[layer.entry]] tables; put the entries in a [[layer]] of their own"),
        ));
    }
    let at = src.at(py.span());
    let section = py.get_ref();
    let attrs = Effective::of(src, &layer.attrs(), &Attrs::default(), expand)?;
    let (split, max) = split_of(src, section, expand)?;
    let prefix = match &section.prefix {
        Some(p) => sources::Dest::parse(expand(p)?).map_err(|m| src.err(p.span(), m))?,
        None => sources::Dest::parse(PYTHON_PREFIX.to_string()).map_err(anyhow::Error::msg)?,
    };
    let place = Place {
        recipe: src,
        context,
        span: py.span(),
        prefix: String::from_utf8_lossy(&prefix.path).into_owned(),
        attrs,
        expand,
        env,
    };
    let packages = python::packages(section, &place)?;
    let parts = match split {
        Split::One if packages.is_empty() => Vec::new(),
        Split::One => vec![(name.clone(), packages)],
        Split::Package => packages
            .split(max)
            .into_iter()
            .map(|(label, p)| (format!("{name}: {label}"), p))
            .collect(),
    };
    parts
        .into_iter()
        .enumerate()
        .map(|(i, (name, p))| {
            let sources = vec![(EntrySource::Python(p), at.clone())];
            checked(
                name,
                context,
                Arc::new(sources),
                None,
                first && i == 0,
                first,
            )
        })
        .collect()
}

/// How a `[layer.python]` is cut into layers.
#[derive(Clone, Copy)]
enum Split {
    Package,
    One,
}

/// `split` and `max_layers`, checked.
fn split_of(
    src: &Source,
    py: &PythonSection,
    expand: &dyn Fn(&Str) -> Result<String>,
) -> Result<(Split, Option<usize>)> {
    let split = src.keyword(
        "split",
        py.split.as_ref(),
        expand,
        &[("package", Split::Package), ("one", Split::One)],
    )?;
    let max = match (&py.max_layers, &split) {
        (None, _) => None,
        (Some(m), Split::One) => {
            return Err(src.err(m.span(), "max_layers only applies to split = \"package\""))
        }
        (Some(m), Split::Package) => match usize::try_from(*m.get_ref()) {
            Ok(n) if n >= 1 => Some(n),
            _ => {
                return Err(src.err(
                    m.span(),
                    format!("max_layers = {} must be 1 or more", m.get_ref()),
                ))
            }
        },
    };
    Ok((split, max))
}

fn plan_layer(
    cx: LayerCx,
    name: String,
    spanned: &Spanned<LayerSection>,
) -> Result<Vec<LayerPlan>> {
    let (src, context, expand) = (cx.src, cx.context, cx.expand);
    let layer = spanned.get_ref();
    if layer.entries.is_empty() {
        return Err(src.err(
            spanned.span(),
            format!("layer {name:?} has no [[layer.entry]] and no [layer.python]; give it at least one entry"),
        ));
    }
    let auto = auto_of(src, layer, expand)?;
    let mut resolved = Vec::new();
    for spanned in &layer.entries {
        let attrs = Effective::of(src, &layer.attrs(), &spanned.get_ref().attrs(), expand)?;
        let source = sources::resolve(src, context, spanned, attrs, expand, cx.env)?;
        resolved.push((source, src.at(spanned.span())));
    }
    let sources = Arc::new(resolved);
    // The whole layer is checked once (conflicts, parents), split or not.
    let whole = checked(
        name.clone(),
        context,
        sources.clone(),
        None,
        cx.first,
        cx.first,
    )?;
    let Some(Auto {
        span,
        globs,
        set,
        max,
    }) = auto
    else {
        return Ok(vec![whole]);
    };
    if !sources.iter().any(|(s, _)| s.tree_dest().is_some()) {
        return Err(src.err(
            span,
            format!("split = \"auto\" cuts the files of a directory `src`, and layer {name:?} has none; add a [[layer.entry]] whose src is a directory, or remove split"),
        ));
    }
    let (split, parts) = AutoSplit::plan(&sources, context, globs, set, max)?;
    let split = Arc::new(split);
    let mut layers: Vec<LayerPlan> = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let name = format!("{name} ({part})");
        let part = Some((split.clone(), i));
        let plan = checked(
            name,
            context,
            sources.clone(),
            part,
            cx.first && layers.is_empty(),
            cx.first,
        )?;
        if plan.entry_count > 0 {
            layers.push(plan);
        }
    }
    if layers.is_empty() {
        return Ok(vec![whole]);
    }
    Ok(layers)
}

/// A `split = "auto"`, checked.
struct Auto {
    span: std::ops::Range<usize>,
    globs: Vec<String>,
    set: globset::GlobSet,
    max: usize,
}

/// Where a layer sets split, stable or max_layers, if it does.
fn auto_span(layer: &LayerSection) -> Option<std::ops::Range<usize>> {
    let split = layer.split.as_ref().map(|s| s.span());
    let stable = layer.stable.as_ref().map(|s| s.span());
    let max = layer.max_layers.as_ref().map(|s| s.span());
    split.or(stable).or(max)
}

/// `split`, `stable` and `max_layers` of a layer of entries, checked.
fn auto_of(
    src: &Source,
    layer: &LayerSection,
    expand: &dyn Fn(&Str) -> Result<String>,
) -> Result<Option<Auto>> {
    let Some(split) = &layer.split else {
        return match auto_span(layer) {
            Some(span) => Err(src.err(span, "stable and max_layers apply to split = \"auto\"; add split = \"auto\" to the layer or remove them")),
            None => Ok(None),
        };
    };
    let value = expand(split)?;
    if value != "auto" {
        return Err(src.err(
            split.span(),
            format!("split = {value:?}: a [[layer]] of entries takes split = \"auto\" (stable files apart from changing ones)"),
        ));
    }
    let max = match &layer.max_layers {
        None => 2,
        Some(m) => match usize::try_from(*m.get_ref()) {
            Ok(n) if n >= 2 => n,
            _ => {
                return Err(src.err(
                    m.span(),
                    format!(
                        "max_layers = {} must be 2 or more (the stable and the changing files)",
                        m.get_ref()
                    ),
                ))
            }
        },
    };
    let stable = layer
        .stable
        .as_ref()
        .map(|s| s.get_ref().as_slice())
        .unwrap_or_default();
    let globs = stable.iter().map(expand).collect::<Result<Vec<_>>>()?;
    let set = auto::globs(&globs).map_err(|(i, m)| {
        let span = stable.get(i).map_or(split.span(), |s| s.span());
        src.err(span, m)
    })?;
    Ok(Some(Auto {
        span: split.span(),
        globs,
        set,
        max,
    }))
}

/// A layer of these sources (or one part of them), its entries walked
/// once to check them.
fn checked(
    name: String,
    context: &Path,
    sources: Arc<Vec<(EntrySource, String)>>,
    part: Option<(Arc<AutoSplit>, usize)>,
    parents: bool,
    on_scratch: bool,
) -> Result<LayerPlan> {
    let mut plan = LayerPlan {
        name,
        context: context.to_path_buf(),
        sources,
        part,
        parents,
        on_scratch,
        content_size: 0,
        entry_count: 0,
        stamps: StampsOf::default().finish(),
    };
    // The checking pass: walk everything once before anything is written.
    let (mut size, mut count, mut stamps) = (0, 0, StampsOf::default());
    for e in plan.entries()? {
        let e = e?;
        stamps.add(&e)?;
        size = u64::saturating_add(
            size,
            match e.kind {
                EntryKind::File { size, .. } | EntryKind::Hashed { size, .. } => size,
                EntryKind::Inline(b) => b.len() as u64,
                _ => 0,
            },
        );
        count += 1;
    }
    plan.content_size = size;
    plan.entry_count = count;
    plan.stamps = stamps.finish();
    Ok(plan)
}

//! Recipes: parse a TOML recipe, substitute variables, check everything, and
//! resolve it into a [`Plan`] with absolute, checked paths and, per layer, the
//! resolved sources whose entries are streamed in tar order. Nothing is
//! written until the whole recipe is valid, and every error names the recipe
//! file with line and column, or the path.
//!
//! `schema.rs` is the file format and `vars.rs` the `${VAR}` expansion;
//! `plan.rs` turns a parsed recipe into a [`Plan`], with `base.rs` (the base
//! image) and `targets.rs` (tags and registries). A layer (`layer.rs`) keeps
//! its entries' sources, one kind per file in `sources/`; `walk.rs` merges
//! their sorted streams into the layer's [`Entries`] (`entry.rs`).

mod base;
mod entry;
mod layer;
mod plan;
pub mod schema;
mod sources;
mod targets;
pub mod vars;
mod walk;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;

use crate::error::bad_input;
use crate::oci::Platform;
pub use entry::{Entry, EntryKind};
pub use layer::LayerPlan;
use schema::RecipeFile;
pub use targets::is_tag;
pub use vars::Vars;
pub use walk::Entries;

/// A recipe resolved and checked, ready to build.
#[derive(Debug)]
pub struct Plan {
    pub recipe: PathBuf,
    pub context: PathBuf,
    pub name: String,
    pub base: Base,
    /// Seconds since the Unix epoch.
    pub created: i64,
    pub author: Option<String>,
    /// `[image] sbom`, as written (checked where it is used).
    pub sbom: Option<String>,
    pub tags: Vec<String>,
    pub targets: Vec<Target>,
    pub platforms: Vec<PlatformPlan>,
}

/// Where the image starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    Scratch,
    /// An image in an OCI layout on disk. `display` is the recipe's own text,
    /// recorded in the `org.opencontainers.image.base.name` annotation.
    Oci {
        dir: PathBuf,
        name: Option<String>,
        display: String,
    },
    /// A registry image with fallbacks, tried in order.
    Registry {
        reference: String,
        fallback: Vec<String>,
    },
}

/// What one platform's image holds.
#[derive(Debug)]
pub struct PlatformPlan {
    pub platform: Platform,
    pub config: ConfigPlan,
    pub annotations: BTreeMap<String, String>,
    pub layers: Vec<Arc<LayerPlan>>,
}

/// The `[config]` section with variables substituted.
#[derive(Debug, Default, Clone)]
pub struct ConfigPlan {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Vec<(String, String)>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub exposed_ports: Vec<String>,
    pub volumes: Vec<String>,
    pub stop_signal: Option<String>,
}

/// A registry the image is pushed to (`[[target]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `registry/repository`, without tag.
    pub reference: String,
    pub role: Role,
    pub username_env: Option<String>,
    pub password_env: Option<String>,
    pub base64: bool,
    pub optional: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Backup,
}

/// Options that come from the command line rather than the recipe.
#[derive(Debug, Default, Clone)]
pub struct LoadOptions {
    pub vars: Vars,
    /// Overrides the recipe's `context`.
    pub context: Option<PathBuf>,
    /// Overrides the recipe's `[image] platforms`.
    pub platforms: Option<Vec<String>>,
}

/// The recipe text, for turning byte spans into `file:line:column`.
pub(crate) struct Source {
    pub path: PathBuf,
    pub text: String,
}

impl Source {
    pub fn at(&self, span: Range<usize>) -> String {
        let before = &self.text[..span.start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
        format!("{}:{line}:{col}", self.path.display())
    }

    /// A bad-input error located at `span`.
    pub fn err(&self, span: Range<usize>, msg: impl std::fmt::Display) -> anyhow::Error {
        bad_input(format!("{}: {msg}", self.at(span)))
    }
}

/// Read, check and resolve the recipe at `path`.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Plan> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad_input(format!("{}: cannot read recipe: {e}", path.display())))?;
    let src = Source {
        path: path.to_path_buf(),
        text,
    };
    let file: RecipeFile = toml::from_str(&src.text).map_err(|e| {
        let at = e
            .span()
            .map(|s| src.at(s))
            .unwrap_or_else(|| path.display().to_string());
        bad_input(format!("{at}: {}", e.message().trim_end()))
    })?;
    plan::resolve(&src, file, opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_line_and_column() {
        let src = Source {
            path: "r.toml".into(),
            text: "a = 1\nbb = 2\n".into(),
        };
        assert_eq!(src.at(6..8), "r.toml:2:1");
        assert_eq!(src.at(11..12), "r.toml:2:6");
    }
}

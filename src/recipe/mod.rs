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
//! their sorted streams into the layer's [`Entries`] (`entry.rs`);
//! `split.rs` cuts a `split = "auto"` layer into stable and changing parts.

mod base;
pub(crate) mod entry;
mod layer;
mod plan;
pub mod schema;
mod sources;
mod split;
mod targets;
pub mod vars;
mod walk;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::Result;

use crate::cache::BlobCache;
use crate::error::bad_input;
use crate::image::remote::RegistryBase;
use crate::oci::Platform;
use crate::progress::SharedReporter;
use crate::registry::{ClientOptions, CredentialStore};
use crate::supply::sbom::Component;
pub use entry::{Canon, Entry, EntryKind, Stamp, Stamps, StampsOf};
pub use layer::LayerPlan;
use schema::{RecipeFile, Str};
pub use sources::ReversedReadOrder;
pub use targets::is_tag;
pub use vars::Vars;
pub use walk::Entries;

/// A recipe resolved and checked, ready to build.
#[derive(Debug)]
pub struct Plan {
    pub recipe: PathBuf,
    /// The sha256 (hex) of the recipe bytes this plan was made from, as the
    /// provenance records it (the file may change while the image builds).
    pub recipe_sha256: String,
    pub context: PathBuf,
    pub name: String,
    pub base: Base,
    /// Seconds since the Unix epoch.
    pub created: i64,
    pub author: Option<String>,
    /// `[image] sbom`, as written (a known format, checked at its line).
    pub sbom: Option<String>,
    pub tags: Vec<String>,
    pub targets: Vec<Target>,
    pub platforms: Vec<PlatformPlan>,
}

impl Plan {
    /// What the layers' sources report to the SBOM beyond their files (URL
    /// downloads, Python packages), each once.
    pub fn components(&self) -> Vec<Component> {
        let mut out: Vec<Component> = self
            .platforms
            .iter()
            .flat_map(|p| &p.layers)
            .flat_map(|l| l.components())
            .collect();
        out.sort();
        out.dedup();
        out
    }
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
    /// The user name variable holds base64 of the name (`username_encoding`).
    pub username_base64: bool,
    pub optional: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Backup,
}

/// Options that come from the command line rather than the recipe.
#[derive(Default, Clone)]
pub struct LoadOptions {
    pub vars: Vars,
    /// Overrides the recipe's `context`.
    pub context: Option<PathBuf>,
    /// Overrides the recipe's `[image] platforms`.
    pub platforms: Option<Vec<String>>,
    /// The blob cache downloads go to (`--cache-dir`; default the user's cache).
    pub cache_dir: Option<PathBuf>,
    /// Shows downloads made while planning (default: nothing shown).
    pub reporter: Option<SharedReporter>,
    /// Makes (once) the client that reads a registry base's config when a
    /// Python version is to come from its `PYTHON_VERSION`; called only
    /// then. Without it, such a recipe must give `version`.
    pub registry_base: Option<RegistryBaseFn>,
    /// Where the build will write, given the image name: that output and
    /// the temporary names beside it are left out of every directory
    /// `src` (see [`crate::image::OutputPlace`]).
    pub output: Option<OutputFn>,
}

/// See [`LoadOptions::output`].
pub type OutputFn = Arc<dyn Fn(&str) -> PathBuf + Send + Sync>;

/// See [`LoadOptions::registry_base`].
pub type RegistryBaseFn = Arc<dyn Fn() -> Result<Arc<RegistryBase>> + Send + Sync>;

/// A [`RegistryBaseFn`] that makes its base on the first call (with the
/// environment's credentials and the blob cache in `cache_dir`) and hands
/// out that one after, so planning and the build share one client.
pub fn registry_base_once(
    client: ClientOptions,
    cache_dir: Option<PathBuf>,
    reporter: SharedReporter,
) -> RegistryBaseFn {
    let made: OnceLock<Arc<RegistryBase>> = OnceLock::new();
    Arc::new(move || {
        if let Some(r) = made.get() {
            return Ok(r.clone());
        }
        let r = Arc::new(RegistryBase::new(
            client.clone(),
            CredentialStore::from_env(),
            BlobCache::new(cache_dir.clone())?,
            reporter.clone(),
        )?);
        Ok(made.get_or_init(|| r).clone())
    })
}

impl LoadOptions {
    fn reporter(&self) -> SharedReporter {
        self.reporter
            .clone()
            .unwrap_or_else(crate::progress::silent)
    }
}

impl std::fmt::Debug for LoadOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadOptions")
            .field("vars", &self.vars)
            .field("context", &self.context)
            .field("platforms", &self.platforms)
            .field("cache_dir", &self.cache_dir)
            .finish_non_exhaustive()
    }
}

/// The recipe text, for turning byte spans into `file:line:column`.
pub(crate) struct Source {
    pub path: PathBuf,
    pub text: String,
    /// Made on the first [`Source::at`], so that locating every entry of a
    /// large recipe does not read the text from its start each time.
    index: std::sync::OnceLock<TextIndex>,
}

/// Where the recipe's lines start, and how many characters come before
/// each [`TextIndex::BLOCK`] bytes.
struct TextIndex {
    newlines: Vec<usize>,
    chars: Vec<usize>,
}

impl TextIndex {
    const BLOCK: usize = 4096;

    fn new(b: &[u8]) -> TextIndex {
        let newlines = b.iter().enumerate().filter(|(_, &c)| c == b'\n');
        let mut chars = vec![0];
        for block in b.chunks(Self::BLOCK) {
            chars.push(chars[chars.len() - 1] + char_starts(block));
        }
        TextIndex {
            newlines: newlines.map(|(i, _)| i).collect(),
            chars,
        }
    }

    /// Characters that start before byte `pos` of `b`.
    fn chars_before(&self, b: &[u8], pos: usize) -> usize {
        let k = pos / Self::BLOCK;
        self.chars[k] + char_starts(&b[k * Self::BLOCK..pos])
    }
}

/// How many characters start in `b`.
fn char_starts(b: &[u8]) -> usize {
    b.iter().filter(|&&c| c & 0xC0 != 0x80).count()
}

impl Source {
    pub fn new(path: &Path, text: String) -> Source {
        Source {
            path: path.to_path_buf(),
            text,
            index: std::sync::OnceLock::new(),
        }
    }

    /// `file:line:column` of byte `span.start` (columns count characters).
    pub fn at(&self, span: Range<usize>) -> String {
        let b = self.text.as_bytes();
        let start = span.start.min(b.len());
        let index = self.index.get_or_init(|| TextIndex::new(b));
        let line = index.newlines.partition_point(|&i| i < start);
        let line_start = if line == 0 {
            0
        } else {
            index.newlines[line - 1] + 1
        };
        // Characters before the span's first byte, which may be inside one.
        let col = index.chars_before(b, start) - index.chars_before(b, line_start)
            + usize::from(b.get(start).is_none_or(|&c| c & 0xC0 != 0x80));
        format!("{}:{}:{col}", self.path.display(), line + 1)
    }

    /// A bad-input error located at `span`.
    pub fn err(&self, span: Range<usize>, msg: impl std::fmt::Display) -> anyhow::Error {
        bad_input(format!("{}: {msg}", self.at(span)))
    }

    /// A field that takes one word of `choices` (each with what it means),
    /// expanded first; the first choice when the field is absent.
    pub fn keyword<T: Copy>(
        &self,
        key: &str,
        value: Option<&Str>,
        expand: &dyn Fn(&Str) -> Result<String>,
        choices: &[(&str, T)],
    ) -> Result<T> {
        let Some(value) = value else {
            return Ok(choices[0].1);
        };
        let word = expand(value)?;
        match choices.iter().find(|(w, _)| *w == word) {
            Some((_, t)) => Ok(*t),
            None => {
                let words: Vec<String> = choices.iter().map(|(w, _)| format!("{w:?}")).collect();
                Err(self.err(
                    value.span(),
                    format!("{key} = {word:?} is not {}", words.join(" or ")),
                ))
            }
        }
    }

    /// A bad-input error at `span` when the value is the recipe's, else
    /// (a command-line value) naming the recipe alone.
    pub fn err_opt(
        &self,
        span: Option<Range<usize>>,
        msg: impl std::fmt::Display,
    ) -> anyhow::Error {
        match span {
            Some(span) => self.err(span, msg),
            None => bad_input(format!("{}: {msg}", self.path.display())),
        }
    }
}

/// Read, check and resolve the recipe at `path`.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Plan> {
    let bytes = crate::input::read_capped(path, crate::input::MAX_RECIPE).map_err(|e| {
        // A relative path that is not there is most often run from another
        // directory than meant: say which one it was looked for in.
        let from = match std::env::current_dir() {
            Ok(dir) if e.kind() == std::io::ErrorKind::NotFound && path.is_relative() => {
                format!(
                    " (looked for in {}: give the recipe's path from there, or an absolute one)",
                    dir.display()
                )
            }
            _ => String::new(),
        };
        bad_input(format!("{}: cannot read recipe: {e}{from}", path.display()))
    })?;
    load_bytes(path, &bytes, opts)
}

/// Check and resolve recipe text already read: `path` names it in errors,
/// and its directory is the default build context.
pub fn load_bytes(path: &Path, bytes: &[u8], opts: &LoadOptions) -> Result<Plan> {
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t.to_string(),
        Err(e) => {
            let good = e.valid_up_to();
            let src = Source::new(path, String::from_utf8_lossy(&bytes[..good]).into_owned());
            return Err(src.err(
                good..good,
                format!(
                    "byte 0x{:02x} at byte offset {good} is not UTF-8; a recipe is UTF-8 text",
                    bytes[good]
                ),
            ));
        }
    };
    let src = Source::new(path, text);
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
        let src = Source::new(Path::new("r.toml"), "a = 1\nbb = 2\n".into());
        assert_eq!(src.at(6..8), "r.toml:2:1");
        assert_eq!(src.at(11..12), "r.toml:2:6");
        assert_eq!(src.at(99..100), "r.toml:3:1");
        let src = Source::new(Path::new("r.toml"), "a = \"é\" x".into());
        assert_eq!(src.at(6..7), "r.toml:1:6", "inside a character");
        assert_eq!(src.at(7..8), "r.toml:1:7");
    }

    #[test]
    fn locations_in_a_large_recipe_are_found_without_reading_it_each_time() {
        // Lines of several blocks, with characters of two and three bytes.
        let line = format!("{}\n", "é€a".repeat(3000));
        let text = line.repeat(240);
        let src = Source::new(Path::new("r.toml"), text.clone());
        let naive = |start: usize| {
            let before = &text.as_bytes()[..start];
            let line = before.iter().filter(|&&c| c == b'\n').count() + 1;
            let line_start = before
                .iter()
                .rposition(|&c| c == b'\n')
                .map_or(0, |i| i + 1);
            let inside = text.as_bytes()[start] & 0xC0 == 0x80;
            let col = char_starts(&before[line_start..]) + usize::from(!inside);
            format!("r.toml:{line}:{col}")
        };
        for l in [0, 1, 239] {
            // The start of an `é`, inside it, and the `€` and `a` after it.
            for c in [0, 1, 683, 2999] {
                for within in [0, 1, 2, 5] {
                    let start = l * line.len() + c * 6 + within;
                    assert_eq!(src.at(start..start + 1), naive(start), "{start}");
                }
            }
        }
        // Every entry of a recipe is located: each costs at most a block.
        let t = std::time::Instant::now();
        for i in 0..20_000 {
            let _ = src.at(text.len() - 1 - i % 1000..text.len());
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(10),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn invalid_utf8_is_located() {
        let err = load_bytes(
            Path::new("r.toml"),
            b"[image]\nname = \"a\xffb\"\n",
            &LoadOptions::default(),
        )
        .unwrap_err();
        assert!(crate::error::is_bad_input(&err));
        assert_eq!(
            err.to_string(),
            "r.toml:2:10: byte 0xff at byte offset 17 is not UTF-8; a recipe is UTF-8 text"
        );
    }

    #[test]
    fn a_word_field_names_its_place_and_its_choices() {
        let dir = tempfile::tempdir().unwrap();
        let recipe = |target: &str| {
            format!(
                "[image]\nname = \"t\"\nbase = \"scratch\"\n[[layer]]\n[[layer.entry]]\ndest = \"/a\"\ncontent = \"a\"\n[[target]]\nref = \"ghcr.io/acme/t\"\n{target}\n"
            )
        };
        let load = |target: &str| {
            load_bytes(
                &dir.path().join("r.toml"),
                recipe(target).as_bytes(),
                &LoadOptions::default(),
            )
        };
        let plan = load("role = \"backup\"\nencoding = \"base64\"").unwrap();
        assert_eq!(plan.targets[0].role, Role::Backup);
        assert!(plan.targets[0].base64 && !plan.targets[0].username_base64);
        let plan = load("").unwrap();
        assert_eq!(plan.targets[0].role, Role::Primary);
        assert!(!plan.targets[0].base64);
        for (field, message) in [
            (
                "role = \"tertiary\"",
                "r.toml:10:8: role = \"tertiary\" is not \"primary\" or \"backup\"",
            ),
            (
                "username_encoding = \"hex\"",
                "r.toml:10:21: username_encoding = \"hex\" is not \"plain\" or \"base64\"",
            ),
        ] {
            let err = load(field).unwrap_err();
            assert!(crate::error::is_bad_input(&err));
            assert!(err.to_string().ends_with(message), "{err}");
        }
    }
}

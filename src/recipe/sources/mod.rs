//! The kinds of `[[layer.entry]]`, one file each. A kind checks its fields
//! when the recipe is planned (so that bad input fails before anything is
//! written) and yields its entries in tar order; the layer's walk merges the
//! kinds' streams. Today's kinds:
//!
//! - `file.rs`: `src`, a path in the build context; a directory is walked
//!   by `tree.rs`,
//! - `inline.rs`: `content`, a file written from the recipe's text,
//! - `symlink.rs`: `symlink`, a symbolic link,
//! - `dir.rs`: `dir = true`, an empty directory.
//! - `url.rs`: `url`, a pinned download (or one member of it),
//! - `python.rs`: `python`, the packages of a lock file installed from wheels.
//!
//! A new kind is a file here, a row in [`KINDS`] and its fields in
//! `schema.rs`; a kind that yields more than one entry also adds a variant
//! to [`EntrySource`] with its stream.

mod dir;
mod file;
mod inline;
pub(super) mod python;
mod symlink;
mod tree;
pub use tree::ReversedReadOrder;
mod url;

use std::ops::Range;
use std::path::{Component, Path};

use anyhow::{Context, Result};

use super::entry::{Entry, EntryKind, Inode, Stamp};
use super::schema::{Attrs, EntrySection, Mode, Str};
use super::Source;
use crate::cache::BlobCache;
use crate::error::bad_input;
use crate::progress::SharedReporter;
use crate::supply::sbom::Component as SbomComponent;

/// What planning one platform's layers may need besides the recipe: the
/// base image's `PYTHON_VERSION`, and where downloads go and are reported.
pub(crate) struct PlanEnv {
    pub base_python: Option<String>,
    /// The blob cache's directory (`None`: the default), opened when first used.
    pub cache_dir: Option<std::path::PathBuf>,
    pub cache: std::sync::OnceLock<BlobCache>,
    pub reporter: SharedReporter,
    /// The build's output, left out of directory trees.
    pub output: Option<crate::image::OutputPlace>,
}

impl PlanEnv {
    /// The blob cache, opened (and created) the first time it is needed.
    pub(crate) fn cache(&self) -> Result<&BlobCache> {
        if let Some(c) = self.cache.get() {
            return Ok(c);
        }
        let c = BlobCache::new(self.cache_dir.clone())?;
        Ok(self.cache.get_or_init(|| c))
    }
}

/// The kinds, in the order errors name them. An entry sets exactly one.
const KINDS: &[Kind] = &[
    ("src", |e| e.src.is_some(), file::resolve),
    ("content", |e| e.content.is_some(), inline::resolve),
    ("symlink", |e| e.symlink.is_some(), symlink::resolve),
    ("dir = true", |e| e.dir, dir::resolve),
    ("url", |e| e.url.is_some(), url::resolve),
    ("python", |e| e.python.is_some(), python::resolve),
];

/// One kind of entry source: the field that asks for it (as errors name
/// it), whether an entry sets that field, and what checks and resolves the
/// entry.
type Kind = (
    &'static str,
    fn(&EntrySection) -> bool,
    fn(&EntryCx) -> Result<EntrySource>,
);

/// One `[[layer.entry]]`, checked and resolved: what it yields.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum EntrySource {
    /// A single entry, with the (device, inode) of a `src` file with
    /// several links.
    One { entry: Entry, inode: Option<Inode> },
    /// A directory `src`, walked.
    Tree(tree::Tree),
    /// Python packages installed from wheels.
    Python(python::Packages),
    /// A single entry downloaded from a URL, as the SBOM lists it.
    Fetched {
        entry: Entry,
        component: SbomComponent,
    },
}

/// A source's entries in tar order, each with its (device, inode) when it is
/// a file with several links.
pub(super) type Stream<'a> = Box<dyn Iterator<Item = Result<(Entry, Option<Inode>)>> + 'a>;

impl EntrySource {
    /// The entries, read from disk as they go. `context` is the build
    /// context, `at` the entry's place in the recipe, for errors. With
    /// `on_scratch` (the recipe's first layer, on scratch), a directory
    /// `src` gives `dest` an entry of its own; in any other layer it gives
    /// only what is below `dest`.
    pub(super) fn entries<'a>(
        &'a self,
        context: &'a Path,
        at: &'a str,
        on_scratch: bool,
    ) -> Result<Stream<'a>> {
        Ok(match self {
            EntrySource::One { entry, inode } => {
                Box::new(std::iter::once(restamped(entry).map(|e| (e, *inode))))
            }
            EntrySource::Tree(tree) => tree.entries(context, at, on_scratch)?,
            EntrySource::Python(p) => p.entries(),
            EntrySource::Fetched { entry, .. } => {
                Box::new(std::iter::once(restamped(entry).map(|e| (e, None))))
            }
        })
    }

    /// The image path of a directory `src` (without the leading `/`).
    pub(super) fn tree_dest(&self) -> Option<&[u8]> {
        match self {
            EntrySource::Tree(t) => Some(t.dest()),
            _ => None,
        }
    }

    /// What the source reports to the SBOM beyond its files.
    pub(super) fn components(&self) -> Vec<SbomComponent> {
        match self {
            EntrySource::Python(p) => p.components(),
            EntrySource::Fetched { component, .. } => vec![component.clone()],
            EntrySource::One { .. } | EntrySource::Tree(_) => Vec::new(),
        }
    }
}

/// A file entry resolved once, with its file's [`Stamp`] as it is now, as a
/// walk of a tree would see it.
fn restamped(entry: &Entry) -> Result<Entry> {
    let mut e = entry.clone();
    if let EntryKind::File { src, stamp, .. } = &mut e.kind {
        let meta =
            std::fs::metadata(&*src).with_context(|| format!("reading {}", src.display()))?;
        *stamp = Stamp::of(&meta);
    }
    Ok(e)
}

/// What every kind resolves an entry with.
pub(super) struct EntryCx<'a> {
    /// The recipe, for errors located at a field.
    pub recipe: &'a Source,
    pub context: &'a Path,
    pub section: &'a EntrySection,
    /// The entry's whole table in the recipe.
    pub span: Range<usize>,
    /// `file:line:col` of the entry.
    pub at: String,
    /// The kind's field, as errors name it.
    pub field: &'static str,
    pub dest: Dest,
    pub attrs: Effective,
    pub expand: &'a dyn Fn(&Str) -> Result<String>,
    pub env: &'a PlanEnv,
}

/// Check one `[[layer.entry]]` and resolve it through its kind.
pub(super) fn resolve(
    recipe: &Source,
    context: &Path,
    spanned: &toml::Spanned<EntrySection>,
    attrs: Effective,
    expand: &dyn Fn(&Str) -> Result<String>,
    env: &PlanEnv,
) -> Result<EntrySource> {
    let span = spanned.span();
    let e = spanned.get_ref();
    let dest = Dest::parse(expand(&e.dest)?).map_err(|m| recipe.err(e.dest.span(), m))?;
    let mut set = KINDS.iter().filter(|(_, is_set, _)| is_set(e));
    let (Some((field, _, resolve)), None) = (set.next(), set.next()) else {
        return Err(recipe.err(
            span,
            format!("an entry needs exactly one of {}", kind_names()),
        ));
    };
    if !e.exclude.is_empty() && e.src.is_none() {
        return Err(recipe.err(span, "`exclude` only applies to a directory `src`"));
    }
    if (e.sha256.is_some() || e.extract.is_some()) && e.url.is_none() {
        return Err(recipe.err(span, "`sha256` and `extract` only apply to a `url`"));
    }
    resolve(&EntryCx {
        recipe,
        context,
        section: e,
        at: recipe.at(span.clone()),
        span,
        field,
        dest,
        attrs,
        expand,
        env,
    })
}

/// "`src`, `content`, `symlink` or `dir = true`".
fn kind_names() -> String {
    let names: Vec<String> = KINDS.iter().map(|k| format!("`{}`", k.0)).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => names.concat(),
    }
}

/// The effective attributes of an entry: the entry's own, else the layer's
/// (the default: root's, each file's own mode).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Effective {
    pub mode: Option<u32>,
    pub dir_mode: Option<u32>,
    pub uid: u64,
    pub gid: u64,
    pub uname: String,
    pub gname: String,
}

impl Effective {
    pub(super) fn of(
        recipe: &Source,
        layer: &Attrs,
        entry: &Attrs,
        expand: &dyn Fn(&Str) -> Result<String>,
    ) -> Result<Effective> {
        let name = |e: &Option<Str>, l: &Option<Str>| -> Result<String> {
            let Some(s) = e.as_ref().or(l.as_ref()) else {
                return Ok(String::new());
            };
            let name = expand(s)?;
            if name.chars().any(char::is_control) {
                return Err(recipe.err(
                    s.span(),
                    format!("{name:?}: a user or group name cannot contain a NUL byte or another control character"),
                ));
            }
            Ok(name)
        };
        for (key, m) in [
            ("mode", &entry.mode),
            ("dir_mode", &entry.dir_mode),
            ("mode", &layer.mode),
            ("dir_mode", &layer.dir_mode),
        ] {
            if let Some(m) = m {
                octal(recipe, key, m)?;
            }
        }
        Ok(Effective {
            mode: entry
                .mode
                .as_ref()
                .or(layer.mode.as_ref())
                .map(|m| m.get_ref().0),
            dir_mode: entry
                .dir_mode
                .as_ref()
                .or(layer.dir_mode.as_ref())
                .map(|m| m.get_ref().0),
            uid: entry.uid.or(layer.uid).unwrap_or(0),
            gid: entry.gid.or(layer.gid).unwrap_or(0),
            uname: name(&entry.uname, &layer.uname)?,
            gname: name(&entry.gname, &layer.gname)?,
        })
    }

    /// An entry with these owners.
    pub(super) fn entry(&self, path: Vec<u8>, kind: EntryKind, mode: u32) -> Entry {
        Entry {
            path,
            kind,
            mode,
            uid: self.uid,
            gid: self.gid,
            uname: self.uname.clone(),
            gname: self.gname.clone(),
        }
    }

    /// The single entry of a kind that makes one at `dest`, with `mode`
    /// unless the recipe gives one.
    pub(super) fn one(&self, cx: &EntryCx, kind: EntryKind, mode: u32) -> Result<EntrySource> {
        let path = cx.dest_entry()?;
        Ok(EntrySource::One {
            entry: self.entry(path, kind, self.mode.unwrap_or(mode)),
            inode: None,
        })
    }
}

impl EntryCx<'_> {
    /// The path of the one entry made at `dest`: never the image root, and
    /// a directory only when `dest` says so.
    pub(super) fn dest_entry(&self) -> Result<Vec<u8>> {
        let dir_kind = self.field == "dir = true";
        if !self.dest.is_root() && (dir_kind || !self.dest.is_dir()) {
            return Ok(self.dest.path.clone());
        }
        if !self.dest.is_root() {
            return Err(self.recipe.err(
                self.section.dest.span(),
                format!(
                    "dest {:?} names a directory (it ends with `/`) but `{}` makes \
                     one file or link; expected its full path, e.g. \"/etc/app.conf\"",
                    self.dest.text, self.field
                ),
            ));
        }
        Err(self.recipe.err(
            self.section.dest.span(),
            format!(
                "dest {:?} is the image root, which an entry cannot replace; \
                 expected a path below it for `{}`, e.g. \"/etc/app\"",
                self.dest.text, self.field
            ),
        ))
    }
}

/// A mode written as a decimal integer (`mode = 755`, which is 0o1363,
/// sticky and odd bits) is refused: it is almost always an octal mode
/// without its `0o`, and would give files modes no one meant.
fn octal(recipe: &Source, key: &str, m: &toml::Spanned<Mode>) -> Result<()> {
    let written = recipe.text.get(m.span()).unwrap_or_default();
    let v = m.get_ref().0;
    if v == 0
        || !written.starts_with(|c: char| c == '+' || c.is_ascii_digit())
        || written.starts_with('0')
    {
        return Ok(());
    }
    let digits: String = written.chars().filter(char::is_ascii_digit).collect();
    let meant = if digits.len() <= 4 && digits.bytes().all(|c| c <= b'7') {
        digits
    } else {
        format!("{v:o}")
    };
    Err(recipe.err(
        m.span(),
        format!("{key} = {written} is a decimal number, 0o{v:o} as a mode; modes are octal: write 0o{meant} or \"{meant:0>4}\""),
    ))
}

/// A bad-input error at `at` (`file:line:col`).
fn err_at(at: &str, msg: impl std::fmt::Display) -> anyhow::Error {
    bad_input(format!("{at}: {msg}"))
}

/// A checked `dest`: an absolute path in the image, without `..` or NUL
/// bytes, normalised to its components without the leading `/`
/// (`/opt//r2d/./` -> `opt/r2d`). Its path is empty for the image root
/// (`/`, `//`, `/.`), which has no entry of its own: only a directory `src`
/// (copied into it) or a file `src` (named after itself) can go there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Dest {
    /// As written, after variables.
    pub text: String,
    pub path: Vec<u8>,
}

impl Dest {
    pub(super) fn parse(text: String) -> Result<Dest, String> {
        use std::os::unix::ffi::OsStrExt;
        if !text.starts_with('/') {
            return Err(format!(
                "dest {text:?} must be an absolute path in the image, e.g. \"/opt/app\""
            ));
        }
        if text.contains('\0') {
            return Err(format!("dest {text:?} must not contain a NUL byte"));
        }
        // Linux's PATH_MAX: no longer path can be opened in the container.
        if text.len() > 4096 {
            return Err(format!(
                "dest is {} bytes long; a path in the image is at most 4096",
                text.len()
            ));
        }
        let mut parts = Vec::new();
        for c in Path::new(&text).components() {
            match c {
                Component::RootDir | Component::CurDir => {}
                Component::Normal(n) if n.len() > super::walk::NAME_MAX => {
                    return Err(format!(
                        "dest {text:?} has a part of {} bytes; a file name is at most {} (Linux's NAME_MAX)",
                        n.len(),
                        super::walk::NAME_MAX
                    ))
                }
                Component::Normal(n) => parts.push(n.as_bytes()),
                Component::ParentDir => {
                    return Err(format!(
                        "dest {text:?} must not contain `..`; expected an absolute path such as \"/opt/app\""
                    ))
                }
                Component::Prefix(_) => return Err(format!("dest {text:?} is not a Unix path")),
            }
        }
        let path = parts.join(&b'/');
        Ok(Dest { text, path })
    }

    pub(super) fn is_root(&self) -> bool {
        self.path.is_empty()
    }

    /// Whether `dest` names a directory to put a file into: the root, or a
    /// path written with a trailing `/` (or `/.`).
    pub(super) fn is_dir(&self) -> bool {
        self.is_root() || self.text.ends_with('/') || self.text.ends_with("/.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dest_is_normalised_and_checked() {
        let path = |t: &str| Dest::parse(t.to_string()).map(|d| d.path);
        assert_eq!(path("/opt//r2d/./app/").unwrap(), b"opt/r2d/app");
        for root in ["/", "//", "/.", "/./", "/./.", "///./"] {
            let d = Dest::parse(root.to_string()).unwrap();
            assert!(d.is_root() && d.is_dir(), "{root}");
        }
        assert!(Dest::parse("/opt/.".into()).unwrap().is_dir());
        assert!(!Dest::parse("/opt".into()).unwrap().is_dir());
        for rel in ["opt/x", "", ".", "..", "a/../..", "./", " /x"] {
            assert!(path(rel).unwrap_err().contains("absolute"), "{rel}");
        }
        for up in ["/..", "/../", "/opt/../etc", "/a/b/../../..", "/./.."] {
            assert!(path(up).unwrap_err().contains("`..`"), "{up}");
        }
        assert!(path("/a\0b").unwrap_err().contains("NUL"));
        assert!(path(&"/a".repeat(2048)).is_ok());
        assert!(path(&format!("/{}/x", "n".repeat(255))).is_ok());
        let e = path(&format!("/{}/x", "n".repeat(256))).unwrap_err();
        assert!(
            e.contains("a part of 256 bytes") && e.contains("at most 255"),
            "{e}"
        );
        assert!(path(&"/a".repeat(2049))
            .unwrap_err()
            .contains("at most 4096"));
    }

    #[test]
    fn the_kinds_are_named_in_errors_as_before() {
        assert_eq!(
            kind_names(),
            "`src`, `content`, `symlink`, `dir = true`, `url` or `python`"
        );
    }
}

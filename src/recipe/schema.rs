//! The recipe file format: plain serde structs, one per TOML table. Every
//! string is kept with its span so that later errors (a missing `src`, an
//! unset variable) can name the line and column. Unknown keys are refused.
//! The README documents each field; `boxwright schema` (later) derives from it.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// A string with its location in the recipe.
pub type Str = Spanned<String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipeFile {
    /// Build context, relative to the recipe's directory (default `.`).
    pub context: Option<Str>,
    /// Tags given to the image (default `["latest"]`).
    #[serde(default)]
    pub tags: Vec<Str>,
    /// Default values of variables (`${NAME}`), overridden by the environment and `--set`.
    #[serde(default)]
    pub vars: BTreeMap<String, Str>,
    pub image: ImageSection,
    #[serde(default)]
    pub config: ConfigSection,
    #[serde(default)]
    pub annotations: BTreeMap<String, Str>,
    #[serde(default, rename = "layer")]
    pub layers: Vec<LayerSection>,
    #[serde(default, rename = "target")]
    pub targets: Vec<TargetSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSection {
    pub name: Str,
    /// `scratch` (default) or `oci:PATH[:NAME]`.
    pub base: Option<Str>,
    /// Registry references tried in order when `base` is a registry image (later).
    #[serde(default)]
    pub base_fallback: Vec<Str>,
    /// `os/arch[/variant]`, default `["linux/amd64"]`.
    pub platforms: Option<Vec<Str>>,
    /// RFC 3339 time or seconds since the epoch; default `SOURCE_DATE_EPOCH`, else 0.
    pub created: Option<Spanned<Created>>,
    /// Author recorded in the image config.
    pub author: Option<Str>,
    /// SBOM attached when pushing: `spdx`, `cyclonedx` or `none`.
    pub sbom: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Created {
    Epoch(i64),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigSection {
    pub entrypoint: Option<Vec<Str>>,
    pub cmd: Option<Vec<Str>>,
    /// Environment variables (sorted by name in the image config).
    #[serde(default)]
    pub env: BTreeMap<String, Str>,
    pub workdir: Option<Str>,
    pub user: Option<Str>,
    #[serde(default)]
    pub labels: BTreeMap<String, Str>,
    /// `PORT[/tcp|udp|sctp]`.
    #[serde(default)]
    pub exposed_ports: Vec<Str>,
    #[serde(default)]
    pub volumes: Vec<Str>,
    pub stop_signal: Option<Str>,
}

/// Ownership and permission settings, given on a layer or on one entry
/// (repeated in both structs: serde's `flatten` would lose spans and
/// `deny_unknown_fields`).
#[derive(Debug, Default, Clone)]
pub struct Attrs {
    /// File mode: an integer (`0o755`) or an octal string (`"0755"`).
    pub mode: Option<Spanned<Mode>>,
    /// Mode of directories found under a directory `src` (default: their own bits).
    pub dir_mode: Option<Spanned<Mode>>,
    pub uid: Option<u64>,
    pub gid: Option<u64>,
    pub uname: Option<Str>,
    pub gname: Option<Str>,
}

macro_rules! attrs_of {
    ($s:expr) => {
        Attrs {
            mode: $s.mode.clone(),
            dir_mode: $s.dir_mode.clone(),
            uid: $s.uid,
            gid: $s.gid,
            uname: $s.uname.clone(),
            gname: $s.gname.clone(),
        }
    };
}

impl LayerSection {
    pub fn attrs(&self) -> Attrs {
        attrs_of!(self)
    }
}

impl EntrySection {
    pub fn attrs(&self) -> Attrs {
        attrs_of!(self)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mode(pub u32);

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Text(String),
        }
        let bad = || {
            serde::de::Error::custom("a mode is an integer such as 0o755 or an octal string such as \"0755\", at most 0o7777")
        };
        let v = match Raw::deserialize(d)? {
            Raw::Int(i) => u32::try_from(i).map_err(|_| bad())?,
            Raw::Text(s) => {
                u32::from_str_radix(s.trim_start_matches("0o"), 8).map_err(|_| bad())?
            }
        };
        if v > 0o7777 {
            return Err(bad());
        }
        Ok(Mode(v))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerSection {
    /// Shown in logs and recorded in the image history.
    pub name: Option<Str>,
    /// File mode: an integer (`0o755`) or an octal string (`"0755"`).
    pub mode: Option<Spanned<Mode>>,
    /// Mode of directories found under a directory `src` (default: their own bits).
    pub dir_mode: Option<Spanned<Mode>>,
    pub uid: Option<u64>,
    pub gid: Option<u64>,
    pub uname: Option<Str>,
    pub gname: Option<Str>,
    #[serde(default, rename = "entry")]
    pub entries: Vec<Spanned<EntrySection>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntrySection {
    /// Absolute path in the image.
    pub dest: Str,
    /// A file or directory, relative to the build context.
    pub src: Option<Str>,
    /// Inline file content.
    pub content: Option<Str>,
    /// Make `dest` a symbolic link to this target.
    pub symlink: Option<Str>,
    /// Make `dest` an empty directory.
    #[serde(default)]
    pub dir: bool,
    /// Globs (relative to a directory `src`) of paths left out.
    #[serde(default)]
    pub exclude: Vec<Str>,
    /// Follow symbolic links that point outside the build context and copy
    /// what they point at (default: refuse them).
    #[serde(default)]
    pub follow_symlinks: bool,
    /// File mode: an integer (`0o755`) or an octal string (`"0755"`).
    pub mode: Option<Spanned<Mode>>,
    /// Mode of directories found under a directory `src` (default: their own bits).
    pub dir_mode: Option<Spanned<Mode>>,
    pub uid: Option<u64>,
    pub gid: Option<u64>,
    pub uname: Option<Str>,
    pub gname: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSection {
    /// `registry/repository` (tags come from `tags`).
    #[serde(rename = "ref")]
    pub reference: Str,
    /// `primary` or `backup`.
    pub role: Option<Str>,
    /// Environment variable holding the user name.
    pub username_env: Option<Str>,
    /// Environment variable holding the password or token.
    pub password_env: Option<Str>,
    /// `plain` (default) or `base64`: how the password variable is encoded.
    pub encoding: Option<Str>,
    /// A failed push to an optional target only warns.
    #[serde(default)]
    pub optional: bool,
}

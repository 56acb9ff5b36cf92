//! The recipe file format: plain serde structs, one per TOML table. Every
//! string is kept with its span so that later errors (a missing `src`, an
//! unset variable) can name the line and column. Unknown keys are refused.
//! The README documents each field; `boxwright schema` (later) derives from it.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, MapAccess, Unexpected, Visitor};
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
    pub image: Spanned<ImageSection>,
    #[serde(default)]
    pub config: ConfigSection,
    #[serde(default)]
    pub annotations: BTreeMap<String, Str>,
    #[serde(default, rename = "layer")]
    pub layers: Vec<Spanned<LayerSection>>,
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
    pub platforms: Option<Spanned<Vec<Str>>>,
    /// RFC 3339 time or seconds since the epoch; default `SOURCE_DATE_EPOCH`, else 0.
    pub created: Option<Spanned<Created>>,
    /// Author recorded in the image config.
    pub author: Option<Str>,
    /// SBOM attached when pushing: `spdx`, `cyclonedx` or `none`.
    pub sbom: Option<Str>,
}

/// `created` as written: checked (range, RFC 3339) when the recipe is planned,
/// after variables are substituted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    Epoch(i64),
    Text(String),
}

/// What `created` accepts, as errors say it.
pub const CREATED_EXPECTED: &str = "created: an RFC 3339 time in quotes like \"2024-01-01T00:00:00Z\" or whole seconds since the epoch like 1704067200";

impl Scalar for Created {
    const EXPECTED: &'static str = CREATED_EXPECTED;
    fn number<E: de::Error>(v: u64, exp: &dyn de::Expected) -> Result<Self, E> {
        i64::try_from(v)
            .map(Created::Epoch)
            .map_err(|_| E::invalid_value(Unexpected::Unsigned(v), exp))
    }
    fn negative<E: de::Error>(v: i64, _: &dyn de::Expected) -> Result<Self, E> {
        Ok(Created::Epoch(v))
    }
    fn text<E: de::Error>(v: &str, _: &dyn de::Expected) -> Result<Self, E> {
        Ok(Created::Text(v.to_string()))
    }
}

impl<'de> Deserialize<'de> for Created {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor(PhantomData))
    }
}

/// A recipe value written as a number or, where [`Scalar::text`] takes it,
/// a string. `created`, `mode` and the ids are read by one visitor, so that
/// each says the same of a number beyond 64 bits, a table or a bare TOML
/// date-time, and names what it expects.
trait Scalar: Sized {
    /// What the value is, as errors say it.
    const EXPECTED: &'static str;
    fn number<E: de::Error>(v: u64, exp: &dyn de::Expected) -> Result<Self, E>;
    /// A negative number: refused unless a type takes it.
    fn negative<E: de::Error>(v: i64, exp: &dyn de::Expected) -> Result<Self, E> {
        Err(E::invalid_value(Unexpected::Signed(v), exp))
    }
    /// A string: refused unless a type takes it.
    fn text<E: de::Error>(v: &str, exp: &dyn de::Expected) -> Result<Self, E> {
        Err(E::invalid_type(Unexpected::Str(v), exp))
    }
}

struct ScalarVisitor<T>(PhantomData<T>);

impl<'de, T: Scalar> Visitor<'de> for ScalarVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(T::EXPECTED)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        match u64::try_from(v) {
            Ok(v) => T::number(v, &self),
            Err(_) => T::negative(v, &self),
        }
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        T::number(v, &self)
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<T, E> {
        Err(too_large(v, &self))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<T, E> {
        Err(too_large(v, &self))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        T::text(v, &self)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        Err(not_a_datetime(map, &self))
    }
}

/// The error for an integer beyond 64 bits, where `exp` is expected.
fn too_large<E: de::Error>(v: impl fmt::Display, exp: &dyn de::Expected) -> E {
    E::custom(format_args!(
        "invalid value: integer {v} is too large, expected {exp}"
    ))
}

/// The error for a table, or for a bare TOML date-time (which the TOML
/// reader hands over as a table), where `exp` is expected.
fn not_a_datetime<'de, A: MapAccess<'de>>(mut map: A, exp: &dyn de::Expected) -> A::Error {
    match map.next_key::<String>() {
        Ok(Some(k)) if k == "$__toml_private_datetime" => de::Error::custom(format_args!(
            "a bare TOML date-time is not accepted here; expected {exp}"
        )),
        Ok(_) => de::Error::invalid_type(Unexpected::Map, exp),
        Err(e) => e,
    }
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

/// `uid` and `gid`: a number, said so when it is not.
struct Id(u64);

impl Scalar for Id {
    const EXPECTED: &'static str =
        "a numeric user or group id, 0 to 4294967294, like 1000 (4294967295 is -1, no owner to Linux)";
    /// Linux ids are 32 bits; tar can hold more, but no system can own a
    /// file by it (GNU tar refuses to extract one). The last, 4294967295, is
    /// `(uid_t)-1`, which `chown` takes as "leave the owner as it is": every
    /// unpacker would give the file its own owner, root.
    fn number<E: de::Error>(v: u64, exp: &dyn de::Expected) -> Result<Self, E> {
        match u32::try_from(v) {
            Ok(id) if id != u32::MAX => Ok(Id(v)),
            _ => Err(E::invalid_value(Unexpected::Unsigned(v), exp)),
        }
    }
}

fn id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    d.deserialize_any(ScalarVisitor(PhantomData))
        .map(|Id(v)| Some(v))
}

/// What `mode` and `dir_mode` accept, as errors say it.
pub const MODE_EXPECTED: &str =
    "mode: an octal integer like 0o644 or a string \"0644\", at most 0o7777";

impl Mode {
    /// `"0644"`, `"644"` or `"0o644"`: octal digits, at most 0o7777.
    pub fn parse(s: &str) -> Option<Mode> {
        let digits = s.strip_prefix("0o").unwrap_or(s);
        let significant = digits.trim_start_matches('0');
        if digits.is_empty()
            || significant.len() > 4
            || !digits.bytes().all(|c| matches!(c, b'0'..=b'7'))
        {
            return None;
        }
        if significant.is_empty() {
            return Some(Mode(0));
        }
        u32::from_str_radix(significant, 8).ok().map(Mode)
    }

    fn new(v: u64) -> Option<Mode> {
        (v <= 0o7777).then_some(Mode(v as u32))
    }
}

impl Scalar for Mode {
    const EXPECTED: &'static str = MODE_EXPECTED;
    fn number<E: de::Error>(v: u64, _: &dyn de::Expected) -> Result<Self, E> {
        Mode::new(v).ok_or_else(|| {
            E::custom(format_args!(
                "invalid value: 0o{v:o} is above 0o7777, expected {MODE_EXPECTED}"
            ))
        })
    }
    fn text<E: de::Error>(v: &str, exp: &dyn de::Expected) -> Result<Self, E> {
        Mode::parse(v).ok_or_else(|| E::invalid_value(Unexpected::Str(v), exp))
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor(PhantomData))
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
    #[serde(default, deserialize_with = "id")]
    pub uid: Option<u64>,
    #[serde(default, deserialize_with = "id")]
    pub gid: Option<u64>,
    pub uname: Option<Str>,
    pub gname: Option<Str>,
    #[serde(default, rename = "entry")]
    pub entries: Vec<Spanned<EntrySection>>,
    /// `[layer.python]`: the packages of a lock file, one layer per package
    /// (or one for all); the layer then has no entries of its own.
    pub python: Option<Spanned<PythonSection>>,
    /// `auto`: rarely-changing files in layers apart from the others.
    pub split: Option<Str>,
    /// With `split = "auto"`: globs (relative to a directory `src`) of
    /// files that are always stable.
    pub stable: Option<Spanned<Vec<Str>>>,
    /// With `split = "auto"`: at most this many layers (default 2, at least 2).
    pub max_layers: Option<Spanned<i64>>,
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
    /// Download this URL (`https://`, `file://`, or `http://` to loopback).
    pub url: Option<Str>,
    /// The URL's sha256: one hex string, or a table by `ARCH`.
    pub sha256: Option<Spanned<Sha256Pin>>,
    /// A member of the downloaded zip or tar archive to take instead of the file itself.
    pub extract: Option<Str>,
    /// Install the Python packages of a lock file; `dest` is the prefix.
    pub python: Option<Spanned<PythonSection>>,
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
    #[serde(default, deserialize_with = "id")]
    pub uid: Option<u64>,
    #[serde(default, deserialize_with = "id")]
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
    /// `plain` (default) or `base64`: how the user name variable is encoded.
    pub username_encoding: Option<Str>,
    /// A failed push to an optional target only warns.
    #[serde(default)]
    pub optional: bool,
}

/// The checksum of a `url` entry: one for every platform, or one per `ARCH`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Sha256Pin {
    One(String),
    ByArch(BTreeMap<String, String>),
}

/// `python = { lock = ... }` on an entry, or a `[layer.python]` table:
/// packages from a lock file installed as pip would, from wheels only. An
/// entry's packages go under its `dest` into its layer, so `prefix` and
/// `max_layers` are a `[layer.python]`'s alone (refused on an entry, with
/// the place named) and `split` takes only `one` there.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PythonSection {
    /// `pylock.toml` or a `requirements.txt` with `--hash` on every line, in the build context.
    pub lock: Str,
    /// Directories of wheels (in the build context), searched first.
    #[serde(default)]
    pub find_links: Vec<Str>,
    /// `X.Y` or `X.Y.Z`: the image's Python (default: the base image's
    /// `PYTHON_VERSION`).
    pub version: Option<Str>,
    /// `[layer.python]`: the installation prefix (default `/usr/local`).
    pub prefix: Option<Str>,
    /// Where packages go (default `PREFIX/lib/pythonX.Y/site-packages`).
    pub site_packages: Option<Str>,
    /// The shebang of scripts (default `PREFIX/bin/pythonX.Y`).
    pub interpreter: Option<Str>,
    /// The image's glibc, `X.Y` (default `2.36`, Debian 12 as in `python:3.x-slim`).
    pub glibc: Option<Str>,
    /// The image's musl instead, `X.Y` (musllinux wheels, e.g. Alpine).
    pub musl: Option<Str>,
    /// `package` (`[layer.python]`'s default): one layer per package;
    /// `one` (an entry's only choice): one layer.
    pub split: Option<Str>,
    /// `[layer.python]` with `split = "package"`: at most this many
    /// layers, the smallest packages sharing one.
    pub max_layers: Option<Spanned<i64>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct M {
        #[allow(dead_code)]
        mode: Mode,
    }

    #[derive(Debug, Deserialize)]
    struct C {
        created: Created,
    }

    #[test]
    fn modes_are_octal_and_at_most_7777() {
        for (s, v) in [
            ("0644", 0o644),
            ("0o755", 0o755),
            ("00000644", 0o644),
            ("7777", 0o7777),
            ("0", 0),
            ("0o0", 0),
        ] {
            assert_eq!(Mode::parse(s), Some(Mode(v)), "{s}");
        }
        for s in [
            "", "0o", "8", "+7", "0o+7", "10000", "0o10000", "0x1", " 644", "644 ", "-0",
        ] {
            assert_eq!(Mode::parse(s), None, "{s:?}");
        }
    }

    #[test]
    fn wrong_modes_and_times_say_what_is_expected() {
        for value in [
            "1.5",
            "true",
            "[493]",
            "{a = 1}",
            "2024-01-01",
            "99999999999999999999999",
            "-1",
            "0o10000",
            "\"9\"",
        ] {
            let err = toml::from_str::<M>(&format!("mode = {value}")).unwrap_err();
            let msg = err.message();
            assert!(
                msg.contains(MODE_EXPECTED) && !msg.contains("untagged"),
                "{value}: {msg}"
            );
            assert_eq!(err.span(), Some(7..7 + value.len()), "{value}");
        }
        for value in [
            "1.5",
            "true",
            "[1]",
            "2024-01-01T00:00:00Z",
            "99999999999999999999999",
            "18446744073709551615",
        ] {
            let err = toml::from_str::<C>(&format!("created = {value}")).unwrap_err();
            assert!(
                err.message().contains(CREATED_EXPECTED),
                "{value}: {}",
                err.message()
            );
        }
        let c = |t: &str| toml::from_str::<C>(t).map(|c| c.created).ok();
        assert_eq!(c("created = -5"), Some(Created::Epoch(-5)));
        assert_eq!(c("created = \"x\""), Some(Created::Text("x".into())));
    }
}

//! Wheel file names (`name-version(-build)?-python-abi-platform.whl`) and
//! which of them an image can use: the tags CPython X.Y accepts on a Linux
//! platform, in pip's order of preference (its own ABI, then `abi3`, then
//! `none`; the newest manylinux/musllinux the image's libc allows first,
//! `linux_<arch>` last, pure `any` wheels after every binary one).

use anyhow::Result;

use crate::error::bad_input;

/// The interpreter and platform wheels are chosen for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// CPython (3, minor).
    pub python: (u32, u32),
    /// `x86_64`, `aarch64`, ...
    pub machine: String,
    pub libc: Libc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Libc {
    /// glibc (major, minor): manylinux wheels up to it.
    Glibc(u32, u32),
    /// musl (major, minor): musllinux wheels up to it.
    Musl(u32, u32),
}

/// The wheel machine name of an OCI architecture.
pub fn machine_of(arch: &str, variant: &str) -> Option<&'static str> {
    Some(match (arch, variant) {
        ("amd64", _) => "x86_64",
        ("arm64", _) => "aarch64",
        ("386", _) => "i686",
        ("arm", "v7") => "armv7l",
        ("ppc64le", _) => "ppc64le",
        ("s390x", _) => "s390x",
        ("riscv64", _) => "riscv64",
        _ => return None,
    })
}

/// A parsed wheel file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelName {
    /// The distribution name as written (`.`, `-` normalised to `_`).
    pub name: String,
    pub version: String,
    pub build: Option<String>,
    /// Every (python, abi, platform) the compressed tag set expands to.
    pub tags: Vec<(String, String, String)>,
}

/// The longest wheel file name taken (a file name's limit on Linux).
const MAX_FILE_NAME: usize = 255;

/// The most (python, abi, platform) combinations a compressed tag set may
/// expand to; real wheels have a handful.
const MAX_TAGS: usize = 64;

impl WheelName {
    /// Parse a wheel file name. The name and version become parts of
    /// install paths, so they must be what the wheel spec allows: a name of
    /// letters, digits, `.` and `_` that starts and ends with a letter or
    /// digit, a version (and build tag) of letters, digits and `.`, `_`,
    /// `+`, `!` likewise: no path separator, NUL, `.` or `..`.
    pub fn parse(file: &str) -> Result<WheelName> {
        if file.len() > MAX_FILE_NAME {
            return Err(bad_input(format!(
                "wheel file name {:?}... is {} bytes long; a wheel file name is at most {MAX_FILE_NAME}",
                file.chars().take(60).collect::<String>(),
                file.len()
            )));
        }
        let stem = file
            .strip_suffix(".whl")
            .ok_or_else(|| bad_input(format!("{file:?} is not a wheel (.whl)")))?;
        let parts: Vec<&str> = stem.split('-').collect();
        let (name, version, build, py, abi, plat) = match parts[..] {
            [n, v, p, a, pl] => (n, v, None, p, a, pl),
            [n, v, b, p, a, pl] => (n, v, Some(b.to_string()), p, a, pl),
            _ => {
                return Err(bad_input(format!(
                    "{file:?} is not a valid wheel file name"
                )))
            }
        };
        let alnum = |c: char| c.is_ascii_alphanumeric();
        let plain = |s: &str, extra: &str| {
            s.starts_with(alnum)
                && s.ends_with(alnum)
                && s.chars().all(|c| alnum(c) || extra.contains(c))
        };
        if !plain(name, "._") {
            return Err(bad_input(format!(
                "{file:?}: distribution name {name:?} is not a wheel name (letters, digits, `.` and `_`, starting and ending with a letter or digit)"
            )));
        }
        if !plain(version, "._+!") || build.as_deref().is_some_and(|b| !plain(b, "._")) {
            return Err(bad_input(format!(
                "{file:?}: version {version:?} (or its build tag) is not a version (letters, digits, `.`, `_`, `+`, `!`)"
            )));
        }
        let (np, na, npl) = (
            py.split('.').count(),
            abi.split('.').count(),
            plat.split('.').count(),
        );
        if np.saturating_mul(na).saturating_mul(npl) > MAX_TAGS {
            return Err(bad_input(format!(
                "{file:?}: its tags expand to {np} x {na} x {npl} combinations; a wheel file name has at most {MAX_TAGS}"
            )));
        }
        let mut tags = Vec::new();
        for p in py.split('.') {
            for a in abi.split('.') {
                for pl in plat.split('.') {
                    tags.push((p.to_string(), a.to_string(), pl.to_string()));
                }
            }
        }
        Ok(WheelName {
            name: name.to_string(),
            version: version.to_string(),
            build,
            tags,
        })
    }

    /// How well it suits `target`: lower is better; `None` when it cannot run there.
    pub fn rank(&self, target: &Target) -> Option<usize> {
        let order = supported(target);
        self.tags
            .iter()
            .filter_map(|(p, a, pl)| {
                order
                    .iter()
                    .position(|(x, y, z)| x == p && y == a && z == pl)
            })
            .min()
    }
}

/// PEP 503 name normalisation: lowercase, runs of `-_.` become `-`.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
            continue;
        }
        if sep && !out.is_empty() {
            out.push('-');
        }
        sep = false;
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// The platform tags of `target`, best first.
fn platforms(target: &Target) -> Vec<String> {
    let m = &target.machine;
    let mut out = Vec::new();
    match target.libc {
        Libc::Glibc(2, minor) => {
            for y in (5..=minor).rev() {
                out.push(format!("manylinux_2_{y}_{m}"));
                // The legacy aliases of PEP 600.
                match y {
                    17 => out.push(format!("manylinux2014_{m}")),
                    12 => out.push(format!("manylinux2010_{m}")),
                    5 => out.push(format!("manylinux1_{m}")),
                    _ => {}
                }
            }
        }
        Libc::Glibc(..) => {}
        Libc::Musl(1, minor) => {
            for y in (0..=minor).rev() {
                out.push(format!("musllinux_1_{y}_{m}"));
            }
        }
        Libc::Musl(..) => {}
    }
    out.push(format!("linux_{m}"));
    out
}

/// Every tag CPython `target.python` accepts, best first (pip's `sys_tags`).
fn supported(target: &Target) -> Vec<(String, String, String)> {
    let (major, minor) = target.python;
    let cp = format!("cp{major}{minor}");
    let plats = platforms(target);
    let mut out = Vec::new();
    let mut add =
        |p: &str, a: &str, pl: &str| out.push((p.to_string(), a.to_string(), pl.to_string()));
    for pl in &plats {
        add(&cp, &cp, pl);
    }
    for pl in &plats {
        add(&cp, "abi3", pl);
    }
    for pl in &plats {
        add(&cp, "none", pl);
    }
    for m in (2..minor).rev() {
        for pl in &plats {
            add(&format!("cp{major}{m}"), "abi3", pl);
        }
    }
    let py_versions: Vec<String> = std::iter::once(format!("py{major}{minor}"))
        .chain(std::iter::once(format!("py{major}")))
        .chain((0..minor).rev().map(|m| format!("py{major}{m}")))
        .collect();
    for py in &py_versions {
        for pl in &plats {
            add(py, "none", pl);
        }
    }
    add(&cp, "none", "any");
    for py in &py_versions {
        add(py, "none", "any");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(libc: Libc) -> Target {
        Target {
            python: (3, 11),
            machine: "x86_64".into(),
            libc,
        }
    }

    fn rank(file: &str, t: &Target) -> Option<usize> {
        WheelName::parse(file).unwrap().rank(t)
    }

    #[test]
    fn the_best_wheel_is_the_most_specific_that_runs() {
        let t = target(Libc::Glibc(2, 36));
        let own = rank(
            "a-1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            &t,
        )
        .unwrap();
        let abi3 = rank("a-1-cp38-abi3-manylinux2014_x86_64.whl", &t).unwrap();
        let pure = rank("a-1-py3-none-any.whl", &t).unwrap();
        assert!(own < abi3 && abi3 < pure);
        assert_eq!(
            rank("a-1-cp311-cp311-manylinux_2_38_x86_64.whl", &t),
            None,
            "glibc too new"
        );
        assert_eq!(rank("a-1-cp311-cp311-manylinux2014_aarch64.whl", &t), None);
        assert_eq!(rank("a-1-cp312-cp312-manylinux2014_x86_64.whl", &t), None);
        assert_eq!(rank("a-1-cp311-cp311-musllinux_1_1_x86_64.whl", &t), None);
        let musl = target(Libc::Musl(1, 2));
        assert!(rank("a-1-cp311-cp311-musllinux_1_1_x86_64.whl", &musl).is_some());
        assert!(rank("a-1-py2.py3-none-any.whl", &t).is_some());
    }

    #[test]
    fn names_parse_and_normalise() {
        let w = WheelName::parse("Foo.Bar-1.0-2-py3-none-any.whl").unwrap();
        assert_eq!((w.version.as_str(), w.build.as_deref()), ("1.0", Some("2")));
        assert_eq!(normalize(&w.name), "foo-bar");
        assert_eq!(normalize("A__b-.C"), "a-b-c");
        assert!(WheelName::parse("x-1.tar.gz").is_err());
        let w = WheelName::parse("zope.interface-6.0rc1+local_1-py3-none-any.whl").unwrap();
        assert_eq!(w.name, "zope.interface");
    }

    #[test]
    fn names_and_versions_that_are_no_path_part_are_refused() {
        for file in [
            "..-1.0-py3-none-any.whl",
            "../../etc-1.0-py3-none-any.whl",
            "a/b-1.0-py3-none-any.whl",
            "a\\b-1.0-py3-none-any.whl",
            "_a-1.0-py3-none-any.whl",
            "a.-1.0-py3-none-any.whl",
            "a\0-1.0-py3-none-any.whl",
            "a-..-py3-none-any.whl",
            "a-1/..-py3-none-any.whl",
            "a-1.0-../x-py3-none-any.whl",
        ] {
            let err = WheelName::parse(file).unwrap_err();
            assert!(crate::error::is_bad_input(&err), "{file}");
            assert!(format!("{err}").contains("is not a"), "{file}: {err}");
        }
    }

    #[test]
    fn tag_sets_and_file_names_are_bounded() {
        let dots = ".".repeat(600);
        let file = format!("demo-1.0-py3{dots}-none{dots}-any{dots}.whl");
        let err = WheelName::parse(&file).unwrap_err().to_string();
        assert!(err.contains("at most 255"), "{err}");
        let err = WheelName::parse("a-1-py2.py3.py4.py5-none.abi3-any.x.y.z.w.v.u.t.s.whl")
            .unwrap_err()
            .to_string();
        assert!(err.contains("4 x 2 x 9 combinations"), "{err}");
        assert_eq!(
            WheelName::parse("a-1-py2.py3-none-any.whl")
                .unwrap()
                .tags
                .len(),
            2
        );
    }
}

//! Lock files: what to install, each package with the wheels it may come
//! from. Two formats:
//!
//! - PEP 751 `pylock.toml`: `[[packages]]` with `name`, `version`,
//!   `marker` and `wheels = [{ name, url | path, hashes.sha256 }]`;
//! - `requirements.txt` as `pip-compile --generate-hashes` or
//!   `uv pip compile --generate-hashes` write it: every line
//!   `name==version [; marker] --hash=sha256:H ...`, each hash naming one
//!   wheel file found in `find_links` by its content.
//!
//! Markers (PEP 508) are evaluated per platform with `pep508_rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Result;
use pep508_rs::{MarkerEnvironment, MarkerEnvironmentBuilder, MarkerTree};
use serde::Deserialize;

use super::tags::{normalize, WheelName};
use crate::error::bad_input;

/// One locked package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub marker: Option<String>,
    pub wheels: Vec<WheelRef>,
    /// Whether the lock also offers a source distribution (not installable here).
    pub sdist: bool,
    /// Pinned by hashes (a `requirements.txt`): only the wheels the hashes
    /// name may be installed, never another file of the same name.
    pub hashed: bool,
}

/// A wheel a package may come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelRef {
    /// The file name, `*.whl`.
    pub file: String,
    pub url: Option<String>,
    /// A local file (a lock's `path`, relative to the lock, or a find_links match).
    pub path: Option<PathBuf>,
    pub sha256: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct PyLock {
    #[serde(default)]
    packages: Vec<PyLockPackage>,
}

#[derive(Deserialize)]
struct PyLockPackage {
    name: String,
    version: Option<String>,
    marker: Option<String>,
    #[serde(default)]
    wheels: Vec<PyLockFile>,
    sdist: Option<toml::Value>,
}

#[derive(Deserialize)]
struct PyLockFile {
    name: Option<String>,
    url: Option<String>,
    path: Option<String>,
    #[serde(default)]
    hashes: BTreeMap<String, String>,
}

/// Read the lock at `path`; `find_links` maps sha256 to wheel files (for
/// `requirements.txt`).
pub fn read(path: &Path, find_links: &BTreeMap<String, PathBuf>) -> Result<Vec<Package>> {
    let text = crate::input::read_capped_string(path, crate::input::MAX_LOCK)
        .map_err(|e| bad_input(format!("lock {}: {e}", path.display())))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.ends_with(".toml") {
        pylock(path, &text)
    } else {
        requirements(path, &text, find_links)
    }
}

fn pylock(path: &Path, text: &str) -> Result<Vec<Package>> {
    let lock: PyLock =
        toml::from_str(text).map_err(|e| bad_input(format!("lock {}: {e}", path.display())))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    for p in lock.packages {
        let at = format!("lock {}: package {}", path.display(), p.name);
        if let Some(m) = &p.marker {
            check_marker(m, &at)?;
        }
        let mut wheels = Vec::new();
        for w in p.wheels {
            let from = w.url.as_deref().or(w.path.as_deref()).unwrap_or("");
            let file = match w.name {
                Some(n) => n,
                None => from.rsplit('/').next().unwrap_or("").to_string(),
            };
            let wheel = WheelName::parse(&file).map_err(|e| bad_input(format!("{at}: {e}")))?;
            let version = p.version.as_deref().unwrap_or(&wheel.version);
            if !same_release(&wheel, &p.name, version) {
                return Err(bad_input(format!(
                    "{at}: wheel {file} is not {} {version}; fix the package's name, version or wheels",
                    p.name
                )));
            }
            wheels.push(WheelRef {
                file,
                url: w.url,
                path: w.path.map(|p| dir.join(p)),
                sha256: w.hashes.get("sha256").cloned(),
            });
        }
        out.push(Package {
            version: p.version.unwrap_or_default(),
            name: p.name,
            marker: p.marker,
            wheels,
            sdist: p.sdist.is_some(),
            hashed: false,
        });
    }
    Ok(out)
}

fn requirements(
    path: &Path,
    text: &str,
    find_links: &BTreeMap<String, PathBuf>,
) -> Result<Vec<Package>> {
    let mut out = Vec::new();
    for (n, line) in &logical_lines(text) {
        let line = match line.find(" #") {
            Some(i) => &line[..i],
            None => line,
        }
        .trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("--") {
            continue;
        }
        let at = format!("{}: line {n}", path.display());
        let (spec, hashes) = match line.find("--hash") {
            Some(i) => (line[..i].trim(), &line[i..]),
            None => (line, ""),
        };
        let (req, marker) = match spec.split_once(';') {
            Some((r, m)) => (r.trim(), Some(m.trim().to_string())),
            None => (spec, None),
        };
        if let Some(m) = &marker {
            check_marker(m, &at)?;
        }
        let Some((name, version)) = req.split_once("==") else {
            return Err(bad_input(format!(
                "{at}: {req:?} is not pinned as name==version (lock it with `pip-compile --generate-hashes` or `uv pip compile --generate-hashes`)"
            )));
        };
        let name = name.split('[').next().unwrap_or(name).trim();
        let mut wheels = Vec::new();
        let mut count = 0;
        for h in hashes.split_whitespace() {
            let h = h.trim_start_matches("--hash=").trim_start_matches("--hash");
            let Some(hex) = h.strip_prefix("sha256:") else {
                continue;
            };
            count += 1;
            let hex = hex.to_ascii_lowercase();
            if let Some(file) = find_links.get(&hex) {
                let file_name = file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let wheel = WheelName::parse(&file_name).map_err(|e| {
                    bad_input(format!(
                        "{at}: the find_links wheel {} of --hash=sha256:{hex}: {e}; rename it to its wheel file name",
                        file.display()
                    ))
                })?;
                if !same_release(&wheel, name, version.trim()) {
                    return Err(bad_input(format!(
                        "{at}: --hash=sha256:{hex} is the find_links wheel {}, which is not {name} {}; fix the hash or the pin",
                        file.display(),
                        version.trim()
                    )));
                }
                wheels.push(WheelRef {
                    file: file_name,
                    url: None,
                    path: Some(file.clone()),
                    sha256: Some(hex.to_string()),
                });
            }
        }
        if count == 0 {
            return Err(bad_input(format!(
                "{at}: {name} has no --hash=sha256:...; every requirement must be pinned by hash"
            )));
        }
        out.push(Package {
            name: name.to_string(),
            version: version.trim().to_string(),
            marker,
            wheels,
            sdist: false,
            hashed: true,
        });
    }
    Ok(out)
}

/// The lines of a requirements file with their `\` continuations joined,
/// as pip reads them, each with the number of the line it starts on.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut continued = false;
    for (i, line) in text.lines().enumerate() {
        let part = line.strip_suffix('\\').unwrap_or(line);
        match out.last_mut() {
            Some((_, joined)) if continued => {
                joined.push(' ');
                joined.push_str(part);
            }
            _ => out.push((i + 1, part.to_string())),
        }
        continued = part.len() < line.len();
    }
    out
}

/// Why `pkg` has no wheel for `platform` (CPython `xy`), naming the wheels
/// there are of its name (`by_name`: find_links).
pub(crate) fn no_wheel(
    pkg: &Package,
    platform: &str,
    xy: &str,
    by_name: &BTreeMap<String, PathBuf>,
) -> String {
    let mut have: BTreeSet<&str> = pkg.wheels.iter().map(|w| w.file.as_str()).collect();
    have.extend(
        by_name.keys().map(String::as_str).filter(|f| {
            WheelName::parse(f).is_ok_and(|n| normalize(&n.name) == normalize(&pkg.name))
        }),
    );
    let have = if have.is_empty() {
        if pkg.sdist {
            "only a source distribution".to_string()
        } else {
            "none".to_string()
        }
    } else {
        have.into_iter().collect::<Vec<_>>().join(", ")
    };
    if pkg.hashed && pkg.wheels.is_empty() {
        return format!(
            "package {} {}: none of its --hash values is the sha256 of a wheel in find_links (wheels of that name there: {have}); a wheel that matches no hash is not installed: put the locked wheel there, or lock again",
            pkg.name, pkg.version
        );
    }
    format!(
        "package {} {} has no wheel for {platform} with CPython {xy} (wheels: {have}); build a wheel with `pip wheel` and put it in find_links",
        pkg.name, pkg.version
    )
}

/// Whether `wheel` is a file of `name` `version` (names compared as PEP 503
/// normalises them, versions as PEP 440 does).
pub(crate) fn same_release(wheel: &WheelName, name: &str, version: &str) -> bool {
    use pep508_rs::pep440_rs::Version;
    let same_version = match (wheel.version.parse::<Version>(), version.parse::<Version>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => wheel.version == version,
    };
    normalize(&wheel.name) == normalize(name) && same_version
}

/// The longest marker taken, in bytes.
const MAX_MARKER: usize = 4096;

/// The deepest nesting of parentheses in a marker taken (the marker parser
/// recurses into each).
const MAX_MARKER_DEPTH: usize = 32;

/// Refuse a marker too long or too deeply nested to parse safely; `at`
/// names where it is.
fn check_marker(marker: &str, at: &str) -> Result<()> {
    if marker.len() > MAX_MARKER {
        return Err(bad_input(format!(
            "{at}: marker is {} bytes long; a marker is at most {MAX_MARKER}",
            marker.len()
        )));
    }
    let mut depth = 0usize;
    for c in marker.bytes() {
        match c {
            b'(' => depth += 1,
            b')' => depth = depth.saturating_sub(1),
            _ => continue,
        }
        if depth > MAX_MARKER_DEPTH {
            return Err(bad_input(format!(
                "{at}: marker nests parentheses more than {MAX_MARKER_DEPTH} deep; write it flatter"
            )));
        }
    }
    Ok(())
}

/// The PEP 508 environment of CPython `full_version` on Linux `machine`.
pub fn environment(
    full_version: &str,
    python_version: &str,
    machine: &str,
) -> Result<MarkerEnvironment> {
    MarkerEnvironment::try_from(MarkerEnvironmentBuilder {
        implementation_name: "cpython",
        implementation_version: full_version,
        os_name: "posix",
        platform_machine: machine,
        platform_python_implementation: "CPython",
        platform_release: "",
        platform_system: "Linux",
        platform_version: "",
        python_full_version: full_version,
        python_version,
        sys_platform: "linux",
    })
    .map_err(|e| bad_input(format!("python version {full_version:?}: {e}")))
}

/// Whether `pkg` belongs on the platform of `env`.
pub fn applies(pkg: &Package, env: &MarkerEnvironment) -> Result<bool> {
    let Some(m) = &pkg.marker else {
        return Ok(true);
    };
    let tree = MarkerTree::from_str(m)
        .map_err(|e| bad_input(format!("package {}: marker {m:?}: {e}", pkg.name)))?;
    Ok(tree.evaluate(env, &[]))
}

/// The same name, normalised (for comparing a lock's names with wheels').
pub fn same_name(a: &str, b: &str) -> bool {
    normalize(a) == normalize(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pylock_packages_and_markers() {
        let text = r#"
lock-version = "1.0"
[[packages]]
name = "tomli"
version = "2.0.1"
marker = "python_version < '3.11'"
wheels = [{ name = "tomli-2.0.1-py3-none-any.whl", url = "https://x/tomli-2.0.1-py3-none-any.whl", hashes = { sha256 = "ab" } }]
[[packages]]
name = "pyyaml"
version = "6.0"
marker = "platform_machine == 'aarch64'"
sdist = { url = "https://x/PyYAML-6.0.tar.gz", hashes = { sha256 = "cd" } }
[[packages.wheels]]
path = "wheels/PyYAML-6.0-cp311-cp311-manylinux2014_aarch64.whl"
"#;
        let p = pylock(Path::new("/ctx/pylock.toml"), text).unwrap();
        assert_eq!(
            p[1].wheels[0].file,
            "PyYAML-6.0-cp311-cp311-manylinux2014_aarch64.whl"
        );
        assert_eq!(
            p[1].wheels[0].path.as_deref(),
            Some(Path::new(
                "/ctx/wheels/PyYAML-6.0-cp311-cp311-manylinux2014_aarch64.whl"
            ))
        );
        assert!(p[1].sdist);
        let amd = environment("3.11.0", "3.11", "x86_64").unwrap();
        let arm = environment("3.10.0", "3.10", "aarch64").unwrap();
        assert!(!applies(&p[0], &amd).unwrap() && applies(&p[0], &arm).unwrap());
        assert!(!applies(&p[1], &amd).unwrap() && applies(&p[1], &arm).unwrap());
    }

    #[test]
    fn requirements_need_pins_and_hashes() {
        let links: BTreeMap<String, PathBuf> =
            [("aa".to_string(), PathBuf::from("/w/a-1-py3-none-any.whl"))].into();
        let text = "# comment\na==1 \\\n    --hash=sha256:aa \\\n    --hash=sha256:bb\nb==2 ; python_version >= '3.8' --hash=sha256:cc\n";
        let p = requirements(Path::new("r.txt"), text, &links).unwrap();
        assert_eq!(p[0].wheels[0].file, "a-1-py3-none-any.whl");
        assert_eq!(p[1].marker.as_deref(), Some("python_version >= '3.8'"));
        assert!(p[1].wheels.is_empty());
        assert!(requirements(Path::new("r.txt"), "a>=1 --hash=sha256:aa\n", &links).is_err());
        assert!(requirements(Path::new("r.txt"), "a==1\n", &links).is_err());
    }

    /// Figure: `pip-compile --generate-hashes` continues every requirement
    /// over several lines; an error names the line its requirement starts
    /// on in the file, not its place among the joined lines.
    #[test]
    fn an_error_names_the_line_of_the_file() {
        let text = "a==1 \\\n    --hash=sha256:aa \\\n    --hash=sha256:bb\n    # via b\nb>=2 \\\r\n    --hash=sha256:cc\nc==3\n";
        let links = BTreeMap::new();
        let err = requirements(Path::new("r.txt"), text, &links).unwrap_err();
        assert!(
            err.to_string().starts_with("r.txt: line 5: \"b>=2\""),
            "{err}"
        );
        let text = text.replace(">=", "==");
        let err = requirements(Path::new("r.txt"), &text, &links).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("r.txt: line 7: c has no --hash"),
            "{err}"
        );
    }

    #[test]
    fn wheel_names_that_are_no_wheel_name_are_refused_naming_the_lock() {
        let lock = |name: &str| {
            format!(
                "lock-version = \"1.0\"\n[[packages]]\nname = \"demo\"\nversion = \"1.0\"\nwheels = [{{ name = \"{name}\", path = \"wheels/demo-1.0-py3-none-any.whl\" }}]\n"
            )
        };
        let err = pylock(
            Path::new("/ctx/pylock.toml"),
            &lock("../../../../etc-1.0-py3-none-any.whl"),
        )
        .unwrap_err();
        assert!(crate::error::is_bad_input(&err));
        let said = err.to_string();
        assert!(
            said.starts_with("lock /ctx/pylock.toml: package demo: \"../")
                && said.contains("\"../../../../etc\" is not a wheel name"),
            "{said}"
        );
        assert!(pylock(Path::new("l.toml"), &lock("demo-1.0-py3-none-any.whl")).is_ok());
        // A wheel of another package or version is not this package's:
        // it would be installed, and reported, under this name.
        for other in ["other-1.0-py3-none-any.whl", "demo-2.0-py3-none-any.whl"] {
            let err = pylock(Path::new("l.toml"), &lock(other)).unwrap_err();
            assert!(crate::error::is_bad_input(&err));
            let said = err.to_string();
            assert!(
                said.contains(&format!("wheel {other} is not demo 1.0")),
                "{said}"
            );
        }
        for same in [
            "Demo-1.0.0-py3-none-any.whl",
            "demo-1.0-py2.py3-none-any.whl",
        ] {
            assert!(pylock(Path::new("l.toml"), &lock(same)).is_ok(), "{same}");
        }

        let links: BTreeMap<String, PathBuf> = [(
            "aa".to_string(),
            PathBuf::from("/w/..-1.0-py3-none-any.whl"),
        )]
        .into();
        let err =
            requirements(Path::new("r.txt"), "demo==1.0 --hash=sha256:aa\n", &links).unwrap_err();
        assert!(crate::error::is_bad_input(&err));
        let said = err.to_string();
        assert!(
            said.starts_with("r.txt: line 1: the find_links wheel /w/..-1.0-py3-none-any.whl")
                && said.contains("\"..\" is not a wheel name"),
            "{said}"
        );
    }

    #[test]
    fn markers_nested_too_deep_or_too_long_are_refused_before_parsing() {
        let deep = format!("{}python_version > '3'{}", "(".repeat(40), ")".repeat(40));
        let text =
            format!("[[packages]]\nname = \"demo\"\nversion = \"1.0\"\nmarker = \"{deep}\"\n");
        let err = pylock(Path::new("p.toml"), &text).unwrap_err().to_string();
        assert!(
            err.starts_with("lock p.toml: package demo: marker nests parentheses"),
            "{err}"
        );
        let text = format!("demo==1.0 ; {deep} --hash=sha256:aa\n");
        let err = requirements(Path::new("r.txt"), &text, &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("r.txt: line 1: marker nests"), "{err}");
        let long = vec!["python_version > '3'"; 300].join(" and ");
        let text = format!("demo==1.0 ; {long} --hash=sha256:aa\n");
        let err = requirements(Path::new("r.txt"), &text, &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("at most 4096"), "{err}");
        // Nesting within the limit still parses and evaluates.
        let ok = format!("{}python_version > '3'{}", "(".repeat(30), ")".repeat(30));
        let p = requirements(
            Path::new("r.txt"),
            &format!("demo==1.0 ; {ok} --hash=sha256:aa\n"),
            &BTreeMap::new(),
        )
        .unwrap();
        let env = environment("3.11.0", "3.11", "x86_64").unwrap();
        assert!(applies(&p[0], &env).unwrap());
    }
}

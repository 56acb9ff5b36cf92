//! `python = { lock = "...", version = "3.11" }`: the packages of a lock
//! file, each from its best wheel for the platform, installed under `dest`
//! (the prefix) as `pip install --no-deps` would. Wheels come from
//! `find_links` (by file name, or by hash for `requirements.txt`), the
//! lock's local paths, or its URLs (pinned by sha256, cached). Markers and
//! wheel tags are evaluated per platform, so one recipe serves amd64 and
//! arm64. Files keep the wheel's modes (the recipe's owner applies); the
//! directories below site-packages are 0755 unless `dir_mode` is given.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Result;

use super::{err_at, Effective, EntryCx, EntrySource, PlanEnv, Stream};
use crate::progress::Level;
use crate::python::fetch;
use crate::python::install::{self, Content, Installed, Scheme};
use crate::python::lock::{self, Package, WheelRef};
use crate::python::tags::{machine_of, normalize, Libc, Target, WheelName};
use crate::recipe::entry::{cmp_paths, EntryKind, Producer};
use crate::recipe::schema::{PythonSection, Str};
use crate::recipe::Source;
use crate::supply::sbom::Component;

/// The packages of one `python` entry or `[layer.python]`, planned for one
/// platform.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Packages {
    wheels: Vec<Installed>,
    /// What each wheel is, in the order of `wheels`.
    dists: Vec<Dist>,
    site_packages: String,
    attrs: Effective,
}

/// An installed distribution, as the SBOM and the layer names tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Dist {
    name: String,
    version: String,
    /// The wheel's sha256 (lowercase hex).
    sha256: String,
    url: Option<String>,
    /// The wheel's size in bytes.
    size: u64,
}

/// Where a request is planned: the recipe, the place it is asked for, the
/// prefix (an image path without its leading `/`) and the owners.
pub(crate) struct Place<'a> {
    pub recipe: &'a Source,
    pub context: &'a Path,
    /// The table that asks for the packages.
    pub span: Range<usize>,
    pub prefix: String,
    pub attrs: Effective,
    pub expand: &'a dyn Fn(&Str) -> Result<String>,
    pub env: &'a PlanEnv,
}

pub(super) fn resolve(cx: &EntryCx) -> Result<EntrySource> {
    let Some(spanned) = &cx.section.python else {
        unreachable!("resolved only when `python` is set")
    };
    let py = spanned.get_ref();
    if let Some(split) = &py.split {
        let word = (cx.expand)(split)?;
        if word != "one" {
            return Err(cx.recipe.err(split.span(), format!(
                "split = {word:?}: an entry's packages all go into its layer; for one layer per package use a [layer.python] table"
            )));
        }
    }
    let refused = |span: Range<usize>, key: &str, why: &str| {
        Err(cx.recipe.err(
            span,
            format!(
                "{key} does not go in an entry's python: {why}; use a [layer.python] table for it"
            ),
        ))
    };
    if let Some(p) = &py.prefix {
        return refused(p.span(), "prefix", "its packages go under the entry's dest");
    }
    if let Some(m) = &py.max_layers {
        return refused(
            m.span(),
            "max_layers",
            "its packages all go into the entry's layer",
        );
    }
    let place = Place {
        recipe: cx.recipe,
        context: cx.context,
        span: spanned.span(),
        prefix: String::from_utf8_lossy(&cx.dest.path).into_owned(),
        attrs: cx.attrs.clone(),
        expand: cx.expand,
        env: cx.env,
    };
    Ok(EntrySource::Python(packages(py, &place)?))
}

/// The packages `py` asks for, each from its best wheel for the platform.
pub(crate) fn packages(py: &PythonSection, cx: &Place) -> Result<Packages> {
    let at = &cx.recipe.at(cx.span.clone());
    let var =
        |name: &str| (cx.expand)(&toml::Spanned::new(cx.span.clone(), format!("${{{name}}}")));
    let (arch, variant) = (var("ARCH")?, var("VARIANT")?);
    let version = match (&py.version, &cx.env.base_python) {
        (Some(v), _) => (cx.expand)(v)?,
        (None, Some(v)) => v.clone(),
        (None, None) => {
            return Err(err_at(
                at,
                "no Python version: set version = \"3.11\" (the image's Python, X.Y), or build on a base image whose config sets PYTHON_VERSION",
            ))
        }
    };
    let minor = parse_pair(&version, "version", at)?;
    let machine = machine_of(&arch, &variant).ok_or_else(|| {
        err_at(
            at,
            format!("no Python wheels exist for architecture {arch:?}"),
        )
    })?;
    let libc = match (&py.musl, &py.glibc) {
        (Some(m), None) => {
            let (a, b) = parse_pair(&(cx.expand)(m)?, "musl", at)?;
            Libc::Musl(a, b)
        }
        (None, g) => {
            let g = g
                .as_ref()
                .map(cx.expand)
                .transpose()?
                .unwrap_or("2.36".into());
            let (a, b) = parse_pair(&g, "glibc", at)?;
            Libc::Glibc(a, b)
        }
        (Some(_), Some(_)) => return Err(err_at(at, "set `glibc` or `musl`, not both")),
    };
    let target = Target {
        python: minor,
        machine: machine.to_string(),
        libc,
    };
    let xy = format!("{}.{}", minor.0, minor.1);
    let full = if version.matches('.').count() >= 2 {
        version.clone()
    } else {
        format!("{xy}.0")
    };
    let prefix = cx.prefix.clone();
    let join = |rel: &str| {
        if prefix.is_empty() {
            rel.to_string()
        } else {
            format!("{prefix}/{rel}")
        }
    };
    let image_path = |s: &Str| -> Result<String> {
        let text = (cx.expand)(s)?;
        super::Dest::parse(text)
            .map(|d| String::from_utf8_lossy(&d.path).into_owned())
            .map_err(|m| cx.recipe.err(s.span(), m))
    };
    let scheme = Scheme {
        site_packages: match &py.site_packages {
            Some(s) => image_path(s)?,
            None => join(&format!("lib/python{xy}/site-packages")),
        },
        scripts: join("bin"),
        include: join(&format!("include/python{xy}")),
        data: prefix.clone(),
        interpreter: match &py.interpreter {
            Some(s) => interpreter(cx, s)?,
            None => format!("/{}", join(&format!("bin/python{xy}"))),
        },
    };

    let in_context = |s: &Str| -> Result<PathBuf> {
        let rel = (cx.expand)(s)?;
        inside(cx.context, &cx.context.join(&rel))
            .map_err(|why| cx.recipe.err(s.span(), format!("{rel:?} {why}")))
    };
    let lock_path = in_context(&py.lock)?;
    let mut by_name: BTreeMap<String, PathBuf> = BTreeMap::new();
    for dir in &py.find_links {
        let dir = in_context(dir)?;
        for e in
            std::fs::read_dir(&dir).map_err(|e| err_at(at, format!("{}: {e}", dir.display())))?
        {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".whl") {
                by_name.entry(name).or_insert(e.path());
            }
        }
    }
    let by_dist = by_dist(&by_name);
    let mut by_hash = BTreeMap::new();
    if !lock_path.to_string_lossy().ends_with(".toml") {
        for path in by_name.values() {
            // Every wheel is hashed to find those the lock names: none may
            // be read from outside the context, not even to be passed over.
            let real = inside(cx.context, path).map_err(|why| {
                err_at(
                    at,
                    format!("find_links wheel {} {why} (nothing outside the context is read); move it into the context, or remove it", path.display()),
                )
            })?;
            let hash = fetch::hash_file(&real)
                .map_err(|e| err_at(at, format!("find_links wheel {}: {e:#}", path.display())))?;
            by_hash.insert(hash.hex().to_string(), path.clone());
        }
    }
    let packages = lock::read(&lock_path, &by_hash).map_err(|e| err_at(at, e))?;
    let env = lock::environment(&full, &xy, machine).map_err(|e| err_at(at, e))?;
    let platform = format!(
        "linux/{arch}{}",
        if variant.is_empty() {
            String::new()
        } else {
            format!("/{variant}")
        }
    );
    let mut wheels = Vec::new();
    let mut dists = Vec::new();
    let mut applying: BTreeMap<String, &str> = BTreeMap::new();
    for pkg in &packages {
        if !lock::applies(pkg, &env).map_err(|e| err_at(at, e))? {
            continue;
        }
        if let Some(first) = applying.insert(normalize(&pkg.name), &pkg.version) {
            return Err(err_at(
                at,
                format!(
                    "lock {}: package {} is listed twice for {platform} (versions {first} and {}); keep one, or give each a marker that selects a different environment",
                    lock_path.display(),
                    pkg.name,
                    pkg.version
                ),
            ));
        }
        let (wheel, name) = choose(pkg, &by_name, &by_dist, &target)
            .ok_or_else(|| err_at(at, lock::no_wheel(pkg, &platform, &xy, &by_name)))?;
        let (file, sha256) = obtain(cx.env, cx.context, &lock_path, &wheel, at)?;
        let dist = name.name.replace('_', "-");
        wheels.push(install::plan(&file, &dist, &scheme).map_err(|e| err_at(at, e))?);
        dists.push(Dist {
            name: pkg.name.clone(),
            version: pkg.version.clone(),
            sha256,
            url: wheel
                .url
                .as_deref()
                .map(|u| fetch::without_credentials(u).into_owned()),
            size: std::fs::metadata(&file)?.len(),
        });
    }
    let overlaps = overlap::settle(&mut wheels, &dists)
        .map_err(|refused| err_at(at, refused.message(&dists, &platform)))?;
    for o in overlaps {
        let msg = format!("{at}: {}", o.message(&dists, &platform));
        cx.env.reporter.log(Level::Warn, &msg);
    }
    Ok(Packages {
        wheels,
        dists,
        site_packages: scheme.site_packages,
        attrs: cx.attrs.clone(),
    })
}

/// The `#!` line of scripts names it: the kernel runs an absolute path,
/// and cuts the line at the first blank.
fn interpreter(cx: &Place, s: &Str) -> Result<String> {
    let path = (cx.expand)(s)?;
    if !path.starts_with('/') || path.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(cx.recipe.err(
            s.span(),
            format!("interpreter {path:?} must be an absolute path without blanks or control characters, e.g. \"/usr/local/bin/python3.11\": scripts start with #! and it"),
        ));
    }
    Ok(path)
}

/// `X.Y` (or `X.Y.Z`) as (X, Y).
fn parse_pair(text: &str, what: &str, at: &str) -> Result<(u32, u32)> {
    let mut it = text.split('.').map(str::parse::<u32>);
    match (it.next(), it.next()) {
        (Some(Ok(a)), Some(Ok(b))) => Ok((a, b)),
        _ => Err(err_at(at, format!("{what} {text:?} is not X.Y"))),
    }
}

/// The find_links wheels by normalised name and version, each file name
/// parsed once, in file name order: a lock of thousands of packages is
/// matched without reading every wheel name for every package.
type ByDist<'a> = BTreeMap<(String, String), Vec<&'a String>>;

fn by_dist(by_name: &BTreeMap<String, PathBuf>) -> ByDist<'_> {
    let mut by_dist = ByDist::new();
    for file in by_name.keys() {
        if let Ok(n) = WheelName::parse(file) {
            let key = (normalize(&n.name), n.version);
            by_dist.entry(key).or_default().push(file);
        }
    }
    by_dist
}

/// The best wheel of `pkg` for `target`: the lock's (a find_links file of
/// the same name first), then find_links wheels of the same name and version.
fn choose(
    pkg: &Package,
    by_name: &BTreeMap<String, PathBuf>,
    by_dist: &ByDist,
    target: &Target,
) -> Option<(WheelRef, WheelName)> {
    let mut candidates: Vec<WheelRef> = pkg
        .wheels
        .iter()
        .map(|w| match by_name.get(&w.file) {
            Some(local) => WheelRef {
                path: Some(local.clone()),
                url: None,
                ..w.clone()
            },
            None => w.clone(),
        })
        .collect();
    let key = (normalize(&pkg.name), pkg.version.clone());
    let same = by_dist.get(&key).filter(|_| !pkg.hashed);
    for file in same.into_iter().flatten() {
        if !candidates.iter().any(|c| &c.file == *file) {
            candidates.push(WheelRef {
                file: (*file).clone(),
                url: None,
                path: Some(by_name[*file].clone()),
                sha256: None,
            });
        }
    }
    candidates
        .into_iter()
        .filter_map(|w| {
            let n = WheelName::parse(&w.file).ok()?;
            Some((n.rank(target)?, w, n))
        })
        .min_by_key(|(rank, _, _)| *rank)
        .map(|(_, w, n)| (w, n))
}

/// `path` resolved, if it is inside the build context `context`; else why not.
fn inside(context: &Path, path: &Path) -> Result<PathBuf, String> {
    let p = path
        .canonicalize()
        .map_err(|e| format!("cannot be read: {e}"))?;
    if !p.starts_with(context) {
        return Err("is outside the build context".to_string());
    }
    Ok(p)
}

/// The wheel's file on this machine (local, or downloaded pinned into the
/// cache) and its sha256. A local one (a path of the lock `lock`, or a
/// find_links file) must be inside the build context `context`.
fn obtain(
    env: &PlanEnv,
    context: &Path,
    lock: &Path,
    w: &WheelRef,
    at: &str,
) -> Result<(PathBuf, String)> {
    if let Some(path) = &w.path {
        let path = &inside(context, path).map_err(|why| {
            err_at(
                at,
                format!(
                    "lock {}: wheel {} {why} (a wheel's path is relative to the lock; nothing outside the context is read)",
                    lock.display(),
                    path.display()
                ),
            )
        })?;
        let got = fetch::hash_file(path).map_err(|e| err_at(at, e))?;
        if let Some(want) = &w.sha256 {
            if !got.hex().eq_ignore_ascii_case(want) {
                return Err(err_at(
                    at,
                    format!(
                        "{}: sha256 is {} but the lock pins {want}",
                        path.display(),
                        got.hex()
                    ),
                ));
            }
        }
        return Ok((path.clone(), got.hex().to_string()));
    }
    let Some(sent) = &w.url else {
        return Err(err_at(
            at,
            format!("wheel {} has neither url nor path", w.file),
        ));
    };
    let url = fetch::without_credentials(sent);
    let Some(hex) = &w.sha256 else {
        return Err(err_at(
            at,
            format!("wheel {url} has no sha256 in the lock: downloads must be pinned"),
        ));
    };
    let want = fetch::parse_sha256(hex, at)?;
    let file = fetch::fetch(env.cache()?, sent, &want, &*env.reporter)?;
    Ok((file, want.hex().to_string()))
}

impl Packages {
    /// The packages in layers of their own, by name: one per package, or
    /// with `max_layers` at most that many, the smallest packages (by wheel
    /// size, then name) sharing one. Each comes with its label,
    /// `name==version[, ...]`.
    pub(crate) fn split(self, max_layers: Option<usize>) -> Vec<(String, Packages)> {
        let n = self.wheels.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| {
            let (x, y) = (&self.dists[a], &self.dists[b]);
            (x.size, &x.name).cmp(&(y.size, &y.name))
        });
        let shared = match max_layers {
            Some(max) if n > max => n - max.max(1) + 1,
            _ => 0,
        };
        // Group of each package: the smallest share group 0.
        let mut groups: Vec<Vec<usize>> = Vec::new();
        if shared > 1 {
            let mut g = order[..shared].to_vec();
            g.sort_by(|&a, &b| self.dists[a].name.cmp(&self.dists[b].name));
            groups.push(g);
            groups.extend(order[shared..].iter().map(|&i| vec![i]));
        } else {
            groups.extend(order.iter().map(|&i| vec![i]));
        }
        groups.sort_by(|a, b| self.dists[a[0]].name.cmp(&self.dists[b[0]].name));
        let mut slots: Vec<Option<(Installed, Dist)>> =
            self.wheels.into_iter().zip(self.dists).map(Some).collect();
        groups
            .into_iter()
            .map(|g| {
                let (wheels, dists): (Vec<_>, Vec<_>) =
                    g.iter().filter_map(|&i| slots[i].take()).unzip();
                let p = Packages {
                    wheels,
                    dists,
                    site_packages: self.site_packages.clone(),
                    attrs: self.attrs.clone(),
                };
                (p.label(), p)
            })
            .collect()
    }

    /// `name==version`, comma-separated.
    pub(crate) fn label(&self) -> String {
        let names: Vec<String> = self
            .dists
            .iter()
            .map(|d| format!("{}=={}", d.name, d.version))
            .collect();
        names.join(", ")
    }

    /// The packages as SBOM components (`pkg:pypi/NAME@VERSION`).
    pub(crate) fn components(&self) -> Vec<Component> {
        self.dists
            .iter()
            .map(|d| Component::python(&d.name, &d.version, Some(&d.sha256), d.url.as_deref()))
            .collect()
    }

    /// Whether no package applies to this platform.
    pub(crate) fn is_empty(&self) -> bool {
        self.wheels.is_empty()
    }

    /// The files of every wheel and the directories below site-packages,
    /// in tar order. Members stand as [`EntryKind::Hashed`] by the size and
    /// sha256 taken when the install was planned (what a layer's cache key
    /// needs, without decompressing anything), and are decompressed only
    /// into the layer as it is written.
    pub(super) fn entries(&self) -> Stream<'_> {
        let below = format!("{}/", self.site_packages);
        let mut dirs = BTreeSet::new();
        let mut items: Vec<(&str, Option<(usize, usize)>)> = Vec::new();
        for (w, inst) in self.wheels.iter().enumerate() {
            for (f, file) in inst.files.iter().enumerate() {
                items.push((file.path.as_str(), Some((w, f))));
                if let Some(rel) = file.path.strip_prefix(&below) {
                    for (i, _) in rel.match_indices('/') {
                        dirs.insert(&file.path[..below.len() + i]);
                    }
                }
            }
        }
        items.extend(dirs.into_iter().map(|d| (d, None)));
        items.sort_by(|a, b| cmp_paths(a.0.as_bytes(), b.0.as_bytes()));
        let zips: Vec<Arc<Mutex<Option<install::Zip>>>> =
            self.wheels.iter().map(|_| Arc::default()).collect();
        Box::new(items.into_iter().map(move |(path, what)| {
            let a = &self.attrs;
            let Some((w, f)) = what else {
                return Ok((
                    a.entry(
                        path.as_bytes().to_vec(),
                        EntryKind::Dir,
                        a.dir_mode.unwrap_or(0o755),
                    ),
                    None,
                ));
            };
            let inst = &self.wheels[w];
            let file = &inst.files[f];
            let kind = match &file.content {
                Content::Bytes(b) => EntryKind::Inline(b.clone()),
                Content::Member { size, sha256, .. } => {
                    // The wheel is opened when the first of its members is
                    // written, and stays open for the others.
                    let (zip, wheel, file) = (zips[w].clone(), inst.wheel.clone(), file.clone());
                    EntryKind::Hashed {
                        size: *size,
                        sha256: *sha256,
                        produce: Producer(Arc::new(move |out: &mut dyn Write| {
                            let mut slot = zip.lock().expect("no panics under the lock");
                            let zip = match &mut *slot {
                                Some(z) => z,
                                slot => slot.insert(install::open(&wheel)?),
                            };
                            install::write(&wheel, zip, &file, out)
                        })),
                    }
                }
            };
            Ok((a.entry(path.as_bytes().to_vec(), kind, file.mode), None))
        }))
    }
}

mod overlap;

#[cfg(test)]
mod tests;

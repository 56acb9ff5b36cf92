//! Two packages of a lock that install the same path (opencv-python and
//! opencv-python-headless both ship `cv2/...`; two wheels ship one script).
//! pip lets the package installed later overwrite the other's file, and so
//! does uv, with a warning. Here the package later by name wins, as if the
//! packages were installed in name order (the order of their layers with
//! `split = "package"`), and the other's file is left out of its install:
//! one layer or a layer per package, the image holds the same files. Files
//! that are the same (bytes and mode) stay in both installs, silently: a
//! layer keeps one of them, and a layer per package keeps its digest
//! whatever another package ships. Each package keeps its own `RECORD`,
//! as pip leaves it.
//!
//! A file of one package at a path another needs to be a directory (for a
//! file of its own deeper down) cannot be settled so: pip fails on it,
//! unable to make the directory, and layers would leave the image to
//! their order. It stops the plan. (One package that does so itself is
//! refused when its install is planned.)

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use super::Dist;
use crate::python::install::{Content, Installed, InstalledFile};

/// The paths package `loser` (an index into the packages) installs
/// otherwise than package `winner`, whose files are kept.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Overlap {
    pub loser: usize,
    pub winner: usize,
    /// Image paths, without the leading `/`, sorted.
    pub paths: Vec<String>,
}

impl Overlap {
    /// The warning for it: both packages, the first path and how many more.
    pub fn message(&self, dists: &[Dist], platform: &str) -> String {
        let label = |i: usize| format!("{}=={}", dists[i].name, dists[i].version);
        let (loser, winner) = (label(self.loser), label(self.winner));
        let more = match self.paths.len() - 1 {
            0 => String::new(),
            1 => " and 1 other path".to_string(),
            n => format!(" and {n} other paths"),
        };
        format!(
            "packages {loser} and {winner} install different files at /{}{more} for {platform}; {winner}'s files are kept (the later by name is installed last, over the other, as pip would): if the two are alternatives, keep one of them in the lock",
            self.paths[0]
        )
    }
}

/// Package `file` installs a file at `path`, and package `dir` one below
/// it, at `deeper` (image paths without the leading `/`).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct FileAtDir {
    pub file: usize,
    pub path: String,
    pub dir: usize,
    pub deeper: String,
}

impl FileAtDir {
    /// The error for it: both packages, both paths, and what to do.
    pub fn message(&self, dists: &[Dist], platform: &str) -> String {
        let label = |i: usize| format!("{}=={}", dists[i].name, dists[i].version);
        let (file, dir) = (label(self.file), label(self.dir));
        format!(
            "package {file} installs a file at /{} for {platform}, where package {dir} needs a directory (for /{}); the two cannot be installed together (pip fails on it too): keep one of them in the lock, or give one a marker that leaves it out on this platform",
            self.path, self.deeper
        )
    }
}

/// Leave out of `wheels` (installs of `dists`, in the same order) every file
/// another package later by name installs at the same path otherwise, and
/// tell which, once per pair of packages. A file where another package
/// needs a directory is refused, whatever the order of the lock: of
/// several, the one below which the first path by name lies.
pub(super) fn settle(wheels: &mut [Installed], dists: &[Dist]) -> Result<Vec<Overlap>, FileAtDir> {
    let mut at: Vec<(&str, usize, usize)> = wheels
        .iter()
        .enumerate()
        .flat_map(|(w, inst)| {
            inst.files
                .iter()
                .enumerate()
                .map(move |(f, file)| (file.path.as_str(), w, f))
        })
        .collect();
    at.sort_unstable();
    if let Some(refused) = file_at_dir(&at, dists) {
        return Err(refused);
    }
    let mut left_out = BTreeSet::new();
    let mut pairs: BTreeMap<(usize, usize), Vec<String>> = BTreeMap::new();
    for run in at.chunk_by(|a, b| a.0 == b.0).filter(|run| run.len() > 1) {
        let Some(&(_, w, f)) = run
            .iter()
            .max_by(|a, b| dists[a.1].name.cmp(&dists[b.1].name))
        else {
            continue;
        };
        let kept = &wheels[w].files[f];
        for &(path, lw, lf) in run {
            if lw != w && !same(kept, &wheels[lw].files[lf]) {
                left_out.insert((lw, lf));
                pairs.entry((lw, w)).or_default().push(path.to_string());
            }
        }
    }
    for (w, inst) in wheels.iter_mut().enumerate() {
        let mut f = 0;
        inst.files.retain(|_| {
            f += 1;
            !left_out.contains(&(w, f - 1))
        });
    }
    Ok(pairs
        .into_iter()
        .map(|((loser, winner), paths)| Overlap {
            loser,
            winner,
            paths,
        })
        .collect())
}

/// A file (of `at`: path, package, file, sorted) at a path another package
/// needs to be a directory: the one below which the first path by name
/// lies, ties by the packages' names, so that the lock's order does not
/// matter.
fn file_at_dir(at: &[(&str, usize, usize)], dists: &[Dist]) -> Option<FileAtDir> {
    let name = |i: usize| dists[i].name.as_str();
    at.iter()
        .flat_map(|&(deeper, dir, _)| {
            deeper.match_indices('/').flat_map(move |(k, _)| {
                let path = &deeper[..k];
                let start = at.partition_point(|e| e.0 < path);
                at[start..]
                    .iter()
                    .take_while(move |e| e.0 == path)
                    .filter(move |e| e.1 != dir)
                    .map(move |e| (deeper, path, e.1, dir))
            })
        })
        .min_by_key(|&(deeper, _, file, dir)| (deeper, name(file), name(dir)))
        .map(|(deeper, path, file, dir)| FileAtDir {
            file,
            path: path.to_string(),
            dir,
            deeper: deeper.to_string(),
        })
}

/// Whether two files have the same bytes and mode.
fn same(a: &InstalledFile, b: &InstalledFile) -> bool {
    a.mode == b.mode && size_and_sha256(&a.content) == size_and_sha256(&b.content)
}

fn size_and_sha256(c: &Content) -> (u64, [u8; 32]) {
    match c {
        Content::Member { size, sha256, .. } => (*size, *sha256),
        Content::Bytes(b) => (b.len() as u64, Sha256::digest(b).into()),
    }
}

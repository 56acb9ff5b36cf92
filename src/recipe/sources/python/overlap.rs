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

/// Leave out of `wheels` (installs of `dists`, in the same order) every file
/// another package later by name installs at the same path otherwise, and
/// tell which, once per pair of packages.
pub(super) fn settle(wheels: &mut [Installed], dists: &[Dist]) -> Vec<Overlap> {
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
    pairs
        .into_iter()
        .map(|((loser, winner), paths)| Overlap {
            loser,
            winner,
            paths,
        })
        .collect()
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

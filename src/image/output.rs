//! Where a build writes: the output, and the temporary files and
//! directories beside it that make each write atomic (a layout's
//! `.NAME.tmp-*` and `.NAME.old-*`, an archive's and a push stage's
//! `.boxwright-*`). A build context may hold its own output (`src = "."`
//! with the default `./out`); [`OutputPlace`] lets the planner leave all of
//! it out, so that a build never copies what it, or the build before it,
//! wrote.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::error::bad_input;

/// The prefix of temporary names that are not tied to the output's name.
pub const TEMP_PREFIX: &str = ".boxwright-";

/// The prefix of the temporary directory a layout named `name` is written in.
pub fn layout_temp_prefix(name: &str) -> String {
    format!(".{name}.tmp-")
}

/// The name the old layout `name` is moved to while the new one takes its place.
pub fn layout_old_name(name: &str) -> String {
    format!(".{name}.old-{}", std::process::id())
}

/// The directory an output at `dest` is written in (`.` for a bare file
/// name), created when missing: temporary files and directories go there,
/// so that the output is moved into place by a rename.
pub fn output_parent(dest: &Path) -> Result<PathBuf> {
    let parent = parent_of(dest);
    check_parent(dest)?;
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("creating output directory {}", parent.display()))?;
    Ok(parent)
}

fn parent_of(dest: &Path) -> PathBuf {
    match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Refuse (bad input), creating nothing, an output at `dest` whose
/// directory cannot be made because something that is not a directory
/// (a file, a FIFO) stands on the way to it: `-o notes.txt/out`.
pub fn check_parent(dest: &Path) -> Result<()> {
    let parent = parent_of(dest);
    for dir in parent.ancestors().filter(|a| !a.as_os_str().is_empty()) {
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => return Ok(()),
            Ok(_) => {
                return Err(bad_input(format!(
                    "{}: is not a directory, so {} cannot be written in it; choose another output with -o",
                    dir.display(),
                    dest.display()
                )))
            }
            Err(_) => {}
        }
    }
    Ok(())
}

/// An output as an absolute path: the directory it goes in and its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputPlace {
    dir: PathBuf,
    name: Vec<u8>,
}

impl OutputPlace {
    /// The place of `dest`, which need not exist yet: what exists of it is
    /// resolved (symbolic links, `..`) as the kernel would, the rest
    /// appended as written. `None` when `dest` names no file (`/`, `..` at the top).
    pub fn new(dest: &Path) -> Option<OutputPlace> {
        let mut full = PathBuf::from("/");
        for c in std::path::absolute(dest).ok()?.components() {
            match c {
                Component::ParentDir => {
                    full.pop();
                }
                Component::Normal(n) => {
                    full.push(n);
                    // A link resolved where it stands, so that a `..`
                    // after it goes where the kernel would go.
                    if let Ok(real) = full.canonicalize() {
                        full = real;
                    }
                }
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            }
        }
        Some(OutputPlace {
            name: full.file_name()?.as_bytes().to_vec(),
            dir: full.parent()?.to_path_buf(),
        })
    }

    /// Whether `name` in the directory `dir` is the output or one of the
    /// temporary names written beside it.
    pub fn holds(&self, dir: &Path, name: &OsStr) -> bool {
        if dir != self.dir {
            return false;
        }
        let name = name.as_bytes();
        let own = String::from_utf8_lossy(&self.name);
        name == self.name.as_slice()
            || name.starts_with(TEMP_PREFIX.as_bytes())
            || name.starts_with(layout_temp_prefix(&own).as_bytes())
            || name.starts_with(format!(".{own}.old-").as_bytes())
    }

    /// Whether the directory `path` is the output's directory or one of
    /// its ancestors, and holds nothing but the output, its temporaries and
    /// the directories on the way to it: such a directory is there only
    /// because a build made it (`out/` when `./out/NAME` is written), so a
    /// copy of the tree leaves it out and is the same before the first
    /// build and after it. The check reads one directory per level.
    pub fn only_output_in(&self, path: &Path) -> bool {
        if !self.dir.starts_with(path) {
            return false;
        }
        let Ok(names) = std::fs::read_dir(path) else {
            return false;
        };
        names.into_iter().all(|n| {
            let Ok(n) = n else { return false };
            let (name, child) = (n.file_name(), n.path());
            self.holds(path, &name)
                || (n.file_type().is_ok_and(|t| t.is_dir()) && self.only_output_in(&child))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_under_a_file_is_bad_input_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("notes.txt");
        std::fs::write(&file, "x").unwrap();
        let e = output_parent(&file.join("a/b/out")).unwrap_err();
        assert!(crate::error::is_bad_input(&e), "{e:#}");
        assert!(
            format!("{e:#}").contains("notes.txt: is not a directory"),
            "{e:#}"
        );
        assert_eq!(std::fs::read(&file).unwrap(), b"x");
        let made = dir.path().join("new/out");
        assert_eq!(output_parent(&made).unwrap(), dir.path().join("new"));
    }

    #[test]
    fn the_output_and_its_temporaries_are_held_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().canonicalize().unwrap();
        std::fs::create_dir(top.join("ctx")).unwrap();
        std::os::unix::fs::symlink("ctx", top.join("link")).unwrap();
        // Not there yet, reached through a link and `..`.
        let place = OutputPlace::new(&top.join("link/x/../out/r2d")).unwrap();
        let out = top.join("ctx/out");
        for held in ["r2d", ".r2d.tmp-abc", ".r2d.old-12", ".boxwright-push-x"] {
            assert!(place.holds(&out, OsStr::new(held)), "{held}");
        }
        for other in ["r2d2", ".r2d", "r2d.tar", ".other.tmp-x", "src"] {
            assert!(!place.holds(&out, OsStr::new(other)), "{other}");
        }
        assert!(!place.holds(&top.join("ctx"), OsStr::new("r2d")));
        assert_eq!(OutputPlace::new(Path::new("/")), None);

        // out/ holds the output and a temporary: it is left out; once it
        // holds something else, it is kept.
        let ctx = top.join("ctx");
        std::fs::create_dir_all(out.join("r2d/blobs")).unwrap();
        std::fs::create_dir(out.join(".r2d.tmp-1")).unwrap();
        assert!(place.only_output_in(&out));
        assert!(place.only_output_in(&ctx));
        assert!(!place.only_output_in(&top), "it holds the link too");
        assert!(!place.only_output_in(&out.join("r2d")), "not on the way");
        std::fs::write(out.join("notes"), "x").unwrap();
        assert!(!place.only_output_in(&out) && !place.only_output_in(&ctx));
    }
}

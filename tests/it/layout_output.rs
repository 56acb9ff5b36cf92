//! Where a build writes its layout: temporary directories left by builds
//! killed with `kill -9` are removed by the next build of the same output
//! (those whose lock nobody holds, and only those), `-o .` in an empty
//! directory works, and a full disk is reported with the path being written.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{assert_code, assert_ok, boxwright, run, write};
use crate::support::tempdir;

const SMALL: &str =
    "[image]\nname = \"t\"\n\n[[layer]]\n[[layer.entry]]\ncontent = \"x\"\ndest = \"/x\"\n";

fn temp_dirs(dir: &Path, output: &str) -> Vec<PathBuf> {
    let prefix = format!(".{output}.tmp-");
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

/// Figure: a build killed with `kill -9` while writing leaves
/// `.out.tmp-*` (with its lock file); the next build of `out` removes it,
/// keeps the temporary directory of a live writer (its lock held by
/// another process) and one without a lock file, and touches no other
/// output's.
#[test]
fn stale_temp_dirs_of_killed_builds_are_removed() {
    let t = tempdir();
    let big = t.path().join("big.bin");
    fs::File::create(&big).unwrap().set_len(8 << 30).unwrap();
    write(
        &t.path().join("big.toml"),
        "[image]\nname = \"t\"\n\n[[layer]]\n[[layer.entry]]\nsrc = \"big.bin\"\ndest = \"/big\"\n",
    );
    write(&t.path().join("small.toml"), SMALL);
    let mut child = boxwright()
        .args(["build", "--quiet", "-j", "1", "-o", "out", "big.toml"])
        .current_dir(t.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let killed = loop {
        let dirs = temp_dirs(t.path(), "out");
        if dirs.iter().any(|d| d.join(".lock").exists()) {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            break dirs;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the big build ended before it could be killed"
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no temp dir appeared"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(killed.len(), 1);
    assert_eq!(temp_dirs(t.path(), "out"), killed, "kill -9 leaves it");

    // A live writer's directory, its lock held by another process.
    let live = t.path().join(".out.tmp-live");
    fs::create_dir(&live).unwrap();
    fs::write(live.join(".lock"), "").unwrap();
    let mut holder = Command::new("flock")
        .arg("-x")
        .arg(live.join(".lock"))
        .args(["sleep", "60"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let unlocked = t.path().join(".out.tmp-nolock");
    fs::create_dir(&unlocked).unwrap();
    let other = t.path().join(".other.tmp-dead");
    fs::create_dir(&other).unwrap();
    fs::write(other.join(".lock"), "").unwrap();

    let r = run(boxwright()
        .args(["build", "--quiet", "-o", "out", "small.toml"])
        .current_dir(t.path()));
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_ok(&r);
    assert_eq!(temp_dirs(t.path(), "out"), vec![live, unlocked]);
    assert!(
        other.exists(),
        "another output's temp dir is not ours to remove"
    );
    assert!(t.path().join("out/index.json").is_file());
}

/// Figure: `build -o .` in an empty directory writes the layout there
/// (inspect reads it back) and leaves nothing beside it; run again, it
/// replaces it; in a directory holding anything else it is refused (exit
/// 2) and the directory is untouched.
#[test]
fn output_dot_in_an_empty_directory_is_fine() {
    let t = tempdir();
    write(&t.path().join("r.toml"), SMALL);
    let here = t.path().join("here");
    fs::create_dir(&here).unwrap();
    let r = run(boxwright()
        .args(["build", "--quiet", "-o", ".", "../r.toml"])
        .current_dir(&here));
    assert_ok(&r);
    let digest = r.stdout.trim().to_string();
    let i = run(boxwright().args(["inspect", "."]).current_dir(&here));
    assert_ok(&i);
    assert!(i.stdout.starts_with(&digest), "{}", i.stdout);
    let mut names: Vec<_> = fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["here", "r.toml"]);

    let mine = t.path().join("mine");
    fs::create_dir(&mine).unwrap();
    fs::write(mine.join("notes.txt"), "mine\n").unwrap();
    let r = run(boxwright()
        .args(["build", "--quiet", "-o", ".", "../r.toml"])
        .current_dir(&mine));
    assert_code(&r, 2);
    assert!(
        r.stderr.contains("exists and is not an OCI layout"),
        "{}",
        r.stderr
    );
    assert_eq!(fs::read_dir(&mine).unwrap().count(), 1);
}

/// Unmounts on drop.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Figure: a build of a 2 MB layer onto a 256 KiB file system fails with
/// exit 1 and a message naming the temporary directory being written, and
/// leaves nothing there. Needs a tmpfs mount (root): says so and passes
/// without one.
#[test]
fn a_full_disk_names_the_path_being_written() {
    let t = tempdir();
    let small = t.path().join("small-fs");
    fs::create_dir(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&small)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!(
            "a_full_disk_names_the_path_being_written: cannot mount a tmpfs here; not checked"
        );
        return;
    }
    let _unmount = Mounted(small.clone());
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..2_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    fs::write(t.path().join("noise.bin"), noise).unwrap();
    write(
        &t.path().join("r.toml"),
        "[image]\nname = \"t\"\n\n[[layer]]\n[[layer.entry]]\nsrc = \"noise.bin\"\ndest = \"/n\"\n",
    );
    let r = run(boxwright()
        .args(["build", "--quiet", "-o"])
        .arg(small.join("out"))
        .arg(t.path().join("r.toml")));
    assert_code(&r, 1);
    let named = format!("no space left writing {}/.out.tmp-", small.display());
    assert!(r.stderr.contains(&named), "{}", r.stderr);
    assert_eq!(fs::read_dir(&small).unwrap().count(), 0);
}

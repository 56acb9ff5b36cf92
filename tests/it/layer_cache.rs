//! The layer cache: `build --json` says which layers came from it; every
//! change of an input is a miss; a damaged entry is a miss; two builds can
//! share it; `cache prune` evicts the least recently used.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::common::*;
use crate::support::tempdir;

/// A context with two files in `d/`, a recipe whose layer copies `d/` with
/// a `--set`-able variable in a second entry, and a cache dir.
struct Case {
    dir: tempfile::TempDir,
}

const RECIPE: &str = r#"
[vars]
GREETING = "hi"
[image]
name = "cached"
created = 1700000000
[[layer]]
name = "tree"
[[layer.entry]]
src = "d"
dest = "/d"
[[layer.entry]]
content = "${GREETING}"
dest = "/greeting"
[[layer]]
name = "other"
[[layer.entry]]
content = "unchanged"
dest = "/other"
"#;

impl Case {
    fn new() -> Case {
        let c = Case { dir: tempdir() };
        write(&c.ctx().join("d/a"), "aaaa");
        write(&c.ctx().join("d/b"), "bbbb");
        write(&c.recipe(), RECIPE);
        // Old enough that the stat shortcut remembers their hashes.
        for f in ["d/a", "d/b"] {
            set_mtime(&c.ctx().join(f), 1_600_000_000);
        }
        c
    }
    fn ctx(&self) -> PathBuf {
        self.dir.path().join("ctx")
    }
    fn recipe(&self) -> PathBuf {
        self.ctx().join("recipe.toml")
    }
    fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }
    fn layers_dir(&self) -> PathBuf {
        self.cache().join("layers")
    }

    /// `build --json` with the cache, into a fresh output; the layers'
    /// (digest, cached) pairs and the whole document.
    fn build(&self, extra: &[&str]) -> (Vec<(String, bool)>, Value) {
        let out = tempdir();
        let json = ok(boxwright()
            .args(["build", "--json", "--quiet", "--cache-dir"])
            .arg(self.cache())
            .arg("-o")
            .arg(out.path().join("o"))
            .args(extra)
            .arg(self.recipe()));
        let v: Value = serde_json::from_str(&json).expect("build --json prints JSON");
        (layers(&v), v)
    }
}

fn layers(v: &Value) -> Vec<(String, bool)> {
    v["images"][0]["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| {
            (
                l["digest"].as_str().unwrap().to_string(),
                l["cached"].as_bool().expect("cached is a boolean"),
            )
        })
        .collect()
}

fn set_mtime(path: &Path, secs: u64) {
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

fn cached(l: &[(String, bool)]) -> Vec<bool> {
    l.iter().map(|(_, c)| *c).collect()
}

#[test]
fn an_unchanged_rebuild_takes_every_layer_from_the_cache() {
    let c = Case::new();
    let (cold, v1) = c.build(&[]);
    assert_eq!(cached(&cold), [false, false]);
    let (warm, v2) = c.build(&[]);
    assert_eq!(cached(&warm), [true, true]);
    assert_eq!(v1["digest"], v2["digest"], "same image digest");
    assert_eq!(
        cold.iter().map(|l| &l.0).collect::<Vec<_>>(),
        warm.iter().map(|l| &l.0).collect::<Vec<_>>()
    );
    let (none, v3) = c.build(&["--no-cache"]);
    assert_eq!(cached(&none), [false, false]);
    assert_eq!(v1["digest"], v3["digest"]);
}

/// Each change misses the changed layer only, and gives the digest a build
/// without the cache gives.
fn assert_miss(c: &Case, change: impl FnOnce(&Case), extra: &[&str]) {
    let (first, _) = c.build(extra);
    let _ = first;
    change(c);
    let (after, v) = c.build(extra);
    assert_eq!(
        cached(&after),
        [false, true],
        "only the changed layer is rebuilt"
    );
    let mut no_cache = extra.to_vec();
    no_cache.push("--no-cache");
    let (fresh, v2) = c.build(&no_cache);
    assert_eq!(
        v["digest"], v2["digest"],
        "the cache gave what a fresh build gives"
    );
    assert_eq!(after[0].0, fresh[0].0);
}

#[test]
fn content_rewritten_with_the_same_size_and_mtime_is_a_miss() {
    let c = Case::new();
    // Let the first build remember the hashes by stat, and each layer's key
    // by the stamps of its files (so a rebuild reads no file), then rewrite.
    std::thread::sleep(Duration::from_millis(2100));
    assert_miss(
        &c,
        |c| {
            let memo = fs::metadata(c.layers_dir().join("key-memo")).map_or(0, |m| m.len());
            assert_eq!(memo, 2 * 64, "both layers' keys remembered by their stamps");
            let p = c.ctx().join("d/a");
            fs::write(&p, "AAAA").unwrap();
            set_mtime(&p, 1_600_000_000);
        },
        &[],
    );
}

#[test]
fn a_changed_mode_is_a_miss() {
    let c = Case::new();
    assert_miss(
        &c,
        |c| fs::set_permissions(c.ctx().join("d/a"), fs::Permissions::from_mode(0o600)).unwrap(),
        &[],
    );
}

#[test]
fn a_changed_owner_is_a_miss() {
    let c = Case::new();
    assert_miss(
        &c,
        |c| {
            let r = RECIPE.replace(
                "name = \"tree\"",
                "name = \"tree\"\nuid = 1000\nuname = \"app\"",
            );
            write(&c.recipe(), &r);
        },
        &[],
    );
}

#[test]
fn a_new_file_is_a_miss() {
    let c = Case::new();
    assert_miss(&c, |c| write(&c.ctx().join("d/c"), "cccc"), &[]);
}

#[test]
fn a_deleted_file_is_a_miss() {
    let c = Case::new();
    assert_miss(&c, |c| fs::remove_file(c.ctx().join("d/b")).unwrap(), &[]);
}

#[test]
fn a_renamed_file_is_a_miss() {
    let c = Case::new();
    assert_miss(
        &c,
        |c| fs::rename(c.ctx().join("d/b"), c.ctx().join("d/c")).unwrap(),
        &[],
    );
}

#[test]
fn a_changed_variable_is_a_miss() {
    let c = Case::new();
    let (_, _) = c.build(&["--set", "GREETING=hello"]);
    let (after, _) = c.build(&["--set", "GREETING=howdy"]);
    assert_eq!(cached(&after), [false, true]);
    let (again, _) = c.build(&["--set", "GREETING=hello"]);
    assert_eq!(cached(&again), [true, true]);
}

#[test]
fn a_changed_created_time_is_a_miss_for_every_layer() {
    let c = Case::new();
    c.build(&[]);
    write(&c.recipe(), &RECIPE.replace("1700000000", "1700000001"));
    let (after, _) = c.build(&[]);
    assert_eq!(cached(&after), [false, false]);
}

#[test]
fn a_changed_compression_level_is_a_miss() {
    let c = Case::new();
    c.build(&["--level", "1"]);
    let (after, _) = c.build(&["--level", "9"]);
    assert_eq!(cached(&after), [false, false]);
    let (zstd, _) = c.build(&["--compression", "zstd"]);
    assert_eq!(cached(&zstd), [false, false]);
    let (back, _) = c.build(&["--level", "1"]);
    assert_eq!(cached(&back), [true, true]);
}

#[test]
fn a_corrupt_or_missing_cached_blob_is_a_miss_never_a_wrong_layer() {
    let c = Case::new();
    let (cold, v1) = c.build(&[]);
    let blob = |d: &str| {
        c.cache()
            .join("sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    // Same size, other bytes.
    let p = blob(&cold[0].0);
    let len = fs::metadata(&p).unwrap().len() as usize;
    fs::write(&p, vec![b'x'; len]).unwrap();
    fs::remove_file(blob(&cold[1].0)).unwrap();
    let (after, v2) = c.build(&[]);
    assert_eq!(cached(&after), [false, false]);
    assert_eq!(v1["digest"], v2["digest"]);
    let (again, _) = c.build(&[]);
    assert_eq!(
        cached(&again),
        [true, true],
        "the rebuilt layers were stored again"
    );

    // A damaged entry is a miss too.
    for e in fs::read_dir(c.layers_dir()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            fs::write(&p, "{not json").unwrap();
        }
    }
    let (damaged, v3) = c.build(&[]);
    assert_eq!(cached(&damaged), [false, false]);
    assert_eq!(v1["digest"], v3["digest"]);

    // A directory where a blob goes (a restored cache), even one holding
    // files: a miss, and the layer is stored in its place.
    for (d, _) in &cold {
        fs::remove_file(blob(d)).unwrap();
        fs::create_dir_all(blob(d).join("inner")).unwrap();
        write(&blob(d).join("inner/x"), "x");
    }
    let (dirs, v4) = c.build(&[]);
    assert_eq!(cached(&dirs), [false, false]);
    assert_eq!(v1["digest"], v4["digest"]);
    assert_eq!(cached(&c.build(&[]).0), [true, true]);
}

#[test]
fn two_builds_at_once_share_the_cache() {
    let c = Case::new();
    let spawn = |out: &Path| {
        boxwright()
            .args(["build", "--json", "--quiet", "--cache-dir"])
            .arg(c.cache())
            .arg("-o")
            .arg(out)
            .arg(c.recipe())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("starting boxwright")
    };
    let out = tempdir();
    let (a, b) = (spawn(&out.path().join("a")), spawn(&out.path().join("b")));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success() && b.status.success(), "{a:?} {b:?}");
    let va: Value = serde_json::from_slice(&a.stdout).unwrap();
    let vb: Value = serde_json::from_slice(&b.stdout).unwrap();
    assert_eq!(va["digest"], vb["digest"]);
    let (after, v) = c.build(&[]);
    assert_eq!(cached(&after), [true, true]);
    assert_eq!(v["digest"], va["digest"]);
}

fn cache_json(c: &Case, args: &[&str]) -> Value {
    let out = ok(boxwright()
        .arg("cache")
        .args(args)
        .arg("--json")
        .arg("--cache-dir")
        .arg(c.cache()));
    serde_json::from_str(&out).expect("cache --json prints JSON")
}

#[test]
fn prune_evicts_the_least_recently_used_first() {
    let c = Case::new();
    let (cold, _) = c.build(&[]);
    let sizes: Vec<u64> = cold
        .iter()
        .map(|(d, _)| {
            fs::metadata(
                c.cache()
                    .join("sha256")
                    .join(d.trim_start_matches("sha256:")),
            )
            .unwrap()
            .len()
        })
        .collect();
    let stats = cache_json(&c, &["stats"]);
    assert_eq!(stats["entries"], 2);
    assert_eq!(stats["bytes"], sizes.iter().sum::<u64>());

    // Use layer "tree" alone again, later: "other" is the least recently used.
    std::thread::sleep(Duration::from_millis(50));
    write(
        &c.recipe(),
        &RECIPE[..RECIPE.find("[[layer]]\nname = \"other\"").unwrap()],
    );
    let (tree_only, _) = c.build(&[]);
    assert_eq!(cached(&tree_only), [true]);

    let max = sizes[0].to_string();
    let pruned = cache_json(&c, &["prune", "--max-size", &max]);
    assert_eq!(pruned["removedEntries"], 1);
    assert_eq!(pruned["removedBytes"], sizes[1]);
    assert_eq!(pruned["after"]["entries"], 1);
    write(&c.recipe(), RECIPE);
    let (after, _) = c.build(&["--cache-max", "1GiB"]);
    assert_eq!(
        cached(&after),
        [true, false],
        "the recently used layer stayed"
    );

    let (_, _) = c.build(&["--cache-max", "1"]);
    assert_eq!(
        cache_json(&c, &["stats"])["entries"],
        0,
        "a build keeps under --cache-max"
    );
}

#[test]
fn stats_and_prune_name_a_cache_dir_that_does_not_exist_and_create_nothing() {
    let c = Case::new();
    let typo = c.dir.path().join("no-such-cache");
    for args in [&["stats"][..], &["prune", "--max-size", "1GiB"]] {
        let r = run(boxwright()
            .arg("cache")
            .args(args)
            .arg("--cache-dir")
            .arg(&typo));
        assert_code(&r, 2);
        assert!(
            r.stderr.contains(&typo.display().to_string()),
            "{}",
            r.stderr
        );
        assert!(!typo.exists(), "cache {args:?} created {}", typo.display());
    }
}

/// `cache stats` and `cache prune` only read: given a directory that holds
/// no layer cache (a mistyped parent, a blob cache only `pull` used), or
/// with a default cache no build made, they report it empty and create
/// nothing there (no `layers/`, no `sha256/`). A cache a build made is read
/// as before.
#[test]
fn stats_and_prune_create_nothing_where_no_build_made_a_cache() {
    let c = Case::new();
    let dir = c.dir.path().join("not-a-cache");
    fs::create_dir_all(&dir).unwrap();
    let home = c.dir.path().join("home");
    fs::create_dir_all(&home).unwrap();
    let listing = |d: &Path| -> Vec<String> {
        fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    for args in [&["stats"][..], &["prune", "--max-size", "1GiB"]] {
        let out = ok(boxwright()
            .arg("cache")
            .args(args)
            .arg("--json")
            .arg("--cache-dir")
            .arg(&dir));
        let v: Value = serde_json::from_str(&out).unwrap();
        let stats = if args[0] == "stats" { &v } else { &v["after"] };
        assert_eq!(stats["entries"], 0, "{out}");
        assert_eq!(
            listing(&dir),
            Vec::<String>::new(),
            "cache {args:?} --cache-dir"
        );
        let out = ok(boxwright()
            .env_remove("XDG_CACHE_HOME")
            .env("HOME", &home)
            .arg("cache")
            .args(args)
            .arg("--json"));
        let v: Value = serde_json::from_str(&out).unwrap();
        let stats = if args[0] == "stats" { &v } else { &v["after"] };
        assert_eq!(stats["entries"], 0, "{out}");
        assert_eq!(listing(&home), Vec::<String>::new(), "cache {args:?}");
    }
    c.build(&[]);
    assert_eq!(cache_json(&c, &["stats"])["entries"], 2);
}

#[test]
fn a_bad_cache_max_from_the_environment_is_named_as_the_variable() {
    let c = Case::new();
    fs::create_dir_all(c.cache()).unwrap();
    let r = run(boxwright()
        .env("BOXWRIGHT_CACHE_MAX", "junk")
        .args(["cache", "stats", "--cache-dir"])
        .arg(c.cache()));
    assert_code(&r, 2);
    assert!(
        r.stderr.contains("BOXWRIGHT_CACHE_MAX=\"junk\""),
        "{}",
        r.stderr
    );
    let out = tempdir();
    let r = run(boxwright()
        .env("BOXWRIGHT_CACHE_MAX", "junk")
        .args(["build", "--quiet", "--cache-dir"])
        .arg(c.cache())
        .arg("-o")
        .arg(out.path().join("o"))
        .arg(c.recipe()));
    assert_code(&r, 2);
    assert!(r.stderr.contains("BOXWRIGHT_CACHE_MAX"), "{}", r.stderr);
    // The flag wins over the variable.
    let r = run(boxwright()
        .env("BOXWRIGHT_CACHE_MAX", "junk")
        .args(["cache", "stats", "--cache-max", "1GiB", "--cache-dir"])
        .arg(c.cache()));
    assert_code(&r, 0);
}

#[test]
fn without_a_usable_cache_directory_the_build_goes_on_without_the_cache() {
    let c = Case::new();
    let out = tempdir();
    let file = c.dir.path().join("not-a-dir");
    write(&file, "x");
    let runs = [
        boxwright()
            .env_remove("HOME")
            .env_remove("XDG_CACHE_HOME")
            .args(["build", "--json", "--quiet", "-o"])
            .arg(out.path().join("a"))
            .arg(c.recipe())
            .output()
            .unwrap(),
        boxwright()
            .args(["build", "--json", "--quiet", "--cache-dir"])
            .arg(&file)
            .arg("-o")
            .arg(out.path().join("b"))
            .arg(c.recipe())
            .output()
            .unwrap(),
    ];
    for r in runs {
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let v: Value = serde_json::from_slice(&r.stdout).unwrap();
        assert_eq!(cached(&layers(&v)), [false, false]);
    }
}

/// A cache restored from elsewhere (a CI cache) whose own directories are
/// links: the build warns and goes on without the layer cache, and nothing
/// is written where the links point, by default or with `--cache-dir`.
#[test]
fn a_cache_whose_directories_are_links_is_not_written_through() {
    let c = Case::new();
    let outside = c.dir.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    let xdg = c.dir.path().join("xdg");
    fs::create_dir_all(&xdg).unwrap();
    std::os::unix::fs::symlink(&outside, xdg.join("boxwright")).unwrap();
    for sub in ["layers", "sha256"] {
        fs::create_dir_all(c.cache()).unwrap();
        let link = c.cache().join(sub);
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        for _ in 0..2 {
            assert_eq!(cached(&c.build(&[]).0), [false, false], "{sub}");
        }
        fs::remove_dir_all(c.cache()).unwrap();
    }
    let out = tempdir();
    for n in ["a", "b"] {
        let r = boxwright()
            .env("XDG_CACHE_HOME", &xdg)
            .args(["build", "--json", "--quiet", "-o"])
            .arg(out.path().join(n))
            .arg(c.recipe())
            .output()
            .unwrap();
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let v: Value = serde_json::from_slice(&r.stdout).unwrap();
        assert_eq!(cached(&layers(&v)), [false, false]);
    }
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
    // `cache stats` and `cache prune` refuse it, naming the link.
    fs::create_dir_all(c.cache()).unwrap();
    std::os::unix::fs::symlink(&outside, c.cache().join("layers")).unwrap();
    for args in [&["stats"][..], &["prune", "--max-size", "1"]] {
        let r = run(boxwright()
            .arg("cache")
            .args(args)
            .arg("--cache-dir")
            .arg(c.cache()));
        assert_code(&r, 2);
        let link = c.cache().join("layers");
        assert!(r.stderr.contains(&*link.to_string_lossy()), "{}", r.stderr);
    }
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
}

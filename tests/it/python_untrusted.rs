//! A lock and its wheels are untrusted input: a wheel path that leaves the
//! build context, a package listed twice for one platform, wheels whose
//! members clash with each other or with the files an install generates,
//! a `requirements.txt` whose hashes name no wheel of its pin, and
//! `find_links` entries named like wheels that are not files are
//! refused (exit 2), naming the lock or the wheel and what is wrong.

use std::fs;
use std::path::Path;

use crate::common::*;
use crate::python_pip::wheel;
use crate::python_url::build_layer;

const RECIPE: &str = "[image]\nname = \"t\"\n[[layer]]\nname = \"deps\"\n[layer.python]\nlock = \"pylock.toml\"\nversion = \"3.11\"\n";

/// A wheel member: name, mode, content.
type Member<'a> = (&'a str, u32, &'a [u8]);

/// A wheel `demo-VERSION-py3-none-any.whl` in `dir` with these members
/// besides its METADATA (and a RECORD).
fn demo(dir: &Path, version: &str, members: &[Member]) -> String {
    fs::create_dir_all(dir).unwrap();
    let file = format!("demo-{version}-py3-none-any.whl");
    let info = format!("demo-{version}.dist-info");
    let meta = format!("Metadata-Version: 2.1\nName: demo\nVersion: {version}\n");
    let meta_name = format!("{info}/METADATA");
    let mut all: Vec<Member> = members.to_vec();
    all.push((&meta_name, 0o644, meta.as_bytes()));
    wheel(&dir.join(&file), &info, &all);
    file
}

/// A pylock.toml in `dir` of these (version, marker, wheel path) of `demo`.
fn lock(dir: &Path, packages: &[(&str, &str, &str)]) {
    let mut text = "lock-version = \"1.0\"\n".to_string();
    for (version, marker, path) in packages {
        text.push_str(&format!(
            "[[packages]]\nname = \"demo\"\nversion = \"{version}\"\n{marker}\nwheels = [{{ path = \"{path}\" }}]\n"
        ));
    }
    write(&dir.join("pylock.toml"), &text);
}

#[test]
fn python_wheel_paths_outside_the_build_context_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    let file = demo(
        &dir.path().join("outside"),
        "1.0",
        &[("demo/__init__.py", 0o644, b"")],
    );
    let outside = dir.path().join("outside").join(&file);
    let recipe = format!("context = \"ctx\"\n{RECIPE}");
    for path in [format!("../outside/{file}"), outside.display().to_string()] {
        lock(&ctx, &[("1.0", "", &path)]);
        let r = build_layer(dir.path(), &dir.path().join("cache"), &recipe);
        assert_code(&r, 2);
        assert!(
            r.stderr.contains("pylock.toml: wheel ")
                && r.stderr.contains("is outside the build context"),
            "{path}: {}",
            r.stderr
        );
    }
    // The same wheel inside the context is installed.
    demo(
        &ctx.join("wheels"),
        "1.0",
        &[("demo/__init__.py", 0o644, b"")],
    );
    lock(&ctx, &[("1.0", "", &format!("wheels/{file}"))]);
    assert_ok(&build_layer(dir.path(), &dir.path().join("cache"), &recipe));
}

#[test]
fn python_a_package_listed_twice_for_one_platform_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wheels");
    let one = demo(&w, "1.0", &[("demo/__init__.py", 0o644, b"one")]);
    let two = demo(&w, "2.0", &[("demo/__init__.py", 0o644, b"two")]);
    let (p1, p2) = (format!("wheels/{one}"), format!("wheels/{two}"));
    for twice in [
        vec![("2.0", "", p2.as_str()), ("1.0", "", p1.as_str())],
        vec![("1.0", "", p1.as_str()), ("1.0", "", p1.as_str())],
    ] {
        lock(dir.path(), &twice);
        let r = build_layer(dir.path(), &dir.path().join("cache"), RECIPE);
        assert_code(&r, 2);
        let said = format!(
            "package demo is listed twice for linux/amd64 (versions {} and {})",
            twice[0].0, twice[1].0
        );
        assert!(
            r.stderr.contains(&said) && r.stderr.contains("pylock.toml"),
            "{}",
            r.stderr
        );
    }
    // Markers that select different environments are what a lock may do.
    lock(
        dir.path(),
        &[
            ("2.0", "marker = \"platform_machine == 'x86_64'\"", &p2),
            ("1.0", "marker = \"platform_machine != 'x86_64'\"", &p1),
        ],
    );
    assert_ok(&build_layer(dir.path(), &dir.path().join("cache"), RECIPE));
}

#[test]
fn python_members_that_clash_within_a_wheel_are_refused_naming_the_wheel() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wheels");
    let entry_points: &[u8] = b"[console_scripts]\ndemo-cli = demo:main\n";
    let cases: [(&[Member], &str); 3] = [
        (
            &[("demo/a", 0o644, b"file"), ("demo/a/b.py", 0o644, b"")],
            "/usr/local/lib/python3.11/site-packages/demo/a is both a file (member \"demo/a\") and a directory (member \"demo/a/b.py\")",
        ),
        (
            &[
                ("demo/x", 0o644, b""),
                ("demo-1.0.data/purelib/demo-1.0.dist-info/INSTALLER", 0o644, b"pip\n"),
            ],
            "member \"demo-1.0.data/purelib/demo-1.0.dist-info/INSTALLER\" and the INSTALLER an install writes both install /usr/local/lib/python3.11/site-packages/demo-1.0.dist-info/INSTALLER",
        ),
        (
            &[
                ("demo/__init__.py", 0o644, b"def main(): pass\n"),
                ("demo-1.0.data/scripts/demo-cli", 0o755, b"#!/bin/sh\necho hi\n"),
                ("demo-1.0.dist-info/entry_points.txt", 0o644, entry_points),
            ],
            "member \"demo-1.0.data/scripts/demo-cli\" and the script \"demo-cli\" of entry_points.txt both install /usr/local/bin/demo-cli",
        ),
    ];
    for (members, said) in cases {
        let file = demo(&w, "1.0", members);
        lock(dir.path(), &[("1.0", "", &format!("wheels/{file}"))]);
        let r = build_layer(dir.path(), &dir.path().join("cache"), RECIPE);
        assert_code(&r, 2);
        assert!(
            r.stderr
                .contains(&format!("wheels/{file}: {said}; the wheel is broken")),
            "{said}\n{}",
            r.stderr
        );
        assert!(!r.stderr.contains("exclude the path"), "{}", r.stderr);
    }
}

#[test]
fn python_a_requirement_is_installed_only_from_a_wheel_its_hashes_name() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wheels");
    let file = demo(&w, "1.0", &[("demo/__init__.py", 0o644, b"locked")]);
    let locked = sha256(&fs::read(w.join(&file)).unwrap());
    let other = dir.path().join("other");
    let other_file = demo(&other, "2.0", &[("demo/__init__.py", 0o644, b"2")]);
    fs::rename(other.join(&other_file), w.join(&other_file)).unwrap();
    let two = sha256(&fs::read(w.join(&other_file)).unwrap());
    let recipe = RECIPE.replace("pylock.toml", "requirements.txt") + "find_links = [\"wheels\"]\n";
    let req = |line: &str| write(&dir.path().join("requirements.txt"), line);
    let cache = dir.path().join("cache");
    req(&format!("demo==1.0 --hash={locked}\n"));
    assert_ok(&build_layer(dir.path(), &cache, &recipe));
    let built = fs::read(dir.path().join("out/index.json")).unwrap();

    // The wheel swapped for another of the same file name: its hash is no
    // longer the locked one, so it is not installed by its name.
    let swapped = demo(&w, "1.0", &[("demo/__init__.py", 0o644, b"swapped")]);
    assert_eq!(swapped, file);
    let r = build_layer(dir.path(), &cache, &recipe);
    assert_code(&r, 2);
    assert!(
        r.stderr
            .contains("package demo 1.0: none of its --hash values")
            && r.stderr.contains(&file),
        "{}",
        r.stderr
    );
    // A hash that names a wheel of another version is not that version.
    req(&format!("demo==1.0 --hash={two}\n"));
    let r = build_layer(dir.path(), &cache, &recipe);
    assert_code(&r, 2);
    assert!(
        r.stderr
            .contains("requirements.txt: line 1: --hash=sha256:")
            && r.stderr
                .contains(&format!("{other_file}, which is not demo 1.0")),
        "{}",
        r.stderr
    );
    assert_eq!(fs::read(dir.path().join("out/index.json")).unwrap(), built);
}

/// Figures: a `find_links` entry named like a wheel that is a named pipe,
/// a link to a device or a directory is bad input (exit 2) naming it,
/// read from no further than its type.
#[test]
fn python_find_links_entries_that_are_not_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wheels");
    let file = demo(&w, "1.0", &[("demo/__init__.py", 0o644, b"locked")]);
    let locked = sha256(&fs::read(w.join(&file)).unwrap());
    write(
        &dir.path().join("requirements.txt"),
        &format!("demo==1.0 --hash={locked}\n"),
    );
    let recipe = RECIPE.replace("pylock.toml", "requirements.txt") + "find_links = [\"wheels\"]\n";
    let odd = w.join("demo-0.9-py3-none-any.whl");
    let cache = dir.path().join("cache");
    for kind in ["fifo", "device", "directory"] {
        let made = match kind {
            "fifo" => std::process::Command::new("mkfifo").arg(&odd).status(),
            "device" => std::process::Command::new("ln")
                .args(["-s", "/dev/zero"])
                .arg(&odd)
                .status(),
            _ => std::process::Command::new("mkdir").arg(&odd).status(),
        };
        assert!(made.unwrap().success(), "{kind}");
        let r = build_layer(dir.path(), &cache, &recipe);
        assert_code(&r, 2);
        assert!(
            r.stderr.contains("find_links wheel") && r.stderr.contains("demo-0.9-py3-none-any.whl"),
            "{kind}: {}",
            r.stderr
        );
        let _ = fs::remove_file(&odd);
        let _ = fs::remove_dir(&odd);
    }
}

/// A `find_links` wheel that is a link leaving the build context is refused
/// before it is read, even when the lock names another wheel: every wheel
/// there is hashed to find the locked ones.
#[test]
fn python_find_links_wheels_outside_the_context_are_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    let w = ctx.join("wheels");
    let file = demo(&w, "1.0", &[("demo/__init__.py", 0o644, b"locked")]);
    let locked = sha256(&fs::read(w.join(&file)).unwrap());
    write(
        &ctx.join("requirements.txt"),
        &format!("demo==1.0 --hash={locked}\n"),
    );
    let recipe = format!("context = \"ctx\"\n{RECIPE}find_links = [\"wheels\"]\n")
        .replace("pylock.toml", "requirements.txt");
    let cache = dir.path().join("cache");
    assert_ok(&build_layer(dir.path(), &cache, &recipe));
    fs::remove_dir_all(dir.path().join("out")).unwrap();

    let outside = demo(
        &dir.path().join("outside"),
        "0.9",
        &[("demo/__init__.py", 0o644, b"outside")],
    );
    std::os::unix::fs::symlink(Path::new("../../outside").join(&outside), w.join(&outside))
        .unwrap();
    let r = build_layer(dir.path(), &cache, &recipe);
    assert_code(&r, 2);
    assert!(
        r.stderr.contains("recipe.toml:")
            && r.stderr
                .contains(&format!("find_links wheel {}", w.join(&outside).display()))
            && r.stderr.contains("is outside the build context"),
        "{}",
        r.stderr
    );
    assert!(!dir.path().join("out").exists());
}

/// Scripts start with `#!` and the interpreter: a relative path, or one
/// with a blank or a newline, would make every script fail to run (or run
/// something else), so it is refused at its line.
#[test]
fn python_interpreter_must_be_an_absolute_plain_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = demo(
        &dir.path().join("wheels"),
        "1.0",
        &[("demo/__init__.py", 0o644, b"")],
    );
    lock(dir.path(), &[("1.0", "", &format!("wheels/{file}"))]);
    let cache = dir.path().join("cache");
    for bad in [
        "python3",
        "/usr/bin/env python3",
        "/usr/bin/python3\\nrm -rf /",
        "/a\\tb",
    ] {
        let recipe = format!("{RECIPE}interpreter = \"{bad}\"\n");
        let r = build_layer(dir.path(), &cache, &recipe);
        assert_code(&r, 2);
        assert!(
            r.stderr.contains("recipe.toml:8:15: interpreter")
                && r.stderr
                    .contains("must be an absolute path without blanks or control characters"),
            "{bad}: {}",
            r.stderr
        );
    }
    let recipe = format!("{RECIPE}interpreter = \"/opt/py/bin/python3.11\"\n");
    assert_ok(&build_layer(dir.path(), &cache, &recipe));
}

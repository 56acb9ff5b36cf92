//! `build --check-reproducible`: a second build another way must give the
//! same layers; an input that changes between the two builds is named.

use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::common::*;
use crate::support::tempdir;

const RECIPE: &str = r#"
[image]
name = "check"
[[layer]]
name = "tree"
[[layer.entry]]
src = "d"
dest = "/d"
"#;

#[test]
fn a_recipe_of_plain_files_is_reproducible() {
    let dir = tempdir();
    let ctx = dir.path().join("ctx");
    for i in 0..20 {
        write(
            &ctx.join(format!("d/s{}/f{i}", i % 3)),
            &format!("file {i}\n"),
        );
    }
    write(&ctx.join("recipe.toml"), RECIPE);
    let checked = ok(boxwright()
        .args(["build", "--quiet", "--check-reproducible", "-o"])
        .arg(dir.path().join("a"))
        .arg(ctx.join("recipe.toml")));
    let plain = ok(boxwright()
        .args(["build", "--quiet", "--no-cache", "-o"])
        .arg(dir.path().join("b"))
        .arg(ctx.join("recipe.toml")));
    assert_eq!(checked, plain, "the checked build wrote the same image");
    let left: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".boxwright-check-"))
        .collect();
    assert!(left.is_empty(), "the scratch build is removed: {left:?}");
}

#[test]
fn a_file_that_changes_between_the_builds_is_named_with_exit_1() {
    let dir = tempdir();
    let ctx = dir.path().join("ctx");
    write(&ctx.join("d/counter"), "00000000000000000000");
    // Enough bytes that each build takes a while, so the writer runs between them.
    fs::write(ctx.join("d/big"), noise(8 << 20, 7)).unwrap();
    write(&ctx.join("recipe.toml"), RECIPE);
    // Rewrites d/counter (same size, new content) until stopped.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, ctx) = (stop.clone(), ctx.clone());
        std::thread::spawn(move || {
            let mut n: u64 = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let tmp = ctx.join("counter.tmp");
                fs::write(&tmp, format!("{n:020}")).unwrap();
                fs::rename(&tmp, ctx.join("d/counter")).unwrap();
            }
        })
    };
    // The writer is a thread racing the builds: on a loaded machine it may
    // not run between them, so a few attempts are allowed; each one either
    // passes the check or names the counter.
    let mut failed = None;
    for _ in 0..10 {
        let r = run(boxwright()
            .args([
                "build",
                "--quiet",
                "--no-cache",
                "--check-reproducible",
                "-o",
            ])
            .arg(dir.path().join("out"))
            .arg(ctx.join("recipe.toml")));
        assert!(r.code == 0 || r.code == 1, "{}", r.stderr);
        if r.code == 1 {
            failed = Some(r);
            break;
        }
    }
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let r = failed.expect("the changing file was noticed");
    assert!(
        r.stderr.contains("d/counter") && r.stderr.contains("content"),
        "names the entry and the field: {}",
        r.stderr
    );
}

#[test]
fn check_reproducible_does_not_go_with_push() {
    let dir = tempdir();
    write(&dir.path().join("recipe.toml"), RECIPE);
    let r = run(boxwright()
        .args(["build", "--check-reproducible", "--push"])
        .arg(dir.path().join("recipe.toml")));
    assert_code(&r, 2);
}

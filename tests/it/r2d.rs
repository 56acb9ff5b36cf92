//! `recipes/r2d.toml` and its offline inputs: the committed fixtures are what
//! `scripts/r2d_fixtures.py` makes from their sources, `file:` URLs relative
//! to the context stay inside it, and the built image's Python packages
//! import and its launchers run under the machine's python3.11.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use crate::common::*;
use crate::python_url::build_layer;
use crate::support::tools;

/// Every file under `dir`, relative, with its bytes.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_path_buf();
                out.push((rel, fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn the_committed_wheels_locks_and_zips_are_made_from_their_sources() {
    let tmp = TempDir::new().unwrap();
    let copy = tmp.path().join("r2d");
    copy_tree(&root().join("fixtures/r2d"), &copy);
    for made in ["wheels", "downloads"] {
        fs::remove_dir_all(copy.join(made)).unwrap();
    }
    let out = tools::output(
        Command::new("python3")
            .arg(root().join("scripts/r2d_fixtures.py"))
            .arg(&copy),
    );
    assert!(out.status.success(), "{out:?}");
    for made in ["wheels", "downloads"] {
        let (want, got) = (
            files(&root().join("fixtures/r2d").join(made)),
            files(&copy.join(made)),
        );
        let names = |v: &[(PathBuf, Vec<u8>)]| v.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(&got),
            names(&want),
            "fixtures/r2d/{made}: run scripts/r2d-fixtures"
        );
        assert!(
            got == want,
            "fixtures/r2d/{made} is stale: run scripts/r2d-fixtures"
        );
    }
    for lock in ["pylock.toml", "pylock.app.toml"] {
        assert_eq!(
            fs::read_to_string(copy.join(lock)).unwrap(),
            fs::read_to_string(root().join("fixtures/r2d").join(lock)).unwrap(),
            "fixtures/r2d/{lock} is stale: run scripts/r2d-fixtures"
        );
    }
    // The recipe pins what the zips hash to.
    let recipe = fs::read_to_string(root().join("recipes/r2d.toml")).unwrap();
    let sums = fs::read_to_string(copy.join("downloads/SHA256SUMS")).unwrap();
    for line in sums.lines() {
        let hex = line.split_whitespace().next().unwrap();
        assert!(recipe.contains(hex), "recipes/r2d.toml does not pin {line}");
    }
}

#[test]
fn relative_file_urls_are_read_from_the_context_and_never_outside_it() {
    let tmp = TempDir::new().unwrap();
    let ctx = tmp.path().join("ctx");
    write(&ctx.join("dl/tool.sh"), "#!/bin/sh\necho tool\n");
    write(&tmp.path().join("outside.sh"), "#!/bin/sh\necho outside\n");
    let hex = |data: &str| sha256(data.as_bytes())[7..].to_string();
    let recipe = |url: &str, data: &str| {
        format!(
            "[image]\nname = \"t\"\n[[layer]]\n[[layer.entry]]\nurl = \"{url}\"\nsha256 = \"{}\"\ndest = \"/usr/local/bin/tool\"\n",
            hex(data)
        )
    };
    let r = build_layer(
        &ctx,
        &tmp.path().join("cache"),
        &recipe("file:dl/tool.sh", "#!/bin/sh\necho tool\n"),
    );
    assert_ok(&r);
    let entries = crate::python_url::layer_entries(&ctx.join("out"));
    let tool = entries
        .iter()
        .find(|e| e.0 == "usr/local/bin/tool")
        .expect("the file");
    assert_eq!(tool.3, b"#!/bin/sh\necho tool\n");
    fs::remove_dir_all(ctx.join("out")).unwrap();

    for url in ["file:../outside.sh", "file:dl/../../outside.sh"] {
        let r = build_layer(
            &ctx,
            &tmp.path().join("cache"),
            &recipe(url, "#!/bin/sh\necho outside\n"),
        );
        assert_code(&r, 2);
        assert!(r.stderr.contains("recipe.toml:5:7"), "{}", r.stderr);
        assert!(!ctx.join("out").exists(), "nothing written for {url}");
    }
    // A file of the context that does not match its pin is the recipe's
    // mistake: bad input, at the entry, and nothing written.
    let r = build_layer(
        &ctx,
        &tmp.path().join("cache"),
        &recipe("file:dl/tool.sh", "#!/bin/sh\necho other\n"),
    );
    assert_code(&r, 2);
    assert!(r.stderr.contains("recipe.toml:5:7"), "{}", r.stderr);
    assert!(!ctx.join("out").exists());
    // A missing file is bad input too, named with its place in the recipe.
    let r = build_layer(
        &ctx,
        &tmp.path().join("cache"),
        &recipe("file:dl/nope.sh", "x"),
    );
    assert_code(&r, 2);
    assert!(r.stderr.contains("recipe.toml:5:7"), "{}", r.stderr);
}

/// The host's architecture in Go's names.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("no R2D platform for {other}"),
    }
}

/// The top-level modules of every distribution installed in `site`, from
/// its RECORD (the first component of each file that is not metadata).
pub fn top_level_modules(site: &Path) -> BTreeSet<String> {
    let mut mods = BTreeSet::new();
    for e in fs::read_dir(site).unwrap() {
        let p = e.unwrap().path();
        if !p.to_string_lossy().ends_with(".dist-info") {
            continue;
        }
        let record = fs::read_to_string(p.join("RECORD")).unwrap();
        for line in record.lines() {
            let path = line.split(',').next().unwrap();
            let first = path.split('/').next().unwrap();
            if first.ends_with(".dist-info") || first.ends_with(".data") || first == ".." {
                continue;
            }
            mods.insert(first.trim_end_matches(".py").to_string());
        }
    }
    mods
}

#[test]
fn the_built_app_imports_its_packages_and_its_launchers_run_under_python311() {
    let tmp = TempDir::new().unwrap();
    let layout = tmp.path().join("r2d");
    ok(boxwright()
        .args(["build", "--quiet", "--set", "VERSION=1.4.0", "--platform"])
        .arg(format!("linux/{}", host_arch()))
        .arg("-o")
        .arg(&layout)
        .arg(root().join("recipes/r2d.toml")));
    let bundle = tmp.path().join("bundle");
    tool(
        "umoci",
        &[
            "unpack",
            "--rootless",
            "--image",
            &format!("{}:latest", layout.display()),
            bundle.to_str().unwrap(),
        ],
    );
    let rootfs = bundle.join("rootfs");
    let site = rootfs.join("usr/local/lib/python3.11/site-packages");
    let mods = top_level_modules(&site);
    assert_eq!(
        mods.iter().map(String::as_str).collect::<Vec<_>>(),
        ["diagram_to_iac", "hcl2lite", "repoprobe"]
    );
    let python = |args: &[&str]| {
        let out = tools::output(
            Command::new("python3.11")
                .args(args)
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap())
                .env("PYTHONPATH", &site)
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .current_dir(tmp.path()),
        );
        assert!(out.status.success(), "python3.11 {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    // Every module imports, from the image and not from the machine.
    let mut args = vec![
        "-c",
        "import importlib, sys\nfor m in sys.argv[1:]: print(importlib.import_module(m).__file__)",
    ];
    args.extend(mods.iter().map(String::as_str));
    let found = python(&args);
    for line in found.lines() {
        assert!(
            Path::new(line).starts_with(&site),
            "{line} is not from the image"
        );
    }
    assert_eq!(found.lines().count(), mods.len());

    // The console-script launchers have the image's interpreter and run.
    let bin = rootfs.join("usr/local/bin");
    for launcher in ["r2d", "hcl2lite", "repoprobe"] {
        let text = fs::read_to_string(bin.join(launcher)).unwrap();
        assert!(
            text.starts_with("#!/usr/local/bin/python3.11\n"),
            "{launcher}: {text}"
        );
    }
    let repo = tmp.path().join("repo");
    write(
        &repo.join("main.tf"),
        "region = \"eu-west-1\"\nbucket = \"r2d\"\n",
    );
    write(&repo.join("modules/net/vpc.tf"), "cidr = \"10.0.0.0/16\"\n");
    let r2d = bin.join("r2d");
    let out = python(&[r2d.to_str().unwrap(), "--dry-run", repo.to_str().unwrap()]);
    assert_eq!(
        out.trim(),
        format!("R2D: {}: 2 terraform files, 3 settings", repo.display())
    );
    assert_eq!(
        python(&[r2d.to_str().unwrap(), "--version"]).trim(),
        "r2d 1.4.0"
    );
    let probe = bin.join("repoprobe");
    let out = python(&[probe.to_str().unwrap(), repo.to_str().unwrap()]);
    assert_eq!(out.lines().count(), 2, "{out}");
    let hcl = bin.join("hcl2lite");
    let out = python(&[
        hcl.to_str().unwrap(),
        repo.join("main.tf").to_str().unwrap(),
    ]);
    assert_eq!(out.trim(), r#"{"bucket": "r2d", "region": "eu-west-1"}"#);

    // The tools came out of their zips for this platform.
    for t in ["terraform", "tflint"] {
        let out = tools::output(&mut Command::new(bin.join(t)));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("linux/{}", host_arch())),
            "{t}: {text}"
        );
    }
}

/// The layers of `recipe` for linux/amd64, as (source, digest).
fn layers(recipe: &Path, out: &Path) -> Vec<(String, String)> {
    let json = ok(boxwright()
        .args(["build", "--quiet", "--json", "--set", "VERSION=1.4.0"])
        .args(["--platform", "linux/amd64", "-o"])
        .arg(out)
        .arg(recipe));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["images"][0]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let s = |k: &str| l[k].as_str().unwrap_or_default().to_string();
            (s("source"), s("digest"))
        })
        .collect()
}

#[test]
fn a_release_that_changes_one_app_file_changes_only_the_app_layer() {
    let tmp = TempDir::new().unwrap();
    let ctx = tmp.path().join("ctx");
    copy_tree(&root().join("recipes"), &ctx.join("recipes"));
    copy_tree(&root().join("fixtures/r2d"), &ctx.join("fixtures/r2d"));
    let before = layers(&ctx.join("recipes/r2d.toml"), &tmp.path().join("a"));

    let file = ctx.join("fixtures/r2d/app/diagram_to_iac/tools/terraform.py");
    let text = fs::read_to_string(&file).unwrap();
    write(&file, &format!("{text}\n# a fix in the release\n"));
    let out = tools::output(
        Command::new("python3")
            .arg(root().join("scripts/r2d_fixtures.py"))
            .arg(ctx.join("fixtures/r2d")),
    );
    assert!(out.status.success(), "{out:?}");
    let after = layers(&ctx.join("recipes/r2d.toml"), &tmp.path().join("b"));

    assert_eq!(before.len(), after.len());
    let changed: Vec<&str> = before
        .iter()
        .zip(&after)
        .filter(|(b, a)| b.1 != a.1)
        .map(|(_, a)| a.0.as_str())
        .collect();
    assert_eq!(changed, ["python-app"], "{before:?}\n{after:?}");
}

//! `recipes/r2d.toml` and its offline inputs: the committed fixtures are what
//! `scripts/r2d_fixtures.py` makes from their sources, `file:` URLs relative
//! to the context stay inside it, and the built image's Python packages
//! import and its launchers run under the machine's python3.11; and a
//! release that changes one app file rebuilds only the app layer (the others
//! from the layer cache) and uploads only that layer and the config.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use crate::common::*;
use crate::pair::{blob_upload_bytes, body_bytes, uploads_by_digest, Pair};
use crate::push::{read_layout, served};
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

/// A copy of the recipes and `fixtures/r2d` under `dir`, to change freely:
/// the context of `CTX/recipes/r2d.toml`.
fn r2d_context(dir: &Path) -> PathBuf {
    let ctx = dir.join("ctx");
    copy_tree(&root().join("recipes"), &ctx.join("recipes"));
    copy_tree(&root().join("fixtures/r2d"), &ctx.join("fixtures/r2d"));
    ctx
}

/// A release's fix: one line added to one app module, and the app's wheel
/// and lock remade from it.
fn change_one_app_file(ctx: &Path) {
    let file = ctx.join("fixtures/r2d/app/diagram_to_iac/tools/terraform.py");
    let text = fs::read_to_string(&file).unwrap();
    write(&file, &format!("{text}\n# a fix in the release\n"));
    let out = tools::output(
        Command::new("python3")
            .arg(root().join("scripts/r2d_fixtures.py"))
            .arg(ctx.join("fixtures/r2d")),
    );
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn a_release_that_changes_one_app_file_changes_only_the_app_layer() {
    let tmp = TempDir::new().unwrap();
    let ctx = r2d_context(tmp.path());
    let before = layers(&ctx.join("recipes/r2d.toml"), &tmp.path().join("a"));
    change_one_app_file(&ctx);
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

/// A layer of a `build --json` report: (source, digest, cached).
type Built = (String, String, bool);

/// `build --json` of the R2D recipe `recipe` for linux/amd64 into `out`,
/// with `cache` as `--cache-dir` (its layer cache in `cache/layers`) and
/// `extra` flags, run by `cmd`: the report.
fn release(
    mut cmd: Command,
    recipe: &Path,
    cache: &Path,
    out: &Path,
    extra: &[String],
) -> serde_json::Value {
    let r = run(cmd
        .args(["build", "--quiet", "--json", "--set", "VERSION=1.4.0"])
        .args(["--platform", "linux/amd64", "--cache-dir"])
        .arg(cache)
        .arg("-o")
        .arg(out)
        .args(extra)
        .arg(recipe));
    assert_ok(&r);
    serde_json::from_str(&r.stdout).expect("build --json prints JSON")
}

/// Every layer of the (one-platform) build report `build`, the base's too.
fn built(build: &serde_json::Value) -> Vec<Built> {
    build["images"][0]["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| {
            (
                l["source"].as_str().unwrap().to_string(),
                l["digest"].as_str().unwrap().to_string(),
                l["cached"].as_bool().expect("cached is a boolean"),
            )
        })
        .collect()
}

/// The recipe's own layers (a base layer is never built, so never cached).
fn recipe_layers(layers: &[Built]) -> Vec<&Built> {
    layers.iter().filter(|l| l.0 != "base").collect()
}

/// Sources of the layers whose digest differs between two builds.
fn changed<'a>(before: &[Built], after: &'a [Built]) -> Vec<&'a str> {
    assert_eq!(before.len(), after.len(), "{before:?}\n{after:?}");
    assert!(before.iter().zip(after).all(|(b, a)| b.0 == a.0));
    before
        .iter()
        .zip(after)
        .filter(|(b, a)| b.1 != a.1)
        .map(|(_, a)| a.0.as_str())
        .collect()
}

#[test]
fn a_release_takes_every_layer_but_the_app_from_the_layer_cache() {
    let tmp = TempDir::new().unwrap();
    let ctx = r2d_context(tmp.path());
    let recipe = ctx.join("recipes/r2d.toml");
    let cache = tmp.path().join("cache");
    let build = |out: &str| {
        built(&release(
            boxwright(),
            &recipe,
            &cache,
            &tmp.path().join(out),
            &[],
        ))
    };

    // Figure: a cold build makes every layer, and keeps them in DIR/layers.
    let cold = build("a");
    assert!(recipe_layers(&cold).len() >= 5, "{cold:?}");
    assert!(recipe_layers(&cold).iter().all(|l| !l.2), "{cold:?}");
    assert!(
        fs::read_dir(cache.join("layers")).is_ok_and(|mut d| d.next().is_some()),
        "no layer cache in {}",
        cache.display()
    );
    // Figure: the same build again takes every layer from the cache, same digests.
    let warm = build("b");
    assert!(recipe_layers(&warm).iter().all(|l| l.2), "{warm:?}");
    assert_eq!(changed(&cold, &warm), Vec::<&str>::new());

    // Figure: after one app file changed, only python-app is made again;
    // every other layer comes from the cache with its digest unchanged.
    change_one_app_file(&ctx);
    let next = build("c");
    let made: Vec<&str> = recipe_layers(&next)
        .iter()
        .filter(|l| !l.2)
        .map(|l| l.0.as_str())
        .collect();
    assert_eq!(made, ["python-app"], "{next:?}");
    assert_eq!(changed(&warm, &next), ["python-app"]);
}

/// Makes the context's base stand-in (`fixtures/r2d/python-3.11-slim`,
/// layers of under 1 KB) nearer a real base's size: `fixtures/r2d/base.toml`
/// with `mib` MiB of incompressible bytes in one more layer, for linux/amd64.
/// python:3.11-slim's layers are tens of MB compressed.
fn grow_base(ctx: &Path, mib: usize) {
    let dir = ctx.join("fixtures/r2d");
    fs::write(dir.join("libpython.bin"), noise(mib << 20, 311)).unwrap();
    let toml = fs::read_to_string(dir.join("base.toml")).unwrap();
    write(
        &dir.join("base.toml"),
        &format!(
            "{toml}\n[[layer]]\nname = \"python\"\n\n[[layer.entry]]\n\
             src = \"libpython.bin\"\ndest = \"/usr/local/lib/libpython3.11.so.1.0\"\n"
        ),
    );
    let base = dir.join("python-3.11-slim");
    fs::remove_dir_all(&base).unwrap();
    ok(boxwright()
        .args(["build", "--quiet", "--platform", "linux/amd64", "-o"])
        .arg(&base)
        .arg(dir.join("base.toml")));
}

#[test]
fn a_release_pushed_to_two_registries_uploads_only_its_app_layer_and_config() {
    let pair = Pair::start();
    let tmp = TempDir::new().unwrap();
    let ctx = r2d_context(tmp.path());
    // On the committed stand-in the whole image is about 10 KB, and the app
    // layer and config a release must send are half of it: the share is
    // measured on a base of 4 MiB (still a tenth of the real one).
    grow_base(&ctx, 4);
    let recipe = ctx.join("recipes/r2d.toml");
    let cache = tmp.path().join("cache");
    let refs: Vec<String> = pair
        .proxies()
        .iter()
        .map(|p| format!("{}/acme/diagram-to-iac-r2d:1.4.0", p.host()))
        .collect();
    let mut flags = vec!["--push".to_string()];
    for r in &refs {
        flags.extend(["--to".to_string(), r.clone()]);
    }
    let push = |out: &str| release(pair.cmd(), &recipe, &cache, &tmp.path().join(out), &flags);

    let first = push("a");
    assert_eq!(
        first["push"]["digest"], first["build"]["digest"],
        "{first:#}"
    );
    change_one_app_file(&ctx);
    pair.reset();
    let second = push("b");
    let (digest, manifest_size, blobs) = read_layout(&tmp.path().join("b"));
    assert_eq!(second["push"]["digest"], digest.as_str(), "{second:#}");
    let (before, after) = (built(&first["build"]), built(&second["build"]));
    assert_eq!(changed(&before, &after), ["python-app"]);
    let app = &after.iter().find(|l| l.0 == "python-app").unwrap().1;

    // What the registries lack: the new app layer and the new config.
    let (_, _, old_blobs) = read_layout(&tmp.path().join("a"));
    let new: BTreeMap<&String, u64> = blobs
        .iter()
        .filter(|(d, _)| !old_blobs.contains_key(*d))
        .map(|(d, s)| (d, *s))
        .collect();
    assert_eq!(new.len(), 2, "{new:?}");
    assert!(new.contains_key(app), "{new:?}");
    let image_bytes: u64 = blobs.values().sum();
    for (p, reg) in pair.proxies().into_iter().zip([&pair.reg_b, &pair.reg_a]) {
        let log = p.log();
        let sent = blob_upload_bytes(&log);
        eprintln!(
            "{}: {sent} blob bytes sent of {image_bytes} ({:.3} %), manifest {manifest_size}",
            p.host(),
            sent as f64 * 100.0 / image_bytes as f64
        );
        // Figure: each new blob uploaded once, nothing else; the bytes sent
        // are theirs, at most 1 % of the image's, plus one manifest.
        let ups = uploads_by_digest(&log);
        assert_eq!(
            ups.keys().collect::<Vec<_>>(),
            new.keys().copied().collect::<Vec<_>>(),
            "{}: {log:#?}",
            p.host()
        );
        assert!(ups.values().all(|n| *n == 1), "{ups:?}");
        assert_eq!(sent, new.values().sum::<u64>(), "{}", p.host());
        assert!(
            sent * 100 <= image_bytes,
            "{}: {sent} blob bytes sent, more than 1 % of {image_bytes}",
            p.host()
        );
        assert_eq!(body_bytes(p), sent + manifest_size, "{}", p.host());
        // The registry holds the changed layer, and serves the new image.
        assert!(
            reg.stored_blobs().contains(app),
            "{app} not on {}",
            p.host()
        );
        assert_eq!(
            served(&pair, p, "acme/diagram-to-iac-r2d:1.4.0"),
            digest,
            "{}",
            p.host()
        );
    }
    let v = pair.run(&["verify", "--json", &refs[0], &refs[1]]);
    assert_ok(&v);
    assert!(v.stdout.contains(&digest), "{}", v.stdout);
}

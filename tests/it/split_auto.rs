//! `split = "auto"` on a `[[layer]]`: the files of a directory `src` go into
//! a stable layer (vendored directories, binaries and data by name, big
//! files, the `stable` globs) and a changing one (the rest), named in the
//! history. Editing a source file changes the changing layer only; the
//! union of the layers is the unsplit layer; hard links stay in one layer;
//! `max_layers` cuts the stable files by top-level directory. Bad settings
//! are refused with exit 2 naming the line.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde_json::Value;

use crate::common::*;
use crate::support::tempdir;

/// One tar entry: type flag, mode, link name and content.
type Item = (u8, u32, String, Vec<u8>);

/// Each layer of the one image in `out`: path -> entry (directories end in `/`).
fn layers(out: &Path) -> Vec<BTreeMap<String, Item>> {
    manifest(out).0["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let bytes = fs::read(blob(out, l["digest"].as_str().unwrap())).unwrap();
            let mut ar = tar::Archive::new(&bytes[..]);
            let mut map = BTreeMap::new();
            for e in ar.entries().unwrap() {
                let mut e = e.unwrap();
                let path = String::from_utf8(e.path_bytes().into_owned()).unwrap();
                let h = e.header();
                let link = h
                    .link_name_bytes()
                    .map(|l| String::from_utf8(l.into_owned()).unwrap())
                    .unwrap_or_default();
                let (kind, mode) = (h.entry_type().as_byte(), h.mode().unwrap());
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                assert!(
                    map.insert(path.clone(), (kind, mode, link, data)).is_none(),
                    "{path} twice in one layer"
                );
            }
            map
        })
        .collect()
}

fn blob(out: &Path, digest: &str) -> std::path::PathBuf {
    out.join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// The manifest and the config of the one image in `out`.
fn manifest(out: &Path) -> (Value, Value) {
    let read = |p: &Path| -> Value { serde_json::from_slice(&fs::read(p).unwrap()).unwrap() };
    let index = read(&out.join("index.json"));
    let m = read(&blob(
        out,
        index["manifests"][0]["digest"].as_str().unwrap(),
    ));
    let c = read(&blob(out, m["config"]["digest"].as_str().unwrap()));
    (m, c)
}

fn history(out: &Path) -> Vec<String> {
    manifest(out).1["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["created_by"].as_str().unwrap().to_string())
        .collect()
}

/// Files (not directories) of a layer, relative to /opt/app.
fn files(layer: &BTreeMap<String, Item>) -> Vec<String> {
    layer
        .keys()
        .filter(|p| !p.ends_with('/'))
        .map(|p| p.trim_start_matches("opt/app/").to_string())
        .collect()
}

/// An app tree: sources, a config, vendored code, a big binary, a shared
/// library, an image, an empty directory, and a file with two links (one
/// under node_modules, one in src).
fn tree(dir: &Path) {
    let app = dir.join("app");
    write(&app.join("main.py"), "print('hello')\n");
    write(&app.join("config.yaml"), "port: 8080\n");
    write(&app.join("src/util.py"), "def f(): pass\n");
    write(
        &app.join("node_modules/left-pad/index.js"),
        "module.exports = 1\n",
    );
    write(&app.join("node_modules/left-pad/package.json"), "{}\n");
    fs::create_dir_all(app.join("bin")).unwrap();
    fs::write(app.join("bin/tool"), noise(300 * 1024, 7)).unwrap();
    chmod(&app.join("bin/tool"), 0o755);
    fs::create_dir_all(app.join("lib")).unwrap();
    fs::write(app.join("lib/libfoo.so.1"), noise(1000, 8)).unwrap();
    write(&app.join("static/style.css"), "body {}\n");
    fs::write(app.join("static/logo.png"), noise(2000, 9)).unwrap();
    fs::create_dir_all(app.join("empty")).unwrap();
    chmod(&app.join("empty"), 0o700);
    write(&app.join("node_modules/x/shared.js"), "shared\n");
    fs::hard_link(
        app.join("node_modules/x/shared.js"),
        app.join("src/shared.js"),
    )
    .unwrap();
}

fn recipe(layer: &str) -> String {
    format!(
        "[image]\nname = \"t\"\n\n[[layer]]\nname = \"app\"\n{layer}\n[[layer.entry]]\nsrc = \"app\"\ndest = \"/opt/app\"\n"
    )
}

fn build(dir: &Path, recipe: &str) -> Run {
    write(&dir.join("recipe.toml"), recipe);
    run(boxwright()
        .args(["build", "--quiet", "--compression", "none", "-o"])
        .arg(dir.join("out"))
        .arg(dir.join("recipe.toml")))
}

const STABLE: &[&str] = &[
    "bin/tool",
    "lib/libfoo.so.1",
    "node_modules/left-pad/index.js",
    "node_modules/left-pad/package.json",
    "node_modules/x/shared.js",
    "src/shared.js",
    "static/logo.png",
];

const CHANGING: &[&str] = &["config.yaml", "main.py", "src/util.py", "static/style.css"];

#[test]
fn split_auto_puts_stable_and_changing_files_apart_and_their_union_is_the_layer() {
    let dir = tempdir();
    tree(dir.path());
    let out = dir.path().join("out");
    assert_ok(&build(dir.path(), &recipe("")));
    let whole = layers(&out);
    assert_eq!(whole.len(), 1);

    assert_ok(&build(dir.path(), &recipe("split = \"auto\"\n")));
    let parts = layers(&out);
    assert_eq!(
        history(&out),
        [
            "boxwright build: app (stable)",
            "boxwright build: app (changing)"
        ]
    );
    assert_eq!(files(&parts[0]), STABLE);
    assert_eq!(files(&parts[1]), CHANGING);
    // The second link is a hard link into its own layer.
    let (kind, _, link, _) = &parts[0]["opt/app/src/shared.js"];
    assert_eq!(
        (*kind, link.as_str()),
        (b'1', "opt/app/node_modules/x/shared.js")
    );
    // The empty directory keeps its mode, in the changing layer.
    assert_eq!(parts[1]["opt/app/empty/"].1, 0o700);
    assert!(!parts[0].contains_key("opt/app/empty/"));
    // Each layer has the directories above its files, as in the whole layer,
    // from the entry's own /opt/app down; the parent above it (/opt) only the
    // image's first layer writes, the next leaves it to the layer below.
    assert!(!parts[1].contains_key("opt/"));
    for part in &parts {
        for path in part.keys() {
            let mut p = path.trim_end_matches('/');
            while let Some((parent, _)) = p.rsplit_once('/') {
                if parent == "opt" && !part.contains_key("opt/") {
                    break;
                }
                assert_eq!(part[&format!("{parent}/")], whole[0][&format!("{parent}/")]);
                p = parent;
            }
        }
    }
    assert!(!parts[1].contains_key("opt/app/node_modules/"));
    // Together they hold every entry of the whole layer, the same.
    let mut union = BTreeMap::new();
    for part in &parts {
        for (path, item) in part {
            if let Some(old) = union.insert(path.clone(), item.clone()) {
                assert!(path.ends_with('/') && old == *item, "{path} in two layers");
            }
        }
    }
    assert_eq!(union, whole[0]);

    // umoci unpacks the layers in order into the tree that was copied.
    let bundle = dir.path().join("bundle");
    let image = format!("{}:latest", out.display());
    let mut args = vec!["unpack"];
    if unsafe { libc::geteuid() } != 0 {
        args.push("--rootless");
    }
    args.extend(["--image", &image, bundle.to_str().unwrap()]);
    tool("umoci", &args);
    let app = bundle.join("rootfs/opt/app");
    for rel in STABLE.iter().chain(CHANGING) {
        let (a, b) = (app.join(rel), dir.path().join("app").join(rel));
        assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap(), "{rel}");
        let (ma, mb) = (fs::metadata(&a).unwrap(), fs::metadata(&b).unwrap());
        assert_eq!(ma.mode(), mb.mode(), "{rel}");
    }
    let ino = |rel: &str| fs::metadata(app.join(rel)).unwrap().ino();
    assert_eq!(ino("src/shared.js"), ino("node_modules/x/shared.js"));
}

/// `build --json`: per platform, each layer's (source, digest).
fn json_layers(dir: &Path) -> Vec<Vec<(String, String)>> {
    let r = run(boxwright()
        .args(["build", "--json", "--quiet", "-o"])
        .arg(dir.join("out"))
        .arg(dir.join("recipe.toml")));
    assert_ok(&r);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    v["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            i["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| {
                    let s = |k: &str| l[k].as_str().unwrap().to_string();
                    (s("source"), s("digest"))
                })
                .collect()
        })
        .collect()
}

#[test]
fn split_auto_editing_a_source_changes_the_changing_layer_only() {
    let dir = tempdir();
    tree(dir.path());
    let r = recipe("split = \"auto\"\n").replace(
        "name = \"t\"\n",
        "name = \"t\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n",
    );
    write(&dir.path().join("recipe.toml"), &r);
    let first = json_layers(dir.path());
    assert_eq!(first.len(), 2);
    let names: Vec<&str> = first[0].iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(names, ["app (stable)", "app (changing)"]);
    assert_eq!(first[0], first[1], "both platforms share the layers");
    assert_eq!(
        json_layers(dir.path()),
        first,
        "the same tree, the same layers"
    );
    write(&dir.path().join("app/main.py"), "print('hello, world')\n");
    write(&dir.path().join("app/src/new.py"), "x = 1\n");
    let second = json_layers(dir.path());
    assert_eq!(
        second[0][0], first[0][0],
        "the stable layer keeps its digest"
    );
    assert_ne!(second[0][1].1, first[0][1].1);
    assert_eq!(second[0], second[1]);
}

#[test]
fn split_auto_stable_globs_move_files_and_max_layers_cuts_by_directory() {
    let dir = tempdir();
    tree(dir.path());
    let out = dir.path().join("out");
    assert_ok(&build(
        dir.path(),
        &recipe("split = \"auto\"\nstable = [\"static/**\", \"config.yaml\"]\n"),
    ));
    let parts = layers(&out);
    let mut stable: Vec<&str> = STABLE.to_vec();
    stable.extend(["config.yaml", "static/style.css"]);
    stable.sort();
    assert_eq!(files(&parts[0]), stable);
    assert_eq!(files(&parts[1]), ["main.py", "src/util.py"]);

    // Three layers: the largest stable directory (bin/, 300 KiB) alone, the
    // other stable files together, then the changing ones.
    assert_ok(&build(
        dir.path(),
        &recipe("split = \"auto\"\nmax_layers = 3\n"),
    ));
    assert_eq!(
        history(&out),
        [
            "boxwright build: app (stable: bin/)",
            "boxwright build: app (stable: rest)",
            "boxwright build: app (changing)",
        ]
    );
    let parts = layers(&out);
    assert_eq!(files(&parts[0]), ["bin/tool"]);
    assert_eq!(files(&parts[1]), &STABLE[1..]);
    assert_eq!(files(&parts[2]), CHANGING);

    // A budget above the number of directories gives each its own layer.
    assert_ok(&build(
        dir.path(),
        &recipe("split = \"auto\"\nmax_layers = 10\n"),
    ));
    let names = history(&out);
    assert_eq!(
        names,
        [
            "boxwright build: app (stable: bin/)",
            "boxwright build: app (stable: static/)",
            "boxwright build: app (stable: lib/)",
            "boxwright build: app (stable: node_modules/)",
            "boxwright build: app (changing)",
        ]
    );
    let parts = layers(&out);
    let all: Vec<String> = parts.iter().flat_map(files).collect();
    assert_eq!(all.len(), STABLE.len() + CHANGING.len());
    // The two links of one file are in one layer.
    let with_link = parts
        .iter()
        .find(|p| p.contains_key("opt/app/src/shared.js"))
        .unwrap();
    assert!(with_link.contains_key("opt/app/node_modules/x/shared.js"));
}

#[test]
fn split_auto_keeps_the_trees_directory_for_files_of_other_entries_below_it() {
    // A tree of stable files only, owned by 1000 in a 0750 directory, and
    // a `content` file inside it: the changing layer holds that file under
    // the tree's own directory, not an added 0755 root one, so unpacking the
    // layers in order leaves /opt/app as the whole layer has it.
    let dir = tempdir();
    let app = dir.path().join("app");
    write(&app.join("vendor/lib/a.js"), "a\n");
    fs::write(app.join("big.dat"), noise(300 * 1024, 3)).unwrap();
    chmod(&app, 0o750);
    let out = dir.path().join("out");
    let text = |split: &str| {
        format!(
            "[image]\nname = \"t\"\n\n[[layer]]\nname = \"app\"\nuid = 1000\n{split}\n[[layer.entry]]\nsrc = \"app\"\ndest = \"/opt/app\"\n\n[[layer.entry]]\ncontent = \"1.0\"\ndest = \"/opt/app/VERSION\"\n[[layer.entry]]\ndir = true\ndest = \"/opt/app/vendor/cache\"\n"
        )
    };
    assert_ok(&build(dir.path(), &text("")));
    let whole = layers(&out).remove(0);
    assert_ok(&build(dir.path(), &text("split = \"auto\"\n")));
    let parts = layers(&out);
    assert_eq!(files(&parts[0]), ["big.dat", "vendor/lib/a.js"]);
    assert_eq!(files(&parts[1]), ["VERSION"]);
    for part in &parts {
        assert_eq!(part["opt/app/"], whole["opt/app/"]);
        assert_eq!(part["opt/app/"].1, 0o750);
    }
    // The empty directory from `dir = true` is changing, under its real parents.
    assert_eq!(
        parts[1]["opt/app/vendor/cache/"],
        whole["opt/app/vendor/cache/"]
    );
    assert_eq!(parts[1]["opt/app/vendor/"], whole["opt/app/vendor/"]);
    assert!(!parts[1].contains_key("opt/app/vendor/lib/"));
}

#[test]
fn split_auto_is_refused_where_it_cannot_apply() {
    let dir = tempdir();
    tree(dir.path());
    let cases: &[(&str, &str)] = &[
        ("split = \"auto\"\nmax_layers = 1\n", "recipe.toml:7:14"),
        ("split = \"size\"\n", "recipe.toml:6:9"),
        (
            "split = \"auto\"\nstable = [\"ok/**\", \"a[\"]\n",
            "recipe.toml:7:20",
        ),
        ("stable = [\"static/**\"]\n", "recipe.toml:6:10"),
        ("max_layers = 3\n", "recipe.toml:6:14"),
    ];
    for (layer, at) in cases {
        let r = build(dir.path(), &recipe(layer));
        assert_code(&r, 2);
        assert!(r.stderr.contains(at), "{layer}: {}", r.stderr);
        assert!(!dir.path().join("out").exists(), "{layer}");
    }
    // No directory src to split.
    let text = "[image]\nname = \"t\"\n[[layer]]\nsplit = \"auto\"\n[[layer.entry]]\ncontent = \"x\"\ndest = \"/x\"\n";
    let r = build(dir.path(), text);
    assert_code(&r, 2);
    assert!(r.stderr.contains("recipe.toml:4:9"), "{}", r.stderr);
    // On a [layer.python], in either table.
    for py in [
        "[[layer]]\nsplit = \"auto\"\n[layer.python]\nlock = \"l\"\nversion = \"3.11\"\n",
        "[[layer]]\n[layer.python]\nlock = \"l\"\nversion = \"3.11\"\nsplit = \"auto\"\n",
    ] {
        let r = build(dir.path(), &format!("[image]\nname = \"t\"\n{py}"));
        assert_code(&r, 2);
        let line = if py.starts_with("[[layer]]\nsplit") {
            4
        } else {
            7
        };
        assert!(
            r.stderr.contains(&format!("recipe.toml:{line}:")),
            "{py}: {}",
            r.stderr
        );
    }
}

/// A split `[[layer]]` above another layer leaves the tree's own `dest`
/// to the layers below, as an unsplit one does: no part writes `opt/app/`
/// (its mode and owner would replace the directory there), while the
/// directories inside the tree are written in each part that needs them.
#[test]
fn split_auto_above_another_layer_leaves_the_trees_dest_to_it() {
    let dir = tempdir();
    tree(dir.path());
    let below = "[[layer]]\nname = \"below\"\n[[layer.entry]]\ndir = true\ndest = \"/opt/app\"\nmode = 0o1777\n\n";
    let recipe =
        recipe("split = \"auto\"\n").replace("[[layer]]\n", &format!("{below}[[layer]]\n"));
    let out = dir.path().join("out");
    assert_ok(&build(dir.path(), &recipe));
    let parts = layers(&out);
    assert_eq!(parts.len(), 3, "{:?}", history(&out));
    assert_eq!(parts[0]["opt/app/"].1, 0o1777);
    for part in &parts[1..] {
        assert!(!part.contains_key("opt/app/"), "{:?}", part.keys());
    }
    assert_eq!(files(&parts[1]), STABLE);
    assert_eq!(files(&parts[2]), CHANGING);
    assert!(parts[1].contains_key("opt/app/node_modules/"));
}

//! `[layer.python]`: the packages of a lock as layers of their own. One
//! layer per package (ordered by name, named in the image history), so
//! that bumping one package changes one layer; `max_layers` makes the
//! smallest share one; `split = "one"` puts them all in one. The Python
//! version may come from the base image's `PYTHON_VERSION`; without either
//! the recipe is refused naming its line. Downloads go to `--cache-dir`, and
//! a pushed SBOM lists each package and each downloaded file.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::common::*;
use crate::python_pip::wheel;
use crate::python_url::{build_layer, layer_entries, spdx_packages};
use crate::support::{tempdir, Registry};

const SP: &str = "usr/local/lib/python3.11/site-packages";

fn json(out: &Path, digest: &str) -> Value {
    let path = out
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

/// The manifest and config of the one image in layout `out`.
fn image(out: &Path) -> (Value, Value) {
    let index: Value = serde_json::from_slice(&fs::read(out.join("index.json")).unwrap()).unwrap();
    let manifest = json(out, index["manifests"][0]["digest"].as_str().unwrap());
    let config = json(out, manifest["config"]["digest"].as_str().unwrap());
    (manifest, config)
}

/// The layer digests of the one image in layout `out`.
pub fn layers(out: &Path) -> Vec<String> {
    image(out).0["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

/// `created_by` of each history entry.
fn history(out: &Path) -> Vec<String> {
    image(out).1["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["created_by"].as_str().unwrap().to_string())
        .collect()
}

/// A pure wheel `NAME-VERSION` in `dir` with a module of `size` bytes.
fn pure(dir: &Path, name: &str, version: &str, size: usize) -> String {
    let module = format!("{name}/__init__.py");
    let data = noise(size, size as u64 + version.len() as u64);
    pure_with(dir, name, version, &[(&module, 0o644, &data)])
}

/// A pure wheel `NAME-VERSION` in `dir` with these (name, mode, content)
/// members besides its METADATA and WHEEL.
fn pure_with(dir: &Path, name: &str, version: &str, members: &[(&str, u32, &[u8])]) -> String {
    fs::create_dir_all(dir).unwrap();
    let file = format!("{name}-{version}-py3-none-any.whl");
    let meta = format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n");
    let info = format!("{name}-{version}.dist-info");
    let (meta_name, wheel_name) = (format!("{info}/METADATA"), format!("{info}/WHEEL"));
    let mut all = members.to_vec();
    all.push((&meta_name, 0o644, meta.as_bytes()));
    all.push((
        &wheel_name,
        0o644,
        b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    ));
    wheel(&dir.join(&file), &info, &all);
    file
}

/// A pylock.toml of these (name, version, wheel file in `wheels/`).
fn pylock(dir: &Path, packages: &[(&str, &str, &str)]) {
    let mut text = "lock-version = \"1.0\"\n".to_string();
    for (name, version, file) in packages {
        text.push_str(&format!(
            "[[packages]]\nname = \"{name}\"\nversion = \"{version}\"\nwheels = [{{ path = \"wheels/{file}\" }}]\n"
        ));
    }
    write(&dir.join("pylock.toml"), &text);
}

fn recipe(extra: &str) -> String {
    format!("[image]\nname = \"t\"\n[[layer]]\nname = \"python-deps\"\n[layer.python]\nlock = \"pylock.toml\"\nversion = \"3.11\"\n{extra}")
}

/// Three packages of different sizes: alpha 10 KB, beta 1 KB, gamma 5 KB
/// (and delta 20 KB with `four`).
fn packages(dir: &Path, four: bool) {
    let w = dir.join("wheels");
    let mut list = vec![
        ("alpha", "1.0", pure(&w, "alpha", "1.0", 10_000)),
        ("beta", "1.0", pure(&w, "beta", "1.0", 1_000)),
        ("gamma", "1.0", pure(&w, "gamma", "1.0", 5_000)),
    ];
    if four {
        list.push(("delta", "1.0", pure(&w, "delta", "1.0", 20_000)));
    }
    let list: Vec<(&str, &str, &str)> = list.iter().map(|(n, v, f)| (*n, *v, f.as_str())).collect();
    pylock(dir, &list);
}

/// The regular files of the image in `out`: path -> content.
fn files(out: &Path) -> Vec<(String, Vec<u8>)> {
    let mut f: Vec<(String, Vec<u8>)> = layer_entries(out)
        .into_iter()
        .filter(|e| !e.0.ends_with('/'))
        .map(|e| (e.0, e.3))
        .collect();
    f.sort();
    f
}

#[test]
fn python_layers_one_per_package_named_and_a_bump_changes_one() {
    let dir = tempdir();
    packages(dir.path(), false);
    let out = dir.path().join("out");
    let cache = dir.path().join("cache");
    assert_ok(&build_layer(dir.path(), &cache, &recipe("")));
    let first = layers(&out);
    assert_eq!(first.len(), 3);
    assert_eq!(
        history(&out),
        [
            "boxwright build: python-deps: alpha==1.0",
            "boxwright build: python-deps: beta==1.0",
            "boxwright build: python-deps: gamma==1.0",
        ]
    );
    // Each layer holds its package only.
    let blob = |d: &str| {
        out.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    for (digest, name) in first.iter().zip(["alpha", "beta", "gamma"]) {
        let bytes = fs::read(blob(digest)).unwrap();
        let paths: Vec<String> = tar::Archive::new(&bytes[..])
            .entries()
            .unwrap()
            .map(|e| String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap())
            .filter(|p| p.ends_with(".py"))
            .collect();
        assert_eq!(paths, [format!("{SP}/{name}/__init__.py")], "{name}");
    }
    // The same build again is the same image; a new beta changes its layer only.
    assert_ok(&build_layer(dir.path(), &cache, &recipe("")));
    assert_eq!(layers(&out), first);
    let w = dir.path().join("wheels");
    let beta = pure(&w, "beta", "1.1", 1_000);
    pylock(
        dir.path(),
        &[
            ("alpha", "1.0", "alpha-1.0-py3-none-any.whl"),
            ("beta", "1.1", &beta),
            ("gamma", "1.0", "gamma-1.0-py3-none-any.whl"),
        ],
    );
    assert_ok(&build_layer(dir.path(), &cache, &recipe("")));
    let bumped = layers(&out);
    assert_eq!(bumped.len(), 3);
    let changed: Vec<usize> = (0..3).filter(|&i| bumped[i] != first[i]).collect();
    assert_eq!(changed, [1], "{first:?} -> {bumped:?}");
    assert_eq!(history(&out)[1], "boxwright build: python-deps: beta==1.1");
}

#[test]
fn python_layers_max_layers_groups_the_smallest_and_split_one_makes_one() {
    let dir = tempdir();
    packages(dir.path(), true);
    let out = dir.path().join("out");
    let cache = dir.path().join("cache");
    assert_ok(&build_layer(dir.path(), &cache, &recipe("")));
    assert_eq!(layers(&out).len(), 4);
    let all = files(&out);

    // beta (1 KB) and gamma (5 KB) are the two smallest: they share a layer.
    assert_ok(&build_layer(
        dir.path(),
        &cache,
        &recipe("max_layers = 3\n"),
    ));
    assert_eq!(
        history(&out),
        [
            "boxwright build: python-deps: alpha==1.0",
            "boxwright build: python-deps: beta==1.0, gamma==1.0",
            "boxwright build: python-deps: delta==1.0",
        ]
    );
    assert_eq!(files(&out), all);
    assert_ok(&build_layer(
        dir.path(),
        &cache,
        &recipe("max_layers = 1\n"),
    ));
    assert_eq!(
        history(&out),
        ["boxwright build: python-deps: alpha==1.0, beta==1.0, delta==1.0, gamma==1.0"]
    );
    assert_eq!(files(&out), all);

    assert_ok(&build_layer(
        dir.path(),
        &cache,
        &recipe("split = \"one\"\n"),
    ));
    assert_eq!(history(&out), ["boxwright build: python-deps"]);
    assert_eq!(files(&out), all);

    for (extra, needle) in [
        ("max_layers = 0\n", "max_layers = 0 must be 1 or more"),
        (
            "split = \"one\"\nmax_layers = 2\n",
            "max_layers only applies",
        ),
        (
            "split = \"wheel\"\n",
            "split = \"wheel\" is not \"package\" or \"one\"",
        ),
    ] {
        let r = build_layer(dir.path(), &cache, &recipe(extra));
        assert_code(&r, 2);
        assert!(r.stderr.contains(needle), "{extra}: {}", r.stderr);
        assert!(r.stderr.contains("recipe.toml:"), "{}", r.stderr);
    }
}

/// An entry's `python` shares the table of a `[layer.python]`, but what
/// only a layer of its own can do is refused at the key, exit 2, before any
/// lock is read.
#[test]
fn an_entrys_python_refuses_what_only_a_python_layer_does() {
    let dir = tempdir();
    let cache = dir.path().join("cache");
    for (extra, line_col, needle) in [
        (
            "split = \"package\"",
            "recipe.toml:6:43",
            "an entry's packages all go into its layer",
        ),
        (
            "prefix = \"/opt\"",
            "recipe.toml:6:44",
            "prefix does not go in an entry's python: its packages go under the entry's dest",
        ),
        (
            "max_layers = 3",
            "recipe.toml:6:48",
            "max_layers does not go in an entry's python",
        ),
    ] {
        let recipe = format!(
            "[image]\nname = \"t\"\n[[layer]]\n[[layer.entry]]\ndest = \"/usr/local\"\npython = {{ lock = \"missing.toml\", {extra} }}\n"
        );
        let r = build_layer(dir.path(), &cache, &recipe);
        assert_code(&r, 2);
        assert!(r.stderr.contains(needle), "{extra}: {}", r.stderr);
        assert!(r.stderr.contains(line_col), "{extra}: {}", r.stderr);
        assert!(!r.stderr.contains("missing.toml"), "{}", r.stderr);
    }
}

/// An OCI layout `name` in `dir` whose config sets `env` (`K=V` lines).
fn base_layout(dir: &Path, name: &str, env: &str) {
    let recipe = dir.join(format!("{name}.toml"));
    write(
        &recipe,
        &format!("[image]\nname = \"{name}\"\n[config.env]\n{env}\n[[layer]]\n[[layer.entry]]\ndest = \"/etc/base\"\ncontent = \"base\\n\"\n"),
    );
    assert_ok(&run(boxwright()
        .args(["build", "--quiet", "--compression", "none", "-o"])
        .arg(dir.join(name))
        .arg(&recipe)));
}

/// A CPython 3.12 wheel, `fast` 1.0, in `dir/wheels`, and a lock naming it.
fn cp312_wheel_and_lock(dir: &Path) {
    let w = dir.join("wheels");
    let file = "fast-1.0-cp312-cp312-manylinux_2_17_x86_64.whl";
    fs::create_dir_all(&w).unwrap();
    wheel(
        &w.join(file),
        "fast-1.0.dist-info",
        &[
            ("fast/__init__.py", 0o644, b"X = 1\n"),
            (
                "fast-1.0.dist-info/WHEEL",
                0o644,
                b"Wheel-Version: 1.0\nRoot-Is-Purelib: false\n",
            ),
        ],
    );
    pylock(dir, &[("fast", "1.0", file)]);
}

#[test]
fn python_layers_take_the_version_from_the_bases_python_version() {
    let dir = tempdir();
    cp312_wheel_and_lock(dir.path());
    base_layout(dir.path(), "py312", "PYTHON_VERSION = \"3.12.4\"");
    base_layout(dir.path(), "py311", "PYTHON_VERSION = \"3.11.9\"");
    base_layout(dir.path(), "nopy", "LANG = \"C.UTF-8\"");
    let cache = dir.path().join("cache");
    let with_base = |base: &str| {
        format!("[image]\nname = \"t\"\nbase = \"oci:{base}\"\n[[layer]]\n[layer.python]\nlock = \"pylock.toml\"\n")
    };
    assert_ok(&build_layer(dir.path(), &cache, &with_base("py312")));
    let paths: Vec<String> = layer_entries(&dir.path().join("out"))
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert!(
        paths.contains(&"usr/local/lib/python3.12/site-packages/fast/__init__.py".to_string()),
        "{paths:?}"
    );
    assert_eq!(
        history(&dir.path().join("out")).last().unwrap(),
        "boxwright build: python: fast==1.0"
    );

    // 3.11 from the base: the cp312 wheel does not fit.
    let r = build_layer(dir.path(), &cache, &with_base("py311"));
    assert_code(&r, 2);
    assert!(r.stderr.contains("CPython 3.11"), "{}", r.stderr);

    // No version anywhere: refused at the [layer.python] line.
    for text in [
        with_base("nopy"),
        "[image]\nname = \"t\"\n[[layer]]\n[layer.python]\nlock = \"pylock.toml\"\n".to_string(),
    ] {
        let r = build_layer(dir.path(), &cache, &text);
        assert_code(&r, 2);
        assert!(
            r.stderr.contains("recipe.toml:") && r.stderr.contains("PYTHON_VERSION"),
            "{}",
            r.stderr
        );
    }
}

#[test]
fn python_layers_refuse_entries_in_the_same_layer() {
    let dir = tempdir();
    packages(dir.path(), false);
    let text = format!(
        "{}[[layer.entry]]\ndest = \"/etc/x\"\ncontent = \"x\"\n",
        recipe("")
    );
    let r = build_layer(dir.path(), &dir.path().join("cache"), &text);
    assert_code(&r, 2);
    assert!(
        r.stderr.contains("recipe.toml:8:") && r.stderr.contains("[layer.python]"),
        "{}",
        r.stderr
    );
}

#[test]
fn python_layers_download_into_the_cache_dir_and_the_sbom_lists_packages_and_urls() {
    let dir = tempdir();
    let w = dir.path().join("remote");
    let file = pure(&w, "remote_pkg", "2.0", 3_000);
    let wheel_sha = sha256(&fs::read(w.join(&file)).unwrap());
    let wheel_hex = wheel_sha.trim_start_matches("sha256:").to_string();
    let wheel_url = format!("file://{}", w.join(&file).display());
    let local = pure(&dir.path().join("wheels"), "local_pkg", "1.0", 2_000);
    let local_hex = sha256(&fs::read(dir.path().join("wheels").join(&local)).unwrap())
        .trim_start_matches("sha256:")
        .to_string();
    write(&dir.path().join("tool.bin"), "a tool\n");
    let tool_hex = sha256(b"a tool\n")
        .trim_start_matches("sha256:")
        .to_string();
    let tool_url = format!("file://{}", dir.path().join("tool.bin").display());
    write(
        &dir.path().join("pylock.toml"),
        &format!(
            "lock-version = \"1.0\"\n\
             [[packages]]\nname = \"local-pkg\"\nversion = \"1.0\"\nwheels = [{{ path = \"wheels/{local}\" }}]\n\
             [[packages]]\nname = \"remote-pkg\"\nversion = \"2.0\"\nwheels = [{{ url = \"{wheel_url}\", hashes = {{ sha256 = \"{wheel_hex}\" }} }}]\n"
        ),
    );
    let text = format!(
        "{}[[layer]]\nname = \"tools\"\n[[layer.entry]]\ndest = \"/usr/local/bin/tool\"\nurl = \"{tool_url}\"\nsha256 = \"{tool_hex}\"\n",
        recipe("")
    );
    let recipe_path = dir.path().join("recipe.toml");
    write(&recipe_path, &text);
    let reg = Registry::start();
    let reference = format!("{}/acme/py:1", reg.host());
    let cache = dir.path().join("cc");
    let r = run(boxwright()
        .env("XDG_CACHE_HOME", dir.path().join("xdg"))
        .args(["build", "--quiet", "-o"])
        .arg(dir.path().join("out"))
        .arg(&recipe_path)
        .arg("--cache-dir")
        .arg(&cache)
        .args(["--push", "--to", &reference, "--sbom", "spdx"]));
    assert_ok(&r);
    // Downloads are kept by sha256 in --cache-dir, not in the default cache.
    assert!(cache.join("sha256").join(&wheel_hex).is_file());
    assert!(cache.join("sha256").join(&tool_hex).is_file());
    assert!(!dir
        .path()
        .join("xdg/boxwright/blobs/sha256")
        .join(&wheel_hex)
        .exists());

    let s = run(boxwright().args(["sbom", &reference]));
    assert_ok(&s);
    // Valid SPDX 2.3 by the official schema and reader.
    let file = dir.path().join("sbom.spdx.json");
    fs::write(&file, &s.stdout).unwrap();
    crate::supply::python_check(&["sbom-spdx", file.to_str().unwrap()]);
    let doc: Value = serde_json::from_str(&s.stdout).unwrap();
    let packages = doc["packages"].as_array().unwrap();
    let find = |purl_or_name: &str| {
        packages
            .iter()
            .find(|p| {
                p["name"] == purl_or_name
                    || p["externalRefs"][0]["referenceLocator"] == purl_or_name
            })
            .unwrap_or_else(|| panic!("{purl_or_name} in {packages:#?}"))
    };
    let sum = |p: &Value| {
        p["checksums"][0]["checksumValue"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let remote = find("pkg:pypi/remote-pkg@2.0");
    assert_eq!(sum(remote), wheel_hex);
    // SPDX takes network URLs only as downloadLocation; a file:// one is told in sourceInfo.
    assert_eq!(remote["downloadLocation"], "NOASSERTION");
    assert_eq!(
        remote["sourceInfo"],
        format!("fetched from {wheel_url}").as_str()
    );
    assert_eq!(sum(find("pkg:pypi/local-pkg@1.0")), local_hex);
    let tool = find(&tool_url);
    assert_eq!(sum(tool), tool_hex);

    // The same as CycloneDX, valid by its official schema.
    let cdx_ref = format!("{}/acme/py-cdx:1", reg.host());
    assert_ok(&run(boxwright()
        .args(["build", "--quiet", "-o"])
        .arg(dir.path().join("out"))
        .arg(&recipe_path)
        .arg("--cache-dir")
        .arg(&cache)
        .args(["--push", "--to", &cdx_ref, "--sbom", "cyclonedx"])));
    let s = run(boxwright().args(["sbom", &cdx_ref]));
    assert_ok(&s);
    let file = dir.path().join("sbom.cdx.json");
    fs::write(&file, &s.stdout).unwrap();
    crate::supply::python_check(&["sbom-cyclonedx", file.to_str().unwrap()]);
    let doc: Value = serde_json::from_str(&s.stdout).unwrap();
    let remote = doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["purl"] == "pkg:pypi/remote-pkg@2.0")
        .unwrap_or_else(|| panic!("pkg:pypi/remote-pkg@2.0 in {doc:#}"));
    assert_eq!(remote["hashes"][0]["content"], wheel_hex.as_str());
    assert_eq!(remote["externalReferences"][0]["url"], wheel_url.as_str());
    assert_eq!(
        tool["sourceInfo"],
        format!("fetched from {tool_url}").as_str()
    );
}

#[test]
fn python_layers_read_python_version_from_a_registry_base() {
    let dir = tempdir();
    cp312_wheel_and_lock(dir.path());
    let reg = Registry::start();
    let base = format!("{}/acme/python:3.12-slim", reg.host());
    let base_recipe = dir.path().join("base.toml");
    write(
        &base_recipe,
        "[image]\nname = \"base\"\n[config.env]\nPYTHON_VERSION = \"3.12.4\"\n[[layer]]\n[[layer.entry]]\ndest = \"/etc/base\"\ncontent = \"base\\n\"\n",
    );
    assert_ok(&run(boxwright()
        .env("XDG_CACHE_HOME", dir.path().join("cache"))
        .args(["build", "--quiet", "--compression", "none", "-o"])
        .arg(dir.path().join("base"))
        .arg(&base_recipe)
        .args(["--push", "--to", &base])));
    let text = format!(
        "[image]\nname = \"t\"\nbase = \"{base}\"\n[[layer]]\n[layer.python]\nlock = \"pylock.toml\"\n"
    );
    assert_ok(&build_layer(dir.path(), &dir.path().join("cache"), &text));
    let paths: Vec<String> = layer_entries(&dir.path().join("out"))
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert!(
        paths.contains(&"usr/local/lib/python3.12/site-packages/fast/__init__.py".to_string()),
        "{paths:?}"
    );
}

#[test]
fn python_layers_are_split_per_platform_and_shared_where_the_wheel_is() {
    let dir = tempdir();
    let w = dir.path().join("wheels");
    let alpha = pure(&w, "alpha", "1.0", 4_000);
    let mut list = vec![("alpha", "1.0", alpha)];
    for machine in ["x86_64", "aarch64"] {
        let file = format!("fast-1.0-cp311-cp311-manylinux_2_17_{machine}.whl");
        wheel(
            &w.join(&file),
            "fast-1.0.dist-info",
            &[
                ("fast/__init__.py", 0o644, machine.as_bytes()),
                (
                    "fast-1.0.dist-info/WHEEL",
                    0o644,
                    b"Wheel-Version: 1.0\nRoot-Is-Purelib: false\n",
                ),
            ],
        );
        list.push(("fast", "1.0", file));
    }
    let mut text = "lock-version = \"1.0\"\n".to_string();
    text.push_str(&format!(
        "[[packages]]\nname = \"alpha\"\nversion = \"1.0\"\nwheels = [{{ path = \"wheels/{}\" }}]\n",
        list[0].2
    ));
    text.push_str(&format!(
        "[[packages]]\nname = \"fast\"\nversion = \"1.0\"\nwheels = [{{ path = \"wheels/{}\" }}, {{ path = \"wheels/{}\" }}]\n",
        list[1].2, list[2].2
    ));
    write(&dir.path().join("pylock.toml"), &text);
    let text = recipe("").replace(
        "name = \"t\"\n",
        "name = \"t\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n",
    );
    assert_ok(&build_layer(dir.path(), &dir.path().join("cache"), &text));
    let out = dir.path().join("out");
    let index: Value = serde_json::from_slice(&fs::read(out.join("index.json")).unwrap()).unwrap();
    let top = json(&out, index["manifests"][0]["digest"].as_str().unwrap());
    let per_platform: Vec<Vec<String>> = top["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            json(&out, m["digest"].as_str().unwrap())["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["digest"].as_str().unwrap().to_string())
                .collect()
        })
        .collect();
    assert_eq!(per_platform.len(), 2);
    assert_eq!(per_platform[0].len(), 2);
    assert_eq!(per_platform[1].len(), 2);
    // alpha's pure wheel: one layer for both; fast: one per platform.
    assert_eq!(per_platform[0][0], per_platform[1][0]);
    assert_ne!(per_platform[0][1], per_platform[1][1]);
}

/// The regular files of the image in layout `out` as a consumer unpacks
/// it: the layers in order, a later file replacing an earlier one at its
/// path. (Only the image's first layer writes the parents its files lack;
/// the unpacker makes missing ones 0755 root, as that layer would.)
fn unpacked(out: &Path) -> BTreeMap<String, (u32, Vec<u8>)> {
    layer_entries(out)
        .into_iter()
        .filter(|e| !e.0.ends_with('/'))
        .map(|(path, mode, _, data)| (path, (mode, data)))
        .collect()
}

/// Two packages that ship files at the same paths, as opencv-python and
/// opencv-python-headless both ship `cv2/`: of two different files the one
/// of the package later by name is installed, whatever the lock's order,
/// with a layer per package and with one layer alike (the same files,
/// bytes and modes), with one warning for the pair; a file both ship the
/// same is no conflict; the SBOM lists both packages.
#[test]
fn python_layers_two_packages_at_one_path_give_the_same_image_files_in_both_splits() {
    let dir = tempdir();
    let w = dir.path().join("wheels");
    let scripts = |module: &str| format!("[console_scripts]\ncv-tool = cv2.{module}:main\n");
    let (full_ep, headless_ep) = (scripts("gui"), scripts("cli"));
    let full = pure_with(
        &w,
        "cvfull",
        "4.10",
        &[
            ("cv2/__init__.py", 0o644, b"GUI = True\n"),
            ("cv2/data/haar.xml", 0o644, b"<same/>\n"),
            ("cv2/gui.py", 0o644, b"def main(): pass\n"),
            (
                "cvfull-4.10.dist-info/entry_points.txt",
                0o644,
                full_ep.as_bytes(),
            ),
        ],
    );
    let headless = pure_with(
        &w,
        "cvheadless",
        "4.11",
        &[
            ("cv2/__init__.py", 0o644, b"GUI = False\n"),
            ("cv2/cli.py", 0o644, b"def main(): pass\n"),
            ("cv2/data/haar.xml", 0o644, b"<same/>\n"),
            (
                "cvheadless-4.11.dist-info/entry_points.txt",
                0o644,
                headless_ep.as_bytes(),
            ),
        ],
    );
    let build = |extra: &str| {
        write(&dir.path().join("recipe.toml"), &recipe(extra));
        let r = run(boxwright()
            .env("XDG_CACHE_HOME", dir.path().join("cache"))
            .args(["build", "--sbom", "spdx", "--compression", "none", "-o"])
            .arg(dir.path().join("out"))
            .arg(dir.path().join("recipe.toml")));
        assert_ok(&r);
        let pair: Vec<&str> = r
            .stderr
            .lines()
            .filter(|l| l.contains("cvfull==4.10 and cvheadless==4.11"))
            .collect();
        assert_eq!(pair.len(), 1, "one warning for the pair: {}", r.stderr);
        assert!(
            pair[0].starts_with("warning: ")
                && pair[0].contains("/usr/local/bin/cv-tool and 1 other path"),
            "{}",
            pair[0]
        );
        unpacked(&dir.path().join("out"))
    };
    let out = dir.path().join("out");
    // The lock lists the winner first: the order is by name, not the lock's.
    pylock(
        dir.path(),
        &[("cvheadless", "4.11", &headless), ("cvfull", "4.10", &full)],
    );
    let per_package = build("");
    assert_eq!(layers(&out).len(), 2);
    let sbom: Vec<String> = spdx_packages(&out).iter().map(|p| p.to_string()).collect();
    for purl in ["pkg:pypi/cvfull@4.10", "pkg:pypi/cvheadless@4.11"] {
        assert!(sbom.iter().any(|p| p.contains(purl)), "{purl}: {sbom:?}");
    }
    let one = build("split = \"one\"\n");
    assert_eq!(layers(&out).len(), 1);
    assert_eq!(per_package, one);
    let file = |path: &str| &one[&format!("{SP}/{path}")];
    assert_eq!(file("cv2/__init__.py"), &(0o644, b"GUI = False\n".to_vec()));
    assert_eq!(file("cv2/data/haar.xml"), &(0o644, b"<same/>\n".to_vec()));
    // Each package keeps the files no other ships.
    assert!(one.contains_key(&format!("{SP}/cv2/gui.py")));
    assert!(one.contains_key(&format!("{SP}/cv2/cli.py")));
    let launcher = String::from_utf8(one["usr/local/bin/cv-tool"].1.clone()).unwrap();
    assert!(launcher.contains("from cv2.cli import main"), "{launcher}");
    // Both keep their own RECORD, which names the shared path, as pip leaves it.
    for info in ["cvfull-4.10.dist-info", "cvheadless-4.11.dist-info"] {
        let record = String::from_utf8(one[&format!("{SP}/{info}/RECORD")].1.clone()).unwrap();
        assert!(
            record.contains("cv2/__init__.py,sha256="),
            "{info}: {record}"
        );
    }
    // The lock's order does not change the image.
    pylock(
        dir.path(),
        &[("cvfull", "4.10", &full), ("cvheadless", "4.11", &headless)],
    );
    assert_eq!(build(""), one);
    assert_eq!(build("split = \"one\"\n"), one);
}

/// A file of one package where another needs a directory (its file
/// `shared` and the other's `shared/__init__.py`; a launcher `bin/tool`
/// and another's `.data` file `bin/tool/README`) cannot be installed: pip
/// fails on it, and layers would leave the result to their order. The
/// build stops at planning with exit 2, naming the recipe line, both
/// packages with their versions and the path, with every `split`, in
/// either package's and the lock's order, and writes no image.
#[test]
fn python_layers_refuse_a_file_of_one_package_where_another_needs_a_directory() {
    let dir = tempdir();
    let (w, cache, out) = (
        dir.path().join("wheels"),
        dir.path().join("cache"),
        dir.path().join("out"),
    );
    let file = pure_with(&w, "alpha", "1.0", &[("shared", 0o644, b"data\n")]);
    let under = pure_with(&w, "beta", "2.0", &[("shared/__init__.py", 0o644, b"\n")]);
    let launcher = pure_with(
        &w,
        "gamma",
        "3.0",
        &[(
            "gamma-3.0.dist-info/entry_points.txt",
            0o644,
            b"[console_scripts]\ntool = gamma:main\n",
        )],
    );
    let data = pure_with(
        &w,
        "delta",
        "4.0",
        &[("delta-4.0.data/data/bin/tool/README", 0o644, b"read me\n")],
    );
    let shared = format!("/{SP}/shared");
    for (lock, path) in [
        // The file's package first by name, then last; each in both lock orders.
        ([("alpha", "1.0", &file), ("beta", "2.0", &under)], &*shared),
        ([("beta", "2.0", &under), ("alpha", "1.0", &file)], &shared),
        (
            [("gamma", "3.0", &launcher), ("delta", "4.0", &data)],
            "/usr/local/bin/tool",
        ),
        (
            [("delta", "4.0", &data), ("gamma", "3.0", &launcher)],
            "/usr/local/bin/tool",
        ),
    ] {
        let lock: Vec<(&str, &str, &str)> =
            lock.iter().map(|(n, v, f)| (*n, *v, f.as_str())).collect();
        pylock(dir.path(), &lock);
        for split in ["", "split = \"one\"\n"] {
            let _ = fs::remove_dir_all(&out);
            let r = build_layer(dir.path(), &cache, &recipe(split));
            assert_code(&r, 2);
            for (name, version, _) in &lock {
                let label = format!("{name}=={version}");
                assert!(r.stderr.contains(&label), "{label}: {}", r.stderr);
            }
            assert!(r.stderr.contains("recipe.toml:5:1"), "{}", r.stderr);
            assert!(
                r.stderr.contains(&format!("{path} ")),
                "{path}: {}",
                r.stderr
            );
            assert!(!out.join("index.json").exists(), "no image is written");
        }
    }
}

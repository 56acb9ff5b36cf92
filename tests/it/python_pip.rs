//! `python` entries install wheels as pip does: wheels built here (a pure
//! one with `.data` scripts, headers and data, entry points and non-ASCII
//! names; a platform one with executable members) are installed by real pip
//! (`pip install --no-deps --target`) and by a recipe, and the trees must
//! match file for file, byte for byte and mode for mode, apart from the
//! files pip and boxwright write differently on purpose (RECORD, INSTALLER,
//! REQUESTED, direct_url.json) and the launchers' shebang lines.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use crate::common::*;
use crate::python_url::{build_layer, layer_entries};

/// A wheel with these (name, mode, content) members and a RECORD.
pub(crate) fn wheel(path: &Path, info: &str, files: &[(&str, u32, &[u8])]) {
    let mut z = zip::ZipWriter::new(fs::File::create(path).unwrap());
    let mut record = String::new();
    for (name, mode, data) in files {
        let opts = zip::write::SimpleFileOptions::default().unix_permissions(*mode);
        z.start_file(*name, opts).unwrap();
        z.write_all(data).unwrap();
        let h = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(data));
        record.push_str(&format!("{name},sha256={h},{}\n", data.len()));
    }
    record.push_str(&format!("{info}/RECORD,,\n"));
    let opts = zip::write::SimpleFileOptions::default().unix_permissions(0o644);
    z.start_file(format!("{info}/RECORD"), opts).unwrap();
    z.write_all(record.as_bytes()).unwrap();
    z.finish().unwrap();
}

fn make_wheels(dir: &Path) -> Vec<String> {
    fs::create_dir_all(dir).unwrap();
    let pure = "demo_pkg-1.0-py3-none-any.whl";
    let wheel_meta =
        b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n";
    wheel(
        &dir.join(pure),
        "demo_pkg-1.0.dist-info",
        &[
            ("demo_pkg/__init__.py", 0o644, b"VERSION = '1.0'\n"),
            ("demo_pkg/cli.py", 0o644, b"def main():\n    return 0\ndef gui():\n    return 0\n"),
            ("demo_pkg/donn\u{e9}es/\u{e9}t\u{e9}.txt", 0o644, "caf\u{e9}\n".as_bytes()),
            ("demo_pkg-1.0.data/scripts/demo-script", 0o755, b"#!python\nprint('hi')\n"),
            ("demo_pkg-1.0.data/scripts/plain.sh", 0o644, b"#!/bin/sh\necho plain\n"),
            ("demo_pkg-1.0.data/data/share/demo/readme.txt", 0o644, b"data\n"),
            ("demo_pkg-1.0.data/headers/demo.h", 0o644, b"int demo;\n"),
            ("demo_pkg-1.0.data/purelib/extra_mod.py", 0o644, b"X = 1\n"),
            ("demo_pkg-1.0.dist-info/METADATA", 0o644, b"Metadata-Version: 2.1\nName: demo_pkg\nVersion: 1.0\n"),
            ("demo_pkg-1.0.dist-info/WHEEL", 0o644, wheel_meta),
            (
                "demo_pkg-1.0.dist-info/entry_points.txt",
                0o644,
                b"[console_scripts]\ndemo = demo_pkg.cli:main\n\n[gui_scripts]\ndemo-gui = demo_pkg.cli:gui\n",
            ),
        ],
    );
    let plat = "fastthing-2.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl";
    wheel(
        &dir.join(plat),
        "fastthing-2.0.dist-info",
        &[
            ("fastthing/__init__.py", 0o644, b"from ._speed import *\n"),
            ("fastthing/_speed.cpython-311-x86_64-linux-gnu.so", 0o755, &noise(5000, 3)),
            ("fastthing-2.0.data/platlib/fast_extra.py", 0o644, b"Y = 2\n"),
            ("fastthing-2.0.dist-info/METADATA", 0o644, b"Metadata-Version: 2.1\nName: fastthing\nVersion: 2.0\n"),
            (
                "fastthing-2.0.dist-info/WHEEL",
                0o644,
                b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: cp311-cp311-manylinux_2_17_x86_64\n",
            ),
        ],
    );
    vec![pure.to_string(), plat.to_string()]
}

/// Files under `root` as path -> (mode, bytes), skipping bytecode.
fn tree(root: &Path) -> BTreeMap<String, (u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if !p.ends_with("__pycache__") {
                    stack.push(p);
                }
                continue;
            }
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
            out.insert(rel, (mode, fs::read(&p).unwrap()));
        }
    }
    out
}

/// What may differ: generated bookkeeping files, and the launchers' first line.
fn comparable(files: BTreeMap<String, (u32, Vec<u8>)>) -> BTreeMap<String, (u32, Vec<u8>)> {
    files
        .into_iter()
        .filter(|(p, _)| {
            !["RECORD", "INSTALLER", "REQUESTED", "direct_url.json"]
                .iter()
                .any(|n| p.ends_with(&format!(".dist-info/{n}")))
        })
        .map(|(p, (mode, data))| {
            if p == "bin/demo" || p == "bin/demo-gui" || p == "bin/demo-script" {
                let rest = data
                    .splitn(2, |&b| b == b'\n')
                    .nth(1)
                    .unwrap_or(&[])
                    .to_vec();
                return (p, (mode, rest));
            }
            (p, (mode, data))
        })
        .collect()
}

#[test]
fn wheels_install_as_pip_installs_them() {
    let dir = tempfile::tempdir().unwrap();
    let wheels = make_wheels(&dir.path().join("wheels"));
    let pip_dir = dir.path().join("pip");
    let mut args = format!(
        "umask 022 && python3 -m pip install --quiet --no-deps --no-index --no-compile --disable-pip-version-check --target {}",
        pip_dir.display()
    );
    for w in &wheels {
        args.push_str(&format!(" {}", dir.path().join("wheels").join(w).display()));
    }
    let out = Command::new("sh").arg("-c").arg(&args).output().unwrap();
    assert!(
        out.status.success(),
        "pip: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut req = String::new();
    for (name, w) in [("demo-pkg", &wheels[0]), ("fastthing", &wheels[1])] {
        let version = w.split('-').nth(1).unwrap();
        let hash = sha256(&fs::read(dir.path().join("wheels").join(w)).unwrap());
        req.push_str(&format!("{name}=={version} \\\n    --hash={hash}\n"));
    }
    req.push_str("skipped==1.0 ; python_version < '3.8' --hash=sha256:00\n");
    write(&dir.path().join("requirements.txt"), &req);
    // The same packages as an entry (one layer) and as a [layer.python]
    // (one layer per package): both install what pip installs.
    let entry = "[image]\nname = \"t\"\n[[layer]]\n[[layer.entry]]\ndest = \"/t\"\npython = { lock = \"requirements.txt\", find_links = [\"wheels\"], version = \"3.11\", site_packages = \"/t\" }\n";
    let table = "[image]\nname = \"t\"\n[[layer]]\n[layer.python]\nlock = \"requirements.txt\"\nfind_links = [\"wheels\"]\nversion = \"3.11\"\nprefix = \"/t\"\nsite_packages = \"/t\"\n";
    for (recipe, layers) in [(entry, 1), (table, 2)] {
        let r = build_layer(dir.path(), &dir.path().join("cache"), recipe);
        assert_ok(&r);
        assert_eq!(
            crate::python_layers::layers(&dir.path().join("out")).len(),
            layers
        );
        same_as_pip(&dir.path().join("out"), &pip_dir);
    }
}

/// The files of the image in layout `out`, below `t/`, are those pip
/// installed into `pip_dir`.
fn same_as_pip(out: &Path, pip_dir: &Path) {
    let entries = layer_entries(out);
    let mine: BTreeMap<String, (u32, Vec<u8>)> = entries
        .iter()
        .filter(|e| !e.0.ends_with('/'))
        .filter_map(|(p, m, _, d)| Some((p.strip_prefix("t/")?.to_string(), (*m, d.clone()))))
        .collect();
    // pip's --target puts headers under include/python/, an install under a
    // prefix under include/pythonX.Y/.
    let mine: BTreeMap<_, _> = mine
        .into_iter()
        .map(|(p, v)| (p.replace("include/python3.11/", "include/python/"), v))
        .collect();
    let theirs = tree(pip_dir);
    for p in [
        "bin/demo",
        "bin/demo-script",
        "share/demo/readme.txt",
        "extra_mod.py",
        "fast_extra.py",
        "demo_pkg/donn\u{e9}es/\u{e9}t\u{e9}.txt",
    ] {
        assert!(theirs.contains_key(p), "{p} in {:?}", theirs.keys());
    }
    assert!(
        theirs.keys().any(|p| p.starts_with("include/python/")),
        "{:?}",
        theirs.keys()
    );
    assert_eq!(
        comparable(mine.clone()).keys().collect::<Vec<_>>(),
        comparable(theirs.clone()).keys().collect::<Vec<_>>()
    );
    for (p, (mode, data)) in comparable(theirs) {
        let (m2, d2) = &comparable(mine.clone())[&p];
        assert_eq!((*m2, d2 == &data), (mode, true), "{p}");
    }
    // The launchers name the image's interpreter.
    assert!(mine["bin/demo"].1.starts_with(b"#!/t/bin/python3.11\n"));
    assert_eq!(mine["demo_pkg-1.0.dist-info/INSTALLER"].1, b"boxwright\n");
    // RECORD lists every file written with its hash and size.
    let record = String::from_utf8(mine["demo_pkg-1.0.dist-info/RECORD"].1.clone()).unwrap();
    for line in record.lines() {
        let cols: Vec<&str> = line.rsplitn(3, ',').collect();
        let (path, hash) = (cols[2].trim_matches('"'), cols[1]);
        if hash.is_empty() {
            continue;
        }
        let path = path.replace("include/python3.11/", "include/python/");
        let data = &mine
            .get(&path)
            .unwrap_or_else(|| panic!("{path} in RECORD"))
            .1;
        let want = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(data));
        assert_eq!(hash, format!("sha256={want}"), "{path}");
    }
    assert!(record.contains("bin/demo,"), "{record}");
}

#[test]
fn a_platform_without_a_wheel_is_refused_with_what_there_is() {
    let dir = tempfile::tempdir().unwrap();
    let wheels = make_wheels(&dir.path().join("wheels"));
    let hash = sha256(&fs::read(dir.path().join("wheels").join(&wheels[1])).unwrap());
    write(
        &dir.path().join("requirements.txt"),
        &format!("fastthing==2.0 --hash={hash}\n"),
    );
    let recipe = "[image]\nname = \"t\"\nplatforms = [\"linux/arm64\"]\n[[layer]]\n[[layer.entry]]\ndest = \"/usr/local\"\npython = { lock = \"requirements.txt\", find_links = [\"wheels\"], version = \"3.11\" }\n";
    let r = build_layer(dir.path(), &dir.path().join("cache"), recipe);
    assert_code(&r, 2);
    for needle in ["fastthing 2.0", "linux/arm64", &wheels[1], "pip wheel"] {
        assert!(r.stderr.contains(needle), "{needle}: {}", r.stderr);
    }
}

#[test]
fn a_pylock_picks_each_platforms_wheel_and_honours_markers() {
    let dir = tempfile::tempdir().unwrap();
    let wdir = dir.path().join("wheels");
    make_wheels(&wdir);
    let arm = "fastthing-2.0-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl";
    wheel(
        &wdir.join(arm),
        "fastthing-2.0.dist-info",
        &[
            ("fastthing/_speed_arm.so", 0o755, b"arm"),
            (
                "fastthing-2.0.dist-info/WHEEL",
                0o644,
                b"Wheel-Version: 1.0\nRoot-Is-Purelib: false\n",
            ),
        ],
    );
    let lock = format!(
        r#"lock-version = "1.0"
[[packages]]
name = "fastthing"
version = "2.0"
wheels = [
  {{ path = "wheels/fastthing-2.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl" }},
  {{ path = "wheels/{arm}" }},
]
[[packages]]
name = "demo-pkg"
version = "1.0"
marker = "platform_machine == 'x86_64'"
wheels = [{{ path = "wheels/demo_pkg-1.0-py3-none-any.whl" }}]
"#
    );
    write(&dir.path().join("pylock.toml"), &lock);
    let recipe = |arch: &str| {
        format!("[image]\nname = \"t\"\nplatforms = [\"linux/{arch}\"]\n[[layer]]\n[[layer.entry]]\ndest = \"/usr/local\"\npython = {{ lock = \"pylock.toml\", version = \"3.11\" }}\n")
    };
    let sp = "usr/local/lib/python3.11/site-packages";
    assert_ok(&build_layer(
        dir.path(),
        &dir.path().join("c"),
        &recipe("arm64"),
    ));
    let paths: Vec<String> = layer_entries(&dir.path().join("out"))
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert!(
        paths.contains(&format!("{sp}/fastthing/_speed_arm.so")),
        "{paths:?}"
    );
    assert!(
        !paths.iter().any(|p| p.contains("demo_pkg")),
        "marker excludes it: {paths:?}"
    );
    fs::remove_dir_all(dir.path().join("out")).unwrap();
    assert_ok(&build_layer(
        dir.path(),
        &dir.path().join("c"),
        &recipe("amd64"),
    ));
    let paths: Vec<String> = layer_entries(&dir.path().join("out"))
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert!(
        paths.contains(&format!("{sp}/demo_pkg/__init__.py")),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"usr/local/bin/demo".to_string()),
        "{paths:?}"
    );
    assert!(
        !paths.iter().any(|p| p.ends_with("_speed_arm.so")),
        "{paths:?}"
    );
}

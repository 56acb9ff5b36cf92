//! `boxwright build` and `inspect`: golden digests, reproducibility, real
//! consumers (oci-image-tool, skopeo, umoci); bad input in `build_errors`.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use serde_json::Value;
use tempfile::TempDir;

use crate::build_errors::{layer, Case, HEAD};
use crate::common::*;

fn build_json(args: &[&str]) -> Value {
    let out = ok(boxwright()
        .arg("build")
        .args(args)
        .arg("--json")
        .arg("--quiet"));
    serde_json::from_str(&out).expect("build --json prints JSON")
}

/// `recipes/r2d.toml` with the variables the golden files were made with.
fn build_r2d(recipe: &Path, out: &Path, extra: &[&str]) -> String {
    let mut cmd = boxwright();
    cmd.args([
        "build",
        "--quiet",
        "--set",
        "VERSION=1.4.0",
        "--set",
        "OWNER=acme",
        "-o",
    ])
    .arg(out)
    .arg(recipe)
    .args(extra);
    ok(&mut cmd)
}

#[test]
fn r2d_matches_the_golden_digests() {
    let tmp = TempDir::new().unwrap();
    let out = tmp.path().join("r2d");
    let digest = build_r2d(&root().join("recipes/r2d.toml"), &out, &[]);
    let golden_digest = fs::read_to_string(root().join("fixtures/golden/r2d.digest")).unwrap();
    let inspect = ok(boxwright()
        .arg("inspect")
        .arg("--json")
        .arg(format!("{}:latest", out.display())));
    let golden_inspect =
        fs::read_to_string(root().join("fixtures/golden/r2d.inspect.json")).unwrap();
    assert_eq!(
        inspect.trim(),
        golden_inspect.trim(),
        "inspect output moved; if intended, run scripts/regen-golden"
    );
    assert_eq!(
        digest,
        golden_digest.trim(),
        "image digest moved; if intended, run scripts/regen-golden"
    );
}

/// A copy of the R2D build context in a fresh directory, created in another
/// order, with other mtimes.
fn copied_context(touch: bool) -> TempDir {
    let tmp = TempDir::new().unwrap();
    copy_tree(&root().join("recipes"), &tmp.path().join("recipes"));
    copy_tree(
        &root().join("fixtures/r2d"),
        &tmp.path().join("fixtures/r2d"),
    );
    if touch {
        let status = std::process::Command::new("find")
            .arg(tmp.path())
            .args([
                "-exec",
                "touch",
                "-h",
                "-d",
                "2031-05-06 07:08:09",
                "{}",
                "+",
            ])
            .status()
            .unwrap();
        assert!(status.success());
    }
    tmp
}

#[test]
fn digests_do_not_depend_on_mtimes_umask_jobs_or_location() {
    let out = TempDir::new().unwrap();
    let reference = build_r2d(
        &root().join("recipes/r2d.toml"),
        &out.path().join("a"),
        &["--jobs", "1"],
    );

    let copy = copied_context(true);
    let touched = build_r2d(
        &copy.path().join("recipes/r2d.toml"),
        &out.path().join("b"),
        &["--jobs", "2"],
    );
    assert_eq!(touched, reference, "touched, copied context with --jobs 2");

    let copy2 = copied_context(false);
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(r#"umask 077; exec "$0" build --quiet --set VERSION=1.4.0 --set OWNER=acme --jobs 3 -o "$1" "$2""#)
        .arg(env!("CARGO_BIN_EXE_boxwright"))
        .arg(out.path().join("c"))
        .arg(copy2.path().join("recipes/r2d.toml"))
        .env_remove("VERSION")
        .env_remove("OWNER")
        .env_remove("SOURCE_DATE_EPOCH");
    assert_eq!(ok(&mut cmd), reference, "umask 077 and --jobs 3");

    // A layout written under umask 077 is still readable by others.
    let mode = fs::metadata(out.path().join("c/index.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644);

    // zstd, too, does not depend on the thread count.
    let z1 = build_r2d(
        &root().join("recipes/r2d.toml"),
        &out.path().join("z1"),
        &["--compression", "zstd", "--jobs", "1"],
    );
    let z2 = build_r2d(
        &copy.path().join("recipes/r2d.toml"),
        &out.path().join("z2"),
        &["--compression", "zstd", "--jobs", "2"],
    );
    assert_eq!(z1, z2);
    assert_ne!(z1, reference);
}

#[test]
fn source_date_epoch_sets_created_and_changes_the_digest() {
    let out = TempDir::new().unwrap();
    let epoch0 = build_r2d(&root().join("recipes/r2d.toml"), &out.path().join("a"), &[]);
    let mut cmd = boxwright();
    cmd.env("SOURCE_DATE_EPOCH", "1700000000")
        .args([
            "build",
            "--quiet",
            "--json",
            "--set",
            "VERSION=1.4.0",
            "--set",
            "OWNER=acme",
            "--platform",
            "linux/amd64",
            "-o",
        ])
        .arg(out.path().join("b"))
        .arg(root().join("recipes/r2d.toml"));
    let v: Value = serde_json::from_str(&ok(&mut cmd)).unwrap();
    assert_ne!(v["digest"].as_str().unwrap(), epoch0);
    let inspect: Value = serde_json::from_str(&ok(boxwright()
        .args(["inspect", "--json"])
        .arg(out.path().join("b:latest"))))
    .unwrap();
    assert_eq!(
        inspect["images"][0]["config"]["created"],
        "2023-11-14T22:13:20Z"
    );
}

#[test]
fn multi_platform_builds_a_sorted_index() {
    let out = TempDir::new().unwrap();
    let v = build_json(&[
        "--set",
        "VERSION=1.4.0",
        "-o",
        out.path().join("r2d").to_str().unwrap(),
        root().join("recipes/r2d.toml").to_str().unwrap(),
    ]);
    assert_eq!(v["mediaType"], "application/vnd.oci.image.index.v1+json");
    let digest = v["digest"].as_str().unwrap();
    let index: Value = serde_json::from_slice(
        &fs::read(out.path().join("r2d/blobs/sha256").join(&digest[7..])).unwrap(),
    )
    .unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let platforms: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(platforms, vec!["linux/amd64", "linux/arm64"]);
    // The python-app layer does not depend on the platform: one blob for both.
    let images = v["images"].as_array().unwrap();
    assert_eq!(
        images[0]["layers"][0]["digest"],
        images[1]["layers"][0]["digest"]
    );
    assert_ne!(
        images[0]["layers"][1]["digest"], images[1]["layers"][1]["digest"],
        "tools differ by ${{ARCH}}"
    );
    // Both tags point at the index; skopeo reads it and picks a platform.
    let raw = tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            &format!("oci:{}:1.4.0", out.path().join("r2d").display()),
        ],
    );
    assert_eq!(format!("sha256:{}", sha256_hex(raw.as_bytes())), digest);
    let amd = tool(
        "skopeo",
        &[
            "inspect",
            "--override-arch",
            "arm64",
            &format!("oci:{}:latest", out.path().join("r2d").display()),
        ],
    );
    assert!(amd.contains("\"Architecture\": \"arm64\""), "{amd}");
    // The recipe's JSON summary has every descriptor field.
    let l = &images[0]["layers"][0];
    for key in ["digest", "diffID", "size", "mediaType"] {
        assert!(!l[key].is_null(), "layer field {key} missing in {l}");
    }
    assert!(v["timings"]["total_ms"].is_number());
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// A context that exercises every entry kind and attribute.
fn rich_context() -> TempDir {
    let tmp = TempDir::new().unwrap();
    let ctx = tmp.path();
    write(&ctx.join("app/main.py"), "print('hi')\n");
    write(&ctx.join("app/pkg/mod.py"), "X = 1\n");
    write(&ctx.join("app/pkg/__pycache__/mod.cpython-311.pyc"), "junk");
    write(&ctx.join("app/skip.pyc"), "junk");
    let long = "d".repeat(90);
    write(&ctx.join(format!("app/{long}/{long}/deep.txt")), "deep\n");
    fs::write(
        ctx.join("app")
            .join(std::ffi::OsStr::from_bytes(b"caf\xe9.txt")),
        "latin-1 name\n",
    )
    .unwrap();
    fs::hard_link(ctx.join("app/main.py"), ctx.join("app/main-link.py")).unwrap();
    std::os::unix::fs::symlink("pkg/mod.py", ctx.join("app/alias.py")).unwrap();
    write(&ctx.join("bin/tool"), "#!/bin/sh\necho tool\n");
    chmod(&ctx.join("bin/tool"), 0o4755);
    write(
        &ctx.join("recipe.toml"),
        r#"
[image]
name = "rich"

[config]
cmd = ["/usr/local/bin/tool"]

[[layer]]
name = "app"
uid = 1000
gid = 1000
uname = "app"
gname = "app"
mode = 0o640

[[layer.entry]]
src = "app"
dest = "/srv/app"
exclude = ["**/__pycache__", "*.pyc"]

[[layer]]
name = "misc"

[[layer.entry]]
src = "bin/tool"
dest = "/usr/local/bin/"

[[layer.entry]]
content = "hello\n"
dest = "/etc/motd"
mode = "0600"

[[layer.entry]]
symlink = "/usr/local/bin/tool"
dest = "/bin/t"

[[layer.entry]]
dir = true
dest = "/var/empty"
mode = 0o1777
"#,
    );
    tmp
}

#[test]
fn real_consumers_accept_the_layout_and_umoci_unpacks_the_inputs() {
    let ctx = rich_context();
    let out = TempDir::new().unwrap();
    let layout = out.path().join("rich");
    let digest = ok(boxwright()
        .args(["build", "--quiet", "-o"])
        .arg(&layout)
        .arg(ctx.path().join("recipe.toml")));

    let v = tool(
        "oci-image-tool",
        &[
            "validate",
            "--type",
            "image",
            "--ref",
            "name=latest",
            layout.to_str().unwrap(),
        ],
    );
    assert!(v.contains("Validation succeeded"), "{v}");
    let inspect = tool(
        "skopeo",
        &["inspect", &format!("oci:{}:latest", layout.display())],
    );
    let inspect: Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(inspect["Digest"], digest.as_str());

    let bundle = out.path().join("bundle");
    let as_root = unsafe { libc::geteuid() } == 0;
    let image = format!("{}:latest", layout.display());
    let mut args = vec!["unpack"];
    if !as_root {
        args.push("--rootless");
    }
    args.extend(["--image", &image, bundle.to_str().unwrap()]);
    tool("umoci", &args);
    let rootfs = bundle.join("rootfs");

    let app = rootfs.join("srv/app");
    let check = |rel: &str, content: &[u8], mode: u32, uid: u32| {
        let p = app.join(rel);
        assert_eq!(fs::read(&p).unwrap(), content, "{rel}");
        let m = fs::symlink_metadata(&p).unwrap();
        assert_eq!(m.mode() & 0o7777, mode, "mode of {rel}");
        if as_root {
            assert_eq!((m.uid(), m.gid()), (uid, uid), "owner of {rel}");
        }
    };
    check("main.py", b"print('hi')\n", 0o640, 1000);
    check("pkg/mod.py", b"X = 1\n", 0o640, 1000);
    let long = "d".repeat(90);
    check(&format!("{long}/{long}/deep.txt"), b"deep\n", 0o640, 1000);
    assert_eq!(
        fs::read(app.join(std::ffi::OsStr::from_bytes(b"caf\xe9.txt"))).unwrap(),
        b"latin-1 name\n",
        "non-UTF-8 name kept byte for byte"
    );
    assert!(
        !app.join("pkg/__pycache__").exists() && !app.join("skip.pyc").exists(),
        "excludes apply"
    );
    assert_eq!(
        fs::read_link(app.join("alias.py")).unwrap(),
        Path::new("pkg/mod.py")
    );
    let (a, b) = (
        fs::metadata(app.join("main.py")).unwrap(),
        fs::metadata(app.join("main-link.py")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino(), "hard links stay hard links");
    let tool_meta = fs::metadata(rootfs.join("usr/local/bin/tool")).unwrap();
    if as_root {
        assert_eq!(tool_meta.mode() & 0o7777, 0o4755, "setuid bit kept");
        assert_eq!(
            (tool_meta.uid(), tool_meta.gid()),
            (0, 0),
            "default owner is root"
        );
    } else {
        assert_eq!(tool_meta.mode() & 0o777, 0o755);
    }
    assert_eq!(fs::read(rootfs.join("etc/motd")).unwrap(), b"hello\n");
    assert_eq!(
        fs::metadata(rootfs.join("etc/motd")).unwrap().mode() & 0o777,
        0o600
    );
    assert_eq!(
        fs::read_link(rootfs.join("bin/t")).unwrap(),
        Path::new("/usr/local/bin/tool")
    );
    let empty = fs::metadata(rootfs.join("var/empty")).unwrap();
    assert!(
        empty.is_dir()
            && fs::read_dir(rootfs.join("var/empty"))
                .unwrap()
                .next()
                .is_none()
    );
    if as_root {
        assert_eq!(empty.mode() & 0o7777, 0o1777);
    }
}

#[test]
fn variables_come_from_set_then_env_then_defaults() {
    let c = Case::new(&format!(
        "[vars]\nV = \"default\"\n\n{}",
        layer("content = \"${V}\"\ndest = \"/v\"")
    ));
    let build = |env: Option<&str>, set: Option<&str>| -> String {
        let mut cmd = boxwright();
        cmd.args(["build", "--quiet", "--compression", "none", "-o"])
            .arg(c.path("o"))
            .arg(c.path("recipe.toml"));
        if let Some(e) = env {
            cmd.env("V", e);
        }
        if let Some(s) = set {
            cmd.arg("--set").arg(format!("V={s}"));
        }
        ok(&mut cmd);
        let tar = first_layer_tar(&c.path("o"));
        let mut ar = tar::Archive::new(&tar[..]);
        let mut e = ar
            .entries()
            .unwrap()
            .find(|e| e.as_ref().unwrap().path().unwrap().to_str() == Some("v"))
            .unwrap()
            .unwrap();
        let mut s = String::new();
        std::io::Read::read_to_string(&mut e, &mut s).unwrap();
        s
    };
    assert_eq!(build(None, None), "default");
    assert_eq!(build(Some("from-env"), None), "from-env");
    assert_eq!(build(Some("from-env"), Some("from-set")), "from-set");
}

#[test]
fn a_followed_tree_outside_the_context_keeps_its_inner_links() {
    let c = Case::new(&layer(
        "src = \"tree\"\ndest = \"/t\"\nfollow_symlinks = true",
    ));
    let outside = TempDir::new().unwrap();
    write(&outside.path().join("lib/real.txt"), "real\n");
    std::os::unix::fs::symlink("real.txt", outside.path().join("lib/alias.txt")).unwrap();
    std::os::unix::fs::symlink(outside.path(), c.path("tree")).unwrap();
    let out = c.path("o");
    let tar = build_uncompressed(&c.path("recipe.toml"), &out);
    let mut ar = tar::Archive::new(&tar[..]);
    let mut seen = Vec::new();
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        let link = e
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned());
        seen.push((
            e.path().unwrap().to_string_lossy().into_owned(),
            e.header().entry_type(),
            link,
        ));
    }
    assert!(
        seen.contains(&(
            "t/lib/alias.txt".into(),
            tar::EntryType::Symlink,
            Some("real.txt".into())
        )),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|(p, t, _)| p == "t/lib/real.txt" && *t == tar::EntryType::Regular),
        "{seen:?}"
    );
}

#[test]
fn a_closed_stdout_is_not_a_failure() {
    // `boxwright build --json | head -c 10`: the reader goes away early.
    let out = TempDir::new().unwrap();
    let mut child = boxwright()
        .args(["build", "--quiet", "--json", "--set", "VERSION=1.4.0", "-o"])
        .arg(out.path().join("r2d"))
        .arg(root().join("recipes/r2d.toml"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // close the read end before anything is written
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.stderr.is_empty(),
        "no error is printed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn an_output_that_is_not_a_layout_is_refused_before_building() {
    let c = Case::new(&layer("content = \"a\"\ndest = \"/x\""));
    write(&c.path("out/img/notes.txt"), "mine\n");
    let r = run(boxwright()
        .args(["build", "--quiet", "-o"])
        .arg(c.path("out/img"))
        .arg(c.path("recipe.toml")));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("exists and is not an OCI layout"),
        "{}",
        r.stderr
    );
    assert_eq!(
        fs::read_to_string(c.path("out/img/notes.txt")).unwrap(),
        "mine\n",
        "the directory is untouched"
    );
    let names: Vec<_> = fs::read_dir(c.path("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("img")],
        "no temporary directory left"
    );
}

#[test]
fn a_base_layout_is_checked_and_left_as_it_was() {
    let c = Case::new(&layer("content = \"base\"\ndest = \"/base.txt\""));
    let base = c.path("base");
    ok(boxwright()
        .args(["build", "--quiet", "-o"])
        .arg(&base)
        .arg(c.path("recipe.toml")));
    let i: Value =
        serde_json::from_str(&ok(boxwright().args(["inspect", "--json"]).arg(&base))).unwrap();
    let layer_digest = i["images"][0]["manifest"]["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = base.join("blobs/sha256").join(&layer_digest[7..]);
    chmod(&blob, 0o600);
    write(&c.path("app.toml"), "[image]\nname = \"app\"\nbase = \"oci:base\"\n\n[[layer]]\n[[layer.entry]]\ncontent = \"app\"\ndest = \"/app.txt\"\n");
    let out = c.path("app");
    ok(boxwright()
        .args(["build", "--quiet", "-o"])
        .arg(&out)
        .arg(c.path("app.toml")));
    assert_eq!(
        fs::metadata(&blob).unwrap().permissions().mode() & 0o777,
        0o600,
        "the base's blob keeps its mode"
    );
    assert_eq!(
        fs::metadata(out.join("blobs/sha256").join(&layer_digest[7..]))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o644
    );

    // A corrupt base layer is refused as bad input, named by digest.
    let mut bytes = fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&blob, bytes).unwrap();
    let r = run(boxwright()
        .args(["build", "--quiet", "-o"])
        .arg(c.path("app2"))
        .arg(c.path("app.toml")));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(&layer_digest) && r.stderr.contains("corrupt"),
        "{}",
        r.stderr
    );
    assert!(!c.path("app2").exists());
}

#[test]
fn hard_links_with_different_attributes_stay_separate_files() {
    let c = Case::new(&format!(
        "{HEAD}[[layer]]\n[[layer.entry]]\nsrc = \"files/a.txt\"\ndest = \"/x\"\nmode = 0o644\n[[layer.entry]]\nsrc = \"files/a-link.txt\"\ndest = \"/y\"\nmode = 0o600\n"
    ));
    fs::hard_link(c.path("files/a.txt"), c.path("files/a-link.txt")).unwrap();
    let out = c.path("o");
    let tar = build_uncompressed(&c.path("recipe.toml"), &out);
    let mut ar = tar::Archive::new(&tar[..]);
    let kinds: Vec<(String, tar::EntryType, u32)> = ar
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.path().unwrap().to_string_lossy().into_owned(),
                e.header().entry_type(),
                e.header().mode().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("x".into(), tar::EntryType::Regular, 0o644),
            ("y".into(), tar::EntryType::Regular, 0o600)
        ]
    );
}

#[test]
fn several_sources_interleave_in_component_order_with_parents_added() {
    let c = Case::new(&format!(
        "{HEAD}[[layer]]\n[[layer.entry]]\nsrc = \"t\"\ndest = \"/o\"\n[[layer.entry]]\nsrc = \"u\"\ndest = \"/o\"\n[[layer.entry]]\ncontent = \"x\"\ndest = \"/o/a/n/deep/x\"\n[[layer.entry]]\ncontent = \"y\"\ndest = \"/z/y\"\n"
    ));
    for (p, s) in [
        ("t/a/b", "1"),
        ("t/a.txt", "2"),
        ("t/a-b", "3"),
        ("u/a/c", "4"),
        ("u/a0", "5"),
        ("u/a.txt", "2"),
    ] {
        write(&c.path(p), s);
    }
    let out = c.path("o");
    let tar = build_uncompressed(&c.path("recipe.toml"), &out);
    let mut ar = tar::Archive::new(&tar[..]);
    let paths: Vec<String> = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        paths,
        [
            "o/",
            "o/a/",
            "o/a/b",
            "o/a/c",
            "o/a/n/",
            "o/a/n/deep/",
            "o/a/n/deep/x",
            "o/a-b",
            "o/a.txt",
            "o/a0",
            "z/",
            "z/y"
        ]
    );
}

/// The uncompressed tar of the first layer of the layout at `out` (built with
/// `--compression none`).
fn first_layer_tar(out: &Path) -> Vec<u8> {
    let i: Value =
        serde_json::from_str(&ok(boxwright().args(["inspect", "--json"]).arg(out))).unwrap();
    let d = i["images"][0]["manifest"]["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    fs::read(out.join("blobs/sha256").join(&d[7..])).unwrap()
}

/// Build `recipe` uncompressed into `out` and return its first layer's tar.
fn build_uncompressed(recipe: &Path, out: &Path) -> Vec<u8> {
    ok(boxwright()
        .args(["build", "--quiet", "--compression", "none", "-o"])
        .arg(out)
        .arg(recipe));
    first_layer_tar(out)
}

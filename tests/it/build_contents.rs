//! What `boxwright build` puts into a layer: every entry kind and attribute
//! of a context (checked by real consumers: oci-image-tool, skopeo, umoci
//! unpacking it), recipe variables, followed trees, hard links and
//! interleaved sources, read back from the layer's tar.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde_json::Value;
use tempfile::TempDir;

use crate::build_errors::{layer, Case, HEAD};
use crate::common::*;

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

/// A context that holds the build's output (`src = "."` with the default
/// `./out/NAME`, or `-o` inside it): the output, the temporaries beside it
/// and the directories made only for it are never copied, so every build
/// is the same as the first. Other files in `out/` are context as usual.
#[test]
fn the_output_inside_the_context_is_never_copied() {
    let tmp = TempDir::new().unwrap();
    let ctx = tmp.path();
    write(&ctx.join("a.txt"), "a\n");
    write(
        &ctx.join("recipe.toml"),
        "[image]\nname = \"self\"\n\n[[layer]]\n[[layer.entry]]\nsrc = \".\"\ndest = \"/app\"\n",
    );
    let build = |extra: &[&str]| {
        ok(boxwright()
            .current_dir(ctx)
            .args(["build", "--quiet", "--compression", "none", "recipe.toml"])
            .args(extra))
    };
    let paths = |layout: &str| -> Vec<String> {
        crate::python_url::layer_entries(&ctx.join(layout))
            .into_iter()
            .map(|e| e.0)
            .collect()
    };
    let first = build(&[]);
    assert_eq!(build(&[]), first, "the second build copied the first");
    assert_eq!(paths("out/self"), ["app/", "app/a.txt", "app/recipe.toml"]);
    let deep = build(&["-o", "made/for/it"]);
    assert_eq!(build(&["-o", "made/for/it"]), deep);
    let copied = paths("made/for/it");
    assert!(copied.contains(&"app/out/self/index.json".to_string()));
    assert!(
        !copied.iter().any(|p| p.starts_with("app/made")),
        "{copied:?}"
    );
    fs::remove_dir_all(ctx.join("made")).unwrap();

    write(&ctx.join("out/notes.txt"), "kept\n");
    build(&[]);
    assert_eq!(
        paths("out/self"),
        [
            "app/",
            "app/a.txt",
            "app/out/",
            "app/out/notes.txt",
            "app/recipe.toml"
        ]
    );
    let archive = build(&["--format", "oci-archive"]);
    assert_eq!(build(&["--format", "oci-archive"]), archive);
}

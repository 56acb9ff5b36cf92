//! `boxwright build` refusing bad input: every case exits 2 with a message
//! that names what is wrong (the message is the behaviour checked here),
//! prints nothing on stdout and leaves no output behind.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde_json::Value;
use tempfile::TempDir;

use crate::common::*;

pub struct Case {
    ctx: TempDir,
}

impl Case {
    pub fn new(recipe: &str) -> Case {
        let ctx = TempDir::new().unwrap();
        write(&ctx.path().join("files/a.txt"), "a\n");
        write(&ctx.path().join("files/b.txt"), "b\n");
        write(&ctx.path().join("recipe.toml"), recipe);
        Case { ctx }
    }

    pub fn path(&self, rel: &str) -> std::path::PathBuf {
        self.ctx.path().join(rel)
    }

    /// Build; expect exit 2, a message containing every `needle`, and no output.
    pub fn fails(&self, needles: &[&str]) -> String {
        let out = self.path("out/img");
        let r = run(boxwright()
            .args(["build", "--quiet", "-o"])
            .arg(&out)
            .arg(self.path("recipe.toml")));
        assert_eq!(r.code, 2, "exit code; stderr: {}", r.stderr);
        for n in needles {
            assert!(r.stderr.contains(n), "stderr lacks {n:?}: {}", r.stderr);
        }
        assert!(r.stdout.is_empty(), "nothing on stdout: {}", r.stdout);
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
        let left: Vec<_> = fs::read_dir(self.path("out"))
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "output left behind: {left:?}");
        r.stderr
    }
}

pub const HEAD: &str = "[image]\nname = \"t\"\n\n";

pub fn layer(entry: &str) -> String {
    format!("{HEAD}[[layer]]\n[[layer.entry]]\n{entry}\n")
}

#[test]
fn malformed_toml_names_line_and_column() {
    Case::new("[image]\nname = \"t\nx = 1\n").fails(&["recipe.toml:2:"]);
}

#[test]
fn unknown_keys_missing_fields_and_wrong_types_are_refused() {
    Case::new(&format!("{HEAD}[config]\nentrypint = [\"/x\"]\n"))
        .fails(&["recipe.toml:5:1", "unknown field `entrypint`"]);
    Case::new(&layer("src = \"files\"\ndest = \"/x\"\nmod = 1"))
        .fails(&["recipe.toml:8:1", "unknown field `mod`"]);
    Case::new("[image]\nbase = \"scratch\"\n").fails(&["recipe.toml:1:1", "missing field `name`"]);
    Case::new("[image]\nname = \"t\"\nplatforms = \"linux/amd64\"\n")
        .fails(&["recipe.toml:3:13", "invalid type"]);
    Case::new(&layer("src = \"files\"\ndest = \"/x\"\nmode = 0o17777"))
        .fails(&["recipe.toml:8:8", "mode"]);
}

#[test]
fn missing_src_and_bad_dest_are_refused() {
    Case::new(&layer("src = \"nope\"\ndest = \"/x\"")).fails(&[
        "recipe.toml:6:7",
        "\"nope\"",
        "cannot be read",
    ]);
    Case::new(&layer("src = \"files\"\ndest = \"opt/x\""))
        .fails(&["recipe.toml:7:8", "must be an absolute path"]);
    Case::new(&layer("src = \"files\"\ndest = \"/opt/../etc\""))
        .fails(&["recipe.toml:7:8", "must not contain `..`"]);
    Case::new(&layer("dest = \"/x\"")).fails(&["recipe.toml:5:1", "exactly one of"]);
}

#[test]
fn paths_outside_the_context_are_refused_unless_followed() {
    Case::new(&layer("src = \"..\"\ndest = \"/x\""))
        .fails(&["recipe.toml:6:7", "outside the build context"]);
    let outside = TempDir::new().unwrap();
    write(&outside.path().join("secret.txt"), "secret\n");
    let c = Case::new(&layer("src = \"/etc/hostname\"\ndest = \"/x\""));
    c.fails(&["recipe.toml:6:7", "outside the build context"]);

    let c = Case::new(&layer("src = \"files\"\ndest = \"/x\""));
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), c.path("files/escape")).unwrap();
    // An absolute link target is a path in the image: kept as a symlink.
    let out = c.path("ok");
    ok(boxwright()
        .args(["build", "--quiet", "-o"])
        .arg(&out)
        .arg(c.path("recipe.toml")));
    fs::remove_dir_all(&out).unwrap();
    fs::remove_file(c.path("files/escape")).unwrap();
    let rel = pathdiff(
        outside.path().join("secret.txt").as_path(),
        &c.path("files"),
    );
    std::os::unix::fs::symlink(&rel, c.path("files/escape")).unwrap();
    c.fails(&[
        "recipe.toml:5:1",
        "escape",
        "points outside the build context",
        "follow_symlinks",
    ]);

    // With follow_symlinks, the file it points at is copied.
    write(
        &c.path("recipe.toml"),
        &layer("src = \"files\"\ndest = \"/x\"\nfollow_symlinks = true"),
    );
    let out = c.path("followed");
    ok(boxwright()
        .args(["build", "--quiet", "-o"])
        .arg(&out)
        .arg(c.path("recipe.toml")));
    let i: Value =
        serde_json::from_str(&ok(boxwright().args(["inspect", "--json"]).arg(&out))).unwrap();
    assert_eq!(
        i["images"][0]["manifest"]["layers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// `to` relative to `from_dir`, with `..` components.
fn pathdiff(to: &Path, from_dir: &Path) -> std::path::PathBuf {
    let up = from_dir.components().count();
    let mut p = std::path::PathBuf::new();
    for _ in 0..up - 1 {
        p.push("..");
    }
    p.join(to.strip_prefix("/").unwrap())
}

#[test]
fn device_files_sockets_and_pipes_are_refused() {
    let c = Case::new(&layer("src = \"files\"\ndest = \"/x\""));
    let fifo = c.path("files/pipe");
    let cpath = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(cpath.as_ptr(), 0o644) }, 0);
    c.fails(&["recipe.toml:5:1", "files/pipe", "named pipe"]);
    fs::remove_file(&fifo).unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(c.path("files/sock")).unwrap();
    c.fails(&["files/sock", "a socket"]);
}

/// Files named on the command line, in the recipe or in the environment
/// that are named pipes or devices are refused at once, saying what they
/// are: none is waited on (a pipe would block the open or the read for
/// ever) or read without end (`/dev/zero`); a recipe is read up to 4 MiB.
#[test]
fn inputs_that_are_pipes_or_devices_are_refused_not_waited_on() {
    use crate::layout_reader::{mkfifo, run_bounded};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fifo = d.join("fifo");
    mkfifo(&fifo);
    let recipe = |body: &str| {
        let p = d.join("r.toml");
        fs::write(&p, format!("[image]\nname = \"t\"\n[[layer]]\n{body}")).unwrap();
        p
    };
    let home = d.join("home");
    let cmd = |args: &[&std::ffi::OsStr]| {
        let mut c = boxwright();
        c.env("HOME", &home)
            .env("XDG_CACHE_HOME", home.join("cache"))
            .env("DOCKER_CONFIG", home.join("docker"))
            .args(args);
        c
    };
    let os = |s: &str| std::ffi::OsString::from(s);
    let out = d.join("out");
    let big = d.join("big.toml");
    fs::File::create(&big).unwrap().set_len(5 << 20).unwrap();
    let cases: Vec<(Vec<std::ffi::OsString>, &str, i32)> = vec![
        (
            vec![
                os("build"),
                big.clone().into(),
                os("-o"),
                out.clone().into(),
            ],
            "larger than 4194304 bytes",
            2,
        ),
        (
            vec![
                os("build"),
                fifo.clone().into(),
                os("-o"),
                out.clone().into(),
            ],
            "a named pipe",
            2,
        ),
        (
            vec![os("build"), os("/dev/zero"), os("-o"), out.clone().into()],
            "a device",
            2,
        ),
        (
            vec![
                os("build"),
                recipe("[layer.python]\nlock = \"fifo\"\nversion = \"3.11\"\n").into(),
                os("-o"),
                out.clone().into(),
            ],
            "a named pipe",
            2,
        ),
        (
            vec![
                os("build"),
                recipe(&format!(
                    "[[layer.entry]]\nurl = \"file://{}\"\nsha256 = \"{}\"\ndest = \"/x\"\n",
                    fifo.display(),
                    "0".repeat(64)
                ))
                .into(),
                os("-o"),
                out.clone().into(),
            ],
            "a named pipe",
            2,
        ),
        (
            vec![
                os("verify"),
                os("--key"),
                fifo.clone().into(),
                os("127.0.0.1:1/a/b:1"),
            ],
            "a named pipe",
            2,
        ),
        (
            vec![
                os("verify"),
                os("--ca-file"),
                os("/dev/zero"),
                os("127.0.0.1:1/a/b:1"),
            ],
            "a device",
            2,
        ),
    ];
    for (args, said, code) in cases {
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let r = run_bounded(&mut cmd(&args));
        assert_eq!(r.code, code, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(said), "{args:?}: {}", r.stderr);
        assert!(!out.exists(), "{args:?} left an output");
    }
    // An auth file that is a pipe: the registry's credentials cannot be
    // read, and every command that asks for them says why instead of
    // waiting; the file is the user's to mend (exit 2).
    fs::create_dir_all(home.join("docker")).unwrap();
    mkfifo(&home.join("docker/config.json"));
    let srv = crate::support::Scripted::start(|req| match req.path() {
        "/v2/" => crate::support::Answer::json("200 OK", "{}"),
        _ => crate::support::Answer::json("401 Unauthorized", r#"{"errors":[]}"#)
            .header("WWW-Authenticate", "Basic realm=\"x\""),
    });
    let repo = format!("{}/a/b", srv.host());
    let layout = d.join("layout");
    crate::support::tiny_oci_layout(&layout, "1", b"auth pipe");
    let pulled = d.join("pulled");
    for args in [
        vec![os("tags"), os(&repo)],
        vec![os("verify"), os(&format!("{repo}:1"))],
        vec![
            os("pull"),
            os(&format!("{repo}:1")),
            os("-o"),
            pulled.clone().into(),
        ],
        vec![
            os("push"),
            layout.clone().into(),
            os("--to"),
            os(&format!("{repo}:1")),
            os("--retries"),
            os("0"),
        ],
    ] {
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let r = run_bounded(&mut cmd(&args));
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("config.json"), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("a named pipe"), "{args:?}: {}", r.stderr);
    }
    assert!(!pulled.exists(), "a failed pull left an output");
}

#[test]
fn conflicting_dests_are_refused_and_identical_ones_merge() {
    let two = format!("{HEAD}[[layer]]\n[[layer.entry]]\nsrc = \"files/a.txt\"\ndest = \"/x\"\n[[layer.entry]]\nsrc = \"files/b.txt\"\ndest = \"/x\"\n");
    Case::new(&two).fails(&[
        "recipe.toml:8:1",
        "dest /x is written twice",
        "first at",
        "recipe.toml:5:1",
    ]);
    let same = format!("{HEAD}[[layer]]\n[[layer.entry]]\nsrc = \"files/a.txt\"\ndest = \"/x\"\n[[layer.entry]]\ncontent = \"a\\n\"\ndest = \"/x\"\n");
    let c = Case::new(&same);
    ok(boxwright()
        .args(["build", "--quiet", "-o"])
        .arg(c.path("o"))
        .arg(c.path("recipe.toml")));
    let under_file = format!("{HEAD}[[layer]]\n[[layer.entry]]\ncontent = \"a\"\ndest = \"/x\"\n[[layer.entry]]\ncontent = \"b\"\ndest = \"/x/y\"\n");
    Case::new(&under_file).fails(&["/x/y needs /x to be a directory"]);
}

#[test]
fn unset_variables_and_unknown_platforms_are_named() {
    Case::new(&layer("content = \"${NOPE_UNSET}\"\ndest = \"/x\"")).fails(&[
        "recipe.toml:6:11",
        "variable `NOPE_UNSET` has no value",
        "--set NOPE_UNSET=",
    ]);
    Case::new("[image]\nname = \"t\"\nplatforms = [\"linux/amd99\"]\n")
        .fails(&["recipe.toml:3:14", "unknown architecture \"amd99\""]);
    Case::new("[image]\nname = \"t\"\nplatforms = [\"plan9/amd64\"]\n")
        .fails(&["unknown operating system \"plan9\""]);
    Case::new("[image]\nname = \"t\"\n").fails(&["no [[layer]] and no base image"]);
    Case::new(&format!(
        "tags = [\"bad tag\"]\n{}",
        layer("content = \"a\"\ndest = \"/x\"")
    ))
    .fails(&["recipe.toml:1:9", "tag \"bad tag\""]);
}

#[test]
fn bad_flags_exit_2() {
    let c = Case::new(&layer("content = \"a\"\ndest = \"/x\""));
    for args in [
        &["--jobs", "0"][..],
        &["--compression", "lz4"],
        &["--level", "42"],
        &["--set", "NOEQUALS"],
    ] {
        let r = run(boxwright()
            .arg("build")
            .args(args)
            .arg(c.path("recipe.toml")));
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
    }
    let r = run(boxwright().args(["build", "/nonexistent/recipe.toml"]));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("/nonexistent/recipe.toml"),
        "{}",
        r.stderr
    );
    let r = run(boxwright().args(["inspect", "/nonexistent"]));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("not an OCI image layout"), "{}", r.stderr);
}

/// A file of the context that the user running the build may not read is
/// bad input naming it, as an unreadable directory is, whether the layer
/// cache hashes it first or the layer reads it (`--no-cache`); the output
/// stays as it was. As root, the build runs as `nobody`.
#[test]
fn an_unreadable_source_file_is_refused_naming_it() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let c = Case::new(&layer("src = \"files\"\ndest = \"/x\""));
    for dir in [c.path(""), c.path("files")] {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    }
    let built = c.path("built");
    let as_user = |args: &[&str]| {
        let mut cmd = boxwright();
        if unsafe { libc::geteuid() } == 0 {
            cmd.uid(65534)
                .gid(65534)
                .env("XDG_CACHE_HOME", c.path("cache"));
        }
        run(cmd
            .args(["build", "--quiet"])
            .args(args)
            .arg("-o")
            .arg(&built)
            .arg(c.path("recipe.toml")))
    };
    assert_ok(&as_user(&[]));
    let index = fs::read(built.join("index.json")).unwrap();
    write(&c.path("files/a.txt"), "changed\n");
    fs::set_permissions(c.path("files/a.txt"), fs::Permissions::from_mode(0o000)).unwrap();
    for args in [&[][..], &["--no-cache"]] {
        let r = as_user(args);
        assert_code(&r, 2);
        assert!(
            r.stderr
                .contains("files/a.txt cannot be read: Permission denied"),
            "{args:?}: {}",
            r.stderr
        );
        assert_eq!(fs::read(built.join("index.json")).unwrap(), index);
    }
}

/// Figure: labels that make the config 5 MiB (a 1 MiB variable used five
/// times) fail the build with exit 2 naming the config and the 4 MiB
/// registries take, and write nothing: the image could not be pushed, nor
/// read back by boxwright.
#[test]
fn a_config_larger_than_registries_take_is_refused() {
    let big = "x".repeat(1 << 20);
    let labels: String = (1..=5).map(|i| format!("l{i} = \"${{BIG}}\"\n")).collect();
    let recipe = format!(
        "[vars]\nBIG = \"{big}\"\n\n[image]\nname = \"big\"\n\n[config.labels]\n{labels}\n\
         [[layer]]\n[[layer.entry]]\ncontent = \"a\"\ndest = \"/a\"\n"
    );
    Case::new(&recipe).fails(&["the config of linux/amd64", "4 MiB"]);
}

/// Figure: 126 layers build (exit 0) with a warning that Docker runs at
/// most 125; 125 build without it.
#[test]
fn more_layers_than_docker_runs_are_built_with_a_warning() {
    for (n, warned) in [(125, false), (126, true)] {
        let layers: String = (0..n)
            .map(|i| format!("[[layer]]\n[[layer.entry]]\ncontent = \"{i}\"\ndest = \"/f{i}\"\n\n"))
            .collect();
        let c = Case::new(&format!("[image]\nname = \"many\"\n\n{layers}"));
        let r = run(boxwright()
            .args(["build", "-o"])
            .arg(c.path("out"))
            .arg(c.path("recipe.toml")));
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(
            r.stderr.contains("more than 125"),
            warned,
            "{n}: {}",
            r.stderr
        );
    }
}

/// Figures: a `[vars]` default that names another variable is expanded
/// where it is used (`TAG = "${VERSION}-slim"` with `--set VERSION=2` tags
/// `2-slim`); defaults that come back to themselves are exit 2 naming the
/// chain and the line.
#[test]
fn vars_defaults_name_other_variables() {
    let recipe = "tags = [\"${TAG}\"]\n\n[vars]\nVERSION = \"1\"\nTAG = \"${VERSION}-slim\"\n\n\
                  [image]\nname = \"v\"\n\n[[layer]]\n[[layer.entry]]\ncontent = \"a\"\ndest = \"/a\"\n";
    let c = Case::new(recipe);
    let out = ok(boxwright()
        .args(["build", "--json", "--quiet", "--set", "VERSION=2", "-o"])
        .arg(c.path("out"))
        .arg(c.path("recipe.toml")));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["tags"], serde_json::json!(["2-slim"]), "{v:#}");
    let looped = "tags = [\"${A}\"]\n\n[vars]\nA = \"${B}\"\nB = \"x${A}\"\n\n\
                  [image]\nname = \"v\"\n\n[[layer]]\n[[layer.entry]]\ncontent = \"a\"\ndest = \"/a\"\n";
    Case::new(looped).fails(&["recipe.toml:1:", "A -> B -> A"]);
}

//! `boxwright build` and `inspect`: golden digests, reproducibility, real
//! consumers (oci-image-tool, skopeo, umoci); bad input in `build_errors`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::Value;
use tempfile::TempDir;

use crate::build_errors::{layer, Case};
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
    // After the base's two layers, the python-deps layers (one per
    // pure-Python wheel) do not depend on the platform: one blob for both.
    let images = v["images"].as_array().unwrap();
    for i in [2, 3] {
        assert_eq!(
            images[0]["layers"][i]["digest"],
            images[1]["layers"][i]["digest"]
        );
    }
    assert_eq!(images[0]["layers"][4]["source"], "tools");
    assert_ne!(
        images[0]["layers"][4]["digest"], images[1]["layers"][4]["digest"],
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
    assert_eq!(sha256(raw.as_bytes()), digest);
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

/// `recipe` built into the layout `out`: what `inspect --json` says of it.
fn built(out: &Path, recipe: &Path) -> Value {
    ok(boxwright()
        .args(["build", "--quiet", "-o"])
        .arg(out)
        .arg(recipe));
    serde_json::from_str(&ok(boxwright().args(["inspect", "--json"]).arg(out))).unwrap()
}

#[test]
fn a_base_layout_is_checked_and_left_as_it_was() {
    let c = Case::new(&layer("content = \"base\"\ndest = \"/base.txt\""));
    let base = c.path("base");
    let i = built(&base, &c.path("recipe.toml"));
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

/// Figures: a base of one layer and no history (as some tools write them)
/// gives an image whose history describes every layer, the base's with an
/// entry of its own, as buildah requires of a base to build on; a base
/// whose history describes three layers for its one is refused, exit 2,
/// naming both counts.
#[test]
fn the_history_of_an_image_describes_each_of_its_layers() {
    use crate::layout_reader::{blob_file, put, write_index};
    use crate::support::tiny_oci_layout;
    let c = Case::new(
        "[image]\nname = \"app\"\nbase = \"oci:base:1\"\n\n[[layer]]\n[[layer.entry]]\ncontent = \"app\"\ndest = \"/app.txt\"\n",
    );
    let base = c.path("base");
    let tiny = tiny_oci_layout(&base, "1", b"hi");
    let out = c.path("app");
    let i = built(&out, &c.path("recipe.toml"));
    let config = &i["images"][0]["config"];
    let history = config["history"].as_array().unwrap();
    let described = history.iter().filter(|h| h["empty_layer"] != true).count();
    assert_eq!(described, 2, "{config:#}");
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
    assert!(
        history[0]["created_by"].as_str().unwrap().contains("base"),
        "{config:#}"
    );
    // buildah builds on it: a container from the image, committed (which
    // checks the history against the layers). Run in the case's directory:
    // buildah names the image after the path, which must be lowercase.
    let buildah = |args: &[&str]| {
        let out = crate::support::tools::output(
            std::process::Command::new("buildah")
                .current_dir(c.path(""))
                .args(["--root", "buildah/root", "--runroot", "buildah/run"])
                .args(["--storage-driver", "vfs"])
                .args(args),
        );
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        assert!(
            out.status.success(),
            "buildah {args:?}: {}",
            text(&out.stderr)
        );
        text(&out.stdout).trim().to_string()
    };
    let container = buildah(&["from", "oci:app:latest"]);
    buildah(&["commit", &container, "built-on-boxwright"]);

    // The base's config given a history of three layers.
    let mut cfg: Value =
        serde_json::from_slice(&fs::read(blob_file(&base, &tiny.config_digest)).unwrap()).unwrap();
    cfg["history"] =
        serde_json::json!([{"created_by": "a"}, {"created_by": "b"}, {"created_by": "c"}]);
    let cfg = serde_json::to_vec(&cfg).unwrap();
    let mut manifest: Value = serde_json::from_slice(&tiny.manifest).unwrap();
    manifest["config"]["digest"] = put(&base, &cfg).into();
    manifest["config"]["size"] = cfg.len().into();
    let manifest = serde_json::to_vec(&manifest).unwrap();
    write_index(&base, &put(&base, &manifest), manifest.len() as u64, "1");
    c.fails(&["describes 3 layers", "has 1"]);
}

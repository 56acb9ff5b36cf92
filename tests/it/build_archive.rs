//! `build --format docker-archive|oci-archive -o FILE`: an image file that
//! `podman load` (and skopeo) read at once, whose digest is the layout
//! build's, written atomically (nothing else is left next to it).

use std::path::Path;

use crate::common::{assert_code, boxwright, noise, ok, run, sha256, tool, write};
use crate::support::{tempdir, Registry};

/// Two platforms, a shared layer and a per-architecture one; tags 2.0, latest.
fn recipe(dir: &Path) -> std::path::PathBuf {
    std::fs::write(dir.join("shared.bin"), noise(300_000, 81)).unwrap();
    for (i, arch) in ["amd64", "arm64"].iter().enumerate() {
        std::fs::write(
            dir.join(format!("tool-{arch}.bin")),
            noise(100_000, 82 + i as u64),
        )
        .unwrap();
    }
    let path = dir.join("recipe.toml");
    write(
        &path,
        "tags = [\"2.0\", \"latest\"]\n\n[image]\nname = \"arch\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n\n\
         [config]\nentrypoint = [\"/usr/local/bin/tool\"]\n\n\
         [[layer]]\nname = \"shared\"\n\n[[layer.entry]]\nsrc = \"shared.bin\"\ndest = \"/data/shared.bin\"\n\n\
         [[layer]]\nname = \"tool\"\n\n[[layer.entry]]\nsrc = \"tool-${ARCH}.bin\"\ndest = \"/usr/local/bin/tool\"\nmode = 0o755\n",
    );
    path
}

/// Names in `dir` (the archive's directory must hold nothing else).
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn docker_archive_loads_with_the_layout_builds_image() {
    let dir = tempdir();
    let recipe = recipe(dir.path());
    let layout = dir.path().join("layout");
    let one = ["--platform", "linux/amd64"];
    let digest = ok(boxwright()
        .args(["build", "--quiet"])
        .args(one)
        .arg("-o")
        .arg(&layout)
        .arg(&recipe));

    let out = dir.path().join("images");
    std::fs::create_dir_all(&out).unwrap();
    let tar = out.join("arch.tar");
    let printed = ok(boxwright()
        .args(["build", "--format", "docker-archive"])
        .args(one)
        .arg("-o")
        .arg(&tar)
        .arg(&recipe));
    // Figure: the digest printed is the layout build's, and only the
    // archive is left in its directory.
    assert_eq!(printed, digest);
    assert_eq!(names(&out), ["arch.tar"]);

    // skopeo reads it as `podman load` does: the config is byte for byte
    // the layout's, and the layers are the image's diff IDs.
    let reference = format!("docker-archive:{}", tar.display());
    let config = tool("skopeo", &["inspect", "--config", "--raw", &reference]);
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(layout.join("blobs/sha256").join(&digest[7..])).unwrap(),
    )
    .unwrap();
    assert_eq!(sha256(config.as_bytes()), manifest["config"]["digest"]);
    let info: serde_json::Value =
        serde_json::from_str(&tool("skopeo", &["inspect", &reference])).unwrap();
    assert_eq!(info["Architecture"], "amd64");
    assert_eq!(info["Layers"].as_array().unwrap().len(), 2);
    let listed = tool("tar", &["-xOf", tar.to_str().unwrap(), "manifest.json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(
        listed[0]["RepoTags"],
        serde_json::json!(["arch:2.0", "arch:latest"])
    );
    // podman loads it under both tags, as `docker build -t -t` and
    // `docker save` would give them.
    let storage = dir.path().join("podman");
    let podman = |args: &[&str]| {
        crate::support::tools::succeed(crate::support::tools::podman(&storage).args(args))
    };
    podman(&["load", "-q", "-i", tar.to_str().unwrap()]);
    let mut loaded: Vec<String> = podman(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
        .lines()
        .map(str::to_string)
        .collect();
    loaded.sort();
    assert_eq!(loaded, ["localhost/arch:2.0", "localhost/arch:latest"]);

    // Two platforms do not fit: exit 2 before anything is built.
    let r = run(boxwright()
        .args(["build", "--format", "docker-archive", "-o"])
        .arg(out.join("two.tar"))
        .arg(&recipe));
    assert_code(&r, 2);
    assert!(r.stderr.contains("--platform linux/amd64"), "{}", r.stderr);
    assert_eq!(names(&out), ["arch.tar"]);
}

#[test]
fn oci_archive_holds_the_two_platform_index_and_pushes_too() {
    let dir = tempdir();
    let recipe = recipe(dir.path());
    let digest = ok(boxwright()
        .args(["build", "--quiet", "-o"])
        .arg(dir.path().join("layout"))
        .arg(&recipe));
    let out = dir.path().join("images");
    std::fs::create_dir_all(&out).unwrap();
    let tar = out.join("arch-oci.tar");
    let printed = ok(boxwright()
        .args(["build", "--format", "oci-archive", "-o"])
        .arg(&tar)
        .arg(&recipe));
    assert_eq!(printed, digest);
    assert_eq!(names(&out), ["arch-oci.tar"]);
    // Figure: the index skopeo reads from the archive hashes to the digest.
    let raw = tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            &format!("oci-archive:{}:latest", tar.display()),
        ],
    );
    assert_eq!(sha256(raw.as_bytes()), digest);

    // With --push: the same digest pushed, the archive written, and the
    // --json document names the archive.
    let reg = Registry::start();
    let pushed_tar = out.join("pushed.tar");
    let json = ok(boxwright()
        .args(["build", "--json", "--format", "oci-archive", "-o"])
        .arg(&pushed_tar)
        .args(["--push", "--to", &format!("{}/acme/arch:2.0", reg.host())])
        .arg(&recipe));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["push"]["digest"], digest.as_str());
    assert_eq!(v["build"]["layout"], pushed_tar.to_str().unwrap());
    assert_eq!(names(&out), ["arch-oci.tar", "pushed.tar"]);
    let raw = tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            &format!("oci-archive:{}:2.0", pushed_tar.display()),
        ],
    );
    assert_eq!(sha256(raw.as_bytes()), digest);
}

/// A recipe's `[image] sbom` says what `build --push` attaches. An archive
/// cannot keep it, so an archive build of such a recipe writes the archive
/// (the digest of the same build without the key) instead of failing over
/// an `--sbom` that was never given; `--sbom` given with an archive is
/// still refused.
#[test]
fn an_archive_build_of_a_recipe_with_an_sbom_key_writes_the_archive() {
    let dir = tempdir();
    let r = recipe(dir.path());
    let build = |format: &str, out: &str, extra: &[&str]| {
        run(boxwright()
            .args([
                "build",
                "--quiet",
                "--platform",
                "linux/amd64",
                "--format",
                format,
            ])
            .args(extra)
            .arg("-o")
            .arg(dir.path().join(out))
            .arg(&r))
    };
    let plain = build("docker-archive", "plain.tar", &[]);
    assert_code(&plain, 0);
    let text = std::fs::read_to_string(&r)
        .unwrap()
        .replace("name = \"arch\"\n", "name = \"arch\"\nsbom = \"spdx\"\n");
    write(&r, &text);
    for format in ["oci-archive", "docker-archive"] {
        let out = format!("with-sbom-{format}.tar");
        let got = build(format, &out, &[]);
        assert_code(&got, 0);
        assert_eq!(got.stdout, plain.stdout, "{format}");
        assert!(dir.path().join(&out).is_file(), "{format}");
        let refused = build(format, &format!("refused-{format}.tar"), &["--sbom"]);
        assert_code(&refused, 2);
        assert!(!dir.path().join(format!("refused-{format}.tar")).exists());
    }
}

//! `index --recipe`: the index assembled from per-platform pushes carries
//! the recipe's `[annotations]` as a local multi-platform `build` writes
//! them, so the two digests are equal without repeating them as
//! `--annotation`.

use std::path::Path;

use crate::common::{assert_ok, noise, ok, write};
use crate::pair::Pair;
use crate::support::tempdir;

/// Two platforms, annotations with a variable and a platform variable.
fn recipe(dir: &Path) -> std::path::PathBuf {
    for (i, arch) in ["amd64", "arm64"].iter().enumerate() {
        std::fs::write(
            dir.join(format!("tool-{arch}.bin")),
            noise(200_000, 70 + i as u64),
        )
        .unwrap();
    }
    let text = "tags = [\"${VERSION}\"]\n\n[vars]\nVERSION = \"0.0.1\"\n\n\
        [image]\nname = \"app\"\nplatforms = [\"linux/arm64\", \"linux/amd64\"]\n\n\
        [annotations]\n\"org.opencontainers.image.version\" = \"${VERSION}\"\n\
        \"org.opencontainers.image.source\" = \"https://example.com/app\"\n\
        \"com.example.built-on\" = \"${ARCH}\"\n\n\
        [[layer]]\nname = \"tool\"\n\n[[layer.entry]]\nsrc = \"tool-${ARCH}.bin\"\ndest = \"/usr/local/bin/tool\"\nmode = 0o755\n";
    let path = dir.join("recipe.toml");
    write(&path, text);
    path
}

#[test]
fn index_recipe_gives_the_digest_of_the_local_multi_platform_build() {
    let pair = Pair::start();
    let dir = tempdir();
    let recipe = recipe(dir.path());
    let set = "VERSION=2.1.0";

    // Two runners push their platform by digest.
    let mut sources = Vec::new();
    for arch in ["amd64", "arm64"] {
        let d = ok(pair
            .cmd()
            .args(["build", "--quiet", "--set", set, "--push", "--to"])
            .arg(format!("{}/acme/app@", pair.a.host()))
            .args(["--platform", &format!("linux/{arch}"), "-o"])
            .arg(dir.path().join(format!("out-{arch}")))
            .arg(&recipe));
        sources.push(format!("{}/acme/app@{d}", pair.a.host()));
    }
    let local = ok(pair
        .cmd()
        .args(["build", "--quiet", "--set", set, "-o"])
        .arg(dir.path().join("out-all"))
        .arg(&recipe));

    // Without the recipe, the index has no annotations: another digest.
    let bare = pair.run(&[
        "index",
        "--to",
        &format!("{}/acme/app:bare", pair.a.host()),
        &sources[0],
        &sources[1],
    ]);
    assert_ok(&bare);
    assert_ne!(bare.stdout.trim(), local);

    // Figure: with --recipe (and its --set), the digest is the local build's,
    // on both registries, and the served bytes hash to it.
    let r = pair.run(&[
        "index",
        "--recipe",
        recipe.to_str().unwrap(),
        "--set",
        set,
        "--to",
        &format!("{}/acme/app:2.1.0", pair.a.host()),
        "--to",
        &format!("{}/acme/app:2.1.0", pair.b.host()),
        &sources[1],
        &sources[0],
    ]);
    assert_ok(&r);
    assert_eq!(r.stdout.trim(), local, "{}", r.stderr);
    assert!(!r.stderr.contains("warning:"), "{}", r.stderr);
    let raw = pair.raw(&pair.b, &format!("{}/acme/app:2.1.0", pair.b.host()));
    assert_eq!(crate::common::sha256(raw.as_bytes()), local);
    let index: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        index["annotations"]["org.opencontainers.image.version"],
        "2.1.0"
    );
    assert_eq!(index["annotations"]["com.example.built-on"], "amd64");

    // --annotation still adds to (or overrides) the recipe's.
    let r = pair.run(&[
        "index",
        "--recipe",
        recipe.to_str().unwrap(),
        "--set",
        set,
        "--annotation",
        "org.opencontainers.image.version=2.1.0-rc",
        "--to",
        &format!("{}/acme/app:rc", pair.a.host()),
        &sources[0],
        &sources[1],
    ]);
    assert_ok(&r);
    assert_ne!(r.stdout.trim(), local);

    // One source of a two-platform recipe: pushed, with a warning that a
    // local build would differ.
    let r = pair.run(&[
        "index",
        "--recipe",
        recipe.to_str().unwrap(),
        "--to",
        &format!("{}/acme/app:one", pair.a.host()),
        &sources[0],
    ]);
    assert_ok(&r);
    assert!(
        r.stderr.contains("warning:") && r.stderr.contains("linux/amd64, linux/arm64"),
        "{}",
        r.stderr
    );
}

#[test]
fn index_set_needs_a_recipe_and_a_bad_recipe_is_exit_2() {
    let pair = Pair::start();
    let src = format!("{}/acme/app@sha256:{}", pair.a.host(), "0".repeat(64));
    let to = format!("{}/acme/app:x", pair.a.host());
    let r = pair.run(&["index", "--set", "A=1", "--to", &to, &src]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = pair.run(&["index", "--recipe", "/nonexistent.toml", "--to", &to, &src]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("/nonexistent.toml"), "{}", r.stderr);
}

//! `boxwright index`: per-platform images pushed by digest from two
//! "runners" (two `boxwright build --push` processes) become one OCI index
//! on two registries. Registry A is GHCR-like (bearer tokens), B is
//! Docker-Hub-like (basic auth); each sits behind a counting proxy. Every
//! test states the figure it checks.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;

use serde_json::Value;

use crate::common::{assert_code, boxwright, noise, ok, sha256, write};
use crate::pair::{blob_upload_bytes, body_bytes, uploads_by_digest, Pair};
use crate::support::{tempdir, LogEntry};

/// Blob GETs per digest.
fn blob_gets(log: &[LogEntry]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for e in log {
        if e.method == "GET" && e.path.contains("/blobs/sha256:") {
            let d = e.path.rsplit('/').next().unwrap_or_default().to_string();
            *m.entry(d).or_default() += 1;
        }
    }
    m
}

fn read_blob(layout: &Path, digest: &str) -> Vec<u8> {
    std::fs::read(layout.join("blobs/sha256").join(&digest[7..])).unwrap()
}

/// The single manifest of a one-platform layout: its bytes and its blobs
/// (digest -> size, config first).
fn manifest_of(layout: &Path, digest: &str) -> (Vec<u8>, BTreeMap<String, u64>) {
    let bytes = read_blob(layout, digest);
    let m: Value = serde_json::from_slice(&bytes).unwrap();
    let mut blobs = BTreeMap::new();
    for b in std::iter::once(&m["config"]).chain(m["layers"].as_array().unwrap()) {
        blobs.insert(
            b["digest"].as_str().unwrap().to_string(),
            b["size"].as_u64().unwrap(),
        );
    }
    (bytes, blobs)
}

/// A two-platform recipe: one shared noise layer (the same blob on both
/// platforms) and one per-architecture tool layer.
fn recipe(dir: &Path) -> std::path::PathBuf {
    std::fs::write(dir.join("shared.bin"), noise(1 << 20, 61)).unwrap();
    for (i, arch) in ["amd64", "arm64"].iter().enumerate() {
        std::fs::write(
            dir.join(format!("tool-{arch}.bin")),
            noise(300_000 + i * 1000, 610 + i as u64),
        )
        .unwrap();
    }
    let text = "tags = [\"1.0\"]\n\n[image]\nname = \"app\"\n\
        platforms = [\"linux/amd64\", \"linux/arm64\"]\n\n\
        [[layer]]\nname = \"shared\"\n\n[[layer.entry]]\nsrc = \"shared.bin\"\ndest = \"/data/shared.bin\"\n\n\
        [[layer]]\nname = \"tool\"\n\n[[layer.entry]]\nsrc = \"tool-${ARCH}.bin\"\ndest = \"/usr/local/bin/tool\"\nmode = 0o755\n";
    let path = dir.join("recipe.toml");
    write(&path, text);
    path
}

#[test]
fn index_from_two_runners_lands_on_both_registries_with_no_layer_bytes_where_they_are() {
    let pair = Pair::start();
    let dir = tempdir();
    let recipe = recipe(dir.path());
    let runner_repo = format!("{}/acme/app@", pair.a.host());

    // Two runners: two processes, side by side, each building one platform
    // and pushing it by digest only (`--to REPO@`: no tag written).
    let mut children = Vec::new();
    for arch in ["amd64", "arm64"] {
        let child = pair
            .cmd()
            .args(["build", "--quiet", "--push", "--to", &runner_repo])
            .args(["--platform", &format!("linux/{arch}"), "-o"])
            .arg(dir.path().join(format!("out-{arch}")))
            .arg(&recipe)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        children.push((arch, child));
    }
    let mut digests = BTreeMap::new();
    for (arch, child) in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "runner {arch}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let d = String::from_utf8(out.stdout).unwrap().trim().to_string();
        assert!(d.starts_with("sha256:"), "{d}");
        digests.insert(arch, d);
    }
    // Figure: pushing by digest wrote no tag on A.
    let latest = pair.run(&["verify", &format!("{}/acme/app:latest", pair.a.host())]);
    assert_code(&latest, 1);
    assert!(latest.stderr.contains("not found"), "{}", latest.stderr);

    let mut blobs: BTreeMap<String, u64> = BTreeMap::new();
    let mut manifests: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (arch, d) in &digests {
        let (bytes, own) = manifest_of(&dir.path().join(format!("out-{arch}")), d);
        blobs.extend(own);
        manifests.insert(d.clone(), bytes);
    }
    assert_eq!(blobs.len(), 5, "2 configs, 1 shared layer, 2 tool layers");
    let blob_bytes: u64 = blobs.values().sum();
    let manifest_bytes: u64 = manifests.values().map(|m| m.len() as u64).sum();

    // The final job: one index on A (the runners' repository and a mirror
    // repository) and on B.
    pair.reset();
    let cache = tempdir();
    let (a_tag, mirror_tag, b_tag) = (
        format!("{}/acme/app:1.0", pair.a.host()),
        format!("{}/mirror/app:1.0", pair.a.host()),
        format!("{}/acme/app:1.0", pair.b.host()),
    );
    let src = |arch: &str| format!("{}/acme/app@{}", pair.a.host(), digests[arch]);
    // Sources given arm64 first: the index sorts them. In GitHub Actions
    // the push's tables go to the job summary.
    let summary = dir.path().join("summary.md");
    let r = crate::common::run(
        pair.cmd()
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_STEP_SUMMARY", &summary)
            .args([
                "index",
                "--json",
                "--cache-dir",
                cache.path().to_str().unwrap(),
                "--to",
                &a_tag,
                "--to",
                &mirror_tag,
                "--to",
                &b_tag,
                &src("arm64"),
                &src("amd64"),
            ]),
    );
    assert_code(&r, 0);
    let rep: Value = serde_json::from_str(&r.stdout).unwrap();
    let digest = rep["digest"].as_str().unwrap().to_string();
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(
        md.starts_with(&format!("### boxwright index: pushed `{digest}`")),
        "{md}"
    );
    for t in [&a_tag, &mirror_tag, &b_tag] {
        assert!(md.contains(&format!("| `{t}` | ok | `{digest}` |")), "{md}");
    }
    let platforms: Vec<&str> = rep["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"].as_str().unwrap())
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    let index_size = rep["size"].as_u64().unwrap();

    // Figure A: zero blob bytes sent. In acme/app every blob is present
    // (HEAD only); into mirror/app each blob is mounted once (201) from
    // acme/app. A receives only the index (twice: two tags) and the two
    // platform manifests for mirror/app.
    let a_log = pair.a.log();
    assert_eq!(blob_upload_bytes(&a_log), 0, "{a_log:#?}");
    let mounts: Vec<&LogEntry> = a_log
        .iter()
        .filter(|e| e.method == "POST" && e.query.as_deref().is_some_and(|q| q.contains("mount=")))
        .collect();
    assert_eq!(mounts.len(), blobs.len(), "{mounts:#?}");
    assert!(
        mounts
            .iter()
            .all(|e| e.status == Some(201) && e.path.contains("/mirror/app/")),
        "{mounts:#?}"
    );
    assert_eq!(
        a_log
            .iter()
            .filter(
                |e| e.method == "POST" && e.query.as_deref().is_none_or(|q| !q.contains("mount="))
            )
            .count(),
        0,
        "no upload session opened on A: {a_log:#?}"
    );
    assert_eq!(body_bytes(&pair.a), 2 * index_size + manifest_bytes);
    // Figure: each blob left A at most once (B needed all of them; the
    // configs were read once for the platforms and reused for B).
    let gets = blob_gets(&a_log);
    assert_eq!(gets.len(), blobs.len(), "{gets:?}");
    assert!(gets.values().all(|&n| n == 1), "{gets:?}");
    assert_eq!(rep["blobs_downloaded"], blobs.len());
    assert_eq!(rep["bytes_downloaded"], blob_bytes);

    // Figure B: each blob uploaded exactly once; B received the blobs, the
    // two platform manifests and the index, nothing more.
    let b_log = pair.b.log();
    let ups = uploads_by_digest(&b_log);
    assert_eq!(
        ups.keys().cloned().collect::<Vec<_>>(),
        blobs.keys().cloned().collect::<Vec<_>>()
    );
    assert!(ups.values().all(|&n| n == 1), "{ups:?}");
    assert_eq!(
        body_bytes(&pair.b),
        blob_bytes + manifest_bytes + index_size,
        "{b_log:#?}"
    );
    // Manifests only after the last blob request; the index tag last.
    let first_manifest_put = b_log
        .iter()
        .position(|e| e.method == "PUT" && e.path.contains("/manifests/"))
        .unwrap();
    let last_blob = b_log
        .iter()
        .rposition(|e| e.path.contains("/blobs/"))
        .unwrap();
    assert!(last_blob < first_manifest_put, "{b_log:#?}");
    let last_put = b_log.iter().rfind(|e| e.method == "PUT").unwrap();
    assert!(last_put.path.ends_with("/manifests/1.0"), "{last_put:?}");

    // skopeo reads the index: its sha256 is the printed digest, entries
    // sorted amd64 then arm64, mediaType set, platform manifests by digest.
    for (p, reference) in [(&pair.a, &a_tag), (&pair.a, &mirror_tag), (&pair.b, &b_tag)] {
        let raw = pair.raw(p, reference);
        assert_eq!(sha256(raw.as_bytes()), digest, "{reference}");
        let v: Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(v["mediaType"], "application/vnd.oci.image.index.v1+json");
        let entries: Vec<(String, String)> = v["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["platform"]["architecture"].as_str().unwrap().to_string(),
                    m["digest"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            entries,
            [
                ("amd64".to_string(), digests["amd64"].clone()),
                ("arm64".to_string(), digests["arm64"].clone())
            ]
        );
    }
    // Figure: the index is the one `build` makes for both platforms at once.
    let both = ok(boxwright()
        .args(["build", "--quiet", "-o"])
        .arg(dir.path().join("out-both"))
        .arg(&recipe));
    assert_eq!(
        both, digest,
        "index digest equals the local two-platform build's"
    );

    // It verifies on both registries.
    assert_code(&pair.run(&["verify", &a_tag, &mirror_tag, &b_tag]), 0);

    // Figure: a re-run sends zero body bytes anywhere and the same digest.
    pair.reset();
    let r = pair.run(&[
        "index",
        "--cache-dir",
        cache.path().to_str().unwrap(),
        "--to",
        &a_tag,
        "--to",
        &b_tag,
        &src("amd64"),
        &src("arm64"),
    ]);
    assert_code(&r, 0);
    assert_eq!(r.stdout.trim(), digest);
    assert_eq!(body_bytes(&pair.a) + body_bytes(&pair.b), 0);
    assert!(
        blob_gets(&pair.a.log()).is_empty(),
        "configs from the cache"
    );
}

#[test]
fn index_refuses_two_sources_of_one_platform_an_index_source_and_a_tag() {
    let pair = Pair::start();
    let dir = tempdir();
    let recipe = recipe(dir.path());
    // Both platforms built and pushed as one index (tag 1.0), plus amd64
    // alone pushed by digest.
    let index_digest = ok(pair
        .cmd()
        .args(["build", "--quiet", "--push", "--to"])
        .arg(format!("{}/acme/app:1.0", pair.a.host()))
        .arg("-o")
        .arg(dir.path().join("both"))
        .arg(&recipe));
    let amd = ok(pair
        .cmd()
        .args([
            "build",
            "--quiet",
            "--push",
            "--platform",
            "linux/amd64",
            "--to",
        ])
        .arg(format!("{}/other/app@", pair.a.host()))
        .arg("-o")
        .arg(dir.path().join("amd"))
        .arg(&recipe));
    let to = format!("{}/acme/final:1.0", pair.b.host());

    // Two amd64 images (same platform, two repositories): exit 2 naming both.
    let first = format!("{}/other/app@{amd}", pair.a.host());
    let second = format!("{}/acme/app@{amd}", pair.a.host());
    let r = pair.run(&["index", "--to", &to, &first, &second]);
    assert_code(&r, 2);
    assert!(
        r.stderr.contains("linux/amd64") && r.stderr.contains(&first) && r.stderr.contains(&second),
        "{}",
        r.stderr
    );
    // An index as a source: exit 2, listing its platform images.
    let idx = format!("{}/acme/app@{index_digest}", pair.a.host());
    let r = pair.run(&["index", "--to", &to, &idx]);
    assert_code(&r, 2);
    assert!(
        r.stderr.contains("is an image index")
            && r.stderr.contains(&format!("@{amd} (linux/amd64)")),
        "{}",
        r.stderr
    );
    // A source by tag: exit 2 (a digest is required).
    let r = pair.run(&[
        "index",
        "--to",
        &to,
        &format!("{}/acme/app:1.0", pair.a.host()),
    ]);
    assert_code(&r, 2);
    assert!(r.stderr.contains("has no digest"), "{}", r.stderr);
    // Figure: nothing was written to B by the refused runs.
    assert_eq!(body_bytes(&pair.b), 0);
}

/// `--to REPO@` puts the index there by digest only, and the report names
/// that target `REPO@DIGEST`, the reference that names it, as `push --json`
/// and `build --push --json` do.
#[test]
fn index_by_digest_only_names_its_target_repo_at_digest() {
    let pair = Pair::start();
    let dir = tempdir();
    let layout = dir.path().join("img");
    crate::support::tiny_oci_layout(&layout, "1", b"index by digest");
    let pushed = ok(pair
        .cmd()
        .args(["push", "--quiet"])
        .arg(&layout)
        .args(["--to", &format!("{}/acme/app@", pair.a.host())]));
    let src = format!("{}/acme/app@{}", pair.a.host(), pushed.trim());
    let to = format!("{}/acme/final", pair.b.host());
    let r = pair.run(&["index", "--json", "--to", &format!("{to}@"), &src]);
    assert_code(&r, 0);
    let rep: Value = serde_json::from_str(&r.stdout).unwrap();
    let digest = rep["digest"].as_str().unwrap();
    let targets = rep["push"]["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 1, "{rep:#}");
    assert_eq!(targets[0]["reference"], format!("{to}@{digest}"), "{rep:#}");
    assert_eq!(targets[0]["ok"], true, "{rep:#}");
}

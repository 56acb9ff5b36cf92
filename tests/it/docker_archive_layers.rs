//! The layers of a `docker-archive` (`build --format docker-archive` on a
//! layout base, `pull --format docker-archive`) are decompressed into the
//! archive: a layer that decompresses past `BOXWRIGHT_UNPACKED_LAYER_MAX`,
//! does not match its diff ID or does not decompress is bad input (exit 2)
//! naming the layer and the `-o` file, and nothing is left beside it.

use std::io::Write as _;
use std::path::Path;

use serde_json::json;

use crate::common::{assert_code, write, Run};
use crate::env::Env;
use crate::layout_reader::{put, run_bounded, sha256, write_index};
use crate::support::Registry;

const LIMIT_ENV: &str = "BOXWRIGHT_UNPACKED_LAYER_MAX";

/// A tar holding `size` zero bytes as `zeros`.
fn tar_of_zeros(size: usize) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(size as u64);
    h.set_mode(0o644);
    h.set_cksum();
    let zeros = std::io::Read::take(std::io::repeat(0), size as u64);
    b.append_data(&mut h, "zeros", zeros).unwrap();
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

/// A layout at `dir` (tag `1`) of one linux/amd64 image whose one layer is
/// `blob` (of `media`), its config listing `diff_id`; the layer's digest.
fn layout(dir: &Path, blob: &[u8], media: &str, diff_id: &str) -> String {
    let layer = put(dir, blob);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }))
    .unwrap();
    let config_digest = put(dir, &config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": media, "digest": layer, "size": blob.len()}],
    }))
    .unwrap();
    let manifest_digest = put(dir, &manifest);
    write_index(dir, &manifest_digest, manifest.len() as u64, "1");
    layer
}

/// `build --format docker-archive` of a one-layer recipe on the layout
/// `base`, into `out/img.tar`, with `limit` as the bound when given.
fn build_archive(env: &Env, base: &Path, out: &Path, limit: Option<&str>) -> Run {
    let recipe = env.path().join("app.toml");
    write(
        &recipe,
        &format!(
            "[image]\nname = \"app\"\nbase = \"oci:{}:1\"\n\n[[layer]]\n[[layer.entry]]\ncontent = \"app\"\ndest = \"/app.txt\"\n",
            base.display()
        ),
    );
    let mut c = env.cmd();
    c.env_remove(LIMIT_ENV);
    if let Some(l) = limit {
        c.env(LIMIT_ENV, l);
    }
    run_bounded(
        c.args(["build", "--format", "docker-archive", "--cache-dir"])
            .arg(env.cache())
            .arg("-o")
            .arg(out.join("img.tar"))
            .arg(&recipe),
    )
}

/// Names in `dir`, sorted (none when it does not exist).
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Exit 2, the error's first line `first`, the message naming the `-o`
/// file (`out/img.tar`) and holding each of `wanted`, no temporary
/// directory named, and nothing left in `out`.
fn refused(r: &Run, out: &Path, first: &str, wanted: &[&str]) {
    assert_code(r, 2);
    let line = r.stderr.lines().find(|l| l.starts_with("error:"));
    assert_eq!(line, Some(first), "{}", r.stderr);
    let writing = format!("writing {}\n", out.join("img.tar").display());
    for w in wanted.iter().chain([&writing.as_str()]) {
        assert!(r.stderr.contains(w), "expected {w:?} in:\n{}", r.stderr);
    }
    assert!(!r.stderr.contains(".boxwright-"), "{}", r.stderr);
    assert_eq!(names(out), Vec::<String>::new());
}

/// Figure: a gzip and a zstd layer of 3 MiB of zeros (a few KiB each)
/// with a bound of 1 MiB are refused as they pass it, naming the layer and
/// the bound, and leave nothing; without the bound the archive is written
/// and its layer is the 3 MiB tar, announced under the `-o` name.
#[test]
fn a_layer_decompressing_past_the_bound_is_refused_as_it_passes() {
    let tar = tar_of_zeros(3 << 20);
    let zst = zstd::stream::encode_all(&tar[..], 3).unwrap();
    for (blob, media) in [
        (gzip(&tar), "application/vnd.oci.image.layer.v1.tar+gzip"),
        (zst, "application/vnd.oci.image.layer.v1.tar+zstd"),
    ] {
        let env = Env::new();
        let base = env.path().join("base");
        let layer = layout(&base, &blob, media, &sha256(&tar));
        let out = env.path().join("out");
        let r = build_archive(&env, &base, &out, Some("1MiB"));
        let first = format!("error: writing {}", out.join("img.tar").display());
        refused(&r, &out, &first, &[&layer, "1.0 MiB", LIMIT_ENV]);

        let r = build_archive(&env, &base, &out, None);
        assert_code(&r, 0);
        let written = out.join("img.tar");
        assert_eq!(names(&out), ["img.tar"]);
        assert!(
            r.stderr
                .contains(&format!("wrote {} (sha256:", written.display())),
            "{}",
            r.stderr
        );
        assert!(!r.stderr.contains(".boxwright-"), "{}", r.stderr);
        let mut a = tar::Archive::new(std::fs::File::open(&written).unwrap());
        let entry = format!("{}.tar", &sha256(&tar)[7..]);
        let sizes: Vec<(String, u64)> = a
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().display().to_string(), e.size())
            })
            .filter(|(n, _)| *n == entry)
            .collect();
        assert_eq!(sizes, [(entry, tar.len() as u64)]);
    }
}

/// Figure: a bound that is not a size is exit 2 naming the variable.
#[test]
fn a_bound_that_is_not_a_size_is_refused_naming_the_variable() {
    let env = Env::new();
    let base = env.path().join("base");
    let tar = tar_of_zeros(1024);
    let media = "application/vnd.oci.image.layer.v1.tar+gzip";
    layout(&base, &gzip(&tar), media, &sha256(&tar));
    let out = env.path().join("out");
    let r = build_archive(&env, &base, &out, Some("lots"));
    assert_code(&r, 2);
    assert!(r.stderr.contains(LIMIT_ENV), "{}", r.stderr);
    assert_eq!(names(&out), Vec::<String>::new());
}

/// Figure: a layer whose diff ID is not what it decompresses to, and one
/// whose gzip stream is corrupt, are exit 2 naming the layer and the `-o`
/// file, leaving nothing.
#[test]
fn a_layer_that_does_not_match_or_does_not_decompress_is_bad_input() {
    let tar = tar_of_zeros(64 << 10);
    let good = gzip(&tar);
    let mut corrupt = good.clone();
    let mid = corrupt.len() / 2;
    corrupt.truncate(mid);
    corrupt.extend_from_slice(&[0xff; 64]);
    let media = "application/vnd.oci.image.layer.v1.tar+gzip";
    let wrong = format!("sha256:{}", "0".repeat(64));
    for (blob, diff_id, says) in [
        (good, wrong.as_str(), "diff ID"),
        (corrupt, &*sha256(&tar), "does not decompress"),
    ] {
        let env = Env::new();
        let base = env.path().join("base");
        let layer = layout(&base, &blob, media, diff_id);
        let out = env.path().join("out");
        let r = build_archive(&env, &base, &out, None);
        let first = format!("error: writing {}", out.join("img.tar").display());
        refused(&r, &out, &first, &[&layer, says]);
    }
}

/// Figure: `pull --format docker-archive` of a registry image whose layer
/// decompresses past a 1 MiB bound is exit 2 naming the layer, the bound
/// and the `-o` file, leaving nothing.
#[test]
fn pull_refuses_a_layer_past_the_bound() {
    let env = Env::new();
    let reg = Registry::start();
    let base = env.path().join("base");
    let tar = tar_of_zeros(3 << 20);
    let media = "application/vnd.oci.image.layer.v1.tar+gzip";
    let layer = layout(&base, &gzip(&tar), media, &sha256(&tar));
    let reference = format!("{}/x/bomb:1", reg.host());
    let pushed = run_bounded(
        env.cmd()
            .args(["push", "--quiet"])
            .arg(&base)
            .args(["--to", &reference]),
    );
    assert_code(&pushed, 0);
    let out = env.path().join("out");
    let r = run_bounded(
        env.cmd()
            .env(LIMIT_ENV, "1MiB")
            .args([
                "pull",
                &reference,
                "--format",
                "docker-archive",
                "--cache-dir",
            ])
            .arg(env.cache())
            .arg("-o")
            .arg(out.join("img.tar")),
    );
    let first = format!("error: pulling {reference}");
    refused(&r, &out, &first, &[&layer, "1.0 MiB", LIMIT_ENV]);
}

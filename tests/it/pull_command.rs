//! `boxwright pull` against real `docker-registry` instances behind
//! counting fault proxies: a primary that fails (503, 429, corrupt blobs)
//! and a fallback that serves; archives that skopeo reads. The base it pulls
//! is the two-platform index of `pull`. Every test states the figure it
//! checks.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{assert_ok, ok, run, sha256, Run};
use crate::env::Env;
use crate::pull::{build_base, push_base, Base};
use crate::support::{skopeo, Fault, FaultProxy, Registry};

/// `pull REF --fallback REF2 -o DIR` with the primary proxy answering
/// `fault` to everything.
fn pull_with_failing_primary(fault: Fault, extra: &[&str]) -> (Run, String, Base, FaultProxy, Env) {
    let env = Env::new();
    let (empty, holder) = (Registry::start(), Registry::start());
    let p1 = FaultProxy::start(&empty);
    p1.configure(|c| {
        c.fault_rate = 1.0;
        c.fault_kinds = vec![fault];
        c.extra_headers = vec![("ratelimit-remaining".into(), "0;w=21600".into())];
    });
    let base = build_base();
    push_base(&env, &base, &holder.host());
    let out = env.path().join("pulled");
    let mut c = env.cmd();
    c.arg("pull")
        .arg(format!("{}/base/img:1.0", p1.host()))
        .args(["--fallback", &format!("{}/base/img:1.0", holder.host())])
        .arg("-o")
        .arg(&out)
        .arg("--cache-dir")
        .arg(env.cache())
        .args(extra);
    let r = run(&mut c);
    assert_ok(&r);
    // The layout's index.json names the served index; skopeo reads it.
    let raw = skopeo(&["inspect", "--raw", &format!("oci:{}:1.0", out.display())]);
    assert_eq!(sha256(raw.as_bytes()), base.index);
    (r, holder.host(), base, p1, env)
}

#[test]
fn pull_falls_back_when_the_primary_answers_503() {
    let started = Instant::now();
    let (r, holder, base, p1, _env) = pull_with_failing_primary(Fault::Unavailable, &["--json"]);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    // Figure: the fallback served the index digest; the primary got 2
    // requests (one retry), both answered 503.
    assert_eq!(v["digest"], base.index);
    assert_eq!(v["served"]["registry"], holder);
    assert_eq!(v["served"]["fallback"], true);
    assert_eq!(
        v["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64"])
    );
    assert!(v["served"]["skipped"][0]["error"]
        .as_str()
        .unwrap()
        .contains("503"));
    assert!(r.stderr.contains(&holder), "{}", r.stderr);
    let tried = p1.log();
    assert_eq!(tried.len(), 2, "{tried:#?}");
    assert!(tried.iter().all(|e| e.status == Some(503)));
    assert_eq!(v["blobs_downloaded"], base.blobs().len());
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn pull_falls_back_on_429_and_shows_the_rate_limit() {
    let (r, holder, base, p1, env) =
        pull_with_failing_primary(Fault::TooManyRequests, &["--verbose", "--json"]);
    // Figure: the fallback served the index digest, the primary was skipped
    // for its 429; stderr shows the 429 with its ratelimit-remaining.
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["digest"], base.index);
    assert_eq!(v["served"]["registry"], holder, "{v:#}");
    assert_eq!(v["served"]["fallback"], true, "{v:#}");
    let skipped = v["served"]["skipped"][0]["error"].as_str().unwrap_or("");
    assert!(skipped.contains("429"), "{v:#}");
    assert!(r.stderr.contains("429"), "{}", r.stderr);
    assert!(
        r.stderr.contains("ratelimit-remaining: 0;w=21600"),
        "{}",
        r.stderr
    );
    // Without a fallback the 429 is the error (exit 1), quota included.
    let alone = run(env
        .cmd()
        .arg("pull")
        .arg(format!("{}/base/img:1.0", p1.host()))
        .arg("-o")
        .arg(env.path().join("alone"))
        .arg("--cache-dir")
        .arg(env.cache()));
    assert_eq!(alone.code, 1, "{}", alone.stderr);
    assert!(alone.stderr.contains("429"), "{}", alone.stderr);
    assert!(
        alone.stderr.contains("ratelimit-remaining: 0;w=21600"),
        "{}",
        alone.stderr
    );
}

#[test]
fn a_corrupt_blob_is_named_exit_1_and_never_cached() {
    let env = Env::new();
    let reg = Registry::start();
    let base = build_base();
    push_base(&env, &base, &reg.host());
    let proxy = FaultProxy::start(&reg);
    proxy.configure(|c| c.corrupt_blobs = true);
    let out = env.path().join("pulled");
    let r = run(env
        .cmd()
        .arg("pull")
        .arg(format!("{}/base/img:1.0", proxy.host()))
        .args(["--platform", "linux/amd64", "-o"])
        .arg(&out)
        .arg("--cache-dir")
        .arg(env.cache()));
    // Figure: exit 1; the error names the corrupt blob's digest; the cache
    // holds no file under any of the image's digests (no .part left either).
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("digest mismatch"), "{}", r.stderr);
    let named: Vec<String> = base
        .blobs()
        .into_iter()
        .filter(|d| r.stderr.contains(&format!("expected {d}")))
        .collect();
    assert_eq!(named.len(), 1, "{}", r.stderr);
    assert!(proxy.injected_count(crate::support::Injected::CorruptBlob) >= 1);
    let entries: Vec<String> = std::fs::read_dir(env.cache().join("sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(entries.is_empty(), "{entries:?}");
    assert!(!out.exists());

    // Without the fault the same pull works and fills the cache.
    proxy.configure(|c| c.corrupt_blobs = false);
    let digest = ok(env
        .cmd()
        .arg("pull")
        .arg(format!("{}/base/img:1.0", proxy.host()))
        .args(["--platform", "linux/amd64", "-o"])
        .arg(&out)
        .arg("--cache-dir")
        .arg(env.cache()));
    assert_eq!(digest, base.amd64().manifest);
    assert_eq!(env.cached().len(), 1 + base.amd64().layers.len());
}

#[test]
fn pull_writes_archives_that_skopeo_reads() {
    let env = Env::new();
    let reg = Registry::start();
    let base = build_base();
    push_base(&env, &base, &reg.host());
    let reference = format!("{}/base/img:1.0", reg.host());
    let pull = |extra: &[&str], out: &Path| -> String {
        ok(env
            .cmd()
            .args(["pull", "--quiet", &reference, "-o"])
            .arg(out)
            .arg("--cache-dir")
            .arg(env.cache())
            .args(extra))
    };

    // oci-archive, one platform: skopeo's raw manifest is the amd64 manifest.
    let oa = env.path().join("img.oci.tar");
    let d = pull(
        &["--format", "oci-archive", "--platform", "linux/amd64"],
        &oa,
    );
    assert_eq!(d, base.amd64().manifest);
    let raw = skopeo(&[
        "inspect",
        "--raw",
        &format!("oci-archive:{}:1.0", oa.display()),
    ]);
    assert_eq!(sha256(raw.as_bytes()), base.amd64().manifest);

    // oci-archive of the whole index: the raw top is the index.
    let oi = env.path().join("all.oci.tar");
    assert_eq!(pull(&["--format", "oci-archive"], &oi), base.index);
    let raw = skopeo(&["inspect", "--raw", &format!("oci-archive:{}", oi.display())]);
    assert_eq!(sha256(raw.as_bytes()), base.index);

    // docker-archive (default linux/amd64): config digest = the image's,
    // layers = its diff IDs, RepoTags = the reference.
    let da = env.path().join("img.docker.tar");
    assert_eq!(
        pull(&["--format", "docker-archive"], &da),
        base.amd64().manifest
    );
    let raw: Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--raw",
        &format!("docker-archive:{}", da.display()),
    ]))
    .unwrap();
    assert_eq!(raw["config"]["digest"], base.amd64().config);
    let layers: Vec<String> = raw["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(layers, base.amd64().diff_ids);
    let info: Value = serde_json::from_str(&skopeo(&[
        "inspect",
        &format!("docker-archive:{}", da.display()),
    ]))
    .unwrap();
    assert_eq!(info["Architecture"], "amd64");
    let manifest_json = crate::common::docker_archive_manifest(&da);
    assert_eq!(manifest_json[0]["RepoTags"], serde_json::json!([reference]));
    // Pinned by digest as well, or with no tag at all: RepoTags is still
    // NAME:TAG (docker load refuses a digest in a tag; no tag is latest).
    let pinned = format!("{reference}@{}", base.amd64().manifest);
    let untagged = format!("{}/base/img", reg.host());
    ok(env
        .cmd()
        .args(["push", "--quiet"])
        .arg(&base.layout)
        .args(["--to", &format!("{untagged}:latest")]));
    for (asked, listed) in [
        (&pinned, &reference),
        (&untagged, &format!("{untagged}:latest")),
    ] {
        let r = run(env
            .cmd()
            .args(["pull", "--quiet", asked, "--format", "docker-archive", "-o"])
            .arg(&da)
            .arg("--cache-dir")
            .arg(env.cache()));
        assert_ok(&r);
        let manifest_json = crate::common::docker_archive_manifest(&da);
        assert_eq!(manifest_json[0]["RepoTags"], serde_json::json!([listed]));
    }

    // docker-archive for arm64 carries the arm64 config.
    let da2 = env.path().join("arm.docker.tar");
    pull(
        &["--format", "docker-archive", "--platform", "linux/arm64"],
        &da2,
    );
    let raw: Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--raw",
        &format!("docker-archive:{}", da2.display()),
    ]))
    .unwrap();
    assert_eq!(raw["config"]["digest"], base.arm64().config);

    // docker-archive cannot hold every platform: exit 2.
    let r = run(env
        .cmd()
        .args([
            "pull",
            &reference,
            "--format",
            "docker-archive",
            "--platform",
            "all",
            "-o",
        ])
        .arg(env.path().join("x.tar"))
        .arg("--cache-dir")
        .arg(env.cache()));
    assert_eq!(r.code, 2, "{}", r.stderr);
}

#[test]
fn an_archive_into_a_directory_is_refused_before_any_request() {
    let dir = crate::support::tempdir();
    let reference = format!("{}/acme/app:1", crate::support::dead_host());
    for format in ["oci-archive", "docker-archive"] {
        let r = run(Env::new()
            .cmd()
            .args(["pull", &reference, "--format", format, "-o"])
            .arg(dir.path()));
        // Figure: exit 2 (bad input) naming the directory; the registry,
        // which nothing listens on, was never asked (that is exit 1).
        assert_eq!(r.code, 2, "{format}: {}", r.stderr);
        assert!(r.stderr.contains("is a directory"), "{}", r.stderr);
    }
}

#[test]
fn an_output_that_cannot_be_written_is_refused_before_any_request() {
    let dir = crate::support::tempdir();
    let reference = format!("{}/acme/app:1", crate::support::dead_host());
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "mine\n").unwrap();
    let other = dir.path().join("photos");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("a.jpg"), "mine\n").unwrap();
    // A layout over a file or over a directory that is not a layout, and
    // any output under a file: exit 2 (bad input), where the registry,
    // which nothing listens on, was never asked (that is exit 1), and
    // nothing there is touched.
    let cases = [
        ("oci", file.clone(), "is not an OCI layout"),
        ("oci", other.clone(), "is not an OCI layout"),
        ("oci", file.join("out"), "is not a directory"),
        ("oci-archive", file.join("sub/x.tar"), "is not a directory"),
        ("docker-archive", file.join("x.tar"), "is not a directory"),
    ];
    for (format, out, says) in cases {
        let r = run(Env::new()
            .cmd()
            .args(["pull", &reference, "--format", format, "-o"])
            .arg(&out));
        assert_eq!(r.code, 2, "{format} {}: {}", out.display(), r.stderr);
        assert!(r.stderr.contains(says), "{}", r.stderr);
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "mine\n");
    let left: Vec<_> = std::fs::read_dir(&other).unwrap().collect();
    assert_eq!(left.len(), 1);
}

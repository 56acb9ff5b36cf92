//! SIGINT and SIGTERM stop a run: it exits with 128 + the signal's number
//! within moments, the temporary directories it made are removed, an output
//! being replaced is left as it was, and no tag is written.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{assert_ok, boxwright, run, write};
use crate::env::Env;
use crate::support::tempdir;
use crate::support::Registry;

/// The entries of `dir` whose names start with `prefix`.
fn named(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

/// A recipe with one layer of `gib` GiB of zeros (sparse on disk): with 8,
/// compressing it takes minutes, so a signal always finds the build at work.
fn big_recipe(dir: &Path, gib: u64) -> PathBuf {
    fs::File::create(dir.join("big.bin"))
        .unwrap()
        .set_len(gib << 30)
        .unwrap();
    let recipe = dir.join("big.toml");
    write(
        &recipe,
        "[image]\nname = \"t\"\n\n[[layer]]\n[[layer.entry]]\nsrc = \"big.bin\"\ndest = \"/big\"\n",
    );
    recipe
}

/// Waits until `ready` (the child still running), sends `signal`, and
/// returns the exit code and how long the child took to end after it.
fn signal_when(
    mut child: Child,
    signal: &str,
    ready: impl Fn() -> bool,
) -> (Option<i32>, Duration) {
    let started = Instant::now();
    while !ready() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be interrupted"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the run never got going"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Let it be at work past the point `ready` saw.
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    let killed = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let code = ended_within(&mut child, Duration::from_secs(30));
    (code, sent.elapsed())
}

/// The child's exit code once it ends; killed (and the test failed) when
/// it has not ended within `limit`.
fn ended_within(child: &mut Child, limit: Duration) -> Option<i32> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if started.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("still running {limit:?} after the signal");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A small image built into `dir/out`, and a recipe of 8 GiB of zeros to
/// build over it: the earlier `index.json`, and that recipe.
fn earlier_layout_and_big_recipe(dir: &Path) -> (Vec<u8>, PathBuf) {
    write(
        &dir.join("small.toml"),
        "[image]\nname = \"t\"\n\n[[layer]]\n[[layer.entry]]\ncontent = \"x\"\ndest = \"/x\"\n",
    );
    assert_ok(&run(boxwright()
        .args(["build", "--quiet", "-o", "out", "small.toml"])
        .current_dir(dir)));
    let before = fs::read(dir.join("out/index.json")).unwrap();
    (before, big_recipe(dir, 8))
}

/// Figure: a build interrupted while it writes `out` over an earlier
/// layout exits 130 (SIGINT) or 143 (SIGTERM) within 5 s, the earlier
/// layout is as it was, and no `.out.tmp-*` directory is left.
#[test]
fn an_interrupted_build_removes_its_temporary_layout_and_keeps_the_old_one() {
    let t = tempdir();
    let (before, recipe) = earlier_layout_and_big_recipe(t.path());
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        let child = boxwright()
            .args(["build", "--quiet", "-j", "1", "--cache-dir"])
            .arg(t.path().join(format!("cache-{signal}")))
            .args(["-o", "out"])
            .arg(&recipe)
            .current_dir(t.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (got, took) = signal_when(child, signal, || {
            named(t.path(), ".out.tmp-")
                .iter()
                .any(|d| d.join("blobs/sha256").is_dir())
        });
        assert_eq!(got, Some(code), "SIG{signal}");
        assert!(took < Duration::from_secs(5), "SIG{signal}: {took:?}");
        assert_eq!(named(t.path(), ".out.tmp-"), Vec::<PathBuf>::new());
        assert_eq!(fs::read(t.path().join("out/index.json")).unwrap(), before);
    }
}

/// Figure: a build into a docker-archive, interrupted while it decompresses
/// the built layer into the temporary archive (next to the archive), exits
/// 143 within 5 s and leaves neither that file, the build's scratch
/// directory nor an archive behind.
#[test]
fn an_interrupted_archive_build_leaves_nothing_beside_the_archive() {
    let t = tempdir();
    let recipe = big_recipe(t.path(), 2);
    let out = t.path().join("out");
    fs::create_dir(&out).unwrap();
    let child = boxwright()
        .args(["build", "--quiet", "--no-cache", "--compression", "zstd"])
        .args(["--format", "docker-archive", "-o"])
        .arg(out.join("big.tar"))
        .arg(&recipe)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let unpacking = || {
        named(&out, ".boxwright-archive-")
            .iter()
            .any(|f| fs::metadata(f).is_ok_and(|m| m.len() > 1 << 20))
    };
    let (got, took) = signal_when(child, "TERM", unpacking);
    assert_eq!(got, Some(143));
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(named(&out, ""), Vec::<PathBuf>::new());
}

/// Figure: `build --push` interrupted while its layer streams leaves no
/// `boxwright-build-*` directory in TMPDIR and no tag on the registry.
#[test]
fn an_interrupted_build_push_removes_its_scratch_layout_and_tags_nothing() {
    let reg = Registry::start();
    let t = tempdir();
    let tmp = t.path().join("tmp");
    fs::create_dir(&tmp).unwrap();
    let recipe = big_recipe(t.path(), 8);
    let env = Env::new();
    let child = env
        .cmd()
        .args(["build", "--push", "--quiet", "-j", "1", "--no-cache"])
        .args(["--to", &format!("{}/acme/big:1.0", reg.host())])
        .arg(&recipe)
        .env("TMPDIR", &tmp)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (got, took) = signal_when(child, "TERM", || {
        !named(&tmp, "boxwright-build-").is_empty()
    });
    assert_eq!(got, Some(143));
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(named(&tmp, ""), Vec::<PathBuf>::new());
    let tag = crate::support::try_skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/acme/big:1.0", reg.host()),
    ]);
    assert!(tag.is_err(), "the tag was written: {tag:?}");
}

/// Figure: bench interrupted while it generates its blobs exits 130 and
/// leaves nothing in its work directory.
#[test]
fn an_interrupted_bench_removes_its_blobs() {
    let reg = Registry::start();
    let t = tempdir();
    let work = t.path().join("work");
    fs::create_dir(&work).unwrap();
    let child = boxwright()
        .args([
            "bench",
            "--quiet",
            "--blobs",
            "2",
            "--size",
            "1GiB",
            "--work-dir",
        ])
        .arg(&work)
        .args(["--to", &format!("{}/acme/bench", reg.host())])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (got, took) = signal_when(child, "INT", || {
        named(&work, "boxwright-bench-")
            .iter()
            .any(|d| fs::read_dir(d).is_ok_and(|mut rd| rd.next().is_some()))
    });
    assert_eq!(got, Some(130));
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(named(&work, ""), Vec::<PathBuf>::new());
}

/// Figure: a command blocked reading stdin (`login --password-stdin`, the
/// password never coming) still ends on SIGINT, with 130, within the grace
/// of a few seconds; a second SIGINT ends it at once; the docker config
/// is not written.
#[test]
fn a_run_blocked_in_a_read_still_ends_on_a_signal() {
    for twice in [false, true] {
        let env = Env::new();
        let mut child = env
            .cmd()
            .args(["login", "-u", "me", "--password-stdin", "--no-verify"])
            .arg("registry.example")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Held open, never written: the read waits.
        let _stdin = child.stdin.take();
        std::thread::sleep(Duration::from_millis(500));
        let sent = Instant::now();
        let kill = |child: &Child| {
            Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status()
                .unwrap()
        };
        assert!(kill(&child).success());
        if twice {
            std::thread::sleep(Duration::from_millis(200));
            assert!(kill(&child).success());
        }
        let code = ended_within(&mut child, Duration::from_secs(15));
        let took = sent.elapsed();
        assert_eq!(code, Some(130));
        let bound = if twice { 2 } else { 10 };
        assert!(
            took < Duration::from_secs(bound),
            "twice: {twice}: {took:?}"
        );
        assert!(!env.config_dir().join("config.json").exists());
    }
}

/// Figure: a pull interrupted while a layer downloads (a registry that
/// sends it one byte per 10 ms) exits 130 within 5 s and leaves no
/// `.part` file in the blob cache, and no output.
#[test]
fn an_interrupted_pull_leaves_no_part_file_in_the_cache() {
    use crate::support::{Answer, Scripted};
    use sha2::Digest as _;
    let sha = |s: &str| format!("sha256:{:x}", sha2::Sha256::digest(s));
    let layer = "x".repeat(2000);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
        sha(&layer)
    );
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}]}}"#,
        sha(&config),
        config.len(),
        sha(&layer),
        layer.len()
    );
    let (config_digest, layer_digest) = (sha(&config), sha(&layer));
    let manifest_digest = sha(&manifest);
    let srv = Scripted::start(move |req| {
        let p = req.path();
        let mt = "application/vnd.oci.image.manifest.v1+json";
        if p == "/v2/" {
            Answer::json("200 OK", "{}")
        } else if p.contains("/manifests/") {
            let a = Answer::new("200 OK")
                .header("Content-Type", mt)
                .header("Docker-Content-Digest", &manifest_digest);
            if req.method == "HEAD" {
                a.header("Content-Length", &manifest.len().to_string())
            } else {
                a.body(&manifest)
            }
        } else if p.ends_with(&config_digest) {
            Answer::new("200 OK").body(&config)
        } else if p.ends_with(&layer_digest) {
            Answer::new("200 OK")
                .body(&layer)
                .trickled(Duration::from_millis(10))
        } else {
            Answer::json("404 Not Found", r#"{"errors":[]}"#)
        }
    });
    let t = tempdir();
    let cache = t.path().join("cache");
    let out = t.path().join("out");
    let env = Env::new();
    let child = env
        .cmd()
        .args(["pull", "--quiet", &format!("{}/acme/slow:1", srv.host())])
        .arg("-o")
        .arg(&out)
        .arg("--cache-dir")
        .arg(&cache)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let blobs = cache.join("sha256");
    let (got, took) = signal_when(child, "INT", || {
        blobs.is_dir() && !named(&blobs, ".").is_empty()
    });
    assert_eq!(got, Some(130));
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(named(&blobs, "."), Vec::<PathBuf>::new());
    assert!(!out.exists());
}

/// Figure: a pull waiting on a credential helper that never answers (a
/// keyring waiting to be unlocked) ends on the first SIGINT, with 130,
/// within 2 s, and the helper does not outlive it.
#[test]
fn a_signal_stops_a_credential_helper_that_never_answers() {
    let reg = Registry::with_basic_auth("bob", "pw");
    let env = Env::new();
    let pid = env.path().join("pid");
    let path = env.credential_helper(
        "hang",
        &format!("#!/bin/sh\necho $$ > '{}'\nexec sleep 30\n", pid.display()),
    );
    write(
        &env.config_dir().join("config.json"),
        "{\"credsStore\": \"hang\"}\n",
    );
    let child = env
        .cmd()
        .env("PATH", path)
        .args(["pull", "--quiet", &format!("{}/acme/app:1", reg.host())])
        .arg("-o")
        .arg(env.path().join("out"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let asked = || std::fs::read_to_string(&pid).is_ok_and(|p| p.ends_with('\n'));
    let (code, took) = signal_when(child, "INT", asked);
    assert_eq!(code, Some(130));
    assert!(took < Duration::from_secs(2), "{took:?}");
    let pid = std::fs::read_to_string(&pid).unwrap();
    let alive = Command::new("kill")
        .args(["-0", pid.trim()])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!alive.success(), "the credential helper outlived the run");
}

/// Figure: `--timeout 2s` stops a build writing `out` over an earlier
/// layout as SIGTERM would: exit 124 within 2 + 5 s, naming the timeout,
/// the earlier layout as it was and no `.out.tmp-*` left. The same from
/// `BOXWRIGHT_TIMEOUT`; a timeout that is not a duration is exit 2 before
/// anything runs.
#[test]
fn a_run_past_its_timeout_stops_as_on_a_signal() {
    let t = tempdir();
    let (before, recipe) = earlier_layout_and_big_recipe(t.path());
    for (how, value) in [("flag", "2s"), ("env", "2")] {
        let mut cmd = boxwright();
        cmd.args(["build", "--quiet", "-j", "1", "--cache-dir"])
            .arg(t.path().join(format!("cache-{how}")))
            .args(["-o", "out"])
            .arg(&recipe)
            .current_dir(t.path());
        if how == "flag" {
            cmd.args(["--timeout", value]);
        } else {
            cmd.env("BOXWRIGHT_TIMEOUT", value);
        }
        let started = Instant::now();
        let r = run(&mut cmd);
        let took = started.elapsed();
        assert_eq!(r.code, 124, "{how}: {}", r.stderr);
        assert!(r.stderr.contains("--timeout (2 s)"), "{how}: {}", r.stderr);
        assert!(took >= Duration::from_secs(2), "{how}: {took:?}");
        assert!(took < Duration::from_secs(7), "{how}: {took:?}");
        assert_eq!(named(t.path(), ".out.tmp-"), Vec::<PathBuf>::new());
        assert_eq!(fs::read(t.path().join("out/index.json")).unwrap(), before);
    }
    for bad in ["0", "1.5m", "10d", "-3", "99999999999999999999h", "31d"] {
        let r = run(boxwright()
            .args(["build", &format!("--timeout={bad}"), "-o", "out"])
            .arg(&recipe)
            .current_dir(t.path()));
        assert_eq!(r.code, 2, "{bad}: {}", r.stderr);
        assert!(r.stderr.contains("duration"), "{bad}: {}", r.stderr);
    }
}

/// Figure: `push --json --timeout 3s` to a registry that answers and to one
/// that never does exits 124 within 3 + 5 s and still writes its report on
/// stdout: `stopped` names the timeout, the first target is ok with the
/// image's digest (and its tag is on the registry), the second is not done
/// (`ok` false, "not done: the run was stopped first"), and so is its
/// registry; a third, by digest only, is named `REPO@DIGEST`. Without
/// `--json`, stdout stays empty.
#[test]
fn a_push_stopped_midway_still_writes_its_json_report() {
    use crate::support::{tiny_oci_layout, Scripted};
    let reg = Registry::start();
    let silent = Scripted::silent();
    let t = tempdir();
    let layout = t.path().join("layout");
    let img = tiny_oci_layout(&layout, "1.0", b"stopped midway");
    let (landed, hung, by_digest) = (
        format!("{}/acme/a:1", reg.host()),
        format!("{}/acme/a:1", silent.host()),
        format!("{}/acme/b@", reg.host()),
    );
    for json in [true, false] {
        let env = Env::new();
        let mut cmd = env.cmd();
        cmd.args(["push", "--quiet", "--timeout", "3s"])
            .arg(&layout)
            .args(["--to", &landed, "--to", &hung, "--to", &by_digest]);
        if json {
            cmd.arg("--json");
        }
        let started = Instant::now();
        let r = run(&mut cmd);
        let took = started.elapsed();
        assert_eq!(r.code, 124, "{}", r.stderr);
        assert!(took < Duration::from_secs(8), "{took:?}");
        if !json {
            assert_eq!(r.stdout, "");
            continue;
        }
        let doc: serde_json::Value = serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("{e}: {:?} / {}", r.stdout, r.stderr));
        assert!(
            doc["stopped"].as_str().unwrap().contains("--timeout (3 s)"),
            "{doc:#}"
        );
        assert_eq!(doc["digest"], img.manifest_digest.as_str(), "{doc:#}");
        let targets = doc["targets"].as_array().unwrap();
        assert_eq!(targets.len(), 3, "{doc:#}");
        // Pushed by digest only: named by it, as the push's own report does.
        assert_eq!(
            targets[2]["reference"],
            format!("{}/acme/b@{}", reg.host(), img.manifest_digest).as_str(),
            "{doc:#}"
        );
        assert_eq!(targets[2]["ok"], true, "{doc:#}");
        assert_eq!(targets[0]["reference"], landed.as_str());
        assert_eq!(targets[0]["ok"], true, "{doc:#}");
        assert_eq!(targets[0]["digest"], img.manifest_digest.as_str());
        assert_eq!(targets[0]["blobs_uploaded"], 2, "{doc:#}");
        assert_eq!(targets[1]["reference"], hung.as_str());
        assert_eq!(targets[1]["ok"], false, "{doc:#}");
        assert_eq!(
            targets[1]["error"], "not done: the run was stopped first",
            "{doc:#}"
        );
        let registries = doc["registries"].as_array().unwrap();
        let ok: Vec<_> = registries
            .iter()
            .map(|r| (r["registry"].clone(), r["ok"].clone()))
            .collect();
        assert_eq!(
            ok,
            [
                (reg.host().into(), true.into()),
                (silent.host().into(), false.into())
            ],
            "{doc:#}"
        );
    }
    let tag = crate::support::skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{landed}"),
    ]);
    assert!(!tag.is_empty());
}

/// Figure: `copy --json --timeout 3s` to a registry that answers and to one
/// that never does exits 124 and still writes its report: `stopped` names
/// the timeout, and the push report sits under `push`, as in the copy's own
/// document: null here, the copy still asking the destinations what they
/// hold (nothing was tagged).
#[test]
fn a_copy_stopped_midway_still_writes_its_json_report_under_push() {
    use crate::support::{tiny_oci_layout, Scripted};
    let reg = Registry::start();
    let silent = Scripted::silent();
    let t = tempdir();
    let layout = t.path().join("layout");
    tiny_oci_layout(&layout, "1.0", b"copied midway");
    let env = Env::new();
    let source = format!("{}/acme/src:1", reg.host());
    assert_ok(&run(env
        .cmd()
        .arg("push")
        .arg(&layout)
        .args(["--to", &source])));
    let r = run(env
        .cmd()
        .args(["copy", "--json", "--quiet", "--timeout", "3s"])
        .args([
            &source,
            &format!("{}/acme/dst:1", reg.host()),
            &format!("{}/acme/dst:1", silent.host()),
        ]));
    assert_eq!(r.code, 124, "{}", r.stderr);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("{e}: {:?} / {}", r.stdout, r.stderr));
    assert!(
        doc["stopped"].as_str().unwrap().contains("--timeout (3 s)"),
        "{doc:#}"
    );
    // The copy asks every destination what it holds before it pushes, and
    // the silent one never answers: no push began, no tag was written.
    assert_eq!(doc.get("push"), Some(&serde_json::Value::Null), "{doc:#}");
    assert_eq!(doc.as_object().unwrap().len(), 2, "{doc:#}");
}

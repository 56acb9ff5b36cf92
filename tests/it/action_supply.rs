//! The action's supply-chain inputs (`signing-key`, `signing-key-password`,
//! `sbom`, `provenance`) through `scripts/action.sh run`, and its install
//! step taking a release asset only with a matching checksum.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::action::{
    assert_ran, workspace, Registries, Runner, GH_ACTOR, GH_TOKEN, HUB_TOKEN, HUB_USER,
};
use crate::common::{boxwright, run};
use crate::env::Env;
use crate::support::tempdir;

const KEY_PASSWORD: &str = "action-key-Pa55-0b7d";

/// An encrypted key pair in `dir`: (private PEM text, public key path).
fn keygen(dir: &Path) -> (String, std::path::PathBuf) {
    let prefix = dir.join("cosign");
    let mut c = boxwright();
    c.env("COSIGN_PASSWORD", KEY_PASSWORD)
        .args(["keygen", "--encrypt", "--output-key-prefix"])
        .arg(&prefix);
    assert_ran(&run(&mut c));
    (
        std::fs::read_to_string(dir.join("cosign.key")).unwrap(),
        dir.join("cosign.pub"),
    )
}

#[test]
fn action_script_signs_and_attests_and_lists_them_in_the_summary() {
    let regs = Registries::start();
    let ws = workspace(&regs);
    let runner = Runner::new();
    let keys = tempdir();
    let (key, public) = keygen(keys.path());
    let r = run(runner
        .script(ws.path(), "run")
        .env("INPUT_RECIPE", "recipes/app.toml")
        .env("INPUT_VARS", "VERSION=1.4.0")
        .env("INPUT_SBOM", "spdx")
        .env("INPUT_PROVENANCE", "true")
        .env("INPUT_SIGNING_KEY", &key)
        .env("INPUT_SIGNING_KEY_PASSWORD", KEY_PASSWORD));
    assert_ran(&r);

    // Neither the password nor a line of the key shows, except in the
    // ::add-mask:: commands the runner consumes.
    let shown: Vec<&str> = r
        .stdout
        .lines()
        .chain(r.stderr.lines())
        .filter(|l| !l.starts_with("::add-mask::"))
        .collect();
    for line in &shown {
        assert!(!line.contains(KEY_PASSWORD), "{line}");
        for k in key
            .lines()
            .filter(|k| !k.starts_with("-----") && k.len() > 16)
        {
            assert!(!line.contains(k), "the key shows: {line}");
        }
    }
    let masked: Vec<&str> = r
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("::add-mask::"))
        .collect();
    assert!(masked.contains(&KEY_PASSWORD));
    // The key file is gone once the step ends.
    let left: Vec<_> = std::fs::read_dir(runner.dir.path().join("temp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("boxwright-key"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // The report and the step summary: both repositories got all three.
    let out = runner.outputs();
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&out["report"]).unwrap()).unwrap();
    let repos = report["supply"]["repositories"].as_array().unwrap();
    assert_eq!(repos.len(), 2, "{report}");
    let summary = std::fs::read_to_string(runner.summary()).unwrap();
    for (host, repo) in [(regs.ghcr.host(), &repos[0]), (regs.hub.host(), &repos[1])] {
        assert_eq!(repo["ok"], true, "{repo}");
        let row = format!(
            "| {host}/acme/r2d | signature, sbom, provenance | {} | yes |",
            repo["mode"].as_str().unwrap()
        );
        assert!(summary.contains(&row), "{row} not in:\n{summary}");
    }

    // What was attached verifies with the public key on both registries.
    let env = Env::with_auths(&[
        (&regs.ghcr.host(), GH_ACTOR, GH_TOKEN),
        (&regs.hub.host(), HUB_USER, HUB_TOKEN),
    ]);
    let mut c = env.cmd();
    c.args(["verify", "--json", "--key"])
        .arg(&public)
        .args(["--require", "sbom,provenance"])
        .arg(format!("{}/acme/r2d:1.4.0", regs.ghcr.host()))
        .arg(format!("{}/acme/r2d:1.4.0", regs.hub.host()));
    let v = run(&mut c);
    assert_ran(&v);
    let doc: Value = serde_json::from_str(&v.stdout).unwrap();
    assert_eq!(doc["digest"], out["digest"].as_str());
}

/// Figure: with both a signing key and `logins`, the step removes the key
/// file as well as its docker config when it ends (the logins' cleanup
/// took the key's place, and the private key was left in RUNNER_TEMP).
#[test]
fn action_script_removes_the_key_file_when_it_also_logs_in() {
    let regs = Registries::start();
    let ws = workspace(&regs);
    let runner = Runner::new();
    let keys = tempdir();
    let (key, _) = keygen(keys.path());
    let r = run(runner
        .script(ws.path(), "run")
        .env("INPUT_RECIPE", "recipes/app.toml")
        .env("INPUT_VARS", "VERSION=1.5.0")
        .env("INPUT_SIGNING_KEY", &key)
        .env("INPUT_SIGNING_KEY_PASSWORD", KEY_PASSWORD)
        .env("GHCR_TOKEN_B64", crate::common::b64(GH_TOKEN))
        .env(
            "INPUT_LOGINS",
            format!("{} GITHUB_ACTOR GHCR_TOKEN_B64:base64", regs.ghcr.host()),
        ));
    assert_ran(&r);
    let left: Vec<_> = std::fs::read_dir(runner.dir.path().join("temp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("boxwright-key") || n.starts_with("boxwright-docker"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn action_script_refuses_an_unknown_sbom_format() {
    let regs = Registries::start();
    let ws = workspace(&regs);
    let runner = Runner::new();
    let r = run(runner
        .script(ws.path(), "run")
        .env("INPUT_RECIPE", "recipes/app.toml")
        .env("INPUT_SBOM", "swid"));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("sbom: expected spdx"), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(runner.output()).unwrap(), "");
}

/// The triple the action asks a release for on this machine.
fn triple() -> String {
    format!("{}-unknown-linux-musl", std::env::consts::ARCH)
}

/// A release of boxwright `version` under `dir` (as
/// `.../releases/download` lays it out): the tarball holding `binary`, and
/// its `.sha256` (right, or of other bytes).
fn release(dir: &Path, version: &str, binary: &Path, right_sum: bool) -> std::path::PathBuf {
    let name = format!("boxwright-{version}-{}", triple());
    let stage = dir.join("stage").join(&name);
    std::fs::create_dir_all(&stage).unwrap();
    std::fs::copy(binary, stage.join("boxwright")).unwrap();
    let assets = dir.join("download").join(version);
    std::fs::create_dir_all(&assets).unwrap();
    let tarball = assets.join(format!("{name}.tar.gz"));
    crate::common::tool(
        "tar",
        &[
            "-C",
            dir.join("stage").to_str().unwrap(),
            "-czf",
            tarball.to_str().unwrap(),
            &name,
        ],
    );
    let sum = if right_sum {
        crate::common::sha256(&std::fs::read(&tarball).unwrap())
    } else {
        crate::common::sha256(b"other bytes")
    };
    std::fs::write(
        assets.join(format!("{name}.tar.gz.sha256")),
        format!("{}  {name}.tar.gz\n", sum.trim_start_matches("sha256:")),
    )
    .unwrap();
    dir.join("download")
}

/// `action.sh install` of release `version` from `url`, into `dest`.
fn install(runner: &Runner, url: &str, version: &str, dest: &Path) -> crate::common::Run {
    crate::support::tools::require("curl");
    let mut c = runner.script(&crate::common::root(), "install");
    c.env_remove("BOXWRIGHT")
        .env("RESOLVED_KIND", "release")
        .env("RESOLVED_REPOSITORY", "acme/boxwright")
        .env("RESOLVED_VERSION", version)
        .env("BOXWRIGHT_RELEASE_URL", url)
        .env("BOXWRIGHT_INSTALL_DIR", dest);
    run(&mut c)
}

#[test]
fn action_install_takes_a_release_asset_only_with_a_matching_checksum() {
    // A stand-in for the released binary (the real one is large to pack).
    let stand_in = tempdir();
    let bin = stand_in.path().join("boxwright");
    crate::common::write(&bin, "#!/bin/sh\necho boxwright 9.9.9\n");
    crate::common::chmod(&bin, 0o755);
    let bin = bin.as_path();
    let good = tempdir();
    let url = format!(
        "file://{}",
        release(good.path(), "v9.9.9", bin, true).display()
    );
    let runner = Runner::new();
    let dest = runner.dir.path().join("bin");
    let r = install(&runner, &url, "v9.9.9", &dest);
    assert_ran(&r);
    let installed = dest.join("boxwright");
    assert_eq!(runner.outputs()["path"], installed.to_str().unwrap());
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(bin).unwrap()
    );
    let v = run(Command::new(&installed).arg("--version"));
    assert_ran(&v);
    assert_eq!(v.stdout.trim(), "boxwright 9.9.9");

    // A tarball that does not match its .sha256 is refused: exit 1, nothing
    // installed, no build from source instead.
    let bad = tempdir();
    let url = format!(
        "file://{}",
        release(bad.path(), "v9.9.9", bin, false).display()
    );
    let runner = Runner::new();
    let dest = runner.dir.path().join("bin");
    let r = install(&runner, &url, "v9.9.9", &dest);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("does not match its .sha256"),
        "{}",
        r.stderr
    );
    assert!(!dest.join("boxwright").exists());
    assert!(!runner.outputs().contains_key("path"));
}

#[test]
fn release_workflow_builds_static_binaries_with_checksums_sbom_and_provenance() {
    let path = crate::common::root().join(".github/workflows/release.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    let w: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    assert!(w["on"]["push"]["tags"][0]
        .as_str()
        .is_some_and(|t| t.starts_with('v')));
    let targets: Vec<&str> = w["jobs"]["binaries"]["strategy"]["matrix"]["target"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(
        targets,
        ["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"]
    );
    // The action asks for this machine's triple, and the release has it.
    assert!(targets.contains(&triple().as_str()));
    let steps = |job: &str| -> Vec<serde_yaml::Value> {
        w["jobs"][job]["steps"].as_sequence().unwrap().clone()
    };
    let runs = |job: &str| -> String {
        steps(job)
            .iter()
            .filter_map(|s| s["run"].as_str().map(String::from))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let uses = |job: &str| -> Vec<String> {
        steps(job)
            .iter()
            .filter_map(|s| s["uses"].as_str().map(String::from))
            .collect()
    };
    let b = runs("binaries");
    assert!(b.contains("cargo zigbuild --locked --release --target"));
    // The asset names the action's install step downloads.
    assert!(b.contains(r#"name="boxwright-$VERSION-$TARGET""#));
    assert!(b.contains(r#"sha256sum "$name.tar.gz" >"$name.tar.gz.sha256""#));
    let script = std::fs::read_to_string(crate::common::root().join("scripts/action.sh")).unwrap();
    assert!(script.contains(r#"asset="boxwright-${version}-$(triple).tar.gz""#));
    let r = runs("release");
    assert!(r.contains("sha256sum -c"));
    assert!(r.contains("cargo cyclonedx --format json"));
    assert!(r.contains("gh release create"));
    assert!(uses("release")
        .iter()
        .any(|u| u.starts_with("actions/attest-build-provenance@")));
    let perms = &w["jobs"]["release"]["permissions"];
    assert_eq!(perms["id-token"].as_str(), Some("write"));
    assert_eq!(perms["attestations"].as_str(), Some("write"));
    assert_eq!(perms["contents"].as_str(), Some("write"));
    assert_eq!(w["permissions"]["contents"].as_str(), Some("read"));
}

//! The GitHub Action (`action.yml`, `scripts/action.sh`) and the example
//! workflows, without GitHub: the script runs as the action's steps would,
//! with the variables the runner sets (`GITHUB_ACTIONS`, `GITHUB_OUTPUT`,
//! `GITHUB_STEP_SUMMARY`, `RUNNER_TEMP`, `GITHUB_TOKEN`/`GITHUB_ACTOR`, a
//! base64 Docker Hub-style secret), against two real `docker-registry`
//! instances: a GHCR-like one behind bearer tokens and a Docker-Hub-like one
//! behind basic auth.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{b64, noise, root, run, write, Run};
use crate::push::remote_digest;
use crate::support::{skopeo, tempdir, tools, Registry, TokenServer};

pub(crate) const GH_ACTOR: &str = "octo-bot";
pub(crate) const GH_TOKEN: &str = "ghs_Act10nT0ken5ecret9f3a";
pub(crate) const HUB_USER: &str = "hubuser";
pub(crate) const HUB_TOKEN: &str = "dckr_pat_Hub5ecret-71c0e2";

/// GHCR-like (tokens, GITHUB_ACTOR/GITHUB_TOKEN) and Docker-Hub-like (basic
/// auth, base64 secret) registries.
pub(crate) struct Registries {
    _tokens: TokenServer,
    pub ghcr: Registry,
    pub hub: Registry,
}

impl Registries {
    pub fn start() -> Registries {
        let tokens = TokenServer::builder()
            .user(GH_ACTOR, GH_TOKEN, &["pull", "push"])
            .start();
        let ghcr = Registry::with_token_auth(&tokens);
        let hub = Registry::with_basic_auth(HUB_USER, HUB_TOKEN);
        Registries {
            _tokens: tokens,
            ghcr,
            hub,
        }
    }
}

/// A workspace as a checkout would be: `recipes/app.toml` with the R2D
/// recipe's target shape (GHCR primary with GITHUB_*, Docker Hub backup with
/// a base64 secret, optional), a context file of 300 KB.
pub(crate) fn workspace(regs: &Registries) -> tempfile::TempDir {
    let dir = tempdir();
    let noise: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/blob.bin"), noise).unwrap();
    let recipe = format!(
        r#"context = ".."
tags = ["${{VERSION}}", "latest"]

[vars]
VERSION = "0.0.0-dev"

[image]
name = "r2d"

[config]
entrypoint = ["/bin/app"]

[[layer]]
name = "data"
mode = 0o644

[[layer.entry]]
src = "data/blob.bin"
dest = "/opt/blob.bin"

[[layer.entry]]
content = "${{VERSION}}\n"
dest = "/opt/VERSION"

[[target]]
ref = "{ghcr}/acme/r2d"
role = "primary"
username_env = "GITHUB_ACTOR"
password_env = "GITHUB_TOKEN"

[[target]]
ref = "{hub}/acme/r2d"
role = "backup"
username_env = "DOCKERHUB_USERNAME"
password_env = "REPO_API_KEY"
encoding = "base64"
optional = true
"#,
        ghcr = regs.ghcr.host(),
        hub = regs.hub.host()
    );
    write(&dir.path().join("recipes/app.toml"), &recipe);
    dir
}

/// The files a runner gives a step.
pub(crate) struct Runner {
    pub dir: tempfile::TempDir,
}

impl Runner {
    pub fn new() -> Runner {
        let r = Runner { dir: tempdir() };
        for d in ["temp", "home/.docker"] {
            std::fs::create_dir_all(r.dir.path().join(d)).unwrap();
        }
        std::fs::write(r.output(), "").unwrap();
        std::fs::write(r.summary(), "").unwrap();
        r
    }
    pub fn output(&self) -> PathBuf {
        self.dir.path().join("output")
    }
    pub fn summary(&self) -> PathBuf {
        self.dir.path().join("step_summary.md")
    }

    /// `scripts/action.sh CMD` in `cwd` as the action's step runs it.
    pub fn script(&self, cwd: &Path, cmd: &str) -> Command {
        // The script reads boxwright's JSON report with jq.
        tools::require("jq");
        let mut c = Command::new("bash");
        c.arg(root().join("scripts/action.sh"))
            .arg(cmd)
            .current_dir(cwd)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path().join("home"))
            .env("DOCKER_CONFIG", self.dir.path().join("home/.docker"))
            .env("BOXWRIGHT", env!("CARGO_BIN_EXE_boxwright"))
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_OUTPUT", self.output())
            .env("GITHUB_STEP_SUMMARY", self.summary())
            .env("RUNNER_TEMP", self.dir.path().join("temp"))
            .env("GITHUB_ACTOR", GH_ACTOR)
            .env("GITHUB_TOKEN", GH_TOKEN)
            .env("DOCKERHUB_USERNAME", HUB_USER)
            .env("REPO_API_KEY", b64(HUB_TOKEN));
        c
    }

    /// `$GITHUB_OUTPUT` parsed: `name=value` and `name<<DELIM ... DELIM`.
    pub fn outputs(&self) -> BTreeMap<String, String> {
        parse_outputs(&std::fs::read_to_string(self.output()).unwrap())
    }
}

fn parse_outputs(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some((name, delim)) = line.split_once("<<") {
            let mut value = Vec::new();
            for l in lines.by_ref() {
                if l == delim {
                    break;
                }
                value.push(l);
            }
            out.insert(name.to_string(), value.join("\n"));
        } else if let Some((name, value)) = line.split_once('=') {
            out.insert(name.to_string(), value.to_string());
        }
    }
    out
}

fn tags(repo: &str, creds: &str) -> BTreeSet<String> {
    tags_of(&skopeo(&[
        "list-tags",
        "--tls-verify=false",
        "--creds",
        creds,
        &format!("docker://{repo}"),
    ]))
    .into_iter()
    .collect()
}

/// The bytes of the image's blobs (config and layers) in a one-platform layout.
fn blob_bytes(layout: &Path, manifest_digest: &str) -> u64 {
    std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| format!("sha256:{}", e.file_name().to_string_lossy()) != manifest_digest)
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// No secret, plain or encoded, anywhere in `text` (`::add-mask::` lines
/// are workflow commands the runner consumes and never shows).
fn assert_no_secret(what: &str, text: &str) {
    for line in text.lines() {
        if line.starts_with("::add-mask::") {
            continue;
        }
        for secret in [GH_TOKEN, HUB_TOKEN, b64(HUB_TOKEN).as_str()] {
            assert!(!line.contains(secret), "{what} shows a secret: {line:?}");
        }
    }
}

fn assert_plain_lines(what: &str, text: &str) {
    // Figure: no escape sequence and no carriage return (redraw) at all.
    assert!(
        !text.contains('\u{1b}'),
        "{what} has an escape sequence:\n{text}"
    );
    assert!(
        !text.contains('\r'),
        "{what} has a carriage return:\n{text}"
    );
}

pub(crate) fn assert_ran(r: &Run) {
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
}

#[test]
fn action_script_pushes_verifies_and_writes_outputs_and_summary() {
    let regs = Registries::start();
    let ws = workspace(&regs);
    let runner = Runner::new();
    let (ghcr, hub) = (regs.ghcr.host(), regs.hub.host());
    let extra = format!("{ghcr}/acme/r2d-edge:edge");
    let r = run(runner
        .script(ws.path(), "run")
        .env("INPUT_RECIPE", "recipes/app.toml")
        .env("INPUT_VARS", "VERSION=1.4.0")
        .env("INPUT_TARGETS", &extra)
        .env("INPUT_VERIFY", "true"));
    assert_ran(&r);

    let gh_creds = format!("{GH_ACTOR}:{GH_TOKEN}");
    let hub_creds = format!("{HUB_USER}:{HUB_TOKEN}");
    let digest = remote_digest(&format!("{ghcr}/acme/r2d:1.4.0"), Some(&gh_creds));
    assert_eq!(
        tags(&format!("{hub}/acme/r2d"), &hub_creds),
        ["1.4.0", "latest"].map(String::from).into()
    );
    // Figure: all five references name the one digest, on both registries.
    for (reference, creds) in [
        (format!("{ghcr}/acme/r2d:latest"), &gh_creds),
        (format!("{hub}/acme/r2d:1.4.0"), &hub_creds),
        (format!("{hub}/acme/r2d:latest"), &hub_creds),
        (extra.clone(), &gh_creds),
    ] {
        assert_eq!(
            remote_digest(&reference, Some(creds)),
            digest,
            "{reference}"
        );
    }

    let out = runner.outputs();
    let keys: Vec<&str> = out.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["digest", "image", "refs", "report", "targets", "verified"]
    );
    assert_eq!(out["digest"], digest);
    assert_eq!(out["image"], format!("{ghcr}/acme/r2d@{digest}"));
    assert_eq!(out["verified"], "true");
    let refs: BTreeSet<&str> = out["refs"].lines().collect();
    let want: BTreeSet<String> = [
        format!("{ghcr}/acme/r2d:1.4.0"),
        format!("{ghcr}/acme/r2d:latest"),
        format!("{hub}/acme/r2d:1.4.0"),
        format!("{hub}/acme/r2d:latest"),
        extra.clone(),
    ]
    .into();
    assert_eq!(refs, want.iter().map(String::as_str).collect());

    // Figure: bytes sent per repository = the image's blob bytes on each
    // registry once; the extra repository on the GHCR-like registry got its
    // 2 blobs (layer, config) by mount, 0 bytes.
    let layout = ws.path().join("out/r2d");
    let bytes = blob_bytes(&layout, &digest);
    let targets: Vec<serde_json::Value> = serde_json::from_str(&out["targets"]).unwrap();
    assert_eq!(targets.len(), 5);
    let by_ref = |r: &str| {
        targets
            .iter()
            .find(|t| t["reference"] == r)
            .unwrap_or_else(|| panic!("no target {r} in {targets:?}"))
    };
    for t in &targets {
        assert_eq!(t["ok"], true, "{t}");
        assert_eq!(t["digest"], digest.as_str());
    }
    for host in [&ghcr, &hub] {
        let t = by_ref(&format!("{host}/acme/r2d:1.4.0"));
        assert_eq!(t["bytes_sent"], bytes, "{t}");
        assert_eq!(t["blobs_uploaded"], 2, "{t}");
    }
    let edge = by_ref(&extra);
    assert_eq!(
        (edge["bytes_sent"].as_u64(), edge["blobs_mounted"].as_u64()),
        (Some(0), Some(2)),
        "{edge}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out["report"]).unwrap()).unwrap();
    assert_eq!(report["verify"]["ok"], true);
    assert_eq!(report["push"]["digest"], digest.as_str());

    // The summary: a heading with the digest, a row per target (5) and per
    // registry (2), the verify verdict.
    let summary = std::fs::read_to_string(runner.summary()).unwrap();
    assert!(
        summary.starts_with("### boxwright build --push recipes/app.toml: pushed `sha256:"),
        "{summary}"
    );
    let rows = |prefix: &str| summary.lines().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(rows("| `"), 5, "{summary}");
    assert!(summary.contains(&format!(
        "| `{extra}` | ok | `{digest}` | 0 B | 0 | 2 | 0 |"
    )));
    assert_eq!(
        rows(&format!("| {ghcr} | ok |")) + rows(&format!("| {hub} | ok |")),
        2
    );
    assert!(summary.contains(&format!("**verify**: all 5 references name `{digest}`")));

    // Secrets: the decoded Docker Hub token is masked for the runner, and no
    // secret appears in any output, file or log line.
    assert!(r
        .stdout
        .lines()
        .any(|l| l == format!("::add-mask::{HUB_TOKEN}")));
    assert_no_secret("stdout", &r.stdout);
    assert_no_secret("stderr", &r.stderr);
    assert_no_secret(
        "GITHUB_OUTPUT",
        &std::fs::read_to_string(runner.output()).unwrap(),
    );
    assert_no_secret("GITHUB_STEP_SUMMARY", &summary);
    assert_no_secret("report", &report.to_string());
    // Progress is plain lines: one per registry start and end, no redraws.
    assert_plain_lines("stderr", &r.stderr);
    assert!(
        r.stderr.contains(&format!("{ghcr}: started")),
        "{}",
        r.stderr
    );

    // Pushing again: nothing uploaded, a second summary appended.
    let again = run(runner
        .script(ws.path(), "run")
        .env("INPUT_RECIPE", "recipes/app.toml")
        .env("INPUT_VARS", "VERSION=1.4.0"));
    assert_ran(&again);
    let summary = std::fs::read_to_string(runner.summary()).unwrap();
    assert_eq!(summary.matches("### boxwright build --push").count(), 2);
    let out = runner.outputs();
    let targets: Vec<serde_json::Value> = serde_json::from_str(&out["targets"]).unwrap();
    // Figure: 4 recipe targets, 0 bytes, every blob skipped as present.
    assert_eq!(targets.len(), 4);
    for t in &targets {
        assert_eq!(
            (t["bytes_sent"].as_u64(), t["blobs_present"].as_u64()),
            (Some(0), Some(2)),
            "{t}"
        );
    }
}

#[test]
fn action_script_pushes_by_digest_without_tags() {
    let regs = Registries::start();
    let ws = workspace(&regs);
    let runner = Runner::new();
    let (ghcr, hub) = (regs.ghcr.host(), regs.hub.host());
    let r = run(runner
        .script(ws.path(), "run")
        .env("INPUT_RECIPE", "recipes/app.toml")
        .env(
            "INPUT_VARS",
            "VERSION=2.0.0\n  # the platform job of a matrix\n",
        )
        .env("INPUT_PLATFORM", "linux/amd64")
        .env("INPUT_BY_DIGEST", "true"));
    assert_ran(&r);
    let out = runner.outputs();
    let digest = &out["digest"];
    // Figure: one reference per registry, each REPO@DIGEST, verified.
    let refs: Vec<&str> = out["refs"].lines().collect();
    assert_eq!(
        refs,
        [
            format!("{ghcr}/acme/r2d@{digest}"),
            format!("{hub}/acme/r2d@{digest}")
        ]
    );
    assert_eq!(out["image"], refs[0]);
    assert_eq!(out["verified"], "true");
    let gh_creds = format!("{GH_ACTOR}:{GH_TOKEN}");
    assert_eq!(remote_digest(refs[0], Some(&gh_creds)), *digest);
    // Figure: no tag was created.
    let err = crate::support::try_skopeo(&[
        "list-tags",
        "--tls-verify=false",
        "--creds",
        &gh_creds,
        &format!("docker://{ghcr}/acme/r2d"),
    ]);
    match err {
        Ok(out) => assert!(tags_of(&out).is_empty(), "{out}"),
        Err(e) => assert!(e.contains("NAME_UNKNOWN") || e.contains("404"), "{e}"),
    }
}

#[test]
fn action_script_pushes_only_to_targets_with_recipe_targets_false() {
    let regs = Registries::start();
    let ws = workspace(&regs);
    let runner = Runner::new();
    let (ghcr, hub) = (regs.ghcr.host(), regs.hub.host());
    let only = format!("{ghcr}/acme/r2d-edge:edge");
    // Credentials for a --to come from docker's config.json, as a login
    // step earlier in the job would leave it.
    let auth = b64(&format!("{GH_ACTOR}:{GH_TOKEN}"));
    write(
        &runner.dir.path().join("home/.docker/config.json"),
        &format!(r#"{{"auths":{{"{ghcr}":{{"auth":"{auth}"}}}}}}"#),
    );
    let r = run(runner
        .script(ws.path(), "run")
        .env("INPUT_RECIPE", "recipes/app.toml")
        .env("INPUT_VARS", "VERSION=3.0.0")
        .env("INPUT_TARGETS", &only)
        .env("INPUT_RECIPE_TARGETS", "false"));
    assert_ran(&r);
    let out = runner.outputs();
    // Figure: one reference pushed, the --to one; nothing on the recipe's.
    assert_eq!(out["refs"], only);
    assert_eq!(
        out["image"],
        format!("{ghcr}/acme/r2d-edge@{}", out["digest"])
    );
    let hub_creds = format!("{HUB_USER}:{HUB_TOKEN}");
    let err = crate::support::try_skopeo(&[
        "list-tags",
        "--tls-verify=false",
        "--creds",
        &hub_creds,
        &format!("docker://{hub}/acme/r2d"),
    ]);
    match err {
        Ok(out) => assert!(tags_of(&out).is_empty(), "{out}"),
        Err(e) => assert!(e.contains("NAME_UNKNOWN") || e.contains("404"), "{e}"),
    }

    // A --to in extra-args (on the second line of a YAML block) is a target
    // as well: the recipe's targets are kept beside it (recipe-targets
    // defaults to true).
    std::fs::write(runner.output(), "").unwrap();
    let extra = format!("{ghcr}/acme/r2d-extra:x");
    let r = run(runner
        .script(ws.path(), "run")
        .env("INPUT_RECIPE", "recipes/app.toml")
        .env("INPUT_VARS", "VERSION=3.1.0")
        .env("INPUT_EXTRA_ARGS", format!("--retries 2\n--to {extra}\n")));
    assert_ran(&r);
    let refs: BTreeSet<String> = runner.outputs()["refs"].lines().map(String::from).collect();
    assert!(refs.contains(&extra), "{refs:?}");
    assert!(refs.contains(&format!("{hub}/acme/r2d:3.1.0")), "{refs:?}");
}

/// Every target failing: the step fails (exit 1) and hands on no digest, as
/// no registry holds the image.
#[test]
fn action_script_hands_on_no_digest_when_no_target_holds_the_image() {
    let regs = Registries::start();
    let ws = workspace(&regs);
    let runner = Runner::new();
    let r = run(runner
        .script(ws.path(), "run")
        .env("INPUT_RECIPE", "recipes/app.toml")
        .env("INPUT_VARS", "VERSION=3.2.0")
        .env("INPUT_TARGETS", "127.0.0.1:9/acme/nowhere:1")
        .env("INPUT_RECIPE_TARGETS", "false")
        .env("INPUT_EXTRA_ARGS", "--retries 0"));
    assert_eq!(r.code, 1, "{}", r.stderr);
    let out = runner.outputs();
    assert_eq!(out["digest"], "", "{out:?}");
    assert_eq!(out["refs"], "", "{out:?}");
}

/// The layer cache lives where action.yml keeps it between runs: a second
/// run of the same recipe takes every layer from it.
#[test]
fn action_script_keeps_the_layer_cache_where_the_action_caches_it() {
    let regs = Registries::start();
    let ws = workspace(&regs);
    let runner = Runner::new();
    let cached = |version: &str| -> Vec<bool> {
        std::fs::write(runner.output(), "").unwrap();
        let r = run(runner
            .script(ws.path(), "run")
            .env("INPUT_RECIPE", "recipes/app.toml")
            .env("INPUT_VARS", format!("VERSION={version}")));
        assert_ran(&r);
        let report = std::fs::read_to_string(&runner.outputs()["report"]).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&report).unwrap();
        doc["build"]["images"][0]["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["cached"].as_bool().unwrap())
            .collect()
    };
    assert!(cached("4.0.0").iter().all(|c| !c));
    // (The same release again: the app's files hold its version.)
    assert!(runner
        .dir
        .path()
        .join("home/.cache/boxwright/blobs/layers")
        .is_dir());
    let again = cached("4.0.0");
    assert!(!again.is_empty() && again.iter().all(|c| *c), "{again:?}");
}

/// The old pipeline's secrets as they are: the Docker Hub user name base64
/// too (`DOCKERHUB_USERNAME_ENCODED`), decoded by boxwright itself
/// (`username_encoding = "base64"`), and masked by the script.
#[test]
fn action_script_decodes_a_base64_user_name_of_a_recipe_target() {
    let regs = Registries::start();
    let ws = workspace(&regs);
    let recipe = ws.path().join("recipes/app.toml");
    // A quoted key and a literal string in the recipe naming a variable
    // that is not *_ENCODED, and base64 of the name with a line end,
    // grouped with a space: boxwright takes it, and the action masks what
    // boxwright decodes.
    let text = std::fs::read_to_string(&recipe).unwrap().replace(
        "username_env = \"DOCKERHUB_USERNAME\"",
        "\"username_env\" = 'HUB_USER_B64'\nusername_encoding = \"base64\"",
    );
    std::fs::write(&recipe, text).unwrap();
    let encoded = b64(&format!("{HUB_USER}\r\n"));
    let encoded = format!("{} {}", &encoded[..4], &encoded[4..]);
    let runner = Runner::new();
    let hub = regs.hub.host();
    let r = run(runner
        .script(ws.path(), "run")
        .env_remove("DOCKERHUB_USERNAME")
        .env("HUB_USER_B64", &encoded)
        .env("INPUT_RECIPE", "recipes/app.toml")
        .env("INPUT_VARS", "VERSION=5.0.0"));
    assert_ran(&r);
    let digest = runner.outputs()["digest"].clone();
    let hub_creds = format!("{HUB_USER}:{HUB_TOKEN}");
    assert_eq!(
        remote_digest(&format!("{hub}/acme/r2d:5.0.0"), Some(&hub_creds)),
        digest
    );
    // Figure: both decoded values are masked, and neither shows elsewhere.
    for secret in [HUB_USER, HUB_TOKEN] {
        assert!(
            r.stdout
                .lines()
                .any(|l| l == format!("::add-mask::{secret}")),
            "{}",
            r.stdout
        );
    }
    assert_no_secret("stdout", &r.stdout);
    assert_no_secret("stderr", &r.stderr);
    assert_no_user(&r.stdout);
    assert_no_user(&r.stderr);
}

/// `logins`: credentials for destinations the recipe does not name, each
/// field plain or base64, checked by `boxwright login` into a docker config
/// of the step alone.
#[test]
fn action_script_logs_in_with_encoded_user_names_and_passwords() {
    let regs = Registries::start();
    let ws = workspace(&regs);
    let runner = Runner::new();
    let (ghcr, hub) = (regs.ghcr.host(), regs.hub.host());
    let to = format!("{ghcr}/acme/solo:1 {hub}/acme/solo:1");
    // The runner's docker config names a credential helper: the step's
    // logins must not go there (they would outlive the step).
    let runner_config = runner.dir.path().join("home/.docker/config.json");
    let helper = r#"{"credsStore":"boxwright-test-no-such-helper","auths":{}}"#;
    write(&runner_config, helper);
    let logins = format!(
        "{ghcr} GITHUB_ACTOR GHCR_TOKEN_B64:base64\n\
         # Docker Hub, both fields base64 as the old pipeline kept them\n\
         {hub} DOCKERHUB_USERNAME_ENCODED:base64 REPO_API_KEY:base64\n"
    );
    let r = run(runner
        .script(ws.path(), "run")
        .env("GHCR_TOKEN_B64", b64(GH_TOKEN))
        .env("DOCKERHUB_USERNAME_ENCODED", b64(HUB_USER))
        .env("INPUT_RECIPE", "recipes/app.toml")
        .env("INPUT_VARS", "VERSION=6.0.0")
        .env("INPUT_TARGETS", &to)
        .env("INPUT_RECIPE_TARGETS", "false")
        .env("INPUT_LOGINS", &logins));
    assert_ran(&r);
    let out = runner.outputs();
    let digest = &out["digest"];
    // Figure: the two --to references, and only they, name the digest.
    let refs: BTreeSet<&str> = out["refs"].lines().collect();
    assert_eq!(
        refs,
        [format!("{ghcr}/acme/solo:1"), format!("{hub}/acme/solo:1")]
            .iter()
            .map(String::as_str)
            .collect()
    );
    let hub_creds = format!("{HUB_USER}:{HUB_TOKEN}");
    assert_eq!(
        remote_digest(&format!("{hub}/acme/solo:1"), Some(&hub_creds)),
        *digest
    );
    for secret in [GH_TOKEN, HUB_USER, HUB_TOKEN] {
        assert!(
            r.stdout
                .lines()
                .any(|l| l == format!("::add-mask::{secret}")),
            "{secret} not masked:\n{}",
            r.stdout
        );
    }
    assert_no_secret("stdout", &r.stdout);
    assert_no_secret("stderr", &r.stderr);
    assert_no_user(&r.stdout);
    assert_no_user(&r.stderr);
    assert_no_secret(
        "GITHUB_OUTPUT",
        &std::fs::read_to_string(runner.output()).unwrap(),
    );
    // Figure: the runner's docker config was not written, and the step's
    // own is gone.
    assert_eq!(std::fs::read_to_string(&runner_config).unwrap(), helper);
    let left: Vec<_> = std::fs::read_dir(runner.dir.path().join("temp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("boxwright-docker"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // A wrong password: the login fails (exit 1) before any build, naming
    // the registry and not the secret.
    let r = run(runner
        .script(ws.path(), "run")
        .env("BAD_B64", b64("not-the-token"))
        .env("DOCKERHUB_USERNAME_ENCODED", b64(HUB_USER))
        .env("INPUT_RECIPE", "recipes/app.toml")
        .env("INPUT_TARGETS", &to)
        .env("INPUT_RECIPE_TARGETS", "false")
        .env(
            "INPUT_LOGINS",
            format!("{hub} DOCKERHUB_USERNAME_ENCODED:base64 BAD_B64:base64"),
        ));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("logging in to {hub} failed")),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("not-the-token"), "{}", r.stderr);
    assert_no_user(&r.stderr);
}

/// The decoded Docker Hub user name shows only in `::add-mask::` lines.
fn assert_no_user(text: &str) {
    for line in text.lines().filter(|l| !l.starts_with("::add-mask::")) {
        assert!(!line.contains(HUB_USER), "shows the user name: {line:?}");
    }
}

fn tags_of(json: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v["Tags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn action_script_refuses_bad_inputs_before_any_work() {
    let runner = Runner::new();
    let ws = tempdir();
    write(&ws.path().join("recipes/r2d.toml"), "");
    for (name, value, says) in [
        ("INPUT_VARS", "1VERSION=2", "'1VERSION' is not NAME=VALUE"),
        (
            "INPUT_VERIFY",
            "maybe",
            "expected true or false, got 'maybe'",
        ),
        // A line end in an input cannot start a workflow command.
        (
            "INPUT_VERIFY",
            "no\n::set-output name=digest::forged",
            "got 'no%0A::set-output name=digest::forged'",
        ),
        ("INPUT_RECIPE", "nope.toml", "recipe nope.toml not found"),
        (
            "INPUT_RECIPE_TARGETS",
            "false",
            "recipe-targets: false needs targets",
        ),
        (
            "INPUT_LOGINS",
            "docker.io JUST_ONE",
            "is not REGISTRY USERNAME_VAR PASSWORD_VAR",
        ),
        (
            "INPUT_LOGINS",
            "docker.io NOPE_USER NOPE_PASS",
            "environment variable NOPE_USER (user name of docker.io) is not set",
        ),
        (
            "INPUT_LOGINS",
            "docker.io GITHUB_ACTOR GITHUB_TOKEN:rot13",
            "the encoding is plain or base64",
        ),
        (
            "INPUT_LOGINS",
            "docker.io GITHUB_ACTOR GITHUB_TOKEN:base64",
            "GITHUB_TOKEN (password of docker.io) is not valid base64",
        ),
    ] {
        let r = run(runner.script(ws.path(), "run").env(name, value));
        // Figure: exit 2 and a GitHub error annotation naming the input.
        assert_eq!(r.code, 2, "{name}={value}: {}", r.stderr);
        assert!(
            r.stderr.starts_with("::error title=boxwright action::") && r.stderr.contains(says),
            "{}",
            r.stderr
        );
        assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    }
    assert_eq!(std::fs::read_to_string(runner.output()).unwrap(), "");
}

#[test]
fn action_script_resolves_a_local_checkout_and_uses_a_given_binary() {
    let runner = Runner::new();
    let r = run(runner
        .script(&root(), "resolve")
        .env("GITHUB_ACTION_PATH", root()));
    assert_ran(&r);
    let out = runner.outputs();
    assert_eq!(out["kind"], "local");
    assert_eq!(out["repository"], "");
    // Figure: key = boxwright-<triple>-local-<16 hex of the source tree>.
    let key = &out["key"];
    let hash = key.rsplit('-').next().unwrap();
    assert!(
        key.starts_with("boxwright-") && key.contains("-local-"),
        "{key}"
    );
    assert_eq!(hash.len(), 16, "{key}");
    assert!(hash.chars().all(|c| c.is_ascii_hexdigit()), "{key}");

    // A released version used from the marketplace path.
    std::fs::write(runner.output(), "").unwrap();
    // (The github context of a composite action nested in another names
    // the outer action: the path is believed.)
    let r = run(runner
        .script(&root(), "resolve")
        .env(
            "GITHUB_ACTION_PATH",
            "/home/runner/work/_actions/acme/boxwright/v0.3.1",
        )
        .env("ACTION_REPOSITORY", "other/wrapper-action")
        .env("ACTION_REF", "v2.0.0")
        .env("INPUT_VERSION", "0.3.2"));
    assert_ran(&r);
    let out = runner.outputs();
    assert_eq!(
        (
            out["kind"].as_str(),
            out["repository"].as_str(),
            out["version"].as_str()
        ),
        ("release", "acme/boxwright", "v0.3.2")
    );
    assert!(out["key"].ends_with("-v0.3.2"), "{}", out["key"]);

    // A moving major tag (`uses: acme/boxwright@v0`) is a tag, keyed on the
    // commit it names now; a branch is a branch; a ref that cannot be
    // looked up is keyed for this run alone, never cached for good.
    let git = tempdir();
    let repo = git.path().join("acme/boxwright");
    std::fs::create_dir_all(&repo).unwrap();
    let g = |args: &[&str]| run_git(&repo, args);
    g(&["init", "-q", "-b", "main"]);
    g(&["commit", "-q", "--allow-empty", "-m", "one"]);
    g(&["tag", "-a", "-m", "major", "v0"]);
    let head = g(&["rev-parse", "HEAD"]);
    for (reference, kind, key_end) in [
        ("v0", "tag", head.clone()),
        ("main", "branch", head.clone()),
        ("gone", "branch", "unresolved-4242".to_string()),
    ] {
        std::fs::write(runner.output(), "").unwrap();
        let r = run(runner
            .script(&root(), "resolve")
            .env(
                "GITHUB_ACTION_PATH",
                format!("/home/runner/work/_actions/acme/boxwright/{reference}"),
            )
            .env(
                "BOXWRIGHT_GIT_URL",
                format!("file://{}", git.path().display()),
            )
            .env("GITHUB_RUN_ID", "4242"));
        assert_ran(&r);
        let out = runner.outputs();
        assert_eq!(out["kind"], kind, "{reference}");
        assert!(
            out["key"].ends_with(&format!("-{reference}-{key_end}")),
            "{reference}: {}",
            out["key"]
        );
    }

    // install with BOXWRIGHT set: nothing downloaded or built.
    std::fs::write(runner.output(), "").unwrap();
    let r = run(&mut runner.script(&root(), "install"));
    assert_ran(&r);
    assert_eq!(runner.outputs()["path"], env!("CARGO_BIN_EXE_boxwright"));
}

/// `build` on a terminal (a pty from `script`, util-linux): bars without
/// Actions, plain lines with `GITHUB_ACTIONS=true`.
#[test]
fn progress_on_a_terminal_in_actions_is_plain_lines() {
    let dir = tempdir();
    // 24 MB that gzip cannot shrink: long enough for bars to be drawn.
    std::fs::write(dir.path().join("big"), noise(24 << 20, 1)).unwrap();
    write(
        &dir.path().join("r.toml"),
        "[image]\nname = \"x\"\n\n[[layer]]\nname = \"big\"\n\n[[layer.entry]]\nsrc = \"big\"\ndest = \"/big\"\n",
    );
    let pty = |actions: bool| -> String {
        let cmd = format!(
            "{} build {} -o {} --jobs 1",
            env!("CARGO_BIN_EXE_boxwright"),
            dir.path().join("r.toml").display(),
            dir.path().join("out").display()
        );
        let mut c = Command::new("script");
        c.args(["-qec", &cmd, "/dev/null"])
            .env_remove("CI")
            .env("TERM", "xterm");
        if actions {
            c.env("GITHUB_ACTIONS", "true");
        } else {
            c.env_remove("GITHUB_ACTIONS");
        }
        // `script` runs a command on a pseudo-terminal.
        let out = tools::output(&mut c);
        assert!(out.status.success(), "{out:?}");
        // A terminal ends lines with \r\n: only a bare \r is a redraw.
        String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n")
    };
    let bars = pty(false);
    // Control: on a terminal outside CI, bars redraw (escapes or bare \r).
    assert!(
        bars.contains('\u{1b}') || bars.contains('\r'),
        "no bar drawn on the terminal: {bars:?}"
    );
    let lines = pty(true);
    assert_plain_lines("build on a terminal with GITHUB_ACTIONS=true", &lines);
    // Figure: the layer's start and end lines and the layout line.
    assert!(
        lines.contains("big: started") && lines.contains("wrote "),
        "{lines}"
    );
}

/// A target's error is registry text: in the warning annotation the script
/// writes for it, `%` and line ends are escaped as workflow commands need,
/// so `%0A` in a registry message shows as written and cannot end the
/// annotation's text early.
#[test]
fn action_script_escapes_registry_text_in_its_warnings() {
    let runner = Runner::new();
    let ws = tempdir();
    write(&ws.path().join("recipes/r2d.toml"), "");
    let report = r#"{"push":{"digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","targets":[{"reference":"r.example/acme/app:1","registry":"r.example","ok":false,"optional":true,"digest":null,"error":"HTTP 400: 50%0A::error::forged","bytes_sent":0,"blobs_uploaded":0,"blobs_mounted":0,"blobs_present":0}]}}"#;
    let r = run(&mut stubbed(&runner, ws.path(), report));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let warning = r
        .stderr
        .lines()
        .find(|l| l.starts_with("::warning "))
        .unwrap_or_else(|| panic!("no warning:\n{}", r.stderr));
    assert_eq!(
        warning,
        "::warning title=boxwright action::r.example/acme/app:1: HTTP 400: 50%250A::error::forged"
    );
}

/// `scripts/action.sh run` in `ws` with a stand-in for boxwright that
/// writes its arguments, one per line, to `ws/args` and prints `report`.
fn stubbed(runner: &Runner, ws: &Path, report: &str) -> Command {
    let fixture = ws.join("report.json");
    write(&fixture, report);
    let stub = ws.join("bin/boxwright");
    write(
        &stub,
        "#!/bin/sh\nprintf '%s\\n' \"$@\" >\"$ARGS_LOG\"\ncat \"$REPORT_FIXTURE\"\n",
    );
    crate::common::chmod(&stub, 0o755);
    let mut c = runner.script(ws, "run");
    c.env("BOXWRIGHT", &stub)
        .env("REPORT_FIXTURE", &fixture)
        .env("ARGS_LOG", ws.join("args"))
        .env("INPUT_VERIFY", "false");
    c
}

/// The `platform` input takes platforms separated by commas, spaces or
/// lines (a YAML block ends in a line end), as docker/build-push-action
/// takes its `platforms`: boxwright gets one comma-separated `--platform`.
#[test]
fn action_script_takes_platforms_separated_by_commas_spaces_or_lines() {
    let runner = Runner::new();
    let ws = tempdir();
    write(&ws.path().join("recipes/r2d.toml"), "");
    let report = r#"{"push":{"digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","targets":[]}}"#;
    for input in [
        "linux/amd64,linux/arm64",
        "linux/amd64, linux/arm64",
        "linux/amd64\nlinux/arm64\n",
        " linux/amd64 ,\r\n linux/arm64 ",
    ] {
        let r = run(stubbed(&runner, ws.path(), report).env("INPUT_PLATFORM", input));
        assert_eq!(r.code, 0, "{input:?}: {}", r.stderr);
        let args = std::fs::read_to_string(ws.path().join("args")).unwrap();
        assert!(
            args.contains("\n--platform\nlinux/amd64,linux/arm64\n"),
            "{input:?}:\n{args}"
        );
    }
    for input in ["", " ", "\n"] {
        let r = run(stubbed(&runner, ws.path(), report).env("INPUT_PLATFORM", input));
        assert_eq!(r.code, 0, "{input:?}: {}", r.stderr);
        let args = std::fs::read_to_string(ws.path().join("args")).unwrap();
        assert!(!args.contains("--platform"), "{input:?}:\n{args}");
    }
}

/// The layer cache's key (per OS, architecture, workflow, job and commit)
/// and the prefix restoring the newest of the same workflow and job come
/// from the script: a workflow named with a comma (which actions/cache
/// refuses in a key, failing the step) or at length gets a key without
/// one, at most 512 characters, and two names alike keep apart.
#[test]
fn action_script_makes_a_layer_cache_key_actions_cache_takes() {
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let keys = |workflow: &str| {
        let runner = Runner::new();
        let r = run(runner
            .script(&root(), "resolve")
            .env("GITHUB_ACTION_PATH", root())
            .env("GITHUB_WORKFLOW", workflow)
            .env("GITHUB_JOB", "build")
            .env("GITHUB_SHA", sha)
            .env("RUNNER_OS", "Linux")
            .env("RUNNER_ARCH", "X64"));
        assert_ran(&r);
        let out = runner.outputs();
        let (key, restore) = (out["layers-key"].clone(), out["layers-restore"].clone());
        assert_eq!(key, format!("{restore}{sha}"), "{workflow:?}");
        assert!(
            restore.starts_with("boxwright-layers-Linux-X64-") && restore.ends_with("-build-"),
            "{restore}"
        );
        assert!(
            !key.contains(',') && key.len() <= 512,
            "{workflow:?}: {key}"
        );
        restore
    };
    let plain = keys("r2d image");
    let comma = keys("Build, test and push");
    let long = keys(&"a very long workflow name, ".repeat(40));
    let alike = keys("Build; test and push");
    assert!(plain.contains("-r2d_image-"), "{plain}");
    assert!(comma.contains("-Build__test_and_push-"), "{comma}");
    assert_ne!(comma, alike);
    assert!(long.len() < 200, "{long}");
}

/// The key the action caches its boxwright binary under names the ref the
/// action is used at: a branch with a comma (`uses: acme/boxwright@ci,fast`,
/// which actions/cache refuses in a key, failing the step), or other
/// characters a git ref may hold, or a long one, gets a key without a
/// comma, at most 512 characters, still keyed on the commit the branch
/// names; refs alike (`ci,fast`, `ci_fast`) keep apart, and a plain one
/// (`main`, `feat/x`) is as before. So is a release version with a comma
/// in its suffix.
#[test]
fn action_script_makes_a_binary_cache_key_actions_cache_takes_for_any_ref() {
    let git = tempdir();
    let repo = git.path().join("acme/boxwright");
    std::fs::create_dir_all(&repo).unwrap();
    let g = |args: &[&str]| run_git(&repo, args);
    g(&["init", "-q", "-b", "main"]);
    g(&["commit", "-q", "--allow-empty", "-m", "one"]);
    let head = g(&["rev-parse", "HEAD"]);
    let long = format!("release/{}", "a,b-".repeat(40));
    let branches = [
        "ci,fast",
        "ci_fast",
        "fix-#1&(it's)",
        "feat/x",
        long.as_str(),
    ];
    for b in &branches[..] {
        g(&["branch", b]);
    }
    let resolve = |reference: &str, version: Option<&str>| {
        let runner = Runner::new();
        let mut cmd = runner.script(&root(), "resolve");
        cmd.env(
            "GITHUB_ACTION_PATH",
            format!("/home/runner/work/_actions/acme/boxwright/{reference}"),
        )
        .env(
            "BOXWRIGHT_GIT_URL",
            format!("file://{}", git.path().display()),
        );
        if let Some(v) = version {
            cmd.env("INPUT_VERSION", v);
        }
        assert_ran(&run(&mut cmd));
        runner.outputs()
    };
    let mut keys = Vec::new();
    for b in branches {
        let out = resolve(b, None);
        let key = out["key"].clone();
        assert_eq!(out["kind"], "branch", "{b}: {out:?}");
        assert_eq!(out["version"], b, "{b}");
        assert!(key.ends_with(&format!("-{head}")), "{b}: {key}");
        assert!(!key.contains(',') && key.len() <= 512, "{b}: {key}");
        assert!(
            key.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._/+-".contains(c)),
            "{b}: {key}"
        );
        keys.push(key);
    }
    assert!(keys[3].ends_with(&format!("-feat/x-{head}")), "{}", keys[3]);
    assert_ne!(keys[0], keys[1]);
    assert!(keys[4].len() < 200, "{}", keys[4]);
    let out = resolve("v1", Some("0.3.2-rc,1"));
    assert_eq!(out["kind"], "release");
    assert_eq!(out["version"], "v0.3.2-rc,1");
    assert!(!out["key"].contains(','), "{}", out["key"]);
}

/// `git ARGS` in `repo`, as a user named t: its stdout, trimmed; the test
/// fails when git does.
fn run_git(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(args)
        .current_dir(repo)
        .output()
        .expect("git");
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

//! The action's supply-chain inputs (`signing-key`, `signing-key-password`,
//! `sbom`, `provenance`) through `scripts/action.sh run`, and its install
//! step taking a release asset only with a matching checksum.

use std::path::Path;

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

//! The GitHub Action's definition (`action.yml`) and the example
//! workflows, read as YAML: the inputs and outputs the action declares are
//! the ones its script reads and writes, and the examples pass only inputs
//! that exist. The script itself runs in `action`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::common::root;

fn yaml(path: &Path) -> serde_yaml::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
}

fn keys(v: &serde_yaml::Value) -> BTreeSet<String> {
    v.as_mapping()
        .map(|m| {
            m.keys()
                .filter_map(|k| k.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn action() -> serde_yaml::Value {
    yaml(&root().join("action.yml"))
}

#[test]
fn action_yml_defines_the_inputs_and_its_steps_call_the_script() {
    let a = action();
    let inputs = keys(&a["inputs"]);
    for want in [
        "recipe",
        "vars",
        "targets",
        "recipe-targets",
        "verify",
        "version",
        "extra-args",
        "platform",
        "by-digest",
        "install-only",
        "cache",
        "cache-max",
        "sbom",
        "provenance",
        "signing-key",
        "signing-key-password",
    ] {
        assert!(inputs.contains(want), "input {want} missing: {inputs:?}");
    }
    assert_eq!(
        a["inputs"]["recipe"]["default"].as_str(),
        Some("recipes/r2d.toml")
    );
    assert_eq!(a["inputs"]["verify"]["default"].as_str(), Some("true"));
    assert_eq!(a["inputs"]["sbom"]["default"].as_str(), Some("none"));
    assert_eq!(a["inputs"]["signing-key"]["default"].as_str(), Some(""));
    assert_eq!(
        a["inputs"]["recipe-targets"]["default"].as_str(),
        Some("true")
    );
    let outputs = keys(&a["outputs"]);
    assert_eq!(
        outputs,
        ["digest", "image", "refs", "report", "targets", "verified"]
            .map(String::from)
            .into()
    );
    assert_eq!(a["runs"]["using"].as_str(), Some("composite"));
    let steps = a["runs"]["steps"].as_sequence().unwrap();
    let runs: Vec<&str> = steps.iter().filter_map(|s| s["run"].as_str()).collect();
    // Figure: the three script commands, in order; a cache step on the binary.
    assert_eq!(
        runs,
        [
            r#""$GITHUB_ACTION_PATH/scripts/action.sh" resolve"#,
            r#""$GITHUB_ACTION_PATH/scripts/action.sh" install"#,
            r#""$GITHUB_ACTION_PATH/scripts/action.sh" run"#
        ]
    );
    assert!(steps.iter().any(|s| s["uses"]
        .as_str()
        .is_some_and(|u| u.starts_with("actions/cache@"))
        && s["with"]["path"]
            .as_str()
            .is_some_and(|p| p.contains("~/.cargo/bin/boxwright"))));
    // Figure: a second cache step keeps the layer cache where the script
    // puts it, restoring the newest of the same workflow and job.
    let layers = steps
        .iter()
        .find(|s| s["with"]["path"].as_str() == Some("~/.cache/boxwright"))
        .expect("a cache step for ~/.cache/boxwright");
    assert!(layers["uses"]
        .as_str()
        .is_some_and(|u| u.starts_with("actions/cache@")));
    let key = layers["with"]["key"].as_str().unwrap();
    let restore = layers["with"]["restore-keys"].as_str().unwrap();
    assert!(
        key.starts_with(restore) && key.ends_with("${{ github.sha }}"),
        "{key}"
    );
    for s in steps.iter().filter(|s| s["run"].is_string()) {
        assert_eq!(s["shell"].as_str(), Some("bash"));
    }
    // Every `inputs.X` the action reads is one it defines; every output comes
    // from the run step.
    let text = std::fs::read_to_string(root().join("action.yml")).unwrap();
    for used in text.split("inputs.").skip(1) {
        let name: String = used
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        assert!(
            inputs.contains(&name),
            "action.yml reads undefined input {name}"
        );
    }
    for o in &outputs {
        assert_eq!(
            a["outputs"][o.as_str()]["value"].as_str(),
            Some(format!("${{{{ steps.run.outputs.{o} }}}}").as_str())
        );
    }
    // The script reads INPUT_<NAME> for each input the run step passes.
    let script = std::fs::read_to_string(root().join("scripts/action.sh")).unwrap();
    let env = steps.iter().find(|s| s["id"] == "run").unwrap()["env"].clone();
    for k in keys(&env) {
        assert!(
            script.contains(&format!("${{{k}")),
            "the script ignores {k}"
        );
    }
}

/// Steps that use this action: `./` or `OWNER/boxwright@REF`.
fn is_this_action(uses: &str) -> bool {
    uses == "./"
        || uses == "."
        || uses
            .split('@')
            .next()
            .is_some_and(|r| r.ends_with("/boxwright"))
}

#[test]
fn example_workflows_parse_and_pass_only_defined_inputs() {
    let a = action();
    let inputs = keys(&a["inputs"]);
    let outputs = keys(&a["outputs"]);
    let dir = root().join("examples/workflows");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "r2d-build.yml",
            "r2d-multiplatform.yml",
            "registry-health.yml"
        ]
    );
    let mut uses_of_action = 0;
    for f in &files {
        let w = yaml(f);
        let text = std::fs::read_to_string(f).unwrap();
        assert!(w["name"].is_string(), "{}: no name", f.display());
        assert!(!w["on"].is_null(), "{}: no `on`", f.display());
        let jobs = w["jobs"]
            .as_mapping()
            .unwrap_or_else(|| panic!("{}: no jobs", f.display()));
        for (job, body) in jobs {
            assert!(
                body["runs-on"].is_string(),
                "{}: {job:?} has no runs-on",
                f.display()
            );
            for step in body["steps"].as_sequence().unwrap() {
                let Some(uses) = step["uses"].as_str() else {
                    assert!(
                        step["run"].is_string(),
                        "{}: a step with neither uses nor run",
                        f.display()
                    );
                    continue;
                };
                if !is_this_action(uses) {
                    continue;
                }
                uses_of_action += 1;
                for k in keys(&step["with"]) {
                    assert!(
                        inputs.contains(&k),
                        "{}: input {k} is not in action.yml",
                        f.display()
                    );
                }
                // Outputs read from this step exist.
                if let Some(id) = step["id"].as_str() {
                    let pat = format!("steps.{id}.outputs.");
                    for used in text.split(&pat).skip(1) {
                        let name: String = used
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                            .collect();
                        assert!(
                            outputs.contains(&name),
                            "{}: output {name} is not in action.yml",
                            f.display()
                        );
                    }
                }
            }
        }
    }
    // Figure: r2d-build (1), r2d-multiplatform (platform, index: 2), registry-health (1).
    assert_eq!(uses_of_action, 4);
    // The build example signs and attests with a key kept as a secret.
    let build = yaml(&dir.join("r2d-build.yml"));
    let with = build["jobs"]["build"]["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|s| s["uses"].as_str().is_some_and(is_this_action))
        .unwrap()["with"]
        .clone();
    assert_eq!(
        with["signing-key"].as_str(),
        Some("${{ secrets.COSIGN_PRIVATE_KEY }}")
    );
    assert_eq!(
        with["signing-key-password"].as_str(),
        Some("${{ secrets.COSIGN_PASSWORD }}")
    );
    assert_eq!(with["sbom"].as_str(), Some("spdx"));
    assert_eq!(with["provenance"].as_bool(), Some(true));
    let mp = std::fs::read_to_string(dir.join("r2d-multiplatform.yml")).unwrap();
    assert!(mp.contains("boxwright index") && mp.contains("by-digest: true"));
    let health = yaml(&dir.join("registry-health.yml"));
    assert!(health["on"]["schedule"][0]["cron"].is_string());
    let h = std::fs::read_to_string(dir.join("registry-health.yml")).unwrap();
    assert!(
        h.contains("boxwright verify --json")
            && h.contains("boxwright bench")
            && h.contains("actions/upload-artifact")
    );
}

/// Figure: each example step that builds `recipes/r2d.toml` with the
/// action sets, in its `env:`, every variable the recipe's `[[target]]`s
/// name, from the secret of the same name.
#[test]
fn examples_give_the_action_every_secret_the_r2d_targets_name() {
    let recipe: toml::Value =
        toml::from_str(&std::fs::read_to_string(root().join("recipes/r2d.toml")).unwrap()).unwrap();
    let mut names = BTreeSet::new();
    for t in recipe["target"].as_array().unwrap() {
        for k in ["username_env", "password_env"] {
            names.insert(t[k].as_str().unwrap().to_string());
        }
    }
    let dir = root().join("examples/workflows");
    let mut steps = 0;
    for f in ["r2d-build.yml", "r2d-multiplatform.yml"] {
        let w = yaml(&dir.join(f));
        for (_, job) in w["jobs"].as_mapping().unwrap() {
            for step in job["steps"].as_sequence().unwrap() {
                let builds_r2d = step["uses"].as_str().is_some_and(is_this_action)
                    && step["with"]["recipe"].as_str() == Some("recipes/r2d.toml");
                if !builds_r2d {
                    continue;
                }
                steps += 1;
                for name in &names {
                    let value = step["env"][name.as_str()].as_str();
                    let expected = if name == "GITHUB_ACTOR" {
                        "${{ github.actor }}".to_string()
                    } else {
                        format!("${{{{ secrets.{name} }}}}")
                    };
                    assert_eq!(value, Some(expected.as_str()), "{f}: {name}");
                }
            }
        }
    }
    assert_eq!(steps, 2);
}

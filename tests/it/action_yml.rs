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
    // The script makes both from the workflow's name, which may hold what
    // actions/cache refuses in a key (a comma).
    assert_eq!(
        layers["with"]["key"].as_str(),
        Some("${{ steps.resolve.outputs.layers-key }}")
    );
    assert_eq!(
        layers["with"]["restore-keys"].as_str(),
        Some("${{ steps.resolve.outputs.layers-restore }}")
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

/// The steps of the example workflows whose script decodes base64: file,
/// step name, the step's `env:` and its script.
fn decoding_steps() -> Vec<(String, String, serde_yaml::Value, String)> {
    let dir = root().join("examples/workflows");
    let mut found = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        for (_, job) in yaml(&f)["jobs"].as_mapping().unwrap() {
            for step in job["steps"].as_sequence().unwrap() {
                let Some(run) = step["run"].as_str() else {
                    continue;
                };
                if run.contains("base64") {
                    let step_name = step["name"].as_str().unwrap_or("?").to_string();
                    found.push((
                        name.clone(),
                        step_name,
                        step["env"].clone(),
                        run.to_string(),
                    ));
                }
            }
        }
    }
    found
}

/// The secrets a script decodes: the NAME of each `$(decode NAME)`.
fn decoded_names(script: &str) -> Vec<String> {
    let mut names: Vec<String> = script
        .split("$(decode ")
        .skip(1)
        .map(|s| {
            s.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .filter(|n: &String| !n.is_empty())
        .collect();
    names.dedup();
    names
}

/// Run `script` as a `shell: bash` step does, with `secrets` in its
/// environment and `boxwright` a stub that logs its arguments and stdin
/// to `log`: exit code, stdout and stderr.
fn run_step(script: &str, secrets: &[(String, String)], log: &Path) -> (i32, String, String) {
    let stub_dir = log.parent().unwrap().join("bin");
    let stub = stub_dir.join("boxwright");
    crate::common::write(
        &stub,
        "#!/bin/sh\n{ printf 'ARGS %s\\n' \"$*\"\n  printf 'DOCKER_CONFIG %s\\n' \"${DOCKER_CONFIG:-}\"\n  case \"$*\" in *--password-stdin*) printf 'STDIN %s\\n' \"$(cat)\";; esac\n} >>\"$STUB_LOG\"\n",
    );
    crate::common::chmod(&stub, 0o755);
    let path = format!(
        "{}:{}",
        stub_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new("bash")
        .args(["--noprofile", "--norc", "-eo", "pipefail", "-c", script])
        .env_clear()
        .env("PATH", path)
        .env("STUB_LOG", log)
        .env("GITHUB_ACTOR", "octocat")
        .env("HOME", log.parent().unwrap().join("home"))
        .env("RUNNER_TEMP", log.parent().unwrap().join("runner-temp"))
        .env("GITHUB_ENV", log.parent().unwrap().join("github-env"))
        .envs(secrets.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running bash");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Figure: every base64 decode in the examples goes through the step's
/// `decode NAME`, and each NAME is a secret of the step. Run through bash
/// with every secret valid, the decoded values reach `boxwright login`
/// (passwords on stdin); with one secret not base64, the step exits
/// non-zero naming that secret, never printing its value, and logs in
/// with nothing decoded from it.
#[test]
fn example_base64_decodes_name_the_secret_that_is_not_base64() {
    let steps = decoding_steps();
    // Figure: the three login steps (r2d-build, r2d-multiplatform, registry-health).
    assert_eq!(steps.len(), 3, "{steps:#?}");
    for (file, step, env, script) in &steps {
        let at = format!("{file}: step {step:?}");
        for line in script.lines().filter(|l| l.contains("base64 -d")) {
            assert_eq!(
                line.trim(),
                r#"tr -d ' \t\r\n' <<<"${!1}" | base64 -d 2>/dev/null && return"#,
                "{at}: a base64 decode outside decode()"
            );
        }
        assert!(script.contains("decode() {"), "{at}: no decode()");
        let names = decoded_names(script);
        assert!(names.len() >= 2, "{at}: decodes {names:?}");
        for n in &names {
            assert_eq!(
                env[n.as_str()].as_str(),
                Some(format!("${{{{ secrets.{n} }}}}").as_str()),
                "{at}: {n} is not a secret of the step"
            );
        }
        let good: Vec<(String, String)> = names
            .iter()
            .map(|n| (n.clone(), crate::common::b64(&format!("plain-{n}"))))
            .collect();
        let t = crate::support::tempdir();
        let log = t.path().join("log");
        let (code, out, err) = run_step(script, &good, &log);
        assert_eq!(code, 0, "{at}:\n{out}\n{err}");
        let logins = std::fs::read_to_string(&log).unwrap();
        for n in &names {
            assert!(
                logins.contains(&format!("plain-{n}")),
                "{at}: {n}:\n{logins}"
            );
        }
        let good_runs = logins.matches("ARGS ").count();
        // Every login goes to a docker config under RUNNER_TEMP, which the
        // runner empties when the job ends, and later steps are told of it.
        let temp = t.path().join("runner-temp");
        let config = format!("DOCKER_CONFIG {}/", temp.display());
        assert_eq!(
            logins.matches(&config).count(),
            good_runs,
            "{at}:\n{logins}"
        );
        let github_env = std::fs::read_to_string(t.path().join("github-env")).unwrap();
        assert!(
            github_env.contains(&format!("DOCKER_CONFIG={}/", temp.display())),
            "{at}: {github_env}"
        );
        // A secret kept with white space or a line end in its base64 (as
        // boxwright reads it) decodes; one not set is named.
        let spaced: Vec<(String, String)> = (good.iter())
            .map(|(n, v)| (n.clone(), format!(" {}\r\n{}\n", &v[..4], &v[4..])))
            .collect();
        let t2 = crate::support::tempdir();
        let log2 = t2.path().join("log");
        let (code, out, err) = run_step(script, &spaced, &log2);
        assert_eq!(code, 0, "{at}: spaced:\n{out}\n{err}");
        assert_eq!(
            std::fs::read_to_string(&log2).unwrap(),
            logins.replace(
                &temp.display().to_string(),
                &t2.path().join("runner-temp").display().to_string(),
            ),
            "{at}"
        );
        for unset in &names {
            let secrets: Vec<(String, String)> =
                good.iter().filter(|(n, _)| n != unset).cloned().collect();
            let t3 = crate::support::tempdir();
            let (code, out, err) = run_step(script, &secrets, &t3.path().join("log"));
            assert_ne!(code, 0, "{at}: {unset} unset:\n{out}\n{err}");
            assert!(
                err.contains(&format!("::error::{unset} is not set")),
                "{at}: {err}"
            );
        }
        for bad in &names {
            let value = "not base64!! s3cret-VALUE";
            let secrets: Vec<(String, String)> = good
                .iter()
                .map(|(n, v)| (n.clone(), if n == bad { value.into() } else { v.clone() }))
                .collect();
            let t = crate::support::tempdir();
            let log = t.path().join("log");
            let (code, out, err) = run_step(script, &secrets, &log);
            let shown = format!("{at}: {bad} bad:\n{out}\n{err}");
            assert_ne!(code, 0, "{shown}");
            assert!(
                err.contains(&format!("{bad} is not valid base64")),
                "{shown}"
            );
            assert!(
                !out.contains("s3cret") && !err.contains("s3cret"),
                "{shown}"
            );
            let logins = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(!logins.contains("s3cret"), "{shown}\n{logins}");
            // The step stopped there: fewer boxwright runs than with good secrets.
            let runs = logins.matches("ARGS ").count();
            assert!(runs < good_runs, "{shown}\n{logins}");
        }
    }
}

/// Figure: no `run:` script of the action, of the example workflows or of
/// this repository's own workflows expands `${{ }}`: an expression is
/// pasted into the script before bash reads it, so a value holding `"` or
/// `$(...)` would run as code. Values reach scripts through `env:`.
#[test]
fn no_run_script_expands_an_expression() {
    let mut files = vec![root().join("action.yml")];
    for dir in ["examples/workflows", ".github/workflows"] {
        let mut found: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
            .collect();
        found.sort();
        files.extend(found);
    }
    let mut scripts = 0;
    for f in &files {
        let y = yaml(f);
        let jobs: Vec<&serde_yaml::Value> = match y["jobs"].as_mapping() {
            Some(jobs) => jobs.values().collect(),
            None => vec![&y["runs"]],
        };
        for job in jobs {
            for step in job["steps"].as_sequence().unwrap() {
                if let Some(run) = step["run"].as_str() {
                    scripts += 1;
                    assert!(
                        !run.contains("${{"),
                        "{}: step {:?} expands an expression in its script:\n{run}",
                        f.display(),
                        step["name"].as_str().unwrap_or("?")
                    );
                }
            }
        }
    }
    assert!(scripts >= 10, "{scripts}");
    // The README's YAML examples teach the same.
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let mut blocks = 0;
    for block in readme.split("```yaml\n").skip(1) {
        let block = block.split("```").next().unwrap();
        let y: serde_yaml::Value = serde_yaml::from_str(block)
            .unwrap_or_else(|e| panic!("README: a YAML example does not parse: {e}\n{block}"));
        blocks += 1;
        for run in runs_in(&y) {
            assert!(
                !run.contains("${{"),
                "README: a YAML example expands an expression in its script:\n{run}"
            );
        }
    }
    assert!(blocks >= 2, "{blocks}");
}

/// Every `run:` script anywhere in `v`.
fn runs_in(v: &serde_yaml::Value) -> Vec<String> {
    match v {
        serde_yaml::Value::Mapping(m) => m
            .iter()
            .flat_map(|(k, v)| match (k.as_str(), v.as_str()) {
                (Some("run"), Some(run)) => vec![run.to_string()],
                _ => runs_in(v),
            })
            .collect(),
        serde_yaml::Value::Sequence(s) => s.iter().flat_map(runs_in).collect(),
        _ => Vec::new(),
    }
}

//! SLSA v1 provenance of a build, as an in-toto Statement v1: which image
//! (subject: every repository it was pushed to, with its digest) was made
//! by which builder (boxwright and its version) from what (the recipe file
//! and its sha256, the `--set` variables, the platforms) and what it pulled
//! in (base images, and whatever source kinds report: URLs, Python
//! packages). Inside GitHub Actions the repository, commit, workflow and run
//! come from the `GITHUB_*` environment.
//!
//! No wall-clock time is recorded, so that the same build in the same run
//! context gives the same statement (and the same digest on every registry).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::sbom::{Component, ComponentKind};
use crate::oci::Digest;

pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";

/// Whether `doc` is a whole in-toto statement rather than a predicate: its
/// `_type` is an in-toto Statement of any version (v1, or v0.1 as tools
/// writing SLSA v0.2 give it), or it names a `subject`, which no predicate
/// has. Such a document is about the images its subject names, and is
/// never to be wrapped as the predicate of a statement about another.
pub fn is_statement(doc: &Value) -> bool {
    doc["_type"]
        .as_str()
        .is_some_and(|t| t.starts_with("https://in-toto.io/Statement/"))
        || doc.get("subject").is_some()
}
/// What a boxwright build is (a recipe built into an image).
pub const BUILD_TYPE: &str = "urn:boxwright:buildtype:recipe:v1";
/// The builder: boxwright itself (its version is in `builder.version`).
pub const BUILDER_ID: &str = "urn:boxwright:builder";

/// What the provenance says.
#[derive(Clone, Debug)]
pub struct ProvenanceInput {
    /// Repositories (`ghcr.io/acme/app`) the image was pushed to.
    pub names: Vec<String>,
    pub digest: Digest,
    pub recipe: PathBuf,
    /// The sha256 (hex) of the recipe bytes the build was planned from.
    pub recipe_sha256: String,
    /// Variables given on the command line (`--set`).
    pub vars: BTreeMap<String, String>,
    pub platforms: Vec<String>,
    /// Base images, downloads and packages the build pulled in.
    pub dependencies: Vec<Component>,
}

impl ProvenanceInput {
    /// The in-toto statement; `env` is the process environment (or a test's).
    pub fn statement(&self, env: &dyn Fn(&str) -> Option<String>) -> Value {
        let mut names = self.names.clone();
        names.sort();
        names.dedup();
        let subject: Vec<Value> = names
            .iter()
            .map(|n| json!({"name": n, "digest": {"sha256": self.digest.hex()}}))
            .collect();
        let mut external = json!({
            "recipe": {
                "path": shown_path(&self.recipe, env),
                "digest": {"sha256": self.recipe_sha256},
            },
            "platforms": self.platforms,
        });
        if !self.vars.is_empty() {
            external["vars"] = json!(self.vars);
        }
        let mut deps: Vec<Value> = Vec::new();
        let mut definition = json!({"buildType": BUILD_TYPE});
        let mut metadata = json!({});
        if let Some(gh) = GitHub::from_env(env) {
            external["workflow"] = json!({
                "repository": gh.repository_url(),
                "ref": gh.reference,
                "path": gh.workflow_path(),
            });
            definition["internalParameters"] = json!({"github": gh.internal()});
            deps.push(json!({
                "uri": format!("git+{}@{}", gh.repository_url(), gh.reference),
                "digest": {"gitCommit": gh.sha},
            }));
            metadata["invocationId"] = json!(gh.invocation());
        }
        let mut components: Vec<&Component> = self
            .dependencies
            .iter()
            .filter(|c| c.kind != ComponentKind::File)
            .collect();
        components.sort();
        components.dedup();
        for c in components {
            let mut d = json!({"name": c.name});
            if let Some(u) = c.purl.as_ref().or(c.url.as_ref()) {
                d["uri"] = json!(u);
            }
            if let Some(s) = &c.sha256 {
                d["digest"] = json!({"sha256": s});
            }
            deps.push(d);
        }
        definition["externalParameters"] = external;
        definition["resolvedDependencies"] = json!(deps);
        let mut run = json!({
            "builder": {
                "id": BUILDER_ID,
                "version": {"boxwright": env!("CARGO_PKG_VERSION")},
            },
        });
        if metadata.as_object().is_some_and(|m| !m.is_empty()) {
            run["metadata"] = metadata;
        }
        json!({
            "_type": STATEMENT_TYPE,
            "subject": subject,
            "predicateType": PREDICATE_TYPE,
            "predicate": {"buildDefinition": definition, "runDetails": run},
        })
    }
}

/// The recipe path as the reader knows it: relative to the workspace in
/// GitHub Actions (else to the current directory) when it is inside.
fn shown_path(recipe: &Path, env: &dyn Fn(&str) -> Option<String>) -> String {
    let base = env("GITHUB_WORKSPACE")
        .map(PathBuf::from)
        .or_else(|| std::env::current_dir().ok());
    let abs = recipe
        .canonicalize()
        .unwrap_or_else(|_| recipe.to_path_buf());
    base.and_then(|b| b.canonicalize().ok())
        .and_then(|b| abs.strip_prefix(b).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| recipe.to_path_buf())
        .display()
        .to_string()
}

/// The run context GitHub Actions gives in the environment.
struct GitHub {
    server: String,
    repository: String,
    sha: String,
    reference: String,
    workflow_ref: String,
    run_id: String,
    attempt: String,
    vars: BTreeMap<&'static str, String>,
}

impl GitHub {
    fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Option<GitHub> {
        if env("GITHUB_ACTIONS").as_deref() != Some("true") {
            return None;
        }
        let mut vars = BTreeMap::new();
        for k in [
            "GITHUB_EVENT_NAME",
            "GITHUB_REPOSITORY_ID",
            "GITHUB_REPOSITORY_OWNER_ID",
            "GITHUB_ACTOR_ID",
            "RUNNER_ENVIRONMENT",
        ] {
            if let Some(v) = env(k) {
                vars.insert(k, v);
            }
        }
        Some(GitHub {
            server: env("GITHUB_SERVER_URL").unwrap_or_else(|| "https://github.com".into()),
            repository: env("GITHUB_REPOSITORY")?,
            sha: env("GITHUB_SHA")?,
            reference: env("GITHUB_REF").unwrap_or_default(),
            workflow_ref: env("GITHUB_WORKFLOW_REF").unwrap_or_default(),
            run_id: env("GITHUB_RUN_ID").unwrap_or_default(),
            attempt: env("GITHUB_RUN_ATTEMPT").unwrap_or_else(|| "1".into()),
            vars,
        })
    }

    fn repository_url(&self) -> String {
        format!("{}/{}", self.server.trim_end_matches('/'), self.repository)
    }

    /// `.github/workflows/x.yml` out of `owner/repo/.github/workflows/x.yml@ref`.
    fn workflow_path(&self) -> String {
        let no_ref = self.workflow_ref.split('@').next().unwrap_or_default();
        no_ref
            .strip_prefix(&format!("{}/", self.repository))
            .unwrap_or(no_ref)
            .to_string()
    }

    fn invocation(&self) -> String {
        format!(
            "{}/actions/runs/{}/attempts/{}",
            self.repository_url(),
            self.run_id,
            self.attempt
        )
    }

    fn internal(&self) -> Value {
        let mut v = json!({"workflow_ref": self.workflow_ref, "run_id": self.run_id});
        for (k, val) in &self.vars {
            v[k.to_ascii_lowercase()] = json!(val);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> ProvenanceInput {
        ProvenanceInput {
            names: vec!["ghcr.io/acme/app".into(), "docker.io/acme/app".into()],
            digest: Digest::of(b"image"),
            recipe: PathBuf::from("does/not/exist.toml"),
            recipe_sha256: "ab".repeat(32),
            vars: BTreeMap::from([("VERSION".into(), "1.2".into())]),
            platforms: vec!["linux/amd64".into()],
            dependencies: vec![Component::image(
                "docker.io/library/alpine:3.20",
                &Digest::of(b"base"),
            )],
        }
    }

    #[test]
    fn a_local_statement_names_subjects_builder_and_dependencies() {
        let s = input().statement(&|_| None);
        assert_eq!(s["_type"], STATEMENT_TYPE);
        assert_eq!(s["predicateType"], PREDICATE_TYPE);
        assert_eq!(s["subject"][0]["name"], "docker.io/acme/app");
        assert_eq!(
            s["subject"][1]["digest"]["sha256"],
            Digest::of(b"image").hex()
        );
        let def = &s["predicate"]["buildDefinition"];
        assert_eq!(def["externalParameters"]["vars"]["VERSION"], "1.2");
        assert_eq!(
            def["resolvedDependencies"][0]["digest"]["sha256"],
            Digest::of(b"base").hex()
        );
        assert!(def.get("internalParameters").is_none());
        assert!(s["predicate"]["runDetails"].get("metadata").is_none());
    }

    #[test]
    fn github_actions_adds_repository_commit_workflow_and_run() {
        let env = |k: &str| -> Option<String> {
            Some(
                match k {
                    "GITHUB_ACTIONS" => "true",
                    "GITHUB_REPOSITORY" => "acme/app",
                    "GITHUB_SHA" => "0123abcd",
                    "GITHUB_REF" => "refs/heads/main",
                    "GITHUB_WORKFLOW_REF" => {
                        "acme/app/.github/workflows/release.yml@refs/heads/main"
                    }
                    "GITHUB_RUN_ID" => "42",
                    "GITHUB_RUN_ATTEMPT" => "2",
                    _ => return None,
                }
                .to_string(),
            )
        };
        let s = input().statement(&env);
        let def = &s["predicate"]["buildDefinition"];
        let wf = &def["externalParameters"]["workflow"];
        assert_eq!(wf["repository"], "https://github.com/acme/app");
        assert_eq!(wf["path"], ".github/workflows/release.yml");
        assert_eq!(
            def["resolvedDependencies"][0]["uri"],
            "git+https://github.com/acme/app@refs/heads/main"
        );
        assert_eq!(
            def["resolvedDependencies"][0]["digest"]["gitCommit"],
            "0123abcd"
        );
        assert_eq!(
            s["predicate"]["runDetails"]["metadata"]["invocationId"],
            "https://github.com/acme/app/actions/runs/42/attempts/2"
        );
    }
}

//! Finding the credentials of a registry: the auth files
//! containers-auth.json(5) lists, in its order (the containers `auth.json`
//! files, docker's config with its `credHelpers`, `auths` and `credsStore`,
//! the legacy `~/.dockercfg`), and a GitHub Actions token where the
//! registry takes one.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _};
use base64::Engine as _;

use super::helper::run_helper;
use super::{Credential, CredentialSource, Secret};
use crate::error::bad_input;
use crate::registry::hosts::host_config;
use crate::registry::reference::{config_key, normalize_registry};

/// The places that implicit lookup reads. [`CredentialStore::from_env`] fills
/// it from the process environment; tests build it by hand.
#[derive(Clone, Debug, Default)]
pub struct CredentialStore {
    /// Directory holding docker's `config.json` (where `login` writes).
    pub docker_config_dir: Option<PathBuf>,
    /// The containers auth files read before docker's config, in order.
    pub auth_files: Vec<PathBuf>,
    /// Docker's legacy `~/.dockercfg` (a bare `auths` map), read last.
    pub legacy_dockercfg: Option<PathBuf>,
    /// `(GITHUB_ACTOR, GITHUB_TOKEN)`.
    pub github: Option<(String, Secret)>,
    /// `PATH` used to find `docker-credential-*` helpers (None: inherited).
    pub helper_path: Option<std::ffi::OsString>,
}

/// How an auth file is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// A containers `auth.json` (`auths`, `credHelpers`).
    Containers,
    /// Docker's `config.json` (`auths`, `credHelpers`, `credsStore`).
    Docker,
    /// `~/.dockercfg`: the `auths` map itself.
    Legacy,
}

impl CredentialStore {
    /// The files of containers-auth.json(5), in its order:
    /// `$REGISTRY_AUTH_FILE` (else `$XDG_RUNTIME_DIR/containers/auth.json`),
    /// `$XDG_CONFIG_HOME/containers/auth.json` (else
    /// `~/.config/containers/auth.json`), docker's
    /// `$DOCKER_CONFIG/config.json` (else `~/.docker/config.json`), then
    /// `~/.dockercfg`.
    pub fn from_env() -> CredentialStore {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let home = var("HOME").map(PathBuf::from);
        let docker_config_dir = var("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".docker")));
        let github = var("GITHUB_TOKEN").map(|t| {
            (
                var("GITHUB_ACTOR").unwrap_or_else(|| "boxwright".to_string()),
                Secret::new(t),
            )
        });
        let containers = |dir: PathBuf| dir.join("containers").join("auth.json");
        let first = var("REGISTRY_AUTH_FILE")
            .map(PathBuf::from)
            .or_else(|| var("XDG_RUNTIME_DIR").map(|d| containers(PathBuf::from(d))));
        let config_home = var("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".config")));
        CredentialStore {
            docker_config_dir,
            auth_files: first
                .into_iter()
                .chain(config_home.map(containers))
                .collect(),
            legacy_dockercfg: home.map(|h| h.join(".dockercfg")),
            github,
            helper_path: None,
        }
    }

    pub fn docker_config_path(&self) -> Option<PathBuf> {
        self.docker_config_dir
            .as_ref()
            .map(|d| d.join("config.json"))
    }

    /// Every file read, in the order read.
    pub fn files(&self) -> Vec<PathBuf> {
        self.read_order().into_iter().map(|(p, _)| p).collect()
    }

    fn read_order(&self) -> Vec<(PathBuf, Layout)> {
        let mut v: Vec<(PathBuf, Layout)> = self
            .auth_files
            .iter()
            .map(|p| (p.clone(), Layout::Containers))
            .collect();
        v.extend(self.docker_config_path().map(|p| (p, Layout::Docker)));
        v.extend(self.legacy_dockercfg.clone().map(|p| (p, Layout::Legacy)));
        v
    }

    /// Find credentials for a (normalised) registry name: the first file
    /// (see [`CredentialStore::files`]) with an entry for it, else a GitHub
    /// token where the registry takes one. Blocking (reads files, may run a
    /// credential helper): call from `spawn_blocking`.
    pub fn lookup(&self, registry: &str) -> anyhow::Result<Option<(Credential, CredentialSource)>> {
        for (path, layout) in self.read_order() {
            if let Some(found) =
                lookup_in_file(&path, registry, layout, self.helper_path.as_deref())?
            {
                return Ok(Some(found));
            }
        }
        if host_config(registry).github_token {
            if let Some((actor, token)) = &self.github {
                return Ok(Some((
                    Credential::Basic {
                        username: actor.clone(),
                        password: token.clone(),
                    },
                    CredentialSource::GithubToken,
                )));
            }
        }
        Ok(None)
    }
}

pub(super) fn read_json(path: &Path) -> anyhow::Result<Option<serde_json::Value>> {
    match crate::input::read_capped(path, crate::input::MAX_AUTH_FILE) {
        // An empty file holds nothing, as docker reads it (`touch` makes one).
        Ok(bytes) if bytes.trim_ascii().is_empty() => Ok(Some(serde_json::json!({}))),
        Ok(bytes) => {
            let v = serde_json::from_slice(&bytes)
                .map_err(|e| bad_input(format!("{} is not valid JSON: {e}", path.display())))?;
            Ok(Some(v))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData
            ) =>
        {
            Err(bad_input(format!("{}: {e}", path.display())))
        }
        // Unreadable (no permission, a symbolic link loop, a file where a
        // directory should be): the user's file to mend, as the rest.
        Err(e) => Err(bad_input(format!("reading {}: {e}", path.display()))),
    }
}

/// Find the entry of `obj` whose key normalises to `registry`.
pub(super) fn find_entry<'a>(
    obj: Option<&'a serde_json::Value>,
    registry: &str,
) -> Option<&'a serde_json::Value> {
    let map = obj?.as_object()?;
    map.get(&config_key(registry)).or_else(|| {
        map.iter()
            .find(|(k, _)| normalize_registry(k) == registry)
            .map(|(_, v)| v)
    })
}

fn lookup_in_file(
    path: &Path,
    registry: &str,
    layout: Layout,
    helper_path: Option<&std::ffi::OsStr>,
) -> anyhow::Result<Option<(Credential, CredentialSource)>> {
    let Some(cfg) = read_json(path)? else {
        return Ok(None);
    };
    let source = || match layout {
        Layout::Containers => CredentialSource::RegistryAuthFile(path.to_path_buf()),
        Layout::Docker | Layout::Legacy => CredentialSource::DockerConfig(path.to_path_buf()),
    };
    let shape = Shape { path, registry };
    shape.check(Some(&cfg), "the file", Kind::Object)?;
    let auths = match layout {
        Layout::Legacy => Some(&cfg),
        _ => shape.check(cfg.get("auths"), "\"auths\"", Kind::Object)?,
    };
    if layout != Layout::Legacy {
        let helpers = shape.check(cfg.get("credHelpers"), "\"credHelpers\"", Kind::Object)?;
        let entry = find_entry(helpers, registry);
        if let Some(helper) = shape.check(entry, "its \"credHelpers\" entry", Kind::Text)? {
            let name = helper.as_str().unwrap_or_default();
            return run_helper_get(name, registry, helper_path)
                .with_context(|| format!("\"credHelpers\" in {} names {name:?}", path.display()));
        }
    }
    let entry = shape.check(
        find_entry(auths, registry),
        "its \"auths\" entry",
        Kind::Object,
    )?;
    if let Some(entry) = entry {
        let token = shape.check(
            entry.get("identitytoken"),
            "its \"identitytoken\"",
            Kind::Text,
        )?;
        if let Some(tok) = token.and_then(|v| v.as_str()).filter(|s| !s.is_empty()) {
            return Ok(Some((
                Credential::IdentityToken(Secret::new(tok)),
                source(),
            )));
        }
        let auth = shape.check(entry.get("auth"), "its \"auth\"", Kind::Text)?;
        if let Some(auth) = auth.and_then(|v| v.as_str()).filter(|s| !s.is_empty()) {
            // Base64 wrapped over lines decodes as docker decodes it.
            let unwrapped: String = auth.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(unwrapped.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            let Some((user, pass)) = decoded.as_deref().and_then(|s| s.split_once(':')) else {
                return Err(bad_input(format!(
                    "the \"auth\" entry for {registry} in {} is not base64 of user:password",
                    path.display()
                )));
            };
            return Ok(Some((
                Credential::Basic {
                    username: user.to_string(),
                    password: Secret::new(pass),
                },
                source(),
            )));
        }
    }
    let store = match layout {
        Layout::Docker => shape.check(cfg.get("credsStore"), "\"credsStore\"", Kind::Text)?,
        _ => None,
    };
    if let Some(store) = store.and_then(|v| v.as_str()) {
        if !store.is_empty() {
            return run_helper_get(store, registry, helper_path)
                .with_context(|| format!("\"credsStore\" in {} names {store:?}", path.display()));
        }
    }
    Ok(None)
}

/// The JSON types an auth file's values must have.
#[derive(Clone, Copy)]
enum Kind {
    Object,
    Text,
}

/// Checks the values of an auth file that a lookup uses: one of the wrong
/// type (`"auth": 12`, `"auths": []`) is bad input naming the file, as
/// docker refuses such a file, rather than no credentials. `null` is as
/// good as absent.
struct Shape<'a> {
    path: &'a Path,
    registry: &'a str,
}

impl Shape<'_> {
    fn check<'v>(
        &self,
        value: Option<&'v serde_json::Value>,
        what: &str,
        kind: Kind,
    ) -> anyhow::Result<Option<&'v serde_json::Value>> {
        let Some(v) = value.filter(|v| !v.is_null()) else {
            return Ok(None);
        };
        let (fits, want) = match kind {
            Kind::Object => (v.is_object(), "a JSON object"),
            Kind::Text => (v.is_string(), "a string"),
        };
        if fits {
            return Ok(Some(v));
        }
        let whose = if what.starts_with("its ") {
            format!(" for {}", self.registry)
        } else {
            String::new()
        };
        Err(bad_input(format!(
            "{}: {}{whose} is not {want}; correct it, or log in again",
            self.path.display(),
            what.trim_start_matches("its "),
        )))
    }
}

/// Run `docker-credential-<name> get`. Its output is never quoted in errors.
fn run_helper_get(
    name: &str,
    registry: &str,
    helper_path: Option<&std::ffi::OsStr>,
) -> anyhow::Result<Option<(Credential, CredentialSource)>> {
    let server = config_key(registry);
    let (program, out) = run_helper(name, "get", server.as_bytes(), helper_path)
        .with_context(|| format!("credential helper for {registry}"))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout);
        if text.contains("credentials not found") {
            return Ok(None);
        }
        anyhow::bail!("{program} get failed for {registry} ({})", out.status);
    }
    #[derive(serde::Deserialize)]
    struct HelperOut {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let parsed: HelperOut = serde_json::from_slice(&out.stdout).map_err(|_| {
        anyhow!("{program} get for {registry} printed something that is not its JSON answer")
    })?;
    if parsed.secret.is_empty() {
        return Ok(None);
    }
    let cred = if parsed.username == "<token>" {
        Credential::IdentityToken(Secret::new(parsed.secret))
    } else {
        Credential::Basic {
            username: parsed.username,
            password: Secret::new(parsed.secret),
        }
    };
    Ok(Some((cred, CredentialSource::Helper(name.to_string()))))
}

#[cfg(test)]
#[path = "lookup_tests.rs"]
pub(super) mod tests;

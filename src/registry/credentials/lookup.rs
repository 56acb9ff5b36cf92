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
        Err(e) => Err(anyhow!(e).context(format!("reading {}", path.display()))),
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
pub(super) mod tests {
    use super::*;

    pub fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    pub fn store_with(config: serde_json::Value) -> (tempfile::TempDir, CredentialStore) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
        let store = CredentialStore {
            docker_config_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        (dir, store)
    }

    #[test]
    fn docker_config_auths() {
        let (_d, store) = store_with(serde_json::json!({
            "auths": {
                "https://index.docker.io/v1/": {"auth": b64("hubuser:hubpass")},
                "ghcr.io": {"identitytoken": "refresh-123"},
                "https://localhost:5000": {"auth": b64("a:b:c")}
            }
        }));
        let (c, src) = store.lookup("docker.io").unwrap().unwrap();
        assert_eq!(
            c,
            Credential::Basic {
                username: "hubuser".into(),
                password: Secret::new("hubpass")
            }
        );
        assert!(matches!(src, CredentialSource::DockerConfig(_)));
        assert_eq!(
            store.lookup("ghcr.io").unwrap().unwrap().0,
            Credential::IdentityToken(Secret::new("refresh-123"))
        );
        // Passwords may contain ':'.
        assert_eq!(
            store.lookup("localhost:5000").unwrap().unwrap().0,
            Credential::Basic {
                username: "a".into(),
                password: Secret::new("b:c")
            }
        );
        assert_eq!(store.lookup("quay.io").unwrap(), None);
    }

    #[test]
    fn bad_auth_entry_is_bad_input_without_secret() {
        let (_d, store) =
            store_with(serde_json::json!({"auths": {"ghcr.io": {"auth": "bm9jb2xvbg=="}}}));
        let e = store.lookup("ghcr.io").unwrap_err();
        assert!(crate::error::is_bad_input(&e));
        assert!(e.to_string().contains("ghcr.io"));
        assert!(!e.to_string().contains("nocolon"));
    }

    #[test]
    fn values_of_the_wrong_type_are_bad_input_naming_the_file() {
        let secret = b64("u:typed-secret-1");
        for cfg in [
            serde_json::json!(["not", "an object"]),
            serde_json::json!({"auths": [secret]}),
            serde_json::json!({"auths": {"ghcr.io": [secret]}}),
            serde_json::json!({"auths": {"ghcr.io": {"auth": 12, "x": secret}}}),
            serde_json::json!({"auths": {"ghcr.io": {"identitytoken": {"t": secret}}}}),
            serde_json::json!({"credHelpers": {"ghcr.io": 1}}),
            serde_json::json!({"credHelpers": "ghcr.io"}),
            serde_json::json!({"credsStore": true}),
        ] {
            let (d, store) = store_with(cfg.clone());
            let err = store.lookup("ghcr.io").unwrap_err();
            let said = format!("{err:#}");
            assert!(crate::error::is_bad_input(&err), "{cfg}: {said}");
            assert!(
                said.contains(&d.path().join("config.json").display().to_string()),
                "{said}"
            );
            assert!(
                !said.contains(&secret) && !said.contains("typed-secret"),
                "{said}"
            );
        }
        // null is as good as absent; other registries' entries are not read.
        let (_d, store) = store_with(serde_json::json!({
            "auths": {"ghcr.io": {"auth": null, "identitytoken": null}, "quay.io": 5},
            "credHelpers": null,
            "credsStore": null
        }));
        assert_eq!(store.lookup("ghcr.io").unwrap(), None);
    }

    #[test]
    fn an_empty_file_holds_nothing_and_wrapped_base64_is_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), " \n").unwrap();
        let mut store = CredentialStore {
            docker_config_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        assert_eq!(store.lookup("ghcr.io").unwrap(), None);
        let long = format!("user:{}", "p".repeat(80));
        let wrapped = b64(&long)
            .as_bytes()
            .chunks(76)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("\r\n");
        let (_d, with) = store_with(serde_json::json!({"auths": {"ghcr.io": {"auth": wrapped}}}));
        store = with;
        assert_eq!(
            store.lookup("ghcr.io").unwrap().unwrap().0,
            Credential::Basic {
                username: "user".into(),
                password: Secret::new("p".repeat(80))
            }
        );
    }

    #[test]
    fn registry_auth_file_and_github_token() {
        let dir = tempfile::tempdir().unwrap();
        let podman = dir.path().join("auth.json");
        std::fs::write(
            &podman,
            serde_json::json!({"auths": {"quay.io": {"auth": b64("q:p")}}}).to_string(),
        )
        .unwrap();
        let store = CredentialStore {
            docker_config_dir: Some(dir.path().join("missing")),
            auth_files: vec![podman],
            github: Some(("octocat".into(), Secret::new("ghs_x"))),
            ..Default::default()
        };
        let (c, src) = store.lookup("quay.io").unwrap().unwrap();
        assert!(matches!(src, CredentialSource::RegistryAuthFile(_)));
        assert!(matches!(c, Credential::Basic { ref username, .. } if username == "q"));
        let (c, src) = store.lookup("ghcr.io").unwrap().unwrap();
        assert_eq!(src, CredentialSource::GithubToken);
        assert_eq!(
            c,
            Credential::Basic {
                username: "octocat".into(),
                password: Secret::new("ghs_x")
            }
        );
        assert_eq!(store.lookup("docker.io").unwrap(), None);
    }

    #[test]
    fn auth_files_are_read_in_the_containers_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, v: serde_json::Value| {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, v.to_string()).unwrap();
            p
        };
        let entry = |user: &str| serde_json::json!({"auths": {"r.io": {"auth": b64(&format!("{user}:p"))}}});
        let runtime = file("run/auth.json", entry("runtime"));
        let config = file("config/auth.json", entry("config"));
        file("docker/config.json", entry("docker"));
        let legacy = file(
            "dockercfg",
            serde_json::json!({"r.io": {"auth": b64("legacy:p")}, "old.io": {"auth": b64("o:p")}}),
        );
        let user_of = |store: &CredentialStore, reg: &str| match store.lookup(reg).unwrap() {
            Some((Credential::Basic { username, .. }, _)) => username,
            other => panic!("{other:?}"),
        };
        let mut store = CredentialStore {
            docker_config_dir: Some(dir.path().join("docker")),
            auth_files: vec![runtime.clone(), config.clone()],
            legacy_dockercfg: Some(legacy.clone()),
            ..Default::default()
        };
        assert_eq!(
            store.files(),
            [
                runtime,
                config,
                dir.path().join("docker/config.json"),
                legacy
            ]
        );
        assert_eq!(user_of(&store, "r.io"), "runtime");
        assert_eq!(user_of(&store, "old.io"), "o");
        store.auth_files.remove(0);
        assert_eq!(user_of(&store, "r.io"), "config");
        store.auth_files.clear();
        assert_eq!(user_of(&store, "r.io"), "docker");
        store.docker_config_dir = None;
        assert_eq!(user_of(&store, "r.io"), "legacy");
    }

    #[test]
    fn credential_helpers() {
        use std::os::unix::fs::PermissionsExt;
        let (d, mut store) = store_with(serde_json::json!({
            "auths": {"ghcr.io": {}, "docker.io": {}},
            "credHelpers": {"ghcr.io": "bwtest"},
            "credsStore": "bwstore"
        }));
        let bin = d.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let script = |name: &str, body: &str| {
            let p = bin.join(format!("docker-credential-{name}"));
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        script(
            "bwtest",
            r#"read server; [ "$1" = get ] && [ "$server" = ghcr.io ] && echo '{"ServerURL":"ghcr.io","Username":"hu","Secret":"hs"}'"#,
        );
        script(
            "bwstore",
            r#"read server; if [ "$server" = "https://index.docker.io/v1/" ]; then echo '{"Username":"<token>","Secret":"idt"}'; else echo 'credentials not found in native keychain'; exit 1; fi"#,
        );
        store.helper_path = Some(bin.clone().into_os_string());
        let (c, src) = store.lookup("ghcr.io").unwrap().unwrap();
        assert_eq!(src, CredentialSource::Helper("bwtest".into()));
        assert_eq!(
            c,
            Credential::Basic {
                username: "hu".into(),
                password: Secret::new("hs")
            }
        );
        assert_eq!(
            store.lookup("docker.io").unwrap().unwrap().0,
            Credential::IdentityToken(Secret::new("idt"))
        );
        assert_eq!(store.lookup("quay.io").unwrap(), None);
    }
}

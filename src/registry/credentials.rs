//! Where registry credentials come from, and `login`.
//!
//! Lookup order for a registry (first hit wins):
//! 1. explicit: a target's `username_env` / `password_env` (with
//!    `encoding = "base64"` when the variable holds the secret base64-encoded);
//! 2. `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`):
//!    `credHelpers[registry]`, then `auths[registry]` (`auth` = base64
//!    `user:pass`, or `identitytoken`), then `credsStore`; helpers run as
//!    `docker-credential-<name> get` with the server URL on stdin;
//! 3. `$REGISTRY_AUTH_FILE` (podman's, same shape);
//! 4. for a registry that takes GitHub Actions tokens (`ghcr.io`, see
//!    [`super::hosts`]): `GITHUB_TOKEN` with `GITHUB_ACTOR`.
//!
//! Secrets live in [`Secret`], whose `Debug` and `Display` print `***`. No
//! error built here contains a secret or a helper's output.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, Context as _};
use base64::Engine as _;

use super::hosts::host_config;
use super::reference::{config_key, normalize_registry};
use crate::error::bad_input;

/// A secret string (password, token). Prints as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The secret itself, for putting it on the wire. Never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Credentials for one registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// User name and password (or personal access token).
    Basic { username: String, password: Secret },
    /// An OAuth2 refresh token (`identitytoken` in docker's config).
    IdentityToken(Secret),
}

/// Where a credential was found (for `--verbose`; never the secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialSource {
    Explicit,
    DockerConfig(PathBuf),
    Helper(String),
    RegistryAuthFile(PathBuf),
    GithubToken,
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialSource::Explicit => f.write_str("the target's username_env/password_env"),
            CredentialSource::DockerConfig(p) => write!(f, "{}", p.display()),
            CredentialSource::Helper(h) => write!(f, "docker-credential-{h}"),
            CredentialSource::RegistryAuthFile(p) => write!(f, "{}", p.display()),
            CredentialSource::GithubToken => f.write_str("GITHUB_TOKEN"),
        }
    }
}

/// How an explicit secret is stored in its environment variable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SecretEncoding {
    #[default]
    Plain,
    /// The variable holds the secret base64-encoded.
    Base64,
}

/// A target's own credential settings (from the recipe).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvCredentials {
    pub username_env: String,
    pub password_env: String,
    pub encoding: SecretEncoding,
}

impl EnvCredentials {
    /// Read the variables through `env`. A missing or badly encoded variable
    /// is bad input naming the variable (never its value).
    pub fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Credential> {
        let username = env(&self.username_env)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                bad_input(format!(
                    "environment variable {} (username_env) is not set or empty",
                    self.username_env
                ))
            })?;
        let raw = env(&self.password_env)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                bad_input(format!(
                    "environment variable {} (password_env) is not set or empty",
                    self.password_env
                ))
            })?;
        let password = match self.encoding {
            SecretEncoding::Plain => raw,
            SecretEncoding::Base64 => decode_base64_secret(&raw).ok_or_else(|| {
                bad_input(format!(
                    "environment variable {} is not valid base64 of a UTF-8 secret (encoding = \"base64\")",
                    self.password_env
                ))
            })?,
        };
        Ok(Credential::Basic {
            username,
            password: Secret(password),
        })
    }
}

fn decode_base64_secret(raw: &str) -> Option<String> {
    let cleaned: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(cleaned.as_bytes())
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(cleaned.as_bytes()))
        .ok()?;
    let s = String::from_utf8(bytes).ok()?;
    let s = s.trim_end_matches(['\n', '\r']).to_string();
    (!s.is_empty()).then_some(s)
}

/// The places that implicit lookup reads. [`CredentialStore::from_env`] fills
/// it from the process environment; tests build it by hand.
#[derive(Clone, Debug, Default)]
pub struct CredentialStore {
    /// Directory holding docker's `config.json`.
    pub docker_config_dir: Option<PathBuf>,
    /// Podman's auth file.
    pub registry_auth_file: Option<PathBuf>,
    /// `(GITHUB_ACTOR, GITHUB_TOKEN)`.
    pub github: Option<(String, Secret)>,
    /// `PATH` used to find `docker-credential-*` helpers (None: inherited).
    pub helper_path: Option<std::ffi::OsString>,
}

impl CredentialStore {
    pub fn from_env() -> CredentialStore {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let docker_config_dir = var("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|h| Path::new(&h).join(".docker")));
        let github = var("GITHUB_TOKEN").map(|t| {
            (
                var("GITHUB_ACTOR").unwrap_or_else(|| "boxwright".to_string()),
                Secret(t),
            )
        });
        CredentialStore {
            docker_config_dir,
            registry_auth_file: var("REGISTRY_AUTH_FILE").map(PathBuf::from),
            github,
            helper_path: None,
        }
    }

    pub fn docker_config_path(&self) -> Option<PathBuf> {
        self.docker_config_dir
            .as_ref()
            .map(|d| d.join("config.json"))
    }

    /// Find credentials for a (normalised) registry name. Blocking (reads
    /// files, may run a credential helper): call from `spawn_blocking`.
    pub fn lookup(&self, registry: &str) -> anyhow::Result<Option<(Credential, CredentialSource)>> {
        if let Some(path) = self.docker_config_path() {
            if let Some(found) = lookup_in_file(&path, registry, true, self.helper_path.as_deref())?
            {
                return Ok(Some(found));
            }
        }
        if let Some(path) = &self.registry_auth_file {
            if let Some(found) = lookup_in_file(path, registry, false, self.helper_path.as_deref())?
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

fn read_json(path: &Path) -> anyhow::Result<Option<serde_json::Value>> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let v = serde_json::from_slice(&bytes)
                .map_err(|e| bad_input(format!("{} is not valid JSON: {e}", path.display())))?;
            Ok(Some(v))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow!(e).context(format!("reading {}", path.display()))),
    }
}

/// Find the entry of `obj` whose key normalises to `registry`.
fn find_entry<'a>(
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
    docker: bool,
    helper_path: Option<&std::ffi::OsStr>,
) -> anyhow::Result<Option<(Credential, CredentialSource)>> {
    let Some(cfg) = read_json(path)? else {
        return Ok(None);
    };
    let source = || {
        if docker {
            CredentialSource::DockerConfig(path.to_path_buf())
        } else {
            CredentialSource::RegistryAuthFile(path.to_path_buf())
        }
    };
    if let Some(helper) = find_entry(cfg.get("credHelpers"), registry).and_then(|v| v.as_str()) {
        return run_helper_get(helper, registry, helper_path);
    }
    if let Some(entry) = find_entry(cfg.get("auths"), registry) {
        if let Some(tok) = entry
            .get("identitytoken")
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
        {
            return Ok(Some((
                Credential::IdentityToken(Secret::new(tok)),
                source(),
            )));
        }
        if let Some(auth) = entry
            .get("auth")
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
        {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
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
    if let Some(store) = cfg.get("credsStore").and_then(|v| v.as_str()) {
        if !store.is_empty() {
            return run_helper_get(store, registry, helper_path);
        }
    }
    Ok(None)
}

fn helper_program(name: &str) -> anyhow::Result<String> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(bad_input(format!(
            "invalid credential helper name {name:?}"
        )));
    }
    Ok(format!("docker-credential-{name}"))
}

/// Run `docker-credential-<name> get`. Its output is never quoted in errors.
fn run_helper_get(
    name: &str,
    registry: &str,
    helper_path: Option<&std::ffi::OsStr>,
) -> anyhow::Result<Option<(Credential, CredentialSource)>> {
    let program = helper_program(name)?;
    let server = config_key(registry);
    let mut cmd = Command::new(&program);
    if let Some(p) = helper_path {
        cmd.env("PATH", p);
    }
    let mut child = cmd
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("running {program} (credential helper for {registry})"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(server.as_bytes())
            .with_context(|| format!("writing to {program}"))?;
    }
    let out = child
        .wait_with_output()
        .with_context(|| format!("running {program}"))?;
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
        Credential::IdentityToken(Secret(parsed.secret))
    } else {
        Credential::Basic {
            username: parsed.username,
            password: Secret(parsed.secret),
        }
    };
    Ok(Some((cred, CredentialSource::Helper(name.to_string()))))
}

/// Store credentials the way `docker login` does: through the configured
/// helper when there is one (leaving an empty `auths` entry), else as base64
/// `user:password` in `auths`. Other keys of `config.json` are kept; the file
/// is written atomically with mode 0600. Returns the file written.
pub fn login(
    store: &CredentialStore,
    registry: &str,
    username: &str,
    password: &Secret,
) -> anyhow::Result<PathBuf> {
    let registry = normalize_registry(registry);
    if username.is_empty() || password.is_empty() {
        return Err(bad_input("login needs a non-empty user name and password"));
    }
    let path = store.docker_config_path().ok_or_else(|| {
        bad_input("neither DOCKER_CONFIG nor HOME is set: nowhere to write config.json")
    })?;
    let mut cfg = read_json(&path)?.unwrap_or_else(|| serde_json::json!({}));
    let obj = cfg
        .as_object_mut()
        .ok_or_else(|| bad_input(format!("{} is not a JSON object", path.display())))?;
    let key = config_key(&registry);
    let helper = find_entry(obj.get("credHelpers"), &registry)
        .and_then(|v| v.as_str())
        .or_else(|| obj.get("credsStore").and_then(|v| v.as_str()))
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let auths = obj.entry("auths").or_insert_with(|| serde_json::json!({}));
    let auths = auths
        .as_object_mut()
        .ok_or_else(|| bad_input(format!("\"auths\" in {} is not an object", path.display())))?;
    // Drop other spellings of the same registry so lookup finds this entry.
    auths.retain(|k, _| k == &key || normalize_registry(k) != registry);
    match helper {
        Some(h) => {
            run_helper_store(&h, &key, username, password)?;
            auths.insert(key, serde_json::json!({}));
        }
        None => {
            let auth = base64::engine::general_purpose::STANDARD
                .encode(format!("{username}:{}", password.expose()));
            auths.insert(key, serde_json::json!({ "auth": auth }));
        }
    }
    let mut bytes = serde_json::to_vec_pretty(&cfg).context("serialising config.json")?;
    bytes.push(b'\n');
    write_private_atomic(&path, &bytes)?;
    Ok(path)
}

/// Remove `registry`'s entry from `auths` in docker's config.json (every
/// spelling of it), as `docker logout` does for stored credentials. Returns
/// whether an entry was removed. Credentials held by a helper are left to
/// the helper (`docker-credential-NAME erase`).
pub fn logout(store: &CredentialStore, registry: &str) -> anyhow::Result<bool> {
    let registry = normalize_registry(registry);
    let path = store.docker_config_path().ok_or_else(|| {
        bad_input("neither DOCKER_CONFIG nor HOME is set: no config.json to edit")
    })?;
    let Some(mut cfg) = read_json(&path)? else {
        return Ok(false);
    };
    let removed = match cfg.get_mut("auths").and_then(|a| a.as_object_mut()) {
        Some(auths) => {
            let before = auths.len();
            auths.retain(|k, _| normalize_registry(k) != registry);
            auths.len() != before
        }
        None => false,
    };
    if removed {
        let mut bytes = serde_json::to_vec_pretty(&cfg).context("serialising config.json")?;
        bytes.push(b'\n');
        write_private_atomic(&path, &bytes)?;
    }
    Ok(removed)
}

fn run_helper_store(name: &str, server: &str, user: &str, secret: &Secret) -> anyhow::Result<()> {
    let program = helper_program(name)?;
    let mut child = Command::new(&program)
        .arg("store")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("running {program} store"))?;
    let input =
        serde_json::json!({"ServerURL": server, "Username": user, "Secret": secret.expose()});
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.to_string().as_bytes())
            .with_context(|| format!("writing to {program}"))?;
    }
    let status = child.wait().with_context(|| format!("running {program}"))?;
    if !status.success() {
        anyhow::bail!("{program} store failed ({status})");
    }
    Ok(())
}

/// Write `bytes` to `path` through a temp file in the same directory (mode
/// 0600), then rename.
fn write_private_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    let dir = path
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent directory", path.display()))?;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".config.json.")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temp file in {}", dir.display()))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("setting permissions in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| anyhow!(e.error).context(format!("replacing {}", path.display())))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn store_with(config: serde_json::Value) -> (tempfile::TempDir, CredentialStore) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
        let store = CredentialStore {
            docker_config_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        (dir, store)
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        let c = Credential::Basic {
            username: "u".into(),
            password: s,
        };
        assert!(!format!("{c:?}").contains("hunter2"));
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
            registry_auth_file: Some(podman),
            github: Some(("octocat".into(), Secret::new("ghs_x"))),
            helper_path: None,
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
        assert!(helper_program("../evil").is_err());
    }

    #[test]
    fn base64_env_secrets() {
        let vars: HashMap<&str, String> = HashMap::from([
            ("U", "acme".to_string()),
            ("P", "plain-secret".to_string()),
            ("PB", format!("{}\n", b64("s3cret:with:colons\n"))),
            ("BAD", "***notbase64***".to_string()),
        ]);
        let env = |k: &str| vars.get(k).cloned();
        let spec = |p: &str, encoding| EnvCredentials {
            username_env: "U".into(),
            password_env: p.into(),
            encoding,
        };
        assert_eq!(
            spec("P", SecretEncoding::Plain).resolve(&env).unwrap(),
            Credential::Basic {
                username: "acme".into(),
                password: Secret::new("plain-secret")
            }
        );
        assert_eq!(
            spec("PB", SecretEncoding::Base64).resolve(&env).unwrap(),
            Credential::Basic {
                username: "acme".into(),
                password: Secret::new("s3cret:with:colons")
            }
        );
        let e = spec("BAD", SecretEncoding::Base64)
            .resolve(&env)
            .unwrap_err();
        assert!(crate::error::is_bad_input(&e));
        assert!(e.to_string().contains("BAD") && !e.to_string().contains("notbase64"));
        let e = spec("MISSING", SecretEncoding::Plain)
            .resolve(&env)
            .unwrap_err();
        assert!(e.to_string().contains("MISSING"));
    }

    #[test]
    fn login_keeps_other_keys_and_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let (d, store) = store_with(serde_json::json!({
            "auths": {"quay.io": {"auth": b64("q:p")}, "https://index.docker.io/v1/": {"auth": b64("old:old")}},
            "psFormat": "table"
        }));
        let path = login(&store, "docker.io", "new", &Secret::new("tok")).unwrap();
        assert_eq!(path, d.path().join("config.json"));
        let cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(cfg["psFormat"], "table");
        assert_eq!(cfg["auths"]["quay.io"]["auth"], b64("q:p"));
        assert_eq!(
            cfg["auths"]["https://index.docker.io/v1/"]["auth"],
            b64("new:tok")
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            store.lookup("docker.io").unwrap().unwrap().0,
            Credential::Basic {
                username: "new".into(),
                password: Secret::new("tok")
            }
        );
        // A fresh directory is created.
        let fresh = CredentialStore {
            docker_config_dir: Some(d.path().join("new-dir")),
            ..Default::default()
        };
        login(&fresh, "localhost:5000", "u", &Secret::new("p")).unwrap();
        assert!(fresh.lookup("localhost:5000").unwrap().is_some());
    }
}

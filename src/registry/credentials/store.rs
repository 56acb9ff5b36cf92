//! Writing credentials, as `docker login` and `docker logout` do.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _};
use base64::Engine as _;

use super::helper::run_helper;
use super::lookup::{find_entry, read_json};
use super::{CredentialStore, Secret};
use crate::error::bad_input;
use crate::registry::reference::{config_key, normalize_registry};

/// Where [`login`] put the credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The `config.json` written.
    pub path: PathBuf,
    /// The key they are stored under, in `auths` and in the helper, as
    /// docker spells it (`https://index.docker.io/v1/` for Docker Hub,
    /// `ghcr.io` for `https://ghcr.io/`): what lookups and `logout` find.
    pub key: String,
    /// The credential helper that keeps them (`auths` then holds an empty
    /// entry), when one is configured.
    pub helper: Option<String>,
}

/// What [`logout`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    /// The `auths` keys removed from `config.json` (every spelling of the
    /// registry), in the file's order.
    pub keys: Vec<String>,
    /// The key erased from a credential helper, and that helper.
    pub erased: Option<(String, String)>,
}

impl Removed {
    /// Whether anything was removed.
    pub fn any(&self) -> bool {
        !self.keys.is_empty() || self.erased.is_some()
    }
}

/// Store credentials the way `docker login` does: through the configured
/// helper when there is one (leaving an empty `auths` entry), else as base64
/// `user:password` in `auths`. Other keys of `config.json` are kept; the file
/// is written atomically with mode 0600. Returns the file written and the
/// key the credentials are under.
pub fn login(
    store: &CredentialStore,
    registry: &str,
    username: &str,
    password: &Secret,
) -> anyhow::Result<Stored> {
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
    let helper = configured_helper(obj, &registry);
    let auths = obj.entry("auths").or_insert_with(|| serde_json::json!({}));
    let auths = auths
        .as_object_mut()
        .ok_or_else(|| bad_input(format!("\"auths\" in {} is not an object", path.display())))?;
    // Drop other spellings of the same registry so lookup finds this entry.
    auths.retain(|k, _| k == &key || normalize_registry(k) != registry);
    match &helper {
        Some(h) => {
            run_helper_store(h, &key, username, password, store)?;
            auths.insert(key.clone(), serde_json::json!({}));
        }
        None => {
            let auth = base64::engine::general_purpose::STANDARD
                .encode(format!("{username}:{}", password.expose()));
            auths.insert(key.clone(), serde_json::json!({ "auth": auth }));
        }
    }
    let mut bytes = serde_json::to_vec_pretty(&cfg).context("serialising config.json")?;
    bytes.push(b'\n');
    write_private_atomic(&path, &bytes)?;
    Ok(Stored { path, key, helper })
}

/// Remove `registry`'s credentials as `docker logout` does: its entry from
/// `auths` in docker's config.json (every spelling of it), and from the
/// credential helper that keeps them (`docker-credential-NAME erase`, from
/// `credHelpers` or `credsStore`). The entry goes first, so that a helper
/// that is missing or fails never leaves a password in the file; its
/// failure is then the error. Returns what was removed.
pub fn logout(store: &CredentialStore, registry: &str) -> anyhow::Result<Removed> {
    let registry = normalize_registry(registry);
    let path = store.docker_config_path().ok_or_else(|| {
        bad_input("neither DOCKER_CONFIG nor HOME is set: no config.json to edit")
    })?;
    let Some(mut cfg) = read_json(&path)? else {
        return Ok(Removed::default());
    };
    let helper = cfg
        .as_object()
        .and_then(|obj| configured_helper(obj, &registry));
    let keys: Vec<String> = match cfg.get_mut("auths").and_then(|a| a.as_object_mut()) {
        Some(auths) => {
            let keys = (auths.keys())
                .filter(|k| normalize_registry(k) == registry)
                .cloned()
                .collect();
            auths.retain(|k, _| normalize_registry(k) != registry);
            keys
        }
        None => Vec::new(),
    };
    let removed = !keys.is_empty();
    if removed {
        let mut bytes = serde_json::to_vec_pretty(&cfg).context("serialising config.json")?;
        bytes.push(b'\n');
        write_private_atomic(&path, &bytes)?;
    }
    let key = config_key(&registry);
    let erased = match &helper {
        Some(h) => run_helper_erase(h, &key, store).with_context(|| {
            if removed {
                format!(
                    "the entry for {registry} was removed from {}, but its credential helper \
                     may still hold them",
                    path.display()
                )
            } else {
                format!("the credential helper {h} named in {}", path.display())
            }
        })?,
        None => false,
    };
    let erased = (erased).then(|| (helper.unwrap_or_default(), key));
    Ok(Removed { keys, erased })
}

/// The helper that keeps `registry`'s credentials: `credHelpers[registry]`,
/// else `credsStore`.
fn configured_helper(
    obj: &serde_json::Map<String, serde_json::Value>,
    registry: &str,
) -> Option<String> {
    find_entry(obj.get("credHelpers"), registry)
        .and_then(|v| v.as_str())
        .or_else(|| obj.get("credsStore").and_then(|v| v.as_str()))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// `docker-credential-NAME erase` with the server URL on stdin: true when
/// erased, false when the helper held nothing for it.
fn run_helper_erase(name: &str, server: &str, store: &CredentialStore) -> anyhow::Result<bool> {
    let (program, out) = run_helper(
        name,
        "erase",
        server.as_bytes(),
        store.helper_path.as_deref(),
    )?;
    if out.status.success() {
        return Ok(true);
    }
    if String::from_utf8_lossy(&out.stdout).contains("credentials not found") {
        return Ok(false);
    }
    anyhow::bail!("{program} erase failed ({})", out.status)
}

fn run_helper_store(
    name: &str,
    server: &str,
    user: &str,
    secret: &Secret,
    store: &CredentialStore,
) -> anyhow::Result<()> {
    let input =
        serde_json::json!({"ServerURL": server, "Username": user, "Secret": secret.expose()});
    let (program, out) = run_helper(
        name,
        "store",
        input.to_string().as_bytes(),
        store.helper_path.as_deref(),
    )?;
    if !out.status.success() {
        anyhow::bail!("{program} store failed ({})", out.status);
    }
    Ok(())
}

/// Where writing `path` lands: through symlinks (a config.json linked from
/// a dotfiles repository stays a link, as with docker), to the file they
/// end at.
fn write_target(path: &Path) -> anyhow::Result<PathBuf> {
    let mut target = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&target) {
            Ok(m) if m.file_type().is_symlink() => {
                let next = std::fs::read_link(&target)
                    .with_context(|| format!("reading the link {}", target.display()))?;
                target = match target.parent() {
                    Some(dir) if next.is_relative() => dir.join(next),
                    _ => next,
                };
            }
            _ => return Ok(target),
        }
    }
    Err(anyhow!(
        "{}: too many levels of symbolic links",
        path.display()
    ))
}

/// Write `bytes` to `path` (or the file its symlinks end at) through a temp
/// file in the same directory (mode 0600), then rename.
fn write_private_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    let target = write_target(path)?;
    let path = target.as_path();
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
    use crate::registry::credentials::lookup::tests::{b64, store_with};
    use crate::registry::credentials::Credential;

    #[test]
    fn login_keeps_other_keys_and_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let (d, store) = store_with(serde_json::json!({
            "auths": {"quay.io": {"auth": b64("q:p")}, "https://index.docker.io/v1/": {"auth": b64("old:old")}},
            "psFormat": "table"
        }));
        let stored = login(&store, "docker.io", "new", &Secret::new("tok")).unwrap();
        let path = stored.path;
        assert_eq!(path, d.path().join("config.json"));
        assert_eq!(stored.key, "https://index.docker.io/v1/");
        assert_eq!(stored.helper, None);
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

    #[test]
    fn login_and_logout_write_through_a_symlinked_config() {
        let d = tempfile::tempdir().unwrap();
        let dotfiles = d.path().join("dotfiles");
        std::fs::create_dir(&dotfiles).unwrap();
        std::fs::write(dotfiles.join("docker.json"), r#"{"psFormat":"x"}"#).unwrap();
        let conf = d.path().join("docker");
        std::fs::create_dir(&conf).unwrap();
        std::os::unix::fs::symlink("../dotfiles/docker.json", conf.join("config.json")).unwrap();
        let store = CredentialStore {
            docker_config_dir: Some(conf.clone()),
            ..Default::default()
        };
        login(&store, "r.io", "u", &Secret::new("p")).unwrap();
        let link = std::fs::symlink_metadata(conf.join("config.json")).unwrap();
        assert!(link.file_type().is_symlink(), "the link was replaced");
        let cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dotfiles.join("docker.json")).unwrap()).unwrap();
        assert_eq!(cfg["psFormat"], "x");
        assert_eq!(cfg["auths"]["r.io"]["auth"], b64("u:p"));
        assert_eq!(logout(&store, "r.io").unwrap().keys, ["r.io"]);
        assert!(std::fs::symlink_metadata(conf.join("config.json"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert!(store.lookup("r.io").unwrap().is_none());
    }

    #[test]
    fn logout_erases_what_a_helper_keeps() {
        use std::os::unix::fs::PermissionsExt;
        let (d, mut store) = store_with(serde_json::json!({
            "auths": {"ghcr.io": {}},
            "credHelpers": {"ghcr.io": "bwerase"}
        }));
        let bin = d.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let erased = d.path().join("erased");
        let helper = bin.join("docker-credential-bwerase");
        std::fs::write(
            &helper,
            format!(
                "#!/bin/sh\nread server\n[ \"$1\" = erase ] || exit 2\nif [ -e {e} ]; then echo 'credentials not found in native keychain'; exit 1; fi\necho \"$server\" > {e}\n",
                e = erased.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        store.helper_path = Some(bin.into_os_string());
        let removed = logout(&store, "ghcr.io").unwrap();
        assert_eq!(removed.keys, ["ghcr.io"]);
        assert_eq!(
            removed.erased,
            Some(("bwerase".to_string(), "ghcr.io".to_string()))
        );
        assert_eq!(std::fs::read_to_string(&erased).unwrap().trim(), "ghcr.io");
        // Nothing left: neither the helper nor config.json holds any.
        assert!(!logout(&store, "ghcr.io").unwrap().any());
    }

    #[test]
    fn logout_removes_the_password_even_when_the_helper_is_missing() {
        let (d, mut store) = store_with(serde_json::json!({
            "auths": {"ghcr.io": {"auth": b64("u:plain-password")}, "quay.io": {}},
            "credsStore": "not-installed"
        }));
        let empty = d.path().join("empty-bin");
        std::fs::create_dir(&empty).unwrap();
        store.helper_path = Some(empty.into_os_string());
        let err = logout(&store, "ghcr.io").unwrap_err();
        let said = format!("{err:#}");
        assert!(said.contains("docker-credential-not-installed"), "{said}");
        assert!(said.contains("was removed from"), "{said}");
        let text = std::fs::read_to_string(d.path().join("config.json")).unwrap();
        assert!(!text.contains(&b64("u:plain-password")), "{text}");
        let cfg: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(cfg["auths"].get("ghcr.io").is_none(), "{cfg}");
        assert!(cfg["auths"].get("quay.io").is_some(), "{cfg}");
    }
}

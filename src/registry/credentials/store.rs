//! Writing credentials, as `docker login` and `docker logout` do.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, Context as _};
use base64::Engine as _;

use super::lookup::{find_entry, helper_program, read_json};
use super::{CredentialStore, Secret};
use crate::error::bad_input;
use crate::registry::reference::{config_key, normalize_registry};

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
    use crate::registry::credentials::lookup::tests::{b64, store_with};
    use crate::registry::credentials::Credential;

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

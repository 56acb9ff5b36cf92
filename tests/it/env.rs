//! An isolated client environment for the binary: its own HOME,
//! DOCKER_CONFIG (optionally holding logins) and cache, and none of the
//! variables of the machine running the tests that would change what the
//! binary does (CI, GitHub tokens, other auth files, CA bundles, timeouts).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{b64, boxwright, write};
use crate::support::tempdir;

pub struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    /// No credentials at all: an empty DOCKER_CONFIG directory.
    pub fn new() -> Env {
        let e = Env { dir: tempdir() };
        std::fs::create_dir_all(e.config_dir()).expect("creating DOCKER_CONFIG");
        e
    }

    /// A `config.json` with one `auths` entry per `(host, user, password)`.
    pub fn with_auths(auths: &[(&str, &str, &str)]) -> Env {
        let e = Env::new();
        let mut map = serde_json::Map::new();
        for (host, user, pass) in auths {
            let auth = b64(&format!("{user}:{pass}"));
            map.insert(host.to_string(), serde_json::json!({ "auth": auth }));
        }
        let cfg = serde_json::json!({ "auths": map });
        write(&e.config_dir().join("config.json"), &cfg.to_string());
        e
    }

    /// Installs `script` as the credential helper `docker-credential-NAME`
    /// in a `bin` directory of this environment; the `PATH` that finds it
    /// first.
    pub fn credential_helper(&self, name: &str, script: &str) -> String {
        let bin = self.path().join("bin");
        std::fs::create_dir_all(&bin).expect("creating bin");
        let helper = bin.join(format!("docker-credential-{name}"));
        write(&helper, script);
        crate::common::chmod(&helper, 0o755);
        format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    /// The private root (HOME).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// DOCKER_CONFIG.
    pub fn config_dir(&self) -> PathBuf {
        self.path().join("docker")
    }

    /// A blob cache directory for `--cache-dir` (not the default cache).
    pub fn cache(&self) -> PathBuf {
        self.path().join("cache")
    }

    /// Digests held by the blob cache at [`Env::cache`], sorted.
    pub fn cached(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.cache().join("sha256"))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| format!("sha256:{}", e.file_name().to_string_lossy()))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// `boxwright` in this environment.
    pub fn cmd(&self) -> Command {
        let mut c = boxwright();
        c.env("DOCKER_CONFIG", self.config_dir())
            .env("HOME", self.path())
            .env("XDG_CACHE_HOME", self.path().join("xdg"))
            .env("NO_COLOR", "1");
        for v in [
            "REGISTRY_AUTH_FILE",
            "XDG_RUNTIME_DIR",
            "XDG_CONFIG_HOME",
            "GITHUB_TOKEN",
            "GITHUB_ACTOR",
            "SSL_CERT_FILE",
            "CI",
            "BOXWRIGHT_READ_TIMEOUT",
        ] {
            c.env_remove(v);
        }
        c
    }
}

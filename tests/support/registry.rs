//! A real CNCF distribution registry (`docker-registry serve`) on a free
//! loopback port, with its own temp storage, killed on drop; plain HTTP, or
//! HTTPS with a certificate of a test CA ([`TestCa`]).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, read_lossy, tempdir, tools, wait_http, TestCa, TokenServer};

/// How long a registry may take to answer `GET /v2/` after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `docker-registry` (distribution 2.x) process.
///
/// Storage, config and log live in one temp dir removed on drop; deletes are
/// enabled. Its `Location` headers are absolute and built from the request's
/// `Host`, so they point back at whatever proxy the client talked to.
///
/// ```ignore
/// let reg = Registry::start();
/// let url = format!("{}/v2/", reg.url()); // "http://127.0.0.1:PORT/v2/"
/// ```
pub struct Registry {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    credentials: Option<(String, String)>,
    /// The host name it is reached by when it serves TLS ([`TestCa::host`]).
    tls_name: Option<String>,
}

enum AuthConfig {
    None,
    Htpasswd(String),
    Token {
        realm: String,
        service: String,
        issuer: String,
        cert: PathBuf,
    },
}

impl Registry {
    /// A registry without authentication.
    pub fn start() -> Registry {
        Registry::launch(AuthConfig::None, None, None)
    }

    /// A registry without authentication serving HTTPS with `ca`'s server
    /// certificate, reached as `ca.host:PORT` (see [`TestCa`]).
    pub fn start_tls(ca: &TestCa) -> Registry {
        Registry::launch(AuthConfig::None, None, Some(ca))
    }

    /// [`Registry::with_basic_auth`] serving HTTPS (see [`Registry::start_tls`]).
    pub fn with_basic_auth_tls(user: &str, pass: &str, ca: &TestCa) -> Registry {
        Registry::basic(user, pass, Some(ca))
    }

    /// A registry serving HTTPS with bearer-token auth: it trusts `tokens`'
    /// signing certificate and sends clients to `realm` (an HTTPS one, see
    /// [`TlsTokenRealm`], or any URL to test refusals).
    pub fn with_token_auth_tls(tokens: &TokenServer, realm: &str, ca: &TestCa) -> Registry {
        Registry::launch(
            AuthConfig::Token {
                realm: realm.to_string(),
                service: tokens.service().to_string(),
                issuer: tokens.issuer().to_string(),
                cert: tokens.cert_path().to_path_buf(),
            },
            None,
            Some(ca),
        )
    }

    /// A registry with htpasswd basic auth for one user (bcrypt via
    /// `htpasswd -Bbn`, Debian package `apache2-utils`).
    pub fn with_basic_auth(user: &str, pass: &str) -> Registry {
        Registry::basic(user, pass, None)
    }

    fn basic(user: &str, pass: &str, tls: Option<&TestCa>) -> Registry {
        let out = tools::output(Command::new("htpasswd").args(["-Bbn", user, pass]));
        assert!(
            out.status.success(),
            "htpasswd -Bbn failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Registry::launch(
            AuthConfig::Htpasswd(line),
            Some((user.to_string(), pass.to_string())),
            tls,
        )
    }

    /// A registry with bearer-token auth that trusts `tokens`' certificate
    /// and sends clients to its realm.
    pub fn with_token_auth(tokens: &TokenServer) -> Registry {
        Registry::launch(
            AuthConfig::Token {
                realm: tokens.realm(),
                service: tokens.service().to_string(),
                issuer: tokens.issuer().to_string(),
                cert: tokens.cert_path().to_path_buf(),
            },
            None,
            None,
        )
    }

    fn launch(
        auth: AuthConfig,
        credentials: Option<(String, String)>,
        tls: Option<&TestCa>,
    ) -> Registry {
        // The port is found free then released for the child to bind: retry
        // the rare case where someone else took it in between.
        let mut last_log = String::new();
        for _ in 0..3 {
            match Registry::try_launch(&auth, credentials.clone(), tls) {
                Ok(reg) => return reg,
                Err(log) if log.contains("address already in use") => last_log = log,
                Err(log) => panic!("docker-registry did not start; its log:\n{log}"),
            }
        }
        panic!("docker-registry never found a free port; last log:\n{last_log}")
    }

    fn try_launch(
        auth: &AuthConfig,
        credentials: Option<(String, String)>,
        tls: Option<&TestCa>,
    ) -> Result<Registry, String> {
        let dir = tempdir();
        let storage = dir.path().join("storage");
        std::fs::create_dir(&storage).expect("creating registry storage dir");
        let port = free_port();
        let ip = tls.map_or([127, 0, 0, 1].into(), |ca| ca.ip);
        let addr = SocketAddr::new(ip, port);

        let tls_config = tls.map_or(String::new(), |ca| {
            format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                ca.cert_path().display(),
                ca.key_path().display()
            )
        });
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
             \x20 maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: {addr}\n  secret: boxwright-test-secret\n{tls_config}\
             health:\n  storagedriver:\n    enabled: false\n",
            storage = storage.display(),
        );
        match auth {
            AuthConfig::None => {}
            AuthConfig::Htpasswd(line) => {
                let path = dir.path().join("htpasswd");
                std::fs::write(&path, format!("{line}\n")).expect("writing htpasswd");
                let _ = write!(
                    config,
                    "auth:\n  htpasswd:\n    realm: boxwright-test\n    path: {}\n",
                    path.display()
                );
            }
            AuthConfig::Token {
                realm,
                service,
                issuer,
                cert,
            } => {
                let _ = write!(
                    config,
                    "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    \
                     issuer: {issuer}\n    rootcertbundle: {}\n",
                    cert.display()
                );
            }
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, &config).expect("writing registry config");

        let log_path = dir.path().join("registry.log");
        let log = std::fs::File::create(&log_path).expect("creating registry log");
        let log2 = log.try_clone().expect("cloning log handle");
        let mut child = tools::spawn(
            Command::new("docker-registry")
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2),
        );

        let deadline = std::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "(exited: {status})\nconfig:\n{config}\n{}",
                    read_lossy(&log_path)
                ));
            }
            // 200 without auth, 401 with, 400 for plain HTTP to a TLS
            // port: any status line means it is serving.
            if wait_http(addr, "/v2/", Duration::from_millis(200)).is_some() {
                break;
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "(no answer on {addr} within {START_TIMEOUT:?})\nconfig:\n{config}\n{}",
                    read_lossy(&log_path)
                ));
            }
        }
        Ok(Registry {
            child,
            addr,
            dir,
            credentials,
            tls_name: tls.map(|ca| ca.host.clone()),
        })
    }

    /// `127.0.0.1:PORT` (for TLS, `HOSTNAME:PORT`), as used in image
    /// references (`HOST/REPO:TAG`).
    pub fn host(&self) -> String {
        match &self.tls_name {
            Some(name) => format!("{name}:{}", self.addr.port()),
            None => self.addr.to_string(),
        }
    }

    /// The socket address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (for TLS, `https://HOSTNAME:PORT`; no
    /// trailing slash).
    pub fn url(&self) -> String {
        match &self.tls_name {
            Some(_) => format!("https://{}", self.host()),
            None => format!("http://{}", self.addr),
        }
    }

    /// The basic-auth user and password, for a registry made by
    /// [`Registry::with_basic_auth`].
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// The storage root (`rootdirectory`); blobs live under
    /// `docker/registry/v2/blobs/sha256/XX/HEX/data`.
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The file that receives the registry's stdout and stderr.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    /// The registry's log so far (for assertion messages).
    pub fn log(&self) -> String {
        read_lossy(&self.log_path())
    }

    /// Digests (`sha256:HEX`) of every blob in storage, sorted: tells how many
    /// distinct blobs a push stored, whatever the repositories.
    pub fn stored_blobs(&self) -> Vec<String> {
        let root = self.storage_dir().join("docker/registry/v2/blobs/sha256");
        let mut out = Vec::new();
        for prefix in read_dir_names(&root) {
            for hex in read_dir_names(&root.join(&prefix)) {
                if root.join(&prefix).join(&hex).join("data").is_file() {
                    out.push(format!("sha256:{hex}"));
                }
            }
        }
        out.sort();
        out
    }
}

fn read_dir_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

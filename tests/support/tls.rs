//! TLS for the test registries: GHCR and Docker Hub are only reached over
//! HTTPS, while every other test registry is plain HTTP on loopback.
//!
//! - [`TestCa`]: a CA made for the test and a server certificate it signed
//!   for [`tls_host`] (and `localhost`, `127.0.0.1`), as PEM files that
//!   `docker-registry` (`http.tls`) and `boxwright --ca-file` read.
//! - [`tls_host`]: the name to reach a TLS registry by. The client speaks
//!   plain HTTP to loopback names (`localhost`, `127.x.x.x`, `::1`), so a
//!   TLS test needs a name that is not spelled as loopback yet resolves to
//!   this machine: its host name, which `/etc/hosts` maps to itself.
//! - [`TlsTokenRealm`]: an HTTPS token realm (`openssl s_server -WWW`, one
//!   static file per token request) serving tokens minted ahead by a
//!   [`TokenServer`], since the client refuses to send credentials to a
//!   plain-HTTP realm when the registry is HTTPS.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, read_lossy, tempdir, tools, TokenServer};

/// The machine's host name and the address it resolves to, for a TLS
/// registry that the client must not take for a loopback one. Panics, saying
/// why, when the host name does not resolve.
pub fn tls_host() -> (String, IpAddr) {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    assert!(
        !name.is_empty() && name != "localhost",
        "TLS tests need a host name other than localhost (got {name:?})"
    );
    let addr = (name.as_str(), 0)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.find(|a| a.is_ipv4()))
        .unwrap_or_else(|| {
            panic!("TLS tests reach the registry by the host name {name:?}, which does not resolve to an IPv4 address (add it to /etc/hosts)")
        });
    (name, addr.ip())
}

/// A CA and a server certificate it signed, as PEM files in a temp dir.
pub struct TestCa {
    dir: tempfile::TempDir,
    /// The name the server certificate is for.
    pub host: String,
    /// The address that name resolves to.
    pub ip: IpAddr,
}

impl TestCa {
    /// A CA, and a certificate for [`tls_host`], `localhost` and 127.0.0.1.
    pub fn new() -> TestCa {
        let (host, ip) = tls_host();
        let dir = tempdir();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "boxwright test CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA certificate");
        let mut names = vec![
            host.clone(),
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ];
        if ip.to_string() != "127.0.0.1" {
            names.push(ip.to_string());
        }
        let mut params = rcgen::CertificateParams::new(names).expect("server params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, host.clone());
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &ca).expect("server certificate");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("writing ca.pem");
        std::fs::write(dir.path().join("server.pem"), cert.pem()).expect("writing server.pem");
        std::fs::write(dir.path().join("server.key"), key.serialize_pem())
            .expect("writing server.key");
        TestCa { dir, host, ip }
    }

    /// The CA certificate (for `--ca-file`).
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The server certificate (`http.tls.certificate`).
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    /// The server key (`http.tls.key`).
    pub fn key_path(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }
}

/// An HTTPS token realm: `openssl s_server -WWW` serving, for each token
/// request the test expects (a set of scopes), a token minted ahead by a
/// [`TokenServer`] for one user. It checks no password: what it tests is
/// that the client reaches an HTTPS realm with the CA it was given.
/// Stopped on drop.
pub struct TlsTokenRealm {
    child: Child,
    addr: SocketAddr,
    host: String,
    dir: tempfile::TempDir,
}

impl TlsTokenRealm {
    /// Serve, for every scope set in `requests` (each as the client asks
    /// for it: sorted, one `scope=` each; `&[]` for a login), a token of
    /// `user` granting those scopes.
    pub fn start(
        ca: &TestCa,
        tokens: &TokenServer,
        user: &str,
        requests: &[&[&str]],
    ) -> TlsTokenRealm {
        let dir = tempdir();
        let www = dir.path().join("www");
        std::fs::create_dir(&www).expect("creating the realm's directory");
        let all: Vec<&str> = requests.iter().flat_map(|s| s.iter().copied()).collect();
        let token = tokens.issue(Some(user), &all);
        for scopes in requests {
            let mut url = reqwest::Url::parse("https://x/token").expect("url");
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("service", tokens.service());
                for s in *scopes {
                    q.append_pair("scope", s);
                }
            }
            // s_server -WWW opens the request target (query included) as a
            // file name; the client's encoding leaves no '/' or ':' in it.
            let file = format!("token?{}", url.query().unwrap_or(""));
            let body = serde_json::json!({"token": token, "expires_in": 300}).to_string();
            std::fs::write(www.join(file), body).expect("writing a token file");
        }
        let port = free_port();
        let addr = SocketAddr::new(ca.ip, port);
        let log = dir.path().join("s_server.log");
        let out = std::fs::File::create(&log).expect("creating the s_server log");
        let err = out.try_clone().expect("cloning the log handle");
        let mut child = tools::spawn(
            Command::new("openssl")
                .current_dir(&www)
                .args(["s_server", "-quiet", "-WWW", "-accept"])
                .arg(addr.to_string())
                .arg("-cert")
                .arg(ca.cert_path())
                .arg("-key")
                .arg(ca.key_path())
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err),
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("openssl s_server exited ({status}): {}", read_lossy(&log));
            }
            assert!(
                std::time::Instant::now() < deadline,
                "openssl s_server did not listen on {addr}: {}",
                read_lossy(&log)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        TlsTokenRealm {
            child,
            addr,
            host: format!("{}:{port}", ca.host),
            dir,
        }
    }

    /// `https://HOST:PORT/token`.
    pub fn realm(&self) -> String {
        format!("https://{}/token", self.host)
    }

    /// Token requests that found no token, from the realm's log.
    pub fn log(&self) -> String {
        read_lossy(&self.dir.path().join("s_server.log"))
    }
}

impl Drop for TlsTokenRealm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

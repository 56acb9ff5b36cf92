//! An in-process bearer-token server, as Docker Hub's and GHCR's realms are:
//! `GET /token?service=S&scope=S1&scope=S2` (optionally with Basic auth)
//! answers a JWT that the reference registry accepts.
//!
//! Scopes are granted only as asked, and only as far as the caller is
//! allowed: a token for `repository:a:pull,push` gives nothing on
//! `repository:b`, so a mount from `b` without `repository:b:pull` fails with
//! 401, as on Docker Hub.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

use super::{bind_loopback, now_unix, rfc3339, tempdir, ServerRuntime};

/// The `service` (JWT `aud`) the test registries are configured with.
pub const SERVICE: &str = "boxwright-test-registry";
/// The JWT `iss` the test registries trust.
pub const ISSUER: &str = "boxwright-test-token-issuer";

/// One grant inside a token: `{"type":"repository","name":..,"actions":[..]}`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

/// One request the token server received, for assertions.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    /// The Basic-auth user, `None` for anonymous.
    pub user: Option<String>,
    /// The `service` parameter.
    pub service: Option<String>,
    /// Every scope asked for, in order (one per `scope=`; space-separated
    /// scopes inside one parameter are split).
    pub scopes: Vec<String>,
    /// What the token granted (empty when refused).
    pub granted: Vec<Access>,
    /// 200, 401 for bad credentials, or 503 when told to fail.
    pub status: u16,
}

/// What one identity may do: `(repository pattern, actions)`. A pattern is an
/// exact name, `*` (any), or `prefix/*`; the action `*` allows any action.
type Rules = Vec<(String, Vec<String>)>;

struct Config {
    /// user -> (password, rules)
    users: BTreeMap<String, (String, Rules)>,
    /// `None`: anonymous requests are refused (401).
    anonymous: Option<Rules>,
    expires_in: u64,
    issue_expired: bool,
    /// Requests still to be answered 503 before any is served.
    unavailable: u32,
    /// The `Retry-After` (seconds) those 503 answers carry.
    unavailable_retry_after: Option<u64>,
}

struct Shared {
    config: Mutex<Config>,
    requests: Mutex<Vec<TokenRequest>>,
    key: EcdsaKeyPair,
    cert_der: Vec<u8>,
    realm: String,
}

/// Builds a [`TokenServer`]; see [`TokenServer::builder`].
pub struct TokenServerBuilder {
    config: Config,
}

impl TokenServerBuilder {
    /// Adds a user allowed `actions` (e.g. `&["pull", "push"]`) on every repository.
    pub fn user(self, name: &str, password: &str, actions: &[&str]) -> Self {
        self.user_access(name, password, &[("*", actions)])
    }

    /// Adds a user with per-repository rules: `(pattern, actions)` where a
    /// pattern is an exact repository, `*`, or `prefix/*`. The first matching
    /// rule wins.
    pub fn user_access(mut self, name: &str, password: &str, rules: &[(&str, &[&str])]) -> Self {
        self.config
            .users
            .insert(name.to_string(), (password.to_string(), to_rules(rules)));
        self
    }

    /// What anonymous callers may do (default: `pull` everywhere); `None`
    /// refuses anonymous token requests with 401.
    pub fn anonymous(mut self, actions: Option<&[&str]>) -> Self {
        self.config.anonymous = actions.map(|a| to_rules(&[("*", a)]));
        self
    }

    /// `expires_in` (seconds) of issued tokens; default 300. The registry
    /// allows 60 s of clock leeway, so a short value tests that clients
    /// refresh on schedule, not that the registry refuses old tokens (see
    /// [`TokenServer::set_issue_expired`] for that).
    pub fn expires_in(mut self, secs: u64) -> Self {
        self.config.expires_in = secs;
        self
    }

    /// Generates the key and certificate, starts serving.
    pub fn start(self) -> TokenServer {
        TokenServer::launch(self.config)
    }
}

fn to_rules(rules: &[(&str, &[&str])]) -> Rules {
    rules
        .iter()
        .map(|(p, a)| (p.to_string(), a.iter().map(|s| s.to_string()).collect()))
        .collect()
}

/// The in-process token server. Stops on drop.
///
/// ```ignore
/// let tokens = TokenServer::start(); // user "alice"/"secret": pull,push; anonymous: pull
/// let reg = Registry::with_token_auth(&tokens);
/// let tok = tokens.issue(Some("alice"), &["repository:a:pull,push"]);
/// assert_eq!(tokens.requests().len(), 0); // issue() is not recorded
/// ```
pub struct TokenServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    _rt: ServerRuntime,
}

/// Default user of [`TokenServer::start`].
pub const USER: &str = "alice";
/// Default password of [`TokenServer::start`].
pub const PASSWORD: &str = "secret";

impl TokenServer {
    /// A server where [`USER`]/[`PASSWORD`] (`alice`/`secret`) may pull,
    /// push and delete everywhere, anonymous callers may pull, tokens last
    /// 300 s.
    pub fn start() -> TokenServer {
        TokenServer::builder()
            .user(USER, PASSWORD, &["pull", "push", "delete"])
            .start()
    }

    /// A server with no users yet and anonymous `pull`.
    pub fn builder() -> TokenServerBuilder {
        TokenServerBuilder {
            config: Config {
                users: BTreeMap::new(),
                anonymous: Some(to_rules(&[("*", &["pull"])])),
                expires_in: 300,
                issue_expired: false,
                unavailable: 0,
                unavailable_retry_after: None,
            },
        }
    }

    fn launch(config: Config) -> TokenServer {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .expect("generating a P-256 key");
        let mut params = rcgen::CertificateParams::new(vec!["boxwright-test-token".to_string()])
            .expect("certificate params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "boxwright test token signer");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params
            .self_signed(&key)
            .expect("self-signing a certificate");
        let signing = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &key.serialize_der(),
            &ring::rand::SystemRandom::new(),
        )
        .expect("loading the key into ring");

        let dir = tempdir();
        std::fs::write(dir.path().join("root.pem"), cert.pem()).expect("writing root.pem");

        let listener = bind_loopback();
        let addr = listener.local_addr().expect("token server address");
        let shared = Arc::new(Shared {
            config: Mutex::new(config),
            requests: Mutex::new(Vec::new()),
            key: signing,
            cert_der: cert.der().to_vec(),
            realm: format!("http://{addr}/token"),
        });
        let rt = ServerRuntime::new("token-server");
        let s = shared.clone();
        rt.handle().spawn(async move {
            let listener =
                tokio::net::TcpListener::from_std(listener).expect("tokio token listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let s = s.clone();
                        async move { Ok::<_, Infallible>(handle(&s, req)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        TokenServer {
            shared,
            addr,
            dir,
            _rt: rt,
        }
    }

    /// `http://127.0.0.1:PORT/token`.
    pub fn realm(&self) -> String {
        self.shared.realm.clone()
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The `service` the registry announces (JWT `aud`).
    pub fn service(&self) -> &'static str {
        SERVICE
    }

    /// The JWT `iss`.
    pub fn issuer(&self) -> &'static str {
        ISSUER
    }

    /// The PEM certificate the registry uses as `rootcertbundle`.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("root.pem")
    }

    /// Every token request so far, in order.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.shared.requests.lock().unwrap().clear();
    }

    /// Changes `expires_in` of tokens issued from now on.
    pub fn set_expires_in(&self, secs: u64) {
        self.shared.config.lock().unwrap().expires_in = secs;
    }

    /// When on, tokens carry an `exp` two minutes in the past (beyond the
    /// registry's 60 s leeway), so the registry answers them 401: tests a
    /// client's "refresh once on 401" path.
    pub fn set_issue_expired(&self, on: bool) {
        self.shared.config.lock().unwrap().issue_expired = on;
    }

    /// Answers the next `n` requests 503 `UNAVAILABLE` (recorded with that
    /// status), as a token server under load does.
    pub fn fail_next(&self, n: u32) {
        self.fail_next_retry_after(n, None);
    }

    /// [`TokenServer::fail_next`], each 503 with `Retry-After: secs`.
    pub fn fail_next_retry_after(&self, n: u32, secs: Option<u64>) {
        let mut config = self.shared.config.lock().unwrap();
        config.unavailable = n;
        config.unavailable_retry_after = secs;
    }

    /// Mints a token directly (not recorded), as the HTTP endpoint would for
    /// `user` (`None`: anonymous). Panics on an unknown user.
    pub fn issue(&self, user: Option<&str>, scopes: &[&str]) -> String {
        let config = self.shared.config.lock().unwrap();
        let rules = match user {
            Some(u) => &config.users.get(u).expect("unknown user").1,
            None => config.anonymous.as_ref().expect("anonymous refused"),
        };
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        let granted = grant(rules, &scopes);
        let (token, _) = sign(&self.shared, &config, user.unwrap_or(""), &granted);
        token
    }
}

type Body = Full<Bytes>;

fn reply(status: StatusCode, json: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("www-authenticate", "Basic realm=\"boxwright-test-token\"")
        .body(Full::new(Bytes::from(json.to_string())))
        .expect("valid response")
}

fn handle(s: &Shared, req: Request<hyper::body::Incoming>) -> Response<Body> {
    if req.uri().path() != "/token" || req.method() != hyper::Method::GET {
        return reply(
            StatusCode::NOT_FOUND,
            serde_json::json!({"errors":[{"code":"NOT_FOUND","message":"only GET /token"}]}),
        );
    }
    let url = reqwest::Url::parse(&format!("http://x{}", req.uri())).expect("request uri");
    let mut service = None;
    let mut scopes = Vec::new();
    for (k, v) in url.query_pairs() {
        match &*k {
            "service" => service = Some(v.into_owned()),
            "scope" => scopes.extend(v.split(' ').filter(|s| !s.is_empty()).map(String::from)),
            _ => {}
        }
    }
    let basic = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|up| {
            up.split_once(':')
                .map(|(u, p)| (u.to_string(), p.to_string()))
        });

    let mut config = s.config.lock().unwrap();
    let user = basic.as_ref().map(|(u, _)| u.clone());
    if config.unavailable > 0 {
        config.unavailable -= 1;
        s.requests.lock().unwrap().push(TokenRequest {
            user,
            service,
            scopes,
            granted: Vec::new(),
            status: 503,
        });
        let mut answer = reply(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"errors":[{"code":"UNAVAILABLE","message":"try again"}]}),
        );
        if let Some(secs) = config.unavailable_retry_after {
            answer
                .headers_mut()
                .insert("retry-after", secs.to_string().parse().unwrap());
        }
        return answer;
    }
    let rules = match &basic {
        Some((u, p)) => match config.users.get(u) {
            Some((pw, rules)) if pw == p => Some(rules),
            _ => None,
        },
        None => config.anonymous.as_ref(),
    };
    let mut record = TokenRequest {
        user: user.clone(),
        service: service.clone(),
        scopes: scopes.clone(),
        granted: Vec::new(),
        status: 401,
    };
    let Some(rules) = rules else {
        s.requests.lock().unwrap().push(record);
        return reply(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"errors":[{"code":"UNAUTHORIZED","message":"incorrect username or password"}]}),
        );
    };
    let granted = grant(rules, &scopes);
    let (token, iat) = sign(s, &config, user.as_deref().unwrap_or(""), &granted);
    record.granted = granted;
    record.status = 200;
    s.requests.lock().unwrap().push(record);
    reply(
        StatusCode::OK,
        serde_json::json!({
            "token": token,
            "access_token": token,
            "expires_in": config.expires_in,
            "issued_at": rfc3339(iat),
        }),
    )
}

/// Grants each asked `repository:NAME:ACTIONS` scope only the actions both
/// asked and allowed by the first matching rule; merges repeated names.
fn grant(rules: &Rules, scopes: &[String]) -> Vec<Access> {
    let mut out: Vec<Access> = Vec::new();
    for scope in scopes {
        let Some((kind, rest)) = scope.split_once(':') else {
            continue;
        };
        let Some((name, actions)) = rest.rsplit_once(':') else {
            continue;
        };
        if kind != "repository" {
            continue;
        }
        let allowed = rules
            .iter()
            .find(|(pat, _)| {
                pat == "*"
                    || pat == name
                    || pat
                        .strip_suffix('*')
                        .is_some_and(|prefix| prefix.ends_with('/') && name.starts_with(prefix))
            })
            .map(|(_, a)| a.as_slice())
            .unwrap_or(&[]);
        let actions: Vec<String> = actions
            .split(',')
            .filter(|a| !a.is_empty() && allowed.iter().any(|x| x == a || x == "*"))
            .map(String::from)
            .collect();
        if actions.is_empty() {
            continue;
        }
        match out.iter_mut().find(|a| a.name == name) {
            Some(a) => {
                for act in actions {
                    if !a.actions.contains(&act) {
                        a.actions.push(act);
                    }
                }
            }
            None => out.push(Access {
                kind: kind.to_string(),
                name: name.to_string(),
                actions,
            }),
        }
    }
    out
}

/// An ES256 JWT with an `x5c` header holding the self-signed certificate,
/// which the registry verifies against its `rootcertbundle`. Returns the
/// token and its `iat`.
fn sign(s: &Shared, config: &Config, sub: &str, access: &[Access]) -> (String, u64) {
    let now = now_unix();
    let (iat, exp) = if config.issue_expired {
        (now - 600, now - 120)
    } else {
        (now, now + config.expires_in)
    };
    let header = serde_json::json!({
        "alg": "ES256",
        "typ": "JWT",
        "x5c": [STANDARD.encode(&s.cert_der)],
    });
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": sub,
        "aud": SERVICE,
        "exp": exp,
        // A little slack so a registry whose clock reads a hair earlier
        // does not see a token from the future.
        "nbf": iat.saturating_sub(10),
        "iat": iat,
        "jti": format!("{:032x}", rand::random::<u128>()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = s
        .key
        .sign(&ring::rand::SystemRandom::new(), signing_input.as_bytes())
        .expect("ES256 signing");
    (
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref())),
        iat,
    )
}

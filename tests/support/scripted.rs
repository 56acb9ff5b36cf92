//! Small scripted HTTP/1.1 servers that play misbehaving registries the real
//! one cannot imitate: one that accepts connections and never answers, one
//! whose blob downloads never end, one whose token server refuses a scope,
//! one that paginates tag lists (distribution 2.8 ignores `?n=` and sends no
//! `Link` header; distribution v3 and GHCR paginate).
//!
//! One request per connection (`Connection: close`), each on its own thread,
//! so they work from `#[test]` and `#[tokio::test]` alike. A script maps each
//! request to an [`Answer`]; every request is recorded, headers and body
//! included (a server may echo them).
//!
//! ```ignore
//! let srv = Scripted::start(|req| match req.path() {
//!     "/v2/" => Answer::new("200 OK"),
//!     _ => Answer::json("404 Not Found", r#"{"errors":[]}"#),
//! });
//! // ... talk to srv.host() ...
//! assert_eq!(srv.requests().len(), 2);
//! ```

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::Digest as _;

/// One request as the server read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// Path and query, as on the request line.
    pub target: String,
    /// The header lines, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body (by `Content-Length`), as text.
    pub body: String,
}

impl Request {
    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The value of header `name` (any case), when sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The query parameters (decoded).
    pub fn query(&self) -> BTreeMap<String, String> {
        reqwest::Url::parse(&format!("http://x{}", self.target))
            .map(|u| u.query_pairs().into_owned().collect())
            .unwrap_or_default()
    }
}

/// What the server does with one request.
pub enum Answer {
    /// A whole answer: status line text, headers, body; then close.
    Full {
        status: String,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// A 200 with a chunked body that never ends (64 KiB chunks of zeros).
    Endless,
    /// A whole answer whose body is sent one byte per `every` (headers,
    /// with `Content-Length`, at once).
    Trickle {
        status: String,
        headers: Vec<(String, String)>,
        body: String,
        every: Duration,
    },
    /// Say nothing and keep the connection open until the server stops.
    Silent,
}

impl Answer {
    /// `status` is the status line's text after the version: `"200 OK"`.
    pub fn new(status: &str) -> Answer {
        Answer::Full {
            status: status.to_string(),
            headers: Vec::new(),
            body: String::new(),
        }
    }

    /// An answer with a JSON body.
    pub fn json(status: &str, body: &str) -> Answer {
        Answer::new(status)
            .header("Content-Type", "application/json")
            .body(body)
    }

    pub fn header(mut self, name: &str, value: &str) -> Answer {
        if let Answer::Full { headers, .. } = &mut self {
            headers.push((name.to_string(), value.to_string()));
        }
        self
    }

    pub fn body(mut self, text: &str) -> Answer {
        if let Answer::Full { body, .. } = &mut self {
            *body = text.to_string();
        }
        self
    }

    /// This answer, its body sent one byte per `every`.
    pub fn trickled(self, every: Duration) -> Answer {
        match self {
            Answer::Full {
                status,
                headers,
                body,
            } => Answer::Trickle {
                status,
                headers,
                body,
                every,
            },
            other => other,
        }
    }
}

type Script = dyn Fn(&Request) -> Answer + Send + Sync;

/// A scripted server on a free loopback port, stopped on drop.
pub struct Scripted {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
}

impl Scripted {
    pub fn start(script: impl Fn(&Request) -> Answer + Send + Sync + 'static) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
        let addr = listener.local_addr().expect("listener address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let script: Arc<Script> = Arc::new(script);
        let (log, stopped) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(sock) = conn else { continue };
                let (script, log, stopped) = (script.clone(), log.clone(), stopped.clone());
                std::thread::spawn(move || serve(sock, &*script, &log, &stopped));
            }
        });
        Scripted {
            addr,
            requests,
            stop,
        }
    }

    /// A registry serving fixed documents: `paths` maps a request path to
    /// its media type and body, answered 200 with its digest (GET and HEAD
    /// alike: the client reads no more of a HEAD); `GET /v2/` is 200, any
    /// other path 404.
    pub fn serving(paths: std::collections::HashMap<String, (String, String)>) -> Scripted {
        Scripted::start(move |req| {
            if req.path() == "/v2/" {
                return Answer::json("200 OK", "{}");
            }
            match paths.get(req.path()) {
                Some((mt, body)) => Answer::new("200 OK")
                    .header("Content-Type", mt)
                    .header(
                        "Docker-Content-Digest",
                        &format!("sha256:{:x}", sha2::Sha256::digest(body)),
                    )
                    .body(body),
                None => Answer::json("404 Not Found", r#"{"errors":[]}"#),
            }
        })
    }

    /// A "registry" that accepts every connection and never says a word.
    pub fn silent() -> Scripted {
        Scripted::start(|_| Answer::Silent)
    }

    /// A registry front that only lists the tags of `repo`, paginated as
    /// distribution v3 and GHCR do: `?n=` (default 2 here), `last=`,
    /// `Link: <...>; rel="next"`.
    pub fn tag_pages(repo: &'static str, mut tags: Vec<String>) -> Scripted {
        tags.sort();
        Scripted::start(move |req| {
            if req.path() == "/v2/" {
                return Answer::json("200 OK", "{}");
            }
            if req.path() != format!("/v2/{repo}/tags/list") {
                return Answer::json("404 Not Found", r#"{"errors":[]}"#);
            }
            let q = req.query();
            let n: usize = q.get("n").and_then(|n| n.parse().ok()).unwrap_or(2);
            let rest: Vec<&String> = tags
                .iter()
                .filter(|t| q.get("last").is_none_or(|l| t.as_str() > l.as_str()))
                .collect();
            let page: Vec<&String> = rest.iter().take(n).copied().collect();
            let body = serde_json::json!({"name": repo, "tags": page}).to_string();
            let answer = Answer::json("200 OK", &body);
            match page.last() {
                Some(last) if rest.len() > n => answer.header(
                    "Link",
                    &format!("</v2/{repo}/tags/list?n={n}&last={last}>; rel=\"next\""),
                ),
                _ => answer,
            }
        })
    }

    /// A registry that asks for a bearer token at its own `/token`, which
    /// answers with a body that never ends.
    pub fn endless_token() -> Scripted {
        Scripted::start_with_host(|host, req| match req.path() {
            "/token" => Answer::Endless,
            _ => Answer::json(
                "401 Unauthorized",
                r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#,
            )
            .header(
                "WWW-Authenticate",
                &format!(r#"Bearer realm="http://{host}/token",service="scripted""#),
            ),
        })
    }

    /// A registry whose every manifest GET answers a body that never ends
    /// (HEAD answers 200 with a digest, as if the manifest were there).
    pub fn endless_manifest() -> Scripted {
        Scripted::start(|req| match (req.method.as_str(), req.path()) {
            (_, "/v2/") => Answer::json("200 OK", "{}"),
            ("HEAD", p) if p.contains("/manifests/") => manifest_head(),
            (_, p) if p.contains("/manifests/") => Answer::Endless,
            _ => Answer::json("404 Not Found", r#"{"errors":[]}"#),
        })
    }

    /// A registry whose manifest GETs send `TRICKLED_MANIFEST` one byte per
    /// second (HEAD answers at once).
    pub fn trickling_manifest() -> Scripted {
        Scripted::start(|req| match (req.method.as_str(), req.path()) {
            (_, "/v2/") => Answer::json("200 OK", "{}"),
            ("HEAD", p) if p.contains("/manifests/") => manifest_head(),
            (_, p) if p.contains("/manifests/") => Answer::new("200 OK")
                .header("Content-Type", OCI_MANIFEST)
                .body(TRICKLED_MANIFEST)
                .trickled(Duration::from_secs(1)),
            _ => Answer::json("404 Not Found", r#"{"errors":[]}"#),
        })
    }

    /// A registry whose tag list of any repository is `links` pages long,
    /// page `i` linking to page `links[i]` (`?page=N`); a page linking to
    /// itself or an earlier page never ends.
    pub fn tag_links(links: Vec<usize>) -> Scripted {
        Scripted::start(move |req| {
            if req.path() == "/v2/" {
                return Answer::json("200 OK", "{}");
            }
            if !req.path().ends_with("/tags/list") {
                return Answer::json("404 Not Found", r#"{"errors":[]}"#);
            }
            let page: usize = req
                .query()
                .get("page")
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            let body = format!(r#"{{"name":"x","tags":["t{page}"]}}"#);
            let answer = Answer::json("200 OK", &body);
            match links.get(page) {
                Some(next) => answer.header(
                    "Link",
                    &format!("<{}?page={next}>; rel=\"next\"", req.path()),
                ),
                None => answer,
            }
        })
    }

    /// A registry holding [`TRICKLED_MANIFEST`] under every tag, with the
    /// referrers API: its answer is `links` pages long, page `i` linking to
    /// page `links[i]` (`?page=N`), as [`Scripted::tag_links`] does.
    pub fn referrers_links(links: Vec<usize>) -> Scripted {
        Scripted::start(move |req| match (req.method.as_str(), req.path()) {
            (_, "/v2/") => Answer::json("200 OK", "{}"),
            ("HEAD", p) if p.contains("/manifests/") => manifest_head(),
            (_, p) if p.contains("/referrers/") => {
                let page: usize = req
                    .query()
                    .get("page")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
                let answer = Answer::new("200 OK")
                    .header("Content-Type", "application/vnd.oci.image.index.v1+json")
                    .body(r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#);
                match links.get(page) {
                    Some(next) => answer.header(
                        "Link",
                        &format!("<{}?page={next}>; rel=\"next\"", req.path()),
                    ),
                    None => answer,
                }
            }
            _ => Answer::json("404 Not Found", r#"{"errors":[]}"#),
        })
    }

    /// A registry whose tag lists are one page that never ends.
    pub fn endless_tags() -> Scripted {
        Scripted::start(|req| match req.path() {
            "/v2/" => Answer::json("200 OK", "{}"),
            p if p.ends_with("/tags/list") => Answer::Endless,
            _ => Answer::json("404 Not Found", r#"{"errors":[]}"#),
        })
    }

    /// [`Scripted::start`] with a script that knows the server's own
    /// `127.0.0.1:PORT` (to point at itself).
    pub fn start_with_host(
        script: impl Fn(&str, &Request) -> Answer + Send + Sync + 'static,
    ) -> Scripted {
        let host = Arc::new(Mutex::new(String::new()));
        let h = host.clone();
        let srv = Scripted::start(move |req| {
            let me = h.lock().map(|g| g.clone()).unwrap_or_default();
            script(&me, req)
        });
        if let Ok(mut g) = host.lock() {
            *g = srv.host();
        }
        srv
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Every request read so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// The OCI image manifest media type.
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// The manifest [`Scripted::trickling_manifest`] sends (its HEAD announces
/// this digest and size).
pub const TRICKLED_MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2},"layers":[]}"#;

/// A manifest HEAD answer for [`TRICKLED_MANIFEST`].
fn manifest_head() -> Answer {
    let digest = format!("sha256:{:x}", sha2::Sha256::digest(TRICKLED_MANIFEST));
    Answer::new("200 OK")
        .header("Content-Type", OCI_MANIFEST)
        .header("Docker-Content-Digest", &digest)
}

/// A `host:port` on loopback where nothing listens.
pub fn dead_host() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    let addr = l.local_addr().expect("listener address");
    drop(l);
    addr.to_string()
}

fn serve(mut sock: TcpStream, script: &Script, log: &Mutex<Vec<Request>>, stop: &AtomicBool) {
    let Some(req) = read_request(&mut sock) else {
        return;
    };
    if let Ok(mut l) = log.lock() {
        l.push(req.clone());
    }
    match script(&req) {
        Answer::Full {
            status,
            headers,
            body,
        } => {
            let mut text = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
            for (k, v) in headers {
                text.push_str(&format!("{k}: {v}\r\n"));
            }
            text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
            let _ = sock.write_all(text.as_bytes());
            let _ = sock.shutdown(std::net::Shutdown::Both);
        }
        Answer::Endless => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
                        Transfer-Encoding: chunked\r\n\r\n";
            let chunk = [0u8; 64 * 1024];
            let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
            frame.extend_from_slice(&chunk);
            frame.extend_from_slice(b"\r\n");
            if sock.write_all(head.as_bytes()).is_err() {
                return;
            }
            while !stop.load(Ordering::SeqCst) && sock.write_all(&frame).is_ok() {}
        }
        Answer::Trickle {
            status,
            headers,
            body,
            every,
        } => {
            let mut text = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
            for (k, v) in headers {
                text.push_str(&format!("{k}: {v}\r\n"));
            }
            text.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
            if sock.write_all(text.as_bytes()).is_err() {
                return;
            }
            for b in body.as_bytes() {
                if stop.load(Ordering::SeqCst) || sock.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(every);
            }
        }
        Answer::Silent => {
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Reads the request line and headers, then the body by `Content-Length`.
fn read_request(sock: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        match sock.read(&mut tmp) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut first = head.lines().next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_string();
    let target = first.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        match sock.read(&mut tmp) {
            Ok(0) | Err(_) => return None,
            Ok(n) => body.extend_from_slice(&tmp[..n]),
        }
    }
    body.truncate(len);
    Some(Request {
        method,
        target,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

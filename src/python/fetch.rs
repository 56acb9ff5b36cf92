//! Pinned downloads: a URL with the sha256 its content must have, fetched
//! once into the blob cache (`<cache>/sha256/<hex>`, the same content
//! addressing as registry blobs) and hashed while it streams, its progress
//! shown through the [`Reporter`]. A mismatch
//! caches nothing. An interrupted download leaves `<cache>/downloads/<hex>.part`,
//! resumed with a `Range` request next time (restarted when the server
//! ignores it, and fetched again whole once when the resumed file does not
//! match: what was kept may be damaged). Only `https://`, `file://` and
//! plain `http://` to a loopback
//! address are accepted, and a redirect is followed only to such a URL: a
//! checksum pins the content, TLS keeps what is fetched private and the
//! failure honest.
//!
//! The recipe planner is synchronous; a download runs on its own thread with
//! a small runtime, so this works from any thread, inside the binary's
//! runtime or not.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use futures_util::StreamExt;
use sha2::{Digest as _, Sha256};

use crate::cache::BlobCache;
use crate::error::bad_input;
use crate::input::open_regular;
use crate::oci::{Digest, Hashing};
use crate::progress::{Level, Reporter};
use crate::registry::client::Pace;
use crate::render::bytes::human_bytes;

/// Downloads larger than this are refused (a pinned tool or wheel is far smaller).
pub const MAX_SIZE: u64 = 4 << 30;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for the next bytes of a response.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Most redirects followed for one download.
const MAX_REDIRECTS: usize = 10;

/// A lowercase sha256 hex string, or a bad-input error naming `what`.
pub fn parse_sha256(text: &str, what: &str) -> Result<Digest> {
    let hex = text.trim().strip_prefix("sha256:").unwrap_or(text.trim());
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad_input(format!(
            "{what}: sha256 {text:?} is not 64 hex digits"
        )));
    }
    format!("sha256:{}", hex.to_ascii_lowercase())
        .parse()
        .map_err(|e| bad_input(format!("{what}: {e}")))
}

/// The cached file holding `url`'s content, which must hash to `want`:
/// taken from the cache, else downloaded (resuming a partial download),
/// hashed while it streams and shown to `reporter` as it arrives.
pub fn fetch(
    cache: &BlobCache,
    url: &str,
    want: &Digest,
    reporter: &dyn Reporter,
) -> Result<PathBuf> {
    // Sent as it is, shown without its credentials from here on.
    let (sent, url) = (url, &*without_credentials(url));
    // The URL is checked first, so that a recipe is refused for it whether
    // or not its content is cached (a hit must not hide a bad URL).
    let local = sent.strip_prefix("file://").map(Path::new);
    if local.is_none() {
        check_remote(url)?;
    }
    let dest = cache.path(want);
    if cache.holds(want, None) {
        reporter.log(Level::Debug, &format!("{url}: in the cache ({want})"));
        return Ok(dest);
    }
    let parts = cache.root().join("downloads");
    fs::create_dir_all(&parts).with_context(|| format!("creating {}", parts.display()))?;
    let part = parts.join(format!("{}.part", want.hex()));
    crate::cache::clear_for_file(&part);
    let id = format!("download-{}", want.hex());
    let got = if let Some(path) = local {
        copy_local(path, &part, url)?
    } else {
        let shown = Shown {
            reporter,
            id: &id,
            url,
        };
        // Planning is synchronous: the download runs on the caller's
        // runtime (see `crate::blocking`).
        let rt = crate::blocking::runtime("downloads")?;
        let once =
            || crate::blocking::block_on(&rt, download(sent, &part, &shown, Pace::default()));
        let resumed = fs::metadata(&part).is_ok_and(|m| m.len() > 0);
        let mut got = once();
        // What an earlier run left may be damaged: the file is then
        // fetched again whole, once, before the pin is doubted.
        if resumed && got.as_ref().is_ok_and(|d| d != want) {
            let _ = fs::remove_file(&part);
            got = once();
        }
        match got {
            Ok(d) => {
                reporter.finish(&id, &format!("{url}: downloaded"));
                d
            }
            Err(e) => {
                reporter.finish(&id, &format!("{url}: failed"));
                return Err(e);
            }
        }
    };
    if got != *want {
        let _ = fs::remove_file(&part);
        return Err(anyhow!(
            "{url}: checksum mismatch: the recipe pins {want} but the download is {got}; nothing was cached (update the recipe's sha256 if the new file is the one you want)"
        ));
    }
    fs::rename(&part, &dest).with_context(|| format!("moving {} into the cache", url))?;
    Ok(dest)
}

/// A download's progress task.
struct Shown<'a> {
    reporter: &'a dyn Reporter,
    id: &'a str,
    /// The URL as it is shown: [`without_credentials`].
    url: &'a str,
}

/// `url` as errors, logs, progress and the SBOM show it: without the
/// `user:password@` it may carry (which is sent, as HTTP Basic), so that
/// a credential in a recipe's URL is never printed or pushed.
pub fn without_credentials(url: &str) -> std::borrow::Cow<'_, str> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.into();
    };
    // The authority ends where the path, query or fragment starts; its
    // user information ends at its last `@`.
    let end = rest.find(['/', '\\', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]).into(),
        None => url.into(),
    }
}

/// Refuse URLs whose content could be altered in transit.
fn check_remote(url: &str) -> Result<()> {
    let (sent, url) = (url, &*without_credentials(url));
    let parsed = reqwest::Url::parse(sent).map_err(|e| bad_input(format!("url {url:?}: {e}")))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(parsed.host_str().unwrap_or("")) => Ok(()),
        "http" => Err(bad_input(format!(
            "url {url:?}: plain http is only allowed to a loopback address; use https"
        ))),
        other => Err(bad_input(format!(
            "url {url:?}: scheme {other:?} is not supported (https, file, or http to a loopback address)"
        ))),
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Copy a local file into `part`, returning its sha256.
fn copy_local(src: &Path, part: &Path, url: &str) -> Result<Digest> {
    let (mut f, _) = open_regular(src).map_err(|e| bad_input(format!("{url}: {e}")))?;
    let out = File::create(part).with_context(|| format!("creating {}", part.display()))?;
    let mut tee = Hashing::new(out);
    let n = io::copy(&mut (&mut f).take(MAX_SIZE + 1), &mut tee)?;
    if n > MAX_SIZE {
        let _ = fs::remove_file(part);
        return Err(anyhow!("{url}: larger than {MAX_SIZE} bytes"));
    }
    Ok(tee.digest())
}

/// Download `url` into `part`, appending to what a previous attempt left,
/// and return the sha256 of the whole file (what was there is hashed first,
/// the rest as it arrives).
async fn download(sent: &str, part: &Path, shown: &Shown<'_>, pace: Pace) -> Result<Digest> {
    let url = shown.url;
    // A redirect is followed only to where the URL itself could point.
    let refused: Arc<Mutex<Option<String>>> = Arc::default();
    let why = refused.clone();
    let redirects = reqwest::redirect::Policy::custom(move |next| {
        if next.previous().len() >= MAX_REDIRECTS {
            return next.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        match check_remote(next.url().as_str()) {
            Ok(()) => next.follow(),
            Err(e) => {
                if let Ok(mut w) = why.lock() {
                    *w = Some(format!("{e:#}"));
                }
                next.stop()
            }
        }
    });
    let client = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .redirect(redirects)
        .build()
        .context("creating the HTTP client")?;
    let have = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    let mut req = client.get(sent);
    if have > 0 {
        req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("downloading {url}"))?;
    if let Some(why) = refused.lock().ok().and_then(|w| w.clone()) {
        return Err(bad_input(format!(
            "downloading {url}: it redirects to a refused address: {why}"
        )));
    }
    let status = resp.status();
    let resumed = status == reqwest::StatusCode::PARTIAL_CONTENT && have > 0;
    if status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE && have > 0 {
        // The partial file is already whole (or wrong: the checksum will tell).
        return hash_file(part);
    }
    if !status.is_success() {
        return Err(anyhow!("downloading {url}: HTTP {status}"));
    }
    let mut h = Sha256::new();
    let mut out = if resumed {
        io::copy(&mut File::open(part)?, &mut h)?;
        OpenOptions::new().append(true).open(part)?
    } else {
        File::create(part)?
    };
    let mut size = if resumed { have } else { 0 };
    let total = resp.content_length().map(|n| n + size);
    shown.reporter.start(shown.id, shown.url, total);
    shown.reporter.advance(shown.id, size);
    let mut body = resp.bytes_stream();
    // The read timeout bounds silence; the pace, a server that sends a
    // little just before each timeout (as registry downloads are held).
    let (began, start) = (std::time::Instant::now(), size);
    loop {
        let due = tokio::time::Instant::from_std(pace.due(began, size - start));
        let Ok(next) = tokio::time::timeout_at(due, body.next()).await else {
            let secs = began.elapsed().as_secs_f64().max(0.001);
            return Err(anyhow!(
                "downloading {url}: the server sent {} bytes in {secs:.0}s, below the least rate of {}/s once {}s have passed; try again later (what arrived is kept and resumed)",
                size - start,
                human_bytes(pace.floor),
                pace.grace.as_secs()
            ));
        };
        let Some(chunk) = next else { break };
        let chunk = chunk.with_context(|| format!("downloading {url}"))?;
        size += chunk.len() as u64;
        if size > MAX_SIZE {
            drop(out);
            let _ = fs::remove_file(part);
            return Err(anyhow!("{url}: larger than {MAX_SIZE} bytes"));
        }
        out.write_all(&chunk)?;
        h.update(&chunk);
        shown.reporter.advance(shown.id, chunk.len() as u64);
    }
    out.sync_all()?;
    Ok(Digest::from_sha256(h.finalize().into()))
}

/// The sha256 of a file.
pub fn hash_file(path: &Path) -> Result<Digest> {
    let (mut f, _) = open_regular(path).with_context(|| format!("reading {}", path.display()))?;
    let mut h = Sha256::new();
    io::copy(&mut f, &mut h)?;
    Ok(Digest::from_sha256(h.finalize().into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pinned_transports_are_accepted() {
        assert!(check_remote("https://example.com/x").is_ok());
        assert!(check_remote("http://127.0.0.1:8080/x").is_ok());
        assert!(check_remote("http://[::1]/x").is_ok());
        assert!(check_remote("http://example.com/x").is_err());
        assert!(check_remote("ftp://example.com/x").is_err());
    }

    /// Figure: a server that sends its 50 bytes one per 50 ms (20 B/s),
    /// each well within the read timeout, fails a pace of 1 KiB/s once its
    /// grace of 1 s has passed, before it is done (2.5 s), naming the URL
    /// and the rate; the bytes it sent are kept to be resumed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_download_slower_than_the_pace_fails_after_its_grace() {
        use std::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/f", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut head = [0u8; 1024];
            let _ = s.read(&mut head);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n");
            for _ in 0..50 {
                if s.write_all(b"z").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("f.part");
        let shown = Shown {
            reporter: &crate::progress::Silent,
            id: "t",
            url: &url,
        };
        let pace = Pace {
            grace: Duration::from_secs(1),
            floor: 1024,
        };
        let err = download(&url, &part, &shown, pace).await.unwrap_err();
        let said = format!("{err:#}");
        assert!(said.contains(&url) && said.contains("B/s"), "{said}");
        let kept = fs::metadata(&part).unwrap().len();
        assert!(kept > 0 && kept < 50, "{kept}");
    }

    /// A partial download left damaged in the cache (a disk, a killed run
    /// on another machine) is resumed into a file that is not the pinned
    /// one: it is fetched again whole, once, not reported as a pin to
    /// update. The server honours `Range`, and counts the requests.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_damaged_partial_download_is_fetched_again_whole() {
        use std::net::TcpListener;
        let body = b"hello, world";
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/f", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let mut ranges = Vec::new();
            for _ in 0..2 {
                let Ok((mut s, _)) = listener.accept() else {
                    break;
                };
                let mut head = [0u8; 2048];
                let n = s.read(&mut head).unwrap_or(0);
                let head = String::from_utf8_lossy(&head[..n]).to_ascii_lowercase();
                let from = head
                    .lines()
                    .find_map(|l| l.strip_prefix("range: bytes="))
                    .and_then(|r| r.trim().trim_end_matches('-').parse::<usize>().ok());
                ranges.push(from);
                let (status, part) = match from {
                    Some(f) => ("206 Partial Content", &body[f..]),
                    None => ("200 OK", &body[..]),
                };
                let _ = s.write_all(
                    format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        part.len()
                    )
                    .as_bytes(),
                );
                let _ = s.write_all(part);
            }
            ranges
        });
        let dir = tempfile::tempdir().unwrap();
        let cache = BlobCache::new(Some(dir.path().join("c"))).unwrap();
        let want = Digest::of(body);
        let parts = cache.root().join("downloads");
        fs::create_dir_all(&parts).unwrap();
        fs::write(parts.join(format!("{}.part", want.hex())), b"HELLO").unwrap();
        let got = fetch(&cache, &url, &want, &crate::progress::Silent).unwrap();
        assert_eq!(fs::read(&got).unwrap(), body);
        assert_eq!(server.join().unwrap(), [Some(5), None]);
    }

    #[test]
    fn credentials_are_not_shown() {
        for (url, shown) in [
            ("https://u:p@h/a@b", "https://h/a@b"),
            ("https://tok@en@h:8443?x=@", "https://h:8443?x=@"),
            ("https://h/p?u=a@b#c", "https://h/p?u=a@b#c"),
            ("file:///a@b", "file:///a@b"),
        ] {
            assert_eq!(without_credentials(url), shown, "{url}");
        }
    }

    #[test]
    fn local_files_are_cached_by_content_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let cache = BlobCache::new(Some(dir.path().join("c"))).unwrap();
        let src = dir.path().join("f");
        fs::write(&src, b"hello").unwrap();
        let url = format!("file://{}", src.display());
        let want = Digest::of(b"hello");
        let got = fetch(&cache, &url, &want, &crate::progress::Silent).unwrap();
        assert_eq!(fs::read(&got).unwrap(), b"hello");
        // A cached copy damaged in place is not taken: the file is fetched again.
        fs::write(&got, b"hellO").unwrap();
        let again = fetch(&cache, &url, &want, &crate::progress::Silent).unwrap();
        assert_eq!(fs::read(&again).unwrap(), b"hello");
        let wrong = Digest::of(b"other");
        let err = fetch(&cache, &url, &wrong, &crate::progress::Silent)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("checksum mismatch") && err.contains(want.hex()),
            "{err}"
        );
        assert!(!cache.path(&wrong).exists());
        assert!(parse_sha256("xyz", "t").is_err());
        // A partial download that is a link (a cache restored from
        // elsewhere) is not written through, nor is a directory in its
        // place in the way: the file is downloaded all the same.
        let part = cache
            .root()
            .join("downloads")
            .join(format!("{}.part", want.hex()));
        let outside = dir.path().join("outside");
        fs::write(&outside, b"keep").unwrap();
        for planted in ["link", "dir"] {
            fs::remove_file(cache.path(&want)).unwrap();
            match planted {
                "link" => std::os::unix::fs::symlink(&outside, &part).unwrap(),
                _ => fs::create_dir_all(part.join("inner")).unwrap(),
            }
            let got = fetch(&cache, &url, &want, &crate::progress::Silent).unwrap();
            assert_eq!(fs::read(&got).unwrap(), b"hello", "{planted}");
            assert!(fs::symlink_metadata(&got).unwrap().is_file(), "{planted}");
            assert_eq!(fs::read(&outside).unwrap(), b"keep", "{planted}");
        }
        // A URL that is refused stays refused when its content is cached.
        for bad in ["http://example.com/f", "ftp://127.0.0.1/f"] {
            let err = fetch(&cache, bad, &want, &crate::progress::Silent).unwrap_err();
            assert!(crate::error::is_bad_input(&err), "{bad}: {err}");
        }
    }
}

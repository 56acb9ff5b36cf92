//! `url` entries: pinned downloads (resumed after a cut connection, cached
//! by content so the second build reads no network), members of zip and
//! tar archives with the recipe's mode and the build's time, and the
//! refusals (no sha256, no checksum for a platform, a wrong checksum).

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::common::*;

/// What a test server was asked: each request's `Range` header, if any.
type Seen = Arc<Mutex<Vec<Option<String>>>>;

/// A request's head (request line and headers), read up to its blank line.
fn read_head(s: &mut impl Read) -> String {
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(k) => req.extend_from_slice(&buf[..k]),
        }
    }
    String::from_utf8_lossy(&req).into_owned()
}

/// A loopback HTTP server for one file; its first answer is cut halfway.
fn serve(body: Vec<u8>) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/tool.zip", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut s) = stream else { return };
            let text = read_head(&mut s).to_lowercase();
            let range = text.lines().find_map(|l| {
                l.strip_prefix("range: bytes=")
                    .map(|r| r.trim().to_string())
            });
            log.lock().unwrap().push(range.clone());
            let from: usize = range
                .as_deref()
                .and_then(|r| r.trim_end_matches('-').parse().ok())
                .unwrap_or(0);
            let (status, part) = if from > 0 {
                ("206 Partial Content", &body[from..])
            } else {
                ("200 OK", &body[..])
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                part.len()
            );
            let _ = s.write_all(head.as_bytes());
            let send = if n == 0 {
                &part[..part.len() / 2]
            } else {
                part
            };
            let _ = s.write_all(send);
        }
    });
    (url, seen)
}

fn zip_with(name: &str, data: &[u8]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .unix_permissions(0o600)
        .last_modified_time(zip::DateTime::from_date_and_time(2001, 2, 3, 4, 5, 6).unwrap());
    z.start_file(name, opts).unwrap();
    z.write_all(data).unwrap();
    z.finish().unwrap().into_inner()
}

/// Build `recipe` in `dir` with an uncompressed layer; its single layer's
/// entries as (path, mode, mtime, content).
pub fn build_layer(dir: &Path, cache: &Path, recipe: &str) -> Run {
    write(&dir.join("recipe.toml"), recipe);
    run(boxwright()
        .env("XDG_CACHE_HOME", cache)
        .args(["build", "--quiet", "--compression", "none", "-o"])
        .arg(dir.join("out"))
        .arg(dir.join("recipe.toml")))
}

type Entry = (String, u32, u64, Vec<u8>);

/// The entries of every layer of the one image in layout `out`.
pub fn layer_entries(out: &Path) -> Vec<Entry> {
    let blob = |d: &str| {
        out.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let json = |d: &str| -> serde_json::Value {
        serde_json::from_slice(&fs::read(blob(d)).unwrap()).unwrap()
    };
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("index.json")).unwrap()).unwrap();
    let mut m = json(index["manifests"][0]["digest"].as_str().unwrap());
    if m.get("manifests").is_some() {
        m = json(m["manifests"][0]["digest"].as_str().unwrap());
    }
    let mut entries = Vec::new();
    for l in m["layers"].as_array().unwrap() {
        let bytes = fs::read(blob(l["digest"].as_str().unwrap())).unwrap();
        let mut ar = tar::Archive::new(&bytes[..]);
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let path = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            let (mode, mtime) = (e.header().mode().unwrap(), e.header().mtime().unwrap());
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            entries.push((path, mode, mtime, data));
        }
    }
    entries
}

#[test]
fn a_zip_member_is_downloaded_once_resumed_and_given_the_recipe_mode() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let tool = noise(300_000, 7);
    let archive = zip_with("terraform", &tool);
    let (url, seen) = serve(archive.clone());
    let recipe = format!(
        "[image]\nname = \"t\"\ncreated = 1700000000\nplatforms = [\"linux/amd64\"]\n[[layer]]\n[[layer.entry]]\nurl = \"{url}\"\nsha256 = {{ amd64 = \"{}\", arm64 = \"{}\" }}\nextract = \"terraform\"\ndest = \"/usr/local/bin/terraform\"\nmode = 0o755\n",
        sha256(&archive),
        "0".repeat(64)
    );
    // The first answer is cut: that build fails, leaving a partial download.
    let first = build_layer(dir.path(), &cache, &recipe);
    assert_code(&first, 1);
    assert!(first.stderr.contains(&url), "{}", first.stderr);
    let r = build_layer(dir.path(), &cache, &recipe);
    assert_ok(&r);
    let log = seen.lock().unwrap().clone();
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log[1].is_some(), "the second request resumes: {log:?}");
    let entries = layer_entries(&dir.path().join("out"));
    let t = entries
        .iter()
        .find(|e| e.0 == "usr/local/bin/terraform")
        .unwrap();
    assert_eq!((t.1, t.2), (0o755, 1_700_000_000));
    assert!(t.3 == tool, "the member's bytes");

    // Cached: a third build needs no server (the URL now points nowhere).
    let offline = recipe.replace(&url, "http://127.0.0.1:9/gone.zip");
    fs::remove_dir_all(dir.path().join("out")).unwrap();
    assert_ok(&build_layer(dir.path(), &cache, &offline));
}

#[test]
fn tar_gz_members_and_plain_files_by_file_url() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o755);
    h.set_mtime(123);
    h.set_cksum();
    b.append_data(&mut h, "tflint", &b"bin"[..]).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&b.into_inner().unwrap()).unwrap();
    let tgz = gz.finish().unwrap();
    fs::write(dir.path().join("t.tgz"), &tgz).unwrap();
    fs::write(dir.path().join("notes.txt"), b"hi").unwrap();
    let base = dir.path().display();
    let recipe = format!(
        "[image]\nname = \"t\"\n[[layer]]\n[[layer.entry]]\nurl = \"file://{base}/t.tgz\"\nsha256 = \"{}\"\nextract = \"tflint\"\ndest = \"/usr/bin/\"\n[[layer.entry]]\nurl = \"file://{base}/notes.txt\"\nsha256 = \"{}\"\ndest = \"/doc/\"\n",
        sha256(&tgz),
        sha256(b"hi")
    );
    assert_ok(&build_layer(dir.path(), &dir.path().join("c"), &recipe));
    let entries = layer_entries(&dir.path().join("out"));
    let find = |p: &str| entries.iter().find(|e| e.0 == p).unwrap().clone();
    assert_eq!(find("usr/bin/tflint").1, 0o755, "executable in the archive");
    assert_eq!(
        find("usr/bin/tflint").2,
        0,
        "the build's time, not the archive's"
    );
    assert_eq!(find("doc/notes.txt").1, 0o644);
    assert_eq!(find("doc/notes.txt").3, b"hi");
}

#[test]
fn unpinned_and_mismatched_downloads_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("f"), b"data").unwrap();
    let url = format!("file://{}/f", dir.path().display());
    let head = "[image]\nname = \"t\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n[[layer]]\n[[layer.entry]]\n";
    let cache = dir.path().join("c");
    let r = build_layer(
        dir.path(),
        &cache,
        &format!("{head}url = \"{url}\"\ndest = \"/f\"\n"),
    );
    assert_code(&r, 2);
    assert!(r.stderr.contains("no sha256"), "{}", r.stderr);

    let by_arch = format!(
        "{head}url = \"{url}\"\nsha256 = {{ amd64 = \"{}\" }}\ndest = \"/f\"\n",
        sha256(b"data")
    );
    let r = build_layer(dir.path(), &cache, &by_arch);
    assert_code(&r, 2);
    assert!(
        r.stderr.contains("no sha256 for ARCH \"arm64\""),
        "{}",
        r.stderr
    );

    let wrong = sha256(b"other");
    let r = build_layer(
        dir.path(),
        &cache,
        &format!("{head}url = \"{url}\"\nsha256 = \"{wrong}\"\ndest = \"/f\"\n"),
    );
    assert_code(&r, 1);
    for needle in [url.as_str(), wrong.as_str(), &sha256(b"data")] {
        assert!(r.stderr.contains(needle), "{needle}: {}", r.stderr);
    }
    let r = build_layer(
        dir.path(),
        &cache,
        &format!("{head}src = \"f\"\nsha256 = \"{wrong}\"\ndest = \"/f\"\n"),
    );
    assert_code(&r, 2);

    // Refused at the line, before any download: plain http to a remote
    // host, and an `extract` that names no file.
    let good = sha256(b"data");
    for (entry, said) in [
        (
            format!("url = \"http://example.com/f\"\nsha256 = \"{good}\"\ndest = \"/f\"\n"),
            "recipe.toml:6:7: url \"http://example.com/f\": plain http",
        ),
        (
            format!("url = \"{url}\"\nsha256 = \"{good}\"\nextract = \"..\"\ndest = \"/etc/\"\n"),
            "recipe.toml:8:11: extract \"..\" does not name a file",
        ),
        (
            format!("url = \"{url}/..\"\nsha256 = \"{good}\"\ndest = \"/opt/\"\n"),
            "recipe.toml:8:8: dest \"/opt/\" ends with `/` but the url names no file (its last part is \"..\")",
        ),
        (
            format!("url = \"{url}/.?x=1\"\nsha256 = \"{good}\"\ndest = \"/opt/\"\n"),
            "recipe.toml:8:8: dest \"/opt/\" ends with `/` but the url names no file (its last part is \".\")",
        ),
    ] {
        let r = build_layer(dir.path(), &cache, &format!("{head}{entry}"));
        assert_code(&r, 2);
        assert!(r.stderr.contains(said), "{}", r.stderr);
    }
}

/// A loopback HTTP server that answers every request with a redirect to
/// `location`; it counts the requests.
fn redirect_to(location: &'static str) -> (String, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/tool.zip", listener.local_addr().unwrap());
    let count: Arc<Mutex<usize>> = Arc::default();
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            read_head(&mut s);
            *seen.lock().unwrap() += 1;
            let head = format!(
                "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = s.write_all(head.as_bytes());
        }
    });
    (url, count)
}

/// Figure: a download whose loopback server redirects it to plain http on
/// another host is refused as the URL itself would be (exit 2, naming the
/// address, nothing asked of that host), and so is a redirect to another
/// scheme; the server was asked once each time.
#[test]
fn a_redirect_is_followed_only_where_the_url_could_point() {
    for (location, said) in [
        (
            "http://example.invalid/tool.zip",
            "plain http is only allowed to a loopback address",
        ),
        (
            "ftp://127.0.0.1/tool.zip",
            "scheme \"ftp\" is not supported",
        ),
    ] {
        let (url, count) = redirect_to(location);
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let r = build_layer(
            dir.path(),
            &cache,
            &format!(
                "[image]\nname = \"t\"\n[[layer]]\n[[layer.entry]]\nurl = \"{url}\"\nsha256 = \"{}\"\ndest = \"/f\"\n",
                sha256(b"data")
            ),
        );
        assert_code(&r, 2);
        assert!(r.stderr.contains(said), "{}", r.stderr);
        assert!(r.stderr.contains(location), "{}", r.stderr);
        assert_eq!(*count.lock().unwrap(), 1);
    }
}

/// A `dest` ending in `/` names the file after the url's last part; a url
/// whose last part is `..` (or `.`, or empty) names none, which is said at
/// the recipe's line before the server is asked, not found when the layer
/// is written.
#[test]
fn a_url_that_names_no_file_is_refused_before_it_is_downloaded() {
    let (url, seen) = serve(b"data".to_vec());
    let dir = tempfile::tempdir().unwrap();
    let r = build_layer(
        dir.path(),
        &dir.path().join("cache"),
        &format!(
            "[image]\nname = \"t\"\n[[layer]]\n[[layer.entry]]\nurl = \"{url}/..\"\nsha256 = \"{}\"\ndest = \"/opt/\"\n",
            sha256(b"data")
        ),
    );
    assert_code(&r, 2);
    assert!(
        r.stderr.contains(
            "recipe.toml:7:8: dest \"/opt/\" ends with `/` but the url names no file (its last part is \"..\")"
        ),
        "{}",
        r.stderr
    );
    assert!(seen.lock().unwrap().is_empty(), "the server was asked");
    assert!(!dir.path().join("out").exists());
}

/// Figure: the SBOM `build --sbom -o` keeps in the layout (which `push`
/// attaches later) lists a downloaded file with its URL and sha256, as the
/// SBOM of `build --push` does.
/// The packages of the SPDX SBOM kept in layout `out`.
pub fn spdx_packages(out: &Path) -> Vec<serde_json::Value> {
    fs::read_dir(out.join("blobs/sha256"))
        .unwrap()
        .filter_map(|b| serde_json::from_slice(&fs::read(b.unwrap().path()).unwrap()).ok())
        .filter_map(|doc: serde_json::Value| {
            doc.get("spdxVersion").and(doc.get("packages")).cloned()
        })
        .flat_map(|p| p.as_array().cloned().unwrap_or_default())
        .collect()
}

#[test]
fn a_layouts_sbom_lists_the_downloads() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("f"), b"data").unwrap();
    let url = format!("file://{}/f", dir.path().display());
    let recipe = format!(
        "[image]\nname = \"t\"\n[[layer]]\n[[layer.entry]]\nurl = \"{url}\"\nsha256 = \"{}\"\ndest = \"/f\"\n",
        sha256(b"data")
    );
    write(&dir.path().join("recipe.toml"), &recipe);
    let r = run(boxwright()
        .env("XDG_CACHE_HOME", dir.path().join("cache"))
        .args(["build", "--quiet", "--sbom", "spdx", "-o"])
        .arg(dir.path().join("out"))
        .arg(dir.path().join("recipe.toml")));
    assert_code(&r, 0);
    let packages = spdx_packages(&dir.path().join("out"));
    let download = packages
        .iter()
        .find(|p| p["name"] == url.as_str())
        .unwrap_or_else(|| panic!("no package downloaded from {url}: {packages:#?}"));
    let hex = sha256(b"data").trim_start_matches("sha256:").to_string();
    assert_eq!(download["checksums"][0]["checksumValue"], hex.as_str());
}

/// Figure: a URL's `user:password@` is sent (HTTP Basic) but never shown:
/// not in a download's or a checksum's error, nor with `--verbose`, nor in `build --json`,
/// nor in the SBOM kept in the layout, where the URL is named without it.
#[test]
fn a_urls_credentials_are_never_shown() {
    let secret = "s3cret-download-password";
    let (url, _) = serve(b"data".to_vec());
    let with = url.replace("http://", &format!("http://deploy:{secret}@"));
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let recipe = |sha: &str| {
        format!("[image]\nname = \"t\"\n[[layer]]\n[[layer.entry]]\nurl = \"{with}\"\nsha256 = \"{sha}\"\ndest = \"/f\"\n")
    };
    // The server cuts its first answer; the second is resumed and does
    // not match the pin.
    for said in ["end of file", "checksum mismatch"] {
        let r = build_layer(dir.path(), &cache, &recipe(&sha256(b"other")));
        assert_code(&r, 1);
        assert!(r.stderr.contains(said), "{}", r.stderr);
        assert!(r.stderr.contains(&url), "{}", r.stderr);
        assert!(!r.stderr.contains(secret), "{}", r.stderr);
    }
    write(&dir.path().join("recipe.toml"), &recipe(&sha256(b"data")));
    let r = run(boxwright()
        .env("XDG_CACHE_HOME", &cache)
        .args(["build", "--verbose", "--json", "--sbom", "spdx", "-o"])
        .arg(dir.path().join("out"))
        .arg(dir.path().join("recipe.toml")));
    assert_code(&r, 0);
    assert!(!r.stderr.contains(secret), "{}", r.stderr);
    assert!(!r.stdout.contains(secret), "{}", r.stdout);
    let mut sbom_names_the_url = false;
    for blob in fs::read_dir(dir.path().join("out/blobs/sha256")).unwrap() {
        let bytes = fs::read(blob.unwrap().path()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(secret), "{text}");
        sbom_names_the_url |= text.contains(&url);
    }
    assert!(sbom_names_the_url, "the SBOM does not name {url}");
}

//! `boxwright verify`, `tags` and `copy` against real `docker-registry`
//! instances (one behind bearer tokens, GHCR-like; one behind basic auth,
//! Docker-Hub-like), each behind a counting fault proxy. Every test states
//! the figure it checks.
//!
//! The reference registry (distribution 2.8) ignores `?n=` on tag lists and
//! sends no `Link` header, so tag pagination is checked against the scripted
//! tag server of `support` (distribution v3 / GHCR behaviour: `n`, `last`,
//! `Link: <...>; rel="next"`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::{assert_code, boxwright, noise, ok, run, sha256, write};
use crate::pair::{blob_upload_bytes, body_bytes, uploads_by_digest, Pair};
use crate::support::{skopeo, tempdir, FaultProxy, LogEntry, Registry, Scripted};

/// What a layout holds: root digest, manifests (digest -> size), unique
/// blobs (digest -> size), and per platform its manifest digest and blobs.
struct Content {
    layout: PathBuf,
    digest: String,
    manifests: BTreeMap<String, u64>,
    blobs: BTreeMap<String, u64>,
    platforms: BTreeMap<String, (String, BTreeMap<String, u64>)>,
}

impl Content {
    fn blob_bytes(&self) -> u64 {
        self.blobs.values().sum()
    }
    fn manifest_bytes(&self) -> u64 {
        self.manifests.values().sum()
    }
}

fn read_blob(layout: &Path, digest: &str) -> Vec<u8> {
    std::fs::read(layout.join("blobs/sha256").join(&digest[7..])).unwrap()
}

fn read_content(layout: &Path) -> Content {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let top = index["manifests"][0].clone();
    let digest = top["digest"].as_str().unwrap().to_string();
    let mut c = Content {
        layout: layout.to_path_buf(),
        digest: digest.clone(),
        manifests: BTreeMap::new(),
        blobs: BTreeMap::new(),
        platforms: BTreeMap::new(),
    };
    let bytes = read_blob(layout, &digest);
    c.manifests.insert(digest.clone(), bytes.len() as u64);
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    let children: Vec<(String, Option<String>)> = match v["manifests"].as_array() {
        Some(ms) => ms
            .iter()
            .map(|m| {
                (
                    m["digest"].as_str().unwrap().to_string(),
                    Some(format!(
                        "{}/{}",
                        m["platform"]["os"].as_str().unwrap(),
                        m["platform"]["architecture"].as_str().unwrap()
                    )),
                )
            })
            .collect(),
        None => vec![(digest.clone(), None)],
    };
    for (d, platform) in children {
        let bytes = read_blob(layout, &d);
        c.manifests.insert(d.clone(), bytes.len() as u64);
        let m: Value = serde_json::from_slice(&bytes).unwrap();
        let mut own = BTreeMap::new();
        for b in std::iter::once(&m["config"]).chain(m["layers"].as_array().unwrap()) {
            own.insert(
                b["digest"].as_str().unwrap().to_string(),
                b["size"].as_u64().unwrap(),
            );
        }
        c.blobs.extend(own.clone());
        if let Some(p) = platform {
            c.platforms.insert(p, (d, own));
        }
    }
    c
}

/// Build a recipe: one shared noise layer; with `two_platforms`, an index
/// for linux/amd64 and linux/arm64 plus one per-architecture layer.
fn build(dir: &Path, seed: u64, two_platforms: bool) -> Content {
    std::fs::write(dir.join("shared.bin"), noise(1 << 20, seed)).unwrap();
    let mut text = String::from("tags = [\"1.0\"]\n\n[image]\nname = \"app\"\n");
    if two_platforms {
        text.push_str("platforms = [\"linux/amd64\", \"linux/arm64\"]\n");
        for (i, arch) in ["amd64", "arm64"].iter().enumerate() {
            std::fs::write(
                dir.join(format!("tool-{arch}.bin")),
                noise(300_000 + i * 1000, seed * 10 + i as u64),
            )
            .unwrap();
        }
    }
    text.push_str(
        "\n[[layer]]\nname = \"shared\"\n\n[[layer.entry]]\nsrc = \"shared.bin\"\ndest = \"/data/shared.bin\"\n",
    );
    if two_platforms {
        text.push_str(
            "\n[[layer]]\nname = \"tool\"\n\n[[layer.entry]]\nsrc = \"tool-${ARCH}.bin\"\ndest = \"/usr/local/bin/tool\"\nmode = 0o755\n",
        );
    }
    let recipe = dir.join("recipe.toml");
    write(&recipe, &text);
    let layout = dir.join("layout");
    let digest = ok(boxwright()
        .args(["build", "--quiet", "-o"])
        .arg(&layout)
        .arg(&recipe));
    let c = read_content(&layout);
    assert_eq!(c.digest, digest);
    c
}

fn push(pair: &Pair, c: &Content, to: &[&String]) {
    let mut cmd = pair.cmd();
    cmd.args(["push", "--quiet"]).arg(&c.layout);
    for t in to {
        cmd.args(["--to", t]);
    }
    ok(&mut cmd);
}

fn is_manifest_get(e: &LogEntry) -> bool {
    e.method == "GET" && e.path.contains("/manifests/")
}

fn remote_digest(pair: &Pair, p: &FaultProxy, reference: &str) -> String {
    let creds = pair.creds(p);
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        &creds,
        &format!("docker://{reference}"),
    ]);
    sha256(raw.as_bytes())
}

#[test]
fn verify_passes_on_dual_push_with_head_only_then_names_the_mismatch_and_the_missing() {
    let pair = Pair::start();
    let dir = tempdir();
    let x = build(dir.path(), 1, false);
    let (ra, rb) = (
        format!("{}/acme/app:latest", pair.a.host()),
        format!("{}/acme/app:latest", pair.b.host()),
    );
    push(&pair, &x, &[&ra, &rb]);
    pair.reset();

    // Figure: exit 0, both rows show the pushed digest; one manifest HEAD
    // per registry and not a single manifest GET.
    let r = pair.run(&["verify", &ra, &rb]);
    assert_code(&r, 0);
    assert_eq!(r.stdout.matches(&x.digest).count(), 2, "{}", r.stdout);
    assert!(r.stdout.starts_with("REFERENCE"), "{}", r.stdout);
    for p in [&pair.a, &pair.b] {
        let log = p.log();
        assert!(!log.iter().any(is_manifest_get), "{log:#?}");
        let heads = log
            .iter()
            .filter(|e| e.method == "HEAD" && e.path.contains("/manifests/"))
            .count();
        assert_eq!(heads, 1, "{log:#?}");
        assert_eq!(body_bytes(p), 0);
    }
    let j: Value = serde_json::from_str(&pair.run(&["verify", "--json", &ra, &rb]).stdout).unwrap();
    assert_eq!(j["ok"], true);
    assert_eq!(j["digest"], x.digest.as_str());
    assert_eq!(
        j["references"][0]["media_type"],
        "application/vnd.oci.image.manifest.v1+json"
    );

    // A different image on B's latest: exit 1, B named with its digest.
    let dir2 = tempdir();
    let y = build(dir2.path(), 2, false);
    assert_ne!(x.digest, y.digest);
    push(&pair, &y, &[&rb]);
    let ra1 = format!("{}/acme/app:1.0", pair.a.host());
    push(&pair, &x, &[&ra1]);
    let r = pair.run(&["verify", &ra, &rb, &ra1]);
    assert_code(&r, 1);
    assert!(
        r.stderr.contains(&format!("{rb} names {}", y.digest)),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains(&x.digest), "{}", r.stderr);
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with(&rb) && l.ends_with("DIFFERS")),
        "{}",
        r.stdout
    );
    let j: Value =
        serde_json::from_str(&pair.run(&["verify", "--json", &ra, &rb, &ra1]).stdout).unwrap();
    assert_eq!(j["ok"], false);
    assert_eq!(j["mismatched"], serde_json::json!([rb]));
    assert_eq!(j["digest"], x.digest.as_str(), "the majority's digest");

    // A missing tag: exit 1, named.
    let gone = format!("{}/acme/app:9.9.9", pair.a.host());
    let r = pair.run(&["verify", &ra, &gone]);
    assert_code(&r, 1);
    assert!(
        r.stderr.contains(&format!("not found: {gone}")),
        "{}",
        r.stderr
    );
    assert!(r.stdout.contains("MISSING"), "{}", r.stdout);

    // Bad input: exit 2.
    assert_code(&pair.run(&["verify", "Not/A/Ref:"]), 2);
}

#[test]
fn verify_checks_a_tag_with_a_digest_as_both() {
    let pair = Pair::start();
    let dir = tempdir();
    let x = build(dir.path(), 8, false);
    let (ra, rb) = (
        format!("{}/acme/app:latest", pair.a.host()),
        format!("{}/acme/app:latest", pair.b.host()),
    );
    push(&pair, &x, &[&ra, &rb]);
    let a_pinned = format!("{}/acme/app@{}", pair.a.host(), x.digest);
    let b_pinned = format!("{rb}@{}", x.digest);
    // Figure: while B's latest names x, the tag with its digest passes.
    let r = pair.run(&["verify", "--json", &a_pinned, &b_pinned]);
    assert_code(&r, 0);
    let j: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(j["ok"], true, "{j}");

    // B's latest moves to y; x's manifest stays in B's repository.
    let dir2 = tempdir();
    let y = build(dir2.path(), 9, false);
    push(&pair, &y, &[&rb]);
    pair.reset();
    // Figure: latest@x on B differs and reports y, the digest its tag
    // names; exit 1; x is still the common digest.
    let r = pair.run(&["verify", "--json", &a_pinned, &ra, &b_pinned]);
    assert_code(&r, 1);
    let j: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(j["ok"], false, "{j}");
    assert_eq!(j["digest"], x.digest.as_str(), "{j}");
    assert_eq!(j["references"][2]["reference"], b_pinned.as_str(), "{j}");
    assert_eq!(j["references"][2]["status"], "differs", "{j}");
    assert_eq!(j["references"][2]["digest"], y.digest.as_str(), "{j}");
    assert_eq!(j["mismatched"], serde_json::json!([b_pinned]), "{j}");
    // Figure: B was asked by tag, with one HEAD and no GET.
    let log = pair.b.log();
    let heads: Vec<&str> = log
        .iter()
        .filter(|e| e.method == "HEAD" && e.path.contains("/manifests/"))
        .map(|e| e.path.as_str())
        .collect();
    assert_eq!(heads, ["/v2/acme/app/manifests/latest"], "{log:#?}");
    assert!(!log.iter().any(is_manifest_get), "{log:#?}");
    // The table shows what the tag names on the row marked DIFFERS.
    let r = pair.run(&["verify", &a_pinned, &b_pinned]);
    assert_code(&r, 1);
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with(&b_pinned) && l.contains(&y.digest) && l.ends_with("DIFFERS")),
        "{}",
        r.stdout
    );

    // Figure: a tag that is not there, though its digest is, is missing.
    let gone = format!("{}/acme/app:9.9.9@{}", pair.b.host(), x.digest);
    let r = pair.run(&["verify", "--json", &a_pinned, &gone]);
    assert_code(&r, 1);
    let j: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(j["references"][1]["status"], "missing", "{j}");
    assert_eq!(j["missing"], serde_json::json!([gone]), "{j}");
}

#[test]
fn verify_verbose_shows_docker_hub_ratelimit_remaining() {
    let pair = Pair::start();
    let dir = tempdir();
    let x = build(dir.path(), 3, false);
    let rb = format!("{}/acme/app:1.0", pair.b.host());
    push(&pair, &x, &[&rb]);
    pair.b
        .configure(|c| c.extra_headers = vec![("ratelimit-remaining".into(), "42;w=21600".into())]);
    // Figure: the remaining quota (42) is on stderr with --verbose only.
    let r = pair.run(&["verify", "--verbose", &rb]);
    assert_code(&r, 0);
    assert!(
        r.stderr.contains("ratelimit-remaining 42;w=21600"),
        "{}",
        r.stderr
    );
    let r = pair.run(&["verify", &rb]);
    assert!(!r.stderr.contains("ratelimit"), "{}", r.stderr);
}

#[test]
fn tags_lists_both_registries_side_by_side() {
    let pair = Pair::start();
    let dir = tempdir();
    let x = build(dir.path(), 4, false);
    let mut to = Vec::new();
    for p in [&pair.a, &pair.b] {
        for t in ["1.9", "1.10", "latest"] {
            to.push(format!("{}/acme/app:{t}", p.host()));
        }
    }
    to.push(format!("{}/acme/app:only-a", pair.a.host()));
    push(&pair, &x, &to.iter().collect::<Vec<_>>());
    let (a, b) = (
        format!("{}/acme/app", pair.a.host()),
        format!("{}/acme/app", pair.b.host()),
    );
    // Figure: the same three tags in both (natural order), only-a in A only.
    let r = pair.run(&["tags", "--json", &a, &b]);
    assert_code(&r, 0);
    let j: Value = serde_json::from_str(&r.stdout).unwrap();
    let rows: Vec<(String, Vec<bool>)> = j["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["tag"].as_str().unwrap().to_string(),
                serde_json::from_value(t["present"].clone()).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("1.9".to_string(), vec![true, true]),
            ("1.10".to_string(), vec![true, true]),
            ("latest".to_string(), vec![true, true]),
            ("only-a".to_string(), vec![true, false]),
        ]
    );
    assert_eq!(j["repositories"][0]["repository"], a.as_str());
    // With digests: every row names the pushed digest (by HEAD, no GET).
    pair.reset();
    let r = pair.run(&["tags", "--digests", &a, &b]);
    assert_code(&r, 0);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(
        lines[0].starts_with("TAG") && lines[0].contains(&b),
        "{}",
        r.stdout
    );
    let short = &x.digest[..7 + 12];
    assert_eq!(lines.len(), 5, "{}", r.stdout);
    for l in &lines[1..4] {
        assert_eq!(l.matches(short).count(), 2, "{l}");
        assert!(!l.ends_with('*'), "{l}");
    }
    assert!(
        lines[4].starts_with("only-a") && lines[4].ends_with('*'),
        "{}",
        lines[4]
    );
    assert!(
        r.stderr.contains("not the same everywhere: only-a"),
        "{}",
        r.stderr
    );
    for p in [&pair.a, &pair.b] {
        assert!(!p.log().iter().any(is_manifest_get));
    }
    // A tag where a repository is expected: exit 2.
    assert_code(&pair.run(&["tags", &format!("{a}:1.9")]), 2);
    // A repository that does not exist (a typo) is named, exit 1: it is
    // not a repository without tags.
    let typo = format!("{}/acme/aap", pair.b.host());
    let r = pair.run(&["tags", &a, &typo]);
    assert_code(&r, 1);
    assert!(
        r.stderr.contains(&format!("listing tags in {typo}")) && r.stderr.contains("NAME_UNKNOWN"),
        "{}",
        r.stderr
    );
    // Figure: its presence is null (not known) in every row, and every tag
    // of A is the same in the one repository that could be listed, with
    // digests too; exit 1 all the same.
    for digests in [false, true] {
        let mut args = vec!["tags", "--json", &a, &typo];
        if digests {
            args.push("--digests");
        }
        let r = pair.run(&args);
        assert_code(&r, 1);
        let j: Value = serde_json::from_str(&r.stdout).unwrap();
        assert!(j["repositories"][1]["error"].is_string(), "{j}");
        assert_eq!(j["repositories"][1]["tags"], Value::Null, "{j}");
        assert_eq!(j["repositories"][0]["error"], Value::Null, "{j}");
        assert_eq!(
            j["repositories"][0]["tags"].as_array().map(Vec::len),
            Some(4)
        );
        let rows = j["tags"].as_array().unwrap();
        assert_eq!(rows.len(), 4, "{j}");
        for t in rows {
            assert_eq!(t["present"], serde_json::json!([true, null]), "{t}");
            assert_eq!(t["same"], true, "{t}");
            if digests {
                assert_eq!(t["digests"], serde_json::json!([x.digest, null]), "{t}");
            }
        }
    }
    // Figure: in the table its column is `?` on every row, and no row is
    // marked `*` for it.
    let r = pair.run(&["tags", &a, &typo]);
    assert_code(&r, 1);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{}", r.stdout);
    for l in &lines[1..] {
        let cells: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(cells[1..], ["yes", "?"], "{}", r.stdout);
    }
}

/// The tag-list requests `srv` received (path and query).
fn tag_requests(srv: &Scripted) -> Vec<String> {
    srv.requests()
        .into_iter()
        .filter(|r| r.path().ends_with("/tags/list"))
        .map(|r| r.target)
        .collect()
}

#[test]
fn tags_follow_link_pagination_with_n_and_last() {
    let tags: Vec<String> = (1..=7).map(|i| format!("1.{i}")).collect();
    let srv = Scripted::tag_pages("acme/many", tags.clone());
    let repo = format!("{}/acme/many", srv.host());
    // Figure: 7 tags in pages of 3 -> 3 requests: ?n=3, then the Link URLs.
    let r = run(boxwright().args(["tags", "--json", "--page-size", "3", &repo]));
    assert_code(&r, 0);
    let j: Value = serde_json::from_str(&r.stdout).unwrap();
    let got: Vec<String> = serde_json::from_value(j["repositories"][0]["tags"].clone()).unwrap();
    assert_eq!(got, tags);
    assert_eq!(
        tag_requests(&srv),
        [
            "/v2/acme/many/tags/list?n=3",
            "/v2/acme/many/tags/list?n=3&last=1.3",
            "/v2/acme/many/tags/list?n=3&last=1.6",
        ]
    );
    // Figure: without --page-size, the server's own page size (2) -> 4
    // requests, all followed through Link.
    let srv2 = Scripted::tag_pages("acme/many", tags.clone());
    let repo2 = format!("{}/acme/many", srv2.host());
    let r = run(boxwright().args(["tags", &repo2]));
    assert_code(&r, 0);
    assert_eq!(r.stdout.lines().count(), 1 + 7, "{}", r.stdout);
    assert_eq!(tag_requests(&srv2).len(), 4, "{:?}", tag_requests(&srv2));
}

/// Figure: of 5 listed names, 2 are tags; the 3 others (a newline and an
/// escape sequence that would forge table rows, a leading '-') are left out
/// of the rows and `tags`, listed printable in `invalid_tags`, and named in
/// one warning; the listing still succeeds.
#[test]
fn tags_skips_listed_names_that_are_not_tags() {
    let listed = ["1.0", "1.1", "x\nforged  yes", "\u{1b}[2J", "-rc"];
    let srv = Scripted::tag_pages("acme/odd", listed.iter().map(|t| t.to_string()).collect());
    let repo = format!("{}/acme/odd", srv.host());
    let r = run(boxwright().args(["tags", "--json", "--page-size", "100", &repo]));
    assert_code(&r, 0);
    let j: Value = serde_json::from_str(&r.stdout).unwrap();
    let repo_json = &j["repositories"][0];
    assert_eq!(repo_json["tags"], serde_json::json!(["1.0", "1.1"]), "{j}");
    assert_eq!(
        repo_json["invalid_tags"],
        serde_json::json!(["\\u{1b}[2J", "-rc", "x\\nforged  yes"]),
        "{j}"
    );
    let rows: Vec<&str> = (j["tags"].as_array().unwrap().iter())
        .map(|t| t["tag"].as_str().unwrap())
        .collect();
    assert_eq!(rows, ["1.0", "1.1"]);
    let warnings: Vec<&str> = (r.stderr.lines())
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", r.stderr);
    assert!(
        warnings[0].contains(&repo) && warnings[0].contains(" 3 "),
        "{}",
        r.stderr
    );
    // The table: a header and one line per valid tag, nothing raw.
    let r = run(boxwright().args(["tags", "--page-size", "100", &repo]));
    assert_code(&r, 0);
    assert_eq!(r.stdout.lines().count(), 1 + 2, "{}", r.stdout);
    assert!(!r.stdout.contains('\u{1b}') && !r.stderr.contains('\u{1b}'));
}

#[test]
fn copy_index_across_registries_sends_each_blob_once_verifies_and_reruns_free() {
    let pair = Pair::start();
    let dir = tempdir();
    let img = build(dir.path(), 5, true);
    assert_eq!(img.platforms.len(), 2);
    assert_eq!(img.manifests.len(), 3, "index + two platform manifests");
    let src = format!("{}/acme/r2d:1.0", pair.a.host());
    push(&pair, &img, &[&src]);
    pair.reset();

    // A -> B, destination tag inherited from the source.
    let cache = tempdir();
    let dst = format!("{}/acme/r2d", pair.b.host());
    let r = pair.run(&[
        "copy",
        "--json",
        "--cache-dir",
        cache.path().to_str().unwrap(),
        &src,
        &dst,
    ]);
    assert_code(&r, 0);
    let rep: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(rep["digest"], img.digest.as_str());
    let b_log = pair.b.log();
    // Figure: B received exactly the unique blob bytes once plus each
    // manifest once (platform manifests by digest, the index by tag).
    assert_eq!(
        body_bytes(&pair.b),
        img.blob_bytes() + img.manifest_bytes(),
        "{b_log:#?}"
    );
    let ups = uploads_by_digest(&b_log);
    assert_eq!(ups.len(), img.blobs.len(), "{ups:?}");
    assert!(ups.values().all(|&n| n == 1), "{ups:?}");
    // Figure: no manifest PUT before the last blob request on B; the
    // index (by tag) is the last PUT.
    let first_manifest = b_log
        .iter()
        .position(|e| e.method == "PUT" && e.path.contains("/manifests/"))
        .unwrap();
    let last_blob = b_log
        .iter()
        .rposition(|e| e.path.contains("/blobs/"))
        .unwrap();
    assert!(last_blob < first_manifest, "{b_log:#?}");
    let last_put = b_log.iter().rfind(|e| e.method == "PUT").unwrap();
    assert!(last_put.path.ends_with("/manifests/1.0"), "{last_put:?}");
    // Figure: A served each blob once and each manifest once (by digest).
    let a_log = pair.a.log();
    let blob_gets = a_log
        .iter()
        .filter(|e| e.method == "GET" && e.path.contains("/blobs/"))
        .count();
    assert_eq!(blob_gets, img.blobs.len(), "{a_log:#?}");
    let manifest_gets: Vec<&LogEntry> = a_log.iter().filter(|e| is_manifest_get(e)).collect();
    assert_eq!(manifest_gets.len(), 3, "{manifest_gets:#?}");
    assert!(manifest_gets
        .iter()
        .all(|e| e.path.contains("/manifests/sha256:")));
    assert_eq!(rep["blobs_downloaded"], img.blobs.len());
    assert_eq!(rep["bytes_downloaded"], img.blob_bytes());
    // The cache holds exactly the image's blobs.
    let mut cached: Vec<String> = std::fs::read_dir(cache.path().join("sha256"))
        .unwrap()
        .map(|e| format!("sha256:{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    cached.sort();
    assert_eq!(cached, img.blobs.keys().cloned().collect::<Vec<_>>());

    // The copy verifies, and skopeo reads the same bytes.
    let dst_tagged = format!("{dst}:1.0");
    let v = pair.run(&["verify", &src, &dst_tagged]);
    assert_code(&v, 0);
    assert_eq!(remote_digest(&pair, &pair.b, &dst_tagged), img.digest);

    // Figure: a re-run with --no-referrers sends zero bytes and GETs
    // nothing (HEADs only).
    pair.reset();
    let r = pair.run(&["copy", "--json", "--no-referrers", &src, &dst]);
    assert_code(&r, 0);
    let rep: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(rep["up_to_date"], true);
    assert_eq!(rep["referrers"], Value::Null);
    for p in [&pair.a, &pair.b] {
        let log = p.log();
        assert_eq!(body_bytes(p), 0, "{log:#?}");
        assert!(
            log.iter()
                .all(|e| e.method == "HEAD" || (e.method == "GET" && e.path == "/v2/")),
            "{log:#?}"
        );
    }
    // Figure: a plain re-run also sends zero bytes; it asks the source what
    // is attached to the index and to each platform manifest (one GET of
    // the index to list them), finds nothing and asks B nothing more.
    pair.reset();
    let r = pair.run(&["copy", "--json", &src, &dst]);
    assert_code(&r, 0);
    let rep: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(rep["up_to_date"], true);
    assert_eq!(rep["referrers"]["artifacts"], 0);
    assert_eq!(rep["referrers"]["subjects"].as_array().unwrap().len(), 3);
    let a_log = pair.a.log();
    assert_eq!(body_bytes(&pair.a) + body_bytes(&pair.b), 0);
    let a_gets: Vec<&LogEntry> = a_log
        .iter()
        .filter(|e| e.method == "GET" && e.path != "/v2/")
        .collect();
    let (manifest_gets, listings): (Vec<&LogEntry>, Vec<&LogEntry>) =
        a_gets.iter().partition(|e| is_manifest_get(e));
    assert_eq!(manifest_gets.len(), 1, "{a_gets:#?}");
    assert!(manifest_gets[0].path.ends_with(&img.digest), "{a_gets:#?}");
    assert_eq!(listings.len(), 3, "{a_gets:#?}");
    assert!(listings.iter().all(|e| e.path.contains("/referrers/")));
    assert!(pair
        .b
        .log()
        .iter()
        .all(|e| e.method == "HEAD" || (e.method == "GET" && e.path == "/v2/")));

    // Figure: a copy to another repository of A mounts every blob from the
    // source repository: zero blob bytes, nothing downloaded.
    pair.reset();
    let mirror = format!("{}/mirror/r2d:1.0", pair.a.host());
    let fresh = tempdir();
    let r = pair.run(&[
        "copy",
        "--json",
        "--cache-dir",
        fresh.path().to_str().unwrap(),
        &src,
        &mirror,
    ]);
    assert_code(&r, 0);
    let rep: Value = serde_json::from_str(&r.stdout).unwrap();
    let log = pair.a.log();
    assert_eq!(blob_upload_bytes(&log), 0, "{log:#?}");
    let mounts: Vec<&LogEntry> = log
        .iter()
        .filter(|e| e.method == "POST" && e.query.as_deref().is_some_and(|q| q.contains("mount=")))
        .collect();
    assert_eq!(mounts.len(), img.blobs.len(), "{log:#?}");
    assert!(mounts.iter().all(|e| e.status == Some(201)), "{mounts:#?}");
    assert_eq!(rep["blobs_downloaded"], 0);
    assert_eq!(rep["push"]["targets"][0]["blobs_mounted"], img.blobs.len());
    assert!(!log
        .iter()
        .any(|e| e.method == "GET" && e.path.contains("/blobs/")));
    assert_eq!(body_bytes(&pair.a), img.manifest_bytes());
    assert_code(&pair.run(&["verify", &src, &mirror]), 0);
}

#[test]
fn copy_one_platform_sends_only_its_blobs() {
    let pair = Pair::start();
    let dir = tempdir();
    let img = build(dir.path(), 6, true);
    let src = format!("{}/acme/r2d:1.0", pair.a.host());
    push(&pair, &img, &[&src]);
    pair.reset();
    let dst = format!("{}/acme/r2d-arm64:1.0", pair.b.host());
    let r = pair.run(&["copy", "--platform", "linux/arm64", &src, &dst]);
    assert_code(&r, 0);
    let (arm_digest, arm_blobs) = &img.platforms["linux/arm64"];
    // Figure: the destination names the arm64 manifest; B received its
    // blobs and that one manifest, nothing of amd64.
    assert_eq!(r.stdout.trim(), arm_digest);
    assert_eq!(remote_digest(&pair, &pair.b, &dst), *arm_digest);
    assert_eq!(
        body_bytes(&pair.b),
        arm_blobs.values().sum::<u64>() + img.manifests[arm_digest]
    );
    // An absent platform is bad input naming what is offered.
    let r = pair.run(&["copy", "--platform", "linux/s390x", &src, &dst]);
    assert_code(&r, 2);
    assert!(
        r.stderr.contains("linux/amd64, linux/arm64"),
        "{}",
        r.stderr
    );

    // A single image is copied for the platform it is of, and refused for
    // another, with nothing sent.
    let single = tempdir();
    let one = build(single.path(), 9, false);
    let src = format!("{}/acme/one:1.0", pair.a.host());
    push(&pair, &one, &[&src]);
    let dst = format!("{}/acme/one:1.0", pair.b.host());
    pair.reset();
    let r = pair.run(&["copy", "--platform", "linux/arm64", &src, &dst]);
    assert_code(&r, 2);
    assert!(
        r.stderr
            .contains("is a single linux/amd64 image, not linux/arm64"),
        "{}",
        r.stderr
    );
    assert_eq!(body_bytes(&pair.b), 0);
    let r = pair.run(&["copy", "--json", "--platform", "linux/amd64", &src, &dst]);
    assert_code(&r, 0);
    let rep: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(rep["digest"], one.digest.as_str());
    assert_eq!(rep["platform"], "linux/amd64");
    assert_eq!(remote_digest(&pair, &pair.b, &dst), one.digest);
    let r = pair.run(&["copy", "--json", "--platform", "linux/amd64", &src, &dst]);
    assert_code(&r, 0);
    let rep: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(rep["up_to_date"], true, "{rep:#}");
}

#[test]
fn copy_to_two_registries_downloads_each_blob_once() {
    let pair = Pair::start();
    let open = Registry::start();
    let c = FaultProxy::start(&open);
    let dir = tempdir();
    let img = build(dir.path(), 7, true);
    let src = format!("{}/acme/r2d:1.0", pair.a.host());
    push(&pair, &img, &[&src]);
    pair.reset();
    let cache = tempdir();
    let r = pair.run(&[
        "copy",
        "--json",
        "--cache-dir",
        cache.path().to_str().unwrap(),
        &src,
        &format!("{}/acme/r2d:1.0", pair.b.host()),
        &format!("{}/backup/r2d:1.0", c.host()),
    ]);
    assert_code(&r, 0);
    // Figure: each blob leaves A once although two registries need it;
    // each destination receives the unique blobs once plus the manifests.
    let a_log = pair.a.log();
    let gets = a_log
        .iter()
        .filter(|e| e.method == "GET" && e.path.contains("/blobs/"))
        .count();
    assert_eq!(gets, img.blobs.len(), "{a_log:#?}");
    for p in [&pair.b, &c] {
        assert_eq!(body_bytes(p), img.blob_bytes() + img.manifest_bytes());
    }
    let rep: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(rep["bytes_downloaded"], img.blob_bytes());
}

/// The copy report's `destinations` as `(reference, ok, digest, up_to_date)`.
fn destinations(rep: &Value) -> Vec<(String, bool, Value, bool)> {
    rep["destinations"]
        .as_array()
        .unwrap_or_else(|| panic!("no destinations: {rep:#}"))
        .iter()
        .map(|d| {
            (
                d["reference"].as_str().unwrap().to_string(),
                d["ok"].as_bool().unwrap(),
                d["digest"].clone(),
                d["up_to_date"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[test]
fn copy_reports_each_destination_with_its_digest_also_when_it_was_up_to_date() {
    let pair = Pair::start();
    let dir = tempdir();
    let img = build(dir.path(), 9, false);
    let src = format!("{}/acme/app:1.0", pair.a.host());
    push(&pair, &img, &[&src]);
    let backup = format!("{}/acme/app:1.0", pair.b.host());
    let second = format!("{}/acme/app-copy:1.0", pair.a.host());
    let digest = Value::from(img.digest.as_str());

    // Into B: copied, B was not up to date before.
    let r = pair.run(&["copy", "--json", "--no-referrers", &src, &backup]);
    assert_code(&r, 0);
    let rep: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(rep["up_to_date"], false, "{rep:#}");
    assert_eq!(
        destinations(&rep),
        [(backup.clone(), true, digest.clone(), false)]
    );

    // Again: nothing sent, and the destination is reported as holding the
    // digest, not left to be inferred from `push: null`.
    pair.reset();
    let r = pair.run(&["copy", "--json", "--no-referrers", &src, &backup]);
    assert_code(&r, 0);
    assert_eq!(body_bytes(&pair.b), 0);
    let rep: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(rep["up_to_date"], true, "{rep:#}");
    assert_eq!(rep["push"], Value::Null, "{rep:#}");
    assert_eq!(
        destinations(&rep),
        [(backup.clone(), true, digest.clone(), true)]
    );

    // B up to date, a new repository on A not: each is said so, both name
    // the digest afterwards.
    let r = pair.run(&["copy", "--json", "--no-referrers", &src, &backup, &second]);
    assert_code(&r, 0);
    let rep: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(rep["up_to_date"], false, "{rep:#}");
    assert_eq!(
        destinations(&rep),
        [
            (backup.clone(), true, digest.clone(), true),
            (second.clone(), true, digest.clone(), false)
        ]
    );

    // A source given by digest goes by digest only: its destination, named
    // without a tag, is reported as REPO@DIGEST, naming the digest.
    let pinned = format!("{}/acme/app@{}", pair.a.host(), img.digest);
    let untagged = format!("{}/acme/pinned", pair.b.host());
    let r = pair.run(&["copy", "--json", "--no-referrers", &pinned, &untagged]);
    assert_code(&r, 0);
    let rep: Value = serde_json::from_str(&r.stdout).unwrap();
    let by_digest = format!("{untagged}@{}", img.digest);
    assert_eq!(destinations(&rep), [(by_digest, true, digest, false)]);
}

/// The tags `boxwright tags --json` lists for `repo` (none when the
/// repository has no tag, which the registry may answer as unknown).
fn tags_of(pair: &Pair, repo: &str) -> Vec<String> {
    let r = pair.run(&["tags", "--json", repo]);
    let rep: Value = serde_json::from_str(&r.stdout).unwrap_or(Value::Null);
    let listed = &rep["repositories"][0]["tags"];
    listed
        .as_array()
        .map(|tags| {
            (tags.iter())
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `copy SRC REPO@` puts the image there by digest only: no tag is written
/// (not the source's), and the destination is reported as `REPO@DIGEST`.
#[test]
fn copy_to_repo_at_writes_no_tag_and_reports_repo_at_digest() {
    let pair = Pair::start();
    let dir = tempdir();
    let img = build(dir.path(), 12, false);
    let src = format!("{}/acme/app:1.0", pair.a.host());
    push(&pair, &img, &[&src]);
    let repo = format!("{}/acme/by-digest", pair.b.host());
    let pinned = format!("{repo}@{}", img.digest);
    let digest = Value::from(img.digest.as_str());

    let r = pair.run(&[
        "copy",
        "--json",
        "--no-referrers",
        &src,
        &format!("{repo}@"),
    ]);
    assert_code(&r, 0);
    let rep: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(rep["digest"], digest, "{rep:#}");
    assert_eq!(
        destinations(&rep),
        [(pinned.clone(), true, digest.clone(), false)]
    );
    assert_eq!(rep["push"]["targets"][0]["reference"], pinned.as_str());
    assert!(r.stderr.contains(&pinned), "{}", r.stderr);
    // Figure: B serves the digest, and the repository has no tag at all.
    assert_eq!(remote_digest(&pair, &pair.b, &pinned), img.digest);
    assert_eq!(tags_of(&pair, &repo), Vec::<String>::new());
    let tagged = pair.run(&["verify", &format!("{repo}:1.0")]);
    assert_code(&tagged, 1);

    // Again: up to date (checked by digest), reported the same way; still
    // no tag, and nothing sent.
    pair.reset();
    let r = pair.run(&[
        "copy",
        "--json",
        "--no-referrers",
        &src,
        &format!("{repo}@"),
    ]);
    assert_code(&r, 0);
    let rep: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(rep["up_to_date"], true, "{rep:#}");
    assert_eq!(destinations(&rep), [(pinned, true, digest, true)]);
    assert_eq!(body_bytes(&pair.b), 0);
    assert_eq!(tags_of(&pair, &repo), Vec::<String>::new());
    // The listing does show a tag once one is written there: only that one.
    let r = pair.run(&["copy", "--no-referrers", &src, &format!("{repo}:keep")]);
    assert_code(&r, 0);
    assert_eq!(tags_of(&pair, &repo), ["keep"]);

    // A trailing @ after a tag is refused, as `push --to` refuses it.
    let r = pair.run(&["copy", &src, &format!("{repo}:2.0@")]);
    assert_code(&r, 2);
}

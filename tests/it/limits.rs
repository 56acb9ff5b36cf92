//! Hostile registries: every answer is read with a cap, every request has a
//! deadline, and tag pagination ends. Each scripted misbehaviour must end
//! the command with exit 1, a message naming the registry, in bounded time.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::Run;
use crate::env::Env;
use crate::support::{tempdir, Registry, Scripted};

/// Run `cmd` to its end, killing it after `limit` (then the test fails).
/// Returns what it did and how long it took.
fn run_within(cmd: &mut Command, limit: Duration) -> (Run, Duration) {
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting boxwright");
    // Read the pipes on threads, so that a chatty child never blocks.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut out, &mut s).ok();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut err, &mut s).ok();
        s
    });
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let took = started.elapsed();
    let run = Run {
        code: status.code().unwrap_or(-1),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    };
    (run, took)
}

/// Exit 1 in under 40 s, the registry named on stderr along with `why`.
fn fails_naming(cmd: &mut Command, host: &str, why: &str) {
    let (r, took) = run_within(cmd, Duration::from_secs(90));
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(
        took < Duration::from_secs(40),
        "took {took:?}\n{}",
        r.stderr
    );
    assert!(r.stderr.contains(host), "{}", r.stderr);
    assert!(r.stderr.contains(why), "{}", r.stderr);
}

fn pull(env: &Env, reference: &str) -> Command {
    let out = tempdir().keep().join("out");
    let mut c = env.cmd();
    c.arg("pull")
        .arg(reference)
        .arg("-o")
        .arg(out)
        .arg("--cache-dir")
        .arg(env.cache());
    c
}

fn tags(env: &Env, repo: &str) -> Command {
    let mut c = env.cmd();
    c.args(["tags", repo]);
    c
}

/// Figures: a token realm whose answer never ends stops the pull at 64 KiB
/// (it used to be read until memory ran out: exit 134).
#[test]
fn endless_token_body() {
    let srv = Scripted::endless_token();
    let host = srv.host();
    let env = Env::new();
    fails_naming(
        &mut pull(&env, &format!("{host}/acme/app:1")),
        &host,
        "larger than 65536 bytes",
    );
}

/// Figures: a manifest whose body never ends is refused at 4 MiB.
#[test]
fn endless_manifest_body() {
    let srv = Scripted::endless_manifest();
    let host = srv.host();
    let env = Env::new();
    fails_naming(
        &mut pull(&env, &format!("{host}/acme/app:1")),
        &host,
        "larger than 4194304 bytes",
    );
}

/// Figures: a manifest trickling one byte per second fails `copy` after the
/// 30 s deadline of a document (it used to wait far longer than `pull`),
/// and `pull` in the same time.
#[test]
fn trickling_manifest() {
    let srv = Scripted::trickling_manifest();
    let host = srv.host();
    let dst = Registry::start();
    let env = Env::new();
    let mut copy = env.cmd();
    copy.args([
        "copy",
        &format!("{host}/acme/app:1"),
        &format!("{}/acme/app:1", dst.host()),
        "--cache-dir",
    ])
    .arg(env.cache());
    let mut pulling = pull(&env, &format!("{host}/acme/app:1"));
    let other = std::thread::spawn(move || {
        let (r, took) = run_within(&mut pulling, Duration::from_secs(90));
        (r, took)
    });
    fails_naming(&mut copy, &host, "not complete within 30s");
    let (r, took) = other.join().unwrap();
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        took < Duration::from_secs(40),
        "took {took:?}\n{}",
        r.stderr
    );
    assert!(r.stderr.contains(&host), "{}", r.stderr);
    assert!(r.stderr.contains("within 30s"), "{}", r.stderr);
}

/// Figures: a tag page linking to itself (`?page=0` links to `?page=0`,
/// after the first request without query) stops after two page requests.
#[test]
fn self_referencing_tag_link() {
    let srv = Scripted::tag_links(vec![0]);
    let host = srv.host();
    fails_naming(
        &mut tags(&Env::new(), &format!("{host}/acme/app")),
        &host,
        "links back to a page already read",
    );
    assert_eq!(
        srv.requests()
            .iter()
            .filter(|r| r.path().ends_with("/tags/list"))
            .count(),
        2
    );
}

/// Figures: two pages linking to each other (the first page, then
/// `?page=1`, `?page=0`, whose link goes back to `?page=1`): three page
/// requests, then the error.
#[test]
fn tag_link_cycle_of_two_pages() {
    let srv = Scripted::tag_links(vec![1, 0]);
    let host = srv.host();
    fails_naming(
        &mut tags(&Env::new(), &format!("{host}/acme/app")),
        &host,
        "links back to a page already read",
    );
    assert_eq!(
        srv.requests()
            .iter()
            .filter(|r| r.path().ends_with("/tags/list"))
            .count(),
        3
    );
}

/// Figures: a referrers API whose pages link back (the first page, then
/// `?page=1`, whose link goes back to `?page=1`) is read twice, and
/// `verify --key` fails naming the loop. The referrers API shares the tag
/// list's pager, so its other bounds (4 MiB a page, 64 MiB, 1000 pages) are
/// the ones the tag tests check.
#[test]
fn self_referencing_referrers_link() {
    let srv = Scripted::referrers_links(vec![1, 1]);
    let host = srv.host();
    let env = Env::new();
    let keys = tempdir();
    let prefix = keys.path().join("cosign");
    let mut keygen = env.cmd();
    keygen.args(["keygen", "--output-key-prefix"]).arg(&prefix);
    let (r, _) = run_within(&mut keygen, Duration::from_secs(30));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut verify = env.cmd();
    verify
        .args(["verify", "--key"])
        .arg(keys.path().join("cosign.pub"))
        .arg(format!("{host}/acme/app:1.0"));
    let (r, _) = run_within(&mut verify, Duration::from_secs(90));
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let said = format!("{}{}", r.stdout, r.stderr);
    assert!(
        said.contains("the referrers index does not end: page 2 links back to a page already read"),
        "{said}"
    );
    let pages = srv
        .requests()
        .iter()
        .filter(|r| r.path().contains("/referrers/"))
        .count();
    assert_eq!(pages, 2);
}

/// Figures: a tag page that never ends is refused at 4 MiB.
#[test]
fn huge_tags_page() {
    let srv = Scripted::endless_tags();
    let host = srv.host();
    fails_naming(
        &mut tags(&Env::new(), &format!("{host}/acme/app")),
        &host,
        "larger than 4194304 bytes",
    );
}

/// Figures: a tag list of pages that each link to a new one stops after
/// 1000 pages.
#[test]
fn tag_list_stops_after_a_thousand_pages() {
    let srv = Scripted::tag_links((1..=1100).collect());
    let host = srv.host();
    fails_naming(
        &mut tags(&Env::new(), &format!("{host}/acme/app")),
        &host,
        "more than 1000 pages",
    );
    assert_eq!(
        srv.requests()
            .iter()
            .filter(|r| r.path().ends_with("/tags/list"))
            .count(),
        1000
    );
}

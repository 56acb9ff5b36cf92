//! Hostile registries: every answer is read with a cap, every request has a
//! deadline, and tag pagination ends. Each scripted misbehaviour must end
//! the command with exit 1, a message naming the registry, in bounded time.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::Run;
use crate::env::Env;
use crate::support::{tempdir, Answer, Registry, Scripted};

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

/// A registry (and its token server) whose error messages echo what the
/// client sent: the `Authorization` header, the `user:password` it decodes,
/// the bearer token. Neither the password, nor its base64, nor the token is
/// shown, with `--verbose` too; the errors still name the registry and say
/// what it answered.
#[test]
fn credentials_a_registry_echoes_back_are_not_shown() {
    const PASSWORD: &str = "echoed-Secret-Pass-123";
    const TOKEN: &str = "echoed-Token-456-xyz";
    let basic = crate::common::b64(&format!("bob:{PASSWORD}"));
    let bearer_asked = AtomicUsize::new(0);
    let echoed = basic.clone();
    let srv = Scripted::start_with_host(move |host, req| {
        let path = req.path();
        let said = |code: &str, message: String| {
            format!(r#"{{"errors":[{{"code":"{code}","message":"{message}"}}]}}"#)
        };
        if path == "/v2/" {
            return Answer::json("200 OK", "{}");
        }
        if path == "/token" {
            return Answer::json(
                "400 Bad Request",
                &said("DENIED", format!("bad creds: Basic {echoed}")),
            );
        }
        if path == "/token-ok" {
            return Answer::json("200 OK", &format!(r#"{{"token":"{TOKEN}"}}"#));
        }
        if path.starts_with("/v2/basic/") {
            return Answer::json(
                "401 Unauthorized",
                &said(
                    "UNAUTHORIZED",
                    format!("you sent Basic {echoed}, that is bob:{PASSWORD}"),
                ),
            )
            .header("WWW-Authenticate", "Basic realm=\"x\"");
        }
        if path.starts_with("/v2/refused/") {
            return Answer::json(
                "401 Unauthorized",
                &said("UNAUTHORIZED", "token please".into()),
            )
            .header(
                "WWW-Authenticate",
                &format!("Bearer realm=\"http://{host}/token\",service=\"x\""),
            );
        }
        if path.starts_with("/v2/bearer/") {
            // The first request is challenged; the one with the token is
            // refused, echoing it.
            if bearer_asked.fetch_add(1, Ordering::SeqCst) == 0 {
                return Answer::json(
                    "401 Unauthorized",
                    &said("UNAUTHORIZED", "token please".into()),
                )
                .header(
                    "WWW-Authenticate",
                    &format!("Bearer realm=\"http://{host}/token-ok\",service=\"x\""),
                );
            }
            return Answer::json(
                "403 Forbidden",
                &said("DENIED", format!("you sent Bearer {TOKEN}")),
            );
        }
        Answer::json("404 Not Found", r#"{"errors":[]}"#)
    });
    let host = srv.host();
    let env = Env::with_auths(&[(&host, "bob", PASSWORD)]);
    for repo in ["basic", "refused", "bearer"] {
        let mut cmd = env.cmd();
        cmd.args(["--verbose", "tags", &format!("{host}/{repo}")]);
        let (r, _) = run_within(&mut cmd, Duration::from_secs(60));
        assert_eq!(r.code, 1, "{repo}: {}", r.stderr);
        let all = format!("{}{}", r.stdout, r.stderr);
        for secret in [PASSWORD, basic.as_str(), TOKEN] {
            assert!(!all.contains(secret), "{repo} shows {secret}:\n{all}");
        }
        assert!(r.stderr.contains(&host), "{repo}: {}", r.stderr);
        assert!(r.stderr.contains("***"), "{repo}: {}", r.stderr);
    }
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

//! Credentials end to end: `boxwright login` / `logout` and the
//! config.json they write, credential helpers, recipe targets' credential
//! variables, bearer tokens refused and refreshed, and secrets that never
//! appear in any output. Against the registry pair (token and basic auth).

use std::process::{Command, Stdio};

use base64::Engine as _;

use crate::common::{assert_ok, b64, ok, run, write, Run};
use crate::env::Env;
use crate::pair::{token_creds, Pair, BASIC_PASS, BASIC_USER, TOKEN_PASS, TOKEN_USER};
use crate::push::{build_image, push, remote_digest, write_recipe};
use crate::support::{dead_host, tempdir, Answer, Scripted};

#[test]
fn login_writes_config_json_that_push_uses_and_logout_removes_it() {
    let pair = Pair::start();
    let env = Env::new();
    let image = build_image(&[100_000], 12);
    let mut c = env.cmd();
    c.args([
        "login",
        &pair.b.host(),
        "-u",
        BASIC_USER,
        "--password-stdin",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{BASIC_PASS}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Figure: config.json holds base64(user:password) under the registry, as docker writes it.
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.config_dir().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(
        cfg["auths"][pair.b.host()]["auth"],
        b64(&format!("{BASIC_USER}:{BASIC_PASS}"))
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(env.config_dir().join("config.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "config.json is readable by others");
    let to = [format!("{}/acme/app:1", pair.b.host())];
    assert_ok(&push(&env, &image, &to, &[]));
    ok(env.cmd().args(["logout", &pair.b.host()]));
    let r = push(&env, &image, &to, &["--retries", "0"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("401"), "{}", r.stderr);
}

/// `boxwright login HOST -u USER --password-stdin EXTRA...` with `pass` on stdin.
pub(crate) fn login_with(env: &Env, host: &str, user: &str, pass: &str, extra: &[&str]) -> Run {
    login_stdin(env, host, user, format!("{pass}\n").as_bytes(), extra)
}

/// `boxwright login HOST -u USER --password-stdin EXTRA...` with `stdin`
/// as given.
pub(crate) fn login_stdin(env: &Env, host: &str, user: &str, stdin: &[u8], extra: &[&str]) -> Run {
    let mut child = env
        .cmd()
        .args(["login", host, "-u", user, "--password-stdin"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let o = child.wait_with_output().unwrap();
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into(),
        stderr: String::from_utf8_lossy(&o.stderr).into(),
    }
}

#[test]
fn login_checks_credentials_with_the_registry_before_writing() {
    let pair = Pair::start();
    let env = Env::new();
    let cfg_path = env.config_dir().join("config.json");
    let before = "{\n  \"auths\": {\n    \"quay.io\": {\"auth\": \"cTpw\"}\n  }\n}\n";
    write(&cfg_path, before);
    for (p, user, pass) in [
        (&pair.b, BASIC_USER, BASIC_PASS),
        (&pair.a, TOKEN_USER, TOKEN_PASS),
    ] {
        let host = p.host();
        let wrong = format!("{pass}-wrong");
        pair.tokens.clear_requests();
        p.reset();
        let r = login_with(&env, &host, user, &wrong, &[]);
        // Figure: a wrong password is exit 1, config.json byte for byte as
        // before, and neither password nor its base64 in the output.
        assert_eq!(r.code, 1, "{host}: {}", r.stderr);
        assert!(r.stderr.contains("refused the credentials"), "{}", r.stderr);
        // The hint is about what was given to login, not about running it.
        assert!(
            r.stderr.contains("the password or token given on stdin"),
            "{}",
            r.stderr
        );
        for elsewhere in ["boxwright login", "username_env"] {
            assert!(!r.stderr.contains(elsewhere), "{}", r.stderr);
        }
        assert!(
            r.stderr.contains("config.json was not changed"),
            "{}",
            r.stderr
        );
        let all = format!("{}{}", r.stdout, r.stderr);
        for secret in [
            wrong.clone(),
            b64(&format!("{user}:{wrong}")),
            pass.to_string(),
        ] {
            assert!(!all.contains(&secret), "printed a secret:\n{all}");
        }
        assert_eq!(std::fs::read_to_string(&cfg_path).unwrap(), before);
        // Figure: the check is `GET /v2/` only (nothing written upstream).
        let log = p.log();
        assert!(!log.is_empty());
        assert!(
            log.iter().all(|e| e.method == "GET" && e.path == "/v2/"),
            "{log:#?}"
        );
        if host == pair.a.host() {
            // Figure: one token request, with the user's credentials and no
            // scope, refused with 401; the registry never saw a token.
            let t = pair.tokens.requests();
            assert_eq!(t.len(), 1, "{t:#?}");
            assert_eq!(t[0].user.as_deref(), Some(user));
            assert!(t[0].scopes.is_empty());
            assert_eq!(t[0].status, 401);
            assert!(log.iter().all(|e| !e.authorization), "{log:#?}");
        } else {
            // Figure: Basic credentials sent and answered 401.
            assert!(log.iter().any(|e| e.authorization && e.status == Some(401)));
        }

        pair.tokens.clear_requests();
        p.reset();
        let r = login_with(&env, &host, user, pass, &[]);
        assert_ok(&r);
        // Figure: the right password is written (base64 user:pass) and the
        // other entry is kept; the registry answered 200 to an authorized /v2/.
        let cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
        assert_eq!(cfg["auths"][&host]["auth"], b64(&format!("{user}:{pass}")));
        assert_eq!(cfg["auths"]["quay.io"]["auth"], "cTpw");
        assert!(p
            .log()
            .iter()
            .any(|e| e.path == "/v2/" && e.authorization && e.status == Some(200)));
        if host == pair.a.host() {
            let t = pair.tokens.requests();
            assert_eq!(t.iter().filter(|t| t.status == 200).count(), 1, "{t:#?}");
        }
        // Put the file back for the next registry.
        write(&cfg_path, before);
    }
}

#[test]
fn login_to_an_unreachable_registry_fails_and_no_verify_stores_anyway() {
    let env = Env::new();
    let cfg_path = env.config_dir().join("config.json");
    let host = dead_host();
    let started = std::time::Instant::now();
    let r = login_with(&env, &host, "u", "p-secret-1", &[]);
    // Figure: exit 1 within 10 s (2 quick retries), nothing written.
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(r.stderr.contains("could not reach"), "{}", r.stderr);
    assert!(!cfg_path.exists());
    // Figure: --no-verify writes without a single request (exit 0).
    let r = login_with(&env, &host, "u", "p-secret-1", &["--no-verify"]);
    assert_ok(&r);
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    assert_eq!(cfg["auths"][&host]["auth"], b64("u:p-secret-1"));
    assert!(!format!("{}{}", r.stdout, r.stderr).contains("p-secret-1"));
}

#[test]
fn secrets_never_appear_in_any_output() {
    let pair = Pair::start();
    let env = Env::new();
    let dir = tempdir();
    let targets = format!(
        "[[target]]\nref = \"{}/acme/app\"\nusername_env = \"T_USER\"\npassword_env = \"T_PASS\"\n\n[[target]]\nref = \"{}/acme/app\"\nusername_env = \"B_USER\"\npassword_env = \"B_PASS\"\nencoding = \"base64\"\n",
        pair.a.host(),
        pair.b.host()
    );
    let recipe = write_recipe(dir.path(), &[300_000], 13, &targets);
    let layout = dir.path().join("out");
    let mut outputs: Vec<(String, Run)> = Vec::new();
    let creds_env = |c: &mut Command| {
        c.env("T_USER", TOKEN_USER)
            .env("T_PASS", TOKEN_PASS)
            .env("B_USER", BASIC_USER)
            .env("B_PASS", b64(BASIC_PASS));
    };
    let mut c = env.cmd();
    c.args(["--verbose", "build", "--push", "-o"])
        .arg(&layout)
        .arg(&recipe);
    creds_env(&mut c);
    outputs.push(("build --push".into(), run(&mut c)));
    // login for both, then push with --json, inspect.
    for (host, user, pass) in [
        (pair.b.host(), BASIC_USER, BASIC_PASS),
        (pair.a.host(), TOKEN_USER, TOKEN_PASS),
    ] {
        let mut child = env
            .cmd()
            .args(["--verbose", "login", &host, "-u", user, "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(pass.as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        outputs.push((
            format!("login {host}"),
            Run {
                code: o.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&o.stdout).into(),
                stderr: String::from_utf8_lossy(&o.stderr).into(),
            },
        ));
    }
    let mut c = env.cmd();
    c.args(["--verbose", "push", "--json"]).arg(&layout);
    for p in pair.proxies() {
        c.args(["--to", &format!("{}/other/app:2", p.host())]);
    }
    outputs.push(("push".into(), run(&mut c)));
    let mut c = env.cmd();
    c.args(["--verbose", "inspect"]).arg(&layout);
    outputs.push(("inspect".into(), run(&mut c)));
    // Failures print errors: a wrong password must not echo either.
    let mut c = env.cmd();
    c.args(["--verbose", "build", "--push", "--retries", "0", "-o"])
        .arg(&layout)
        .arg(&recipe);
    creds_env(&mut c);
    c.env("B_PASS", b64(&format!("{BASIC_PASS}-wrong")));
    outputs.push(("build --push (wrong password)".into(), run(&mut c)));

    let needles = [
        BASIC_PASS.to_string(),
        TOKEN_PASS.to_string(),
        b64(BASIC_PASS),
        b64(&format!("{BASIC_USER}:{BASIC_PASS}")),
        b64(&format!("{TOKEN_USER}:{TOKEN_PASS}")),
        // Any JWT the token server issued (header `{"` base64url-encoded).
        "eyJ".to_string(),
    ];
    for (i, (what, r)) in outputs.iter().enumerate() {
        let expected = if i + 1 == outputs.len() { 1 } else { 0 };
        assert_eq!(r.code, expected, "{what}: {}", r.stderr);
        let all = format!("{}{}", r.stdout, r.stderr);
        for n in &needles {
            assert!(
                !all.contains(n.as_str()),
                "{what} printed a secret ({n}):\n{all}"
            );
        }
    }
    // --verbose really was verbose (requests are logged).
    assert!(outputs[0].1.stderr.contains("debug:"));
}

#[test]
fn push_refreshes_a_refused_token_once_and_goes_on() {
    let pair = Pair::start();
    let env = &pair.env;
    let image = build_image(&[300_000], 14);
    // The first tokens are already expired (the registry answers 401); as
    // soon as one was issued, the server goes back to valid tokens.
    pair.tokens.set_issue_expired(true);
    let to = [format!("{}/acme/app:1", pair.a.host())];
    let child = env
        .cmd()
        .args(["push"])
        .arg(&image.layout)
        .args(["--to", &to[0]])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while pair.tokens.requests().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    pair.tokens.set_issue_expired(false);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = pair.a.log();
    // Figure: at least one authorized request answered 401, then replayed
    // with a fresh token and answered; the push completes.
    let refused = log
        .iter()
        .filter(|e| e.authorization && e.status == Some(401))
        .count();
    assert!(refused >= 1, "{log:#?}");
    assert_eq!(remote_digest(&to[0], Some(&token_creds())), image.digest);

    // Tokens that are always refused: each request refreshes once, then the
    // push fails naming the 401 (no endless loop).
    pair.tokens.set_issue_expired(true);
    let r = push(
        env,
        &image,
        &[format!("{}/other/app:1", pair.a.host())],
        &["--retries", "0"],
    );
    pair.tokens.set_issue_expired(false);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("401"), "{}", r.stderr);
}

/// Figures: a token server that answers 503 to its first two requests
/// is asked again, as a registry would be: the push completes, the third
/// request got the token, and the two retries are counted on the registry.
/// One that keeps failing fails the push with exit 1, naming the token
/// server's failure, not the credentials.
#[test]
fn a_token_server_that_fails_for_now_is_asked_again() {
    let pair = Pair::start();
    let image = build_image(&[2000], 15);
    pair.tokens.fail_next(2);
    let to = format!("{}/acme/app:1", pair.a.host());
    let r = push(&pair.env, &image, std::slice::from_ref(&to), &["--json"]);
    assert_ok(&r);
    let statuses: Vec<u16> = pair.tokens.requests().iter().map(|q| q.status).collect();
    assert_eq!(statuses[..3], [503, 503, 200], "{statuses:?}");
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(doc["registries"][0]["retries"], 2, "{doc:#}");
    assert_eq!(remote_digest(&to, Some(&token_creds())), image.digest);

    pair.tokens.fail_next(1000);
    let other = format!("{}/acme/other:1", pair.a.host());
    let r = push(&pair.env, &image, &[other], &["--json", "--retries", "1"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let error = doc["targets"][0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("503"), "{doc:#}");
    assert!(!error.contains("credentials were refused"), "{doc:#}");
}

/// Figures: a token server's 503 with `Retry-After: 1` is retried once
/// (counted on the registry), no sooner than a second later, so the push
/// takes at least that second. (Other requests that wanted the same token
/// may get it at once: the wait is the failed request's.) One asking for an
/// hour, more than a retry ever waits, is not asked again (no retry is
/// counted), and the push fails at once with exit 1 naming the wait.
#[test]
fn a_token_server_retry_after_is_honoured() {
    let pair = Pair::start();
    let image = build_image(&[2000], 16);
    pair.tokens.fail_next_retry_after(1, Some(1));
    let to = format!("{}/acme/app:1", pair.a.host());
    let started = std::time::Instant::now();
    let r = push(&pair.env, &image, std::slice::from_ref(&to), &["--json"]);
    let took = started.elapsed();
    assert_ok(&r);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(doc["registries"][0]["retries"], 1, "{doc:#}");
    assert_eq!(pair.tokens.requests()[0].status, 503);
    assert!(took.as_secs_f64() >= 1.0, "{took:?}");

    pair.tokens.clear_requests();
    pair.tokens.fail_next_retry_after(1000, Some(3600));
    let other = format!("{}/acme/other:1", pair.a.host());
    let r = push(&pair.env, &image, &[other], &["--json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(doc["registries"][0]["retries"], 0, "{doc:#}");
    let error = doc["targets"][0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("retry after 3600s"), "{doc:#}");
    pair.tokens.fail_next(0);
}

#[test]
fn login_fails_when_the_credential_helper_fails() {
    // A helper that closes its stdin and fails: the write of the secret to it
    // breaks the pipe. That is a failure (exit 1), not a closed stdout.
    let env = Env::new();
    let path = env.credential_helper("bad", "#!/bin/sh\nexec 0<&-\nsleep 0.3\nexit 3\n");
    let cfg_path = env.config_dir().join("config.json");
    write(&cfg_path, "{\"credsStore\": \"bad\"}\n");
    let mut child = env
        .cmd()
        .env("PATH", path)
        .args([
            "login",
            "registry.example:5000",
            "-u",
            "bob",
            "--password-stdin",
            "--no-verify",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"helper-secret-91\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("bad"), "the helper is named: {stderr}");
    assert!(!stderr.contains("helper-secret-91"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&cfg_path).unwrap(),
        "{\"credsStore\": \"bad\"}\n"
    );
}

/// `s` as a form body carries it (`application/x-www-form-urlencoded`).
fn form_encoded(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b' ' => "+".to_string(),
            b if b.is_ascii_alphanumeric() || b"*-._".contains(&b) => char::from(b).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// `text` in the other spellings of its percent-encoding a server may
/// echo: a space as `%20`, and lower-case hex.
fn respelled(text: &str) -> Vec<String> {
    let spaced = text.replace('+', "%20");
    let mut lower = String::new();
    let mut rest = spaced.as_str();
    while let Some(i) = rest.find('%') {
        lower.push_str(&rest[..i]);
        let end = (i + 3).min(rest.len());
        lower.push_str(&rest[i..end].to_ascii_lowercase());
        rest = &rest[end..];
    }
    lower.push_str(rest);
    vec![text.to_string(), spaced, lower]
}

/// A registry whose token realm answers `status` with an error message
/// that echoes what it was sent: the form body of an identity-token POST,
/// or the `Authorization` header and the `user:password` it decodes, each
/// percent-encoded in every spelling.
fn echoing_token_server(status: &'static str) -> Scripted {
    Scripted::start_with_host(move |host, req| {
        if req.path() != "/token" {
            return Answer::json(
                "401 Unauthorized",
                r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#,
            )
            .header(
                "WWW-Authenticate",
                &format!(r#"Bearer realm="http://{host}/token",service="echo""#),
            );
        }
        let mut echoed = Vec::new();
        if !req.body.is_empty() {
            echoed.extend(respelled(&req.body));
        }
        if let Some(basic) = req
            .header("authorization")
            .and_then(|a| a.strip_prefix("Basic "))
        {
            let decoded = String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(basic)
                    .unwrap(),
            )
            .unwrap();
            echoed.extend(respelled(&form_encoded(basic)));
            echoed.extend(respelled(&form_encoded(&decoded)));
        }
        let message = format!("you sent {}", echoed.join(" and "));
        let body = serde_json::json!({"errors": [{"code": "DENIED", "message": message}]});
        Answer::json(status, &body.to_string())
    })
}

/// Figures: a token server that echoes, percent-encoded, the identity
/// token `push` POSTs and the password `login` sends (both holding
/// characters a form body encodes: space + / = @ :) fails the command with
/// exit 1, and neither stdout nor stderr holds the secret in any form; the
/// echo is shown, with `***` in the secret's place.
#[test]
fn url_encoded_secrets_a_token_server_echoes_are_not_shown() {
    const ID_TOKEN: &str = "id tok+en/with=chars@x:y-9";
    const PASSWORD: &str = "pass word+/=@:z-7";
    let forms = |secret: &str, user: &str| {
        let mut all = respelled(&form_encoded(secret));
        let basic = b64(&format!("{user}:{secret}"));
        all.extend(respelled(&form_encoded(&basic)));
        all.extend(respelled(&form_encoded(&format!("{user}:{secret}"))));
        all.extend([basic, secret.to_string()]);
        all
    };
    for status in ["400 Bad Request", "500 Internal Server Error"] {
        let srv = echoing_token_server(status);
        let host = srv.host();

        let env = Env::new();
        write(
            &env.config_dir().join("config.json"),
            &serde_json::json!({"auths": {&host: {"identitytoken": ID_TOKEN}}}).to_string(),
        );
        let image = build_image(&[1000], 31);
        let r = push(
            &env,
            &image,
            &[format!("{host}/acme/app:1")],
            &["--verbose", "--json", "--retries", "0"],
        );
        assert_eq!(r.code, 1, "{}", r.stderr);
        let posted = srv.requests().into_iter().find(|q| q.method == "POST");
        let posted = posted.expect("the identity token was POSTed to the realm");
        assert!(posted.body.contains(&form_encoded(ID_TOKEN)), "{posted:?}");
        let all = format!("{}{}", r.stdout, r.stderr);
        assert!(
            all.contains("you sent grant_type=refresh_token&refresh_token=***"),
            "{all}"
        );
        for form in forms(ID_TOKEN, "<token>") {
            assert!(!all.contains(&form), "push shows {form}:\n{all}");
        }

        let r = login_with(&Env::new(), &host, "bob", PASSWORD, &["--verbose"]);
        assert_eq!(r.code, 1, "{}", r.stderr);
        let all = format!("{}{}", r.stdout, r.stderr);
        assert!(all.contains("you sent ***"), "{all}");
        for form in forms(PASSWORD, "bob") {
            assert!(!all.contains(&form), "login shows {form}:\n{all}");
        }
    }
}

/// Figures: `login` against a registry whose token realm (1) refuses with
/// 401, (2) refuses with 403, (3) fails with 500, (4) cannot be reached,
/// (5) is not a URL at all (and 5000 bytes long): exit 1 every time and
/// config.json never written; only the refusals tell the user to check
/// the user name and password; the bad realm is named, cut, and asked
/// nothing.
#[test]
fn login_blames_the_credentials_only_when_the_token_server_refuses_them() {
    let dead = dead_host();
    let long_realm = format!("not a url {}", "x".repeat(5000));
    let cases: [(&str, String, &str, Option<&str>); 5] = [
        ("401", String::new(), "401 Unauthorized", None),
        ("403", String::new(), "403 Forbidden", None),
        (
            "500",
            String::new(),
            "500 Internal Server Error",
            Some("the token server of HOST failed"),
        ),
        (
            "unreachable",
            format!("http://{dead}/token"),
            "",
            Some("could not reach the token server of HOST"),
        ),
        (
            "bad realm",
            long_realm.clone(),
            "",
            Some("is not an absolute http or https URL"),
        ),
    ];
    for (case, realm, token_status, wording) in cases {
        let srv = Scripted::start_with_host(move |host, req| {
            if req.path() == "/token" {
                return Answer::json(
                    token_status,
                    r#"{"errors":[{"code":"DENIED","message":"no"}]}"#,
                );
            }
            let realm = if realm.is_empty() {
                format!("http://{host}/token")
            } else {
                realm.clone()
            };
            Answer::json(
                "401 Unauthorized",
                r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#,
            )
            .header(
                "WWW-Authenticate",
                &format!(r#"Bearer realm="{realm}",service="s""#),
            )
        });
        let host = srv.host();
        let env = Env::new();
        let r = login_with(&env, &host, "bob", "a-password-1", &[]);
        assert_eq!(r.code, 1, "{case}: {}", r.stderr);
        assert!(!env.config_dir().join("config.json").exists(), "{case}");
        let blamed = r.stderr.contains("check the user name")
            || r.stderr.contains("refused the credentials");
        match wording {
            None => assert!(blamed, "{case}: {}", r.stderr),
            Some(w) => {
                assert!(!blamed, "{case}: {}", r.stderr);
                let w = w.replace("HOST", &host);
                assert!(r.stderr.contains(&w), "{case}: {}", r.stderr);
            }
        }
        if case == "bad realm" {
            assert!(r.stderr.contains("not a url xxx"), "{}", r.stderr);
            assert!(!r.stderr.contains(&long_realm), "{}", r.stderr);
            assert!(r.stderr.len() < 2000, "{}", r.stderr);
            let asked: Vec<_> = srv.requests().into_iter().map(|q| q.target).collect();
            assert!(asked.iter().all(|t| t == "/v2/"), "{asked:?}");
        }
    }
}

/// Figure: `login` and `logout` name the key the credentials are stored
/// under in config.json, as docker spells it, whatever spelling was typed
/// (`docker.io` is stored as `https://index.docker.io/v1/`,
/// `https://GHCR.io/` as `ghcr.io`), and `logout` finds it from any
/// spelling and names what it removed, or the key it looked for.
#[test]
fn login_and_logout_name_the_key_the_credentials_are_stored_under() {
    let env = Env::new();
    let cfg_path = env.config_dir().join("config.json");
    for (typed, key) in [
        ("docker.io", "https://index.docker.io/v1/"),
        ("https://index.docker.io/v1/", "https://index.docker.io/v1/"),
        ("https://GHCR.io/", "ghcr.io"),
    ] {
        let r = login_with(&env, typed, "u", "p", &["--no-verify"]);
        assert_ok(&r);
        let cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
        assert!(cfg["auths"].get(key).is_some(), "{typed}: {cfg}");
        let said = format!("stored in {} under {key:?}", cfg_path.display());
        assert!(r.stderr.contains(&said), "{typed}: {}", r.stderr);
    }
    let r = run(env.cmd().args(["logout", "index.docker.io"]));
    assert_ok(&r);
    assert!(
        r.stderr.contains(
            "removed credentials for docker.io: \"https://index.docker.io/v1/\" from config.json"
        ),
        "{}",
        r.stderr
    );
    let r = run(env.cmd().args(["logout", "docker.io"]));
    assert_ok(&r);
    assert!(
        r.stderr.contains(
            "no stored credentials for docker.io (looked for \"https://index.docker.io/v1/\""
        ),
        "{}",
        r.stderr
    );
    let r = run(env.cmd().args(["logout", "GHCR.io"]));
    assert_ok(&r);
    assert!(
        r.stderr
            .contains("removed credentials for ghcr.io: \"ghcr.io\" from config.json"),
        "{}",
        r.stderr
    );
}

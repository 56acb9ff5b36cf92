//! Where credentials are read and written, through the binary: the auth
//! files of containers-auth.json(5) in its order, the 401 hint naming them,
//! `login` writing through a symlinked config.json, and `logout` erasing
//! what a credential helper keeps.

use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;

use crate::common::{assert_ok, b64, run, write, Run};
use crate::env::Env;
use crate::support::{tempdir, tiny_oci_layout, Registry};

fn auths(host: &str, user: &str, pass: &str) -> String {
    serde_json::json!({"auths": {host: {"auth": b64(&format!("{user}:{pass}"))}}}).to_string()
}

fn push(env: &Env, layout: &Path, to: &str, vars: &[(&str, &Path)]) -> Run {
    let mut c = env.cmd();
    for (k, v) in vars {
        c.env(k, v);
    }
    run(c
        .arg("push")
        .arg(layout)
        .args(["--to", to, "--retries", "0"]))
}

/// Figures: with a wrong password in docker's config.json and the right one
/// in `$XDG_CONFIG_HOME/containers/auth.json`, the push succeeds (the
/// containers file is read first); with a wrong one in `$REGISTRY_AUTH_FILE`
/// it fails with 401 and the hint names every auth file in order.
#[test]
fn containers_auth_files_come_first_and_the_401_hint_names_them() {
    let reg = Registry::with_basic_auth("dora", "right");
    let host = reg.host();
    let env = Env::new();
    write(
        &env.config_dir().join("config.json"),
        &auths(&host, "dora", "wrong"),
    );
    let xdg = env.path().join("xdg-config");
    write(
        &xdg.join("containers/auth.json"),
        &auths(&host, "dora", "right"),
    );
    let dir = tempdir();
    let layout = dir.path().join("layout");
    tiny_oci_layout(&layout, "1", b"auth files");
    let to = format!("{host}/acme/app:1");

    let r = push(&env, &layout, &to, &[("XDG_CONFIG_HOME", &xdg)]);
    assert_ok(&r);

    let first = dir.path().join("first.json");
    write(&first, &auths(&host, "dora", "stale"));
    let r = push(
        &env,
        &layout,
        &to,
        &[("XDG_CONFIG_HOME", &xdg), ("REGISTRY_AUTH_FILE", &first)],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("401"), "{}", r.stderr);
    let mut at = 0;
    for name in [
        "$REGISTRY_AUTH_FILE",
        "$XDG_RUNTIME_DIR/containers/auth.json",
        "$XDG_CONFIG_HOME/containers/auth.json",
        "$DOCKER_CONFIG/config.json",
        "~/.dockercfg",
    ] {
        let found = r.stderr[at..].find(name);
        assert!(found.is_some(), "{name} not named in order:\n{}", r.stderr);
        at += found.unwrap_or(0);
    }
}

/// Figures: `login` to a config.json that is a symlink leaves the link in
/// place and writes the file it points at; `logout` too.
#[test]
fn login_writes_through_a_symlinked_config_json() {
    let reg = Registry::with_basic_auth("eve", "pw");
    let host = reg.host();
    let env = Env::new();
    let real = env.path().join("dotfiles/docker.json");
    write(&real, r#"{"psFormat":"table"}"#);
    let link = env.config_dir().join("config.json");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let mut child = env
        .cmd()
        .args(["login", &host, "-u", "eve", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"pw\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&real).unwrap()).unwrap();
    assert_eq!(cfg["psFormat"], "table");
    assert_eq!(cfg["auths"][host.as_str()]["auth"], b64("eve:pw"));
    assert_ok(&run(env.cmd().args(["logout", &host])));
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&real).unwrap()).unwrap();
    assert!(cfg["auths"].get(host.as_str()).is_none(), "{cfg}");
}

/// Figures: `logout` of a registry whose credentials a helper keeps runs
/// `docker-credential-NAME erase` with the registry on stdin.
#[test]
fn logout_erases_credentials_kept_by_a_helper() {
    let env = Env::new();
    let host = "registry.example:5000";
    write(
        &env.config_dir().join("config.json"),
        &serde_json::json!({"auths": {host: {}}, "credHelpers": {host: "bwtest"}}).to_string(),
    );
    let erased = env.path().join("erased");
    let path = env.credential_helper(
        "bwtest",
        &format!(
            "#!/bin/sh\nread server\n[ \"$1\" = erase ] || exit 2\necho \"$server\" > {}\n",
            erased.display()
        ),
    );
    let r = run(env.cmd().env("PATH", path).args(["logout", host]));
    assert_ok(&r);
    assert_eq!(std::fs::read_to_string(&erased).unwrap().trim(), host);
    assert!(r.stderr.contains("removed credentials"), "{}", r.stderr);
}

/// Figures: a config.json whose entry for the registry has an `auth` that
/// is not a string fails the push with exit 2 naming the file (no request
/// goes out anonymously to end in a 401); an empty config.json (as `touch`
/// leaves it) holds nothing, as docker reads it, so `login` writes into it
/// and the push then succeeds.
#[test]
fn a_mistyped_config_json_is_bad_input_and_an_empty_one_holds_nothing() {
    let reg = Registry::with_basic_auth("fay", "typed-password");
    let host = reg.host();
    let env = Env::new();
    let config = env.config_dir().join("config.json");
    let dir = tempdir();
    let layout = dir.path().join("layout");
    tiny_oci_layout(&layout, "1", b"typed config");
    let to = format!("{host}/acme/app:1");

    write(
        &config,
        &serde_json::json!({"auths": {&host: {"auth": 12}}}).to_string(),
    );
    let r = push(&env, &layout, &to, &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "{}: \"auth\" for {host} is not a string",
            config.display()
        )),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("401"), "{}", r.stderr);

    write(&config, "");
    let r = crate::login::login_with(&env, &host, "fay", "typed-password", &[]);
    assert_ok(&r);
    assert_ok(&push(&env, &layout, &to, &[]));
}

/// Figures: a `credHelpers` entry naming a helper that is not installed
/// fails the push with exit 2, naming the program, the key and the file
/// that names it.
#[test]
fn a_credential_helper_that_is_not_installed_is_bad_input_naming_the_file() {
    let reg = Registry::with_basic_auth("gus", "helper-password");
    let host = reg.host();
    let env = Env::new();
    let config = env.config_dir().join("config.json");
    write(
        &config,
        &serde_json::json!({"credHelpers": {&host: "bw-not-installed"}}).to_string(),
    );
    let dir = tempdir();
    let layout = dir.path().join("layout");
    tiny_oci_layout(&layout, "1", b"missing helper");
    let r = push(&env, &layout, &format!("{host}/acme/app:1"), &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    for part in [
        format!(
            "\"credHelpers\" in {} names \"bw-not-installed\"",
            config.display()
        ),
        "docker-credential-bw-not-installed is not installed".to_string(),
    ] {
        assert!(r.stderr.contains(&part), "{part} not in:\n{}", r.stderr);
    }
}

/// `boxwright login HOST -u USER --password-stdin` with `stdin` as given.
fn login_bytes(env: &Env, host: &str, user: &str, stdin: &[u8]) -> Run {
    crate::login::login_stdin(env, host, user, stdin, &[])
}

/// Figures: `login` takes the server address docker takes
/// (`https://HOST/v2/`) and stores the entry under the registry's name, so
/// that push finds it and `logout https://HOST` removes it; a password that
/// is not UTF-8, or a user name with ':' (which HTTP Basic cannot carry),
/// is exit 2 before anything is sent or written.
#[test]
fn login_takes_docker_server_addresses_and_refuses_what_basic_cannot_carry() {
    let reg = Registry::with_basic_auth("ida", "address-password");
    let host = reg.host();
    let env = Env::new();
    let config = env.config_dir().join("config.json");

    let r = login_bytes(&env, &host, "ida", b"\xff\xfeaddress-password\n");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("not UTF-8"), "{}", r.stderr);
    let r = login_bytes(&env, &host, "ida:x", b"address-password\n");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("contains ':'"), "{}", r.stderr);
    assert!(!config.exists());

    let r = login_bytes(
        &env,
        &format!("https://{host}/v2/"),
        "ida",
        b"address-password\n",
    );
    assert_ok(&r);
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert_eq!(cfg["auths"][&host]["auth"], b64("ida:address-password"));
    let dir = tempdir();
    let layout = dir.path().join("layout");
    tiny_oci_layout(&layout, "1", b"server address");
    assert_ok(&push(&env, &layout, &format!("{host}/acme/app:1"), &[]));
    assert_ok(&run(env.cmd().args(["logout", &format!("https://{host}")])));
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert!(cfg["auths"].get(&host).is_none(), "{cfg}");
}

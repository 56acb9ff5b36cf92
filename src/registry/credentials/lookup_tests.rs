//! Tests of [`super`]: the lookup in every auth file, and the helpers
//! `store`'s tests share.

use super::*;

pub fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

pub fn store_with(config: serde_json::Value) -> (tempfile::TempDir, CredentialStore) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let store = CredentialStore {
        docker_config_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    (dir, store)
}

#[test]
fn docker_config_auths() {
    let (_d, store) = store_with(serde_json::json!({
        "auths": {
            "https://index.docker.io/v1/": {"auth": b64("hubuser:hubpass")},
            "ghcr.io": {"identitytoken": "refresh-123"},
            "https://localhost:5000": {"auth": b64("a:b:c")}
        }
    }));
    let (c, src) = store.lookup("docker.io").unwrap().unwrap();
    assert_eq!(
        c,
        Credential::Basic {
            username: "hubuser".into(),
            password: Secret::new("hubpass")
        }
    );
    assert!(matches!(src, CredentialSource::DockerConfig(_)));
    assert_eq!(
        store.lookup("ghcr.io").unwrap().unwrap().0,
        Credential::IdentityToken(Secret::new("refresh-123"))
    );
    // Passwords may contain ':'.
    assert_eq!(
        store.lookup("localhost:5000").unwrap().unwrap().0,
        Credential::Basic {
            username: "a".into(),
            password: Secret::new("b:c")
        }
    );
    assert_eq!(store.lookup("quay.io").unwrap(), None);
}

#[test]
fn bad_auth_entry_is_bad_input_without_secret() {
    let (_d, store) =
        store_with(serde_json::json!({"auths": {"ghcr.io": {"auth": "bm9jb2xvbg=="}}}));
    let e = store.lookup("ghcr.io").unwrap_err();
    assert!(crate::error::is_bad_input(&e));
    assert!(e.to_string().contains("ghcr.io"));
    assert!(!e.to_string().contains("nocolon"));
}

#[test]
fn values_of_the_wrong_type_are_bad_input_naming_the_file() {
    let secret = b64("u:typed-secret-1");
    for cfg in [
        serde_json::json!(["not", "an object"]),
        serde_json::json!({"auths": [secret]}),
        serde_json::json!({"auths": {"ghcr.io": [secret]}}),
        serde_json::json!({"auths": {"ghcr.io": {"auth": 12, "x": secret}}}),
        serde_json::json!({"auths": {"ghcr.io": {"identitytoken": {"t": secret}}}}),
        serde_json::json!({"credHelpers": {"ghcr.io": 1}}),
        serde_json::json!({"credHelpers": "ghcr.io"}),
        serde_json::json!({"credsStore": true}),
    ] {
        let (d, store) = store_with(cfg.clone());
        let err = store.lookup("ghcr.io").unwrap_err();
        let said = format!("{err:#}");
        assert!(crate::error::is_bad_input(&err), "{cfg}: {said}");
        assert!(
            said.contains(&d.path().join("config.json").display().to_string()),
            "{said}"
        );
        assert!(
            !said.contains(&secret) && !said.contains("typed-secret"),
            "{said}"
        );
    }
    // null is as good as absent; other registries' entries are not read.
    let (_d, store) = store_with(serde_json::json!({
        "auths": {"ghcr.io": {"auth": null, "identitytoken": null}, "quay.io": 5},
        "credHelpers": null,
        "credsStore": null
    }));
    assert_eq!(store.lookup("ghcr.io").unwrap(), None);
}

#[test]
fn an_auth_file_that_cannot_be_read_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let looped = dir.path().join("config.json");
    std::os::unix::fs::symlink(&looped, &looped).unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"{}").unwrap();
    for store in [
        CredentialStore {
            docker_config_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        },
        // DOCKER_CONFIG naming a file: its config.json cannot be reached.
        CredentialStore {
            docker_config_dir: Some(file),
            ..Default::default()
        },
    ] {
        let err = store.lookup("ghcr.io").unwrap_err();
        assert!(crate::error::is_bad_input(&err), "{err:#}");
        assert!(err.to_string().contains("config.json"), "{err:#}");
    }
}

#[test]
fn an_empty_file_holds_nothing_and_wrapped_base64_is_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), " \n").unwrap();
    let mut store = CredentialStore {
        docker_config_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    assert_eq!(store.lookup("ghcr.io").unwrap(), None);
    let long = format!("user:{}", "p".repeat(80));
    let wrapped = b64(&long)
        .as_bytes()
        .chunks(76)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("\r\n");
    let (_d, with) = store_with(serde_json::json!({"auths": {"ghcr.io": {"auth": wrapped}}}));
    store = with;
    assert_eq!(
        store.lookup("ghcr.io").unwrap().unwrap().0,
        Credential::Basic {
            username: "user".into(),
            password: Secret::new("p".repeat(80))
        }
    );
}

#[test]
fn registry_auth_file_and_github_token() {
    let dir = tempfile::tempdir().unwrap();
    let podman = dir.path().join("auth.json");
    std::fs::write(
        &podman,
        serde_json::json!({"auths": {"quay.io": {"auth": b64("q:p")}}}).to_string(),
    )
    .unwrap();
    let store = CredentialStore {
        docker_config_dir: Some(dir.path().join("missing")),
        auth_files: vec![podman],
        github: Some(("octocat".into(), Secret::new("ghs_x"))),
        ..Default::default()
    };
    let (c, src) = store.lookup("quay.io").unwrap().unwrap();
    assert!(matches!(src, CredentialSource::RegistryAuthFile(_)));
    assert!(matches!(c, Credential::Basic { ref username, .. } if username == "q"));
    let (c, src) = store.lookup("ghcr.io").unwrap().unwrap();
    assert_eq!(src, CredentialSource::GithubToken);
    assert_eq!(
        c,
        Credential::Basic {
            username: "octocat".into(),
            password: Secret::new("ghs_x")
        }
    );
    assert_eq!(store.lookup("docker.io").unwrap(), None);
}

#[test]
fn auth_files_are_read_in_the_containers_order() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, v: serde_json::Value| {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, v.to_string()).unwrap();
        p
    };
    let entry =
        |user: &str| serde_json::json!({"auths": {"r.io": {"auth": b64(&format!("{user}:p"))}}});
    let runtime = file("run/auth.json", entry("runtime"));
    let config = file("config/auth.json", entry("config"));
    file("docker/config.json", entry("docker"));
    let legacy = file(
        "dockercfg",
        serde_json::json!({"r.io": {"auth": b64("legacy:p")}, "old.io": {"auth": b64("o:p")}}),
    );
    let user_of = |store: &CredentialStore, reg: &str| match store.lookup(reg).unwrap() {
        Some((Credential::Basic { username, .. }, _)) => username,
        other => panic!("{other:?}"),
    };
    let mut store = CredentialStore {
        docker_config_dir: Some(dir.path().join("docker")),
        auth_files: vec![runtime.clone(), config.clone()],
        legacy_dockercfg: Some(legacy.clone()),
        ..Default::default()
    };
    assert_eq!(
        store.files(),
        [
            runtime,
            config,
            dir.path().join("docker/config.json"),
            legacy
        ]
    );
    assert_eq!(user_of(&store, "r.io"), "runtime");
    assert_eq!(user_of(&store, "old.io"), "o");
    store.auth_files.remove(0);
    assert_eq!(user_of(&store, "r.io"), "config");
    store.auth_files.clear();
    assert_eq!(user_of(&store, "r.io"), "docker");
    store.docker_config_dir = None;
    assert_eq!(user_of(&store, "r.io"), "legacy");
}

#[test]
fn credential_helpers() {
    use std::os::unix::fs::PermissionsExt;
    let (d, mut store) = store_with(serde_json::json!({
        "auths": {"ghcr.io": {}, "docker.io": {}},
        "credHelpers": {"ghcr.io": "bwtest"},
        "credsStore": "bwstore"
    }));
    let bin = d.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let script = |name: &str, body: &str| {
        let p = bin.join(format!("docker-credential-{name}"));
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    script(
        "bwtest",
        r#"read server; [ "$1" = get ] && [ "$server" = ghcr.io ] && echo '{"ServerURL":"ghcr.io","Username":"hu","Secret":"hs"}'"#,
    );
    script(
        "bwstore",
        r#"read server; if [ "$server" = "https://index.docker.io/v1/" ]; then echo '{"Username":"<token>","Secret":"idt"}'; else echo 'credentials not found in native keychain'; exit 1; fi"#,
    );
    store.helper_path = Some(bin.clone().into_os_string());
    let (c, src) = store.lookup("ghcr.io").unwrap().unwrap();
    assert_eq!(src, CredentialSource::Helper("bwtest".into()));
    assert_eq!(
        c,
        Credential::Basic {
            username: "hu".into(),
            password: Secret::new("hs")
        }
    );
    assert_eq!(
        store.lookup("docker.io").unwrap().unwrap().0,
        Credential::IdentityToken(Secret::new("idt"))
    );
    assert_eq!(store.lookup("quay.io").unwrap(), None);
}

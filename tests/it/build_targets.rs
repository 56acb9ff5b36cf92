//! Where `build --push` goes: the recipe's `[[target]]`s without `--to`;
//! only the `--to` references with it (as ko and crane push where they are
//! told); both with `--recipe-targets`. Registry A is GHCR-like (tokens), B
//! Docker-Hub-like (basic auth), each behind a counting proxy.

use crate::common::{assert_code, assert_ok, b64, run};
use crate::pair::{basic_creds, token_creds, Pair, BASIC_PASS, BASIC_USER};
use crate::push::{read_layout, remote_digest, write_recipe};
use crate::support::tempdir;

/// Two recipe targets: A with credentials from `GH_USER`/`GH_PASS` (as
/// GITHUB_ACTOR/GITHUB_TOKEN in CI), B with a base64 secret.
fn targets(pair: &Pair) -> String {
    format!(
        "\n[[target]]\nref = \"{}/acme/app\"\nusername_env = \"GH_USER\"\npassword_env = \"GH_PASS\"\n\n\
         [[target]]\nref = \"{}/acme/app\"\nrole = \"backup\"\nusername_env = \"HUB_USER\"\n\
         password_env = \"HUB_PASS_ENCODED\"\nencoding = \"base64\"\n",
        pair.a.host(),
        pair.b.host()
    )
}

#[test]
fn to_replaces_the_recipe_targets() {
    let pair = Pair::start();
    let dir = tempdir();
    let recipe = write_recipe(dir.path(), &[200_000], 31, &targets(&pair));
    let layout = dir.path().join("out");
    // The README's runner command, on a machine logged in to A with none of
    // the recipe's credential variables set.
    let r = run(pair
        .cmd()
        .args(["build", "--platform", "linux/amd64", "--push", "--to"])
        .arg(format!("{}/acme/app@", pair.a.host()))
        .arg("-o")
        .arg(&layout)
        .arg(&recipe)
        .env_remove("GH_USER")
        .env_remove("GH_PASS"));
    assert_ok(&r);
    let (digest, _, _) = read_layout(&layout);
    assert_eq!(r.stdout.trim(), digest);
    assert!(
        r.stderr.contains("pushing only to --to") && r.stderr.contains("--recipe-targets"),
        "{}",
        r.stderr
    );
    // Figure: B (a recipe target only) received no request at all; A holds
    // the image by digest and no tag.
    assert_eq!(pair.b.log().len(), 0, "{:?}", pair.b.log());
    let pinned = format!("{}/acme/app@{digest}", pair.a.host());
    assert_eq!(remote_digest(&pinned, Some(&token_creds())), digest);
    let tagged = pair.run(&["verify", &format!("{}/acme/app:1.0", pair.a.host())]);
    assert_code(&tagged, 1);
    assert!(tagged.stderr.contains("not found"), "{}", tagged.stderr);
}

#[test]
fn recipe_targets_adds_them_and_a_to_on_their_repository_keeps_its_credentials() {
    let pair = Pair::start();
    let dir = tempdir();
    let recipe = write_recipe(dir.path(), &[200_000], 32, &targets(&pair));
    let layout = dir.path().join("out");
    let env = crate::env::Env::new(); // no config.json: only the recipe's credentials
    let r = run(env
        .cmd()
        .args(["build", "--push", "--recipe-targets", "--to"])
        .arg(format!("{}/acme/app:edge", pair.b.host()))
        .arg("-o")
        .arg(&layout)
        .arg(&recipe)
        .env("GH_USER", crate::pair::TOKEN_USER)
        .env("GH_PASS", crate::pair::TOKEN_PASS)
        .env("HUB_USER", BASIC_USER)
        .env("HUB_PASS_ENCODED", b64(BASIC_PASS)));
    assert_ok(&r);
    let (digest, _, _) = read_layout(&layout);
    // Figure: A has the recipe's tag; B has only the --to tag, pushed with
    // the recipe's (base64) credentials for that repository.
    let a = format!("{}/acme/app:1.0", pair.a.host());
    assert_eq!(remote_digest(&a, Some(&token_creds())), digest);
    let edge = format!("{}/acme/app:edge", pair.b.host());
    assert_eq!(remote_digest(&edge, Some(&basic_creds())), digest);
    let r = pair.run(&["verify", &format!("{}/acme/app:1.0", pair.b.host())]);
    assert_code(&r, 1);

    // `--targets` is the same flag; without --to it is refused (exit 2).
    let r = run(env
        .cmd()
        .args(["build", "--push", "--targets", "-o"])
        .arg(&layout)
        .arg(&recipe));
    assert_code(&r, 2);
    assert!(r.stderr.contains("--to"), "{}", r.stderr);
}

/// A required target A (`GH_USER`/`GH_PASS`) and an optional backup B whose
/// secret is base64 in `HUB_PASS_ENCODED`, as a release recipe has them.
fn optional_backup(pair: &Pair) -> String {
    format!(
        "\n[[target]]\nref = \"{}/acme/app\"\nusername_env = \"GH_USER\"\npassword_env = \"GH_PASS\"\n\n\
         [[target]]\nref = \"{}/acme/app\"\nrole = \"backup\"\noptional = true\nusername_env = \"HUB_USER\"\n\
         password_env = \"HUB_PASS_ENCODED\"\nencoding = \"base64\"\n",
        pair.a.host(),
        pair.b.host()
    )
}

#[test]
fn an_optional_target_without_its_secret_fails_alone_and_a_required_one_stops_the_run() {
    let pair = Pair::start();
    let dir = tempdir();
    let recipe = write_recipe(dir.path(), &[200_000], 33, &optional_backup(&pair));
    let layout = dir.path().join("out");
    // The client is logged in to B as well: the backup must not be pushed
    // with those credentials in place of its own missing ones.
    let not_base64 = "not*base64*value";
    for secret in [None, Some(""), Some(not_base64)] {
        pair.reset();
        let mut cmd = pair.cmd();
        cmd.args(["build", "--push", "--json", "-o"])
            .arg(&layout)
            .arg(&recipe)
            .env("GH_USER", crate::pair::TOKEN_USER)
            .env("GH_PASS", crate::pair::TOKEN_PASS)
            .env("HUB_USER", BASIC_USER)
            .env_remove("HUB_PASS_ENCODED");
        if let Some(s) = secret {
            cmd.env("HUB_PASS_ENCODED", s);
        }
        let r = run(&mut cmd);
        assert_ok(&r);
        let (digest, _, _) = read_layout(&layout);
        let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        let targets = doc["push"]["targets"].as_array().unwrap();
        assert_eq!(targets.len(), 2, "{doc:#}");
        // Figure: A holds the tag and is reported ok; B is reported failed,
        // optional, its error naming the variable and never its value.
        let a = format!("{}/acme/app:1.0", pair.a.host());
        assert_eq!(targets[0]["reference"], a.as_str());
        assert_eq!(targets[0]["ok"], true, "{doc:#}");
        assert_eq!(remote_digest(&a, Some(&token_creds())), digest);
        let b = &targets[1];
        assert_eq!(b["reference"], format!("{}/acme/app:1.0", pair.b.host()));
        assert_eq!((&b["ok"], &b["optional"]), (&false.into(), &true.into()));
        assert_eq!(b["digest"], serde_json::Value::Null);
        let error = b["error"].as_str().unwrap_or_default();
        assert!(error.contains("HUB_PASS_ENCODED"), "{doc:#}");
        assert!(!r.stdout.contains(not_base64) && !r.stderr.contains(not_base64));
        assert!(r.stderr.contains("warning:"), "{}", r.stderr);
        // Figure: B received no request at all.
        assert_eq!(pair.b.log().len(), 0, "{:?}", pair.b.log());
    }

    // The required target's secret missing: exit 2 before anything is
    // pushed, naming the variable; neither registry is asked anything.
    pair.reset();
    let r = run(pair
        .cmd()
        .args(["build", "--push", "-o"])
        .arg(dir.path().join("second"))
        .arg(&recipe)
        .env("GH_USER", crate::pair::TOKEN_USER)
        .env_remove("GH_PASS")
        .env("HUB_USER", BASIC_USER)
        .env("HUB_PASS_ENCODED", b64(BASIC_PASS)));
    assert_code(&r, 2);
    assert!(r.stderr.contains("GH_PASS"), "{}", r.stderr);
    for p in pair.proxies() {
        assert_eq!(p.log().len(), 0, "{}: {:?}", p.host(), p.log());
    }
}

#[test]
fn a_push_where_no_target_holds_the_image_fails_even_when_every_target_is_optional() {
    let pair = Pair::start();
    let dir = tempdir();
    let targets = optional_backup(&pair).replace(
        "username_env = \"GH_USER\"",
        "optional = true\nusername_env = \"GH_USER\"",
    );
    let recipe = write_recipe(dir.path(), &[1000], 34, &targets);
    let r = run(pair
        .cmd()
        .args(["build", "--push", "--json", "-o"])
        .arg(dir.path().join("out"))
        .arg(&recipe)
        .env("GH_USER", crate::pair::TOKEN_USER)
        .env_remove("GH_PASS")
        .env("HUB_USER", BASIC_USER)
        .env_remove("HUB_PASS_ENCODED"));
    // Both secrets missing: nothing holds the image, a failure of the
    // push's own input (exit 2), not a warning.
    assert_code(&r, 2);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let targets = doc["push"]["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 2, "{doc:#}");
    for t in targets {
        assert_eq!((&t["ok"], &t["optional"]), (&false.into(), &true.into()));
    }
    assert!(r.stderr.contains("GH_PASS") && r.stderr.contains("HUB_PASS_ENCODED"));
    for p in pair.proxies() {
        assert_eq!(p.log().len(), 0, "{}: {:?}", p.host(), p.log());
    }
}

/// One repository written two ways in the recipe (Docker Hub's other host
/// names, `docker.io/NAME` for `docker.io/library/NAME`, a registry in
/// capitals) is refused as a target listed twice, at the second one's
/// line, naming both spellings: merged, the push would give one target the
/// other's credentials or `optional`. Figures: exit 2, nothing written.
#[test]
fn one_repository_spelt_two_ways_is_a_target_listed_twice() {
    for (first, second) in [
        ("docker.io/acme/app", "index.docker.io/acme/app"),
        ("docker.io/library/app", "docker.io/app"),
        ("localhost:5000/acme/app", "LOCALHOST:5000/acme/app"),
    ] {
        let dir = tempdir();
        let targets = format!(
            "\n[[target]]\nref = \"{first}\"\n\n[[target]]\nref = \"{second}\"\noptional = true\n"
        );
        let recipe = write_recipe(dir.path(), &[1000], 33, &targets);
        let line = std::fs::read_to_string(&recipe)
            .unwrap()
            .lines()
            .position(|l| l.contains(second))
            .unwrap()
            + 1;
        let out = dir.path().join("out");
        let r = run(crate::common::boxwright()
            .args(["build", "--quiet", "-o"])
            .arg(&out)
            .arg(&recipe));
        assert_code(&r, 2);
        for part in [
            format!("recipe.toml:{line}:"),
            "listed twice".into(),
            first.into(),
        ] {
            assert!(r.stderr.contains(&part), "{part} in {}", r.stderr);
        }
        assert!(!out.exists(), "{}", out.display());
    }
}

/// Two recipe targets on one registry whose credential variables hold
/// different credentials: a push sends one set per registry, so the run
/// stops before anything is sent, naming both targets and their variables
/// and never a value. Figures: exit 2, no request reached the registry.
#[test]
fn two_targets_on_one_registry_with_different_credentials_are_refused_naming_both() {
    let reg = crate::support::Registry::start();
    let proxy = crate::support::FaultProxy::start(&reg);
    let host = proxy.host();
    let dir = tempdir();
    let targets = format!(
        "\n[[target]]\nref = \"{host}/acme/app\"\nusername_env = \"A_USER\"\npassword_env = \"A_PASS\"\n\n\
         [[target]]\nref = \"{host}/mirror/app\"\nusername_env = \"B_USER\"\npassword_env = \"B_PASS\"\n"
    );
    let recipe = write_recipe(dir.path(), &[1000], 34, &targets);
    let r = run(crate::common::boxwright()
        .args(["build", "--quiet", "--push", "--no-layout"])
        .arg(&recipe)
        .env("A_USER", "alice")
        .env("A_PASS", "alice-secret-value")
        .env("B_USER", "bob")
        .env("B_PASS", "bob-secret-value"));
    assert_code(&r, 2);
    for part in [
        format!("{host}/acme/app:1.0"),
        format!("{host}/mirror/app:1.0"),
        "A_PASS".to_string(),
        "B_PASS".to_string(),
    ] {
        assert!(r.stderr.contains(&part), "{part} in {}", r.stderr);
    }
    for secret in ["alice-secret-value", "bob-secret-value"] {
        assert!(!r.stderr.contains(secret) && !r.stdout.contains(secret));
    }
    assert_eq!(proxy.log().len(), 0, "{:?}", proxy.log());
}

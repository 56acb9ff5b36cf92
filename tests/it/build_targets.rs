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

//! `boxwright build --push` against the registry pair: targets and
//! credentials from the recipe, optional targets that only warn, a required
//! one that fails the run, and layers uploaded while the build still runs.
//! Every test states the figure it checks.

use crate::common::{assert_ok, b64, run};
use crate::env::Env;
use crate::pair::{body_bytes, Pair, BASIC_PASS, BASIC_USER, TOKEN_PASS, TOKEN_USER};
use crate::push::{assert_served, read_layout, served, write_recipe};
use crate::support::{dead_host, tempdir};

#[test]
fn build_push_uses_recipe_targets_and_optional_failures_only_warn() {
    let pair = Pair::start();
    let env = Env::new(); // no config.json: credentials come from the recipe
    let dir = tempdir();
    let dead = dead_host();
    let targets = format!(
        r#"
[[target]]
ref = "{}/acme/app"
username_env = "T_USER"
password_env = "T_PASS"

[[target]]
ref = "{}/acme/app"
role = "backup"
username_env = "B_USER"
password_env = "B_PASS_ENCODED"
encoding = "base64"

[[target]]
ref = "{dead}/acme/app"
role = "backup"
optional = true
"#,
        pair.a.host(),
        pair.b.host()
    );
    let recipe = write_recipe(dir.path(), &[2 << 20, 1 << 20, 300_000], 9, &targets);
    std::fs::write(
        dir.path().join("recipe.toml"),
        std::fs::read_to_string(&recipe)
            .unwrap()
            .replace("tags = [\"1.0\"]", "tags = [\"1.0\", \"latest\"]"),
    )
    .unwrap();
    let layout = dir.path().join("out");
    let r = run(env
        .cmd()
        .args(["build", "--push", "--retries", "1", "-o"])
        .arg(&layout)
        .arg(&recipe)
        .env("T_USER", TOKEN_USER)
        .env("T_PASS", TOKEN_PASS)
        .env("B_USER", BASIC_USER)
        .env("B_PASS_ENCODED", b64(BASIC_PASS)));
    assert_ok(&r);
    let (digest, manifest_size, blobs) = read_layout(&layout);
    assert_eq!(r.stdout.trim(), digest);
    // Figure: the optional target's failure is one warning naming it.
    assert!(
        r.stderr.contains("warning:") && r.stderr.contains(&dead),
        "{}",
        r.stderr
    );
    // Figure: all tags on both registries, each blob sent once per registry.
    let blob_bytes: u64 = blobs.values().sum();
    assert_served(&pair, &["1.0", "latest"], &digest);
    for p in pair.proxies() {
        assert_eq!(
            body_bytes(p),
            blob_bytes + 2 * manifest_size,
            "{}",
            p.host()
        );
    }

    // A required target that fails: exit 1, naming registry, repository, status.
    let r = run(env
        .cmd()
        .args(["build", "--push", "--retries", "1", "-o"])
        .arg(&layout)
        .arg(&recipe)
        .env("T_USER", TOKEN_USER)
        .env("T_PASS", TOKEN_PASS)
        .env("B_USER", BASIC_USER)
        .env("B_PASS_ENCODED", b64("wrong-password")));
    assert_eq!(r.code, 1, "{}", r.stderr);
    let last = r.stderr.lines().last().unwrap_or("");
    let err = &r.stderr[r.stderr.find("error:").expect("an error line")..];
    assert!(err.contains(&pair.b.host()), "{}", r.stderr);
    assert!(err.contains("acme/app"), "{}", r.stderr);
    assert!(err.contains("401"), "{}", r.stderr);
    // Every target has a line in the summary (3 targets x 2 tags).
    for tag in ["1.0", "latest"] {
        for host in [pair.a.host(), pair.b.host(), dead.clone()] {
            let name = format!("{host}/acme/app:{tag}");
            assert!(
                r.stderr.contains(&name),
                "no line for {name}: {last}\n{}",
                r.stderr
            );
        }
    }
}

#[test]
fn build_push_streams_layers_before_the_build_ends() {
    // The first layer is small, the last big: with one compression job the
    // small layer is uploaded while the big one still compresses.
    let pair = Pair::start();
    let env = &pair.env;
    let dir = tempdir();
    let p = &pair.b;
    let targets = format!("[[target]]\nref = \"{}/acme/app\"\n", p.host());
    let recipe = write_recipe(dir.path(), &[200_000, 24 << 20], 10, &targets);
    let layout = dir.path().join("out");
    let r = run(env
        .cmd()
        .args(["build", "--push", "--json", "--jobs", "1", "-o"])
        .arg(&layout)
        .arg(&recipe));
    assert_ok(&r);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let layer = |name: &str| -> String {
        let layers = doc["build"]["images"][0]["layers"].as_array().unwrap();
        let l = layers.iter().find(|l| l["source"] == name);
        let digest = l.and_then(|l| l["digest"].as_str());
        digest
            .unwrap_or_else(|| panic!("no layer {name}: {doc:#}"))
            .to_string()
    };
    let (small, big) = (layer("l0"), layer("l1"));
    // The big layer's blob was last written when its compression ended.
    let big_done = std::fs::metadata(layout.join("blobs/sha256").join(&big[7..]))
        .and_then(|m| m.modified())
        .unwrap();
    // Figure: the small layer's blob PUT (the one naming its digest) reached
    // the registry, and was stored, while the big layer was not yet
    // written: the upload did not wait for the build.
    let log = p.log();
    let put = log
        .iter()
        .find(|e| {
            e.method == "PUT"
                && e.path.contains("/blobs/uploads/")
                && e.query.as_deref().is_some_and(|q| q.contains(&small[7..]))
        })
        .unwrap_or_else(|| panic!("no PUT of {small}: {log:#?}"));
    assert_eq!(put.status, Some(201), "{put:#?}");
    assert!(
        put.arrived_at < big_done,
        "the PUT of {small} arrived {:?} after the big layer was written",
        put.arrived_at.duration_since(big_done).unwrap_or_default()
    );
    let (digest, _, _) = read_layout(&layout);
    assert_eq!(doc["build"]["digest"], digest.as_str());
    assert_eq!(doc["push"]["digest"], digest.as_str());
    assert_eq!(served(&pair, p, "acme/app:1.0"), digest);
}

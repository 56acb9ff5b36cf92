//! `boxwright schema` and `boxwright completions`.
//!
//! The recipe's JSON Schema is written by hand (`schema/recipe.schema.json`);
//! these tests keep it equal to what the parser accepts: for every table its
//! property names are the keys serde lists in its "unknown field" error, every
//! recipe of the repository (and those the tests use) validates, and wrong
//! types, unknown keys and bad enum values fail.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::common::{boxwright, ok, root};

fn schema() -> Value {
    let out = ok(boxwright().arg("schema"));
    serde_json::from_str(&out).expect("`boxwright schema` prints JSON")
}

fn toml_to_json(text: &str) -> Value {
    let v: toml::Value = toml::from_str(text).expect("TOML");
    serde_json::to_value(v).unwrap()
}

/// Error messages of the schema for this recipe (empty: valid).
fn errors(validator: &jsonschema::Validator, text: &str) -> Vec<String> {
    let inst = toml_to_json(text);
    validator
        .iter_errors(&inst)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

fn parses(text: &str) -> Result<(), String> {
    toml::from_str::<boxwright::recipe::schema::RecipeFile>(text)
        .map(|_| ())
        .map_err(|e| e.message().to_string())
}

/// Every key in every table, each with a valid value.
const EVERY_KEY: &str = r#"
context = "."
tags = ["1.0", "latest"]

[vars]
VERSION = "1.0"

[image]
name = "every"
base = "oci:base-layout:1.0"
base_fallback = ["docker.io/library/alpine:3.20"]
platforms = ["linux/amd64", "linux/arm/v7"]
created = "2024-01-01T00:00:00Z"
author = "acme"
sbom = "spdx"

[config]
entrypoint = ["/bin/app"]
cmd = ["--help"]
workdir = "/srv"
user = "1000:1000"
exposed_ports = ["8080", "53/udp"]
volumes = ["/data"]
stop_signal = "SIGTERM"

[config.env]
PATH = "/usr/bin"

[config.labels]
"org.opencontainers.image.source" = "https://github.com/acme/app"

[annotations]
"org.opencontainers.image.version" = "${VERSION}"

[[layer]]
name = "app"
mode = 0o644
dir_mode = "0755"
uid = 1000
gid = 1000
uname = "app"
gname = "app"
split = "auto"
stable = ["vendor/**", "**/*.so"]
max_layers = 3

[[layer.entry]]
src = "app"
dest = "/srv/app"
exclude = ["**/__pycache__"]
follow_symlinks = true
mode = "4755"
dir_mode = 0o750
uid = 0
gid = 0
uname = "root"
gname = "root"

[[layer.entry]]
content = "hello\n"
dest = "/etc/hello"

[[layer.entry]]
symlink = "/srv/app/main"
dest = "/usr/local/bin/app"

[[layer.entry]]
dir = true
dest = "/tmp"

[[layer]]
name = "python-deps"
uid = 1000

[layer.python]
lock = "app/pylock.toml"
find_links = ["wheelhouse"]
version = "3.11"
prefix = "/usr/local"
site_packages = "/usr/local/lib/python3.11/site-packages"
interpreter = "/usr/local/bin/python3.11"
glibc = "2.36"
split = "package"
max_layers = 40

[[target]]
ref = "ghcr.io/acme/app"
role = "primary"
username_env = "GITHUB_ACTOR"
password_env = "GITHUB_TOKEN"
encoding = "plain"
optional = false

[[target]]
ref = "docker.io/acme/app"
role = "backup"
username_env = "DOCKERHUB_USER"
password_env = "DOCKERHUB_API_KEY_ENCODED"
encoding = "base64"
username_encoding = "base64"
optional = true
"#;

/// Recipes the other integration tests write (build's "rich" recipe, push's
/// recipe with credentials, index's two-platform recipe), abridged to their
/// TOML.
const TEST_RECIPES: &[&str] = &[
    r#"
[image]
name = "rich"

[config]
cmd = ["/usr/local/bin/tool"]

[[layer]]
name = "app"
uid = 1000
gid = 1000
uname = "app"
gname = "app"
mode = 0o640

[[layer.entry]]
src = "app"
dest = "/srv/app"
exclude = ["**/__pycache__", "*.pyc"]

[[layer]]
name = "misc"

[[layer.entry]]
src = "bin/tool"
dest = "/usr/local/bin/"
"#,
    r#"
tags = ["1.0"]

[image]
name = "pushed"

[[layer]]
[[layer.entry]]
src = "blob-0.bin"
dest = "/data/blob-0.bin"

[[target]]
ref = "127.0.0.1:5000/acme/app"
username_env = "T_USER"
password_env = "T_PASS"

[[target]]
ref = "127.0.0.1:5001/acme/app"
role = "backup"
username_env = "B_USER"
password_env = "B_PASS_ENCODED"
encoding = "base64"

[[target]]
ref = "127.0.0.1:9/acme/app"
role = "backup"
optional = true
"#,
    "tags = [\"1.0\"]\n\n[image]\nname = \"app\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n\n\
     [[layer]]\nname = \"tool\"\n\n[[layer.entry]]\nsrc = \"tool-${ARCH}.bin\"\ndest = \"/usr/local/bin/tool\"\nmode = 0o755\n",
];

#[test]
fn schema_is_a_valid_draft_07_schema_and_every_recipe_validates() {
    let s = schema();
    assert_eq!(s["$schema"], "http://json-schema.org/draft-07/schema#");
    if let Err(e) = jsonschema::meta::validate(&s) {
        panic!("not a valid JSON Schema: {e}");
    }
    let v = jsonschema::validator_for(&s).unwrap();
    // Figure: every recipe under recipes/ validates, and the parser takes it.
    let mut n = 0;
    for entry in std::fs::read_dir(root().join("recipes")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(
                errors(&v, &text),
                Vec::<String>::new(),
                "{}",
                path.display()
            );
            parses(&text).unwrap();
            n += 1;
        }
    }
    assert!(n >= 1, "recipes/*.toml found: {n}");
    for text in std::iter::once(&EVERY_KEY).chain(TEST_RECIPES) {
        assert_eq!(errors(&v, text), Vec::<String>::new(), "{text}");
        parses(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    }
}

#[test]
fn schema_refuses_wrong_types_unknown_keys_and_bad_values() {
    let v = jsonschema::validator_for(&schema()).unwrap();
    let base = "[image]\nname = \"t\"\n\n[[layer]]\n[[layer.entry]]\ndest = \"/x\"\n";
    let cases: &[(&str, String)] = &[
        ("tags is not a string", format!("tags = \"latest\"\n{base}content = \"x\"\n")),
        ("unknown top-level key", format!("tag = [\"1\"]\n{base}content = \"x\"\n")),
        ("unknown key in [image]", format!("{}content = \"x\"\n", base.replace("name = \"t\"\n", "name = \"t\"\nnmae = \"x\"\n"))),
        ("uid is not a number", format!("{base}content = \"x\"\nuid = \"root\"\n")),
        ("mode above 0o7777", format!("{base}content = \"x\"\nmode = \"17777\"\n")),
        ("two sources in one entry", format!("{base}content = \"x\"\nsrc = \"y\"\n")),
        ("no source in an entry", base.to_string()),
        ("missing [image]", "tags = [\"1\"]\n".to_string()),
        (
            "bad encoding",
            format!("{base}content = \"x\"\n\n[[target]]\nref = \"ghcr.io/a/b\"\nencoding = \"rot13\"\n"),
        ),
        (
            "bad username_encoding",
            format!("{base}content = \"x\"\n\n[[target]]\nref = \"ghcr.io/a/b\"\nusername_encoding = \"hex\"\n"),
        ),
        (
            "a [layer.python] with entries",
            format!("{base}content = \"x\"\n[layer.python]\nlock = \"pylock.toml\"\n"),
        ),
        (
            "split neither package nor one",
            "[image]\nname = \"t\"\n[[layer]]\n[layer.python]\nlock = \"l\"\nsplit = \"wheel\"\n".to_string(),
        ),
        (
            "max_layers below 1",
            "[image]\nname = \"t\"\n[[layer]]\n[layer.python]\nlock = \"l\"\nmax_layers = 0\n".to_string(),
        ),
        (
            "split on a [[layer]] other than auto",
            format!("{}content = \"x\"\n", base.replace("[[layer]]\n", "[[layer]]\nsplit = \"package\"\n")),
        ),
        (
            "max_layers below 2 with split = auto",
            format!("{}content = \"x\"\n", base.replace("[[layer]]\n", "[[layer]]\nsplit = \"auto\"\nmax_layers = 1\n")),
        ),
        (
            "split = auto on a [[layer]] with a [layer.python]",
            "[image]\nname = \"t\"\n[[layer]]\nsplit = \"auto\"\n[layer.python]\nlock = \"l\"\n".to_string(),
        ),
        (
            "stable without split",
            format!("{}content = \"x\"\n", base.replace("[[layer]]\n", "[[layer]]\nstable = [\"x/**\"]\n")),
        ),
        (
            "prefix in an entry's python",
            format!("{base}python = {{ lock = \"l\", prefix = \"/usr\" }}\n"),
        ),
        (
            "role neither primary nor backup",
            format!("{base}content = \"x\"\n\n[[target]]\nref = \"ghcr.io/a/b\"\nrole = \"tertiary\"\n"),
        ),
    ];
    // The valid base itself passes.
    assert!(errors(&v, &format!("{base}content = \"x\"\n")).is_empty());
    for (why, text) in cases {
        assert!(!errors(&v, text).is_empty(), "{why} should fail:\n{text}");
    }
}

/// The schema object of a table, following `allOf`/`$ref` one level.
fn table<'a>(s: &'a Value, path: &[&str]) -> &'a Value {
    let mut cur = s;
    for key in path {
        let mut p = &cur["properties"][*key];
        if p["type"] == "array" {
            p = &p["items"];
        }
        if let Some(r) = p["allOf"][0]["$ref"].as_str().or(p["$ref"].as_str()) {
            let name = r.trim_start_matches("#/definitions/");
            p = &s["definitions"][name];
        }
        cur = p;
    }
    cur
}

/// The keys serde accepts in a table: the list of its "unknown field" error.
fn parser_keys(text: &str) -> BTreeSet<String> {
    let msg = parses(text).expect_err("an unknown key is refused");
    let list = msg
        .split_once("expected")
        .unwrap_or_else(|| panic!("no key list in: {msg}"))
        .1;
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn schema_properties_equal_the_keys_the_parser_accepts_in_every_table() {
    let s = schema();
    let header = "[image]\nname = \"t\"\n";
    let rest = "[config]\n\n[[layer]]\n\n[[layer.entry]]\ndest = \"/x\"\ncontent = \"x\"\n\n[[target]]\nref = \"ghcr.io/a/b\"\n";
    let probe = "zz_unknown = 1\n";
    // (table path in the schema, recipe with the unknown key in that table)
    let cases: Vec<(Vec<&str>, String)> = vec![
        (vec![], format!("{probe}{header}{rest}")),
        (vec!["image"], format!("{header}{probe}{rest}")),
        (
            vec!["config"],
            format!(
                "{header}{}",
                rest.replace("[config]\n", &format!("[config]\n{probe}"))
            ),
        ),
        (
            vec!["layer"],
            format!(
                "{header}{}",
                rest.replace("[[layer]]\n", &format!("[[layer]]\n{probe}"))
            ),
        ),
        (
            vec!["layer", "entry"],
            format!(
                "{header}{}",
                rest.replace("[[layer.entry]]\n", &format!("[[layer.entry]]\n{probe}"))
            ),
        ),
        (vec!["target"], format!("{header}{rest}{probe}")),
        (
            vec!["layer", "python"],
            format!("{header}[[layer]]\n[layer.python]\nlock = \"l\"\n{probe}"),
        ),
        (
            vec!["layer", "entry", "python"],
            format!("{header}[[layer]]\n[[layer.entry]]\ndest = \"/x\"\npython = {{ lock = \"l\", zz_unknown = 1 }}\n"),
        ),
    ];
    for (path, text) in cases {
        let accepted = parser_keys(&text);
        let t = table(&s, &path);
        let documented: BTreeSet<String> = t["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("no properties for {path:?}"))
            .keys()
            .cloned()
            .collect();
        assert_eq!(documented, accepted, "table {path:?}");
        assert_eq!(
            t["additionalProperties"], false,
            "table {path:?} refuses unknown keys"
        );
        // Every field is documented.
        for (k, p) in t["properties"].as_object().unwrap() {
            let desc = p["description"].as_str().unwrap_or_default();
            assert!(desc.len() > 10, "{path:?}.{k} has no description");
        }
    }
}

#[test]
fn completions_name_the_subcommands() {
    let bash = ok(boxwright().args(["completions", "bash"]));
    for sub in [
        "build",
        "push",
        "copy",
        "verify",
        "index",
        "schema",
        "completions",
    ] {
        assert!(bash.contains(sub), "bash completion lacks {sub}");
    }
    assert!(bash.contains("--annotation"), "index's flags are completed");
    for shell in ["zsh", "fish"] {
        let out = ok(boxwright().args(["completions", shell]));
        assert!(
            out.contains("boxwright") && out.contains("index"),
            "{shell}"
        );
    }
    let r = crate::common::run(boxwright().args(["completions", "tcsh"]));
    assert_eq!(r.code, 2, "an unknown shell is a usage error");
}

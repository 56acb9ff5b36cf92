//! The mistakes a new user makes first, running the README's commands: a
//! reference with a mistyped tag, a recipe path from another directory, a
//! recipe target's credential variable left unset. Each error says what to
//! do, not only what failed.

use crate::common::{assert_code, run, write, Run};
use crate::env::Env;
use crate::support::{tempdir, tiny_oci_layout, Registry};

/// A registry holding a one-layer image (made from `seed`) at
/// `acme/app:TAG`, pushed by boxwright, and what pushed it. The registry
/// stops and the directory goes when they are dropped: bind both.
struct Pushed {
    reg: Registry,
    env: Env,
    dir: tempfile::TempDir,
    /// `HOST/acme/app:TAG`.
    reference: String,
}

fn pushed(seed: &[u8], tag: &str) -> Pushed {
    let (reg, env, dir) = (Registry::start(), Env::new(), tempdir());
    let layout = dir.path().join("layout");
    tiny_oci_layout(&layout, "1", seed);
    let reference = format!("{}/acme/app:{tag}", reg.host());
    let push = run(env
        .cmd()
        .arg("push")
        .arg(&layout)
        .args(["--to", &reference]));
    assert_code(&push, 0);
    Pushed {
        reg,
        env,
        dir,
        reference,
    }
}

/// Exit `code`, and stderr holding each of `wanted`.
fn says(r: &Run, code: i32, wanted: &[&str]) {
    assert_code(r, code);
    for w in wanted {
        assert!(r.stderr.contains(w), "expected {w:?} in:\n{}", r.stderr);
    }
}

/// A reference whose tag is not in the registry: `inspect`, `pull` and
/// `copy` fail (exit 1) and point at `boxwright tags` of its repository;
/// a digest that is not there gets no such hint (a tag list would not
/// help).
#[test]
fn a_mistyped_tag_points_at_the_repositorys_tag_list() {
    let Pushed { reg, env, dir, .. } = pushed(b"readme", "1.4.0");
    let repo = format!("{}/acme/app", reg.host());
    let hint = format!("`boxwright tags {repo}` lists the tags it holds");
    let typo = format!("{repo}:1.4");

    says(&run(env.cmd().args(["inspect", &typo])), 1, &[&hint]);

    let out = dir.path().join("pulled");
    let pull = run(env.cmd().args(["pull", &typo, "-o"]).arg(&out));
    says(&pull, 1, &[&hint]);
    assert!(!out.exists(), "a failed pull wrote {}", out.display());

    let copy = run(env
        .cmd()
        .args(["copy", &typo, &format!("{}/acme/backup", reg.host())]));
    says(&copy, 1, &[&hint]);

    let digest = format!("{repo}@sha256:{}", "1".repeat(64));
    let by_digest = run(env.cmd().args(["inspect", &digest]));
    assert_code(&by_digest, 1);
    assert!(
        !by_digest.stderr.contains("boxwright tags"),
        "{}",
        by_digest.stderr
    );
}

/// `build missing.toml` run from another directory than meant: exit 2,
/// naming the directory the relative path was read from.
#[test]
fn a_recipe_that_is_not_there_names_the_directory_it_was_looked_for_in() {
    let env = Env::new();
    let dir = tempdir();
    let r = run(env
        .cmd()
        .current_dir(dir.path())
        .args(["build", "recipes/r2d.toml"]));
    assert_code(&r, 2);
    let cwd = dir.path().canonicalize().unwrap();
    assert!(
        r.stderr
            .contains(&format!("looked for in {}", cwd.display())),
        "{}",
        r.stderr
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// `build --push` of a recipe whose required target names a credential
/// variable that is not set: exit 2, before any request, and the error
/// says to set the variable or to push with `--to` alone.
#[test]
fn an_unset_credential_variable_says_to_set_it() {
    let env = Env::new();
    let dir = tempdir();
    let recipe = dir.path().join("r.toml");
    write(
        &recipe,
        "[image]\nname = \"app\"\n\n[[layer]]\n[[layer.entry]]\ncontent = \"x\"\ndest = \"/x\"\n\n\
         [[target]]\nref = \"127.0.0.1:9/acme/app\"\nusername_env = \"BOXWRIGHT_TEST_UNSET_USER\"\n\
         password_env = \"BOXWRIGHT_TEST_UNSET_PASSWORD\"\n",
    );
    let r = run(env
        .cmd()
        .env_remove("BOXWRIGHT_TEST_UNSET_USER")
        .env_remove("BOXWRIGHT_TEST_UNSET_PASSWORD")
        .arg("build")
        .arg(&recipe)
        .arg("--push"));
    assert_code(&r, 2);
    assert!(
        r.stderr.contains("BOXWRIGHT_TEST_UNSET_USER")
            && r.stderr.contains("set it to this registry's user name")
            && r.stderr.contains("--to"),
        "{}",
        r.stderr
    );
}

/// `boxwright --help` says what `inspect` takes, as the README does: a
/// layout, or an image in a registry.
#[test]
fn the_command_list_says_inspect_takes_a_registry_image_too() {
    let r = run(Env::new().cmd().arg("--help"));
    assert_code(&r, 0);
    let line = r
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("inspect "))
        .unwrap_or_else(|| panic!("no inspect line in:\n{}", r.stdout));
    assert!(line.contains("a registry image"), "{line}");
}

/// `verify --key --require sbom` of an image pushed without a signature or
/// an SBOM: exit 1, and the error says how to attach each (`sign`,
/// `attest --sbom`), besides naming what is missing.
#[test]
fn verify_of_an_image_never_signed_says_how_to_sign_and_attest_it() {
    let Pushed {
        reg: _running,
        env,
        dir,
        reference,
    } = pushed(b"unsigned", "1");
    let prefix = dir.path().join("cosign");
    assert_code(
        &run(env
            .cmd()
            .args(["keygen", "--output-key-prefix"])
            .arg(&prefix)),
        0,
    );
    let r = run(env
        .cmd()
        .args(["verify", "--key"])
        .arg(dir.path().join("cosign.pub"))
        .args(["--require", "sbom", &reference]));
    let attest = "`boxwright attest --key KEY --sbom FILE REF...`";
    let sign = "`boxwright sign --key KEY REF...`";
    says(&r, 1, &["no valid signature", sign, attest]);
}

/// `sbom` of an image that has none, in a layout and in a registry: exit 1,
/// and the error says how to give it one (`build --sbom` for a layout,
/// `attest --sbom` or `build --push --sbom` for a pushed image).
#[test]
fn sbom_of_an_image_without_one_says_how_to_attach_one() {
    let Pushed {
        reg: _running,
        env,
        dir,
        reference,
    } = pushed(b"no sbom", "1");
    let local = run(env.cmd().arg("sbom").arg(dir.path().join("layout")));
    says(&local, 1, &["`boxwright build --sbom -o DIR`"]);
    let remote = run(env.cmd().args(["sbom", &reference]));
    says(
        &remote,
        1,
        &["`boxwright attest --key KEY --sbom FILE REF...`"],
    );
}

/// `verify` of a primary and a backup that missed the push: exit 1, the
/// backup named as not found, and the error gives the `copy` that puts the
/// image there from the primary.
#[test]
fn verify_of_a_backup_that_missed_the_push_gives_the_copy_that_mends_it() {
    let Pushed {
        reg,
        env,
        reference: primary,
        dir: _dir,
    } = pushed(b"primary only", "1");
    let backup = format!("{}/acme/backup:1", reg.host());
    let r = run(env.cmd().args(["verify", &primary, &backup]));
    let copy = format!("`boxwright copy {primary} DEST`");
    says(&r, 1, &[&format!("not found: {backup}"), &copy]);
}

/// A `BOXWRIGHT_TIMEOUT` left in the environment that is not a duration:
/// exit 2, and the error names the variable, not only `--timeout`, which
/// the command line does not hold.
#[test]
fn a_bad_timeout_from_the_environment_is_named() {
    let r = run(Env::new()
        .cmd()
        .env("BOXWRIGHT_TIMEOUT", "ten minutes")
        .args(["cache", "stats"]));
    assert_code(&r, 2);
    assert!(r.stderr.contains("BOXWRIGHT_TIMEOUT"), "{}", r.stderr);
}

/// `push --help` says what the README's pushing table says of `--to`: a
/// trailing `@` pushes by digest only.
#[test]
fn push_help_says_a_trailing_at_pushes_by_digest_only() {
    let r = run(Env::new().cmd().args(["push", "--help"]));
    assert_code(&r, 0);
    let to = r
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("--to "))
        .unwrap_or_else(|| panic!("no --to in:\n{}", r.stdout));
    assert!(to.contains("REPO@: by digest only"), "{to}");
}

/// Every value `verify --require` accepts (`signature` too) is named in
/// `verify --help`'s text of it and in the README where `--require` is
/// documented.
#[test]
fn every_value_of_verify_require_is_documented() {
    let r = run(Env::new().cmd().args(["verify", "--help"]));
    assert_code(&r, 0);
    let help = r
        .stdout
        .split("--require <")
        .nth(1)
        .unwrap_or_else(|| panic!("no --require in:\n{}", r.stdout));
    let (text, values) = help
        .split_once("[possible values: ")
        .unwrap_or_else(|| panic!("no possible values in:\n{help}"));
    let values: Vec<&str> = values.split(']').next().unwrap().split(", ").collect();
    assert!(values.contains(&"signature"), "{values:?}");
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    let documented = readme
        .split("\n\n")
        .find(|p| p.contains("`--require` (with `--key`"))
        .unwrap_or_else(|| panic!("the README does not document verify's --require"));
    for v in values {
        assert!(
            text.contains(v),
            "verify --help does not explain {v}:\n{text}"
        );
        assert!(
            documented.contains(&format!("`{v}`")),
            "README: {v} missing from:\n{documented}"
        );
    }
}

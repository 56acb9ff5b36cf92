//! `DIR:NAME` with names that hold colons and slashes, as podman, buildah
//! and skopeo write them (`localhost/app:1`): the directory is the longest
//! prefix before a `:` that is an OCI layout. Through inspect, push and a
//! build's `base = "oci:DIR:NAME"`.

use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::common::{assert_code, assert_ok, boxwright, run, tool, write};
use crate::env::Env;
use crate::support::{tempdir, tiny_oci_layout, Registry};

fn inspect_json(arg: &Path) -> Value {
    let r = run(boxwright().args(["inspect", "--json"]).arg(arg));
    assert_ok(&r);
    serde_json::from_str(&r.stdout).unwrap()
}

fn ref_name(v: &Value) -> String {
    v["descriptor"]["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Figure: a layout written by skopeo with the name `localhost/app:1`
/// (beside another name) is inspected, pushed and used as a base by that
/// name; an unknown name lists the names there.
#[test]
fn names_with_colons_and_slashes_select_their_image() {
    let t = tempdir();
    let src = t.path().join("src");
    let img = tiny_oci_layout(&src, "1", b"colons");
    let lay = t.path().join("lay");
    for name in ["localhost/app:1", "other"] {
        tool(
            "skopeo",
            &[
                "copy",
                "--quiet",
                &format!("oci:{}:1", src.display()),
                &format!("oci:{}:{name}", lay.display()),
            ],
        );
    }
    let arg = format!("{}:localhost/app:1", lay.display());
    let v = inspect_json(Path::new(&arg));
    assert_eq!(ref_name(&v), "localhost/app:1");
    assert_eq!(v["descriptor"]["digest"], img.manifest_digest.as_str());

    let r = run(boxwright()
        .arg("inspect")
        .arg(format!("{}:localhost/app:2", lay.display())));
    assert_code(&r, 2);
    assert!(
        r.stderr.contains("localhost/app:1") && r.stderr.contains("other"),
        "{}",
        r.stderr
    );

    let registry = Registry::start();
    let r = run(Env::new()
        .cmd()
        .args(["push", &arg, "--to"])
        .arg(format!("{}/acme/app:1", registry.host())));
    assert_ok(&r);
    assert_eq!(r.stdout.trim(), img.manifest_digest);

    write(
        &t.path().join("app.toml"),
        "[image]\nname = \"app\"\nbase = \"oci:lay:localhost/app:1\"\n\n[[layer]]\n[[layer.entry]]\ncontent = \"app\"\ndest = \"/app.txt\"\n",
    );
    let out = t.path().join("out");
    let r = run(boxwright()
        .args(["build", "--quiet", "--json", "-o"])
        .arg(&out)
        .arg(t.path().join("app.toml")));
    assert_ok(&r);
    let built: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        built["images"][0]["layers"][0]["digest"],
        img.layer_digest.as_str()
    );
}

/// Figure: with layouts at `a` (holding `b:c`) and `a:b` (holding `c`),
/// `a:b:c` is image `c` of `a:b` (the longest layout prefix); a plain
/// directory `x` does not win over a layout `x:y`; an existing directory
/// named with a colon is that directory.
#[test]
fn the_longest_layout_prefix_is_the_directory() {
    let t = tempdir();
    let a = t.path().join("a");
    let ab = t.path().join("a:b");
    tiny_oci_layout(&a, "b:c", b"in a");
    let in_ab = tiny_oci_layout(&ab, "c", b"in a:b");
    let v = inspect_json(&t.path().join("a:b:c"));
    assert_eq!(ref_name(&v), "c");
    assert_eq!(v["descriptor"]["digest"], in_ab.manifest_digest.as_str());
    // The whole string, when it is a directory.
    assert_eq!(ref_name(&inspect_json(&ab)), "c");

    fs::create_dir_all(t.path().join("x")).unwrap();
    let xy = tiny_oci_layout(&t.path().join("x:y"), "z", b"in x:y");
    let v = inspect_json(&t.path().join("x:y:z"));
    assert_eq!(v["descriptor"]["digest"], xy.manifest_digest.as_str());

    // No layout prefix: the longest directory, which then says it is not a layout.
    let r = run(boxwright().arg("inspect").arg(t.path().join("x:nothing")));
    assert_code(&r, 2);
    assert!(r.stderr.contains("not an OCI image layout"), "{}", r.stderr);
}

//! What a registry serves that cannot be used as it stands: an index entry
//! whose size is not its manifest's, a config whose descriptor claims more
//! than a document may have, manifests and configs that are malformed.
//! Every command that reads an image from a registry (`inspect`, `pull`,
//! `copy`, `build` on it as a base) takes each the same way.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{json, Value};

use crate::common::{assert_code, assert_ok, run, write, Run};
use crate::env::Env;
use crate::graph_budget::{descriptor, digest};
use crate::support::{tempdir, Registry, Scripted};

const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MT_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MT_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A layer the registry does not hold (no test here gets as far as it).
fn layer() -> Value {
    json!({"mediaType": MT_LAYER, "digest": format!("sha256:{}", "1".repeat(64)), "size": 3})
}

/// An amd64 config listing `diff_ids` diff IDs.
fn config(diff_ids: usize) -> String {
    let ids = vec![format!("sha256:{}", "2".repeat(64)); diff_ids];
    json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": ids}})
        .to_string()
}

/// A manifest of `config` (a descriptor) and `layers`.
fn manifest(config: Value, layers: Vec<Value>) -> String {
    json!({"schemaVersion": 2, "mediaType": MT_MANIFEST, "config": config, "layers": layers})
        .to_string()
}

/// A registry serving, as `acme/app`, `root` under the tag `1` and by
/// digest, `manifests` by digest and `blobs` by digest (404 for anything
/// else); every request is recorded.
fn registry(root: (&str, String), manifests: &[(&str, String)], blobs: &[String]) -> Scripted {
    let mut paths: HashMap<String, (String, String)> = HashMap::new();
    let (root_type, root_body) = root;
    paths.insert(
        "/v2/acme/app/manifests/1".into(),
        (root_type.into(), root_body.clone()),
    );
    for (mt, body) in std::iter::once(&(root_type, root_body)).chain(manifests) {
        let path = format!("/v2/acme/app/manifests/{}", digest(body));
        paths.insert(path, (mt.to_string(), body.clone()));
    }
    for body in blobs {
        let path = format!("/v2/acme/app/blobs/{}", digest(body));
        paths.insert(path, ("application/octet-stream".into(), body.clone()));
    }
    Scripted::serving(paths)
}

/// The commands that read `reference`, each as it is run here: inspect,
/// pull (into `dir/pulled`), copy to `dest` (when given) and build on it
/// as a base (into `dir/built`); none is to leave an output or send a blob.
fn commands(
    env: &Env,
    dir: &Path,
    reference: &str,
    dest: Option<&Registry>,
) -> Vec<(&'static str, Run)> {
    let recipe = dir.join("r.toml");
    write(
        &recipe,
        &format!(
            "[image]\nname = \"t\"\nbase = \"{reference}\"\n\n\
             [[layer]]\n[[layer.entry]]\ncontent = \"x\"\ndest = \"/x\"\n"
        ),
    );
    let mut runs = vec![("inspect", run(env.cmd().args(["inspect", reference])))];
    if let Some(dest) = dest {
        let to = format!("{}/acme/copy:1", dest.host());
        runs.push((
            "copy",
            run(env
                .cmd()
                .args(["copy", "--no-referrers", "--retries", "0", reference, &to])),
        ));
        assert!(dest.stored_blobs().is_empty(), "a failed copy sent blobs");
    }
    runs.extend([
        (
            "pull",
            run(env
                .cmd()
                .args(["pull", reference, "-o"])
                .arg(dir.join("pulled"))),
        ),
        (
            "build",
            run(env
                .cmd()
                .arg("build")
                .arg(&recipe)
                .arg("-o")
                .arg(dir.join("built"))),
        ),
    ]);
    assert!(!dir.join("pulled").exists(), "a failed pull left an output");
    assert!(!dir.join("built").exists(), "a failed build left an output");
    runs
}

/// Figures: an index whose one entry says its manifest has 10 bytes (it
/// has more), or 100 bytes more than it has: `inspect --check` reports
/// that manifest `oversized` or `truncated` and exits 1, and inspect,
/// pull, copy and build each fail (exit 1) without writing or sending
/// anything. With the entry's size right, the same registry inspects fine.
/// The manifest was taken as it came (its digest matched), so that a pull
/// wrote an index that its own check then refused.
#[test]
fn an_index_entry_of_another_size_than_its_manifest_fails_every_command() {
    let cfg = config(1);
    let man = manifest(descriptor(MT_CONFIG, &cfg), vec![layer()]);
    let index = |size: usize| {
        let mut entry = descriptor(MT_MANIFEST, &man);
        entry["size"] = json!(size);
        entry["platform"] = json!({"architecture": "amd64", "os": "linux"});
        json!({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [entry]}).to_string()
    };
    let env = Env::new();
    let good = registry(
        (MT_INDEX, index(man.len())),
        &[(MT_MANIFEST, man.clone())],
        std::slice::from_ref(&cfg),
    );
    assert_ok(&run(env
        .cmd()
        .args(["inspect", &format!("{}/acme/app:1", good.host())])));

    for (size, status) in [(10, "oversized"), (man.len() + 100, "truncated")] {
        let srv = registry(
            (MT_INDEX, index(size)),
            &[(MT_MANIFEST, man.clone())],
            std::slice::from_ref(&cfg),
        );
        let reference = format!("{}/acme/app:1", srv.host());
        let r = run(env.cmd().args(["inspect", "--check", "--json", &reference]));
        assert_code(&r, 1);
        let v: Value = serde_json::from_str(&r.stdout).unwrap();
        let entry = v["check"]["blobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["digest"] == digest(&man).as_str())
            .cloned()
            .unwrap_or_else(|| panic!("{v}"));
        assert_eq!(entry["status"], status, "{v}");
        assert_eq!(v["check"]["ok"], false, "{v}");

        let dir = tempdir();
        let dest = Registry::start();
        for (what, r) in commands(&env, dir.path(), &reference, Some(&dest)) {
            assert_eq!(r.code, 1, "{what} (size {size}): {}", r.stderr);
        }
    }
}

/// Figures: a manifest whose config descriptor claims 5 GiB is refused
/// (exit 2) by inspect, pull, copy and build alike, before the config is
/// asked for: the registry sees no GET of it. pull and copy streamed it
/// into the blob cache before failing.
#[test]
fn a_config_over_the_document_cap_is_refused_before_it_is_fetched() {
    let huge = format!("sha256:{}", "ef".repeat(32));
    let config = json!({"mediaType": MT_CONFIG, "digest": huge, "size": 5u64 << 30});
    let srv = registry((MT_MANIFEST, manifest(config, vec![layer()])), &[], &[]);
    let reference = format!("{}/acme/app:1", srv.host());
    let env = Env::new();
    let dir = tempdir();
    let dest = Registry::start();
    for (what, r) in commands(&env, dir.path(), &reference, Some(&dest)) {
        assert_eq!(r.code, 2, "{what}: {}", r.stderr);
    }
    let asked: Vec<String> = srv
        .requests()
        .into_iter()
        .filter(|r| r.path().ends_with(&huge))
        .map(|r| format!("{} {}", r.method, r.target))
        .collect();
    assert!(asked.is_empty(), "{asked:?}");
}

/// Figures: a config that is not JSON, a layer size of -1, a layer digest
/// that is not one, and a config listing no diff ID for the one layer:
/// each is bad input (exit 2) from pull and build, from inspect (which
/// shows the diff IDs without counting them), and from copy too when the
/// fault is in the manifest (copy does not read configs). pull exited 1
/// where the others exited 2.
#[test]
fn malformed_registry_content_is_bad_input_in_every_command() {
    let not_json = "this is not json".to_string();
    let cfg = config(1);
    let no_ids = config(0);
    let mut negative = layer();
    negative["size"] = json!(-1);
    let mut bad_digest = layer();
    bad_digest["digest"] = json!("sha256:../../etc");
    let cases = [
        (
            "config not JSON",
            descriptor(MT_CONFIG, &not_json),
            layer(),
            &not_json,
            false,
        ),
        ("size -1", descriptor(MT_CONFIG, &cfg), negative, &cfg, true),
        (
            "bad digest",
            descriptor(MT_CONFIG, &cfg),
            bad_digest,
            &cfg,
            true,
        ),
        (
            "diff IDs",
            descriptor(MT_CONFIG, &no_ids),
            layer(),
            &no_ids,
            false,
        ),
    ];
    let env = Env::new();
    for (case, config, layer, blob, in_manifest) in cases {
        let srv = registry(
            (MT_MANIFEST, manifest(config, vec![layer])),
            &[],
            std::slice::from_ref(blob),
        );
        let reference = format!("{}/acme/app:1", srv.host());
        let dir = tempdir();
        let dest = in_manifest.then(Registry::start);
        for (what, r) in commands(&env, dir.path(), &reference, dest.as_ref()) {
            // inspect shows the diff IDs a config lists, however many.
            if (case, what) == ("diff IDs", "inspect") {
                assert_ok(&r);
                continue;
            }
            assert_eq!(r.code, 2, "{case}: {what}: {}", r.stderr);
        }
    }
}

/// Figures: `index` reading a source served malformed (a manifest that is
/// not JSON or not a manifest, a layer size of -1, a config that is not
/// JSON) exits 2, as every other command does, and sends nothing to its
/// target. It exited 1, as for a failed transfer.
#[test]
fn index_takes_a_malformed_source_as_bad_input() {
    let cfg = config(1);
    let not_json = "this is not json".to_string();
    let mut negative = layer();
    negative["size"] = json!(-1);
    let cases = [
        ("manifest not JSON", not_json.clone(), cfg.clone()),
        (
            "not a manifest",
            json!({"schemaVersion": 2, "mediaType": MT_MANIFEST, "config": 1}).to_string(),
            cfg.clone(),
        ),
        (
            "size -1",
            manifest(descriptor(MT_CONFIG, &cfg), vec![negative]),
            cfg.clone(),
        ),
        (
            "config not JSON",
            manifest(descriptor(MT_CONFIG, &not_json), vec![layer()]),
            not_json.clone(),
        ),
    ];
    let env = Env::new();
    let dest = Registry::start();
    for (case, man, blob) in cases {
        let srv = registry((MT_MANIFEST, man.clone()), &[], std::slice::from_ref(&blob));
        let source = format!("{}/acme/app@{}", srv.host(), digest(&man));
        let to = format!("{}/acme/index:1", dest.host());
        let r = run(env
            .cmd()
            .args(["index", "--retries", "0", &source, "--to", &to]));
        assert_code(&r, 2);
        assert!(r.stderr.contains(&source), "{case}: {}", r.stderr);
        assert!(dest.stored_blobs().is_empty(), "{case}: sent blobs");
    }
}

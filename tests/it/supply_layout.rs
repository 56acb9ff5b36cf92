//! SBOM and provenance without a push: `build --sbom --provenance -o DIR`
//! keeps them in the layout as artifacts about the image (listed in
//! `index.json`), `sbom oci:DIR` prints the SBOM from there, and a later
//! `push` of the layout attaches them where the image goes.

use std::path::Path;

use serde_json::Value;

use crate::common::*;
use crate::pair::Pair;
use crate::supply::{manifest_b, python_check, recipe, refs};
use crate::support::{tempdir, Injected};

fn build_layout(pair: &Pair, recipe: &Path, out: &Path, extra: &[&str]) -> Run {
    run(pair
        .cmd()
        .arg("build")
        .arg(recipe)
        .arg("-o")
        .arg(out)
        .args(extra))
}

fn index(out: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap()
}

fn blob(out: &Path, digest: &str) -> Vec<u8> {
    std::fs::read(
        out.join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
    .unwrap()
}

/// Every file of a layout with its bytes, by relative path.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn supply_layout_keeps_sbom_and_provenance_and_push_attaches_them() {
    let pair = Pair::start();
    pair.a.configure(|c| c.referrers_api = true);
    let dir = tempdir();
    let r = recipe(dir.path(), "app", 3);
    let out = dir.path().join("out");
    let built = build_layout(&pair, &r, &out, &["--sbom", "cyclonedx", "--provenance"]);
    assert_ok(&built);
    let digest = built.stdout.trim().to_string();
    let hex = digest.trim_start_matches("sha256:");

    // index.json: the image, then the two artifacts about it.
    let idx = index(&out);
    let entries = idx["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 3, "{idx}");
    assert_eq!(entries[0]["digest"], digest.as_str());
    assert!(entries[0].get("artifactType").is_none());
    let types: Vec<&str> = entries[1..]
        .iter()
        .map(|d| d["artifactType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "application/vnd.cyclonedx+json",
            "application/vnd.in-toto+json"
        ]
    );
    for e in &entries[1..] {
        assert!(e["annotations"]
            .get("org.opencontainers.image.ref.name")
            .is_none());
        let m: Value = serde_json::from_slice(&blob(&out, e["digest"].as_str().unwrap())).unwrap();
        assert_eq!(m["subject"]["digest"], digest.as_str());
        assert_eq!(
            m["config"]["mediaType"],
            "application/vnd.oci.empty.v1+json"
        );
        assert_eq!(blob(&out, m["config"]["digest"].as_str().unwrap()), b"{}");
    }
    let provenance: Value = {
        let m: Value =
            serde_json::from_slice(&blob(&out, entries[2]["digest"].as_str().unwrap())).unwrap();
        serde_json::from_slice(&blob(&out, m["layers"][0]["digest"].as_str().unwrap())).unwrap()
    };
    assert_eq!(provenance["subject"][0]["name"], "app");
    assert_eq!(provenance["subject"][0]["digest"]["sha256"], hex);

    // Deterministic: another build gives the same files, byte for byte.
    let again = dir.path().join("again");
    assert_ok(&build_layout(
        &pair,
        &r,
        &again,
        &["--sbom", "cyclonedx", "--provenance"],
    ));
    assert_eq!(files(&out), files(&again));

    // The SBOM from the layout, as oci:DIR and as a plain directory,
    // validated by the CycloneDX schema and library.
    let from_layout = run(pair.cmd().arg("sbom").arg(format!("oci:{}", out.display())));
    assert_ok(&from_layout);
    let plain = run(pair.cmd().arg("sbom").arg(&out));
    assert_ok(&plain);
    assert_eq!(from_layout.stdout, plain.stdout);
    let file = dir.path().join("sbom.cdx.json");
    std::fs::write(&file, &from_layout.stdout).unwrap();
    python_check(&["sbom-cyclonedx", file.to_str().unwrap()]);
    let doc: Value = serde_json::from_str(&from_layout.stdout).unwrap();
    assert_eq!(doc["bomFormat"], "CycloneDX");

    // push: the image, then its artifacts on both registries.
    let (a_ref, b_ref) = refs(&pair, "acme/app", "1");
    let pushed = run(pair
        .cmd()
        .arg("push")
        .arg(&out)
        .args(["--to", &a_ref, "--to", &b_ref, "--json"]));
    assert_ok(&pushed);
    let report: Value = serde_json::from_str(&pushed.stdout).unwrap();
    assert_eq!(report["digest"], digest.as_str());
    let repos = report["supply"]["repositories"].as_array().unwrap();
    assert_eq!(repos.len(), 2, "{report}");
    for repo in repos {
        assert_eq!(repo["ok"], true, "{repo}");
        let kinds: Vec<&str> = repo["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["sbom", "provenance"]);
    }
    // B: the referrers tag lists the artifacts with the layout's digests.
    let tagged = manifest_b(&pair, "acme/app", &format!("sha256-{hex}")).expect("referrers tag");
    let listed: Vec<&str> = tagged["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["digest"].as_str().unwrap())
        .collect();
    let kept: Vec<&str> = entries[1..]
        .iter()
        .map(|d| d["digest"].as_str().unwrap())
        .collect();
    assert_eq!(listed, kept);
    // A answered the referrers API: no tag written there.
    assert!(pair.a.injected_count(Injected::Referrers) > 0);
    assert!(!pair
        .a
        .log()
        .iter()
        .any(|e| e.method == "PUT" && e.path.ends_with(&format!("/manifests/sha256-{hex}"))));
    // The SBOM read back from each registry is the layout's.
    for reference in [&a_ref, &b_ref] {
        let s = run(pair.cmd().args(["sbom", reference]));
        assert_ok(&s);
        assert_eq!(s.stdout, from_layout.stdout, "{reference}");
    }

    // A second push sends no artifact blob again.
    pair.reset();
    assert_ok(&run(pair
        .cmd()
        .arg("push")
        .arg(&out)
        .args(["--to", &a_ref, "--to", &b_ref])));
    for p in pair.proxies() {
        let uploads = p
            .log()
            .iter()
            .filter(|e| e.method == "POST" && e.path.contains("/blobs/uploads"))
            .count();
        assert_eq!(uploads, 0, "{:?}", p.log());
    }
}

#[test]
fn supply_layout_without_sbom_is_exit_1_and_archives_are_refused() {
    let pair = Pair::start();
    let dir = tempdir();
    let r = recipe(dir.path(), "plain", 4);
    let out = dir.path().join("out");
    assert_ok(&build_layout(&pair, &r, &out, &[]));
    assert_eq!(index(&out)["manifests"].as_array().unwrap().len(), 1);
    let none = run(pair.cmd().arg("sbom").arg(format!("oci:{}", out.display())));
    assert_code(&none, 1);
    assert!(none.stderr.contains("no usable SBOM"), "{}", none.stderr);

    let tar = dir.path().join("img.tar");
    let refused = build_layout(&pair, &r, &tar, &["--sbom", "--format", "oci-archive"]);
    assert_code(&refused, 2);
    assert!(
        refused.stderr.contains("use --format oci, not oci-archive"),
        "{}",
        refused.stderr
    );
    assert!(!tar.exists());

    // Signing names a repository: still only with --push.
    let key = dir.path().join("k.key");
    let signing = build_layout(
        &pair,
        &r,
        &out,
        &["--sbom", "--sign-key", key.to_str().unwrap()],
    );
    assert_code(&signing, 2);
    let legacy = build_layout(&pair, &r, &out, &["--cosign-tags"]);
    assert_code(&legacy, 2);
    assert!(legacy.stderr.contains("--push"), "{}", legacy.stderr);
}

/// A layout whose artifact is damaged (its payload no longer matches its
/// digest) is refused before anything is sent: exit 2 naming the blob,
/// and no registry received a single write.
#[test]
fn supply_layout_with_a_damaged_artifact_is_refused_before_the_push() {
    let pair = Pair::start();
    let dir = tempdir();
    let r = recipe(dir.path(), "app", 5);
    let out = dir.path().join("out");
    assert_ok(&build_layout(&pair, &r, &out, &["--sbom"]));
    let idx = index(&out);
    let sbom = idx["manifests"][1]["digest"].as_str().unwrap();
    let m: Value = serde_json::from_slice(&blob(&out, sbom)).unwrap();
    let payload = m["layers"][0]["digest"].as_str().unwrap();
    let path = out
        .join("blobs/sha256")
        .join(payload.trim_start_matches("sha256:"));
    let mut damaged = std::fs::read(&path).unwrap();
    damaged[0] ^= 1;
    std::fs::write(&path, damaged).unwrap();

    let (a_ref, b_ref) = refs(&pair, "acme/app", "1");
    let pushed = run(pair
        .cmd()
        .arg("push")
        .arg(&out)
        .args(["--to", &a_ref, "--to", &b_ref, "--json"]));
    assert_code(&pushed, 2);
    assert!(pushed.stderr.contains(payload), "{}", pushed.stderr);
    for p in pair.proxies() {
        let writes = ["PUT", "POST", "PATCH"].map(|m| p.count(m));
        assert_eq!(writes, [0, 0, 0], "{:?}", p.log());
    }
}

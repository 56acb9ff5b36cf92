//! Supply-chain evidence on a dual push: registry A's proxy plays a
//! registry with the OCI referrers API, B is the reference registry without
//! one (the `sha256-<hex>` referrers tag). What boxwright signs and writes
//! is checked by other implementations (`tests/it/supply_check.py`: the
//! official SPDX and CycloneDX schemas and readers, Python's `cryptography`
//! for the signatures); keys and passwords never appear in any output.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::*;
use crate::pair::{Pair, BASIC_PASS, BASIC_USER};
use crate::support::{tempdir, Fault, FaultProxy, Injected, LogEntry};

pub const PASSWORD: &str = "correct-horse-7c1e";

/// `python3 tests/it/supply_check.py ARGS` (the Python `scripts/test`
/// names in `BOXWRIGHT_CHECK_PYTHON` when it had to install the packages
/// apart): its stdout; fails the test saying so when the check fails or a
/// Python package is missing.
pub fn python_check(args: &[&str]) -> String {
    let script = root().join("tests/it/supply_check.py");
    let python = std::env::var_os("BOXWRIGHT_CHECK_PYTHON").unwrap_or_else(|| "python3".into());
    let out = crate::support::tools::output(Command::new(python).arg(script).args(args));
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => String::from_utf8_lossy(&out.stdout).into_owned(),
        Some(3) => {
            panic!("{stderr}(the supply-chain checks need Python packages: run scripts/test)")
        }
        _ => panic!("supply_check.py {args:?} failed:\n{stderr}"),
    }
}

/// A request to B (basic auth) through its proxy: status and body.
fn request_b(pair: &Pair, method: reqwest::Method, path: &str, accept: &str) -> (u16, Vec<u8>) {
    let url = format!("{}/v2/{path}", pair.b.url());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let resp = reqwest::Client::new()
            .request(method, &url)
            .basic_auth(BASIC_USER, Some(BASIC_PASS))
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.bytes().await.unwrap().to_vec())
    })
}

pub fn get_b(pair: &Pair, path: &str, accept: &str) -> (u16, Vec<u8>) {
    request_b(pair, reqwest::Method::GET, path, accept)
}

/// DELETE `path` (under `/v2/`) on registry B; its status.
pub fn delete_b(pair: &Pair, path: &str) -> u16 {
    request_b(pair, reqwest::Method::DELETE, path, "*/*").0
}

const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

pub fn manifest_b(pair: &Pair, repo: &str, reference: &str) -> Option<Value> {
    let (status, body) = get_b(
        pair,
        &format!("{repo}/manifests/{reference}"),
        &format!("{INDEX}, {MANIFEST}"),
    );
    (status == 200).then(|| serde_json::from_slice(&body).unwrap())
}

fn blob_b(pair: &Pair, repo: &str, digest: &str) -> Vec<u8> {
    let (status, body) = get_b(pair, &format!("{repo}/blobs/{digest}"), "*/*");
    assert_eq!(status, 200, "blob {digest} in {repo}");
    body
}

/// A key pair in `dir`: `cosign.key` (encrypted with [`PASSWORD`]) and `cosign.pub`.
pub fn keygen(pair: &Pair, dir: &Path) -> (PathBuf, PathBuf) {
    let prefix = dir.join("cosign");
    let r = run(pair
        .cmd()
        .env("COSIGN_PASSWORD", PASSWORD)
        .args(["keygen", "--encrypt", "--output-key-prefix"])
        .arg(&prefix));
    assert_ok(&r);
    assert!(r.stdout.starts_with("-----BEGIN PUBLIC KEY-----"));
    let key = dir.join("cosign.key");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&key).unwrap();
    assert!(text.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"));
    no_secrets(&r, &key);
    (key, dir.join("cosign.pub"))
}

/// `verify --json --key PUBLIC EXTRA... REFS...`: the run and its report
/// (`null` when stdout is not JSON).
pub fn verify_json(pair: &Pair, public: &Path, extra: &[&str], refs: &[&str]) -> (Run, Value) {
    let r = run(pair
        .cmd()
        .args(["verify", "--json", "--key"])
        .arg(public)
        .args(extra)
        .args(refs));
    let doc = serde_json::from_str(&r.stdout).unwrap_or(Value::Null);
    (r, doc)
}

/// Neither the password nor any line of the private key's PEM body is in
/// the run's output.
pub fn no_secrets(r: &Run, key: &Path) {
    let out = format!("{}{}", r.stdout, r.stderr);
    assert!(!out.contains(PASSWORD), "the password leaked:\n{out}");
    for line in std::fs::read_to_string(key).unwrap().lines() {
        if !line.starts_with("-----") && line.len() > 16 {
            assert!(!out.contains(line), "the private key leaked:\n{out}");
        }
    }
}

/// A recipe of two layers with known files; returns its path.
pub fn recipe(dir: &Path, name: &str, seed: u64) -> PathBuf {
    std::fs::write(dir.join("a.bin"), noise(70_000, seed)).unwrap();
    std::fs::write(dir.join("b.txt"), format!("hello {seed}\n")).unwrap();
    let text = format!(
        "[image]\nname = \"{name}\"\ncreated = \"2024-05-01T12:00:00Z\"\n\n\
         [[layer]]\nname = \"data\"\n[[layer.entry]]\nsrc = \"a.bin\"\ndest = \"/srv/a.bin\"\n\n\
         [[layer]]\nname = \"text\"\n[[layer.entry]]\nsrc = \"b.txt\"\ndest = \"/etc/b.txt\"\n\
         [[layer.entry]]\ndest = \"/etc/motd\"\ncontent = \"hi\\n\"\n"
    );
    let r = dir.join(format!("{name}.toml"));
    write(&r, &text);
    r
}

pub fn refs(pair: &Pair, repo: &str, tag: &str) -> (String, String) {
    (
        format!("{}/{repo}:{tag}", pair.a.host()),
        format!("{}/{repo}:{tag}", pair.b.host()),
    )
}

/// `boxwright sign --key KEY REF...` with the key's password.
pub fn sign(pair: &Pair, key: &Path, refs: &[&str]) -> Run {
    let mut c = pair.cmd();
    c.env("COSIGN_PASSWORD", PASSWORD)
        .arg("sign")
        .arg("--key")
        .arg(key);
    run(c.args(refs))
}

/// The hex of the digest a `build --push` printed.
pub fn pushed_hex(pushed: &Run) -> String {
    let digest = pushed.stdout.trim();
    digest.trim_start_matches("sha256:").to_string()
}

/// `attest --key KEY --WHAT FILE REFS...` (WHAT: `sbom` or `provenance`).
pub fn attest(pair: &Pair, key: &Path, what: &str, file: &Path, refs: &[&str]) -> Run {
    let mut c = pair.cmd();
    c.env("COSIGN_PASSWORD", PASSWORD)
        .arg("attest")
        .arg("--key")
        .arg(key)
        .arg(format!("--{what}"))
        .arg(file);
    run(c.args(refs))
}

pub fn build_push(pair: &Pair, dir: &Path, recipe: &Path, to: &[&str], extra: &[&str]) -> Run {
    let mut c = pair.cmd();
    c.env("COSIGN_PASSWORD", PASSWORD)
        .arg("build")
        .arg(recipe)
        .arg("-o")
        .arg(dir.join("out"))
        .arg("--push");
    for t in to {
        c.args(["--to", t]);
    }
    run(c.args(extra))
}

#[test]
fn supply_build_push_attaches_signature_sbom_and_provenance_on_both_registries() {
    let pair = Pair::start();
    pair.a.configure(|c| c.referrers_api = true);
    let dir = tempdir();
    let (key, public) = keygen(&pair, dir.path());
    let r = recipe(dir.path(), "app", 1);
    let (a_ref, b_ref) = refs(&pair, "acme/app", "1");
    let args = [
        "--sign-key",
        key.to_str().unwrap(),
        "--sbom",
        "--provenance",
        "--cosign-tags",
    ];
    let run1 = build_push(&pair, dir.path(), &r, &[&a_ref, &b_ref], &args);
    assert_ok(&run1);
    no_secrets(&run1, &key);
    let digest = run1.stdout.trim().to_string();
    let hex = digest.trim_start_matches("sha256:");

    // B (no referrers API): the referrers tag lists the three artifacts,
    // each with its artifactType and annotations, as the API would.
    let index =
        manifest_b(&pair, "acme/app", &format!("sha256-{hex}")).expect("referrers tag on B");
    let listed = index["manifests"].as_array().unwrap();
    let types: Vec<&str> = listed
        .iter()
        .map(|d| d["artifactType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "application/vnd.dev.cosign.artifact.sig.v1+json",
            "application/vnd.dsse.envelope.v1+json",
            "application/vnd.dsse.envelope.v1+json"
        ],
        "{index}"
    );
    let predicates: Vec<&str> = listed[1..]
        .iter()
        .map(|d| d["annotations"]["predicateType"].as_str().unwrap())
        .collect();
    assert_eq!(
        predicates,
        [
            "https://spdx.dev/Document",
            "https://slsa.dev/provenance/v1"
        ]
    );
    // cosign's legacy tags as well.
    for suffix in ["sig", "att"] {
        assert!(manifest_b(&pair, "acme/app", &format!("sha256-{hex}.{suffix}")).is_some());
    }
    // A answered the referrers API: no referrers tag there.
    assert!(pair.a.injected_count(Injected::Referrers) > 0);
    assert!(!pair
        .a
        .log()
        .iter()
        .any(|e| e.method == "PUT" && e.path.ends_with(&format!("/manifests/sha256-{hex}"))));

    // The signature, checked by Python's cryptography over cosign's payload.
    let sig_manifest: Value =
        manifest_b(&pair, "acme/app", listed[0]["digest"].as_str().unwrap()).unwrap();
    assert_eq!(sig_manifest["subject"]["digest"], digest.as_str());
    assert_eq!(
        sig_manifest["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    let layer = &sig_manifest["layers"][0];
    assert_eq!(
        layer["mediaType"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
    let payload = blob_b(&pair, "acme/app", layer["digest"].as_str().unwrap());
    let claims: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(
        claims["critical"]["image"]["docker-manifest-digest"],
        digest.as_str()
    );
    assert_eq!(
        claims["critical"]["identity"]["docker-reference"],
        format!("{}/acme/app", pair.b.host())
    );
    let payload_file = dir.path().join("payload.json");
    std::fs::write(&payload_file, &payload).unwrap();
    let sig = layer["annotations"]["dev.cosignproject.cosign/signature"]
        .as_str()
        .unwrap();
    python_check(&[
        "signature",
        public.to_str().unwrap(),
        payload_file.to_str().unwrap(),
        sig,
    ]);

    // The provenance envelope, checked by Python over DSSE's PAE.
    let prov_manifest =
        manifest_b(&pair, "acme/app", listed[2]["digest"].as_str().unwrap()).unwrap();
    let envelope = blob_b(
        &pair,
        "acme/app",
        prov_manifest["layers"][0]["digest"].as_str().unwrap(),
    );
    let env_file = dir.path().join("envelope.json");
    std::fs::write(&env_file, &envelope).unwrap();
    let statement: Value = serde_json::from_str(&python_check(&[
        "dsse",
        public.to_str().unwrap(),
        env_file.to_str().unwrap(),
    ]))
    .unwrap();
    assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(statement["subject"][0]["digest"]["sha256"], hex);
    let def = &statement["predicate"]["buildDefinition"];
    assert_eq!(
        def["externalParameters"]["recipe"]["digest"]["sha256"],
        sha256(&std::fs::read(&r).unwrap()).trim_start_matches("sha256:")
    );
    assert_eq!(
        statement["predicate"]["runDetails"]["builder"]["version"]["boxwright"],
        env!("CARGO_PKG_VERSION")
    );

    // verify --key: signature and both attestations on both registries.
    let (v, doc) = verify_json(
        &pair,
        &public,
        &["--require", "sbom,provenance"],
        &[&a_ref, &b_ref],
    );
    assert_ok(&v);
    let supply = &doc["supply"]["references"];
    assert_eq!(supply[0]["mode"], "referrers-api");
    assert_eq!(supply[1]["mode"], "tag-schema");
    for h in supply.as_array().unwrap() {
        assert_eq!(h["ok"], true, "{h}");
        assert_eq!(h["attestations"]["sbom"].as_array().unwrap().len(), 1);
        assert_eq!(
            h["attestations"]["provenance"], supply[0]["attestations"]["provenance"],
            "the same on both"
        );
    }

    // The SBOM, from either registry, validated by the official schema and spdx-tools.
    for reference in [&a_ref, &b_ref] {
        let s = run(pair
            .cmd()
            .args(["sbom", "--key", public.to_str().unwrap(), reference]));
        assert_ok(&s);
        let file = dir.path().join("sbom.spdx.json");
        std::fs::write(&file, &s.stdout).unwrap();
        python_check(&["sbom-spdx", file.to_str().unwrap()]);
        let doc: Value = serde_json::from_str(&s.stdout).unwrap();
        let files: Vec<(&str, &str)> = doc["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["fileName"].as_str().unwrap(),
                    f["checksums"][1]["checksumValue"].as_str().unwrap(),
                )
            })
            .collect();
        let want_a = sha256(&noise(70_000, 1));
        assert!(
            files.contains(&("./srv/a.bin", want_a.trim_start_matches("sha256:"))),
            "{files:?}"
        );
        assert!(files.iter().any(|(n, _)| *n == "./etc/motd"));
    }

    // Again: the same bytes, nothing new is written (no tag rewritten).
    pair.reset();
    let run2 = build_push(&pair, dir.path(), &r, &[&a_ref, &b_ref], &args);
    assert_ok(&run2);
    for p in pair.proxies() {
        let puts: Vec<String> = p
            .log()
            .iter()
            .filter(|e| e.method == "PUT")
            .map(|e| e.path.clone())
            .collect();
        assert!(puts.is_empty(), "a re-run writes nothing: {puts:?}");
    }
}

#[test]
fn supply_sign_attest_and_cyclonedx_keep_what_is_there_and_are_read_back() {
    let pair = Pair::start();
    let dir = tempdir();
    let (key, public) = keygen(&pair, dir.path());
    let r = recipe(dir.path(), "tool", 2);
    let (a_ref, b_ref) = refs(&pair, "acme/tool", "2");
    // Unsigned CycloneDX SBOM at build time.
    let built = build_push(
        &pair,
        dir.path(),
        &r,
        &[&a_ref, &b_ref],
        &["--sbom", "cyclonedx"],
    );
    assert_ok(&built);
    let digest = built.stdout.trim().to_string();
    let hex = digest.trim_start_matches("sha256:");
    let s = run(pair.cmd().args(["sbom", &b_ref]));
    assert_ok(&s);
    let file = dir.path().join("sbom.cdx.json");
    std::fs::write(&file, &s.stdout).unwrap();
    python_check(&["sbom-cyclonedx", file.to_str().unwrap()]);

    // Unsigned: verify --key finds no signature and names the registries;
    // --json says so at its top level too, not only in `supply`.
    let (v, doc) = verify_json(&pair, &public, &[], &[&a_ref, &b_ref]);
    assert_code(&v, 1);
    assert_eq!(doc["ok"], false, "{doc:#}");
    assert_eq!(doc["supply"]["ok"], false, "{doc:#}");
    assert!(
        v.stderr.contains(&format!(
            "no valid signature for {digest} on {}",
            pair.b.host()
        )),
        "{}",
        v.stderr
    );

    // sign, then attest the SBOM we read: the referrers tag keeps the SBOM
    // already listed there.
    let signed = sign(&pair, &key, &[&a_ref, &b_ref]);
    assert_ok(&signed);
    no_secrets(&signed, &key);
    assert_eq!(signed.stdout.trim(), digest);
    let spdx_dir = tempdir();
    let sbom_file = spdx_dir.path().join("s.json");
    std::fs::write(&sbom_file, &s.stdout).unwrap();
    let attested = attest(&pair, &key, "sbom", &sbom_file, &[&a_ref, &b_ref]);
    assert_ok(&attested);
    let index = manifest_b(&pair, "acme/tool", &format!("sha256-{hex}")).unwrap();
    let types: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["artifactType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "application/vnd.cyclonedx+json",
            "application/vnd.dev.cosign.artifact.sig.v1+json",
            "application/vnd.dsse.envelope.v1+json"
        ]
    );
    let (v, _) = verify_json(&pair, &public, &["--require", "sbom"], &[&a_ref, &b_ref]);
    assert_ok(&v);

    // The plain SBOM artifact deleted on B while the referrers tag still
    // lists it: the dangling entry is a note, passed over, and the rest
    // still verifies (the signed SBOM attestation still counts as the SBOM).
    let sbom_manifest = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["artifactType"] == "application/vnd.cyclonedx+json")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        delete_b(&pair, &format!("acme/tool/manifests/{sbom_manifest}")),
        202
    );
    let (v, doc) = verify_json(&pair, &public, &[], &[&b_ref]);
    assert_ok(&v);
    let notes = doc["supply"]["references"][0]["notes"].to_string();
    assert!(
        notes.contains(&sbom_manifest) && notes.contains("passed over"),
        "{doc:#}"
    );
    let (v, _) = verify_json(&pair, &public, &["--require", "sbom"], &[&b_ref]);
    assert_ok(&v);
    let (v, _) = verify_json(&pair, &public, &["--require", "provenance"], &[&b_ref]);
    assert_code(&v, 1);
    assert!(
        v.stderr.contains("no valid provenance attestation"),
        "{}",
        v.stderr
    );

    // An SBOM of another image is refused before anything is pushed.
    let other = recipe(dir.path(), "other", 3);
    let (_, other_b) = refs(&pair, "acme/other", "1");
    let built = build_push(&pair, dir.path(), &other, &[&other_b], &["--sbom"]);
    assert_ok(&built);
    let other_digest = built.stdout.trim().to_string();
    let other_sbom = run(pair.cmd().args(["sbom", &other_b]));
    assert_ok(&other_sbom);
    std::fs::write(&sbom_file, &other_sbom.stdout).unwrap();
    pair.reset();
    let wrong = attest(&pair, &key, "sbom", &sbom_file, &[&b_ref]);
    assert_code(&wrong, 2);
    assert!(
        wrong.stderr.contains("the SBOM describes image"),
        "{}",
        wrong.stderr
    );
    assert_eq!(pair.b.count("PUT"), 0);

    // An SBOM whose payload cannot be read does not hide the others: the
    // signed one (read first) lost its blob, the plain one is printed.
    let attested = attest(&pair, &key, "sbom", &sbom_file, &[&other_b]);
    assert_ok(&attested);
    let other_hex = other_digest.trim_start_matches("sha256:");
    let listed = manifest_b(&pair, "acme/other", &format!("sha256-{other_hex}")).unwrap();
    let envelope = listed["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["artifactType"] == "application/vnd.dsse.envelope.v1+json")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let envelope = manifest_b(&pair, "acme/other", &envelope).unwrap();
    let blob = envelope["layers"][0]["digest"].as_str().unwrap();
    assert_eq!(delete_b(&pair, &format!("acme/other/blobs/{blob}")), 202);
    let read = run(pair.cmd().args(["sbom", &other_b]));
    assert_ok(&read);
    assert_eq!(read.stdout, other_sbom.stdout);

    // A whole statement given as provenance must be SLSA provenance: one
    // that calls itself an SBOM is refused before anything is pushed.
    let statement = serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": other_b, "digest": {"sha256": other_hex}}],
        "predicateType": "https://spdx.dev/Document",
        "predicate": {"note": "this is not an SBOM"},
    });
    std::fs::write(&sbom_file, statement.to_string()).unwrap();
    pair.reset();
    let wrong = attest(&pair, &key, "provenance", &sbom_file, &[&other_b]);
    assert_code(&wrong, 2);
    assert!(
        wrong.stderr.contains("is not SLSA provenance"),
        "{}",
        wrong.stderr
    );
    assert_eq!(pair.b.count("PUT"), 0);
}

#[test]
fn supply_a_statement_of_another_in_toto_version_is_checked_not_wrapped() {
    let pair = Pair::start();
    let dir = tempdir();
    let (key, public) = keygen(&pair, dir.path());
    let r = recipe(dir.path(), "v01", 4);
    let (_, b_ref) = refs(&pair, "acme/v01", "1");
    let built = build_push(&pair, dir.path(), &r, &[&b_ref], &[]);
    assert_ok(&built);
    let hex = pushed_hex(&built);
    // An in-toto Statement v0.1 (SLSA v0.2 tools write these), or one with
    // no `_type` at all, about another image: refused, exit 2, nothing
    // pushed, rather than wrapped as the predicate of a statement about
    // this image, which verify would then count as its provenance.
    let file = dir.path().join("statement.json");
    let statement = |typ: Option<&str>, about: &str| {
        let mut s = serde_json::json!({
            "subject": [{"name": "elsewhere", "digest": {"sha256": about}}],
            "predicateType": "https://slsa.dev/provenance/v0.2",
            "predicate": {"builder": {"id": "https://ci.example/builder"}},
        });
        if let Some(t) = typ {
            s["_type"] = serde_json::json!(t);
        }
        std::fs::write(&file, s.to_string()).unwrap();
        s
    };
    let other = "b".repeat(64);
    for typ in [Some("https://in-toto.io/Statement/v0.1"), None] {
        statement(typ, &other);
        pair.reset();
        let wrong = attest(&pair, &key, "provenance", &file, &[&b_ref]);
        assert_code(&wrong, 2);
        assert!(
            wrong.stderr.contains("subject is another image"),
            "{}",
            wrong.stderr
        );
        assert_eq!(pair.b.count("PUT"), 0);
    }
    let (v, doc) = verify_json(&pair, &public, &[], &[&b_ref]);
    assert_code(&v, 1);
    assert_eq!(
        doc["supply"]["references"][0]["attestations"],
        serde_json::json!({}),
        "{doc:#}"
    );

    // About this image: signed as it was given, and it counts.
    let given = statement(Some("https://in-toto.io/Statement/v0.1"), &hex);
    assert_ok(&attest(&pair, &key, "provenance", &file, &[&b_ref]));
    let index = manifest_b(&pair, "acme/v01", &format!("sha256-{hex}")).unwrap();
    let artifact = manifest_b(
        &pair,
        "acme/v01",
        index["manifests"][0]["digest"].as_str().unwrap(),
    )
    .unwrap();
    let envelope = blob_b(
        &pair,
        "acme/v01",
        artifact["layers"][0]["digest"].as_str().unwrap(),
    );
    let env_file = dir.path().join("envelope.json");
    std::fs::write(&env_file, &envelope).unwrap();
    let signed: Value = serde_json::from_str(&python_check(&[
        "dsse",
        public.to_str().unwrap(),
        env_file.to_str().unwrap(),
    ]))
    .unwrap();
    assert_eq!(signed, given);
    let (v, doc) = verify_json(&pair, &public, &[], &[&b_ref]);
    assert_code(&v, 1); // unsigned image: no signature
    assert_eq!(
        doc["supply"]["references"][0]["attestations"]["provenance"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "{doc:#}"
    );
}

#[test]
fn supply_bad_keys_fail_before_anything_is_pushed_and_never_print_secrets() {
    let pair = Pair::start();
    let dir = tempdir();
    let (key, _public) = keygen(&pair, dir.path());
    let r = recipe(dir.path(), "bad", 4);
    let (a_ref, b_ref) = refs(&pair, "acme/bad", "1");

    let wrong = run(pair.cmd().env("COSIGN_PASSWORD", "not-the-password").args([
        "build",
        r.to_str().unwrap(),
        "-o",
        dir.path().join("out").to_str().unwrap(),
        "--push",
        "--to",
        &a_ref,
        "--to",
        &b_ref,
        "--sign-key",
        key.to_str().unwrap(),
    ]));
    assert_code(&wrong, 2);
    assert!(wrong.stderr.contains("wrong password"), "{}", wrong.stderr);
    assert!(!wrong.stderr.contains("not-the-password"));
    no_secrets(&wrong, &key);
    for p in pair.proxies() {
        assert!(p.log().is_empty(), "nothing was sent");
    }

    // No password at all.
    let mut c = pair.cmd();
    c.env_remove("COSIGN_PASSWORD");
    let missing = run(c.args(["sign", "--key", key.to_str().unwrap(), &b_ref]));
    assert_code(&missing, 2);
    assert!(
        missing.stderr.contains("$COSIGN_PASSWORD"),
        "{}",
        missing.stderr
    );

    // A key of another type (Ed25519, RFC 8410's example) is named.
    let ed = dir.path().join("ed.key");
    write(&ed, "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n");
    let other = run(pair
        .cmd()
        .args(["sign", "--key", ed.to_str().unwrap(), &b_ref]));
    assert_code(&other, 2);
    assert!(
        other
            .stderr
            .contains("not an ECDSA P-256 key (an Ed25519 key)"),
        "{}",
        other.stderr
    );
    assert!(!other.stderr.contains("MC4CAQAw"));
    // The public key where the private one belongs.
    let public = run(pair.cmd().args([
        "sign",
        "--key",
        dir.path().join("cosign.pub").to_str().unwrap(),
        &b_ref,
    ]));
    assert_code(&public, 2);
    assert!(public.stderr.contains("public key"), "{}", public.stderr);
}

#[test]
fn supply_a_registry_refusing_artifacts_is_named_and_gets_no_tag() {
    let pair = Pair::start();
    pair.b.configure(|c| c.refuse_artifacts = true);
    let dir = tempdir();
    let (key, public) = keygen(&pair, dir.path());
    let r = recipe(dir.path(), "refused", 5);
    let (a_ref, b_ref) = refs(&pair, "acme/refused", "1");
    let res = build_push(
        &pair,
        dir.path(),
        &r,
        &[&a_ref, &b_ref],
        &[
            "--sign-key",
            key.to_str().unwrap(),
            "--provenance",
            "--json",
        ],
    );
    assert_code(&res, 1);
    no_secrets(&res, &key);
    let doc: Value = serde_json::from_str(&res.stdout).unwrap();
    let digest = doc["push"]["digest"].as_str().unwrap().to_string();
    let hex = digest.trim_start_matches("sha256:");
    let repos = doc["supply"]["repositories"].as_array().unwrap();
    assert_eq!(repos[0]["ok"], true);
    let err = repos[1]["error"].as_str().unwrap();
    assert!(
        err.starts_with(&format!(
            "{}/acme/refused: the registry refused the signature artifact manifest sha256:",
            pair.b.host()
        )),
        "{err}"
    );
    assert!(err.contains("MANIFEST_INVALID"), "{err}");
    assert!(pair.b.injected_count(Injected::ArtifactRefused) > 0);
    // No half-written tag on B; A holds everything and verifies.
    pair.b.configure(|c| c.refuse_artifacts = false);
    assert!(manifest_b(&pair, "acme/refused", &format!("sha256-{hex}")).is_none());
    let (v, _) = verify_json(&pair, &public, &["--require", "provenance"], &[&a_ref]);
    assert_ok(&v);
    let (v, _) = verify_json(
        &pair,
        &public,
        &["--require", "provenance"],
        &[&a_ref, &b_ref],
    );
    assert_code(&v, 1);
    assert!(
        v.stderr.contains(&format!(
            "no valid signature for {digest} on {}",
            pair.b.host()
        )),
        "{}",
        v.stderr
    );
    assert!(
        v.stderr
            .contains("present on another registry are missing on"),
        "{}",
        v.stderr
    );
}

#[test]
fn supply_sign_failing_on_one_registry_says_what_was_signed_elsewhere() {
    let pair = Pair::start();
    let dir = tempdir();
    let (key, _public) = keygen(&pair, dir.path());
    let r = recipe(dir.path(), "partly", 8);
    let (a_ref, b_ref) = refs(&pair, "acme/partly", "1");
    assert_ok(&build_push(&pair, dir.path(), &r, &[&a_ref, &b_ref], &[]));
    let sign = |refs: &[&str]| {
        let mut c = pair.cmd();
        c.env("COSIGN_PASSWORD", PASSWORD)
            .args(["sign", "--retries", "0", "--key", key.to_str().unwrap()])
            .args(refs);
        run(&mut c)
    };

    // A registry that is down: every reference is resolved first, so
    // nothing is written on A, and the error says so and names the step.
    let down = format!("127.0.0.1:{}", crate::support::free_port());
    let down_ref = format!("{down}/acme/partly:1");
    pair.reset();
    let res = sign(&[&a_ref, &down_ref]);
    assert_code(&res, 1);
    no_secrets(&res, &key);
    for said in [
        "sign failed: nothing was signed on any registry",
        down.as_str(),
    ] {
        assert!(res.stderr.contains(said), "{said:?}: {}", res.stderr);
    }
    assert_eq!(pair.a.count("PUT"), 0);

    // A registry refusing the signature: A's is in, and the error says so.
    pair.b.configure(|c| c.refuse_artifacts = true);
    let res = sign(&[&a_ref, &b_ref]);
    assert_code(&res, 1);
    let done = format!("attached in {}/acme/partly (signature) only", pair.a.host());
    for said in [
        "sign failed",
        &done,
        &format!("{}/acme/partly:", pair.b.host()),
    ] {
        assert!(res.stderr.contains(said), "{said:?}: {}", res.stderr);
    }
    assert!(!res.stderr.contains("nothing was"), "{}", res.stderr);
}

#[test]
fn supply_unsigned_attestations_are_counted_apart_and_each_kind_is_its_own_problem() {
    let pair = Pair::start();
    let dir = tempdir();
    let (key, public) = keygen(&pair, dir.path());
    let r = recipe(dir.path(), "unsigned", 9);
    let (a_ref, b_ref) = refs(&pair, "acme/unsigned", "1");
    // SBOM and provenance pushed unsigned; the image signed afterwards.
    let pushed = build_push(
        &pair,
        dir.path(),
        &r,
        &[&a_ref, &b_ref],
        &["--sbom", "--provenance"],
    );
    assert_ok(&pushed);
    let signed = sign(&pair, &key, &[&a_ref, &b_ref]);
    assert_ok(&signed);

    let (v, doc) = verify_json(
        &pair,
        &public,
        &["--require", "sbom,provenance"],
        &[&a_ref, &b_ref],
    );
    assert_code(&v, 1);
    let holdings = doc["supply"]["references"].as_array().unwrap();
    assert_eq!(holdings.len(), 2, "{doc:#}");
    for h in holdings {
        // Figure: one valid signature; one unsigned SBOM and one unsigned
        // provenance, counted apart from the (no) valid attestations.
        assert_eq!(h["signatures"].as_array().unwrap().len(), 1, "{h:#}");
        assert_eq!(h["attestations"], serde_json::json!({}), "{h:#}");
        assert_eq!(
            h["unsigned"],
            serde_json::json!({"sbom": 1, "provenance": 1}),
            "{h:#}"
        );
        assert_eq!(h["invalid"], serde_json::json!({}), "{h:#}");
        assert_eq!(h["unread"], serde_json::json!({}), "{h:#}");
        // Each problem names only its own kind.
        let problems: Vec<&str> = h["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        assert_eq!(problems.len(), 2, "{problems:#?}");
        let sbom = problems
            .iter()
            .find(|p| p.contains("no valid sbom"))
            .unwrap();
        let prov = problems
            .iter()
            .find(|p| p.contains("no valid provenance"))
            .unwrap();
        assert!(!sbom.contains("provenance"), "{sbom}");
        assert!(!prov.contains("sbom "), "{prov}");
        assert!(sbom.contains("unsigned") && prov.contains("unsigned"));
    }
    assert!(
        v.stderr
            .contains("boxwright attest --key KEY --sbom FILE --provenance FILE"),
        "{}",
        v.stderr
    );
    // The table says they are there, unsigned.
    let table = run(pair.cmd().args(["verify", "--key"]).arg(&public).args([
        "--require",
        "sbom,provenance",
        &a_ref,
    ]));
    assert_code(&table, 1);
    assert!(
        table
            .stdout
            .contains("signatures 1  sbom 0 (+1 unsigned)  provenance 0 (+1 unsigned)"),
        "{}",
        table.stdout
    );
}

/// A signature whose bytes were altered, pushed through the library, is
/// found and reported as not valid; a valid one next to it still counts.
#[test]
fn supply_a_tampered_signature_does_not_verify() {
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine as _;
    use boxwright::push::{PushOptions, PushTarget, Pusher};
    use boxwright::registry::{CredentialStore, Reference};
    use boxwright::supply::attach::{attach, AttachOptions};
    use boxwright::supply::keys::SigningKey;
    use boxwright::supply::sign;

    let pair = Pair::start();
    let dir = tempdir();
    let (key, public) = keygen(&pair, dir.path());
    let r = recipe(dir.path(), "tamper", 6);
    let (_, b_ref) = refs(&pair, "acme/tamper", "1");
    let built = build_push(&pair, dir.path(), &r, &[&b_ref], &[]);
    assert_ok(&built);
    let digest = built.stdout.trim().to_string();

    // Signed by the key, then one bit of the signature flipped.
    let text = std::fs::read_to_string(&key).unwrap();
    let password = || {
        Ok(p256::elliptic_curve::zeroize::Zeroizing::new(
            PASSWORD.to_string(),
        ))
    };
    let signer = SigningKey::from_pem(&text, &password).unwrap();
    let (status, raw) = get_b(&pair, &format!("acme/tamper/manifests/{digest}"), MANIFEST);
    assert_eq!(status, 200);
    let subject = boxwright::oci::Descriptor::of_bytes(MANIFEST, &raw);
    let repo = Reference::parse(&b_ref).unwrap();
    let good = sign::signature(&signer, &subject, &repo.name());
    let mut annotations = good.layer.annotations.clone();
    let sig = annotations
        .get_mut("dev.cosignproject.cosign/signature")
        .unwrap();
    let mut bytes = B64.decode(sig.as_bytes()).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    *sig = B64.encode(bytes);
    let tampered = boxwright::supply::artifact::Artifact::new(
        good.kind,
        &subject,
        "application/vnd.dev.cosign.artifact.sig.v1+json",
        &good.layer.media_type,
        good.payload.to_vec(),
        annotations,
        Default::default(),
    );
    let store = CredentialStore {
        docker_config_dir: Some(pair.env.config_dir()),
        ..CredentialStore::default()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pusher = rt
        .block_on(Pusher::new(
            vec![PushTarget::plain(repo.clone())],
            PushOptions::default(),
            store,
            boxwright::progress::silent(),
        ))
        .unwrap();
    let mut plain = repo.clone();
    plain.tag = None;
    let done = rt
        .block_on(attach(
            &pusher,
            &[plain],
            &subject,
            &[tampered],
            &AttachOptions::default(),
        ))
        .unwrap();
    assert!(done.ok, "{done:?}");

    let (v, doc) = verify_json(&pair, &public, &[], &[&b_ref]);
    assert_code(&v, 1);
    let notes = doc["supply"]["references"][0]["notes"].to_string();
    assert!(notes.contains("does not verify"), "{notes}");
    assert!(v.stderr.contains("no valid signature"), "{}", v.stderr);

    // The untampered signature next to it counts; the other stays a note.
    let mut plain = repo.clone();
    plain.tag = None;
    let done = rt
        .block_on(attach(
            &pusher,
            &[plain],
            &subject,
            &[good],
            &AttachOptions::default(),
        ))
        .unwrap();
    assert!(done.ok, "{done:?}");
    let (v, doc) = verify_json(&pair, &public, &[], &[&b_ref]);
    assert_ok(&v);
    assert_eq!(
        doc["supply"]["references"][0]["signatures"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(doc["supply"]["references"][0]["notes"]
        .to_string()
        .contains("does not verify"));
}

/// The proxy's referrers emulation follows the spec's shape.
#[test]
fn supply_proxy_answers_the_referrers_api_only_when_asked() {
    let reg = crate::support::Registry::start();
    let proxy = FaultProxy::start(&reg);
    let url = format!("{}/v2/x/referrers/sha256:{}", proxy.url(), "0".repeat(64));
    let get = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async { reqwest::get(&url).await.unwrap().status().as_u16() })
    };
    assert_eq!(get(), 404, "the reference registry has no referrers API");
    proxy.configure(|c| c.referrers_api = true);
    assert_eq!(get(), 200);
}

/// `verify --key` asks each reference for its manifest once: the supply
/// check takes the digest check's resolution. A registry that cannot be
/// reached is asked once and named once, its cause shown once; the others
/// are checked as usual.
#[test]
fn supply_verify_resolves_each_reference_once_and_names_a_dead_registry_once() {
    let pair = Pair::start();
    let dir = tempdir();
    let (key, public) = keygen(&pair, dir.path());
    let r = recipe(dir.path(), "once", 5);
    let (a_ref, b_ref) = refs(&pair, "acme/once", "1.0");
    assert_ok(&build_push(&pair, dir.path(), &r, &[&a_ref, &b_ref], &[]));
    let signed = sign(&pair, &key, &[&a_ref, &b_ref]);
    assert_ok(&signed);
    let dead_ref = format!("{}/acme/once:1.0", crate::support::dead_host());
    pair.reset();

    let (v, doc) = verify_json(
        &pair,
        &public,
        &["--retries", "1"],
        &[&a_ref, &b_ref, &dead_ref],
    );
    assert_code(&v, 1);
    for p in [&pair.a, &pair.b] {
        let heads = p
            .log()
            .iter()
            .filter(|e| e.method == "HEAD" && e.path.ends_with("/manifests/1.0"))
            .count();
        assert_eq!(heads, 1, "{}: {:?}", p.host(), p.log());
        let gets = p
            .log()
            .iter()
            .filter(|e| e.method == "GET" && e.path.ends_with("/manifests/1.0"))
            .count();
        assert_eq!(gets, 0, "{}: {:?}", p.host(), p.log());
    }
    assert_eq!(doc["ok"], false, "{doc:#}");
    assert_eq!(doc["errors"], serde_json::json!([dead_ref]), "{doc:#}");
    let held = doc["supply"]["references"].as_array().unwrap();
    let verdicts: Vec<(&str, bool)> = held
        .iter()
        .map(|h| (h["reference"].as_str().unwrap(), h["ok"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        verdicts,
        [
            (a_ref.as_str(), true),
            (b_ref.as_str(), true),
            (dead_ref.as_str(), false)
        ]
    );
    assert!(held[2]["digest"].is_null(), "{doc:#}");
    assert_eq!(held[2]["problems"].as_array().unwrap().len(), 1, "{doc:#}");
    // The error names the dead reference, and its cause, once.
    assert_eq!(
        v.stderr.matches("Connection refused").count(),
        1,
        "{}",
        v.stderr
    );
    assert_eq!(
        v.stderr.matches(dead_ref.as_str()).count(),
        1,
        "{}",
        v.stderr
    );
    assert!(v.stderr.contains("verify failed"), "{}", v.stderr);
}

/// What `sign` and `attest --help` say of uploads is what they send: each
/// blob whole in the `PUT` that closes its session, and with
/// `--chunk-size` `PATCH`es with `Content-Range`, then the `PUT`.
#[test]
fn supply_sign_uploads_as_its_help_says() {
    for cmd in ["sign", "attest"] {
        let help = ok(boxwright().args([cmd, "--help"]));
        let text = help.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(!text.contains("streamed PUT"), "{cmd}: {text}");
        assert!(
            text.contains("Upload blobs in `PATCH` requests of SIZE"),
            "{cmd}: {text}"
        );
        assert!(
            text.contains("each blob whole, in the `PUT` that closes its session"),
            "{cmd}: {text}"
        );
    }
    let pair = Pair::start();
    let dir = tempdir();
    let (key, _) = keygen(&pair, dir.path());
    let r = recipe(dir.path(), "chunks", 6);
    let (a_ref, b_ref) = refs(&pair, "acme/chunks", "1");
    assert_ok(&build_push(&pair, dir.path(), &r, &[&a_ref, &b_ref], &[]));
    let uploads = |p: &FaultProxy| -> Vec<LogEntry> {
        p.log()
            .into_iter()
            .filter(|e| e.path.contains("/blobs/uploads/"))
            .collect()
    };
    let sign = |target: &str, extra: &[&str]| {
        pair.reset();
        let r = run(pair
            .cmd()
            .env("COSIGN_PASSWORD", PASSWORD)
            .args(["sign", "--key", key.to_str().unwrap()])
            .args(extra)
            .arg(target));
        assert_ok(&r);
    };

    // Whole: no PATCH; the signature's blobs go in PUTs with a body.
    sign(&a_ref, &[]);
    let whole = uploads(&pair.a);
    assert!(!whole.iter().any(|e| e.method == "PATCH"), "{whole:#?}");
    assert!(
        whole.iter().any(|e| e.method == "PUT" && e.body_bytes > 0),
        "{whole:#?}"
    );

    // --chunk-size: PATCHes with Content-Range carry the bytes, the PUTs
    // none.
    sign(&b_ref, &["--chunk-size", "64"]);
    let chunked = uploads(&pair.b);
    let patches: Vec<&LogEntry> = chunked.iter().filter(|e| e.method == "PATCH").collect();
    assert!(patches.len() > 1, "{chunked:#?}");
    assert!(
        patches.iter().all(|e| e.content_range.is_some()),
        "{chunked:#?}"
    );
    assert!(
        chunked
            .iter()
            .filter(|e| e.method == "PUT")
            .all(|e| e.body_bytes == 0),
        "{chunked:#?}"
    );
}

/// Figures: `keygen` refuses to replace either file without `--force`,
/// writing neither; with `--force` each file is a new one (a descriptor
/// open on the old key still reads the old key; a symlink in the key's
/// place is replaced, its target untouched), mode 0600 for the key; no
/// temporary file is left.
#[test]
fn keygen_writes_new_files_and_replaces_only_with_force() {
    use std::io::Read as _;
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let env = crate::env::Env::new();
    let dir = tempdir();
    let prefix = dir.path().join("cosign");
    let (key, public) = (dir.path().join("cosign.key"), dir.path().join("cosign.pub"));
    let keygen = |force: bool| {
        let mut cmd = env.cmd();
        cmd.args(["keygen", "--output-key-prefix"]).arg(&prefix);
        if force {
            cmd.arg("--force");
        }
        run(&mut cmd)
    };
    assert_ok(&keygen(false));
    let first = std::fs::read(&key).unwrap();

    let again = keygen(false);
    assert_code(&again, 2);
    assert!(again.stderr.contains("use --force"), "{}", again.stderr);
    assert_eq!(std::fs::read(&key).unwrap(), first);
    // Only the public key there: the private one is not written either.
    std::fs::remove_file(&key).unwrap();
    assert_code(&keygen(false), 2);
    assert!(!key.exists());

    assert_ok(&keygen(true));
    let mut old = std::fs::File::open(&key).unwrap();
    let old_ino = old.metadata().unwrap().ino();
    let old_text = std::fs::read(&key).unwrap();
    assert_ok(&keygen(true));
    let mut seen = Vec::new();
    old.read_to_end(&mut seen).unwrap();
    assert_eq!(seen, old_text, "the old descriptor sees the old key");
    assert_ne!(std::fs::metadata(&key).unwrap().ino(), old_ino);
    assert_ne!(std::fs::read(&key).unwrap(), old_text);

    let target = dir.path().join("elsewhere");
    std::fs::write(&target, "untouched").unwrap();
    std::fs::remove_file(&key).unwrap();
    std::os::unix::fs::symlink(&target, &key).unwrap();
    assert_ok(&keygen(true));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched");
    let meta = std::fs::symlink_metadata(&key).unwrap();
    assert!(meta.is_file());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::metadata(&public).unwrap().permissions().mode() & 0o777,
        0o644
    );
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["cosign.key", "cosign.pub", "elsewhere"]);
}

/// A cosign legacy tag that exists but cannot be read is one bad artifact,
/// as a referrers entry is: a note, and the verdict comes from the rest
/// (the same signature listed in the referrers tag). A registry that does
/// not answer at all while it is read fails the reference, naming it.
#[test]
fn supply_an_unreadable_legacy_tag_is_a_note_and_a_dead_registry_an_error() {
    let pair = Pair::start();
    let dir = tempdir();
    let (key, public) = keygen(&pair, dir.path());
    let r = recipe(dir.path(), "legacy", 6);
    let (_, b_ref) = refs(&pair, "acme/legacy", "1");
    let args = ["--sign-key", key.to_str().unwrap(), "--cosign-tags"];
    let pushed = build_push(&pair, dir.path(), &r, &[&b_ref], &args);
    assert_ok(&pushed);
    let hex = pushed_hex(&pushed);
    let sig_tag = format!("/manifests/sha256-{hex}.sig");

    pair.b.fail_next_path("GET", &sig_tag, Fault::InternalError);
    let (v, doc) = verify_json(&pair, &public, &["--retries", "0"], &[&b_ref]);
    assert_ok(&v);
    assert_eq!(
        pair.b.injected_count(Injected::Fault(Fault::InternalError)),
        1
    );
    let held = &doc["supply"]["references"][0];
    assert_eq!(held["signatures"].as_array().unwrap().len(), 1, "{held}");
    let notes = held["notes"].to_string();
    assert!(
        notes.contains(&format!("sha256-{hex}.sig")) && notes.contains("passed over"),
        "{held}"
    );

    pair.b
        .fail_next_path("GET", &sig_tag, Fault::DropConnection);
    let (v, doc) = verify_json(&pair, &public, &["--retries", "0"], &[&b_ref]);
    assert_code(&v, 1);
    assert_eq!(
        pair.b
            .injected_count(Injected::Fault(Fault::DropConnection)),
        1
    );
    assert_eq!(doc["supply"]["references"][0]["ok"], false, "{doc}");
    assert!(v.stderr.contains(&pair.b.host()), "{}", v.stderr);
}

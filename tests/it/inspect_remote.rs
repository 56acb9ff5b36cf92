//! `inspect REF`: an image in a registry, shown as its layout would be,
//! fetching its manifests and config and no layer; `--check` asks for
//! every blob with HEAD and names the one the registry lost, and `copy
//! --repair` puts it back.

use serde_json::Value;

use crate::common::{assert_code, assert_ok, run};
use crate::env::Env;
use crate::support::{tempdir, tiny_oci_layout, FaultProxy, Registry, TinyImage};

/// A tiny image pushed to `host` as `acme/app:1`: the client environment,
/// the directory holding its layout (`layout`), the image and the reference.
fn pushed(host: &str, content: &[u8]) -> (Env, tempfile::TempDir, TinyImage, String) {
    let env = Env::new();
    let dir = tempdir();
    let img = tiny_oci_layout(&dir.path().join("layout"), "1", content);
    let reference = format!("{host}/acme/app:1");
    assert_ok(&run(env
        .cmd()
        .arg("push")
        .arg(dir.path().join("layout"))
        .args(["--to", &reference])));
    (env, dir, img, reference)
}

/// Figures: the registry image inspects as its layout does (the same
/// `images`), its root is the pushed manifest, and only the manifest and
/// the config were fetched (no layer GET); `--check` sends one HEAD per
/// config and layer, finds all three blobs ok, and GETs no layer either.
#[test]
fn a_registry_image_inspects_as_its_layout_does_without_its_layers() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg);
    let (env, dir, img, reference) = pushed(&proxy.host(), b"inspect me");
    let layout = dir.path().join("layout");

    let local = run(env.cmd().args(["inspect", "--json"]).arg(&layout));
    assert_ok(&local);
    let local: Value = serde_json::from_str(&local.stdout).unwrap();
    proxy.reset();
    let remote = run(env
        .cmd()
        .args(["inspect", "--json", &reference, "--cache-dir"])
        .arg(env.cache()));
    assert_ok(&remote);
    let remote: Value = serde_json::from_str(&remote.stdout).unwrap();
    assert_eq!(remote["descriptor"]["digest"], img.manifest_digest.as_str());
    assert_eq!(remote["images"], local["images"]);
    let blob_gets: Vec<String> = proxy
        .log()
        .into_iter()
        .filter(|e| e.method == "GET" && e.path.contains("/blobs/"))
        .map(|e| e.path)
        .collect();
    assert_eq!(blob_gets.len(), 1, "{blob_gets:?}");
    assert!(blob_gets[0].ends_with(&img.config_digest), "{blob_gets:?}");

    proxy.reset();
    let checked = run(env.cmd().args(["inspect", "--check", "--json", &reference]));
    assert_ok(&checked);
    let checked: Value = serde_json::from_str(&checked.stdout).unwrap();
    assert_eq!(checked["check"]["ok"], true, "{checked}");
    let statuses: Vec<&str> = checked["check"]["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["ok", "ok", "ok"], "{checked}");
    let log = proxy.log();
    assert_eq!(
        log.iter()
            .filter(|e| e.method == "HEAD" && e.path.contains("/blobs/"))
            .count(),
        2
    );
    assert!(!log
        .iter()
        .any(|e| e.method == "GET" && e.path.ends_with(&img.layer_digest)));
}

/// Figures: a registry that lost a layer's data answers its HEAD with 404;
/// `inspect --check` reports that layer `missing` (the rest ok), still
/// prints the inspection, and exits 1 naming the reference.
#[test]
fn check_names_the_layer_a_registry_lost() {
    let reg = Registry::start();
    let (env, _dir, img, reference) = pushed(&reg.host(), b"lose my layer");
    lose_blob(&reg, &img.layer_digest);

    let r = run(env.cmd().args(["inspect", "--check", "--json", &reference]));
    assert_code(&r, 1);
    assert!(r.stderr.contains(&reference), "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["check"]["ok"], false);
    assert_eq!(v["descriptor"]["digest"], img.manifest_digest.as_str());
    for b in v["check"]["blobs"].as_array().unwrap() {
        let want = if b["digest"] == img.layer_digest.as_str() {
            "missing"
        } else {
            "ok"
        };
        assert_eq!(b["status"], want, "{v}");
    }
}

/// Removes the data of blob `digest` from `reg`'s storage, as a storage
/// fault would: the registry still lists it in the repository, and
/// answers 404 for it.
fn lose_blob(reg: &Registry, digest: &str) {
    std::fs::remove_dir_all(stored(reg, digest)).unwrap();
}

/// Where `reg` stores blob `digest` (a directory holding its `data`).
fn stored(reg: &Registry, digest: &str) -> std::path::PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    reg.storage_dir()
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
}

/// A tiny image pushed as `acme/app:1` to a primary and a backup: the
/// registries, the client environment, the layout's directory, the image,
/// and its references on the primary and on the backup.
fn on_both(
    content: &[u8],
) -> (
    Registry,
    Registry,
    Env,
    tempfile::TempDir,
    TinyImage,
    String,
    String,
) {
    let (primary, backup) = (Registry::start(), Registry::start());
    let (env, dir, img, source) = pushed(&primary.host(), content);
    let target = format!("{}/acme/app:1", backup.host());
    assert_ok(&run(env
        .cmd()
        .arg("push")
        .arg(dir.path().join("layout"))
        .args(["--to", &target])));
    (primary, backup, env, dir, img, source, target)
}

/// Figures: the backup lost a layer; a plain `copy` from the primary finds
/// the tag in place and sends nothing (up to date), so `inspect --check`
/// still fails; `copy --repair` uploads that one blob (the config is found
/// present), after which the check passes and skopeo copies the image
/// out of the backup.
#[test]
fn copy_repair_puts_back_the_blob_a_registry_lost() {
    let (_primary, backup, env, dir, img, source, target) = on_both(b"repair me");
    lose_blob(&backup, &img.layer_digest);
    // In GitHub Actions each copy appends its table to the job summary.
    let summary = dir.path().join("summary.md");
    let copy = |repair: bool| {
        let mut c = env.cmd();
        c.env("GITHUB_ACTIONS", "true")
            .env("GITHUB_STEP_SUMMARY", &summary);
        c.args(["copy", "--json", "--no-referrers", &source, &target]);
        if repair {
            c.arg("--repair");
        }
        let r = run(&mut c);
        assert_ok(&r);
        serde_json::from_str::<Value>(&r.stdout).unwrap()
    };
    let check = || run(env.cmd().args(["inspect", "--check", "--json", &target]));

    let plain = copy(false);
    assert_eq!(plain["up_to_date"], true, "{plain}");
    assert_code(&check(), 1);

    let repaired = copy(true);
    assert_eq!(repaired["up_to_date"], false, "{repaired}");
    assert_eq!(
        repaired["destinations"][0]["up_to_date"], true,
        "{repaired}"
    );
    assert_eq!(repaired["destinations"][0]["ok"], true, "{repaired}");
    let pushed_to = &repaired["push"]["targets"][0];
    assert_eq!(pushed_to["blobs_uploaded"], 1, "{repaired}");
    assert_eq!(pushed_to["blobs_present"], 1, "{repaired}");
    let md = std::fs::read_to_string(&summary).unwrap();
    let digest = plain["digest"].as_str().unwrap();
    let title = format!("### boxwright copy {source}");
    assert!(
        md.contains(&format!("{title}: up to date `{digest}`"))
            && md.contains(&format!("| `{target}` | up to date |"))
            && md.contains(&format!("{title}: pushed `{digest}`")),
        "{md}"
    );
    assert_ok(&check());
    crate::support::skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{target}"),
        &format!("oci:{}:x", dir.path().join("out").display()),
    ]);
}

/// Figures: the backup's storage truncated a layer, whose HEAD then
/// answers a size short of the descriptor's; `inspect --check` reports it
/// `truncated`, and `copy --repair` sends that layer again (it was taken
/// as present, and nothing sent). distribution keeps the copy it has, so
/// the check is not asked to pass afterwards.
#[test]
fn copy_repair_sends_again_a_blob_the_registry_holds_truncated() {
    let (_primary, backup, env, _dir, img, source, target) = on_both(b"truncate my layer");
    let data = stored(&backup, &img.layer_digest).join("data");
    let f = std::fs::OpenOptions::new().write(true).open(&data).unwrap();
    f.set_len(5).unwrap();
    drop(f);
    let r = run(env.cmd().args(["inspect", "--check", "--json", &target]));
    assert_code(&r, 1);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let layer = v["check"]["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["digest"] == img.layer_digest.as_str())
        .unwrap()
        .clone();
    assert_eq!(layer["status"], "truncated", "{v}");

    let r = run(env.cmd().args([
        "copy",
        "--repair",
        "--json",
        "--no-referrers",
        &source,
        &target,
    ]));
    assert_ok(&r);
    let repaired: Value = serde_json::from_str(&r.stdout).unwrap();
    let pushed_to = &repaired["push"]["targets"][0];
    assert_eq!(pushed_to["blobs_uploaded"], 1, "{repaired}");
    assert_eq!(pushed_to["blobs_present"], 1, "{repaired}");
}

/// Figure: a reference the registry does not hold is an error naming it
/// (exit 1), with nothing on stdout.
#[test]
fn an_unknown_tag_is_an_error_naming_it() {
    let reg = Registry::start();
    let env = Env::new();
    let reference = format!("{}/acme/none:1", reg.host());
    let r = run(env.cmd().args(["inspect", &reference]));
    assert_code(&r, 1);
    assert!(r.stderr.contains("acme/none"), "{}", r.stderr);
    assert_eq!(r.stdout, "");
}

/// Figures: a two-platform index pushed by `build --push`; `inspect
/// --platform linux/arm64` shows that image alone, asking for two
/// manifests (the index and the arm64 one) where plain `inspect` asks for
/// three; a platform the index lacks is bad input (exit 2) naming what it
/// offers.
#[test]
fn platform_picks_one_image_of_an_index() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg);
    let env = Env::new();
    let dir = tempdir();
    let recipe = dir.path().join("r.toml");
    crate::common::write(
        &recipe,
        "[image]\nname = \"multi\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n\n\
         [[layer]]\n[[layer.entry]]\ncontent = \"${ARCH}\"\ndest = \"/arch\"\n",
    );
    let reference = format!("{}/acme/multi:1", proxy.host());
    assert_ok(&run(env
        .cmd()
        .args(["build", "--push", "--no-layout", "--to", &reference])
        .arg(&recipe)));
    let manifest_gets = |platform: Option<&str>| {
        proxy.reset();
        let mut c = env.cmd();
        c.args(["inspect", "--json", &reference]);
        if let Some(p) = platform {
            c.args(["--platform", p]);
        }
        let r = run(&mut c);
        assert_ok(&r);
        let gets = proxy
            .log()
            .iter()
            .filter(|e| e.method == "GET" && e.path.contains("/manifests/"))
            .count();
        (serde_json::from_str::<Value>(&r.stdout).unwrap(), gets)
    };
    let (all, gets_all) = manifest_gets(None);
    let platforms: Vec<&str> = all["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["platform"].as_str().unwrap())
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    assert_eq!(gets_all, 3);
    let (one, gets_one) = manifest_gets(Some("linux/arm64"));
    assert_eq!(one["images"].as_array().unwrap().len(), 1, "{one}");
    assert_eq!(one["images"][0], all["images"][1]);
    assert_eq!(gets_one, 2);

    let r = run(env
        .cmd()
        .args(["inspect", &reference, "--platform", "linux/s390x"]));
    assert_code(&r, 2);
    assert!(r.stderr.contains("linux/arm64"), "{}", r.stderr);
}

/// Figures: `--platform` of a single image (not an index) of another
/// platform is bad input (exit 2, nothing on stdout), in a registry and in
/// a layout alike; of its own platform it shows the image. It was shown
/// as if it were of the platform asked for, with exit 0.
#[test]
fn platform_of_a_single_image_of_another_platform_is_refused() {
    let reg = Registry::start();
    let (env, dir, img, reference) = pushed(&reg.host(), b"amd64 only");
    let layout = dir.path().join("layout").display().to_string();
    for target in [reference.as_str(), layout.as_str()] {
        let r = run(env
            .cmd()
            .args(["inspect", "--json", target, "--platform", "linux/arm64"]));
        assert_code(&r, 2);
        assert_eq!(r.stdout, "");
        let r = run(env
            .cmd()
            .args(["inspect", "--json", target, "--platform", "linux/amd64"]));
        assert_ok(&r);
        let v: Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(
            v["images"][0]["manifest_digest"],
            img.manifest_digest.as_str()
        );
    }
}

/// Figures: a two-platform image of three layers each, one of them the
/// same on both platforms; `inspect --check` reports the index, then the
/// two manifests, then each manifest's config and layers in order, each
/// blob once (the shared layer where it is first listed), all ok; it GETs
/// each manifest once and HEADs each config and layer once, however many
/// of the HEADs run at a time.
#[test]
fn check_reports_each_blob_once_in_order_asking_each_once() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg);
    let env = Env::new();
    let dir = tempdir();
    let recipe = dir.path().join("r.toml");
    let mut text = String::from(
        "[image]\nname = \"layers\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n",
    );
    for (n, content) in ["${ARCH} one", "the same on both", "${ARCH} three"]
        .iter()
        .enumerate()
    {
        text.push_str(&format!(
            "\n[[layer]]\n[[layer.entry]]\ncontent = \"{content}\"\ndest = \"/{n}\"\n"
        ));
    }
    crate::common::write(&recipe, &text);
    let reference = format!("{}/acme/layers:1", proxy.host());
    assert_ok(&run(env
        .cmd()
        .args(["build", "--push", "--no-layout", "--to", &reference])
        .arg(&recipe)));
    let shown = run(env.cmd().args(["inspect", "--json", &reference]));
    assert_ok(&shown);
    let shown: Value = serde_json::from_str(&shown.stdout).unwrap();

    // The order of the walk: the root, its manifests, their blobs.
    let mut want: Vec<(String, u64)> = vec![(
        shown["descriptor"]["digest"].as_str().unwrap().to_string(),
        shown["descriptor"]["size"].as_u64().unwrap(),
    )];
    let images = shown["images"].as_array().unwrap();
    assert_eq!(images.len(), 2, "{shown}");
    for m in shown["index"]["manifests"].as_array().unwrap() {
        want.push((
            m["digest"].as_str().unwrap().into(),
            m["size"].as_u64().unwrap(),
        ));
    }
    let manifests = want.len();
    let mut listed = 0;
    for img in images {
        let m = &img["manifest"];
        for d in std::iter::once(&m["config"]).chain(m["layers"].as_array().unwrap()) {
            listed += 1;
            let d = (
                d["digest"].as_str().unwrap().to_string(),
                d["size"].as_u64().unwrap(),
            );
            if !want.contains(&d) {
                want.push(d);
            }
        }
    }
    assert_eq!(listed, 8);
    assert_eq!(want.len() - manifests, 7, "one layer is on both platforms");

    proxy.reset();
    let r = run(env.cmd().args(["inspect", "--check", "--json", &reference]));
    assert_ok(&r);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["check"]["ok"], true, "{v}");
    assert_eq!(v["images"], shown["images"]);
    let blobs = v["check"]["blobs"].as_array().unwrap();
    let got: Vec<(String, u64)> = blobs
        .iter()
        .map(|b| {
            (
                b["digest"].as_str().unwrap().into(),
                b["size"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, want);
    assert!(blobs.iter().all(|b| b["status"] == "ok"), "{v}");

    let log = proxy.log();
    let asked = |method: &str, digest: &str| {
        log.iter()
            .filter(|e| e.method == method && e.path.ends_with(digest))
            .count()
    };
    for (n, (digest, _)) in want.iter().enumerate() {
        let (get, head) = (asked("GET", digest), asked("HEAD", digest));
        if n == 0 {
            // The root is fetched by its tag.
            assert_eq!((get, head), (0, 0), "{digest}");
        } else if n < manifests {
            assert_eq!((get, head), (1, 0), "{digest}");
        } else {
            assert_eq!((get, head), (0, 1), "{digest}");
        }
    }
    let heads = log.iter().filter(|e| e.method == "HEAD").count();
    assert_eq!(heads, want.len() - manifests);
}

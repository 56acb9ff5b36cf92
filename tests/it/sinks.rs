//! The library's sinks (`boxwright::image::sink`) fed a registry image
//! opened in one call (`RemoteImages::open_first`), against a real
//! `docker-registry`, as a library user copies an image: into an OCI
//! layout, an oci-archive and a docker-archive, each read back by skopeo
//! or the layout reader. The image is the two-platform base of `pull`.

use boxwright::cache::BlobCache;
use boxwright::error::is_bad_input;
use boxwright::image::layout::LayoutImage;
use boxwright::image::remote::RemoteImages;
use boxwright::image::sink::{write_docker_archive, write_layout, write_oci_archive};
use boxwright::image::walk;
use boxwright::oci::{self, Index, Platform};
use boxwright::registry::{CredentialStore, Reference};
use serde_json::Value;

use crate::common::sha256;
use crate::env::Env;
use crate::pull::{build_base, push_base};
use crate::support::{skopeo, Registry};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_image_goes_into_a_layout_and_archives_through_the_sinks() {
    let env = Env::new();
    let reg = Registry::start();
    let base = build_base();
    push_base(&env, &base, &reg.host());

    let images = RemoteImages::connect(
        Default::default(),
        CredentialStore::default(),
        BlobCache::new(Some(env.cache())).unwrap(),
        boxwright::progress::silent(),
    )
    .await
    .unwrap();
    let refs = [Reference::parse(&format!("{}/base/img:1.0", reg.host())).unwrap()];
    let (served, image) = images.open_first(&refs).await.unwrap();

    // Layout: index.json names the registry's index under 1.0; the layout
    // reader finds every blob of both platforms, each downloaded once.
    let layout = env.path().join("layout");
    write_layout(&image, &layout, Some("1.0".into()))
        .await
        .unwrap();
    let raw = skopeo(&["inspect", "--raw", &format!("oci:{}:1.0", layout.display())]);
    assert_eq!(sha256(raw.as_bytes()), base.index);
    let read = LayoutImage::open(&layout, Some("1.0")).unwrap();
    let graph = walk(&read).await.unwrap();
    let mut blobs: Vec<String> = graph.blobs.iter().map(|d| d.digest.to_string()).collect();
    blobs.sort();
    assert_eq!(blobs, base.blobs());
    assert_eq!(images.counts().blobs_downloaded, base.blobs().len() as u64);

    // oci-archive: the same index, from the cache (nothing downloaded again),
    // and nothing but the archive left beside it.
    let archives = env.path().join("archives");
    std::fs::create_dir_all(&archives).unwrap();
    let oa = archives.join("img.oci.tar");
    write_oci_archive(&image, &oa, Some("1.0".into()))
        .await
        .unwrap();
    let raw = skopeo(&[
        "inspect",
        "--raw",
        &format!("oci-archive:{}:1.0", oa.display()),
    ]);
    assert_eq!(sha256(raw.as_bytes()), base.index);
    assert_eq!(images.counts().blobs_downloaded, base.blobs().len() as u64);

    // docker-archive of the index: bad input, no file.
    let da = archives.join("img.docker.tar");
    let e = write_docker_archive(&image, &da, &[]).await.unwrap_err();
    assert!(is_bad_input(&e), "{e:#}");
    assert!(!da.exists());

    // docker-archive of the amd64 manifest: its config and diff IDs.
    let index: Index = serde_json::from_slice(&served.bytes).unwrap();
    let amd64 = oci::select_platform(&index, &Platform::parse("linux/amd64").unwrap())
        .unwrap()
        .clone();
    let repo_tag = format!("{}/base/img:1.0", reg.host());
    write_docker_archive(
        &image.with_root(amd64),
        &da,
        std::slice::from_ref(&repo_tag),
    )
    .await
    .unwrap();
    let reference = format!("docker-archive:{}", da.display());
    let raw: Value = serde_json::from_str(&skopeo(&["inspect", "--raw", &reference])).unwrap();
    assert_eq!(raw["config"]["digest"], base.amd64().config);
    let layers: Vec<&str> = raw["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    assert_eq!(layers, base.amd64().diff_ids);
    let info: Value = serde_json::from_str(&skopeo(&["inspect", &reference])).unwrap();
    assert_eq!(info["Architecture"], "amd64");
    let manifest_json = crate::common::docker_archive_manifest(&da);
    assert_eq!(manifest_json[0]["RepoTags"], serde_json::json!([repo_tag]));
    let mut names: Vec<String> = std::fs::read_dir(&archives)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["img.docker.tar", "img.oci.tar"]);
}

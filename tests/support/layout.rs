//! A tiny OCI image layout written by hand (one layer, config, manifest,
//! `index.json`, `oci-layout`), independent of boxwright's own code so it
//! can test the harness and serve as a known-good input.

use std::path::Path;

use sha2::{Digest, Sha256};

/// What [`tiny_oci_layout`] wrote.
#[derive(Clone, Debug)]
pub struct TinyImage {
    /// `sha256:...` of the manifest bytes.
    pub manifest_digest: String,
    /// The manifest bytes exactly as written.
    pub manifest: Vec<u8>,
    pub config_digest: String,
    pub layer_digest: String,
    /// Compressed layer size in bytes.
    pub layer_size: u64,
    /// Total bytes of the blobs (layer + config), what a push must upload.
    pub blob_bytes: u64,
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn write_blob(dir: &Path, data: &[u8]) -> String {
    let digest = sha256(data);
    let path = dir.join("blobs/sha256").join(&digest["sha256:".len()..]);
    std::fs::write(path, data).expect("writing blob");
    digest
}

/// Writes an OCI layout at `dir` holding one linux/amd64 image tagged `tag`,
/// whose single gzip layer holds `hello.txt` with `content`. Returns the
/// digests. Deterministic: the same arguments give the same digests.
pub fn tiny_oci_layout(dir: &Path, tag: &str, content: &[u8]) -> TinyImage {
    std::fs::create_dir_all(dir.join("blobs/sha256")).expect("creating layout dirs");

    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, "hello.txt", content)
        .expect("tar entry");
    let tar = tar.into_inner().expect("tar finish");
    let diff_id = sha256(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    std::io::Write::write_all(&mut gz, &tar).expect("gzip");
    let layer = gz.finish().expect("gzip finish");
    let layer_digest = write_blob(dir, &layer);

    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }))
    .expect("config json");
    let config_digest = write_blob(dir, &config);

    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": layer_digest,
            "size": layer.len(),
        }],
    }))
    .expect("manifest json");
    let manifest_digest = write_blob(dir, &manifest);

    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .expect("writing oci-layout");
    std::fs::write(dir.join("index.json"), index.to_string()).expect("writing index.json");

    TinyImage {
        manifest_digest,
        manifest,
        config_digest,
        layer_digest,
        layer_size: layer.len() as u64,
        blob_bytes: (layer.len() + config.len()) as u64,
    }
}

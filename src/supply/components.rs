//! What an image holds and was made from, as SBOM components: the base
//! image of each platform (as the build recorded it), every regular file of
//! each recipe layer with its SHA-256 and SHA-1 (read back from the layer
//! blobs as written, in one streaming pass per layer, decompressing as it
//! goes), and what source kinds report (a file fetched by URL, a Python
//! package) through [`Component::url`] and [`Component::python`].

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use anyhow::{Context as _, Result};
use sha1::Sha1;
use sha2::{Digest as _, Sha256};

use crate::build::BuildResult;
use crate::image::layout::blob_path;
use crate::oci::{self, Digest, Manifest};

/// What a component is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ComponentKind {
    /// The base image (`pkg:oci/...`).
    Image,
    /// A file in a layer.
    File,
    /// A file fetched by URL (with its expected sha256).
    Url,
    /// A Python package installed into the image (`pkg:pypi/...`).
    Python,
}

/// One thing the image holds or was made from. Source kinds that know more
/// than a file list (a URL download, a Python lock) feed their own.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Component {
    pub kind: ComponentKind,
    /// A file's absolute path in the image; a package's or image's name.
    pub name: String,
    pub version: Option<String>,
    pub purl: Option<String>,
    /// Lowercase hex.
    pub sha256: Option<String>,
    /// Lowercase hex (SPDX 2.3 wants a SHA-1 for every file).
    pub sha1: Option<String>,
    pub url: Option<String>,
    /// The layer a file is in.
    pub layer: Option<Digest>,
}

impl Component {
    /// A component with only its kind and name.
    pub fn new(kind: ComponentKind, name: String) -> Component {
        Component {
            kind,
            name,
            version: None,
            purl: None,
            sha256: None,
            sha1: None,
            url: None,
            layer: None,
        }
    }

    /// A base image: `pkg:oci/NAME@sha256%3A...` with its repository.
    pub fn image(reference: &str, digest: &Digest) -> Component {
        let mut c = Component::new(ComponentKind::Image, reference.to_string());
        c.version = Some(digest.to_string());
        c.purl = Some(oci_purl(reference, digest));
        c.sha256 = Some(digest.hex().to_string());
        c
    }

    /// A file fetched by URL.
    pub fn url(url: &str, sha256: &str) -> Component {
        let mut c = Component::new(ComponentKind::Url, url.to_string());
        c.url = Some(url.to_string());
        c.sha256 = Some(sha256.to_string());
        c
    }

    /// A Python distribution (`pkg:pypi/NAME@VERSION`).
    pub fn python(name: &str, version: &str, sha256: Option<&str>, url: Option<&str>) -> Component {
        let norm = name.to_ascii_lowercase().replace(['_', '.'], "-");
        let mut c = Component::new(ComponentKind::Python, name.to_string());
        c.version = Some(version.to_string());
        c.purl = Some(format!("pkg:pypi/{norm}@{version}"));
        c.sha256 = sha256.map(str::to_string);
        c.url = url.map(str::to_string);
        c
    }
}

/// A package URL for an image: `pkg:oci/NAME@sha256%3AHEX`, with
/// `repository_url` when the reference names a repository (not a path).
pub fn oci_purl(reference: &str, digest: &Digest) -> String {
    let repo = reference
        .split('@')
        .next()
        .unwrap_or(reference)
        .trim_end_matches('/');
    // Drop a tag (a colon after the last slash).
    let repo = match (repo.rfind(':'), repo.rfind('/')) {
        (Some(c), s) if s.is_none_or(|s| c > s) => &repo[..c],
        _ => repo,
    };
    let name = repo.rsplit('/').next().unwrap_or(repo).to_ascii_lowercase();
    let mut purl = format!("pkg:oci/{name}@sha256%3A{}", digest.hex());
    let looks_remote = repo.contains('/') && !repo.starts_with('.') && !repo.starts_with('/');
    if looks_remote {
        purl.push_str("?repository_url=");
        purl.push_str(&repo.to_ascii_lowercase());
    }
    purl
}

/// The base image of each platform of a build, as its manifest records
/// them (`org.opencontainers.image.base.name` and `.digest`).
pub fn base_images(build: &BuildResult) -> Result<Vec<Component>> {
    let mut out = Vec::new();
    for image in &build.images {
        let path = blob_path(&build.layout, &image.manifest.digest);
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "reading manifest {} ({})",
                image.manifest.digest,
                path.display()
            )
        })?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .with_context(|| format!("parsing manifest {}", image.manifest.digest))?;
        let name = manifest.annotations.get(oci::ANNOTATION_BASE_NAME);
        let digest = manifest
            .annotations
            .get(oci::ANNOTATION_BASE_DIGEST)
            .and_then(|d| d.parse::<Digest>().ok());
        if let (Some(name), Some(digest)) = (name, digest) {
            let c = Component::image(name, &digest);
            if !out.contains(&c) {
                out.push(c);
            }
        }
    }
    Ok(out)
}

/// Every regular file of a layer blob with its SHA-256 and SHA-1, read in
/// one streaming pass (the blob is decompressed as it is read). A hard link
/// gets its target's hashes.
pub fn layer_files(blob: &Path, layer: &Digest) -> Result<Vec<Component>> {
    let file = File::open(blob).with_context(|| format!("opening {}", blob.display()))?;
    let reader = crate::layer::decoder(BufReader::with_capacity(1 << 20, file))?;
    let mut archive = tar::Archive::new(reader);
    let mut out: Vec<Component> = Vec::new();
    let mut by_path: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut buf = vec![0u8; 1 << 16];
    for entry in archive.entries().context("reading the layer tar")? {
        let mut entry = entry.context("reading the layer tar")?;
        let raw = entry.path_bytes().into_owned();
        let path = raw.strip_prefix(b"./").unwrap_or(&raw).to_vec();
        let name = format!(
            "/{}",
            String::from_utf8_lossy(path.strip_prefix(b"/").unwrap_or(&path))
        );
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let (mut s256, mut s1) = (Sha256::new(), Sha1::new());
                loop {
                    let n = entry.read(&mut buf).context("reading the layer tar")?;
                    if n == 0 {
                        break;
                    }
                    s256.update(&buf[..n]);
                    s1.update(&buf[..n]);
                }
                let mut c = Component::new(ComponentKind::File, name);
                c.sha256 = Some(hex::encode(s256.finalize()));
                c.sha1 = Some(hex::encode(s1.finalize()));
                c.layer = Some(layer.clone());
                by_path.insert(path, out.len());
                out.push(c);
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.strip_prefix(b"./").unwrap_or(&t).to_vec())
                    .unwrap_or_default();
                if let Some(&i) = by_path.get(&target) {
                    let mut c = out[i].clone();
                    c.name = name;
                    out.push(c);
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

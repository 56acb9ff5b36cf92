//! An SBOM from what the build knows, without a scanner: the base image
//! (name and digest), every regular file of each recipe layer with its
//! SHA-256 and SHA-1 (read back from the layer blobs as written, in one
//! streaming pass per layer), and components that source kinds report
//! (a file fetched by URL, a Python package) as plain [`Component`]s
//! (gathered in `components.rs`).
//!
//! Written as SPDX 2.3 JSON (default) or CycloneDX 1.6 JSON. The bytes are a
//! function of the image alone: times come from the image's `created`,
//! document ids from its digest, elements are sorted and keys are in
//! canonical order, so the same build gives the same SBOM.

use std::collections::HashSet;

use anyhow::{Context as _, Result};
use serde_json::{json, Value};
use sha1::Sha1;
use sha2::{Digest as _, Sha256};

pub use super::components::{base_images, layer_files, oci_purl, Component, ComponentKind};
use crate::build::BuildResult;
use crate::error::bad_input;
use crate::image::layout::blob_path;
use crate::oci::{self, canonical_json, Digest};

/// The SBOM formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SbomFormat {
    Spdx,
    CycloneDx,
}

impl SbomFormat {
    /// `spdx`, `cyclonedx` (the values of `--sbom` and `[image] sbom`);
    /// `none` is `Ok(None)`.
    pub fn parse(s: &str) -> Result<Option<SbomFormat>> {
        match s {
            "spdx" | "spdx-json" => Ok(Some(SbomFormat::Spdx)),
            "cyclonedx" | "cyclonedx-json" => Ok(Some(SbomFormat::CycloneDx)),
            "none" => Ok(None),
            _ => Err(bad_input(format!(
                "SBOM format {s:?}: expected spdx, cyclonedx or none"
            ))),
        }
    }

    /// The media type of the document.
    pub fn media_type(self) -> &'static str {
        match self {
            SbomFormat::Spdx => "application/spdx+json",
            SbomFormat::CycloneDx => "application/vnd.cyclonedx+json",
        }
    }

    /// The in-toto predicate type of the document (cosign's `--type
    /// spdxjson` / `cyclonedx`).
    pub fn predicate_type(self) -> &'static str {
        match self {
            SbomFormat::Spdx => "https://spdx.dev/Document",
            SbomFormat::CycloneDx => "https://cyclonedx.org/bom",
        }
    }

    /// The format of a predicate type or media type, if it is an SBOM's.
    pub fn of_type(t: &str) -> Option<SbomFormat> {
        [SbomFormat::Spdx, SbomFormat::CycloneDx]
            .into_iter()
            .find(|f| f.predicate_type() == t || f.media_type() == t)
    }
}

/// Everything an SBOM says, before it is written in a format.
#[derive(Clone, Debug)]
pub struct SbomInput {
    /// The image's name (the recipe's `[image] name`).
    pub name: String,
    /// The image's digest (index or manifest): the document's subject.
    pub digest: Digest,
    /// Where the image is pushed (for its purl), if known.
    pub repository: Option<String>,
    /// Seconds since the epoch (the image's `created`).
    pub created: i64,
    pub components: Vec<Component>,
}

impl SbomInput {
    /// The SBOM of a finished build: its base images and every file of
    /// every recipe layer.
    pub fn from_build(name: &str, created: i64, build: &BuildResult) -> Result<SbomInput> {
        let mut components = base_images(build)?;
        let mut seen_layers = HashSet::new();
        for image in &build.images {
            for l in image.layers.iter().filter(|l| l.source != "base") {
                if seen_layers.insert(l.descriptor.digest.clone()) {
                    let blob = blob_path(&build.layout, &l.descriptor.digest);
                    components.extend(
                        layer_files(&blob, &l.descriptor.digest).with_context(|| {
                            format!("listing the files of layer {:?}", l.source)
                        })?,
                    );
                }
            }
        }
        components.sort();
        components.dedup();
        Ok(SbomInput {
            name: name.to_string(),
            digest: build.digest.clone(),
            repository: None,
            created,
            components,
        })
    }

    /// The document in `format`.
    pub fn render(&self, format: SbomFormat) -> Vec<u8> {
        match format {
            SbomFormat::Spdx => canonical_json(&self.spdx()),
            SbomFormat::CycloneDx => canonical_json(&self.cyclonedx()),
        }
    }

    fn image_purl(&self) -> String {
        oci_purl(
            self.repository.as_deref().unwrap_or(&self.name),
            &self.digest,
        )
    }

    fn sorted(&self) -> Vec<&Component> {
        let mut v: Vec<&Component> = self.components.iter().collect();
        v.sort();
        v
    }

    /// SPDX 2.3: the image as the described package, the base images and
    /// source-kind components as packages, layer files as files.
    pub fn spdx(&self) -> Value {
        // The image "contains" its files, so its files were analysed, and
        // SPDX then wants the verification code over their SHA-1s.
        let mut sha1s: Vec<&str> = self
            .components
            .iter()
            .filter(|c| c.kind == ComponentKind::File)
            .filter_map(|c| c.sha1.as_deref())
            .collect();
        sha1s.sort_unstable();
        let mut packages = vec![json!({
            "SPDXID": "SPDXRef-Image",
            "name": self.name,
            "versionInfo": self.digest.to_string(),
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": !sha1s.is_empty(),
            "primaryPackagePurpose": "CONTAINER",
            "checksums": [{"algorithm": "SHA256", "checksumValue": self.digest.hex()}],
            "externalRefs": [purl_ref(&self.image_purl())],
        })];
        if !sha1s.is_empty() {
            packages[0]["packageVerificationCode"] = json!({
                "packageVerificationCodeValue": hex::encode(Sha1::digest(sha1s.concat())),
            });
        }
        let mut files = Vec::new();
        let mut relationships = vec![relationship(
            "SPDXRef-DOCUMENT",
            "DESCRIBES",
            "SPDXRef-Image",
        )];
        for c in self.sorted() {
            let id = spdx_id(c);
            if c.kind == ComponentKind::File {
                let mut checksums = Vec::new();
                for (alg, v) in [("SHA1", &c.sha1), ("SHA256", &c.sha256)] {
                    if let Some(v) = v {
                        checksums.push(json!({"algorithm": alg, "checksumValue": v}));
                    }
                }
                let mut f = json!({
                    "SPDXID": id,
                    "fileName": format!(".{}", c.name),
                    "checksums": checksums,
                });
                if let Some(l) = &c.layer {
                    f["comment"] = json!(format!("layer {l}"));
                }
                files.push(f);
                relationships.push(relationship("SPDXRef-Image", "CONTAINS", &id));
                continue;
            }
            let mut p = json!({
                "SPDXID": id,
                "name": c.name,
                "downloadLocation": c.url.as_deref().filter(|u| is_download_location(u)).unwrap_or("NOASSERTION"),
                "filesAnalyzed": false,
                "primaryPackagePurpose": match c.kind {
                    ComponentKind::Image => "CONTAINER",
                    ComponentKind::Python => "LIBRARY",
                    _ => "FILE",
                },
            });
            if let Some(v) = &c.version {
                p["versionInfo"] = json!(v);
            }
            if let Some(u) = c.url.as_deref().filter(|u| !is_download_location(u)) {
                p["sourceInfo"] = json!(format!("fetched from {u}"));
            }
            if let Some(s) = &c.sha256 {
                p["checksums"] = json!([{"algorithm": "SHA256", "checksumValue": s}]);
            }
            if let Some(purl) = &c.purl {
                p["externalRefs"] = json!([purl_ref(purl)]);
            }
            packages.push(p);
            let rel = match c.kind {
                ComponentKind::Image => relationship("SPDXRef-Image", "DESCENDANT_OF", &id),
                _ => relationship("SPDXRef-Image", "CONTAINS", &id),
            };
            relationships.push(rel);
        }
        json!({
            "spdxVersion": "SPDX-2.3",
            "dataLicense": "CC0-1.0",
            "SPDXID": "SPDXRef-DOCUMENT",
            "name": format!("{}@{}", self.name, self.digest),
            "documentNamespace": format!("urn:uuid:{}", uuid_of(&self.digest)),
            "creationInfo": {
                "created": oci::rfc3339(self.created),
                "creators": [format!("Tool: boxwright-{}", env!("CARGO_PKG_VERSION"))],
            },
            "packages": packages,
            "files": files,
            "relationships": relationships,
        })
    }

    /// CycloneDX 1.6: the image as the metadata component, the rest as
    /// components (files of type `file`, base images `container`).
    pub fn cyclonedx(&self) -> Value {
        let mut components = Vec::new();
        let mut depends = Vec::new();
        for c in self.sorted() {
            let id = spdx_id(c);
            let mut hashes = Vec::new();
            for (alg, v) in [("SHA-1", &c.sha1), ("SHA-256", &c.sha256)] {
                if let Some(v) = v {
                    hashes.push(json!({"alg": alg, "content": v}));
                }
            }
            let mut x = json!({
                "bom-ref": id,
                "type": match c.kind {
                    ComponentKind::Image => "container",
                    ComponentKind::Python => "library",
                    _ => "file",
                },
                "name": c.name,
            });
            if !hashes.is_empty() {
                x["hashes"] = json!(hashes);
            }
            if let Some(v) = &c.version {
                x["version"] = json!(v);
            }
            if let Some(p) = &c.purl {
                x["purl"] = json!(p);
            }
            if let Some(u) = &c.url {
                x["externalReferences"] = json!([{"type": "distribution", "url": u}]);
            }
            if let Some(l) = &c.layer {
                x["properties"] = json!([{"name": "boxwright:layer", "value": l.to_string()}]);
            }
            if c.kind == ComponentKind::Image {
                depends.push(id);
            }
            components.push(x);
        }
        json!({
            "bomFormat": "CycloneDX",
            "specVersion": "1.6",
            "serialNumber": format!("urn:uuid:{}", uuid_of(&self.digest)),
            "version": 1,
            "metadata": {
                "timestamp": oci::rfc3339(self.created),
                "tools": {"components": [{
                    "type": "application",
                    "name": "boxwright",
                    "version": env!("CARGO_PKG_VERSION"),
                }]},
                "component": {
                    "bom-ref": "SPDXRef-Image",
                    "type": "container",
                    "name": self.name,
                    "version": self.digest.to_string(),
                    "purl": self.image_purl(),
                    "hashes": [{"alg": "SHA-256", "content": self.digest.hex()}],
                },
            },
            "components": components,
            "dependencies": [{"ref": "SPDXRef-Image", "dependsOn": depends}],
        })
    }
}

fn purl_ref(purl: &str) -> Value {
    json!({
        "referenceCategory": "PACKAGE-MANAGER",
        "referenceType": "purl",
        "referenceLocator": purl,
    })
}

fn relationship(a: &str, kind: &str, b: &str) -> Value {
    json!({"spdxElementId": a, "relationshipType": kind, "relatedSpdxElement": b})
}

/// An element id derived from what the component is: stable across builds
/// of the same content, unique within a document.
/// Whether SPDX 2.3 takes `url` as a `downloadLocation` (a network URL;
/// a `file://` one is not), else it goes into `sourceInfo`.
fn is_download_location(url: &str) -> bool {
    ["https://", "http://", "ftp://"]
        .iter()
        .any(|scheme| url.starts_with(scheme))
}

fn spdx_id(c: &Component) -> String {
    let mut h = Sha256::new();
    h.update(format!("{:?}", c.kind));
    for part in [&c.name, c.version.as_deref().unwrap_or("")]
        .into_iter()
        .map(String::from)
        .chain(c.layer.iter().map(|l| l.to_string()))
    {
        h.update([0]);
        h.update(part.as_bytes());
    }
    let kind = match c.kind {
        ComponentKind::Image => "Image",
        ComponentKind::File => "File",
        ComponentKind::Url => "Url",
        ComponentKind::Python => "Python",
    };
    format!("SPDXRef-{kind}-{}", &hex::encode(h.finalize())[..20])
}

/// A version 5 style UUID from the image digest (namespace and serial number).
fn uuid_of(d: &Digest) -> String {
    let mut b: [u8; 16] = Sha256::digest(format!("boxwright sbom {d}"))[..16]
        .try_into()
        .unwrap_or([0; 16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// The format of an SBOM document, from its content.
pub fn detect(doc: &Value) -> Option<SbomFormat> {
    if doc["spdxVersion"].is_string() {
        Some(SbomFormat::Spdx)
    } else if doc["bomFormat"] == "CycloneDX" {
        Some(SbomFormat::CycloneDx)
    } else {
        None
    }
}

/// The image an SBOM says it describes, when it says so (a container
/// package with a SHA-256, as boxwright writes it): SPDX's described
/// container package, CycloneDX's metadata component.
pub fn described_image(doc: &Value) -> Option<Digest> {
    let sha256 = |hashes: &Value, alg_key: &str, alg: &str, value_key: &str| {
        hashes.as_array().and_then(|a| {
            a.iter()
                .find(|h| h[alg_key] == alg)
                .and_then(|h| h[value_key].as_str())
                .and_then(|v| format!("sha256:{v}").parse::<Digest>().ok())
        })
    };
    match detect(doc)? {
        SbomFormat::Spdx => {
            let described: Vec<&str> = doc["relationships"]
                .as_array()?
                .iter()
                .filter(|r| {
                    r["spdxElementId"] == "SPDXRef-DOCUMENT" && r["relationshipType"] == "DESCRIBES"
                })
                .filter_map(|r| r["relatedSpdxElement"].as_str())
                .collect();
            doc["packages"].as_array()?.iter().find_map(|p| {
                let id = p["SPDXID"].as_str()?;
                (described.contains(&id) && p["primaryPackagePurpose"] == "CONTAINER")
                    .then(|| sha256(&p["checksums"], "algorithm", "SHA256", "checksumValue"))
                    .flatten()
            })
        }
        SbomFormat::CycloneDx => {
            let c = &doc["metadata"]["component"];
            (c["type"] == "container")
                .then(|| sha256(&c["hashes"], "alg", "SHA-256", "content"))
                .flatten()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> SbomInput {
        let layer = Digest::of(b"layer");
        let mut f = Component::new(ComponentKind::File, "/etc/hello".into());
        f.sha256 = Some(hex::encode(Sha256::digest(b"hi")));
        f.sha1 = Some(hex::encode(Sha1::digest(b"hi")));
        f.layer = Some(layer);
        SbomInput {
            name: "demo".into(),
            digest: Digest::of(b"image"),
            repository: Some("ghcr.io/acme/demo".into()),
            created: 1_700_000_000,
            components: vec![
                f,
                Component::image("docker.io/library/alpine:3.20", &Digest::of(b"base")),
                Component::python("Requests", "2.32.3", Some(&"ab".repeat(32)), None),
                Component::url("https://example.org/x.tgz", &"cd".repeat(32)),
            ],
        }
    }

    #[test]
    fn purls_follow_the_oci_type() {
        let d = Digest::of(b"x");
        assert_eq!(
            oci_purl("docker.io/library/alpine:3.20", &d),
            format!(
                "pkg:oci/alpine@sha256%3A{}?repository_url=docker.io/library/alpine",
                d.hex()
            )
        );
        assert_eq!(
            oci_purl("localhost:5000/app", &d),
            format!(
                "pkg:oci/app@sha256%3A{}?repository_url=localhost:5000/app",
                d.hex()
            )
        );
        assert_eq!(
            oci_purl("demo", &d),
            format!("pkg:oci/demo@sha256%3A{}", d.hex())
        );
    }

    #[test]
    fn documents_are_deterministic_and_sorted() {
        let a = input();
        let mut b = input();
        b.components.reverse();
        for f in [SbomFormat::Spdx, SbomFormat::CycloneDx] {
            assert_eq!(a.render(f), b.render(f));
        }
        let spdx = a.spdx();
        assert_eq!(spdx["creationInfo"]["created"], "2023-11-14T22:13:20Z");
        assert_eq!(spdx["files"][0]["fileName"], "./etc/hello");
        assert_eq!(spdx["packages"].as_array().unwrap().len(), 4);
        assert_eq!(described_image(&spdx), Some(a.digest.clone()));
        let cdx = a.cyclonedx();
        assert_eq!(described_image(&cdx), Some(a.digest.clone()));
        assert_eq!(detect(&cdx), Some(SbomFormat::CycloneDx));
        let serial = cdx["serialNumber"].as_str().unwrap();
        assert_eq!(serial.len(), "urn:uuid:".len() + 36);
        assert_eq!(&serial[23..24], "5");
    }

    #[test]
    fn only_network_urls_are_download_locations() {
        let mut input = input();
        input
            .components
            .push(Component::url("file:///srv/tool.bin", &"ef".repeat(32)));
        let spdx = input.spdx();
        let by_name = |n: &str| {
            spdx["packages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == n)
                .unwrap()
                .clone()
        };
        let https = by_name("https://example.org/x.tgz");
        assert_eq!(https["downloadLocation"], "https://example.org/x.tgz");
        assert!(https.get("sourceInfo").is_none());
        let file = by_name("file:///srv/tool.bin");
        assert_eq!(file["downloadLocation"], "NOASSERTION");
        assert_eq!(file["sourceInfo"], "fetched from file:///srv/tool.bin");
    }

    #[test]
    fn formats_parse() {
        assert_eq!(SbomFormat::parse("spdx").unwrap(), Some(SbomFormat::Spdx));
        assert_eq!(SbomFormat::parse("none").unwrap(), None);
        assert!(SbomFormat::parse("xml").is_err());
        assert_eq!(
            SbomFormat::of_type("https://cyclonedx.org/bom"),
            Some(SbomFormat::CycloneDx)
        );
    }
}

//! OCI image layouts on disk: reading any layout (ours, umoci's, skopeo's,
//! buildah's, podman's) as an [`ImageSource`], and writing new ones
//! ([`LayoutWriter`]; from any image source,
//! [`sink::write_layout`](crate::image::sink::write_layout)).
//!
//! Every file of a layout is read through [`guard`]: regular files only,
//! sizes and digests checked before use. A blob is handed to an upload or a
//! copy only after its digest was checked on the file as it is (the check is
//! remembered while the file's identity does not change).

pub mod guard;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Result};
use bytes::Bytes;
use futures_util::future::BoxFuture;

use crate::error::bad_input;
use crate::image::{Graph, ImageSource};
use crate::oci::{self, Descriptor, Digest, Index};
use guard::FileId;

pub use writer::LayoutWriter;
pub(crate) use writer::{lock_dir, remove_stale};

const OCI_LAYOUT_FILE: &str = "oci-layout";
const OCI_LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// A read-only OCI image layout.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
    index: Index,
}

impl Layout {
    /// Open the layout at `dir`, checking `oci-layout` and reading `index.json`.
    pub fn open(dir: &Path) -> Result<Layout> {
        let marker = dir.join(OCI_LAYOUT_FILE);
        if std::fs::symlink_metadata(&marker).is_err() {
            return Err(bad_input(format!(
                "{}: not an OCI image layout (no {OCI_LAYOUT_FILE} file); build one with `boxwright build` or `skopeo copy ... oci:DIR:TAG`",
                dir.display()
            )));
        }
        let version = guard::read_document(dir, &[OCI_LAYOUT_FILE], None)?;
        if let Err(why) = check_layout_version(&version) {
            return Err(bad_input(format!(
                "{}: {why}; the {OCI_LAYOUT_FILE} file of an OCI image layout holds {}",
                marker.display(),
                String::from_utf8_lossy(OCI_LAYOUT_CONTENT)
            )));
        }
        let bytes = guard::read_document(dir, &["index.json"], None)?;
        let index: Index = serde_json::from_slice(&bytes).map_err(|e| {
            bad_input(format!(
                "{}: not a valid OCI index: {e}",
                dir.join("index.json").display()
            ))
        })?;
        Ok(Layout {
            root: dir.to_path_buf(),
            index,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The top-level `index.json`.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The descriptor named `name` (its `org.opencontainers.image.ref.name`),
    /// or with `None` the layout's only image. Artifacts listed beside the
    /// image ([`is_referrer`]) are not images.
    pub fn resolve(&self, name: Option<&str>) -> Result<Descriptor> {
        let entries: Vec<&Descriptor> = self
            .index
            .manifests
            .iter()
            .filter(|d| !is_referrer(d))
            .collect();
        let names = || {
            let v: Vec<&str> = entries
                .iter()
                .filter_map(|d| {
                    d.annotations
                        .get(oci::ANNOTATION_REF_NAME)
                        .map(String::as_str)
                })
                .collect();
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        match name {
            Some(n) => entries
                .iter()
                .find(|d| {
                    d.annotations
                        .get(oci::ANNOTATION_REF_NAME)
                        .map(String::as_str)
                        == Some(n)
                })
                .map(|d| (*d).clone())
                .ok_or_else(|| {
                    bad_input(format!(
                        "{}: no image named {n:?} (names in this layout: {})",
                        self.root.display(),
                        names()
                    ))
                }),
            None => {
                let first = entries.first().ok_or_else(|| {
                    bad_input(format!(
                        "{}: the layout holds no image",
                        self.root.display()
                    ))
                })?;
                if entries.iter().any(|d| d.digest != first.digest) {
                    return Err(bad_input(format!(
                        "{}: the layout holds several images; pick one with DIR:NAME (names: {})",
                        self.root.display(),
                        names()
                    )));
                }
                Ok((*first).clone())
            }
        }
    }

    /// Where the blob `d` lives.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        blob_path(&self.root, d)
    }

    /// Read a small blob (a manifest, index or config), checking its size
    /// and digest.
    pub fn read_blob(&self, d: &Descriptor) -> Result<Vec<u8>> {
        guard::read_document(&self.root, &guard::blob_components(&d.digest), Some(d))
    }

    /// Read and parse the JSON document `d`.
    pub fn read_json<T: serde::de::DeserializeOwned>(&self, d: &Descriptor) -> Result<T> {
        let bytes = self.read_blob(d)?;
        serde_json::from_slice(&bytes).map_err(|e| {
            bad_input(format!(
                "{}: not a valid {}: {e}",
                self.blob_path(&d.digest).display(),
                d.media_type
            ))
        })
    }
}

/// One image of a layout (an image manifest or an index), read on demand.
#[derive(Debug, Clone)]
pub struct LayoutImage {
    layout: Arc<Layout>,
    root: Descriptor,
    /// Blobs whose digest was checked, with the identity of the file then.
    verified: Arc<Mutex<HashMap<Digest, FileId>>>,
}

impl LayoutImage {
    /// The image named `name` in the layout at `dir` (or its only image).
    pub fn open(dir: &Path, name: Option<&str>) -> Result<LayoutImage> {
        let layout = Layout::open(dir)?;
        let root = layout.resolve(name)?;
        Ok(LayoutImage {
            layout: Arc::new(layout),
            root,
            verified: Arc::default(),
        })
    }

    /// The manifest or index `root` of the layout at `dir`, whether or not
    /// `index.json` lists it (a platform manifest of an index).
    pub fn open_root(dir: &Path, root: Descriptor) -> Result<LayoutImage> {
        Ok(LayoutImage {
            layout: Arc::new(Layout::open(dir)?),
            root,
            verified: Arc::default(),
        })
    }

    /// The image at `DIR[:NAME]` (see [`split_layout_ref`]).
    pub fn open_ref(s: &str) -> Result<LayoutImage> {
        let (dir, name) = split_layout_ref(s);
        LayoutImage::open(&dir, name.as_deref())
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The file of blob `d`, when the layout holds it as a regular file of
    /// the right size (bad input otherwise). Its bytes are not read.
    pub fn blob_file(&self, d: &Descriptor) -> Result<PathBuf> {
        guard::open_blob(self.layout.root(), d).map(|f| f.path)
    }

    /// Check that every blob of `graph` is here, before anything is sent.
    pub fn check_blobs(&self, graph: &Graph) -> Result<()> {
        graph
            .blobs
            .iter()
            .try_for_each(|d| self.blob_file(d).map(|_| ()))
    }

    /// The file of blob `d`, its digest checked: read once, and again only
    /// when the file changed since (another inode, size or time).
    pub fn verified_blob(&self, d: &Descriptor) -> Result<PathBuf> {
        let root = self.layout.root();
        let f = guard::open_blob(root, d)?;
        let id = FileId::of(&f.meta);
        let known = |m: &HashMap<Digest, FileId>| m.get(&d.digest) == Some(&id);
        if self.verified.lock().is_ok_and(|m| known(&m)) {
            return Ok(f.path);
        }
        let id = guard::check_digest(root, &f, d)?;
        if let Ok(mut m) = self.verified.lock() {
            m.insert(d.digest.clone(), id);
        }
        Ok(f.path)
    }
}

impl ImageSource for LayoutImage {
    fn root(&self) -> &Descriptor {
        &self.root
    }

    fn manifest<'a>(&'a self, desc: &'a Descriptor) -> BoxFuture<'a, Result<Bytes>> {
        // Manifests are small: read in place.
        Box::pin(std::future::ready(
            self.layout.read_blob(desc).map(Bytes::from),
        ))
    }

    fn blob<'a>(&'a self, desc: &'a Descriptor) -> BoxFuture<'a, Result<PathBuf>> {
        // Hashing a layer takes a while: off the async threads when there are some.
        Box::pin(async move {
            if tokio::runtime::Handle::try_current().is_err() {
                return self.verified_blob(desc);
            }
            let (this, d) = (self.clone(), desc.clone());
            tokio::task::spawn_blocking(move || this.verified_blob(&d))
                .await
                .map_err(|e| anyhow!("checking blob {}: {e}", desc.digest))?
        })
    }

    fn locate(&self, desc: &Descriptor) -> String {
        self.layout.blob_path(&desc.digest).display().to_string()
    }
}

/// Check the content of an `oci-layout` file: a JSON object whose
/// `imageLayoutVersion` is a 1.x version (`1.0.0` in every layout written
/// today); what is wrong otherwise.
fn check_layout_version(bytes: &[u8]) -> std::result::Result<(), String> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not JSON ({e})"))?;
    let version = match v.get("imageLayoutVersion") {
        None => return Err("no imageLayoutVersion".to_string()),
        Some(serde_json::Value::String(s)) => s,
        Some(_) => return Err("imageLayoutVersion is not a string".to_string()),
    };
    let parts: Vec<&str> = version.split('.').collect();
    let numeric = |p: &&str| !p.is_empty() && p.len() <= 9 && p.bytes().all(|b| b.is_ascii_digit());
    if parts.len() >= 2 && parts.len() <= 3 && parts[0] == "1" && parts.iter().all(numeric) {
        return Ok(());
    }
    let shown: String = version.chars().take(32).collect();
    let more = if shown.len() < version.len() {
        "..."
    } else {
        ""
    };
    Err(format!(
        "imageLayoutVersion {shown:?}{more} is not a 1.x version, the only one boxwright reads"
    ))
}

/// Whether an `index.json` entry is an artifact kept beside an image (an
/// SBOM, provenance: a manifest whose `subject` is the image) rather than
/// an image: it has an `artifactType` and no ref name.
pub fn is_referrer(d: &Descriptor) -> bool {
    d.artifact_type.is_some() && !d.annotations.contains_key(oci::ANNOTATION_REF_NAME)
}

/// Split `DIR[:NAME]` into the layout directory and the image name.
///
/// Names may hold colons and slashes (podman, buildah and skopeo write
/// names like `localhost/app:1`), and so may directories. The whole string
/// is the directory when it exists. Otherwise it is split after the longest
/// prefix ending before a `:` that is an OCI layout (a directory with an
/// `oci-layout` file), else after the longest that is a directory (whose
/// opening then says why it is not a layout); with neither, the whole
/// string is the directory.
pub fn split_layout_ref(s: &str) -> (PathBuf, Option<String>) {
    if !Path::new(s).exists() {
        let cuts: Vec<usize> = s.match_indices(':').map(|(i, _)| i).rev().collect();
        let longest =
            |test: fn(&Path) -> bool| cuts.iter().copied().find(|&i| test(Path::new(&s[..i])));
        let cut = longest(|p| p.join(OCI_LAYOUT_FILE).exists()).or_else(|| longest(Path::is_dir));
        if let Some(i) = cut {
            return (PathBuf::from(&s[..i]), Some(s[i + 1..].to_string()));
        }
    }
    (PathBuf::from(s), None)
}

pub fn blob_path(root: &Path, d: &Digest) -> PathBuf {
    guard::blob_components(d)
        .iter()
        .fold(root.to_path_buf(), |p, c| p.join(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_versions_of_1_x_are_read_and_others_say_why_not() {
        for ok in [
            OCI_LAYOUT_CONTENT,
            br#"{"imageLayoutVersion":"1.0"}"#,
            br#"{ "imageLayoutVersion" : "1.1.0", "extra": true }"#,
        ] {
            assert_eq!(check_layout_version(ok), Ok(()), "{ok:?}");
        }
        for (bad, why) in [
            (&b"garbage"[..], "not JSON"),
            (b"", "not JSON"),
            (b"{}", "no imageLayoutVersion"),
            (b"[]", "no imageLayoutVersion"),
            (br#"{"imageLayoutVersion":1}"#, "not a string"),
            (
                br#"{"imageLayoutVersion":"2.0.0"}"#,
                "\"2.0.0\" is not a 1.x",
            ),
            (br#"{"imageLayoutVersion":"1"}"#, "not a 1.x"),
            (br#"{"imageLayoutVersion":"1.0.0-x"}"#, "not a 1.x"),
            (br#"{"imageLayoutVersion":"10.0.0"}"#, "not a 1.x"),
        ] {
            let e = check_layout_version(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        let long = format!(r#"{{"imageLayoutVersion":"{}"}}"#, "9".repeat(1000));
        let e = check_layout_version(long.as_bytes()).unwrap_err();
        assert!(e.len() < 200, "{e}");
    }

    #[test]
    fn a_bad_oci_layout_file_is_bad_input_naming_it_and_what_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join(OCI_LAYOUT_FILE);
        std::fs::write(&marker, b"not json").unwrap();
        let e = Layout::open(dir.path()).unwrap_err();
        assert!(crate::error::is_bad_input(&e));
        let text = format!("{e:#}");
        assert!(text.contains(&marker.display().to_string()), "{text}");
        assert!(text.contains(r#"{"imageLayoutVersion":"1.0.0"}"#), "{text}");
    }
}

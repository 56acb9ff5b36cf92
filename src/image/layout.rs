//! OCI image layouts on disk: reading any layout (ours, umoci's, skopeo's,
//! buildah's) as an [`ImageSource`], and writing new ones.
//!
//! A new layout is written into a temporary sibling directory: blobs through
//! temp file + rename, `index.json` last, and the whole directory renamed into
//! place at the very end, so that a failed or killed build never leaves a
//! half-written layout under the output name.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use futures_util::future::BoxFuture;

use crate::error::bad_input;
use crate::image::{Graph, ImageSource};
use crate::oci::{self, canonical_json, Descriptor, Digest, Index};

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
        if !marker.is_file() {
            return Err(bad_input(format!(
                "{}: not an OCI image layout (no {OCI_LAYOUT_FILE} file); build one with `boxwright build` or `skopeo copy ... oci:DIR:TAG`",
                dir.display()
            )));
        }
        let index_path = dir.join("index.json");
        let bytes =
            fs::read(&index_path).with_context(|| format!("reading {}", index_path.display()))?;
        let index: Index = serde_json::from_slice(&bytes).map_err(|e| {
            bad_input(format!(
                "{}: not a valid OCI index: {e}",
                index_path.display()
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
    /// or with `None` the layout's only image.
    pub fn resolve(&self, name: Option<&str>) -> Result<Descriptor> {
        let entries = &self.index.manifests;
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
                .cloned()
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
                Ok(first.clone())
            }
        }
    }

    /// Where the blob `d` lives.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        blob_path(&self.root, d)
    }

    /// Read a small blob (a manifest, index or config), checking its digest.
    pub fn read_blob(&self, d: &Descriptor) -> Result<Vec<u8>> {
        let path = self.blob_path(&d.digest);
        let bytes = fs::read(&path)
            .with_context(|| format!("reading blob {} ({})", d.digest, path.display()))?;
        if Digest::of(&bytes) != d.digest {
            return Err(anyhow!(
                "blob {} in {} is corrupt: its content does not match its digest",
                d.digest,
                self.root.display()
            ));
        }
        Ok(bytes)
    }

    /// Read and parse the JSON document `d`.
    pub fn read_json<T: serde::de::DeserializeOwned>(&self, d: &Descriptor) -> Result<T> {
        let bytes = self.read_blob(d)?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("parsing {} ({})", d.digest, d.media_type))
    }
}

/// One image of a layout (an image manifest or an index), read on demand.
#[derive(Debug, Clone)]
pub struct LayoutImage {
    layout: Layout,
    root: Descriptor,
}

impl LayoutImage {
    /// The image named `name` in the layout at `dir` (or its only image).
    pub fn open(dir: &Path, name: Option<&str>) -> Result<LayoutImage> {
        let layout = Layout::open(dir)?;
        let root = layout.resolve(name)?;
        Ok(LayoutImage { layout, root })
    }

    /// The image at `DIR[:NAME]` (see [`split_layout_ref`]).
    pub fn open_ref(s: &str) -> Result<LayoutImage> {
        let (dir, name) = split_layout_ref(s);
        LayoutImage::open(&dir, name.as_deref())
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The file of blob `d`, when the layout holds it with the right size
    /// (bad input otherwise: the layout is incomplete).
    pub fn blob_file(&self, d: &Descriptor) -> Result<PathBuf> {
        let path = self.layout.blob_path(&d.digest);
        let root = self.layout.root().display();
        let meta = fs::metadata(&path)
            .map_err(|_| bad_input(format!("the layout {root} lacks blob {}", d.digest)))?;
        if meta.len() != d.size {
            return Err(bad_input(format!(
                "blob {} in {root} has {} bytes, its descriptor says {}",
                d.digest,
                meta.len(),
                d.size
            )));
        }
        Ok(path)
    }

    /// Check that every blob of `graph` is here, before anything is sent.
    pub fn check_blobs(&self, graph: &Graph) -> Result<()> {
        graph
            .blobs
            .iter()
            .try_for_each(|d| self.blob_file(d).map(|_| ()))
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
        Box::pin(std::future::ready(self.blob_file(desc)))
    }
}

/// Write `graph` as a new layout at `dir`: manifests byte for byte, blobs
/// imported from `blob_file`, the root in `index.json` named `name`.
pub fn write_graph(
    dir: &Path,
    graph: &Graph,
    blob_file: impl Fn(&Descriptor) -> PathBuf,
    name: Option<String>,
) -> Result<PathBuf> {
    let writer = LayoutWriter::create(dir)?;
    for d in &graph.blobs {
        writer.import_blob(&blob_file(d), &d.digest)?;
    }
    for (d, bytes) in &graph.manifests {
        let written = writer.write_blob(&d.media_type, bytes)?;
        if written.digest != d.digest {
            return Err(anyhow!("manifest bytes do not match {}", d.digest));
        }
    }
    let mut entry = graph.root.clone();
    if let Some(n) = name {
        entry.annotations.insert(oci::ANNOTATION_REF_NAME.into(), n);
    }
    writer.commit(vec![entry])
}

/// Split `DIR[:NAME]` into the layout directory and the image name. A colon is
/// taken as the separator only when the part before it is an existing
/// directory and the whole string is not.
pub fn split_layout_ref(s: &str) -> (PathBuf, Option<String>) {
    if !Path::new(s).exists() {
        if let Some((dir, name)) = s.rsplit_once(':') {
            if !name.contains('/') && Path::new(dir).is_dir() {
                return (PathBuf::from(dir), Some(name.to_string()));
            }
        }
    }
    (PathBuf::from(s), None)
}

pub fn blob_path(root: &Path, d: &Digest) -> PathBuf {
    root.join("blobs").join(d.algorithm()).join(d.hex())
}

/// A layout being written. Everything goes into a temporary directory next to
/// the destination; [`LayoutWriter::commit`] writes `index.json` and renames
/// it into place. Dropping the writer without committing removes it.
pub struct LayoutWriter {
    dest: PathBuf,
    tmp: Option<tempfile::TempDir>,
}

impl LayoutWriter {
    /// Start writing a layout that will end up at `dest`.
    pub fn create(dest: &Path) -> Result<LayoutWriter> {
        check_destination(dest)?;
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent)
            .with_context(|| format!("creating output directory {}", parent.display()))?;
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "layout".into());
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}.tmp-"))
            .tempdir_in(&parent)
            .with_context(|| format!("creating a temporary directory in {}", parent.display()))?;
        fs::create_dir_all(tmp.path().join("blobs").join("sha256"))?;
        Ok(LayoutWriter {
            dest: dest.to_path_buf(),
            tmp: Some(tmp),
        })
    }

    /// The directory being written (blobs can be renamed into it directly).
    pub fn root(&self) -> &Path {
        self.tmp.as_ref().expect("writer not committed").path()
    }

    /// Where the blob `d` is (or will be) in the layout being written.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        blob_path(self.root(), d)
    }

    /// A temporary file for a blob being streamed; rename it with [`LayoutWriter::place_blob`].
    pub fn temp_blob(&self) -> Result<tempfile::NamedTempFile> {
        tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(self.root().join("blobs").join("sha256"))
            .context("creating a temporary blob file")
    }

    /// Move a finished temporary blob to its content address.
    pub fn place_blob(&self, tmp: tempfile::NamedTempFile, d: &Digest) -> Result<()> {
        let path = blob_path(self.root(), d);
        tmp.persist(&path)
            .map_err(|e| anyhow!("storing blob {d}: {}", e.error))?;
        Ok(())
    }

    /// Write a small blob (JSON document) and return its descriptor.
    pub fn write_blob(&self, media_type: &str, bytes: &[u8]) -> Result<Descriptor> {
        let desc = Descriptor::of_bytes(media_type, bytes);
        let path = blob_path(self.root(), &desc.digest);
        if !path.exists() {
            let mut tmp = self.temp_blob()?;
            tmp.write_all(bytes)
                .with_context(|| format!("writing blob {}", desc.digest))?;
            self.place_blob(tmp, &desc.digest)?;
        }
        Ok(desc)
    }

    /// Copy a blob from another layout or the cache. A hard link is used when
    /// the file already has the layout's mode (0644), so that nothing changes
    /// the source's permissions; otherwise the bytes are copied.
    pub fn import_blob(&self, src: &Path, d: &Digest) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dest = blob_path(self.root(), d);
        if dest.exists() {
            return Ok(());
        }
        let mode = fs::metadata(src)
            .with_context(|| format!("reading blob {d} at {}", src.display()))?
            .permissions()
            .mode();
        if mode & 0o777 == 0o644 && fs::hard_link(src, &dest).is_ok() {
            return Ok(());
        }
        let tmp = self.temp_blob()?;
        fs::copy(src, tmp.path())
            .with_context(|| format!("copying blob {d} from {}", src.display()))?;
        self.place_blob(tmp, d)
    }

    /// Like [`LayoutWriter::import_blob`], after checking that `src` holds
    /// exactly the bytes of `d` (blobs from a layout on disk, which nothing
    /// else has checked).
    pub fn import_verified_blob(&self, src: &Path, d: &Descriptor) -> Result<()> {
        let mut f = fs::File::open(src)
            .with_context(|| format!("opening blob {} at {}", d.digest, src.display()))?;
        let mut h = crate::layer::HashingWriter::new(std::io::sink());
        std::io::copy(&mut f, &mut h)
            .with_context(|| format!("reading blob {} at {}", d.digest, src.display()))?;
        let (_, digest, size) = h.finish();
        if digest != d.digest || size != d.size {
            return Err(anyhow!(
                "blob {} at {} is corrupt: it holds {size} bytes with digest {digest}; the manifest says {} bytes",
                d.digest,
                src.display(),
                d.size
            ));
        }
        self.import_blob(src, &d.digest)
    }

    /// Write `oci-layout` and `index.json` (last), then move the layout to its
    /// destination, replacing an older one there.
    pub fn commit(mut self, manifests: Vec<Descriptor>) -> Result<PathBuf> {
        let tmp = self.tmp.take().expect("writer not committed");
        let root = tmp.path();
        fs::write(root.join(OCI_LAYOUT_FILE), OCI_LAYOUT_CONTENT)?;
        let mut index = Index::new(manifests);
        index.manifests.sort_by(|a, b| {
            let name = |d: &Descriptor| d.annotations.get(oci::ANNOTATION_REF_NAME).cloned();
            name(a).cmp(&name(b)).then_with(|| a.digest.cmp(&b.digest))
        });
        fs::write(root.join("index.json"), canonical_json(&index))?;
        set_permissions_tree(root)?;
        let tmp_path = tmp.keep();
        let placed = self.place(&tmp_path);
        if placed.is_err() {
            let _ = fs::remove_dir_all(&tmp_path);
        }
        placed.map(|()| self.dest.clone())
    }

    /// Move the finished layout at `tmp_path` to the destination, replacing an
    /// older layout there; on failure the older layout is put back.
    fn place(&self, tmp_path: &Path) -> Result<()> {
        check_destination(&self.dest)?;
        if !self.dest.exists() {
            return fs::rename(tmp_path, &self.dest)
                .with_context(|| format!("moving the new layout to {}", self.dest.display()));
        }
        let trash = tmp_path.with_file_name(format!(
            ".{}.old-{}",
            self.dest.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id()
        ));
        fs::rename(&self.dest, &trash)
            .with_context(|| format!("moving the old {} aside", self.dest.display()))?;
        if let Err(e) = fs::rename(tmp_path, &self.dest) {
            let _ = fs::rename(&trash, &self.dest);
            return Err(e)
                .with_context(|| format!("moving the new layout to {}", self.dest.display()));
        }
        let _ = fs::remove_dir_all(trash);
        Ok(())
    }
}

/// The output may be replaced only when it is absent, an empty directory, or
/// an OCI layout (an earlier build).
fn check_destination(dest: &Path) -> Result<()> {
    if !dest.exists() || dest.join(OCI_LAYOUT_FILE).exists() {
        return Ok(());
    }
    let empty_dir = fs::read_dir(dest)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false);
    if empty_dir {
        return Ok(());
    }
    Err(bad_input(format!(
        "{}: exists and is not an OCI layout; choose another output directory with -o",
        dest.display()
    )))
}

/// Give the layout ordinary permissions (directories 0755, files 0644) so that
/// what is written does not depend on the process umask or on tempfile's 0600.
fn set_permissions_tree(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let ft = entry.file_type()?;
        if ft.is_dir() {
            set_permissions_tree(&entry.path())?;
        } else if ft.is_file() && entry.metadata()?.permissions().mode() & 0o777 != 0o644 {
            // Hard-linked blobs are 0644 already (see `import_blob`).
            fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o644))?;
        }
    }
    Ok(())
}

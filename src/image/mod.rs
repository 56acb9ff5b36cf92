//! What an image is to every command that moves one: a root descriptor,
//! manifests by digest, and blobs as files, whatever holds them (an OCI
//! layout on disk, a registry, a build in memory). Push, copy, index and
//! pull all see an image through [`ImageSource`] and walk its manifest
//! graph with the one [`walk`] here, so that nesting limits, the budget of
//! manifests read ([`budget`]), deduplication and the handling of
//! non-distributable layers are decided once.

pub mod archive;
pub mod budget;
pub mod layout;
pub mod once;
pub mod output;
pub mod remote;
pub mod sink;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use anyhow::{anyhow, Context as _, Result};
use bytes::Bytes;
use futures_util::future::BoxFuture;

use crate::error::bad_input;
use crate::oci::{self, Descriptor, Digest};
use crate::progress::{Level, SharedReporter};

pub use budget::{Budget, MAX_MANIFESTS, MAX_MANIFEST_BYTES};
pub use output::{output_parent, OutputPlace};

/// How deep indexes may nest below the root (an index of indexes of
/// manifests is depth 2).
pub const MAX_DEPTH: usize = 4;

/// An image, wherever it is.
pub trait ImageSource: Send + Sync {
    /// The top-level manifest or index.
    fn root(&self) -> &Descriptor;

    /// The bytes of the manifest or index `desc`, checked against its digest.
    fn manifest<'a>(&'a self, desc: &'a Descriptor) -> BoxFuture<'a, Result<Bytes>>;

    /// A file holding exactly the bytes of blob `desc`, fetched on demand.
    /// It stays in place while the source lives, so that an upload can
    /// reopen it on every attempt.
    fn blob<'a>(&'a self, desc: &'a Descriptor) -> BoxFuture<'a, Result<PathBuf>>;

    /// Repositories on `registry` known to hold this blob, tried as mount
    /// sources before any other (a mount never asks a repository that lacks
    /// the blob, which would open an upload session). Default: none.
    fn mount_hints(&self, _registry: &str, _desc: &Descriptor) -> Vec<String> {
        Vec::new()
    }

    /// Where the manifest or blob `desc` is, for messages. Default: its digest.
    fn locate(&self, desc: &Descriptor) -> String {
        desc.digest.to_string()
    }
}

/// The manifest graph of an image.
#[derive(Clone, Debug)]
pub struct Graph {
    /// The root, with the media type its document declares.
    pub root: Descriptor,
    /// Every manifest and index once, children before parents, root last.
    pub manifests: Vec<(Descriptor, Bytes)>,
    /// Every blob (configs, layers) once, in order of first appearance.
    pub blobs: Vec<Descriptor>,
    /// Non-distributable layers left out, with the manifest naming each.
    pub left_out: Vec<(Digest, Descriptor)>,
}

impl Graph {
    /// The bytes of all blobs.
    pub fn blob_bytes(&self) -> u64 {
        crate::oci::total_size(self.blobs.iter().map(|d| d.size))
    }

    /// The root's bytes.
    pub fn root_bytes(&self) -> Option<&Bytes> {
        self.manifests
            .iter()
            .find(|(d, _)| d.digest == self.root.digest)
            .map(|(_, b)| b)
    }

    /// One warning per non-distributable layer left out.
    pub fn warn_left_out(&self, reporter: &SharedReporter) {
        for (m, l) in &self.left_out {
            reporter.log(
                Level::Warn,
                &format!(
                    "{m}: non-distributable layer {} left out (registries fetch it from its URLs)",
                    l.digest
                ),
            );
        }
    }
}

/// Walk the graph of `src` from its root, within a [`Budget`] of its own.
pub async fn walk(src: &dyn ImageSource) -> Result<Graph> {
    walk_within(src, &mut Budget::default()).await
}

/// Walk the graph of `src` from its root, each manifest and index admitted
/// to `budget` before it is fetched (several walks may share one budget:
/// a document they share counts once).
pub async fn walk_within(src: &dyn ImageSource, budget: &mut Budget) -> Result<Graph> {
    let mut g = Graph {
        root: src.root().clone(),
        manifests: Vec::new(),
        blobs: Vec::new(),
        left_out: Vec::new(),
    };
    let mut seen = Seen::default();
    visit(src, src.root().clone(), &mut g, &mut seen, budget, 0).await?;
    if let Some((d, _)) = g.manifests.last() {
        g.root = d.clone();
    }
    Ok(g)
}

/// What one walk has met: manifests and indexes, and blobs.
#[derive(Default)]
struct Seen {
    manifests: HashSet<Digest>,
    blobs: HashSet<Digest>,
}

fn visit<'a>(
    src: &'a dyn ImageSource,
    desc: Descriptor,
    g: &'a mut Graph,
    seen: &'a mut Seen,
    budget: &'a mut Budget,
    depth: usize,
) -> BoxFuture<'a, Result<()>> {
    Box::pin(async move {
        if depth > MAX_DEPTH {
            return Err(bad_input(format!(
                "{}: indexes nested too deep",
                src.locate(&desc)
            )));
        }
        if !seen.manifests.insert(desc.digest.clone()) {
            return Ok(());
        }
        budget.admit(&desc, &src.locate(&desc))?;
        let bytes = src.manifest(&desc).await?;
        let doc = Document::parse(&desc, &bytes).map_err(|e| {
            bad_input(format!(
                "{}: not a valid manifest: {e:#}",
                src.locate(&desc)
            ))
        })?;
        if doc.is_index {
            for child in doc.children {
                visit(src, child, g, seen, budget, depth + 1).await?;
            }
        } else {
            if let Some(config) = doc.config() {
                check_config_size(config, &src.locate(&desc))?;
            }
            for b in doc.children {
                if oci::is_non_distributable(&b.media_type) {
                    g.left_out.push((desc.digest.clone(), b));
                } else if seen.blobs.insert(b.digest.clone()) {
                    g.blobs.push(b);
                }
            }
        }
        let mut d = desc;
        d.media_type = doc.media_type;
        g.manifests.push((d, bytes));
        Ok(())
    })
}

/// A manifest or index, read leniently: only what the walk needs. A
/// document that does not parse is bad input: the image is malformed.
struct Document {
    media_type: String,
    is_index: bool,
    /// An index's manifests, or a manifest's config and layers.
    children: Vec<Descriptor>,
    /// Whether `children` starts with a manifest's config.
    has_config: bool,
}

impl Document {
    fn parse(desc: &Descriptor, bytes: &[u8]) -> Result<Document> {
        let v: serde_json::Value = serde_json::from_slice(bytes)
            .with_context(|| format!("parsing manifest {}", desc.digest))?;
        if let Some(why) = oci::schema_version_problem(v.get("schemaVersion")) {
            return Err(anyhow!("{}: {why}", desc.digest));
        }
        let media_type = v
            .get("mediaType")
            .and_then(|m| m.as_str())
            .unwrap_or(&desc.media_type)
            .to_string();
        let list = |key: &str| -> Result<Vec<Descriptor>> {
            match v.get(key) {
                None | Some(serde_json::Value::Null) => Ok(Vec::new()),
                Some(x) => serde_json::from_value(x.clone())
                    .with_context(|| format!("parsing {key} of manifest {}", desc.digest)),
            }
        };
        let is_index = oci::is_index_media_type(&media_type) || v.get("manifests").is_some();
        let mut has_config = false;
        let children = if is_index {
            list("manifests")?
        } else {
            let mut own = list("layers")?;
            if let Some(cfg) = v.get("config") {
                let cfg: Descriptor = serde_json::from_value(cfg.clone())
                    .with_context(|| format!("parsing config of manifest {}", desc.digest))?;
                own.insert(0, cfg);
                has_config = true;
            }
            own
        };
        Ok(Document {
            media_type,
            is_index,
            children,
            has_config,
        })
    }

    /// A manifest's config.
    fn config(&self) -> Option<&Descriptor> {
        self.children.first().filter(|_| self.has_config)
    }
}

/// An image whose manifests are bytes in memory and whose blobs are files
/// (what a build produces; also a test double).
#[derive(Clone, Debug)]
pub struct MemoryImage {
    root: Descriptor,
    manifests: HashMap<Digest, Bytes>,
    blobs: HashMap<Digest, PathBuf>,
}

impl MemoryImage {
    pub fn new(root: Descriptor) -> MemoryImage {
        MemoryImage {
            root,
            manifests: HashMap::new(),
            blobs: HashMap::new(),
        }
    }

    pub fn add_manifest(&mut self, bytes: Bytes) -> Digest {
        let d = Digest::of(&bytes);
        self.manifests.insert(d.clone(), bytes);
        d
    }

    pub fn add_blob(&mut self, digest: Digest, path: PathBuf) {
        self.blobs.insert(digest, path);
    }

    /// Whether blob `digest` is held.
    pub fn holds(&self, digest: &Digest) -> bool {
        self.blobs.contains_key(digest)
    }
}

impl ImageSource for MemoryImage {
    fn root(&self) -> &Descriptor {
        &self.root
    }

    fn manifest<'a>(&'a self, desc: &'a Descriptor) -> BoxFuture<'a, Result<Bytes>> {
        held(&self.manifests, desc, "manifest")
    }

    fn blob<'a>(&'a self, desc: &'a Descriptor) -> BoxFuture<'a, Result<PathBuf>> {
        held(&self.blobs, desc, "blob")
    }
}

/// What an in-memory source holds for `desc` (a manifest's bytes, a blob's
/// file), as the answer of an [`ImageSource`] method.
pub(crate) fn held<'a, T: Clone + Send + 'a>(
    map: &HashMap<Digest, T>,
    desc: &Descriptor,
    what: &str,
) -> BoxFuture<'a, Result<T>> {
    let found = map
        .get(&desc.digest)
        .cloned()
        .ok_or_else(|| anyhow!("{what} {} is not part of the image", desc.digest));
    Box::pin(std::future::ready(found))
}

/// Parse the JSON document `desc` of `src`: bad input naming where it is
/// when it does not parse.
pub fn parse_document<T: serde::de::DeserializeOwned>(
    src: &dyn ImageSource,
    desc: &Descriptor,
    bytes: &[u8],
) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        bad_input(format!(
            "{}: not a valid {}: {e}",
            src.locate(desc),
            if desc.media_type.is_empty() {
                "document"
            } else {
                &desc.media_type
            }
        ))
    })
}

/// Check that `config` lists one diff ID per layer of `manifest`, as every
/// consumer of an image expects: bad input naming `what` (the image) and
/// both counts otherwise. Every image whose layers are taken with their diff
/// IDs (a build's base, from a layout or a registry; a pull; a
/// docker-archive) is checked here before its layers are used.
pub fn check_diff_ids(
    what: &str,
    manifest: &oci::Manifest,
    config: &oci::ImageConfig,
) -> Result<()> {
    let (ids, layers) = (config.rootfs.diff_ids.len(), manifest.layers.len());
    if ids == layers {
        return Ok(());
    }
    Err(bad_input(format!(
        "{what}: its config lists {ids} diff ID{} (rootfs.diff_ids) but its manifest {layers} layer{}; \
         an image has one diff ID per layer",
        if ids == 1 { "" } else { "s" },
        if layers == 1 { "" } else { "s" },
    )))
}

/// Refuse the config `desc` of the image `what` when its descriptor says
/// more than [`layout::guard::MAX_DOCUMENT`]: bad input, decided before
/// anything is fetched.
pub fn check_config_size(desc: &Descriptor, what: &str) -> Result<()> {
    let cap = layout::guard::MAX_DOCUMENT;
    if desc.size > cap {
        return Err(bad_input(format!(
            "{what}: its config {} has {} bytes, more than the {cap} a config may have",
            desc.digest, desc.size
        )));
    }
    Ok(())
}

/// A manifest or index whose bytes (their digest matched) are not as many
/// as the descriptor it was fetched by says: the descriptor is wrong, as
/// for a layer or config of another size than its descriptor's.
#[derive(Debug, Clone, thiserror::Error)]
#[error("manifest {digest} has {actual} bytes, its descriptor says {expected}")]
pub struct SizeMismatch {
    pub digest: Digest,
    /// What the descriptor says.
    pub expected: u64,
    /// What was served.
    pub actual: u64,
}

/// Check the bytes of the manifest or index `desc` against its size.
pub fn check_size(desc: &Descriptor, bytes: &[u8]) -> Result<(), SizeMismatch> {
    let actual = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if actual == desc.size {
        return Ok(());
    }
    Err(SizeMismatch {
        digest: desc.digest.clone(),
        expected: desc.size,
        actual,
    })
}

/// The bytes of the config `desc` of the image `what` that `src` serves:
/// bad input over [`layout::guard::MAX_DOCUMENT`], before it is fetched.
pub async fn read_config(src: &dyn ImageSource, desc: &Descriptor, what: &str) -> Result<Vec<u8>> {
    check_config_size(desc, what)?;
    let path = src.blob(desc).await.with_context(|| what.to_string())?;
    layout::guard::read_document_at(&path, desc)
}

#[cfg(test)]
mod tests;

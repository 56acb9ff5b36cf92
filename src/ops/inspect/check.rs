//! `inspect --check`: every blob of an image, each distinct one once,
//! level by level down the manifest graph; in a layout read to its end
//! ([`check`]), in a registry asked for with HEAD ([`check_registry`]).

use std::collections::HashSet;
use std::future::Future;

use futures_util::stream::{self, StreamExt as _};
use serde::Serialize;

use anyhow::Result;

use super::Inspection;
use crate::image::layout::{guard, Layout};
use crate::image::remote::RegistryImage;
use crate::image::{Budget, ImageSource, SizeMismatch};
use crate::oci::{self, Descriptor, Digest, Index, Manifest};
use crate::registry::{ErrorKind, Held, RegistryError};

/// What `inspect --check` found for one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlobStatus {
    /// Present, of its size, with its digest (and, for a manifest or
    /// index, a document that parses).
    Ok,
    Missing,
    /// Shorter than its descriptor says.
    Truncated,
    /// Longer than its descriptor says.
    Oversized,
    /// Its bytes do not match its digest.
    Corrupt,
    /// A symbolic link, FIFO, device, directory or socket, or unreadable.
    NotRegular,
    /// A manifest or index that does not parse.
    Invalid,
    /// A non-distributable layer that is absent, as such layers may be.
    Foreign,
    /// A registry that could not say (it answered an error, or nothing).
    Unknown,
}

impl BlobStatus {
    /// The name in `--json` and in the text report.
    pub fn name(self) -> &'static str {
        match self {
            BlobStatus::Ok => "ok",
            BlobStatus::Missing => "missing",
            BlobStatus::Truncated => "truncated",
            BlobStatus::Oversized => "oversized",
            BlobStatus::Corrupt => "corrupt",
            BlobStatus::NotRegular => "not-regular",
            BlobStatus::Invalid => "invalid",
            BlobStatus::Foreign => "foreign",
            BlobStatus::Unknown => "unknown",
        }
    }

    pub fn failed(self) -> bool {
        !matches!(self, BlobStatus::Ok | BlobStatus::Foreign)
    }
}

/// One blob of `inspect --check`.
#[derive(Debug, Clone, Serialize)]
pub struct BlobCheck {
    pub digest: Digest,
    pub size: u64,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub status: BlobStatus,
    /// Why, when the status is not `ok`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Every blob reachable from an image of a layout, checked.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// True when no blob failed.
    pub ok: bool,
    /// Manifests and indexes (parents before children), configs and layers,
    /// each once.
    pub blobs: Vec<BlobCheck>,
}

impl Check {
    pub fn failed(&self) -> usize {
        self.blobs.iter().filter(|b| b.status.failed()).count()
    }

    /// Hold the inspected images to what consumers need of them beyond
    /// their blobs: a config whose diff IDs do not count one per layer of
    /// its manifest (which `podman pull` and `docker load` refuse) is
    /// `invalid`, with why.
    pub fn judge(&mut self, inspection: &Inspection) {
        for img in &inspection.images {
            let Err(e) = crate::image::check_diff_ids(
                &format!("image {}", img.manifest_digest),
                &img.manifest,
                &img.config,
            ) else {
                continue;
            };
            let config = &img.manifest.config.digest;
            for b in self.blobs.iter_mut().filter(|b| &b.digest == config) {
                if b.status == BlobStatus::Ok {
                    b.status = BlobStatus::Invalid;
                    b.detail = Some(format!("{e:#}"));
                }
            }
        }
        self.ok = !self.blobs.iter().any(|b| b.status.failed());
    }
}

/// Check every blob of image `name` (or the only image) of `layout`:
/// present, a regular file of its descriptor's size, with its digest (read
/// to the end, streaming). Manifests and indexes that check out are parsed
/// and their children checked in turn; a blob that fails is reported, never
/// an error (errors are for a layout that cannot be opened or an unknown
/// name).
pub async fn check(layout: &Layout, name: Option<&str>) -> Result<Check> {
    let root = layout.resolve(name)?;
    let probe = |d: &Descriptor, document: bool| {
        let (status, detail) = check_blob(layout, d);
        let probed = if !document || status != BlobStatus::Ok {
            Probed {
                status,
                detail,
                document: None,
            }
        } else {
            match layout.read_blob(d) {
                Ok(bytes) => Probed::document(bytes),
                Err(e) => Probed {
                    status: BlobStatus::Invalid,
                    detail: Some(format!("{e:#}")),
                    document: None,
                },
            }
        };
        std::future::ready(probed)
    };
    Ok(walk(root, 1, probe).await)
}

/// Check every blob of the image `img` in its registry, without
/// downloading a layer: manifests and indexes are fetched (checked against
/// their digests by the client) and parsed, their children checked in
/// turn; configs and layers are asked for with HEAD, present and of their
/// descriptors' size, several at a time (the report in the same order). A
/// registry that answers an error or nothing gives
/// [`BlobStatus::Unknown`] for that blob, with why.
pub async fn check_registry(img: &RegistryImage) -> Check {
    let probe = |d: &Descriptor, document: bool| {
        let d = d.clone();
        async move {
            if document {
                return match img.manifest(&d).await {
                    Ok(bytes) => Probed::document(bytes.to_vec()),
                    Err(e) => Probed::failed(&e),
                };
            }
            match img.head_blob(&d.digest).await {
                Ok(Some(Held { size: Some(n) })) if n != d.size => Probed {
                    status: if n < d.size {
                        BlobStatus::Truncated
                    } else {
                        BlobStatus::Oversized
                    },
                    detail: Some(format!(
                        "the registry holds {n} bytes, the descriptor says {}",
                        d.size
                    )),
                    document: None,
                },
                Ok(Some(_)) => Probed::ok(),
                Ok(None) => Probed {
                    status: BlobStatus::Missing,
                    detail: None,
                    document: None,
                },
                Err(e) => Probed::failed(&e.into()),
            }
        }
    };
    // As the other registry reports do: twice the client's per-registry
    // limit queued, which the client caps in flight.
    let jobs = img.client().options().jobs_per_registry.max(1) * 2;
    walk(img.root().clone(), jobs, probe).await
}

/// What a check learnt of one blob: its status and why, and for a manifest
/// or index that checked out, its bytes.
struct Probed {
    status: BlobStatus,
    detail: Option<String>,
    document: Option<Vec<u8>>,
}

impl Probed {
    fn ok() -> Probed {
        Probed {
            status: BlobStatus::Ok,
            detail: None,
            document: None,
        }
    }

    fn document(bytes: Vec<u8>) -> Probed {
        Probed {
            document: Some(bytes),
            ..Probed::ok()
        }
    }

    /// A registry's error: missing for a 404, corrupt for content that does
    /// not match its digest, truncated or oversized for a manifest of
    /// another size than its descriptor's, unknown for the rest.
    fn failed(e: &anyhow::Error) -> Probed {
        if let Some(m) = e.downcast_ref::<SizeMismatch>() {
            return Probed {
                status: if m.actual < m.expected {
                    BlobStatus::Truncated
                } else {
                    BlobStatus::Oversized
                },
                detail: Some(format!("{e:#}")),
                document: None,
            };
        }
        let status = match e.downcast_ref::<RegistryError>().map(|r| &r.kind) {
            Some(ErrorKind::Status { status: 404, .. }) => BlobStatus::Missing,
            Some(ErrorKind::DigestMismatch { .. }) => BlobStatus::Corrupt,
            _ => BlobStatus::Unknown,
        };
        Probed {
            status,
            detail: Some(format!("{e:#}")),
            document: None,
        }
    }
}

/// Every blob reachable from `root`, each once, parents before children,
/// as `probe` finds it (told whether the blob is a manifest or index):
/// level by level (the root, its children, theirs...), each level's blobs
/// in the order their parents list them, a blob reported where it is first
/// reached. Up to `jobs` probes of a level run at once; the report's order
/// does not depend on which answers first. A manifest or index past the
/// walk's [`Budget`] is `invalid`, not probed.
async fn walk<'a, F, Fut>(root: Descriptor, jobs: usize, probe: F) -> Check
where
    F: Fn(&Descriptor, bool) -> Fut,
    Fut: Future<Output = Probed> + 'a,
{
    let mut blobs: Vec<BlobCheck> = Vec::new();
    let mut seen: HashSet<Digest> = HashSet::new();
    let mut budget = Budget::default();
    let mut level = vec![root];
    let mut depth = 0usize;
    while !level.is_empty() {
        level.retain(|d| seen.insert(d.digest.clone()));
        let is_document = |d: &Descriptor| {
            oci::is_index_media_type(&d.media_type) || oci::is_manifest_media_type(&d.media_type)
        };
        let refused: Vec<Option<String>> = (level.iter())
            .map(|d| is_document(d).then(|| budget.admit(d, d.digest.as_str()).err())?)
            .map(|e| e.map(|e| e.to_string()))
            .collect();
        let probed: Vec<Probed> = stream::iter(level.iter().zip(refused))
            .map(|(d, refused)| {
                let probing = refused.is_none().then(|| probe(d, is_document(d)));
                async move {
                    match probing {
                        Some(p) => p.await,
                        None => Probed {
                            status: BlobStatus::Invalid,
                            detail: refused,
                            document: None,
                        },
                    }
                }
            })
            .buffered(jobs.max(1))
            .collect()
            .await;
        let mut next = Vec::new();
        for (d, p) in level.into_iter().zip(probed) {
            let Probed {
                mut status,
                mut detail,
                document,
            } = p;
            if status == BlobStatus::Missing && oci::is_non_distributable(&d.media_type) {
                status = BlobStatus::Foreign;
            }
            if let Some(bytes) = document.filter(|_| status == BlobStatus::Ok) {
                match children(&bytes, &d, depth) {
                    Ok(c) => next.extend(c),
                    Err(e) => {
                        status = BlobStatus::Invalid;
                        detail = Some(format!("{e:#}"));
                    }
                }
            }
            blobs.push(BlobCheck {
                digest: d.digest,
                size: d.size,
                media_type: d.media_type,
                status,
                detail,
            });
        }
        level = next;
        depth += 1;
    }
    Check {
        ok: !blobs.iter().any(|b| b.status.failed()),
        blobs,
    }
}

/// The blobs a manifest or index (already checked) names.
fn children(bytes: &[u8], d: &Descriptor, depth: usize) -> Result<Vec<Descriptor>> {
    let v: serde_json::Value = serde_json::from_slice(bytes)?;
    if v.get("manifests").is_some() || oci::is_index_media_type(&d.media_type) {
        if depth >= crate::image::MAX_DEPTH {
            anyhow::bail!("indexes nested too deep");
        }
        let index: Index = serde_json::from_value(v)?;
        return Ok(index.manifests);
    }
    let m: Manifest = serde_json::from_value(v)?;
    Ok(std::iter::once(m.config).chain(m.layers).collect())
}

fn check_blob(layout: &Layout, d: &Descriptor) -> (BlobStatus, Option<String>) {
    let path = layout.blob_path(&d.digest);
    if std::fs::symlink_metadata(&path).is_err() {
        return (BlobStatus::Missing, None);
    }
    let f = match guard::open(layout.root(), &guard::blob_components(&d.digest)) {
        Ok(f) => f,
        Err(e) => return (BlobStatus::NotRegular, Some(format!("{e:#}"))),
    };
    let len = f.meta.len();
    if len != d.size {
        let status = if len < d.size {
            BlobStatus::Truncated
        } else {
            BlobStatus::Oversized
        };
        return (
            status,
            Some(format!("{len} bytes, the descriptor says {}", d.size)),
        );
    }
    match guard::hash(&f.file) {
        Ok((digest, n)) if n == d.size && digest == d.digest => (BlobStatus::Ok, None),
        Ok((digest, n)) if n == d.size => (
            BlobStatus::Corrupt,
            Some(format!("its bytes hash to {digest}")),
        ),
        Ok((_, n)) => (
            BlobStatus::Truncated,
            Some(format!("{n} bytes read, the descriptor says {}", d.size)),
        ),
        Err(e) => (
            BlobStatus::NotRegular,
            Some(format!("reading {}: {e}", path.display())),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{walk as graph_walk, MemoryImage, MAX_DEPTH};
    use crate::ops::inspect::inspect;
    use anyhow::Context as _;
    use bytes::Bytes;
    use futures_util::FutureExt as _;

    /// A root index with `levels` indexes nested in a chain below it, the
    /// innermost empty.
    fn chain(levels: usize) -> MemoryImage {
        let mut docs = Vec::new();
        let mut children = Vec::new();
        for _ in 0..=levels {
            let bytes = Bytes::from(oci::canonical_json(&Index::new(children)));
            children = vec![Descriptor::of_bytes(oci::MEDIA_TYPE_INDEX, &bytes)];
            docs.push(bytes);
        }
        let mut img = MemoryImage::new(children.remove(0));
        for b in docs {
            img.add_manifest(b);
        }
        img
    }

    /// Figures: the blobs of a level are probed up to `jobs` at a time, yet
    /// reported in the order the manifest lists them, a layer it lists
    /// twice probed and reported once.
    #[tokio::test]
    async fn a_level_is_probed_several_at_a_time_and_reported_in_order() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        use std::sync::Mutex;
        let mut layers: Vec<Descriptor> = (0..10u8)
            .map(|n| Descriptor::of_bytes(oci::MEDIA_TYPE_LAYER_GZIP, &[n]))
            .collect();
        layers.push(layers[0].clone());
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(oci::MEDIA_TYPE_MANIFEST.into()),
            artifact_type: None,
            config: Descriptor::of_bytes(oci::MEDIA_TYPE_CONFIG, b"cfg"),
            layers: layers.clone(),
            subject: None,
            annotations: Default::default(),
        };
        let bytes = oci::canonical_json(&manifest);
        let root = Descriptor::of_bytes(oci::MEDIA_TYPE_MANIFEST, &bytes);
        let (now, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let probed = Mutex::new(Vec::new());
        let probe = |d: &Descriptor, document: bool| {
            probed.lock().unwrap().push(d.digest.clone());
            let doc = document.then(|| bytes.clone());
            let (now, most) = (&now, &most);
            async move {
                most.fetch_max(now.fetch_add(1, SeqCst) + 1, SeqCst);
                tokio::task::yield_now().await;
                now.fetch_sub(1, SeqCst);
                doc.map_or_else(Probed::ok, Probed::document)
            }
        };
        let check = walk(root.clone(), 4, probe).await;
        assert!(check.ok);
        assert_eq!(most.load(SeqCst), 4);
        let want: Vec<Digest> = [root, manifest.config]
            .into_iter()
            .chain(layers[..10].iter().cloned())
            .map(|d| d.digest)
            .collect();
        let got: Vec<Digest> = check.blobs.into_iter().map(|b| b.digest).collect();
        assert_eq!(got, want);
        assert_eq!(probed.into_inner().unwrap(), want);
    }

    /// A manifest of another size than its descriptor's is truncated or
    /// oversized, with the error as its detail, whatever context wraps it.
    #[test]
    fn a_manifest_size_mismatch_is_truncated_or_oversized() {
        let d = Descriptor::of_bytes(oci::MEDIA_TYPE_MANIFEST, b"{}");
        for (size, status) in [(1, BlobStatus::Oversized), (3, BlobStatus::Truncated)] {
            let e = crate::image::check_size(&Descriptor { size, ..d.clone() }, b"{}")
                .map_err(anyhow::Error::new)
                .context("fetching manifest")
                .unwrap_err();
            let p = Probed::failed(&e);
            assert_eq!(p.status, status);
            assert!(p.detail.is_some_and(|t| t.contains("2 bytes")));
        }
    }

    #[test]
    fn nested_indexes_are_walked_as_deep_as_the_graph_walker_goes() {
        let run = |img: &MemoryImage| inspect(img, None).now_or_never().expect("ready");
        let walked = |img: &MemoryImage| graph_walk(img).now_or_never().expect("ready");
        let deepest = chain(MAX_DEPTH);
        assert!(run(&deepest).unwrap().images.is_empty());
        assert!(walked(&deepest).is_ok());
        let deeper = chain(MAX_DEPTH + 1);
        let e = run(&deeper).unwrap_err();
        assert!(crate::error::is_bad_input(&e), "{e:#}");
        assert!(walked(&deeper).is_err());
    }
}

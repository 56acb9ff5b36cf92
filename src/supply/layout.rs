//! Evidence kept in an OCI layout, for a build that is not pushed yet
//! (`build --sbom --provenance -o DIR`): each artifact's blobs go into the
//! layout and its manifest is listed in `index.json` beside the image, as
//! OCI 1.1 layouts hold referrers (a descriptor with an `artifactType` and
//! no ref name; the manifest's `subject` is the image). `push` of that
//! layout reads them back ([`referrers_of`]) and attaches them where the
//! image went ([`push_layout`]); `sbom DIR` reads the SBOM from there.

use std::collections::HashSet;
use std::io::{Read as _, Write as _};
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context as _, Result};
use bytes::Bytes;

use super::artifact::{empty_config, Artifact, EMPTY_CONFIG};
use super::attach::{attach, AttachOptions, AttachReport};
use super::evidence::{log_report, pushed_repositories};
use super::referrers::{classify, MAX_PAYLOAD, MAX_PAYLOAD_BYTES, MAX_REFERRERS};
use crate::error::bad_input;
use crate::image::layout::{blob_path, guard, is_referrer, Layout, LayoutImage};
use crate::image::ImageSource as _;
use crate::oci::{canonical_json, Descriptor, Digest, Manifest};
use crate::progress::SharedReporter;
use crate::push::{push_read, read_layout, PushOptions, PushReport, PushTarget};
use crate::registry::Client;

/// Write `bytes` as the file `path`, through a temporary file in its
/// directory and a rename: a reader never sees half of it.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| anyhow!("{}: no parent directory", path.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("writing into {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| anyhow!("writing {}: {}", path.display(), e.error))?;
    Ok(())
}

/// Store `artifacts` in the layout at `dir`: their blobs first, then
/// `index.json` (rewritten whole, by rename) listing them after what it
/// listed before. An artifact listed already is not listed twice.
pub fn store(dir: &Path, artifacts: &[Artifact]) -> Result<()> {
    let layout = Layout::open(dir)?;
    let mut index = layout.index().clone();
    for a in artifacts {
        for (d, bytes) in [
            (&empty_config(), EMPTY_CONFIG),
            (&a.layer, &a.payload[..]),
            (&a.descriptor, &a.manifest[..]),
        ] {
            write_atomic(&blob_path(dir, &d.digest), bytes)?;
        }
        if !index.manifests.iter().any(|m| m.digest == *a.digest()) {
            index.manifests.push(a.descriptor.clone());
        }
    }
    write_atomic(&dir.join("index.json"), &canonical_json(&index))
}

/// Most bytes of payloads [`referrers_of`] holds for one image, all
/// together (a build's SBOM and provenance take a few MiB): as many as
/// are read of one image on a registry.
pub const MAX_LAYOUT_PAYLOADS: u64 = MAX_PAYLOAD_BYTES;

/// The artifacts in `layout` whose `subject` is `subject`, in the order of
/// `index.json`, each once however often it is listed. More than
/// [`MAX_REFERRERS`] of them, or payloads of more than
/// [`MAX_LAYOUT_PAYLOADS`] in all, is bad input, refused before the
/// payload that would pass the limit is read.
pub fn referrers_of(layout: &Layout, subject: &Digest) -> Result<Vec<Artifact>> {
    let mut out: Vec<Artifact> = Vec::new();
    let mut seen = HashSet::new();
    let mut held = 0u64;
    let entries = layout.index().manifests.iter().filter(|d| is_referrer(d));
    for entry in entries.filter(|d| seen.insert(&d.digest)) {
        let bytes = layout.read_blob(entry)?;
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
            bad_input(format!(
                "{}: the artifact {} is not an image manifest: {e}",
                layout.root().display(),
                entry.digest
            ))
        })?;
        if m.subject.as_ref().map(|s| &s.digest) != Some(subject) {
            continue;
        }
        let [layer] = &m.layers[..] else {
            return Err(bad_input(format!(
                "{}: the artifact {} has {} layers, not one",
                layout.root().display(),
                entry.digest,
                m.layers.len()
            )));
        };
        let artifact_type = entry
            .artifact_type
            .clone()
            .or_else(|| m.artifact_type.clone())
            .unwrap_or_default();
        if out.len() == MAX_REFERRERS {
            return Err(bad_input(format!(
                "{}: more than {MAX_REFERRERS} artifacts are about {subject}, more than \
                 boxwright reads of one image",
                layout.root().display()
            )));
        }
        held = held.saturating_add(layer.size);
        if held > MAX_LAYOUT_PAYLOADS {
            return Err(bad_input(format!(
                "{}: with artifact {}, the payloads of the artifacts about {subject} pass {} \
                 in all, more than boxwright reads of one image",
                layout.root().display(),
                entry.digest,
                crate::render::human_bytes(MAX_LAYOUT_PAYLOADS)
            )));
        }
        let (kind, _) = classify(&artifact_type, layer);
        out.push(Artifact {
            kind,
            descriptor: entry.clone(),
            manifest: Bytes::from(bytes),
            layer: layer.clone(),
            payload: Bytes::from(read_payload(layout, layer)?),
            only: None,
        });
    }
    Ok(out)
}

/// A payload blob of the layout, at most [`MAX_PAYLOAD`] bytes, checked
/// against its digest.
pub fn read_payload(layout: &Layout, layer: &Descriptor) -> Result<Vec<u8>> {
    let root = layout.root();
    if layer.size > MAX_PAYLOAD {
        return Err(bad_input(format!(
            "{}: payload {} is {} bytes, more than boxwright reads",
            root.display(),
            layer.digest,
            layer.size
        )));
    }
    let f = guard::open_blob(root, layer)?;
    let mut bytes = Vec::new();
    (&f.file)
        .take(layer.size)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", f.path.display()))?;
    if Digest::of(&bytes) != layer.digest {
        return Err(bad_input(format!(
            "{}: blob {} does not match its digest",
            root.display(),
            layer.digest
        )));
    }
    Ok(bytes)
}

/// What [`push_layout`] did.
pub struct LayoutPush {
    pub report: PushReport,
    /// The client that pushed (its credentials and tokens, for `--verify`).
    pub client: Arc<Client>,
    /// The artifacts of the layout about the image, attached where the
    /// image went; `None` when it holds none.
    pub supply: Option<AttachReport>,
}

/// Push the image of the layout `image` (`DIR` or `DIR:NAME`) to `targets`,
/// then the artifacts the layout holds about it (SBOM, provenance) to every
/// repository that took the image. The image and the artifacts are read
/// and checked before anything is sent: a layout refused for either is an
/// error with nothing written on any registry.
pub async fn push_layout(
    image: &str,
    targets: Vec<PushTarget>,
    opts: PushOptions,
    reporter: SharedReporter,
) -> Result<LayoutPush> {
    let (img, graph) = read_layout(image).await?;
    let artifacts = referrers_of(img.layout(), &img.root().digest)
        .with_context(|| format!("reading the artifacts of {image}"))?;
    let (report, pusher) = push_read(&img, &graph, targets, opts, reporter.clone()).await?;
    let repos = pushed_repositories(&report);
    let supply = if artifacts.is_empty() || repos.is_empty() {
        None
    } else {
        let subject = img.root().clone();
        let subject = Descriptor::new(&subject.media_type, subject.digest, subject.size);
        let done = attach(
            &pusher,
            &repos,
            &subject,
            &artifacts,
            &AttachOptions::default(),
        )
        .await?;
        log_report(&done, &reporter);
        Some(done)
    };
    Ok(LayoutPush {
        report,
        client: pusher.client().clone(),
        supply,
    })
}

/// The layout image at `DIR[:NAME]` and its artifacts.
pub fn open_with_referrers(image: &str) -> Result<(LayoutImage, Vec<Artifact>)> {
    let img = LayoutImage::open_ref(image)?;
    let artifacts = referrers_of(img.layout(), &img.root().digest)?;
    Ok((img, artifacts))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::image::layout::LayoutWriter;
    use crate::oci::{self, MEDIA_TYPE_MANIFEST};
    use crate::supply::artifact::{test_sbom, Kind};

    #[test]
    fn stored_artifacts_are_found_by_subject_and_never_taken_for_the_image() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("layout");
        let w = LayoutWriter::create(&out).unwrap();
        let mut image = w.write_blob(MEDIA_TYPE_MANIFEST, b"{}").unwrap();
        image
            .annotations
            .insert(oci::ANNOTATION_REF_NAME.into(), "latest".into());
        let out = w.commit(vec![image.clone()]).unwrap();
        let a = test_sbom(&image, BTreeMap::new());
        store(&out, std::slice::from_ref(&a)).unwrap();
        store(&out, std::slice::from_ref(&a)).unwrap();
        let layout = Layout::open(&out).unwrap();
        assert_eq!(layout.index().manifests.len(), 2, "listed once");
        assert_eq!(layout.resolve(None).unwrap().digest, image.digest);
        let found = referrers_of(&layout, &image.digest).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].kind, Kind::Sbom);
        assert_eq!(found[0].payload, a.payload);
        assert_eq!(found[0].manifest, a.manifest);
        assert!(referrers_of(&layout, &Digest::of(b"other"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn an_artifact_listed_again_is_read_once_and_too_many_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let w = LayoutWriter::create(&dir.path().join("layout")).unwrap();
        let image = w.write_blob(MEDIA_TYPE_MANIFEST, b"{}").unwrap();
        let out = w.commit(vec![image.clone()]).unwrap();
        store(&out, &[test_sbom(&image, BTreeMap::new())]).unwrap();
        // A hostile index.json lists it a thousand times: each would hold
        // its payload (up to 64 MiB) in memory.
        let mut index = Layout::open(&out).unwrap().index().clone();
        let again = index.manifests[1].clone();
        index.manifests.extend(std::iter::repeat_n(again, 1000));
        std::fs::write(out.join("index.json"), canonical_json(&index)).unwrap();
        let found = referrers_of(&Layout::open(&out).unwrap(), &image.digest).unwrap();
        assert_eq!(found.len(), 1);

        // More distinct artifacts about the image than are read: refused.
        let many: Vec<Artifact> = (1..=MAX_REFERRERS)
            .map(|n| test_sbom(&image, BTreeMap::from([("n".into(), n.to_string())])))
            .collect();
        store(&out, &many).unwrap();
        let e = referrers_of(&Layout::open(&out).unwrap(), &image.digest).unwrap_err();
        assert!(crate::error::is_bad_input(&e), "{e:#}");
        assert!(
            format!("{e:#}").contains("more than 256 artifacts"),
            "{e:#}"
        );
    }
}

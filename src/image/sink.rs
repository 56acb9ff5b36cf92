//! Where an image goes on this machine: an OCI layout, an `oci-archive` or
//! a `docker-archive`, written from any [`ImageSource`] (a layout, a
//! registry image, a build). Each sink walks the source, asks it for every
//! blob (a few at a time), then writes on a blocking thread: a layout
//! through [`LayoutWriter`] (temporary directory renamed into place), an
//! archive through a temporary file renamed into place. Nothing is left
//! under the output's name when a write fails.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _, Result};
use futures_util::stream::{self, StreamExt as _, TryStreamExt as _};
use serde::Serialize;

use crate::error::bad_input;
use crate::image::archive::{append_tree, docker_archive, sibling_tempdir, write_tar_atomically};
use crate::image::layout::LayoutWriter;
use crate::image::{walk, Graph, ImageSource};
use crate::oci::{self, Descriptor, Digest, ImageConfig, Manifest};

/// How many blobs a sink asks its source for at a time.
pub const BLOB_JOBS: usize = 4;

/// What an image is written as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// An OCI image layout directory.
    Oci,
    /// A tar of the OCI layout.
    OciArchive,
    /// `docker save` format: `manifest.json`, config, uncompressed layer tars.
    DockerArchive,
}

/// Where and how to write an image: the output path and what the format
/// takes beside the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sink {
    /// An OCI layout at `dir`, the root named `name` in `index.json`.
    Layout { dir: PathBuf, name: Option<String> },
    /// A tar of such a layout at `file`.
    OciArchive { file: PathBuf, name: Option<String> },
    /// A `docker load` archive at `file`, its `RepoTags` holding
    /// `repo_tags` (`NAME:TAG` each). The source's root must be an image
    /// manifest.
    DockerArchive {
        file: PathBuf,
        repo_tags: Vec<String>,
    },
}

impl Sink {
    /// The sink for `format` at `path`: `name` is the layout's ref name
    /// (`oci`, `oci-archive`); `repo_tags` the docker-archive's `RepoTags`.
    pub fn new(format: Format, path: &Path, name: Option<String>, repo_tags: Vec<String>) -> Sink {
        let path = path.to_path_buf();
        match format {
            Format::Oci => Sink::Layout { dir: path, name },
            Format::OciArchive => Sink::OciArchive { file: path, name },
            Format::DockerArchive => Sink::DockerArchive {
                file: path,
                repo_tags,
            },
        }
    }

    /// The output path.
    pub fn path(&self) -> &Path {
        match self {
            Sink::Layout { dir, .. } => dir,
            Sink::OciArchive { file, .. } | Sink::DockerArchive { file, .. } => file,
        }
    }

    /// Refuse (bad input), before anything is fetched or written, an
    /// output this sink could not write: a layout over a file or a
    /// directory that is not a layout, an archive over a directory, or
    /// either under a file.
    pub fn check(&self) -> Result<()> {
        match self {
            Sink::Layout { dir, .. } => LayoutWriter::check_output(dir),
            Sink::OciArchive { file, .. } | Sink::DockerArchive { file, .. } => {
                if file.is_dir() {
                    return Err(bad_input(format!(
                        "{} is a directory; an archive is a file (-o FILE.tar)",
                        file.display()
                    )));
                }
                crate::image::output::check_parent(file)
            }
        }
    }

    /// Write `src` here.
    pub async fn write(&self, src: &dyn ImageSource) -> Result<()> {
        match self {
            Sink::Layout { dir, name } => write_layout(src, dir, name.clone()).await.map(|_| ()),
            Sink::OciArchive { file, name } => write_oci_archive(src, file, name.clone()).await,
            Sink::DockerArchive { file, repo_tags } => {
                write_docker_archive(src, file, repo_tags).await
            }
        }
    }
}

/// Write `src` as a new OCI layout at `dir`: manifests byte for byte, every
/// blob the walk finds, the root in `index.json` named `name`. Returns the
/// layout's path as the writer gives it.
pub async fn write_layout(
    src: &dyn ImageSource,
    dir: &Path,
    name: Option<String>,
) -> Result<PathBuf> {
    let graph = walk(src).await?;
    let files = blob_files(src, &graph.blobs).await?;
    let dir = dir.to_path_buf();
    blocking(move || write_graph(&dir, &graph, &files, name)).await
}

/// Write `src` as an `oci-archive` at `file`: the layout [`write_layout`]
/// writes, assembled next to `file`, then archived.
pub async fn write_oci_archive(
    src: &dyn ImageSource,
    file: &Path,
    name: Option<String>,
) -> Result<()> {
    let graph = walk(src).await?;
    let files = blob_files(src, &graph.blobs).await?;
    let file = file.to_path_buf();
    blocking(move || {
        let tmp = sibling_tempdir(&file)?;
        let dir = tmp.path().join("layout");
        write_graph(&dir, &graph, &files, name)?;
        pack_layout_now(&dir, &file)
    })
    .await
}

/// Archive the OCI layout at `dir` as it is (every file of it, sorted,
/// with fixed owners, modes and times) into an `oci-archive` at `file`.
pub async fn archive_layout(dir: &Path, file: &Path) -> Result<()> {
    let (dir, file) = (dir.to_path_buf(), file.to_path_buf());
    blocking(move || pack_layout_now(&dir, &file)).await
}

fn pack_layout_now(dir: &Path, file: &Path) -> Result<()> {
    write_tar_atomically(file, |b| append_tree(b, dir, Path::new("")))
}

/// Write `src`, whose root is one platform's image manifest, as a
/// `docker-archive` at `file`: `manifest.json` (Config, RepoTags with
/// `repo_tags`, Layers), the config under its digest, and each layer
/// decompressed into it as `<diffID hex>.tar`, checked against its diff ID
/// and bounded by [`unpacked_layer_max`](crate::image::archive::unpacked_layer_max).
pub async fn write_docker_archive(
    src: &dyn ImageSource,
    file: &Path,
    repo_tags: &[String],
) -> Result<()> {
    let root = src.root().clone();
    if oci::is_index_media_type(&root.media_type) {
        return Err(bad_input(format!(
            "{}: a docker-archive holds one platform's image, and this is an index",
            src.locate(&root)
        )));
    }
    let bytes = src.manifest(&root).await?;
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| bad_input(format!("{}: not an image manifest: {e}", src.locate(&root))))?;
    let config_bytes = super::read_config(src, &manifest.config, &src.locate(&root)).await?;
    let config: ImageConfig = serde_json::from_slice(&config_bytes)
        .with_context(|| format!("parsing config {}", manifest.config.digest))?;
    crate::image::check_diff_ids(&src.locate(&root), &manifest, &config)?;
    let limit = crate::image::archive::unpacked_layer_max()?;
    let layers = blob_files(src, &manifest.layers).await?;
    let (file, repo_tags) = (file.to_path_buf(), repo_tags.to_vec());
    blocking(move || {
        let layers: Vec<PathBuf> = manifest
            .layers
            .iter()
            .map(|l| layers[&l.digest].clone())
            .collect();
        docker_archive(
            &file,
            &manifest,
            &config,
            &config_bytes,
            &layers,
            &repo_tags,
            limit,
        )
    })
    .await
}

/// The file of each blob of `descs`, [`BLOB_JOBS`] asked at a time.
async fn blob_files(
    src: &dyn ImageSource,
    descs: &[Descriptor],
) -> Result<HashMap<Digest, PathBuf>> {
    stream::iter(descs)
        .map(|d| async move { Ok::<_, anyhow::Error>((d.digest.clone(), src.blob(d).await?)) })
        .buffered(BLOB_JOBS)
        .try_collect()
        .await
}

/// Run the writing part of a sink off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .context("the writing task failed")?
}

/// `graph` as a new layout at `dir`, its blobs imported from `files`.
fn write_graph(
    dir: &Path,
    graph: &Graph,
    files: &HashMap<Digest, PathBuf>,
    name: Option<String>,
) -> Result<PathBuf> {
    let writer = LayoutWriter::create(dir)?;
    for d in &graph.blobs {
        let file = files
            .get(&d.digest)
            .ok_or_else(|| anyhow!("blob {} was not fetched", d.digest))?;
        writer.import_descriptor(file, d)?;
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

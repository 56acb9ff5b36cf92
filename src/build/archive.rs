//! A build written as an `oci-archive` or `docker-archive`: an image file
//! that `podman load`, `docker load` or `skopeo ... oci-archive:` take at
//! once. The build writes its layout as always, into a temporary directory
//! next to the archive; the sinks `pull` uses then make the file (through
//! a temp file renamed into place), so a failed or killed build leaves no
//! half-written archive under its name, and the digest is the layout
//! build's.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::build::BuildResult;
use crate::error::bad_input;
use crate::image::archive::sibling_tempdir;
use crate::image::layout::LayoutImage;
use crate::image::sink::{archive_layout, write_docker_archive, Format};
use crate::recipe::Plan;
use crate::registry::Reference;

/// An archive to write once the build is done.
pub struct BuildArchive {
    format: Format,
    dest: PathBuf,
    /// Holds the layout (`layout/`).
    work: tempfile::TempDir,
    /// `NAME:TAG` for docker-archive's `RepoTags`: the image name with each
    /// of the recipe's tags, as `docker save` lists an image's tags.
    repo_tags: Vec<String>,
}

impl BuildArchive {
    /// `None` for a layout; otherwise the archive at `dest`, checked before
    /// anything is built (docker-archive takes one platform).
    pub fn prepare(format: Format, dest: &Path, plan: &Plan) -> Result<Option<BuildArchive>> {
        if format == Format::Oci {
            return Ok(None);
        }
        if format == Format::DockerArchive && plan.platforms.len() != 1 {
            let all: Vec<String> = plan
                .platforms
                .iter()
                .map(|p| p.platform.to_string())
                .collect();
            return Err(bad_input(format!(
                "--format docker-archive holds one platform, and {} builds {}: pick one with --platform {}",
                plan.recipe.display(),
                all.join(", "),
                all[0]
            )));
        }
        if dest.is_dir() {
            return Err(bad_input(format!(
                "{} is a directory; an archive is a file (-o FILE.tar)",
                dest.display()
            )));
        }
        let repo_tags: Vec<String> = (plan.tags.iter())
            .map(|t| format!("{}:{t}", plan.name))
            .collect();
        if format == Format::DockerArchive {
            // `docker load` and `podman load` parse each as a reference (the
            // name a repository on the default registry) and refuse the
            // whole archive for one they cannot.
            for tag in &repo_tags {
                Reference::parse(&format!("localhost/{tag}")).map_err(|e| {
                    bad_input(format!(
                        "--format docker-archive lists the image as {tag:?} (its RepoTags), which docker load and podman load refuse as an image reference ({e:#}): give [image] name in {} lowercase letters and digits, separated by '.', '_' or '-'",
                        plan.recipe.display()
                    ))
                })?;
            }
        }
        Ok(Some(BuildArchive {
            format,
            dest: dest.to_path_buf(),
            work: sibling_tempdir(dest)?,
            repo_tags,
        }))
    }

    /// The archive's path: what errors and logs name.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Where the build writes its layout.
    pub fn layout(&self) -> PathBuf {
        self.work.path().join("layout")
    }

    /// Write the archive from the built layout; `result` then names it.
    /// An oci-archive holds the layout as the build left it (every tag,
    /// and the artifacts kept beside the image); a docker-archive the one
    /// platform's image.
    pub async fn write(self, result: &mut BuildResult) -> Result<()> {
        let layout = self.layout();
        match self.format {
            Format::Oci => {}
            Format::OciArchive => archive_layout(&layout, &self.dest).await?,
            Format::DockerArchive => {
                let image = result.images.first().context("the build wrote no image")?;
                let source = LayoutImage::open_root(&layout, image.manifest.clone())?;
                write_docker_archive(&source, &self.dest, &self.repo_tags).await?;
            }
        }
        result.layout = self.dest;
        // Removing the layout's files blocks.
        let work = self.work;
        let _ = tokio::task::spawn_blocking(move || drop(work)).await;
        Ok(())
    }
}

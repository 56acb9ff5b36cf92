//! `build --format oci-archive|docker-archive`: an image file that
//! `podman load`, `docker load` or `skopeo ... oci-archive:` take at once.
//! The build writes its layout as always, into a temporary directory next
//! to the archive; the archive writers `pull` uses then make the file
//! (through a temp file renamed into place), so a failed or killed build
//! leaves no half-written archive under its name, and the digest is the
//! layout build's.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::ValueEnum;

use boxwright::build::BuildResult;
use boxwright::cache::BlobCache;
use boxwright::error::bad_input;
use boxwright::image::archive::{
    append_tree, sibling_tempdir, write_docker_archive, write_tar_atomically,
};
use boxwright::image::remote::PlatformImage;
use boxwright::oci::{Digest, ImageConfig, Manifest};
use boxwright::recipe::Plan;

/// What `build` writes.
#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// An OCI image layout directory.
    Oci,
    /// A tar of the OCI layout (`skopeo ... oci-archive:FILE`, `podman load`).
    OciArchive,
    /// The `docker load` / `podman load` format: one platform, uncompressed layers.
    DockerArchive,
}

impl Format {
    /// As the flag takes it (`oci-archive`).
    pub fn name(self) -> String {
        self.to_possible_value()
            .map_or_else(String::new, |v| v.get_name().to_string())
    }
}

/// An archive to write once the build is done.
pub struct Archive {
    format: Format,
    dest: PathBuf,
    /// Holds the layout (`layout/`) and the uncompressed layers (`docker/`).
    work: tempfile::TempDir,
    /// `NAME:TAG` for docker-archive's `RepoTags`: the image name and the
    /// recipe's first tag.
    repo_tag: Option<String>,
}

impl Archive {
    /// `None` for a layout; otherwise the archive at `dest`, checked before
    /// anything is built (docker-archive takes one platform).
    pub fn prepare(format: Format, dest: &Path, plan: &Plan) -> Result<Option<Archive>> {
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
        Ok(Some(Archive {
            format,
            dest: dest.to_path_buf(),
            work: sibling_tempdir(dest)?,
            repo_tag: plan.tags.first().map(|t| format!("{}:{t}", plan.name)),
        }))
    }

    /// Where the build writes its layout.
    pub fn layout(&self) -> PathBuf {
        self.work.path().join("layout")
    }

    /// Write the archive from the built layout; `result` then names it.
    pub fn write(self, result: &mut BuildResult) -> Result<()> {
        let layout = self.layout();
        match self.format {
            Format::Oci => {}
            Format::OciArchive => {
                write_tar_atomically(&self.dest, |b| append_tree(b, &layout, Path::new("")))?
            }
            Format::DockerArchive => {
                let image = platform_image(&layout, result)?;
                let scratch = self.work.path().join("docker");
                std::fs::create_dir_all(&scratch)
                    .with_context(|| format!("creating {}", scratch.display()))?;
                // The layout's blobs are laid out as a blob cache's.
                let blobs = BlobCache::new(Some(layout.join("blobs")))?;
                write_docker_archive(&blobs, &self.dest, &scratch, &image, self.repo_tag)?;
            }
        }
        result.layout = self.dest;
        Ok(())
    }
}

/// The one image of a one-platform build, read back from its layout.
fn platform_image(layout: &Path, result: &BuildResult) -> Result<PlatformImage> {
    let image = result.images.first().context("the build wrote no image")?;
    let read = |d: &Digest| {
        let path = layout.join("blobs").join(d.algorithm()).join(d.hex());
        std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
    };
    let manifest_bytes = read(&image.manifest.digest)?;
    let manifest: Manifest =
        serde_json::from_slice(&manifest_bytes).context("parsing the built manifest")?;
    let config_bytes = read(&image.config.digest)?;
    let config: ImageConfig =
        serde_json::from_slice(&config_bytes).context("parsing the built config")?;
    Ok(PlatformImage {
        descriptor: image.manifest.clone(),
        manifest_bytes,
        manifest,
        config_bytes,
        config,
    })
}

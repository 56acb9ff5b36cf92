//! `build --format oci-archive|docker-archive`: the flag. The archive is
//! written by the library ([`boxwright::build::archive::BuildArchive`]),
//! with the sinks `pull` uses.

use clap::ValueEnum;

use boxwright::image::sink;

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

    /// The library's format.
    pub fn sink(self) -> sink::Format {
        match self {
            Format::Oci => sink::Format::Oci,
            Format::OciArchive => sink::Format::OciArchive,
            Format::DockerArchive => sink::Format::DockerArchive,
        }
    }
}

//! Per-registry quirks, as data.
//!
//! Registries implement the distribution API with their own limits; each
//! limit boxwright works around is a field of [`HostConfig`], looked up by
//! registry name ([`host_config`], or [`Client::host`]) instead of being
//! tested for by name where it matters:
//! - GHCR refuses a `PATCH` whose body is over 4 MiB (answering 416), so its
//!   chunks are at most 4 MiB;
//! - GHCR drops large monolithic uploads part-way (its front end limits a
//!   request's body and duration), so blobs over 512 MiB go there chunked;
//! - GHCR takes a GitHub Actions token (`GITHUB_TOKEN` for the user
//!   `GITHUB_ACTOR`) as credentials.

use super::blobs::UploadMode;
#[cfg(doc)]
use super::client::Client;

const MIB: u64 = 1024 * 1024;

/// What boxwright knows about one registry's limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostConfig {
    /// Largest `PATCH` body the registry takes; `None`: no known cap.
    pub patch_cap: Option<u64>,
    /// Blobs larger than this are uploaded chunked, in chunks of
    /// `patch_cap` (or the default chunk size), whatever the mode asked.
    pub chunked_above: Option<u64>,
    /// `GITHUB_TOKEN` with `GITHUB_ACTOR` are credentials for it.
    pub github_token: bool,
}

/// GitHub's container registry.
const GHCR: HostConfig = HostConfig {
    patch_cap: Some(4 * MIB),
    chunked_above: Some(512 * MIB),
    github_token: true,
};

/// The quirks of `registry` (a registry name as in a [`Reference`], which
/// is lowercase, with its port if any); a registry with none gets the
/// default.
///
/// [`Reference`]: super::Reference
pub fn host_config(registry: &str) -> HostConfig {
    if registry == "ghcr.io" {
        GHCR
    } else {
        HostConfig::default()
    }
}

impl HostConfig {
    /// The upload mode for a blob of `size` bytes when `mode` was asked:
    /// chunked (in [`HostConfig::chunk_size`] pieces) above
    /// `chunked_above` unless the caller chose chunks itself.
    pub fn upload_mode(&self, mode: UploadMode, size: u64) -> UploadMode {
        match (mode, self.chunked_above) {
            (UploadMode::Chunked(n), _) => UploadMode::Chunked(n),
            (_, Some(limit)) if size > limit => UploadMode::Chunked(self.chunk_size()),
            (m, _) => m,
        }
    }

    /// The chunk size when none was asked for: the registry's cap, else
    /// the default.
    pub fn chunk_size(&self) -> u64 {
        self.patch_cap.unwrap_or(super::blobs::DEFAULT_CHUNK_SIZE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ghcr_quirks_by_name() {
        let h = host_config("ghcr.io");
        assert_eq!(h.patch_cap, Some(4 * MIB));
        assert_eq!(h.chunked_above, Some(512 * MIB));
        assert!(h.github_token);
        for name in [
            "docker.io",
            "localhost:5000",
            "ghcr.io.example.com",
            "quay.io",
        ] {
            assert_eq!(host_config(name), HostConfig::default(), "{name}");
        }
    }

    #[test]
    fn large_blobs_go_chunked_where_asked() {
        let ghcr = host_config("ghcr.io");
        let big = 512 * MIB + 1;
        assert_eq!(
            ghcr.upload_mode(UploadMode::Monolithic, big),
            UploadMode::Chunked(4 * MIB)
        );
        assert_eq!(
            ghcr.upload_mode(UploadMode::Streamed, big),
            UploadMode::Chunked(4 * MIB)
        );
        assert_eq!(
            ghcr.upload_mode(UploadMode::Monolithic, 512 * MIB),
            UploadMode::Monolithic
        );
        assert_eq!(
            ghcr.upload_mode(UploadMode::Chunked(MIB), big),
            UploadMode::Chunked(MIB)
        );
        let plain = host_config("localhost:5000");
        assert_eq!(
            plain.upload_mode(UploadMode::Monolithic, big),
            UploadMode::Monolithic
        );
        assert_eq!(
            plain.chunk_size(),
            crate::registry::blobs::DEFAULT_CHUNK_SIZE
        );
    }
}

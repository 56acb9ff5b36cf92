//! [`Repo`]: one repository of one registry, so that callers name it once
//! instead of passing `(registry, repository)` to every operation. Its
//! methods are the [`Client`]'s blob, manifest and tag operations.

use std::path::Path;

use bytes::Bytes;
use reqwest::Url;

use super::blobs::{MountResult, UploadMode, UploadOutcome, UploadSession};
use super::client::Client;
use super::error::{ErrorContext, RegistryError};
use super::hosts::HostConfig;
use super::manifests::ManifestInfo;
use crate::oci::Digest;

/// A repository of a registry, reached through a [`Client`].
#[derive(Clone, Copy)]
pub struct Repo<'a> {
    client: &'a Client,
    registry: &'a str,
    repository: &'a str,
}

impl Client {
    /// The repository `repository` of `registry`.
    pub fn repo<'a>(&'a self, registry: &'a str, repository: &'a str) -> Repo<'a> {
        Repo {
            client: self,
            registry,
            repository,
        }
    }
}

impl<'a> Repo<'a> {
    pub fn client(&self) -> &'a Client {
        self.client
    }

    pub fn registry(&self) -> &'a str {
        self.registry
    }

    pub fn repository(&self) -> &'a str {
        self.repository
    }

    /// The registry's quirks.
    pub fn host(&self) -> HostConfig {
        self.client.host(self.registry)
    }

    pub async fn blob_exists(&self, digest: &Digest) -> Result<Option<u64>, RegistryError> {
        let (r, n) = (self.registry, self.repository);
        self.client.blob_exists(r, n, digest).await
    }

    pub async fn mount_blob(&self, digest: &Digest, source: &str) -> MountResult {
        let (r, n) = (self.registry, self.repository);
        self.client.mount_blob(r, n, digest, source).await
    }

    pub async fn start_upload(&self, digest: &Digest) -> Result<UploadSession, RegistryError> {
        let (r, n) = (self.registry, self.repository);
        self.client.start_upload(r, n, digest).await
    }

    pub async fn upload_blob(
        &self,
        digest: &Digest,
        size: u64,
        path: &Path,
        mode: UploadMode,
        session: Option<UploadSession>,
        progress: Option<String>,
    ) -> Result<UploadOutcome, RegistryError> {
        let (r, n) = (self.registry, self.repository);
        self.client
            .upload_blob(r, n, digest, size, path, mode, session, progress)
            .await
    }

    pub async fn upload_status(
        &self,
        location: &Url,
        c: &ErrorContext,
    ) -> Result<(u64, Url), RegistryError> {
        let (r, n) = (self.registry, self.repository);
        self.client.upload_status(r, n, location, c).await
    }

    pub async fn cancel_upload(&self, session: &UploadSession) {
        self.client.cancel_upload(session).await
    }

    pub async fn get_blob_to_file(
        &self,
        digest: &Digest,
        size: u64,
        dest: &Path,
    ) -> Result<u64, RegistryError> {
        let (r, n) = (self.registry, self.repository);
        self.client.get_blob_to_file(r, n, digest, size, dest).await
    }

    pub async fn read_blob(
        &self,
        digest: &Digest,
        size: u64,
        sink: impl FnMut(&[u8]) + Send,
    ) -> Result<u64, RegistryError> {
        let (r, n) = (self.registry, self.repository);
        self.client.read_blob(r, n, digest, size, sink).await
    }

    pub async fn delete_blob(&self, digest: &Digest) -> Result<bool, RegistryError> {
        let (r, n) = (self.registry, self.repository);
        self.client.delete_blob(r, n, digest).await
    }

    pub async fn head_manifest(
        &self,
        reference: &str,
    ) -> Result<Option<ManifestInfo>, RegistryError> {
        let (r, n) = (self.registry, self.repository);
        self.client.head_manifest(r, n, reference).await
    }

    pub async fn get_manifest(
        &self,
        reference: &str,
    ) -> Result<(ManifestInfo, Vec<u8>), RegistryError> {
        let (r, n) = (self.registry, self.repository);
        self.client.get_manifest(r, n, reference).await
    }

    pub async fn put_manifest(
        &self,
        reference: &str,
        bytes: Bytes,
        media_type: &str,
    ) -> Result<Digest, RegistryError> {
        let (r, n) = (self.registry, self.repository);
        self.client
            .put_manifest(r, n, reference, bytes, media_type)
            .await
    }

    pub async fn list_tags(&self) -> Result<Vec<String>, RegistryError> {
        self.client.list_tags(self.registry, self.repository).await
    }

    pub async fn list_tags_paged(
        &self,
        page_size: Option<u32>,
    ) -> Result<Vec<String>, RegistryError> {
        let (r, n) = (self.registry, self.repository);
        self.client.list_tags_paged(r, n, page_size).await
    }
}

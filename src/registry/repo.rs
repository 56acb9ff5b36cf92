//! [`Repo`]: one repository of one registry, reached through a [`Client`].
//!
//! Every operation of the distribution API on blobs, manifests and tags
//! names a repository, so they are methods of this handle (in
//! [`super::blobs`] and [`super::manifests`]) rather than of the client:
//! callers name the repository once (`client.repo_of(&reference)`) instead
//! of passing a registry and a repository string to every call, where the
//! two could be swapped or come from different references.
//!
//! A `Repo` is `Copy` (a client and two names), so its operations take it
//! by value and a handle made on the spot can be used in a future.

use std::fmt::Display;

use reqwest::Url;

use super::client::{Client, Request, Response};
use super::error::{ErrorContext, RegistryError};
use super::hosts::HostConfig;
use super::reference::Reference;
use super::transport::RetryBudget;

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

    /// The repository a reference names (its tag and digest aside).
    pub fn repo_of<'a>(&'a self, reference: &'a Reference) -> Repo<'a> {
        self.repo(&reference.registry, &reference.repository)
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

    /// Remember that this repository holds blob `digest` (see
    /// [`Client::known`]).
    pub fn learn(&self, digest: &crate::oci::Digest) {
        if let Some(k) = self.client.known() {
            k.learn(self.registry, self.repository, digest);
        }
    }

    /// Forget that this repository holds blob `digest`: it did not.
    pub fn forget(&self, digest: &crate::oci::Digest) {
        if let Some(k) = self.client.known() {
            k.forget(self.registry, self.repository, digest);
        }
    }

    /// The registry's quirks.
    pub fn host(&self) -> HostConfig {
        self.client.host(self.registry)
    }

    /// The context of an error of `operation` on `object` in this repository.
    pub(super) fn ctx(&self, operation: &str, object: impl Display) -> ErrorContext {
        ErrorContext {
            operation: operation.to_string(),
            registry: self.registry.to_string(),
            repository: Some(self.repository.to_string()),
            object: Some(object.to_string()),
        }
    }

    /// `<base>/v2/<repository>/<path>`.
    pub(super) fn url(&self, path: &str) -> Result<Url, RegistryError> {
        self.client
            .url(self.registry, &format!("{}/{path}", self.repository))
    }

    /// [`Client::send`] to this repository's registry.
    pub(super) async fn send(
        &self,
        req: Request,
        ctx: &ErrorContext,
    ) -> Result<Response, RegistryError> {
        self.client.send(self.registry, req, ctx).await
    }

    /// [`Client::send_within`] to this repository's registry.
    pub(super) async fn send_within(
        &self,
        req: Request,
        ctx: &ErrorContext,
        budget: &RetryBudget,
    ) -> Result<Response, RegistryError> {
        self.client
            .send_within(self.registry, req, ctx, budget)
            .await
    }

    /// Spend a retry of `budget` after `err` (see [`Client::send_within`]).
    pub(super) async fn retry_after_failure(
        &self,
        budget: &RetryBudget,
        err: &RegistryError,
    ) -> bool {
        self.client
            .retry_after_failure(self.registry, budget, err)
            .await
    }
}

impl std::fmt::Display for Repo<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)
    }
}

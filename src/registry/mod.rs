//! The registry client: references, credentials, auth, an HTTP client with
//! retries, and the blob / manifest / tag operations of the OCI distribution
//! API that push, pull, verify and copy are built on.
//!
//! Written on `reqwest` (rustls) and `tokio` rather than on an existing Rust
//! registry client, because what pushing to GHCR and Docker Hub reliably
//! needs is missing there: blobs already present or mountable must never be
//! uploaded again, a mount answered with an upload session must continue on
//! that session, temporary failures (5xx, 429, rate limits, lost upload
//! sessions) must be retried with backoff and `Retry-After`, and credentials
//! must come from the docker config and credential helpers as `docker` does.
//!
//! Layout: [`client`] (the [`Client`] and what it keeps per registry),
//! [`transport`] (sending: auth, retries, request slots, redirects,
//! observer), [`hosts`] (per-registry quirks as data), [`credentials`],
//! [`repo`] (the [`Repo`] handle: one repository, `client.repo_of(&r)`),
//! [`blobs`] and [`manifests`] (the API operations, methods of [`Repo`]),
//! [`reference`](mod@reference), [`headers`] and [`error`].

// RegistryError carries its full context (~200 bytes); errors are the cold path.
#![allow(clippy::result_large_err)]

pub mod blobs;
pub mod client;
pub mod credentials;
pub mod error;
pub mod headers;
pub mod hosts;
pub mod known;
pub mod manifests;
pub(crate) mod pages;
pub mod reference;
pub mod repo;
pub mod transport;

pub use blobs::{Held, MountResult, StreamUpload, UploadMode, UploadOutcome, UploadSession};
pub use client::{Body, Client, ClientOptions, Pace, StatsSnapshot, DEFAULT_JOBS_PER_REGISTRY};
pub use client::{RequestEvent, RequestObserver};
pub use credentials::{
    Credential, CredentialStore, EnvCredentialError, EnvCredentials, Secret, SecretEncoding,
};
pub use error::{AuthError, ErrorContext, ErrorKind, RegistryError};
pub use hosts::{host_config, HostConfig};
pub use known::KnownBlobs;
pub use manifests::ManifestInfo;
pub use reference::Reference;
pub use repo::Repo;
pub use transport::{RetryBudget, RetryPolicy};

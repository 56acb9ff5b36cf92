//! The registry client: references, credentials, auth, an HTTP client with
//! retries, and the blob / manifest / tag operations of the OCI distribution
//! API that push, pull, verify and copy are built on.
//!
//! Written on `reqwest` (rustls) and `tokio` because the existing Rust
//! clients re-upload blobs, lose mount sessions, lack retries or read no
//! docker config (see issue 3). Protocol facts it honours are listed in
//! `REGISTRIES.md`; each module says which.

// RegistryError carries its full context (~200 bytes); errors are the cold path.
#![allow(clippy::result_large_err)]

pub mod auth;
pub mod blobs;
pub mod client;
pub mod credentials;
pub mod error;
pub mod headers;
pub mod manifests;
pub mod reference;
pub mod retry;

pub use blobs::{MountResult, UploadMode, UploadOutcome};
pub use client::{Body, Client, ClientOptions, StatsSnapshot, DEFAULT_JOBS_PER_REGISTRY};
pub use client::{RequestEvent, RequestObserver};
pub use credentials::{Credential, CredentialStore, EnvCredentials, Secret, SecretEncoding};
pub use error::{ErrorContext, ErrorKind, RegistryError};
pub use manifests::ManifestInfo;
pub use reference::Reference;
pub use retry::RetryPolicy;

#[cfg(test)]
pub(crate) mod smoke_tests;

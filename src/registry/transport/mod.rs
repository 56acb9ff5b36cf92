//! The HTTP side of the registry client, in layers that [`Client::send`]
//! composes: the registry's request slots ([`limiter`]), authentication
//! ([`auth`]), request bodies that can be sent again (`body`), redirects
//! kept on the registry's origin ([`redirect`]), retries from one budget per
//! operation ([`retry`]), bounds on answers ([`limits`]), and what others
//! may watch ([`observer`]).
//!
//! Rules kept here so that no caller can forget them:
//! - credentials only ever go to the registry's own origin (scheme, host and
//!   port): redirects are followed by hand, and an absolute upload `Location`
//!   on another host, or an https -> http redirect, gets no `Authorization`;
//! - a request body is a [`Body`] that can be rebuilt for each attempt (a file
//!   is reopened), never a consumed stream;
//! - every retry of an operation, at whatever layer, is spent from the one
//!   [`RetryBudget`] of that operation;
//! - logs show method, host and path, never a query string, header value,
//!   credential or token;
//! - every answer is read with a size cap and every attempt has a total
//!   deadline, both by kind of request, and a blob download's body must
//!   keep up a least average rate once a grace has passed ([`limits`]:
//!   how silence, deadline and pace go together).

pub mod auth;
mod body;
pub mod limiter;
pub mod limits;
pub mod observer;
pub mod redirect;
pub mod request;
pub mod retry;
mod send;

use reqwest::Url;
use tokio::sync::OnceCell;

pub use observer::{RequestEvent, RequestObserver, Stats, StatsSnapshot};
pub use request::{Body, OnceBody, Request, Response};
pub use retry::{RetryBudget, RetryPolicy};

use crate::registry::credentials::Credential;
use limiter::Limiter;

/// What the client keeps per registry: where it is, its request slots, its
/// credentials and challenge (learnt once) and its counters.
pub struct RegistryState {
    pub registry: String,
    pub base: Url,
    pub limiter: Limiter,
    pub credential: OnceCell<Option<Credential>>,
    pub challenge: OnceCell<std::sync::Mutex<Option<auth::Challenge>>>,
    /// The last time learning the challenge failed for good (its retries
    /// spent), and why: requests that were waiting for that attempt share
    /// its failure instead of each spending retries of their own in turn.
    pub challenge_failed:
        std::sync::Mutex<Option<(std::time::Instant, crate::registry::RegistryError)>>,
    pub stats: Stats,
}

#[cfg(doc)]
use crate::registry::Client;

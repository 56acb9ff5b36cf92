//! boxwright's integration tests: one test binary that runs the real
//! `boxwright` binary (and, in `client`, the library's registry client)
//! against real consumers (skopeo, umoci, oci-image-tool) and real registries
//! (`docker-registry`), started by `support`. A test whose program is
//! missing fails and says so: run them with `scripts/test`.

#[path = "../support/mod.rs"]
mod support;

mod action;
mod bench;
mod build;
mod build_errors;
mod client;
mod common;
mod env;
mod hardening;
mod harness;
mod harness_proxy;
mod index;
mod login;
mod pair;
mod publish;
mod pull;
mod push;
mod push_faults;
mod schema;
mod supply;
mod verify;

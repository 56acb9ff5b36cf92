//! boxwright's integration tests: one test binary that runs the real
//! `boxwright` binary against real consumers (skopeo, umoci, oci-image-tool)
//! and real registries (`docker-registry`), started by `support`.

#[path = "../support/mod.rs"]
mod support;

mod action;
mod bench;
mod build;
mod common;
mod hardening;
mod harness;
mod index;
mod pair;
mod publish;
mod pull;
mod push;
mod schema;
mod verify;

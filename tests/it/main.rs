//! boxwright's integration tests: one test binary (see uv's `tests/it/`).
//!
//! `support` starts real registries, a token server and a fault-injecting
//! proxy; the other modules test boxwright against them.

#[path = "../support/mod.rs"]
mod support;

mod harness;

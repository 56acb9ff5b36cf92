//! Fixtures for the unit tests of other modules (push's) that need a real
//! registry: the one registry launcher of the integration tests
//! (`tests/support/registry.rs`), included here so that every test starts
//! `docker-registry` the same way, and fails, saying how to install it, when
//! it is missing. The registry client's own tests live in `tests/it/client.rs`.

use std::path::{Path, PathBuf};

use crate::oci::Digest;

#[path = "../../tests/support/mod.rs"]
mod support;

/// A `docker-registry` without authentication, on a free loopback port.
pub(crate) struct TestRegistry {
    _registry: support::Registry,
    /// `127.0.0.1:PORT`.
    pub host: String,
}

/// Starts a registry. Never `None`: a missing `docker-registry` fails the
/// calling test (the `Option` is kept for the callers' `let ... else`).
pub(crate) fn start_registry() -> Option<TestRegistry> {
    let registry = support::Registry::start();
    let host = registry.host();
    Some(TestRegistry {
        _registry: registry,
        host,
    })
}

/// `size` pseudo-random bytes in `dir/name`, and their digest.
pub(crate) fn write_random(dir: &Path, name: &str, size: usize) -> (PathBuf, Digest) {
    let mut data = vec![0u8; size];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ size as u64 ^ name.len() as u64;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let p = dir.join(name);
    std::fs::write(&p, &data).unwrap();
    (p, Digest::of(&data))
}

/// Keeps every message logged, at every level.
pub(crate) struct Recorder(pub std::sync::Mutex<Vec<String>>);

impl crate::progress::Reporter for Recorder {
    fn log(&self, _: crate::progress::Level, msg: &str) {
        self.0.lock().unwrap().push(msg.to_string());
    }
    fn start(&self, _: &str, _: &str, _: Option<u64>) {}
    fn advance(&self, _: &str, _: u64) {}
    fn finish(&self, _: &str, _: &str) {}
}

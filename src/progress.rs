//! Progress and log reporting.
//!
//! The library never prints. It reports through a [`Reporter`], which the
//! binary implements with indicatif bars on a terminal, plain lines when
//! stderr is not a terminal (or in CI), and nothing with `--quiet`.
//! Messages must never contain a credential or a token.

use std::sync::Arc;

/// How important a message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Only shown with `--verbose` (requests, retries, cache decisions).
    Debug,
    /// Normal progress lines ("layer 2 done: sha256:...").
    Info,
    /// Something the user should know about but that does not fail the command.
    Warn,
}

/// Receives progress from long operations. Task ids are chosen by the caller
/// and are unique while the task runs.
pub trait Reporter: Send + Sync {
    fn log(&self, level: Level, msg: &str);
    /// A task starts; `total` is its size in bytes when known.
    fn start(&self, id: &str, label: &str, total: Option<u64>);
    /// `n` more bytes of task `id` are done.
    fn advance(&self, id: &str, n: u64);
    /// Task `id` ends with a one-line summary.
    fn finish(&self, id: &str, summary: &str);
}

/// A reporter that discards everything (tests, `--quiet`).
pub struct Silent;

impl Reporter for Silent {
    fn log(&self, _: Level, _: &str) {}
    fn start(&self, _: &str, _: &str, _: Option<u64>) {}
    fn advance(&self, _: &str, _: u64) {}
    fn finish(&self, _: &str, _: &str) {}
}

/// Shared handle passed through the library.
pub type SharedReporter = Arc<dyn Reporter>;

/// A reporter that discards everything.
pub fn silent() -> SharedReporter {
    Arc::new(Silent)
}

//! Python without Python: what `pip install` does for a locked set of
//! wheels, done by reading the wheels, so that an image's Python packages
//! are built like its other layers (no interpreter, no pip, no network
//! beyond pinned downloads).
//!
//! `fetch.rs` downloads a pinned URL into the blob cache and `archive.rs`
//! takes one member out of an archive (both also serve `url` entries).

pub mod archive;
pub mod fetch;

//! Python without Python: what `pip install --no-deps` does for a locked
//! set of wheels, done by reading the wheels, so that an image's Python
//! packages are built like its other layers: no interpreter, no pip, no
//! network beyond pinned downloads.
//!
//! - `lock.rs` reads `pylock.toml` or a hashed `requirements.txt` and
//!   evaluates markers,
//! - `tags.rs` picks each package's best wheel for a platform,
//! - `install.rs` maps a wheel's members to image paths as pip would, with
//!   launchers, `INSTALLER` and a regenerated `RECORD` (`install/record.rs`
//!   reads the wheel's `RECORD` and writes the rows of the new one),
//! - `fetch.rs` downloads a pinned URL into the blob cache and `archive.rs`
//!   takes one member out of an archive (both also serve `url` entries);
//!   `zip_entries.rs` refuses zips that the zip crate reads otherwise than
//!   pip and unzip do, or that pip refuses, for both.

pub mod archive;
pub mod fetch;
pub mod install;
pub mod lock;
pub mod tags;
mod zip_entries;

/// How an archive member that declares `declared` bytes and inflated to
/// `got` (read to at most one byte more) is told of in an error: `None`
/// when the two agree, else "more" or the count.
fn held_otherwise(got: u64, declared: u64) -> Option<String> {
    match got.cmp(&declared) {
        std::cmp::Ordering::Equal => None,
        std::cmp::Ordering::Greater => Some("more".into()),
        std::cmp::Ordering::Less => Some(got.to_string()),
    }
}

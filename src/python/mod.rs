//! Python without Python: what `pip install --no-deps` does for a locked
//! set of wheels, done by reading the wheels, so that an image's Python
//! packages are built like its other layers: no interpreter, no pip, no
//! network beyond pinned downloads.
//!
//! - `lock.rs` reads `pylock.toml` or a hashed `requirements.txt` and
//!   evaluates markers,
//! - `tags.rs` picks each package's best wheel for a platform,
//! - `install.rs` maps a wheel's members to image paths as pip would, with
//!   launchers, `INSTALLER` and a regenerated `RECORD`,
//! - `fetch.rs` downloads a pinned URL into the blob cache and `archive.rs`
//!   takes one member out of an archive (both also serve `url` entries).

pub mod archive;
pub mod fetch;
pub mod install;
pub mod lock;
pub mod tags;

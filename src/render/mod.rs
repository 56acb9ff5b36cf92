//! Text forms of the library's reports, each written once: byte sizes,
//! aligned tables, pretty JSON, registry text made safe for a terminal, the
//! GitHub step summary, and the tables of `verify`, `tags`, `inspect` and
//! `bench`.
//!
//! The library computes reports and never prints; the binary chooses one of
//! these renderers and writes the result (results on stdout, the rest on
//! stderr). Keeping every format here means one table layout and one way of
//! writing sizes across all commands.

pub mod bench;
pub mod bytes;
pub mod inspect;
pub mod summary;
pub mod table;
pub mod text;
pub mod verify;

pub use bytes::{human_bytes, parse_size};

/// Pretty-printed JSON followed by a newline: what every `--json` prints.
pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    let mut s = serde_json::to_string_pretty(value)?;
    s.push('\n');
    Ok(s)
}

//! A wheel's `RECORD`: the rows an install reads from it (each member's
//! sha256 and size) and the form of the rows it writes.

use std::collections::HashMap;
use std::io::Read as _;

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use super::Zip;

/// The largest RECORD read.
const MAX_RECORD: u64 = 16 << 20;

/// The sha256 and size of each member the wheel's RECORD lists with a
/// sha256 (rows with another hash, or none, or that do not parse, are left
/// out: those members are hashed from their bytes).
pub(super) fn wheel_record(zip: &mut Zip, info_dir: &str) -> HashMap<String, ([u8; 32], u64)> {
    let mut text = String::new();
    let read = zip
        .by_name(&format!("{info_dir}/RECORD"))
        .map_err(std::io::Error::other)
        .and_then(|m| m.take(MAX_RECORD).read_to_string(&mut text));
    if read.is_err() {
        return HashMap::new();
    }
    text.lines().filter_map(record_row).collect()
}

/// One RECORD row, `path,sha256=<urlsafe base64>,size` (the path quoted as
/// CSV when it holds a comma or a quote).
fn record_row(line: &str) -> Option<(String, ([u8; 32], u64))> {
    let (path, rest) = match line.strip_prefix('"') {
        Some(q) => {
            let mut path = String::new();
            let mut chars = q.char_indices();
            let end = loop {
                match chars.next()? {
                    (i, '"') if q[i + 1..].starts_with('"') => {
                        path.push('"');
                        chars.next();
                    }
                    (i, '"') => break i + 1,
                    (_, c) => path.push(c),
                }
            };
            (path, q[end..].strip_prefix(',')?)
        }
        None => {
            let (p, r) = line.split_once(',')?;
            (p.to_string(), r)
        }
    };
    let (hash, size) = rest.split_once(',')?;
    let b = hash.strip_prefix("sha256=")?.trim_end_matches('=');
    let sha = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b)
        .ok()?;
    Some((path, (sha.try_into().ok()?, size.trim().parse().ok()?)))
}

/// RECORD's hash: urlsafe base64 of the sha256, without padding.
pub(super) fn hash(bytes: &[u8]) -> String {
    b64(&Sha256::digest(bytes))
}

/// A RECORD hash: a sha256 in URL-safe base64 without padding.
pub(super) fn b64(sha256: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha256)
}

/// A CSV field, quoted when it must be.
pub(super) fn csv(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

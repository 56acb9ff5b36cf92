//! Byte sizes for people: powers of 1024, one decimal (`3.0 MiB`), whole
//! bytes below 1 KiB (`512 B`).
//!
//! ```
//! use boxwright::render::human_bytes;
//! assert_eq!(human_bytes(512), "512 B");
//! assert_eq!(human_bytes(3 << 20), "3.0 MiB");
//! ```

/// `n` bytes as `512 B`, `1.5 KiB`, `3.0 MiB`, ... up to TiB.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(16 << 20), "16.0 MiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
        assert_eq!(human_bytes(2 << 40), "2.0 TiB");
    }
}

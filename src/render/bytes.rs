//! Byte sizes for people, both ways: shown in powers of 1024 with one
//! decimal (`3.0 MiB`, whole bytes below 1 KiB: `512 B`), and read from the
//! command line with one rule for every flag that takes a size.
//!
//! ```
//! use boxwright::render::{human_bytes, parse_size};
//! assert_eq!(human_bytes(512), "512 B");
//! assert_eq!(human_bytes(3 << 20), "3.0 MiB");
//! assert_eq!(parse_size("64MiB"), Ok(64 << 20));
//! assert_eq!(parse_size("4M"), Ok(4 << 20));
//! assert_eq!(parse_size("1MB"), Ok(1_000_000));
//! assert_eq!(parse_size("4096"), Ok(4096));
//! assert!(parse_size("0MiB").is_err());
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

/// A byte size: a whole number, then optionally a unit. `B`; `KiB`,
/// `MiB`, `GiB` and their short forms `K`, `M`, `G` are powers of 1024 (as
/// in docker's and podman's flags); `KB`, `MB`, `GB` are powers of 1000.
/// Case and white space before the unit do not matter. Zero is refused.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!(
            "{s:?} is not a size (expected e.g. 4MiB, 512KiB, 1GB or a number of bytes)"
        ));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is too large a size"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ if unit.starts_with(['.', ',']) => {
            return Err(format!(
                "{s:?}: a size is a whole number (e.g. 1536MiB, not 1.5GiB)"
            ))
        }
        _ => {
            return Err(format!(
                "unknown size unit {:?} in {s:?} (use B, K/KiB, M/MiB, G/GiB, KB, MB or GB)",
                unit.trim()
            ))
        }
    };
    let v = n
        .checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large a size"))?;
    if v == 0 {
        return Err(format!("a size must be at least 1 byte, not {s:?}"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::{human_bytes, parse_size};

    #[test]
    fn sizes_are_read_with_one_rule() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("512kib"), Ok(512 << 10));
        assert_eq!(parse_size("4M"), Ok(4 << 20));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_size("2kb"), Ok(2000));
        assert_eq!(parse_size("1 MiB"), Ok(1 << 20));
        assert_eq!(parse_size("17"), Ok(17));
        for bad in [
            "0",
            "0MiB",
            "",
            "MiB",
            "lots",
            "4 parsecs",
            "12XB",
            "-1",
            "1.5MiB",
            "99999999999999GiB",
            "99999999999999999999999",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        let e = parse_size("1.5G").unwrap_err();
        assert!(e.contains("whole number"), "{e}");
        let e = parse_size("4 Parsecs").unwrap_err();
        assert!(e.contains("\"Parsecs\"") && e.contains("M/MiB"), "{e}");
    }

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

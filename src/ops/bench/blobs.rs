//! The blobs a bench run uploads: derived from `(seed, run, blob)` with a
//! fixed generator, written to a temp dir and hashed in one pass, so that
//! no registry can dedupe one run against another.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::oci::Digest;

/// xoshiro256** seeded through splitmix64: fixed forever (unlike `rand`'s
/// `SmallRng`), fast, and plenty random for blobs no registry can dedupe.
struct BlobRng([u64; 4]);

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl BlobRng {
    fn new(seed: u64, run: u64, index: u64) -> BlobRng {
        let mut x = seed;
        let mut x = splitmix64(&mut x) ^ run;
        let mut x = splitmix64(&mut x) ^ index;
        let mut s = [0u64; 4];
        for v in &mut s {
            *v = splitmix64(&mut x);
        }
        BlobRng(s)
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Write blob `index` of run `run` (`size` bytes) to `path` and return its
/// digest, in one pass of 1 MiB pieces.
pub fn generate_blob(
    path: &Path,
    seed: u64,
    run: u64,
    index: u64,
    size: u64,
) -> std::io::Result<Digest> {
    let mut rng = BlobRng::new(seed, run, index);
    let mut file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        crate::cancel::check()?;
        rng.fill(&mut buf[..n]);
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])?;
        left -= n as u64;
    }
    file.flush()?;
    Ok(Digest::from_sha256(hasher.finalize().into()))
}

/// A blob of the run, generated on disk.
pub(super) struct Blob {
    pub(super) path: PathBuf,
    pub(super) digest: Digest,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_seeded_and_distinct() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        let a = generate_blob(&p("a"), 7, 0, 0, 3 << 20 | 5).unwrap();
        let a2 = generate_blob(&p("a2"), 7, 0, 0, 3 << 20 | 5).unwrap();
        let b = generate_blob(&p("b"), 7, 1, 0, 3 << 20 | 5).unwrap();
        let c = generate_blob(&p("c"), 7, 0, 1, 3 << 20 | 5).unwrap();
        let d = generate_blob(&p("d"), 8, 0, 0, 3 << 20 | 5).unwrap();
        assert_eq!(a, a2);
        assert_eq!(
            std::fs::read(p("a")).unwrap(),
            std::fs::read(p("a2")).unwrap()
        );
        assert_eq!(Digest::of(&std::fs::read(p("a")).unwrap()), a);
        assert_eq!(std::fs::metadata(p("a")).unwrap().len(), 3 << 20 | 5);
        for other in [&b, &c, &d] {
            assert_ne!(&a, other);
        }
    }
}

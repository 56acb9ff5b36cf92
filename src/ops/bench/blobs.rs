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

/// Refuse a bench whose run cannot hold its blobs in `dir` (`flag`: it was
/// given as `--work-dir`): `blobs` x `size` must fit in the space free
/// there now, so that a typo in `--size` fails at once instead of filling
/// the disk. Where the free space cannot be read, the run goes on.
pub(super) fn check_room(dir: &Path, blobs: usize, size: u64, flag: bool) -> anyhow::Result<()> {
    let need = size.checked_mul(blobs as u64);
    let Some(free) = free_bytes(dir) else {
        return Ok(());
    };
    if need.is_some_and(|n| n <= free) {
        return Ok(());
    }
    let human = crate::render::human_bytes;
    let place = if flag {
        format!("--work-dir {}", dir.display())
    } else {
        format!("the temp dir {} (TMPDIR)", dir.display())
    };
    Err(crate::error::bad_input(format!(
        "{place} has {} free, and each run generates --blobs {blobs} x --size {} = {}; \
         give fewer or smaller blobs, or a --work-dir with room",
        human(free),
        human(size),
        need.map_or_else(|| "more than 16 EiB".to_string(), human),
    )))
}

/// The bytes an unprivileged writer may still put in the file system of
/// `dir`, if it can be read.
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt as _;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `path` is a NUL-terminated string, `st` a plain struct
    // statvfs fills in; both outlive the call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    #[allow(clippy::unnecessary_cast)]
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
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

    #[test]
    fn a_run_that_cannot_fit_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_room(dir.path(), 2, 4096, true).is_ok());
        for (blobs, size) in [(1, u64::MAX), (2, u64::MAX / 2 + 1), (4096, 1 << 62)] {
            let err = check_room(dir.path(), blobs, size, true).unwrap_err();
            let said = err.to_string();
            assert!(crate::error::is_bad_input(&err), "{said}");
            assert!(
                said.contains(&format!("--work-dir {}", dir.path().display())),
                "{said}"
            );
            assert!(said.contains("free"), "{said}");
        }
        assert!(check_room(dir.path(), 1, u64::MAX, false)
            .unwrap_err()
            .to_string()
            .contains("the temp dir"));
    }
}

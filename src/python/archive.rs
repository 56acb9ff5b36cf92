//! One member of a downloaded archive (zip, tar, tar.gz, tar.xz, tar.zst:
//! told apart by their first bytes), extracted into the blob cache under
//! its own digest. `<cache>/members/<archive hex>/<sha256 of the member
//! name>` remembers which digest a member has, so an archive is read once;
//! a record that is not sealed for its archive and name is not believed.
//! Only the member's bytes and whether it is executable are kept: its time,
//! owner and mode never reach a layer.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use sha2::{Digest as _, Sha256};

use crate::cache::BlobCache;
use crate::error::bad_input;
use crate::oci::{Digest, Hashing};

use super::zip_entries::Fault;

/// An extracted member: its cached file and whether the archive marks it executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub path: PathBuf,
    pub executable: bool,
}

/// Member `name` of the archive `archive` (cached as `digest`), extracted
/// into the cache. `url` names the archive in errors.
pub fn extract(
    cache: &BlobCache,
    archive: &Path,
    digest: &Digest,
    name: &str,
    url: &str,
) -> Result<Member> {
    let index = cache
        .root()
        .join("members")
        .join(digest.hex())
        .join(hex::encode(Sha256::digest(name.as_bytes())));
    // `x|- <member hex> <seal>`: the seal binds the record to this archive
    // and name, so a record copied under another's name is not believed.
    let seal = |exec: &str, hex: &str| {
        hex::encode(Sha256::digest(
            format!("{}\0{name}\0{exec}\0{hex}", digest.hex()).as_bytes(),
        ))
    };
    if let Ok(text) = crate::input::read_capped_string(&index, 256) {
        let mut fields = text.split_whitespace();
        let (exec, hex, sealed) = (fields.next(), fields.next(), fields.next());
        if let (Some(exec), Some(hex), Some(sealed)) = (exec, hex, sealed) {
            if let Ok(d) = format!("sha256:{hex}").parse::<Digest>() {
                if sealed == seal(exec, hex) && cache.holds(&d, None) {
                    return Ok(Member {
                        path: cache.path(&d),
                        executable: exec == "x",
                    });
                }
            }
        }
    }
    let parts = cache.root().join("downloads");
    fs::create_dir_all(&parts)?;
    let mut tmp = tempfile::NamedTempFile::new_in(&parts)?;
    let mut f = File::open(archive).with_context(|| format!("reading {}", archive.display()))?;
    let mut magic = [0u8; 6];
    let n = f.read(&mut magic)?;
    f.seek(SeekFrom::Start(0))?;
    let mut out = Hashing::new(tmp.as_file_mut());
    let found = member_of(f, &magic[..n], name, &mut out).map_err(|e| {
        let disk = e.chain().any(|c| {
            c.downcast_ref::<io::Error>().is_some_and(|io| {
                matches!(
                    io.kind(),
                    io::ErrorKind::StorageFull
                        | io::ErrorKind::QuotaExceeded
                        | io::ErrorKind::ReadOnlyFilesystem
                )
            })
        });
        if disk {
            e.context(format!("extracting {name} from {url}"))
        } else if crate::error::is_bad_input(&e) {
            bad_input(format!("{url}: extracting {name:?}: {e:#}"))
        } else if format!("{e:#}").contains("memory limit reached") {
            bad_input(format!(
                "{url}: extracting {name:?}: its xz data needs more than {} MiB of memory to unpack; repack it with a smaller dictionary (xz -6)",
                XZ_MEMLIMIT >> 20
            ))
        } else {
            // The file is the one the recipe pins: what it holds is input.
            bad_input(format!(
                "{url}: extracting {name:?}: {e:#}; the pinned file is damaged, or not a zip, tar, tar.gz, tar.zst or tar.xz archive"
            ))
        }
    })?;
    let Some(executable) = found else {
        return Err(bad_input(format!(
            "{url}: the archive has no member {name:?} (extract names a file inside the archive, e.g. \"bin/tool\")"
        )));
    };
    let d = out.digest();
    let path = cache.path(&d);
    crate::cache::clear_for_file(&path);
    tmp.persist(&path)
        .map_err(|e| anyhow!("caching {name} of {url}: {}", e.error))?;
    if let Some(dir) = index.parent() {
        crate::cache::own_dir(cache.root(), dir)?;
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let exec = if executable { "x" } else { "-" };
    crate::cache::clear_for_file(&index);
    fs::write(
        &index,
        format!("{exec} {} {}\n", d.hex(), seal(exec, d.hex())),
    )
    .with_context(|| format!("writing {}", index.display()))?;
    Ok(Member { path, executable })
}

/// The most an extracted member may hold, as for a download.
const MAX_MEMBER: u64 = super::fetch::MAX_SIZE;

/// The most a compressed tar may unpack to while its member is looked for:
/// a small archive that unpacks without end is refused, not read for hours.
/// Also the most a wheel's members may declare in all, as a wheel is read whole.
pub(crate) const MAX_UNPACKED: u64 = 4 * MAX_MEMBER;

/// The memory the xz decoder may take (`xz -9` needs 65 MiB).
const XZ_MEMLIMIT: u64 = 256 << 20;

/// Copy member `name` of the archive `f` (its kind told by its first bytes,
/// `magic`) to `out`; `Some(executable)` when found.
fn member_of(f: File, magic: &[u8], name: &str, out: &mut dyn Write) -> Result<Option<bool>> {
    let unpacked: Box<dyn Read> = match magic {
        [b'P', b'K', 3, 4, ..] => return from_zip(f, name, out),
        [0x1f, 0x8b, ..] => Box::new(flate2::read::GzDecoder::new(BufReader::new(f))),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Box::new(zstd::Decoder::new(f)?),
        [0xfd, b'7', b'z', b'X', b'Z', 0] => {
            let stream = liblzma::stream::Stream::new_stream_decoder(
                XZ_MEMLIMIT,
                liblzma::stream::CONCATENATED,
            )
            .map_err(|e| anyhow!("starting the xz decoder: {e}"))?;
            Box::new(liblzma::read::XzDecoder::new_stream(f, stream))
        }
        _ => Box::new(BufReader::new(f)),
    };
    let capped = Unpacked {
        r: unpacked,
        left: MAX_UNPACKED,
    };
    from_tar(capped, name, out)
}

/// A decompressed stream that fails once it has given `left` bytes, or
/// once the run is cancelled: a member is looked for by reading through the
/// ones before it, which writes nothing that would notice.
struct Unpacked {
    r: Box<dyn Read>,
    left: u64,
}

impl Read for Unpacked {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        crate::cancel::check()?;
        if self.left == 0 {
            return Err(crate::error::bad_input_io(format!(
                "the archive unpacks to more than {} GiB",
                MAX_UNPACKED >> 30
            )));
        }
        let n = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let got = self.r.read(&mut buf[..n])?;
        self.left -= got as u64;
        Ok(got)
    }
}

/// Copy exactly `size` bytes of a member to `out`: a member cut short, or
/// one that holds more than it declares, is refused, as is one over
/// [`MAX_MEMBER`].
fn copy_member(m: &mut dyn Read, size: u64, name: &str, out: &mut dyn Write) -> Result<()> {
    if size > MAX_MEMBER {
        return Err(bad_input(format!(
            "{name:?} is {size} bytes, over the {} GiB a member may hold",
            MAX_MEMBER >> 30
        )));
    }
    let got = io::copy(&mut m.take(size + 1), out).with_context(|| format!("extracting {name}"))?;
    if let Some(held) = super::held_otherwise(got, size) {
        return Err(bad_input(format!(
            "{name:?} declares {size} bytes but holds {held}; the archive is damaged or cut short"
        )));
    }
    Ok(())
}

/// A member that is a link cannot be extracted as a file: say where it
/// points, so the recipe can name that member instead.
fn link_member(name: &str, kind: &str, target: &[u8]) -> anyhow::Error {
    bad_input(format!(
        "{name:?} is a {kind} to {:?} in the archive; extract the member it points to",
        String::from_utf8_lossy(target)
    ))
}

/// Copy zip member `name` to `out`; `Some(executable)` when found.
fn from_zip(f: File, name: &str, out: &mut dyn Write) -> Result<Option<bool>> {
    let raw = f.try_clone()?;
    let mut zip = zip::ZipArchive::new(BufReader::new(f)).context("reading the zip archive")?;
    // A name listed twice is refused when it is the member's: the zip crate
    // keeps the last copy, as unzip does; which one is meant is not guessed.
    match super::zip_entries::fault(&raw, &mut zip)? {
        Some(Fault::Repeated(n)) if n != name => {}
        Some(Fault::Repeated(_)) => {
            return Err(bad_input(format!(
            "the archive holds {name:?} more than once; extract from an archive that holds it once"
        )))
        }
        Some(fault) => {
            return Err(bad_input(format!(
                "{fault}; the zip is damaged or hostile, extract from another"
            )))
        }
        None => {}
    }
    let mut m = match zip.by_name(name) {
        Ok(m) => m,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(anyhow!("reading member {name}: {e}")),
    };
    if m.is_dir() {
        return Ok(None);
    }
    if m.is_symlink() {
        let mut target = Vec::new();
        (&mut m).take(4096).read_to_end(&mut target)?;
        return Err(link_member(name, "symbolic link", &target));
    }
    let exec = m.unix_mode().is_some_and(|mode| mode & 0o111 != 0);
    let size = m.size();
    copy_member(&mut m, size, name, out)?;
    Ok(Some(exec))
}

/// A member's path as unpacking resolves it: without empty and `.` parts,
/// so `./bin/tool`, `bin//tool` and `/bin/tool` are all `bin/tool`.
fn plain_path(path: &[u8]) -> Vec<u8> {
    path.split(|&b| b == b'/')
        .filter(|p| !matches!(*p, b"" | b"."))
        .collect::<Vec<_>>()
        .join(&b'/')
}

/// Copy tar member `name` to `out`, paths compared as [`plain_path`] gives
/// them. The rest of the archive is read too: a tar may hold a path twice,
/// and `tar -x` would keep the last copy, so which one is meant is not
/// guessed.
fn from_tar(r: impl Read, name: &str, out: &mut dyn Write) -> Result<Option<bool>> {
    let want = plain_path(name.as_bytes());
    let mut ar = crate::layer::bounded::archive(r);
    let mut found = None;
    for e in ar.entries().context("reading the tar archive")? {
        let mut e = e.context("reading the tar archive")?;
        if plain_path(&e.path_bytes()) != want {
            continue;
        }
        if found.is_some() {
            return Err(bad_input(format!(
                "the archive holds {name:?} more than once; extract from an archive that holds it once"
            )));
        }
        let kind = e.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            let target = e.link_name_bytes().unwrap_or_default().into_owned();
            let kind = if kind.is_symlink() {
                "symbolic link"
            } else {
                "hard link"
            };
            return Err(link_member(name, kind, &target));
        }
        if kind.is_file() || kind.is_gnu_sparse() {
            let exec = e.header().mode().is_ok_and(|m| m & 0o111 != 0);
            let size = e.size();
            copy_member(&mut e, size, name, out)?;
            found = Some(exec);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests;

//! One member of a downloaded archive (zip, tar, tar.gz, tar.xz, tar.zst:
//! told apart by their first bytes), extracted into the blob cache under
//! its own digest. `<cache>/members/<archive hex>/<sha256 of the member
//! name>` remembers which digest a member has, so an archive is read once.
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
    if let Ok(text) = crate::input::read_capped_string(&index, 256) {
        let (exec, hex) = text.trim().split_once(' ').unwrap_or(("", ""));
        if let Ok(d) = format!("sha256:{hex}").parse::<Digest>() {
            let path = cache.path(&d);
            if cache.holds(&d, None) {
                return Ok(Member {
                    path,
                    executable: exec == "x",
                });
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
    let found = member_of(f, &magic[..n], name, &mut out, &parts).map_err(|e| {
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
        } else {
            // The file is the one the recipe pins: what it holds is input.
            bad_input(format!(
                "{url}: extracting {name:?}: {e:#}; the pinned file is not a readable zip, tar, tar.gz, tar.zst or tar.xz archive"
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
    tmp.persist(&path)
        .map_err(|e| anyhow!("caching {name} of {url}: {}", e.error))?;
    if let Some(dir) = index.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(
        &index,
        format!("{} {}\n", if executable { "x" } else { "-" }, d.hex()),
    )?;
    Ok(Member { path, executable })
}

/// Copy member `name` of the archive `f` (its kind told by its first bytes,
/// `magic`) to `out`; `Some(executable)` when found. `parts` takes the
/// decompressed tar of an xz archive.
fn member_of(
    f: File,
    magic: &[u8],
    name: &str,
    out: &mut dyn Write,
    parts: &Path,
) -> Result<Option<bool>> {
    Ok(match magic {
        [b'P', b'K', 3, 4, ..] => from_zip(f, name, out)?,
        [0x1f, 0x8b, ..] => from_tar(flate2::read::GzDecoder::new(BufReader::new(f)), name, out)?,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => from_tar(zstd::Decoder::new(f)?, name, out)?,
        [0xfd, b'7', b'z', b'X', b'Z', 0] => {
            // The xz decoder writes rather than reads: decompress to a file first.
            let mut plain = tempfile::tempfile_in(parts)?;
            lzma_rs::xz_decompress(&mut BufReader::new(f), &mut plain)
                .map_err(|e| anyhow!("bad xz data: {e}"))?;
            plain.seek(SeekFrom::Start(0))?;
            from_tar(BufReader::new(plain), name, out)?
        }
        _ => from_tar(BufReader::new(f), name, out)?,
    })
}

/// Copy zip member `name` to `out`; `Some(executable)` when found.
fn from_zip(f: File, name: &str, out: &mut dyn Write) -> Result<Option<bool>> {
    let mut zip = zip::ZipArchive::new(BufReader::new(f)).context("reading the zip archive")?;
    let mut m = match zip.by_name(name) {
        Ok(m) => m,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(anyhow!("reading member {name}: {e}")),
    };
    if m.is_dir() {
        return Ok(None);
    }
    let exec = m.unix_mode().is_some_and(|mode| mode & 0o111 != 0);
    io::copy(&mut m, out).with_context(|| format!("extracting {name}"))?;
    Ok(Some(exec))
}

/// Copy tar member `name` (leading `./` ignored) to `out`.
fn from_tar(r: impl Read, name: &str, out: &mut dyn Write) -> Result<Option<bool>> {
    let want = name.trim_start_matches("./");
    let mut ar = tar::Archive::new(r);
    for e in ar.entries().context("reading the tar archive")? {
        let mut e = e.context("reading the tar archive")?;
        let path = e.path_bytes();
        let path = path.strip_prefix(b"./").unwrap_or(&path);
        if path == want.as_bytes() && e.header().entry_type().is_file() {
            let exec = e.header().mode().is_ok_and(|m| m & 0o111 != 0);
            io::copy(&mut e, out).with_context(|| format!("extracting {name}"))?;
            return Ok(Some(exec));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_bytes(name: &str, data: &[u8], mode: u32) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn members_of_tar_gz_and_zip_are_extracted_once() {
        let dir = tempfile::tempdir().unwrap();
        let cache = BlobCache::new(Some(dir.path().join("c"))).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar_bytes("./bin/tool", b"#!/bin/sh\n", 0o755))
            .unwrap();
        let path = dir.path().join("a.tgz");
        fs::write(&path, gz.finish().unwrap()).unwrap();
        let d = Digest::of(b"stand-in");
        let m = extract(&cache, &path, &d, "bin/tool", "u").unwrap();
        assert!(m.executable);
        assert_eq!(fs::read(&m.path).unwrap(), b"#!/bin/sh\n");
        fs::remove_file(&path).unwrap();
        assert_eq!(extract(&cache, &path, &d, "bin/tool", "u").unwrap(), m);

        let mut z = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default().unix_permissions(0o644);
        z.start_file("doc.txt", opts).unwrap();
        z.write_all(b"text").unwrap();
        let zpath = dir.path().join("a.zip");
        fs::write(&zpath, z.finish().unwrap().into_inner()).unwrap();
        let zd = Digest::of(b"zip");
        let m = extract(&cache, &zpath, &zd, "doc.txt", "u").unwrap();
        assert!(!m.executable);
        assert_eq!(fs::read(&m.path).unwrap(), b"text");
        let err = extract(&cache, &zpath, &zd, "nope", "u").unwrap_err();
        assert!(crate::error::is_bad_input(&err));

        // Not an archive at all, and a gzip cut short: bad input naming the
        // URL and the member.
        let text = dir.path().join("notes.txt");
        fs::write(&text, b"just some text, which no tar reader takes\n").unwrap();
        let cut = dir.path().join("cut.tgz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar_bytes("./bin/tool", &[7u8; 4096], 0o755))
            .unwrap();
        let bytes = gz.finish().unwrap();
        fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        for (file, seed) in [(&text, b"text" as &[u8]), (&cut, b"cut")] {
            let err = extract(
                &cache,
                file,
                &Digest::of(seed),
                "bin/tool",
                "https://x/t.tgz",
            )
            .unwrap_err();
            assert!(crate::error::is_bad_input(&err), "{err:#}");
            let said = format!("{err:#}");
            assert!(
                said.contains("https://x/t.tgz: extracting \"bin/tool\"")
                    && said.contains("not a readable"),
                "{said}"
            );
        }
    }
}

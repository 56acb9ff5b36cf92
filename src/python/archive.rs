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
    tmp.persist(&path)
        .map_err(|e| anyhow!("caching {name} of {url}: {}", e.error))?;
    if let Some(dir) = index.parent() {
        fs::create_dir_all(dir)?;
    }
    let exec = if executable { "x" } else { "-" };
    fs::write(
        &index,
        format!("{exec} {} {}\n", d.hex(), seal(exec, d.hex())),
    )?;
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
mod tests {
    use super::*;

    /// A tar of one file, its name written as it is (absolute, `//`...).
    fn tar_bytes(name: &str, data: &[u8], mode: u32) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_cksum();
        b.append(&h, data).unwrap();
        b.into_inner().unwrap()
    }

    /// Replace every `from` in `bytes` by `to`, of the same length.
    pub(crate) fn rename_in(bytes: &mut [u8], from: &[u8], to: &[u8]) {
        let mut i = 0;
        while let Some(p) = bytes[i..].windows(from.len()).position(|w| w == from) {
            bytes[i + p..i + p + to.len()].copy_from_slice(to);
            i += p + to.len();
        }
    }

    /// Extract `name` from an archive holding `bytes`; the error's text.
    fn refused(bytes: &[u8], name: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let cache = BlobCache::new(Some(dir.path().join("c"))).unwrap();
        let path = dir.path().join("a");
        fs::write(&path, bytes).unwrap();
        let err = extract(&cache, &path, &Digest::of(bytes), name, "https://x/a").unwrap_err();
        assert!(crate::error::is_bad_input(&err), "{err:#}");
        format!("{err:#}")
    }

    #[test]
    fn tar_xz_and_tar_zst_members_are_extracted() {
        let dir = tempfile::tempdir().unwrap();
        let cache = BlobCache::new(Some(dir.path().join("c"))).unwrap();
        let tar = tar_bytes("bin/tool", b"tool\n", 0o755);
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
        xz.write_all(&tar).unwrap();
        let zst = zstd::encode_all(&tar[..], 3).unwrap();
        for (i, bytes) in [xz.finish().unwrap(), zst].into_iter().enumerate() {
            let path = dir.path().join(format!("a{i}"));
            fs::write(&path, &bytes).unwrap();
            let m = extract(&cache, &path, &Digest::of(&bytes), "bin/tool", "u").unwrap();
            assert!(m.executable);
            assert_eq!(fs::read(&m.path).unwrap(), b"tool\n");
        }
    }

    #[test]
    fn members_cut_short_holding_more_than_declared_or_links_are_refused() {
        // A tar whose member declares 4096 bytes and ends after 1024.
        let tar = tar_bytes("bin/tool", &[7u8; 4096], 0o755);
        let said = refused(&tar[..512 + 1024], "bin/tool");
        assert!(
            said.contains("declares 4096 bytes but holds 1024"),
            "{said}"
        );

        // A zip member that inflates to more than its header declares.
        let mut z = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        z.start_file("tool", opts).unwrap();
        z.write_all(&[0u8; 100_000]).unwrap();
        let mut bytes = z.finish().unwrap().into_inner();
        let patch = |b: &mut Vec<u8>, sig: &[u8], at: usize| {
            let i = b.windows(4).position(|w| w == sig).unwrap();
            b[i + at..i + at + 4].copy_from_slice(&10u32.to_le_bytes());
        };
        patch(&mut bytes, b"PK\x03\x04", 22);
        patch(&mut bytes, b"PK\x01\x02", 24);
        let said = refused(&bytes, "tool");
        assert!(said.contains("declares 10 bytes but holds more"), "{said}");

        // Links are named with their target, not extracted as files.
        let mut z = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default();
        z.add_symlink("tool", "/etc/shadow", opts).unwrap();
        let said = refused(&z.finish().unwrap().into_inner(), "tool");
        assert!(said.contains("symbolic link to \"/etc/shadow\""), "{said}");
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Link);
        h.set_size(0);
        b.append_link(&mut h, "bin/tool", "bin/real").unwrap();
        let said = refused(&b.into_inner().unwrap(), "bin/tool");
        assert!(said.contains("hard link to \"bin/real\""), "{said}");

        // A zip that lists a name twice (made by renaming a second member).
        let mut z = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        for (n, body) in [("tool", b"one"), ("toox", b"two")] {
            z.start_file(n, zip::write::SimpleFileOptions::default())
                .unwrap();
            z.write_all(body).unwrap();
        }
        let mut bytes = z.finish().unwrap().into_inner();
        rename_in(&mut bytes, b"toox", b"tool");
        let said = refused(&bytes, "tool");
        assert!(said.contains("more than once"), "{said}");

        // A path held twice, however spelt: `tar -x` keeps the last, so
        // neither is guessed.
        for other in ["bin/tool", "bin//tool", "/bin/./tool"] {
            let mut twice = tar_bytes("./bin/tool", b"one", 0o755);
            twice.truncate(twice.len() - 1024);
            twice.extend(tar_bytes(other, b"two", 0o755));
            let said = refused(&twice, "bin/tool");
            assert!(said.contains("more than once"), "{other}: {said}");
        }
    }

    #[test]
    fn a_zip_whose_entries_overlap_or_are_renamed_is_refused() {
        use crate::python::zip_entries::tests::raw_zip;
        // `other` renamed `tool` by a Unicode Path extra field: the zip
        // crate reads one `tool`, holding the second entry's bytes.
        let renamed = raw_zip(&[
            ("tool", b"FIRST\n", None, None),
            ("other", b"SECOND\n", Some("tool"), None),
        ]);
        let said = refused(&renamed, "tool");
        assert!(
            said.starts_with(
                "https://x/a: extracting \"tool\": entry \"other\" is renamed \"tool\""
            ) && said.ends_with("the zip is damaged or hostile, extract from another"),
            "{said}"
        );
        let bomb = raw_zip(&[
            ("tool", &[0; 4096], None, None),
            ("copy", b"", None, Some(0)),
        ]);
        let said = refused(&bomb, "tool");
        assert!(
            said.contains("entries \"copy\" and \"tool\" overlap in the zip"),
            "{said}"
        );
    }

    #[test]
    fn a_long_name_over_a_mebibyte_is_refused_not_read_into_memory() {
        // The tar crate reads a GNU long name whole before its entry: a
        // small tar.gz could declare gigabytes of one.
        let name = format!(
            "bin/{}",
            "a".repeat(crate::layer::bounded::MAX_META as usize)
        );
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(4);
        h.set_mode(0o755);
        b.append_data(&mut h, &name, &b"tool"[..]).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&b.into_inner().unwrap()).unwrap();
        let said = refused(&gz.finish().unwrap(), &name);
        assert!(
            said.contains("long name entry of the tar declares"),
            "{said}"
        );
    }

    #[test]
    fn a_sparse_map_over_a_mebibyte_is_refused_whichever_member_is_extracted() {
        use crate::layer::bounded::{tests::sparse_tar, MAX_SPARSE_BLOCKS};
        let tar = sparse_tar("bin/tool", MAX_SPARSE_BLOCKS + 1, false);
        let zst = zstd::encode_all(&tar[..], 19).unwrap();
        assert!(zst.len() < 2048, "{}", zst.len());
        for want in ["bin/tool", "after"] {
            let said = refused(&zst, want);
            assert!(
                said.starts_with(&format!("https://x/a: extracting {want:?}"))
                    && said.contains("the sparse file \"bin/tool\" of the tar has more than 2048")
                    && !said.contains("the pinned file is damaged"),
                "{said}"
            );
        }
    }

    #[test]
    fn a_gnu_sparse_member_is_extracted_with_its_holes() {
        // `tar -S` of a file with a 1024-byte hole, then "hello".
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::GNUSparse);
        h.set_path("bin/tool").unwrap();
        h.set_mode(0o755);
        h.set_size(5);
        let octal = |field: &mut [u8; 12], n: u64| {
            field.copy_from_slice(format!("{n:011o}\0").as_bytes());
        };
        let gnu = h.as_gnu_mut().unwrap();
        octal(&mut gnu.realsize, 1029);
        octal(&mut gnu.sparse[0].offset, 1024);
        octal(&mut gnu.sparse[0].numbytes, 5);
        h.set_cksum();
        let mut bytes = h.as_bytes().to_vec();
        bytes.extend_from_slice(b"hello");
        bytes.resize(512 * 4, 0);
        let dir = tempfile::tempdir().unwrap();
        let cache = BlobCache::new(Some(dir.path().join("c"))).unwrap();
        let path = dir.path().join("a.tar");
        fs::write(&path, &bytes).unwrap();
        let m = extract(&cache, &path, &Digest::of(&bytes), "bin/tool", "u").unwrap();
        assert!(m.executable);
        let mut want = vec![0u8; 1024];
        want.extend_from_slice(b"hello");
        assert_eq!(fs::read(&m.path).unwrap(), want);
    }

    #[test]
    fn a_member_record_copied_or_edited_is_not_believed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = BlobCache::new(Some(dir.path().join("c"))).unwrap();
        let mut tar = tar_bytes("bin/tool", b"tool\n", 0o755);
        tar.truncate(tar.len() - 1024);
        tar.extend(tar_bytes("bin/other", b"other\n", 0o644));
        let path = dir.path().join("a.tar");
        fs::write(&path, &tar).unwrap();
        let d = Digest::of(&tar);
        let tool = extract(&cache, &path, &d, "bin/tool", "u").unwrap();
        extract(&cache, &path, &d, "bin/other", "u").unwrap();
        let record = |member: &str| {
            let dir = cache.root().join("members").join(d.hex());
            dir.join(hex::encode(Sha256::digest(member.as_bytes())))
        };
        // The other member's record under this member's name, then this
        // member's record marked not executable.
        fs::copy(record("bin/other"), record("bin/tool")).unwrap();
        assert_eq!(extract(&cache, &path, &d, "bin/tool", "u").unwrap(), tool);
        let text = fs::read_to_string(record("bin/tool")).unwrap();
        fs::write(record("bin/tool"), text.replacen('x', "-", 1)).unwrap();
        assert_eq!(extract(&cache, &path, &d, "bin/tool", "u").unwrap(), tool);
        assert_eq!(fs::read(&tool.path).unwrap(), b"tool\n");
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
                    && said.contains("damaged, or not a zip"),
                "{said}"
            );
        }
    }
}

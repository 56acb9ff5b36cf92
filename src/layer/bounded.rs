//! A tar stream from outside (an archive a recipe extracts from, a base
//! image's layer) whose metadata entries are bounded. The tar crate reads a
//! GNU long name or link and a pax header whole into memory before the entry
//! it describes, so a small tar.gz declaring a 10 GiB long name would take
//! 10 GiB of memory. [`BoundedMeta`] follows the tar's framing as the bytes
//! pass, exactly as the tar crate frames it, and fails the read that brings
//! the header of such an entry over [`MAX_META`], or a GNU sparse entry's
//! extension block past [`MAX_SPARSE_BLOCKS`].

use std::io::{self, Read};

use crate::error::bad_input_io;

/// The most a GNU long name or link, or a pax header, may hold. Paths stop
/// at 4 KiB on Linux; pax headers also carry extended attributes.
pub const MAX_META: u64 = 1 << 20;

const BLOCK: usize = 512;

/// The most GNU sparse extension blocks one entry may have: a sparse map of
/// at most [`MAX_META`] (43,000 data regions). The tar crate keeps a record
/// for each region of the map, even an empty one, and drops them one at a
/// time from the front of a list as the entry is read: a tar.zst of a few
/// hundred bytes holding repeated blocks would take gigabytes of memory
/// and hours of CPU.
pub const MAX_SPARSE_BLOCKS: u64 = MAX_META / BLOCK as u64;

/// A tar archive over `r` whose metadata entries are bounded.
pub fn archive<R: Read>(r: R) -> tar::Archive<BoundedMeta<R>> {
    tar::Archive::new(BoundedMeta::new(r))
}

/// What the next bytes of the stream are.
enum At {
    /// A header block, or a GNU sparse extension block after one.
    Header { extension: bool },
    /// `left` bytes of an entry's data and padding; the first `keep` are a
    /// pax header's or a GNU long name's, kept in `kept`.
    Data {
        left: u64,
        keep: u64,
        kept: Option<(Kept, Vec<u8>)>,
    },
    /// After the archive's end: the tar crate reads no further.
    End,
}

/// What an entry's kept data is.
enum Kept {
    Pax,
    LongName,
}

pub struct BoundedMeta<R> {
    inner: R,
    at: At,
    block: [u8; BLOCK],
    filled: usize,
    /// The size a pax header gave the next entry that is not itself one.
    pax_size: Option<u64>,
    /// The path a pax header or GNU long name gave the next entry, for errors.
    long_path: Option<Vec<u8>>,
    /// The GNU sparse entry whose extension blocks follow: its path, data
    /// size and the extension blocks seen.
    sparse: (Vec<u8>, u64, u64),
}

impl<R: Read> BoundedMeta<R> {
    pub fn new(inner: R) -> Self {
        BoundedMeta {
            inner,
            at: At::Header { extension: false },
            block: [0; BLOCK],
            filled: 0,
            pax_size: None,
            long_path: None,
            sparse: (Vec::new(), 0, 0),
        }
    }

    fn observe(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match &mut self.at {
                At::End => return Ok(()),
                At::Header { extension } => {
                    let extension = *extension;
                    let n = (BLOCK - self.filled).min(bytes.len());
                    self.block[self.filled..self.filled + n].copy_from_slice(&bytes[..n]);
                    self.filled += n;
                    bytes = &bytes[n..];
                    if self.filled == BLOCK {
                        self.filled = 0;
                        self.at = if extension {
                            self.after_extension()?
                        } else {
                            self.after_header()?
                        };
                    }
                }
                At::Data { left, keep, kept } => {
                    let n = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len());
                    if let Some((_, kept)) = kept {
                        let k = usize::try_from(*keep).unwrap_or(usize::MAX).min(n);
                        kept.extend_from_slice(&bytes[..k]);
                        *keep -= k as u64;
                    }
                    *left -= n as u64;
                    bytes = &bytes[n..];
                    if *left == 0 {
                        match kept.take() {
                            Some((Kept::Pax, pax)) => {
                                let (size, path) = pax_fields(&pax);
                                self.pax_size = size;
                                self.long_path = path.or(self.long_path.take());
                            }
                            Some((Kept::LongName, name)) => {
                                let end = name.iter().position(|&b| b == 0);
                                self.long_path = Some(name[..end.unwrap_or(name.len())].to_vec());
                            }
                            None => {}
                        }
                        self.at = At::Header { extension: false };
                    }
                }
            }
        }
        Ok(())
    }

    /// What follows the header in `block`, as the tar crate reads it.
    fn after_header(&mut self) -> io::Result<At> {
        if self.block.iter().all(|&b| b == 0) {
            return Ok(At::End);
        }
        let header = tar::Header::from_byte_slice(&self.block);
        let kind = header.entry_type();
        let Ok(mut size) = header.entry_size() else {
            // The tar crate refuses this header: nothing follows.
            return Ok(At::End);
        };
        let recognized = header.as_gnu().is_some() || header.as_ustar().is_some();
        let meta =
            kind.is_gnu_longname() || kind.is_gnu_longlink() || kind.is_pax_local_extensions();
        if recognized && meta {
            if size > MAX_META {
                let what = match kind.as_byte() {
                    b'L' => "GNU long name",
                    b'K' => "GNU long link",
                    _ => "pax header",
                };
                return Err(bad_input_io(format!(
                    "a {what} entry of the tar declares {size} bytes, over the {} KiB such an entry may hold",
                    MAX_META >> 10
                )));
            }
            let kept = if kind.is_pax_local_extensions() {
                Some((Kept::Pax, Vec::new()))
            } else {
                kind.is_gnu_longname().then(|| (Kept::LongName, Vec::new()))
            };
            return Ok(Self::data(size, kept));
        }
        // A pax size is for the next entry that describes no other.
        if !(meta || kind.is_pax_global_extensions()) {
            if let Some(s) = self.pax_size {
                size = s;
            }
        }
        self.pax_size = None;
        let long_path = self.long_path.take();
        if kind.is_gnu_sparse() && header.as_gnu().is_some_and(|g| g.is_extended()) {
            let path = long_path.unwrap_or_else(|| header.path_bytes().into_owned());
            self.sparse = (path, size, 0);
            return Ok(At::Header { extension: true });
        }
        Ok(Self::data(size, None))
    }

    /// What follows the GNU sparse extension block in `block`.
    fn after_extension(&mut self) -> io::Result<At> {
        let (path, size, blocks) = &mut self.sparse;
        *blocks += 1;
        // `isextended` is the byte after 21 sparse records of 24 bytes.
        if self.block[21 * 24] != 1 {
            return Ok(Self::data(*size, None));
        }
        if *blocks == MAX_SPARSE_BLOCKS {
            return Err(bad_input_io(format!(
                "the sparse file {:?} of the tar has more than {MAX_SPARSE_BLOCKS} GNU sparse extension blocks, a map over the {} KiB one may hold",
                String::from_utf8_lossy(path),
                MAX_META >> 10
            )));
        }
        Ok(At::Header { extension: true })
    }

    /// `size` bytes of data and their padding to a whole block.
    fn data(size: u64, kept: Option<(Kept, Vec<u8>)>) -> At {
        let Some(padded) = size.checked_add(BLOCK as u64 - 1) else {
            // The tar crate refuses a size that overflows.
            return At::End;
        };
        At::Data {
            left: padded & !(BLOCK as u64 - 1),
            keep: size,
            kept,
        }
    }
}

/// The `size` a pax header gives, as the tar crate reads it, and its `path`.
fn pax_fields(pax: &[u8]) -> (Option<u64>, Option<Vec<u8>>) {
    let (mut size, mut path) = (None, None);
    for ext in tar::PaxExtensions::new(pax) {
        let Ok(ext) = ext else { break };
        match ext.key() {
            Ok("size") if size.is_none() => {
                size = Some(ext.value().ok().and_then(|v| v.parse().ok()));
            }
            Ok("path") => path = Some(ext.value_bytes().to_vec()),
            _ => {}
        }
    }
    (size.flatten(), path)
}

impl<R: Read> Read for BoundedMeta<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.observe(&buf[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An entry's path, link name and data.
    type Seen = (Vec<u8>, Vec<u8>, Vec<u8>);

    /// Each entry as the tar crate gives it.
    fn entries<R: Read>(mut ar: tar::Archive<R>) -> io::Result<Vec<Seen>> {
        let mut out = Vec::new();
        for e in ar.entries()? {
            let mut e = e?;
            let path = e.path_bytes().into_owned();
            let link = e
                .link_name_bytes()
                .map(|l| l.into_owned())
                .unwrap_or_default();
            let mut data = Vec::new();
            e.read_to_end(&mut data)?;
            out.push((path, link, data));
        }
        Ok(out)
    }

    fn header(kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h
    }

    /// A raw entry: `name` in the header, then `data` padded to a block.
    fn raw(out: &mut Vec<u8>, kind: tar::EntryType, name: &[u8], size: u64, data: &[u8]) {
        let mut h = header(kind, size);
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(BLOCK), 0);
    }

    #[test]
    fn archives_read_through_it_as_without_it() {
        let mut b = tar::Builder::new(Vec::new());
        let long = "d/".repeat(300) + "file";
        let mut h = header(tar::EntryType::Regular, 5);
        b.append_data(&mut h, &long, &b"hello"[..]).unwrap();
        let mut h = header(tar::EntryType::Symlink, 0);
        b.append_link(&mut h, "link", "t/".repeat(200) + "target")
            .unwrap();
        b.append_pax_extensions([("path", &b"pax/name"[..]), ("uid", b"7")])
            .unwrap();
        let mut h = header(tar::EntryType::Regular, 3);
        b.append_data(&mut h, "short", &b"abc"[..]).unwrap();
        let mut bytes = b.into_inner().unwrap();
        // A pax size that overrides the header's: the data holds what
        // looks like a header declaring a huge long name, which is data.
        bytes.truncate(bytes.len() - 2 * BLOCK);
        let mut fake = Vec::new();
        raw(
            &mut fake,
            tar::EntryType::GNULongName,
            b"fake",
            1 << 40,
            b"",
        );
        let body = format!(" size={}\n", fake.len());
        let record = format!("{}{body}", body.len() + 2);
        raw(
            &mut bytes,
            tar::EntryType::XHeader,
            b"pax",
            record.len() as u64,
            record.as_bytes(),
        );
        raw(&mut bytes, tar::EntryType::Regular, b"sized", 0, &fake);
        bytes.extend_from_slice(&[0; 2 * BLOCK]);

        let plain = entries(tar::Archive::new(&bytes[..])).unwrap();
        assert_eq!(plain.len(), 4);
        assert_eq!(plain[3].2, fake);
        // One byte at a time too: the framing does not depend on reads.
        struct Bytewise<'a>(&'a [u8]);
        impl Read for Bytewise<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(1).min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        assert_eq!(entries(archive(&bytes[..])).unwrap(), plain);
        assert_eq!(entries(archive(Bytewise(&bytes))).unwrap(), plain);
    }

    #[test]
    fn a_long_name_link_or_pax_header_over_the_bound_is_refused() {
        for kind in [
            tar::EntryType::GNULongName,
            tar::EntryType::GNULongLink,
            tar::EntryType::XHeader,
        ] {
            let mut bytes = Vec::new();
            let big = vec![b'a'; MAX_META as usize + 1];
            raw(&mut bytes, kind, b"././@LongLink", big.len() as u64, &big);
            raw(&mut bytes, tar::EntryType::Regular, b"f", 0, b"");
            bytes.extend_from_slice(&[0; 2 * BLOCK]);
            // The tar crate alone reads it whole.
            assert!(entries(tar::Archive::new(&bytes[..])).is_ok());
            let err = entries(archive(&bytes[..])).unwrap_err();
            assert!(err.to_string().contains("declares 1048577 bytes"), "{err}");
            // At the bound, it is read.
            let mut bytes = Vec::new();
            let name = vec![b'a'; MAX_META as usize];
            raw(&mut bytes, kind, b"././@LongLink", name.len() as u64, &name);
            raw(&mut bytes, tar::EntryType::Regular, b"f", 0, b"");
            bytes.extend_from_slice(&[0; 2 * BLOCK]);
            assert_eq!(entries(archive(&bytes[..])).unwrap().len(), 1);
        }
    }

    /// A tar whose GNU sparse member `name` (its real size 1 byte: one hole)
    /// lists its map in `blocks` extension blocks of empty regions, as a
    /// sparse bomb does; `long` gives it a GNU long name.
    pub(crate) fn sparse_tar(name: &str, blocks: u64, long: bool) -> Vec<u8> {
        let octal = |n: u64| format!("{n:011o}\0").into_bytes();
        let mut out = Vec::new();
        if long {
            let mut n = name.as_bytes().to_vec();
            n.push(0);
            raw(
                &mut out,
                tar::EntryType::GNULongName,
                b"././@LongLink",
                n.len() as u64,
                &n,
            );
        }
        let mut h = header(tar::EntryType::GNUSparse, 0);
        let gnu = h.as_gnu_mut().unwrap();
        let short = &name.as_bytes()[..name.len().min(100)];
        gnu.name[..short.len()].copy_from_slice(short);
        gnu.realsize.copy_from_slice(&octal(1));
        gnu.sparse[0].offset.copy_from_slice(&octal(1));
        gnu.sparse[0].numbytes.copy_from_slice(&octal(0));
        gnu.isextended[0] = 1;
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        let mut ext = [0u8; BLOCK];
        for record in ext[..21 * 24].chunks_mut(24) {
            record[..12].copy_from_slice(&octal(1));
            record[12..].copy_from_slice(&octal(0));
        }
        for i in 0..blocks {
            ext[21 * 24] = u8::from(i + 1 < blocks);
            out.extend_from_slice(&ext);
        }
        raw(&mut out, tar::EntryType::Regular, b"after", 2, b"hi");
        out.extend_from_slice(&[0; 2 * BLOCK]);
        out
    }

    #[test]
    fn a_sparse_map_over_the_bound_is_refused_as_its_blocks_arrive() {
        // At the bound, the member is read: one byte, a hole.
        let bytes = sparse_tar("tool", MAX_SPARSE_BLOCKS, false);
        let seen = entries(archive(&bytes[..])).unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].2, [0]);
        // The tar crate alone takes more, one record per region.
        let bytes = sparse_tar("tool", MAX_SPARSE_BLOCKS + 1, false);
        assert_eq!(entries(tar::Archive::new(&bytes[..])).unwrap().len(), 2);
        for long in [false, true] {
            let name = if long {
                "d/".repeat(80) + "tool"
            } else {
                "bin/tool".into()
            };
            let bytes = sparse_tar(&name, 2 * MAX_SPARSE_BLOCKS, long);
            // The read that brings the block past the bound fails: the
            // blocks after it are never read.
            struct Counted<'a>(&'a [u8], usize);
            impl Read for Counted<'_> {
                fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                    let n = self.0.read(buf)?;
                    self.1 += n;
                    Ok(n)
                }
            }
            let mut r = Counted(&bytes, 0);
            let err = entries(archive(&mut r)).unwrap_err();
            let said = err.to_string();
            assert!(
                said.contains(&format!(
                    "the sparse file {name:?} of the tar has more than 2048 GNU sparse extension blocks"
                )),
                "{said}"
            );
            let headers = if long { 3 } else { 1 };
            assert!(
                r.1 <= (headers + MAX_SPARSE_BLOCKS as usize + 1) * BLOCK,
                "{}",
                r.1
            );
        }
    }
}

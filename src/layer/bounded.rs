//! A tar stream from outside (an archive a recipe extracts from, a base
//! image's layer) whose metadata entries are bounded. The tar crate reads a
//! GNU long name or link and a pax header whole into memory before the entry
//! it describes, so a small tar.gz declaring a 10 GiB long name would take
//! 10 GiB of memory. [`BoundedMeta`] follows the tar's framing as the bytes
//! pass, exactly as the tar crate frames it, and fails the read that brings
//! the header of such an entry over [`MAX_META`].

use std::io::{self, Read};

/// The most a GNU long name or link, or a pax header, may hold. Paths stop
/// at 4 KiB on Linux; pax headers also carry extended attributes.
pub const MAX_META: u64 = 1 << 20;

const BLOCK: usize = 512;

/// A tar archive over `r` whose metadata entries are bounded.
pub fn archive<R: Read>(r: R) -> tar::Archive<BoundedMeta<R>> {
    tar::Archive::new(BoundedMeta::new(r))
}

/// What the next bytes of the stream are.
enum At {
    /// A header block, or a GNU sparse extension block after one.
    Header { extension: bool },
    /// `left` bytes of an entry's data and padding; the first `keep` are a
    /// pax header's, kept in `pax`.
    Data {
        left: u64,
        keep: u64,
        pax: Option<Vec<u8>>,
    },
    /// After the archive's end: the tar crate reads no further.
    End,
}

pub struct BoundedMeta<R> {
    inner: R,
    at: At,
    block: [u8; BLOCK],
    filled: usize,
    /// The size a pax header gave the next entry that is not itself one.
    pax_size: Option<u64>,
    /// The data size of a GNU sparse entry whose extension blocks follow.
    sparse_size: u64,
}

impl<R: Read> BoundedMeta<R> {
    pub fn new(inner: R) -> Self {
        BoundedMeta {
            inner,
            at: At::Header { extension: false },
            block: [0; BLOCK],
            filled: 0,
            pax_size: None,
            sparse_size: 0,
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
                            self.after_extension()
                        } else {
                            self.after_header()?
                        };
                    }
                }
                At::Data { left, keep, pax } => {
                    let n = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len());
                    if let Some(kept) = pax {
                        let k = usize::try_from(*keep).unwrap_or(usize::MAX).min(n);
                        kept.extend_from_slice(&bytes[..k]);
                        *keep -= k as u64;
                    }
                    *left -= n as u64;
                    bytes = &bytes[n..];
                    if *left == 0 {
                        if let Some(kept) = pax.take() {
                            self.pax_size = pax_size(&kept);
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
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "a {what} entry of the tar declares {size} bytes, over the {} KiB such an entry may hold",
                        MAX_META >> 10
                    ),
                ));
            }
            let pax = kind.is_pax_local_extensions().then(Vec::new);
            return Ok(Self::data(size, pax));
        }
        // A pax size is for the next entry that describes no other.
        if !(meta || kind.is_pax_global_extensions()) {
            if let Some(s) = self.pax_size {
                size = s;
            }
        }
        self.pax_size = None;
        if kind.is_gnu_sparse() && header.as_gnu().is_some_and(|g| g.is_extended()) {
            self.sparse_size = size;
            return Ok(At::Header { extension: true });
        }
        Ok(Self::data(size, None))
    }

    /// What follows the GNU sparse extension block in `block`.
    fn after_extension(&mut self) -> At {
        // `isextended` is the byte after 21 sparse records of 24 bytes.
        if self.block[21 * 24] == 1 {
            At::Header { extension: true }
        } else {
            Self::data(self.sparse_size, None)
        }
    }

    /// `size` bytes of data and their padding to a whole block.
    fn data(size: u64, pax: Option<Vec<u8>>) -> At {
        let Some(padded) = size.checked_add(BLOCK as u64 - 1) else {
            // The tar crate refuses a size that overflows.
            return At::End;
        };
        At::Data {
            left: padded & !(BLOCK as u64 - 1),
            keep: size,
            pax,
        }
    }
}

/// The `size` a pax header gives, as the tar crate reads it.
fn pax_size(pax: &[u8]) -> Option<u64> {
    for ext in tar::PaxExtensions::new(pax) {
        let ext = ext.ok()?;
        if ext.key() == Ok("size") {
            return ext.value().ok()?.parse().ok();
        }
    }
    None
}

impl<R: Read> Read for BoundedMeta<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.observe(&buf[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
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
}

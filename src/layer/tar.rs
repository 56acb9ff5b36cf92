//! A deterministic tar writer.
//!
//! Headers are POSIX ustar; a PAX extended header is added only when a value
//! does not fit (path over 100 bytes that cannot be split into prefix/name,
//! link targets over 100 bytes, sizes of 8 GiB and more, ids over 2097151,
//! long user or group names). Times come from the caller; no atime, ctime or
//! xattrs are written. The archive ends with two zero blocks.

use std::io::{self, Read, Write};

use super::super::recipe::{Entry, EntryKind};

const BLOCK: usize = 512;

/// Raised whenever the bytes written for the same entries change (header
/// layout, PAX rules, padding): the layer cache keys on it.
pub const FORMAT_VERSION: u32 = 1;

/// Write the whole archive for `entries` to `out`; `mtime` is used for every
/// entry. `on_bytes` is told of file content bytes as they are written.
pub fn write_archive(
    entries: impl IntoIterator<Item = anyhow::Result<Entry>>,
    mtime: u64,
    out: &mut dyn Write,
    on_bytes: &mut dyn FnMut(u64),
) -> anyhow::Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    for e in entries {
        let e = e?;
        check_names(&e)?;
        write_entry(&e, mtime, out, &mut buf, on_bytes)?;
    }
    Ok(out.write_all(&[0u8; BLOCK * 2])?)
}

/// Every name that goes into a layer stays inside the image: a path (and a
/// hard link's target) is relative, with no empty, `.` or `..` part, and no
/// name holds a NUL byte (a tar header would end the name there). The
/// sources refuse such names where they come from, with their own words;
/// this is the last word for any source, so no layer an unpacker would
/// refuse or follow out of its root is ever written.
fn check_names(e: &Entry) -> anyhow::Result<()> {
    let inside = |p: &[u8]| {
        !p.is_empty()
            && p.split(|&b| b == b'/')
                .all(|part| !matches!(part, b"" | b"." | b".."))
    };
    let path_ok = inside(&e.path) && !e.path.contains(&0);
    let link_ok = match &e.kind {
        EntryKind::Hardlink(t) => inside(t) && !t.contains(&0),
        EntryKind::Symlink(t) => !t.contains(&0),
        _ => true,
    };
    if path_ok && link_ok {
        return Ok(());
    }
    Err(crate::error::bad_input(format!(
        "{:?}: not a name inside the image (an empty, `.` or `..` part, or a NUL byte){}; \
         name the file by a plain path below /",
        String::from_utf8_lossy(&e.path),
        match &e.kind {
            EntryKind::Hardlink(t) | EntryKind::Symlink(t) if !link_ok =>
                format!(", linking to {:?}", String::from_utf8_lossy(t)),
            _ => String::new(),
        }
    )))
}

fn write_entry(
    e: &Entry,
    mtime: u64,
    out: &mut dyn Write,
    buf: &mut [u8],
    on_bytes: &mut dyn FnMut(u64),
) -> anyhow::Result<()> {
    let mut path = e.path.clone();
    let (typeflag, size, link): (u8, u64, &[u8]) = match &e.kind {
        EntryKind::Dir => {
            path.push(b'/');
            (b'5', 0, b"")
        }
        EntryKind::File { size, .. } => (b'0', *size, b""),
        EntryKind::Inline(data) => (b'0', data.len() as u64, b""),
        EntryKind::Hashed { size, .. } => (b'0', *size, b""),
        EntryKind::Symlink(t) => (b'2', 0, t.as_slice()),
        EntryKind::Hardlink(t) => (b'1', 0, t.as_slice()),
    };
    let h = HeaderFields {
        path: &path,
        mode: e.mode,
        uid: e.uid,
        gid: e.gid,
        size,
        mtime,
        typeflag,
        link,
        uname: e.uname.as_bytes(),
        gname: e.gname.as_bytes(),
    };
    write_header(&h, out)?;
    match &e.kind {
        EntryKind::Inline(data) => {
            out.write_all(data)?;
            on_bytes(data.len() as u64);
        }
        EntryKind::Hashed { size, produce, .. } => {
            let mut counted = Counted {
                out: &mut *out,
                n: 0,
                on_bytes,
            };
            (produce.0)(&mut counted)?;
            if counted.n != *size {
                return Err(anyhow::anyhow!(
                    "{}: {} bytes were produced for {size}",
                    String::from_utf8_lossy(&e.path),
                    counted.n
                ));
            }
        }
        EntryKind::File { src, size, .. } => {
            // Planned as a regular file: one replaced since by a named pipe
            // or a device is refused, never waited on.
            let (mut f, _) = crate::input::open_regular(src)
                .map_err(|err| crate::input::opening_source(src, err))?;
            let mut left = *size;
            while left > 0 {
                let want = left.min(buf.len() as u64) as usize;
                let n = f.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(anyhow::anyhow!(
                        "{} shrank while the layer was being built; build again",
                        src.display()
                    ));
                }
                out.write_all(&buf[..n])?;
                on_bytes(n as u64);
                left -= n as u64;
            }
            if f.read(&mut buf[..1])? != 0 {
                return Err(anyhow::anyhow!(
                    "{} grew while the layer was being built; build again",
                    src.display()
                ));
            }
        }
        _ => {}
    }
    let pad = (BLOCK - (size as usize % BLOCK)) % BLOCK;
    Ok(out.write_all(&[0u8; BLOCK][..pad])?)
}

struct HeaderFields<'a> {
    path: &'a [u8],
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    typeflag: u8,
    link: &'a [u8],
    uname: &'a [u8],
    gname: &'a [u8],
}

const MAX_OCTAL_8: u64 = 0o7777777;
const MAX_OCTAL_12: u64 = 0o77777777777;

/// A writer that counts what passes and tells `on_bytes`.
struct Counted<'a> {
    out: &'a mut dyn Write,
    n: u64,
    on_bytes: &'a mut dyn FnMut(u64),
}

impl Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.n += n as u64;
        (self.on_bytes)(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

fn write_header(h: &HeaderFields, out: &mut dyn Write) -> io::Result<()> {
    let mut pax: Vec<(&str, Vec<u8>)> = Vec::new();
    let split = split_path(h.path);
    if split.is_none() {
        pax.push(("path", h.path.to_vec()));
    }
    if h.link.len() > 100 {
        pax.push(("linkpath", h.link.to_vec()));
    }
    if h.size > MAX_OCTAL_12 {
        pax.push(("size", h.size.to_string().into_bytes()));
    }
    if h.uid > MAX_OCTAL_8 {
        pax.push(("uid", h.uid.to_string().into_bytes()));
    }
    if h.gid > MAX_OCTAL_8 {
        pax.push(("gid", h.gid.to_string().into_bytes()));
    }
    if h.uname.len() > 32 {
        pax.push(("uname", h.uname.to_vec()));
    }
    if h.gname.len() > 32 {
        pax.push(("gname", h.gname.to_vec()));
    }
    if h.mtime > MAX_OCTAL_12 {
        pax.push(("mtime", h.mtime.to_string().into_bytes()));
    }
    if !pax.is_empty() {
        if pax.iter().any(|(k, v)| {
            matches!(*k, "path" | "linkpath" | "uname" | "gname") && std::str::from_utf8(v).is_err()
        }) {
            // POSIX: values are UTF-8 unless this record says they are raw bytes.
            pax.insert(0, ("hdrcharset", b"BINARY".to_vec()));
        }
        let mut body = Vec::new();
        for (k, v) in &pax {
            body.extend_from_slice(&pax_record(k, v));
        }
        let name = pax_name(h.path);
        let ph = HeaderFields {
            path: &name,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: body.len() as u64,
            mtime: h.mtime.min(MAX_OCTAL_12),
            typeflag: b'x',
            link: b"",
            uname: b"",
            gname: b"",
        };
        out.write_all(&ustar_block(
            &ph,
            split_path(&name).unwrap_or((b"", b"PaxHeader")),
        ))?;
        out.write_all(&body)?;
        out.write_all(&[0u8; BLOCK][..(BLOCK - body.len() % BLOCK) % BLOCK])?;
    }
    let fallback: (&[u8], &[u8]) = (b"", truncate(h.path, 100));
    let clamped = HeaderFields {
        size: h.size.min(MAX_OCTAL_12),
        uid: h.uid.min(MAX_OCTAL_8),
        gid: h.gid.min(MAX_OCTAL_8),
        mtime: h.mtime.min(MAX_OCTAL_12),
        link: truncate(h.link, 100),
        uname: truncate(h.uname, 32),
        gname: truncate(h.gname, 32),
        ..*h
    };
    out.write_all(&ustar_block(&clamped, split.unwrap_or(fallback)))
}

fn truncate(b: &[u8], n: usize) -> &[u8] {
    &b[..b.len().min(n)]
}

/// Split a path into ustar (prefix, name): name at most 100 bytes, prefix at
/// most 155, split at a `/`.
fn split_path(path: &[u8]) -> Option<(&[u8], &[u8])> {
    if path.len() <= 100 {
        return Some((b"", path));
    }
    // A trailing `/` (directories) must stay in the name part.
    let body = path.strip_suffix(b"/").unwrap_or(path);
    let limit = body.len().min(156);
    let i = body[..limit].iter().rposition(|&b| b == b'/')?;
    let (prefix, name) = (&path[..i], &path[i + 1..]);
    (prefix.len() <= 155 && !name.is_empty() && name.len() <= 100).then_some((prefix, name))
}

/// The name of a PAX header entry, as Go's archive/tar writes it.
fn pax_name(path: &[u8]) -> Vec<u8> {
    let p = path.strip_suffix(b"/").unwrap_or(path);
    let (dir, base) = match p.iter().rposition(|&b| b == b'/') {
        Some(i) => (&p[..i], &p[i + 1..]),
        None => (&b""[..], p),
    };
    let mut name = Vec::new();
    if !dir.is_empty() {
        name.extend_from_slice(dir);
        name.push(b'/');
    }
    name.extend_from_slice(b"PaxHeaders.0/");
    name.extend_from_slice(base);
    let n = name.len().min(100);
    name.truncate(n);
    name
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    // "LEN key=value\n" where LEN counts the whole record, itself included.
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    while len.to_string().len() + rest != len {
        len = len.to_string().len() + rest;
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

fn ustar_block(h: &HeaderFields, (prefix, name): (&[u8], &[u8])) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    b[..name.len()].copy_from_slice(name);
    octal(&mut b[100..108], u64::from(h.mode));
    octal(&mut b[108..116], h.uid);
    octal(&mut b[116..124], h.gid);
    octal(&mut b[124..136], h.size);
    octal(&mut b[136..148], h.mtime);
    b[148..156].copy_from_slice(b"        ");
    b[156] = h.typeflag;
    b[157..157 + h.link.len()].copy_from_slice(h.link);
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    b[265..265 + h.uname.len()].copy_from_slice(h.uname);
    b[297..297 + h.gname.len()].copy_from_slice(h.gname);
    octal(&mut b[329..337], 0);
    octal(&mut b[337..345], 0);
    b[345..345 + prefix.len()].copy_from_slice(prefix);
    let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
    let chk = format!("{sum:06o}\0 ");
    b[148..156].copy_from_slice(chk.as_bytes());
    b
}

/// Zero-padded octal with a trailing NUL, filling `field`.
fn octal(field: &mut [u8], v: u64) {
    let n = field.len() - 1;
    let s = format!("{v:0n$o}");
    field[..n].copy_from_slice(s.as_bytes());
    field[n] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &[u8], kind: EntryKind) -> Entry {
        crate::recipe::entry::test_entry(path, kind)
    }

    fn read_back(bytes: &[u8]) -> Vec<(Vec<u8>, Vec<u8>, u32)> {
        let mut ar = tar::Archive::new(bytes);
        ar.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let path = e.path_bytes().into_owned();
                let link = e
                    .link_name_bytes()
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                let mode = e.header().mode().unwrap();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (path, if link.is_empty() { data } else { link }, mode)
            })
            .collect()
    }

    #[test]
    fn long_names_links_and_binary_names_round_trip() {
        let long_dir = vec![b'd'; 120];
        let mut long_path = long_dir.clone();
        long_path.extend_from_slice(b"/file.txt");
        let unsplittable = vec![b'x'; 180];
        let long_link = vec![b'l'; 150];
        let binary = b"caf\xe9-\xff".to_vec();
        let mut binary_long = vec![b'z'; 200];
        binary_long.extend_from_slice(&binary);
        let entries = vec![
            entry(&long_dir, EntryKind::Dir),
            entry(&long_path, EntryKind::Inline(b"hello".to_vec())),
            entry(&unsplittable, EntryKind::Inline(b"x".to_vec())),
            entry(b"link", EntryKind::Symlink(long_link.clone())),
            entry(&binary, EntryKind::Inline(b"b".to_vec())),
            entry(&binary_long, EntryKind::Inline(b"c".to_vec())),
        ];
        let mut out = Vec::new();
        write_archive(entries.into_iter().map(Ok), 0, &mut out, &mut |_| {}).unwrap();
        assert_eq!(out.len() % 512, 0);
        let got = read_back(&out);
        let mut dir_path = long_dir.clone();
        dir_path.push(b'/');
        assert_eq!(got[0].0, dir_path);
        assert_eq!(got[1], (long_path, b"hello".to_vec(), 0o644));
        assert_eq!(got[2].0, unsplittable);
        assert_eq!(got[3].1, long_link);
        assert_eq!(got[4].0, binary);
        assert_eq!(got[5].0, binary_long);
    }

    /// Figure: a file planned as regular and replaced by a named pipe
    /// before it is written fails the layer at once, naming it; it was
    /// waited on for ever (the thread that writes it is given 60 s here).
    #[test]
    fn a_file_turned_into_a_named_pipe_is_refused_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("data");
        std::fs::write(&src, b"1234").unwrap();
        let stamp = crate::recipe::entry::Stamp::of(&std::fs::metadata(&src).unwrap());
        std::fs::remove_file(&src).unwrap();
        let c = std::ffi::CString::new(src.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let kind = EntryKind::File {
            src: src.clone(),
            size: 4,
            stamp,
        };
        let e = entry(b"data", kind);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let r = write_archive([Ok(e)], 0, &mut Vec::new(), &mut |_| {});
            let _ = tx.send(r.map_err(|e| format!("{e:#}")));
        });
        let err = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the layer waited on the pipe")
            .unwrap_err();
        assert!(err.contains("not a regular file"), "{err}");
        assert!(err.contains(src.to_str().unwrap()), "{err}");
    }

    #[test]
    fn names_that_would_leave_the_image_are_refused_before_anything_is_written() {
        for (path, kind) in [
            (&b"../etc/x"[..], EntryKind::Inline(b"x".to_vec())),
            (b"usr/../../etc/x", EntryKind::Inline(b"x".to_vec())),
            (b"/etc/x", EntryKind::Inline(b"x".to_vec())),
            (b"etc/./x", EntryKind::Inline(b"x".to_vec())),
            (b"etc//x", EntryKind::Inline(b"x".to_vec())),
            (b"etc/..", EntryKind::Inline(b"x".to_vec())),
            (b"", EntryKind::Dir),
            (b"bin/tool\0evil", EntryKind::Inline(b"x".to_vec())),
            (b"bin/l", EntryKind::Hardlink(b"../../etc/shadow".to_vec())),
            (b"bin/l", EntryKind::Symlink(b"a\0b".to_vec())),
        ] {
            let mut out = Vec::new();
            let err = write_archive([Ok(entry(path, kind))], 0, &mut out, &mut |_| {}).unwrap_err();
            assert!(crate::error::is_bad_input(&err), "{path:?}: {err:#}");
            assert!(out.is_empty(), "{path:?}: bytes were written");
        }
        // A symbolic link may point anywhere: it is resolved in the container.
        let mut out = Vec::new();
        let up = entry(b"bin/l", EntryKind::Symlink(b"../../lib/x".to_vec()));
        write_archive([Ok(up)], 0, &mut out, &mut |_| {}).unwrap();
    }

    #[test]
    fn sizes_over_8_gib_and_big_ids_go_to_pax() {
        let size = (8u64 << 30) + 1;
        let h = HeaderFields {
            path: b"big.img",
            mode: 0o644,
            uid: 5_000_000,
            gid: 0,
            size,
            mtime: 0,
            typeflag: b'0',
            link: b"",
            uname: b"",
            gname: b"",
        };
        let mut out = Vec::new();
        write_header(&h, &mut out).unwrap();
        // PAX header, its records, then the ustar header.
        assert_eq!(out.len(), 3 * 512);
        let pax = String::from_utf8_lossy(&out[512..1024]);
        assert!(pax.contains(&format!("size={size}\n")), "{pax}");
        assert!(pax.contains("uid=5000000\n"), "{pax}");
        assert_eq!(out[156], b'x');
        let ustar = tar::Header::from_byte_slice(&out[1024..]);
        assert_eq!(ustar.path_bytes().as_ref(), b"big.img");
        assert_eq!(ustar.entry_type(), tar::EntryType::Regular);
    }

    #[test]
    fn pax_record_length_counts_itself() {
        assert_eq!(pax_record("path", b"abc"), b"12 path=abc\n");
        let r = pax_record("path", &[b'a'; 95]);
        assert_eq!(r.len().to_string(), String::from_utf8_lossy(&r[..3]));
    }

    #[test]
    fn headers_are_ustar_with_fixed_times() {
        let mut out = Vec::new();
        write_archive(
            [Ok(entry(b"a", EntryKind::Inline(vec![])))],
            1_700_000_000,
            &mut out,
            &mut |_| {},
        )
        .unwrap();
        let h = tar::Header::from_byte_slice(&out[..512]);
        assert_eq!(h.mtime().unwrap(), 1_700_000_000);
        assert!(h.as_ustar().is_some());
        assert_eq!(out.len(), 512 * 3);
    }
}

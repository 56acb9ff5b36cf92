//! A zip's entries as its central directory lists them, read beside the zip
//! crate, which makes of some archives what pip (Python's zipfile) and
//! unzip do not:
//!
//! - it keeps the last entry of a name listed twice and does not tell;
//! - it names an entry by its Info-ZIP Unicode Path extra field (0x7075)
//!   when it has one, where pip keeps the name the entry is listed under,
//!   so `b.py` renamed `a.py` there is a second `a.py` to the zip crate;
//! - it reads entries whose data overlap: one record of 1 GiB of zeros
//!   listed a thousand times inflates to a TiB from a 1 MB file;
//! - it reads an entry whose local header names another file than the
//!   central directory does (`TOOL` listed as `tool`), which Python's
//!   zipfile refuses.

use std::collections::HashSet;
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};

/// Why a zip's entries are not what other readers take them for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fault {
    /// A name listed more than once (the zip crate keeps the last copy).
    Repeated(String),
    /// An entry whose Unicode Path extra field gives it another name.
    Renamed { name: String, to: String },
    /// Two entries whose bytes in the archive overlap.
    Overlap(String, String),
    /// An entry whose local header cannot be read.
    Unreadable { name: String, why: String },
    /// An entry whose local header gives it another name.
    Misnamed { name: String, local: String },
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Repeated(name) => write!(f, "{name:?} is listed twice"),
            Fault::Renamed { name, to } => write!(
                f,
                "entry {name:?} is renamed {to:?} by its Unicode Path extra field, which unzip reads and pip does not"
            ),
            Fault::Overlap(a, b) => write!(
                f,
                "entries {a:?} and {b:?} overlap in the zip (as in a zip bomb, which inflates one record many times)"
            ),
            Fault::Unreadable { name, why } => write!(f, "entry {name:?} cannot be read: {why}"),
            Fault::Misnamed { name, local } => write!(
                f,
                "entry {name:?} is named {local:?} in its local header, which pip refuses"
            ),
        }
    }
}

/// The first fault of the zip `zip`, whose file `raw` is (opened again, to
/// read its central directory): a renamed, unreadable, overlapping or
/// misnamed entry first, then a name listed twice (which a caller may let
/// pass when it does not read that name).
pub(crate) fn fault<R: Read + Seek>(
    raw: &File,
    zip: &mut zip::ZipArchive<R>,
) -> io::Result<Option<Fault>> {
    let listed = listed(raw, zip.central_directory_start())?;
    for (_, name, unicode) in &listed {
        if let Some(to) = unicode.iter().find(|u| *u != name) {
            return Ok(Some(Fault::Renamed {
                name: String::from_utf8_lossy(name).into_owned(),
                to: String::from_utf8_lossy(to).into_owned(),
            }));
        }
    }
    // Each entry the zip crate kept: where it is listed, and its bytes
    // (local header and data) in the archive.
    let mut kept = HashSet::new();
    let mut spans = Vec::with_capacity(zip.len());
    let mut misnamed = None;
    for i in 0..zip.len() {
        let name = zip.name_for_index(i).unwrap_or_default().to_string();
        let m = match zip.by_index_raw(i) {
            Ok(m) => m,
            Err(e) => {
                let why = e.to_string();
                return Ok(Some(Fault::Unreadable { name, why }));
            }
        };
        let local = local_name(raw, m.header_start())?;
        if misnamed.is_none() && local != m.name_raw() {
            let local = String::from_utf8_lossy(&local).into_owned();
            misnamed = Some(Fault::Misnamed {
                name: name.clone(),
                local,
            });
        }
        kept.insert(m.central_header_start());
        let end = m.data_start().saturating_add(m.compressed_size());
        spans.push((m.header_start(), end, name));
    }
    spans.sort();
    // The entry reaching furthest so far, and where it ends.
    let mut reach: Option<(u64, &str)> = None;
    for (start, end, name) in &spans {
        match reach {
            Some((far, other)) if *start < far => {
                return Ok(Some(Fault::Overlap(other.to_string(), name.clone())));
            }
            Some((far, _)) if far >= *end => {}
            _ => reach = Some((*end, name)),
        }
    }
    // After overlaps: entries sharing one record are misnamed too.
    if misnamed.is_some() {
        return Ok(misnamed);
    }
    // An entry listed before the last one the zip crate kept, which it did
    // not keep, was replaced by a later entry of its name.
    let last = kept.iter().max().copied().unwrap_or(0);
    for (at, name, _) in &listed {
        if *at < last && !kept.contains(at) {
            return Ok(Some(Fault::Repeated(
                String::from_utf8_lossy(name).into_owned(),
            )));
        }
    }
    Ok(None)
}

/// The name in the local header at `at` of `f` (the zip crate has read
/// that header already, so it is there).
fn local_name(f: &File, at: u64) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt as _;
    let mut header = [0u8; 30];
    f.read_exact_at(&mut header, at)?;
    let mut name = vec![0u8; usize::from(u16::from_le_bytes([header[26], header[27]]))];
    f.read_exact_at(&mut name, at + 30)?;
    Ok(name)
}

/// An entry of a central directory: where it is listed, its name as listed,
/// and the names its Unicode Path extra fields give it.
type Listed = (u64, Vec<u8>, Vec<Vec<u8>>);

/// Each entry of the central directory at `dir_start` of `f`.
fn listed(f: &File, dir_start: u64) -> io::Result<Vec<Listed>> {
    let mut r = BufReader::new(f);
    r.seek(SeekFrom::Start(dir_start))?;
    let mut at = dir_start;
    let mut out = Vec::new();
    let mut header = [0u8; 46];
    // A central directory record: its signature, fixed fields, then the
    // name, extra field and comment of the lengths the fields give.
    while r.read_exact(&mut header).is_ok() && header[..4] == *b"PK\x01\x02" {
        let len = |at: usize| usize::from(u16::from_le_bytes([header[at], header[at + 1]]));
        let mut name = vec![0u8; len(28)];
        r.read_exact(&mut name)?;
        let mut extra = vec![0u8; len(30)];
        r.read_exact(&mut extra)?;
        r.seek_relative(len(32) as i64)?;
        let mut unicode = Vec::new();
        // Extra fields: an id and a length (two bytes each), then the data;
        // a Unicode Path field holds a version byte, a CRC-32, the name.
        let mut rest = &extra[..];
        while let [a, b, c, d, more @ ..] = rest {
            let (id, n) = (
                u16::from_le_bytes([*a, *b]),
                usize::from(u16::from_le_bytes([*c, *d])),
            );
            let Some(data) = more.get(..n) else { break };
            if id == 0x7075 && n >= 5 {
                unicode.push(data[5..].to_vec());
            }
            rest = &more[n..];
        }
        out.push((at, name, unicode));
        at += (46 + len(28) + len(30) + len(32)) as u64;
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An entry of [`raw_zip`]: its name, its bytes (stored), a name for a
    /// Unicode Path extra field, and an earlier entry whose local record it
    /// points at instead of one of its own.
    pub(crate) type Raw<'a> = (&'a str, &'a [u8], Option<&'a str>, Option<usize>);

    /// A zip written by hand, so that entries can share a record or carry a
    /// Unicode Path extra field.
    pub(crate) fn raw_zip(entries: &[Raw]) -> Vec<u8> {
        let (mut out, mut central) = (Vec::new(), Vec::new());
        let mut records: Vec<(u32, u32, u32)> = Vec::new();
        for (name, data, unicode, share) in entries {
            let record = match share {
                Some(i) => records[*i],
                None => {
                    let (at, crc) = (out.len() as u32, crc32fast::hash(data));
                    out.extend(0x04034b50u32.to_le_bytes());
                    out.extend([20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
                    out.extend(crc.to_le_bytes());
                    out.extend((data.len() as u32).to_le_bytes());
                    out.extend((data.len() as u32).to_le_bytes());
                    out.extend((name.len() as u16).to_le_bytes());
                    out.extend(0u16.to_le_bytes());
                    out.extend(name.as_bytes());
                    out.extend(*data);
                    (at, crc, data.len() as u32)
                }
            };
            records.push(record);
            let (at, crc, size) = record;
            let extra: Vec<u8> = unicode.map_or(Vec::new(), |u| {
                let mut e = 0x7075u16.to_le_bytes().to_vec();
                e.extend((5 + u.len() as u16).to_le_bytes());
                e.push(1);
                e.extend(crc32fast::hash(name.as_bytes()).to_le_bytes());
                e.extend(u.as_bytes());
                e
            });
            central.extend(0x02014b50u32.to_le_bytes());
            central.extend([0x1e, 3, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            central.extend(crc.to_le_bytes());
            central.extend(size.to_le_bytes());
            central.extend(size.to_le_bytes());
            central_tail(&mut central, name, &extra, at);
        }
        close_zip(out, &central, entries.len())
    }

    /// The rest of a central directory entry from its name's length on:
    /// no comment, disk 0, a regular file of mode 0644, its local record
    /// at `offset`, then its name and `extra`.
    pub(crate) fn central_tail(central: &mut Vec<u8>, name: &str, extra: &[u8], offset: u32) {
        central.extend((name.len() as u16).to_le_bytes());
        central.extend((extra.len() as u16).to_le_bytes());
        central.extend([0u8; 6]);
        central.extend((0o100644u32 << 16).to_le_bytes());
        central.extend(offset.to_le_bytes());
        central.extend(name.as_bytes());
        central.extend(extra);
    }

    /// The local records `out` followed by the central directory `central`
    /// of `count` entries and its end record.
    pub(crate) fn close_zip(mut out: Vec<u8>, central: &[u8], count: usize) -> Vec<u8> {
        let at = out.len() as u32;
        out.extend(central);
        out.extend(0x06054b50u32.to_le_bytes());
        out.extend([0u8; 4]);
        out.extend((count as u16).to_le_bytes());
        out.extend((count as u16).to_le_bytes());
        out.extend((central.len() as u32).to_le_bytes());
        out.extend(at.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out
    }

    /// The fault of a zip of `entries`, and the names the zip crate reads.
    fn fault_of(entries: &[Raw]) -> (Option<Fault>, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.zip");
        std::fs::write(&path, raw_zip(entries)).unwrap();
        let mut zip = zip::ZipArchive::new(BufReader::new(File::open(&path).unwrap())).unwrap();
        let names = zip.file_names().map(str::to_string).collect();
        (fault(&File::open(&path).unwrap(), &mut zip).unwrap(), names)
    }

    #[test]
    fn entries_the_zip_crate_reads_otherwise_than_pip_are_found() {
        let ok = fault_of(&[
            ("a.py", b"1", None, None),
            ("b.py", b"2", Some("b.py"), None),
        ]);
        assert_eq!(ok, (None, vec!["a.py".into(), "b.py".into()]));
        // `b.py` renamed `a.py`: the zip crate reads one `a.py`, holding "2".
        let renamed = fault_of(&[
            ("a.py", b"1", None, None),
            ("b.py", b"2", Some("a.py"), None),
        ]);
        let to = Fault::Renamed {
            name: "b.py".into(),
            to: "a.py".into(),
        };
        assert_eq!(renamed, (Some(to), vec!["a.py".into()]));
        let twice = fault_of(&[("a.py", b"1", None, None), ("a.py", b"2", None, None)]);
        assert_eq!(twice.0, Some(Fault::Repeated("a.py".into())));
        // Three entries on one record: each would inflate it again.
        let bomb = fault_of(&[
            ("z0", &[0; 64], None, None),
            ("z1", b"", None, Some(0)),
            ("m", b"m", None, None),
            ("z2", b"", None, Some(0)),
        ]);
        assert_eq!(bomb.1.len(), 4);
        assert_eq!(bomb.0, Some(Fault::Overlap("z0".into(), "z1".into())));
    }

    /// Figure: `tool` listed in the central directory, `TOOL` in its local
    /// header (as Python's zipfile would refuse it) is found.
    #[test]
    fn a_local_header_naming_another_file_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.zip");
        let mut bytes = raw_zip(&[("a.py", b"1", None, None), ("tool", b"x", None, None)]);
        let local = bytes.windows(4).rposition(|w| w == b"tool").unwrap();
        let at = bytes.windows(4).position(|w| w == b"tool").unwrap();
        assert!(at < local);
        bytes[at..at + 4].copy_from_slice(b"TOOL");
        std::fs::write(&path, bytes).unwrap();
        let mut zip = zip::ZipArchive::new(BufReader::new(File::open(&path).unwrap())).unwrap();
        let found = fault(&File::open(&path).unwrap(), &mut zip).unwrap();
        let misnamed = Fault::Misnamed {
            name: "tool".into(),
            local: "TOOL".into(),
        };
        assert_eq!(found, Some(misnamed));
    }
}

//! Installing a wheel (PEP 427, PEP 491) as pip does, without running
//! anything: where each member goes, which files are generated, and what
//! the regenerated `RECORD` says.
//!
//! - the root and `.data/purelib`, `.data/platlib` go to site-packages;
//!   `.data/scripts` to the scripts directory (a `#!python` first line
//!   becomes the image's interpreter), `.data/headers` to
//!   `include/pythonX.Y/<name>`, `.data/data` to the prefix;
//! - `console_scripts` and `gui_scripts` entry points become pip's
//!   launcher scripts (mode 0755);
//! - `INSTALLER` says `boxwright`; `RECORD` lists every file written with
//!   its sha256 (urlsafe base64, no padding) and size, paths relative to
//!   site-packages; no `.pyc` is written;
//! - a member keeps its bytes and, like pip, gets 0755 when the zip marks
//!   it executable, else 0644.
//!
//! Members are not extracted anywhere: the plan keeps their index in the
//! zip, with their sha256 and size from the wheel's own `RECORD` (members it
//! does not hash are decompressed to hash them), and [`write()`]
//! decompresses one into the layer when it is written and checks it against
//! both.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use sha2::{Digest as _, Sha256};

use super::archive::MAX_UNPACKED;
use super::zip_entries::Fault;
use crate::error::bad_input;
use crate::oci::{Digest, Hashing};
use record::{b64, csv, hash, wheel_record};

/// Where a wheel's parts go in the image (paths without the leading `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheme {
    pub site_packages: String,
    pub scripts: String,
    /// `PREFIX/include/pythonX.Y`; a package's headers go below, in a directory named after it.
    pub include: String,
    pub data: String,
    /// The shebang interpreter of scripts, an absolute path.
    pub interpreter: String,
}

/// Where a file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// Member `index` of the wheel's zip, as it is: `size` bytes with this
    /// sha256 (both taken when the install was planned: from the wheel's
    /// `RECORD` when `recorded`, else from the member's bytes).
    Member {
        index: usize,
        size: u64,
        sha256: [u8; 32],
        recorded: bool,
    },
    /// Made here: launchers, rewritten scripts, `INSTALLER`, `RECORD`.
    Bytes(Vec<u8>),
}

/// One file an install writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledFile {
    /// Path in the image, without the leading `/`.
    pub path: String,
    pub mode: u32,
    pub content: Content,
}

/// A wheel's install: the files it writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub wheel: PathBuf,
    pub files: Vec<InstalledFile>,
}

/// A wheel's zip, open.
pub type Zip = zip::ZipArchive<BufReader<File>>;

/// Open a wheel's zip. One that holds a name twice is refused: which copy
/// pip would install is the last, which the `RECORD` may not describe. So
/// is one whose entries the zip crate reads otherwise than pip does
/// (overlapping entries, names changed by a Unicode Path field).
pub fn open(wheel: &Path) -> Result<Zip> {
    let f = File::open(wheel).with_context(|| format!("opening {}", wheel.display()))?;
    let raw = f.try_clone()?;
    let mut zip = zip::ZipArchive::new(BufReader::new(f))
        .map_err(|e| bad_input(format!("{}: not a wheel: {e}", wheel.display())))?;
    let fault = super::zip_entries::fault(&raw, &mut zip)
        .with_context(|| format!("reading {}", wheel.display()))?;
    match fault {
        Some(Fault::Repeated(name)) => Err(bad_input(format!(
            "{}: member {name:?} is in the wheel twice; build the wheel again",
            wheel.display()
        ))),
        Some(fault) => Err(bad_input(format!(
            "{}: {fault}; the wheel is damaged or hostile, build it again",
            wheel.display()
        ))),
        None => Ok(zip),
    }
}

/// Write the bytes of `file` of `wheel` to `out`, decompressing its member
/// from the wheel's open zip `zip` as it goes: never held whole, never more
/// than planned.
pub fn write(wheel: &Path, zip: &mut Zip, file: &InstalledFile, out: &mut dyn Write) -> Result<()> {
    match &file.content {
        Content::Bytes(b) => Ok(out.write_all(b)?),
        Content::Member {
            index,
            size,
            sha256,
            recorded,
        } => {
            let mut m = zip.by_index(*index)?;
            let mut hashed = Hashing::new(out);
            // Never more than planned (the size the zip declares) plus
            // one byte, to tell a member that inflates to more.
            let n = io::copy(&mut (&mut m).take(*size + 1), &mut hashed)
                .with_context(|| format!("reading {}", m.name()))?;
            if let Some(got) = super::held_otherwise(n, *size) {
                return Err(bad_input(format!(
                        "{}: member {:?} inflates to {got} bytes, but the zip declares {size}; the wheel is damaged or hostile, build it again",
                        wheel.display(),
                        m.name()
                    )));
            }
            // The layer's cache key and RECORD were taken from the plan's
            // hash (the wheel's RECORD, or the bytes it read): a member
            // that differs must not go into the layer.
            if hashed.digest() != Digest::from_sha256(*sha256) {
                let (wheel, name) = (wheel.display(), m.name());
                return Err(if *recorded {
                    bad_input(format!(
                        "{wheel}: member {name} does not match the sha256 the wheel's RECORD says \
                         (the wheel is damaged or hostile, or changed while building): build it again"
                    ))
                } else {
                    anyhow!(
                        "{wheel}: member {name} does not match the sha256 and size its install was \
                         planned with (the wheel changed while building)"
                    )
                });
            }
            Ok(())
        }
    }
}

/// Plan the install of `wheel` (whose distribution is `dist`, as in its file name).
pub fn plan(wheel: &Path, dist: &str, scheme: &Scheme) -> Result<Installed> {
    let what = || wheel.display().to_string();
    let mut zip = open(wheel)?;
    let info_dir = info_dir(&zip, dist).map_err(|why| {
        bad_input(format!(
            "{}: {why}; the wheel is damaged or hostile, build it again",
            what()
        ))
    })?;
    let data_dir = format!("{}.data", info_dir.trim_end_matches(".dist-info"));
    let recorded = wheel_record(&mut zip, &info_dir);
    let mut files = Vec::new();
    // What asks for each file, for errors.
    let mut origins = Vec::new();
    let mut record = Vec::new();
    let mut entry_points = None;
    let mut unpacked = 0u64;
    for i in 0..zip.len() {
        let mut m = zip.by_index(i)?;
        let name = m.name().to_string();
        let path = match name.strip_suffix('/') {
            Some(dir) if m.is_dir() => dir,
            _ => &name,
        };
        if let Some(why) = unsafe_member(path) {
            return Err(bad_input(format!(
                "{}: member {name:?} {why}; the wheel is damaged or hostile, build it again",
                what()
            )));
        }
        if m.is_dir() {
            continue;
        }
        if m.size() > MAX_MEMBER {
            return Err(bad_input(format!(
                "{}: member {name:?} declares {} bytes; a wheel member is at most {MAX_MEMBER} (4 GiB)",
                what(),
                m.size()
            )));
        }
        unpacked = unpacked.saturating_add(m.size());
        if unpacked > MAX_UNPACKED {
            return Err(bad_input(format!(
                "{}: the members declare more than {} GiB in all; the wheel is damaged or hostile",
                what(),
                MAX_UNPACKED >> 30
            )));
        }
        if name == format!("{info_dir}/RECORD") || name == format!("{info_dir}/INSTALLER") {
            continue;
        }
        // pip's test: a regular file's mode with an executable bit (a
        // mode without a file type, or a symlink's, is not executable).
        let exec = m
            .unix_mode()
            .is_some_and(|mode| mode & 0o111 != 0 && mode & 0o170000 == 0o100000);
        let mode = if exec { 0o755 } else { 0o644 };
        let (dest, script) = destination(&name, &data_dir, dist, scheme)
            .map_err(|msg| bad_input(format!("{}: {msg}", what())))?;
        let is_entry_points = name == format!("{info_dir}/entry_points.txt");
        // A member the wheel's RECORD hashes is taken at its word here, not
        // decompressed: it is checked against that hash when it is written.
        if let (false, false, Some(&(sha256, size))) =
            (script, is_entry_points, recorded.get(&name))
        {
            if size == m.size() {
                record.push((dest.clone(), b64(&sha256), size as usize));
                origins.push(format!("member {name:?}"));
                files.push(InstalledFile {
                    path: dest,
                    mode,
                    content: Content::Member {
                        index: i,
                        size,
                        sha256,
                        recorded: true,
                    },
                });
                continue;
            }
        }
        // Decompressed to hash it, never past the size its zip header
        // declares: a member that inflates to more (or fewer) bytes is
        // refused. Only what is read as text is kept: entry_points.txt and
        // a `#!python` script.
        let declared = m.size();
        let unreadable =
            |e: std::io::Error| bad_input(format!("{}: reading member {name:?}: {e}", what()));
        let mut r = (&mut m).take(declared + 1);
        let mut head = [0u8; 8];
        let n = read_full(&mut r, &mut head).map_err(unreadable)?;
        let keep = is_entry_points || (script && head[..n].starts_with(b"#!python"));
        let (count, mut sha256, kept) = if keep {
            if declared > MAX_TEXT {
                return Err(bad_input(format!(
                    "{}: member {name:?} declares {declared} bytes; an entry_points.txt or #!python script is at most {MAX_TEXT}",
                    what()
                )));
            }
            let mut bytes = head[..n].to_vec();
            r.read_to_end(&mut bytes).map_err(unreadable)?;
            let sha: [u8; 32] = Sha256::digest(&bytes).into();
            (bytes.len() as u64, sha, Some(bytes))
        } else {
            let mut h = Sha256::new();
            h.update(&head[..n]);
            let rest = std::io::copy(&mut r, &mut h).map_err(unreadable)?;
            (n as u64 + rest, h.finalize().into(), None)
        };
        if let Some(got) = super::held_otherwise(count, declared) {
            return Err(bad_input(format!(
                "{}: member {name:?} inflates to {got} bytes, but the zip declares {declared}; the wheel is damaged or hostile, build it again",
                what()
            )));
        }
        let mut content = Content::Member {
            index: i,
            size: declared,
            sha256,
            recorded: false,
        };
        let mut size = declared;
        if let Some(bytes) = kept {
            if is_entry_points {
                entry_points = Some(String::from_utf8_lossy(&bytes).into_owned());
            }
            if let Some(fixed) = script
                .then(|| fix_script(&bytes, &scheme.interpreter))
                .flatten()
            {
                sha256 = Sha256::digest(&fixed).into();
                size = fixed.len() as u64;
                content = Content::Bytes(fixed);
            }
        }
        record.push((dest.clone(), b64(&sha256), size as usize));
        origins.push(format!("member {name:?}"));
        files.push(InstalledFile {
            path: dest,
            mode,
            content,
        });
    }
    for (name, text) in launchers(entry_points.as_deref().unwrap_or(""), &scheme.interpreter)
        .map_err(|msg| bad_input(format!("{}: {msg}", what())))?
    {
        let dest = format!("{}/{name}", scheme.scripts);
        record.push((dest.clone(), hash(text.as_bytes()), text.len()));
        origins.push(format!("the script {name:?} of entry_points.txt"));
        files.push(InstalledFile {
            path: dest,
            mode: 0o755,
            content: Content::Bytes(text.into_bytes()),
        });
    }
    let info = format!("{}/{info_dir}", scheme.site_packages);
    let installer = b"boxwright\n".to_vec();
    record.push((
        format!("{info}/INSTALLER"),
        hash(&installer),
        installer.len(),
    ));
    origins.push("the INSTALLER an install writes".to_string());
    files.push(InstalledFile {
        path: format!("{info}/INSTALLER"),
        mode: 0o644,
        content: Content::Bytes(installer),
    });
    let record_path = format!("{info}/RECORD");
    let mut rows: Vec<String> = record
        .iter()
        .map(|(p, h, n)| {
            format!(
                "{},sha256={h},{n}",
                csv(&relative(&scheme.site_packages, p))
            )
        })
        .collect();
    rows.push(format!(
        "{},,",
        csv(&relative(&scheme.site_packages, &record_path))
    ));
    rows.sort();
    let text = rows.iter().map(|r| format!("{r}\n")).collect::<String>();
    origins.push("the RECORD an install writes".to_string());
    files.push(InstalledFile {
        path: record_path,
        mode: 0o644,
        content: Content::Bytes(text.into_bytes()),
    });
    if let Some(clash) = clash(&files, &origins) {
        return Err(bad_input(format!(
            "{}: {clash}; the wheel is broken, build it again",
            what()
        )));
    }
    Ok(Installed {
        wheel: wheel.to_path_buf(),
        files,
    })
}

/// The wheel's one `.dist-info` directory, which must be of `dist`, as pip
/// and uv require: another one's `RECORD` and `INSTALLER` would be installed
/// as they are, and the image would say another package is there.
fn info_dir(zip: &Zip, dist: &str) -> Result<String, String> {
    let tops: std::collections::BTreeSet<&str> = zip
        .file_names()
        .filter_map(|n| n.split('/').next())
        .filter(|top| top.ends_with(".dist-info"))
        .collect();
    let dir = match Vec::from_iter(tops).as_slice() {
        [] => return Err("no .dist-info directory".to_string()),
        [dir] => dir.to_string(),
        more => {
            let names: Vec<String> = more.iter().map(|d| format!("{d:?}")).collect();
            return Err(format!(
                "it has more than one .dist-info directory: {}",
                names.join(", ")
            ));
        }
    };
    let name = dir.trim_end_matches(".dist-info");
    let name = name.rsplit_once('-').map_or(name, |(n, _)| n);
    if super::tags::normalize(name) != super::tags::normalize(dist) {
        return Err(format!("its .dist-info directory {dir:?} is not of {dist}"));
    }
    Ok(dir)
}

/// Two files of one install at one path, or a file at a path another
/// needs to be a directory: what says so, by the files' `origins`.
fn clash(files: &[InstalledFile], origins: &[String]) -> Option<String> {
    let mut at: HashMap<&str, usize> = HashMap::new();
    for (i, f) in files.iter().enumerate() {
        if let Some(j) = at.insert(&f.path, i) {
            return Some(format!(
                "{} and {} both install /{}",
                origins[j], origins[i], f.path
            ));
        }
    }
    for (i, f) in files.iter().enumerate() {
        for (k, _) in f.path.match_indices('/') {
            if let Some(&j) = at.get(&f.path[..k]) {
                return Some(format!(
                    "/{} is both a file ({}) and a directory ({})",
                    &f.path[..k],
                    origins[j],
                    origins[i]
                ));
            }
        }
    }
    None
}

/// The largest member taken, as its zip declares it (the limit of a download).
const MAX_MEMBER: u64 = super::fetch::MAX_SIZE;

/// The largest member read whole, as text: an entry_points.txt, a script
/// whose `#!python` line is rewritten.
const MAX_TEXT: u64 = 16 << 20;

/// The most `console_scripts` and `gui_scripts` of one wheel: each is a
/// launcher of some 300 bytes held while planning, and a 16 MiB
/// entry_points.txt (a few KiB deflated) could declare two million.
const MAX_SCRIPTS: usize = 10_000;

/// Read into `buf` until it is full or the reader ends; the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Why member name `name` (without a directory's trailing `/`) cannot be
/// installed, if it cannot: it must be a relative path of plain parts.
fn unsafe_member(name: &str) -> Option<&'static str> {
    if name.contains('\0') {
        Some("has a NUL byte in its name")
    } else if name.contains('\\') {
        Some("has a backslash in its name")
    } else if name.starts_with('/') || name.split('/').any(|c| c == ".." || c.is_empty()) {
        Some("escapes its directory")
    } else if name.split('/').any(|c| c == ".") {
        Some("has a `.` path part")
    } else {
        None
    }
}

/// Where member `name` goes, and whether it is a script (shebang rewritten).
fn destination(
    name: &str,
    data_dir: &str,
    dist: &str,
    s: &Scheme,
) -> Result<(String, bool), String> {
    let Some(rest) = name
        .strip_prefix(data_dir)
        .and_then(|r| r.strip_prefix('/'))
    else {
        return Ok((format!("{}/{name}", s.site_packages), false));
    };
    let (key, path) = rest
        .split_once('/')
        .ok_or(format!("{name:?} is not in a .data scheme"))?;
    Ok(match key {
        "purelib" | "platlib" => (format!("{}/{path}", s.site_packages), false),
        "scripts" => (format!("{}/{path}", s.scripts), true),
        "headers" => (format!("{}/{dist}/{path}", s.include), false),
        "data" => (join(&s.data, path), false),
        other => return Err(format!("{name:?}: unknown .data scheme {other:?}")),
    })
}

fn join(dir: &str, path: &str) -> String {
    if dir.is_empty() {
        path.to_string()
    } else {
        format!("{dir}/{path}")
    }
}

/// pip's rewrite: a first line starting `#!python` becomes `#!INTERPRETER`.
fn fix_script(bytes: &[u8], interpreter: &str) -> Option<Vec<u8>> {
    if !bytes.starts_with(b"#!python") {
        return None;
    }
    let rest = match bytes.iter().position(|&b| b == b'\n') {
        Some(i) => &bytes[i + 1..],
        None => &[],
    };
    let mut out = format!("#!{interpreter}\n").into_bytes();
    out.extend_from_slice(rest);
    Some(out)
}

/// pip's launchers for the `console_scripts` and `gui_scripts` of an
/// `entry_points.txt`: (file name, content).
fn launchers(text: &str, interpreter: &str) -> Result<Vec<(String, String)>, String> {
    let mut section = "";
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = s.trim();
            continue;
        }
        if section != "console_scripts" && section != "gui_scripts" {
            continue;
        }
        if out.len() == MAX_SCRIPTS {
            return Err(format!(
                "entry_points.txt declares more than {MAX_SCRIPTS} scripts; the wheel is damaged or hostile"
            ));
        }
        let (name, value) = line
            .split_once('=')
            .ok_or(format!("entry point line {line:?} has no `=`"))?;
        let value = value.split('[').next().unwrap_or(value).trim();
        let (module, attr) = value
            .split_once(':')
            .map(|(m, a)| (m.trim(), a.trim()))
            .filter(|(m, a)| !m.is_empty() && !a.is_empty())
            .ok_or(format!("entry point {value:?} needs module:function"))?;
        let name = name.trim();
        if name.is_empty()
            || name == "."
            || name == ".."
            || name
                .chars()
                .any(|c| c == '/' || c == '\\' || c.is_control())
        {
            return Err(format!(
                "script name {name:?} (entry point line {line:?}) is not a file name"
            ));
        }
        let dotted = |s: &str| {
            s.split('.').all(|part| {
                !part.is_empty() && part.chars().all(|c| c == '_' || c.is_alphanumeric())
            })
        };
        if !dotted(module) || !dotted(attr) {
            return Err(format!(
                "entry point {value:?} is not module:function (dotted Python names)"
            ));
        }
        let import = attr.split('.').next().unwrap_or(attr);
        out.push((
            name.to_string(),
            format!(
                "#!{interpreter}\n# -*- coding: utf-8 -*-\nimport re\nimport sys\nfrom {module} import {import}\nif __name__ == '__main__':\n    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n    sys.exit({attr}())\n"
            ),
        ));
    }
    Ok(out)
}

/// `path` relative to directory `base` (both image paths without `/`).
fn relative(base: &str, path: &str) -> String {
    let b: Vec<&str> = base.split('/').filter(|c| !c.is_empty()).collect();
    let p: Vec<&str> = path.split('/').collect();
    let common = b.iter().zip(&p).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<&str> = vec![".."; b.len() - common];
    parts.extend(&p[common..]);
    parts.join("/")
}

mod record;
#[cfg(test)]
mod tests;

//! Files a user points boxwright at (recipes, lock files, keys, CA bundles,
//! auth files, SBOMs, `file:` sources): taken only when they are regular
//! files, opened without blocking (a named pipe or a device is refused with
//! what it is, never waited on) and read up to a cap, so that no input can
//! hang a command or fill its memory. Symbolic links are followed: users
//! link their configuration files.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Caps by kind of input: far above any real one, far below what would
/// strain memory.
pub const MAX_RECIPE: u64 = 4 << 20;
pub const MAX_LOCK: u64 = 16 << 20;
pub const MAX_KEY: u64 = 64 << 10;
pub const MAX_CA_FILE: u64 = 16 << 20;
pub const MAX_AUTH_FILE: u64 = 4 << 20;
pub const MAX_SBOM: u64 = 64 << 20;

/// Open `path` for reading if it is a regular file. Errors are the I/O
/// error's kind (a missing file stays `NotFound`), with a message that says
/// what was found instead of a regular file.
pub fn open_regular(path: &Path) -> io::Result<(File, Metadata)> {
    open_file(path, 0)
}

/// A file of boxwright's own (in a cache), opened as [`open_regular`]
/// does but never through a symbolic link: none is put there but by hand.
pub fn open_own(path: &Path) -> io::Result<(File, Metadata)> {
    open_file(path, libc::O_NOFOLLOW)
}

fn open_file(path: &Path, flags: i32) -> io::Result<(File, Metadata)> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(flags | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("it is {}, not a regular file", kind_of(&meta)),
        ));
    }
    Ok((file, meta))
}

/// The error of opening `path`, a file of the build context, to read it
/// into a layer: one the user running the build may not read is bad input
/// (as an unreadable directory is when the context is walked).
pub fn opening_source(path: &Path, err: io::Error) -> anyhow::Error {
    if err.kind() == io::ErrorKind::PermissionDenied {
        crate::error::bad_input(format!(
            "{} cannot be read: {err}; make it readable by the user running the build, or exclude it",
            path.display()
        ))
    } else {
        anyhow::Error::new(err).context(format!("opening {}", path.display()))
    }
}

/// The whole of the regular file `path`, if it holds at most `cap` bytes.
pub fn read_capped(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    let (file, meta) = open_regular(path)?;
    let too_big = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("it is larger than {cap} bytes, the most accepted here"),
        )
    };
    if meta.len() > cap {
        return Err(too_big());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(too_big());
    }
    Ok(bytes)
}

/// [`read_capped`] as UTF-8 text.
pub fn read_capped_string(path: &Path, cap: u64) -> io::Result<String> {
    String::from_utf8(read_capped(path, cap)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "it is not UTF-8 text"))
}

/// What a file is, for messages that refuse it ("it is a named pipe").
pub fn kind_of(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a named pipe (FIFO)"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device file"
    } else if t.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_cap_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"12345").unwrap();
        assert_eq!(read_capped(&file, 5).unwrap(), b"12345");
        let err = read_capped(&file, 4).unwrap_err();
        assert!(err.to_string().contains("larger than 4 bytes"), "{err}");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(read_capped(&link, 5).unwrap(), b"12345");

        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = read_capped(&fifo, 5).unwrap_err();
        assert!(err.to_string().contains("a named pipe"), "{err}");
        let err = read_capped(dir.path(), 5).unwrap_err();
        assert!(err.to_string().contains("a directory"), "{err}");
        let err = read_capped(Path::new("/dev/zero"), 5).unwrap_err();
        assert!(err.to_string().contains("a device"), "{err}");
        let err = read_capped(&dir.path().join("missing"), 5).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        std::fs::write(&file, [0xff, 0xfe]).unwrap();
        assert!(read_capped_string(&file, 5).is_err());
    }
}

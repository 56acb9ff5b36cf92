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
        said.starts_with("https://x/a: extracting \"tool\": entry \"other\" is renamed \"tool\"")
            && said.ends_with("the zip is damaged or hostile, extract from another"),
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

/// A cache restored from elsewhere may hold a link, or a directory,
/// where a member's record or blob is written: the file outside is not
/// written through, and the member is extracted all the same.
#[test]
fn a_link_or_a_directory_where_a_record_goes_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let cache = BlobCache::new(Some(dir.path().join("c"))).unwrap();
    let path = dir.path().join("a.tar");
    fs::write(&path, tar_bytes("bin/tool", b"tool\n", 0o755)).unwrap();
    let d = Digest::of(b"stand-in");
    let records = cache.root().join("members").join(d.hex());
    fs::create_dir_all(&records).unwrap();
    let record = records.join(hex::encode(Sha256::digest(b"bin/tool")));
    let outside = dir.path().join("outside");
    fs::write(&outside, b"keep").unwrap();
    std::os::unix::fs::symlink(&outside, &record).unwrap();
    let tool = extract(&cache, &path, &d, "bin/tool", "u").unwrap();
    assert_eq!(fs::read(&outside).unwrap(), b"keep");
    assert!(fs::symlink_metadata(&record).unwrap().is_file());

    fs::remove_file(&record).unwrap();
    fs::create_dir_all(record.join("inner")).unwrap();
    fs::remove_file(&tool.path).unwrap();
    fs::create_dir_all(tool.path.join("inner")).unwrap();
    assert_eq!(extract(&cache, &path, &d, "bin/tool", "u").unwrap(), tool);
    assert_eq!(fs::read(&tool.path).unwrap(), b"tool\n");
    assert_eq!(extract(&cache, &path, &d, "bin/tool", "u").unwrap(), tool);

    // The archive's directory of records a link elsewhere: refused, naming
    // it, and nothing written there.
    let elsewhere = dir.path().join("elsewhere");
    fs::create_dir_all(&elsewhere).unwrap();
    fs::remove_dir_all(&records).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &records).unwrap();
    let err = extract(&cache, &path, &d, "bin/tool", "u").unwrap_err();
    assert!(crate::error::is_bad_input(&err), "{err:#}");
    assert!(
        err.to_string().contains(&*records.to_string_lossy()),
        "{err:#}"
    );
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
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

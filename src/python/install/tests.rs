use super::*;
use crate::python::zip_entries::tests::{central_tail, close_zip};

/// A scheme with short directory names.
fn short_scheme() -> Scheme {
    Scheme {
        site_packages: "sp".into(),
        scripts: "bin".into(),
        include: "include".into(),
        data: "".into(),
        interpreter: "/usr/bin/python3".into(),
    }
}

/// The bytes [`write`] gives for `file` of `inst`.
fn read(inst: &Installed, zip: &mut Zip, file: &InstalledFile) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    write(&inst.wheel, zip, file, &mut out)?;
    Ok(out)
}

#[test]
fn a_member_that_is_not_what_was_planned_is_refused() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let wheel = dir.path().join("demo-1.0-py3-none-any.whl");
    let write = |body: &[u8]| {
        let mut z = zip::ZipWriter::new(File::create(&wheel).unwrap());
        let o = zip::write::SimpleFileOptions::default();
        z.start_file("demo/__init__.py", o).unwrap();
        z.write_all(body).unwrap();
        z.start_file("demo-1.0.dist-info/METADATA", o).unwrap();
        z.write_all(b"Name: demo\n").unwrap();
        z.finish().unwrap();
    };
    write(b"x = 1\n");
    let scheme = Scheme {
        site_packages: "usr/lib/sp".into(),
        scripts: "usr/bin".into(),
        include: "usr/include".into(),
        data: "usr".into(),
        interpreter: "/usr/bin/python3".into(),
    };
    let inst = plan(&wheel, "demo", &scheme).unwrap();
    let file = inst
        .files
        .iter()
        .find(|f| f.path.ends_with("demo/__init__.py"))
        .unwrap();
    let bytes = |inst: &Installed| read(inst, &mut open(&wheel).unwrap(), file);
    assert_eq!(bytes(&inst).unwrap(), b"x = 1\n");
    // Hashed from its bytes (no RECORD): a wheel that changed since, not
    // bad input.
    write(b"x = 2\n");
    let err = bytes(&inst).unwrap_err();
    assert!(!crate::error::is_bad_input(&err), "{err:#}");
    let err = format!("{err:#}");
    assert!(err.contains("does not match the sha256"), "{err}");
}

#[test]
fn a_members_hash_comes_from_the_wheels_record_and_is_checked_when_read() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let wheel = dir.path().join("demo-1.0-py3-none-any.whl");
    let write = |body: &[u8], record: &str| {
        let mut z = zip::ZipWriter::new(File::create(&wheel).unwrap());
        let o = zip::write::SimpleFileOptions::default();
        z.start_file("demo/a,b.py", o).unwrap();
        z.write_all(body).unwrap();
        z.start_file("demo-1.0.dist-info/RECORD", o).unwrap();
        z.write_all(record.as_bytes()).unwrap();
        z.finish().unwrap();
    };
    let scheme = short_scheme();
    let row = |body: &[u8]| {
        format!(
            "\"demo/a,b.py\",sha256={},{}\ndemo-1.0.dist-info/RECORD,,\n",
            hash(body),
            body.len()
        )
    };
    let member = |inst: &Installed| {
        inst.files
            .iter()
            .find(|f| f.path == "sp/demo/a,b.py")
            .cloned()
            .unwrap()
    };
    // An honest RECORD: its hash is the plan's, and the member reads.
    write(b"x = 1\n", &row(b"x = 1\n"));
    let inst = plan(&wheel, "demo", &scheme).unwrap();
    let f = member(&inst);
    let expected: [u8; 32] = Sha256::digest(b"x = 1\n").into();
    assert!(matches!(f.content, Content::Member { sha256, .. } if sha256 == expected));
    assert_eq!(
        read(&inst, &mut open(&wheel).unwrap(), &f).unwrap(),
        b"x = 1\n"
    );
    // A RECORD that lies about a member of the same size: planned from
    // the RECORD, refused when the member is read.
    write(b"x = 2\n", &row(b"x = 1\n"));
    let inst = plan(&wheel, "demo", &scheme).unwrap();
    // That is bad input (exit 2), as a member inflating past its size is.
    let err = read(&inst, &mut open(&wheel).unwrap(), &member(&inst)).unwrap_err();
    assert!(
        format!("{err:#}").contains("the sha256 the wheel's RECORD says"),
        "{err:#}"
    );
    assert!(crate::error::is_bad_input(&err), "{err:#}");
    // A RECORD whose size is not the member's is not trusted: hashed.
    write(b"x = 22\n", &row(b"x = 1\n"));
    let inst = plan(&wheel, "demo", &scheme).unwrap();
    let f = member(&inst);
    assert_eq!(
        read(&inst, &mut open(&wheel).unwrap(), &f).unwrap(),
        b"x = 22\n"
    );
}

#[test]
fn paths_relative_to_site_packages() {
    let sp = "usr/local/lib/python3.11/site-packages";
    assert_eq!(relative(sp, "usr/local/bin/x"), "../../../bin/x");
    assert_eq!(relative(sp, &format!("{sp}/a/b.py")), "a/b.py");
    assert_eq!(csv("a,b"), "\"a,b\"");
}

#[test]
fn scripts_and_launchers_get_the_image_interpreter() {
    let fixed = fix_script(b"#!python -u\nprint(1)\n", "/usr/bin/python3.11").unwrap();
    assert_eq!(fixed, b"#!/usr/bin/python3.11\nprint(1)\n");
    assert!(fix_script(b"#!/bin/sh\n", "/x").is_none());
    let l = launchers(
        "[console_scripts]\ndemo = demo.cli:main.run [extra]\n[other]\nx = y:z\n",
        "/p",
    )
    .unwrap();
    assert_eq!(l.len(), 1);
    assert!(l[0].1.starts_with("#!/p\n") && l[0].1.contains("from demo.cli import main\n"));
    assert!(l[0].1.contains("sys.exit(main.run())"));
    assert!(launchers("[console_scripts]\nbad = nocolon\n", "/p").is_err());
}

#[test]
fn a_script_name_that_is_not_a_file_name_is_refused() {
    for name in ["..", ".", "../../../etc/evil", "/etc/passwd", "a/b", "a\\b"] {
        let text = format!("[console_scripts]\n{name} = evil:main\n");
        let err = launchers(&text, "/p").unwrap_err();
        assert!(err.contains("is not a file name"), "{name}: {err}");
    }
    for value in ["os; import x:main", "evil:main()", "evil:", "a..b:c"] {
        let text = format!("[gui_scripts]\nok = {value}\n");
        assert!(launchers(&text, "/p").is_err(), "{value}");
    }
    let l = launchers("[console_scripts]\nrun-it.py = pkg_1.mod:Main.go\n", "/p").unwrap();
    assert_eq!(l[0].0, "run-it.py");
}

#[test]
fn member_names_that_are_no_plain_relative_path_are_refused() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let wheel = dir.path().join("demo-1.0-py3-none-any.whl");
    let scheme = short_scheme();
    for (member, why) in [
        ("demo/__init__.py\0evil", "has a NUL byte in its name"),
        ("demo\\x.py", "has a backslash in its name"),
        ("demo/./__init__.py", "has a `.` path part"),
        ("./demo/z.py", "has a `.` path part"),
        ("demo/../../x.py", "escapes its directory"),
        ("demo//x.py", "escapes its directory"),
    ] {
        let mut z = zip::ZipWriter::new(File::create(&wheel).unwrap());
        let o = zip::write::SimpleFileOptions::default();
        z.start_file("demo/__init__.py", o).unwrap();
        z.write_all(b"good\n").unwrap();
        z.start_file(member, o).unwrap();
        z.write_all(b"evil\n").unwrap();
        z.start_file("demo-1.0.dist-info/METADATA", o).unwrap();
        z.write_all(b"Name: demo\n").unwrap();
        z.finish().unwrap();
        let err = plan(&wheel, "demo", &scheme).unwrap_err();
        assert!(crate::error::is_bad_input(&err), "{member:?}");
        let said = err.to_string();
        assert!(
            said.starts_with(&format!("{}: member {member:?} {why}", wheel.display())),
            "{member:?}: {said}"
        );
    }
}

/// A zip of these (name, bytes as stored, deflated, uncompressed size
/// its central directory declares), written by hand so that the sizes
/// can lie; a declared size of 4 GiB or more goes into a zip64 field.
fn lying_zip(members: &[(&str, Vec<u8>, bool, u64)], crc_of: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for ((name, data, deflated, declared), plain) in members.iter().zip(crc_of) {
        let offset = out.len() as u32;
        let method: u16 = if *deflated { 8 } else { 0 };
        let crc = crc32fast::hash(plain);
        let small = u32::try_from(*declared).ok().filter(|&d| d != u32::MAX);
        let fields = |b: &mut Vec<u8>| {
            // flags, method, time and date, crc-32, sizes: the same in
            // the local header and the central directory
            b.extend(0u16.to_le_bytes());
            b.extend(method.to_le_bytes());
            b.extend([0u8; 4]);
            b.extend(crc.to_le_bytes());
            b.extend((data.len() as u32).to_le_bytes());
            b.extend(small.unwrap_or(u32::MAX).to_le_bytes());
        };
        out.extend(0x04034b50u32.to_le_bytes());
        out.extend(20u16.to_le_bytes());
        fields(&mut out);
        out.extend((name.len() as u16).to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out.extend(name.as_bytes());
        out.extend(data);
        let extra: Vec<u8> = match small {
            Some(_) => Vec::new(),
            None => [1u16.to_le_bytes(), 8u16.to_le_bytes()]
                .concat()
                .into_iter()
                .chain(declared.to_le_bytes())
                .collect(),
        };
        central.extend(0x02014b50u32.to_le_bytes());
        central.extend((0x0300u16 | 45).to_le_bytes());
        central.extend(45u16.to_le_bytes());
        fields(&mut central);
        central_tail(&mut central, name, &extra, offset);
    }
    close_zip(out, &central, members.len())
}

fn deflate(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn a_member_is_read_no_further_than_its_declared_size_and_at_most_4_gib() {
    let dir = tempfile::tempdir().unwrap();
    let wheel = dir.path().join("demo-1.0-py3-none-any.whl");
    let scheme = short_scheme();
    let meta: &[u8] = b"Name: demo\n";
    let big = vec![b'a'; 4 << 20];
    let plan_with = |member: (&str, Vec<u8>, bool, u64), plain: &[u8], record: &str| {
        let rec = format!("{record}demo-1.0.dist-info/RECORD,,\n");
        let zip = lying_zip(
            &[
                member,
                ("demo-1.0.dist-info/METADATA", meta.to_vec(), false, 11),
                (
                    "demo-1.0.dist-info/RECORD",
                    rec.as_bytes().to_vec(),
                    false,
                    rec.len() as u64,
                ),
            ],
            &[plain, meta, rec.as_bytes()],
        );
        std::fs::write(&wheel, zip).unwrap();
        plan(&wheel, "demo", &scheme)
    };
    let refused = |r: Result<()>, needle: &str| {
        let err = r.unwrap_err();
        assert!(crate::error::is_bad_input(&err), "{err:#}");
        let said = err.to_string();
        assert!(
            said.starts_with(&format!("{}: member \"demo/x.bin\"", wheel.display()))
                && said.contains(needle),
            "{said}"
        );
    };
    // A zip64 size of 2^64 - 1, and one just over 4 GiB.
    for declared in [u64::MAX, (4 << 30) + 1] {
        let r = plan_with(("demo/x.bin", b"x".to_vec(), false, declared), b"x", "");
        refused(
            r.map(drop),
            &format!("declares {declared} bytes; a wheel member is at most"),
        );
    }
    // 4 MiB deflated behind a header that declares 10 bytes: found after
    // 11 bytes, whether or not RECORD hashes it.
    let r = plan_with(("demo/x.bin", deflate(&big), true, 10), &big, "");
    refused(
        r.map(drop),
        "inflates to more bytes, but the zip declares 10",
    );
    let row = format!("demo/x.bin,sha256={},10\n", hash(&big[..10]));
    let inst = plan_with(("demo/x.bin", deflate(&big), true, 10), &big, &row).unwrap();
    let f = inst
        .files
        .iter()
        .find(|f| f.path == "sp/demo/x.bin")
        .unwrap();
    refused(
        read(&inst, &mut open(&wheel).unwrap(), f).map(drop),
        "inflates to more bytes, but the zip declares 10",
    );
    // Fewer bytes than declared.
    let r = plan_with(("demo/x.bin", deflate(b"short"), true, 100), b"short", "");
    refused(r.map(drop), "inflates to 5 bytes, but the zip declares 100");
    // Sizes that hold are planned and read.
    let inst = plan_with(
        ("demo/x.bin", deflate(&big), true, big.len() as u64),
        &big,
        "",
    )
    .unwrap();
    let f = inst
        .files
        .iter()
        .find(|f| f.path == "sp/demo/x.bin")
        .unwrap();
    assert_eq!(read(&inst, &mut open(&wheel).unwrap(), f).unwrap(), big);
}

#[test]
fn a_wheel_that_holds_a_name_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let wheel = dir.path().join("demo-1.0-py3-none-any.whl");
    let twice = lying_zip(
        &[
            ("demo/a.py", b"x = 1\n".to_vec(), false, 6),
            ("demo/a.py", b"x = 2\n".to_vec(), false, 6),
        ],
        &[b"x = 1\n", b"x = 2\n"],
    );
    std::fs::write(&wheel, twice).unwrap();
    let err = format!("{:#}", open(&wheel).unwrap_err());
    assert!(err.contains("\"demo/a.py\" is in the wheel twice"), "{err}");
}

#[test]
fn a_wheel_whose_entries_overlap_or_are_renamed_is_refused_when_planned() {
    use crate::python::zip_entries::tests::raw_zip;
    let dir = tempfile::tempdir().unwrap();
    let wheel = dir.path().join("demo-1.0-py3-none-any.whl");
    let meta = (
        "demo-1.0.dist-info/METADATA",
        &b"Name: demo\n"[..],
        None,
        None,
    );
    let cases = [
        (
            vec![
                ("demo/z0", &[0u8; 1024][..], None, None),
                ("demo/z1", b"", None, Some(0)),
                meta,
            ],
            "entries \"demo/z0\" and \"demo/z1\" overlap in the zip",
        ),
        (
            vec![
                ("demo/a.py", b"1", None, None),
                ("demo/b.py", b"2", Some("demo/a.py"), None),
                meta,
            ],
            "entry \"demo/b.py\" is renamed \"demo/a.py\" by its Unicode Path extra field",
        ),
        (
            vec![
                (
                    "demo/notes.txt",
                    b"import os\n",
                    Some("sitecustomize.py"),
                    None,
                ),
                meta,
            ],
            "entry \"demo/notes.txt\" is renamed \"sitecustomize.py\"",
        ),
    ];
    for (entries, said) in cases {
        std::fs::write(&wheel, raw_zip(&entries)).unwrap();
        let err = plan(&wheel, "demo", &short_scheme()).unwrap_err();
        assert!(crate::error::is_bad_input(&err), "{err:#}");
        let err = err.to_string();
        assert!(
            err.starts_with(&format!("{}: {said}", wheel.display()))
                && err.ends_with("the wheel is damaged or hostile, build it again"),
            "{err}"
        );
    }
}

#[test]
fn a_wheel_whose_members_declare_more_than_16_gib_in_all_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let wheel = dir.path().join("demo-1.0-py3-none-any.whl");
    let names: Vec<String> = (0..5).map(|i| format!("demo/x{i}.bin")).collect();
    // Each declares 4 GiB, the most a member may, and RECORD agrees: none
    // is read when planned.
    let mut record: String = names
        .iter()
        .map(|n| format!("{n},sha256={},{}\n", hash(b"x"), 4u64 << 30))
        .collect();
    record.push_str("demo-1.0.dist-info/RECORD,,\n");
    let mut members: Vec<(&str, Vec<u8>, bool, u64)> = names
        .iter()
        .map(|n| (n.as_str(), b"x".to_vec(), false, 4 << 30))
        .collect();
    let rec = (
        "demo-1.0.dist-info/RECORD",
        record.clone().into_bytes(),
        false,
        record.len() as u64,
    );
    let mut plain: Vec<&[u8]> = vec![b"x"; 5];
    plain.insert(0, record.as_bytes());
    members.insert(0, rec);
    std::fs::write(&wheel, lying_zip(&members, &plain)).unwrap();
    let err = plan(&wheel, "demo", &short_scheme()).unwrap_err();
    assert!(crate::error::is_bad_input(&err), "{err:#}");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: the members declare more than 16 GiB in all; the wheel is damaged or hostile",
            wheel.display()
        )
    );
    // Three of them are planned.
    members.truncate(4);
    plain.truncate(4);
    std::fs::write(&wheel, lying_zip(&members, &plain)).unwrap();
    let inst = plan(&wheel, "demo", &short_scheme()).unwrap();
    assert!(inst.files.iter().any(|f| f.path == "sp/demo/x2.bin"));
}

/// Figure: as pip and uv, a wheel must hold one `.dist-info` directory, of
/// its own distribution: another one's `RECORD` and `INSTALLER` would go
/// into the image as they are, and the image would say another package is
/// installed.
#[test]
fn a_wheel_with_another_or_a_second_dist_info_directory_is_refused() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let wheel = dir.path().join("demo_pkg-1.0-py3-none-any.whl");
    let scheme = short_scheme();
    let with = |members: &[&str]| {
        let mut z = zip::ZipWriter::new(File::create(&wheel).unwrap());
        let o = zip::write::SimpleFileOptions::default();
        for m in members {
            z.start_file(*m, o).unwrap();
            z.write_all(b"Name: x\n").unwrap();
        }
        z.finish().unwrap();
        plan(&wheel, "demo-pkg", &scheme)
    };
    let ok = with(&["demo/a.py", "Demo.Pkg-1.0.dist-info/METADATA"]).unwrap();
    assert!(ok
        .files
        .iter()
        .any(|f| f.path == "sp/Demo.Pkg-1.0.dist-info/RECORD"));
    for (members, why) in [
        (
            &["demo/a.py", "other-1.0.dist-info/METADATA"][..],
            "its .dist-info directory \"other-1.0.dist-info\" is not of demo-pkg",
        ),
        (
            &[
                "demo/a.py",
                "demo_pkg-1.0.dist-info/METADATA",
                "evil-9.dist-info/INSTALLER",
            ][..],
            "it has more than one .dist-info directory: \"demo_pkg-1.0.dist-info\", \"evil-9.dist-info\"",
        ),
        (&["demo/a.py"][..], "no .dist-info directory"),
    ] {
        let err = with(members).unwrap_err();
        assert!(crate::error::is_bad_input(&err), "{members:?}: {err:#}");
        let said = err.to_string();
        assert!(
            said.starts_with(&format!("{}: {why}", wheel.display())),
            "{members:?}: {said}"
        );
    }
}

/// Figure: as pip (`zip_item_is_executable`), a member is 0755 only when
/// its zip mode is a regular file's with an executable bit: a mode without
/// a file type (`0o755`) or a symlink's (`0o120755`) gives 0644.
#[test]
fn a_member_is_executable_only_as_a_regular_file_with_an_executable_bit() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let wheel = dir.path().join("demo-1.0-py3-none-any.whl");
    let members = [
        ("demo/reg", 0o100755u32, 0o755),
        ("demo/plain", 0o755, 0o644),
        ("demo/link", 0o120755, 0o644),
        ("demo/none", 0o100644, 0o644),
    ];
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let o = zip::write::SimpleFileOptions::default();
    for (name, ..) in members {
        z.start_file(name, o).unwrap();
        z.write_all(b"x").unwrap();
    }
    z.start_file("demo-1.0.dist-info/METADATA", o).unwrap();
    let mut bytes = z.finish().unwrap().into_inner();
    // Each central directory record's external attributes (at 38) by its
    // name (at 46): the zip crate writes a regular file's type itself.
    let mut at = 0;
    while let Some(i) = bytes[at..].windows(4).position(|w| w == b"PK\x01\x02") {
        let rec = at + i;
        let len = usize::from(u16::from_le_bytes([bytes[rec + 28], bytes[rec + 29]]));
        let name = String::from_utf8(bytes[rec + 46..rec + 46 + len].to_vec()).unwrap();
        if let Some((_, mode, _)) = members.iter().find(|m| m.0 == name) {
            bytes[rec + 38..rec + 42].copy_from_slice(&(mode << 16).to_le_bytes());
        }
        at = rec + 46;
    }
    std::fs::write(&wheel, bytes).unwrap();
    let inst = plan(&wheel, "demo", &short_scheme()).unwrap();
    for (name, _, want) in members {
        let f = inst.files.iter().find(|f| f.path == format!("sp/{name}"));
        assert_eq!(f.map(|f| f.mode), Some(want), "{name}");
    }
}

/// Figure: an entry_points.txt of 16 MiB (a few KiB deflated) could make
/// two million launchers of some 300 bytes each, all held while planning;
/// more than 10,000 scripts in one wheel are refused, naming the wheel.
#[test]
fn a_wheel_with_more_than_10000_scripts_is_refused() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let wheel = dir.path().join("demo-1.0-py3-none-any.whl");
    let with = |scripts: usize| {
        let mut z = zip::ZipWriter::new(File::create(&wheel).unwrap());
        let o = zip::write::SimpleFileOptions::default();
        z.start_file("demo-1.0.dist-info/entry_points.txt", o)
            .unwrap();
        z.write_all(b"[console_scripts]\n").unwrap();
        for i in 0..scripts {
            writeln!(z, "s{i} = demo:main").unwrap();
        }
        z.finish().unwrap();
        plan(&wheel, "demo", &short_scheme())
    };
    let ok = with(10_000).unwrap();
    assert!(ok.files.iter().any(|f| f.path == "bin/s9999"));
    let Err(err) = with(10_001) else {
        panic!("10,001 scripts were planned")
    };
    assert!(crate::error::is_bad_input(&err), "{err:#}");
    let said = err.to_string();
    assert!(
        said.starts_with(&format!(
            "{}: entry_points.txt declares more than 10000 scripts",
            wheel.display()
        )),
        "{said}"
    );
}

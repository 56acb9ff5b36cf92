use super::*;

/// Packages of these (name, wheel size), in this order.
fn packages(list: &[(&str, u64)]) -> Packages {
    Packages {
        wheels: list
            .iter()
            .map(|(n, _)| Installed {
                wheel: PathBuf::from(format!("{n}.whl")),
                files: Vec::new(),
            })
            .collect(),
        dists: list
            .iter()
            .map(|(n, size)| Dist {
                name: n.to_string(),
                version: "1".into(),
                sha256: String::new(),
                url: None,
                size: *size,
            })
            .collect(),
        site_packages: "sp".into(),
        attrs: Effective::default(),
    }
}

fn labels(list: &[(&str, u64)], max: Option<usize>) -> Vec<String> {
    packages(list)
        .split(max)
        .into_iter()
        .map(|(label, _)| label)
        .collect()
}

#[test]
fn find_links_wheels_of_the_same_name_and_version_are_chosen_by_rank() {
    let files = [
        "Other-1.0-py3-none-any.whl",
        "my_pkg-1.0-cp311-cp311-manylinux_2_17_x86_64.whl",
        "my_pkg-1.0-py3-none-any.whl",
        "my_pkg-2.0-cp311-cp311-manylinux_2_17_x86_64.whl",
        "not a wheel.whl",
    ];
    let by_name: BTreeMap<String, PathBuf> = files
        .iter()
        .map(|f| (f.to_string(), PathBuf::from("wh").join(f)))
        .collect();
    let by_dist = by_dist(&by_name);
    let pkg = |name: &str, version: &str, hashed| Package {
        name: name.into(),
        version: version.into(),
        marker: None,
        wheels: Vec::new(),
        sdist: false,
        hashed,
    };
    let target = |machine: &str| Target {
        python: (3, 11),
        machine: machine.into(),
        libc: Libc::Glibc(2, 36),
    };
    let chosen = |p: &Package, machine: &str| {
        choose(p, &by_name, &by_dist, &target(machine)).map(|(w, _)| (w.file, w.path))
    };
    // Names compare as PEP 503 normalises them; the binary wheel ranks first.
    let file = "my_pkg-1.0-cp311-cp311-manylinux_2_17_x86_64.whl";
    assert_eq!(
        chosen(&pkg("My.Pkg", "1.0", false), "x86_64"),
        Some((file.to_string(), Some(PathBuf::from("wh").join(file))))
    );
    let pure = "my_pkg-1.0-py3-none-any.whl".to_string();
    assert_eq!(
        chosen(&pkg("my-pkg", "1.0", false), "aarch64").map(|c| c.0),
        Some(pure)
    );
    assert_eq!(chosen(&pkg("my-pkg", "3.0", false), "x86_64"), None);
    assert_eq!(
        chosen(&pkg("other", "1.0", false), "x86_64").map(|c| c.0),
        Some(files[0].into())
    );
    // A hashed package takes only the wheels its hashes name.
    assert_eq!(chosen(&pkg("my-pkg", "1.0", true), "x86_64"), None);
}

#[test]
fn the_smallest_packages_share_a_layer_and_ties_go_by_name() {
    let list = [("d", 5), ("a", 9), ("c", 5), ("b", 1), ("e", 5)];
    assert_eq!(
        labels(&list, None),
        ["a==1", "b==1", "c==1", "d==1", "e==1"]
    );
    assert_eq!(labels(&list, Some(5)), labels(&list, None));
    assert_eq!(labels(&list, Some(9)), labels(&list, None));
    // b (1) and c (5, first of the 5s by name) are the two smallest.
    assert_eq!(
        labels(&list, Some(4)),
        ["a==1", "b==1, c==1", "d==1", "e==1"]
    );
    assert_eq!(labels(&list, Some(2)), ["a==1", "b==1, c==1, d==1, e==1"]);
    assert_eq!(labels(&list, Some(1)), ["a==1, b==1, c==1, d==1, e==1"]);
    // The order of the lock does not matter.
    let mut reversed = list;
    reversed.reverse();
    assert_eq!(labels(&reversed, Some(4)), labels(&list, Some(4)));
    assert!(labels(&[], Some(3)).is_empty());
}

#[test]
fn of_two_packages_at_one_path_the_later_by_name_keeps_a_different_file() {
    use crate::python::install::InstalledFile;
    let member = |byte: u8| Content::Member {
        index: 0,
        size: 1,
        sha256: [byte; 32],
        recorded: true,
    };
    let file = |path: &str, mode: u32, content: Content| InstalledFile {
        path: path.into(),
        mode,
        content,
    };
    // In lock order: zeta, alpha, mid. zeta is the later by name.
    let mut p = packages(&[("zeta", 1), ("alpha", 1), ("mid", 1)]);
    p.wheels[0].files = vec![
        file("sp/cv2/a.py", 0o644, member(1)),
        file("sp/cv2/b.py", 0o644, member(2)),
        file("sp/cv2/same.py", 0o644, member(3)),
        file("bin/tool", 0o755, Content::Bytes(b"z".to_vec())),
    ];
    p.wheels[1].files = vec![
        file("sp/cv2/a.py", 0o644, member(9)),
        file("sp/cv2/b.py", 0o644, member(9)),
        file("sp/cv2/same.py", 0o644, member(3)),
        file("sp/alpha.py", 0o644, member(4)),
    ];
    // Same bytes as zeta's, another mode; and a launcher of other bytes.
    p.wheels[2].files = vec![
        file("sp/cv2/a.py", 0o755, member(1)),
        file("bin/tool", 0o755, Content::Bytes(b"m".to_vec())),
    ];
    let overlaps = overlap::settle(&mut p.wheels, &p.dists).expect("no file at a directory");
    let told: Vec<(usize, usize, Vec<&str>)> = overlaps
        .iter()
        .map(|o| {
            (
                o.loser,
                o.winner,
                o.paths.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        told,
        [
            (1, 0, vec!["sp/cv2/a.py", "sp/cv2/b.py"]),
            (2, 0, vec!["bin/tool", "sp/cv2/a.py"]),
        ]
    );
    let paths =
        |w: usize| -> Vec<&str> { p.wheels[w].files.iter().map(|f| f.path.as_str()).collect() };
    assert_eq!(paths(0).len(), 4, "the winner keeps all its files");
    // The same file stays in both installs.
    assert_eq!(paths(1), ["sp/cv2/same.py", "sp/alpha.py"]);
    assert!(paths(2).is_empty());
    let message = overlaps[0].message(&p.dists, "linux/amd64");
    assert!(
        message.starts_with("packages alpha==1 and zeta==1 install different files at /sp/cv2/a.py and 1 other path for linux/amd64; zeta==1's files are kept"),
        "{message}"
    );
}

#[test]
fn a_file_of_one_package_where_another_needs_a_directory_is_refused_in_any_order() {
    use crate::python::install::InstalledFile;
    // The file and the directory's packages and paths it names, if refused,
    // for these packages (name, paths) in this lock order.
    let refused = |list: &[(&str, &[&str])]| {
        let names: Vec<(&str, u64)> = list.iter().map(|(n, _)| (*n, 1)).collect();
        let mut p = packages(&names);
        for (inst, (_, paths)) in p.wheels.iter_mut().zip(list) {
            inst.files = paths
                .iter()
                .map(|path| InstalledFile {
                    path: path.to_string(),
                    mode: 0o644,
                    content: Content::Bytes(path.as_bytes().to_vec()),
                })
                .collect();
        }
        let before = p.wheels.clone();
        let r = overlap::settle(&mut p.wheels, &p.dists).err()?;
        assert_eq!(p.wheels, before, "a refused plan settles nothing");
        let message = r.message(&p.dists, "linux/amd64");
        let (file, dir) = (&p.dists[r.file].name, &p.dists[r.dir].name);
        for needle in [&format!("{file}==1"), &format!("{dir}==1"), &r.path] {
            assert!(message.contains(needle.as_str()), "{needle}: {message}");
        }
        Some(format!("{file} {} {dir} {}", r.path, r.deeper))
    };
    // Every lock order gives the same answer.
    let in_any_order = |list: &[(&str, &[&str])]| {
        let first = refused(list);
        let mut other = list.to_vec();
        other.reverse();
        assert_eq!(refused(&other), first, "{other:?}");
        other.rotate_left(1);
        assert_eq!(refused(&other), first, "{other:?}");
        first
    };
    let some = |s: &str| Some(s.to_string());
    // The file's package first by name, or last; a directory one level
    // up or more.
    assert_eq!(
        in_any_order(&[("zeta", &["sp/foo"]), ("alpha", &["sp/foo/bar.py"])]),
        some("zeta sp/foo alpha sp/foo/bar.py")
    );
    assert_eq!(
        in_any_order(&[("alpha", &["sp/foo"]), ("zeta", &["sp/foo/sub/x.py"])]),
        some("alpha sp/foo zeta sp/foo/sub/x.py")
    );
    // A launcher, and another package's `.data` file below its path.
    assert_eq!(
        in_any_order(&[("mid", &["bin/tool"]), ("zeta", &["bin/tool/README"])]),
        some("mid bin/tool zeta bin/tool/README")
    );
    // Of several, the one below which the first path lies; of two packages
    // with the file, the first by name.
    assert_eq!(
        in_any_order(&[
            ("alpha", &["sp/a/x.py", "sp/b/x.py"]),
            ("mid", &["sp/b"]),
            ("zeta", &["sp/a"]),
        ]),
        some("zeta sp/a alpha sp/a/x.py")
    );
    assert_eq!(
        in_any_order(&[
            ("zeta", &["sp/foo"]),
            ("mid", &["sp/foo"]),
            ("alpha", &["sp/foo/x.py"]),
        ]),
        some("mid sp/foo alpha sp/foo/x.py")
    );
    // Paths that only start alike, and a directory both need, are no conflict.
    assert_eq!(
        in_any_order(&[
            ("alpha", &["sp/foo.py", "sp/foo", "sp/lib/a.py"]),
            ("zeta", &["sp/foo-1/x.py", "sp/foobar/x.py", "sp/lib/b.py"]),
        ]),
        None
    );
}

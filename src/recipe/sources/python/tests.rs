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

//! Hostile and odd recipes: each is refused with exit code 2 and a message
//! that names the recipe file, line and column and says what is expected;
//! never a panic, never an image built from a misread value.

use std::fs;

use crate::build_errors::{layer, Case, HEAD};
use crate::common::*;

/// A recipe whose one entry is `kind` at `dest`.
fn entry_at(kind: &str, dest: &str) -> String {
    layer(&format!("{kind}\ndest = {dest:?}"))
}

const KINDS: [&str; 5] = [
    "content = \"x\"",
    "symlink = \"/x\"",
    "dir = true",
    "src = \"files/a.txt\"",
    "src = \"files\"",
];

#[test]
fn the_image_root_cannot_be_replaced_by_one_entry() {
    for dest in ["/", "/.", "//", "/./", "///./."] {
        for kind in &KINDS[..3] {
            let field = kind.split(" =").next().unwrap();
            let field = if field == "dir" { "dir = true" } else { field };
            Case::new(&entry_at(kind, dest)).fails(&[
                "recipe.toml:7:8",
                "is the image root",
                &format!("expected a path below it for `{field}`"),
            ]);
        }
    }
}

#[test]
fn a_file_or_directory_src_goes_into_the_root() {
    // A directory is copied into the root; a file keeps its own name there.
    for dest in ["/", "/.", "//", "/./"] {
        for kind in &KINDS[3..] {
            let case = Case::new(&entry_at(kind, dest));
            let r = run(boxwright()
                .args(["build", "--quiet", "-o"])
                .arg(case.path("out"))
                .arg(case.path("recipe.toml")));
            assert_ok(&r);
        }
    }
    let dir = Case::new(&entry_at("src = \"files\"", "/"));
    let out = dir.path("out");
    ok(boxwright()
        .args(["build", "--quiet", "-o"])
        .arg(&out)
        .arg(dir.path("recipe.toml")));
    tool(
        "umoci",
        &[
            "raw",
            "unpack",
            "--rootless",
            "--image",
            &format!("{}:latest", out.display()),
            dir.path("rootfs").to_str().unwrap(),
        ],
    );
    assert_eq!(fs::read_to_string(dir.path("rootfs/a.txt")).unwrap(), "a\n");
    assert_eq!(fs::read_to_string(dir.path("rootfs/b.txt")).unwrap(), "b\n");
}

#[test]
fn dests_that_escape_or_hold_nul_are_refused() {
    for dest in ["/..", "/../", "/opt/../..", "/a/./../b", "/./.."] {
        for kind in KINDS {
            Case::new(&entry_at(kind, dest)).fails(&[
                "recipe.toml:7:8",
                "must not contain `..`",
                "\"/opt/app\"",
            ]);
        }
    }
    for dest in ["..", "a/../..", "", ".", "opt/x"] {
        for kind in KINDS {
            Case::new(&entry_at(kind, dest))
                .fails(&["recipe.toml:7:8", "must be an absolute path"]);
        }
    }
    Case::new(&layer("content = \"x\"\ndest = \"/a\\u0000b\"")).fails(&["recipe.toml:7:8", "NUL"]);
    Case::new(&layer("symlink = \"/a\\u0000b\"\ndest = \"/x\""))
        .fails(&["recipe.toml:6:11", "NUL"]);
    Case::new(&layer("dir = true\ndest = \"/x\"\nuname = \"r\\u0000t\""))
        .fails(&["recipe.toml:8:9", "NUL"]);
    Case::new(&layer("dir = true\ndest = \"/x\"\ngname = \"r\\nt\""))
        .fails(&["recipe.toml:8:9", "control character"]);
}

/// A recipe with `[image] created = value`.
fn created(value: &str) -> String {
    format!("{HEAD}created = {value}\n[[layer]]\n[[layer.entry]]\ndir = true\ndest = \"/x\"\n")
}

const CREATED: &str = "expected created: an RFC 3339 time in quotes";

#[test]
fn created_must_be_a_real_time_within_range() {
    for (value, why) in [
        ("253402300800", "out of range"),
        ("-1", "out of range"),
        ("\"253402300800\"", "out of range"),
        ("\"99999999999999999999\"", "out of range"),
        ("\"1969-12-31T23:59:59Z\"", "out of range"),
        ("\"2024-02-30T00:00:00Z\"", "2024-02 has 29 days"),
        ("\"2023-02-29T00:00:00Z\"", "2023-02 has 28 days"),
        ("\"2100-02-29T00:00:00Z\"", "2100-02 has 28 days"),
        ("\"2024-06-31T00:00:00Z\"", "2024-06 has 30 days"),
        ("\"2024-01-01T00:00:00+25:00\"", "offset +25:00"),
        ("\"2024-01-01T00:00:00-24:00\"", "offset -24:00"),
        ("\"2024-01-01T24:00:00Z\"", "time of day"),
        ("\"2024-01-01T00:00:60Z\"", "time of day"),
        ("\"10000-01-01T00:00:00Z\"", "of the form"),
        ("\"2024-01-01\"", "of the form"),
        ("\"\"", "of the form"),
        ("1.5", "invalid type: floating point `1.5`"),
        ("true", "invalid type: boolean"),
        ("[1]", "invalid type: sequence"),
        ("{ a = 1 }", "invalid type: map"),
        ("99999999999999999999999", "too large"),
        ("18446744073709551615", "18446744073709551615"),
        ("2024-01-01T00:00:00Z", "bare TOML date-time"),
    ] {
        let err = Case::new(&created(value)).fails(&["recipe.toml:4:11", CREATED, why]);
        assert!(!err.contains("untagged"), "{err}");
    }
}

#[test]
fn created_accepts_the_range_ends_and_leap_days() {
    let digest = |value: &str| {
        let case = Case::new(&created(value));
        ok(boxwright()
            .args(["build", "--quiet", "-o"])
            .arg(case.path("out"))
            .arg(case.path("recipe.toml")))
    };
    assert_eq!(digest("253402300799"), digest("\"9999-12-31T23:59:59Z\""));
    assert_eq!(digest("0"), digest("\"1970-01-01T01:00:00+01:00\""));
    assert_eq!(digest("1709164800"), digest("\"2024-02-29T00:00:00Z\""));
    assert_eq!(
        digest("\"1709164800\""),
        digest("\"2024-02-28T23:00:00-01:00\"")
    );
}

#[test]
fn empty_source_date_epoch_is_unset_and_a_bad_one_is_named() {
    let case = Case::new(&layer("dir = true\ndest = \"/x\""));
    let build = |value: Option<&str>| {
        let mut cmd = boxwright();
        cmd.args(["build", "--quiet", "-o"])
            .arg(case.path("out"))
            .arg(case.path("recipe.toml"));
        if let Some(v) = value {
            cmd.env("SOURCE_DATE_EPOCH", v);
        }
        let r = run(&mut cmd);
        let _ = fs::remove_dir_all(case.path("out"));
        r
    };
    let unset = build(None);
    assert_ok(&unset);
    for empty in ["", " ", "\t"] {
        let r = build(Some(empty));
        assert_ok(&r);
        assert_eq!(
            r.stdout, unset.stdout,
            "SOURCE_DATE_EPOCH={empty:?} is unset"
        );
    }
    assert_ne!(build(Some("1700000000")).stdout, unset.stdout);
    for bad in [
        "abc",
        "-1",
        "1.5",
        "253402300800",
        "0x10",
        "99999999999999999999",
    ] {
        let r = build(Some(bad));
        assert_code(&r, 2);
        assert!(
            r.stderr.contains(&format!("SOURCE_DATE_EPOCH={bad:?}"))
                && r.stderr.contains("whole number of seconds"),
            "{bad}: {}",
            r.stderr
        );
    }
}

#[test]
fn modes_say_what_they_expect() {
    const MODE: &str =
        "expected mode: an octal integer like 0o644 or a string \"0644\", at most 0o7777";
    for (value, why) in [
        ("1.5", "floating point `1.5`"),
        ("true", "boolean `true`"),
        ("[493]", "sequence"),
        ("{ a = 1 }", "map"),
        ("2024-01-01", "bare TOML date-time"),
        ("99999999999999999999999", "too large"),
        ("-1", "integer `-1`"),
        ("0o10000", "0o10000 is above 0o7777"),
        ("4096", "0o10000 is above 0o7777"),
        ("\"10000\"", "string \"10000\""),
        ("\"0o+7\"", "string \"0o+7\""),
        ("\"+644\"", "string \"+644\""),
        ("\"0x1ff\"", "string \"0x1ff\""),
        ("\"8\"", "string \"8\""),
        ("\"\"", "string \"\""),
        ("\"0o\"", "string \"0o\""),
    ] {
        for key in ["mode", "dir_mode"] {
            let recipe = layer(&format!("src = \"files\"\ndest = \"/x\"\n{key} = {value}"));
            let col = key.len() + 4;
            let err = Case::new(&recipe).fails(&[&format!("recipe.toml:8:{col}"), MODE, why]);
            assert!(!err.contains("untagged"), "{err}");
            // The same on the layer.
            let recipe = format!(
                "{HEAD}[[layer]]\n{key} = {value}\n[[layer.entry]]\ndir = true\ndest = \"/x\"\n"
            );
            Case::new(&recipe).fails(&[&format!("recipe.toml:5:{col}"), MODE, why]);
        }
    }
}

#[test]
fn a_mode_written_in_decimal_is_refused() {
    // `mode = 755` is the integer 755, 0o1363: sticky, and not what was
    // meant. Octal, strings, hexadecimal and 0 are as they were.
    for (value, said) in [
        ("755", "= 755 is a decimal number, 0o1363 as a mode; modes are octal: write 0o755 or \"0755\""),
        ("+644", "= +644 is a decimal number, 0o1204 as a mode; modes are octal: write 0o644 or \"0644\""),
        ("493", "= 493 is a decimal number, 0o755 as a mode; modes are octal: write 0o755 or \"0755\""),
    ] {
        for key in ["mode", "dir_mode"] {
            let col = key.len() + 4;
            let recipe = layer(&format!("src = \"files\"\ndest = \"/x\"\n{key} = {value}"));
            Case::new(&recipe).fails(&[&format!("recipe.toml:8:{col}: {key} {said}")]);
            let recipe = format!(
                "{HEAD}[[layer]]\n{key} = {value}\n[[layer.entry]]\ndir = true\ndest = \"/x\"\n"
            );
            Case::new(&recipe).fails(&[&format!("recipe.toml:5:{col}: {key} {said}")]);
        }
    }
    for value in ["0o755", "\"755\"", "0x1ed", "0", "0o0"] {
        let case = Case::new(&layer(&format!(
            "src = \"files\"\ndest = \"/x\"\nmode = {value}"
        )));
        ok(boxwright()
            .args(["build", "--quiet", "-o"])
            .arg(case.path("out/img"))
            .arg(case.path("recipe.toml")));
    }
}

#[test]
fn ids_and_other_typed_fields_name_their_place() {
    const ID: &str = "expected a numeric user or group id, 0 to 4294967294, like 1000";
    for value in [
        "-1",
        "1.5",
        "\"0\"",
        "4294967295",
        "4294967296",
        "99999999999999999999999",
        "true",
    ] {
        for key in ["uid", "gid"] {
            let err = Case::new(&layer(&format!(
                "dir = true\ndest = \"/x\"\n{key} = {value}"
            )))
            .fails(&["recipe.toml:8:7", ID]);
            assert!(!err.contains("u64"), "{err}");
        }
    }
    Case::new(&layer("dir = \"yes\"\ndest = \"/x\"")).fails(&["recipe.toml:6:7"]);
}

#[test]
fn invalid_utf8_names_its_byte_offset_and_line() {
    let case = Case::new("");
    let mut text = b"[image]\nname = \"t\"\n# caf".to_vec();
    text.extend_from_slice(&[0xc3, 0x28]);
    text.extend_from_slice(b"\n");
    fs::write(case.path("recipe.toml"), &text).unwrap();
    case.fails(&[
        "recipe.toml:3:6",
        "byte 0xc3 at byte offset 24 is not UTF-8",
    ]);
    fs::write(case.path("recipe.toml"), b"\xff").unwrap();
    case.fails(&["recipe.toml:1:1", "byte 0xff at byte offset 0"]);
}

#[test]
fn whole_recipe_mistakes_name_their_place() {
    Case::new("# nothing to build\n[image]\nname = \"t\"\n")
        .fails(&["recipe.toml:2:1", "no [[layer]] and no base image"]);
    Case::new(&format!("{HEAD}[[layer]]\nname = \"x\"\n"))
        .fails(&["recipe.toml:4:1", "layer \"x\" has no [[layer.entry]]"]);
    Case::new(&format!(
        "context = \"nope\"\n{}",
        layer("dir = true\ndest = \"/x\"")
    ))
    .fails(&["recipe.toml:1:11", "build context"]);
    let case = Case::new(&format!(
        "context = \"files/a.txt\"\n{}",
        layer("dir = true\ndest = \"/x\"")
    ));
    case.fails(&["recipe.toml:1:11", "files/a.txt is not a directory"]);
    let r = run(boxwright()
        .args(["build", "--quiet", "--context", "/dev/null", "-o"])
        .arg(case.path("out/img"))
        .arg(case.path("recipe.toml")));
    assert_code(&r, 2);
    assert!(
        r.stderr
            .contains("build context /dev/null is not a directory"),
        "{}",
        r.stderr
    );
    Case::new("[image]\nname = \"t\"\nplatforms = []\n")
        .fails(&["recipe.toml:3:13", "platforms is empty"]);
    Case::new("[image]\nname = \"t\"\nplatforms = [\"linux/amd64\", \"linux/amd64\"]\n")
        .fails(&["recipe.toml:3:29", "listed twice"]);
    for variant in ["v8 ", "v8\\n", "v.8"] {
        Case::new(&format!(
            "[image]\nname = \"t\"\nplatforms = [\"linux/arm64/{variant}\"]\n"
        ))
        .fails(&[
            "recipe.toml:3:14",
            "is not letters, digits, `_` and `-`, e.g. v8",
        ]);
    }
}

#[test]
fn one_file_or_link_needs_a_file_name_and_names_are_plain() {
    for dest in ["/x/", "/x/.", "/etc//"] {
        for kind in &KINDS[..2] {
            Case::new(&entry_at(kind, dest)).fails(&["recipe.toml:7:8", "names a directory"]);
        }
    }
    Case::new("[image]\nname = \"a\\u0000b\"\n").fails(&["recipe.toml:2:8", "control characters"]);
    Case::new(&format!(
        "[image]\nname = \"t\"\nbase = \"\"\n{}",
        &layer("dir = true\ndest = \"/x\"")[HEAD.len()..]
    ))
    .fails(&["recipe.toml:3:8", "base: invalid image reference \"\""]);
    Case::new("[image]\nname = \"t\"\nbase = \"alpine\"\nbase_fallback = [\"ok\", \"a b\"]\n")
        .fails(&["recipe.toml:4:24", "base: invalid image reference \"a b\""]);
}

#[test]
fn a_malformed_download_pin_is_named_once_at_the_pin() {
    // The pin's own line and column, then the URL: one location, not the
    // entry's as well.
    for pin in ["\"nothex\"", "{ amd64 = \"abc\" }"] {
        let stderr = Case::new(&layer(&format!(
            "url = \"file:files/a.txt\"\nsha256 = {pin}\ndest = \"/a\""
        )))
        .fails(&["recipe.toml:7:10: url \"file:", "is not 64 hex digits"]);
        assert!(!stderr.contains("recipe.toml:5:"), "{stderr}");
    }
}

#[test]
fn an_unknown_sbom_format_is_named_at_its_line() {
    // Checked with the recipe, like every other key, not later without a
    // location.
    let case = Case::new(&format!(
        "[image]\nname = \"t\"\nsbom = \"bogus\"\n{}",
        &layer("dir = true\ndest = \"/x\"")[HEAD.len()..]
    ));
    case.fails(&["recipe.toml:3:8", "sbom = \"bogus\" is not"]);
}

#[test]
fn config_strings_a_process_is_given_hold_no_nul() {
    // A runtime passes these to the system as C strings: with a NUL byte
    // the image would build and never start.
    let body = &layer("dir = true\ndest = \"/x\"")[HEAD.len()..];
    for (line, col) in [
        ("entrypoint = [\"/bin/sh\", \"a\\u0000b\"]", 26),
        ("cmd = [\"a\\u0000\"]", 8),
        ("env = { A = \"x\\u0000y\" }", 13),
        ("workdir = \"/a\\u0000\"", 11),
        ("user = \"1000\\u0000\"", 8),
        ("volumes = [\"/v\\u0000\"]", 12),
        ("stop_signal = \"TERM\\u0000\"", 15),
    ] {
        Case::new(&format!("{HEAD}[config]\n{line}\n{body}")).fails(&[
            &format!("recipe.toml:5:{col}"),
            "contains a NUL byte, which a container's process cannot be given",
        ]);
    }
    Case::new(&format!(
        "{HEAD}[config]\nenv = {{ \"A\\u0000\" = \"x\" }}\n{body}"
    ))
    .fails(&["recipe.toml:5:", "environment variable name \"A\\0\""]);
    // A label is data, not given to a process: it may hold any text.
    let case = Case::new(&format!(
        "{HEAD}[config]\nlabels = {{ a = \"x\\u0000y\" }}\n{body}"
    ));
    ok(boxwright()
        .args(["build", "--quiet", "-o"])
        .arg(case.path("out/img"))
        .arg(case.path("recipe.toml")));
}

#[test]
fn a_symlink_target_is_at_most_path_max() {
    // As long as a `dest` may be, and no longer: unpacking a longer one
    // fails on every system.
    let link = |target: &str| layer(&format!("symlink = {target:?}\ndest = \"/l\""));
    let case = Case::new(&link(&"a/".repeat(2048)));
    ok(boxwright()
        .args(["build", "--quiet", "-o"])
        .arg(case.path("out/img"))
        .arg(case.path("recipe.toml")));
    Case::new(&link(&"a/".repeat(2049))).fails(&[
        "recipe.toml:6:11",
        "symlink target is 4098 bytes long; a link's target is at most 4096",
    ]);
}

#[test]
fn image_paths_no_system_could_unpack_are_refused() {
    // A part over NAME_MAX in the dest, at the dest.
    let long_part = format!("/{}/x", "n".repeat(256));
    Case::new(&entry_at("content = \"x\"", &long_part)).fails(&[
        "recipe.toml:7:8",
        "has a part of 256 bytes; a file name is at most 255",
    ]);
    // A file of a tree whose path under its dest passes PATH_MAX, at the
    // entry: each part and the dest alone are short enough.
    let dest = format!(
        "/{}{}",
        format!("{}/", "d".repeat(250)).repeat(16),
        "e".repeat(79)
    );
    assert_eq!(dest.len(), 4096);
    Case::new(&entry_at("src = \"files\"", &dest)).fails(&[
        "recipe.toml:5:1",
        "a.txt is 4101 bytes long; a path in the image is at most 4096",
    ]);
}

#[test]
fn at_most_64_platforms_are_built() {
    // Each platform is planned on its own, with its own copy of the
    // recipe's strings: a list of a hundred thousand planned for minutes.
    let list = |n: usize| {
        let p: Vec<String> = (0..n).map(|i| format!("\"linux/amd64/x{i}\"")).collect();
        format!(
            "[image]\nname = \"t\"\nplatforms = [{}]\n{}",
            p.join(", "),
            &layer("content = \"${VARIANT}\"\ndest = \"/v\"")[HEAD.len()..]
        )
    };
    Case::new(&list(1000))
        .fails(&["recipe.toml:3:13: 1000 platforms are listed; an image is built for at most 64"]);
    let case = Case::new(&list(64));
    ok(boxwright()
        .args(["build", "--quiet", "-o"])
        .arg(case.path("out/img"))
        .arg(case.path("recipe.toml")));
    let flag: Vec<String> = (0..65).map(|i| format!("linux/arm64/v{i}")).collect();
    let r = run(boxwright()
        .args(["build", "--quiet", "--platform", &flag.join(","), "-o"])
        .arg(case.path("out/flag"))
        .arg(case.path("recipe.toml")));
    assert_code(&r, 2);
    assert!(
        r.stderr.contains("recipe.toml: 65 platforms are listed"),
        "{}",
        r.stderr
    );
}

#[test]
fn platform_variables_are_the_platforms_own() {
    // A CI runner's ARCH or OS for its own host is not the image's: outside
    // per-platform fields `${ARCH}` has no value, whatever the environment
    // holds, and --set cannot give it one.
    let case = Case::new(&format!(
        "tags = [\"${{ARCH}}\"]\n{}",
        layer("content = \"${ARCH}\"\ndest = \"/a\"")
    ));
    let build = |extra: &[&str]| {
        run(boxwright()
            .env("ARCH", "x86_64")
            .env("OS", "Windows_NT")
            .args(["build", "--quiet"])
            .args(extra)
            .arg("-o")
            .arg(case.path("out/img"))
            .arg(case.path("recipe.toml")))
    };
    let r = build(&[]);
    assert_code(&r, 2);
    assert!(
        r.stderr
            .contains("recipe.toml:1:9: variable `ARCH` is only defined in per-platform fields"),
        "{}",
        r.stderr
    );
    let r = build(&["--set", "ARCH=arm64"]);
    assert_code(&r, 2);
    assert!(
        r.stderr
            .contains("--set ARCH: `${ARCH}` is each platform's own"),
        "{}",
        r.stderr
    );
    assert!(!case.path("out").exists());
}

#[test]
fn a_linked_file_src_keeps_the_name_src_gives_it() {
    // As COPY and `cp -L` do: `current.conf`, a link to a versioned file,
    // is copied into a directory as `current.conf`, with the file's bytes.
    let case = Case::new(&entry_at("src = \"current.conf\"", "/etc/app/"));
    std::os::unix::fs::symlink("files/a.txt", case.path("current.conf")).unwrap();
    let out = case.path("out/img");
    ok(boxwright()
        .args(["build", "--quiet", "--compression", "none", "-o"])
        .arg(&out)
        .arg(case.path("recipe.toml")));
    let files: Vec<(String, Vec<u8>)> = crate::python_url::layer_entries(&out)
        .into_iter()
        .map(|(path, _, _, bytes)| (path, bytes))
        .collect();
    assert!(
        files.contains(&("etc/app/current.conf".to_string(), b"a\n".to_vec())),
        "{files:?}"
    );
    assert!(
        !files.iter().any(|(p, _)| p.ends_with("a.txt")),
        "{files:?}"
    );
}

//! What a hostile layout or registry says is shown without harm: sizes
//! that would overflow a total, and text with control characters.

use std::path::Path;

use serde_json::Value;

use crate::common::{assert_code, Run};
use crate::env::Env;
use crate::layout_reader::{image_of, put, run_bounded, sha256, write_index};
use crate::support::tempdir;

fn inspect(args: &[&str], layout: &Path) -> Run {
    run_bounded(Env::new().cmd().arg("inspect").args(args).arg(layout))
}

/// Figure: three layers of 2^63 - 1 bytes (the most OCI's int64 allows)
/// overflow a u64 total: `inspect` shows the total held at 2^64 - 1, as
/// text and as JSON, and `--check` reports the layers missing, without a
/// panic. A layer of 2^63 bytes is refused, exit 2, naming the limit.
#[test]
fn inspect_of_layers_whose_sizes_overflow_a_total_does_not_panic() {
    let t = tempdir();
    let dir = t.path().join("huge");
    let most = i64::MAX as u64;
    let layers = [
        (sha256(b"a"), most),
        (sha256(b"b"), most),
        (sha256(b"c"), most),
    ];
    image_of(&dir, &layers, "1");
    let r = inspect(&[], &dir);
    assert_code(&r, 0);
    assert!(
        r.stdout
            .contains(&format!("layers    3 ({} bytes)", u64::MAX)),
        "{}",
        r.stdout
    );
    let r = inspect(&["--json"], &dir);
    assert_code(&r, 0);
    let j: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(j["images"][0]["manifest"]["layers"][1]["size"], most);
    let r = inspect(&["--check", "--json"], &dir);
    assert_code(&r, 1);
    let j: Value = serde_json::from_str(&r.stdout).unwrap();
    let missing = (j["check"]["blobs"].as_array().unwrap().iter())
        .filter(|b| b["status"] == "missing")
        .count();
    assert_eq!(missing, 3, "{j}");

    let past = t.path().join("past");
    image_of(&past, &[(sha256(b"a"), most + 1)], "1");
    let r = inspect(&[], &past);
    assert_code(&r, 2);
    assert!(
        r.stderr.contains("larger than OCI's int64 allows"),
        "{}",
        r.stderr
    );
}

/// Text that would clear the screen and forge a line.
const FORGED: &str = "\x1b[2J\nforged row";

/// The text as shown: escaped, on one line.
const SHOWN: &str = "\\u{1b}[2J\\nforged row";

/// A layout at `dir` whose one image's manifest has the annotation
/// `note` = `value`, named `name`.
fn annotated(dir: &Path, value: &str, name: &str) {
    let (_, manifest) = image_of(dir, &[], "1");
    let mut m: Value = serde_json::from_slice(&manifest).unwrap();
    m["annotations"] = serde_json::json!({ "note": value });
    let bytes = serde_json::to_vec(&m).unwrap();
    write_index(dir, &put(dir, &bytes), bytes.len() as u64, name);
}

/// Figure: the same image with a plain annotation and with one holding an
/// escape sequence and a newline prints as many lines; the hostile one
/// shows neither a raw ESC nor a line of its own, but its escaped text.
/// `--json` keeps the exact text.
#[test]
fn inspect_text_shows_an_annotation_with_escapes_on_its_own_line() {
    let t = tempdir();
    let (plain, hostile) = (t.path().join("plain"), t.path().join("hostile"));
    annotated(&plain, "quiet", "1");
    annotated(&hostile, FORGED, "1");
    let p = inspect(&[], &plain);
    let h = inspect(&[], &hostile);
    assert_code(&p, 0);
    assert_code(&h, 0);
    assert!(!h.stdout.contains('\x1b'), "{}", h.stdout);
    assert_eq!(
        h.stdout.lines().count(),
        p.stdout.lines().count(),
        "{}",
        h.stdout
    );
    assert!(
        h.stdout
            .lines()
            .any(|l| l == format!("annotation note={SHOWN}")),
        "{}",
        h.stdout
    );
    let j = inspect(&["--json"], &hostile);
    let j: Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(j["images"][0]["manifest"]["annotations"]["note"], FORGED);
}

/// Figure: an error that names what a layout holds (its image names, one
/// with an escape sequence and a newline) is one line on stderr, the
/// name escaped, no raw ESC.
#[test]
fn an_error_echoing_layout_text_stays_on_its_line() {
    let t = tempdir();
    let dir = t.path().join("named");
    annotated(&dir, "quiet", &format!("1{FORGED}"));
    let arg = format!("{}:nope", dir.display());
    let r = run_bounded(Env::new().cmd().args(["inspect", &arg]));
    assert_code(&r, 2);
    assert!(!r.stderr.contains('\x1b'), "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains(&format!("1{SHOWN}")), "{}", r.stderr);
}

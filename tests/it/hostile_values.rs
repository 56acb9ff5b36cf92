//! What a hostile layout or registry says is shown without harm: sizes
//! that would overflow a total, and text with control characters.

use std::path::Path;

use serde_json::Value;

use crate::common::{assert_code, Run};
use crate::env::Env;
use crate::layout_reader::{image_of, run_bounded, sha256};
use crate::support::tempdir;

fn inspect(args: &[&str], layout: &Path) -> Run {
    run_bounded(Env::new().cmd().arg("inspect").args(args).arg(layout))
}

/// Figure: two layers of 2^63 and 2^64 - 1 bytes overflow a u64 total:
/// `inspect` shows the total held at 2^64 - 1, as text and as JSON, and
/// `--check` reports the layers missing, without a panic.
#[test]
fn inspect_of_layers_whose_sizes_overflow_a_total_does_not_panic() {
    let t = tempdir();
    let dir = t.path().join("huge");
    let layers = [(sha256(b"a"), 1u64 << 63), (sha256(b"b"), u64::MAX)];
    image_of(&dir, &layers, "1");
    let r = inspect(&[], &dir);
    assert_code(&r, 0);
    assert!(
        r.stdout
            .contains(&format!("layers    2 ({} bytes)", u64::MAX)),
        "{}",
        r.stdout
    );
    let r = inspect(&["--json"], &dir);
    assert_code(&r, 0);
    let j: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(j["images"][0]["manifest"]["layers"][1]["size"], u64::MAX);
    let r = inspect(&["--check", "--json"], &dir);
    assert_code(&r, 1);
    let j: Value = serde_json::from_str(&r.stdout).unwrap();
    let missing = (j["check"]["blobs"].as_array().unwrap().iter())
        .filter(|b| b["status"] == "missing")
        .count();
    assert_eq!(missing, 2, "{j}");
}

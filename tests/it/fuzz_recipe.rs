//! A mutation fuzzer over the recipe reader and planner, bounded to run in
//! every test run: recipes (the repository's, the corpus below, and small
//! ones that use every key) are mutated (bytes flipped, interesting tokens
//! inserted, values replaced, lines deleted, duplicated or spliced from
//! another recipe) and handed to `boxwright::recipe::load` with a small
//! build context. No layer is built: reading and planning only.
//!
//! The property: `load` never panics, and every error it returns is bad
//! input (exit code 2), or an I/O error that names a path.
//!
//! Every file in `fixtures/fuzz/recipe/` is replayed first. A case that once
//! failed is kept there; a first line `# expect: TEXT` also requires the
//! error message to contain TEXT (`# expect: ok` requires success).
//!
//! `BOXWRIGHT_FUZZ_SEED` changes the seed, `BOXWRIGHT_FUZZ_CASES` the
//! number of cases (default and minimum 20,000; a run stops after 60 s).

use std::collections::BTreeMap;
use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use boxwright::recipe::{load, LoadOptions, Vars};
use tempfile::TempDir;

use crate::common::{root, write};

const MIN_CASES: u64 = 20_000;
const TIME_BOUND: Duration = Duration::from_secs(60);

/// Tokens that have broken, or could break, a reader of recipes.
const TOKENS: &[&str] = &[
    "\"/\"",
    "\"/.\"",
    "\"//\"",
    "\"/..\"",
    "..",
    "\"..\"",
    "\"a/../..\"",
    "/",
    "99999999999999999999999",
    "18446744073709551615",
    "9223372036854775807",
    "-9223372036854775808",
    "253402300800",
    "-1",
    "0",
    "1.5",
    "1e309",
    "nan",
    "inf",
    "true",
    "false",
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    "[]",
    "{}",
    "=",
    ",",
    "\"",
    "'",
    "\"\"\"",
    "'''",
    "\\",
    "\\u0000",
    "\\uD800",
    "\\U0010FFFF",
    "${",
    "${ARCH}",
    "${OS}",
    "${VARIANT}",
    "${VERSION}",
    "${NOPE}",
    "${1}",
    "$$",
    "$",
    "}",
    "\n",
    "\r\n",
    "\r",
    "\t",
    "#",
    "\"0o7777\"",
    "0o17777",
    "0x1ff",
    "0b1",
    "\"0644\"",
    "\"2024-02-30T00:00:00Z\"",
    "\"2024-02-29T00:00:00Z\"",
    "\"2024-01-01T00:00:00+25:00\"",
    "\"9999-12-31T23:59:59Z\"",
    "2024-01-01T00:00:00Z",
    "2024-01-01",
    "00:00:00",
    "\"oci:/nonexistent\"",
    "\"oci:.\"",
    "\"scratch\"",
    "\"linux/amd64\"",
    "\"linux/arm/v7\"",
    "\"windows/amd64\"",
    "\"files\"",
    "\"files/a.txt\"",
    "\"files/link\"",
    "\"files/out\"",
    "\"/etc/passwd\"",
    "\"fixtures/r2d/tools/${ARCH}\"",
    "[image]",
    "[config]",
    "[vars]",
    "[annotations]",
    "[[layer]]",
    "[[layer.entry]]",
    "[[target]]",
    "[config.env]",
    "[config.labels]",
    "dest = \"/\"",
    "dest = \"/.\"",
    "dest = \"/..\"",
    "dir = true",
    "follow_symlinks = true",
    "content = \"\"",
    "symlink = \"\"",
    "mode = 1.5",
    "mode = [493]",
    "created = 1.5",
    "exclude = [\"[\"]",
    "role = \"primary\"",
    "encoding = \"base64\"",
    "é",
    "\u{feff}",
    "\u{202e}",
];

/// Byte strings that are not text.
const RAW: &[&[u8]] = &[
    b"\xff",
    b"\xc3\x28",
    b"\xed\xa0\x80",
    b"\0",
    b"\xf4\x90\x80\x80",
    b"\xc0\xaf",
];

/// Recipes that use every key, to mutate.
const SEEDS: &[&str] = &[
    r#"context = "ctx"
tags = ["v${VERSION}", "latest"]
[vars]
VERSION = "1.0"
[image]
name = "t"
base = "scratch"
platforms = ["linux/amd64", "linux/arm64", "linux/arm/v7"]
created = "2024-01-01T00:00:00Z"
author = "me"
[config]
entrypoint = ["/bin/app"]
cmd = ["--help"]
workdir = "/w"
user = "1000:1000"
exposed_ports = ["8080", "53/udp"]
volumes = ["/data"]
stop_signal = "SIGTERM"
[config.env]
A = "${ARCH}"
[config.labels]
"l" = "${OS}"
[annotations]
"a" = "${VARIANT}"
[[layer]]
name = "one"
mode = 0o644
dir_mode = "0755"
uid = 1
gid = 2
uname = "u"
gname = "g"
[[layer.entry]]
src = "files"
dest = "/opt/files/"
exclude = ["**/*.tmp", "sub"]
[[layer.entry]]
src = "files/a.txt"
dest = "/"
mode = "4755"
[[layer.entry]]
content = "hi ${ARCH}\n"
dest = "/etc/motd"
[[layer.entry]]
symlink = "/etc/motd"
dest = "/motd"
[[layer.entry]]
dir = true
dest = "/empty/"
uid = 0
[[target]]
ref = "ghcr.io/acme/t"
role = "primary"
username_env = "U"
password_env = "P"
[[target]]
ref = "docker.io/acme/t"
role = "backup"
encoding = "base64"
optional = true
"#,
    r#"context = "ctx"
[image]
name = "u"
created = 1700000000
[[layer]]
[[layer.entry]]
src = "files/link"
dest = "/l"
follow_symlinks = true
[[layer.entry]]
src = "files/sub"
dest = "/"
dir_mode = 0o700
"#,
    "[image]\nname = \"v\"\nbase = \"oci:ctx/layout:v1\"\n",
];

/// SplitMix64: small, fast, and the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

/// Where recipes are written and what their paths lead to: `recipes/` (so
/// that the repository's `context = ".."` is this directory) next to a copy
/// of `fixtures/r2d`, and `recipes/ctx`, a small context with a directory, a
/// file, a symlink inside and one outside, and an OCI layout.
struct World {
    dir: TempDir,
    recipe: PathBuf,
    opts: LoadOptions,
}

impl World {
    fn new() -> World {
        let dir = TempDir::new().unwrap();
        let ctx = dir.path().join("recipes/ctx");
        write(&ctx.join("files/a.txt"), "a\n");
        write(&ctx.join("files/b.tmp"), "b\n");
        write(&ctx.join("files/sub/c.txt"), "c\n");
        std::os::unix::fs::symlink("a.txt", ctx.join("files/link")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", ctx.join("files/out")).unwrap();
        write(
            &ctx.join("layout/oci-layout"),
            "{\"imageLayoutVersion\":\"1.0.0\"}",
        );
        write(
            &ctx.join("layout/index.json"),
            "{\"schemaVersion\":2,\"manifests\":[]}",
        );
        crate::common::copy_tree(
            &root().join("fixtures/r2d"),
            &dir.path().join("fixtures/r2d"),
        );
        let vars = Vars {
            sets: BTreeMap::from([("VERSION".to_string(), "1.2.3".to_string())]),
            defaults: BTreeMap::new(),
            use_env: false,
            ..Default::default()
        };
        World {
            recipe: dir.path().join("recipes/fuzz.toml"),
            dir,
            opts: LoadOptions {
                vars,
                ..LoadOptions::default()
            },
        }
    }

    /// Load `text` as a recipe; `Err` says how the property failed.
    fn check(&self, text: &[u8]) -> Result<Result<(), String>, String> {
        // A new file each time: truncating one makes ext4 flush it to disk.
        let _ = fs::remove_file(&self.recipe);
        fs::write(&self.recipe, text).unwrap();
        let out =
            catch_unwind(AssertUnwindSafe(|| load(&self.recipe, &self.opts))).map_err(|p| {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
                format!("panicked: {}", msg.unwrap_or_default())
            })?;
        let Err(err) = out else {
            return Ok(Ok(()));
        };
        let msg = format!("{err:#}");
        let io_naming_a_path = err.chain().any(|e| e.is::<std::io::Error>())
            && msg.contains(&*self.dir.path().to_string_lossy());
        if boxwright::error::is_bad_input(&err) || io_naming_a_path {
            Ok(Err(msg))
        } else {
            Err(format!("an error that is not bad input: {msg}"))
        }
    }
}

fn corpus() -> Vec<(PathBuf, Vec<u8>)> {
    let dir = root().join("fixtures/fuzz/recipe");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = fs::read(&p).unwrap();
            (p, text)
        })
        .collect()
}

#[test]
fn the_corpus_replays() {
    let world = World::new();
    let corpus = corpus();
    assert!(corpus.len() >= 10, "the corpus is in fixtures/fuzz/recipe");
    for (path, text) in corpus {
        let result = world
            .check(&text)
            .unwrap_or_else(|m| panic!("{}: {m}", path.display()));
        let first = text.split(|&b| b == b'\n').next().unwrap_or_default();
        let Some(expect) = String::from_utf8_lossy(first)
            .strip_prefix("# expect: ")
            .map(|s| s.trim().replace("\\n", "\n"))
        else {
            continue;
        };
        match result {
            Ok(()) => assert_eq!(expect, "ok", "{} loads", path.display()),
            Err(msg) => assert!(
                msg.contains(&expect),
                "{}: error lacks {expect:?}: {msg}",
                path.display()
            ),
        }
    }
}

/// One mutation of `text`, `others` being recipes to splice from.
fn mutate(rng: &mut Rng, text: &mut Vec<u8>, others: &[Vec<u8>]) {
    let at = |rng: &mut Rng, t: &Vec<u8>| rng.below(t.len() + 1);
    let lines = |t: &Vec<u8>| -> Vec<usize> {
        std::iter::once(0)
            .chain(
                t.iter()
                    .enumerate()
                    .filter(|(_, &b)| b == b'\n')
                    .map(|(i, _)| i + 1),
            )
            .collect()
    };
    match rng.below(20) {
        0 | 1 => {
            // Mostly within ASCII: invalid UTF-8 has its own mutation.
            if !text.is_empty() {
                let i = rng.below(text.len());
                let bits = if rng.below(8) == 0 { 8 } else { 7 };
                text[i] ^= 1 << rng.below(bits);
            }
        }
        2..=6 => {
            let i = at(rng, text);
            text.splice(i..i, rng.pick(TOKENS).bytes());
        }
        7 => {
            let i = at(rng, text);
            text.splice(i..i, rng.pick(RAW).iter().copied());
        }
        8..=11 => {
            // Replace a value: what follows a `= ` up to the end of its line.
            let eqs: Vec<usize> = text
                .windows(3)
                .enumerate()
                .filter(|(_, w)| w == b" = ")
                .map(|(i, _)| i + 3)
                .collect();
            if !eqs.is_empty() {
                let start = *rng.pick(&eqs);
                let end = text[start..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(text.len(), |n| start + n);
                text.splice(start..end, rng.pick(TOKENS).bytes());
            }
        }
        12 | 13 => {
            let ls = lines(text);
            let i = rng.below(ls.len());
            let end = ls.get(i + 1).copied().unwrap_or(text.len());
            text.drain(ls[i]..end);
        }
        14 => {
            let ls = lines(text);
            let i = rng.below(ls.len());
            let end = ls.get(i + 1).copied().unwrap_or(text.len());
            let line = text[ls[i]..end].to_vec();
            let to = *rng.pick(&ls);
            text.splice(to..to, line);
        }
        15 | 16 => {
            let other = rng.pick(others);
            let ls = lines(other);
            let a = rng.below(ls.len());
            let b = (a + 1 + rng.below(8)).min(ls.len());
            let end = ls.get(b).copied().unwrap_or(other.len());
            let piece = other[ls[a]..end].to_vec();
            let to = *rng.pick(&lines(text));
            text.splice(to..to, piece);
        }
        17 => {
            // Very long strings and deep nesting.
            let i = at(rng, text);
            let n = 1 << (4 + rng.below(9));
            let filler: Vec<u8> = match rng.below(3) {
                0 => std::iter::repeat_n(b'a', n).collect(),
                1 => std::iter::repeat_n(b'[', n).collect(),
                _ => std::iter::repeat_n(&b"{a="[..], n.min(4096))
                    .flatten()
                    .copied()
                    .collect(),
            };
            text.splice(i..i, filler);
        }
        _ => {
            let i = at(rng, text);
            text.truncate(i);
        }
    }
}

#[test]
fn mutated_recipes_are_refused_cleanly() {
    let seed: u64 = std::env::var("BOXWRIGHT_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_b0c5);
    let cases: u64 = std::env::var("BOXWRIGHT_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(MIN_CASES)
        .max(MIN_CASES);
    let world = World::new();
    let mut seeds: Vec<Vec<u8>> = SEEDS.iter().map(|s| s.as_bytes().to_vec()).collect();
    for dir in ["recipes", "fixtures/fuzz/recipe"] {
        let mut files: Vec<_> = fs::read_dir(root().join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        seeds.extend(
            files
                .iter()
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .map(|p| fs::read(p).unwrap()),
        );
    }
    let mut rng = Rng(seed);
    let (start, mut ran, mut accepted) = (Instant::now(), 0u64, 0u64);
    let mut failures = Vec::new();
    while ran < cases && start.elapsed() < TIME_BOUND {
        let mut text = rng.pick(&seeds).clone();
        for _ in 0..1 + rng.below(4) {
            mutate(&mut rng, &mut text, &seeds);
        }
        ran += 1;
        match world.check(&text) {
            Ok(Ok(())) => accepted += 1,
            Ok(Err(_)) => {}
            Err(m) => failures.push((text, m)),
        }
        if failures.len() >= 5 {
            break;
        }
    }
    if !failures.is_empty() {
        let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-recipe-failures");
        fs::create_dir_all(&keep).unwrap();
        let mut report = String::new();
        for (i, (text, m)) in failures.iter().enumerate() {
            let path = keep.join(format!("case-{i}.toml"));
            fs::write(&path, text).unwrap();
            report += &format!("\n{}: {m}", path.display());
        }
        panic!(
            "seed {seed}: {} of {ran} cases broke the property (copy each into fixtures/fuzz/recipe/ once fixed):{report}",
            failures.len()
        );
    }
    eprintln!(
        "fuzz_recipe: seed {seed}: {ran} cases in {:.1?}, {accepted} accepted",
        start.elapsed()
    );
    assert!(
        ran >= MIN_CASES,
        "only {ran} cases ran within {TIME_BOUND:?} (at least {MIN_CASES} must)"
    );
}

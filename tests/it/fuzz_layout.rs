//! A mutation fuzzer over OCI layouts, run by every `cargo test`: valid
//! layouts (one image, or an index of two nested in index.json) are
//! mutated (JSON documents byte-flipped, truncated, given wrong or huge
//! sizes and digests, deep nesting, wrong media types, then re-addressed so
//! that their parents name them, or not; files replaced by symbolic links,
//! FIFOs, directories, hard links, sparse multi-GiB files, or removed) and
//! read by `inspect`, `inspect --check` and the push side (`LayoutImage`,
//! the manifest walk, every blob's check), as library calls; a handful go
//! through the binary.
//!
//! Properties: no panic; no case takes longer than [`CASE_TIMEOUT`]; every
//! error is bad input or an I/O error, and names a path of the layout; the
//! binary exits 0, 1 or 2. The seed is fixed ([`SEED`], or
//! `BOXWRIGHT_FUZZ_SEED`), so a run is reproducible; `BOXWRIGHT_FUZZ_CASES`
//! changes the count. Cases that once failed are kept in
//! `fixtures/fuzz/layout/*.json` and replayed first (a failing case is
//! written to `target/fuzz-layout-failed.json`, to be added there).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use boxwright::error::is_bad_input;
use boxwright::image::layout::{Layout, LayoutImage};
use boxwright::image::walk;
use boxwright::ops::inspect;

use crate::common::{boxwright, root};
use crate::layout_reader::{mkfifo, run_bounded};

const SEED: u64 = 0x6c61_796f_7574_2d31;
const CASES: usize = 20_000;
const CASE_TIMEOUT: Duration = Duration::from_secs(10);
/// Cases run through the binary (inspect and inspect --check each).
const THROUGH_BINARY: usize = 6;

/// One file of a case's layout, by its path in the layout.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Entry {
    /// File content (JSON documents).
    Text(String),
    /// File content as hex.
    Hex(String),
    Symlink(String),
    Fifo,
    Dir,
    /// A hard link to another entry of the layout.
    HardLink(String),
    /// A sparse file of this many bytes.
    Sparse(u64),
}

/// A layout, as files. Paths not listed are missing.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Case {
    entries: BTreeMap<String, Entry>,
    /// Which descriptor (by JSON pointer) of which document names each blob.
    #[serde(skip)]
    parents: BTreeMap<String, Vec<(String, String)>>,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

fn blob_path(digest: &str) -> String {
    format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))
}

impl Case {
    fn bytes(&self, path: &str) -> Option<Vec<u8>> {
        match self.entries.get(path)? {
            Entry::Text(t) => Some(t.clone().into_bytes()),
            Entry::Hex(h) => hex::decode(h).ok(),
            _ => None,
        }
    }

    fn put(&mut self, bytes: &[u8]) -> (String, usize) {
        let d = sha(bytes);
        let e = match std::str::from_utf8(bytes) {
            Ok(t) => Entry::Text(t.to_string()),
            Err(_) => Entry::Hex(hex::encode(bytes)),
        };
        self.entries.insert(blob_path(&d), e);
        (d, bytes.len())
    }

    fn named(&mut self, child: &str, parent: &str, pointer: &str) {
        self.parents
            .entry(blob_path(child))
            .or_default()
            .push((parent.to_string(), pointer.to_string()));
    }

    /// A valid layout: one image, or an index of two (nested or not).
    fn valid(rng: &mut Rng) -> Case {
        let mut c = Case::default();
        c.entries.insert(
            "oci-layout".into(),
            Entry::Text(r#"{"imageLayoutVersion":"1.0.0"}"#.into()),
        );
        let platforms = if rng.below(2) == 0 { 1 } else { 2 };
        let mut manifests = Vec::new();
        for p in 0..platforms {
            let arch = ["amd64", "arm64"][p];
            let layers: Vec<(String, usize)> = (0..1 + rng.below(2))
                .map(|_| {
                    let n = 1 + rng.below(300);
                    let b = rng.bytes(n);
                    c.put(&b)
                })
                .collect();
            let config = json!({"architecture": arch, "os": "linux", "config": {},
                "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.0.clone()).collect::<Vec<_>>()}});
            let config = c.put(config.to_string().as_bytes());
            let manifest = json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.0, "size": config.1},
                "layers": layers.iter().map(|(d, s)| json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": s})).collect::<Vec<_>>(),
            });
            let m = c.put(manifest.to_string().as_bytes());
            let mp = blob_path(&m.0);
            c.named(&config.0, &mp, "/config");
            for (i, (d, _)) in layers.iter().enumerate() {
                c.named(d, &mp, &format!("/layers/{i}"));
            }
            manifests.push((m, arch));
        }
        let entries: Vec<Value> = manifests
            .iter()
            .map(|((d, s), arch)| json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": s, "platform": {"os": "linux", "architecture": arch}}))
            .collect();
        let top = if platforms == 2 && rng.below(2) == 0 {
            let nested = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries});
            let n = c.put(nested.to_string().as_bytes());
            for (i, ((d, _), _)) in manifests.iter().enumerate() {
                c.named(d, &blob_path(&n.0), &format!("/manifests/{i}"));
            }
            vec![
                json!({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": n.0, "size": n.1,
                "annotations": {"org.opencontainers.image.ref.name": "1"}}),
            ]
        } else {
            entries
                .into_iter()
                .take(1)
                .map(|mut e| {
                    e["annotations"] = json!({"org.opencontainers.image.ref.name": "1"});
                    e
                })
                .collect()
        };
        let top_digest = top[0]["digest"].as_str().unwrap_or_default().to_string();
        c.named(&top_digest, "index.json", "/manifests/0");
        let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": top});
        c.entries
            .insert("index.json".into(), Entry::Text(index.to_string()));
        c
    }

    /// Store the (changed) document at `path` under its new digest and make
    /// its parents name it, up to index.json.
    fn readdress(&mut self, path: &str, depth: usize) {
        if path == "index.json" || depth > 4 {
            return;
        }
        let (Some(bytes), Some(parents)) = (self.bytes(path), self.parents.get(path).cloned())
        else {
            return;
        };
        let Some(e) = self.entries.remove(path) else {
            return;
        };
        let d = sha(&bytes);
        let new_path = blob_path(&d);
        self.entries.insert(new_path.clone(), e);
        self.parents.insert(new_path, parents.clone());
        for (parent, pointer) in parents {
            let Some(mut v) = self
                .bytes(&parent)
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            else {
                continue;
            };
            if let Some(desc) = v.pointer_mut(&pointer) {
                if desc.is_object() {
                    desc["digest"] = json!(d);
                    desc["size"] = json!(bytes.len());
                }
            }
            self.entries
                .insert(parent.clone(), Entry::Text(v.to_string()));
            self.readdress(&parent, depth + 1);
        }
    }

    fn mutate(&mut self, rng: &mut Rng) {
        let paths: Vec<String> = self.entries.keys().cloned().collect();
        let path = paths[rng.below(paths.len())].clone();
        let is_json = path == "index.json"
            || self
                .bytes(&path)
                .is_some_and(|b| serde_json::from_slice::<Value>(&b).is_ok());
        match rng.below(14) {
            0..=5 if is_json => {
                let Some(mut v) = self
                    .bytes(&path)
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                else {
                    return;
                };
                mutate_json(&mut v, rng);
                let text = to_text(&v, rng);
                self.entries.insert(path.clone(), Entry::Text(text));
                if rng.below(3) > 0 {
                    self.readdress(&path, 0);
                }
            }
            0..=6 => {
                // Bytes: flip, truncate or extend (stale digest and size).
                let Some(mut b) = self.bytes(&path) else {
                    return;
                };
                match rng.below(3) {
                    0 if !b.is_empty() => {
                        let i = rng.below(b.len());
                        b[i] ^= 1 << rng.below(8);
                    }
                    1 => b.truncate(rng.below(b.len() + 1)),
                    _ => {
                        let n = 1 + rng.below(8);
                        b.extend(rng.bytes(n));
                    }
                }
                self.entries
                    .insert(path.clone(), Entry::Hex(hex::encode(&b)));
                if rng.below(2) == 0 {
                    self.readdress(&path, 0);
                }
            }
            7 => {
                let targets = [
                    "/etc/passwd",
                    "/dev/zero",
                    "/dev/null",
                    "/nonexistent",
                    "../index.json",
                ];
                let t = targets[rng.below(targets.len())];
                self.entries.insert(path, Entry::Symlink(t.into()));
            }
            8 => {
                self.entries.insert(path, Entry::Fifo);
            }
            9 => {
                self.entries.insert(path, Entry::Dir);
            }
            10 => {
                let other = paths[rng.below(paths.len())].clone();
                if other != path {
                    self.entries.insert(path, Entry::HardLink(other));
                }
            }
            11 => {
                self.entries.remove(&path);
            }
            12 => {
                let sizes = [(2u64 << 30) + 7, 5 << 20, (4 << 20) + 1];
                self.entries
                    .insert(path, Entry::Sparse(sizes[rng.below(sizes.len())]));
            }
            _ => {
                // The blobs directory itself, or a directory on the way.
                let dirs = ["blobs", "blobs/sha256"];
                let d = dirs[rng.below(2)];
                self.entries.retain(|p, _| !p.starts_with(&format!("{d}/")));
                self.entries.insert(d.into(), Entry::Symlink("/etc".into()));
            }
        }
    }

    /// Write the layout at `dir` (which must not exist). An entry whose
    /// place is taken (a directory made for another entry) or cannot be
    /// reached (its parent is not a directory) is left out.
    fn materialize(&self, dir: &Path) -> std::io::Result<()> {
        fs::create_dir_all(dir)?;
        let mut links = Vec::new();
        for (p, e) in &self.entries {
            let path = dir.join(p);
            if fs::symlink_metadata(&path).is_ok() {
                continue;
            }
            if let Some(parent) = path.parent() {
                match fs::symlink_metadata(parent) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => continue,
                    Err(_) if fs::create_dir_all(parent).is_err() => continue,
                    Err(_) => {}
                }
            }
            match e {
                Entry::Text(t) => fs::write(&path, t)?,
                Entry::Hex(h) => fs::write(&path, hex::decode(h).unwrap_or_default())?,
                Entry::Symlink(t) => symlink(t, &path)?,
                Entry::Fifo => mkfifo(&path),
                Entry::Dir => fs::create_dir_all(&path)?,
                Entry::HardLink(other) => links.push((dir.join(other), path)),
                Entry::Sparse(n) => fs::File::create(&path)?.set_len(*n)?,
            }
        }
        for (from, to) in links {
            // A link to what is not a regular file (or is missing), or
            // whose place is taken, is left out.
            let free = fs::symlink_metadata(&to).is_err()
                && to
                    .parent()
                    .is_some_and(|p| fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()));
            if free && fs::symlink_metadata(&from).is_ok_and(|m| m.is_file()) {
                fs::hard_link(from, to)?;
            }
        }
        Ok(())
    }
}

/// Stands for deeply nested arrays, spliced into the document's text.
const DEEP: &str = "<deeply nested>";

/// The text of `v` with [`DEEP`] replaced by arrays nested `depth` deep.
fn to_text(v: &Value, rng: &mut Rng) -> String {
    let text = v.to_string();
    let depth = [64, 127, 129, 300, 100_000][rng.below(5)];
    let deep = format!("{}null{}", "[".repeat(depth), "]".repeat(depth));
    text.replace(&format!("{DEEP:?}"), &deep)
}

fn mutate_json(v: &mut Value, rng: &mut Rng) {
    // Pick a node by a random walk down, as a JSON pointer.
    let mut pointer = String::new();
    let mut at: &Value = v;
    for _ in 0..rng.below(5) {
        let step = match at {
            Value::Object(m) if !m.is_empty() => m
                .iter()
                .nth(rng.below(m.len()))
                .map(|(k, n)| (k.replace('~', "~0").replace('/', "~1"), n)),
            Value::Array(a) if !a.is_empty() => {
                let i = rng.below(a.len());
                Some((i.to_string(), &a[i]))
            }
            _ => None,
        };
        match step {
            Some((k, n)) => {
                pointer = format!("{pointer}/{k}");
                at = n;
            }
            None => break,
        }
    }
    let Some(node) = v.pointer_mut(&pointer) else {
        return;
    };
    let digests = [
        json!("sha256:0000000000000000000000000000000000000000000000000000000000000000"),
        json!("sha256:../../../../etc/passwd"),
        json!("sha512:abcd"),
        json!("SHA256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"),
        json!("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    ];
    let numbers = [
        json!(u64::MAX),
        json!(1u64 << 53),
        json!(-1),
        json!(0),
        json!(1e308),
        json!(1.5),
        json!((4u64 << 20) + 1),
    ];
    let media = [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "text/plain",
        "",
    ];
    match rng.below(9) {
        0 => *node = digests[rng.below(digests.len())].clone(),
        1 => *node = numbers[rng.below(numbers.len())].clone(),
        2 => *node = json!(media[rng.below(media.len())]),
        3 => {
            // Spliced in as text (see `DEEP`): a Value this deep would
            // overflow the generator's own stack.
            *node = json!(DEEP);
        }
        4 => *node = Value::Null,
        5 => *node = json!({}),
        6 => *node = json!([]),
        7 => {
            if let Value::Object(m) = node {
                if let Some(k) = m.keys().nth(rng.below(m.len().max(1))).cloned() {
                    m.remove(&k);
                }
            }
        }
        _ => {
            if let Value::Object(m) = node {
                m.insert("size".into(), numbers[rng.below(numbers.len())].clone());
                m.insert("schemaVersion".into(), json!(rng.below(3)));
            }
        }
    }
}

/// Run the readers on the layout at `dir`; a description of each property
/// violation (none when all is well).
fn read_all(dir: &Path, rt: &tokio::runtime::Runtime) -> Vec<String> {
    let mut problems = Vec::new();
    let mut judge = |what: &str, r: anyhow::Result<()>| {
        if let Err(e) = r {
            let text = format!("{e:#}");
            let io = e.chain().any(|c| c.is::<std::io::Error>());
            if !(is_bad_input(&e) || io) {
                problems.push(format!("{what}: neither bad input nor I/O: {text}"));
            }
            if !text.contains(&dir.display().to_string()) {
                problems.push(format!("{what}: names no path of the layout: {text}"));
            }
        }
    };
    judge(
        "inspect",
        LayoutImage::open(dir, None)
            .and_then(|img| rt.block_on(inspect::inspect(&img, None)).map(|_| ())),
    );
    judge(
        "inspect --check",
        Layout::open(dir).and_then(|l| rt.block_on(inspect::check(&l, None)).map(|_| ())),
    );
    judge(
        "push reader",
        LayoutImage::open(dir, None).and_then(|img| {
            let graph = rt.block_on(walk(&img))?;
            img.check_blobs(&graph)?;
            for d in &graph.blobs {
                img.verified_blob(d)?;
            }
            Ok(())
        }),
    );
    problems
}

/// Run `cases` on a worker thread, each under [`CASE_TIMEOUT`]; panics
/// with the first failing case (saved under target/).
fn run_cases(work: &Path, cases: impl Iterator<Item = (String, Case)>) -> usize {
    let (to_worker, jobs) = mpsc::channel::<(PathBuf, Case)>();
    let (to_main, results) = mpsc::channel::<std::thread::Result<Vec<String>>>();
    let worker = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for (dir, case) in jobs {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                case.materialize(&dir).expect("writing the case");
                read_all(&dir, &rt)
            }));
            let _ = fs::remove_dir_all(&dir);
            if to_main.send(r).is_err() {
                break;
            }
        }
    });
    let mut n = 0;
    for (name, case) in cases {
        let dir = work.join(format!("c{n}"));
        to_worker.send((dir, case.clone())).unwrap();
        let failure = match results.recv_timeout(CASE_TIMEOUT) {
            Ok(Ok(problems)) if problems.is_empty() => None,
            Ok(Ok(problems)) => Some(problems.join("\n")),
            Ok(Err(_)) => Some("panicked".to_string()),
            Err(_) => Some(format!("took more than {CASE_TIMEOUT:?}")),
        };
        if let Some(why) = failure {
            let saved = root().join("target/fuzz-layout-failed.json");
            let _ = fs::write(
                &saved,
                serde_json::to_string_pretty(&case).unwrap_or_default(),
            );
            panic!(
                "layout case {name} failed (saved as {}):\n{why}",
                saved.display()
            );
        }
        n += 1;
    }
    drop(to_worker);
    let _ = worker.join();
    n
}

/// Where the cases are written: a memory file system when there is one
/// (thousands of small layouts are written and removed).
fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("boxwright-fuzz-")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap()
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Figure: the corpus of once-failing cases, then 20,000 generated cases
/// (seed fixed), pass every property, in well under a minute.
#[test]
fn layout_readers_survive_mutated_layouts() {
    let work = scratch();
    let corpus_dir = root().join("fixtures/fuzz/layout");
    let mut corpus: Vec<PathBuf> = fs::read_dir(&corpus_dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    corpus.sort();
    let replayed: Vec<(String, Case)> = corpus
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let text = fs::read_to_string(p).unwrap();
            let case: Case =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.display().to_string(), case)
        })
        .collect();
    assert!(replayed.len() >= 5, "the corpus is in fixtures/fuzz/layout");
    run_cases(work.path(), replayed.into_iter());

    let seed = env_u64("BOXWRIGHT_FUZZ_SEED").unwrap_or(SEED);
    let count = env_u64("BOXWRIGHT_FUZZ_CASES").map_or(CASES, |n| n as usize);
    let started = Instant::now();
    let mut rng = Rng(seed | 1);
    let generated = (0..count).map(move |i| {
        let mut c = Case::valid(&mut rng);
        // One case in eight stays valid.
        let mutations = rng.below(8).min(3);
        for _ in 0..mutations {
            c.mutate(&mut rng);
        }
        (format!("#{i} of seed {seed:#x}"), c)
    });
    let n = run_cases(work.path(), generated);
    assert_eq!(n, count);
    eprintln!("{n} layout cases in {:?}", started.elapsed());
}

/// Figure: a few mutated layouts through the binary: `inspect` and
/// `inspect --check` exit 0, 1 or 2, each within 20 s.
#[test]
fn the_binary_exits_0_1_or_2_on_mutated_layouts() {
    let work = tempfile::tempdir().unwrap();
    let mut rng = Rng(SEED ^ 0xb1b1);
    for i in 0..THROUGH_BINARY {
        let mut c = Case::valid(&mut rng);
        for _ in 0..1 + i % 3 {
            c.mutate(&mut rng);
        }
        let dir = work.path().join(format!("b{i}"));
        c.materialize(&dir).unwrap();
        for args in [
            &["inspect"][..],
            &["inspect", "--check"],
            &["inspect", "--check", "--json"],
        ] {
            let r = run_bounded(boxwright().args(args).arg(&dir));
            assert!(
                [0, 1, 2].contains(&r.code),
                "{args:?} on case {i}: exit {}\n{}\n{}",
                r.code,
                serde_json::to_string(&c).unwrap_or_default(),
                r.stderr
            );
        }
    }
}

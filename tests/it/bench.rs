//! `boxwright bench` against two real `docker-registry` instances, each
//! behind a fault-injecting proxy that counts what it receives. Each test
//! states the figure it checks.

use serde_json::Value;

use crate::common::{boxwright, run};
use crate::support::{Fault, FaultProxy, Injected, Registry};

const KINDS: [&str; 5] = ["HEAD", "POST", "PATCH", "PUT", "GET"];

const RUN_FIELDS: [&str; 27] = [
    "registry",
    "repository",
    "mode",
    "concurrency",
    "run",
    "blobs",
    "blob_size",
    "bytes",
    "bytes_sent",
    "bytes_uploaded",
    "bytes_pulled",
    "upload_secs",
    "upload_mb_per_s",
    "pull_secs",
    "pull_mb_per_s",
    "cleanup_secs",
    "wall_secs",
    "requests",
    "latency_ms",
    "retries",
    "errors",
    "errors_total",
    "failed_uploads",
    "failed_pulls",
    "already_present",
    "failures",
    "cleanup",
];

fn bench_json(args: &[&str]) -> (Value, String) {
    let r = run(boxwright().arg("bench").args(args).arg("--json"));
    assert_eq!(
        r.code, 0,
        "bench failed\nstdout: {}\nstderr: {}",
        r.stdout, r.stderr
    );
    let v: Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", r.stdout));
    (v, r.stderr)
}

/// `--to TARGET --blobs BLOBS --size SIZE`, one upload at a time, each
/// blob whole: one run.
fn one_run<'a>(target: &'a str, blobs: &'a str, size: &'a str) -> Vec<&'a str> {
    vec![
        "--to",
        target,
        "--blobs",
        blobs,
        "--size",
        size,
        "--concurrency",
        "1",
        "--mode",
        "monolithic",
    ]
}

fn runs_of<'a>(v: &'a Value, registry: &str) -> Vec<&'a Value> {
    v["runs"]
        .as_array()
        .expect("runs is an array")
        .iter()
        .filter(|r| r["registry"] == registry)
        .collect()
}

fn sum(runs: &[&Value], f: impl Fn(&Value) -> u64) -> u64 {
    runs.iter().map(|r| f(r)).sum()
}

/// Figures: one run per (registry, mode, concurrency) with every field and
/// every request kind; PUT+PATCH body bytes each proxy received == blobs x
/// size x runs on it (unique blobs per run, nothing skipped); the request
/// counts in the JSON == the proxy's counts; GETs == blobs pulled; every
/// blob deleted afterwards (DELETEs == blobs x runs).
#[test]
fn json_has_every_field_and_bytes_match_what_the_proxies_received() {
    let (ra, rb) = (Registry::start(), Registry::start());
    let (pa, pb) = (FaultProxy::start(&ra), FaultProxy::start(&rb));
    let (ta, tb) = (
        format!("{}/bench/a", pa.host()),
        format!("{}/bench/b", pb.host()),
    );
    const BLOBS: u64 = 3;
    const SIZE: u64 = 300 * 1024;
    let (v, stderr) = bench_json(&[
        "--to",
        &ta,
        "--to",
        &tb,
        "--blobs",
        "3",
        "--size",
        "300KiB",
        "--concurrency",
        "1,3",
        "--mode",
        "monolithic,chunked,streamed",
        "--chunk-size",
        "128KiB",
        "--pull",
        "--seed",
        "7",
    ]);
    assert_eq!(v["seed"], 7);
    assert_eq!(v["blob_size"], SIZE);
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(
        runs.len(),
        2 * 3 * 2,
        "2 registries x 3 modes x 2 concurrencies"
    );
    for mode in ["monolithic", "chunked", "streamed"] {
        for conc in [1, 3] {
            for (proxy, repo) in [(&pa, "bench/a"), (&pb, "bench/b")] {
                let found: Vec<&Value> = runs
                    .iter()
                    .filter(|r| {
                        r["registry"] == proxy.host().as_str()
                            && r["mode"] == mode
                            && r["concurrency"] == conc
                    })
                    .collect();
                assert_eq!(found.len(), 1, "{} {mode} x{conc}", proxy.host());
                let r = found[0];
                for f in RUN_FIELDS {
                    assert!(r.get(f).is_some(), "field {f} missing in {r}");
                }
                assert_eq!(r["repository"], repo);
                assert_eq!(r["bytes"], BLOBS * SIZE);
                assert_eq!(r["bytes_sent"], BLOBS * SIZE, "no retries, no resends");
                assert_eq!(r["bytes_uploaded"], BLOBS * SIZE);
                assert_eq!(r["bytes_pulled"], BLOBS * SIZE);
                assert!(r["upload_mb_per_s"].as_f64().unwrap() > 0.0);
                assert!(r["pull_mb_per_s"].as_f64().unwrap() > 0.0);
                for k in KINDS {
                    let l = &r["latency_ms"][k];
                    for f in ["count", "p50_ms", "p95_ms", "p99_ms", "max_ms"] {
                        assert!(l.get(f).is_some(), "latency_ms.{k}.{f} missing in {r}");
                    }
                    let expect_some = k != "PATCH" || mode != "monolithic";
                    assert_eq!(l["p50_ms"].is_number(), expect_some, "{k} {mode}: {l}");
                    assert_eq!(l["count"], r["requests"][k]);
                }
                assert_eq!(r["requests"]["HEAD"], BLOBS);
                assert_eq!(r["requests"]["POST"], BLOBS);
                assert_eq!(r["requests"]["PUT"], BLOBS);
                assert_eq!(r["requests"]["GET"], BLOBS, "one pull per blob");
                let patches = match mode {
                    "monolithic" => 0,
                    "streamed" => BLOBS,
                    _ => BLOBS * SIZE.div_ceil(128 * 1024),
                };
                assert_eq!(r["requests"]["PATCH"], patches, "{mode}");
                assert_eq!(r["errors_total"], 0);
                assert_eq!(r["retries"], 0);
                assert_eq!(r["failed_uploads"], 0);
                assert_eq!(r["already_present"], 0, "unique blobs per run");
                assert_eq!(r["cleanup"]["outcome"], "deleted");
                assert_eq!(r["cleanup"]["deleted"], BLOBS);
                assert_eq!(r["cleanup"]["left"], 0);
            }
        }
    }
    for proxy in [&pa, &pb] {
        let mine = runs_of(&v, &proxy.host());
        let n = mine.len() as u64;
        assert_eq!(
            proxy.bytes_received("PUT") + proxy.bytes_received("PATCH"),
            BLOBS * SIZE * n,
            "PUT+PATCH body bytes at {}",
            proxy.host()
        );
        // Before the runs, unmeasured: the auth ping (GET /v2/) and one HEAD.
        let warm_up = |k: &str| u64::from(k == "GET" || k == "HEAD");
        for k in KINDS {
            assert_eq!(
                sum(&mine, |r| r["requests"][k].as_u64().unwrap()) + warm_up(k),
                proxy.count(k),
                "{k} requests at {}",
                proxy.host()
            );
        }
        assert_eq!(proxy.count("DELETE"), BLOBS * n, "every blob deleted");
        // The registry accepted every DELETE (202).
        assert!(proxy
            .log()
            .iter()
            .filter(|e| e.method == "DELETE")
            .all(|e| e.status == Some(202)));
    }
    // With --json the tables are on stderr, for the eye.
    assert!(stderr.contains("UP MB/s") && stderr.contains(&ta) && stderr.contains(&tb));
    assert!(stderr.contains("p50 / p95 / p99"));
}

/// Figure: `errors` == {"503": faults the proxy injected}, `retries` == the
/// same number, and no transfer fails (the client recovered from each);
/// the other registry, without faults, shows none.
#[test]
fn injected_faults_show_up_as_errors_and_retries() {
    let (ra, rb) = (Registry::start(), Registry::start());
    let pa = FaultProxy::with_seed(&ra, 11);
    let pb = FaultProxy::start(&rb);
    pa.configure(|c| {
        c.fault_rate = 0.25;
        c.fault_kinds = vec![Fault::Unavailable];
        c.fault_methods = vec!["PATCH".into(), "PUT".into()];
    });
    let (ta, tb) = (
        format!("{}/flaky", pa.host()),
        format!("{}/calm", pb.host()),
    );
    let (v, stderr) = bench_json(&[
        "--to",
        &ta,
        "--to",
        &tb,
        "--blobs",
        "6",
        "--size",
        "200KiB",
        "--concurrency",
        "2",
        "--mode",
        "chunked",
        "--chunk-size",
        "64KiB",
        "--seed",
        "3",
    ]);
    let injected = pa.injected_count(Injected::Fault(Fault::Unavailable)) as u64;
    assert!(injected > 0, "the proxy injected no fault; raise the rate");
    let a = runs_of(&v, &pa.host());
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["errors"]["503"], injected, "{}", a[0]);
    assert_eq!(a[0]["errors_total"], injected);
    assert_eq!(a[0]["retries"], injected);
    assert_eq!(a[0]["failed_uploads"], 0);
    let b = runs_of(&v, &pb.host());
    assert_eq!(b[0]["errors_total"], 0);
    assert_eq!(b[0]["retries"], 0);
    assert!(
        stderr.contains(&format!("503:{injected}")),
        "table shows the errors:\n{stderr}"
    );
}

/// Figures: without --json or --csv the tables are the whole of stdout
/// (`bench ... > report.txt` keeps them: throughput, latencies, the errors
/// a registry answered) and stderr holds only progress; --quiet drops the
/// progress, not the tables.
#[test]
fn tables_go_to_stdout_and_progress_to_stderr() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg);
    let target = format!("{}/tables", proxy.host());
    let args = one_run(&target, "2", "32KiB");
    proxy.fail_next("PUT", Fault::Unavailable);
    let r = run(boxwright().arg("bench").args(&args));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("UP MB/s") && r.stdout.contains(&target),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("p50 / p95 / p99"), "{}", r.stdout);
    assert!(
        r.stdout.contains("503:1"),
        "the table shows the error:\n{}",
        r.stdout
    );
    assert!(!r.stderr.contains("UP MB/s"), "{}", r.stderr);
    assert!(
        r.stderr.contains("started"),
        "progress on stderr:\n{}",
        r.stderr
    );

    let q = run(boxwright().args(["--quiet", "bench"]).args(args));
    assert_eq!(q.code, 0, "{}", q.stderr);
    assert!(q.stdout.contains("UP MB/s"), "{}", q.stdout);
    assert_eq!(q.stderr, "");
}

/// Figures: a one-shot 500 on a POST, two 503 on PUT and a connection dropped during a PUT are counted by status
/// (500:1, 503:2, transport:1) with four retries, and the report still
/// succeeds, pulls included.
#[test]
fn one_shot_faults_are_counted_by_status() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg);
    // POST, not HEAD: the unmeasured warm-up sends the first HEAD.
    proxy.fail_next("POST", Fault::InternalError);
    proxy.fail_next("PUT", Fault::Unavailable);
    proxy.fail_next("PUT", Fault::Unavailable);
    proxy.fail_next("PUT", Fault::DropConnection);
    let target = format!("{}/oneshot", proxy.host());
    let (v, _) = bench_json(&[&one_run(&target, "2", "64KiB")[..], &["--pull"]].concat());
    let r = &v["runs"][0];
    assert_eq!(r["errors"]["500"], 1, "{r}");
    assert_eq!(r["errors"]["503"], 2, "{r}");
    assert_eq!(r["errors"]["transport"], 1, "{r}");
    assert_eq!(r["errors_total"], 4);
    assert_eq!(r["retries"], 4);
    assert_eq!(r["failed_uploads"], 0);
    assert_eq!(r["failed_pulls"], 0);
}

/// Attempts of the warm-up against a registry that never answers: the
/// `GET /v2/` ping and its 6 retries (bench's retry budget).
const WARM_UP_ATTEMPTS: u64 = 7;

/// Figures: against a registry that never answers (the proxy drops every
/// connection), every attempt of the run, the `GET /v2/` pings included, is
/// counted: `errors` == {"transport": the run's requests}, `errors_total`
/// the same, and the run's requests + the warm-up's == what the proxy
/// received; each blob failed after its retries (transport == retries +
/// failed uploads), no byte counts as uploaded, the cleanup had
/// `nothing` to delete, and the command exits 1.
#[test]
fn a_registry_that_never_answers_counts_every_attempt_as_transport() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg);
    proxy.configure(|c| {
        c.fault_rate = 1.0;
        c.fault_kinds = vec![Fault::DropConnection];
    });
    let target = format!("{}/silent", proxy.host());
    let r = run(boxwright()
        .arg("bench")
        .args(one_run(&target, "1", "4KiB"))
        .args(["--pull", "--json"]));
    assert_eq!(
        r.code, 1,
        "a failed upload is exit 1
{}",
        r.stderr
    );
    let v: Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", r.stdout));
    let run = &v["runs"][0];
    let requests = sum(&[run], |r| {
        KINDS
            .iter()
            .map(|k| r["requests"][k].as_u64().unwrap())
            .sum()
    });
    assert!(requests > 0, "{run}");
    assert_eq!(
        run["errors"],
        serde_json::json!({ "transport": requests }),
        "{run}"
    );
    assert_eq!(run["errors_total"], requests);
    assert_eq!(run["failed_uploads"], 1);
    assert_eq!(run["bytes_uploaded"], 0, "nothing was uploaded");
    assert_eq!(run["upload_mb_per_s"], 0.0);
    // Nothing was uploaded, so nothing could be pulled back: no pull
    // figures, rather than a pull measured at 0 MB/s.
    for k in ["pull_secs", "pull_mb_per_s", "bytes_pulled"] {
        assert_eq!(run[k], Value::Null, "{k}: {run}");
    }
    assert_eq!(
        run["cleanup"],
        serde_json::json!({"outcome": "nothing", "deleted": 0, "left": 0, "detail": null}),
        "nothing to delete"
    );
    assert_eq!(
        run["retries"].as_u64().unwrap() + 1,
        requests,
        "the blob's attempt and its retries"
    );
    let received: u64 = proxy.log().len() as u64;
    assert_eq!(received, requests + WARM_UP_ATTEMPTS, "{run}");
    assert_eq!(
        proxy.injected_count(Injected::Fault(Fault::DropConnection)) as u64,
        received
    );
}

/// Figures: with the first of 3 blobs refused for good (seven 503s on its
/// PUT: the attempt and its 6 retries) and every blob pulled back altered,
/// `bytes_uploaded` == the 2 blobs the registry took (while `bytes_sent`
/// == all 3 PUT bodies and the retries, as the proxy received),
/// `bytes_pulled` == 0 with 2 failed pulls, and the command exits 1.
#[test]
fn only_transfers_that_succeeded_count_as_uploaded_or_pulled() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg);
    for _ in 0..7 {
        proxy.fail_next("PUT", Fault::Unavailable);
    }
    proxy.configure(|c| c.corrupt_blobs = true);
    const SIZE: u64 = 16 * 1024;
    let target = format!("{}/partial", proxy.host());
    let r = run(boxwright()
        .arg("bench")
        .args(one_run(&target, "3", "16KiB"))
        .args(["--pull", "--json"]));
    assert_eq!(r.code, 1, "failed transfers are exit 1\n{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", r.stdout));
    let run = &v["runs"][0];
    assert_eq!(run["failed_uploads"], 1, "{run}");
    assert_eq!(run["errors"]["503"], 7, "{run}");
    assert_eq!(run["bytes"], 3 * SIZE);
    assert_eq!(run["bytes_sent"], proxy.bytes_received("PUT"));
    assert_eq!(proxy.bytes_received("PUT"), (7 + 2) * SIZE);
    assert_eq!(run["bytes_uploaded"], 2 * SIZE, "{run}");
    assert_eq!(run["failed_pulls"], 2, "{run}");
    assert_eq!(
        proxy.injected_count(Injected::CorruptBlob),
        2,
        "each uploaded blob pulled once"
    );
    assert_eq!(run["bytes_pulled"], 0, "{run}");
    assert_eq!(run["pull_mb_per_s"], 0.0);
    assert_eq!(run["cleanup"]["outcome"], "deleted");
    assert_eq!(run["cleanup"]["deleted"], 2);
    let blob_deletes = proxy
        .log()
        .iter()
        .filter(|e| e.method == "DELETE" && e.path.contains("/blobs/sha256:"))
        .count();
    assert_eq!(blob_deletes, 2, "only the blobs uploaded are deleted");
}

/// Largest seed a JSON reader holding numbers as doubles keeps exact.
const MAX_SEED: u64 = (1 << 53) - 1;

/// Figures: a random seed is at most 2^53 - 1, so it reads back exact as a
/// double (as most JSON readers read it), and that seed given to `--seed`
/// regenerates the same blob (same digest, already present when kept);
/// the largest seed is accepted and reported as given.
#[test]
fn random_seeds_read_back_exact_as_doubles() {
    let reg = Registry::start();
    let target = format!("{}/seeds", reg.addr());
    let args = [&one_run(&target, "1", "1KiB")[..], &["--keep"]].concat();
    for _ in 0..3 {
        let (v, _) = bench_json(&args);
        let seed = v["seed"].as_u64().expect("seed is a whole number");
        assert!(seed <= MAX_SEED, "seed {seed} is above 2^53 - 1");
        let read_as_double = v["seed"].as_f64().unwrap();
        assert_eq!(read_as_double as u64, seed);
        assert_eq!(v["runs"][0]["already_present"], 0);
        // The seed as a double reader got it reproduces the blob.
        let again = (read_as_double as u64).to_string();
        let (w, _) = bench_json(&[&args[..], &["--seed", &again]].concat());
        assert_eq!(w["seed"], seed);
        assert_eq!(w["runs"][0]["already_present"], 1, "{w}");
    }
    let max = MAX_SEED.to_string();
    let (v, _) = bench_json(&[&args[..], &["--seed", &max]].concat());
    assert_eq!(v["seed"], MAX_SEED);
}

/// Figure: `--csv` prints a header and one line per (registry, mode,
/// concurrency), with the same column count on every line.
#[test]
fn csv_has_one_line_per_run() {
    let (ra, rb) = (Registry::start(), Registry::start());
    let ta = format!("{}/csv", ra.addr());
    let tb = format!("{}/csv", rb.addr());
    let r = run(boxwright().args([
        "bench",
        "--to",
        &ta,
        "--to",
        &tb,
        "--blobs",
        "1",
        "--size",
        "10KiB",
        "--concurrency",
        "1,2",
        "--mode",
        "streamed",
        "--csv",
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 1 + 2 * 2, "{}", r.stdout);
    assert!(lines[0].starts_with("registry,repository,mode,concurrency,"));
    assert!(lines[0].contains("put_p99_ms"));
    let cols = lines[0].split(',').count();
    for l in &lines[1..] {
        assert_eq!(l.split(',').count(), cols, "{l}");
    }
}

/// Figure: exit code 2 and a message naming the flag for each bad argument;
/// nothing is contacted (the registry address is unused).
#[test]
fn bad_arguments_exit_2() {
    let to = "127.0.0.1:9/bench";
    let cases: &[(&[&str], &str)] = &[
        (&["--to", to, "--concurrency", "0"], "--concurrency"),
        (&["--to", to, "--concurrency", "1,0,4"], "--concurrency"),
        (&["--to", to, "--size", "0"], "--size"),
        (&["--to", to, "--size", "0MiB"], "--size"),
        (&["--to", to, "--size", "12 parsecs"], "--size"),
        (&["--to", to, "--chunk-size", "0"], "--chunk-size"),
        (
            &["--to", to, "--mode", "chunked", "--chunk-size", "4"],
            "--chunk-size",
        ),
        (&["--to", to, "--mode", "teleport"], "--mode"),
        (&["--to", to, "--mode", "monolithic,"], "--mode"),
        (&["--to", to, "--blobs", "0"], "--blobs"),
        (
            &["--to", to, "--blobs", "2", "--size", "18446744073709551615"],
            "--size",
        ),
        (&["--to", to, "--seed", "9007199254740992"], "--seed"),
        (&["--to", to, "--seed", "18446744073709551615"], "--seed"),
        (&["--to", ""], "--to"),
        (&["--to", "127.0.0.1:9/bench:tag"], "--to"),
        (&["--blobs", "1"], "--to"),
        (&["--to", to, "--json", "--csv"], "--csv"),
        (
            &["--to", to, "--work-dir", "/nonexistent/dir"],
            "--work-dir",
        ),
    ];
    for (args, flag) in cases {
        let r = run(boxwright().arg("bench").args(*args));
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains(flag),
            "{args:?} should name {flag}: {}",
            r.stderr
        );
        assert!(r.stdout.is_empty(), "{args:?}");
    }
}

/// Figure: an auth file that cannot be read (not JSON) stops bench at the
/// warm-up with exit 2 naming the file, before any blob is generated or
/// any run measured; its work directory is left empty.
#[test]
fn an_unreadable_auth_file_stops_bench_before_it_measures() {
    let reg = Registry::with_basic_auth("hal", "bench-password");
    let env = crate::env::Env::new();
    let config = env.config_dir().join("config.json");
    crate::common::write(&config, "{not json");
    let work = env.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let target = format!("{}/acme/bench", reg.host());
    let r = run(env
        .cmd()
        .arg("bench")
        .args(one_run(&target, "2", "4KiB"))
        .arg("--work-dir")
        .arg(&work));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("{} is not valid JSON", config.display())),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("generating"), "{}", r.stderr);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    assert_eq!(std::fs::read_dir(&work).unwrap().count(), 0);
}

/// Figure: a bench removes the blob directory a bench that died left in
/// its work directory (its lock held by no one), and leaves one whose lock
/// a live bench holds, and one that is not a bench's; its own is gone at
/// its end.
#[test]
fn a_bench_removes_the_blobs_a_dead_bench_left() {
    use std::os::unix::io::AsRawFd as _;
    let reg = Registry::start();
    let work = crate::support::tempdir();
    let dir = |name: &str| {
        let d = work.path().join(name);
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("blob-0"), vec![0u8; 4096]).unwrap();
        d
    };
    let dead = dir("boxwright-bench-dead");
    std::fs::write(dead.join(".lock"), b"").unwrap();
    let live = dir("boxwright-bench-live");
    let held = std::fs::File::create(live.join(".lock")).unwrap();
    assert_eq!(unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX) }, 0);
    let other = dir("boxwright-bench-nolock");
    let target = format!("{}/acme/bench", reg.host());
    let mut args = one_run(&target, "2", "4KiB");
    args.extend(["--work-dir", work.path().to_str().unwrap()]);
    bench_json(&args);
    let mut left: Vec<String> = (std::fs::read_dir(work.path()).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["boxwright-bench-live", "boxwright-bench-nolock"]);
    assert!(live.join("blob-0").exists() && other.join("blob-0").exists());
    drop(held);
}

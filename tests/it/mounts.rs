//! The memory of where blobs live (`blob-locations` next to the blob
//! cache): a push in a new process mounts from a repository an earlier
//! process pushed to, a wrong memory falls back to an upload and is
//! forgotten, and processes pushing at once keep every line whole.

use std::path::PathBuf;
use std::process::Stdio;

use crate::common::{assert_ok, Run};
use crate::env::Env;
use crate::pair::blob_upload_bytes;
use crate::push::{build_image, push, Image};
use crate::support::{FaultProxy, LogEntry, Registry};

/// The record's file in `env`'s default cache (`$XDG_CACHE_HOME/boxwright`).
fn record(env: &Env) -> PathBuf {
    env.path().join("xdg/boxwright/blob-locations")
}

/// `(repository, digest)` of every line naming `registry`.
fn locations(env: &Env, registry: &str) -> Vec<(String, String)> {
    std::fs::read_to_string(record(env))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let p: Vec<&str> = l.split(' ').collect();
            (p.len() == 3 && p[0] == registry).then(|| (p[1].to_string(), p[2].to_string()))
        })
        .collect()
}

fn json(r: &Run) -> serde_json::Value {
    assert_ok(r);
    serde_json::from_str(&r.stdout).expect("--json output")
}

/// Mount requests (`POST ...?mount=`) of the log, as (from, status).
fn mounts(log: &[LogEntry]) -> Vec<(String, Option<u16>)> {
    log.iter()
        .filter(|e| e.method == "POST" && e.query_param("mount").is_some())
        .map(|e| (e.query_param("from").unwrap_or_default(), e.status))
        .collect()
}

fn push_json(env: &Env, image: &Image, to: &str) -> serde_json::Value {
    json(&push(env, image, &[to.to_string()], &["--json"]))
}

#[test]
fn a_new_process_mounts_from_the_repository_an_earlier_one_pushed_to() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg);
    let env = Env::new();
    let image = build_image(&[1 << 20, 300_000], 61);
    let host = proxy.host();
    let first = push_json(&env, &image, &format!("{host}/team/a:1"));
    assert_eq!(first["targets"][0]["blobs_uploaded"], image.blobs.len());
    for d in image.blobs.keys() {
        assert!(
            locations(&env, &host).contains(&("team/a".to_string(), d.clone())),
            "{d} not remembered in {}",
            record(&env).display()
        );
    }

    proxy.reset();
    let second = push_json(&env, &image, &format!("{host}/team/b:1"));
    let log = proxy.log();
    // Figure: 0 blob bytes sent; every blob mounted (201) from team/a.
    assert_eq!(blob_upload_bytes(&log), 0, "{log:#?}");
    let t = &second["targets"][0];
    assert_eq!(t["blobs_mounted"], image.blobs.len());
    assert_eq!(t["blobs_uploaded"], 0);
    assert_eq!(t["bytes_sent"], 0);
    let m = mounts(&log);
    assert_eq!(m.len(), image.blobs.len(), "{m:?}");
    assert!(
        m.iter()
            .all(|(from, s)| from == "team/a" && *s == Some(201)),
        "{m:?}"
    );
    assert_eq!(second["digest"], image.digest.as_str());
}

#[test]
fn a_wrong_memory_falls_back_to_an_upload_and_is_forgotten() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg);
    let env = Env::new();
    let image = build_image(&[500_000, 200_000], 62);
    let host = proxy.host();
    // Remembered: a repository that holds none of these blobs; and a junk line.
    let mut text = String::from("not a location\n");
    for d in image.blobs.keys() {
        text.push_str(&format!("{host} team/elsewhere {d}\n"));
    }
    std::fs::create_dir_all(record(&env).parent().unwrap()).unwrap();
    std::fs::write(record(&env), text).unwrap();

    let r = push_json(&env, &image, &format!("{host}/team/c:1"));
    let log = proxy.log();
    let t = &r["targets"][0];
    // Figure: every blob uploaded once, its bytes sent once.
    assert_eq!(t["blobs_uploaded"], image.blobs.len());
    assert_eq!(blob_upload_bytes(&log), image.blob_bytes(), "{log:#?}");
    // Each wrong mount was answered 202, and its session given back.
    let m = mounts(&log);
    assert_eq!(m.len(), image.blobs.len(), "{m:?}");
    assert!(
        m.iter()
            .all(|(from, s)| from == "team/elsewhere" && *s == Some(202)),
        "{m:?}"
    );
    let deletes = log
        .iter()
        .filter(|e| e.method == "DELETE" && e.path.contains("/blobs/uploads/"))
        .count();
    assert_eq!(deletes, image.blobs.len(), "{log:#?}");
    // Forgotten; the new location learned.
    let now = locations(&env, &host);
    assert!(
        now.iter().all(|(repo, _)| repo != "team/elsewhere"),
        "{now:?}"
    );
    for d in image.blobs.keys() {
        assert!(now.contains(&("team/c".to_string(), d.clone())), "{now:?}");
    }

    // Pushing elsewhere again asks no forgotten repository.
    proxy.reset();
    push_json(&env, &image, &format!("{host}/team/d:1"));
    let m = mounts(&proxy.log());
    assert!(
        m.iter()
            .all(|(from, s)| from == "team/c" && *s == Some(201)),
        "{m:?}"
    );
}

#[test]
fn processes_pushing_at_once_keep_every_line_whole() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg);
    let env = Env::new();
    let host = proxy.host();
    let images: Vec<Image> = (0..3)
        .map(|i| build_image(&[100_000, 50_000], 70 + i))
        .collect();
    let children: Vec<_> = images
        .iter()
        .enumerate()
        .map(|(i, image)| {
            let mut c = env.cmd();
            c.arg("push")
                .arg(&image.layout)
                .args(["--to", &format!("{host}/team/p{i}:1"), "--quiet"])
                .stdout(Stdio::null());
            c.spawn().expect("starting boxwright")
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let text = std::fs::read_to_string(record(&env)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.iter().all(|l| l.split(' ').count() == 3), "{text}");
    let now = locations(&env, &host);
    for (i, image) in images.iter().enumerate() {
        for d in image.blobs.keys() {
            assert!(now.contains(&(format!("team/p{i}"), d.clone())), "{text}");
        }
    }
}

/// A default cache whose `boxwright/` is a link elsewhere (a cache restored
/// from a CI cache): the push goes on, and the memory is not written where
/// the link points.
#[test]
fn a_default_cache_that_is_a_link_is_not_written_through() {
    let reg = Registry::start();
    let env = Env::new();
    let outside = env.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::create_dir_all(env.path().join("xdg")).unwrap();
    std::os::unix::fs::symlink(&outside, env.path().join("xdg/boxwright")).unwrap();
    let image = build_image(&[1000], 62);
    let r = push_json(&env, &image, &format!("{}/team/a:1", reg.host()));
    assert_eq!(r["targets"][0]["blobs_uploaded"], image.blobs.len());
    let written: Vec<_> = std::fs::read_dir(&outside).unwrap().collect();
    assert!(written.is_empty(), "{written:?}");
}

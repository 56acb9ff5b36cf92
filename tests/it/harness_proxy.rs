//! Self-tests of the fault proxy of `tests/support/`: what it counts (bytes,
//! requests), the faults it injects and when, and that it streams.

use reqwest::{Client, StatusCode};
use sha2::{Digest, Sha256};

use crate::harness::{blob, digest_of, location, open_upload, push_monolithic, with_digest};
use crate::support::{Fault, FaultProxy, Injected, Registry, GHCR_PATCH_CAP};

/// Figures: a blob of N = 3 MiB + 17 bytes pushed through the proxy as
/// POST, PATCH (first half), PUT (rest) gives
/// `bytes_received("PUT") + bytes_received("PATCH") == N`; the registry's
/// `Location` points back at the proxy; HEAD through the proxy answers the
/// blob's `Content-Length`; the log lists POST, PATCH, PUT, HEAD in order.
#[tokio::test]
async fn proxy_counts_request_bytes_and_keeps_host() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg);
    let client = Client::new();
    let data = blob(3 * 1024 * 1024 + 17, 7);
    let n = data.len() as u64;
    let digest = digest_of(&data);

    let loc = open_upload(&client, &proxy.url(), "p").await;
    assert!(
        loc.starts_with(&proxy.url()),
        "Location {loc} must point at the proxy"
    );
    let half = data.len() / 2;
    let patch = client
        .patch(&loc)
        .header("content-type", "application/octet-stream")
        .body(data[..half].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), StatusCode::ACCEPTED);
    let loc = location(&patch);
    let put = client
        .put(with_digest(&loc, &digest))
        .body(data[half..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED, "log:\n{}", reg.log());

    assert_eq!(
        proxy.bytes_received("PUT") + proxy.bytes_received("PATCH"),
        n
    );
    let head = client
        .head(format!("{}/v2/p/blobs/{digest}", proxy.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(
        head.headers()["content-length"].to_str().unwrap(),
        n.to_string()
    );
    let methods: Vec<_> = proxy.log().iter().map(|e| e.method.clone()).collect();
    assert_eq!(methods, ["POST", "PATCH", "PUT", "HEAD"]);
    assert!(proxy
        .log()
        .iter()
        .all(|e| !e.authorization && e.content_range.is_none()));
    assert!(proxy.log().iter().all(|e| e.injected.is_none()));
    assert_eq!(reg.stored_blobs(), vec![digest]);
    proxy.reset();
    assert_eq!(proxy.count("PUT"), 0);
    assert!(proxy.log().is_empty());
}

/// Figures: with `mount_202`, a mount POST for a blob the registry has
/// answers 202 with a `Location` (an upload session that completes with a
/// PUT, 201) and is logged as `Mount202`; without it, the same mount is 201.
/// With `strict_mount_query`, an extra `origin` parameter answers 400.
#[tokio::test]
async fn proxy_mount_202_and_strict_query() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg);
    let client = Client::new();
    let data = blob(4096, 9);
    let digest = digest_of(&data);
    assert_eq!(
        push_monolithic(&client, &proxy.url(), "src", &data, None).await,
        StatusCode::CREATED
    );
    let mount = |repo: &str, extra: &str| {
        format!(
            "{}/v2/{repo}/blobs/uploads/?mount={digest}&from=src{extra}",
            proxy.url()
        )
    };

    proxy.configure(|c| c.mount_202 = true);
    let resp = client.post(mount("dst", "")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let loc = location(&resp);
    assert!(loc.starts_with(&proxy.url()));
    let put = client
        .put(with_digest(&loc, &digest))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED);
    assert_eq!(proxy.injected_count(Injected::Mount202), 1);

    proxy.configure(|c| {
        c.mount_202 = false;
        c.strict_mount_query = true;
    });
    let bad = client
        .post(mount("dst2", "&origin=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(proxy.injected_count(Injected::BadMountQuery), 1);
    let ok = client.post(mount("dst2", "")).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::CREATED);
}

/// Figures: a forced 429 carries `Retry-After: 1` and a `TOOMANYREQUESTS`
/// body, is used once (the retry passes) and is logged; extra headers are
/// added to every answer; a forced 503 on PATCH hits the PATCH, not the
/// POST before it.
#[tokio::test]
async fn proxy_one_shot_faults_and_extra_headers() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg);
    proxy.configure(|c| {
        c.extra_headers
            .push(("ratelimit-remaining".into(), "42;w=21600".into()))
    });
    let client = Client::new();
    let v2 = format!("{}/v2/", proxy.url());

    proxy.fail_next("GET", Fault::TooManyRequests);
    let resp = client.get(&v2).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(resp.headers()["ratelimit-remaining"], "42;w=21600");
    let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(body["errors"][0]["code"], "TOOMANYREQUESTS");
    let resp = client.get(&v2).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["ratelimit-remaining"], "42;w=21600");

    proxy.fail_next("PATCH", Fault::Unavailable);
    let loc = open_upload(&client, &proxy.url(), "r").await;
    let patch = client
        .patch(&loc)
        .body(vec![1u8; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), StatusCode::SERVICE_UNAVAILABLE);
    let faults = proxy.faults();
    assert_eq!(faults.len(), 2);
    assert_eq!(
        faults[0].injected,
        Some(Injected::Fault(Fault::TooManyRequests))
    );
    assert_eq!(faults[1].method, "PATCH");
    assert_eq!(faults[1].status, Some(503));
    assert_eq!(
        faults[1].body_bytes, 1000,
        "the faulted body is drained and counted"
    );
}

/// Figures: a queued `UploadUnknown` skips requests that are not on an
/// upload session (the `GET /v2/` and the POST pass), hits the first PUT on
/// the session with 404 `BLOB_UPLOAD_UNKNOWN`; `fail_next_chunk(N)` skips a
/// chunk starting before N and hits the next one.
#[tokio::test]
async fn proxy_upload_unknown_hits_only_upload_sessions() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg);
    let client = Client::new();
    proxy.fail_next("*", Fault::UploadUnknown);
    let v2 = client
        .get(format!("{}/v2/", proxy.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(v2.status(), StatusCode::OK);
    let loc = open_upload(&client, &proxy.url(), "r").await;
    let put = client
        .put(with_digest(&loc, &format!("sha256:{}", "0".repeat(64))))
        .body(vec![1u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::NOT_FOUND);
    let body: serde_json::Value = serde_json::from_slice(&put.bytes().await.unwrap()).unwrap();
    assert_eq!(body["errors"][0]["code"], "BLOB_UPLOAD_UNKNOWN");

    proxy.fail_next_chunk(10, Fault::UploadUnknown);
    let loc = open_upload(&client, &proxy.url(), "r").await;
    let first = client
        .patch(&loc)
        .header("content-range", "0-9")
        .body(vec![1u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let next = location(&first);
    let second = client
        .patch(&next)
        .header("content-range", "10-19")
        .body(vec![2u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), StatusCode::NOT_FOUND);
    let faults = proxy.faults();
    assert_eq!(faults.len(), 2, "{faults:#?}");
    assert_eq!(faults[0].method, "PUT");
    assert_eq!(faults[1].content_range.as_deref(), Some("10-19"));
    assert!(faults
        .iter()
        .all(|f| f.injected == Some(Injected::Fault(Fault::UploadUnknown))));
}

/// Figures: a dropped connection gives the client a transport error (no
/// status) and is logged with `status: None`; with a 30% rate and a fixed
/// seed, 40 GETs get the same number of faults on two proxies (determinism),
/// and that number is between 1 and 39.
#[tokio::test]
async fn proxy_drop_and_seeded_random_faults() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg);
    let client = Client::new();
    proxy.fail_next("*", Fault::DropConnection);
    let err = client.get(format!("{}/v2/", proxy.url())).send().await;
    assert!(err.is_err(), "expected a dropped connection, got {err:?}");
    assert_eq!(proxy.log()[0].status, None);

    let mut counts = Vec::new();
    for _ in 0..2 {
        let p = FaultProxy::with_seed(&reg, 7);
        p.configure(|c| {
            c.fault_rate = 0.3;
            c.fault_kinds = vec![Fault::InternalError, Fault::Unavailable];
        });
        let mut statuses = Vec::new();
        for _ in 0..40 {
            let r = client.get(format!("{}/v2/", p.url())).send().await.unwrap();
            statuses.push(r.status().as_u16());
        }
        assert_eq!(
            p.faults().len(),
            statuses.iter().filter(|s| **s != 200).count()
        );
        counts.push(statuses);
    }
    assert_eq!(counts[0], counts[1], "same seed, same faults");
    let faults = counts[0].iter().filter(|s| **s != 200).count();
    assert!((1..40).contains(&faults), "{faults} faults out of 40");
}

/// Figures: with GHCR's 4 MiB cap, a chunked PATCH (`Content-Range`) of
/// 4 MiB + 1 answers 416 and one of exactly 4 MiB answers 202, with or
/// without `Content-Length`; a streamed PATCH (no `Content-Range`) of
/// 4 MiB + 1 passes.
#[tokio::test]
async fn proxy_patch_cap_answers_416() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg);
    proxy.configure(|c| c.patch_cap = Some(GHCR_PATCH_CAP));
    let client = Client::new();
    let cap = GHCR_PATCH_CAP as usize;

    let loc = open_upload(&client, &proxy.url(), "c").await;
    let over = client
        .patch(&loc)
        .header("content-range", format!("0-{}", cap))
        .body(vec![0u8; cap + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(over.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(proxy.injected_count(Injected::PatchTooLarge), 1);
    let logged = proxy.log().pop().unwrap();
    assert_eq!(logged.content_range, Some(format!("0-{cap}")));
    assert_eq!(logged.body_bytes, (cap + 1) as u64);

    let at_cap = client
        .patch(&loc)
        .header("content-range", format!("0-{}", cap - 1))
        .body(vec![0u8; cap])
        .send()
        .await
        .unwrap();
    assert_eq!(at_cap.status(), StatusCode::ACCEPTED);

    // Without Content-Length (chunked transfer), the proxy buffers at most
    // the cap to decide: 1 MiB passes, 5 MiB is refused.
    let streamed_body = |mib: usize| {
        let one = bytes::Bytes::from(vec![0u8; 1 << 20]);
        reqwest::Body::wrap_stream(futures_util::stream::iter(
            (0..mib).map(move |_| Ok::<_, std::io::Error>(one.clone())),
        ))
    };
    let loc = open_upload(&client, &proxy.url(), "t").await;
    let small = client
        .patch(&loc)
        .header("content-range", format!("0-{}", (1 << 20) - 1))
        .body(streamed_body(1))
        .send()
        .await
        .unwrap();
    assert_eq!(small.status(), StatusCode::ACCEPTED);
    let loc = location(&small);
    let big = client
        .patch(&loc)
        .header("content-range", format!("{}-{}", 1 << 20, (6 << 20) - 1))
        .body(streamed_body(5))
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(proxy.injected_count(Injected::PatchTooLarge), 2);

    let loc = open_upload(&client, &proxy.url(), "s").await;
    let streamed = client
        .patch(&loc)
        .body(vec![0u8; cap + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), StatusCode::ACCEPTED);
}

/// Figure: a blob GET with `corrupt_blobs` serves bytes of the same length
/// whose sha256 differs from the digest asked for.
#[tokio::test]
async fn proxy_corrupts_blob_gets() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg);
    let client = Client::new();
    let data = blob(10_000, 5);
    let digest = digest_of(&data);
    push_monolithic(&client, &proxy.url(), "cb", &data, None).await;
    proxy.configure(|c| c.corrupt_blobs = true);
    let url = format!("{}/v2/cb/blobs/{digest}", proxy.url());
    let got = client
        .get(&url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.len(), data.len());
    assert_ne!(digest_of(&got), digest);
    assert_eq!(proxy.injected_count(Injected::CorruptBlob), 1);
}

/// Size of the registry's in-progress upload data for `repo` (0 if none yet).
fn upload_bytes_on_disk(reg: &Registry, repo: &str) -> u64 {
    let uploads = reg
        .storage_dir()
        .join("docker/registry/v2/repositories")
        .join(repo)
        .join("_uploads");
    std::fs::read_dir(uploads)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::metadata(e.path().join("data")).ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Figures: a 128 MiB blob streamed (one PATCH, chunked transfer) through
/// the proxy arrives whole (`bytes_received` = 128 MiB, the registry stores
/// its digest), and the proxy streams rather than buffers: after the client
/// has sent only 8 MiB (and holds the rest back), at least 4 MiB are already
/// in the registry's upload file on disk.
#[tokio::test]
async fn proxy_streams_big_blob_without_buffering() {
    const CHUNK: usize = 1 << 20;
    const CHUNKS: usize = 128;
    const FIRST: usize = 8;
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg);
    let client = Client::new();
    let chunk = bytes::Bytes::from(blob(CHUNK, 11));
    let mut hasher = Sha256::new();
    for _ in 0..CHUNKS {
        hasher.update(&chunk);
    }
    let digest = format!("sha256:{}", hex::encode(hasher.finalize()));

    let loc = open_upload(&client, &proxy.url(), "big").await;
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(2);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    });
    let patch = tokio::spawn(
        client
            .patch(&loc)
            .body(reqwest::Body::wrap_stream(stream))
            .send(),
    );
    for _ in 0..FIRST {
        tx.send(chunk.clone()).await.unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while upload_bytes_on_disk(&reg, "big") < (FIRST / 2 * CHUNK) as u64 {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} bytes reached the registry after {} MiB sent: the proxy buffers",
            upload_bytes_on_disk(&reg, "big"),
            FIRST
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for _ in FIRST..CHUNKS {
        tx.send(chunk.clone()).await.unwrap();
    }
    drop(tx);
    let patch = patch.await.unwrap().unwrap();
    assert_eq!(patch.status(), StatusCode::ACCEPTED, "log:\n{}", reg.log());
    let loc = location(&patch);
    let put = client.put(with_digest(&loc, &digest)).send().await.unwrap();
    assert_eq!(put.status(), StatusCode::CREATED, "log:\n{}", reg.log());
    assert_eq!(proxy.bytes_received("PATCH"), (CHUNK * CHUNKS) as u64);
    assert_eq!(reg.stored_blobs(), vec![digest]);
}

/// Figures: a PATCH whose connection is dropped mid-body is logged with no
/// status and about half its bytes (<= 1 MiB received of 1 MiB), the client
/// sees a transport error, and the upload session is intact: the same
/// PATCH again answers 202 and the PUT 201.
#[tokio::test]
async fn proxy_drop_mid_body_keeps_session() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg);
    let client = Client::new();
    let data = blob(1 << 20, 13);
    let loc = open_upload(&client, &proxy.url(), "drop").await;
    proxy.fail_next("PATCH", Fault::DropConnection);
    let err = client.patch(&loc).body(data.clone()).send().await;
    assert!(err.is_err(), "expected a dropped connection, got {err:?}");
    let dropped = &proxy.faults()[0];
    assert_eq!(dropped.status, None);
    assert!(dropped.body_bytes >= 512 * 1024 && dropped.body_bytes < (1 << 20) as u64);

    let patch = client.patch(&loc).body(data.clone()).send().await.unwrap();
    assert_eq!(patch.status(), StatusCode::ACCEPTED);
    let loc = location(&patch);
    let put = client
        .put(with_digest(&loc, &digest_of(&data)))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED, "log:\n{}", reg.log());
}

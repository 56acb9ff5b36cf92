//! How the fault proxy answers one request: log it and decide at arrival
//! what to inject (a queued one-shot fault first, else a random one), then
//! either answer with the fault or forward to the registry, counting the
//! body as it streams, applying GHCR's PATCH cap, Docker Hub's strict mount
//! query, mounts answered 202 and corrupted blob downloads.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use rand::Rng;

use super::{Body, BoxError, Fault, Injected, LogEntry, Shared, Slot};

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

fn oci_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({"errors": [{"code": code, "message": message, "detail": null}]});
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(body.to_string()))
        .expect("valid response")
}

/// Reads the rest of a body, counting it; errors end the read quietly.
async fn drain(body: &mut Incoming, slot: &Slot) {
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    slot.add_bytes(d.len() as u64);
                }
            }
            Err(_) => return,
        }
    }
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
];

fn strip_hop_by_hop(headers: &mut hyper::HeaderMap) {
    for h in HOP_BY_HOP {
        headers.remove(*h);
    }
}

fn is_upload_start(method: &str, path: &str) -> bool {
    method == "POST" && path.ends_with("/blobs/uploads/")
}

/// A request on an open upload session: `/v2/<name>/blobs/uploads/<id>`
/// (GHCR spells it `/blobs/upload/<id>`).
pub(super) fn is_upload_session(method: &str, path: &str) -> bool {
    matches!(method, "PATCH" | "PUT" | "GET")
        && ["/blobs/uploads/", "/blobs/upload/"].iter().any(|m| {
            path.split_once(m)
                .is_some_and(|(head, id)| head.starts_with("/v2/") && !id.is_empty())
        })
}

fn is_blob_get(method: &str, path: &str) -> bool {
    method == "GET" && path.starts_with("/v2/") && {
        match path.rsplit_once("/blobs/") {
            Some((_, digest)) => digest.contains(':'),
            None => false,
        }
    }
}

/// `/v2/<name>/referrers/<digest>` -> (name, digest).
fn referrers_path(path: &str) -> Option<(String, String)> {
    let (name, digest) = path.strip_prefix("/v2/")?.rsplit_once("/referrers/")?;
    Some((name.to_string(), digest.to_string()))
}

pub(super) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://x/?{}", query.unwrap_or("")))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

pub(super) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Body>, BoxError> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(String::from);
    let content_range = req
        .headers()
        .get("content-range")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let authorization = req.headers().contains_key("authorization");

    // Arrival: log it, count it, decide what to inject.
    let (slot, fault, config) = {
        let mut st = shared.lock();
        st.log.push(LogEntry {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            content_range,
            authorization,
            status: None,
            body_bytes: 0,
            response_bytes: 0,
            injected: None,
            arrived: std::time::Instant::now(),
            arrived_at: std::time::SystemTime::now(),
        });
        let index = st.log.len() - 1;
        st.counters.entry(method.clone()).or_default().requests += 1;
        let mut fault = None;
        let range = st.log[index].content_range.clone();
        if let Some(pos) = st
            .one_shot
            .iter()
            .position(|o| o.matches(&method, &path, range.as_deref()))
        {
            fault = st.one_shot.remove(pos).map(|o| o.fault);
        } else if st.config.fault_rate > 0.0
            && !st.config.fault_kinds.is_empty()
            && (st.config.fault_methods.is_empty()
                || st
                    .config
                    .fault_methods
                    .iter()
                    .any(|m| m.eq_ignore_ascii_case(&method)))
        {
            let rate = st.config.fault_rate.clamp(0.0, 1.0);
            if st.rng.random_bool(rate) {
                let n = st.config.fault_kinds.len();
                let k = st.rng.random_range(0..n);
                fault = Some(st.config.fault_kinds[k]).filter(|f| f.applies(&method, &path));
            }
        }
        let slot = Slot {
            shared: shared.clone(),
            generation: st.generation,
            index,
            method: method.clone(),
        };
        (slot, fault, st.config.clone())
    };

    let (mut parts, mut body) = req.into_parts();
    let content_length: Option<u64> = parts
        .headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());

    let finish = |mut resp: Response<Body>, injected: Option<Injected>| {
        for (k, v) in &config.extra_headers {
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                resp.headers_mut().append(k, v);
            }
        }
        slot.finish(Some(resp.status().as_u16()), injected);
        Ok(resp)
    };

    if let Some(fault) = fault {
        let injected = Some(Injected::Fault(fault));
        let resp = match fault {
            Fault::DropConnection => {
                let want = content_length.map_or(1, |n| (n / 2).max(1));
                let mut got = 0u64;
                while got < want {
                    match body.frame().await {
                        Some(Ok(f)) => {
                            if let Some(d) = f.data_ref() {
                                got += d.len() as u64;
                                slot.add_bytes(d.len() as u64);
                            }
                        }
                        _ => break,
                    }
                }
                slot.finish(None, injected);
                return Err("injected fault: connection dropped".into());
            }
            Fault::TooManyRequests => {
                let mut r = oci_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TOOMANYREQUESTS",
                    "injected: too many requests",
                );
                r.headers_mut()
                    .insert("retry-after", HeaderValue::from_static("1"));
                r
            }
            Fault::InternalError => oci_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "UNKNOWN",
                "injected: internal server error",
            ),
            Fault::Unavailable => oci_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "injected: service unavailable",
            ),
            Fault::UploadUnknown => oci_error(
                StatusCode::NOT_FOUND,
                "BLOB_UPLOAD_UNKNOWN",
                "injected: blob upload unknown to registry",
            ),
        };
        // Read the whole body first so the client sees the answer, not a
        // broken pipe (which is what DropConnection is for).
        drain(&mut body, &slot).await;
        return finish(resp, injected);
    }

    let mut injected = None;
    let mut forward_query = query.clone();

    if is_upload_start(&method, &path) {
        let pairs = query_pairs(query.as_deref());
        if config.strict_mount_query && pairs.iter().any(|(k, _)| k != "mount" && k != "from") {
            drain(&mut body, &slot).await;
            let resp = oci_error(
                StatusCode::BAD_REQUEST,
                "UNSUPPORTED",
                "injected: only `mount` and `from` are accepted on this endpoint",
            );
            return finish(resp, Some(Injected::BadMountQuery));
        }
        if config.mount_202 && pairs.iter().any(|(k, _)| k == "mount") {
            let rest: Vec<_> = pairs
                .iter()
                .filter(|(k, _)| k != "mount" && k != "from")
                .collect();
            forward_query = if rest.is_empty() {
                None
            } else {
                let mut s = reqwest::Url::parse("http://x/").expect("static url");
                s.query_pairs_mut().extend_pairs(rest);
                s.query().map(String::from)
            };
            injected = Some(Injected::Mount202);
        }
    }

    // The PATCH cap: decide from Content-Length, or by buffering up to the
    // cap (never more) when the body is chunked.
    let mut prefix: Option<Bytes> = None;
    if let (Some(cap), true) = (
        config.patch_cap,
        method == "PATCH" && parts.headers.contains_key("content-range"),
    ) {
        let over = match content_length {
            Some(n) => n > cap,
            None => {
                let mut buf = BytesMut::new();
                while (buf.len() as u64) <= cap {
                    match body.frame().await {
                        Some(Ok(f)) => {
                            if let Some(d) = f.data_ref() {
                                slot.add_bytes(d.len() as u64);
                                buf.extend_from_slice(d);
                            }
                        }
                        Some(Err(e)) => return Err(e.into()),
                        None => break,
                    }
                }
                let over = buf.len() as u64 > cap;
                prefix = Some(buf.freeze());
                over
            }
        };
        if over {
            drain(&mut body, &slot).await;
            let resp = oci_error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "BLOB_UPLOAD_INVALID",
                &format!("injected: chunk over the {cap}-byte PATCH cap"),
            );
            return finish(resp, Some(Injected::PatchTooLarge));
        }
    }

    // Referrers: a manifest PUT is small, so it is read whole to see its
    // subject; a referrers request is answered from what was seen.
    let mut subject_of_put = None;
    if config.referrers_api && method == "GET" {
        if let Some((repo, digest)) = referrers_path(&path) {
            drain(&mut body, &slot).await;
            let list = shared
                .lock()
                .referrers
                .get(&(repo, digest))
                .cloned()
                .unwrap_or_default();
            let index = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": list,
            });
            let resp = Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/vnd.oci.image.index.v1+json")
                .body(full(index.to_string()))
                .expect("valid response");
            return finish(resp, Some(Injected::Referrers));
        }
    }
    if (config.referrers_api || config.refuse_artifacts)
        && method == "PUT"
        && prefix.is_none()
        && path.contains("/manifests/")
    {
        let mut buf = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let f = frame?;
            if let Some(d) = f.data_ref() {
                slot.add_bytes(d.len() as u64);
                buf.extend_from_slice(d);
            }
        }
        let bytes = buf.freeze();
        let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let is_artifact = doc.get("subject").is_some() || doc.get("artifactType").is_some();
        if config.refuse_artifacts && is_artifact {
            let resp = oci_error(
                StatusCode::BAD_REQUEST,
                "MANIFEST_INVALID",
                "injected: manifests with a subject or an artifactType are not accepted",
            );
            return finish(resp, Some(Injected::ArtifactRefused));
        }
        if let (true, Some(subject)) = (config.referrers_api, doc["subject"]["digest"].as_str()) {
            let repo = path
                .trim_start_matches("/v2/")
                .rsplit_once("/manifests/")
                .map(|(r, _)| r.to_string())
                .unwrap_or_default();
            let artifact_type = doc["artifactType"]
                .as_str()
                .or(doc["config"]["mediaType"].as_str())
                .unwrap_or_default();
            let mut desc = serde_json::json!({
                "mediaType": doc["mediaType"],
                "digest": format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes))),
                "size": bytes.len(),
                "artifactType": artifact_type,
            });
            if doc.get("annotations").is_some() {
                desc["annotations"] = doc["annotations"].clone();
            }
            subject_of_put = Some(((repo, subject.to_string()), desc));
        }
        prefix = Some(bytes);
    }

    // Forward, counting the body as it streams through.
    let uri = match &forward_query {
        Some(q) => format!("http://{}{}?{}", shared.upstream, path, q),
        None => format!("http://{}{}", shared.upstream, path),
    };
    parts.uri = uri.parse()?;
    strip_hop_by_hop(&mut parts.headers);
    let out_body: Body = match prefix {
        // The buffered prefix was the whole body (the cap was not exceeded).
        Some(buf) => {
            if content_length.is_none() {
                parts.headers.remove("content-length");
            }
            full(buf)
        }
        None => {
            let counting = slot.clone();
            body.map_frame(move |f: Frame<Bytes>| {
                if let Some(d) = f.data_ref() {
                    counting.add_bytes(d.len() as u64);
                }
                f
            })
            .map_err(BoxError::from)
            .boxed()
        }
    };
    let upstream_resp = match shared
        .client
        .request(Request::from_parts(parts, out_body))
        .await
    {
        Ok(r) => r,
        Err(e) => {
            let resp = oci_error(
                StatusCode::BAD_GATEWAY,
                "UNKNOWN",
                &format!("fault proxy: upstream request failed: {e}"),
            );
            return finish(resp, injected);
        }
    };
    let (mut rparts, rbody) = upstream_resp.into_parts();
    strip_hop_by_hop(&mut rparts.headers);
    if let (Some((key, desc)), true) = (subject_of_put, rparts.status.is_success()) {
        let mut st = shared.lock();
        let list = st.referrers.entry(key).or_default();
        if !list.iter().any(|d| d["digest"] == desc["digest"]) {
            list.push(desc);
        }
    }
    let rbody: Body =
        if config.corrupt_blobs && rparts.status == StatusCode::OK && is_blob_get(&method, &path) {
            injected = Some(Injected::CorruptBlob);
            let mut first = true;
            rbody
                .map_frame(move |f: Frame<Bytes>| match f.into_data() {
                    Ok(d) if first && !d.is_empty() => {
                        first = false;
                        let mut b = BytesMut::from(&d[..]);
                        b[0] ^= 0xff;
                        Frame::data(b.freeze())
                    }
                    Ok(d) => Frame::data(d),
                    Err(f) => f,
                })
                .map_err(BoxError::from)
                .boxed()
        } else {
            rbody.map_err(BoxError::from).boxed()
        };
    // Count the answer's body as it streams back to the client.
    let counting = slot.clone();
    let rbody: Body = rbody
        .map_frame(move |f: Frame<Bytes>| {
            if let Some(d) = f.data_ref() {
                counting.add_response_bytes(d.len() as u64);
            }
            f
        })
        .boxed();
    finish(Response::from_parts(rparts, rbody), injected)
}

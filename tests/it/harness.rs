//! Self-tests of `tests/support/`: each proves one figure the other tests
//! rely on (a status, a byte count, a scope granted or refused). The
//! registries and the token server here, the fault proxy in `harness_proxy`.

use reqwest::{Client, StatusCode};
use sha2::{Digest, Sha256};

use crate::support::{
    skopeo, tempdir, tiny_oci_layout, FaultProxy, Registry, TokenServer, PASSWORD, USER,
};

pub fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Deterministic pseudo-random bytes (no two blobs of different seeds match).
pub fn blob(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[2] ^ seed)
        .collect()
}

fn with_auth(rb: reqwest::RequestBuilder, token: Option<&str>) -> reqwest::RequestBuilder {
    match token {
        Some(t) => rb.bearer_auth(t),
        None => rb,
    }
}

/// The `Location` header of an answer (an upload session's URL).
pub fn location(resp: &reqwest::Response) -> String {
    resp.headers()["location"].to_str().unwrap().to_string()
}

/// An upload session's URL with `digest=` added to its query.
pub fn with_digest(location: &str, digest: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}

/// `POST /v2/<repo>/blobs/uploads/` on `base` (no credentials): insists on
/// 202 and returns the session's URL.
pub async fn open_upload(client: &reqwest::Client, base: &str, repo: &str) -> String {
    let post = client
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .expect("POST upload");
    assert_eq!(post.status(), StatusCode::ACCEPTED, "POST on {repo}");
    location(&post)
}

/// `POST /v2/<repo>/blobs/uploads/` then one `PUT <Location>&digest=` with the
/// whole blob. Returns the PUT's status (or the POST's, if not 202).
pub async fn push_monolithic(
    client: &Client,
    base: &str,
    repo: &str,
    data: &[u8],
    token: Option<&str>,
) -> StatusCode {
    let post = with_auth(
        client.post(format!("{base}/v2/{repo}/blobs/uploads/")),
        token,
    )
    .send()
    .await
    .expect("POST upload");
    if post.status() != StatusCode::ACCEPTED {
        return post.status();
    }
    let put = with_auth(
        client.put(with_digest(&location(&post), &digest_of(data))),
        token,
    )
    .header("content-type", "application/octet-stream")
    .body(data.to_vec())
    .send()
    .await
    .expect("PUT upload");
    put.status()
}

/// Asks the token server over HTTP, as a client would.
async fn fetch_token(tokens: &TokenServer, user: Option<(&str, &str)>, scopes: &[&str]) -> String {
    let mut url = reqwest::Url::parse(&tokens.realm()).unwrap();
    url.query_pairs_mut()
        .append_pair("service", tokens.service());
    for s in scopes {
        url.query_pairs_mut().append_pair("scope", s);
    }
    let mut rb = Client::new().get(url);
    if let Some((u, p)) = user {
        rb = rb.basic_auth(u, Some(p));
    }
    let resp = rb.send().await.expect("token request");
    assert_eq!(resp.status(), StatusCode::OK);
    let json: serde_json::Value =
        serde_json::from_slice(&resp.bytes().await.unwrap()).expect("token json");
    assert_eq!(json["token"], json["access_token"]);
    assert!(json["expires_in"].as_u64().unwrap() > 0);
    json["token"].as_str().unwrap().to_string()
}

/// Figure: `GET /v2/` answers 200 on a plain registry.
#[tokio::test]
async fn plain_registry_answers_v2() {
    let reg = Registry::start();
    let resp = reqwest::get(format!("{}/v2/", reg.url())).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "log:\n{}", reg.log());
    assert!(reg.host().starts_with("127.0.0.1:"));
}

/// Figure: an htpasswd registry answers 401 (with a Basic challenge) without
/// credentials, 401 with a wrong password, 200 with the right ones.
#[tokio::test]
async fn htpasswd_registry_needs_credentials() {
    let reg = Registry::with_basic_auth("bob", "hunter2");
    let client = Client::new();
    let v2 = format!("{}/v2/", reg.url());
    let resp = client.get(&v2).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let challenge = resp.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Basic "), "{challenge}");
    let wrong = client.get(&v2).basic_auth("bob", Some("nope")).send().await;
    assert_eq!(wrong.unwrap().status(), StatusCode::UNAUTHORIZED);
    let ok = client
        .get(&v2)
        .basic_auth("bob", Some("hunter2"))
        .send()
        .await;
    assert_eq!(ok.unwrap().status(), StatusCode::OK, "log:\n{}", reg.log());
}

/// Figures: the registry challenges with the token server's realm; a token
/// for `repository:a:pull,push` pushes a blob to `a` (201) but is refused
/// (401) on `b` and for a mount from `b`; adding `repository:b:pull` makes the
/// mount answer 201. Anonymous callers get `pull` only; every request is
/// recorded with its user and scopes.
#[tokio::test]
async fn token_auth_grants_only_scopes_asked() {
    let tokens = TokenServer::start();
    let reg = Registry::with_token_auth(&tokens);
    let client = Client::new();
    let base = reg.url();

    let resp = client.get(format!("{base}/v2/")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let challenge = resp.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains(&format!("realm=\"{}\"", tokens.realm())),
        "{challenge}"
    );

    let alice = Some((USER, PASSWORD));
    let tok_a = fetch_token(&tokens, alice, &["repository:a:pull,push"]).await;
    let tok_b = fetch_token(&tokens, alice, &["repository:b:pull,push"]).await;
    let small = blob(1000, 1);
    let in_b = blob(2000, 2);
    let status = push_monolithic(&client, &base, "a", &small, Some(&tok_a)).await;
    assert_eq!(status, StatusCode::CREATED, "log:\n{}", reg.log());
    assert_eq!(
        push_monolithic(&client, &base, "b", &small, Some(&tok_a)).await,
        StatusCode::UNAUTHORIZED,
        "a token for `a` must give nothing on `b`"
    );
    assert_eq!(
        push_monolithic(&client, &base, "b", &in_b, Some(&tok_b)).await,
        StatusCode::CREATED
    );

    let mount = format!(
        "{base}/v2/a/blobs/uploads/?mount={}&from=b",
        digest_of(&in_b)
    );
    let refused = client
        .post(&mount)
        .bearer_auth(&tok_a)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let tok_ab = fetch_token(
        &tokens,
        alice,
        &["repository:a:pull,push", "repository:b:pull"],
    )
    .await;
    let mounted = client
        .post(&mount)
        .bearer_auth(&tok_ab)
        .send()
        .await
        .unwrap();
    assert_eq!(mounted.status(), StatusCode::CREATED, "log:\n{}", reg.log());

    // Anonymous: pull only, so a push is refused.
    let anon = fetch_token(&tokens, None, &["repository:a:pull,push"]).await;
    assert_eq!(
        push_monolithic(&client, &base, "a", &blob(10, 3), Some(&anon)).await,
        StatusCode::UNAUTHORIZED
    );

    let reqs = tokens.requests();
    assert_eq!(reqs.len(), 4);
    assert_eq!(reqs[2].user.as_deref(), Some(USER));
    assert_eq!(
        reqs[2].scopes,
        vec!["repository:a:pull,push", "repository:b:pull"]
    );
    assert_eq!(reqs[2].granted.len(), 2);
    assert_eq!(reqs[3].user, None);
    assert_eq!(reqs[3].granted[0].actions, vec!["pull"]);
}

/// Figures: a token issued expired is refused (401); wrong credentials get
/// 401 from the token server and are recorded.
#[tokio::test]
async fn token_server_expired_and_bad_credentials() {
    let tokens = TokenServer::builder()
        .user("carol", "pw", &["pull", "push"])
        .anonymous(None)
        .expires_in(2)
        .start();
    let reg = Registry::with_token_auth(&tokens);
    let client = Client::new();
    tokens.set_issue_expired(true);
    let expired = tokens.issue(Some("carol"), &["repository:x:pull,push"]);
    let status = push_monolithic(&client, &reg.url(), "x", b"abc", Some(&expired)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    tokens.set_issue_expired(false);
    let fresh = tokens.issue(Some("carol"), &["repository:x:pull,push"]);
    let status = push_monolithic(&client, &reg.url(), "x", b"abc", Some(&fresh)).await;
    assert_eq!(status, StatusCode::CREATED, "log:\n{}", reg.log());

    let bad = Client::new()
        .get(format!(
            "{}?service=s&scope=repository:x:pull",
            tokens.realm()
        ))
        .basic_auth("carol", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    let anon = Client::new().get(tokens.realm()).send().await.unwrap();
    assert_eq!(anon.status(), StatusCode::UNAUTHORIZED, "anonymous refused");
    let reqs = tokens.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].status, 401);
    assert_eq!(reqs[0].scopes, vec!["repository:x:pull"]);
}

/// `skopeo copy` of a hand-made layout through `proxy`, then checks that the
/// raw manifest read back has the layout's digest and that PUT+PATCH bytes
/// equal blobs + manifest.
fn skopeo_roundtrip(proxy: &FaultProxy, creds: &str) {
    let dir = tempdir();
    let img = tiny_oci_layout(dir.path(), "v1", b"hello from boxwright's harness\n");
    let layout = format!("oci:{}:v1", dir.path().display());
    let dest = format!("docker://{}/harness/tiny:v1", proxy.host());
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        creds,
        &layout,
        &dest,
    ]);
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        creds,
        &dest,
    ]);
    assert_eq!(digest_of(raw.as_bytes()), img.manifest_digest);
    // Every blob and the manifest went through the proxy exactly once.
    assert_eq!(
        proxy.bytes_received("PUT") + proxy.bytes_received("PATCH"),
        img.blob_bytes + img.manifest.len() as u64,
        "log: {:#?}",
        proxy.log()
    );
}

/// Figures: skopeo pushes through the proxy to a basic-auth registry and
/// reads back a manifest with the layout's digest; PUT+PATCH bytes equal
/// blobs + manifest.
#[test]
fn skopeo_copy_through_proxy_basic_auth() {
    let reg = Registry::with_basic_auth("dave", "pw1");
    let proxy = FaultProxy::start(&reg);
    skopeo_roundtrip(&proxy, "dave:pw1");
}

/// Figures: the same through a token-auth registry; skopeo asked the token
/// server, as `alice`, for `repository:harness/tiny:pull,push`.
#[test]
fn skopeo_copy_through_proxy_token_auth() {
    let tokens = TokenServer::start();
    let reg = Registry::with_token_auth(&tokens);
    let proxy = FaultProxy::start(&reg);
    skopeo_roundtrip(&proxy, &format!("{USER}:{PASSWORD}"));
    let reqs = tokens.requests();
    assert!(
        reqs.iter().any(|r| r.user.as_deref() == Some(USER)
            && r.scopes
                .iter()
                .any(|s| s == "repository:harness/tiny:pull,push")
            && r.status == 200),
        "{reqs:#?}"
    );
    assert!(
        proxy
            .log()
            .iter()
            .any(|e| e.method == "PUT" && e.authorization),
        "skopeo sent its bearer token through the proxy"
    );
}

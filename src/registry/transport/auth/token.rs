//! Bearer tokens: scopes, the token request to a realm, and the cache.
//!
//! Tokens are opaque; they are cached per registry and sorted scope set
//! until they expire, and dropped on a 401 so that the next attempt fetches
//! a new one.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{HeaderValue, AUTHORIZATION};

use super::super::limits::{DOCUMENT_DEADLINE, MAX_TOKEN_BODY, MAX_TOKEN_LIFETIME};
use super::super::retry::parse_retry_after;
use super::challenge::BearerChallenge;
use crate::registry::client::is_loopback;
use crate::registry::credentials::{basic_authorization, Credential, Secret};
use crate::registry::error::{shown, AuthError, MAX_REALM_SHOWN};

/// `repository:<repo>:pull`
pub fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

/// `repository:<repo>:pull,push`
pub fn push_scope(repository: &str) -> String {
    format!("repository:{repository}:pull,push")
}

/// `repository:<repo>:delete`: the reference registry wants this action
/// for a `DELETE`.
pub fn delete_scope(repository: &str) -> String {
    format!("repository:{repository}:delete")
}

/// A sorted, deduplicated scope set (the token cache key).
pub fn scope_key(scopes: &[String]) -> String {
    let set: BTreeSet<&str> = scopes.iter().map(String::as_str).collect();
    set.into_iter().collect::<Vec<_>>().join(" ")
}

/// A bearer token and when to stop using it.
#[derive(Clone, Debug)]
pub struct Token {
    pub value: Secret,
    pub expires_at: Instant,
}

/// Parse a token server's answer: `access_token`, else `token` (as docker
/// and containerd choose when both are given), `expires_in` (default 60 s,
/// as the distribution spec says; as docker, at least 60 s, so zero or a
/// negative number is 60, and one that is not a whole number is not taken;
/// at most [`MAX_TOKEN_LIFETIME`], whatever the server claims). The token
/// is used until 10 s before it expires. No answer can make the arithmetic
/// overflow. A token that expires sooner is answered 401 by the registry,
/// which fetches a new one.
pub fn parse_token_response(body: &[u8], now: Instant) -> Result<Token, String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(default)]
        token: Option<String>,
        #[serde(default)]
        access_token: Option<String>,
        #[serde(default)]
        expires_in: Option<serde_json::Value>,
    }
    let a: Answer = serde_json::from_slice(body)
        .map_err(|_| "the token server's answer is not the expected JSON".to_string())?;
    let value = a
        .access_token
        .filter(|t| !t.is_empty())
        .or(a.token.filter(|t| !t.is_empty()))
        .ok_or_else(|| {
            "the token server's answer holds neither token nor access_token".to_string()
        })?;
    let claimed = (a.expires_in.as_ref())
        .and_then(|v| v.as_u64().or_else(|| v.as_i64().map(|_| 0)))
        .unwrap_or(60);
    let lifetime = Duration::from_secs(claimed.max(60)).min(MAX_TOKEN_LIFETIME);
    let margin = Duration::from_secs(10).min(lifetime / 2);
    let usable = lifetime.saturating_sub(margin);
    Ok(Token {
        value: Secret::token(value),
        // An instant beyond the clock's range: use the token once.
        expires_at: now.checked_add(usable).unwrap_or(now),
    })
}

/// Tokens per (registry, scope set).
#[derive(Default)]
pub struct TokenCache {
    map: Mutex<HashMap<(String, String), Token>>,
    /// One token request per (registry, scope set) at a time.
    turns: Mutex<HashMap<(String, String), Turn>>,
}

/// Held while a token is asked for.
type Turn = Arc<tokio::sync::Mutex<()>>;

impl TokenCache {
    /// Wait for the turn to ask for a token of `scopes`, so that requests
    /// that start together ask once and the others take that token from
    /// the cache.
    pub async fn turn(
        &self,
        registry: &str,
        scopes: &[String],
    ) -> tokio::sync::OwnedMutexGuard<()> {
        let key = (registry.to_string(), scope_key(scopes));
        let lock = match self.turns.lock() {
            Ok(mut turns) => turns.entry(key).or_default().clone(),
            Err(_) => Arc::default(),
        };
        lock.lock_owned().await
    }

    pub fn get(&self, registry: &str, scopes: &[String]) -> Option<Secret> {
        let key = (registry.to_string(), scope_key(scopes));
        let map = self.map.lock().ok()?;
        map.get(&key)
            .filter(|t| t.expires_at > Instant::now())
            .map(|t| t.value.clone())
    }

    pub fn put(&self, registry: &str, scopes: &[String], token: Token) {
        if let Ok(mut map) = self.map.lock() {
            map.insert((registry.to_string(), scope_key(scopes)), token);
        }
    }

    /// Forget a token (after a 401).
    pub fn invalidate(&self, registry: &str, scopes: &[String]) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(&(registry.to_string(), scope_key(scopes)));
        }
    }
}

/// How a token request may be sent.
#[derive(Clone, Debug)]
pub struct TokenPolicy {
    /// The registry itself is reached over plain HTTP (loopback, or listed
    /// as insecure): only then may credentials go to an `http://` realm.
    pub allow_plain_http: bool,
    /// The hosts besides loopback ones an `http://` realm may be on to be
    /// sent credentials (ports aside): the registry's own, and those
    /// listed as insecure.
    pub plain_http_hosts: Vec<String>,
}

impl TokenPolicy {
    /// Whether credentials may go in clear text to a realm on `host`.
    fn plain_http_to(&self, host: &str) -> bool {
        // `registry.lan:5000` -> `registry.lan`; `[fd00::2]:5000` -> `[fd00::2]`.
        let without_port = |name: &str| -> String {
            match name.rsplit_once(':') {
                Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h.to_string(),
                _ => name.to_string(),
            }
        };
        self.allow_plain_http
            && (is_loopback(host)
                || (self.plain_http_hosts.iter())
                    .any(|h| without_port(h).eq_ignore_ascii_case(host)))
    }
}

/// The realm of a challenge as a URL that may be asked, or why not: it
/// must be an absolute `http` or `https` URL with a host, and credentials
/// go to a plain `http` one only when the registry itself is reached over
/// plain HTTP and the realm is on a host that is too (loopback, the
/// registry's own, or one listed as insecure): a registry served over
/// https, or on loopback, must not be able to make us send a password in
/// clear text across a network. Checked before anything is sent.
pub fn check_realm(
    realm: &str,
    with_credential: bool,
    policy: &TokenPolicy,
) -> Result<reqwest::Url, AuthError> {
    let refuse = |reason: &str| AuthError::BadRealm {
        realm: shown(realm, MAX_REALM_SHOWN),
        reason: reason.to_string(),
    };
    let url = reqwest::Url::parse(realm)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        .ok_or_else(|| refuse("is not an absolute http or https URL; nothing was sent to it"))?;
    let host = url.host_str().unwrap_or("");
    if with_credential && url.scheme() == "http" && !policy.plain_http_to(host) {
        return Err(refuse(if policy.allow_plain_http {
            "is plain http on a host that is not loopback, the registry's own or an --insecure-registry: refusing to send credentials to it"
        } else {
            "is plain http and the registry is reached over https: refusing to send credentials to it"
        }));
    }
    Ok(url)
}

/// A realm as shown in messages: scheme, host, port and path, no query.
fn realm_shown(url: &reqwest::Url) -> String {
    let text = format!(
        "{}://{}{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port().map(|p| format!(":{p}")).unwrap_or_default(),
        url.path()
    );
    shown(&text, MAX_REALM_SHOWN)
}

/// Ask the realm for a token. Errors never contain the credential, the
/// token or the realm's query string, and say whose fault it is: only a
/// 401 or 403 is [`AuthError::Rejected`].
pub async fn fetch_token(
    http: &reqwest::Client,
    challenge: &BearerChallenge,
    scopes: &[String],
    credential: Option<&Credential>,
    policy: &TokenPolicy,
) -> Result<Token, AuthError> {
    let mut url = check_realm(&challenge.realm, credential.is_some(), policy)?;
    if credential.is_some() {
        // A realm's own `user:password@` would go as a second
        // `Authorization` beside ours; as docker, only ours is sent.
        let _ = url.set_username("");
        let _ = url.set_password(None);
    }
    let realm = realm_shown(&url);
    let scopes: Vec<String> = {
        let set: BTreeSet<&String> = scopes.iter().collect();
        set.into_iter().cloned().collect()
    };
    let now = Instant::now();
    let resp = match credential {
        Some(Credential::IdentityToken(refresh)) => {
            // OAuth2 refresh-token grant, as docker does with identity tokens.
            let mut form: Vec<(&str, &str)> = vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.expose()),
                ("client_id", "boxwright"),
            ];
            let joined = scopes.join(" ");
            if let Some(s) = &challenge.service {
                form.push(("service", s));
            }
            if !joined.is_empty() {
                form.push(("scope", &joined));
            }
            http.post(url.clone())
                .timeout(DOCUMENT_DEADLINE)
                .form(&form)
                .send()
                .await
        }
        _ => {
            {
                let mut q = url.query_pairs_mut();
                if let Some(s) = &challenge.service {
                    q.append_pair("service", s);
                }
                for s in &scopes {
                    q.append_pair("scope", s);
                }
            }
            let mut req = http.get(url.clone()).timeout(DOCUMENT_DEADLINE);
            if let Some(Credential::Basic { username, password }) = credential {
                let mut value = HeaderValue::from_str(&basic_authorization(username, password))
                    .map_err(|_| {
                        AuthError::Credential(
                            "the credential holds characters not allowed in a header".into(),
                        )
                    })?;
                value.set_sensitive(true);
                req = req.header(AUTHORIZATION, value);
            }
            req.send().await
        }
    };
    let resp = resp.map_err(|e| AuthError::Unreachable {
        realm: realm.clone(),
        error: crate::registry::error::transport_text(e),
    })?;
    let status = resp.status().as_u16();
    let retry_after = (resp.headers().get("retry-after"))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()))
        .map(|d| d.as_secs());
    let body = read_capped(resp, MAX_TOKEN_BODY)
        .await
        .map_err(|e| AuthError::BadAnswer {
            realm: realm.clone(),
            detail: format!("reading the token: {e}"),
        })?;
    if status != 200 {
        let codes = crate::registry::error::parse_error_body(&body)
            .into_iter()
            .map(|e| format!(": {} ({})", e.code, e.message))
            .collect::<String>();
        let answer = format!("HTTP {status}{codes}");
        return Err(if status == 401 || status == 403 {
            AuthError::Rejected {
                realm,
                scopes,
                status,
                answer,
                anonymous: credential.is_none(),
            }
        } else {
            AuthError::TokenServer {
                realm,
                scopes,
                status,
                answer,
                retry_after,
            }
        });
    }
    parse_token_response(&body, now).map_err(|detail| AuthError::BadAnswer { realm, detail })
}

/// A token server's whole answer, refused as soon as it is announced or
/// found longer than `cap` bytes (an endless body must not be read until
/// memory runs out).
async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, String> {
    let too_long = || format!("the answer is larger than {cap} bytes, the most accepted");
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(too_long());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(crate::registry::error::transport_text)?
    {
        if body.len() + chunk.len() > cap {
            return Err(too_long());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_answers() {
        let now = Instant::now();
        let t = parse_token_response(br#"{"token":"abc","expires_in":300}"#, now).unwrap();
        assert_eq!(t.value.expose(), "abc");
        assert_eq!(t.expires_at, now + Duration::from_secs(290));
        let t = parse_token_response(br#"{"access_token":"xyz"}"#, now).unwrap();
        assert_eq!(t.value.expose(), "xyz");
        assert_eq!(t.expires_at, now + Duration::from_secs(50));
        // A lifetime that no clock can add is cut to a day.
        for huge in [u64::MAX, u64::MAX / 2, 1 << 40] {
            let body = format!(r#"{{"token":"abc","expires_in":{huge}}}"#);
            let t = parse_token_response(body.as_bytes(), now).unwrap();
            assert_eq!(
                t.expires_at,
                now + MAX_TOKEN_LIFETIME - Duration::from_secs(10)
            );
        }
        // As docker: a lifetime under 60 s, zero or negative is 60 s; one
        // that is not a whole number is not taken; access_token wins.
        for body in [
            r#"{"token":"abc","expires_in":0}"#,
            r#"{"token":"abc","expires_in":5}"#,
            r#"{"token":"abc","expires_in":-5}"#,
            r#"{"token":"abc","expires_in":-9223372036854775808}"#,
            r#"{"token":"abc","expires_in":300.5}"#,
            r#"{"token":"abc","expires_in":"300"}"#,
            r#"{"token":"abc","expires_in":null,"issued_at":"garbage"}"#,
        ] {
            let t = parse_token_response(body.as_bytes(), now).unwrap();
            assert_eq!(t.value.expose(), "abc", "{body}");
            assert_eq!(t.expires_at, now + Duration::from_secs(50), "{body}");
        }
        let both = br#"{"token":"from-token","access_token":"from-access"}"#;
        let t = parse_token_response(both, now).unwrap();
        assert_eq!(t.value.expose(), "from-access");
        let e = parse_token_response(br#"{"token":""}"#, now).unwrap_err();
        assert!(e.contains("neither"));
        let e = parse_token_response(br#"not json secret"#, now).unwrap_err();
        assert!(!e.contains("secret"));
    }

    #[tokio::test]
    async fn credentials_never_go_to_a_plain_http_realm_of_an_https_registry() {
        let http = reqwest::Client::new();
        let challenge = BearerChallenge {
            realm: "http://auth.example.invalid:8080/token?x=1".into(),
            service: Some("registry.example".into()),
            scope: None,
        };
        let cred = Credential::Basic {
            username: "alice-user".into(),
            password: Secret::new("hunter2-password"),
        };
        let https_registry = TokenPolicy {
            allow_plain_http: false,
            plain_http_hosts: vec!["auth.example.invalid".into()],
        };
        // Refused before anything is sent (the host does not even resolve).
        let e = fetch_token(
            &http,
            &challenge,
            &[push_scope("a/b")],
            Some(&cred),
            &https_registry,
        )
        .await
        .unwrap_err();
        assert!(matches!(e, AuthError::BadRealm { .. }), "{e:?}");
        let e = e.to_string();
        assert!(e.contains("auth.example.invalid"), "{e}");
        assert!(e.contains("refusing"), "{e}");
        for secret in ["alice-user", "hunter2-password"] {
            assert!(!e.contains(secret), "{e}");
        }
        let realm = &challenge.realm;
        assert!(check_realm(realm, true, &https_registry).is_err());
        // Anonymous requests carry nothing to protect.
        assert!(check_realm(realm, false, &https_registry).is_ok());
        // A registry reached over plain HTTP (loopback, --insecure-registry)
        // may use a plain HTTP realm on its own host (any port), one
        // listed as insecure, or a loopback one; not one across a network.
        let plain_registry = TokenPolicy {
            allow_plain_http: true,
            plain_http_hosts: vec!["AUTH.example.invalid:5000".into()],
        };
        assert!(check_realm(realm, true, &plain_registry).is_ok());
        for loopback in [
            "http://127.0.0.1:1/t",
            "http://localhost/t",
            "http://[::1]:1/t",
        ] {
            assert!(check_realm(loopback, true, &plain_registry).is_ok());
        }
        let elsewhere = "http://auth.elsewhere.invalid/token";
        let e = check_realm(elsewhere, true, &plain_registry).unwrap_err();
        assert!(e.to_string().contains("not loopback"), "{e}");
        assert!(check_realm(elsewhere, false, &plain_registry).is_ok());
        let v6 = TokenPolicy {
            allow_plain_http: true,
            plain_http_hosts: vec!["[fd00::2]:5000".into()],
        };
        assert!(check_realm("http://[fd00::2]:5001/t", true, &v6).is_ok());
        assert!(check_realm("http://[fd00::3]/t", true, &v6).is_err());
        let tls = "https://auth.example.invalid/token";
        assert!(check_realm(tls, true, &https_registry).is_ok());
    }

    #[test]
    fn a_realm_that_is_not_an_absolute_http_url_is_refused_and_cut() {
        let policy = TokenPolicy {
            allow_plain_http: true,
            plain_http_hosts: vec![],
        };
        let long = format!("/token/{}", "x".repeat(10_000));
        for realm in [
            "",
            "token",
            "/token",
            "ftp://h/token",
            "file:///etc/passwd",
            "https://",
            &long,
        ] {
            for with_credential in [true, false] {
                let e = check_realm(realm, with_credential, &policy).unwrap_err();
                let AuthError::BadRealm { realm: said, .. } = &e else {
                    panic!("{e:?}");
                };
                assert!(said.len() <= MAX_REALM_SHOWN + 3, "{said}");
                assert!(
                    e.to_string().contains("not an absolute http or https URL"),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn cache_keys_on_sorted_scopes() {
        let c = TokenCache::default();
        let a = vec![push_scope("a/b"), pull_scope("a/c")];
        let b = vec![pull_scope("a/c"), push_scope("a/b")];
        c.put(
            "r",
            &a,
            Token {
                value: Secret::new("t"),
                expires_at: Instant::now() + Duration::from_secs(60),
            },
        );
        assert_eq!(
            c.get("r", &b).map(|s| s.expose().to_string()),
            Some("t".into())
        );
        assert!(c.get("other", &b).is_none());
        assert!(c.get("r", &[push_scope("a/b")]).is_none());
        c.invalidate("r", &b);
        assert!(c.get("r", &a).is_none());
        c.put(
            "r",
            &a,
            Token {
                value: Secret::new("old"),
                expires_at: Instant::now() - Duration::from_secs(1),
            },
        );
        assert!(c.get("r", &a).is_none(), "expired tokens are not used");
    }
}

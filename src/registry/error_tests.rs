//! Tests of [`super`]: statuses, error codes, hints and their text.

use super::*;

/// An answer of `status` with no error body.
fn st(status: u16) -> RegistryError {
    RegistryError::new(
        ctx(),
        ErrorKind::Status {
            status,
            errors: vec![],
        },
    )
}

fn ctx() -> ErrorContext {
    ErrorContext {
        operation: "uploading blob".into(),
        registry: "ghcr.io".into(),
        repository: Some("acme/r2d".into()),
        object: Some("sha256:abc".into()),
    }
}

#[test]
fn renders_context_status_and_codes() {
    let errors = parse_error_body(
        br#"{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN","message":"blob upload unknown to registry","detail":{}}]}"#,
    );
    let e = RegistryError::new(
        ctx(),
        ErrorKind::Status {
            status: 404,
            errors,
        },
    );
    assert_eq!(
        e.to_string(),
        "uploading blob sha256:abc in ghcr.io/acme/r2d: HTTP 404 Not Found: BLOB_UPLOAD_UNKNOWN (blob upload unknown to registry)"
    );
    assert!(e.is_temporary());
    assert_eq!(e.status(), Some(404));
}

#[test]
fn temporary_predicate() {
    let st = |status, errors| RegistryError::new(ctx(), ErrorKind::Status { status, errors });
    for s in [408, 429, 500, 502, 503, 504] {
        assert!(st(s, vec![]).is_temporary(), "{s}");
    }
    for s in [400, 401, 403, 404, 405, 416] {
        assert!(!st(s, vec![]).is_temporary(), "{s}");
    }
    let rl = vec![ApiError {
        code: "DENIED".into(),
        message: "You have exceeded a secondary rate limit".into(),
    }];
    assert!(st(403, rl).is_temporary());
    assert!(RegistryError::new(ctx(), ErrorKind::Transport("reset".into())).is_temporary());
    assert!(!RegistryError::new(ctx(), ErrorKind::Protocol("x".into())).is_temporary());
    let token_server = |status| {
        RegistryError::new(
            ctx(),
            ErrorKind::Auth(AuthError::TokenServer {
                realm: "https://auth.example/token".into(),
                scopes: vec![],
                status,
                answer: format!("HTTP {status}"),
                retry_after: None,
            }),
        )
    };
    assert!(token_server(503).is_temporary() && token_server(429).is_temporary());
    assert!(!token_server(400).is_temporary());
    let unreachable = AuthError::Unreachable {
        realm: "https://auth.example/token".into(),
        error: "connection refused".into(),
    };
    assert!(RegistryError::new(ctx(), ErrorKind::Auth(unreachable)).is_temporary());
    let refused = AuthError::Rejected {
        realm: "https://auth.example/token".into(),
        scopes: vec![],
        status: 401,
        answer: "HTTP 401".into(),
        anonymous: false,
    };
    assert!(!RegistryError::new(ctx(), ErrorKind::Auth(refused)).is_temporary());
}

#[test]
fn rate_limit_shown() {
    let mut e = RegistryError::new(
        ctx(),
        ErrorKind::Status {
            status: 429,
            errors: vec![ApiError {
                code: "TOOMANYREQUESTS".into(),
                message: "pull rate limit".into(),
            }],
        },
    );
    e.ratelimit_remaining = Some("0;w=21600".into());
    e.retry_after = Some(60);
    let s = e.to_string();
    assert!(s.contains("ratelimit-remaining: 0;w=21600"), "{s}");
    assert!(s.contains("retry after 60s"), "{s}");
}

#[test]
fn a_registry_message_stays_on_one_line() {
    let e = parse_error_body(
        br#"{"errors":[{"code":"DENIED\n::error::x","message":"denied\n::set-output name=digest::forged\r\u0007"}]}"#,
    );
    assert_eq!(e[0].code, "DENIED ::error::x");
    assert_eq!(e[0].message, "denied ::set-output name=digest::forged  ");
}

#[test]
fn odd_bodies_give_no_codes() {
    assert!(parse_error_body(b"<html>").is_empty());
    assert!(parse_error_body(b"{}").is_empty());
}

#[test]
fn an_anonymous_refusal_does_not_point_at_credentials() {
    for status in [401, 403] {
        let with = st(status).to_string();
        assert!(with.contains("credentials"), "{with}");
        let anon = st(status).sent_anonymously().to_string();
        assert!(!anon.contains("check the credentials"), "{anon}");
        assert!(!anon.contains("the credentials lack"), "{anon}");
        assert!(anon.contains("refuses anonymous pulls"), "{anon}");
    }
    let other = st(500).sent_anonymously().to_string();
    assert!(!other.contains("anonymous"), "{other}");
}

#[test]
fn a_refused_login_points_at_what_was_given() {
    let rejected = AuthError::Rejected {
        realm: "https://auth.example/token".into(),
        scopes: vec![],
        status: 401,
        answer: "HTTP 401".into(),
        anonymous: false,
    };
    let refused = [
        st(401).checking_login(),
        st(403).checking_login(),
        RegistryError::new(ctx(), ErrorKind::Auth(rejected)).checking_login(),
    ];
    for e in refused {
        let text = e.to_string();
        assert!(
            text.contains("the password or token given on stdin"),
            "{text}"
        );
        assert!(!text.contains("boxwright login"), "{text}");
        assert!(!text.contains("username_env"), "{text}");
    }
    let other = st(401).to_string();
    assert!(other.contains("boxwright login"), "{other}");
    // Outside login, a token server's refusal says where credentials
    // come from, as the registry's own 401 does.
    for anonymous in [false, true] {
        let rejected = AuthError::Rejected {
            realm: "https://auth.example/token".into(),
            scopes: vec!["repository:a/b:pull,push".into()],
            status: 401,
            answer: "HTTP 401".into(),
            anonymous,
        };
        let text = RegistryError::new(ctx(), ErrorKind::Auth(rejected.clone())).to_string();
        assert!(text.contains("boxwright login"), "{text}");
        assert!(text.contains("~/.docker/config.json"), "{text}");
        let asked = RegistryError::new(ctx(), ErrorKind::Auth(rejected)).sent_anonymously();
        let text = asked.to_string();
        assert!(text.contains("refuses anonymous pulls"), "{text}");
    }
    let unreachable = |source: &str| AuthError::Unreachable {
        realm: "https://auth.example/token".into(),
        error: source.into(),
    };
    let tls = RegistryError::new(
        ctx(),
        ErrorKind::Auth(unreachable("invalid peer certificate: UnknownIssuer")),
    )
    .checking_login()
    .to_string();
    assert!(tls.contains("--ca-file"), "{tls}");
    // Only a refusal blames the credentials.
    let not_theirs = [
        AuthError::TokenServer {
            realm: "https://auth.example/token".into(),
            scopes: vec![],
            status: 500,
            answer: "HTTP 500".into(),
            retry_after: None,
        },
        unreachable("connection refused"),
        AuthError::BadRealm {
            realm: "ftp://x".into(),
            reason: "is not an absolute http(s) URL".into(),
        },
        AuthError::BadAnswer {
            realm: "https://auth.example/token".into(),
            detail: "not JSON".into(),
        },
    ];
    for a in not_theirs {
        let text = RegistryError::new(ctx(), ErrorKind::Auth(a))
            .checking_login()
            .to_string();
        assert!(!text.contains("check the user name"), "{text}");
        assert!(!text.contains("credentials were refused"), "{text}");
    }
}

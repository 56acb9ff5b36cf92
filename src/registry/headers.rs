//! Protocol header helpers: upload `Location`s, `Range`, `Link` and how URLs
//! are shown in logs (never with their query, which may hold state tokens).

use reqwest::Url;

/// Resolve an upload `Location` against the URL of the request that returned
/// it. Relative and absolute values are used as given, with their query.
pub fn resolve_location(request_url: &Url, location: &str) -> Result<Url, String> {
    let loc = location.trim();
    if loc.is_empty() {
        return Err("the registry answered with an empty Location".into());
    }
    request_url
        .join(loc)
        .map_err(|_| "the registry answered with a Location that is not a URL".into())
}

/// Add `digest=<d>` to an upload URL, keeping its own query parameters.
pub fn with_digest(url: &Url, digest: &str) -> Url {
    let mut u = url.clone();
    u.query_pairs_mut().append_pair("digest", digest);
    u
}

/// Parse an upload `Range` header: `0-N`, `bytes=0-N` (inclusive end).
/// Returns the number of bytes the registry holds (`N + 1`). `0-0` is
/// ambiguous in the wild; the distribution registry sends it for an empty
/// session too, so callers also use the byte count they sent.
pub fn parse_range(value: &str) -> Option<u64> {
    let v = value.trim();
    let v = v.strip_prefix("bytes=").unwrap_or(v).trim();
    let (start, end) = v.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = end.trim().parse().ok()?;
    if start != 0 || end < start {
        return None;
    }
    end.checked_add(1)
}

/// The next page of a paginated list from a `Link: <url>; rel="next"` header.
pub fn parse_next_link(value: &str) -> Option<String> {
    for part in value.split(',') {
        let part = part.trim();
        let Some(rest) = part.strip_prefix('<') else {
            continue;
        };
        let Some((target, params)) = rest.split_once('>') else {
            continue;
        };
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p.eq_ignore_ascii_case("rel=\"next\"") || p.eq_ignore_ascii_case("rel=next")
        });
        if is_next {
            return Some(target.to_string());
        }
    }
    None
}

/// A URL for logs: scheme, host and path, with the query replaced by `?…`.
pub fn redact(url: &Url) -> String {
    let mut s = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
    if let Some(p) = url.port() {
        s.push_str(&format!(":{p}"));
    }
    s.push_str(url.path());
    if url.query().is_some() {
        s.push_str("?…");
    }
    s
}

/// Whether two URLs have the same origin (scheme, host and port), which
/// decides whether credentials may be sent: a redirect from
/// `https://registry` to `http://registry` is another origin, and an
/// `Authorization` header sent there would cross the network in clear text.
pub fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme().eq_ignore_ascii_case(b.scheme())
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn joins_locations_as_given() {
        let base = u("https://ghcr.io/v2/acme/x/blobs/uploads/");
        assert_eq!(
            resolve_location(&base, "/v2/acme/x/blobs/upload/abc")
                .unwrap()
                .as_str(),
            "https://ghcr.io/v2/acme/x/blobs/upload/abc"
        );
        let abs =
            resolve_location(&base, "https://storage.example/up/1?sig=a%2Fb&_state=xyz").unwrap();
        assert_eq!(
            abs.as_str(),
            "https://storage.example/up/1?sig=a%2Fb&_state=xyz"
        );
        assert!(!same_origin(&abs, &base));
        assert!(same_origin(&u("https://ghcr.io:443/a"), &base));
        assert!(!same_origin(
            &u("http://localhost:5001/a"),
            &u("http://localhost:5000/a")
        ));
        assert!(resolve_location(&base, "").is_err());
    }

    #[test]
    fn origin_includes_the_scheme() {
        let base = u("https://ghcr.io/");
        // An https -> http redirect to the same host and port is another
        // origin: no Authorization may follow it.
        assert!(!same_origin(
            &u("http://ghcr.io:443/v2/x/blobs/sha256:00"),
            &base
        ));
        assert!(!same_origin(&u("http://ghcr.io/v2/"), &base));
        assert!(!same_origin(
            &u("https://registry.lan:5000/v2/"),
            &u("http://registry.lan:5000/")
        ));
        assert!(same_origin(&u("HTTPS://GHCR.IO/v2/"), &base));
        assert!(same_origin(
            &u("http://127.0.0.1:5000/v2/x"),
            &u("http://127.0.0.1:5000/")
        ));
    }

    #[test]
    fn appends_digest_with_right_separator() {
        let d = "sha256:0123";
        assert_eq!(
            with_digest(&u("http://localhost:5000/v2/x/blobs/uploads/id"), d).as_str(),
            "http://localhost:5000/v2/x/blobs/uploads/id?digest=sha256%3A0123"
        );
        assert_eq!(
            with_digest(
                &u("http://localhost:5000/v2/x/blobs/uploads/id?_state=a%2Bb%3D"),
                d
            )
            .as_str(),
            "http://localhost:5000/v2/x/blobs/uploads/id?_state=a%2Bb%3D&digest=sha256%3A0123"
        );
    }

    #[test]
    fn parses_ranges() {
        assert_eq!(parse_range("0-1023"), Some(1024));
        assert_eq!(parse_range("bytes=0-4194303"), Some(4_194_304));
        assert_eq!(parse_range(" 0 - 9 "), Some(10));
        assert_eq!(parse_range("0-0"), Some(1));
        assert_eq!(parse_range("5-9"), None);
        assert_eq!(parse_range("0-"), None);
        assert_eq!(parse_range("garbage"), None);
    }

    #[test]
    fn parses_link_next() {
        assert_eq!(
            parse_next_link(r#"</v2/x/tags/list?n=2&last=b>; rel="next""#).as_deref(),
            Some("/v2/x/tags/list?n=2&last=b")
        );
        assert_eq!(
            parse_next_link(r#"<https://a/prev>; rel="prev", <https://a/next>; rel=next"#)
                .as_deref(),
            Some("https://a/next")
        );
        assert_eq!(parse_next_link(r#"<https://a/prev>; rel="prev""#), None);
    }

    #[test]
    fn redacts_queries() {
        assert_eq!(
            redact(&u(
                "https://r.example:8443/v2/x/blobs/uploads/1?_state=secret"
            )),
            "https://r.example:8443/v2/x/blobs/uploads/1?…"
        );
    }
}

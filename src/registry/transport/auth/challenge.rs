//! `WWW-Authenticate` challenges: what a registry's 401 asks for.
//!
//! A registry answers `GET /v2/` (or any request) with `401` and a challenge:
//! `Basic realm="..."` (send the credentials on every request) or
//! `Bearer realm="...",service="...",scope="..."` (ask the realm for a token
//! with `service` and one `scope=` per scope, with basic credentials when
//! there are some).

/// One challenge from a `WWW-Authenticate` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer(BearerChallenge),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BearerChallenge {
    pub realm: String,
    pub service: Option<String>,
    pub scope: Option<String>,
}

/// Parse every challenge of a `WWW-Authenticate` value. Parameter values may
/// be quoted strings holding commas and escaped quotes; scheme and parameter
/// names are case-insensitive. Unknown schemes are skipped.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out = Vec::new();
    for (scheme, params) in parse_raw(header) {
        let get = |k: &str| {
            params
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
        };
        if scheme.eq_ignore_ascii_case("basic") {
            out.push(Challenge::Basic);
        } else if scheme.eq_ignore_ascii_case("bearer") {
            if let Some(realm) = get("realm") {
                out.push(Challenge::Bearer(BearerChallenge {
                    realm,
                    service: get("service"),
                    scope: get("scope"),
                }));
            }
        }
    }
    out
}

/// Pick the challenge to answer: Bearer over Basic.
pub fn preferred(challenges: &[Challenge]) -> Option<Challenge> {
    challenges
        .iter()
        .find(|c| matches!(c, Challenge::Bearer(_)))
        .or_else(|| challenges.first())
        .cloned()
}

type RawChallenge = (String, Vec<(String, String)>);

fn parse_raw(s: &str) -> Vec<RawChallenge> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out: Vec<RawChallenge> = Vec::new();
    let is_tchar = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/:".contains(&c);
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t' || b[*i] == b',') {
            *i += 1;
        }
    };
    let read_token = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && is_tchar(b[*i]) {
            *i += 1;
        }
        s[start..*i].to_string()
    };
    loop {
        skip_ws(&mut i);
        if i >= b.len() {
            break;
        }
        let tok = read_token(&mut i);
        if tok.is_empty() {
            // Garbage: skip one byte.
            i += 1;
            continue;
        }
        // After a token: '=' makes it a parameter of the current challenge,
        // anything else makes it a new scheme.
        let mut j = i;
        while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
            j += 1;
        }
        if j < b.len() && b[j] == b'=' && !out.is_empty() {
            i = j + 1;
            while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
                i += 1;
            }
            let value = if i < b.len() && b[i] == b'"' {
                i += 1;
                let mut v = String::new();
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    // Push whole UTF-8 characters.
                    let ch_len = s[i..].chars().next().map_or(1, char::len_utf8);
                    v.push_str(&s[i..i + ch_len]);
                    i += ch_len;
                }
                i += 1; // closing quote
                v
            } else {
                let start = i;
                while i < b.len() && b[i] != b',' && b[i] != b' ' {
                    i += 1;
                }
                s[start..i].to_string()
            };
            if let Some(last) = out.last_mut() {
                last.1.push((tok, value));
            }
        } else {
            out.push((tok, Vec::new()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_with_commas_in_scope() {
        let h = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:acme/r2d:pull,push""#;
        assert_eq!(
            parse_challenges(h),
            vec![Challenge::Bearer(BearerChallenge {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:acme/r2d:pull,push".into()),
            })]
        );
    }

    #[test]
    fn parses_basic_multiple_and_odd_spacing() {
        assert_eq!(
            parse_challenges(r#"Basic realm="Registry Realm""#),
            vec![Challenge::Basic]
        );
        let h =
            r#"basic realm="a, b", BEARER  realm = "https://t/x?y=1" , service=reg,scope="a b""#;
        let c = parse_challenges(h);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0], Challenge::Basic);
        assert_eq!(
            c[1],
            Challenge::Bearer(BearerChallenge {
                realm: "https://t/x?y=1".into(),
                service: Some("reg".into()),
                scope: Some("a b".into()),
            })
        );
        assert!(matches!(preferred(&c), Some(Challenge::Bearer(_))));
        let esc = parse_challenges(r#"Bearer realm="https://x/\"q\"""#);
        assert!(matches!(&esc[0], Challenge::Bearer(b) if b.realm == "https://x/\"q\""));
        assert!(parse_challenges("Bearer service=\"x\"").is_empty()); // no realm
        assert!(parse_challenges("").is_empty());
        assert!(parse_challenges("Negotiate").is_empty());
    }
}

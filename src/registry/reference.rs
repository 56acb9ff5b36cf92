//! Image references: `registry/repository[:tag][@digest]`.
//!
//! Parsing follows the grammar of the distribution project's `reference`
//! package, with Docker's normalisation: a name without a registry belongs to
//! Docker Hub (`alpine` is `docker.io/library/alpine`), and `index.docker.io`
//! or `registry-1.docker.io` are spelled `docker.io`. A name without `/`
//! that looks like a registry (`127.0.0.1:5000`, `ghcr.io`, `localhost`) is
//! refused rather than read as a Docker Hub repository, as Docker would: it
//! is almost always a registry written without its repository.
//! [`Reference::api_host`]
//! gives the host that answers the HTTP API and [`Reference::config_key`] the
//! key that `docker login` uses in `config.json`.
//!
//! ```
//! use boxwright::registry::Reference;
//! let r: Reference = "alpine:3.20".parse().unwrap();
//! assert_eq!(r.to_string(), "docker.io/library/alpine:3.20");
//! assert_eq!(r.api_host(), "registry-1.docker.io");
//! ```

use std::fmt;
use std::str::FromStr;

use crate::error::bad_input;
use crate::oci::Digest;

/// The registry name that Docker Hub references are normalised to.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that answers Docker Hub's registry API.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
/// Docker Hub's key in `config.json`.
pub const DOCKER_HUB_CONFIG_KEY: &str = "https://index.docker.io/v1/";

const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A parsed, normalised image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry name as the user knows it (`docker.io`, `ghcr.io`, `localhost:5000`).
    pub registry: String,
    /// Repository path inside the registry (`library/alpine`, `acme/r2d`).
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parse a reference; errors are [`crate::error::BadInput`] and name the
    /// reference and what is wrong with it.
    pub fn parse(s: &str) -> anyhow::Result<Reference> {
        parse(s).map_err(|why| bad_input(format!("invalid image reference {s:?}: {why}")))
    }

    /// The host (with port) that serves the registry API.
    pub fn api_host(&self) -> &str {
        api_host(&self.registry)
    }

    /// The key of this registry in docker's `config.json`.
    pub fn config_key(&self) -> String {
        config_key(&self.registry)
    }

    /// What to ask the registry for: the digest when pinned, else the tag,
    /// else `latest`.
    pub fn object(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// This reference as a registry serves it: tagged `latest` when it
    /// names neither a tag nor a digest.
    pub fn or_latest(&self) -> Reference {
        let mut r = self.clone();
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some("latest".into());
        }
        r
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }
}

/// The repositories `refs` name (without tag or digest), each once, in
/// order.
pub fn repositories<'a>(refs: impl IntoIterator<Item = &'a Reference>) -> Vec<Reference> {
    let mut out: Vec<Reference> = Vec::new();
    for r in refs {
        let repo = Reference {
            tag: None,
            digest: None,
            ..r.clone()
        };
        if !out.contains(&repo) {
            out.push(repo);
        }
    }
    out
}

/// The API host of a (normalised) registry name.
pub fn api_host(registry: &str) -> &str {
    if registry == DOCKER_HUB {
        DOCKER_HUB_API_HOST
    } else {
        registry
    }
}

/// The `config.json` key for a (normalised) registry name.
pub fn config_key(registry: &str) -> String {
    if registry == DOCKER_HUB {
        DOCKER_HUB_CONFIG_KEY.to_string()
    } else {
        registry.to_string()
    }
}

/// Normalise a registry name as typed by a user or found in `config.json`
/// (`https://index.docker.io/v1/` -> `docker.io`, `ghcr.io/` -> `ghcr.io`).
pub fn normalize_registry(name: &str) -> String {
    let s = name.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = s.split('/').next().unwrap_or(s).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_string()
        }
        _ => host,
    }
}

impl FromStr for Reference {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Reference> {
        Reference::parse(s)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn parse(s: &str) -> Result<Reference, String> {
    if s.is_empty() {
        return Err("it is empty".into());
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("it contains white space".into());
    }
    if s.contains("://") {
        return Err("write it without a scheme, as registry/repository[:tag]".into());
    }
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => {
            let d: Digest = d.parse().map_err(|e: String| e)?;
            (r, Some(d))
        }
        None => (s, None),
    };
    if let Some((shown, host)) = registry_alone(rest) {
        let hub = if valid_component(host) {
            format!(" (and docker.io/library/{host} if Docker Hub's repository {host:?} was really meant)")
        } else {
            String::new()
        };
        return Err(format!(
            "{shown:?} names a registry but no repository: write HOST/REPOSITORY[:TAG], \
             e.g. {shown}/acme/app:1.0{hub}"
        ));
    }
    let last_slash = rest.rfind('/');
    let (name, tag) = match rest.rfind(':') {
        Some(i) if last_slash.is_none_or(|sl| i > sl) => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if let Some(t) = tag {
        check_tag(t)?;
    }
    if name.is_empty() {
        return Err("the repository name is missing".into());
    }
    let (registry, repository) = match name.split_once('/') {
        Some((first, path)) if is_registry_name(first) => {
            check_registry(first)?;
            (normalize_registry(first), path.to_string())
        }
        _ => (DOCKER_HUB.to_string(), name.to_string()),
    };
    let repository = if registry == DOCKER_HUB && !repository.contains('/') {
        format!("library/{repository}")
    } else {
        repository
    };
    check_repository(&repository)?;
    if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
        return Err(format!("the name is longer than {MAX_NAME_LEN} characters"));
    }
    Ok(Reference {
        registry,
        repository,
        tag: tag.map(str::to_string),
        digest,
    })
}

/// The registry that `rest` (a reference without digest) names when it has
/// no `/` and its name looks like a registry host: it has a dot, is
/// `localhost` or an IPv6 address in brackets. Returned as written
/// (`HOST:PORT` when a port follows) and as the host alone. Docker reads such a name as a Docker Hub repository (`ghcr.io`
/// as `docker.io/library/ghcr.io`), which is never what was meant.
fn registry_alone(rest: &str) -> Option<(&str, &str)> {
    if rest.contains('/') {
        return None;
    }
    let end = match rest.strip_prefix('[') {
        Some(inner) => inner.find(']').map_or(rest.len(), |i| i + 2),
        None => rest.find(':').unwrap_or(rest.len()),
    };
    let (host, after) = rest.split_at(end);
    if !(host.starts_with('[') || host.contains('.') || host == "localhost") {
        return None;
    }
    let is_port = after
        .strip_prefix(':')
        .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    Some((if is_port { rest } else { host }, host))
}

/// The first path component is a registry when it looks like a host: it has
/// a dot or a port, or is `localhost` (Docker's rule).
fn is_registry_name(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost"
}

fn check_registry(host: &str) -> Result<(), String> {
    let (name, port) = if let Some(inner) = host.strip_prefix('[') {
        // [::1]:5000
        let (addr, after) = inner
            .split_once(']')
            .ok_or_else(|| format!("registry {host:?} has an unclosed '['"))?;
        if addr.is_empty() || !addr.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Err(format!("registry {host:?} is not a valid IPv6 address"));
        }
        match after {
            "" => return Ok(()),
            p => (
                "",
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("registry {host:?} is malformed"))?,
                ),
            ),
        }
    } else {
        match host.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.parse::<u16>().is_err() {
            return Err(format!("registry {host:?} has an invalid port {p:?}"));
        }
    }
    if !name.is_empty() || port.is_none() {
        let ok = !name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if !ok {
            return Err(format!("registry {host:?} is not a valid host name"));
        }
    }
    Ok(())
}

/// Whether `t` is a valid tag (`[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`).
pub fn is_valid_tag(t: &str) -> bool {
    check_tag(t).is_ok()
}

fn check_tag(t: &str) -> Result<(), String> {
    if t.is_empty() {
        return Err("the tag after ':' is empty".into());
    }
    if t.len() > MAX_TAG_LEN {
        return Err(format!("the tag is longer than {MAX_TAG_LEN} characters"));
    }
    let b = t.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    if !word(b[0]) || !b.iter().all(|&c| word(c) || c == b'.' || c == b'-') {
        return Err(format!(
            "tag {t:?} may only hold letters, digits, '_', '.' and '-', and must not start with '.' or '-'"
        ));
    }
    Ok(())
}

fn check_repository(repo: &str) -> Result<(), String> {
    for comp in repo.split('/') {
        if comp.is_empty() {
            return Err(
                "the repository has an empty path component (\"//\" or a trailing '/')".into(),
            );
        }
        if comp.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(format!("repository component {comp:?} must be lowercase"));
        }
        if !valid_component(comp) {
            return Err(format!(
                "repository component {comp:?} may only hold lowercase letters and digits separated by '.', '_', '__' or '-'"
            ));
        }
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    let mut need_alnum = true;
    while i < b.len() {
        if alnum(b[i]) {
            need_alnum = false;
            i += 1;
            continue;
        }
        if need_alnum {
            return false;
        }
        // A separator: '.', '_', '__' or '-'+.
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        need_alnum = true;
    }
    !need_alnum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_are_named_once_without_tag_or_digest_in_order() {
        let refs: Vec<Reference> = [
            "ghcr.io/a/r:1",
            "docker.io/a/r:1",
            "ghcr.io/a/r:latest",
            "ghcr.io/a/r@sha256:0123456789012345678901234567890123456789012345678901234567890123",
        ]
        .iter()
        .map(|s| Reference::parse(s).unwrap())
        .collect();
        let names: Vec<String> = repositories(&refs).iter().map(|r| r.to_string()).collect();
        assert_eq!(names, ["ghcr.io/a/r", "docker.io/a/r"]);
    }

    fn p(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    fn err(s: &str) -> String {
        let e = Reference::parse(s).unwrap_err();
        assert!(crate::error::is_bad_input(&e), "{s}: not bad input");
        e.to_string()
    }

    #[test]
    fn normalises_docker_hub() {
        let r = p("alpine");
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "library/alpine");
        assert_eq!(r.tag, None);
        assert_eq!(r.object(), "latest");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.config_key(), "https://index.docker.io/v1/");
        assert_eq!(p("acme/r2d:1.4.0").to_string(), "docker.io/acme/r2d:1.4.0");
        assert_eq!(p("docker.io/alpine").repository, "library/alpine");
        assert_eq!(p("index.docker.io/acme/x").registry, "docker.io");
        assert_eq!(p("registry-1.docker.io/acme/x").registry, "docker.io");
    }

    #[test]
    fn recognises_registries() {
        let r = p("localhost:5000/x");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("localhost:5000", "x")
        );
        assert_eq!(r.api_host(), "localhost:5000");
        assert_eq!(p("localhost/x").registry, "localhost");
        assert_eq!(p("127.0.0.1:5000/a/b:t").registry, "127.0.0.1:5000");
        assert_eq!(p("[::1]:5000/a").registry, "[::1]:5000");
        let r = p("ghcr.io/acme/diagram-to-iac-r2d:1.4.0");
        assert_eq!(r.registry, "ghcr.io");
        assert_eq!(r.repository, "acme/diagram-to-iac-r2d");
        assert_eq!(r.tag.as_deref(), Some("1.4.0"));
        assert_eq!(r.config_key(), "ghcr.io");
    }

    #[test]
    fn tags_digests_and_round_trips() {
        let d = Digest::of(b"x");
        let s = format!("ghcr.io/acme/r2d:1.4.0@{d}");
        let r = p(&s);
        assert_eq!(r.digest.as_ref(), Some(&d));
        assert_eq!(r.object(), d.to_string());
        for s in [
            s.as_str(),
            "docker.io/library/alpine:3.20",
            "localhost:5000/a/b",
            "[::1]:5000/a:t",
            "ghcr.io/a_b/c__d/e--f.g:v1_2-3.4",
        ] {
            assert_eq!(p(s).to_string(), s);
            assert_eq!(p(&p(s).to_string()), p(s));
        }
        assert_eq!(p("a/b:c").with_tag("d").to_string(), "docker.io/a/b:d");
    }

    #[test]
    fn errors_name_reference_and_reason() {
        let long_tag = format!("ghcr.io/a:{}", "t".repeat(129));
        for (reference, said) in [
            ("", &["empty"][..]),
            ("ghcr.io/Acme/x", &["\"ghcr.io/Acme/x\"", "lowercase"]),
            ("ghcr.io/acme/x:", &["tag", "empty"]),
            ("ghcr.io/acme/x:-bad", &["\"-bad\""]),
            ("ghcr.io/acme/x@sha256:abc", &["sha256:<64"]),
            ("ghcr.io//x", &["empty path component"]),
            ("localhost:99999/x", &["invalid port"]),
            ("https://ghcr.io/a/b", &["scheme"]),
            ("ghcr.io/a/b c", &["white space"]),
            ("ghcr.io/a/-b", &["\"-b\""]),
            (&long_tag, &["longer than 128"]),
            ("ghcr.io/", &["empty path component"]),
        ] {
            let e = err(reference);
            for part in said {
                assert!(e.contains(part), "{reference:?}: {e}");
            }
        }
    }

    #[test]
    fn a_registry_without_a_repository_is_refused() {
        for (reference, shown) in [
            ("127.0.0.1:45471", "\"127.0.0.1:45471\""),
            ("ghcr.io", "\"ghcr.io\""),
            ("ghcr.io:1.0", "\"ghcr.io\""),
            ("localhost", "\"localhost\""),
            ("localhost:5000", "\"localhost:5000\""),
            ("[::1]:5000", "\"[::1]:5000\""),
        ] {
            let e = err(reference);
            for part in [
                shown,
                "names a registry but no repository",
                "HOST/REPOSITORY[:TAG]",
            ] {
                assert!(e.contains(part), "{reference:?}: {e}");
            }
        }
        let e = err("127.0.0.1:45471");
        assert!(e.contains("127.0.0.1:45471/acme/app:1.0"), "{e}");
        assert!(e.contains("docker.io/library/127.0.0.1 "), "{e}");
        let d = Digest::of(b"x");
        assert!(err(&format!("ghcr.io@{d}")).contains("no repository"));
        // Short names stay Docker Hub's.
        assert_eq!(
            p("ubuntu:22.04").to_string(),
            "docker.io/library/ubuntu:22.04"
        );
        assert_eq!(p("acme/app").to_string(), "docker.io/acme/app");
        assert_eq!(p("alpine").to_string(), "docker.io/library/alpine");
        assert_eq!(p("localhost:5000/app").registry, "localhost:5000");
        assert_eq!(
            p("docker.io/library/ghcr.io").to_string(),
            "docker.io/library/ghcr.io"
        );
    }

    #[test]
    fn registry_names_normalise() {
        assert_eq!(
            normalize_registry("https://index.docker.io/v1/"),
            "docker.io"
        );
        assert_eq!(normalize_registry("GHCR.io"), "ghcr.io");
        assert_eq!(
            normalize_registry("http://localhost:5000/"),
            "localhost:5000"
        );
    }
}

//! Where the image goes: the recipe's `tags` and its `[[target]]`
//! registries, checked (tag syntax, `registry/repository` without tag or
//! scheme, credential variable names, no target listed twice).

use anyhow::Result;

use super::schema::{Str, TargetSection};
use super::{vars, Role, Source, Target};

/// The recipe's tags, deduplicated in order; `latest` when it gives none.
pub(super) fn tags(
    src: &Source,
    given: &[Str],
    expand: &dyn Fn(&Str) -> Result<String>,
) -> Result<Vec<String>> {
    let mut tags = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for t in given {
        let tag = expand(t)?;
        if !is_tag(&tag) {
            return Err(src.err(t.span(), format!("tag {tag:?} is not valid: 1 to 128 of [A-Za-z0-9_.-], not starting with . or -")));
        }
        if seen.insert(tag.clone()) {
            tags.push(tag);
        }
    }
    if tags.is_empty() {
        tags.push("latest".to_string());
    }
    Ok(tags)
}

pub(super) fn targets(
    src: &Source,
    sections: &[TargetSection],
    expand: &dyn Fn(&Str) -> Result<String>,
) -> Result<Vec<Target>> {
    let mut targets: Vec<Target> = Vec::new();
    // Each target's repository as a push names it: `index.docker.io/acme/x`
    // and `docker.io/acme/x`, or `LOCALHOST:5000/x` and `localhost:5000/x`,
    // are one repository.
    let mut names: Vec<String> = Vec::new();
    for t in sections {
        let target = target(src, t, expand)?;
        let name = crate::registry::Reference::parse(&target.reference)
            .map_or_else(|_| target.reference.clone(), |r| r.name());
        if let Some(i) = names.iter().position(|n| n == &name) {
            let first = &targets[i].reference;
            let also = if first == &target.reference {
                String::new()
            } else {
                format!(" (as {first}: both name {name})")
            };
            return Err(src.err(
                t.reference.span(),
                format!(
                    "target {} is listed twice{also}; keep one [[target]] per repository",
                    target.reference
                ),
            ));
        }
        names.push(name);
        targets.push(target);
    }
    Ok(targets)
}

fn target(
    src: &Source,
    t: &TargetSection,
    expand: &dyn Fn(&Str) -> Result<String>,
) -> Result<Target> {
    let reference = expand(&t.reference)?;
    if let Err(m) = check_repository_ref(&reference) {
        return Err(src.err(t.reference.span(), m));
    }
    let role = src.keyword(
        "role",
        t.role.as_ref(),
        expand,
        &[("primary", Role::Primary), ("backup", Role::Backup)],
    )?;
    let encodings = [("plain", false), ("base64", true)];
    let base64 = src.keyword("encoding", t.encoding.as_ref(), expand, &encodings)?;
    let username_base64 = src.keyword(
        "username_encoding",
        t.username_encoding.as_ref(),
        expand,
        &encodings,
    )?;
    let env_name = |s: &Option<Str>| -> Result<Option<String>> {
        match s {
            None => Ok(None),
            Some(s) if vars::is_name(s.get_ref()) => Ok(Some(s.get_ref().clone())),
            Some(s) => Err(src.err(
                s.span(),
                format!("{:?} is not an environment variable name", s.get_ref()),
            )),
        }
    };
    let target = Target {
        reference,
        role,
        username_env: env_name(&t.username_env)?,
        password_env: env_name(&t.password_env)?,
        base64,
        username_base64,
        optional: t.optional,
    };
    if target.username_env.is_some() != target.password_env.is_some() {
        return Err(src.err(
            t.reference.span(),
            "give both username_env and password_env, or neither",
        ));
    }
    Ok(target)
}

/// A tag as the distribution spec allows: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`
/// (the rule references are parsed by).
pub fn is_tag(t: &str) -> bool {
    crate::registry::reference::is_valid_tag(t)
}

/// Check a `registry/repository` reference without tag or digest.
fn check_repository_ref(r: &str) -> Result<(), String> {
    if r.contains("://") {
        return Err(format!(
            "target {r:?} must not have a scheme: write registry/repository, e.g. ghcr.io/acme/app"
        ));
    }
    let host_only = !r.contains('/') && !r.contains('@');
    if host_only && (r.contains('.') || r.contains(':') || r == "localhost") {
        return Err(format!(
            "target {r:?} names a registry but no repository: write registry/repository, e.g. {r}/acme/app"
        ));
    }
    if r.contains('@') || r.rsplit('/').next().is_some_and(|last| last.contains(':')) {
        return Err(format!(
            "target {r:?} must not carry a tag or digest: tags come from the recipe's `tags`"
        ));
    }
    let (host, repo) = r.split_once('/').ok_or_else(|| {
        format!("target {r:?} must be registry/repository, e.g. docker.io/acme/app")
    })?;
    if !(host.contains('.') || host.contains(':') || host == "localhost") {
        return Err(format!("target {r:?} must start with a registry host (ghcr.io, docker.io, localhost:5000, ...)"));
    }
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            })
            && c.as_bytes()[0].is_ascii_alphanumeric()
            && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
    };
    if !repo.split('/').all(component_ok) {
        return Err(format!(
            "target {r:?}: repository {repo:?} must be lowercase path components of [a-z0-9._-]"
        ));
    }
    // The registry's host and port, and the name's length, as a push
    // checks them, so that no build waits until its push to be refused.
    crate::registry::Reference::parse(r)
        .map(drop)
        .map_err(|e| format!("target: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_and_tag_checks() {
        assert!(check_repository_ref("ghcr.io/acme/diagram-to-iac-r2d").is_ok());
        assert!(check_repository_ref("localhost:5000/a").is_ok());
        for host_only in ["localhost:5000", "127.0.0.1:5102", "ghcr.io", "localhost"] {
            let e = check_repository_ref(host_only).unwrap_err();
            assert!(e.contains("names a registry but no repository"), "{e}");
        }
        assert!(check_repository_ref("ghcr.io/Acme/x")
            .unwrap_err()
            .contains("lowercase"));
        assert!(check_repository_ref("ghcr.io/acme/x:1.0")
            .unwrap_err()
            .contains("tag"));
        assert!(check_repository_ref("acme/x")
            .unwrap_err()
            .contains("registry host"));
        assert!(is_tag("1.4.0") && is_tag("latest") && !is_tag("-x") && !is_tag("a/b"));
        for (bad, why) in [
            ("ghcr.io:99999/x", "invalid port \"99999\""),
            ("gh_cr.io/x", "not a valid host name"),
            ("a..b/x", "not a valid host name"),
        ] {
            let e = check_repository_ref(bad).unwrap_err();
            assert!(
                e.starts_with("target: invalid image reference") && e.contains(why),
                "{e}"
            );
        }
        let long = format!("ghcr.io/{}", "a".repeat(300));
        assert!(check_repository_ref(&long).is_err());
        assert!(check_repository_ref("[::1]:5000/a").is_ok());
    }

    #[test]
    fn many_tags_are_deduplicated_without_comparing_each_pair() {
        let src = Source::new(std::path::Path::new("r.toml"), String::new());
        let given: Vec<Str> = (0..200_000)
            .map(|i| Str::new(0..1, format!("t{}", i % 150_000)))
            .collect();
        let t = std::time::Instant::now();
        let tags = tags(&src, &given, &|s: &Str| Ok(s.get_ref().clone())).unwrap();
        assert!(
            t.elapsed() < std::time::Duration::from_secs(10),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(tags.len(), 150_000);
        assert_eq!(
            (tags[0].as_str(), tags[149_999].as_str()),
            ("t0", "t149999")
        );
    }
}

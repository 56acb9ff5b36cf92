//! Where a push goes: targets from `--to` values and recipes, merged and
//! deduplicated, their explicit credentials resolved (one set per
//! registry), and grouped by registry for the pusher.

use std::collections::{HashMap, HashSet};

use anyhow::{Context as _, Result};

use crate::error::bad_input;
use crate::recipe::Target;
use crate::registry::{Credential, EnvCredentialError, EnvCredentials, Reference, SecretEncoding};

use super::report::PushReport;

/// One destination: a reference with a tag (or a digest), whether its
/// failure only warns, and its own credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushTarget {
    pub reference: Reference,
    pub optional: bool,
    pub credentials: Option<EnvCredentials>,
}

impl PushTarget {
    /// Parse a `--to` value; a reference without tag or digest gets `latest`.
    /// `REGISTRY/REPO@` (a trailing `@`, no digest) pushes by digest only:
    /// no tag is written (per-platform pushes that `boxwright index` joins).
    pub fn parse(s: &str) -> Result<PushTarget> {
        if let Some(repo) = s.strip_suffix('@') {
            let reference = Reference::parse(repo)?;
            if reference.tag.is_some() || reference.digest.is_some() {
                return Err(bad_input(format!(
                    "{s:?}: a trailing @ (push by digest only) takes a repository without tag or digest"
                )));
            }
            return Ok(PushTarget::plain(reference));
        }
        Ok(PushTarget::plain(Reference::parse(s)?.or_latest()))
    }

    /// A required target with the credentials found by registry.
    pub fn plain(reference: Reference) -> PushTarget {
        PushTarget {
            reference,
            optional: false,
            credentials: None,
        }
    }

    /// The targets of a recipe: every `[[target]]` repository with every tag.
    pub fn from_recipe(targets: &[Target], tags: &[String]) -> Result<Vec<PushTarget>> {
        let mut out = Vec::new();
        for t in targets {
            let repo = Reference::parse(&t.reference)?;
            let credentials = match (&t.username_env, &t.password_env) {
                (Some(u), Some(p)) => Some(EnvCredentials {
                    username_env: u.clone(),
                    password_env: p.clone(),
                    encoding: encoding(t.base64),
                    username_encoding: encoding(t.username_base64),
                }),
                _ => None,
            };
            for tag in tags {
                out.push(PushTarget {
                    reference: repo.with_tag(tag),
                    optional: t.optional,
                    credentials: credentials.clone(),
                });
            }
        }
        Ok(out)
    }
}

fn encoding(base64: bool) -> SecretEncoding {
    if base64 {
        SecretEncoding::Base64
    } else {
        SecretEncoding::Plain
    }
}

/// Parse `--to` values (errors are bad input).
pub fn parse_targets(to: &[String]) -> Result<Vec<PushTarget>> {
    to.iter()
        .map(|s| PushTarget::parse(s).with_context(|| format!("--to {s}")))
        .collect()
}

/// The recipe's targets (each repository with every tag), with `--to`
/// added: a `--to` naming a recipe target's repository replaces that
/// target's tags but keeps its credentials and `optional`.
pub fn merge_targets(recipe: &[Target], tags: &[String], to: &[String]) -> Result<Vec<PushTarget>> {
    let mut out = PushTarget::from_recipe(recipe, tags)?;
    let extra = parse_targets(to)?;
    let same_repo = |a: &PushTarget, b: &PushTarget| {
        a.reference.registry == b.reference.registry
            && a.reference.repository == b.reference.repository
    };
    let inherited: Vec<_> = extra
        .iter()
        .map(|e| {
            out.iter()
                .find(|r| same_repo(r, e))
                .map(|r| (r.optional, r.credentials.clone()))
        })
        .collect();
    out.retain(|r| !extra.iter().any(|e| same_repo(r, e)));
    for (mut e, inh) in extra.into_iter().zip(inherited) {
        if let Some((optional, credentials)) = inh {
            e.optional = optional;
            e.credentials = credentials;
        }
        if !out.iter().any(|o| o.reference == e.reference) {
            out.push(e);
        }
    }
    Ok(out)
}

/// `targets` with each reference once: the same destination named twice
/// (`--to R --to R:latest`, or a `$VERSION` that is `latest` beside
/// `latest`) is pushed and reported once, required when either is, with
/// the first explicit credentials.
pub fn distinct(targets: Vec<PushTarget>) -> Vec<PushTarget> {
    let mut out: Vec<PushTarget> = Vec::new();
    // Where each reference is in `out`: a recipe may give many thousands
    // of tags, which must not be compared pairwise.
    let mut at: HashMap<Reference, usize> = HashMap::new();
    for t in targets {
        match at.get(&t.reference) {
            Some(&i) => {
                let o = &mut out[i];
                o.optional &= t.optional;
                if o.credentials.is_none() {
                    o.credentials = t.credentials;
                }
            }
            None => {
                at.insert(t.reference.clone(), out.len());
                out.push(t);
            }
        }
    }
    out
}

/// `--by-digest`: every target loses its tag (targets naming one repository
/// become one), so the image goes in as `REPO@DIGEST` only.
pub fn by_digest(targets: Vec<PushTarget>, by_digest: bool) -> Vec<PushTarget> {
    if !by_digest {
        return targets;
    }
    let mut seen = HashSet::new();
    let mut out: Vec<PushTarget> = Vec::new();
    for mut t in targets {
        t.reference.tag = None;
        if seen.insert(t.reference.clone()) {
            out.push(t);
        }
    }
    out
}

/// Targets pushed without a tag are reported as `REPO@DIGEST`, the reference
/// that names them.
pub fn pin_untagged(report: &mut PushReport) {
    let digest = report.digest.to_string();
    for t in &mut report.targets {
        if let Ok(r) = Reference::parse(&t.reference) {
            if r.tag.is_none() && r.digest.is_none() {
                t.reference = format!("{}@{digest}", t.reference);
            }
        }
    }
}

/// The explicit credentials of targets, one set per registry, and the
/// optional targets left out for a credential variable that cannot be used.
#[derive(Debug, Default)]
pub struct Explicit {
    pub credentials: Vec<(String, Credential)>,
    /// Optional targets whose `username_env` / `password_env` is missing,
    /// empty or badly encoded: they are not pushed (no other credentials
    /// are looked up for them) and are reported failed.
    pub refused: Vec<(Reference, EnvCredentialError)>,
}

/// The explicit credentials of `targets`. Bad input when a required
/// target's variable is missing or badly encoded, or two targets of a
/// registry disagree; an optional target with such a variable is refused.
pub fn explicit_credentials(
    targets: &[PushTarget],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Explicit> {
    let mut out = Explicit::default();
    // The target that set each registry's credentials, to name it.
    let mut set_by: Vec<(Reference, EnvCredentials)> = Vec::new();
    for t in targets {
        let Some(spec) = &t.credentials else { continue };
        let cred = match spec.resolve(env) {
            Ok(cred) => cred,
            Err(e) if t.optional => {
                out.refused.push((t.reference.clone(), e));
                continue;
            }
            Err(e) => {
                return Err(anyhow::Error::new(e))
                    .with_context(|| format!("credentials for {}", t.reference))
            }
        };
        let reg = &t.reference.registry;
        match out.credentials.iter().position(|(r, _)| r == reg) {
            Some(i) if out.credentials[i].1 != cred => {
                let (first, first_spec) = &set_by[i];
                return Err(bad_input(format!(
                    "targets {first} ({}) and {} ({}) on {reg} name different credentials, \
                     and a push uses one set per registry: give them the same \
                     username_env and password_env, or push them in separate runs",
                    variables(first_spec),
                    t.reference,
                    variables(spec),
                )));
            }
            Some(_) => {}
            None => {
                out.credentials.push((reg.clone(), cred));
                set_by.push((t.reference.clone(), spec.clone()));
            }
        }
    }
    Ok(out)
}

/// A target's credential variables, named (never their values).
fn variables(spec: &EnvCredentials) -> String {
    format!(
        "username_env {}, password_env {}",
        spec.username_env, spec.password_env
    )
}

/// Refuse (bad input) a mount source on a registry none of `targets` is
/// on: blobs are mounted only within one registry, so it could never be
/// used (`--mount-from acme/app` names Docker Hub's `docker.io/acme/app`).
pub fn check_mount_sources(targets: &[PushTarget], mount_sources: &[Reference]) -> Result<()> {
    let mut registries: Vec<&str> = Vec::new();
    for t in targets {
        if !registries.contains(&t.reference.registry.as_str()) {
            registries.push(&t.reference.registry);
        }
    }
    for m in mount_sources {
        if !registries.contains(&m.registry.as_str()) {
            return Err(bad_input(format!(
                "--mount-from {}: no target is on {}, and blobs are mounted only within \
                 one registry (the targets are on {}); name the repository with its \
                 registry, e.g. {}/{}",
                m.name(),
                m.registry,
                registries.join(", "),
                registries.first().copied().unwrap_or("HOST"),
                m.repository,
            )));
        }
    }
    Ok(())
}

/// The targets of one registry.
pub struct RegistryGroup {
    pub registry: String,
    /// Target repositories, in order of first appearance.
    pub repos: Vec<String>,
    /// Other repositories of this registry that may hold blobs.
    pub mount_sources: Vec<String>,
}

/// Group `targets` by registry, in order of first appearance.
pub fn group(targets: &[PushTarget], mount_sources: &[Reference]) -> Vec<RegistryGroup> {
    let mut groups: Vec<RegistryGroup> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for t in targets {
        let r = &t.reference;
        let i = *index.entry(&r.registry).or_insert_with(|| {
            groups.push(RegistryGroup {
                registry: r.registry.clone(),
                repos: Vec::new(),
                mount_sources: Vec::new(),
            });
            groups.len() - 1
        });
        if !groups[i].repos.contains(&r.repository) {
            groups[i].repos.push(r.repository.clone());
        }
    }
    for g in &mut groups {
        g.mount_sources = mount_sources
            .iter()
            .filter(|r| r.registry == g.registry && !g.repos.contains(&r.repository))
            .map(|r| r.repository.clone())
            .collect();
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::Role;

    #[test]
    fn targets_from_strings_and_recipe() {
        let t = PushTarget::parse("ghcr.io/acme/r2d").unwrap();
        assert_eq!(t.reference.to_string(), "ghcr.io/acme/r2d:latest");
        assert!(crate::error::is_bad_input(
            &PushTarget::parse("ghcr.io/Acme/x").unwrap_err()
        ));
        let recipe = vec![Target {
            reference: "docker.io/acme/r2d".into(),
            role: Role::Backup,
            username_env: Some("DOCKERHUB_USER".into()),
            password_env: Some("DOCKERHUB_API_KEY_ENCODED".into()),
            base64: true,
            username_base64: true,
            optional: true,
        }];
        let ts = PushTarget::from_recipe(&recipe, &["1.4.0".into(), "latest".into()]).unwrap();
        assert_eq!(ts.len(), 2);
        assert_eq!(ts[1].reference.to_string(), "docker.io/acme/r2d:latest");
        assert!(ts[0].optional);
        let creds = ts[0].credentials.as_ref().unwrap();
        assert_eq!(creds.encoding, SecretEncoding::Base64);
        assert_eq!(creds.username_encoding, SecretEncoding::Base64);
    }

    #[test]
    fn a_destination_named_twice_is_one_target_required_when_either_is() {
        let mut optional = PushTarget::parse("example.com/acme/app").unwrap();
        optional.optional = true;
        let required = PushTarget::parse("example.com/acme/app:latest").unwrap();
        let other = PushTarget::parse("example.com/acme/app:1.0").unwrap();
        let ts = distinct(vec![optional, other.clone(), required]);
        assert_eq!(ts.len(), 2, "{ts:#?}");
        assert_eq!(ts[0].reference.to_string(), "example.com/acme/app:latest");
        assert!(!ts[0].optional);
        assert_eq!(ts[1], other);
    }

    #[test]
    fn to_adds_targets_and_replaces_a_recipe_repositorys_tags() {
        let recipe = vec![
            Target {
                reference: "ghcr.io/acme/r2d".into(),
                role: Role::Primary,
                username_env: Some("GITHUB_ACTOR".into()),
                password_env: Some("GITHUB_TOKEN".into()),
                base64: false,
                username_base64: false,
                optional: false,
            },
            Target {
                reference: "docker.io/acme/r2d".into(),
                role: Role::Backup,
                username_env: None,
                password_env: None,
                base64: false,
                username_base64: false,
                optional: true,
            },
        ];
        let tags = vec!["1.4.0".to_string(), "latest".to_string()];
        let to = vec![
            "ghcr.io/acme/r2d:edge".to_string(),
            "quay.io/acme/r2d:1.4.0".to_string(),
        ];
        let got = merge_targets(&recipe, &tags, &to).unwrap();
        let names: Vec<String> = got.iter().map(|t| t.reference.to_string()).collect();
        assert_eq!(
            names,
            [
                "docker.io/acme/r2d:1.4.0",
                "docker.io/acme/r2d:latest",
                "ghcr.io/acme/r2d:edge",
                "quay.io/acme/r2d:1.4.0"
            ]
        );
        assert!(got[0].optional);
        assert_eq!(
            got[2].credentials.as_ref().unwrap().password_env,
            "GITHUB_TOKEN"
        );
        assert!(got[3].credentials.is_none() && !got[3].optional);
        let pinned = by_digest(got, true);
        assert_eq!(pinned.len(), 3, "one per repository");
        assert!(pinned.iter().all(|t| t.reference.tag.is_none()));
    }

    #[test]
    fn an_optional_target_whose_variable_is_missing_is_refused_a_required_one_is_bad_input() {
        let spec = |user: &str, pass: &str| EnvCredentials {
            username_env: user.into(),
            password_env: pass.into(),
            encoding: SecretEncoding::Base64,
            username_encoding: SecretEncoding::Plain,
        };
        let target = |r: &str, optional: bool, pass: &str| PushTarget {
            reference: Reference::parse(r).unwrap(),
            optional,
            credentials: Some(spec("USER", pass)),
        };
        let env = |k: &str| match k {
            "USER" => Some("acme".to_string()),
            "GOOD" => Some("c2VjcmV0LXZhbHVl".to_string()),
            "BAD" => Some("%%%%".to_string()),
            _ => None,
        };
        let ts = [
            target("ghcr.io/acme/app:1", false, "GOOD"),
            target("docker.io/acme/app:1", true, "MISSING"),
            target("quay.io/acme/app:1", true, "BAD"),
        ];
        let got = explicit_credentials(&ts, &env).unwrap();
        assert_eq!(got.credentials.len(), 1);
        assert_eq!(got.credentials[0].0, "ghcr.io");
        let refused: Vec<(String, &str)> = (got.refused.iter())
            .map(|(r, e)| (r.to_string(), e.var.as_str()))
            .collect();
        assert_eq!(
            refused,
            [
                ("docker.io/acme/app:1".to_string(), "MISSING"),
                ("quay.io/acme/app:1".to_string(), "BAD")
            ]
        );
        let mut required = ts[1].clone();
        required.optional = false;
        let e = explicit_credentials(&[ts[0].clone(), required], &env).unwrap_err();
        assert!(crate::error::is_bad_input(&e));
        let text = format!("{e:#}");
        assert!(
            text.contains("MISSING") && text.contains("docker.io"),
            "{text}"
        );
    }

    #[test]
    fn groups_follow_first_appearance() {
        let ts = parse_targets(&[
            "b.io/x:1".into(),
            "a.io/x:1".into(),
            "b.io/y:1".into(),
            "b.io/x:2".into(),
        ])
        .unwrap();
        let m = [
            Reference::parse("b.io/base").unwrap(),
            Reference::parse("b.io/y").unwrap(),
        ];
        let g = group(&ts, &m);
        assert_eq!(g.len(), 2);
        assert_eq!(
            (g[0].registry.as_str(), &g[0].repos[..]),
            ("b.io", &["x".to_string(), "y".to_string()][..])
        );
        assert_eq!(g[0].mount_sources, ["base"]);
        assert!(g[1].mount_sources.is_empty());
        check_mount_sources(&ts, &m).unwrap();
        let hub = [Reference::parse("acme/base").unwrap()];
        let e = check_mount_sources(&ts, &hub).unwrap_err();
        assert!(crate::error::is_bad_input(&e));
        let e = e.to_string();
        assert!(
            e.contains("docker.io/acme/base") && e.contains("b.io, a.io"),
            "{e}"
        );
    }

    #[test]
    fn many_tags_are_merged_without_comparing_each_pair() {
        // A hang guard, not a timing: compared pairwise, 150,000 targets
        // took minutes.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let targets = |n: usize| -> Vec<PushTarget> {
                (0..n)
                    .map(|i| PushTarget::parse(&format!("ghcr.io/acme/app:t{}", i % 150_000)))
                    .collect::<Result<_>>()
                    .unwrap()
            };
            let merged = distinct(targets(200_000));
            let pinned = by_digest(targets(200_000), true);
            let _ = tx.send((merged, pinned.len()));
        });
        let (merged, pinned) = rx
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("200,000 targets merged within 120 s");
        assert_eq!(merged.len(), 150_000);
        assert_eq!(
            (
                merged[0].reference.to_string(),
                merged[149_999].reference.to_string()
            ),
            (
                "ghcr.io/acme/app:t0".to_string(),
                "ghcr.io/acme/app:t149999".to_string()
            )
        );
        assert_eq!(pinned, 1);
    }
}

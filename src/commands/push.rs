//! `boxwright push` and the push half of `boxwright build --push`.
//!
//! stdout carries only the digest (or the `--json` report); progress, one
//! line per target and warnings go to stderr through the reporter. The exit
//! code is 1 when a non-optional target does not hold the image.

use std::io::Write as _;

use anyhow::{Context as _, Result};

use boxwright::progress::{Level, SharedReporter};
use boxwright::push::{PushOptions, PushReport, PushTarget};
use boxwright::recipe::Target;
use boxwright::registry::ClientOptions;

use crate::cli::{PushArgs, RegistryArgs};

/// The library's options from the command-line flags.
pub fn options(args: &RegistryArgs) -> Result<PushOptions> {
    let mut client = ClientOptions {
        jobs_per_registry: usize::from(args.jobs_per_registry),
        insecure: args.insecure_registry.clone(),
        ca_file: args.ca_file.clone(),
        ..ClientOptions::default()
    };
    client.retry.max_retries = args.retries;
    let mount_sources = parse_targets(&args.mount_from)?
        .into_iter()
        .map(|t| t.reference)
        .collect();
    Ok(PushOptions {
        client,
        chunk_size: args.chunk_size,
        mount_sources,
    })
}

/// Parse `--to` values (already checked by clap; errors are bad input).
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
    // Recipe targets whose repository a --to names are replaced.
    let mut inherited = Vec::new();
    for e in &extra {
        if let Some(r) = out.iter().find(|r| same_repo(r, e)) {
            inherited.push(Some((r.optional, r.credentials.clone())));
        } else {
            inherited.push(None);
        }
    }
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

/// Print the outcome: the digest (or JSON) on stdout, the summary on
/// stderr; an error when a required target failed.
pub fn finish(report: &PushReport, json: bool, reporter: &SharedReporter) -> Result<()> {
    for w in report.warnings() {
        reporter.log(Level::Warn, &w);
    }
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &report.to_json())?;
        writeln!(out)?;
    } else if report.succeeded() {
        writeln!(out, "{}", report.digest)?;
    }
    out.flush()?;
    match report.error() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `boxwright push LAYOUT[:NAME] --to REF...`.
pub fn run(args: PushArgs, reporter: SharedReporter) -> Result<()> {
    let targets = parse_targets(&args.to)?;
    let opts = options(&args.registry)?;
    let report = boxwright::push::push_blocking(&args.layout, targets, opts, reporter.clone())?;
    finish(&report, args.json, &reporter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use boxwright::recipe::Role;

    #[test]
    fn to_adds_targets_and_replaces_a_recipe_repositorys_tags() {
        let recipe = vec![
            Target {
                reference: "ghcr.io/acme/r2d".into(),
                role: Role::Primary,
                username_env: Some("GITHUB_ACTOR".into()),
                password_env: Some("GITHUB_TOKEN".into()),
                base64: false,
                optional: false,
            },
            Target {
                reference: "docker.io/acme/r2d".into(),
                role: Role::Backup,
                username_env: None,
                password_env: None,
                base64: false,
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
        // The replaced target keeps its credentials.
        assert_eq!(
            got[2].credentials.as_ref().unwrap().password_env,
            "GITHUB_TOKEN"
        );
        assert!(got[3].credentials.is_none() && !got[3].optional);
    }
}

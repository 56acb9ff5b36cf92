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
use boxwright::registry::{Client, ClientOptions, CredentialStore, Reference};
use boxwright::verify::VerifyReport;

use crate::cli::{AfterPushArgs, PushArgs, RegistryArgs};

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
///
/// With `--verify`, its report goes into the JSON (`verify`), and a failed
/// verification is an error.
pub fn finish_with(
    report: &PushReport,
    verified: Option<&VerifyReport>,
    json: bool,
    reporter: &SharedReporter,
) -> Result<()> {
    for w in report.warnings() {
        reporter.log(Level::Warn, &w);
    }
    let mut out = crate::commands::stdout();
    if json {
        let mut doc = report.to_json();
        if let (Some(v), Some(obj)) = (verified, doc.as_object_mut()) {
            obj.insert("verify".into(), serde_json::to_value(v)?);
        }
        out.write_all(&serde_json::to_vec_pretty(&doc)?)?;
        writeln!(out)?;
    } else if report.succeeded() {
        writeln!(out, "{}", report.digest)?;
    }
    out.flush()?;
    if let Some(e) = report.error() {
        return Err(e);
    }
    verify_error(report, verified).map_or(Ok(()), Err)
}

/// The error of a `--verify` that did not confirm the pushed digest.
pub fn verify_error(report: &PushReport, verified: Option<&VerifyReport>) -> Option<anyhow::Error> {
    let v = verified?;
    match v.problem() {
        Some(p) => Some(anyhow::anyhow!("verify after push failed: {p}")),
        None if v.digest.as_ref() != Some(&report.digest) => Some(anyhow::anyhow!(
            "verify after push failed: the references name {}, not the pushed {}",
            v.digest
                .as_ref()
                .map_or_else(|| "nothing".to_string(), |d| d.to_string()),
            report.digest
        )),
        None => None,
    }
}

/// `boxwright push LAYOUT[:NAME] --to REF...`.
pub fn run(args: PushArgs, reporter: SharedReporter) -> Result<()> {
    let targets = by_digest(parse_targets(&args.to)?, &args.after);
    let opts = options(&args.registry)?;
    let client_opts = opts.client.clone();
    let mut report = tokio::runtime::Runtime::new()?.block_on(boxwright::push::push(
        &args.layout,
        targets,
        opts,
        reporter.clone(),
    ))?;
    pin_untagged(&mut report);
    let verified = if args.after.verify {
        let client = Client::new(client_opts, CredentialStore::from_env(), reporter.clone())?;
        let rt = super::verify::runtime()?;
        verify_pushed(&rt, &client, &report, &reporter)?
    } else {
        None
    };
    github_summary(
        &format!("boxwright push {}", args.layout),
        &report,
        verified.as_ref(),
        &reporter,
    );
    finish_with(&report, verified.as_ref(), args.json, &reporter)
}

/// `--by-digest`: every target loses its tag (targets naming one repository
/// become one), so the image goes in as `REPO@DIGEST` only.
pub fn by_digest(targets: Vec<PushTarget>, after: &AfterPushArgs) -> Vec<PushTarget> {
    if !after.by_digest {
        return targets;
    }
    let mut out: Vec<PushTarget> = Vec::new();
    for mut t in targets {
        t.reference.tag = None;
        if !out.iter().any(|o| o.reference == t.reference) {
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

/// `--verify`: HEAD every reference pushed successfully, with `client` (the
/// push's credentials). Tags read right after a push may lag on some
/// registries (GHCR): a report that is not ok is retried after 1, 2 and 4 s.
/// `None` when no target was pushed.
pub fn verify_pushed(
    rt: &tokio::runtime::Runtime,
    client: &Client,
    report: &PushReport,
    reporter: &SharedReporter,
) -> Result<Option<VerifyReport>> {
    let refs = report
        .targets
        .iter()
        .filter(|t| t.ok)
        .map(|t| {
            Reference::parse(&t.reference).with_context(|| format!("reference {}", t.reference))
        })
        .collect::<Result<Vec<_>>>()?;
    if refs.is_empty() {
        return Ok(None);
    }
    let mut delay = std::time::Duration::from_secs(1);
    for attempt in 0.. {
        let v = rt.block_on(boxwright::verify::verify(client, &refs));
        let pushed_digest = v.digest.as_ref() == Some(&report.digest);
        if (v.ok && pushed_digest) || attempt == 3 {
            match v.problem() {
                None if pushed_digest => reporter.log(
                    Level::Info,
                    &format!(
                        "verify: all {} references name {}",
                        refs.len(),
                        report.digest
                    ),
                ),
                None => {}
                Some(p) => reporter.log(Level::Warn, &format!("verify: {p}")),
            }
            return Ok(Some(v));
        }
        reporter.log(
            Level::Debug,
            &format!(
                "verify: not yet consistent ({}), again in {}s",
                v.problem().unwrap_or_else(|| "another digest".into()),
                delay.as_secs()
            ),
        );
        std::thread::sleep(delay);
        delay *= 2;
    }
    Ok(None)
}

/// In GitHub Actions, append the push's table to `$GITHUB_STEP_SUMMARY`
/// (a failure to write it only warns: the push is done).
pub fn github_summary(
    title: &str,
    report: &PushReport,
    verified: Option<&VerifyReport>,
    reporter: &SharedReporter,
) {
    let md = boxwright::github::push_summary(title, report, verified);
    if let Err(e) = boxwright::github::append_step_summary(&md) {
        reporter.log(
            Level::Warn,
            &format!("could not append to $GITHUB_STEP_SUMMARY: {e}"),
        );
    }
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

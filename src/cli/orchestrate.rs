//! Work the binary orchestrates around the library: building while
//! pushing, the targets of `build --push` (the recipe's merged with `--to`),
//! `--by-digest`, naming untagged pushes by digest, and `--verify` after a
//! push. Kept together, apart from flag parsing and printing, so that it can
//! move into the library as one piece.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use futures_util::stream::{FuturesUnordered, StreamExt as _};

use boxwright::build::{self, BuildOptions, BuildResult, LayerHook};
use boxwright::error::bad_input;
use boxwright::layout::Layout;
use boxwright::oci::Descriptor;
use boxwright::progress::{Level, SharedReporter};
use boxwright::push::{ImageContent, PushReport, PushTarget, Pusher};
use boxwright::recipe::{self, Plan, Target};
use boxwright::registry::{Client, CredentialStore, Reference};
use boxwright::verify::VerifyReport;

use super::args::{parse_targets, AfterPushArgs};
use super::build::BuildArgs;
use super::push::{finish_with, github_summary, verify_error};
use super::stdout::print_json;

/// Build while pushing: each finished layer is hard-linked out of the
/// layout being written (the build renames that directory when it commits;
/// retries must still find the file) and pushed at once on every registry.
pub fn build_and_push(
    args: &BuildArgs,
    plan: &Plan,
    mut opts: BuildOptions,
    reporter: SharedReporter,
) -> Result<()> {
    let targets = by_digest(
        merge_targets(&plan.targets, &plan.tags, &args.to)?,
        &args.after,
    );
    if targets.is_empty() {
        return Err(bad_input(format!(
            "--push: {} has no [[target]] and no --to was given",
            args.recipe.display()
        )));
    }
    let mut push_opts = args.upload.push_options()?;
    // Base layers are mounted from the base's repository on its own registry.
    if let (
        Some(rb),
        recipe::Base::Registry {
            reference,
            fallback,
        },
    ) = (&opts.registry_base, &plan.base)
    {
        let served = rb.resolve(reference, fallback)?;
        push_opts.mount_sources.push(served.reference);
    }
    // This runs on the runtime's blocking pool (see `super::build::run`).
    let rt = tokio::runtime::Handle::current();
    let pusher = Arc::new(rt.block_on(Pusher::new(
        targets,
        push_opts,
        CredentialStore::from_env(),
        reporter.clone(),
    ))?);
    // Streamed layers are linked here; removed when the push is done.
    let parent = match opts.output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("creating output directory {}", parent.display()))?;
    let stage = tempfile::Builder::new()
        .prefix(".boxwright-push-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a temporary directory in {}", parent.display()))?;

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Descriptor, PathBuf)>();
    let stage_dir = stage.path().to_path_buf();
    let hook_reporter = reporter.clone();
    let hook: LayerHook = Arc::new(move |desc: &Descriptor, path: &Path| {
        let linked = stage_dir.join(desc.digest.hex());
        // The build renames its working directory when it commits, so the
        // upload (and its retries) read a link, or a copy, kept aside here.
        let path = match std::fs::hard_link(path, &linked) {
            Ok(()) => linked,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => linked,
            Err(_) => match std::fs::copy(path, &linked) {
                Ok(_) => linked,
                // Nowhere to keep it: `push_image` uploads it from the layout.
                Err(_) => return,
            },
        };
        hook_reporter.log(
            Level::Debug,
            &format!("push: layer {} ready, uploading", desc.digest),
        );
        let _ = tx.send((desc.clone(), path));
    });
    opts.on_layer = Some(hook);
    pusher.start_progress_unknown();

    let streaming = {
        let pusher = pusher.clone();
        rt.spawn(async move {
            let mut running = FuturesUnordered::new();
            loop {
                tokio::select! {
                    next = rx.recv() => match next {
                        Some((desc, path)) => {
                            let p = pusher.clone();
                            running.push(async move { p.push_blob(&desc, &path).await });
                        }
                        None => break,
                    },
                    Some(()) = running.next(), if !running.is_empty() => {}
                }
            }
            while running.next().await.is_some() {}
        })
    };
    let built: Result<BuildResult> =
        build::build(plan, &opts).with_context(|| format!("building {}", args.recipe.display()));
    // Dropping the options drops the hook and with it the channel's sender.
    drop(opts);
    let result = match built {
        Ok(r) => r,
        Err(e) => {
            streaming.abort();
            return Err(e);
        }
    };
    rt.block_on(streaming)
        .context("the layer upload task failed")?;
    let layout_dir = result.layout.clone();
    let content = Layout::open(&layout_dir)
        .and_then(|l| ImageContent::from_layout(&l, None))
        .with_context(|| format!("reading the built image in {}", layout_dir.display()))?;
    let mut report = rt.block_on(pusher.push_image(&content));
    drop(stage);
    pin_untagged(&mut report);
    let verified = if args.after.verify {
        rt.block_on(verify_pushed(pusher.client(), &report, &reporter))?
    } else {
        None
    };
    github_summary(
        &format!("boxwright build --push {}", args.recipe.display()),
        &report,
        verified.as_ref(),
        &reporter,
    );
    if args.json {
        let mut doc = serde_json::json!({ "build": result, "push": report.to_json() });
        if let Some(v) = &verified {
            doc["verify"] = serde_json::to_value(v)?;
        }
        print_json(&doc)?;
        if let Some(e) = report.error() {
            return Err(e);
        }
        return verify_error(&report, verified.as_ref()).map_or(Ok(()), Err);
    }
    finish_with(&report, verified.as_ref(), false, &reporter)
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
pub async fn verify_pushed(
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
        let v = boxwright::verify::verify(client, &refs).await;
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
        tokio::time::sleep(delay).await;
        delay *= 2;
    }
    Ok(None)
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

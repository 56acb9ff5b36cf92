//! The evidence of a build, made and attached in the run that pushed it
//! (`build --push --sign-key KEY --sbom spdx --provenance`): which artifacts
//! (a signature per repository, the SBOM, the provenance), made from the
//! plan and the build for every target repository before the image's
//! manifests are pushed, then [`attach`](super::attach::attach()) through
//! the push's own pusher to the repositories the push reached.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context as _, Result};

use super::artifact::Artifact;
use super::attach::{attach, AttachOptions, AttachReport};
use super::keys::SigningKey;
use super::provenance::ProvenanceInput;
use super::sbom::{base_images, Component, SbomFormat, SbomInput};
use super::sign;
use crate::build::BuildResult;
use crate::oci::{self, Descriptor};
use crate::progress::{Level, SharedReporter};
use crate::push::{PushReport, Pusher};
use crate::recipe::Plan;
use crate::registry::Reference;

/// What to attach to a pushed build.
#[derive(Clone, Debug, Default)]
pub struct SupplyOptions {
    /// Sign the image and its attestations (loaded before the build, so
    /// that a wrong password fails before anything is pushed).
    pub key: Option<Arc<SigningKey>>,
    pub sbom: Option<SbomFormat>,
    pub provenance: bool,
    /// The `--set` variables, recorded in the provenance.
    pub vars: BTreeMap<String, String>,
    /// Components that source kinds report (URLs, Python packages), added
    /// to the SBOM and to the provenance's dependencies.
    pub components: Vec<Component>,
    pub attach: AttachOptions,
}

impl SupplyOptions {
    /// Whether there is anything to attach.
    pub fn any(&self) -> bool {
        self.key.is_some() || self.sbom.is_some() || self.provenance
    }
}

/// The repositories the push reached (each once), from its report.
pub fn pushed_repositories(report: &PushReport) -> Vec<Reference> {
    let reached: Vec<Reference> = (report.targets.iter())
        .filter(|t| t.ok)
        .filter_map(|t| Reference::parse(&t.reference).ok())
        .collect();
    crate::registry::reference::repositories(&reached)
}

/// The artifacts for the image `subject` pushed to `repos` (none: kept in
/// its layout, named after the image; no signature, which names a
/// repository).
pub fn build_artifacts(
    plan: &Plan,
    build: &BuildResult,
    subject: &Descriptor,
    repos: &[Reference],
    opts: &SupplyOptions,
) -> Result<Vec<Artifact>> {
    let mut names: Vec<String> = repos.iter().map(Reference::name).collect();
    if names.is_empty() {
        names.push(plan.name.clone());
    }
    let created = oci::rfc3339(plan.created);
    let key = opts.key.as_deref();
    let mut out = Vec::new();
    if let Some(k) = key {
        for name in repos.iter().map(Reference::name) {
            out.push(sign::signature(k, subject, &name));
        }
    }
    if let Some(format) = opts.sbom {
        let mut input = SbomInput::from_build(&plan.name, plan.created, build)?;
        input.repository = names.first().cloned();
        input.components.extend(opts.components.iter().cloned());
        let doc = input.render(format);
        out.push(sign::sbom(
            key,
            subject,
            &names,
            format,
            &doc,
            Some(&created),
        )?);
    }
    if opts.provenance {
        let mut dependencies = base_images(build)?;
        dependencies.extend(opts.components.iter().cloned());
        let input = ProvenanceInput {
            names: names.clone(),
            digest: subject.digest.clone(),
            recipe: plan.recipe.clone(),
            recipe_sha256: plan.recipe_sha256.clone(),
            vars: opts.vars.clone(),
            platforms: plan
                .platforms
                .iter()
                .map(|p| p.platform.to_string())
                .collect(),
            dependencies,
        };
        let env = |k: &str| std::env::var(k).ok();
        let st = input.statement(&env);
        out.push(sign::attestation(key, subject, &st, Some(&created)));
    }
    Ok(out)
}

/// The evidence of a build, made before its push.
#[derive(Clone, Debug)]
pub struct Evidence {
    /// The image, as the push will name it.
    pub subject: Descriptor,
    pub artifacts: Vec<Artifact>,
}

/// The evidence of `build` for every repository of `targets` (as planned:
/// the SBOM and provenance name them all, each registry getting the same
/// bytes), made once the image is built and before any of its manifests is
/// pushed, so that a failure here leaves no tag anywhere. `None` when there
/// is nothing to attach.
pub fn before_push(
    plan: &Plan,
    build: &BuildResult,
    targets: &[Reference],
    opts: &SupplyOptions,
) -> Result<Option<Evidence>> {
    if !opts.any() {
        return Ok(None);
    }
    let subject = Descriptor::new(&build.media_type, build.digest.clone(), build.size);
    let repos = crate::registry::reference::repositories(targets);
    let artifacts = build_artifacts(plan, build, &subject, &repos, opts).with_context(|| {
        format!(
            "making the supply-chain artifacts of {}: no manifest or tag was pushed",
            build.digest
        )
    })?;
    Ok(Some(Evidence { subject, artifacts }))
}

/// Attach `evidence` to every repository `report` reached (a signature
/// only to its own). `None` when nothing was pushed.
pub async fn attach_built(
    pusher: &Pusher,
    evidence: &Evidence,
    report: &PushReport,
    opts: &SupplyOptions,
    reporter: &SharedReporter,
) -> Result<Option<AttachReport>> {
    let repos = pushed_repositories(report);
    if repos.is_empty() {
        return Ok(None);
    }
    let artifacts: Vec<Artifact> = (evidence.artifacts.iter())
        .filter(|a| repos.iter().any(|r| a.goes_to(&r.registry, &r.repository)))
        .cloned()
        .collect();
    let done = attach(pusher, &repos, &evidence.subject, &artifacts, &opts.attach).await?;
    log_report(&done, reporter);
    Ok(Some(done))
}

/// One line per repository.
pub fn log_report(done: &AttachReport, reporter: &SharedReporter) {
    for r in &done.repositories {
        let kinds: Vec<&str> = r.artifacts.iter().map(|a| a.kind.name()).collect();
        match &r.error {
            None => reporter.log(
                Level::Info,
                &format!(
                    "{}/{}: attached {} ({})",
                    r.registry,
                    r.repository,
                    kinds.join(", "),
                    r.mode.map_or("", |m| m.name())
                ),
            ),
            Some(e) => reporter.log(Level::Warn, &format!("attach failed: {e}")),
        }
    }
}

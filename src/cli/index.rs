//! `boxwright index --to REF... SRC@sha256:... SRC@sha256:...`: one OCI
//! image index from single-platform images already in registries (e.g. one
//! per CI runner), pushed to every `--to`.
//!
//! stdout: the index digest (or the `--json` report); stderr: one line per
//! source (its platform), per target and per registry. Exit 2 for bad input
//! (a source without digest, a source that is an index or has no platform,
//! two sources of one platform), 1 when a target failed.
//!
//! `--recipe` takes what decides the index's bytes besides its entries, the
//! recipe's `[annotations]`, from the recipe the runners built, so that the
//! index is the one a local multi-platform `build` of it writes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;

use boxwright::oci::Digest;
use boxwright::ops::index::{IndexOptions, IndexReport};
use boxwright::progress::{Level, SharedReporter};

use boxwright::recipe::{self, LoadOptions, Plan, Vars};

use super::args::{parse_all, parse_set, parse_target, UploadArgs};
use super::stdout::{print_outcome, Outcome};

#[derive(Args, Debug)]
pub struct IndexArgs {
    /// The platform images: REGISTRY/REPOSITORY@sha256:DIGEST, one per
    /// platform, on any registries. Each must be a single-platform image.
    #[arg(value_name = "SRC", required = true, num_args = 1.., value_parser = parse_source)]
    pub sources: Vec<String>,
    /// Where the index goes: REGISTRY/REPOSITORY[:TAG] (repeatable; no tag:
    /// latest; REPO@ pushes it by digest only).
    #[arg(long = "to", value_name = "REF", required = true, value_parser = parse_target)]
    pub to: Vec<String>,
    /// An annotation of the index, KEY=VALUE (repeatable), e.g.
    /// org.opencontainers.image.version=1.4.0.
    #[arg(long = "annotation", value_name = "KEY=VALUE", value_parser = parse_annotation)]
    pub annotations: Vec<(String, String)>,
    /// The recipe the platform images were built from: its [annotations]
    /// go on the index (as `build` puts them; --annotation adds or
    /// overrides), giving the digest of a local multi-platform build. The
    /// recipe is checked as `build` checks it, so its build context must be
    /// there.
    #[arg(long, value_name = "FILE")]
    pub recipe: Option<PathBuf>,
    /// With --recipe: a recipe variable, NAME=VALUE (repeatable; as for `build`).
    #[arg(long = "set", value_name = "NAME=VALUE", requires = "recipe", value_parser = parse_set)]
    pub sets: Vec<(String, String)>,
    /// Print the report (index digest, entries with platform and source,
    /// blobs downloaded, per target uploaded/mounted/present and bytes) as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub upload: UploadArgs,
}

fn parse_source(s: &str) -> Result<String, String> {
    let r = boxwright::registry::Reference::parse(s).map_err(|e| format!("{e:#}"))?;
    if r.digest.is_none() {
        return Err(format!(
            "{s:?} has no digest: give each platform's image as REGISTRY/REPO@sha256:..."
        ));
    }
    Ok(s.to_string())
}

/// `KEY=VALUE`; a key with white space around it (`KEY = VALUE`) or a
/// control character in it is refused rather than written as a key that
/// only looks like the one meant.
fn parse_annotation(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, _)) if k.trim() != k || k.contains(char::is_control) => Err(format!(
            "{s:?}: the key {k:?} has white space around it or a control character in it; \
             give KEY=VALUE with nothing around the =, e.g. org.opencontainers.image.version=1.4.0"
        )),
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// `boxwright index`.
pub async fn run(args: IndexArgs, reporter: SharedReporter) -> Result<()> {
    let sources = parse_all(&args.sources)?;
    let targets = boxwright::push::parse_targets(&args.to)?;
    let plan = match &args.recipe {
        Some(path) => Some(load_recipe(path.clone(), &args, &reporter).await?),
        None => None,
    };
    let mut annotations = plan.as_ref().map(index_annotations).unwrap_or_default();
    annotations.extend(args.annotations.iter().cloned());
    let mut opts = IndexOptions {
        push: args.upload.push_options()?,
        annotations,
        cache_dir: args.upload.cache_dir.clone(),
    };
    super::stopped::on_stop(&mut opts.push, args.json, super::stopped::Shape::Nested);
    let report = boxwright::ops::index::index(&sources, targets, opts, reporter.clone())
        .await
        .context("assembling the image index")?;
    print_outcome(&reporter, args.json, &report)?;
    super::push::github_summary("boxwright index", &report.push, None, &reporter);
    if report.succeeded() {
        let platforms: Vec<&str> = report
            .manifests
            .iter()
            .map(|m| m.platform.as_str())
            .collect();
        reporter.log(
            Level::Info,
            &format!(
                "index {} ({}): {} blobs ({} bytes) downloaded",
                report.digest,
                platforms.join(", "),
                report.blobs_downloaded,
                report.bytes_downloaded
            ),
        );
    }
    if let (Some(plan), true) = (&plan, report.succeeded()) {
        warn_unlike_build(plan, &report, &reporter);
    }
    match report.error() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Load the recipe as `build` does (variables from --set, the environment
/// and `[vars]`; all of its platforms), on a blocking thread: planning reads
/// the build context.
async fn load_recipe(path: PathBuf, args: &IndexArgs, reporter: &SharedReporter) -> Result<Plan> {
    let sets = args.sets.clone();
    let (client, cache_dir) = (
        args.upload.connection.options(),
        args.upload.cache_dir.clone(),
    );
    let reporter = reporter.clone();
    let shown = path.display().to_string();
    tokio::task::spawn_blocking(move || {
        // A Python layer's version may come from a registry base's config.
        let make = recipe::registry_base_once(client, cache_dir.clone(), reporter.clone());
        let opts = LoadOptions {
            vars: Vars {
                sets: sets.into_iter().collect(),
                defaults: Default::default(),
                use_env: true,
                ..Default::default()
            },
            context: None,
            platforms: None,
            cache_dir,
            reporter: Some(reporter),
            registry_base: Some(make),
            output: None,
        };
        recipe::load(&path, &opts)
    })
    .await
    .context("the recipe task failed")?
    .with_context(|| format!("--recipe {shown}"))
}

/// The annotations a multi-platform `build` puts on its index: the
/// recipe's `[annotations]` as expanded for the first platform in sorted
/// order (`${ARCH}` and the like take that platform's values).
fn index_annotations(plan: &Plan) -> BTreeMap<String, String> {
    plan.platforms
        .first()
        .map(|p| p.annotations.clone())
        .unwrap_or_default()
}

/// Warn when a local build of the recipe would not write this index: other
/// platforms, or one platform (a build writes a manifest, not an index).
fn warn_unlike_build(plan: &Plan, report: &IndexReport, reporter: &SharedReporter) {
    let want: Vec<String> = plan
        .platforms
        .iter()
        .map(|p| p.platform.to_string())
        .collect();
    let got: Vec<String> = report
        .manifests
        .iter()
        .map(|m| m.platform.clone())
        .collect();
    if want.len() == 1 {
        reporter.log(
            Level::Warn,
            &format!(
                "{} builds one platform ({}): a local build writes a manifest, not an index",
                plan.recipe.display(),
                want[0]
            ),
        );
    } else if want != got {
        reporter.log(
            Level::Warn,
            &format!(
                "the recipe's platforms are {} but the index holds {}: its digest differs from a local build's",
                want.join(", "),
                got.join(", ")
            ),
        );
    }
}

impl Outcome for IndexReport {
    fn warnings(&self) -> Vec<String> {
        self.push.warnings()
    }
    fn succeeded(&self) -> bool {
        IndexReport::succeeded(self)
    }
    fn digest(&self) -> &Digest {
        &self.digest
    }
}

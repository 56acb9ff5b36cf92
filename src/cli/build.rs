//! `boxwright build`: a recipe into an OCI layout; stdout carries the
//! digest (or the `--json` document). With `--push`, layers are handed to
//! the pusher as each one is finished (`build::publish`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use clap::{Args, ValueEnum};

use boxwright::build::archive::BuildArchive;
use boxwright::build::cache::LayerCache;
use boxwright::build::publish::{self, PublishOptions};
use boxwright::build::{self, BuildOptions};
use boxwright::error::bad_input;
use boxwright::layer::{Codec, Compression};
use boxwright::oci::Descriptor;
use boxwright::progress::{Level, SharedReporter};
use boxwright::push::{by_digest, merge_targets, PushTarget};
use boxwright::recipe::{self, LoadOptions, Plan, Vars};
use boxwright::registry::CredentialStore;
use boxwright::supply::evidence::{build_artifacts, SupplyOptions};

use super::archive::Format;
use super::args::{parse_set, parse_target, AfterPushArgs, UploadArgs};
use super::stdout::{print, print_json};

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// The recipe (TOML).
    pub recipe: PathBuf,
    /// Output: the OCI layout directory, or the archive file with --format
    /// oci-archive|docker-archive [default: ./out/<image name>, or
    /// ./out/<image name>.tar for an archive; with --push, no layout].
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// With --push: keep no local layout (the default without -o). A
    /// registry base's layers are then never downloaded for targets on its
    /// registry, and at most once for the others.
    #[arg(long, requires = "push", conflicts_with = "output")]
    pub no_layout: bool,
    /// What to write.
    #[arg(long, value_enum, default_value_t = Format::Oci)]
    pub format: Format,
    /// Set a recipe variable: NAME=VALUE (repeatable; wins over the environment and [vars]).
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_set)]
    pub sets: Vec<(String, String)>,
    /// Threads for compression and layers [default: number of cores].
    #[arg(short, long, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,
    /// Layer compression.
    #[arg(long, value_enum, default_value_t = CompressionArg::Gzip)]
    pub compression: CompressionArg,
    /// Compression level [default: gzip 1, zstd 3].
    #[arg(long)]
    pub level: Option<i32>,
    /// Build context directory [default: the recipe's `context`, else its directory].
    #[arg(long)]
    pub context: Option<PathBuf>,
    /// Build only these platforms (comma-separated os/arch[/variant]) instead of the recipe's.
    #[arg(long, value_delimiter = ',')]
    pub platform: Option<Vec<String>>,
    /// Print one JSON document (digests, descriptors, diffIDs, timings) instead of the digest.
    #[arg(long)]
    pub json: bool,
    /// Push while building (each layer's upload starts as soon as it is
    /// compressed): to the recipe's [[target]]s, each with every tag, or
    /// only to --to when given.
    #[arg(long)]
    pub push: bool,
    /// With --push: push to REF instead of the recipe's [[target]]s
    /// (repeatable; no tag: latest; REPO@: by digest only). Credentials
    /// come from docker's config.json, $REGISTRY_AUTH_FILE or GITHUB_TOKEN.
    #[arg(long = "to", value_name = "REF", requires = "push", value_parser = parse_target)]
    pub to: Vec<String>,
    /// With --to: push to the recipe's [[target]]s too; a --to naming one of
    /// their repositories replaces that target's tags and keeps its
    /// credentials.
    #[arg(long = "recipe-targets", visible_alias = "targets", requires = "to")]
    pub recipe_targets: bool,
    /// Build every layer a second time another way (another thread count,
    /// directories read in reverse order, another umask, no layer cache) and
    /// compare; exit 1 naming the first tar entry and field that differ.
    #[arg(long, conflicts_with = "push")]
    pub check_reproducible: bool,
    /// Build every layer, without taking any from the layer cache or storing
    /// them there.
    #[arg(long)]
    pub no_cache: bool,
    #[command(flatten)]
    pub layer_cache: super::cache::LayerCacheArgs,
    #[command(flatten)]
    pub upload: UploadArgs,
    #[command(flatten)]
    pub after: AfterPushArgs,
    #[command(flatten)]
    pub supply: super::sign::SupplyArgs,
}

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
pub enum CompressionArg {
    Gzip,
    Zstd,
    None,
}

/// Loading the recipe and the build are synchronous (files, rayon threads,
/// a registry base fetched by blocking on the runtime), so they run on the
/// runtime's blocking pool; a panic there stays a panic. `--push` hands the
/// plan to the library's build-and-push.
pub async fn run(args: BuildArgs, reporter: SharedReporter) -> Result<()> {
    let args = Arc::new(args);
    let a = args.clone();
    let (plan, mut opts) = blocking(move || prepare(&a, &reporter)).await?;
    let archive = BuildArchive::prepare(args.format.sink(), &opts.output, &plan)?;
    if let Some(a) = &archive {
        opts.output = a.layout();
        opts.announce = false;
    }
    if args.push {
        return build_and_push(&args, plan, opts, archive).await;
    }
    if args.after.by_digest || args.after.verify {
        return Err(bad_input("--by-digest and --verify need --push"));
    }
    // The recipe's `[image] sbom` is what `build --push` attaches; an
    // archive cannot keep it, and only the flags are refused there.
    let explicit = args.supply.sbom.is_some() || args.supply.provenance;
    let recipe_sbom = match (&archive, plan.sbom.as_deref()) {
        (Some(_), Some(s)) if !explicit => {
            let format = boxwright::supply::sbom::SbomFormat::parse(s)
                .map_err(|e| bad_input(format!("[image] sbom: {e}")))?;
            if format.is_some() {
                opts.reporter.log(
                    Level::Info,
                    &format!(
                        "the recipe's [image] sbom is attached by build --push; --format {} keeps none",
                        args.format.name()
                    ),
                );
            }
            None
        }
        (_, s) => s,
    };
    let mut supply = args.supply.options(recipe_sbom, &args.sets).await?;
    if let Some(supply) = &mut supply {
        // Downloads and Python packages, as `build --push` lists them.
        supply.components = plan.components();
    }
    if supply.is_some() && archive.is_some() {
        return Err(bad_input(format!(
            "--sbom and --provenance without --push keep the artifacts in an OCI layout: use --format oci, not {}",
            args.format.name()
        )));
    }
    let a = args.clone();
    let reporter = opts.reporter.clone();
    let mut result = blocking(move || {
        let result = build::build(&plan, &opts)
            .with_context(|| format!("building {}", a.recipe.display()))?;
        if a.check_reproducible {
            build::check::check_reproducible(&plan, &opts, &result)
                .with_context(|| format!("checking {}", a.recipe.display()))?;
            opts.reporter.log(
                Level::Info,
                "reproducible: a second build another way gave the same layers",
            );
        }
        if let Some(s) = &supply {
            keep_evidence(&plan, &result, s, &opts.reporter)?;
        }
        Ok(result)
    })
    .await?;
    if let Some(archive) = archive {
        write_archive(archive, &mut result, &reporter).await?;
    }
    if args.json {
        print_json(&result)
    } else {
        Ok(print(&format!("{}\n", result.digest))?)
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(anyhow::Error::new(e).context("the build task failed")),
    }
}

/// Write the archive from the built layout, and say so.
async fn write_archive(
    archive: BuildArchive,
    result: &mut build::BuildResult,
    reporter: &SharedReporter,
) -> Result<()> {
    let dest = archive.dest().to_path_buf();
    archive
        .write(result)
        .await
        .with_context(|| format!("writing {}", dest.display()))?;
    reporter.log(
        Level::Info,
        &format!("wrote {} ({})", result.layout.display(), result.digest),
    );
    Ok(())
}

/// `build --sbom --provenance` without `--push`: the artifacts go into the
/// layout beside the image, for a later `push` of it.
fn keep_evidence(
    plan: &Plan,
    result: &build::BuildResult,
    opts: &SupplyOptions,
    reporter: &SharedReporter,
) -> Result<()> {
    let subject = Descriptor::new(&result.media_type, result.digest.clone(), result.size);
    let artifacts = build_artifacts(plan, result, &subject, &[], opts)
        .context("making the supply-chain artifacts")?;
    boxwright::supply::layout::store(&result.layout, &artifacts)
        .with_context(|| format!("storing the artifacts in {}", result.layout.display()))?;
    let kinds: Vec<&str> = artifacts.iter().map(|a| a.kind.name()).collect();
    reporter.log(
        Level::Info,
        &format!(
            "{}: kept {} about {} (pushed with it by `boxwright push`)",
            result.layout.display(),
            kinds.join(", "),
            result.digest
        ),
    );
    Ok(())
}

/// `build --push`: push while building, then print like `push` does.
async fn build_and_push(
    args: &BuildArgs,
    plan: Plan,
    opts: BuildOptions,
    archive: Option<BuildArchive>,
) -> Result<()> {
    let reporter = opts.reporter.clone();
    let targets = by_digest(push_targets(args, &plan, &reporter)?, args.after.by_digest);
    if targets.is_empty() {
        return Err(bad_input(format!(
            "--push: {} has no [[target]] and no --to was given",
            args.recipe.display()
        )));
    }
    let mut publish = PublishOptions {
        targets,
        push: args.upload.push_options()?,
        credentials: CredentialStore::from_env(),
        verify: args.after.verify,
        keep_layout: keeps_layout(args)?,
        supply: args
            .supply
            .options(plan.sbom.as_deref(), &args.sets)
            .await?,
    };
    if let Some(supply) = &mut publish.supply {
        supply.components = plan.components();
    }
    super::stopped::on_stop(&mut publish.push, args.json, super::stopped::Shape::Nested);
    let mut done = publish::build_and_push(Arc::new(plan), opts, publish)
        .await
        .with_context(|| format!("building {}", args.recipe.display()))?;
    if let Some(archive) = archive {
        write_archive(archive, &mut done.build, &reporter).await?;
    }
    super::push::github_summary(
        &format!("boxwright build --push {}", args.recipe.display()),
        &done.push,
        done.verify.as_ref(),
        &reporter,
    );
    if args.json {
        print_json(&done.to_json()?)?;
        return done.error().map_or(Ok(()), Err);
    }
    super::push::finish_with(&done.push, done.verify.as_ref(), None, false, &reporter)?;
    done.error().map_or(Ok(()), Err)
}

/// Whether `build --push` keeps a layout: with -o, or an archive (written
/// from the layout); not with --no-layout or without -o.
fn keeps_layout(args: &BuildArgs) -> Result<bool> {
    let archive = args.format != Format::Oci;
    if args.no_layout && archive {
        return Err(bad_input(
            "--no-layout writes nothing locally; it cannot go with --format oci-archive or docker-archive",
        ));
    }
    Ok(!args.no_layout && (args.output.is_some() || archive))
}

/// Where `build --push` goes: the recipe's targets (each with every tag)
/// without --to; only the --to references with it, unless
/// --recipe-targets asks for both (a --to naming a recipe repository then
/// replaces its tags and keeps its credentials).
fn push_targets(
    args: &BuildArgs,
    plan: &Plan,
    reporter: &SharedReporter,
) -> Result<Vec<PushTarget>> {
    let recipe: &[recipe::Target] = if args.to.is_empty() || args.recipe_targets {
        &plan.targets
    } else {
        if !plan.targets.is_empty() {
            reporter.log(
                Level::Info,
                &format!(
                    "pushing only to --to; the recipe's targets ({}) are left out (add --recipe-targets to push there too)",
                    plan.targets
                        .iter()
                        .map(|t| t.reference.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        &[]
    };
    merge_targets(recipe, &plan.tags, &args.to)
}

/// The plan and the build options from the flags.
fn prepare(args: &BuildArgs, reporter: &SharedReporter) -> Result<(Plan, BuildOptions)> {
    // Made when planning needs it (a Python version from a registry base's
    // PYTHON_VERSION) or for a registry base; one client for both.
    let make = recipe::registry_base_once(
        args.upload.client_options(),
        args.upload.cache_dir.clone(),
        reporter.clone(),
    );
    let opts = LoadOptions {
        vars: Vars {
            sets: args.sets.iter().cloned().collect(),
            defaults: Default::default(),
            use_env: true,
            ..Default::default()
        },
        context: args.context.clone(),
        platforms: args.platform.clone(),
        cache_dir: args.upload.cache_dir.clone(),
        reporter: Some(reporter.clone()),
        registry_base: Some(make.clone()),
        output: Some(Arc::new({
            let (output, format) = (args.output.clone(), args.format);
            move |name: &str| output_path(output.as_deref(), format, name)
        })),
    };
    let layer_cache = layer_cache(args, reporter)?;
    if let Some(c) = &layer_cache {
        c.expect(&args.recipe);
    }
    let plan = recipe::load(&args.recipe, &opts)?;
    let codec = match args.compression {
        CompressionArg::Gzip => Codec::Gzip,
        CompressionArg::Zstd => Codec::Zstd,
        CompressionArg::None => Codec::None,
    };
    let compression = Compression::new(codec, args.level).context("--level")?;
    let output = output_path(args.output.as_deref(), args.format, &plan.name);
    let defaults = BuildOptions::new(output);
    let opts = BuildOptions {
        jobs: args.jobs.map_or(defaults.jobs, usize::from),
        compression,
        reporter: reporter.clone(),
        registry_base: match plan.base {
            recipe::Base::Registry { .. } => Some(make()?),
            _ => None,
        },
        layer_cache,
        ..defaults
    };
    Ok((plan, opts))
}

/// `-o`, or by default `./out/NAME` (a layout) or `./out/NAME.tar`.
fn output_path(output: Option<&Path>, format: Format, name: &str) -> PathBuf {
    output.map(Path::to_path_buf).unwrap_or_else(|| {
        let file = match format {
            Format::Oci => name.to_string(),
            Format::OciArchive | Format::DockerArchive => format!("{name}.tar"),
        };
        PathBuf::from("out").join(file)
    })
}

/// The layer cache, unless `--no-cache`; a cache that cannot be opened (no
/// HOME, a read-only directory) is warned about and the build goes on
/// without it. A bad `$BOXWRIGHT_CACHE_MAX` is an error.
fn layer_cache(args: &BuildArgs, reporter: &SharedReporter) -> Result<Option<Arc<LayerCache>>> {
    if args.no_cache {
        return Ok(None);
    }
    args.layer_cache.max()?;
    Ok(match args.layer_cache.open(args.upload.cache_dir.clone()) {
        Ok(c) => Some(c),
        Err(e) => {
            reporter.log(
                Level::Warn,
                &format!("building without the layer cache: {e:#} (--no-cache silences this)"),
            );
            None
        }
    })
}

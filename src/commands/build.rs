//! `boxwright build`, with `--push`: layers are handed to the pusher as
//! each one is finished, manifests and tags follow once the layout is
//! committed.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use futures_util::stream::{FuturesUnordered, StreamExt as _};

use boxwright::build::{self, BuildOptions, BuildResult, LayerHook};
use boxwright::cache::BlobCache;
use boxwright::error::bad_input;
use boxwright::image::layout::LayoutImage;
use boxwright::image::remote::RegistryBase;
use boxwright::layer::{Codec, Compression};
use boxwright::oci::Descriptor;
use boxwright::progress::{Level, SharedReporter};
use boxwright::push::Pusher;
use boxwright::recipe::{self, LoadOptions, Plan, Vars};
use boxwright::registry::CredentialStore;

use crate::cli::{BuildArgs, CompressionArg};

pub fn run(args: BuildArgs, reporter: SharedReporter) -> Result<()> {
    // Registry bases block on the runtime that is current when they are made.
    let runtime = tokio::runtime::Runtime::new()?;
    let _entered = runtime.enter();
    let opts = LoadOptions {
        vars: Vars {
            sets: args.sets.iter().cloned().collect(),
            defaults: Default::default(),
            use_env: true,
        },
        context: args.context.clone(),
        platforms: args.platform.clone(),
    };
    let plan = recipe::load(&args.recipe, &opts)?;
    let codec = match args.compression {
        CompressionArg::Gzip => Codec::Gzip,
        CompressionArg::Zstd => Codec::Zstd,
        CompressionArg::None => Codec::None,
    };
    let level = args.level.unwrap_or(codec.default_level());
    if !codec.level_range().contains(&level) {
        return Err(bad_input(format!(
            "--level {level} is out of range for {:?} ({}..={})",
            args.compression,
            codec.level_range().start(),
            codec.level_range().end()
        )));
    }
    let jobs = match args.jobs {
        Some(j) => usize::from(j),
        None => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    };
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from("out").join(&plan.name));
    let opts = BuildOptions {
        output,
        jobs,
        compression: Compression { codec, level },
        reporter: reporter.clone(),
        on_layer: None,
        registry_base: registry_base(&args, &plan, &reporter)?,
    };
    if args.push {
        return build_and_push(&args, &plan, opts, reporter);
    }
    if args.after.by_digest || args.after.verify {
        return Err(bad_input("--by-digest and --verify need --push"));
    }
    let result = build::build(&plan, &opts)
        .with_context(|| format!("building {}", args.recipe.display()))?;
    let mut out = crate::commands::stdout();
    if args.json {
        out.write_all(&serde_json::to_vec_pretty(&result)?)?;
        writeln!(out)?;
    } else {
        writeln!(out, "{}", result.digest)?;
    }
    Ok(())
}

/// Build while pushing: each finished layer is hard-linked out of the
/// layout being written (the build renames that directory when it commits;
/// retries must still find the file) and pushed at once on every registry.
fn build_and_push(
    args: &BuildArgs,
    plan: &Plan,
    mut opts: BuildOptions,
    reporter: SharedReporter,
) -> Result<()> {
    let targets = super::push::by_digest(
        super::push::merge_targets(&plan.targets, &plan.tags, &args.to)?,
        &args.after,
    );
    if targets.is_empty() {
        return Err(bad_input(format!(
            "--push: {} has no [[target]] and no --to was given",
            args.recipe.display()
        )));
    }
    let mut push_opts = super::push::options(&args.registry)?;
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
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
    let image = LayoutImage::open(&layout_dir, None)
        .with_context(|| format!("reading the built image in {}", layout_dir.display()))?;
    let mut report = rt
        .block_on(pusher.push_image(&image))
        .with_context(|| format!("reading the built image in {}", layout_dir.display()))?;
    drop(stage);
    super::push::pin_untagged(&mut report);
    let verified = if args.after.verify {
        super::push::verify_pushed(&rt, pusher.client(), &report, &reporter)?
    } else {
        None
    };
    super::push::github_summary(
        &format!("boxwright build --push {}", args.recipe.display()),
        &report,
        verified.as_ref(),
        &reporter,
    );
    if args.json {
        let mut out = crate::commands::stdout();
        let mut doc = serde_json::json!({ "build": result, "push": report.to_json() });
        if let Some(v) = &verified {
            doc["verify"] = serde_json::to_value(v)?;
        }
        out.write_all(&serde_json::to_vec_pretty(&doc)?)?;
        writeln!(out)?;
        out.flush()?;
        if let Some(e) = report.error() {
            return Err(e);
        }
        return super::push::verify_error(&report, verified.as_ref()).map_or(Ok(()), Err);
    }
    super::push::finish_with(&report, verified.as_ref(), false, &reporter)
}

/// The registry client and blob cache for a registry base (`None` for other bases).
fn registry_base(
    args: &BuildArgs,
    plan: &Plan,
    reporter: &SharedReporter,
) -> Result<Option<Arc<RegistryBase>>> {
    if !matches!(plan.base, recipe::Base::Registry { .. }) {
        return Ok(None);
    }
    let client = super::push::options(&args.registry)?.client;
    let cache = BlobCache::new(args.cache_dir.clone())?;
    Ok(Some(Arc::new(RegistryBase::new(
        client,
        CredentialStore::from_env(),
        cache,
        reporter.clone(),
    )?)))
}

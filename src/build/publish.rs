//! Build and push in one go (`build --push`): each layer the build writes
//! is streamed to every registry as it is compressed, on one upload session
//! per registry whose digest is given once the layer is finished; a layer
//! whose stream failed, and one taken whole from the layer cache or a base,
//! is handed to the pusher as a finished file (HEAD, mount, upload with
//! retries). A registry where a target's tag exists already (an earlier
//! release, whose layers it likely holds) gets no streams: each layer is
//! checked there with HEAD once built, so what did not change is not sent
//! again even when the layer cache is empty. Manifests and tags follow once
//! the layout is committed and the supply-chain evidence is made, on each
//! registry as soon as its own layers are in (a failing registry holds back
//! no other), then the evidence is attached where the push reached, and an
//! optional check that every pushed reference names the image.
//!
//! The build is synchronous (threads of its own); it runs on a blocking
//! thread of the caller's tokio runtime, and its layers reach the async
//! pusher through a channel (the streams are in `stream.rs`). No runtime
//! is created here.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context as _, Result};
use tokio::runtime::Handle;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio::task::JoinHandle;

use bytes::Bytes;
use futures_util::future::BoxFuture;

use crate::image::remote::RegistryImage;
use crate::image::{ImageSource, MemoryImage};
use crate::oci::{Descriptor, Digest};
use crate::ops::verify::{verify_pushed, VerifyReport};
use crate::progress::{Level, SharedReporter};
use crate::push::{pin_untagged, PushOptions, PushReport, PushTarget, Pusher};
use crate::recipe::Plan;
use crate::registry::{CredentialStore, Reference};
use crate::supply::evidence;

use super::stream::{stream_hook, stream_layers, Ready};
use super::{base, build_image, BuildOptions, BuildResult, LayerHook};

/// How long the check for an earlier release on the target registries may
/// take before the build starts; a registry not answering by then is
/// streamed to.
const RELEASE_CHECK: Duration = Duration::from_secs(5);

/// Where and how to push what is built.
#[derive(Clone, Debug)]
pub struct PublishOptions {
    /// Every reference to push to (tagged, or by digest only).
    pub targets: Vec<PushTarget>,
    /// Client settings and upload mode. The repository serving a registry
    /// base is added to its mount sources.
    pub push: PushOptions,
    pub credentials: CredentialStore,
    /// Afterwards, HEAD every pushed reference ([`verify_pushed`]).
    pub verify: bool,
    /// Supply-chain evidence, made for every target once the image is built
    /// (before any manifest is pushed) and attached where the push reached.
    pub supply: Option<crate::supply::evidence::SupplyOptions>,
    /// Keep the layout at `build.output`. Without it the image is built in
    /// a temporary directory, removed once pushed, and a registry base's
    /// layers are not downloaded: targets on the base's registry mount
    /// them (or already hold them), others get them fetched once through
    /// the blob cache. The report's `build.layout` is then left out.
    pub keep_layout: bool,
}

/// What [`build_and_push`] did.
#[derive(Clone, Debug)]
pub struct Published {
    pub build: BuildResult,
    /// Targets pushed without a tag are reported as `REPO@DIGEST`.
    pub push: PushReport,
    /// Present when asked for and some target was pushed.
    pub verify: Option<VerifyReport>,
    /// What was attached (signature, SBOM, provenance), when asked for.
    pub supply: Option<crate::supply::attach::AttachReport>,
}

impl Published {
    /// The `--json` document: `build`, `push` and (when run) `verify`.
    pub fn to_json(&self) -> Result<serde_json::Value> {
        let mut doc = serde_json::json!({
            "build": serde_json::to_value(&self.build)?,
            "push": self.push.to_json(),
        });
        if let Some(v) = &self.verify {
            doc["verify"] = serde_json::to_value(v)?;
        }
        if let Some(s) = &self.supply {
            doc["supply"] = serde_json::to_value(s)?;
        }
        Ok(doc)
    }

    /// The error when a required target failed, or the verification did not
    /// confirm the pushed digest.
    pub fn error(&self) -> Option<anyhow::Error> {
        self.push
            .error()
            .or_else(|| {
                self.verify
                    .as_ref()
                    .and_then(|v| v.after_push_error(&self.push.digest))
            })
            .or_else(|| self.supply.as_ref().and_then(|s| s.error()))
    }
}

/// Build `plan` into the layout `build.output` while pushing it to
/// `publish.targets`. Errors are for a failed build, evidence that cannot be
/// made (then no manifest or tag is pushed anywhere) and for problems before
/// any network work (credentials variables, a base that does not resolve);
/// failed targets are in the report ([`Published::error`]).
///
/// Must run inside a multi-threaded tokio runtime.
pub async fn build_and_push(
    plan: Arc<Plan>,
    build: BuildOptions,
    publish: PublishOptions,
) -> Result<Published> {
    let PublishOptions {
        targets,
        mut push,
        credentials,
        verify,
        supply,
        keep_layout,
    } = publish;
    crate::push::check_mount_sources(&targets, &push.mount_sources)?;
    let planned: Vec<Reference> = targets.iter().map(|t| t.reference.clone()).collect();
    let mut build = build;
    let scratch = if keep_layout {
        None
    } else {
        let dir = tempfile::Builder::new()
            .prefix("boxwright-build-")
            .tempdir()
            .context("creating a temporary directory for the build")?;
        build.output = dir.path().join("layout");
        build.throwaway = true;
        Some(dir)
    };
    let reporter = build.reporter.clone();
    let (build, mount, base) = {
        let plan = plan.clone();
        tokio::task::spawn_blocking(move || prepare(&plan, build))
            .await
            .context("the build setup task failed")??
    };
    // Base layers are mounted from the base's repository on its own
    // registry: named as a mount source for the layers the build hands
    // over; without a layout they are left to the push, which asks the
    // base's repository for them alone (`WithBase::mount_hints`).
    if keep_layout {
        let on_a_target =
            |m: &Reference| targets.iter().any(|t| t.reference.registry == m.registry);
        push.mount_sources.extend(mount.filter(on_a_target));
    }
    let pusher = match Pusher::new(targets, push, credentials, reporter.clone()).await {
        Ok(p) => Arc::new(p),
        Err(e) => {
            release(build).await;
            return Err(e);
        }
    };
    let released = pusher.registries_holding_a_tag(RELEASE_CHECK).await;
    let (tx, rx) = unbounded_channel();
    pusher.start_progress_unknown();
    let finishing = stream_layers(pusher.clone(), rx);
    let p = pusher.clone();
    let handle = Handle::current();
    let making = supply.clone();
    // The evidence is made once the image is built, before any manifest is
    // pushed: failing, it fails the run as the build would.
    let building = tokio::task::spawn_blocking(move || {
        let (built, stage) = build_streaming(&plan, build, p, handle, tx, released)?;
        let made = (making.as_ref())
            .map(|s| evidence::before_push(&plan, &built.result, &planned, s))
            .transpose()?
            .flatten();
        anyhow::Ok((built, stage, made))
    });
    let (built, stage, made) = match building.await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            finishing.values().for_each(JoinHandle::abort);
            return Err(e);
        }
        Err(e) => {
            finishing.values().for_each(JoinHandle::abort);
            return Err(anyhow!("the build task failed: {e}"));
        }
    };
    // Each registry goes on to the rest of the image once its own layers
    // are finished there.
    let ready = finishing
        .into_iter()
        .map(|(registry, task)| {
            let done: BoxFuture<'static, ()> = Box::pin(async move {
                let _ = task.await;
            });
            (registry, done)
        })
        .collect();
    let source = WithBase {
        built: &built.content,
        base: base.as_ref(),
        base_layers: built
            .result
            .images
            .iter()
            .flat_map(|i| &i.layers)
            .filter(|l| l.source == "base")
            .map(|l| l.descriptor.digest.clone())
            .collect(),
    };
    let mut report = pusher.push_image_after(&source, ready).await?;
    drop(stage);
    let attached = match (&made, &supply) {
        (Some(e), Some(s)) => evidence::attach_built(&pusher, e, &report, s, &reporter).await?,
        _ => None,
    };
    pin_untagged(&mut report);
    let verified = if verify {
        verify_pushed(pusher.client(), &report, &reporter).await?
    } else {
        None
    };
    let mut build = built.result;
    if let Some(dir) = scratch {
        build.layout = PathBuf::new();
        let _ = tokio::task::spawn_blocking(move || drop(dir)).await;
    }
    Ok(Published {
        build,
        push: report,
        verify: verified,
        supply: attached,
    })
}

/// Blocking: the client of a registry base (kept in the options for the
/// build), the repository that serves the base, and the base as a source
/// of its blobs.
fn prepare(
    plan: &Plan,
    mut opts: BuildOptions,
) -> Result<(BuildOptions, Option<Reference>, Option<RegistryImage>)> {
    opts.registry_base = base::registry_client(&plan.base, &opts)?;
    let rb = opts.registry_base.as_deref();
    let (mount, source) = base::served(&plan.base, rb)?.unzip();
    Ok((opts, mount, source))
}

/// The built image, with the blobs it does not hold (a registry base's
/// layers left out of a thrown-away layout) asked of the base's registry,
/// whose repository is also the first mount source of the base's layers on
/// that registry.
struct WithBase<'a> {
    built: &'a MemoryImage,
    base: Option<&'a RegistryImage>,
    base_layers: HashSet<Digest>,
}

impl ImageSource for WithBase<'_> {
    fn root(&self) -> &Descriptor {
        self.built.root()
    }

    fn manifest<'a>(&'a self, desc: &'a Descriptor) -> BoxFuture<'a, Result<Bytes>> {
        self.built.manifest(desc)
    }

    fn blob<'a>(&'a self, desc: &'a Descriptor) -> BoxFuture<'a, Result<PathBuf>> {
        match self.base {
            Some(base) if !self.built.holds(&desc.digest) => base.blob(desc),
            _ => self.built.blob(desc),
        }
    }

    fn mount_hints(&self, registry: &str, desc: &Descriptor) -> Vec<String> {
        match self.base {
            Some(b) if self.base_layers.contains(&desc.digest) => b.mount_hints(registry, desc),
            _ => Vec::new(),
        }
    }
}

/// Drop the options on a blocking thread: a registry base may own an async
/// runtime, which must not be dropped inside another one.
async fn release(opts: BuildOptions) {
    let _ = tokio::task::spawn_blocking(move || drop(opts)).await;
}

/// Blocking: the build, each layer it writes streamed to `pusher`'s
/// registries (on `handle`, the caller's runtime) as it is compressed, and
/// each finished layer sent on `tx` as a file kept aside in a directory
/// next to the output; none is streamed to the registries `not_streamed`.
/// The directory is returned: the files must stay until the push is done.
fn build_streaming(
    plan: &Plan,
    mut opts: BuildOptions,
    pusher: Arc<Pusher>,
    handle: Handle,
    tx: UnboundedSender<Ready>,
    not_streamed: HashSet<String>,
) -> Result<(super::BuiltImage, tempfile::TempDir)> {
    let parent = crate::image::output_parent(&opts.output)?;
    let stage = tempfile::Builder::new()
        .prefix(&format!("{}push-", crate::image::output::TEMP_PREFIX))
        .tempdir_in(&parent)
        .with_context(|| format!("creating a temporary directory in {}", parent.display()))?;
    opts.on_layer_start = Some(stream_hook(pusher, handle, tx.clone(), not_streamed));
    opts.on_layer = Some(stage_hook(
        stage.path().to_path_buf(),
        tx,
        opts.reporter.clone(),
    ));
    let built =
        build_image(plan, &opts).with_context(|| format!("building {}", plan.recipe.display()))?;
    // Dropping the options drops the hooks and with them the channel's
    // senders, which ends the upload stream.
    drop(opts);
    Ok((built, stage))
}

/// The layer hook: link (or copy) each finished layer into `stage` and send
/// it to the uploads.
fn stage_hook(stage: PathBuf, tx: UnboundedSender<Ready>, reporter: SharedReporter) -> LayerHook {
    Arc::new(move |desc: &Descriptor, path: &Path| {
        let linked = stage.join(desc.digest.hex());
        // The build renames its working directory when it commits, so the
        // upload (and its retries) read a link, or a copy, kept aside here.
        let path = match std::fs::hard_link(path, &linked) {
            Ok(()) => linked,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => linked,
            Err(_) => match std::fs::copy(path, &linked) {
                Ok(_) => linked,
                // Nowhere to keep it: the push uploads it from the layout.
                Err(_) => return,
            },
        };
        reporter.log(Level::Debug, &format!("push: layer {} ready", desc.digest));
        let _ = tx.send(Ready::Finished(Box::new(desc.clone()), path));
    })
}

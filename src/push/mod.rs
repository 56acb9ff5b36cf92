//! The pusher: one image (or index) to many references on many registries.
//!
//! Targets are grouped by registry and the registries are pushed in
//! parallel. Within a registry each blob goes in at most once: a HEAD on
//! every target repository, then one upload into the first repository that
//! lacks it, then mounts from a repository known to hold it (another target
//! repository, one filled earlier in this run, one remembered from earlier
//! runs by the client's [`KnownBlobs`](crate::registry::KnownBlobs), or a
//! mount source such as the base image's repository) into the others. A
//! mount answered 202 continues on the session it opened (a remembered
//! repository's is cancelled, and the memory forgotten). Manifests go only
//! after all blobs are
//! confirmed, platform manifests by digest before the index, tags last; a
//! tag that already names our digest is left alone, so a re-push sends HEADs
//! only.
//!
//! [`Pusher`] takes any [`ImageSource`]; it is also usable piecewise
//! (`build --push` hands over each layer as it is finished with
//! [`Pusher::push_blob`]); [`push`] does a whole layout.
//!
//! CLI flags the binary maps onto this module: `--to REF` (repeatable,
//! [`PushTarget::parse`]), `--jobs-per-registry N` (> 0,
//! [`ClientOptions::jobs_per_registry`]), `--chunk-size BYTES` (chunked
//! uploads, [`PushOptions::chunk_size`]), `--insecure-registry HOST`
//! (repeatable, [`ClientOptions::insecure`]), `--ca-file PEM`
//! ([`ClientOptions::ca_file`]), `--retries N` ([`RetryPolicy::max_retries`](crate::registry::RetryPolicy)),
//! `--mount-from REPO` (repeatable, [`PushOptions::mount_sources`]), `--json`
//! ([`PushReport::to_json`]) and `--verbose` (the reporter shows
//! `Level::Debug`: one line per request).

mod blobs;
mod manifests;
mod report;
mod targets;
mod watch;

pub use blobs::{BlobBytes, Piece};
pub use report::{PushError, PushFailed, PushReport, RegistryReport, TargetReport};
pub use targets::{
    by_digest, check_mount_sources, merge_targets, parse_targets, pin_untagged, PushTarget,
};
pub use watch::PushWatch;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};
use futures_util::future::BoxFuture;
use futures_util::stream::{self, StreamExt as _};

use crate::error::bad_input;
use crate::image::layout::LayoutImage;
use crate::image::{walk, Graph, ImageSource};
use crate::oci::Descriptor;
use crate::progress::{Level, SharedReporter};
use crate::registry::blobs::UploadMode;
use crate::registry::{Client, ClientOptions, CredentialStore, EnvCredentialError, Reference};
use blobs::{BlobPusher, RegistryPush};
use manifests::Tagged;

/// How to push.
#[derive(Clone, Debug, Default)]
pub struct PushOptions {
    pub client: ClientOptions,
    /// Upload in chunks of this many bytes (`--chunk-size`). Without it,
    /// blobs go in one streamed PUT (chunked only when a registry refuses).
    pub chunk_size: Option<u64>,
    /// Repositories that may hold some blobs already (e.g. the base image's):
    /// mounts from them are tried on their own registry, which must be a
    /// target's ([`Pusher::new`] refuses one that is not).
    pub mount_sources: Vec<Reference>,
    /// Where the pusher made with these options shows what it has done so
    /// far, for a report of a run stopped in the middle
    /// ([`PushWatch::report`]).
    pub watch: Option<PushWatch>,
}

/// Pushes to a fixed set of targets.
pub struct Pusher {
    client: Arc<Client>,
    /// Every target, in order, the refused ones included.
    targets: Arc<Vec<PushTarget>>,
    /// Optional targets left out because a credential variable of their
    /// own cannot be used: never pushed, reported failed.
    refused: Arc<HashMap<Reference, EnvCredentialError>>,
    registries: Arc<Vec<RegistryPush>>,
    /// The root of the image being pushed, once known.
    root: Arc<Mutex<Option<Descriptor>>>,
    mode: UploadMode,
    reporter: SharedReporter,
}

impl Pusher {
    /// [`Pusher::new`] with credentials from the environment (auth files,
    /// credential helpers, `GITHUB_TOKEN`).
    pub async fn with_env_credentials(
        targets: Vec<PushTarget>,
        opts: PushOptions,
        reporter: SharedReporter,
    ) -> Result<Pusher> {
        Pusher::new(targets, opts, CredentialStore::from_env(), reporter).await
    }

    /// Set up: check targets (each destination once) and mount sources (each
    /// on a target's registry), resolve explicit credentials (bad input when
    /// a required target's variable is missing or badly encoded; an
    /// optional target's is left out and reported failed), build the client.
    pub async fn new(
        targets: Vec<PushTarget>,
        opts: PushOptions,
        store: CredentialStore,
        reporter: SharedReporter,
    ) -> Result<Pusher> {
        let targets = targets::distinct(targets);
        let env = |k: &str| std::env::var(k).ok();
        let explicit = targets::explicit_credentials(&targets, &env)?;
        if targets.is_empty() {
            return Err(bad_input("nothing to push to: give at least one --to REFERENCE (or [[target]] in the recipe)"));
        }
        if opts.chunk_size == Some(0) {
            return Err(bad_input("--chunk-size must be at least 1"));
        }
        targets::check_mount_sources(&targets, &opts.mount_sources)?;
        let client_opts = opts.client.clone();
        let rep = reporter.clone();
        let client = tokio::task::spawn_blocking(move || Client::new(client_opts, store, rep))
            .await
            .context("client setup task failed")??;
        for (reg, cred) in explicit.credentials {
            client.set_credential(&reg, cred);
        }
        for (r, e) in &explicit.refused {
            reporter.log(Level::Info, &format!("{r}: optional target left out: {e}"));
        }
        let refused: HashMap<_, _> = explicit.refused.into_iter().collect();
        let live: Vec<PushTarget> = (targets.iter())
            .filter(|t| !refused.contains_key(&t.reference))
            .cloned()
            .collect();
        let registries = targets::group(&live, &opts.mount_sources)
            .into_iter()
            .map(RegistryPush::new)
            .collect();
        let mode = match opts.chunk_size {
            Some(n) => UploadMode::Chunked(n),
            None => UploadMode::Monolithic,
        };
        let pusher = Pusher {
            client: Arc::new(client),
            targets: Arc::new(targets),
            refused: Arc::new(refused),
            registries: Arc::new(registries),
            root: Arc::default(),
            mode,
            reporter,
        };
        if let Some(watch) = &opts.watch {
            watch.attach(watch::Watched {
                client: pusher.client.clone(),
                targets: pusher.targets.clone(),
                refused: pusher.refused.clone(),
                registries: pusher.registries.clone(),
                root: pusher.root.clone(),
            });
        }
        Ok(pusher)
    }

    /// The targets that are pushed: every one but the refused.
    fn live_targets(&self) -> impl Iterator<Item = &PushTarget> {
        (self.targets.iter()).filter(|t| !self.refused.contains_key(&t.reference))
    }

    /// The client (for its statistics).
    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }

    /// Announce the bytes to push (one progress task per registry).
    pub fn start_progress(&self, total_blob_bytes: u64) {
        for r in self.registries.iter() {
            self.reporter
                .start(&r.progress_id, r.registry(), Some(total_blob_bytes));
        }
    }

    /// Announce a push whose size is not known yet (`build --push`: layers
    /// arrive as they are built).
    pub fn start_progress_unknown(&self) {
        for r in self.registries.iter() {
            self.reporter.start(&r.progress_id, r.registry(), None);
        }
    }

    fn blob_pusher(&self) -> BlobPusher<'_> {
        BlobPusher {
            client: &self.client,
            reporter: &self.reporter,
            mode: self.mode,
        }
    }

    /// Make sure every target repository holds the blob `desc` whose bytes
    /// are in `path`, on every registry in parallel. Failures are recorded
    /// against their registry (whose targets then fail); this never errors.
    pub async fn push_blob(&self, desc: &Descriptor, path: &Path) {
        self.push_blob_from(desc, BlobBytes::File(path)).await
    }

    /// [`Pusher::push_blob`] with bytes asked of `bytes` only when a
    /// registry needs an upload (present or mounted blobs never touch it).
    pub async fn push_blob_from(&self, desc: &Descriptor, bytes: BlobBytes<'_>) {
        let p = self.blob_pusher();
        futures_util::future::join_all(self.registries.iter().map(|r| p.push(r, desc, bytes)))
            .await;
    }

    /// [`Pusher::push_blob_from`] on `registry` only (evidence that names
    /// the repository it is pushed to, such as a signature).
    pub async fn push_blob_to(&self, registry: &str, desc: &Descriptor, bytes: BlobBytes<'_>) {
        if let Some(r) = self.registries.iter().find(|r| r.registry() == registry) {
            self.blob_pusher().push(r, desc, bytes).await;
        }
    }

    /// The registries pushed to, in order.
    pub fn registries(&self) -> Vec<String> {
        self.registries
            .iter()
            .map(|r| r.registry().to_string())
            .collect()
    }

    /// The registries where a target's tag names a manifest already (an
    /// earlier release), asked with one `HEAD` per tagged target within
    /// `within`. Answers are kept as they come: a registry that has not
    /// answered by then is not named, and holds back no other's answer.
    pub async fn registries_holding_a_tag(&self, within: Duration) -> HashSet<String> {
        let mut asks: futures_util::stream::FuturesUnordered<_> = self
            .live_targets()
            .filter_map(|t| {
                let r = &t.reference;
                let tag = r.tag.as_deref()?;
                Some(async move { (r, self.client.repo_of(r).holds_manifest(tag).await) })
            })
            .collect();
        let deadline = tokio::time::Instant::now() + within;
        let mut held = HashSet::new();
        while let Ok(Some((r, answer))) = tokio::time::timeout_at(deadline, asks.next()).await {
            match answer {
                Ok(true) => {
                    if held.insert(r.registry.clone()) {
                        let msg = format!(
                            "{}: {r} exists: each layer is checked there once built, not streamed",
                            r.registry
                        );
                        self.reporter.log(Level::Info, &msg);
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    let msg = format!("{r}: could not tell whether it exists: {e}");
                    self.reporter.log(Level::Debug, &msg);
                }
            }
        }
        held
    }

    /// Stream a blob being produced to `registry`: its bytes come on `rx`
    /// as they are made, then its descriptor; they go on one upload session
    /// into the registry's first target repository (see
    /// [`Pusher::finish_streamed`] for the others). `what` names the blob
    /// in logs. The descriptor when the registry stored the blob; `None` when it did not
    /// (the session is cancelled): then the blob is to be uploaded from its
    /// file.
    pub async fn stream_blob(
        &self,
        registry: &str,
        what: &str,
        rx: tokio::sync::mpsc::Receiver<Piece>,
    ) -> Option<Descriptor> {
        let r = self.registries.iter().find(|r| r.registry() == registry)?;
        self.blob_pusher().stream(r, what, rx).await
    }

    /// After [`Pusher::stream_blob`] to `registry`: when it `stored` the
    /// blob `desc`, it is counted as uploaded to the first target
    /// repository and given to the others as usual (HEAD, mount); when it
    /// did not, it is pushed from the file `path` as [`Pusher::push_blob`]
    /// does, with its retries. Either way, the blob is then done on that
    /// registry, as after [`Pusher::push_blob`].
    pub async fn finish_streamed(
        &self,
        registry: &str,
        desc: &Descriptor,
        path: &Path,
        stored: bool,
    ) {
        let Some(r) = self.registries.iter().find(|r| r.registry() == registry) else {
            return;
        };
        let streamed = stored.then(|| r.streamed_into(&desc.digest)).flatten();
        self.blob_pusher()
            .push_after(r, desc, BlobBytes::File(path), streamed.as_deref())
            .await
    }

    /// The failure recorded against `registry` (a blob it could not store),
    /// if any.
    pub fn registry_failure(&self, registry: &str) -> Option<PushError> {
        self.registries
            .iter()
            .find(|r| r.registry() == registry)
            .and_then(RegistryPush::failure)
    }

    /// Push a whole image: walk it, then [`Pusher::push_graph`]. Errors are
    /// for an image that cannot be read; target failures are in the report.
    pub async fn push_image(&self, image: &dyn ImageSource) -> Result<PushReport> {
        let graph = walk(image).await?;
        graph.warn_left_out(&self.reporter);
        Ok(self.push_graph(image, &graph).await)
    }

    /// Push the walked `graph` of `image`: on each registry at once and on
    /// its own, the blobs (skipped when already done through
    /// [`Pusher::push_blob`]), then manifests by digest, then tags. A
    /// registry moves on to its manifests as soon as its own blobs are in:
    /// a slow or failing registry never holds back another's tags.
    pub async fn push_graph(&self, image: &dyn ImageSource, graph: &Graph) -> PushReport {
        self.push_graph_after(image, graph, HashMap::new()).await
    }

    /// [`Pusher::push_image`], each registry starting once its entry in
    /// `ready` (if any) is done: `build --push` passes the tasks that
    /// finish the layers it handed to each registry.
    pub async fn push_image_after(
        &self,
        image: &dyn ImageSource,
        ready: HashMap<String, BoxFuture<'static, ()>>,
    ) -> Result<PushReport> {
        let graph = walk(image).await?;
        graph.warn_left_out(&self.reporter);
        Ok(self.push_graph_after(image, &graph, ready).await)
    }

    async fn push_graph_after(
        &self,
        image: &dyn ImageSource,
        graph: &Graph,
        mut ready: HashMap<String, BoxFuture<'static, ()>>,
    ) -> PushReport {
        if let Ok(mut root) = self.root.lock() {
            *root = Some(graph.root.clone());
        }
        let jobs = self.client.options().jobs_per_registry.max(1) * 2;
        let p = &self.blob_pusher();
        let per_registry = self
            .registries
            .iter()
            .map(|r| (r, ready.remove(r.registry())));
        let done = futures_util::future::join_all(per_registry.map(|(r, ready)| async move {
            if let Some(ready) = ready {
                ready.await;
            }
            stream::iter(graph.blobs.iter())
                .for_each_concurrent(jobs, |d| p.push(r, d, BlobBytes::Source(image)))
                .await;
            let targets: Vec<&PushTarget> = self
                .live_targets()
                .filter(|t| t.reference.registry == r.registry())
                .collect();
            let res = manifests::push_manifests(&self.client, r, &targets, graph).await;
            (r, res, r.started.elapsed().as_secs_f64())
        }))
        .await;
        let mut outcomes: HashMap<String, (Result<Tagged, PushError>, f64)> = HashMap::new();
        let mut registries = Vec::new();
        for (r, res, seconds) in done {
            for (t, outcome) in res {
                outcomes.insert(t, (outcome, seconds));
            }
            registries.push(self.registry_report(r, seconds));
        }
        let targets = self
            .targets
            .iter()
            .map(|t| self.target_report(t, graph, outcomes.remove(&t.reference.to_string())))
            .collect();
        PushReport {
            digest: graph.root.digest.clone(),
            media_type: graph.root.media_type.clone(),
            size: graph.root.size,
            targets,
            registries,
        }
    }

    fn target_report(
        &self,
        t: &PushTarget,
        graph: &Graph,
        outcome: Option<(Result<Tagged, PushError>, f64)>,
    ) -> TargetReport {
        let key = t.reference.to_string();
        let refused = self.refused.get(&t.reference);
        let counts = match refused {
            Some(_) => Default::default(),
            None => (self.registries.iter())
                .find(|r| r.registry() == t.reference.registry)
                .map(|r| r.counts(&t.reference.repository))
                .unwrap_or_default(),
        };
        let (outcome, seconds) = match refused {
            Some(e) => (Err(PushError::Credentials(e.clone())), 0.0),
            None => outcome.unwrap_or((Err(PushError::NotPushed), 0.0)),
        };
        // A target without tag or digest is shown as `REPO@DIGEST`, the
        // reference that names it (as `pin_untagged` reports it).
        let shown = match (&t.reference.tag, &t.reference.digest) {
            (None, None) => format!("{key}@{}", graph.root.digest),
            _ => key,
        };
        match &outcome {
            Err(e) => {
                let level = if t.optional { Level::Warn } else { Level::Info };
                self.reporter.log(level, &format!("{shown}: failed: {e}"));
            }
            Ok(t) => {
                let moved = (t.replaced.as_ref())
                    .map_or_else(String::new, |d| format!(" (the tag named {d} before)"));
                self.reporter.log(
                    Level::Info,
                    &format!("{shown}: pushed {}{moved}", graph.root.digest),
                )
            }
        }
        watch::target_row(t, counts, outcome, seconds)
    }

    /// The report of registry `r`, done after `seconds`.
    fn registry_report(&self, r: &RegistryPush, seconds: f64) -> RegistryReport {
        let stats = self.client.stats(r.registry());
        let error = r.failure();
        let summary = match &error {
            None => format!(
                "{}: {} sent, {} retries",
                r.registry(),
                crate::render::human_bytes(stats.bytes_sent),
                stats.retries
            ),
            Some(e) => format!("{}: failed: {e}", r.registry()),
        };
        self.reporter.finish(&r.progress_id, &summary);
        watch::registry_row(&self.client, r, error, seconds)
    }
}

/// Push the image in the layout `image` (`DIR` or `DIR:NAME`) to `targets`.
/// Returns a report even when targets failed; check
/// [`PushReport::succeeded`] / [`PushReport::error`]. Errors are for
/// problems before any network work (bad layout, references, credentials
/// variables).
///
/// The client that pushed comes back with the report, so that what follows
/// (`--verify`) reuses its credentials, tokens and connections instead of
/// logging in again.
pub async fn push(
    image: &str,
    targets: Vec<PushTarget>,
    opts: PushOptions,
    reporter: SharedReporter,
) -> Result<(PushReport, Arc<Client>)> {
    let (img, graph) = read_layout(image).await?;
    let (report, pusher) = push_read(&img, &graph, targets, opts, reporter).await?;
    Ok((report, pusher.client))
}

/// The image of the layout `image` (`DIR` or `DIR:NAME`) and its graph,
/// every blob checked: all that [`push_read`] sends, read before anything
/// is sent.
pub async fn read_layout(image: &str) -> Result<(LayoutImage, Graph)> {
    let read = async {
        let img = LayoutImage::open_ref(image)?;
        let graph = walk(&img).await?;
        img.check_blobs(&graph)?;
        anyhow::Ok((img, graph))
    };
    read.await.with_context(|| format!("reading image {image}"))
}

/// Push `img` (read by [`read_layout`]) to `targets`, handing back the
/// pusher (for artifacts to attach after the image).
pub async fn push_read(
    img: &LayoutImage,
    graph: &Graph,
    targets: Vec<PushTarget>,
    opts: PushOptions,
    reporter: SharedReporter,
) -> Result<(PushReport, Pusher)> {
    let pusher = Pusher::new(targets, opts, CredentialStore::from_env(), reporter).await?;
    graph.warn_left_out(&pusher.reporter);
    pusher.start_progress(graph.blob_bytes());
    let report = pusher.push_graph(img, graph).await;
    Ok((report, pusher))
}

//! The pusher: one image (or index) to many references on many registries.
//!
//! Targets are grouped by registry and the registries are pushed in
//! parallel. Within a registry each blob goes in at most once: a HEAD on
//! every target repository, then one upload into the first repository that
//! lacks it, then mounts from a repository known to hold it (another target
//! repository, one filled earlier in this run, or a mount source such as the
//! base image's repository) into the others. A mount answered 202 continues
//! on the session it opened. Manifests go only after all blobs are
//! confirmed, platform manifests by digest before the index, tags last; a
//! tag that already names our digest is left alone, so a re-push sends HEADs
//! only.
//!
//! [`Pusher`] is usable piecewise (`build --push` hands over each layer as it
//! is finished with [`Pusher::push_blob`]); [`push`] does a whole layout.
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

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{anyhow, Context as _};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::{self, StreamExt as _};
use serde::Serialize;
use tokio::sync::OnceCell;

use crate::error::bad_input;
use crate::layout::{split_layout_ref, Layout};
use crate::oci::{self, Descriptor, Digest};
use crate::progress::{Level, SharedReporter};
use crate::registry::blobs::{MountResult, UploadMode, UploadSession, DEFAULT_CHUNK_SIZE};
use crate::registry::{Client, ClientOptions, CredentialStore, EnvCredentials, Reference};

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
    pub fn parse(s: &str) -> anyhow::Result<PushTarget> {
        if let Some(repo) = s.strip_suffix('@') {
            let reference = Reference::parse(repo)?;
            if reference.tag.is_some() || reference.digest.is_some() {
                return Err(bad_input(format!(
                    "{s:?}: a trailing @ (push by digest only) takes a repository without tag or digest"
                )));
            }
            return Ok(PushTarget {
                reference,
                optional: false,
                credentials: None,
            });
        }
        let mut reference = Reference::parse(s)?;
        if reference.tag.is_none() && reference.digest.is_none() {
            reference.tag = Some("latest".into());
        }
        Ok(PushTarget {
            reference,
            optional: false,
            credentials: None,
        })
    }

    /// The targets of a recipe: every `[[target]]` repository with every tag.
    pub fn from_recipe(
        targets: &[crate::recipe::Target],
        tags: &[String],
    ) -> anyhow::Result<Vec<PushTarget>> {
        let mut out = Vec::new();
        for t in targets {
            let repo = Reference::parse(&t.reference)?;
            let credentials = match (&t.username_env, &t.password_env) {
                (Some(u), Some(p)) => Some(EnvCredentials {
                    username_env: u.clone(),
                    password_env: p.clone(),
                    encoding: if t.base64 {
                        crate::registry::SecretEncoding::Base64
                    } else {
                        crate::registry::SecretEncoding::Plain
                    },
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

/// How to push.
#[derive(Clone, Debug, Default)]
pub struct PushOptions {
    pub client: ClientOptions,
    /// Upload in chunks of this many bytes (`--chunk-size`). Without it,
    /// blobs go in one streamed PUT (chunked only when a registry refuses).
    pub chunk_size: Option<u64>,
    /// Repositories that may hold some blobs already (e.g. the base image's):
    /// mounts from them are tried on their own registry.
    pub mount_sources: Vec<Reference>,
}

/// What was pushed to one target.
#[derive(Clone, Debug, Serialize)]
pub struct TargetReport {
    pub reference: String,
    pub registry: String,
    pub optional: bool,
    pub ok: bool,
    /// The digest the target now names (when ok).
    pub digest: Option<Digest>,
    pub error: Option<String>,
    /// Blobs of the image in this target's repository, by how they got there.
    pub blobs_uploaded: u64,
    pub blobs_mounted: u64,
    pub blobs_present: u64,
    /// Blob bytes uploaded into this target's repository.
    pub bytes_sent: u64,
    // No `retries` here: a blob is uploaded once per registry for all of its
    // targets, so retries cannot be told apart per target. They are counted
    // per registry, in `RegistryReport::retries`.
    pub seconds: f64,
}

/// Per-registry figures.
#[derive(Clone, Debug, Serialize)]
pub struct RegistryReport {
    pub registry: String,
    pub ok: bool,
    pub error: Option<String>,
    /// Requests by method, retries included.
    pub requests: BTreeMap<String, u64>,
    /// All request body bytes (blobs and manifests, retries included).
    pub bytes_sent: u64,
    /// Attempts repeated on this registry after a temporary failure
    /// (requests, upload restarts and resumes), for all its targets together.
    pub retries: u64,
    pub seconds: f64,
}

/// The outcome of a push.
#[derive(Clone, Debug, Serialize)]
pub struct PushReport {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub targets: Vec<TargetReport>,
    pub registries: Vec<RegistryReport>,
}

impl PushReport {
    /// True when every non-optional target holds the image.
    pub fn succeeded(&self) -> bool {
        self.targets.iter().all(|t| t.ok || t.optional)
    }

    /// One line per failed optional target.
    pub fn warnings(&self) -> Vec<String> {
        self.targets
            .iter()
            .filter(|t| !t.ok && t.optional)
            .map(|t| {
                format!(
                    "optional target {} failed: {}",
                    t.reference,
                    t.error.as_deref().unwrap_or("unknown error")
                )
            })
            .collect()
    }

    /// The `--json` document.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// An error naming every failed required target, when there is one.
    pub fn error(&self) -> Option<anyhow::Error> {
        let failed: Vec<String> = self
            .targets
            .iter()
            .filter(|t| !t.ok && !t.optional)
            .map(|t| {
                format!(
                    "{}: {}",
                    t.reference,
                    t.error.as_deref().unwrap_or("unknown error")
                )
            })
            .collect();
        (!failed.is_empty()).then(|| anyhow!("push failed for {}", failed.join("; ")))
    }
}

/// An image ready to push: its blobs (files) and manifests (bytes).
#[derive(Clone, Debug)]
pub struct ImageContent {
    /// The top-level manifest or index.
    pub root: Descriptor,
    /// Manifests to PUT by digest, children before parents, root last.
    pub manifests: Vec<(Descriptor, Bytes)>,
    /// Unique blobs (configs, layers) and where their bytes are.
    pub blobs: Vec<(Descriptor, PathBuf)>,
}

impl ImageContent {
    /// Collect an image from a layout (blocking: reads files). `name` picks
    /// an image by its ref name. Missing or truncated blobs are bad input.
    pub fn from_layout(layout: &Layout, name: Option<&str>) -> anyhow::Result<ImageContent> {
        let root = layout.resolve(name)?;
        let mut content = ImageContent {
            root: root.clone(),
            manifests: Vec::new(),
            blobs: Vec::new(),
        };
        let mut seen = std::collections::HashSet::new();
        collect(layout, &root, &mut content, &mut seen, 0)?;
        Ok(content)
    }

    pub fn total_blob_bytes(&self) -> u64 {
        self.blobs.iter().map(|(d, _)| d.size).sum()
    }
}

/// Where a blob's bytes come from when a registry needs them uploaded.
///
/// A push from a layout reads files that are already there ([`Path`] via
/// [`Pusher::push_blob`]); a copy between registries fetches a blob into the
/// cache only when some destination can neither find nor mount it
/// (`crate::copy::RegistryBlobs`). The returned file must hold exactly the
/// blob's bytes; it is reopened for each upload attempt.
pub trait BlobSource: Send + Sync {
    fn file<'a>(&'a self, desc: &'a Descriptor) -> BoxFuture<'a, anyhow::Result<PathBuf>>;

    /// Repositories on `registry` known to hold this blob: tried as mount
    /// sources before [`PushOptions::mount_sources`] (`index`: the source
    /// repository of each blob, so that a mount never asks a repository
    /// that lacks it, which would open an upload session). Default: none.
    fn mount_hints(&self, _registry: &str, _desc: &Descriptor) -> Vec<String> {
        Vec::new()
    }
}

/// A blob already in a file.
struct AtPath<'p>(&'p Path);

impl BlobSource for AtPath<'_> {
    fn file<'a>(&'a self, _desc: &'a Descriptor) -> BoxFuture<'a, anyhow::Result<PathBuf>> {
        Box::pin(std::future::ready(Ok(self.0.to_path_buf())))
    }
}

fn collect(
    layout: &Layout,
    desc: &Descriptor,
    out: &mut ImageContent,
    seen: &mut std::collections::HashSet<Digest>,
    depth: usize,
) -> anyhow::Result<()> {
    if depth > 4 {
        return Err(bad_input(format!(
            "{}: indexes nested too deep",
            desc.digest
        )));
    }
    if out.manifests.iter().any(|(d, _)| d.digest == desc.digest) {
        return Ok(());
    }
    let bytes = layout.read_blob(desc)?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("parsing manifest {}", desc.digest))?;
    let media_type = v
        .get("mediaType")
        .and_then(|m| m.as_str())
        .unwrap_or(&desc.media_type)
        .to_string();
    let mut add_blob = |d: &Descriptor, out: &mut ImageContent| -> anyhow::Result<()> {
        if !seen.insert(d.digest.clone()) {
            return Ok(());
        }
        let path = layout.blob_path(&d.digest);
        let meta = std::fs::metadata(&path).map_err(|_| {
            bad_input(format!(
                "the layout {} lacks blob {} (named by manifest {})",
                layout.root().display(),
                d.digest,
                desc.digest
            ))
        })?;
        if meta.len() != d.size {
            return Err(bad_input(format!(
                "blob {} in {} has {} bytes, its descriptor says {}",
                d.digest,
                layout.root().display(),
                meta.len(),
                d.size
            )));
        }
        out.blobs.push((d.clone(), path));
        Ok(())
    };
    if oci::is_index_media_type(&media_type) || v.get("manifests").is_some() {
        let index: oci::Index = serde_json::from_slice(&bytes)
            .with_context(|| format!("parsing index {}", desc.digest))?;
        for child in &index.manifests {
            collect(layout, child, out, seen, depth + 1)?;
        }
    } else {
        let m: oci::Manifest = serde_json::from_slice(&bytes)
            .with_context(|| format!("parsing manifest {}", desc.digest))?;
        add_blob(&m.config, out)?;
        for l in &m.layers {
            add_blob(l, out)?;
        }
    }
    let mut d = desc.clone();
    d.media_type = media_type;
    out.manifests.push((d, Bytes::from(bytes)));
    Ok(())
}

/// Counts for one repository.
#[derive(Clone, Copy, Debug, Default)]
struct RepoCounts {
    uploaded: u64,
    mounted: u64,
    present: u64,
    bytes: u64,
}

/// The state of one registry's push.
struct RegistryPush {
    registry: String,
    /// Target repositories, in order of first appearance.
    repos: Vec<String>,
    /// Other repositories of this registry that may hold blobs.
    mount_sources: Vec<String>,
    /// Per digest: done once; a failure leaves the cell empty for a retry.
    blobs: Mutex<HashMap<Digest, Arc<OnceCell<()>>>>,
    /// Repositories known to hold each digest.
    holders: Mutex<HashMap<Digest, Vec<String>>>,
    counts: Mutex<HashMap<String, RepoCounts>>,
    failed: Mutex<Option<String>>,
    started: Instant,
    progress_id: String,
}

impl RegistryPush {
    fn failure(&self) -> Option<String> {
        self.failed.lock().ok().and_then(|f| f.clone())
    }
    fn fail(&self, msg: String) {
        if let Ok(mut f) = self.failed.lock() {
            if f.is_none() {
                *f = Some(msg);
            }
        }
    }
    fn count(&self, repo: &str, f: impl FnOnce(&mut RepoCounts)) {
        if let Ok(mut c) = self.counts.lock() {
            f(c.entry(repo.to_string()).or_default());
        }
    }
    fn holders(&self, d: &Digest) -> Vec<String> {
        self.holders
            .lock()
            .ok()
            .and_then(|h| h.get(d).cloned())
            .unwrap_or_default()
    }
    fn add_holder(&self, d: &Digest, repo: &str) {
        if let Ok(mut h) = self.holders.lock() {
            let v = h.entry(d.clone()).or_default();
            if !v.iter().any(|r| r == repo) {
                v.push(repo.to_string());
            }
        }
    }
    fn cell(&self, d: &Digest) -> Arc<OnceCell<()>> {
        match self.blobs.lock() {
            Ok(mut m) => m.entry(d.clone()).or_default().clone(),
            Err(_) => Arc::new(OnceCell::new()),
        }
    }
}

/// Pushes to a fixed set of targets.
pub struct Pusher {
    client: Arc<Client>,
    targets: Vec<PushTarget>,
    registries: Vec<Arc<RegistryPush>>,
    mode: UploadMode,
    reporter: SharedReporter,
}

impl Pusher {
    /// Set up: check targets, resolve explicit credentials (bad input when a
    /// variable is missing), build the client.
    pub async fn new(
        targets: Vec<PushTarget>,
        opts: PushOptions,
        store: CredentialStore,
        reporter: SharedReporter,
    ) -> anyhow::Result<Pusher> {
        if targets.is_empty() {
            return Err(bad_input("nothing to push to: give at least one --to REFERENCE (or [[target]] in the recipe)"));
        }
        if opts.chunk_size == Some(0) {
            return Err(bad_input("--chunk-size must be at least 1"));
        }
        let client_opts = opts.client.clone();
        let rep = reporter.clone();
        let client = tokio::task::spawn_blocking(move || Client::new(client_opts, store, rep))
            .await
            .context("client setup task failed")??;
        let env = |k: &str| std::env::var(k).ok();
        let mut explicit: HashMap<String, (String, crate::registry::Credential)> = HashMap::new();
        for t in &targets {
            if let Some(spec) = &t.credentials {
                let cred = spec
                    .resolve(&env)
                    .with_context(|| format!("credentials for {}", t.reference))?;
                let reg = &t.reference.registry;
                match explicit.get(reg) {
                    Some((_, other)) if other != &cred => {
                        return Err(bad_input(format!(
                        "targets on {reg} name different credentials; one registry takes one set"
                    )))
                    }
                    Some(_) => {}
                    None => {
                        explicit.insert(reg.clone(), (spec.username_env.clone(), cred));
                    }
                }
            }
        }
        for (reg, (_, cred)) in explicit {
            client.set_credential(&reg, cred);
        }
        let mut registries: Vec<Arc<RegistryPush>> = Vec::new();
        let mut order: Vec<String> = Vec::new();
        for t in &targets {
            if !order.contains(&t.reference.registry) {
                order.push(t.reference.registry.clone());
            }
        }
        for reg in order {
            let mut repos: Vec<String> = Vec::new();
            for t in targets.iter().filter(|t| t.reference.registry == reg) {
                if !repos.contains(&t.reference.repository) {
                    repos.push(t.reference.repository.clone());
                }
            }
            let mount_sources = opts
                .mount_sources
                .iter()
                .filter(|r| r.registry == reg && !repos.contains(&r.repository))
                .map(|r| r.repository.clone())
                .collect();
            registries.push(Arc::new(RegistryPush {
                progress_id: format!("push:{reg}"),
                registry: reg,
                repos,
                mount_sources,
                blobs: Mutex::new(HashMap::new()),
                holders: Mutex::new(HashMap::new()),
                counts: Mutex::new(HashMap::new()),
                failed: Mutex::new(None),
                started: Instant::now(),
            }));
        }
        let mode = match opts.chunk_size {
            Some(n) => UploadMode::Chunked(n),
            None => UploadMode::Monolithic,
        };
        Ok(Pusher {
            client: Arc::new(client),
            targets,
            registries,
            mode,
            reporter,
        })
    }

    /// The client (for its statistics).
    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }

    /// Announce the bytes to push (one progress task per registry).
    pub fn start_progress(&self, total_blob_bytes: u64) {
        for r in &self.registries {
            self.reporter
                .start(&r.progress_id, &r.registry, Some(total_blob_bytes));
        }
    }

    /// Announce a push whose size is not known yet (`build --push`: layers
    /// arrive as they are built).
    pub fn start_progress_unknown(&self) {
        for r in &self.registries {
            self.reporter.start(&r.progress_id, &r.registry, None);
        }
    }

    /// Make sure every target repository holds the blob `desc` whose bytes
    /// are in `path`, on every registry in parallel. Failures are recorded
    /// against their registry (whose targets then fail); this never errors.
    pub async fn push_blob(&self, desc: &Descriptor, path: &Path) {
        self.push_blob_from(desc, &AtPath(path)).await
    }

    /// [`Pusher::push_blob`] with bytes from `source`, asked for the file
    /// only when a registry needs an upload (present or mounted blobs never
    /// touch it).
    pub async fn push_blob_from(&self, desc: &Descriptor, source: &dyn BlobSource) {
        let futs = self
            .registries
            .iter()
            .map(|r| self.blob_on(r, desc, source));
        futures_util::future::join_all(futs).await;
    }

    async fn blob_on(&self, r: &Arc<RegistryPush>, desc: &Descriptor, source: &dyn BlobSource) {
        if r.failure().is_some() {
            return;
        }
        let cell = r.cell(&desc.digest);
        let res = cell
            .get_or_try_init(|| self.ensure_blob(r, desc, source))
            .await;
        if let Err(e) = res {
            r.fail(format!("{e:#}"));
        }
    }

    async fn ensure_blob(
        &self,
        r: &RegistryPush,
        desc: &Descriptor,
        source: &dyn BlobSource,
    ) -> anyhow::Result<()> {
        let reg = r.registry.as_str();
        let d = &desc.digest;
        // HEAD in every target repository.
        let heads = futures_util::future::join_all(
            r.repos
                .iter()
                .map(|repo| self.client.blob_exists(reg, repo, d)),
        )
        .await;
        let mut missing = Vec::new();
        for (repo, head) in r.repos.iter().zip(heads) {
            match head? {
                Some(_) => {
                    r.count(repo, |c| c.present += 1);
                    r.add_holder(d, repo);
                }
                None => missing.push(repo.clone()),
            }
        }
        if missing.is_empty() {
            self.reporter.advance(&r.progress_id, desc.size);
            return Ok(());
        }
        let mut uploaded_any = false;
        for repo in &missing {
            // Sources: repositories known to hold it, then the mount sources.
            let mut sources: Vec<String> = r.holders(d);
            for hint in source.mount_hints(reg, desc) {
                if !sources.contains(&hint) && &hint != repo {
                    sources.push(hint);
                }
            }
            sources.extend(r.mount_sources.iter().cloned());
            let mut session: Option<UploadSession> = None;
            let mut mounted = false;
            for src in sources.iter().take(3) {
                match self.client.mount_blob(reg, repo, d, src).await {
                    MountResult::Mounted => {
                        self.reporter.log(
                            Level::Debug,
                            &format!("{reg}: mounted {d} into {repo} from {src}"),
                        );
                        mounted = true;
                        break;
                    }
                    MountResult::Session(s) => {
                        // Continue on this session; no other mount is tried
                        // (each would open one more session).
                        session = Some(s);
                        break;
                    }
                    MountResult::Refused(why) => {
                        self.reporter.log(
                            Level::Debug,
                            &format!("{reg}: mount of {d} into {repo} from {src} refused: {why}"),
                        );
                    }
                }
            }
            if mounted {
                r.count(repo, |c| c.mounted += 1);
                r.add_holder(d, repo);
                continue;
            }
            let mode = match self.mode {
                UploadMode::Chunked(n) => UploadMode::Chunked(n),
                _ if reg == "ghcr.io" && desc.size > 512 * 1024 * 1024 => {
                    UploadMode::Chunked(DEFAULT_CHUNK_SIZE)
                }
                m => m,
            };
            let path = source.file(desc).await?;
            self.client
                .upload_blob(
                    reg,
                    repo,
                    d,
                    desc.size,
                    &path,
                    mode,
                    session,
                    Some(r.progress_id.clone()),
                )
                .await?;
            uploaded_any = true;
            r.count(repo, |c| {
                c.uploaded += 1;
                c.bytes += desc.size;
            });
            r.add_holder(d, repo);
        }
        if !uploaded_any {
            self.reporter.advance(&r.progress_id, desc.size);
        }
        Ok(())
    }

    /// Push a whole image: blobs (skipped when already done through
    /// [`Pusher::push_blob`]), manifests by digest, then tags.
    pub async fn push_image(&self, image: &ImageContent) -> PushReport {
        let jobs = self.client.options().jobs_per_registry.max(1) * 2;
        stream::iter(image.blobs.iter())
            .for_each_concurrent(jobs, |(desc, path)| self.push_blob(desc, path))
            .await;
        self.finish_image(image).await
    }

    /// [`Pusher::push_image`] with blob bytes from `source` instead of the
    /// paths in `image.blobs` (`copy`: fetched on demand from a registry).
    pub async fn push_image_from(
        &self,
        image: &ImageContent,
        source: &dyn BlobSource,
    ) -> PushReport {
        let jobs = self.client.options().jobs_per_registry.max(1) * 2;
        stream::iter(image.blobs.iter())
            .for_each_concurrent(jobs, |(desc, _)| self.push_blob_from(desc, source))
            .await;
        self.finish_image(image).await
    }

    /// Manifests, tags and the report, once the blobs are in.
    async fn finish_image(&self, image: &ImageContent) -> PushReport {
        let manifest_results = futures_util::future::join_all(
            self.registries.iter().map(|r| self.manifests_on(r, image)),
        )
        .await;
        let mut tag_results: HashMap<String, Result<Digest, String>> = HashMap::new();
        let mut tag_times: HashMap<String, f64> = HashMap::new();
        for (r, res) in self.registries.iter().zip(manifest_results) {
            for (t, outcome) in res {
                tag_times.insert(t.clone(), r.started.elapsed().as_secs_f64());
                tag_results.insert(t, outcome);
            }
        }
        let mut reports = Vec::new();
        for t in &self.targets {
            let key = t.reference.to_string();
            let r = self
                .registries
                .iter()
                .find(|r| r.registry == t.reference.registry);
            let counts = r
                .and_then(|r| r.counts.lock().ok()?.get(&t.reference.repository).copied())
                .unwrap_or_default();
            let outcome = tag_results
                .get(&key)
                .cloned()
                .unwrap_or_else(|| Err("not pushed".into()));
            if let Err(e) = &outcome {
                let level = if t.optional { Level::Warn } else { Level::Info };
                self.reporter.log(level, &format!("{key}: failed: {e}"));
            } else {
                self.reporter
                    .log(Level::Info, &format!("{key}: pushed {}", image.root.digest));
            }
            reports.push(TargetReport {
                reference: key.clone(),
                registry: t.reference.registry.clone(),
                optional: t.optional,
                ok: outcome.is_ok(),
                digest: outcome.as_ref().ok().cloned(),
                error: outcome.err(),
                blobs_uploaded: counts.uploaded,
                blobs_mounted: counts.mounted,
                blobs_present: counts.present,
                bytes_sent: counts.bytes,
                seconds: tag_times.get(&key).copied().unwrap_or(0.0),
            });
        }
        let registries = self
            .registries
            .iter()
            .map(|r| {
                let stats = self.client.stats(&r.registry);
                let error = r.failure();
                let summary = match &error {
                    None => format!(
                        "{}: {} sent, {} retries",
                        r.registry,
                        human_bytes(stats.bytes_sent),
                        stats.retries
                    ),
                    Some(e) => format!("{}: failed: {e}", r.registry),
                };
                self.reporter.finish(&r.progress_id, &summary);
                RegistryReport {
                    registry: r.registry.clone(),
                    ok: error.is_none(),
                    error,
                    requests: stats.requests,
                    bytes_sent: stats.bytes_sent,
                    retries: stats.retries,
                    seconds: r.started.elapsed().as_secs_f64(),
                }
            })
            .collect();
        PushReport {
            digest: image.root.digest.clone(),
            media_type: image.root.media_type.clone(),
            size: image.root.size,
            targets: reports,
            registries,
        }
    }

    /// Manifests and tags on one registry; returns the outcome per target
    /// reference string.
    async fn manifests_on(
        &self,
        r: &Arc<RegistryPush>,
        image: &ImageContent,
    ) -> Vec<(String, Result<Digest, String>)> {
        let targets: Vec<&PushTarget> = self
            .targets
            .iter()
            .filter(|t| t.reference.registry == r.registry)
            .collect();
        // Every blob must be confirmed on this registry first.
        let unconfirmed = image.blobs.iter().find(|(d, _)| {
            r.blobs
                .lock()
                .ok()
                .and_then(|m| m.get(&d.digest).map(|c| c.initialized()))
                != Some(true)
        });
        if let (None, Some((d, _))) = (r.failure(), unconfirmed) {
            r.fail(format!("blob {} was not confirmed", d.digest));
        }
        if let Some(e) = r.failure() {
            return targets
                .iter()
                .map(|t| (t.reference.to_string(), Err(e.clone())))
                .collect();
        }
        let reg = r.registry.as_str();
        let targets_ref = &targets;
        let per_repo = futures_util::future::join_all(r.repos.iter().map(|repo| async move {
            // The root goes in by tag when a target tags it here: a PUT by
            // digest first would send the same bytes once more.
            let tagged = targets_ref
                .iter()
                .any(|t| &t.reference.repository == repo && t.reference.tag.is_some());
            let res = self.manifests_in_repo(reg, repo, image, tagged).await;
            (repo.clone(), res)
        }))
        .await;
        let mut out = Vec::new();
        for (repo, res) in per_repo {
            for t in targets.iter().filter(|t| t.reference.repository == repo) {
                let key = t.reference.to_string();
                let outcome = match &res {
                    Err(e) => Err(e.clone()),
                    Ok(()) => self.tag(reg, &repo, t, image).await,
                };
                out.push((key, outcome));
            }
        }
        out
    }

    async fn manifests_in_repo(
        &self,
        reg: &str,
        repo: &str,
        image: &ImageContent,
        root_by_tag: bool,
    ) -> Result<(), String> {
        for (desc, bytes) in &image.manifests {
            if root_by_tag && desc.digest == image.root.digest {
                continue;
            }
            let reference = desc.digest.to_string();
            let present = self
                .client
                .head_manifest(reg, repo, &reference)
                .await
                .map_err(|e| e.to_string())?;
            if present.is_some_and(|p| p.digest == desc.digest) {
                continue;
            }
            self.client
                .put_manifest(reg, repo, &reference, bytes.clone(), &desc.media_type)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    async fn tag(
        &self,
        reg: &str,
        repo: &str,
        t: &PushTarget,
        image: &ImageContent,
    ) -> Result<Digest, String> {
        let root = &image.root.digest;
        if let Some(d) = &t.reference.digest {
            if d != root {
                return Err(format!(
                    "the target names digest {d}, but the image's digest is {root}"
                ));
            }
        }
        let Some(tag) = &t.reference.tag else {
            return Ok(root.clone());
        };
        let current = self
            .client
            .head_manifest(reg, repo, tag)
            .await
            .map_err(|e| e.to_string())?;
        if current.is_some_and(|c| &c.digest == root) {
            return Ok(root.clone());
        }
        let bytes = image
            .manifests
            .iter()
            .find(|(d, _)| &d.digest == root)
            .map(|(d, b)| (d.media_type.clone(), b.clone()))
            .ok_or_else(|| "internal: root manifest missing".to_string())?;
        self.client
            .put_manifest(reg, repo, tag, bytes.1, &bytes.0)
            .await
            .map_err(|e| e.to_string())
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Push the image in the layout `image` (`DIR` or `DIR:NAME`) to `targets`.
/// Returns a report even when targets failed; check
/// [`PushReport::succeeded`] / [`PushReport::error`]. Errors are for
/// problems before any network work (bad layout, references, credentials
/// variables).
pub async fn push(
    image: &str,
    targets: Vec<PushTarget>,
    opts: PushOptions,
    reporter: SharedReporter,
) -> anyhow::Result<PushReport> {
    let (dir, name) = split_layout_ref(image);
    let content = tokio::task::spawn_blocking(move || -> anyhow::Result<ImageContent> {
        let layout = Layout::open(&dir)?;
        ImageContent::from_layout(&layout, name.as_deref())
    })
    .await
    .context("layout reading task failed")?
    .with_context(|| format!("reading image {image}"))?;
    let store = CredentialStore::from_env();
    let pusher = Pusher::new(targets, opts, store, reporter).await?;
    pusher.start_progress(content.total_blob_bytes());
    Ok(pusher.push_image(&content).await)
}

/// [`push`] on a runtime of its own, for synchronous callers.
pub fn push_blocking(
    image: &str,
    targets: Vec<PushTarget>,
    opts: PushOptions,
    reporter: SharedReporter,
) -> anyhow::Result<PushReport> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(push(image, targets, opts, reporter))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::LayoutWriter;
    use crate::oci::{canonical_json, Index, Manifest, Platform};
    use crate::registry::smoke_tests::{start_registry, write_random, Recorder};

    /// A layout with an index of two platforms sharing one layer.
    fn two_platform_layout(dir: &Path) -> (PathBuf, u64, usize) {
        let dest = dir.join("layout");
        let w = LayoutWriter::create(&dest).unwrap();
        let scratch = dir.join("scratch");
        std::fs::create_dir_all(&scratch).unwrap();
        let (shared, ds) = write_random(&scratch, "shared", 1024 * 1024 + 3);
        let mut unique: u64 = 1024 * 1024 + 3;
        let mut count = 1;
        w.import_blob(&shared, &ds).unwrap();
        let mut manifests = Vec::new();
        for (i, arch) in ["amd64", "arm64"].iter().enumerate() {
            let (own, d) = write_random(&scratch, arch, 200_000 + i);
            w.import_blob(&own, &d).unwrap();
            let cfg = w
                .write_blob(
                    oci::MEDIA_TYPE_CONFIG,
                    format!(r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}}}}"#).as_bytes(),
                )
                .unwrap();
            unique += 200_000 + i as u64 + cfg.size;
            count += 2;
            let m = Manifest {
                schema_version: 2,
                media_type: Some(oci::MEDIA_TYPE_MANIFEST.into()),
                artifact_type: None,
                config: cfg,
                layers: vec![
                    Descriptor::new(oci::MEDIA_TYPE_LAYER_GZIP, ds.clone(), 1024 * 1024 + 3),
                    Descriptor::new(oci::MEDIA_TYPE_LAYER_GZIP, d, 200_000 + i as u64),
                ],
                subject: None,
                annotations: Default::default(),
            };
            let mut md = w
                .write_blob(oci::MEDIA_TYPE_MANIFEST, &canonical_json(&m))
                .unwrap();
            md.platform = Some(Platform::parse(&format!("linux/{arch}")).unwrap());
            manifests.push(md);
        }
        let idx = w
            .write_blob(
                oci::MEDIA_TYPE_INDEX,
                &canonical_json(&Index::new(manifests)),
            )
            .unwrap();
        let mut top = idx;
        top.annotations
            .insert(oci::ANNOTATION_REF_NAME.into(), "1.0".into());
        w.commit(vec![top]).unwrap();
        (dest, unique, count)
    }

    fn opts() -> PushOptions {
        PushOptions::default()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dual_push_sends_each_blob_once_per_registry_then_heads_only() {
        let (Some(a), Some(b)) = (start_registry(), start_registry()) else {
            return;
        };
        let tmp = tempfile::tempdir().unwrap();
        let (layout, unique_bytes, blob_count) = two_platform_layout(tmp.path());
        let targets: Vec<PushTarget> = [
            format!("{}/acme/r2d:1.4.0", a.host),
            format!("{}/acme/r2d:latest", a.host),
            format!("{}/mirror/r2d:1.4.0", a.host),
            format!("{}/acme/r2d:1.4.0", b.host),
            format!("{}/acme/r2d:latest", b.host),
        ]
        .iter()
        .map(|s| PushTarget::parse(s).unwrap())
        .collect();
        let rec = Arc::new(Recorder(Default::default()));
        let report = push(
            layout.to_str().unwrap(),
            targets.clone(),
            opts(),
            rec.clone(),
        )
        .await
        .unwrap();
        assert!(report.succeeded(), "{:#?}", report);
        assert_eq!(report.targets.len(), 5);
        assert!(report
            .targets
            .iter()
            .all(|t| t.digest.as_ref() == Some(&report.digest)));
        // Registry A: every blob uploaded once into acme/r2d, mounted into mirror/r2d.
        let t = |r: &str| report.targets.iter().find(|t| t.reference == r).unwrap();
        let a1 = t(&format!("{}/acme/r2d:1.4.0", a.host));
        assert_eq!(
            (a1.blobs_uploaded, a1.bytes_sent),
            (blob_count as u64, unique_bytes)
        );
        let m = t(&format!("{}/mirror/r2d:1.4.0", a.host));
        assert_eq!(
            (m.blobs_mounted, m.blobs_uploaded, m.bytes_sent),
            (blob_count as u64, 0, 0)
        );
        let b1 = t(&format!("{}/acme/r2d:1.4.0", b.host));
        assert_eq!(
            (b1.blobs_uploaded, b1.bytes_sent),
            (blob_count as u64, unique_bytes)
        );
        // Body bytes per registry: unique blobs once, plus the manifests.
        let manifest_bytes: u64 = {
            let l = Layout::open(&layout).unwrap();
            let c = ImageContent::from_layout(&l, None).unwrap();
            c.manifests.iter().map(|(_, b)| b.len() as u64).sum()
        };
        for reg in &report.registries {
            let repos = if reg.registry == a.host { 2 } else { 1 };
            let tags = if reg.registry == a.host { 3 } else { 2 };
            // Platform manifests by digest in each repo, the index once per
            // tag (not by digest too: the tag PUT stores it).
            let index_size = report.size;
            assert_eq!(
                reg.bytes_sent,
                unique_bytes + repos * (manifest_bytes - index_size) + tags * index_size,
                "{reg:#?}"
            );
            assert_eq!(reg.retries, 0);
        }
        // Registries hold the index under every tag.
        let client = crate::registry::client::default_client().unwrap();
        for t in &targets {
            let r = &t.reference;
            let info = client
                .head_manifest(&r.registry, &r.repository, r.tag.as_deref().unwrap())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(info.digest, report.digest);
            assert_eq!(info.media_type, oci::MEDIA_TYPE_INDEX);
        }
        // No manifest PUT before the last blob upload on each registry.
        let log = rec.0.lock().unwrap().clone();
        for reg in [&a.host, &b.host] {
            let lines: Vec<&String> = log.iter().filter(|l| l.contains(reg.as_str())).collect();
            let last_blob = lines.iter().rposition(|l| {
                (l.starts_with("PUT ") || l.starts_with("POST ")) && l.contains("/blobs/")
            });
            let first_manifest = lines
                .iter()
                .position(|l| l.starts_with("PUT ") && l.contains("/manifests/"));
            assert!(last_blob < first_manifest, "{lines:#?}");
        }

        // Again: HEAD requests only (plus the /v2/ ping), zero bytes.
        let again = push(
            layout.to_str().unwrap(),
            targets,
            opts(),
            crate::progress::silent(),
        )
        .await
        .unwrap();
        assert!(again.succeeded());
        for reg in &again.registries {
            assert_eq!(reg.bytes_sent, 0, "{reg:#?}");
            let methods: Vec<&String> = reg.requests.keys().collect();
            assert_eq!(methods, ["GET", "HEAD"], "{reg:#?}");
            assert_eq!(reg.requests["GET"], 1, "only the /v2/ ping");
        }
        assert!(again
            .targets
            .iter()
            .all(|t| t.blobs_uploaded == 0 && t.blobs_present == blob_count as u64));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn optional_target_failure_only_warns() {
        let Some(a) = start_registry() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let (layout, _, _) = two_platform_layout(tmp.path());
        // A port where nothing listens.
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut backup = PushTarget::parse(&format!("127.0.0.1:{dead}/acme/r2d:1")).unwrap();
        backup.optional = true;
        let targets = vec![
            PushTarget::parse(&format!("{}/acme/r2d:1", a.host)).unwrap(),
            backup,
        ];
        let mut o = opts();
        o.client.retry.max_retries = 1;
        o.client.retry.base = std::time::Duration::from_millis(10);
        let report = push(
            &format!("{}:1.0", layout.display()),
            targets,
            o,
            crate::progress::silent(),
        )
        .await
        .unwrap();
        assert!(report.succeeded(), "{report:#?}");
        assert_eq!(report.warnings().len(), 1);
        let failed = report.targets.iter().find(|t| !t.ok).unwrap();
        let e = failed.error.as_deref().unwrap();
        assert!(e.contains(&format!("127.0.0.1:{dead}")), "{e}");
        assert!(report.error().is_none());
    }

    #[test]
    fn targets_from_strings_and_recipe() {
        let t = PushTarget::parse("ghcr.io/acme/r2d").unwrap();
        assert_eq!(t.reference.to_string(), "ghcr.io/acme/r2d:latest");
        assert!(crate::error::is_bad_input(
            &PushTarget::parse("ghcr.io/Acme/x").unwrap_err()
        ));
        let recipe = vec![crate::recipe::Target {
            reference: "docker.io/acme/r2d".into(),
            role: crate::recipe::Role::Backup,
            username_env: Some("DOCKERHUB_USER".into()),
            password_env: Some("DOCKERHUB_API_KEY_ENCODED".into()),
            base64: true,
            optional: true,
        }];
        let ts = PushTarget::from_recipe(&recipe, &["1.4.0".into(), "latest".into()]).unwrap();
        assert_eq!(ts.len(), 2);
        assert_eq!(ts[1].reference.to_string(), "docker.io/acme/r2d:latest");
        assert!(ts[0].optional);
        assert_eq!(
            ts[0].credentials.as_ref().unwrap().encoding,
            crate::registry::SecretEncoding::Base64
        );
    }
}

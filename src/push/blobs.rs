//! Blobs on one registry: each digest at most once (a once-map that forgets
//! failures), by HEAD in every target repository, then a mount from a
//! repository known to hold it (in this run, or remembered from earlier
//! runs), then one upload into the first repository that still lacks it,
//! and mounts into the rest. A target repository the registry refuses is
//! set aside (its targets fail) while the others go on.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Result;
use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

use super::manifests::Tagged;
use super::report::PushError;
use super::targets::RegistryGroup;
use crate::image::once::OnceMap;
use crate::image::ImageSource;
use crate::oci::{total_size, Descriptor, Digest};
use crate::progress::{Level, SharedReporter};
use crate::registry::blobs::{MountResult, StreamUpload, UploadMode, UploadSession};
use crate::registry::client::OnceBody;
use crate::registry::{Client, RegistryError, Repo};

/// How many mount sources are asked before uploading.
const MAX_MOUNT_TRIES: usize = 3;

/// Where a blob's bytes are, when a registry needs them.
#[derive(Clone, Copy)]
pub enum BlobBytes<'a> {
    /// In a file already (a layer just built).
    File(&'a Path),
    /// Asked of an image (a registry fetches it into the cache only then).
    Source(&'a dyn ImageSource),
}

impl BlobBytes<'_> {
    async fn file(&self, desc: &Descriptor) -> Result<PathBuf> {
        match self {
            BlobBytes::File(p) => Ok(p.to_path_buf()),
            BlobBytes::Source(s) => s.blob(desc).await,
        }
    }

    fn mount_hints(&self, registry: &str, desc: &Descriptor) -> Vec<String> {
        match self {
            BlobBytes::File(_) => Vec::new(),
            BlobBytes::Source(s) => s.mount_hints(registry, desc),
        }
    }
}

/// What a streamed upload (`BlobPusher::stream`) is fed: the blob's
/// bytes in order, then its descriptor.
#[derive(Debug)]
pub enum Piece {
    Bytes(Bytes),
    End(Box<Descriptor>),
}

/// Counts for one repository.
#[derive(Clone, Copy, Debug, Default)]
pub struct RepoCounts {
    pub uploaded: u64,
    pub mounted: u64,
    pub present: u64,
    pub bytes: u64,
}

#[derive(Default)]
struct State {
    /// Repositories known to hold each digest.
    holders: HashMap<Digest, Vec<String>>,
    counts: HashMap<String, RepoCounts>,
    /// The first failure; the registry's targets then all fail.
    failed: Option<PushError>,
    /// Target repositories the registry refused (their access or their
    /// name): only their targets fail, and they are sent nothing more.
    refused: HashMap<String, PushError>,
    /// The repository each blob was streamed into.
    streamed: HashMap<Digest, String>,
    /// Each target done (by its reference string): its outcome and the
    /// seconds since the registry's push started, as it was known.
    outcomes: HashMap<String, (Result<Tagged, PushError>, f64)>,
}

/// The push to one registry.
pub struct RegistryPush {
    pub group: RegistryGroup,
    done: OnceMap<Digest, ()>,
    state: Mutex<State>,
    pub started: Instant,
    pub progress_id: String,
}

impl RegistryPush {
    pub fn new(group: RegistryGroup) -> RegistryPush {
        RegistryPush {
            progress_id: format!("push:{}", group.registry),
            group,
            done: OnceMap::default(),
            state: Mutex::new(State::default()),
            started: Instant::now(),
        }
    }

    pub fn registry(&self) -> &str {
        &self.group.registry
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> Option<T> {
        self.state.lock().ok().map(|mut s| f(&mut s))
    }

    pub fn failure(&self) -> Option<PushError> {
        self.with(|s| s.failed.clone()).flatten()
    }

    pub fn fail(&self, e: PushError) {
        self.with(|s| s.failed.get_or_insert(e).clone());
    }

    /// Why the registry refused target repository `repo`, if it did.
    pub fn repo_failure(&self, repo: &str) -> Option<PushError> {
        self.with(|s| s.refused.get(repo).cloned()).flatten()
    }

    fn refuse(&self, repo: &str, e: anyhow::Error) {
        let e = PushError::Blob(Arc::new(e));
        self.with(|s| s.refused.entry(repo.to_string()).or_insert(e).clone());
    }

    /// The target repositories not refused, in order.
    fn live_repos(&self) -> Vec<String> {
        let refused = self.with(|s| s.refused.keys().cloned().collect::<Vec<_>>());
        let refused = refused.unwrap_or_default();
        (self.group.repos.iter())
            .filter(|r| !refused.contains(r))
            .cloned()
            .collect()
    }

    /// The repository blob `d` was streamed into in this run, if any.
    pub fn streamed_into(&self, d: &Digest) -> Option<String> {
        self.with(|s| s.streamed.get(d).cloned()).flatten()
    }

    /// Record that target `reference` is done, with `outcome`.
    pub fn record(&self, reference: &str, outcome: &Result<Tagged, PushError>) {
        let seconds = self.started.elapsed().as_secs_f64();
        self.with(|s| {
            s.outcomes
                .insert(reference.to_string(), (outcome.clone(), seconds))
        });
    }

    /// The outcome of target `reference`, once it is done.
    pub fn outcome(&self, reference: &str) -> Option<(Result<Tagged, PushError>, f64)> {
        self.with(|s| s.outcomes.get(reference).cloned()).flatten()
    }

    pub fn counts(&self, repo: &str) -> RepoCounts {
        self.with(|s| s.counts.get(repo).copied())
            .flatten()
            .unwrap_or_default()
    }

    fn count(&self, repo: &str, f: impl FnOnce(&mut RepoCounts)) {
        self.with(|s| f(s.counts.entry(repo.to_string()).or_default()));
    }

    fn holders(&self, d: &Digest) -> Vec<String> {
        self.with(|s| s.holders.get(d).cloned())
            .flatten()
            .unwrap_or_default()
    }

    fn add_holder(&self, d: &Digest, repo: &str) {
        self.with(|s| {
            let v = s.holders.entry(d.clone()).or_default();
            if !v.iter().any(|r| r == repo) {
                v.push(repo.to_string());
            }
        });
    }

    /// Whether blob `d` is confirmed in every target repository.
    pub fn confirmed(&self, d: &Digest) -> bool {
        self.done.get(d).is_some()
    }
}

/// What the blob step needs of the pusher.
pub struct BlobPusher<'a> {
    pub client: &'a Client,
    pub reporter: &'a SharedReporter,
    pub mode: UploadMode,
}

impl BlobPusher<'_> {
    /// Make sure every target repository of `r` holds `desc`, once per run;
    /// a failure is recorded against the registry (and forgotten by the
    /// once-map, so that a later call tries again).
    pub async fn push(&self, r: &RegistryPush, desc: &Descriptor, bytes: BlobBytes<'_>) {
        self.push_after(r, desc, bytes, None).await
    }

    /// [`BlobPusher::push`] once `streamed`, when given, holds the blob
    /// (its upload by [`BlobPusher::stream`] in this run is counted there):
    /// the other target repositories get it as usual.
    pub async fn push_after(
        &self,
        r: &RegistryPush,
        desc: &Descriptor,
        bytes: BlobBytes<'_>,
        streamed: Option<&str>,
    ) {
        if r.failure().is_some() {
            return;
        }
        if let Some(e) = self.client.unreachable(r.registry()) {
            r.fail(PushError::Registry(e));
            return;
        }
        let res = r
            .done
            .get_or_try_init(&desc.digest, || self.ensure(r, desc, bytes, streamed))
            .await;
        if let Err(e) = res {
            r.fail(PushError::Blob(Arc::new(e)));
        }
    }

    async fn ensure(
        &self,
        r: &RegistryPush,
        desc: &Descriptor,
        bytes: BlobBytes<'_>,
        streamed: Option<&str>,
    ) -> Result<()> {
        let reg = r.registry();
        let d = &desc.digest;
        let mut uploaded_any = false;
        if let Some(repo) = streamed {
            uploaded_any = true;
            r.count(repo, |c| {
                c.uploaded += 1;
                c.bytes = total_size([c.bytes, desc.size]);
            });
            r.add_holder(d, repo);
        }
        let others: Vec<String> = (r.live_repos().into_iter())
            .filter(|repo| Some(repo.as_str()) != streamed)
            .collect();
        let heads = futures_util::future::join_all(
            others
                .iter()
                .map(|repo| self.client.repo(reg, repo).blob_exists(d)),
        )
        .await;
        let mut missing = Vec::new();
        for (repo, head) in others.into_iter().zip(heads) {
            // One of another size (truncated in the registry's storage) is
            // sent again, as one that is missing.
            match head {
                Ok(Some(held)) if held.is_of_size(desc.size) => {
                    r.count(&repo, |c| c.present += 1);
                    r.add_holder(d, &repo);
                }
                Ok(_) => missing.push(repo),
                Err(e) => refused_here(r, &repo, e)?,
            }
        }
        for repo in &missing {
            let target = self.client.repo(reg, repo);
            let session = match self.mount(r, desc, target, &bytes).await {
                Mount::Done => {
                    r.count(repo, |c| c.mounted += 1);
                    r.add_holder(d, repo);
                    continue;
                }
                Mount::Session(s) => Some(s),
                Mount::Refused => None,
            };
            let path = match bytes.file(desc).await {
                Ok(p) => p,
                Err(e) => {
                    if let Some(s) = session {
                        target.cancel_upload(&s).await;
                    }
                    return Err(e);
                }
            };
            let upload = target
                .upload_blob(
                    d,
                    desc.size,
                    &path,
                    target.host().upload_mode(self.mode, desc.size),
                    session,
                    Some(r.progress_id.clone()),
                )
                .await;
            if let Err(e) = upload {
                refused_here(r, repo, e)?;
                continue;
            }
            uploaded_any = true;
            r.count(repo, |c| {
                c.uploaded += 1;
                c.bytes = total_size([c.bytes, desc.size]);
            });
            r.add_holder(d, repo);
        }
        if r.live_repos().is_empty() {
            // Every target repository refused: the registry fails with the
            // first refusal.
            if let Some(e) = r.group.repos.iter().find_map(|repo| r.repo_failure(repo)) {
                r.fail(e);
            }
            anyhow::bail!("{reg}: every target repository refused the push");
        }
        if !uploaded_any {
            self.reporter.advance(&r.progress_id, desc.size);
        }
        Ok(())
    }

    /// Upload the bytes received on `rx` into the first target repository
    /// of `r` as they come, in chunks of at most the registry's chunk size,
    /// on one session completed with the digest of the [`Piece::End`] that
    /// follows them. The blob's descriptor when it is stored; `None` when
    /// it is not (an error, or `rx` closed before the end), its session
    /// then cancelled and the reason logged: the blob is to be uploaded
    /// from its file.
    pub async fn stream(
        &self,
        r: &RegistryPush,
        what: &str,
        rx: mpsc::Receiver<Piece>,
    ) -> Option<Descriptor> {
        if r.failure().is_some() {
            return None;
        }
        let reg = r.registry();
        let into = r.live_repos().into_iter().next()?;
        let repo = self.client.repo(reg, &into);
        let mut up = match repo
            .start_stream_upload(what, Some(r.progress_id.clone()))
            .await
        {
            Ok(up) => up,
            Err(e) => {
                self.reporter
                    .log(Level::Debug, &format!("{reg}: not streaming {what}: {e}"));
                return None;
            }
        };
        let host = repo.host();
        let asked = match self.mode {
            UploadMode::Chunked(n) => n,
            _ => host.chunk_size(),
        };
        let chunk = host
            .patch_cap
            .map_or(asked, |cap| asked.min(cap))
            .max(up.chunk_min().unwrap_or(1)) as usize;
        // Chunks only where the registry caps them, or when asked: each
        // chunk costs the registry the saving of its hash state.
        let whole = host.patch_cap.is_none() && !matches!(self.mode, UploadMode::Chunked(_));
        let fed = if whole {
            feed_whole(&mut up, rx).await
        } else {
            feed(&mut up, chunk, rx).await
        };
        let outcome = match fed {
            Ok(desc) if up.sent() == desc.size => match up.finish(&desc.digest).await {
                Ok(()) => Ok(desc),
                Err(e) => Err(e.to_string()),
            },
            Ok(desc) => Err(format!(
                "{} bytes streamed for {} of {} bytes",
                up.sent(),
                desc.digest,
                desc.size
            )),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(desc) => {
                self.reporter.log(
                    Level::Debug,
                    &format!("{reg}: streamed {what} as {}", desc.digest),
                );
                r.with(|s| s.streamed.insert(desc.digest.clone(), into));
                Some(desc)
            }
            Err(e) => {
                up.cancel().await;
                self.reporter.log(
                    Level::Debug,
                    &format!("{reg}: streaming {what} failed, uploading it once built: {e}"),
                );
                None
            }
        }
    }

    /// Try mount sources into `target`: repositories known in this run to
    /// hold the blob and the image's hints, then those remembered from
    /// earlier runs ([`Client::known`]), then the configured mount sources.
    async fn mount(
        &self,
        r: &RegistryPush,
        desc: &Descriptor,
        target: Repo<'_>,
        bytes: &BlobBytes<'_>,
    ) -> Mount {
        let (reg, repo, d) = (r.registry(), target.repository(), &desc.digest);
        let mut sources = r.holders(d);
        for hint in bytes.mount_hints(reg, desc) {
            if !sources.contains(&hint) && hint != repo {
                sources.push(hint);
            }
        }
        let known = sources.len();
        sources.extend(r.group.mount_sources.iter().cloned());
        let remembered = self.remembered(target, d, &sources);
        let tries = sources
            .iter()
            .take(known)
            .map(|s| (s, false))
            .chain(remembered.iter().map(|s| (s, true)))
            .chain(sources.iter().skip(known).map(|s| (s, false)));
        let mut asked = 0;
        for (src, is_remembered) in tries {
            if !is_remembered {
                if asked == MAX_MOUNT_TRIES {
                    continue;
                }
                asked += 1;
            }
            match target.mount_blob(d, src).await {
                MountResult::Mounted => {
                    self.reporter.log(
                        Level::Debug,
                        &format!("{reg}: mounted {d} into {repo} from {src}"),
                    );
                    return Mount::Done;
                }
                // A remembered location that does not hold the blob:
                // forget it, give the session back, and go on.
                MountResult::Session(s) if is_remembered => {
                    self.reporter.log(
                        Level::Debug,
                        &format!("{reg}: {src} no longer holds {d}; forgotten"),
                    );
                    self.client.repo(reg, src).forget(d);
                    target.cancel_upload(&s).await;
                }
                // Continue on this session; no other mount is tried (each
                // would open one more session).
                MountResult::Session(s) => return Mount::Session(s),
                MountResult::Refused(why) => self.reporter.log(
                    Level::Debug,
                    &format!("{reg}: mount of {d} into {repo} from {src} refused: {why}"),
                ),
            }
        }
        Mount::Refused
    }

    /// Up to [`MAX_MOUNT_TRIES`] repositories of the target's registry
    /// remembered to hold `d`, other than the target (which lacks it: that
    /// memory is forgotten) and those in `skip`.
    fn remembered(&self, target: Repo<'_>, d: &Digest, skip: &[String]) -> Vec<String> {
        let Some(k) = self.client.known() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for src in k.repositories(target.registry(), d) {
            if src == target.repository() {
                target.forget(d);
            } else if !skip.contains(&src) && out.len() < MAX_MOUNT_TRIES {
                out.push(src);
            }
        }
        out
    }
}

/// Send what `rx` brings on `up`, `chunk` bytes at a time (the last chunk
/// shorter), until the blob's descriptor: returned when every byte went.
/// `rx` is dropped on return, so that a failure stops the bytes at once.
async fn feed(
    up: &mut StreamUpload<'_>,
    chunk: usize,
    mut rx: mpsc::Receiver<Piece>,
) -> Result<Descriptor, String> {
    let mut buf = BytesMut::new();
    loop {
        match rx.recv().await {
            Some(Piece::Bytes(b)) => {
                buf.extend_from_slice(&b);
                while buf.len() >= chunk {
                    let next = buf.split_to(chunk).freeze();
                    up.send(next).await.map_err(|e| e.to_string())?;
                }
            }
            Some(Piece::End(desc)) => {
                if !buf.is_empty() {
                    up.send(buf.split().freeze())
                        .await
                        .map_err(|e| e.to_string())?;
                }
                return Ok(*desc);
            }
            None => return Err("the build stopped before the layer was complete".into()),
        }
    }
}

/// Send the bytes received on `rx` as one `PATCH` of the whole stream,
/// made as they come; the descriptor of the [`Piece::End`] that ends them.
async fn feed_whole(
    up: &mut StreamUpload<'_>,
    rx: mpsc::Receiver<Piece>,
) -> Result<Descriptor, String> {
    let end: Arc<Mutex<Option<Descriptor>>> = Arc::default();
    let slot = end.clone();
    let stream = futures_util::stream::unfold(Some(rx), move |rx| {
        let slot = slot.clone();
        async move {
            let mut rx = rx?;
            match rx.recv().await {
                Some(Piece::Bytes(b)) => Some((Ok(b), Some(rx))),
                Some(Piece::End(d)) => {
                    *slot.lock().expect("no panics under the lock") = Some(*d);
                    None
                }
                None => Some((
                    Err(std::io::Error::other(
                        "the build stopped before the layer was complete",
                    )),
                    None,
                )),
            }
        }
    });
    up.send_all(OnceBody::new(Box::pin(stream)))
        .await
        .map_err(|e| e.to_string())?;
    let desc = end.lock().expect("no panics under the lock").take();
    desc.ok_or_else(|| "the registry answered before the layer was complete".to_string())
}

/// Keep `e`, a failed blob request into target repository `repo`, to that
/// repository when the registry refused the repository itself (401, 403,
/// 404: its access or its name), so that the registry's other target
/// repositories go on; any other failure is the registry's.
fn refused_here(r: &RegistryPush, repo: &str, e: RegistryError) -> Result<()> {
    if matches!(e.status(), Some(401 | 403 | 404)) {
        r.refuse(repo, e.into());
        Ok(())
    } else {
        Err(e.into())
    }
}

enum Mount {
    Done,
    Session(UploadSession),
    Refused,
}

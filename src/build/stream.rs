//! The streams of `build --push`: each layer the build writes goes to every
//! registry as it is compressed ([`stream_hook`], [`LayerUpload`]), and
//! [`stream_layers`] finishes each layer on every registry once its file is
//! kept aside: counted where its stream stored it, uploaded from the file
//! where it did not, pushed from the file when it was not streamed at all.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use tokio::runtime::Handle;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;

use crate::oci::{Descriptor, Digest};
use crate::push::{BlobBytes, Piece, Pusher};
use crate::recipe::LayerPlan;

use super::{LayerStartHook, LayerStream};

/// A layer's compressed bytes go to the registries in pieces of this size.
const PIECE: usize = 1 << 20;

/// Pieces waiting for each registry's upload of a layer: with the piece
/// being filled and the chunk being sent, at most about 13 MiB per
/// registry and layer in memory.
const PIECES_BUFFERED: usize = 8;

/// How long the build waits for a registry whose upload takes no more
/// bytes (or has not opened its session yet) before it stops streaming the
/// layer there; the layer then goes from its file once built, and later
/// layers are not streamed to that registry.
const STREAM_STALL: Duration = Duration::from_secs(2);

/// What the build hands to the uploads ([`stream_layers`]).
pub(super) enum Ready {
    /// A layer streamed to the registries is complete: the uploads of its
    /// bytes, by registry. Sent before the layer's `Finished`.
    Streamed(Digest, Vec<Upload>),
    /// A layer is finished; its file is kept aside at this path.
    Finished(Box<Descriptor>, PathBuf),
}

/// One registry's streamed upload of a layer: the descriptor of what it
/// stored, if it did.
type Upload = (String, JoinHandle<Option<Descriptor>>);

/// The layer start hook: one streamed upload per registry, fed by a
/// [`LayerUpload`]; none to the registries in `not_streamed`.
pub(super) fn stream_hook(
    pusher: Arc<Pusher>,
    handle: Handle,
    tx: UnboundedSender<Ready>,
    not_streamed: HashSet<String>,
) -> LayerStartHook {
    let stalled = Arc::new(Mutex::new(not_streamed));
    Arc::new(move |plan: &LayerPlan| {
        let what = format!("layer {:?}", plan.name);
        let mut senders = Vec::new();
        let mut uploads = Vec::new();
        let skip = stalled.lock().expect("no panics under the lock").clone();
        for registry in pusher.registries() {
            if skip.contains(&registry) || pusher.client().unreachable(&registry).is_some() {
                continue;
            }
            let (s, rx) = mpsc::channel(PIECES_BUFFERED);
            let (p, r, w) = (pusher.clone(), registry.clone(), what.clone());
            let up = handle.spawn(async move { p.stream_blob(&r, &w, rx).await });
            senders.push(Some(Feed {
                tx: s,
                registry: registry.clone(),
            }));
            uploads.push((registry, up));
        }
        if senders.is_empty() {
            return None;
        }
        Some(Box::new(LayerUpload {
            senders,
            uploads,
            buf: Vec::with_capacity(PIECE),
            handle: handle.clone(),
            stall: STREAM_STALL,
            stalled: stalled.clone(),
            tx: tx.clone(),
        }) as Box<dyn LayerStream>)
    })
}

/// A layer's bytes on their way to each registry's upload. A registry
/// whose upload is gone (it failed), or that takes nothing for `stall`
/// ([`STREAM_STALL`]; a session not opened yet takes nothing) gets no
/// more; its upload then fails, and the layer goes from its file. A
/// registry that stalled is put in `stalled`: later layers are not
/// streamed there, so a hanging registry costs one stall, not one per layer.
struct LayerUpload {
    /// By registry; `None` once that registry gets no more.
    senders: Vec<Option<Feed>>,
    uploads: Vec<Upload>,
    /// Bytes not sent yet, up to [`PIECE`].
    buf: Vec<u8>,
    handle: Handle,
    stall: Duration,
    stalled: Arc<Mutex<HashSet<String>>>,
    tx: UnboundedSender<Ready>,
}

/// One registry's upload of a layer, as the build sees it.
struct Feed {
    tx: mpsc::Sender<Piece>,
    registry: String,
}

impl LayerUpload {
    /// Hand `piece()` to every registry still streaming, waiting (within
    /// `stall`) while one's buffer is full.
    fn send(&mut self, piece: impl Fn() -> Piece) {
        for slot in &mut self.senders {
            let Some(Feed { tx: s, registry }) = slot else {
                continue;
            };
            let sent = match s.try_send(piece()) {
                Ok(()) => true,
                Err(TrySendError::Full(p)) => {
                    // The timer is made inside `block_on`, on the runtime:
                    // this is one of the build's threads.
                    let stall = self.stall;
                    let wait = self
                        .handle
                        .block_on(async { tokio::time::timeout(stall, s.send(p)).await });
                    if wait.is_err() {
                        self.stalled
                            .lock()
                            .expect("no panics under the lock")
                            .insert(registry.clone());
                    }
                    matches!(wait, Ok(Ok(())))
                }
                Err(TrySendError::Closed(_)) => false,
            };
            if !sent {
                *slot = None;
            }
        }
    }

    fn send_buffered(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let bytes = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(PIECE)));
        self.send(|| Piece::Bytes(bytes.clone()));
    }
}

impl LayerStream for LayerUpload {
    fn write(&mut self, bytes: &[u8]) {
        if self.senders.iter().all(Option::is_none) {
            return;
        }
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= PIECE {
            self.send_buffered();
        }
    }

    fn finish(mut self: Box<Self>, blob: Option<&Descriptor>) {
        // Without a blob, dropping the senders ends the uploads, which
        // cancel their sessions.
        let Some(desc) = blob else { return };
        self.send_buffered();
        self.send(|| Piece::End(Box::new(desc.clone())));
        let uploads = std::mem::take(&mut self.uploads);
        let _ = self.tx.send(Ready::Streamed(desc.digest.clone(), uploads));
    }
}

/// What one registry's finishing task is handed.
enum Work {
    /// The streamed upload of a layer to this registry.
    Streamed(Digest, JoinHandle<Option<Descriptor>>),
    /// A finished layer and its file.
    Finished(Arc<Descriptor>, Arc<PathBuf>),
}

/// Finish every layer received on each of `pusher`'s registries, until the
/// senders are gone: a streamed layer is counted where its stream stored
/// it and uploaded from its file where it did not, any other is pushed
/// from its file. Each registry is finished by a task of its own, returned
/// by registry: one that is slow or failing holds back no other.
pub(super) fn stream_layers(
    pusher: Arc<Pusher>,
    mut rx: UnboundedReceiver<Ready>,
) -> HashMap<String, JoinHandle<()>> {
    let mut queues = HashMap::new();
    let mut tasks = HashMap::new();
    for registry in pusher.registries() {
        let (tx, work) = mpsc::unbounded_channel();
        let p = pusher.clone();
        let r = registry.clone();
        tasks.insert(registry.clone(), tokio::spawn(finish_on(p, r, work)));
        queues.insert(registry, tx);
    }
    tokio::spawn(async move {
        while let Some(ready) = rx.recv().await {
            match ready {
                Ready::Streamed(digest, uploads) => {
                    for (registry, up) in uploads {
                        if let Some(q) = queues.get(&registry) {
                            let _ = q.send(Work::Streamed(digest.clone(), up));
                        }
                    }
                }
                Ready::Finished(desc, path) => {
                    let (desc, path) = (Arc::new(*desc), Arc::new(path));
                    for q in queues.values() {
                        let _ = q.send(Work::Finished(desc.clone(), path.clone()));
                    }
                }
            }
        }
    });
    tasks
}

/// The layers of `registry`, all at once, until the work stops coming.
async fn finish_on(pusher: Arc<Pusher>, registry: String, mut work: UnboundedReceiver<Work>) {
    let mut streamed: HashMap<Digest, JoinHandle<Option<Descriptor>>> = HashMap::new();
    let mut running = FuturesUnordered::new();
    loop {
        tokio::select! {
            next = work.recv() => match next {
                Some(Work::Streamed(digest, up)) => {
                    streamed.insert(digest, up);
                }
                Some(Work::Finished(desc, path)) => {
                    let (p, r) = (pusher.clone(), registry.as_str());
                    let up = streamed.remove(&desc.digest);
                    running.push(async move {
                        match up {
                            Some(up) => {
                                let stored = matches!(
                                    up.await,
                                    Ok(Some(d)) if d.digest == desc.digest && d.size == desc.size
                                );
                                p.finish_streamed(r, &desc, &path, stored).await
                            }
                            None => p.push_blob_to(r, &desc, BlobBytes::File(&path)).await,
                        }
                    });
                }
                None => break,
            },
            Some(()) = running.next(), if !running.is_empty() => {}
        }
    }
    while running.next().await.is_some() {}
    // Streams of layers that never came as files (none kept aside): let
    // them end before the push checks what the registry holds.
    for up in streamed.into_values() {
        let _ = up.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc::unbounded_channel;

    /// A registry whose upload takes nothing is given up after the stall
    /// (and remembered, so that later layers are not streamed there), and
    /// the build goes on; one that reads gets every byte, in order, then the
    /// end; the uploads are announced once the layer is done.
    #[test]
    fn a_stalled_registry_is_given_up_and_the_others_get_every_byte() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (stalled, _kept) = mpsc::channel(1);
        let (reading, mut rx) = mpsc::channel(1);
        let feed = |tx, registry: &str| {
            Some(Feed {
                tx,
                registry: registry.to_string(),
            })
        };
        let reader = rt.spawn(async move {
            let mut bytes = Vec::new();
            loop {
                match rx.recv().await {
                    Some(Piece::Bytes(b)) => bytes.extend_from_slice(&b),
                    Some(Piece::End(d)) => return (bytes, Some(*d)),
                    None => return (bytes, None),
                }
            }
        });
        let (tx, mut ready) = unbounded_channel();
        let given_up = Arc::new(Mutex::new(HashSet::new()));
        let mut up = Box::new(LayerUpload {
            senders: vec![
                feed(stalled, "stalled.example"),
                feed(reading, "reading.example"),
            ],
            uploads: Vec::new(),
            buf: Vec::new(),
            handle: rt.handle().clone(),
            stall: Duration::from_millis(50),
            stalled: given_up.clone(),
            tx,
        });
        let data: Vec<u8> = (0..5 * PIECE + 12_345).map(|i| (i % 251) as u8).collect();
        for part in data.chunks(100_000) {
            up.write(part);
        }
        assert!(
            up.senders[0].is_none(),
            "the stalled registry still gets bytes"
        );
        assert!(up.senders[1].is_some());
        assert_eq!(
            *given_up.lock().unwrap(),
            HashSet::from(["stalled.example".to_string()])
        );
        let desc = Descriptor::new(
            "application/octet-stream",
            Digest::from_sha256([7; 32]),
            data.len() as u64,
        );
        up.finish(Some(&desc));
        let (got, end) = rt.block_on(reader).unwrap();
        assert!(got == data, "the bytes differ");
        assert_eq!(end.map(|d| d.digest), Some(desc.digest.clone()));
        assert!(matches!(ready.try_recv(), Ok(Ready::Streamed(d, _)) if d == desc.digest));
    }
}

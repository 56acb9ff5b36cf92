//! Request bodies, produced afresh for every attempt: bytes are shared, a
//! file is reopened at its offset, so any attempt can be repeated; the one
//! exception is [`Body::Once`], a blob streamed as it is made, which only
//! its first attempt can send. Sent bytes are counted and advance the
//! request's progress bar as they go.

use std::sync::Arc;

use futures_util::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use super::request::Body;
use super::RegistryState;
use crate::registry::client::Client;
use crate::registry::error::{ErrorContext, ErrorKind, RegistryError};

impl Client {
    /// The body of one attempt (`None` for [`Body::Empty`]).
    pub(super) async fn attempt_body(
        &self,
        host: &Arc<RegistryState>,
        body: &Body,
        progress: &Option<String>,
        ctx: &ErrorContext,
    ) -> Result<Option<reqwest::Body>, RegistryError> {
        match body {
            Body::Empty => Ok(None),
            Body::Bytes(b) => {
                host.stats.count_sent(b.len() as u64);
                Ok(Some(reqwest::Body::from(b.clone())))
            }
            Body::File { path, offset, len } => {
                let io = |e: std::io::Error| {
                    RegistryError::new(
                        ctx.clone(),
                        ErrorKind::Io(format!("reading {}: {e}", path.display())),
                    )
                };
                let mut f = tokio::fs::File::open(path).await.map_err(io)?;
                f.seek(std::io::SeekFrom::Start(*offset))
                    .await
                    .map_err(io)?;
                let reader = f.take(*len);
                let stream = tokio_util::io::ReaderStream::with_capacity(reader, 256 * 1024);
                Ok(Some(self.counted(host, progress, stream)))
            }
            Body::Once(once) => {
                let stream = once.take().ok_or_else(|| {
                    RegistryError::new(
                        ctx.clone(),
                        ErrorKind::Io("a streamed body cannot be sent a second time".into()),
                    )
                })?;
                Ok(Some(self.counted(host, progress, stream)))
            }
        }
    }

    /// A streamed body whose bytes are counted and advance `progress` as
    /// they are sent.
    fn counted(
        &self,
        host: &Arc<RegistryState>,
        progress: &Option<String>,
        stream: impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static,
    ) -> reqwest::Body {
        let (host, reporter, progress) = (host.clone(), self.reporter.clone(), progress.clone());
        reqwest::Body::wrap_stream(stream.map(move |chunk| {
            if let Ok(c) = &chunk {
                let n = c.len() as u64;
                host.stats.count_sent(n);
                if let Some(id) = &progress {
                    reporter.advance(id, n);
                }
            }
            chunk
        }))
    }
}

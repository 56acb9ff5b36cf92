//! Request bodies, produced afresh for every attempt: bytes are shared, a
//! file is reopened at its offset. No body is ever a consumed stream, so
//! any attempt can be repeated; sent bytes are counted and advance the
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
                let host = host.clone();
                let reporter = self.reporter.clone();
                let progress = progress.clone();
                let stream = tokio_util::io::ReaderStream::with_capacity(reader, 256 * 1024).map(
                    move |chunk| {
                        if let Ok(c) = &chunk {
                            let n = c.len() as u64;
                            host.stats.count_sent(n);
                            if let Some(id) = &progress {
                                reporter.advance(id, n);
                            }
                        }
                        chunk
                    },
                );
                Ok(Some(reqwest::Body::wrap_stream(stream)))
            }
        }
    }
}

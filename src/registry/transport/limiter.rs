//! The per-registry limit on requests in flight (`--jobs-per-registry`).
//!
//! A registry throttles (or refuses) a client that opens too many
//! connections at once, whatever their kind, so the limit is one per
//! registry shared by every operation. The slot is held until the answer
//! is dropped, so a streamed download counts for as long as it streams.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::registry::error::{ErrorContext, ErrorKind, RegistryError};

/// Request slots of one registry.
#[derive(Debug)]
pub struct Limiter(Arc<Semaphore>);

/// One request slot, given back when dropped.
#[derive(Debug)]
pub struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

impl Limiter {
    pub fn new(jobs: usize) -> Limiter {
        Limiter(Arc::new(Semaphore::new(jobs)))
    }

    /// Wait for a free slot.
    pub async fn acquire(&self, ctx: &ErrorContext) -> Result<Slot, RegistryError> {
        let permit = self.0.clone().acquire_owned().await.map_err(|_| {
            RegistryError::new(ctx.clone(), ErrorKind::Protocol("client closed".into()))
        })?;
        Ok(Slot(permit))
    }
}

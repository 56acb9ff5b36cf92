//! Stopping a run early. The binary asks for it when it gets SIGINT or
//! SIGTERM, or its `--timeout` passes ([`request`]): its async work is
//! dropped where it waits, which removes the temporary directories it
//! holds, and the work on blocking threads (compression, unpacking,
//! downloads, hashing) fails at its next block with [`Cancelled`], which
//! removes theirs. A library that never
//! calls [`request`] is not affected.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// The run was stopped before it finished.
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error("the run was cancelled")]
pub struct Cancelled;

/// Stop the run: every check from now on fails. It cannot be undone.
pub fn request() {
    REQUESTED.store(true, Ordering::SeqCst);
}

/// True once [`request`] was called.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::Relaxed)
}

/// An I/O error holding [`Cancelled`] once the run is cancelled (not of
/// kind `Interrupted`, which `write_all` and `copy` would retry).
pub fn check() -> io::Result<()> {
    if requested() {
        return Err(io::Error::other(Cancelled));
    }
    Ok(())
}

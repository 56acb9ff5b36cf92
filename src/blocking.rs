//! Synchronous library code that needs the network (a registry base, a
//! recipe's downloads) runs its futures on the caller's tokio runtime: it
//! must be called from inside a multi-threaded one, from a blocking thread
//! (`spawn_blocking`, as the binary does) or from one of its worker threads,
//! where it blocks in place. Outside a runtime, or in a current-thread one
//! (`#[tokio::test]`'s default), where blocking on it would panic or wait
//! for ever, it is an error that says so.

use std::future::Future;

use anyhow::{anyhow, Result};
use tokio::runtime::{Handle, RuntimeFlavor};

/// The caller's runtime, for `what` (named in the error).
pub fn runtime(what: &str) -> Result<Handle> {
    let rt = Handle::try_current().map_err(|_| {
        anyhow!("{what} need a tokio runtime: call from inside a multi-threaded one")
    })?;
    if rt.runtime_flavor() == RuntimeFlavor::CurrentThread {
        return Err(anyhow!(
            "{what} need a multi-threaded tokio runtime; this one is current-thread \
             (use #[tokio::test(flavor = \"multi_thread\")] or Builder::new_multi_thread)"
        ));
    }
    Ok(rt)
}

/// Run `f` to its end on `rt` (from [`runtime`]) from synchronous code.
pub fn block_on<F: Future>(rt: &Handle, f: F) -> F::Output {
    tokio::task::block_in_place(|| rt.block_on(f))
}

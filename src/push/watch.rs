//! What a push has done so far, readable while it runs: a run stopped in
//! the middle (`--timeout`, SIGINT, SIGTERM) drops the push where it waits,
//! and still tells which targets hold the image (their tags written before
//! the stop), which were not done, and the blobs each repository got.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use super::blobs::{RegistryPush, RepoCounts};
use super::manifests::Tagged;
use super::report::{PushError, PushReport, RegistryReport, TargetReport};
use super::targets::{pin_untagged, PushTarget};
use crate::oci::Descriptor;
use crate::registry::{Client, EnvCredentialError, Reference};

/// A handle on the pusher made with the [`PushOptions`](super::PushOptions)
/// that hold it; cheap to clone, and kept past the pusher's end.
#[derive(Clone, Default)]
pub struct PushWatch(Arc<Mutex<Option<Watched>>>);

/// The parts of a [`Pusher`](super::Pusher) its report is made of, shared
/// with it.
pub(super) struct Watched {
    pub client: Arc<Client>,
    pub targets: Arc<Vec<PushTarget>>,
    pub refused: Arc<HashMap<Reference, EnvCredentialError>>,
    pub registries: Arc<Vec<RegistryPush>>,
    pub root: Arc<Mutex<Option<Descriptor>>>,
}

impl fmt::Debug for PushWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PushWatch")
    }
}

impl PushWatch {
    pub(super) fn attach(&self, parts: Watched) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(parts);
        }
    }

    /// The report of what the push has done so far: each target done with
    /// its outcome (`ok` once its tag is written), each target not done
    /// failed with [`PushError::Stopped`], and the blobs each repository
    /// got; a target without tag or digest named `REPO@DIGEST`, as
    /// [`pin_untagged`] names it. `None` before a pusher began an image (its
    /// root not known yet: nothing was tagged).
    ///
    /// After the push finished, the same targets and outcomes as its own
    /// report.
    pub fn report(&self) -> Option<PushReport> {
        let slot = self.0.lock().ok()?;
        let w = slot.as_ref()?;
        let root = w.root.lock().ok()?.clone()?;
        let registry_of =
            |t: &PushTarget| (w.registries.iter()).find(|r| r.registry() == t.reference.registry);
        let targets = (w.targets.iter())
            .map(|t| {
                let reference = t.reference.to_string();
                let (counts, (outcome, seconds)) = match w.refused.get(&t.reference) {
                    Some(e) => (
                        RepoCounts::default(),
                        (Err(PushError::Credentials(e.clone())), 0.0),
                    ),
                    None => {
                        let r = registry_of(t);
                        let counts = r.map(|r| r.counts(&t.reference.repository));
                        let outcome = r.and_then(|r| r.outcome(&reference));
                        (
                            counts.unwrap_or_default(),
                            outcome.unwrap_or((Err(PushError::Stopped), 0.0)),
                        )
                    }
                };
                target_row(t, counts, outcome, seconds)
            })
            .collect();
        let registries = (w.registries.iter())
            .map(|r| {
                let unfinished = (w.targets.iter())
                    .filter(|t| t.reference.registry == r.registry())
                    .filter(|t| !w.refused.contains_key(&t.reference))
                    .any(|t| r.outcome(&t.reference.to_string()).is_none());
                let error = r.failure().or(unfinished.then_some(PushError::Stopped));
                registry_row(&w.client, r, error, r.started.elapsed().as_secs_f64())
            })
            .collect();
        let mut report = PushReport {
            digest: root.digest,
            media_type: root.media_type,
            size: root.size,
            targets,
            registries,
        };
        pin_untagged(&mut report);
        Some(report)
    }
}

/// One target's row of a report.
pub(super) fn target_row(
    t: &PushTarget,
    counts: RepoCounts,
    outcome: Result<Tagged, PushError>,
    seconds: f64,
) -> TargetReport {
    let replaced = outcome.as_ref().ok().and_then(|t| t.replaced.clone());
    TargetReport {
        reference: t.reference.to_string(),
        registry: t.reference.registry.clone(),
        optional: t.optional,
        ok: outcome.is_ok(),
        digest: outcome.as_ref().ok().map(|t| t.digest.clone()),
        replaced,
        error: outcome.err(),
        blobs_uploaded: counts.uploaded,
        blobs_mounted: counts.mounted,
        blobs_present: counts.present,
        bytes_sent: counts.bytes,
        seconds,
    }
}

/// One registry's row of a report, failed with `error` if any.
pub(super) fn registry_row(
    client: &Client,
    r: &RegistryPush,
    error: Option<PushError>,
    seconds: f64,
) -> RegistryReport {
    let stats = client.stats(r.registry());
    RegistryReport {
        registry: r.registry().to_string(),
        ok: error.is_none(),
        error,
        requests: stats.requests,
        bytes_sent: stats.bytes_sent,
        retries: stats.retries,
        seconds,
    }
}

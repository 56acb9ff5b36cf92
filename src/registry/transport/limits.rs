//! Bounds on everything a registry, or the token realm it names, sends us.
//!
//! A registry is a server on the network, possibly hostile or broken: a
//! token realm may send an endless body, a manifest may trickle one byte per
//! second, a tag list may link to itself for ever. Every answer is therefore
//! read with a cap on its size that fits its kind, every request attempt has
//! a total deadline (besides the read timeout, which only bounds silence),
//! and tag pagination has a page limit. They are all here, so that one look
//! tells what the client will put up with.
//!
//! Deadlines, per request attempt:
//! - a small document (manifest, tag page, token, `/v2/` ping, error body,
//!   and every request without a large body): [`DOCUMENT_DEADLINE`];
//! - a blob transfer (download of a blob, upload of a blob or chunk):
//!   [`transfer_deadline`] of its size, a floor plus the time the bytes take
//!   at [`MIN_THROUGHPUT`]: a registry slower than that on average fails.
//!
//! A deadline that passes before the answer's headers arrived is "no answer"
//! (a transport failure, retried like a read timeout); one that passes while
//! the body arrives is final ([`ErrorKind::Deadline`]): the registry
//! answers, too slowly, and asking again would only wait as long again.
//! `pull` then moves on to the next reference, as it does for a registry
//! that is down.
//!
//! Three bounds watch a blob download, each catching what the others miss:
//! - silence: the read timeout (`ClientOptions::read_timeout`, 60 s) fails
//!   an attempt that receives nothing for that long, and is retried;
//! - the deadline: the whole attempt within [`transfer_deadline`] of the
//!   size the descriptor gives; a registry that lies about that size (in a
//!   manifest it serves) gets a deadline to match;
//! - the pace ([`Pace`], `ClientOptions::pace`): once its grace has passed
//!   since the answer's headers arrived, the average rate of the body so
//!   far must stay at or above its floor (by default [`MIN_THROUGHPUT`]
//!   after [`PACE_GRACE`]). A registry that sends a few bytes just before
//!   each read timeout fails as soon as its average falls below the floor,
//!   whatever size it claims. A pace that fails is a deadline that passed:
//!   [`ErrorKind::Deadline`], final for the attempt, naming the rate.

use std::time::{Duration, Instant};

use crate::render::bytes::human_bytes;

#[cfg(doc)]
use crate::registry::ErrorKind;

/// Largest token-server answer (a JSON object holding a token or two).
pub const MAX_TOKEN_BODY: usize = 64 * 1024;

/// Longest a token is used, whatever `expires_in` its server claims.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// Largest error body read (`{"errors":[...]}`); longer ones are cut.
pub const MAX_ERROR_BODY: usize = 64 * 1024;

/// Largest manifest or index accepted (the distribution registry's own
/// limit; GHCR and Docker Hub have the same).
pub const MAX_MANIFEST_SIZE: usize = 4 * 1024 * 1024;

/// Largest page of a paged listing (a tag list, the referrers index).
pub const MAX_LIST_PAGE: usize = 4 * 1024 * 1024;

/// Most bytes of one paged listing, all pages together (a million tags of
/// 64 characters).
pub const MAX_LIST: usize = 64 * 1024 * 1024;

/// Most pages of one listing followed (`Link: rel="next"`): at the
/// registries' usual 100 tags a page, 100 000 tags.
pub const MAX_LIST_PAGES: usize = 1000;

/// Total time for one request for a small document, body included.
pub const DOCUMENT_DEADLINE: Duration = Duration::from_secs(30);

/// The least time any blob transfer is given.
pub const TRANSFER_DEADLINE_FLOOR: Duration = Duration::from_secs(60);

/// The slowest average rate a blob transfer may go at, in bytes per second
/// (64 KiB/s: a 100 MiB layer may take 27 minutes).
pub const MIN_THROUGHPUT: u64 = 64 * 1024;

/// How long a download may go at any rate before its pace is checked.
pub const PACE_GRACE: Duration = Duration::from_secs(60);

/// The least average rate of a blob download, once its grace has passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pace {
    /// Time from the answer's headers before the rate is checked.
    pub grace: Duration,
    /// Bytes per second, on average since the headers arrived; at least 1.
    pub floor: u64,
}

impl Default for Pace {
    fn default() -> Pace {
        Pace {
            grace: PACE_GRACE,
            floor: MIN_THROUGHPUT,
        }
    }
}

impl Pace {
    /// When a body that began at `began` and has brought `received` bytes
    /// falls below the floor unless more arrive: the end of the grace, or
    /// the moment `received` bytes are too few for the time gone.
    pub fn due(&self, began: Instant, received: u64) -> Instant {
        // Beyond a century, a wait is as good as for ever.
        let far = Duration::from_secs(1 << 32);
        let earned =
            Duration::try_from_secs_f64(received as f64 / self.floor.max(1) as f64).unwrap_or(far);
        let wait = self.grace.max(earned).min(far);
        began
            .checked_add(wait)
            .unwrap_or_else(|| began + Duration::from_secs(86_400))
    }

    /// Why a body that began at `began` failed its pace with `received`
    /// bytes.
    pub fn failure(&self, began: Instant, received: u64) -> String {
        let secs = began.elapsed().as_secs_f64().max(0.001);
        format!(
            "the registry sent {received} bytes in {secs:.0}s ({}/s), below the least rate of {}/s \
             once {}s have passed: it sends too slowly",
            human_bytes((received as f64 / secs) as u64),
            human_bytes(self.floor),
            self.grace.as_secs_f64()
        )
    }
}

/// The total time one request carrying or fetching `bytes` of a blob may
/// take: [`TRANSFER_DEADLINE_FLOOR`] plus `bytes` at [`MIN_THROUGHPUT`].
pub fn transfer_deadline(bytes: u64) -> Duration {
    TRANSFER_DEADLINE_FLOOR.saturating_add(Duration::from_secs(bytes / MIN_THROUGHPUT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_deadlines_grow_with_size_from_a_floor() {
        assert_eq!(transfer_deadline(0), TRANSFER_DEADLINE_FLOOR);
        assert_eq!(transfer_deadline(1024), TRANSFER_DEADLINE_FLOOR);
        assert_eq!(
            transfer_deadline(100 * 1024 * 1024),
            TRANSFER_DEADLINE_FLOOR + Duration::from_secs(1600)
        );
        assert!(transfer_deadline(u64::MAX) > Duration::from_secs(1 << 40));
        assert!(DOCUMENT_DEADLINE < TRANSFER_DEADLINE_FLOOR);
    }

    #[test]
    fn the_pace_is_due_after_the_grace_or_once_the_bytes_are_too_few() {
        let pace = Pace {
            grace: Duration::from_secs(60),
            floor: 1024,
        };
        let t = Instant::now();
        assert_eq!(pace.due(t, 0), t + Duration::from_secs(60));
        assert_eq!(pace.due(t, 60 * 1024), t + Duration::from_secs(60));
        assert_eq!(pace.due(t, 120 * 1024), t + Duration::from_secs(120));
        assert!(pace.due(t, u64::MAX) > t + Duration::from_secs(1 << 30));
        let zero = Pace {
            grace: Duration::ZERO,
            floor: 0,
        };
        assert_eq!(zero.due(t, 5), t + Duration::from_secs(5));
        assert!(pace
            .failure(t, 10)
            .contains("below the least rate of 1.0 KiB/s"));
    }
}

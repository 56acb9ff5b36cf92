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

use std::time::Duration;

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
}

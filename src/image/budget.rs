//! How much of a manifest graph one reading may take: every walker of the
//! graph (the [`super::walk`] of push, copy, pull and index, `inspect` and
//! `inspect --check`, the artifacts `copy` carries along) admits each
//! manifest or index to a [`Budget`] before it is fetched (`inspect`, which
//! holds every config it shows, its configs too). Nesting is
//! bounded by [`super::MAX_DEPTH`] and each document by
//! [`super::layout::guard::MAX_DOCUMENT`], but not how many documents an
//! index lists: a source serving thousands of large distinct indexes would
//! otherwise be read until memory ran out.

use std::collections::HashSet;

use anyhow::Result;

use crate::error::bad_input;
use crate::oci::{Descriptor, Digest};

/// Most distinct manifests and indexes read for one image (a
/// multi-platform image with its attestations has a few dozen).
pub const MAX_MANIFESTS: usize = 10_000;

/// Most bytes of manifests and indexes read for one image, by their
/// descriptors' sizes (such an image has a few hundred KiB).
pub const MAX_MANIFEST_BYTES: u64 = 64 << 20;

/// What one reading of a graph has taken so far: each distinct manifest or
/// index counted once, with its descriptor's size.
#[derive(Debug, Default)]
pub struct Budget {
    admitted: HashSet<Digest>,
    bytes: u64,
    /// The first refusal, once the budget is spent.
    refused: Option<String>,
}

impl Budget {
    /// Take `desc` (at `at`, for messages) into the budget before it is
    /// fetched: free when it was admitted already; bad input naming the
    /// limit when it would pass [`MAX_MANIFESTS`] or [`MAX_MANIFEST_BYTES`].
    pub fn admit(&mut self, desc: &Descriptor, at: &str) -> Result<()> {
        if self.admitted.contains(&desc.digest) {
            return Ok(());
        }
        let over = if self.admitted.len() >= MAX_MANIFESTS {
            Some(format!(
                "more than {MAX_MANIFESTS} distinct manifests, indexes and configs"
            ))
        } else if self.bytes.saturating_add(desc.size) > MAX_MANIFEST_BYTES {
            Some(format!(
                "its {} bytes would take the manifests, indexes and configs read past \
                 {MAX_MANIFEST_BYTES} bytes ({} read so far)",
                desc.size, self.bytes
            ))
        } else {
            None
        };
        if let Some(why) = over {
            let text = format!(
                "{at}: {why}, more than boxwright reads of one image; \
                 the source serves a graph no real image has: check what it holds"
            );
            self.refused.get_or_insert_with(|| text.clone());
            return Err(bad_input(text));
        }
        self.bytes = self.bytes.saturating_add(desc.size);
        self.admitted.insert(desc.digest.clone());
        Ok(())
    }

    /// Why the budget refused a document, once it did.
    pub fn refused(&self) -> Option<&str> {
        self.refused.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::MEDIA_TYPE_INDEX;

    fn doc(n: usize, size: u64) -> Descriptor {
        let mut d = Descriptor::of_bytes(MEDIA_TYPE_INDEX, n.to_string().as_bytes());
        d.size = size;
        d
    }

    #[test]
    fn each_distinct_document_counts_once_up_to_the_limit() {
        let mut b = Budget::default();
        for n in 0..MAX_MANIFESTS {
            b.admit(&doc(n, 1), "x").unwrap();
        }
        // Admitted already: free.
        b.admit(&doc(0, 1), "x").unwrap();
        assert!(b.refused().is_none());
        let e = b
            .admit(&doc(MAX_MANIFESTS, 1), "reg/app@sha256:1")
            .unwrap_err();
        assert!(crate::error::is_bad_input(&e));
        let text = e.to_string();
        assert!(
            text.starts_with("reg/app@sha256:1: more than 10000"),
            "{text}"
        );
        assert_eq!(b.refused(), Some(text.as_str()));
    }

    #[test]
    fn a_size_past_the_bytes_left_is_refused_before_it_is_fetched() {
        let mut b = Budget::default();
        b.admit(&doc(0, MAX_MANIFEST_BYTES - 10), "x").unwrap();
        b.admit(&doc(1, 10), "x").unwrap();
        let e = b.admit(&doc(2, 1), "x").unwrap_err();
        assert!(
            e.to_string().contains(&MAX_MANIFEST_BYTES.to_string()),
            "{e}"
        );
        // A size no document has cannot overflow the count.
        let mut b = Budget::default();
        assert!(b.admit(&doc(0, u64::MAX), "x").is_err());
    }
}

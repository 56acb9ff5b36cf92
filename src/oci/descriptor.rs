//! Content descriptors: what a manifest says about each blob it names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Digest, Platform};

/// A content descriptor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            platform: None,
            annotations: BTreeMap::new(),
            urls: None,
            artifact_type: None,
        }
    }

    /// The descriptor of a serialised document.
    pub fn of_bytes(media_type: &str, bytes: &[u8]) -> Descriptor {
        Descriptor::new(media_type, Digest::of(bytes), bytes.len() as u64)
    }
}

/// The sum of `sizes`, held at `u64::MAX` rather than overflowing: sizes
/// come from manifests, and a hostile one may claim sizes near `i64::MAX`.
/// Every total of descriptor sizes is taken with it.
///
/// ```
/// use boxwright::oci::total_size;
/// assert_eq!(total_size([1, 2, 3]), 6);
/// assert_eq!(total_size([u64::MAX - 1, 5]), u64::MAX);
/// ```
pub fn total_size(sizes: impl IntoIterator<Item = u64>) -> u64 {
    sizes.into_iter().fold(0, u64::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::total_size;

    #[test]
    fn sizes_near_the_top_add_up_to_the_most_a_u64_holds() {
        let huge = i64::MAX as u64;
        assert_eq!(total_size([]), 0);
        assert_eq!(total_size([huge, huge]), 2 * huge);
        assert_eq!(total_size([huge, huge, 2]), u64::MAX);
        assert_eq!(total_size([u64::MAX, u64::MAX, 1]), u64::MAX);
    }
}

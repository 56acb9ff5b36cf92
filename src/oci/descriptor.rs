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

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
    /// At most `i64::MAX`, as OCI's int64 allows (larger is refused when
    /// read).
    #[serde(deserialize_with = "int64_size")]
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

/// A descriptor's size: OCI's int64, never negative.
fn int64_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let size = u64::deserialize(d)?;
    if size > i64::MAX as u64 {
        return Err(serde::de::Error::custom(format!(
            "size {size} is larger than OCI's int64 allows"
        )));
    }
    Ok(size)
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
    use super::{total_size, Descriptor};

    #[test]
    fn a_size_past_int64_is_refused() {
        let with = |size: &str| {
            serde_json::from_str::<Descriptor>(&format!(
                r#"{{"mediaType":"a/b","digest":"sha256:{}","size":{size}}}"#,
                "0".repeat(64)
            ))
        };
        assert_eq!(with("9223372036854775807").unwrap().size, i64::MAX as u64);
        let err = with("9223372036854775808").unwrap_err().to_string();
        assert!(err.contains("larger than OCI's int64 allows"), "{err}");
        assert!(with("-1").is_err());
    }

    #[test]
    fn sizes_near_the_top_add_up_to_the_most_a_u64_holds() {
        let huge = i64::MAX as u64;
        assert_eq!(total_size([]), 0);
        assert_eq!(total_size([huge, huge]), 2 * huge);
        assert_eq!(total_size([huge, huge, 2]), u64::MAX);
        assert_eq!(total_size([u64::MAX, u64::MAX, 1]), u64::MAX);
    }
}

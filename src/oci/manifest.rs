//! Image manifests and indexes (OCI, and Docker's schema 2 read the same
//! way).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use super::{Descriptor, MEDIA_TYPE_INDEX};

/// An image manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    #[serde(deserialize_with = "schema_version_2")]
    pub schema_version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image index (or Docker manifest list).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    #[serde(deserialize_with = "schema_version_2")]
    pub schema_version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Index {
    pub fn new(manifests: Vec<Descriptor>) -> Index {
        Index {
            schema_version: 2,
            media_type: Some(MEDIA_TYPE_INDEX.to_string()),
            artifact_type: None,
            manifests,
            subject: None,
            annotations: BTreeMap::new(),
        }
    }
}

/// The schema version every manifest and index has (OCI, and Docker's
/// schema 2); Docker's schema 1 and unknown versions are not read.
pub const SCHEMA_VERSION: u64 = 2;

/// What is wrong with a document's `schemaVersion` (`None`: it is missing).
pub fn schema_version_problem(v: Option<&serde_json::Value>) -> Option<String> {
    match v.and_then(serde_json::Value::as_u64) {
        Some(SCHEMA_VERSION) => None,
        Some(1) => Some(
            "schemaVersion 1: a Docker schema 1 manifest, which boxwright does not read".into(),
        ),
        Some(n) => Some(format!(
            "schemaVersion {n}: a manifest or index has schemaVersion {SCHEMA_VERSION}"
        )),
        None if v.is_none() => Some(format!(
            "no schemaVersion: a manifest or index has schemaVersion {SCHEMA_VERSION}"
        )),
        None => Some(format!(
            "schemaVersion is not a number: a manifest or index has schemaVersion {SCHEMA_VERSION}"
        )),
    }
}

fn schema_version_2<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    match schema_version_problem(Some(&v)) {
        None => Ok(SCHEMA_VERSION as u32),
        Some(why) => Err(serde::de::Error::custom(why)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#""config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0}"#;

    #[test]
    fn only_schema_version_2_is_read() {
        let manifest = |v: &str| format!(r#"{{"schemaVersion":{v},{CONFIG},"layers":[]}}"#);
        let index = |v: &str| format!(r#"{{"schemaVersion":{v},"manifests":[]}}"#);
        assert!(serde_json::from_str::<Manifest>(&manifest("2")).is_ok());
        assert!(serde_json::from_str::<Index>(&index("2")).is_ok());
        for (v, why) in [
            ("1", "schema 1"),
            ("3", "schemaVersion 3"),
            ("0", "schemaVersion 0"),
            ("-2", "not a number"),
            ("2.5", "not a number"),
            ("\"2\"", "not a number"),
            ("null", "not a number"),
        ] {
            let m = serde_json::from_str::<Manifest>(&manifest(v)).unwrap_err();
            assert!(m.to_string().contains(why), "{v}: {m}");
            let i = serde_json::from_str::<Index>(&index(v)).unwrap_err();
            assert!(i.to_string().contains(why), "{v}: {i}");
        }
        let missing = serde_json::from_str::<Index>(r#"{"manifests":[]}"#).unwrap_err();
        assert!(missing.to_string().contains("schemaVersion"), "{missing}");
    }
}

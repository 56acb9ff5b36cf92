//! The OCI image model: digests, descriptors, manifests, indexes, configs,
//! media types and platform selection.
//!
//! Every document is serialised once with [`canonical_json`] (sorted keys, no
//! insignificant white space); its digest is taken over exactly those bytes,
//! and those bytes are what is written to a layout and pushed to a registry.

mod config;
mod descriptor;
mod digest;
mod json;
mod manifest;
mod media;
mod platform;
mod time;

pub use config::{History, ImageConfig, RootFs, RuntimeConfig};
pub use descriptor::{total_size, Descriptor};
pub use digest::{Digest, Hashing};
pub use json::{canonical_json, canonical_value};
pub use manifest::{schema_version_problem, Index, Manifest, SCHEMA_VERSION};
pub use media::*;
pub use platform::{offered_platforms, select_platform, Platform};
pub use time::{check_rfc3339, parse_rfc3339, rfc3339, MAX_EPOCH, MIN_EPOCH};

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn canonical_json_sorts_keys_and_is_stable() {
        let mut labels = BTreeMap::new();
        labels.insert("b".to_string(), "2".to_string());
        labels.insert("a".to_string(), "1".to_string());
        let cfg = RuntimeConfig {
            labels: Some(labels),
            env: Some(vec!["X=1".into()]),
            ..Default::default()
        };
        let a = canonical_json(&cfg);
        let b = canonical_json(&cfg.clone());
        assert_eq!(a, b);
        assert_eq!(
            String::from_utf8(a).unwrap(),
            r#"{"Env":["X=1"],"Labels":{"a":"1","b":"2"}}"#
        );
    }

    #[test]
    fn time_round_trips() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        assert_eq!(
            parse_rfc3339("2023-11-14T23:13:20.5+01:00"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_rfc3339("2023-13-14T22:13:20Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn digests_and_platforms_are_checked() {
        assert!("sha256:abc".parse::<Digest>().is_err());
        let d = Digest::of(b"");
        assert_eq!(
            d.as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        assert_eq!(
            Platform::parse("linux/arm64/v8").unwrap().to_string(),
            "linux/arm64/v8"
        );
        assert!(Platform::parse("linux/amd65")
            .unwrap_err()
            .contains("amd65"));
        assert!(Platform::parse("linux").is_err());
    }
}

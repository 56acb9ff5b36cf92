//! Platforms (`os/arch[/variant]`) and the one rule that picks a
//! platform's image out of an index, shared by pull, copy, index and
//! build bases.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{is_manifest_media_type, Descriptor, Index};

/// An OS/architecture pair, as in `linux/amd64` or `linux/arm64/v8`.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(rename = "os.version", skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    #[serde(rename = "os.features", skip_serializing_if = "Option::is_none")]
    pub os_features: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// Operating systems and architectures accepted in a recipe (Go's GOOS/GOARCH
/// names, as the image spec asks).
const KNOWN_OS: &[&str] = &[
    "linux", "windows", "darwin", "freebsd", "netbsd", "openbsd", "solaris", "illumos", "aix",
];
const KNOWN_ARCH: &[&str] = &[
    "amd64", "arm64", "arm", "386", "ppc64le", "ppc64", "s390x", "riscv64", "mips64le", "mips64",
    "mipsle", "mips", "loong64", "wasm",
];

impl Platform {
    /// Parse `os/arch[/variant]`, refusing names that no image spec knows
    /// and a variant of other characters than letters, digits, `_` and `-`.
    pub fn parse(s: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = s.split('/').collect();
        if parts.len() < 2 || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(format!(
                "platform {s:?} is not of the form os/arch[/variant], e.g. linux/amd64"
            ));
        }
        if !KNOWN_OS.contains(&parts[0]) {
            return Err(format!(
                "unknown operating system {:?} in platform {s:?} (known: {})",
                parts[0],
                KNOWN_OS.join(", ")
            ));
        }
        if !KNOWN_ARCH.contains(&parts[1]) {
            return Err(format!(
                "unknown architecture {:?} in platform {s:?} (known: {})",
                parts[1],
                KNOWN_ARCH.join(", ")
            ));
        }
        // As containerd reads platforms: `v8`, not `v8 ` or a newline.
        if let Some(v) = parts.get(2).filter(|v| {
            !v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
        }) {
            return Err(format!(
                "variant {v:?} in platform {s:?} is not letters, digits, `_` and `-`, e.g. v8"
            ));
        }
        Ok(Platform {
            os: parts[0].to_string(),
            architecture: parts[1].to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
            os_version: None,
            os_features: None,
        })
    }

    /// Whether `other` (from an index or a config) serves this wanted
    /// platform: see [`Platform::rank`].
    pub fn matches(&self, other: &Platform) -> bool {
        self.rank(other).is_some()
    }

    /// How well `other` serves this wanted platform, 0 best, `None` not at
    /// all; as containerd and containers/image read variants:
    /// - a platform without variant has its architecture's default one
    ///   (`v8` for arm64, `v7` for arm), on either side: `linux/arm64/v8`
    ///   takes an entry listed `linux/arm64`, and `linux/arm` wants `v7`;
    /// - an arm CPU runs the code of older variants: `linux/arm/v7` takes
    ///   `v6`, else `v5`, when the index has no `v7`;
    /// - a wanted platform without variant takes any other variant last.
    pub fn rank(&self, other: &Platform) -> Option<u32> {
        if self.os != other.os || self.architecture != other.architecture {
            return None;
        }
        let default = match other.architecture.as_str() {
            "arm64" => Some("v8"),
            "arm" => Some("v7"),
            _ => None,
        };
        let got = other.variant.as_deref().or(default);
        let Some(wanted) = self.variant.as_deref().or(default) else {
            return Some(0);
        };
        if got == Some(wanted) {
            return Some(0);
        }
        let number = |v: &str| v.strip_prefix('v')?.parse::<u32>().ok();
        if self.architecture == "arm" {
            if let (Some(w), Some(g)) = (number(wanted), got.and_then(number)) {
                if g < w {
                    return Some(w - g);
                }
            }
        }
        self.variant.is_none().then_some(u32::MAX)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// The image manifest for `want` in `index`: of the entries that are
/// image manifests (not a nested index, not an artifact type) and serve
/// the platform, the best ranked ([`Platform::rank`]), the first listed
/// among equals.
pub fn select_platform<'a>(index: &'a Index, want: &Platform) -> Option<&'a Descriptor> {
    let mut best: Option<(u32, &Descriptor)> = None;
    for d in index
        .manifests
        .iter()
        .filter(|d| is_manifest_media_type(&d.media_type))
    {
        let rank = d.platform.as_ref().and_then(|p| want.rank(p));
        if let Some(r) = rank.filter(|&r| best.is_none_or(|(b, _)| r < b)) {
            best = Some((r, d));
        }
    }
    best.map(|(_, d)| d)
}

/// The platforms an index offers, for error messages (`unknown/unknown`
/// entries, which are attestations, left out). An entry that is not an
/// image manifest (a nested index, which selection does not follow) or
/// names no platform is named as such, so that a message never offers what
/// cannot be picked, nor says the index is empty when it is not.
pub fn offered_platforms(index: &Index) -> Vec<String> {
    index
        .manifests
        .iter()
        .filter_map(|d| {
            let image = is_manifest_media_type(&d.media_type);
            match (d.platform.as_ref().map(|p| p.to_string()), image) {
                (Some(p), _) if p == "unknown/unknown" => None,
                (Some(p), true) => Some(p),
                (Some(p), false) => Some(format!("{p} in a nested index, which is not followed")),
                (None, true) => Some("an image that names no platform".to_string()),
                (None, false) => Some("a nested index, which is not followed".to_string()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::{Digest, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST};

    fn entry(mt: &str, body: &[u8], platform: &str) -> Descriptor {
        let mut d = Descriptor::new(mt, Digest::of(body), 1);
        d.platform = Some(Platform::parse(platform).unwrap());
        d
    }

    #[test]
    fn selection_takes_the_first_matching_image_manifest() {
        let index = Index::new(vec![
            entry(MEDIA_TYPE_INDEX, b"nested", "linux/arm64"),
            entry(MEDIA_TYPE_MANIFEST, b"v7", "linux/arm/v7"),
            entry(MEDIA_TYPE_MANIFEST, b"arm64", "linux/arm64/v8"),
            entry(MEDIA_TYPE_MANIFEST, b"amd64", "linux/amd64"),
        ]);
        let pick = |s: &str| select_platform(&index, &Platform::parse(s).unwrap()).cloned();
        // A nested index is never picked, a missing wanted variant takes any.
        assert_eq!(pick("linux/arm64").unwrap().digest, Digest::of(b"arm64"));
        assert_eq!(pick("linux/arm").unwrap().digest, Digest::of(b"v7"));
        assert!(pick("linux/arm/v6").is_none());
        // An entry without variant has its architecture's default.
        let bare = Index::new(vec![
            entry(MEDIA_TYPE_MANIFEST, b"arm", "linux/arm"),
            entry(MEDIA_TYPE_MANIFEST, b"arm64", "linux/arm64"),
        ]);
        let pick = |s: &str| select_platform(&bare, &Platform::parse(s).unwrap()).cloned();
        assert_eq!(pick("linux/arm64/v8").unwrap().digest, Digest::of(b"arm64"));
        assert_eq!(pick("linux/arm/v7").unwrap().digest, Digest::of(b"arm"));
        assert!(pick("linux/arm/v6").is_none());
        assert!(pick("linux/arm64/v9").is_none());
        // arm/v7 wanted (or arm, which is v7) takes v7 wherever it is
        // listed, else the newest older variant; never a newer one.
        let arms = Index::new(vec![
            entry(MEDIA_TYPE_MANIFEST, b"v5", "linux/arm/v5"),
            entry(MEDIA_TYPE_MANIFEST, b"v6", "linux/arm/v6"),
            entry(MEDIA_TYPE_MANIFEST, b"v8", "linux/arm/v8"),
            entry(MEDIA_TYPE_MANIFEST, b"v7", "linux/arm/v7"),
        ]);
        let pick = |s: &str| select_platform(&arms, &Platform::parse(s).unwrap()).cloned();
        assert_eq!(pick("linux/arm").unwrap().digest, Digest::of(b"v7"));
        assert_eq!(pick("linux/arm/v7").unwrap().digest, Digest::of(b"v7"));
        let no_v7 = Index::new(arms.manifests[..3].to_vec());
        let pick = |s: &str| select_platform(&no_v7, &Platform::parse(s).unwrap()).cloned();
        assert_eq!(pick("linux/arm/v7").unwrap().digest, Digest::of(b"v6"));
        assert_eq!(pick("linux/arm/v6").unwrap().digest, Digest::of(b"v6"));
        assert_eq!(pick("linux/arm").unwrap().digest, Digest::of(b"v6"));
        assert!(pick("linux/arm/v4").is_none());
        let only_v8 = Index::new(vec![arms.manifests[2].clone()]);
        let pick = |s: &str| select_platform(&only_v8, &Platform::parse(s).unwrap()).cloned();
        assert_eq!(
            pick("linux/arm").unwrap().digest,
            Digest::of(b"v8"),
            "any, last"
        );
        assert!(pick("linux/arm/v7").is_none());
        // A variant is letters, digits, `_` and `-`.
        for odd in ["linux/arm64/v8 ", "linux/arm/v7\n", "linux/arm/v.7"] {
            assert!(
                Platform::parse(odd).unwrap_err().contains("variant"),
                "{odd:?}"
            );
        }
        assert!(pick("linux/riscv64").is_none());
        let mut att = Descriptor::new(MEDIA_TYPE_MANIFEST, Digest::of(b"att"), 1);
        att.platform = Some(Platform {
            architecture: "unknown".into(),
            os: "unknown".into(),
            os_version: None,
            os_features: None,
            variant: None,
        });
        let mut with_att = index.clone();
        with_att.manifests.push(att);
        assert_eq!(
            offered_platforms(&with_att),
            [
                "linux/arm64 in a nested index, which is not followed",
                "linux/arm/v7",
                "linux/arm64/v8",
                "linux/amd64"
            ]
        );
        // Entries without a platform are named, not passed over as if the
        // index had none.
        let bare = Index::new(vec![
            Descriptor::new(MEDIA_TYPE_INDEX, Digest::of(b"nested"), 1),
            Descriptor::new(MEDIA_TYPE_MANIFEST, Digest::of(b"image"), 1),
        ]);
        assert_eq!(
            offered_platforms(&bare),
            [
                "a nested index, which is not followed",
                "an image that names no platform"
            ]
        );
    }
}

//! The text form of `boxwright inspect`: the inspected descriptor, then per
//! image its platform, the nested indexes it is listed in (if any),
//! manifest, config, layers (with diffIDs) and runtime settings.

use std::fmt::Write as _;

use crate::ops::inspect::Inspection;

use super::text::one_line as t;

/// Human-readable form of an inspection. Every text a layout or registry
/// gave is shown on its own line, its control characters escaped.
pub fn inspection(i: &Inspection) -> String {
    let mut s = String::new();
    let d = &i.descriptor;
    let _ = writeln!(s, "{}  {}  {} bytes", d.digest, t(&d.media_type), d.size);
    for img in &i.images {
        let _ = write!(s, "\nplatform  {}\n", t(&img.platform));
        if !img.nested_in.is_empty() {
            let path: Vec<String> = img.nested_in.iter().map(|d| d.to_string()).collect();
            let _ = writeln!(s, "in index  {}", path.join(" > "));
        }
        let _ = writeln!(s, "manifest  {}", img.manifest_digest);
        let c = &img.manifest.config;
        let _ = writeln!(s, "config    {}  {} bytes", c.digest, c.size);
        if let Some(created) = &img.config.created {
            let _ = writeln!(s, "created   {}", t(created));
        }
        let total = crate::oci::total_size(img.manifest.layers.iter().map(|l| l.size));
        let _ = writeln!(
            s,
            "layers    {} ({} bytes)",
            img.manifest.layers.len(),
            total
        );
        for (n, l) in img.manifest.layers.iter().enumerate() {
            let diff = img
                .config
                .rootfs
                .diff_ids
                .get(n)
                .map(|d| d.to_string())
                .unwrap_or_default();
            let _ = write!(
                s,
                "  {:>2}  {}  {:>12}  {}\n      diffID {}\n",
                n + 1,
                l.digest,
                l.size,
                t(&l.media_type),
                diff
            );
        }
        if let Some(rc) = &img.config.config {
            if let Some(ep) = &rc.entrypoint {
                let _ = writeln!(s, "entrypoint {}", t(&format!("{ep:?}")));
            }
            if let Some(cmd) = &rc.cmd {
                let _ = writeln!(s, "cmd       {}", t(&format!("{cmd:?}")));
            }
            if let Some(w) = &rc.working_dir {
                let _ = writeln!(s, "workdir   {}", t(w));
            }
            if let Some(u) = &rc.user {
                let _ = writeln!(s, "user      {}", t(u));
            }
            for e in rc.env.iter().flatten() {
                let _ = writeln!(s, "env       {}", t(e));
            }
            for (k, v) in rc.labels.iter().flatten() {
                let _ = writeln!(s, "label     {}={}", t(k), t(v));
            }
        }
        for (k, v) in &img.manifest.annotations {
            let _ = writeln!(s, "annotation {}={}", t(k), t(v));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::{Descriptor, Digest};
    use crate::ops::inspect::{ImageInfo, Inspection};
    use serde_json::json;

    #[test]
    fn the_text_form() {
        let layer = |n: &[u8]| {
            json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": Digest::of(n).to_string(),
                "size": 1234,
            })
        };
        let manifest = serde_json::from_value(json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": Digest::of(b"config").to_string(),
                "size": 321,
            },
            "layers": [layer(b"a"), layer(b"b")],
            "annotations": {"org.opencontainers.image.version": "1.4.0"},
        }))
        .unwrap();
        let config = serde_json::from_value(json!({
            "created": "2024-01-01T00:00:00Z",
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Entrypoint": ["/bin/r2d"],
                "Cmd": ["--help"],
                "WorkingDir": "/srv",
                "User": "1000:1000",
                "Env": ["PATH=/bin"],
                "Labels": {"a": "b"},
            },
            "rootfs": {"type": "layers", "diff_ids": [Digest::of(b"x").to_string()]},
        }))
        .unwrap();
        let i = Inspection {
            descriptor: Descriptor::of_bytes("application/vnd.oci.image.manifest.v1+json", b"m"),
            index: None,
            images: vec![ImageInfo {
                platform: "linux/amd64".into(),
                manifest_digest: Digest::of(b"m"),
                nested_in: Vec::new(),
                manifest,
                config,
            }],
        };
        let text = inspection(&i);
        assert_eq!(text, include_str!("testdata/inspect.txt"));
        assert!(text.contains("entrypoint [\"/bin/r2d\"]"), "{text}");
        assert!(text.contains("label     a=b"), "{text}");
    }
}

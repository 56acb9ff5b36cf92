//! The image config of one platform: the base's config (if any) with the
//! recipe's `[config]` applied, the rootfs diff IDs and one history entry per
//! recipe layer (and per base layer the base's history leaves out). Pure: no I/O, so every rule here is visible in the digest.

use std::collections::BTreeMap;

use crate::layer::BuiltLayer;
use crate::oci::{Digest, History, ImageConfig, RootFs, RuntimeConfig};
use crate::recipe::{Plan, PlatformPlan};

use super::base::BaseImage;

/// The config for platform `p`: `base`'s layers first, then `layers` (the
/// recipe's, in order); `created` is the RFC 3339 build time.
pub(super) fn image_config(
    plan: &Plan,
    p: &PlatformPlan,
    base: Option<&BaseImage>,
    layers: &[&BuiltLayer],
    created: &str,
) -> ImageConfig {
    let mut cfg = base.map(|b| b.config.clone()).unwrap_or_default();
    let c = &p.config;
    let mut rc = cfg.config.take().unwrap_or_default();
    if !c.env.is_empty() {
        let mut env = rc.env.take().unwrap_or_default();
        for (k, v) in &c.env {
            let entry = format!("{k}={v}");
            match env
                .iter_mut()
                .find(|e| e.split('=').next() == Some(k.as_str()))
            {
                Some(e) => *e = entry,
                None => env.push(entry),
            }
        }
        rc.env = Some(env);
    }
    if let Some(ep) = &c.entrypoint {
        rc.entrypoint = Some(ep.clone());
        // As with Dockerfile ENTRYPOINT: a new entrypoint drops the base's CMD.
        rc.cmd = None;
    }
    if let Some(cmd) = &c.cmd {
        rc.cmd = Some(cmd.clone());
    }
    set(&mut rc.working_dir, &c.workdir);
    set(&mut rc.user, &c.user);
    set(&mut rc.stop_signal, &c.stop_signal);
    if !c.labels.is_empty() {
        rc.labels
            .get_or_insert_with(BTreeMap::new)
            .extend(c.labels.clone());
    }
    for port in &c.exposed_ports {
        rc.exposed_ports
            .get_or_insert_with(BTreeMap::new)
            .insert(port.clone(), serde_json::json!({}));
    }
    for v in &c.volumes {
        rc.volumes
            .get_or_insert_with(BTreeMap::new)
            .insert(v.clone(), serde_json::json!({}));
    }
    cfg.config = (rc != RuntimeConfig::default()).then_some(rc);
    cfg.created = Some(created.to_string());
    if plan.author.is_some() {
        cfg.author = plan.author.clone();
    }
    cfg.platform.architecture = p.platform.architecture.clone();
    cfg.platform.os = p.platform.os.clone();
    cfg.platform.variant = p.platform.variant.clone();
    let mut diff_ids: Vec<Digest> = base
        .map(|b| b.layers.iter().map(|(_, d)| d.clone()).collect())
        .unwrap_or_default();
    diff_ids.extend(layers.iter().map(|l| l.diff_id.clone()));
    cfg.rootfs = RootFs {
        kind: "layers".into(),
        diff_ids,
    };
    // One history entry per layer, as buildah requires of a base: the base's
    // layers its history does not describe (a base without history) get
    // one each first.
    if let Some(b) = base {
        for _ in cfg.described_layers()..b.layers.len() {
            cfg.history.push(History {
                created_by: Some("a layer of the base, which its history does not describe".into()),
                comment: Some("boxwright".into()),
                ..Default::default()
            });
        }
    }
    for l in &p.layers {
        cfg.history.push(History {
            created: Some(created.to_string()),
            created_by: Some(format!("boxwright build: {}", l.name)),
            comment: Some("boxwright".into()),
            ..Default::default()
        });
    }
    cfg
}

fn set(field: &mut Option<String>, value: &Option<String>) {
    if value.is_some() {
        *field = value.clone();
    }
}

//! From a parsed recipe to a [`Plan`]: variables, build context, image name,
//! creation time, platforms, and per platform the `[config]` section and the
//! layers (planned once when no `${ARCH}`-like variable makes them differ).

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};

use super::layer::{self, LayerPlan};
use super::schema::{ConfigSection, Created, RecipeFile, Str};
use super::{base, targets, vars, Base, ConfigPlan, LoadOptions, Plan, PlatformPlan, Source};
use crate::error::bad_input;
use crate::oci::{self, Platform};

pub(super) fn resolve(src: &Source, file: RecipeFile, opts: &LoadOptions) -> Result<Plan> {
    let mut vars = opts.vars.clone();
    for (k, v) in &file.vars {
        if !vars::is_name(k) || vars::PLATFORM_VARS.contains(&k.as_str()) {
            return Err(src.err(
                v.span(),
                format!("[vars] {k:?} is not a usable variable name"),
            ));
        }
        vars.defaults.insert(k.clone(), v.get_ref().clone());
    }
    let g = |s: &Str| -> Result<String> {
        vars.expand(s.get_ref(), &[])
            .map_err(|m| src.err(s.span(), m))
    };

    let recipe_dir = path_dir(&src.path);
    let context = match (&opts.context, &file.context) {
        (Some(c), _) => c.clone(),
        (None, Some(c)) => recipe_dir.join(g(c)?),
        (None, None) => recipe_dir.clone(),
    };
    let context = context.canonicalize().map_err(|e| {
        bad_input(format!(
            "{}: build context {} cannot be used: {e}",
            src.path.display(),
            context.display()
        ))
    })?;

    let name = g(&file.image.name)?;
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(src.err(
            file.image.name.span(),
            format!("image name {name:?} must be a single non-empty path component"),
        ));
    }

    let base = base::resolve(src, &file.image, &recipe_dir, &g)?;

    let created = match &file.image.created {
        Some(c) => {
            match c.get_ref() {
                Created::Epoch(e) => *e,
                Created::Text(t) => {
                    let t = vars.expand(t, &[]).map_err(|m| src.err(c.span(), m))?;
                    parse_time(&t).ok_or_else(|| src.err(c.span(), format!("created {t:?} is neither an RFC 3339 time nor seconds since the epoch")))?
                }
            }
        }
        None => match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(v) if opts.vars.use_env => v.trim().parse().map_err(|_| {
                bad_input(format!(
                    "SOURCE_DATE_EPOCH={v:?} is not a whole number of seconds since the epoch"
                ))
            })?,
            _ => 0,
        },
    };
    if created < 0 {
        return Err(bad_input(format!(
            "{}: created time is before 1970",
            src.path.display()
        )));
    }

    let tags = targets::tags(src, &file.tags, &g)?;
    let targets = targets::targets(src, &file.targets, &g)?;

    let platform_strs: Vec<(String, Range<usize>)> = match (&opts.platforms, &file.image.platforms)
    {
        (Some(p), _) => p.iter().map(|s| (s.clone(), 0..0)).collect(),
        (None, Some(p)) => p
            .iter()
            .map(|s| Ok((g(s)?, s.span())))
            .collect::<Result<_>>()?,
        (None, None) => vec![("linux/amd64".to_string(), 0..0)],
    };
    if platform_strs.is_empty() {
        return Err(bad_input(format!(
            "{}: [image] platforms is empty; list at least one, e.g. [\"linux/amd64\"]",
            src.path.display()
        )));
    }
    let mut platforms: Vec<Platform> = Vec::new();
    for (s, span) in &platform_strs {
        let p = Platform::parse(s).map_err(|m| {
            if span.is_empty() {
                bad_input(m)
            } else {
                src.err(span.clone(), m)
            }
        })?;
        if platforms.contains(&p) {
            return Err(bad_input(format!(
                "{}: platform {p} is listed twice",
                src.path.display()
            )));
        }
        platforms.push(p);
    }
    platforms.sort();

    if file.layers.is_empty() && base == Base::Scratch {
        return Err(bad_input(format!(
            "{}: the recipe has no [[layer]] and no base image: the image would be empty",
            src.path.display()
        )));
    }

    // Layers identical across platforms (no ${ARCH} in them) are planned once
    // and built once.
    let mut layer_cache: Vec<Arc<LayerPlan>> = Vec::new();
    let mut plans = Vec::new();
    for platform in platforms {
        let variant = platform.variant.clone().unwrap_or_default();
        let scoped = [
            ("OS", platform.os.as_str()),
            ("ARCH", platform.architecture.as_str()),
            ("VARIANT", variant.as_str()),
        ];
        let p = |s: &Str| -> Result<String> {
            vars.expand(s.get_ref(), &scoped)
                .map_err(|m| src.err(s.span(), m))
        };
        let config = config(src, &file.config, &p)?;
        let annotations = file
            .annotations
            .iter()
            .map(|(k, v)| Ok((k.clone(), p(v)?)))
            .collect::<Result<_>>()?;
        let mut layers = Vec::new();
        for (i, section) in file.layers.iter().enumerate() {
            let plan = layer::plan_layer(src, &context, i, section, &|s: &Str| p(s))
                .with_context(|| format!("planning layer {} for {platform}", i + 1))?;
            let plan = match layer_cache.iter().find(|l| ***l == plan) {
                Some(same) => same.clone(),
                None => {
                    let plan = Arc::new(plan);
                    layer_cache.push(plan.clone());
                    plan
                }
            };
            layers.push(plan);
        }
        plans.push(PlatformPlan {
            platform,
            config,
            annotations,
            layers,
        });
    }

    Ok(Plan {
        recipe: src.path.clone(),
        context,
        name,
        base,
        created,
        author: file.image.author.as_ref().map(&g).transpose()?,
        sbom: file.image.sbom.as_ref().map(&g).transpose()?,
        tags,
        targets,
        platforms: plans,
    })
}

/// The `[config]` section for one platform, `p` expanding its variables.
fn config(
    src: &Source,
    c: &ConfigSection,
    p: &dyn Fn(&Str) -> Result<String>,
) -> Result<ConfigPlan> {
    let list = |v: &Option<Vec<Str>>| -> Result<Option<Vec<String>>> {
        v.as_ref().map(|v| v.iter().map(&p).collect()).transpose()
    };
    let mut env = Vec::new();
    for (k, v) in &c.env {
        if k.is_empty() || k.contains('=') {
            return Err(src.err(
                v.span(),
                format!("environment variable name {k:?} is empty or contains `=`"),
            ));
        }
        env.push((k.clone(), p(v)?));
    }
    let mut exposed_ports = Vec::new();
    for port in &c.exposed_ports {
        let s = p(port)?;
        exposed_ports.push(normalize_port(&s).ok_or_else(|| {
            src.err(
                port.span(),
                format!("port {s:?} is not PORT or PORT/tcp|udp|sctp"),
            )
        })?);
    }
    let mut volumes = Vec::new();
    for v in &c.volumes {
        let s = p(v)?;
        if !s.starts_with('/') {
            return Err(src.err(v.span(), format!("volume {s:?} must be an absolute path")));
        }
        volumes.push(s);
    }
    let workdir = c.workdir.as_ref().map(|w| -> Result<String> {
        let s = p(w)?;
        if !s.starts_with('/') {
            return Err(src.err(w.span(), format!("workdir {s:?} must be an absolute path")));
        }
        Ok(s)
    });
    Ok(ConfigPlan {
        entrypoint: list(&c.entrypoint)?,
        cmd: list(&c.cmd)?,
        env,
        workdir: workdir.transpose()?,
        user: c.user.as_ref().map(&p).transpose()?,
        labels: c
            .labels
            .iter()
            .map(|(k, v)| Ok((k.clone(), p(v)?)))
            .collect::<Result<_>>()?,
        exposed_ports,
        volumes,
        stop_signal: c.stop_signal.as_ref().map(&p).transpose()?,
    })
}

fn path_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn parse_time(s: &str) -> Option<i64> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    oci::parse_rfc3339(s)
}

fn normalize_port(s: &str) -> Option<String> {
    let (port, proto) = s.split_once('/').unwrap_or((s, "tcp"));
    let n: u32 = port.parse().ok()?;
    (n > 0 && n < 65536 && matches!(proto, "tcp" | "udp" | "sctp")).then(|| format!("{n}/{proto}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_normalised() {
        assert_eq!(normalize_port("8080").as_deref(), Some("8080/tcp"));
        assert_eq!(normalize_port("53/udp").as_deref(), Some("53/udp"));
        assert_eq!(normalize_port("0"), None);
        assert_eq!(parse_time("1700000000"), Some(1_700_000_000));
    }
}

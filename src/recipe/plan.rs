//! From a parsed recipe to a [`Plan`]: variables, build context, image name,
//! creation time, platforms, and per platform the `[config]` section and the
//! layers (planned once when no `${ARCH}`-like variable makes them differ).

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};

use super::layer::{self, LayerPlan};
use super::schema::{ConfigSection, Created, RecipeFile, Str, CREATED_EXPECTED};
use super::sources::PlanEnv;
use super::{base, targets, vars, Base, ConfigPlan, LoadOptions, Plan, PlatformPlan, Source};
use crate::error::bad_input;
use crate::oci::{self, Platform};

/// The most platforms one recipe builds: far above any real image (the
/// official images have about ten), far below what would make planning
/// each of them, and its own copy of every string, strain time or memory.
const MAX_PLATFORMS: usize = 64;

pub(super) fn resolve(src: &Source, file: RecipeFile, opts: &LoadOptions) -> Result<Plan> {
    let mut vars = opts.vars.clone();
    if let Some(k) = vars
        .sets
        .keys()
        .find(|k| vars::PLATFORM_VARS.contains(&k.as_str()))
    {
        return Err(bad_input(format!(
            "--set {k}: `${{{k}}}` is each platform's own and cannot be set; choose the platforms with --platform"
        )));
    }
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
    let context_span = file
        .context
        .as_ref()
        .filter(|_| opts.context.is_none())
        .map(|c| c.span());
    let context = context.canonicalize().map_err(|e| {
        src.err_opt(
            context_span.clone(),
            format!("build context {} cannot be used: {e}", context.display()),
        )
    })?;
    if !context.is_dir() {
        return Err(src.err_opt(
            context_span,
            format!(
                "build context {} is not a directory; give the directory that the sources are in",
                context.display()
            ),
        ));
    }
    let image = file.image.get_ref();

    let name = g(&image.name)?;
    if name.is_empty()
        || name.contains('/')
        || name.starts_with('.')
        || name.contains(char::is_control)
    {
        return Err(src.err(
            image.name.span(),
            format!("image name {name:?} must be a single non-empty path component, without control characters"),
        ));
    }

    let base = base::resolve(src, image, &recipe_dir, &g)?;

    let created = created(src, &file, &vars)?;

    let tags = targets::tags(src, &file.tags, &g)?;
    let targets = targets::targets(src, &file.targets, &g)?;

    let platform_strs: Vec<(String, Option<Range<usize>>)> =
        match (&opts.platforms, &image.platforms) {
            (Some(p), _) => p.iter().map(|s| (s.clone(), None)).collect(),
            (None, Some(p)) => {
                if p.get_ref().is_empty() {
                    return Err(src.err(
                        p.span(),
                        "[image] platforms is empty; list at least one, e.g. [\"linux/amd64\"]",
                    ));
                }
                p.get_ref()
                    .iter()
                    .map(|s| Ok((g(s)?, Some(s.span()))))
                    .collect::<Result<_>>()?
            }
            (None, None) => vec![("linux/amd64".to_string(), None)],
        };
    if platform_strs.is_empty() {
        return Err(src.err_opt(
            None,
            "no platform given; list at least one, e.g. linux/amd64",
        ));
    }
    if platform_strs.len() > MAX_PLATFORMS {
        let span = image
            .platforms
            .as_ref()
            .filter(|_| opts.platforms.is_none());
        return Err(src.err_opt(
            span.map(|p| p.span()),
            format!(
                "{} platforms are listed; an image is built for at most {MAX_PLATFORMS} (each is planned and built on its own)",
                platform_strs.len()
            ),
        ));
    }
    let mut platforms: Vec<Platform> = Vec::new();
    for (s, span) in &platform_strs {
        let p = Platform::parse(s).map_err(|m| match span {
            Some(span) => src.err(span.clone(), m),
            None => bad_input(m),
        })?;
        if platforms.contains(&p) {
            return Err(src.err_opt(span.clone(), format!("platform {p} is listed twice")));
        }
        platforms.push(p);
    }
    platforms.sort();

    if file.layers.is_empty() && base == Base::Scratch {
        return Err(src.err(
            file.image.span(),
            "the recipe has no [[layer]] and no base image: the image would be empty; \
             add a [[layer]] or set [image] base",
        ));
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
        let env = PlanEnv {
            base_python: match python_without_version(&file) {
                Some(span) => base_python(src, span, &base, &platform, opts)?,
                None => None,
            },
            cache_dir: opts.cache_dir.clone(),
            cache: Default::default(),
            reporter: opts.reporter(),
            output: opts
                .output
                .as_ref()
                .and_then(|f| crate::image::OutputPlace::new(&f(&name))),
        };
        let mut layers = Vec::new();
        for (i, section) in file.layers.iter().enumerate() {
            let cx = layer::LayerCx {
                src,
                context: &context,
                expand: &|s: &Str| p(s),
                env: &env,
                first: i == 0 && base == Base::Scratch,
            };
            let planned = layer::plan_layers(cx, i, section)
                .with_context(|| format!("planning layer {} for {platform}", i + 1))?;
            for plan in planned {
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
        recipe_sha256: oci::Digest::of(src.text.as_bytes()).hex().to_string(),
        context,
        name,
        base,
        created,
        author: image.author.as_ref().map(&g).transpose()?,
        sbom: match &image.sbom {
            Some(v) => {
                let word = g(v)?;
                // Checked here, at its line, not later where it is used.
                if crate::supply::sbom::SbomFormat::parse(&word).is_err() {
                    return Err(src.err(
                        v.span(),
                        format!("sbom = {word:?} is not \"spdx\", \"cyclonedx\" or \"none\""),
                    ));
                }
                Some(word)
            }
            None => None,
        },
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
    // What a runtime hands to the system as C strings (arguments, the
    // environment, paths, the user) cannot hold a NUL byte: an image with
    // one would build and then never start.
    let arg = |s: &Str| -> Result<String> {
        let v = p(s)?;
        if v.contains('\0') {
            return Err(src.err(
                s.span(),
                format!("{v:?} contains a NUL byte, which a container's process cannot be given; remove it"),
            ));
        }
        Ok(v)
    };
    let list = |v: &Option<Vec<Str>>| -> Result<Option<Vec<String>>> {
        v.as_ref().map(|v| v.iter().map(&arg).collect()).transpose()
    };
    let mut env = Vec::new();
    for (k, v) in &c.env {
        if k.is_empty() || k.contains(['=', '\0']) {
            return Err(src.err(
                v.span(),
                format!("environment variable name {k:?} is empty or contains `=` or a NUL byte"),
            ));
        }
        env.push((k.clone(), arg(v)?));
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
        let s = arg(v)?;
        if !s.starts_with('/') {
            return Err(src.err(v.span(), format!("volume {s:?} must be an absolute path")));
        }
        volumes.push(s);
    }
    let workdir = c.workdir.as_ref().map(|w| -> Result<String> {
        let s = arg(w)?;
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
        user: c.user.as_ref().map(&arg).transpose()?,
        labels: c
            .labels
            .iter()
            .map(|(k, v)| Ok((k.clone(), p(v)?)))
            .collect::<Result<_>>()?,
        exposed_ports,
        volumes,
        stop_signal: c.stop_signal.as_ref().map(&arg).transpose()?,
    })
}

/// Where the recipe asks for Python packages without a `version`, if it does.
fn python_without_version(file: &RecipeFile) -> Option<Range<usize>> {
    file.layers.iter().find_map(|l| {
        let l = l.get_ref();
        match &l.python {
            Some(py) if py.get_ref().version.is_none() => Some(py.span()),
            _ => l.entries.iter().find_map(|e| {
                let py = e.get_ref().python.as_ref()?;
                py.get_ref().version.is_none().then(|| py.span())
            }),
        }
    })
}

/// The X.Y of the base image's `PYTHON_VERSION` for `platform` (as the
/// official python images set it: `3.11.9`), read from its config.
fn base_python(
    src: &Source,
    span: Range<usize>,
    base: &Base,
    platform: &Platform,
    opts: &LoadOptions,
) -> Result<Option<String>> {
    let registry = match (base, &opts.registry_base) {
        (Base::Scratch, _) => return Ok(None),
        (Base::Registry { .. }, None) => {
            return Err(src.err(
                span,
                "the base image's PYTHON_VERSION cannot be read here; set version = \"X.Y\"",
            ))
        }
        (Base::Registry { .. }, Some(make)) => Some(make()?),
        (Base::Oci { .. }, _) => None,
    };
    let config =
        crate::build::base_config(base, platform, registry.as_deref()).with_context(|| {
            format!("reading the base image's config for {platform} (for its PYTHON_VERSION)")
        })?;
    let env = config
        .and_then(|c| c.config)
        .and_then(|c| c.env)
        .unwrap_or_default();
    let Some(value) = env.iter().find_map(|e| e.strip_prefix("PYTHON_VERSION=")) else {
        return Ok(None);
    };
    let mut parts = value.split('.');
    match (parts.next(), parts.next()) {
        (Some(x), Some(y)) if x.parse::<u32>().is_ok() && y.parse::<u32>().is_ok() => {
            Ok(Some(value.to_string()))
        }
        _ => Err(src.err(
            span,
            format!("the base image's PYTHON_VERSION={value:?} is not X.Y or X.Y.Z; set version = \"X.Y\""),
        )),
    }
}

fn path_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `[image] created`, else `SOURCE_DATE_EPOCH` when set and not empty (as
/// BuildKit and ko read it), else 0. The time is also every tar entry's
/// mtime, which cannot be before 1970; the latest is 9999-12-31T23:59:59Z.
fn created(src: &Source, file: &RecipeFile, vars: &vars::Vars) -> Result<i64> {
    let range = format!(
        "from 0 (1970-01-01T00:00:00Z) to {} ({})",
        oci::MAX_EPOCH,
        oci::rfc3339(oci::MAX_EPOCH)
    );
    let Some(c) = &file.image.get_ref().created else {
        let var = match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(v) if vars.use_env && !v.trim().is_empty() => v,
            _ => return Ok(0),
        };
        return match parse_epoch(var.trim()) {
            Some(e) if (0..=oci::MAX_EPOCH).contains(&e) => Ok(e),
            _ => Err(bad_input(format!(
                "SOURCE_DATE_EPOCH={var:?} is not a whole number of seconds since the epoch {range}; \
                 unset it or leave it empty for 0"
            ))),
        };
    };
    let at = |m: String| src.err(c.span(), format!("{m}; expected {CREATED_EXPECTED}"));
    let (shown, epoch) = match c.get_ref() {
        Created::Epoch(e) => (e.to_string(), *e),
        Created::Text(t) => {
            let t = vars.expand(t, &[]).map_err(|m| src.err(c.span(), m))?;
            let epoch = match parse_epoch(&t) {
                Some(e) => e,
                None if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => i64::MAX,
                None => oci::check_rfc3339(&t)
                    .map_err(|why| at(format!("created {t:?} is not an RFC 3339 time: {why}")))?,
            };
            (format!("{t:?}"), epoch)
        }
    };
    if !(0..=oci::MAX_EPOCH).contains(&epoch) {
        return Err(at(format!(
            "created {shown} is out of range: seconds {range}"
        )));
    }
    Ok(epoch)
}

/// Whole seconds since the epoch, written as decimal digits.
fn parse_epoch(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
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
    }

    #[test]
    fn created_is_checked_after_variables() {
        let created = |value: &str| {
            let text = format!(
                "[vars]\nT = \"2024-02-29T00:00:00Z\"\n[image]\nname = \"t\"\nbase = \"r/x\"\ncreated = {value}\n"
            );
            super::super::load_bytes(
                Path::new("r.toml"),
                text.as_bytes(),
                &LoadOptions::default(),
            )
            .map(|p| p.created)
            .map_err(|e| e.to_string())
        };
        assert_eq!(created("1700000000"), Ok(1_700_000_000));
        assert_eq!(created("\"1700000000\""), Ok(1_700_000_000));
        assert_eq!(created("\"${T}\""), Ok(1_709_164_800));
        assert_eq!(created("0"), Ok(0));
        assert_eq!(created("253402300799"), Ok(oci::MAX_EPOCH));
        for bad in [
            "-1",
            "253402300800",
            "\"1969-12-31T23:59:59Z\"",
            "\"99999999999999999999\"",
        ] {
            let err = created(bad).unwrap_err();
            assert!(
                err.starts_with("r.toml:6:11: created ") && err.contains("out of range"),
                "{bad}: {err}"
            );
        }
        let err = created("\"2023-02-29T00:00:00Z\"").unwrap_err();
        assert!(
            err.contains("2023-02 has 28 days; expected created: an RFC 3339 time"),
            "{err}"
        );
        assert!(created("\"${NOPE}\"").unwrap_err().contains("NOPE"));
    }
}

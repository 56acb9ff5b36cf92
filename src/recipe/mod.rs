//! Recipes: parse a TOML recipe, substitute variables, check everything, and
//! resolve it into a [`Plan`] with absolute, checked paths and, per layer, the
//! resolved sources whose entries are streamed in tar order. Nothing is
//! written until the whole recipe is valid, and every error names the recipe
//! file with line and column, or the path.

pub mod schema;
pub mod vars;
mod walk;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::error::bad_input;
use crate::oci::{self, Platform};
use schema::{Created, RecipeFile, Str};
pub use vars::Vars;
pub use walk::{Entries, Entry, EntryKind, LayerPlan};

/// A recipe resolved and checked, ready to build.
#[derive(Debug)]
pub struct Plan {
    pub recipe: PathBuf,
    pub context: PathBuf,
    pub name: String,
    pub base: Base,
    /// Seconds since the Unix epoch.
    pub created: i64,
    pub author: Option<String>,
    pub tags: Vec<String>,
    pub targets: Vec<Target>,
    pub platforms: Vec<PlatformPlan>,
}

/// Where the image starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    Scratch,
    /// An image in an OCI layout on disk. `display` is the recipe's own text,
    /// recorded in the `org.opencontainers.image.base.name` annotation.
    Oci {
        dir: PathBuf,
        name: Option<String>,
        display: String,
    },
    /// A registry image with fallbacks, tried in order.
    Registry {
        reference: String,
        fallback: Vec<String>,
    },
}

/// What one platform's image holds.
#[derive(Debug)]
pub struct PlatformPlan {
    pub platform: Platform,
    pub config: ConfigPlan,
    pub annotations: BTreeMap<String, String>,
    pub layers: Vec<Arc<LayerPlan>>,
}

/// The `[config]` section with variables substituted.
#[derive(Debug, Default, Clone)]
pub struct ConfigPlan {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Vec<(String, String)>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub exposed_ports: Vec<String>,
    pub volumes: Vec<String>,
    pub stop_signal: Option<String>,
}

/// A registry the image is pushed to (`[[target]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `registry/repository`, without tag.
    pub reference: String,
    pub role: Role,
    pub username_env: Option<String>,
    pub password_env: Option<String>,
    pub base64: bool,
    pub optional: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Backup,
}

/// Options that come from the command line rather than the recipe.
#[derive(Debug, Default, Clone)]
pub struct LoadOptions {
    pub vars: Vars,
    /// Overrides the recipe's `context`.
    pub context: Option<PathBuf>,
    /// Overrides the recipe's `[image] platforms`.
    pub platforms: Option<Vec<String>>,
}

/// The recipe text, for turning byte spans into `file:line:column`.
pub(crate) struct Source {
    pub path: PathBuf,
    pub text: String,
}

impl Source {
    pub fn at(&self, span: Range<usize>) -> String {
        let before = &self.text[..span.start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
        format!("{}:{line}:{col}", self.path.display())
    }

    /// A bad-input error located at `span`.
    pub fn err(&self, span: Range<usize>, msg: impl std::fmt::Display) -> anyhow::Error {
        bad_input(format!("{}: {msg}", self.at(span)))
    }
}

/// Read, check and resolve the recipe at `path`.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Plan> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad_input(format!("{}: cannot read recipe: {e}", path.display())))?;
    let src = Source {
        path: path.to_path_buf(),
        text,
    };
    let file: RecipeFile = toml::from_str(&src.text).map_err(|e| {
        let at = e
            .span()
            .map(|s| src.at(s))
            .unwrap_or_else(|| path.display().to_string());
        bad_input(format!("{at}: {}", e.message().trim_end()))
    })?;
    resolve(&src, file, opts)
}

fn resolve(src: &Source, file: RecipeFile, opts: &LoadOptions) -> Result<Plan> {
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

    let base = match &file.image.base {
        None => Base::Scratch,
        Some(b) => {
            let text = g(b)?;
            if text == "scratch" {
                Base::Scratch
            } else if let Some(rest) = text.strip_prefix("oci:") {
                let (dir, name) = crate::image::layout::split_layout_ref(
                    &recipe_dir.join(rest).to_string_lossy(),
                );
                if !dir.join("oci-layout").is_file() {
                    return Err(src.err(
                        b.span(),
                        format!(
                            "base {text:?}: {} is not an OCI image layout",
                            dir.display()
                        ),
                    ));
                }
                Base::Oci {
                    dir,
                    name,
                    display: text,
                }
            } else {
                let fallback = file
                    .image
                    .base_fallback
                    .iter()
                    .map(&g)
                    .collect::<Result<Vec<_>>>()?;
                Base::Registry {
                    reference: text,
                    fallback,
                }
            }
        }
    };

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

    let mut tags = Vec::new();
    for t in &file.tags {
        let tag = g(t)?;
        if !is_tag(&tag) {
            return Err(src.err(t.span(), format!("tag {tag:?} is not valid: 1 to 128 of [A-Za-z0-9_.-], not starting with . or -")));
        }
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    if tags.is_empty() {
        tags.push("latest".to_string());
    }

    let mut targets = Vec::new();
    for t in &file.targets {
        let reference = g(&t.reference)?;
        if let Err(m) = check_repository_ref(&reference) {
            return Err(src.err(t.reference.span(), m));
        }
        let role = match t.role.as_ref().map(|r| (g(r), r.span())) {
            None => Role::Primary,
            Some((r, span)) => match r?.as_str() {
                "primary" => Role::Primary,
                "backup" => Role::Backup,
                other => {
                    return Err(src.err(
                        span,
                        format!("role {other:?} is neither \"primary\" nor \"backup\""),
                    ))
                }
            },
        };
        let base64 = match t.encoding.as_ref() {
            None => false,
            Some(e) => match e.get_ref().as_str() {
                "plain" => false,
                "base64" => true,
                other => {
                    return Err(src.err(
                        e.span(),
                        format!("encoding {other:?} is neither \"plain\" nor \"base64\""),
                    ))
                }
            },
        };
        let env_name = |s: &Option<Str>| -> Result<Option<String>> {
            match s {
                None => Ok(None),
                Some(s) if vars::is_name(s.get_ref()) => Ok(Some(s.get_ref().clone())),
                Some(s) => Err(src.err(
                    s.span(),
                    format!("{:?} is not an environment variable name", s.get_ref()),
                )),
            }
        };
        let target = Target {
            reference,
            role,
            username_env: env_name(&t.username_env)?,
            password_env: env_name(&t.password_env)?,
            base64,
            optional: t.optional,
        };
        if target.username_env.is_some() != target.password_env.is_some() {
            return Err(src.err(
                t.reference.span(),
                "give both username_env and password_env, or neither",
            ));
        }
        if targets
            .iter()
            .any(|o: &Target| o.reference == target.reference)
        {
            return Err(src.err(
                t.reference.span(),
                format!("target {} is listed twice", target.reference),
            ));
        }
        targets.push(target);
    }

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
        let list = |v: &Option<Vec<Str>>| -> Result<Option<Vec<String>>> {
            v.as_ref().map(|v| v.iter().map(&p).collect()).transpose()
        };
        let c = &file.config;
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
        let config = ConfigPlan {
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
        };
        let annotations = file
            .annotations
            .iter()
            .map(|(k, v)| Ok((k.clone(), p(v)?)))
            .collect::<Result<_>>()?;
        let mut layers = Vec::new();
        for (i, section) in file.layers.iter().enumerate() {
            let plan = walk::plan_layer(src, &context, i, section, &|s: &Str| p(s))
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
        tags,
        targets,
        platforms: plans,
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

/// A tag as the distribution spec allows: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn is_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// Check a `registry/repository` reference without tag or digest.
fn check_repository_ref(r: &str) -> Result<(), String> {
    if r.contains("://") {
        return Err(format!(
            "target {r:?} must not have a scheme: write registry/repository, e.g. ghcr.io/acme/app"
        ));
    }
    if r.contains('@') || r.rsplit('/').next().is_some_and(|last| last.contains(':')) {
        return Err(format!(
            "target {r:?} must not carry a tag or digest: tags come from the recipe's `tags`"
        ));
    }
    let (host, repo) = r.split_once('/').ok_or_else(|| {
        format!("target {r:?} must be registry/repository, e.g. docker.io/acme/app")
    })?;
    if !(host.contains('.') || host.contains(':') || host == "localhost") {
        return Err(format!("target {r:?} must start with a registry host (ghcr.io, docker.io, localhost:5000, ...)"));
    }
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            })
            && c.as_bytes()[0].is_ascii_alphanumeric()
            && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
    };
    if !repo.split('/').all(component_ok) {
        return Err(format!(
            "target {r:?}: repository {repo:?} must be lowercase path components of [a-z0-9._-]"
        ));
    }
    Ok(())
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
    fn reference_and_tag_checks() {
        assert!(check_repository_ref("ghcr.io/acme/diagram-to-iac-r2d").is_ok());
        assert!(check_repository_ref("localhost:5000/a").is_ok());
        assert!(check_repository_ref("ghcr.io/Acme/x")
            .unwrap_err()
            .contains("lowercase"));
        assert!(check_repository_ref("ghcr.io/acme/x:1.0")
            .unwrap_err()
            .contains("tag"));
        assert!(check_repository_ref("acme/x")
            .unwrap_err()
            .contains("registry host"));
        assert!(is_tag("1.4.0") && is_tag("latest") && !is_tag("-x") && !is_tag("a/b"));
        assert_eq!(normalize_port("8080").as_deref(), Some("8080/tcp"));
        assert_eq!(normalize_port("53/udp").as_deref(), Some("53/udp"));
        assert_eq!(normalize_port("0"), None);
    }

    #[test]
    fn locations_are_line_and_column() {
        let src = Source {
            path: "r.toml".into(),
            text: "a = 1\nbb = 2\n".into(),
        };
        assert_eq!(src.at(6..8), "r.toml:2:1");
        assert_eq!(src.at(11..12), "r.toml:2:6");
    }
}

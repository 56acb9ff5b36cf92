//! `build --check-reproducible`: the plan built a second time another way
//! (another thread count, each directory read in reverse order, another
//! umask, no layer cache) into a scratch layout, and every recipe layer
//! compared with the first build's. On a difference, the first tar entry
//! and field that differ are named, as diffoci does.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest as _, Sha256};

use super::{build, BuildOptions, BuildResult};
use crate::image::layout::blob_path;
use crate::layer::decoder;
use crate::progress;
use crate::recipe::{self, Plan};

/// Two builds of one layer that differ.
#[derive(Debug, Clone)]
pub struct NotReproducible {
    /// The layer's name in the recipe.
    pub layer: String,
    /// The path of the first tar entry that differs.
    pub entry: String,
    /// Which field: `path`, `type`, `mode`, `uid`, `gid`, `uname`, `gname`,
    /// `size`, `mtime`, `link`, `content`, or `presence`.
    pub field: String,
    pub first: String,
    pub second: String,
}

impl fmt::Display for NotReproducible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "layer {:?} is not reproducible: entry {} differs in {} (first build: {}, second build: {}); \
             an input changed while building, or depends on how it is read",
            self.layer, self.entry, self.field, self.first, self.second
        )
    }
}

impl std::error::Error for NotReproducible {}

/// Build `plan` again another way and compare its layers with `first`'s;
/// an error carrying [`NotReproducible`] names the first difference.
pub fn check_reproducible(plan: &Plan, opts: &BuildOptions, first: &BuildResult) -> Result<()> {
    let scratch = tempfile::Builder::new()
        .prefix(".boxwright-check-")
        .tempdir_in(first.layout.parent().unwrap_or(Path::new(".")))
        .context("creating a scratch directory for the second build")?;
    let other = BuildOptions {
        output: scratch.path().join("second"),
        jobs: if opts.jobs > 1 { 1 } else { 2 },
        layer_cache: None,
        on_layer: None,
        on_layer_start: None,
        reporter: progress::silent(),
        ..opts.clone()
    };
    let second = {
        let _order = recipe::ReversedReadOrder::new();
        let _umask = Umask::set(0o077);
        build(plan, &other).context("building a second time")?
    };
    for (a, b) in first.images.iter().zip(&second.images) {
        for (la, lb) in a.layers.iter().zip(&b.layers) {
            if la.descriptor.digest == lb.descriptor.digest {
                continue;
            }
            let diff = first_difference(
                &blob_path(&first.layout, &la.descriptor.digest),
                &blob_path(&second.layout, &lb.descriptor.digest),
            )?
            .unwrap_or_else(|| Diff {
                entry: "(none)".into(),
                field: "compressed bytes".into(),
                first: la.descriptor.digest.to_string(),
                second: lb.descriptor.digest.to_string(),
            });
            return Err(NotReproducible {
                layer: la.source.clone(),
                entry: diff.entry,
                field: diff.field,
                first: diff.first,
                second: diff.second,
            }
            .into());
        }
    }
    Ok(())
}

/// The process umask, put back on drop.
struct Umask(libc::mode_t);

impl Umask {
    fn set(mask: libc::mode_t) -> Umask {
        // SAFETY: umask only swaps the process's file-creation mask.
        Umask(unsafe { libc::umask(mask) })
    }
}

impl Drop for Umask {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::umask(self.0) };
    }
}

struct Diff {
    entry: String,
    field: String,
    first: String,
    second: String,
}

/// What one tar entry is, field by field, with its content's sha256.
fn fields(e: &mut tar::Entry<'_, impl Read>) -> io::Result<Vec<(&'static str, String)>> {
    let h = e.header().clone();
    let show = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
    let mut hasher = Sha256::new();
    io::copy(e, &mut hasher)?;
    Ok(vec![
        (
            "path",
            String::from_utf8_lossy(&e.path_bytes()).into_owned(),
        ),
        ("type", format!("{:?}", h.entry_type())),
        ("mode", format!("{:o}", h.mode()?)),
        ("uid", h.uid()?.to_string()),
        ("gid", h.gid()?.to_string()),
        ("uname", show(h.username_bytes()).unwrap_or_default()),
        ("gname", show(h.groupname_bytes()).unwrap_or_default()),
        ("size", e.size().to_string()),
        ("mtime", h.mtime()?.to_string()),
        (
            "link",
            show(e.link_name_bytes().as_deref()).unwrap_or_default(),
        ),
        (
            "content",
            format!("sha256:{}", hex::encode(hasher.finalize())),
        ),
    ])
}

/// The first entry and field where the tars of two layer blobs differ.
fn first_difference(a: &Path, b: &Path) -> Result<Option<Diff>> {
    let open = |p: &Path| -> Result<tar::Archive<Box<dyn Read>>> {
        let f = File::open(p).with_context(|| format!("opening {}", p.display()))?;
        Ok(tar::Archive::new(decoder(io::BufReader::new(f))?))
    };
    let (mut ta, mut tb) = (open(a)?, open(b)?);
    let (mut ea, mut eb) = (ta.entries()?, tb.entries()?);
    loop {
        match (ea.next().transpose()?, eb.next().transpose()?) {
            (None, None) => return Ok(None),
            (Some(mut x), None) => {
                let path = String::from_utf8_lossy(&x.path_bytes()).into_owned();
                let _ = fields(&mut x)?;
                return Ok(Some(presence(path, "present", "absent")));
            }
            (None, Some(y)) => {
                let path = String::from_utf8_lossy(&y.path_bytes()).into_owned();
                return Ok(Some(presence(path, "absent", "present")));
            }
            (Some(mut x), Some(mut y)) => {
                let (fx, fy) = (fields(&mut x)?, fields(&mut y)?);
                // Entries are in tar order: the earlier path is in one build only.
                let tar_order = |p: &str| {
                    p.bytes()
                        .map(|c| if c == b'/' { 0 } else { c })
                        .collect::<Vec<u8>>()
                };
                match tar_order(&fx[0].1).cmp(&tar_order(&fy[0].1)) {
                    std::cmp::Ordering::Less => {
                        return Ok(Some(presence(fx[0].1.clone(), "present", "absent")))
                    }
                    std::cmp::Ordering::Greater => {
                        return Ok(Some(presence(fy[0].1.clone(), "absent", "present")))
                    }
                    std::cmp::Ordering::Equal => {}
                }
                if let Some(((name, vx), (_, vy))) =
                    fx.iter().zip(&fy).find(|((_, vx), (_, vy))| vx != vy)
                {
                    return Ok(Some(Diff {
                        entry: fx[0].1.clone(),
                        field: name.to_string(),
                        first: vx.clone(),
                        second: vy.clone(),
                    }));
                }
            }
        }
    }
}

fn presence(entry: String, first: &str, second: &str) -> Diff {
    Diff {
        entry,
        field: "presence".into(),
        first: first.into(),
        second: second.into(),
    }
}

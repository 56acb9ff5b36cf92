//! `boxwright inspect LAYOUT[:NAME]`: what an OCI layout holds, as text or
//! `--json`, on stdout; with `--check`, every blob verified too.

use std::fmt::Write as _;

use anyhow::{anyhow, Result};
use clap::Args;
use serde::Serialize;

use boxwright::image::layout;
use boxwright::ops::inspect::{self, Check, Inspection};
use boxwright::render;

use super::stdout::{print, print_json};

#[derive(Args, Debug)]
#[command(
    after_help = "Plain inspect reads index.json, the manifests and the configs, never a layer blob: \
                  a layout with missing or corrupt layers inspects fine. --check reads every blob \
                  to its end and exits 1 when one is missing, truncated or corrupt."
)]
pub struct InspectArgs {
    /// OCI layout directory, optionally with :NAME to pick an image by its ref
    /// name (names may hold colons: DIR:localhost/app:1).
    pub layout: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Also verify every blob (manifests, configs, layers): present, of its
    /// size, with its digest; report each, exit 1 when one fails.
    #[arg(long)]
    pub check: bool,
}

/// `--check --json`: the inspection (when the manifests and configs could
/// be read) and the check.
#[derive(Serialize)]
struct Checked {
    #[serde(flatten)]
    inspection: Option<Inspection>,
    check: Check,
}

pub fn run(args: InspectArgs) -> Result<()> {
    let (dir, name) = layout::split_layout_ref(&args.layout);
    let l = layout::Layout::open(&dir)?;
    if !args.check {
        let i = inspect::inspect(&l, name.as_deref())?;
        return if args.json {
            print_json(&i)
        } else {
            Ok(print(&render::inspect::inspection(&i))?)
        };
    }
    let check = inspect::check(&l, name.as_deref())?;
    let inspection = if check.ok {
        Some(inspect::inspect(&l, name.as_deref())?)
    } else {
        inspect::inspect(&l, name.as_deref()).ok()
    };
    if args.json {
        print_json(&Checked {
            inspection,
            check: check.clone(),
        })?;
    } else {
        let mut text = inspection
            .map(|i| render::inspect::inspection(&i) + "\n")
            .unwrap_or_default();
        text.push_str(&check_text(&check));
        print(&text)?;
    }
    if check.ok {
        return Ok(());
    }
    Err(anyhow!(
        "{} of the {} blobs of {} failed the check",
        check.failed(),
        check.blobs.len(),
        args.layout
    ))
}

/// One line per blob: status, digest, size, media type; then why.
fn check_text(c: &Check) -> String {
    let mut s = format!("check     {} blobs, {} failed\n", c.blobs.len(), c.failed());
    for b in &c.blobs {
        let _ = writeln!(
            s,
            "  {:<11} {}  {:>12}  {}",
            b.status.name(),
            b.digest,
            b.size,
            b.media_type
        );
        if let Some(d) = &b.detail {
            let _ = writeln!(s, "              {d}");
        }
    }
    s
}

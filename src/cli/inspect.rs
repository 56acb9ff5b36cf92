//! `boxwright inspect LAYOUT[:NAME]`: what an OCI layout holds, as text or
//! `--json`, on stdout.

use anyhow::Result;
use clap::Args;

use boxwright::image::layout;
use boxwright::ops::inspect;
use boxwright::render;

use super::stdout::{print, print_json};

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// OCI layout directory, optionally with :NAME to pick an image by its ref name.
    pub layout: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: InspectArgs) -> Result<()> {
    let (dir, name) = layout::split_layout_ref(&args.layout);
    let l = layout::Layout::open(&dir)?;
    let i = inspect::inspect(&l, name.as_deref())?;
    if args.json {
        print_json(&i)
    } else {
        Ok(print(&render::inspect::inspection(&i))?)
    }
}

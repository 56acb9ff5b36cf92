//! `boxwright inspect LAYOUT[:NAME] | REF`: what an OCI layout or a
//! registry image holds, as text or `--json`, on stdout; with `--check`,
//! every blob checked too.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{anyhow, Result};
use clap::Args;
use serde::Serialize;

use boxwright::cache::BlobCache;
use boxwright::image::layout::{self, LayoutImage};
use boxwright::image::remote::RemoteImages;
use boxwright::oci::Platform;
use boxwright::ops::inspect::{self, Check, Inspection};
use boxwright::progress::SharedReporter;
use boxwright::registry::{CredentialStore, Reference};
use boxwright::render;
use boxwright::render::text::one_line;

use super::args::{parse_platform, ConnectionArgs};
use super::stdout::{print, print_json};

#[derive(Args, Debug)]
#[command(
    after_help = "Plain inspect reads index.json, the manifests and the configs, never a layer blob: \
                  a layout with missing or corrupt layers inspects fine. --check reads every blob \
                  of a layout to its end, and asks a registry for every blob with HEAD (present, \
                  of its size), --jobs-per-registry at a time; it exits 1 when one is missing, truncated or corrupt."
)]
pub struct InspectArgs {
    /// OCI layout directory, optionally with :NAME to pick an image by its ref
    /// name (names may hold colons: DIR:localhost/app:1); or an image in a
    /// registry, REGISTRY/REPO[:TAG][@DIGEST] (`docker://REF` when a
    /// directory of that name exists).
    #[arg(value_name = "LAYOUT|REF")]
    pub layout: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Also verify every blob (manifests, configs, layers): present, of its
    /// size, with its digest; report each, exit 1 when one fails.
    #[arg(long)]
    pub check: bool,
    /// Of an index, show only this platform's image (os/arch[/variant]):
    /// two manifest requests instead of one per platform, where each counts
    /// as a pull (Docker Hub). `--check` still checks every platform. A
    /// single image of another platform is refused.
    #[arg(long, value_name = "PLATFORM", value_parser = parse_platform)]
    pub platform: Option<Platform>,
    /// The blob cache a registry image's configs are fetched into [default:
    /// $XDG_CACHE_HOME/boxwright/blobs].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// `--check --json`: the inspection (when the manifests and configs could
/// be read) and the check.
#[derive(Serialize)]
struct Checked {
    #[serde(flatten)]
    inspection: Option<Inspection>,
    check: Check,
}

pub async fn run(args: InspectArgs, reporter: SharedReporter) -> Result<()> {
    if let Some(r) = remote_reference(&args.layout) {
        let reference = Reference::parse(r)?;
        let images = RemoteImages::new(
            args.connection
                .options_with_cache(args.cache_dir.as_deref()),
            CredentialStore::from_env(),
            BlobCache::new(args.cache_dir.clone())?,
            reporter,
        )?;
        let (_, image) = images.open_first(std::slice::from_ref(&reference)).await?;
        let check = match args.check {
            true => Some(inspect::check_registry(&image).await),
            false => None,
        };
        return show(
            &args,
            inspect::inspect(&image, args.platform.as_ref()).await,
            check,
        );
    }
    let (dir, name) = layout::split_layout_ref(&args.layout);
    let image = LayoutImage::open(&dir, name.as_deref())?;
    let check = match args.check {
        true => Some(inspect::check(image.layout(), name.as_deref()).await?),
        false => None,
    };
    show(
        &args,
        inspect::inspect(&image, args.platform.as_ref()).await,
        check,
    )
}

/// The registry reference `arg` names: after `docker://`, or when it names
/// no existing directory and starts with a registry host (a name with a
/// dot or a port, or `localhost`, before the first `/`).
fn remote_reference(arg: &str) -> Option<&str> {
    if let Some(r) = arg.strip_prefix("docker://") {
        return Some(r);
    }
    if layout::split_layout_ref(arg).0.exists() {
        return None;
    }
    let (host, _) = arg.split_once('/')?;
    let relative = host == "." || host == "..";
    (!relative && (host.contains('.') || host.contains(':') || host == "localhost")).then_some(arg)
}

/// Print the inspection (an error when it failed, unless the check is
/// there to show why) and the check; exit 1 when a blob failed it.
fn show(args: &InspectArgs, inspection: Result<Inspection>, check: Option<Check>) -> Result<()> {
    let Some(mut check) = check else {
        let i = inspection?;
        return if args.json {
            print_json(&i)
        } else {
            Ok(print(&render::inspect::inspection(&i))?)
        };
    };
    let inspection = match inspection {
        Ok(i) => {
            check.judge(&i);
            Some(i)
        }
        Err(e) if check.ok => return Err(e),
        Err(_) => None,
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

/// One line per blob: status, digest, size, media type; then why (each
/// text from the layout or registry on one line, escaped).
fn check_text(c: &Check) -> String {
    let mut s = format!("check     {} blobs, {} failed\n", c.blobs.len(), c.failed());
    for b in &c.blobs {
        let _ = writeln!(
            s,
            "  {:<11} {}  {:>12}  {}",
            b.status.name(),
            b.digest,
            b.size,
            one_line(&b.media_type)
        );
        if let Some(d) = &b.detail {
            let _ = writeln!(s, "              {}", one_line(d));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::remote_reference;

    #[test]
    fn a_registry_reference_is_told_from_a_layout_path() {
        assert_eq!(
            remote_reference("ghcr.io/acme/r2d:1.0"),
            Some("ghcr.io/acme/r2d:1.0")
        );
        assert_eq!(
            remote_reference("localhost:5000/a/b"),
            Some("localhost:5000/a/b")
        );
        assert_eq!(remote_reference("localhost/a"), Some("localhost/a"));
        assert_eq!(remote_reference("docker://src"), Some("src"));
        // Not a registry host, or an existing directory: a layout.
        assert_eq!(remote_reference("out/r2d"), None);
        assert_eq!(remote_reference("out:latest"), None);
        assert_eq!(remote_reference("src"), None);
        assert_eq!(remote_reference("/tmp/x.y/out"), None);
        assert_eq!(remote_reference("./ghcr.io/out"), None);
        assert_eq!(remote_reference("../out"), None);
    }
}

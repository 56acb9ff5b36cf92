//! `boxwright verify REF REF...`: do these references name one image?
//!
//! stdout: the table (or `--json`); stderr: the verdict. Exit 0 only when
//! every reference resolves, all to one digest; 1 when one is missing,
//! differs or cannot be resolved (the error names them); 2 for bad input.

use anyhow::{anyhow, Result};
use clap::Args;

use boxwright::progress::{Level, SharedReporter};
use boxwright::render;

use super::args::{parse_all, parse_reference, ConnectionArgs};
use super::stdout::{print, print_json};

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// References to compare: REGISTRY/REPOSITORY[:TAG][@DIGEST] (no tag: latest).
    #[arg(value_name = "REF", required = true, num_args = 1.., value_parser = parse_reference)]
    pub references: Vec<String>,
    /// Print one JSON document (per reference: digest, media type, size,
    /// status) instead of the table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Also check the supply chain with this public key: on every reference
    /// a signature valid for its digest, and the --require'd attestations,
    /// the same on every registry.
    #[arg(long, value_name = "PUB")]
    pub key: Option<std::path::PathBuf>,
    /// With --key: attestations required (comma-separated: sbom, provenance).
    #[arg(long, value_delimiter = ',', requires = "key", value_parser = ["sbom", "provenance", "signature"])]
    pub require: Vec<String>,
}

/// `boxwright verify`.
pub async fn run(args: VerifyArgs, reporter: SharedReporter) -> Result<()> {
    let refs = parse_all(&args.references)?;
    let client = args.connection.client(&reporter)?;
    let report = boxwright::ops::verify::verify(&client, &refs).await;
    if let Some(key) = &args.key {
        return super::sign::verify_supply(&client, &refs, key, &args.require, &report, args.json)
            .await;
    }
    if args.json {
        print_json(&report)?;
    } else {
        print(&render::verify::verify(&report))?;
    }
    match report.problem() {
        None => {
            if let Some(d) = &report.digest {
                reporter.log(
                    Level::Info,
                    &format!("all {} references name {d}", report.references.len()),
                );
            }
            Ok(())
        }
        Some(p) => Err(anyhow!("verify failed: {p}")),
    }
}

//! `boxwright verify REF REF...`: do these references name one image?
//!
//! stdout: the table (or `--json`); stderr: the verdict. Exit 0 only when
//! every reference resolves, all to one digest; 1 when one is missing,
//! differs or cannot be resolved (the error names them); 2 for bad input.
//! `--anonymous` also reports, per reference, whether it can be pulled
//! without credentials (not an error either way).

use anyhow::Result;
use clap::Args;

use boxwright::error::input_if;
use boxwright::ops::verify::{anonymous, Anonymous, VerifyReport};
use boxwright::progress::{Level, SharedReporter};
use boxwright::render;
use boxwright::supply::verify::SupplyReport;

use super::args::{parse_all, parse_reference, ConnectionArgs};
use super::stdout::{print, print_json};

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// References to compare: REGISTRY/REPOSITORY[:TAG][@DIGEST] (no tag:
    /// latest; a tag with a digest: the tag must name that digest).
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
    /// Also report, per reference, whether the image can be pulled without
    /// credentials (`anonymous` in --json). Not an error either way.
    #[arg(long)]
    pub anonymous: bool,
    /// With --key: what must be there besides the digests agreeing
    /// (comma-separated): sbom and provenance, signed attestations about the
    /// digest on every registry; signature, which --key always requires
    /// (naming it changes nothing but `supply.required` in --json).
    #[arg(long, value_delimiter = ',', requires = "key", value_parser = ["sbom", "provenance", "signature"])]
    pub require: Vec<String>,
}

/// `boxwright verify`.
pub async fn run(args: VerifyArgs, reporter: SharedReporter) -> Result<()> {
    let refs = parse_all(&args.references)?;
    // The key is read first: a bad one is bad input before any request.
    let key = args
        .key
        .as_deref()
        .map(boxwright::supply::keys::VerifyingKey::load)
        .transpose()?;
    let client = args.connection.client(&reporter)?;
    let report = boxwright::ops::verify::verify(&client, &refs).await;
    let anonymous = match args.anonymous {
        true => Some(anonymous(args.connection.options(), &refs, &reporter).await?),
        false => None,
    };
    if let Some(key) = &key {
        return super::sign::verify_supply(
            &client,
            &refs,
            key,
            &args.require,
            &report,
            anonymous.as_deref(),
            args.json,
        )
        .await;
    }
    print_report(&report, anonymous.as_deref(), None, args.json)?;
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
        Some(p) => Err(input_if(
            report.is_bad_input(),
            format!("verify failed: {p}"),
        )),
    }
}

/// The document (`--json`: the report, with `anonymous` and `supply` when
/// checked) or the tables.
pub fn print_report(
    report: &VerifyReport,
    anonymous: Option<&[Anonymous]>,
    supply: Option<&SupplyReport>,
    json: bool,
) -> Result<()> {
    if json {
        let mut doc = serde_json::to_value(report)?;
        if let Some(a) = anonymous {
            doc["anonymous"] = serde_json::to_value(a)?;
        }
        if let Some(s) = supply {
            doc["supply"] = serde_json::to_value(s)?;
            // The top-level verdict is the whole one, as the exit code is:
            // same digests everywhere and the supply chain checked.
            doc["ok"] = serde_json::Value::Bool(report.ok && s.ok);
        }
        return print_json(&doc);
    }
    print(&render::verify::verify(report))?;
    if let Some(a) = anonymous {
        print(&render::verify::anonymous(a))?;
    }
    if let Some(s) = supply {
        print(&s.render())?;
    }
    Ok(())
}

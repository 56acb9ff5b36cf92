//! `boxwright sbom REF`: print the SBOM attached to a pushed image on
//! stdout. A signed SBOM (an attestation) is checked with `--key PUB` when
//! given; without it, it is printed with a warning that it was not
//! verified. Exit 1 when the image has no SBOM.

use std::path::PathBuf;

use anyhow::{anyhow, Result};
use base64::Engine as _;
use clap::Args;
use serde_json::Value;

use boxwright::oci::canonical_json;
use boxwright::progress::{Level, SharedReporter};
use boxwright::supply::artifact::Kind;
use boxwright::supply::keys::VerifyingKey;
use boxwright::supply::referrers;
use boxwright::supply::sign::{self, Envelope};

use super::args::{parse_all, parse_reference, ConnectionArgs};
use super::stdout::print;

#[derive(Args, Debug)]
pub struct SbomArgs {
    /// The image: REGISTRY/REPOSITORY[:TAG][@DIGEST].
    #[arg(value_name = "REF", value_parser = parse_reference)]
    pub reference: String,
    /// Check a signed SBOM with this public key (the SBOM must be signed).
    #[arg(long, value_name = "PUB")]
    pub key: Option<PathBuf>,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// The statement inside an envelope, unverified.
fn envelope_statement(bytes: &[u8]) -> Result<Value> {
    let env: Envelope = serde_json::from_slice(bytes)?;
    let payload = base64::engine::general_purpose::STANDARD.decode(env.payload)?;
    Ok(serde_json::from_slice(&payload)?)
}

/// `boxwright sbom`.
pub async fn run(args: SbomArgs, reporter: SharedReporter) -> Result<()> {
    let key = args.key.as_deref().map(VerifyingKey::load).transpose()?;
    let r = parse_all(std::slice::from_ref(&args.reference))?.remove(0);
    let client = args.connection.client(&reporter)?;
    let (reg, repo) = (r.registry.as_str(), r.repository.as_str());
    let info = client
        .repo(reg, repo)
        .head_manifest(&r.object())
        .await?
        .ok_or_else(|| anyhow!("{r}: not found"))?;
    let (_, items) = referrers::items(&client, reg, repo, &info.digest).await?;
    let mut candidates: Vec<_> = items.into_iter().filter(|i| i.kind == Kind::Sbom).collect();
    // Signed first: with a key, only signed ones count.
    candidates.sort_by_key(|i| !i.signed);
    let mut why = Vec::new();
    for item in candidates {
        if key.is_some() && !item.signed {
            why.push(format!("{} is not signed", item.manifest));
            continue;
        }
        let bytes = referrers::payload(&client, reg, repo, &item.layer).await?;
        let doc = if !item.signed {
            serde_json::from_slice::<Value>(&bytes)?
        } else {
            let statement = match &key {
                Some(k) => match sign::open_envelope(k, &bytes) {
                    Ok(s) => s,
                    Err(e) => {
                        why.push(format!("{}: {e}", item.manifest));
                        continue;
                    }
                },
                None => {
                    reporter.log(
                        Level::Warn,
                        &format!(
                            "{}: the SBOM is signed but was not verified (give --key PUB)",
                            item.manifest
                        ),
                    );
                    envelope_statement(&bytes)?
                }
            };
            if !sign::statement_names(&statement, &info.digest) {
                why.push(format!("{}: about another image", item.manifest));
                continue;
            }
            statement["predicate"].clone()
        };
        let mut text = canonical_json(&doc);
        text.push(b'\n');
        print(&String::from_utf8_lossy(&text))?;
        return Ok(());
    }
    let detail = if why.is_empty() {
        String::new()
    } else {
        format!(" ({})", why.join("; "))
    };
    Err(anyhow!(
        "{r} ({}): no usable SBOM found{detail}",
        info.digest
    ))
}

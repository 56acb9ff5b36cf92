//! `boxwright attest --key KEY --sbom FILE | --provenance FILE REF...`:
//! attach a signed attestation (a DSSE envelope, as `cosign attest`) to
//! images already pushed, on every registry named.
//!
//! An SBOM (SPDX or CycloneDX JSON) becomes the predicate of an in-toto
//! statement about the image; provenance is either a whole in-toto
//! statement or an SLSA v1 predicate. A document that says it is about
//! another image is refused (exit 2) before anything is pushed.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use serde_json::Value;

use boxwright::error::bad_input;
use boxwright::oci::{canonical_json, Digest};
use boxwright::progress::SharedReporter;
use boxwright::registry::Reference;
use boxwright::supply::artifact::Kind;
use boxwright::supply::provenance::{is_statement, PREDICATE_TYPE};
use boxwright::supply::{sbom, sign};

use super::args::{parse_all, parse_reference};
use super::sign::{attach_to_pushed, AttachArgs, KeyArgs, Step};

#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("what").required(true).multiple(true))]
pub struct AttestArgs {
    /// Images to attest: REGISTRY/REPOSITORY[:TAG][@DIGEST] (all must name one digest).
    #[arg(value_name = "REF", required = true, num_args = 1.., value_parser = parse_reference)]
    pub references: Vec<String>,
    #[command(flatten)]
    pub key: KeyArgs,
    /// An SBOM document (SPDX 2.3 or CycloneDX JSON).
    #[arg(long, value_name = "FILE", group = "what")]
    pub sbom: Option<PathBuf>,
    /// SLSA provenance: an in-toto statement, or its predicate alone.
    #[arg(long, value_name = "FILE", group = "what")]
    pub provenance: Option<PathBuf>,
    #[command(flatten)]
    pub attach: AttachArgs,
}

fn read_json(path: &Path) -> Result<Value> {
    let bytes = boxwright::input::read_capped(path, boxwright::input::MAX_SBOM)
        .map_err(|e| bad_input(format!("{}: cannot be read: {e}", path.display())))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| bad_input(format!("{}: not JSON: {e}", path.display())))
}

/// A statement given whole must be about `digest`.
fn check_subject(path: &std::path::Path, statement: &Value, digest: &Digest) -> Result<()> {
    if sign::statement_names(statement, digest) {
        return Ok(());
    }
    Err(bad_input(format!(
        "{}: the statement's subject is another image, not {digest}",
        path.display()
    )))
}

/// `boxwright attest`.
pub async fn run(args: AttestArgs, reporter: SharedReporter) -> Result<()> {
    let key = args.key.load().await?;
    let refs = parse_all(&args.references)?;
    let sbom_doc = args.sbom.as_deref().map(read_json).transpose()?;
    let provenance = args.provenance.as_deref().map(read_json).transpose()?;
    let make = |subject: &boxwright::oci::Descriptor, repos: &[Reference]| {
        let names: Vec<String> = repos.iter().map(Reference::name).collect();
        let mut out = Vec::new();
        if let (Some(doc), Some(path)) = (&sbom_doc, &args.sbom) {
            let format = sbom::detect(doc).ok_or_else(|| {
                bad_input(format!(
                    "{}: neither an SPDX nor a CycloneDX document",
                    path.display()
                ))
            })?;
            if let Some(other) = sbom::described_image(doc).filter(|d| *d != subject.digest) {
                return Err(bad_input(format!(
                    "{}: the SBOM describes image {other}, not {}",
                    path.display(),
                    subject.digest
                )));
            }
            let bytes = canonical_json(doc);
            out.push(sign::sbom(
                Some(&key),
                subject,
                &names,
                format,
                &bytes,
                None,
            )?);
        }
        if let (Some(doc), Some(path)) = (&provenance, &args.provenance) {
            let statement = if is_statement(doc) {
                check_subject(path, doc, &subject.digest)?;
                let predicate_type = doc["predicateType"].as_str().unwrap_or_default();
                if Kind::of_predicate(predicate_type) != Kind::Provenance {
                    return Err(bad_input(format!(
                        "{}: the statement's predicateType {predicate_type:?} is not SLSA provenance \
                         (https://slsa.dev/provenance/...); attach an SBOM with --sbom",
                        path.display()
                    )));
                }
                doc.clone()
            } else {
                sign::statement(&names, &subject.digest, PREDICATE_TYPE, doc.clone())
            };
            out.push(sign::attestation(Some(&key), subject, &statement, None));
        }
        Ok(out)
    };
    attach_to_pushed(Step::Attest, &refs, &args.attach, &reporter, make).await
}

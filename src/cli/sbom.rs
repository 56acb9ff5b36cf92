//! `boxwright sbom REF`: print the SBOM attached to a pushed image on
//! stdout; `boxwright sbom oci:DIR[:NAME]` (or a layout directory) prints
//! the one `build --sbom` kept in the layout beside the image. A signed SBOM (an attestation) is checked with `--key PUB` when
//! given; without it, it is printed with a warning that it was not
//! verified. Exit 1 when the image has no SBOM.

use std::path::PathBuf;

use anyhow::{anyhow, Result};
use base64::Engine as _;
use clap::Args;
use serde_json::Value;

use boxwright::image::ImageSource as _;
use boxwright::oci::canonical_value;
use boxwright::oci::Digest;
use boxwright::progress::{Level, SharedReporter};
use boxwright::supply::artifact::Kind;
use boxwright::supply::keys::VerifyingKey;
use boxwright::supply::layout::open_with_referrers;
use boxwright::supply::referrers;
use boxwright::supply::sbom;
use boxwright::supply::sign::{self, Envelope};
use boxwright::supply::MEDIA_TYPE_DSSE;

use super::args::{parse_all, parse_reference, ConnectionArgs};
use super::stdout::print;

#[derive(Args, Debug)]
pub struct SbomArgs {
    /// The image: REGISTRY/REPOSITORY[:TAG][@DIGEST], or an OCI layout:
    /// oci:DIR[:NAME] (or a directory that exists).
    #[arg(value_name = "REF", value_parser = parse_source)]
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

/// The layout an argument names: `oci:DIR[:NAME]`, or a directory.
fn layout_source(s: &str) -> Option<&str> {
    s.strip_prefix("oci:")
        .or_else(|| std::path::Path::new(s).is_dir().then_some(s))
}

fn parse_source(s: &str) -> Result<String, String> {
    match layout_source(s) {
        Some(_) => Ok(s.to_string()),
        None => parse_reference(s),
    }
}

/// The SBOM kept in a layout beside its image.
fn from_layout(image: &str, key: Option<&VerifyingKey>, reporter: &SharedReporter) -> Result<()> {
    let (img, artifacts) = open_with_referrers(image)?;
    let digest = img.root().digest.clone();
    let mut why = Vec::new();
    for a in artifacts.iter().filter(|a| a.kind == Kind::Sbom) {
        let signed = a.layer.media_type == MEDIA_TYPE_DSSE;
        match document(&a.payload, signed, key, &digest, reporter, a.digest()) {
            Ok(doc) => return print_doc(&doc),
            Err(e) => why.push(e.to_string()),
        }
    }
    let attach = "`boxwright build --sbom -o DIR` keeps one in the layout";
    Err(no_sbom(&format!("{image} ({digest})"), &why, attach))
}

/// The SBOM document in a payload: the document itself, or the predicate
/// of a signed statement about `digest` (checked with `key` when given).
fn document(
    bytes: &[u8],
    signed: bool,
    key: Option<&VerifyingKey>,
    digest: &Digest,
    reporter: &SharedReporter,
    manifest: &Digest,
) -> Result<Value> {
    if !signed {
        if key.is_some() {
            return Err(anyhow!("{manifest} is not signed"));
        }
        let doc = serde_json::from_slice::<Value>(bytes)
            .map_err(|e| anyhow!("{manifest}: not JSON: {e}"))?;
        return sbom_only(doc, manifest);
    }
    let statement = match key {
        Some(k) => sign::open_envelope(k, bytes).map_err(|e| anyhow!("{manifest}: {e}"))?,
        None => {
            reporter.log(
                Level::Warn,
                &format!("{manifest}: the SBOM is signed but was not verified (give --key PUB)"),
            );
            envelope_statement(bytes)?
        }
    };
    if !sign::statement_names(&statement, digest) {
        return Err(anyhow!("{manifest}: about another image"));
    }
    // What the statement is comes from its signed predicateType, never
    // from the annotations that listed it.
    let predicate_type = statement["predicateType"].as_str().unwrap_or_default();
    if Kind::of_predicate(predicate_type) != Kind::Sbom {
        return Err(anyhow!(
            "{manifest}: its statement is not an SBOM (predicateType {predicate_type:?})"
        ));
    }
    let mut statement = statement;
    sbom_only(statement["predicate"].take(), manifest)
}

/// `doc` when it is an SPDX or CycloneDX document.
fn sbom_only(doc: Value, manifest: &Digest) -> Result<Value> {
    match sbom::detect(&doc) {
        Some(_) => Ok(doc),
        None => Err(anyhow!(
            "{manifest}: neither an SPDX nor a CycloneDX document"
        )),
    }
}

fn print_doc(doc: &Value) -> Result<()> {
    let mut text = canonical_value(doc);
    text.push(b'\n');
    print(&String::from_utf8_lossy(&text))?;
    Ok(())
}

/// No SBOM of `what` could be used: `why` names the ones passed over, and
/// when there were none, `attach` says how to give it one.
fn no_sbom(what: &str, why: &[String], attach: &str) -> anyhow::Error {
    let detail = if why.is_empty() {
        format!("; {attach}")
    } else {
        format!(" ({})", why.join("; "))
    };
    anyhow!("{what}: no usable SBOM found{detail}")
}

/// `boxwright sbom`.
pub async fn run(args: SbomArgs, reporter: SharedReporter) -> Result<()> {
    let key = args.key.as_deref().map(VerifyingKey::load).transpose()?;
    if let Some(image) = layout_source(&args.reference) {
        return from_layout(image, key.as_ref(), &reporter);
    }
    let r = parse_all(std::slice::from_ref(&args.reference))?.remove(0);
    let client = args.connection.client(&reporter)?;
    let (reg, repo) = (r.registry.as_str(), r.repository.as_str());
    let info = client
        .repo(reg, repo)
        .head_manifest(&r.object())
        .await?
        .ok_or_else(|| anyhow!("{r}: not found"))?;
    let found = referrers::items(&client, reg, repo, &info.digest).await?;
    let mut candidates: Vec<_> = (found.items.into_iter())
        .filter(|i| i.kind == Kind::Sbom)
        .collect();
    // Signed first: with a key, only signed ones count.
    candidates.sort_by_key(|i| !i.signed);
    let mut why: Vec<String> = (found.refused.into_iter())
        .filter(|(k, _)| *k == Kind::Sbom)
        .map(|(_, note)| note)
        .collect();
    for item in candidates {
        if key.is_some() && !item.signed {
            why.push(format!("{} is not signed", item.manifest));
            continue;
        }
        // One that cannot be read does not hide the others.
        let bytes = match referrers::payload(&client, reg, repo, &item.layer).await {
            Ok(bytes) => bytes,
            Err(e) => {
                why.push(format!("{}: {e}", item.manifest));
                continue;
            }
        };
        match document(
            &bytes,
            item.signed,
            key.as_ref(),
            &info.digest,
            &reporter,
            &item.manifest,
        ) {
            Ok(doc) => return print_doc(&doc),
            Err(e) => why.push(e.to_string()),
        }
    }
    let attach =
        "`boxwright attest --key KEY --sbom FILE REF...` or `build --push --sbom` attaches one";
    Err(no_sbom(&format!("{r} ({})", info.digest), &why, attach))
}

#[cfg(test)]
mod tests {
    use super::*;
    use boxwright::oci::{Descriptor, MEDIA_TYPE_MANIFEST};
    use boxwright::progress::silent;
    use boxwright::supply::keys::SigningKey;

    /// A signed statement about `digest` of `predicate_type`.
    fn envelope(key: &SigningKey, digest: &Digest, predicate_type: &str, doc: Value) -> Vec<u8> {
        let st = sign::statement(&["r.io/acme/app".into()], digest, predicate_type, doc);
        sign::envelope(key, &st)
    }

    #[test]
    fn only_a_signed_sbom_statement_is_the_sbom() {
        let key = SigningKey::generate();
        let public = key.verifying_key();
        let subject = Descriptor::of_bytes(MEDIA_TYPE_MANIFEST, b"image");
        let manifest = Digest::of(b"artifact");
        let spdx = serde_json::json!({"spdxVersion": "SPDX-2.3", "packages": []});
        let open = |bytes: &[u8]| {
            document(
                bytes,
                true,
                Some(&public),
                &subject.digest,
                &silent(),
                &manifest,
            )
        };
        let sbom = envelope(
            &key,
            &subject.digest,
            "https://spdx.dev/Document",
            spdx.clone(),
        );
        assert_eq!(open(&sbom).unwrap(), spdx);
        // Signed provenance, whatever annotation listed it as an SBOM.
        let provenance = envelope(
            &key,
            &subject.digest,
            "https://slsa.dev/provenance/v1",
            serde_json::json!({"buildDefinition": {}}),
        );
        let err = open(&provenance).unwrap_err().to_string();
        assert!(err.contains("not an SBOM"), "{err}");
        // An SBOM predicate type over something that is no SBOM.
        let note = serde_json::json!({"note": "this is not an SBOM"});
        let fake = envelope(
            &key,
            &subject.digest,
            "https://spdx.dev/Document",
            note.clone(),
        );
        assert!(open(&fake).is_err());
        // Unsigned, without a key: a document that is no SBOM is refused too.
        let plain = serde_json::to_vec(&note).unwrap();
        assert!(document(&plain, false, None, &subject.digest, &silent(), &manifest).is_err());
        let plain = serde_json::to_vec(&spdx).unwrap();
        assert!(document(&plain, false, None, &subject.digest, &silent(), &manifest).is_ok());
    }
}

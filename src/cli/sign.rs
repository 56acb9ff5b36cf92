//! `boxwright sign --key KEY REF...`: sign images already pushed, on every
//! registry named, as cosign does; and the supply-chain flags of `build
//! --push` (`--sign-key`, `--sbom`, `--provenance`, `--cosign-tags`).
//!
//! stdout: the digest (or the `--json` attach report); exit 1 naming the
//! registry and object when a registry refuses an artifact, 2 for bad input
//! (a key that cannot be read, a wrong password, a key of another type).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, Context as _, Result};
use clap::{Args, ValueEnum};

use boxwright::error::bad_input;
use boxwright::oci::Descriptor;
use boxwright::progress::SharedReporter;
use boxwright::push::{PushTarget, Pusher};
use boxwright::registry::{CredentialStore, Reference};
use boxwright::supply::artifact::Artifact;
use boxwright::supply::attach::{attach, AttachOptions};
use boxwright::supply::evidence::{log_report, SupplyOptions};
use boxwright::supply::keys::{SigningKey, DEFAULT_PASSWORD_ENV};
use boxwright::supply::sbom::SbomFormat;
use boxwright::supply::sign;

use super::args::{parse_all, parse_reference, UploadArgs};
use super::stdout::{print, print_json};

/// The private key and where its password is.
#[derive(Args, Debug, Clone)]
pub struct KeyArgs {
    /// The private key: PKCS#8 PEM (`boxwright keygen`) or cosign's encrypted key.
    #[arg(long, value_name = "KEY")]
    pub key: PathBuf,
    /// The environment variable holding an encrypted key's password.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_PASSWORD_ENV)]
    pub key_password_env: String,
}

impl KeyArgs {
    pub async fn load(&self) -> Result<Arc<SigningKey>> {
        load_key(self.key.clone(), self.key_password_env.clone()).await
    }
}

/// Read a key off the runtime (scrypt takes a moment on purpose).
pub async fn load_key(path: PathBuf, password_env: String) -> Result<Arc<SigningKey>> {
    tokio::task::spawn_blocking(move || SigningKey::load(&path, &password_env).map(Arc::new))
        .await
        .map_err(|e| anyhow!("the key loading task failed: {e}"))?
}

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
pub enum SbomArg {
    Spdx,
    Cyclonedx,
    None,
}

/// `build --push`'s supply-chain flags.
#[derive(Args, Debug, Clone, Default)]
pub struct SupplyArgs {
    /// With --push: sign the image (one cosign signature per repository) and
    /// its attestations with this private key.
    #[arg(long, value_name = "KEY", requires = "push")]
    pub sign_key: Option<PathBuf>,
    /// The environment variable holding the signing key's password.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_PASSWORD_ENV)]
    pub key_password_env: String,
    /// Attach an SBOM (SPDX 2.3 JSON by default; wins over the recipe's
    /// `[image] sbom`): to the pushed image, signed as an attestation with
    /// --sign-key; without --push, into the layout beside the image.
    #[arg(long, value_enum, value_name = "FORMAT", num_args = 0..=1, default_missing_value = "spdx")]
    pub sbom: Option<SbomArg>,
    /// Attach SLSA v1 provenance (an in-toto statement; signed with
    /// --sign-key); without --push, into the layout beside the image.
    #[arg(long)]
    pub provenance: bool,
    /// With --push: also write cosign's legacy `sha256-<hex>.sig` / `.att`
    /// tags, for verifiers that read only those.
    #[arg(long, requires = "push")]
    pub cosign_tags: bool,
}

impl SupplyArgs {
    /// The options for the build (`recipe_sbom`: the recipe's `[image]
    /// sbom`); `None` when nothing is to be attached. The key is read now.
    pub async fn options(
        &self,
        recipe_sbom: Option<&str>,
        vars: &[(String, String)],
    ) -> Result<Option<SupplyOptions>> {
        let sbom = match (self.sbom, recipe_sbom) {
            (Some(SbomArg::Spdx), _) => Some(SbomFormat::Spdx),
            (Some(SbomArg::Cyclonedx), _) => Some(SbomFormat::CycloneDx),
            (Some(SbomArg::None), _) | (None, None) => None,
            (None, Some(s)) => {
                SbomFormat::parse(s).map_err(|e| bad_input(format!("[image] sbom: {e}")))?
            }
        };
        let key = match &self.sign_key {
            Some(p) => Some(load_key(p.clone(), self.key_password_env.clone()).await?),
            None => None,
        };
        let opts = SupplyOptions {
            key,
            sbom,
            provenance: self.provenance,
            vars: vars.iter().cloned().collect(),
            components: Vec::new(),
            attach: AttachOptions {
                legacy_tags: self.cosign_tags,
            },
        };
        Ok(opts.any().then_some(opts))
    }
}

#[derive(Args, Debug)]
pub struct SignArgs {
    /// Images to sign: REGISTRY/REPOSITORY[:TAG][@DIGEST] (all must name one digest).
    #[arg(value_name = "REF", required = true, num_args = 1.., value_parser = parse_reference)]
    pub references: Vec<String>,
    #[command(flatten)]
    pub key: KeyArgs,
    #[command(flatten)]
    pub attach: AttachArgs,
}

/// How `sign` and `attest` publish what they attach.
#[derive(Args, Debug)]
pub struct AttachArgs {
    /// Also write cosign's legacy tag: `sha256-<hex>.sig` for a signature,
    /// `.att` for an attestation.
    #[arg(long)]
    pub cosign_tags: bool,
    /// Print the attach report as JSON instead of the digest.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub upload: UploadArgs,
}

/// `boxwright sign`.
pub async fn run(args: SignArgs, reporter: SharedReporter) -> Result<()> {
    let key = args.key.load().await?;
    let refs = parse_all(&args.references)?;
    attach_to_pushed(
        Step::Sign,
        &refs,
        &args.attach,
        &reporter,
        |subject, repos| {
            Ok(repos
                .iter()
                .map(|r| sign::signature(&key, subject, &r.name()))
                .collect())
        },
    )
    .await
}

/// The command that attaches: named in its errors, with what it did.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Sign,
    Attest,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Sign => "sign",
            Step::Attest => "attest",
        }
    }

    fn done(self) -> &'static str {
        match self {
            Step::Sign => "signed",
            Step::Attest => "attested",
        }
    }

    /// The context of an error before anything was written.
    fn nothing(self) -> String {
        format!(
            "{} failed: nothing was {} on any registry",
            self.name(),
            self.done()
        )
    }
}

/// Resolve `refs` to one digest, make the artifacts for it, attach them in
/// every repository named, and print the outcome. Errors name `step` and
/// say what was written: nothing when a reference does not resolve (all
/// are resolved first), else per repository.
pub async fn attach_to_pushed(
    step: Step,
    refs: &[Reference],
    args: &AttachArgs,
    reporter: &SharedReporter,
    make: impl FnOnce(&Descriptor, &[Reference]) -> Result<Vec<Artifact>>,
) -> Result<()> {
    let targets: Vec<PushTarget> = refs.iter().cloned().map(PushTarget::plain).collect();
    let pusher = Pusher::new(
        targets,
        args.upload.push_options()?,
        CredentialStore::from_env(),
        reporter.clone(),
    )
    .await
    .with_context(|| step.nothing())?;
    let subject = resolve_one(pusher.client(), refs)
        .await
        .with_context(|| step.nothing())?;
    let repos = boxwright::registry::reference::repositories(refs);
    let artifacts = make(&subject, &repos).with_context(|| step.nothing())?;
    let opts = AttachOptions {
        legacy_tags: args.cosign_tags,
    };
    let done = attach(&pusher, &repos, &subject, &artifacts, &opts).await?;
    log_report(&done, reporter);
    if args.json {
        print_json(&done)?;
    } else if done.ok {
        print(&format!("{}\n", subject.digest))?;
    }
    match done.error() {
        Some(e) => Err(e.context(format!("{} failed", step.name()))),
        None => Ok(()),
    }
}

/// The one image every reference names (its descriptor), or an error
/// naming the references that differ or are missing.
async fn resolve_one(
    client: &boxwright::registry::Client,
    refs: &[Reference],
) -> Result<Descriptor> {
    let mut found: Option<(String, Descriptor)> = None;
    for r in refs {
        let mut info = client
            .repo_of(r)
            .head_manifest(&r.object())
            .await?
            .ok_or_else(|| anyhow!("{r}: not found"))?;
        if info.size == 0 || info.media_type.is_empty() {
            // A HEAD without Content-Length or Content-Type: ask for the bytes.
            info = client
                .repo_of(r)
                .get_manifest(info.digest.as_str())
                .await?
                .0;
        }
        let d = Descriptor::new(&info.media_type, info.digest, info.size);
        match &found {
            Some((first, f)) if f.digest != d.digest => {
                return Err(anyhow!(
                    "{r} names {}, while {first} names {}: sign one image at a time",
                    d.digest,
                    f.digest
                ))
            }
            Some(_) => {}
            None => found = Some((r.to_string(), d)),
        }
    }
    found
        .map(|(_, d)| d)
        .ok_or_else(|| bad_input("no reference given"))
}

/// `verify --key PUB [--require ...]`: the digests (`digests`, already
/// checked) and the supply chain on every reference; `--json` adds a
/// `supply` object (per reference) to verify's document.
pub async fn verify_supply(
    client: &boxwright::registry::Client,
    refs: &[Reference],
    key: &boxwright::supply::keys::VerifyingKey,
    require: &[String],
    digests: &boxwright::ops::verify::VerifyReport,
    anonymous: Option<&[boxwright::ops::verify::Anonymous]>,
    json: bool,
) -> Result<()> {
    use boxwright::supply::artifact::Kind;
    let required: Vec<Kind> = require.iter().filter_map(|s| Kind::parse(s)).collect();
    // Each reference was resolved once, for the digest check: the supply
    // check takes that resolution, and a reference that failed it is named
    // once, by the digest check.
    let supply =
        boxwright::supply::verify::verify_resolved(client, refs, digests, key, &required).await;
    super::verify::print_report(digests, anonymous, Some(&supply), json)?;
    let problems: Vec<String> = digests
        .problem()
        .into_iter()
        .chain(supply.problem_beyond_resolution())
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(boxwright::error::input_if(
            digests.is_bad_input() || supply.is_bad_input(),
            format!("verify failed: {}", problems.join("; ")),
        ))
    }
}

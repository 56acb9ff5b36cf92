//! Supply-chain evidence attached to a pushed image, the same on every
//! registry: an SBOM ([`sbom`], from the [`components`] the build knows),
//! SLSA provenance ([`provenance`]) and cosign-compatible signatures and
//! attestations ([`sign`], with the keys of [`keys`]).
//!
//! Each piece of evidence is an [`artifact::Artifact`]: a small image whose
//! manifest names the image as its `subject`, whose config is the OCI empty
//! config and whose one layer holds the payload. [`attach`] pushes them with
//! the image's [`Pusher`](crate::push::Pusher) (HEAD -> mount -> upload,
//! each blob once per registry) and lists them where readers look: the
//! registry's referrers API when it answers, else the referrers tag schema
//! (an index tagged `sha256-<hex>`), and on request cosign's legacy
//! `.sig`/`.att` tags. [`evidence`] decides what a build gets (`build --push
//! --sign-key --sbom --provenance`); [`referrers`] reads every form back;
//! [`verify`] checks signatures and required attestations on every registry;
//! [`carry`] takes what is attached to an image along when `copy` copies it.

pub mod artifact;
pub mod attach;
pub mod carry;
pub mod components;
pub mod evidence;
pub mod keys;
pub mod layout;
pub mod legacy;
pub mod provenance;
pub mod referrers;
pub mod sbom;
pub mod sign;
pub mod verify;

/// `artifactType` and layer media type of a cosign simple-signing signature
/// stored as an OCI 1.1 referrer.
pub const ARTIFACT_SIGNATURE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
pub const MEDIA_TYPE_SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The annotation of a simple-signing layer holding its base64 signature.
pub const ANNOTATION_SIGNATURE: &str = "dev.cosignproject.cosign/signature";
/// A DSSE envelope (signed attestation), as `cosign attest` stores it.
pub const MEDIA_TYPE_DSSE: &str = "application/vnd.dsse.envelope.v1+json";
/// An unsigned in-toto statement.
pub const MEDIA_TYPE_IN_TOTO: &str = "application/vnd.in-toto+json";
/// The annotation naming an attestation's predicate type (cosign's name).
pub const ANNOTATION_PREDICATE_TYPE: &str = "predicateType";
/// The OCI empty config (`{}`), the config of every artifact.
pub const MEDIA_TYPE_EMPTY: &str = "application/vnd.oci.empty.v1+json";

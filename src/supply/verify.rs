//! `verify --key`: on every reference, a signature valid for its digest,
//! and the required attestations (SBOM, provenance), signed by the key,
//! about that digest, the same on every registry.
//!
//! Every form is read ([`referrers::items`]): the referrers API or tag and
//! cosign's legacy tags. A signature counts when it verifies with the key
//! over its payload and the payload names the digest; an attestation when
//! its DSSE envelope verifies and its statement's subject is the digest.
//! Anything else found (a tampered signature, an attestation about another
//! image, an unsigned SBOM, an artifact refused for listing more payloads
//! than are read) is reported as a note, and fails the check only when
//! nothing valid of that kind is there.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::artifact::Kind;
use super::keys::VerifyingKey;
use super::referrers::{self, Item, Mode};
use super::sign;
use super::ANNOTATION_SIGNATURE;
use crate::oci::Digest;
use crate::ops::verify::{Status, VerifyReport};
use crate::registry::{Client, Reference};

/// What one reference holds.
#[derive(Clone, Debug, Serialize)]
pub struct Holding {
    pub reference: String,
    pub registry: String,
    pub repository: String,
    pub digest: Option<Digest>,
    /// Where the registry lists referrers.
    pub mode: Option<Mode>,
    /// Valid signatures (their payload layers' digests).
    pub signatures: Vec<Digest>,
    /// Valid attestations by kind (`sbom`, `provenance`, `attestation`):
    /// their envelopes' digests.
    pub attestations: BTreeMap<String, Vec<Digest>>,
    /// What was found and not counted, and why.
    pub notes: Vec<String>,
    /// Artifacts found unsigned, by kind (`sbom`, `provenance`, ...): there,
    /// but not counted in `attestations` (`attest --key` signs them).
    pub unsigned: BTreeMap<String, usize>,
    /// Signed artifacts found that did not verify (another key, tampered,
    /// about another image, refused for their number of payloads), by
    /// kind; not counted either.
    pub invalid: BTreeMap<String, usize>,
    /// Signed artifacts whose payload could not be fetched (the registry
    /// answered an error, or served other bytes than its digest, or it is
    /// larger than boxwright reads), by kind: neither valid nor invalid.
    pub unread: BTreeMap<String, usize>,
    /// The notes about artifacts of each kind, for that kind's problem.
    #[serde(skip)]
    kind_notes: Vec<(Kind, String)>,
    /// The reference did not resolve (missing, or an error): its problem
    /// is the resolution's.
    #[serde(skip)]
    unresolved: bool,
    /// What is attached could not be read for a fault of the registry's
    /// documents (bad input, exit 2), not of its answers.
    #[serde(skip)]
    bad_input: bool,
    /// Why this reference fails the check.
    pub problems: Vec<String>,
    pub ok: bool,
}

impl Holding {
    /// A reference shown as `reference`, in `registry`'s `repository`, with
    /// nothing found yet.
    fn new(reference: String, registry: String, repository: String) -> Holding {
        Holding {
            reference,
            registry,
            repository,
            digest: None,
            mode: None,
            signatures: Vec::new(),
            attestations: BTreeMap::new(),
            notes: Vec::new(),
            unsigned: BTreeMap::new(),
            invalid: BTreeMap::new(),
            unread: BTreeMap::new(),
            kind_notes: Vec::new(),
            unresolved: false,
            bad_input: false,
            problems: Vec::new(),
            ok: false,
        }
    }
}

/// The outcome of [`verify`].
#[derive(Clone, Debug, Serialize)]
pub struct SupplyReport {
    pub ok: bool,
    pub key: String,
    pub required: Vec<Kind>,
    pub references: Vec<Holding>,
}

impl SupplyReport {
    /// Every problem, each naming its reference; `None` when all is well.
    pub fn problem(&self) -> Option<String> {
        self.problems_of(|_| true)
    }

    /// Whether what is attached to a reference could not be read because
    /// the registry's documents are malformed (exit 2).
    pub fn is_bad_input(&self) -> bool {
        self.references.iter().any(|h| h.bad_input)
    }

    /// Like [`SupplyReport::problem`], without the references that did not
    /// resolve: for a report made by [`verify_resolved`], whose resolution
    /// names those already.
    pub fn problem_beyond_resolution(&self) -> Option<String> {
        self.problems_of(|h| !h.unresolved)
    }

    fn problems_of(&self, keep: impl Fn(&&Holding) -> bool) -> Option<String> {
        let all: Vec<String> = self
            .references
            .iter()
            .filter(keep)
            .flat_map(|h| {
                h.problems
                    .iter()
                    .map(move |p| format!("{}: {p}", h.reference))
            })
            .collect();
        self.joined(all)
    }

    fn joined(&self, all: Vec<String>) -> Option<String> {
        (!all.is_empty()).then(|| {
            let mut text = all.join("; ");
            for hint in [self.unsigned_hint(), self.absent_hint()]
                .into_iter()
                .flatten()
            {
                text.push_str("; ");
                text.push_str(&hint);
            }
            text
        })
    }

    /// How to sign the required attestations that are there only unsigned
    /// somewhere; `None` when there are none.
    fn unsigned_hint(&self) -> Option<String> {
        let kinds: Vec<&str> = self
            .required
            .iter()
            .filter(|k| **k != Kind::Signature)
            .map(|k| k.name())
            .filter(|k| {
                self.references
                    .iter()
                    .any(|h| !h.attestations.contains_key(*k) && h.unsigned.contains_key(*k))
            })
            .collect();
        if kinds.is_empty() {
            return None;
        }
        let flags: Vec<String> = kinds.iter().map(|k| format!("--{k} FILE")).collect();
        let sbom = if kinds.contains(&"sbom") {
            " (`boxwright sbom REF` prints the SBOM that is there)"
        } else {
            ""
        };
        Some(format!(
            "the {} found are unsigned, so they do not count: sign them with \
             `boxwright attest --key KEY {} REF...`{sbom}, or push with \
             `build --push --sign-key KEY`",
            kinds.join(" and "),
            flags.join(" ")
        ))
    }

    /// How to attach what a resolved reference lacks altogether (nothing of
    /// that kind found, signed or not); `None` when nothing is.
    fn absent_hint(&self) -> Option<String> {
        let absent = |h: &Holding, k: Kind| {
            let name = k.name();
            let valid = match k {
                Kind::Signature => !h.signatures.is_empty(),
                _ => h.attestations.contains_key(name),
            };
            !h.unresolved
                && !valid
                && ![&h.unsigned, &h.invalid, &h.unread]
                    .iter()
                    .any(|found| found.contains_key(name))
        };
        let lacks = |k: Kind| self.references.iter().any(|h| absent(h, k));
        let mut ways = Vec::new();
        if lacks(Kind::Signature) {
            ways.push("`boxwright sign --key KEY REF...` signs".to_string());
        }
        let kinds: Vec<&str> = self
            .required
            .iter()
            .filter(|k| **k != Kind::Signature && lacks(**k))
            .map(|k| k.name())
            .collect();
        if !kinds.is_empty() {
            let flags: Vec<String> = kinds.iter().map(|k| format!("--{k} FILE")).collect();
            ways.push(format!(
                "`boxwright attest --key KEY {} REF...` attaches the {}",
                flags.join(" "),
                kinds.join(" and ")
            ));
        }
        (!ways.is_empty()).then(|| {
            format!(
                "{} (or push with `build --push --sign-key KEY`, and `--sbom`, `--provenance`; \
                 `boxwright copy` from a registry that has them carries them along)",
                ways.join(", ")
            )
        })
    }
}

/// Check every reference with `key`, requiring a signature and `require`.
/// Each reference is resolved first ([`crate::ops::verify::verify`]);
/// [`verify_resolved`] takes a resolution already made.
pub async fn verify(
    client: &Client,
    references: &[Reference],
    key: &VerifyingKey,
    require: &[Kind],
) -> SupplyReport {
    let resolved = crate::ops::verify::verify(client, references).await;
    verify_resolved(client, references, &resolved, key, require).await
}

/// [`verify`] on references `resolved` already (the report of
/// [`crate::ops::verify::verify`] on the same `references`, in order): no
/// reference is asked for its manifest again. One that did not resolve
/// fails the check with the resolution's problem. One that gives a digest
/// is checked for that digest, whatever its tag names (the resolution
/// reports a tag that names another).
pub async fn verify_resolved(
    client: &Client,
    references: &[Reference],
    resolved: &VerifyReport,
    key: &VerifyingKey,
    require: &[Kind],
) -> SupplyReport {
    let mut holdings = Vec::new();
    for (i, r) in references.iter().enumerate() {
        let found = match resolved.references.get(i) {
            Some(x) => match (x.status, &x.digest, &x.error) {
                (Status::Error, _, e) => Err(e
                    .as_ref()
                    .map_or_else(|| "unknown error".to_string(), ToString::to_string)),
                (Status::Missing, _, _) | (_, None, _) => Err("not found".to_string()),
                (_, Some(d), _) => Ok(r.digest.clone().unwrap_or_else(|| d.clone())),
            },
            None => Err("not resolved".to_string()),
        };
        holdings.push(check_one(client, r, found, key).await);
    }
    let mut required: Vec<Kind> = require.to_vec();
    required.sort();
    required.dedup();
    judge(&mut holdings, &required);
    SupplyReport {
        ok: holdings.iter().all(|h| h.ok),
        key: key.id(),
        required,
        references: holdings,
    }
}

async fn check_one(
    client: &Client,
    r: &Reference,
    found: Result<Digest, String>,
    key: &VerifyingKey,
) -> Holding {
    let shown = r.or_latest();
    let mut h = Holding::new(shown.to_string(), r.registry.clone(), r.repository.clone());
    let (reg, repo) = (r.registry.as_str(), r.repository.as_str());
    let digest = match found {
        Ok(d) => d,
        Err(why) => {
            h.unresolved = true;
            h.problems.push(why);
            return h;
        }
    };
    h.digest = Some(digest.clone());
    let found = match referrers::items(client, reg, repo, &digest).await {
        Ok(x) => x,
        Err(e) => {
            h.bad_input = crate::error::is_bad_input(&e);
            h.problems.push(format!("reading what is attached: {e:#}"));
            return h;
        }
    };
    h.mode = Some(found.mode);
    h.notes.extend(found.unread);
    // Refused for their number of payloads: found, and not valid.
    for (kind, note) in found.refused {
        *h.invalid.entry(kind.name().to_string()).or_default() += 1;
        h.kind_notes.push((kind, note.clone()));
        h.notes.push(note);
    }
    for item in found.items {
        if let Err((why, note)) = check_item(client, r, key, &digest, &item, &mut h).await {
            let counts = match why {
                NotCounted::Unsigned => &mut h.unsigned,
                NotCounted::Invalid => &mut h.invalid,
                NotCounted::Unread => &mut h.unread,
            };
            *counts.entry(item.kind.name().to_string()).or_default() += 1;
            let note = format!(
                "{} {} in {} ({}): {note}",
                item.kind.name(),
                item.layer.digest,
                item.source,
                item.manifest
            );
            h.kind_notes.push((item.kind, note.clone()));
            h.notes.push(note);
        }
    }
    h
}

/// Why an artifact found is not counted.
enum NotCounted {
    Unsigned,
    Invalid,
    Unread,
}

async fn check_item(
    client: &Client,
    r: &Reference,
    key: &VerifyingKey,
    digest: &Digest,
    item: &Item,
    h: &mut Holding,
) -> Result<(), (NotCounted, String)> {
    if !item.signed {
        return Err((NotCounted::Unsigned, "unsigned".into()));
    }
    let payload = referrers::payload(client, &r.registry, &r.repository, &item.layer)
        .await
        .map_err(|e| (NotCounted::Unread, format!("not read: {e:#}")))?;
    check_payload(key, digest, item, &payload, h).map_err(|note| (NotCounted::Invalid, note))
}

/// Count `item` valid in `h` when `payload` verifies with `key` for `digest`.
fn check_payload(
    key: &VerifyingKey,
    digest: &Digest,
    item: &Item,
    payload: &[u8],
    h: &mut Holding,
) -> Result<(), String> {
    if item.kind == Kind::Signature {
        let sig = item
            .layer
            .annotations
            .get(ANNOTATION_SIGNATURE)
            .ok_or("no signature annotation")?;
        sign::check_signature(key, payload, sig, digest).map_err(|e| e.to_string())?;
        push_once(&mut h.signatures, &item.layer.digest);
        return Ok(());
    }
    let statement = sign::open_envelope(key, payload).map_err(|e| e.to_string())?;
    if !sign::statement_names(&statement, digest) {
        return Err(format!(
            "its statement is about another image, not {digest}"
        ));
    }
    let kind = Kind::of_predicate(statement["predicateType"].as_str().unwrap_or_default());
    push_once(
        h.attestations.entry(kind.name().to_string()).or_default(),
        &item.layer.digest,
    );
    Ok(())
}

fn push_once(v: &mut Vec<Digest>, d: &Digest) {
    if !v.contains(d) {
        v.push(d.clone());
    }
}

/// Mark what each reference lacks: a signature, a required attestation, an
/// attestation another registry has, the digest the others name.
fn judge(holdings: &mut [Holding], required: &[Kind]) {
    let digests: BTreeSet<&Digest> = holdings.iter().filter_map(|h| h.digest.as_ref()).collect();
    let same_digest = digests.len() <= 1;
    let mut everywhere: BTreeMap<String, BTreeSet<Digest>> = BTreeMap::new();
    for h in holdings.iter() {
        for (k, v) in &h.attestations {
            everywhere
                .entry(k.clone())
                .or_default()
                .extend(v.iter().cloned());
        }
    }
    for h in holdings.iter_mut() {
        let Some(d) = h.digest.clone() else {
            h.ok = false;
            continue;
        };
        if !same_digest {
            h.problems.push(format!(
                "names {d}, while other references name another digest"
            ));
        }
        let why = |kind: Kind, what: &str| {
            let notes: Vec<&str> = h
                .kind_notes
                .iter()
                .filter(|(k, _)| *k == kind)
                .map(|(_, n)| n.as_str())
                .collect();
            let seen = if notes.is_empty() {
                String::new()
            } else {
                format!(" (found but not counted: {})", notes.join(", "))
            };
            format!("no valid {what} for {d} on {}{seen}", h.registry)
        };
        if h.signatures.is_empty() {
            h.problems.push(why(Kind::Signature, "signature"));
        }
        for k in required.iter().filter(|k| **k != Kind::Signature) {
            if !h.attestations.contains_key(k.name()) {
                h.problems
                    .push(why(*k, &format!("{} attestation", k.name())));
            }
        }
        if same_digest {
            for (k, all) in &everywhere {
                let here: BTreeSet<Digest> = h
                    .attestations
                    .get(k)
                    .map(|v| v.iter().cloned().collect())
                    .unwrap_or_default();
                let missing: Vec<String> = all.difference(&here).map(|d| d.to_string()).collect();
                if !missing.is_empty() && required.iter().any(|r| r.name() == k) {
                    h.problems.push(format!(
                        "{} attestation(s) {} present on another registry are missing on {}",
                        k,
                        missing.join(", "),
                        h.registry
                    ));
                }
            }
        }
        h.ok = h.problems.is_empty();
    }
}

impl SupplyReport {
    /// One line per reference: what holds and what is missing.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for h in &self.references {
            let count = |k: &str| {
                let valid = match k {
                    "signature" => h.signatures.len(),
                    _ => h.attestations.get(k).map_or(0, Vec::len),
                };
                let mut c = valid.to_string();
                for (n, what) in [
                    (&h.unsigned, "unsigned"),
                    (&h.invalid, "invalid"),
                    (&h.unread, "unread"),
                ] {
                    if let Some(n) = n.get(k) {
                        c.push_str(&format!(" (+{n} {what})"));
                    }
                }
                c
            };
            out.push_str(&format!(
                "{}  {}  signatures {}  sbom {}  provenance {}  {}\n",
                h.reference,
                h.mode.map_or("-", |m| m.name()),
                count("signature"),
                count("sbom"),
                count("provenance"),
                if h.ok { "ok" } else { "FAILED" },
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holding(registry: &str, signed: bool) -> Holding {
        let mut h = Holding::new(
            format!("{registry}/acme/app:1"),
            registry.into(),
            "acme/app".into(),
        );
        h.digest = Some(Digest::of(b"image"));
        if signed {
            h.signatures.push(Digest::of(b"sig"));
        }
        h
    }

    /// `--require signature` asks for what `--key` always requires: a
    /// signed image passes with it and no attestation, an unsigned one fails
    /// naming the signature, the same as without it.
    #[test]
    fn require_signature_is_what_key_always_requires() {
        for required in [vec![], vec![Kind::Signature]] {
            let mut h = [holding("a", true), holding("b", false)];
            judge(&mut h, &required);
            assert!(h[0].ok, "{:?}", h[0].problems);
            assert!(!h[1].ok);
            assert_eq!(h[1].problems.len(), 1, "{:?}", h[1].problems);
            assert!(
                h[1].problems[0].starts_with("no valid signature for sha256:"),
                "{:?}",
                h[1].problems
            );
        }
        // With sbom also required, the signed image without one fails on it.
        let mut h = [holding("a", true)];
        judge(&mut h, &[Kind::Signature, Kind::Sbom]);
        assert_eq!(h[0].problems.len(), 1, "{:?}", h[0].problems);
        assert!(h[0].problems[0].starts_with("no valid sbom attestation"));
    }
}

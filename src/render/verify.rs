//! The tables of `verify` (one row per reference) and `tags` (one row per
//! tag, one column per repository).

use crate::oci::Digest;
use crate::ops::tags::TagsReport;
use crate::ops::verify::{Anonymous, Status, VerifyReport};

use super::table::{self, Style};

/// Left-aligned columns, three spaces apart.
const STYLE: Style = Style {
    gap: 3,
    right_from: None,
};

/// The `verify` table: reference, digest, media type, registry, and the
/// status of references that are not ok.
pub fn verify(report: &VerifyReport) -> String {
    let mut rows = vec![header(&[
        "REFERENCE",
        "DIGEST",
        "MEDIA TYPE",
        "REGISTRY",
        "",
    ])];
    rows.extend(report.references.iter().map(|r| {
        vec![
            r.reference.clone(),
            r.digest
                .as_ref()
                .map_or_else(|| "-".to_string(), |d| d.to_string()),
            r.media_type.clone().unwrap_or_else(|| "-".into()),
            r.registry.clone(),
            match r.status {
                Status::Ok => String::new(),
                Status::Missing => "MISSING".into(),
                Status::Differs => "DIFFERS".into(),
                Status::Error => "ERROR".into(),
            },
        ]
    }));
    table::render(&rows, STYLE)
}

/// The `verify --anonymous` table: per reference, whether it can be
/// pulled without credentials, and what the registry answered.
pub fn anonymous(rows: &[Anonymous]) -> String {
    let mut out = vec![header(&["REFERENCE", "ANONYMOUS PULL", "ANSWER"])];
    out.extend(rows.iter().map(|a| {
        let answer = match (a.http_status, &a.error) {
            (Some(s), _) => format!("HTTP {s}"),
            (None, Some(e)) => e.to_string(),
            (None, None) => "-".into(),
        };
        vec![
            a.reference.clone(),
            if a.anonymous_pull { "yes" } else { "no" }.to_string(),
            answer,
        ]
    }));
    table::render(&out, STYLE)
}

/// The `tags` table: a row per tag, a column per repository (`yes`, `-`,
/// or a short digest when digests were asked for; `?` where it is not
/// known: in the whole column of a repository that could not be listed, or
/// for a digest that could not be resolved), and `*` on rows that differ
/// between the repositories that could be listed.
pub fn tags(report: &TagsReport) -> String {
    let mut head = vec!["TAG".to_string()];
    head.extend(report.repositories.iter().map(|r| r.repository.clone()));
    head.push(String::new());
    let mut rows = vec![head];
    rows.extend(report.tags.iter().map(|row| {
        let mut v = vec![row.tag.clone()];
        for (i, p) in row.present.iter().enumerate() {
            let cell = match (&row.digests, p) {
                (_, None) => "?".to_string(),
                (_, Some(false)) => "-".to_string(),
                (Some(ds), Some(true)) => ds
                    .get(i)
                    .and_then(Option::as_ref)
                    .map_or_else(|| "?".into(), |d| short(d).to_string()),
                (None, Some(true)) => "yes".to_string(),
            };
            v.push(cell);
        }
        v.push(if row.same { String::new() } else { "*".into() });
        v
    }));
    table::render(&rows, STYLE)
}

fn header(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|s| s.to_string()).collect()
}

/// `sha256:` and the first 12 hex digits.
fn short(d: &Digest) -> &str {
    let s = d.as_str();
    let cut = d.algorithm().len() + 1 + 12;
    s.get(..cut).unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::tags::{RepoTags, TagRow};
    use crate::ops::verify::Resolved;

    fn resolved(reference: &str, status: Status, digest: Option<Digest>) -> Resolved {
        Resolved {
            reference: reference.into(),
            registry: reference.split('/').next().unwrap_or("").into(),
            repository: "acme/r2d".into(),
            status,
            media_type: digest
                .as_ref()
                .map(|_| "application/vnd.oci.image.index.v1+json".into()),
            size: digest.as_ref().map(|_| 500),
            digest,
            error: (status == Status::Error).then(|| {
                crate::registry::RegistryError::new(
                    Default::default(),
                    crate::registry::ErrorKind::Status {
                        status: 503,
                        errors: vec![],
                    },
                )
            }),
            tag_moved: false,
        }
    }

    #[test]
    fn the_verify_table() {
        let d = Digest::of(b"1");
        let report = VerifyReport {
            ok: false,
            digest: Some(d.clone()),
            references: vec![
                resolved("ghcr.io/acme/r2d:1.4.0", Status::Ok, Some(d.clone())),
                resolved(
                    "docker.io/acme/r2d:1.4.0",
                    Status::Differs,
                    Some(Digest::of(b"2")),
                ),
                resolved("localhost:5000/acme/r2d:latest", Status::Missing, None),
                resolved("quay.io/acme/r2d:1.4.0", Status::Error, None),
            ],
            missing: vec![],
            mismatched: vec![],
            errors: vec![],
        };
        assert_eq!(verify(&report), include_str!("testdata/verify.txt"));
        assert!(verify(&report).contains("DIFFERS"));
    }

    #[test]
    fn the_tags_table() {
        let repos = vec![
            RepoTags::listed("ghcr.io/acme/r2d".into(), vec!["1.9".into(), "1.10".into()]),
            RepoTags::listed("docker.io/acme/r2d".into(), vec!["1.10".into()]),
        ];
        let plain = TagsReport {
            repositories: repos.clone(),
            tags: vec![
                TagRow {
                    tag: "1.9".into(),
                    present: vec![Some(true), Some(false)],
                    digests: None,
                    same: false,
                },
                TagRow {
                    tag: "1.10".into(),
                    present: vec![Some(true), Some(true)],
                    digests: None,
                    same: true,
                },
            ],
        };
        assert_eq!(tags(&plain), include_str!("testdata/tags.txt"));
        let with_digests = TagsReport {
            repositories: repos,
            tags: vec![TagRow {
                tag: "1.10".into(),
                present: vec![Some(true), Some(true)],
                digests: Some(vec![Some(Digest::of(b"1")), None]),
                same: false,
            }],
        };
        assert_eq!(
            tags(&with_digests),
            include_str!("testdata/tags-digests.txt")
        );
        assert!(tags(&with_digests).contains(" ?"));
    }

    #[test]
    fn a_repository_that_could_not_be_listed_shows_question_marks() {
        let listed = |repository: &str, tags: &[&str]| {
            RepoTags::listed(
                repository.into(),
                tags.iter().map(|t| t.to_string()).collect(),
            )
        };
        let mut typo = listed("docker.io/acme/r2f", &[]);
        typo.error = Some(crate::registry::RegistryError::new(
            Default::default(),
            crate::registry::ErrorKind::Status {
                status: 404,
                errors: vec![],
            },
        ));
        let report = TagsReport {
            repositories: vec![listed("ghcr.io/acme/r2d", &["1.9", "1.10"]), typo],
            tags: vec![
                TagRow {
                    tag: "1.9".into(),
                    present: vec![Some(false), None],
                    digests: None,
                    same: false,
                },
                TagRow {
                    tag: "1.10".into(),
                    present: vec![Some(true), None],
                    digests: None,
                    same: true,
                },
            ],
        };
        assert_eq!(tags(&report), include_str!("testdata/tags-unlisted.txt"));
    }
}

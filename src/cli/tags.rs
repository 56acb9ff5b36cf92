//! `boxwright tags REPO REPO...`: tag lists side by side.
//!
//! stdout: a table (a row per tag, a column per repository; `*` marks tags
//! missing somewhere or, with `--digests`, naming different digests; a
//! repository that could not be listed shows `?`) or `--json`. Exit 0 when
//! every list was read (differences are reported, not failures), 1 when a
//! repository could not be listed. Names a registry lists that are not
//! valid tags are skipped with one warning per repository.

use anyhow::Result;
use clap::Args;

use boxwright::error::{bad_input, input_if};
use boxwright::progress::{Level, SharedReporter};
use boxwright::registry::RegistryError;
use boxwright::render;

use super::args::{parse_all, parse_reference, ConnectionArgs};
use super::stdout::{print, print_json};

#[derive(Args, Debug)]
pub struct TagsArgs {
    /// Repositories: REGISTRY/REPOSITORY (no tag).
    #[arg(value_name = "REPO", required = true, num_args = 1.., value_parser = parse_reference)]
    pub repositories: Vec<String>,
    /// Also resolve every tag's digest (one HEAD per tag and repository; no
    /// Docker Hub pull quota spent) and compare them.
    #[arg(long)]
    pub digests: bool,
    /// Ask for pages of N tags (`?n=N`); the registry's `Link` headers are
    /// followed either way.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub page_size: Option<u32>,
    /// Print JSON (per repository its tags; per tag presence and digests).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// `boxwright tags`.
pub async fn run(args: TagsArgs, reporter: SharedReporter) -> Result<()> {
    let repos = parse_all(&args.repositories)?;
    for (r, s) in repos.iter().zip(&args.repositories) {
        if r.tag.is_some() || r.digest.is_some() {
            return Err(bad_input(format!(
                "{s}: give a repository without tag or digest (e.g. {})",
                r.name()
            )));
        }
    }
    let client = args.connection.client(&reporter)?;
    let report =
        boxwright::ops::tags::list_tags(&client, &repos, args.page_size, args.digests).await;
    for r in &report.repositories {
        let n = r.invalid_tags.len();
        if n > 0 {
            reporter.log(
                Level::Warn,
                &format!(
                    "{}: skipped {n} listed {} (see invalid_tags in --json)",
                    r.repository,
                    if n == 1 {
                        "name that is not a valid tag"
                    } else {
                        "names that are not valid tags"
                    },
                ),
            );
        }
    }
    if args.json {
        print_json(&report)?;
    } else {
        print(&render::verify::tags(&report))?;
    }
    // Each error already names its registry and repository.
    let failed: Vec<&RegistryError> = report
        .repositories
        .iter()
        .filter_map(|r| r.error.as_ref())
        .collect();
    if !failed.is_empty() {
        let text: Vec<String> = failed.iter().map(|e| e.to_string()).collect();
        let msg = match report.repositories.len() {
            1 => format!("the repository could not be listed: {}", text.join("; ")),
            n => format!(
                "{} of {n} repositories could not be listed: {}",
                failed.len(),
                text.join("; ")
            ),
        };
        // A broken auth file is the user's to mend (exit 2), as elsewhere.
        return Err(input_if(failed.iter().any(|e| e.is_bad_input()), msg));
    }
    reporter.log(Level::Info, &report.summary());
    Ok(())
}

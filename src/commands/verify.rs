//! `boxwright verify REF REF...`: do these references name one image?
//!
//! stdout: the table (or `--json`); stderr: the verdict. Exit 0 only when
//! every reference resolves, all to one digest; 1 when one is missing,
//! differs or cannot be resolved (the error names them); 2 for bad input.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{anyhow, Context as _, Result};
use clap::Args;

use boxwright::progress::{Level, SharedReporter};
use boxwright::registry::{Client, ClientOptions, CredentialStore, Reference};

/// Connection flags of the read-only commands (`verify`, `tags`).
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// Requests in flight per registry.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs_per_registry: u16,
    /// Reach this registry (HOST[:PORT]) over plain HTTP (repeatable). Loopback
    /// hosts always are.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registry: Vec<String>,
    /// Extra CA certificates (PEM) to trust; SSL_CERT_FILE is honoured too.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Retries of a failed request (429, 5xx, dropped connections).
    #[arg(long, value_name = "N", default_value_t = 6)]
    pub retries: u32,
}

impl ClientArgs {
    pub fn options(&self) -> ClientOptions {
        let mut o = ClientOptions {
            jobs_per_registry: usize::from(self.jobs_per_registry),
            insecure: self.insecure_registry.clone(),
            ca_file: self.ca_file.clone(),
            ..ClientOptions::default()
        };
        o.retry.max_retries = self.retries;
        o
    }

    /// The client, with credentials from docker's config.json (or
    /// `$REGISTRY_AUTH_FILE`).
    pub fn client(&self, reporter: &SharedReporter) -> Result<Client> {
        Client::new(
            self.options(),
            CredentialStore::from_env(),
            reporter.clone(),
        )
    }
}

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
    pub client: ClientArgs,
}

/// A reference that parses (bad input otherwise).
pub fn parse_reference(s: &str) -> Result<String, String> {
    Reference::parse(s)
        .map(|_| s.to_string())
        .map_err(|e| format!("{e:#}"))
}

pub fn parse_all(refs: &[String]) -> Result<Vec<Reference>> {
    refs.iter()
        .map(|s| Reference::parse(s).with_context(|| format!("reference {s}")))
        .collect()
}

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// `boxwright verify`.
pub fn run(args: VerifyArgs, reporter: SharedReporter) -> Result<()> {
    let refs = parse_all(&args.references)?;
    let client = args.client.client(&reporter)?;
    let report = runtime()?.block_on(boxwright::verify::verify(&client, &refs));
    let mut out = crate::commands::stdout();
    if args.json {
        out.write_all(&serde_json::to_vec_pretty(&report)?)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", report.render())?;
    }
    out.flush()?;
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

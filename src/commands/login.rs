//! `boxwright login` / `logout`: docker's config.json, as `docker login`
//! writes it. The password comes from stdin only and is never printed.

use std::io::Read as _;

use anyhow::{Context as _, Result};

use boxwright::error::bad_input;
use boxwright::progress::{Level, SharedReporter};
use boxwright::registry::credentials::{login, logout};
use boxwright::registry::{CredentialStore, Reference, Secret};

use crate::cli::{LoginArgs, LogoutArgs};

fn check_registry(registry: &str) -> Result<()> {
    // A registry name is a reference's first part: parse a dummy reference.
    if registry.is_empty()
        || registry.contains('/')
        || Reference::parse(&format!("{registry}/x/y")).is_err()
    {
        return Err(bad_input(format!(
            "{registry:?} is not a registry name (e.g. ghcr.io, docker.io, localhost:5000)"
        )));
    }
    Ok(())
}

pub fn run_login(args: LoginArgs, reporter: SharedReporter) -> Result<()> {
    check_registry(&args.registry)?;
    if !args.password_stdin {
        return Err(bad_input(
            "give the password on stdin with --password-stdin",
        ));
    }
    let mut raw = String::new();
    std::io::stdin()
        .read_to_string(&mut raw)
        .context("reading the password from stdin")?;
    // `echo $TOKEN | boxwright login`: drop the line end, like docker does.
    let password = Secret::new(raw.trim_end_matches(['\n', '\r']).to_string());
    drop(raw);
    let store = CredentialStore::from_env();
    let path = login(&store, &args.registry, &args.username, &password)
        .with_context(|| format!("storing credentials for {}", args.registry))?;
    reporter.log(
        Level::Info,
        &format!(
            "login: credentials for {} stored in {}",
            args.registry,
            path.display()
        ),
    );
    Ok(())
}

pub fn run_logout(args: LogoutArgs, reporter: SharedReporter) -> Result<()> {
    check_registry(&args.registry)?;
    let store = CredentialStore::from_env();
    let removed = logout(&store, &args.registry)
        .with_context(|| format!("removing credentials for {}", args.registry))?;
    let msg = if removed {
        format!("logout: removed credentials for {}", args.registry)
    } else {
        format!("logout: no stored credentials for {}", args.registry)
    };
    reporter.log(Level::Info, &msg);
    Ok(())
}

//! `boxwright login` / `logout`: docker's config.json, as `docker login`
//! writes it. The password comes from stdin only and is never printed.

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;

use boxwright::error::bad_input;
use boxwright::progress::{Level, SharedReporter};
use boxwright::registry::credentials::{basic_username_fits, login, logout, Removed, Stored};
use boxwright::registry::reference::{config_key, normalize_registry};
use boxwright::registry::{
    AuthError, Client, ClientOptions, Credential, CredentialStore, ErrorKind, Reference,
    RegistryError, Secret,
};

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// The registry (ghcr.io, docker.io, HOST:PORT).
    pub registry: String,
    /// User name (any non-empty name for ghcr.io with a token).
    #[arg(short, long)]
    pub username: String,
    /// Read the password or token from stdin (the only way to give it).
    #[arg(long, required = true)]
    pub password_stdin: bool,
    /// Store the credentials without checking them with the registry (offline use).
    #[arg(long)]
    pub no_verify: bool,
    /// Reach the registry over plain HTTP when checking (loopback hosts always are).
    #[arg(long)]
    pub insecure: bool,
    /// Extra CA certificates (PEM) to trust when checking; SSL_CERT_FILE is honoured too.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct LogoutArgs {
    /// The registry (ghcr.io, docker.io, HOST:PORT).
    pub registry: String,
}

/// The registry `given` names: a registry name (`ghcr.io`,
/// `localhost:5000`), or the server address docker also takes for one, an
/// `https://` URL with or without its API path (`https://index.docker.io/v1/`).
fn registry_name(given: &str) -> Result<String> {
    let name = given.strip_prefix("https://").map_or(given, |rest| {
        let rest = rest.trim_end_matches('/');
        rest.strip_suffix("/v1")
            .or_else(|| rest.strip_suffix("/v2"))
            .unwrap_or(rest)
    });
    // A registry name is a reference's first part: parse a dummy reference.
    if name.is_empty() || name.contains('/') || Reference::parse(&format!("{name}/x/y")).is_err() {
        return Err(bad_input(format!(
            "{given:?} is not a registry name (e.g. ghcr.io, docker.io, localhost:5000)"
        )));
    }
    Ok(name.to_string())
}

pub async fn run_login(mut args: LoginArgs, reporter: SharedReporter) -> Result<()> {
    args.registry = registry_name(&args.registry)?;
    if !args.password_stdin {
        return Err(bad_input(
            "give the password on stdin with --password-stdin",
        ));
    }
    // HTTP Basic splits user and password at the first ':', so a name with
    // one would be read as another name (the name itself is not shown: it
    // may be a secret).
    if !basic_username_fits(&args.username) {
        return Err(bad_input(
            "the user name (-u) contains ':' or a control character, which HTTP \
             authentication cannot carry; give the registry's user name",
        ));
    }
    let mut bytes = Vec::new();
    std::io::stdin()
        .take(boxwright::input::MAX_KEY + 1)
        .read_to_end(&mut bytes)
        .context("reading the password from stdin")?;
    if bytes.len() as u64 > boxwright::input::MAX_KEY {
        return Err(bad_input(format!(
            "the password on stdin is longer than {} bytes; give the password or token alone",
            boxwright::input::MAX_KEY
        )));
    }
    let raw = String::from_utf8(bytes).map_err(|_| {
        bad_input("the password on stdin is not UTF-8 text; give the password or token alone")
    })?;
    // `echo $TOKEN | boxwright login`: drop the line end, like docker does.
    let password = Secret::new(raw.trim_end_matches(['\n', '\r']).to_string());
    drop(raw);
    let registry = normalize_registry(&args.registry);
    if args.no_verify {
        reporter.log(
            Level::Warn,
            &format!("login: --no-verify: storing credentials for {registry} unchecked"),
        );
    } else {
        verify(&registry, &args, &password, &reporter).await?;
    }
    let store = CredentialStore::from_env();
    let stored = login(&store, &args.registry, &args.username, &password)
        .with_context(|| format!("storing credentials for {registry}"))?;
    reporter.log(Level::Info, &stored_message(&registry, &stored));
    Ok(())
}

/// What `login` says it did: the key the credentials are under (as docker
/// spells it, which `logout` and other tools find), and where.
fn stored_message(registry: &str, stored: &Stored) -> String {
    let path = stored.path.display();
    let place = match &stored.helper {
        Some(h) => format!("by docker-credential-{h} (and an empty entry in {path})"),
        None => format!("in {path}"),
    };
    format!(
        "login: credentials for {registry} stored {place} under {:?}",
        stored.key
    )
}

/// What `logout` says it did: the keys removed from config.json and the
/// helper's, or the key looked for.
fn removed_message(registry: &str, removed: &Removed) -> String {
    if !removed.any() {
        return format!(
            "logout: no stored credentials for {registry} (looked for {:?} and its other spellings)",
            config_key(registry)
        );
    }
    let mut what = Vec::new();
    if !removed.keys.is_empty() {
        let keys: Vec<String> = removed.keys.iter().map(|k| format!("{k:?}")).collect();
        what.push(format!("{} from config.json", keys.join(", ")));
    }
    if let Some((helper, key)) = &removed.erased {
        what.push(format!("{key:?} from docker-credential-{helper}"));
    }
    format!(
        "logout: removed credentials for {registry}: {}",
        what.join("; ")
    )
}

/// Ask the registry whether it accepts the credentials (`GET /v2/`, through
/// a token when it asks for one), as `docker login` does. Nothing is written
/// when this fails: 401/403 or a refused token, and an unreachable registry,
/// are exit 1.
async fn verify(
    registry: &str,
    args: &LoginArgs,
    password: &Secret,
    reporter: &SharedReporter,
) -> Result<()> {
    if args.username.is_empty() || password.is_empty() {
        return Err(bad_input("login needs a non-empty user name and password"));
    }
    let mut opts = ClientOptions::default();
    // A mistyped host should fail in seconds, not after the push budget.
    opts.retry.max_retries = 2;
    if args.insecure {
        opts.insecure.push(registry.to_string());
    }
    opts.ca_file = args.ca_file.clone();
    let client = Client::new(opts, CredentialStore::default(), reporter.clone())?;
    client.set_credential(
        registry,
        Credential::Basic {
            username: args.username.clone(),
            password: password.clone(),
        },
    );
    let result = client.check_credentials(registry).await;
    let Err(e) = result.map_err(RegistryError::checking_login) else {
        reporter.log(
            Level::Debug,
            &format!("login: {registry} accepted the credentials"),
        );
        return Ok(());
    };
    // Only a 401 or 403 (from the registry or its token server) is about
    // the credentials; anything else says what failed instead.
    let what = match &e.kind {
        ErrorKind::Auth(AuthError::Rejected { .. }) | ErrorKind::Status { status: 401 | 403, .. } => {
            // The user name stays out too: it may be a secret (decoded from
            // base64 in CI, where only the encoded form is masked).
            format!("{registry} refused the credentials (user name and password); config.json was not changed")
        }
        ErrorKind::Transport(_) => format!(
            "could not reach {registry} to check the credentials; config.json was not changed (--no-verify stores them unchecked)"
        ),
        ErrorKind::Auth(AuthError::Unreachable { .. }) => format!(
            "could not reach the token server of {registry} to check the credentials; config.json was not changed (--no-verify stores them unchecked)"
        ),
        ErrorKind::Auth(AuthError::TokenServer { .. } | AuthError::BadAnswer { .. }) => format!(
            "the token server of {registry} failed, so the credentials could not be checked; config.json was not changed"
        ),
        ErrorKind::Auth(AuthError::BadRealm { .. }) => format!(
            "{registry} names a token realm that is not used, so the credentials were neither sent nor checked; config.json was not changed"
        ),
        _ => format!("{registry} could not check the credentials; config.json was not changed"),
    };
    Err(anyhow::Error::new(e).context(what))
}

pub fn run_logout(mut args: LogoutArgs, reporter: SharedReporter) -> Result<()> {
    args.registry = registry_name(&args.registry)?;
    let store = CredentialStore::from_env();
    let removed = logout(&store, &args.registry)
        .with_context(|| format!("removing credentials for {}", args.registry))?;
    let registry = normalize_registry(&args.registry);
    reporter.log(Level::Info, &removed_message(&registry, &removed));
    Ok(())
}

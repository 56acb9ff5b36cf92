//! `boxwright keygen`: a new ECDSA P-256 key pair for signing, as `cosign
//! generate-key-pair` makes: `PREFIX.key` (PKCS#8 PEM, or with
//! `--encrypt` cosign's encrypted format, password from an environment
//! variable), mode 0600, and `PREFIX.pub` (PKIX PEM), printed on stdout.
//! Existing files are not overwritten without `--force`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;

use boxwright::error::bad_input;
use boxwright::progress::{Level, SharedReporter};
use boxwright::supply::keys::{SigningKey, DEFAULT_PASSWORD_ENV};

use super::stdout::print;

#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// Write PREFIX.key and PREFIX.pub.
    #[arg(long, value_name = "PREFIX", default_value = "cosign")]
    pub output_key_prefix: PathBuf,
    /// Encrypt the private key in cosign's format (ENCRYPTED SIGSTORE
    /// PRIVATE KEY) with the password in --key-password-env.
    #[arg(long)]
    pub encrypt: bool,
    /// The environment variable holding the password (with --encrypt).
    #[arg(long, value_name = "NAME", default_value = DEFAULT_PASSWORD_ENV)]
    pub key_password_env: String,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

fn with_ext(prefix: &Path, ext: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(ext);
    PathBuf::from(s)
}

/// Write `path` with `mode` through a temporary file in its directory,
/// renamed into place: a reader never sees a partial key, a file replaced
/// with `--force` is a new file (a descriptor open on the old one, or a
/// symlink in its place, never sees the new key), and without `force` an
/// existing file is refused.
fn write_file(path: &Path, bytes: &[u8], mode: u32, force: bool) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let cannot =
        |e: std::io::Error| bad_input(format!("{}: cannot be written: {e}", path.display()));
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".keygen-")
        .tempfile_in(dir)
        .map_err(cannot)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(cannot)?;
    tmp.write_all(bytes).map_err(cannot)?;
    tmp.as_file().sync_all().map_err(cannot)?;
    let placed = if force {
        tmp.persist(path)
    } else {
        tmp.persist_noclobber(path)
    };
    placed.map_err(|e| match e.error.kind() {
        std::io::ErrorKind::AlreadyExists => exists(path),
        _ => cannot(e.error),
    })?;
    Ok(())
}

fn exists(path: &Path) -> anyhow::Error {
    bad_input(format!(
        "{} exists (use --force to replace it)",
        path.display()
    ))
}

/// `boxwright keygen`.
pub fn run(args: KeygenArgs, reporter: SharedReporter) -> Result<()> {
    let key_path = with_ext(&args.output_key_prefix, ".key");
    let pub_path = with_ext(&args.output_key_prefix, ".pub");
    let password = if args.encrypt {
        Some(std::env::var(&args.key_password_env).map_err(|_| {
            bad_input(format!(
                "--encrypt: set the password in ${} (or name another variable with --key-password-env)",
                args.key_password_env
            ))
        })?)
    } else {
        None
    };
    let key = SigningKey::generate();
    let private = match &password {
        Some(p) => key.to_cosign_pem(p)?,
        None => key.to_pkcs8_pem()?,
    };
    let public = key.verifying_key().to_pem()?;
    // Both refused before either is written.
    if !args.force {
        if let Some(p) = [&key_path, &pub_path]
            .into_iter()
            .find(|p| p.symlink_metadata().is_ok())
        {
            return Err(exists(p));
        }
    }
    write_file(&key_path, private.as_bytes(), 0o600, args.force)?;
    write_file(&pub_path, public.as_bytes(), 0o644, args.force)?;
    reporter.log(
        Level::Info,
        &format!(
            "wrote {} ({}) and {} (key {})",
            key_path.display(),
            if password.is_some() {
                "encrypted"
            } else {
                "not encrypted"
            },
            pub_path.display(),
            key.verifying_key().id()
        ),
    );
    Ok(print(&public)?)
}

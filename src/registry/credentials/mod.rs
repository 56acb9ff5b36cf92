//! Where registry credentials come from, and `login`.
//!
//! Lookup order for a registry (first hit wins):
//! 1. explicit: a target's `username_env` / `password_env` (with
//!    `encoding = "base64"` when the variable holds the secret base64-encoded);
//! 2. the auth files of containers-auth.json(5), in its order:
//!    `$REGISTRY_AUTH_FILE` (else `$XDG_RUNTIME_DIR/containers/auth.json`),
//!    `$XDG_CONFIG_HOME/containers/auth.json` (else
//!    `~/.config/containers/auth.json`), docker's `$DOCKER_CONFIG/config.json`
//!    (else `~/.docker/config.json`), then the legacy `~/.dockercfg`. In each:
//!    `credHelpers[registry]`, then `auths[registry]` (`auth` = base64
//!    `user:pass`, or `identitytoken`), then (docker's) `credsStore`;
//!    helpers run as `docker-credential-<name> get` with the server URL on
//!    stdin;
//! 3. for a registry that takes GitHub Actions tokens (`ghcr.io`, see
//!    [`super::hosts`]): `GITHUB_TOKEN` with `GITHUB_ACTOR`.
//!
//! Secrets live in [`Secret`], whose `Debug` and `Display` print `***`. No
//! error built here contains a secret or a helper's output.
//!
//! `lookup` reads, `store` writes (`login`, `logout`), `helper` runs the
//! credential helpers both use, `secret` holds the types.

mod helper;
mod lookup;
mod secret;
mod store;

pub use lookup::CredentialStore;
pub use secret::{
    basic_authorization, basic_username_fits, redact_secrets, Credential, CredentialSource,
    EnvCredentialError, EnvCredentials, EnvKey, EnvProblem, Secret, SecretEncoding,
};
pub use store::{login, logout, Removed, Stored};

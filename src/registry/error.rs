//! The one error type of the registry client.
//!
//! A [`RegistryError`] names what failed (operation), on which object
//! (registry, repository, digest or tag), why (HTTP status, the registry's own
//! `{"errors":[...]}` codes and messages, or a transport failure) and, through
//! [`RegistryError::is_temporary`], whether trying again may help. Its text
//! never holds a URL (upload URLs carry state tokens in their query) nor a
//! credential.

use std::fmt;

use crate::registry::credentials::redact_secrets;

/// One entry of a registry's `{"errors":[{"code","message","detail"}]}` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: String,
    pub message: String,
}

/// What went wrong, below the context.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// The registry answered with an unexpected status.
    #[error("{}", status_text(*.status, .errors))]
    Status { status: u16, errors: Vec<ApiError> },
    /// No answer: connection refused or reset, TLS failure, timeout, body cut.
    #[error("{0}")]
    Transport(String),
    /// The answer did not arrive in full within the request's deadline
    /// (the registry sends, too slowly); not retried.
    #[error("{0}")]
    Deadline(String),
    /// The registry answered something that breaks the protocol.
    #[error("{0}")]
    Protocol(String),
    /// Content did not match its digest.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: String, actual: String },
    /// Authentication failed: why, in [`AuthError`].
    #[error("{0}")]
    Auth(AuthError),
    /// The registry's credentials could not be read: an auth file that is
    /// not JSON, not a regular file, over its size cap, or an entry that
    /// cannot be decoded. The user's own configuration: exit code 2.
    #[error("{0}")]
    Credentials(String),
    /// A local file could not be read or written.
    #[error("{0}")]
    Io(String),
}

/// Why authenticating with a registry failed. Only [`AuthError::Rejected`]
/// says anything about the credentials; `realm` is the token realm as shown
/// (no query, at most [`MAX_REALM_SHOWN`] bytes).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The token server refused the request with 401 or 403: the
    /// credentials, or, without any, anonymous access.
    #[error("asking {realm} for a token{}: {answer}: {}", for_scopes(.scopes), if *.anonymous {
        "no token is given to a caller without credentials"
    } else {
        "the credentials were refused"
    })]
    Rejected {
        realm: String,
        scopes: Vec<String>,
        status: u16,
        /// `HTTP 401` and the server's error codes.
        answer: String,
        anonymous: bool,
    },
    /// The token server answered another error status.
    #[error("asking {realm} for a token{}: {answer}: the token server failed", for_scopes(.scopes))]
    TokenServer {
        realm: String,
        scopes: Vec<String>,
        status: u16,
        answer: String,
        /// Seconds the token server asked us to wait (`Retry-After`).
        retry_after: Option<u64>,
    },
    /// No answer from the token server (connection refused, TLS, timeout).
    #[error("asking {realm} for a token: {error}")]
    Unreachable { realm: String, error: String },
    /// The challenge names a realm that is not asked: nothing, credentials
    /// included, was sent to it.
    #[error("the registry's token realm {realm:?} {reason}")]
    BadRealm { realm: String, reason: String },
    /// The token server answered 200 with something that is not a token
    /// (not JSON, no token, too large).
    #[error("{realm}: {detail}")]
    BadAnswer { realm: String, detail: String },
    /// The credentials could not be looked up or put in a header.
    #[error("{0}")]
    Credential(String),
}

/// The most bytes of a token realm shown in a message.
pub const MAX_REALM_SHOWN: usize = 200;

fn for_scopes(scopes: &[String]) -> String {
    if scopes.is_empty() {
        String::new()
    } else {
        format!(" for {}", scopes.join(" "))
    }
}

fn status_text(status: u16, errors: &[ApiError]) -> String {
    let mut s = format!("HTTP {status}");
    if let Some(reason) = http_reason(status) {
        s.push(' ');
        s.push_str(reason);
    }
    for e in errors {
        s.push_str(": ");
        s.push_str(&e.code);
        if !e.message.is_empty() {
            s.push_str(" (");
            s.push_str(&e.message);
            s.push(')');
        }
    }
    s
}

fn http_reason(status: u16) -> Option<&'static str> {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
}

/// An error from a registry operation.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{context}: {kind}{}", hint(self))]
pub struct RegistryError {
    pub context: ErrorContext,
    pub kind: ErrorKind,
    /// Docker Hub's `ratelimit-remaining` when the answer carried it.
    pub ratelimit_remaining: Option<String>,
    /// Seconds the registry asked us to wait (`Retry-After`).
    pub retry_after: Option<u64>,
    /// The request carried no credentials on purpose (`verify
    /// --anonymous`): a refusal is about anonymous access, and the hint
    /// says so instead of pointing at credentials.
    pub anonymous: bool,
    /// The request checked credentials the user is logging in with
    /// (`boxwright login`): a refusal is about those, and the hint says so
    /// instead of pointing at the places credentials are found.
    pub login: bool,
}

/// Which operation, on which object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorContext {
    /// "uploading blob", "checking blob", "putting manifest", ...
    pub operation: String,
    pub registry: String,
    pub repository: Option<String>,
    /// A digest or a tag.
    pub object: Option<String>,
}

impl fmt::Display for ErrorContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.operation)?;
        if let Some(o) = &self.object {
            write!(f, " {o}")?;
        }
        match &self.repository {
            Some(r) => write!(f, " in {}/{}", self.registry, r),
            None => write!(f, " on {}", self.registry),
        }
    }
}

fn hint(e: &RegistryError) -> String {
    let mut s = String::new();
    if let Some(r) = &e.ratelimit_remaining {
        s.push_str(&format!(" [ratelimit-remaining: {r}]"));
    }
    if let Some(secs) = e.retry_after {
        s.push_str(&format!(" [retry after {secs}s]"));
    }
    match &e.kind {
        ErrorKind::Status {
            status: 401 | 403, ..
        }
        | ErrorKind::Auth(AuthError::Rejected { .. })
            if e.login =>
        {
            s.push_str(
                "; check the user name (-u) and the password or token given on stdin: it must be this registry's, and a token must allow at least pulling from it",
            )
        }
        ErrorKind::Status {
            status: 401 | 403, ..
        }
        | ErrorKind::Auth(AuthError::Rejected { .. })
            if e.anonymous =>
        {
            s.push_str(
            "; asked without credentials on purpose: the repository is private, or the registry refuses anonymous pulls",
        )
        }
        // The token server's refusal is the registry's, one step earlier.
        ErrorKind::Status { status: 401, .. } | ErrorKind::Auth(AuthError::Rejected { .. }) => s.push_str(
            "; check the credentials for this registry: boxwright login, the target's username_env/password_env, or an entry in the first of these auth files that has one: $REGISTRY_AUTH_FILE (else $XDG_RUNTIME_DIR/containers/auth.json), $XDG_CONFIG_HOME/containers/auth.json (else ~/.config/containers/auth.json), $DOCKER_CONFIG/config.json (else ~/.docker/config.json), ~/.dockercfg",
        ),
        ErrorKind::Status { status: 404, .. } => {
            if let Some(repo) = missing_tag_repository(&e.context) {
                s.push_str(&missing_tag_hint(&repo))
            }
        }
        ErrorKind::Status { status: 403, .. } => s.push_str(
            "; the credentials lack permission for this repository (for ghcr.io: write:packages, and the org.opencontainers.image.source label for GITHUB_TOKEN)",
        ),
        ErrorKind::Transport(t) | ErrorKind::Auth(AuthError::Unreachable { error: t, .. })
            if is_untrusted_certificate(t) =>
        {
            s.push_str(
            "; the TLS certificate is not trusted: when a private CA signed it, give that CA with --ca-file PEM (or SSL_CERT_FILE)",
        )
        }
        _ => {}
    }
    s
}

/// What to do when a tag of `repository` (`REGISTRY/REPO`) is not there.
pub fn missing_tag_hint(repository: &str) -> String {
    format!("; no such tag (or repository): `boxwright tags {repository}` lists the tags it holds")
}

/// `REGISTRY/REPO` when `c` asked for a manifest by tag (a digest has a
/// `:`, a tag cannot), so that a 404 is a tag, or a repository, that is
/// not there: most often a typo in the reference.
fn missing_tag_repository(c: &ErrorContext) -> Option<String> {
    let tag = c.object.as_deref()?;
    let repo = c.repository.as_deref()?;
    let reading = matches!(
        c.operation.as_str(),
        "fetching manifest" | "resolving manifest"
    );
    (reading && !tag.contains(':')).then(|| format!("{}/{repo}", c.registry))
}

/// Whether a transport failure is a certificate the client does not trust
/// (rustls: "invalid peer certificate: UnknownIssuer", a self-signed one,
/// one for another name...).
fn is_untrusted_certificate(text: &str) -> bool {
    text.contains("invalid peer certificate") || text.contains("UnknownIssuer")
}

/// In a JSON report, an error is its text.
impl serde::Serialize for RegistryError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl RegistryError {
    pub fn new(context: ErrorContext, kind: ErrorKind) -> RegistryError {
        RegistryError {
            context,
            kind,
            ratelimit_remaining: None,
            retry_after: None,
            anonymous: false,
            login: false,
        }
    }

    /// This error, from checking the credentials `boxwright login` is given.
    pub fn checking_login(mut self) -> RegistryError {
        self.login = true;
        self
    }

    /// This error, from a request sent without credentials on purpose.
    pub fn sent_anonymously(mut self) -> RegistryError {
        self.anonymous = true;
        self
    }

    /// The HTTP status, when the registry answered.
    pub fn status(&self) -> Option<u16> {
        match &self.kind {
            ErrorKind::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True when the registry answered with this error code.
    pub fn has_code(&self, code: &str) -> bool {
        match &self.kind {
            ErrorKind::Status { errors, .. } => errors.iter().any(|e| e.code == code),
            _ => false,
        }
    }

    /// Whether the failure is the user's own input (a broken auth file), not
    /// the registry's: the binary exits 2 for it.
    pub fn is_bad_input(&self) -> bool {
        matches!(self.kind, ErrorKind::Credentials(_))
    }

    /// Whether trying again may succeed: transport failures, 408, 429, 500,
    /// 502, 503, 504, `BLOB_UPLOAD_UNKNOWN`, `TOOMANYREQUESTS`, and GHCR's 403
    /// "secondary rate limit"; from a token server, no answer or one of
    /// those statuses.
    pub fn is_temporary(&self) -> bool {
        match &self.kind {
            ErrorKind::Transport(_) | ErrorKind::Auth(AuthError::Unreachable { .. }) => true,
            ErrorKind::Auth(AuthError::TokenServer { status, .. }) => is_retryable_status(*status),
            ErrorKind::Status { status, errors } => {
                is_retryable_status(*status)
                    || errors
                        .iter()
                        .any(|e| e.code == "BLOB_UPLOAD_UNKNOWN" || e.code == "TOOMANYREQUESTS")
                    || (*status == 403
                        && errors
                            .iter()
                            .any(|e| e.message.to_ascii_lowercase().contains("rate limit")))
            }
            _ => false,
        }
    }
}

/// Statuses that are retried as they are.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// Parse a registry error body. Unknown shapes give no entries; codes and
/// messages are cut to a sane length and shown without any secret of ours
/// that they echo.
pub fn parse_error_body(body: &[u8]) -> Vec<ApiError> {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default)]
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(b) => b
            .errors
            .into_iter()
            .map(|e| ApiError {
                code: shown(&redact_secrets(&e.code), 100),
                message: shown(&redact_secrets(&e.message), 300),
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// A registry's text as it may be shown: on one line (control characters,
/// line ends included, become spaces, so it cannot forge a log line of its
/// own, such as a CI runner's command) and cut to about `n` bytes.
pub(crate) fn shown(s: &str, n: usize) -> String {
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.len() <= n {
        return s;
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Render a reqwest error without its URL (which may hold a state token) and
/// with its source chain.
pub fn transport_text(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut s = err.to_string();
    let mut src = std::error::Error::source(&err);
    while let Some(e) = src {
        let t = e.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = e.source();
    }
    s
}

#[cfg(test)]
#[path = "error_tests.rs"]
mod tests;

//! Secrets and credentials, and a target's own credential settings.
//! A [`Secret`]'s `Debug` and `Display` print `***`, so that no log or
//! error can show one. Every secret made is also remembered, with the forms
//! it goes on the wire in, so that text a server sends back (an error
//! message that echoes the request's `Authorization`) is shown through
//! [`redact_secrets`] without it.

use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;

use base64::Engine as _;

/// A secret string (password, token). Prints as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A credential (password, identity token): remembered for
    /// [`redact_secrets`] for as long as the process runs.
    pub fn new(s: impl Into<String>) -> Secret {
        let s = s.into();
        remember(&s, Lasts::Run);
        Secret(s)
    }
    /// A bearer token a token server handed out: remembered among the
    /// latest tokens, so that many renewed tokens (a long run, or a token
    /// server that hands out a new one on every request) push out old
    /// tokens, never a credential.
    pub fn token(s: impl Into<String>) -> Secret {
        let s = s.into();
        remember(&s, Lasts::Renewed);
        Secret(s)
    }
    /// The secret itself, for putting it on the wire. Never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How long a secret is remembered for [`redact_secrets`].
#[derive(Clone, Copy)]
enum Lasts {
    /// A credential: the whole run.
    Run,
    /// A token: until [`MAX_KNOWN`] newer token forms push it out.
    Renewed,
}

/// The secrets of this process and their wire forms, newest last:
/// credentials, and tokens apart, so that tokens never push out a
/// credential.
static KNOWN: Mutex<[Vec<String>; 2]> = Mutex::new([Vec::new(), Vec::new()]);

/// How many forms of credentials, and of tokens, [`redact_secrets`] knows
/// at most (tokens are renewed in a long run; the oldest are forgotten
/// first; a run has a credential or two per registry).
const MAX_KNOWN: usize = 1024;

/// Remember `s` for [`redact_secrets`]. Strings under 8 bytes are not:
/// hiding them would hide ordinary words and digits, and the registries
/// this is for take no password that short (Docker Hub wants 9 characters,
/// tokens are longer).
/// Each form is remembered too: a form body or a query carries `s`
/// percent-encoded (see [`url_encoded_forms`]).
fn remember(s: &str, lasts: Lasts) {
    if s.len() < 8 {
        return;
    }
    let mut all = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
    let known = &mut all[lasts as usize];
    for form in std::iter::once(s.to_string()).chain(url_encoded_forms(s)) {
        if known.contains(&form) {
            continue;
        }
        if known.len() >= MAX_KNOWN {
            known.remove(0);
        }
        known.push(form);
    }
}

/// `s` as `application/x-www-form-urlencoded` writes it (every byte but
/// `A-Z a-z 0-9 * - . _` as `%XX`), with a space as `+` and as `%20`, in
/// upper- and lower-case hex: the forms a server may echo a form body's or
/// a query's value in. Empty when `s` needs no encoding.
fn url_encoded_forms(s: &str) -> Vec<String> {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"*-._".contains(&b);
    if s.bytes().all(plain) {
        return Vec::new();
    }
    let mut forms = Vec::new();
    for space in ["+", "%20"] {
        for upper in [true, false] {
            let mut out = String::with_capacity(s.len() * 3);
            for b in s.bytes() {
                match b {
                    b' ' => out.push_str(space),
                    b if plain(b) => out.push(char::from(b)),
                    b if upper => out.push_str(&format!("%{b:02X}")),
                    b => out.push_str(&format!("%{b:02x}")),
                }
            }
            if !forms.contains(&out) {
                forms.push(out);
            }
        }
    }
    forms
}

/// The `Authorization` value of HTTP Basic for `username` and `password`,
/// its forms remembered for [`redact_secrets`] (a server may echo the
/// header, or the `user:password` it decodes).
pub fn basic_authorization(username: &str, password: &Secret) -> String {
    let raw = format!("{username}:{}", password.expose());
    let encoded = base64::engine::general_purpose::STANDARD.encode(&raw);
    remember(&raw, Lasts::Run);
    remember(&encoded, Lasts::Run);
    format!("Basic {encoded}")
}

/// Whether HTTP Basic can carry `username`: it splits `user:password` at
/// the first `:`, and a header holds no control character.
pub fn basic_username_fits(username: &str) -> bool {
    !username.contains(':') && !username.chars().any(char::is_control)
}

/// `text` (a server's words) with every secret this process knows, in every
/// form it was sent in, shown as `***`.
pub fn redact_secrets(text: &str) -> String {
    let known = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
    let mut by_length: Vec<&String> = known.iter().flatten().collect();
    // The longest first, so that `user:password` goes whole, not leaving `user:`.
    by_length.sort_by_key(|k| std::cmp::Reverse(k.len()));
    let mut out = text.to_string();
    for k in by_length {
        if out.contains(k.as_str()) {
            out = out.replace(k.as_str(), "***");
        }
    }
    out
}

/// Credentials for one registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// User name and password (or personal access token).
    Basic { username: String, password: Secret },
    /// An OAuth2 refresh token (`identitytoken` in docker's config).
    IdentityToken(Secret),
}

/// Where a credential was found (for `--verbose`; never the secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialSource {
    Explicit,
    DockerConfig(PathBuf),
    Helper(String),
    RegistryAuthFile(PathBuf),
    GithubToken,
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialSource::Explicit => f.write_str("the target's username_env/password_env"),
            CredentialSource::DockerConfig(p) => write!(f, "{}", p.display()),
            CredentialSource::Helper(h) => write!(f, "docker-credential-{h}"),
            CredentialSource::RegistryAuthFile(p) => write!(f, "{}", p.display()),
            CredentialSource::GithubToken => f.write_str("GITHUB_TOKEN"),
        }
    }
}

/// How an explicit secret is stored in its environment variable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SecretEncoding {
    #[default]
    Plain,
    /// The variable holds the secret base64-encoded.
    Base64,
}

/// A target's own credential settings (from the recipe).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvCredentials {
    pub username_env: String,
    pub password_env: String,
    /// How the password variable holds the password.
    pub encoding: SecretEncoding,
    /// How the user name variable holds the name.
    pub username_encoding: SecretEncoding,
}

impl EnvCredentials {
    /// Read the variables through `env`. A missing or badly encoded variable
    /// is an [`EnvCredentialError`] naming the variable (never its value).
    pub fn resolve(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Credential, EnvCredentialError> {
        let username = read_env(
            env,
            &self.username_env,
            EnvKey::Username,
            self.username_encoding,
        )?;
        if !basic_username_fits(&username) {
            return Err(EnvCredentialError {
                var: self.username_env.clone(),
                key: EnvKey::Username,
                problem: EnvProblem::BadUsername,
            });
        }
        let password = read_env(env, &self.password_env, EnvKey::Password, self.encoding)?;
        Ok(Credential::Basic {
            username,
            password: Secret::new(password),
        })
    }
}

/// Which of a target's credential variables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvKey {
    /// `username_env` (its encoding: `username_encoding`).
    Username,
    /// `password_env` (its encoding: `encoding`).
    Password,
}

impl EnvKey {
    /// The recipe key naming the variable.
    pub fn key(self) -> &'static str {
        match self {
            EnvKey::Username => "username_env",
            EnvKey::Password => "password_env",
        }
    }

    /// The recipe key giving its encoding.
    pub fn encoding_key(self) -> &'static str {
        match self {
            EnvKey::Username => "username_encoding",
            EnvKey::Password => "encoding",
        }
    }

    fn what(self) -> &'static str {
        match self {
            EnvKey::Username => "user name",
            EnvKey::Password => "secret",
        }
    }
}

/// What is wrong with a credential variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvProblem {
    /// Not set, or set to the empty string.
    Unset,
    /// `encoding = "base64"` (or `username_encoding`), and the value is not
    /// base64 of a UTF-8 string.
    NotBase64,
    /// A user name with `:` or a control character, which HTTP Basic
    /// cannot carry (`user:password`).
    BadUsername,
}

/// A target's credential variable that cannot be used: it names the
/// variable and the recipe key, never the value. Bad input (exit 2) when
/// the target is required; an optional target with one is a failed target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvCredentialError {
    /// The environment variable's name.
    pub var: String,
    pub key: EnvKey,
    pub problem: EnvProblem,
}

impl fmt::Display for EnvCredentialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (var, key) = (&self.var, self.key);
        match self.problem {
            EnvProblem::Unset => write!(
                f,
                "environment variable {var} ({}) is not set or empty: set it to this registry's \
                 {}, or leave the recipe's targets out by pushing with --to alone",
                key.key(),
                key.what()
            ),
            EnvProblem::NotBase64 => write!(
                f,
                "environment variable {var} is not valid base64 of a UTF-8 {} ({} = \"base64\")",
                key.what(),
                key.encoding_key()
            ),
            EnvProblem::BadUsername => write!(
                f,
                "environment variable {var} ({}) holds a ':' or a control character, which a user \
                 name sent with HTTP Basic cannot hold; is it the password, or user:password?",
                key.key()
            ),
        }
    }
}

impl std::error::Error for EnvCredentialError {}

/// The value of variable `var`, decoded.
fn read_env(
    env: &dyn Fn(&str) -> Option<String>,
    var: &str,
    key: EnvKey,
    encoding: SecretEncoding,
) -> Result<String, EnvCredentialError> {
    let fail = |problem| EnvCredentialError {
        var: var.to_string(),
        key,
        problem,
    };
    // A line end a secret was stored with (`echo "$TOKEN"`) is dropped, as
    // `docker login --password-stdin` drops it.
    let raw = env(var)
        .map(|v| v.trim_end_matches(['\n', '\r']).to_string())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| fail(EnvProblem::Unset))?;
    match encoding {
        SecretEncoding::Plain => Ok(raw),
        SecretEncoding::Base64 => {
            decode_base64_secret(&raw).ok_or_else(|| fail(EnvProblem::NotBase64))
        }
    }
}

fn decode_base64_secret(raw: &str) -> Option<String> {
    let cleaned: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(cleaned.as_bytes())
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(cleaned.as_bytes()))
        .ok()?;
    let s = String::from_utf8(bytes).ok()?;
    let s = s.trim_end_matches(['\n', '\r']).to_string();
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn text_a_server_echoes_is_shown_without_the_secrets() {
        let password = Secret::new("echoed-pass-1");
        let header = basic_authorization("bob", &password);
        let token = Secret::new("echoed-token-2");
        let said = format!(
            "you sent {header}, that is bob:echoed-pass-1, and Bearer {}; pass echoed-pass-1",
            token.expose()
        );
        assert_eq!(
            redact_secrets(&said),
            "you sent Basic ***, that is ***, and Bearer ***; pass ***"
        );
        assert_eq!(redact_secrets("nothing secret here"), "nothing secret here");
        assert_eq!(Secret::new("short12").expose(), "short12");
        assert_eq!(
            redact_secrets("short12"),
            "short12",
            "short strings are kept"
        );
    }

    #[test]
    fn url_encoded_echoes_are_shown_without_the_secrets() {
        let token = Secret::new("refresh tok+en/with=chars@x:y");
        let _ = basic_authorization("bob", &Secret::new("pass word+/="));
        let said = "you sent grant_type=refresh_token&refresh_token=refresh+tok%2Ben%2Fwith%3Dchars%40x%3Ay&client_id=boxwright, \
                    or refresh%20tok%2ben%2fwith%3dchars%40x%3ay, \
                    user bob%3Apass+word%2B%2F%3D";
        let shown = redact_secrets(said);
        assert_eq!(
            shown,
            "you sent grant_type=refresh_token&refresh_token=***&client_id=boxwright, \
                    or ***, \
                    user ***"
        );
        assert!(!shown.contains(token.expose()));
        assert_eq!(url_encoded_forms("plain-Secret_1.*"), Vec::<String>::new());
        assert_eq!(
            url_encoded_forms("a b/"),
            ["a+b%2F", "a+b%2f", "a%20b%2F", "a%20b%2f"]
        );
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        let c = Credential::Basic {
            username: "u".into(),
            password: s,
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn base64_env_secrets() {
        let vars: HashMap<&str, String> = HashMap::from([
            ("U", "acme".to_string()),
            ("P", "plain-secret\r\n".to_string()),
            ("NL", "\n".to_string()),
            ("UB", b64("acme-bot\n")),
            ("PB", format!("{}\n", b64("s3cret:with:colons\n"))),
            ("BAD", "***notbase64***".to_string()),
        ]);
        let env = |k: &str| vars.get(k).cloned();
        let spec = |p: &str, encoding| EnvCredentials {
            username_env: "U".into(),
            password_env: p.into(),
            encoding,
            username_encoding: SecretEncoding::Plain,
        };
        assert_eq!(
            spec("P", SecretEncoding::Plain).resolve(&env).unwrap(),
            Credential::Basic {
                username: "acme".into(),
                password: Secret::new("plain-secret")
            }
        );
        assert_eq!(
            spec("PB", SecretEncoding::Base64).resolve(&env).unwrap(),
            Credential::Basic {
                username: "acme".into(),
                password: Secret::new("s3cret:with:colons")
            }
        );
        let e = spec("BAD", SecretEncoding::Base64)
            .resolve(&env)
            .unwrap_err();
        assert_eq!(
            (e.key, e.problem),
            (EnvKey::Password, EnvProblem::NotBase64)
        );
        assert!(crate::error::is_bad_input(&anyhow::Error::new(e.clone())));
        assert!(e.to_string().contains("BAD") && !e.to_string().contains("notbase64"));
        let e = spec("MISSING", SecretEncoding::Plain)
            .resolve(&env)
            .unwrap_err();
        assert!(e.to_string().contains("MISSING"));
        assert_eq!(e.problem, EnvProblem::Unset);
        // A line end alone is no secret.
        let e = spec("NL", SecretEncoding::Plain).resolve(&env).unwrap_err();
        assert_eq!(e.problem, EnvProblem::Unset);
        let empty = |k: &str| (k == "U").then(String::new);
        let e = spec("P", SecretEncoding::Plain)
            .resolve(&empty)
            .unwrap_err();
        assert_eq!((e.var.as_str(), e.problem), ("U", EnvProblem::Unset));
        // A base64 user name (DOCKERHUB_USERNAME_ENCODED), and a bad one
        // named without its value.
        let user = |u: &str| EnvCredentials {
            username_env: u.into(),
            password_env: "P".into(),
            encoding: SecretEncoding::Plain,
            username_encoding: SecretEncoding::Base64,
        };
        assert_eq!(
            user("UB").resolve(&env).unwrap(),
            Credential::Basic {
                username: "acme-bot".into(),
                password: Secret::new("plain-secret")
            }
        );
        // One with ':' (user:password, or the password) cannot be a user
        // name: named, never shown.
        let e = user("PB").resolve(&env).unwrap_err();
        assert_eq!((e.var.as_str(), e.problem), ("PB", EnvProblem::BadUsername));
        assert!(!e.to_string().contains("s3cret"), "{e}");
        let e = user("BAD").resolve(&env).unwrap_err();
        assert_eq!(
            (e.key, e.problem),
            (EnvKey::Username, EnvProblem::NotBase64)
        );
        assert!(e.to_string().contains("BAD") && e.to_string().contains("username_encoding"));
        assert!(!e.to_string().contains("notbase64"));
    }
}

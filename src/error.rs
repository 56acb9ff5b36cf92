//! Error conventions.
//!
//! Library functions return [`anyhow::Result`], each step adding its context
//! once ("building layer 2: ..."). Errors caused by the user's input (recipe,
//! arguments, paths) carry a [`BadInput`] somewhere in their chain: the binary
//! maps those to exit code 2 and every other failure to exit code 1.
//!
//! Reports keep their failures as values ([`Failure`], or a typed error such
//! as [`crate::registry::RegistryError`]) and the error a report returns
//! holds them ([`Failures`], [`crate::push::PushFailed`]): its text names
//! every failure, and its chain leads to one of them, a bad-input one first.
//! Such an error's text already holds its causes, so the chain that is shown
//! ends there ([`shown_chain`], [`one_line`]).

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use serde::{Serialize, Serializer};

/// Marks an error as caused by bad input (exit code 2).
#[derive(Debug)]
pub struct BadInput(pub String);

impl fmt::Display for BadInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

/// Build an [`anyhow::Error`] that the binary reports with exit code 2.
pub fn bad_input(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(BadInput(msg.into()))
}

/// A [`BadInput`] as an I/O error, for a reader that refuses what it
/// reads: still bad input (exit 2) once it reaches an [`anyhow::Error`].
pub fn bad_input_io(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, BadInput(msg.into()))
}

/// `msg` as an error, marked as bad input when `bad` (a report's failures
/// that include the user's own, such as a broken auth file).
pub fn input_if(bad: bool, msg: String) -> anyhow::Error {
    if bad {
        bad_input(msg)
    } else {
        anyhow::anyhow!(msg)
    }
}

/// Return early with a [`BadInput`] error, `format!`-style.
#[macro_export]
macro_rules! bail_input {
    ($($arg:tt)*) => {
        return Err($crate::error::bad_input(format!($($arg)*)))
    };
}

/// True when any error in the chain is a [`BadInput`], a credential
/// variable that cannot be used, or a registry error
/// that the user's own configuration caused
/// ([`crate::registry::RegistryError::is_bad_input`]).
pub fn is_bad_input(err: &anyhow::Error) -> bool {
    is_bad_input_cause(&**err)
}

/// True when `err` or one of its causes is a [`BadInput`] or a registry
/// error the user's own configuration caused: [`is_bad_input`] for an error
/// that is not (yet) an [`anyhow::Error`].
pub fn is_bad_input_cause(err: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.is::<BadInput>()
            // A reader's refusal, passed up as an I/O error.
            || e.downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
                .is_some_and(|inner| inner.is::<BadInput>())
            || e.is::<crate::registry::EnvCredentialError>()
            || e.downcast_ref::<crate::registry::RegistryError>()
                .is_some_and(crate::registry::RegistryError::is_bad_input)
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// An error kept as a value in a report: cloneable, with its whole chain
/// (each cause can be reached with [`Failure::find`], or by walking
/// `source()`), shown and serialised as that chain on one line, the text
/// `{:#}` gives.
#[derive(Clone, Debug)]
pub struct Failure(Arc<anyhow::Error>);

impl Failure {
    pub fn new(err: impl Into<anyhow::Error>) -> Failure {
        Failure(Arc::new(err.into()))
    }

    /// The error as it was returned.
    pub fn error(&self) -> &anyhow::Error {
        &self.0
    }

    /// The first error of type `T` in the chain (a
    /// [`crate::registry::RegistryError`], a [`BadInput`], ...).
    pub fn find<T: StdError + Send + Sync + 'static>(&self) -> Option<&T> {
        self.0.chain().find_map(|e| e.downcast_ref::<T>())
    }

    /// Whether the failure was caused by the user's own input.
    pub fn is_bad_input(&self) -> bool {
        is_bad_input(&self.0)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(err: anyhow::Error) -> Failure {
        Failure(Arc::new(err))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_chain(f, &**self.0)
    }
}

impl StdError for Failure {
    /// The error as it was returned: its text is part of this one's.
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&**self.0)
    }
}

impl Serialize for Failure {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Several failures reported as one error, worded as reports always have
/// (`attaching to ... failed: a: ...; b: ...`), each kept as a value
/// ([`Failures::failures`]). Its source is the first failure that is bad
/// input, or else the first, so that `chain()` reaches a typed cause and
/// [`is_bad_input`] sees the marker.
#[derive(Debug)]
pub struct Failures {
    message: String,
    failures: Vec<Failure>,
}

impl Failures {
    /// `message` is the whole text, the failures' included.
    pub fn new(message: impl Into<String>, failures: Vec<Failure>) -> Failures {
        Failures {
            message: message.into(),
            failures,
        }
    }

    pub fn failures(&self) -> &[Failure] {
        &self.failures
    }
}

impl fmt::Display for Failures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for Failures {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        let first_input = self.failures.iter().find(|e| e.is_bad_input());
        first_input
            .or(self.failures.first())
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// Whether the text of `err` already spells out its causes (a report's
/// failures, a kept [`Failure`], a push error): the causes
/// are not shown again after it.
pub fn spells_out_causes(err: &(dyn StdError + 'static)) -> bool {
    err.is::<Failure>()
        || err.is::<Failures>()
        || err.is::<crate::push::PushFailed>()
        || err.is::<crate::push::PushError>()
}

/// The errors of `err`'s chain worth showing: the chain as it is, up to and
/// including the first error that spells out its causes, so that no text is
/// shown twice (the binary's `caused by:` lines).
pub fn shown_chain<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    let mut next = Some(err);
    std::iter::from_fn(move || {
        let e = next?;
        next = if spells_out_causes(e) {
            None
        } else {
            e.source()
        };
        Some(e)
    })
}

/// `err` and its causes on one line (`a: b: c`, as `{:#}` writes an
/// [`anyhow::Error`]), each text once ([`shown_chain`]).
pub fn write_chain(f: &mut fmt::Formatter<'_>, err: &(dyn StdError + 'static)) -> fmt::Result {
    for (i, e) in shown_chain(err).enumerate() {
        if i > 0 {
            f.write_str(": ")?;
        }
        write!(f, "{e}")?;
    }
    Ok(())
}

/// Shows an error and its causes on one line: [`one_line`].
pub struct OneLine<'a>(&'a (dyn StdError + 'static));

impl fmt::Display for OneLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_chain(f, self.0)
    }
}

/// `err` and its causes on one line, as `{:#}` shows it, but each text
/// once: a report's error (such as [`crate::push::PushReport::error`])
/// already holds the text of the failures its chain leads to.
pub fn one_line(err: &anyhow::Error) -> OneLine<'_> {
    OneLine(&**err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{ErrorKind, RegistryError};

    fn registry(kind: ErrorKind) -> RegistryError {
        RegistryError::new(Default::default(), kind)
    }

    #[test]
    fn a_failure_reads_as_its_chain_and_keeps_it() {
        let e = anyhow::Error::new(registry(ErrorKind::Transport("refused".into())))
            .context("fetching blob")
            .context("reg/x");
        let text = format!("{e:#}");
        let f = Failure::from(e);
        assert_eq!(f.to_string(), text);
        assert_eq!(serde_json::to_value(&f).unwrap(), text.as_str());
        assert!(f.find::<RegistryError>().is_some());
        assert!(!f.is_bad_input());
        // Kept in an error, its text is shown once.
        let outer = anyhow::Error::new(f.clone()).context("copying");
        assert_eq!(one_line(&outer).to_string(), format!("copying: {text}"));
        assert_eq!(shown_chain(&*outer).count(), 2);
        assert!(outer
            .chain()
            .any(|c| c.downcast_ref::<RegistryError>().is_some()));
    }

    #[test]
    fn failures_lead_to_the_bad_input_first() {
        let plain = Failure::from(anyhow::anyhow!("a: refused"));
        let input = Failure::from(
            anyhow::Error::new(registry(ErrorKind::Credentials("not JSON".into()))).context("b"),
        );
        let both = anyhow::Error::new(Failures::new(
            format!("failed: {plain}; {input}"),
            vec![plain.clone(), input],
        ));
        assert!(is_bad_input(&both));
        let registry_error = both
            .chain()
            .find_map(|c| c.downcast_ref::<RegistryError>())
            .unwrap();
        assert!(registry_error.is_bad_input());
        assert_eq!(one_line(&both).to_string(), both.to_string());
        let one = anyhow::Error::new(Failures::new("failed: a", vec![plain]));
        assert!(!is_bad_input(&one));
        assert_eq!(one.downcast_ref::<Failures>().unwrap().failures().len(), 1);
    }
}

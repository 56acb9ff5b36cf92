//! Error conventions.
//!
//! Library functions return [`anyhow::Result`], each step adding its context
//! once ("building layer 2: ..."). Errors caused by the user's input (recipe,
//! arguments, paths) carry a [`BadInput`] somewhere in their chain: the binary
//! maps those to exit code 2 and every other failure to exit code 1.

use std::fmt;

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

/// True when any error in the chain is a [`BadInput`], or a registry error
/// that the user's own configuration caused
/// ([`crate::registry::RegistryError::is_bad_input`]).
pub fn is_bad_input(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.is::<BadInput>()
            || e.downcast_ref::<crate::registry::RegistryError>()
                .is_some_and(crate::registry::RegistryError::is_bad_input)
    })
}

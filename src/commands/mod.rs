//! Command bodies of the binary (`main.rs` only parses and dispatches).

pub mod build;
pub mod login;
pub mod pull;
pub mod push;

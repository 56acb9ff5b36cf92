//! Command bodies of the binary (`main.rs` only parses and dispatches).

pub mod bench;
pub mod build;
pub mod completions;
pub mod copy;
pub mod index;
pub mod login;
pub mod pull;
pub mod push;
pub mod schema;
pub mod tags;
pub mod verify;

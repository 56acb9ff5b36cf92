//! Command bodies of the binary (`main.rs` only parses and dispatches).

pub mod bench;
pub mod build;
pub mod copy;
pub mod login;
pub mod pull;
pub mod push;
pub mod tags;
pub mod verify;

//! boxwright: a daemonless, reproducible container-image builder.
//!
//! Data flows one way: a TOML [`recipe`] is parsed and validated into a
//! [`recipe::Plan`]; [`build`] assembles its layers ([`layer`]) in parallel into
//! an image (or an index for several platforms) described by [`oci`] types,
//! written as an OCI image [`layout`]; [`push`] takes any layout to one or more
//! registries through the [`registry`] client.

pub mod ops;
/// `boxwright bench`, at its former path.
pub use ops::bench;
pub mod build;
pub mod cache;
pub mod copy;
pub mod error;
pub mod github;
pub mod index;
pub mod inspect;
pub mod layer;
pub mod layout;
pub mod oci;
pub mod progress;
pub mod pull;
pub mod push;
pub mod recipe;
pub mod registry;
pub mod verify;

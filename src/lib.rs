//! boxwright: a daemonless, reproducible container-image builder.
//!
//! Data flows one way: a TOML [`recipe`] is parsed and validated into a
//! [`recipe::Plan`]; [`build`] assembles its layers ([`layer`]) in parallel into
//! an image (or an index for several platforms) described by [`oci`] types,
//! written as an OCI image [`layout`]; [`push`] takes any layout to one or more
//! registries through the [`registry`] client.

pub mod bench;
pub mod build;
pub mod cache;
pub mod copy;
pub mod error;
pub mod github;
pub mod index;
pub mod layer;
pub mod layout;
pub mod oci;
pub mod ops;
pub mod progress;
pub mod pull;
pub mod push;
pub mod recipe;
pub mod registry;

/// The former paths of [`ops::verify`], [`ops::tags`] and [`ops::inspect`],
/// kept until every caller names the new ones.
pub mod verify {
    pub use crate::ops::tags::*;
    pub use crate::ops::verify::*;
}
/// See [`verify`](mod@verify).
pub mod inspect {
    pub use crate::ops::inspect::*;
}

//! boxwright: a daemonless, reproducible container-image builder.
//!
//! Data flows one way: a TOML [`recipe`] is parsed and validated into a
//! [`recipe::Plan`]; [`build`] assembles its layers ([`layer`]) in parallel into
//! an image (or an index for several platforms) described by [`oci`] types,
//! written as an OCI image [`image::layout`]. Every image, wherever it is, is an
//! [`image::ImageSource`]: [`push`] takes one to one or more registries
//! through the [`registry`] client, and the [`ops`] (copy, index, pull) move
//! images between registries, layouts and archives.

pub mod build;
pub mod cache;
pub mod error;
pub mod image;
pub mod input;
pub mod layer;
pub mod oci;
pub mod ops;
pub mod progress;
pub mod push;
pub mod python;
pub mod recipe;
pub mod registry;
pub mod render;
pub mod supply;

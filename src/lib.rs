//! boxwright: a daemonless, reproducible container-image builder.
//!
//! Data flows one way: a TOML [`recipe`] is parsed and validated into a
//! [`recipe::Plan`]; [`build`] assembles its layers ([`layer`]) in parallel into
//! an image (or an index for several platforms) described by [`oci`] types,
//! written as an OCI image [`image::layout`]. Every image, wherever it is, is an
//! [`image::ImageSource`]: [`push`] takes one to one or more registries
//! through the [`registry`] client, and the [`ops`] (copy, index, pull) move
//! images between registries, layouts and archives.
//!
//! Building a recipe into a layout and pushing it to two registries, as
//! `boxwright build --push` does (without its streaming of layers):
//!
//! ```no_run
//! use boxwright::build::{build_image, BuildOptions};
//! use boxwright::push::{PushOptions, PushTarget, Pusher};
//! use boxwright::recipe::{self, LoadOptions};
//!
//! # async fn release() -> anyhow::Result<()> {
//! let plan = recipe::load("recipes/r2d.toml".as_ref(), &LoadOptions::default())?;
//! // The build is synchronous: off the async threads.
//! let built = tokio::task::spawn_blocking(move || {
//!     build_image(&plan, &BuildOptions::new("out/r2d"))
//! })
//! .await??;
//! let targets = vec![
//!     PushTarget::parse("ghcr.io/acme/r2d:1.4.0")?,
//!     PushTarget::parse("docker.io/acme/r2d:1.4.0")?,
//! ];
//! let progress = boxwright::progress::silent();
//! let pusher = Pusher::with_env_credentials(targets, PushOptions::default(), progress).await?;
//! let report = pusher.push_image(&built.content).await?;
//! if let Some(e) = report.error() {
//!     return Err(e);
//! }
//! println!("pushed {}", report.digest);
//! # Ok(())
//! # }
//! ```

pub mod blocking;
pub mod build;
pub mod cache;
pub mod cancel;
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

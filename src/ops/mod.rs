//! The image operations behind the commands: each reads an image from a
//! source (a layout, a registry, several registries) and hands it to a
//! sink (the pusher, the layout or archive writers).

pub mod copy;
pub mod index;
pub mod pull;

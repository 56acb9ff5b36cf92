//! The image operations behind the commands: each reads an image from a
//! source (a layout, a registry, several registries) and hands it to a sink
//! (the pusher, the layout or archive writers) or reports on it; `bench`
//! measures registries with generated blobs.

pub mod bench;
pub mod copy;
pub mod index;
pub mod inspect;
pub mod pull;
pub mod tags;
pub mod verify;

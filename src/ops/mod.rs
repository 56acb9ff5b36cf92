//! Operations on images that are already built: each reads an image (from a
//! layout or registries) and reports on it or sends it somewhere.

pub mod inspect;
pub mod tags;
pub mod verify;

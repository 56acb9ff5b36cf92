//! Commands that work on images already built: each reads an image source
//! and writes to a sink.

pub mod bench;

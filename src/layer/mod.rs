//! Layers: one streaming pass per layer, from a plan's entries to a blob in
//! a layout. `tar.rs` writes the entries, `codec.rs` knows each compression,
//! `compress.rs` runs it on parallel blocks.
//!
//! ```text
//! entries -> tar writer -> sha256 (diffID) -> parallel compressor -> sha256 (digest) + count -> temp file -> rename
//!                                                                                        \-> on_compressed (optional)
//! ```
//! Nothing is read twice and no layer is ever held whole in memory: at most a
//! few compression blocks per worker are in flight.

pub mod bounded;
pub mod codec;
pub mod compress;
pub mod tar;

use std::io::{self, BufWriter, Write};
use std::sync::Arc;

use anyhow::{Context, Result};

pub use codec::{decoder, Codec};

use crate::image::layout::LayoutWriter;
use crate::oci::{Descriptor, Digest, Hashing};
use crate::recipe::LayerPlan;

/// A layer written to a layout: its blob descriptor and its diffID.
#[derive(Debug, Clone)]
pub struct BuiltLayer {
    pub descriptor: Descriptor,
    pub diff_id: Digest,
    /// Size of the uncompressed tar.
    pub tar_size: u64,
}

/// Hears of a blob's bytes, in order, as they are written
/// ([`build_layer`]'s `on_compressed`).
pub type OnCompressed<'a> = &'a mut dyn FnMut(&[u8]);

/// A `Write` that also hands every byte written to `copy`, in order.
struct Tee<'a, W> {
    inner: W,
    copy: Option<OnCompressed<'a>>,
}

impl<W: Write> Write for Tee<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(copy) = self.copy.as_mut() {
            copy(&buf[..n]);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Compression settings of a build: a codec and a level in its
/// [`Codec::level_range`]. [`Compression::new`] checks the level, and so
/// does every build ([`Compression::check`]).
#[derive(Clone, Copy, Debug)]
pub struct Compression {
    pub codec: Codec,
    pub level: i32,
}

impl Default for Compression {
    /// gzip at its default level (1).
    fn default() -> Self {
        Compression {
            codec: Codec::Gzip,
            level: Codec::Gzip.default_level(),
        }
    }
}

impl Compression {
    /// `codec` at `level` (its default level when `None`); bad input when
    /// the level is out of the codec's range.
    pub fn new(codec: Codec, level: Option<i32>) -> Result<Compression> {
        let c = Compression {
            codec,
            level: level.unwrap_or(codec.default_level()),
        };
        c.check()?;
        Ok(c)
    }

    /// Bad input unless the level is in the codec's range.
    pub fn check(&self) -> Result<()> {
        let range = self.codec.level_range();
        if range.contains(&self.level) {
            return Ok(());
        }
        Err(crate::error::bad_input(format!(
            "compression level {} is out of range for {} ({}..={})",
            self.level,
            self.codec.name(),
            range.start(),
            range.end()
        )))
    }

    pub fn media_type(&self) -> &'static str {
        self.codec.media_type()
    }
}

/// Build one layer into `layout`. `mtime` is the time written in every tar
/// header; `on_bytes` hears of file content bytes as they are read;
/// `on_compressed`, when given, is handed the blob's bytes, in order, as
/// they come out of the compressor (the blob's digest is known only once
/// this returns).
pub fn build_layer(
    plan: &LayerPlan,
    mtime: u64,
    compression: Compression,
    pool: &Arc<rayon::ThreadPool>,
    layout: &LayoutWriter,
    on_bytes: &mut dyn FnMut(u64),
    on_compressed: Option<OnCompressed<'_>>,
) -> Result<BuiltLayer> {
    let tmp = layout.temp_blob()?;
    let file = tmp.reopen().context("opening the temporary layer file")?;
    let blob = Hashing::new(Tee {
        inner: BufWriter::with_capacity(1 << 20, file),
        copy: on_compressed,
    });
    // An uncompressed layer is its own tar: one hash gives digest and diffID.
    let (mut inner, digest, size, diff_id, tar_size) = match compression.codec {
        Codec::None => {
            let mut w = blob;
            tar::write_archive(plan.entries()?, mtime, &mut w, on_bytes)?;
            let (inner, digest, size) = w.finish();
            (inner, digest.clone(), size, digest, size)
        }
        codec => {
            let compressor =
                compress::ParallelCompressor::new(codec, compression.level, pool.clone(), blob);
            let mut tar_hash = Hashing::new(compressor);
            tar::write_archive(plan.entries()?, mtime, &mut tar_hash, on_bytes)?;
            let (compressor, diff_id, tar_size) = tar_hash.finish();
            let (inner, digest, size) = compressor.finish()?.finish();
            (inner, digest, size, diff_id, tar_size)
        }
    };
    inner.flush()?;
    drop(inner);
    layout.place_blob(tmp, &digest)?;
    Ok(BuiltLayer {
        descriptor: Descriptor::new(compression.media_type(), digest, size),
        diff_id,
        tar_size,
    })
}

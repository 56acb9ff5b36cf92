//! Every compression a layer can have, described in one place: its media
//! type, its default level and level range, its magic bytes, how one block of
//! a layer is compressed (the parallel compressor in `compress.rs` only cuts
//! blocks and keeps them in order), and how a layer is decompressed again.
//!
//! A new compression is one more `Codec` variant and its arm in each match
//! below; the compressor, the build and the readers take it from here.

use std::io::{self, Cursor, Read};
use std::ops::RangeInclusive;

use flate2::{Compress, Compression as Level, FlushCompress, Status};

use crate::oci::{MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_LAYER_TAR, MEDIA_TYPE_LAYER_ZSTD};

/// The compression of a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Gzip,
    Zstd,
    /// An uncompressed tar: its digest is its diffID.
    None,
}

/// The longest magic prefix of any codec.
const MAGIC_LEN: usize = 4;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// A gzip member header with mtime 0 and OS 255 (unknown), so that nothing
/// about the building machine reaches the bytes.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
/// Deflate's window: each gzip block is primed with this much of the previous one.
const DICT: usize = 32 * 1024;

impl Codec {
    pub const ALL: [Codec; 3] = [Codec::Gzip, Codec::Zstd, Codec::None];

    /// The name used on the command line and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Zstd => "zstd",
            Codec::None => "none",
        }
    }

    /// The OCI media type of a layer compressed this way.
    pub fn media_type(self) -> &'static str {
        match self {
            Codec::Gzip => MEDIA_TYPE_LAYER_GZIP,
            Codec::Zstd => MEDIA_TYPE_LAYER_ZSTD,
            Codec::None => MEDIA_TYPE_LAYER_TAR,
        }
    }

    pub fn default_level(self) -> i32 {
        match self {
            // Speed first, as crane and ko do (gzip.BestSpeed).
            Codec::Gzip => 1,
            Codec::Zstd => 3,
            Codec::None => 0,
        }
    }

    pub fn level_range(self) -> RangeInclusive<i32> {
        match self {
            Codec::Gzip => 1..=9,
            Codec::Zstd => 1..=19,
            Codec::None => 0..=0,
        }
    }

    /// The bytes every stream of this codec starts with (none for a tar).
    pub fn magic(self) -> &'static [u8] {
        match self {
            Codec::Gzip => &GZIP_MAGIC,
            Codec::Zstd => &ZSTD_MAGIC,
            Codec::None => &[],
        }
    }

    /// The codec whose magic bytes `prefix` starts with; `None` (a plain
    /// stream) when no codec's do.
    pub fn sniff(prefix: &[u8]) -> Codec {
        Codec::ALL
            .into_iter()
            .find(|c| !c.magic().is_empty() && prefix.starts_with(c.magic()))
            .unwrap_or(Codec::None)
    }

    /// Size of the blocks the parallel compressor cuts the input into. Part
    /// of the output's identity: changing it changes every layer digest.
    pub(crate) fn block_size(self) -> usize {
        match self {
            Codec::Gzip => 256 * 1024,
            Codec::Zstd | Codec::None => 1024 * 1024,
        }
    }

    /// Whether the trailer needs the CRC-32 of the whole input.
    pub(crate) fn needs_crc(self) -> bool {
        self == Codec::Gzip
    }

    /// Written before the first block.
    pub(crate) fn header(self) -> &'static [u8] {
        match self {
            Codec::Gzip => &GZIP_HEADER,
            Codec::Zstd | Codec::None => &[],
        }
    }

    /// One block compressed on its own, given the block before it (`prev`)
    /// and whether it is the last; the results concatenate into one stream.
    ///
    /// - gzip: a raw deflate stream primed with the last 32 KiB of `prev` as
    ///   dictionary, ended with a sync flush (the last block with a final
    ///   block), so the pieces form one deflate stream.
    /// - zstd: one frame; concatenated frames are one valid zstd stream.
    pub(crate) fn compress_block(
        self,
        block: &[u8],
        prev: Option<&[u8]>,
        level: i32,
        last: bool,
    ) -> io::Result<Vec<u8>> {
        match self {
            Codec::Gzip => deflate_block(
                block,
                prev.map(|p| &p[p.len().saturating_sub(DICT)..]),
                level,
                last,
            ),
            Codec::Zstd => zstd::bulk::compress(block, level),
            Codec::None => Ok(block.to_vec()),
        }
    }

    /// Written after the last block, given the CRC-32 (when
    /// [`Codec::needs_crc`]) and length of the whole input.
    pub(crate) fn trailer(self, crc: u32, len: u64) -> Vec<u8> {
        match self {
            Codec::Gzip => {
                let mut t = crc.to_le_bytes().to_vec();
                // ISIZE is the input length modulo 2^32.
                t.extend_from_slice(&(len as u32).to_le_bytes());
                t
            }
            Codec::Zstd | Codec::None => Vec::new(),
        }
    }

    /// A reader of what `compressed` decompresses to.
    fn decode<'a>(self, compressed: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            // Several members, as `cat a.gz b.gz` makes, are one stream.
            Codec::Gzip => Box::new(flate2::read::MultiGzDecoder::new(compressed)),
            Codec::Zstd => Box::new(zstd::stream::read::Decoder::new(compressed)?),
            Codec::None => Box::new(compressed),
        })
    }
}

/// A reader of the tar inside a layer blob, whatever its compression: the
/// codec is recognised by its magic bytes, and a blob that matches none is
/// read as it is.
pub fn decoder<'a>(mut blob: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut prefix = [0u8; MAGIC_LEN];
    let mut n = 0;
    while n < MAGIC_LEN {
        match blob.read(&mut prefix[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let prefix = prefix[..n].to_vec();
    Codec::sniff(&prefix).decode(Cursor::new(prefix).chain(blob))
}

/// Raw deflate of one block, primed with `dict`; ends byte-aligned with a sync
/// flush, or with the final block when `last`.
fn deflate_block(input: &[u8], dict: Option<&[u8]>, level: i32, last: bool) -> io::Result<Vec<u8>> {
    let mut c = Compress::new(Level::new(level as u32), false);
    if let Some(d) = dict {
        c.set_dictionary(d).map_err(io::Error::other)?;
    }
    let mut out = Vec::with_capacity(input.len() / 2 + 1024);
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    loop {
        let consumed = c.total_in() as usize;
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(64 * 1024));
        }
        let status = c
            .compress_vec(&input[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let done = c.total_in() as usize == input.len();
        match status {
            Status::StreamEnd => break,
            Status::Ok | Status::BufError if done && !last && out.capacity() > out.len() => break,
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::compress::ParallelCompressor;
    use std::io::Write;
    use std::sync::Arc;

    fn sample(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| b"layer bytes, some of them repeated "[i % 35] ^ (i / 1000) as u8)
            .collect()
    }

    /// What a build writes for `input`.
    fn encode(codec: Codec, level: i32, input: &[u8]) -> Vec<u8> {
        if codec == Codec::None {
            return input.to_vec();
        }
        let pool = Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .unwrap(),
        );
        let mut c = ParallelCompressor::new(codec, level, pool, Vec::new());
        c.write_all(input).unwrap();
        c.finish().unwrap()
    }

    fn decode_all(blob: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        decoder(blob).unwrap().read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn every_codec_round_trips_at_every_end_of_its_level_range() {
        let input = sample(1_500_000);
        for codec in Codec::ALL {
            let levels = codec.level_range();
            for level in [*levels.start(), codec.default_level(), *levels.end()] {
                let blob = encode(codec, level, &input);
                assert!(blob.starts_with(codec.magic()), "{codec:?} -{level}");
                assert_eq!(Codec::sniff(&blob), codec, "{codec:?} -{level}");
                assert_eq!(decode_all(&blob), input, "{codec:?} -{level}");
            }
        }
    }

    #[test]
    fn empty_inputs_round_trip() {
        for codec in Codec::ALL {
            let blob = encode(codec, codec.default_level(), b"");
            assert_eq!(decode_all(&blob), b"", "{codec:?}");
        }
    }

    #[test]
    fn magic_bytes_pick_the_codec_and_anything_else_is_plain() {
        assert_eq!(Codec::sniff(&[0x1f, 0x8b, 8, 0]), Codec::Gzip);
        assert_eq!(Codec::sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Codec::Zstd);
        assert_eq!(Codec::sniff(&[0x28, 0xb5, 0x2f]), Codec::None);
        assert_eq!(Codec::sniff(&[0x1f]), Codec::None);
        assert_eq!(Codec::sniff(b"etc/passwd\0"), Codec::None);
        assert_eq!(Codec::sniff(b""), Codec::None);
        // Short plain blobs come back whole.
        assert_eq!(decode_all(b"ab"), b"ab");
        assert_eq!(decode_all(b"plain tar bytes"), b"plain tar bytes");
    }

    #[test]
    fn gzip_members_concatenate() {
        let mut blob = encode(Codec::Gzip, 1, b"first ");
        blob.extend(encode(Codec::Gzip, 9, b"second"));
        assert_eq!(decode_all(&blob), b"first second");
    }

    #[test]
    fn a_reader_that_returns_one_byte_at_a_time_is_sniffed() {
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(buf.len()).min(1);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let input = sample(10_000);
        let blob = encode(Codec::Zstd, 3, &input);
        let mut out = Vec::new();
        decoder(Trickle(&blob))
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, input);
    }

    #[test]
    fn levels_and_media_types() {
        for codec in Codec::ALL {
            assert!(codec.level_range().contains(&codec.default_level()));
        }
        assert_eq!(Codec::Gzip.default_level(), 1);
        assert_eq!(Codec::Zstd.default_level(), 3);
        assert_eq!(Codec::Zstd.level_range(), 1..=19);
        assert_eq!(
            Codec::Gzip.media_type(),
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        assert_eq!(
            Codec::Zstd.media_type(),
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
        assert_eq!(
            Codec::None.media_type(),
            "application/vnd.oci.image.layer.v1.tar"
        );
    }
}

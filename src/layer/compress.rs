//! Parallel, deterministic compression (pigz style).
//!
//! The uncompressed stream is cut into blocks of a fixed size, counted from the
//! start of the stream, whatever the sizes of the writes that fill them. Each
//! block is compressed on its own by a worker of a rayon pool, and the results
//! are written in order:
//!
//! How a block is compressed, and what goes before the first and after the
//! last, is the codec's business (`codec.rs`): for gzip, deflate blocks primed
//! with the previous block's last 32 KiB that join into one member; for zstd,
//! one frame per block.
//!
//! Since block boundaries and each block's input never depend on thread count
//! or write sizes, neither does the output.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver};

use super::codec::Codec;

type Job = Receiver<io::Result<Vec<u8>>>;

/// A `Write` that compresses in parallel blocks into `out`.
pub struct ParallelCompressor<W: Write> {
    codec: Codec,
    level: i32,
    pool: Arc<rayon::ThreadPool>,
    out: W,
    block: Vec<u8>,
    prev: Option<Arc<Vec<u8>>>,
    pending: VecDeque<Job>,
    max_pending: usize,
    crc: crc32fast::Hasher,
    len: u64,
    started: bool,
}

impl<W: Write> ParallelCompressor<W> {
    pub fn new(codec: Codec, level: i32, pool: Arc<rayon::ThreadPool>, out: W) -> Self {
        // Enough blocks in flight to keep every worker busy, bounded so that
        // memory stays flat on machines with many cores.
        let max_pending = (pool.current_num_threads() * 2 + 1).min(32);
        ParallelCompressor {
            codec,
            level,
            pool,
            out,
            block: Vec::with_capacity(codec.block_size()),
            prev: None,
            pending: VecDeque::new(),
            max_pending,
            crc: crc32fast::Hasher::new(),
            len: 0,
            started: false,
        }
    }

    fn submit(&mut self, last: bool) -> io::Result<()> {
        if !self.started {
            self.started = true;
            self.out.write_all(self.codec.header())?;
        }
        let size = self.codec.block_size();
        let block = Arc::new(std::mem::replace(&mut self.block, Vec::with_capacity(size)));
        let prev = self.prev.replace(block.clone());
        let (tx, rx) = bounded(1);
        let (codec, level) = (self.codec, self.level);
        self.pool.spawn(move || {
            let _ =
                tx.send(codec.compress_block(&block, prev.as_deref().map(|p| &p[..]), level, last));
        });
        self.pending.push_back(rx);
        while self.pending.len() >= self.max_pending {
            self.drain_one()?;
        }
        Ok(())
    }

    fn drain_one(&mut self) -> io::Result<()> {
        if let Some(rx) = self.pending.pop_front() {
            let data = rx
                .recv()
                .map_err(|_| io::Error::other("a compression worker stopped"))??;
            self.out.write_all(&data)?;
        }
        Ok(())
    }

    /// Flush the last block, write the trailer and return the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.submit(true)?;
        while !self.pending.is_empty() {
            self.drain_one()?;
        }
        let crc = std::mem::take(&mut self.crc).finalize();
        self.out.write_all(&self.codec.trailer(crc, self.len))?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for ParallelCompressor<W> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let n = data.len();
        if self.codec.needs_crc() {
            self.crc.update(data);
        }
        self.len += n as u64;
        let size = self.codec.block_size();
        while !data.is_empty() {
            let take = (size - self.block.len()).min(data.len());
            self.block.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.block.len() == size {
                self.submit(false)?;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn pool(n: usize) -> Arc<rayon::ThreadPool> {
        Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap(),
        )
    }

    fn data(len: usize) -> Vec<u8> {
        // Compressible but not trivial.
        let mut x: u32 = 12345;
        (0..len)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                if i % 7 == 0 {
                    (x >> 24) as u8
                } else {
                    b"the quick brown fox "[i % 20]
                }
            })
            .collect()
    }

    fn compress(codec: Codec, input: &[u8], threads: usize, write_size: usize) -> Vec<u8> {
        let mut c =
            ParallelCompressor::new(codec, codec.default_level(), pool(threads), Vec::new());
        for chunk in input.chunks(write_size) {
            c.write_all(chunk).unwrap();
        }
        c.finish().unwrap()
    }

    #[test]
    fn gzip_output_is_independent_of_threads_and_write_sizes_and_decodes() {
        let input = data(1_000_000);
        let a = compress(Codec::Gzip, &input, 1, 1000);
        let b = compress(Codec::Gzip, &input, 3, 65536);
        let c = compress(Codec::Gzip, &input, 2, 7);
        assert_eq!(a, b);
        assert_eq!(a, c);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&a[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, input);
        assert!(
            a.len() < input.len() / 2,
            "compressed {} of {}",
            a.len(),
            input.len()
        );
    }

    #[test]
    fn gzip_handles_empty_and_exact_block_inputs() {
        for len in [0, 256 * 1024, 512 * 1024 + 1] {
            let input = data(len);
            let out = compress(Codec::Gzip, &input, 2, 4096);
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&out[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, input, "len {len}");
        }
    }

    #[test]
    fn zstd_frames_concatenate_deterministically() {
        let input = data(3_000_000);
        let a = compress(Codec::Zstd, &input, 1, 5000);
        let b = compress(Codec::Zstd, &input, 2, 1 << 20);
        assert_eq!(a, b);
        let back = zstd::stream::decode_all(&a[..]).unwrap();
        assert_eq!(back, input);
    }
}

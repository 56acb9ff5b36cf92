//! Compression and hashing throughput on a generated buffer:
//! sha256 MB/s, and `ParallelCompressor` (gzip, zstd) MB/s of input and
//! ratio at several levels and thread counts.
//!
//! `cargo bench --bench throughput` (benches/run runs it). Environment:
//! `THROUGHPUT_MB` (buffer size, default 32), `THROUGHPUT_RUNS` (best of N,
//! default 2), `THROUGHPUT_THREADS` (comma-separated, default 1,2,...,cores
//! in powers of two plus the core count), `THROUGHPUT_JSON=1` (one JSON line
//! per figure instead of the table). MB = 10^6 bytes.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use boxwright::layer::compress::ParallelCompressor;
use boxwright::layer::Codec;
use sha2::{Digest, Sha256};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

/// Roughly what layers hold: words and numbers (compressible text, like
/// sources and metadata) interleaved with runs of random bytes (like
/// already-compressed or binary files), about a quarter of the bytes.
fn corpus(len: usize) -> Vec<u8> {
    const WORDS: [&str; 24] = [
        "import", "def", "return", "self", "class", "None", "from", "the", "value", "error",
        "config", "layer", "digest", "sha256", "if", "else", "for", "in", "true", "false", "{",
        "}", "\n", "    ",
    ];
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let r = next();
        if r % 64 == 0 {
            for _ in 0..(r >> 8) % 32 {
                out.extend_from_slice(&next().to_le_bytes());
            }
        } else {
            out.extend_from_slice(WORDS[(r >> 8) as usize % WORDS.len()].as_bytes());
            out.push(b' ');
            if r % 5 == 0 {
                out.extend_from_slice((r >> 20).to_string().as_bytes());
            }
        }
    }
    out.truncate(len);
    out
}

/// A writer that only counts.
struct Count(u64);

impl Write for Count {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Best (shortest) time of `runs` runs of `f`, in seconds, with `f`'s last result.
fn best<T>(runs: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::INFINITY;
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let r = f();
        best = best.min(t.elapsed().as_secs_f64());
        last = Some(r);
    }
    (best, last.expect("at least one run"))
}

fn main() {
    let mb = env_usize("THROUGHPUT_MB", 32);
    let runs = env_usize("THROUGHPUT_RUNS", 2);
    let json = std::env::var("THROUGHPUT_JSON").is_ok_and(|v| v == "1");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads: Vec<usize> = match std::env::var("THROUGHPUT_THREADS") {
        Ok(v) => v
            .split(',')
            .filter_map(|t| t.trim().parse().ok())
            .filter(|&n| n > 0)
            .collect(),
        Err(_) => {
            let mut t: Vec<usize> = (0..)
                .map(|i| 1usize << i)
                .take_while(|&n| n < cores)
                .collect();
            t.push(cores);
            t
        }
    };
    let data = corpus(mb * 1_000_000);
    let len = data.len() as f64;
    let mbps = |secs: f64| len / 1e6 / secs;
    let emit = |what: &str, threads: usize, secs: f64, ratio: Option<f64>| {
        if json {
            println!(
                "{{\"bench\":\"{what}\",\"threads\":{threads},\"mb\":{mb},\"secs\":{secs:.4},\"mb_per_s\":{:.1}{}}}",
                mbps(secs),
                ratio.map(|r| format!(",\"ratio\":{r:.3}")).unwrap_or_default()
            );
        } else {
            println!(
                "{what:<14} {threads:>7} {:>9.1} {:>8}",
                mbps(secs),
                ratio
                    .map(|r| format!("{:.1}%", r * 100.0))
                    .unwrap_or_else(|| "-".into())
            );
        }
    };
    if !json {
        println!(
            "throughput on {mb} MB of generated layer-like data, best of {runs}, {cores} core(s); MB = 10^6 bytes"
        );
        println!(
            "{:<14} {:>7} {:>9} {:>8}",
            "WHAT", "THREADS", "MB/s", "OUT/IN"
        );
    }

    let (secs, _) = best(runs, || Sha256::digest(&data));
    emit("sha256", 1, secs, None);

    for (codec, levels) in [(Codec::Gzip, &[1, 6, 9][..]), (Codec::Zstd, &[1, 3, 9][..])] {
        for &level in levels {
            for &t in &threads {
                let pool = Arc::new(
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(t)
                        .build()
                        .expect("building a rayon pool"),
                );
                let (secs, out) = best(runs, || {
                    let mut c = ParallelCompressor::new(codec, level, pool.clone(), Count(0));
                    // Layer-sized writes, as the tar writer makes them.
                    for piece in data.chunks(64 * 1024) {
                        c.write_all(piece).expect("compressing");
                    }
                    c.finish().expect("finishing").0
                });
                emit(
                    &format!("{} -{level}", codec.name()),
                    t,
                    secs,
                    Some(out as f64 / len),
                );
            }
        }
    }
}

//! The bundle's one pass: read the tar stream (hashing it), compress chunks on every core,
//! and hand the gzip member to a sink in order.
//!
//! Three kinds of thread: one reader fills fixed-size chunks from the stream and SHA-1s
//! them; `threads` workers deflate chunks with their own libdeflate compressor; the
//! calling thread reorders results by index, combines the CRCs, and feeds the sink
//! (encryption and part files). Input buffers circulate through a free list of
//! [`IN_FLIGHT_PER_THREAD`]·threads + 2 buffers, which bounds everything in flight: the
//! reader can only run that many chunks ahead of the sink. The chunk boundaries depend only
//! on [`CHUNK_BYTES`], so the output is the same for any thread count or scheduling.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread;

use sha1::{Digest, Sha1};

use super::gzip::{ChunkCompressor, Compressed, crc32_combine, header, trailer};
use super::{Ec2Error, passthrough};
use crate::container::manifest::hex;
use crate::error::{Error, ErrorKind, Result};

/// Bytes of tar stream per compressed chunk. Larger chunks lose less ratio to the fresh
/// 32 KiB window each one starts with (2 MiB: ~0.1%) but hold more memory per thread.
pub const CHUNK_BYTES: usize = 2 << 20;
/// Input buffers per worker thread (plus two) that may be in flight at once.
const IN_FLIGHT_PER_THREAD: usize = 2;

/// One chunk of the tar stream on its way to a worker.
struct Job {
    index: u64,
    data: Vec<u8>,
    last: bool,
}

/// A worker's result: the compressed chunk and the input buffer to recycle.
struct Done {
    index: u64,
    last: bool,
    chunk: std::result::Result<Compressed, super::deflate::DeflateError>,
    buffer: Vec<u8>,
}

/// What the pass learned about the stream.
#[derive(Debug)]
pub struct PassSummary {
    /// SHA-1 of the tar stream, hex.
    pub tar_sha1: String,
    /// Length of the tar stream.
    pub tar_len: u64,
}

/// Compresses `total` bytes from `source` into one gzip member at `level` on `threads`
/// workers, giving the member to `sink` in order.
///
/// # Errors
/// Reading the source (short, or an I/O error) or the sink failed.
pub fn compress_stream(
    source: &mut (dyn Read + Send),
    total: u64,
    level: i32,
    threads: usize,
    sink: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<PassSummary> {
    let threads = threads.max(1);
    let buffers = IN_FLIGHT_PER_THREAD * threads + 2;
    let (free_tx, free_rx) = sync_channel::<Vec<u8>>(buffers);
    for _ in 0..buffers {
        let _ = free_tx.send(Vec::with_capacity(CHUNK_BYTES));
    }
    let (job_tx, job_rx) = sync_channel::<Job>(threads);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (done_tx, done_rx) = sync_channel::<Done>(threads);
    thread::scope(|scope| {
        let reader = scope.spawn(move || read_chunks(source, total, &free_rx, &job_tx));
        for _ in 0..threads {
            let (rx, tx) = (Arc::clone(&job_rx), done_tx.clone());
            scope.spawn(move || compress_jobs(level, &rx, &tx));
        }
        drop(done_tx);
        let written = write_in_order(level, &done_rx, &free_tx, sink);
        // Unblock the reader if the writer stopped early.
        drop(done_rx);
        drop(free_tx);
        let read = reader
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        let summary = read?;
        let chunks = written?;
        if chunks != total.div_ceil(CHUNK_BYTES as u64).max(1) {
            return Err(Error::new(ErrorKind::Io, Ec2Error::PassEndedEarly));
        }
        Ok(summary)
    })
}

/// The reader: fills chunks from `source`, hashes them, sends them in order.
fn read_chunks(
    source: &mut (dyn Read + Send),
    total: u64,
    free: &Receiver<Vec<u8>>,
    jobs: &SyncSender<Job>,
) -> Result<PassSummary> {
    let mut sha = Sha1::new();
    let mut read = 0u64;
    let mut index = 0u64;
    // A closed free list means the writer stopped; its error is the one reported.
    while let Ok(mut data) = free.recv() {
        let want = usize::try_from(total - read).map_or(CHUNK_BYTES, |n| n.min(CHUNK_BYTES));
        data.resize(want, 0);
        source
            .read_exact(&mut data)
            .map_err(|e| match passthrough(e) {
                Ok(ec2) => Error::new(ErrorKind::InvalidInput, ec2),
                Err(e) => Error::io(e),
            })?;
        sha.update(&data);
        read += want as u64;
        let last = read == total;
        if jobs.send(Job { index, data, last }).is_err() || last {
            break;
        }
        index += 1;
    }
    Ok(PassSummary {
        tar_sha1: hex(&sha.finalize()),
        tar_len: read,
    })
}

/// A worker: compresses jobs until the reader is done.
fn compress_jobs(level: i32, jobs: &Mutex<Receiver<Job>>, done: &SyncSender<Done>) {
    let mut compressor = ChunkCompressor::new(level);
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let chunk = compressor.compress(&job.data, job.last, Vec::new());
        let result = Done {
            index: job.index,
            last: job.last,
            chunk,
            buffer: job.data,
        };
        if done.send(result).is_err() {
            return;
        }
    }
}

/// The writer: emits the gzip header, the chunks in index order and the trailer; returns
/// how many chunks it wrote. An input buffer goes back to the reader only when its chunk
/// has been written, so at most the free list's worth of chunks wait here.
fn write_in_order(
    level: i32,
    done: &Receiver<Done>,
    free: &SyncSender<Vec<u8>>,
    sink: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<u64> {
    sink(&header(level))?;
    let mut waiting: BTreeMap<u64, Done> = BTreeMap::new();
    let (mut next, mut crc, mut len) = (0u64, 0u32, 0u64);
    let mut finished = false;
    for result in done {
        waiting.insert(result.index, result);
        while let Some(ready) = waiting.remove(&next) {
            let chunk = ready
                .chunk
                .map_err(|e| Error::new(ErrorKind::Io, Ec2Error::Compress(e)))?;
            sink(&chunk.bytes)?;
            crc = crc32_combine(crc, chunk.crc, chunk.len);
            len += chunk.len;
            next += 1;
            finished = ready.last;
            let _ = free.send(ready.buffer);
        }
    }
    if finished {
        sink(&trailer(crc, len))?;
    }
    // Without the last chunk the reader failed; the caller reports its error.
    Ok(next)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn input() -> Vec<u8> {
        let mut x = 7u32;
        (0..5 * CHUNK_BYTES + 12_345)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                if i % 3 == 0 {
                    x.to_le_bytes()[3]
                } else {
                    b"bundle"[i % 6]
                }
            })
            .collect()
    }

    fn member(data: &[u8], threads: usize) -> (Vec<u8>, PassSummary) {
        let mut out = Vec::new();
        let mut source = data;
        let summary = compress_stream(&mut source, data.len() as u64, 6, threads, &mut |b| {
            out.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
        (out, summary)
    }

    #[test]
    fn member_decodes_with_flate2_to_the_input() {
        let data = input();
        let (gz, summary) = member(&data, 3);
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded, data);
        assert_eq!(summary.tar_len, data.len() as u64);
    }

    #[test]
    fn output_does_not_depend_on_the_thread_count() {
        let data = input();
        assert_eq!(member(&data, 1).0, member(&data, 4).0);
    }

    #[test]
    fn short_source_is_an_error() {
        let data = input();
        let mut source = &data[..1000];
        let result = compress_stream(&mut source, data.len() as u64, 6, 2, &mut |_| Ok(()));
        assert!(result.is_err());
    }
}

//! Hashing a raw artefact's bytes beside the pass that writes it, with progress.
//!
//! SHA256SUMS covers every byte of a raw artefact, its zero runs included, so a large raw
//! disk costs one SHA-256 pass over its whole virtual size (see the README). For disks of at
//! least [`PROGRESS_MIN_BYTES`] the build reports the hashing as a task; the hashing stops as
//! soon as the conversion fails, so an error is reported without waiting for the hash.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Sender, channel};

use sha2::{Digest, Sha256};

use super::progress::{Observer, TaskId};
use crate::container::manifest::{hash_extent, hex};
use crate::disk::{DiskReader, Extent};
use crate::error::{Error, ErrorKind, Result};

/// Disks smaller than this hash in a second or two; no progress lines for them.
const PROGRESS_MIN_BYTES: u64 = 1 << 30;
/// How often the hashing thread reports (bytes hashed between reports).
const TICK_BYTES: u64 = 256 << 20;

/// Runs `convert` on this thread while `hash` digests the disk on another (when given);
/// reports the hashing as task [`TaskId::Hash`] of disk `(index, name)` (disks of at least
/// [`PROGRESS_MIN_BYTES`]); stops the hashing when `convert` fails.
pub(super) fn convert_and_hash<H>(
    convert: impl FnOnce(&mut dyn Observer) -> Result<()>,
    hash: Option<H>,
    (index, name): (usize, &str),
    total: u64,
    obs: &mut dyn Observer,
) -> (Result<()>, Option<Result<String>>)
where
    H: FnOnce(&Ticks) -> Result<String> + Send,
{
    let stop = AtomicBool::new(false);
    let (tx, rx) = channel();
    std::thread::scope(|scope| {
        let ticks = Ticks {
            tx,
            stop: &stop,
            last: Cell::new(0),
        };
        let handle = hash.map(|h| scope.spawn(move || h(&ticks)));
        let converted = convert(obs);
        if converted.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        if handle.is_some() && converted.is_ok() && total >= PROGRESS_MIN_BYTES {
            let task = TaskId::Hash(index);
            obs.start(task, &format!("hashing disk {name} for SHA256SUMS"), total);
            // Ends when the hashing thread drops its sender.
            for done in &rx {
                obs.advance(task, done);
            }
            obs.finish(task);
        }
        let digest = handle.map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        (converted, digest)
    })
}

/// The hashing thread's side: progress reports out, a stop request in.
pub(super) struct Ticks<'a> {
    tx: Sender<u64>,
    stop: &'a AtomicBool,
    /// The last tick reported (`done / TICK_BYTES`).
    last: Cell<u64>,
}

/// SHA-256 of every byte `reader` yields; holes hash as the zeros they read as.
///
/// # Errors
/// The reader's errors; a stop requested through `ticks` (the pass failed).
pub(super) fn digest(reader: &mut dyn DiskReader, ticks: &Ticks<'_>) -> Result<String> {
    let mut hasher = Sha256::new();
    let mut done = 0u64;
    while let Some(extent) = reader.next_extent()? {
        match extent {
            Extent::Data(_) => {
                done += extent.len();
                hash_extent(&mut hasher, extent);
                ticks.tick(done)?;
            }
            // A run of zeros can be the whole disk: hash it a tick at a time.
            Extent::Zero(mut len) | Extent::Unallocated(mut len) => {
                while len > 0 {
                    let piece = len.min(TICK_BYTES - done % TICK_BYTES);
                    hash_extent(&mut hasher, Extent::Zero(piece));
                    (done, len) = (done + piece, len - piece);
                    ticks.tick(done)?;
                }
            }
        }
    }
    Ok(hex(&hasher.finalize()))
}

impl Ticks<'_> {
    /// Reports `done` bytes hashed when a tick is complete; fails once a stop was asked.
    fn tick(&self, done: u64) -> Result<()> {
        if done / TICK_BYTES == self.last.get() {
            return Ok(());
        }
        self.last.set(done / TICK_BYTES);
        // The receiver is gone only once the pass is over; nothing to report to then.
        let _ = self.tx.send(done);
        if self.stop.load(Ordering::Relaxed) {
            let message = "hashing stopped: the build failed";
            return Err(Error::new(ErrorKind::Io, message));
        }
        Ok(())
    }
}

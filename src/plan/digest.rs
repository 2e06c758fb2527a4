//! Hashing a raw artefact's bytes beside the pass that writes it, with progress.
//!
//! SHA256SUMS covers every byte of a raw artefact, its zero runs included, so a large raw
//! disk costs one SHA-256 pass over its whole virtual size (see the README). For disks of at
//! least [`PROGRESS_MIN_BYTES`] the build logs each tenth hashed; the hashing stops as soon
//! as the conversion fails, so an error is reported without waiting for the hash.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};

use sha2::{Digest, Sha256};

use crate::container::manifest::{hash_extent, hex};
use crate::disk::{DiskReader, Extent};
use crate::error::{Error, ErrorKind, Result};
use crate::size::HumanSize;

/// Disks smaller than this hash in a second or two; no progress lines for them.
const PROGRESS_MIN_BYTES: u64 = 1 << 30;
/// How often the hashing thread reports (bytes hashed between reports).
const TICK_BYTES: u64 = 256 << 20;

/// Runs `convert` on this thread while `hash` digests the disk on another (when given).
/// Logs the hashing's progress as `disk NAME`; stops the hashing when `convert` fails.
pub(super) fn convert_and_hash<H>(
    convert: impl FnOnce() -> Result<()>,
    hash: Option<H>,
    name: &str,
    total: u64,
    log: &mut dyn FnMut(&str),
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
        let converted = convert();
        if converted.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        if handle.is_some() && converted.is_ok() {
            show_progress(&rx, name, total, log);
        }
        let digest = handle.map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        (converted, digest)
    })
}

/// Logs each tenth of `total` the hashing thread reports, until it is done.
fn show_progress(rx: &Receiver<u64>, name: &str, total: u64, log: &mut dyn FnMut(&str)) {
    if total < PROGRESS_MIN_BYTES {
        return;
    }
    let mut shown = 0u128;
    // Ends when the hashing thread drops its sender.
    for done in rx {
        let tenth = u128::from(done) * 10 / u128::from(total);
        if tenth > shown {
            shown = tenth;
            log(&format!(
                "hashing disk {name} for SHA256SUMS: {} of {} ({}%)",
                HumanSize(done),
                HumanSize(total),
                tenth * 10
            ));
        }
    }
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

//! Compressed grains read ahead in disk order and inflated together on the rayon pool.
//!
//! The extent reads the markers and compressed bytes of the next allocated grains of one
//! grain table serially, in disk order (so the reads stay sequential for sources that hash
//! what they read), then [`GrainQueue::inflate`] inflates the whole batch in parallel, each
//! grain into a slot of its own, and the grains are handed out in order. Inflation is a pure
//! function of each grain's bytes, so the output does not depend on the thread count.
//! RAM: [`GRAIN_BATCH_BYTES`] of inflated grains and about as much compressed data.

use std::ops::Range;

use libdeflater::{DecompressionError, Decompressor};
use rayon::prelude::*;

/// Inflated bytes one batch holds: 64 grains of the usual 64 KiB, at least one grain.
pub(super) const GRAIN_BATCH_BYTES: usize = 4 << 20;

/// One queued grain: its marker's file offset, its compressed bytes in the queue's
/// buffer and the bytes of disk it supplies.
struct Queued {
    grain: u64,
    marker: u64,
    data: Range<usize>,
    want: usize,
}

/// Up to [`GRAIN_BATCH_BYTES`] of grains, filled in disk order and handed out in it.
pub(super) struct GrainQueue {
    grain_bytes: usize,
    cap: usize,
    compressed: Vec<u8>,
    queued: Vec<Queued>,
    inflated: Vec<u8>,
    /// Per queued grain: `Ok` or why it did not inflate.
    results: Vec<Result<(), String>>,
    next: usize,
}

impl GrainQueue {
    pub fn new(grain_bytes: usize) -> Self {
        Self {
            grain_bytes,
            cap: (GRAIN_BATCH_BYTES / grain_bytes).max(1),
            compressed: Vec::new(),
            queued: Vec::new(),
            inflated: Vec::new(),
            results: Vec::new(),
            next: 0,
        }
    }

    /// Whether the next grain handed out is `grain`.
    pub fn has(&self, grain: u64) -> bool {
        self.queued.get(self.next).is_some_and(|q| q.grain == grain)
    }

    /// Empties the queue for a new batch.
    pub fn clear(&mut self) {
        self.compressed.clear();
        self.queued.clear();
        self.results.clear();
        self.next = 0;
    }

    pub fn is_full(&self) -> bool {
        self.queued.len() >= self.cap
    }

    /// Queues `grain` (marker at file offset `marker`, `want` bytes of disk) and returns
    /// the `len` bytes its compressed data must be read into.
    pub fn push(&mut self, grain: u64, marker: u64, len: usize, want: usize) -> &mut [u8] {
        let start = self.compressed.len();
        self.compressed.resize(start + len, 0);
        self.queued.push(Queued {
            grain,
            marker,
            data: start..start + len,
            want,
        });
        &mut self.compressed[start..]
    }

    /// Drops the grain queued last (its compressed bytes could not be read).
    pub fn pop_last(&mut self) {
        if let Some(q) = self.queued.pop() {
            self.compressed.truncate(q.data.start);
        }
    }

    /// Inflates every queued grain, in parallel.
    pub fn inflate(&mut self) {
        let g = self.grain_bytes;
        self.inflated.resize(self.queued.len() * g, 0);
        let compressed = &self.compressed;
        self.inflated[..self.queued.len() * g]
            .par_chunks_mut(g)
            .zip(self.queued.par_iter())
            .map_init(Decompressor::new, |d, (out, q)| {
                inflate_grain(d, &compressed[q.data.clone()], out, q.want)
            })
            .collect_into_vec(&mut self.results);
    }

    /// The next grain's bytes, or its marker's offset and why it did not inflate; the
    /// caller checks [`GrainQueue::has`] first.
    pub fn take(&mut self) -> Result<&[u8], (u64, String)> {
        let i = self.next;
        self.next += 1;
        let q = &self.queued[i];
        match &self.results[i] {
            Ok(()) => Ok(&self.inflated[i * self.grain_bytes..][..q.want]),
            Err(reason) => Err((q.marker, reason.clone())),
        }
    }
}

/// Inflates the zlib stream `data` into `out` (one grain long); on success `out` starts
/// with `want` bytes of the grain. The whole stream must fit in `out` and inflate to all of
/// `out`, or to exactly `want` bytes: the disk's last grain, which writers such as qemu-img
/// store short when the capacity is not a whole number of grains. Otherwise, the reason.
pub(super) fn inflate_grain(
    inflater: &mut Decompressor,
    data: &[u8],
    out: &mut [u8],
    want: usize,
) -> Result<(), String> {
    let grain = out.len();
    match inflater.zlib_decompress(data, out) {
        Ok(n) if n == grain || n == want => Ok(()),
        Ok(n) if want < grain => Err(format!(
            "inflates to {n} bytes, neither one grain of {grain} nor the {want} left of the disk"
        )),
        Ok(n) => Err(format!("inflates to {n} bytes, not one grain of {grain}")),
        Err(DecompressionError::InsufficientSpace) => {
            Err(format!("inflates to more than one grain of {grain} bytes"))
        }
        Err(DecompressionError::BadData) => {
            Err("not a valid zlib stream (bad header, data or Adler-32)".to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// `data` as a zlib stream, by flate2 (an encoder independent of the inflater).
    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i / 7).to_le_bytes()[0] ^ seed).collect()
    }

    fn inflate(data: &[u8], grain: usize, want: usize) -> Result<Vec<u8>, String> {
        let mut out = vec![0xee; grain];
        inflate_grain(&mut Decompressor::new(), data, &mut out, want)?;
        out.truncate(want);
        Ok(out)
    }

    #[test]
    fn whole_grain_inflates() {
        let g = pattern(4096, 1);
        assert_eq!(inflate(&zlib(&g), 4096, 4096).unwrap(), g);
    }

    #[test]
    fn short_last_grain_inflates_to_what_is_left() {
        let tail = pattern(1000, 2);
        assert_eq!(inflate(&zlib(&tail), 4096, 1000).unwrap(), tail);
        // A last grain padded to a whole grain is read too.
        let whole = pattern(4096, 3);
        assert_eq!(inflate(&zlib(&whole), 4096, 1000).unwrap(), whole[..1000]);
    }

    #[test]
    fn wrong_lengths_are_refused_with_the_sizes() {
        let e = inflate(&zlib(&pattern(1000, 4)), 4096, 4096).unwrap_err();
        assert_eq!(e, "inflates to 1000 bytes, not one grain of 4096");
        let e = inflate(&zlib(&pattern(999, 4)), 4096, 1000).unwrap_err();
        assert!(
            e.contains("999 bytes, neither one grain of 4096 nor the 1000"),
            "{e}"
        );
        let e = inflate(&zlib(&pattern(4097, 5)), 4096, 4096).unwrap_err();
        assert_eq!(e, "inflates to more than one grain of 4096 bytes");
    }

    #[test]
    fn corrupt_streams_are_refused() {
        let mut z = zlib(&pattern(4096, 6));
        let n = z.len();
        z[n - 1] ^= 1; // Adler-32
        assert!(inflate(&z, 4096, 4096).unwrap_err().contains("zlib"));
        let z = zlib(&pattern(4096, 6));
        assert!(inflate(&z[..z.len() / 2], 4096, 4096).is_err());
        assert!(inflate(&[], 4096, 4096).is_err());
    }

    #[test]
    fn queue_hands_grains_out_in_order_with_their_errors() {
        let mut q = GrainQueue::new(4096);
        let grains: Vec<Vec<u8>> = (0..40).map(|i| pattern(4096, i)).collect();
        for (i, g) in grains.iter().enumerate() {
            let z = if i == 17 { zlib(&g[..100]) } else { zlib(g) };
            q.push(i as u64 * 2, 1000 + i as u64, z.len(), 4096)
                .copy_from_slice(&z);
        }
        q.inflate();
        for (i, g) in grains.iter().enumerate() {
            assert!(q.has(i as u64 * 2));
            match q.take() {
                Ok(bytes) => assert_eq!(bytes, &g[..], "grain {i}"),
                Err((marker, reason)) => {
                    assert_eq!((i, marker), (17, 1017), "{reason}");
                    assert!(reason.contains("100 bytes"), "{reason}");
                }
            }
        }
        assert!(!q.has(80));
    }

    #[test]
    fn queue_is_bounded() {
        let mut q = GrainQueue::new(64 << 10);
        for i in 0..64 {
            assert!(!q.is_full(), "{i}");
            q.push(i, 0, 1, 1);
        }
        assert!(q.is_full());
        // Huge grains still make progress one at a time.
        let mut big = GrainQueue::new(16 << 20);
        assert!(!big.is_full());
        big.push(0, 0, 1, 1);
        assert!(big.is_full());
    }
}

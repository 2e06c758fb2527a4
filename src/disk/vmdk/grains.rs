//! Compressed grains read ahead in disk order and inflated together on the rayon pool.
//!
//! The extent reads the markers and compressed bytes of the next allocated grains of one
//! grain table serially, in disk order (so the reads stay sequential for sources that hash
//! what they read), then [`GrainQueue::inflate`] inflates the whole batch in parallel, each
//! grain into a slot of its own, and the grains are handed out in order. Inflation is a pure
//! function of each grain's bytes, so the output does not depend on the thread count.
//! RAM: [`GRAIN_BATCH_BYTES`] of inflated grains and about as much compressed data.

use libdeflater::{DecompressionError, Decompressor};

use crate::error::Result;

/// Inflated bytes one batch holds: 64 grains of the usual 64 KiB, at least one grain.
pub(super) const GRAIN_BATCH_BYTES: usize = 4 << 20;

/// One queued grain: its marker's file offset and the bytes of disk it supplies.
struct Queued {
    grain: u64,
    marker: u64,
    want: usize,
}

/// What [`GrainQueue::fill`]'s reader says about the next grain: queue it (its compressed
/// bytes are in the buffer), or stop the batch before it.
pub(super) enum Next {
    /// Grain index, marker offset and bytes of disk it supplies.
    Grain(u64, u64, usize),
    Stop,
}

/// Up to [`GRAIN_BATCH_BYTES`] of grains, filled in disk order and handed out in it.
pub(super) struct GrainQueue {
    grain_bytes: usize,
    cap: usize,
    /// One compressed-bytes buffer per slot, kept between batches.
    compressed: Vec<Vec<u8>>,
    queued: Vec<Queued>,
    inflated: Vec<u8>,
    /// Per slot: `Ok` or why the grain did not inflate.
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

    /// Replaces the queue with a new batch. `read(i, buf)` reads the `i`th grain of the
    /// batch into `buf` (i = 0, 1, ... below the bound) and says what it is; each grain is
    /// inflated on the pool as soon as it is read, while the next is being read, so reading
    /// and inflating overlap. An error from `read` ends the batch and is returned.
    pub fn fill<F>(&mut self, mut read: F) -> Result<()>
    where
        F: FnMut(usize, &mut Vec<u8>) -> Result<Next> + Send,
    {
        let g = self.grain_bytes;
        self.queued.clear();
        self.next = 0;
        self.inflated.resize(self.cap * g, 0);
        self.results.clear();
        self.results.resize_with(self.cap, || Ok(()));
        self.compressed.resize_with(self.cap, Vec::new);
        let queued = &mut self.queued;
        let slots = self
            .inflated
            .chunks_mut(g)
            .zip(self.compressed.iter_mut())
            .zip(self.results.iter_mut());
        rayon::scope(|scope| {
            for (i, ((out, buf), result)) in slots.enumerate() {
                let (grain, marker, want) = match read(i, buf)? {
                    Next::Grain(grain, marker, want) => (grain, marker, want),
                    Next::Stop => break,
                };
                queued.push(Queued {
                    grain,
                    marker,
                    want,
                });
                let data: &Vec<u8> = buf;
                scope.spawn(move |_| {
                    *result = inflate_grain(&mut Decompressor::new(), data, out, want);
                });
            }
            Ok(())
        })
    }

    /// The grain index handed out next, if any.
    pub fn next_grain(&self) -> Option<u64> {
        self.queued.get(self.next).map(|q| q.grain)
    }

    /// The next grain's bytes, or its marker's offset and why it did not inflate; the
    /// caller checks [`GrainQueue::has`] first.
    pub fn take(&mut self) -> std::result::Result<&[u8], (u64, String)> {
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
) -> std::result::Result<(), String> {
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

    fn inflate(data: &[u8], grain: usize, want: usize) -> std::result::Result<Vec<u8>, String> {
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
        let streams: Vec<Vec<u8>> = grains
            .iter()
            .enumerate()
            .map(|(i, g)| if i == 17 { zlib(&g[..100]) } else { zlib(g) })
            .collect();
        q.fill(|i, buf| {
            let Some(z) = streams.get(i) else {
                return Ok(Next::Stop);
            };
            buf.clone_from(z);
            Ok(Next::Grain(i as u64 * 2, 1000 + i as u64, 4096))
        })
        .unwrap();
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

    /// How many grains one batch asks `read` for.
    fn batch_len(grain_bytes: usize) -> usize {
        let mut q = GrainQueue::new(grain_bytes);
        let mut asked = 0;
        q.fill(|i, buf| {
            asked = i + 1;
            buf.clone_from(&zlib(&[0]));
            Ok(Next::Grain(i as u64, 0, 1))
        })
        .unwrap();
        asked
    }

    #[test]
    fn queue_is_bounded() {
        assert_eq!(batch_len(64 << 10), 64);
        // Huge grains still make progress one at a time.
        assert_eq!(batch_len(8 << 20), 1);
    }

    #[test]
    fn read_error_ends_the_batch() {
        let mut q = GrainQueue::new(4096);
        let e = q
            .fill(|i, buf| {
                if i == 3 {
                    return Err(crate::error::Error::new(
                        crate::error::ErrorKind::InvalidImage,
                        "boom",
                    ));
                }
                buf.clone_from(&zlib(&pattern(4096, 0)));
                Ok(Next::Grain(i as u64, 0, 4096))
            })
            .unwrap_err();
        assert!(e.to_string().contains("boom"), "{e}");
    }
}

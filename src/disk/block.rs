//! Re-chunking an extent stream into fixed-size blocks, with the engine's one zero detector.
//!
//! Writers that store clusters, grains or blocks feed every extent to a [`Blocker`] and get
//! back whole blocks: [`Block::Data`] for blocks with at least one non-zero byte and
//! [`Block::Empty`] for runs of blocks that read as zeros. Runs of zero or unallocated
//! extents become one `Empty` in O(1), so a 1 TiB sparse disk costs nothing to walk.

use super::Extent;
use crate::error::Result;

/// One or more whole blocks of the virtual disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block<'a> {
    /// Blocks from `index` hold `bytes`: exactly one block, or from a [`Blocker::runs`]
    /// blocker one or more whole blocks; each has at least one non-zero byte.
    Data {
        /// First block number from the start of the disk.
        index: u64,
        /// The blocks' bytes.
        bytes: &'a [u8],
    },
    /// `count` blocks from `index` read as zeros.
    Empty {
        /// First block number.
        index: u64,
        /// Number of blocks.
        count: u64,
    },
}

/// Zero detection lives in `io` (sinks skip zero pieces too); the engine uses it from here.
pub use crate::io::is_zero;

/// Turns extents into whole blocks of `block_size` bytes. Keeps one block in memory.
#[derive(Debug)]
pub struct Blocker {
    block_size: usize,
    buf: Vec<u8>,
    filled: usize,
    next_index: u64,
    /// Hand out runs of adjacent blocks as one `Data`/`Empty` where the input allows.
    runs: bool,
}

impl Blocker {
    /// A blocker for blocks of `block_size` bytes (> 0) that hands out one data block at a
    /// time.
    pub fn new(block_size: usize) -> Self {
        Self {
            block_size,
            buf: vec![0; block_size],
            filled: 0,
            next_index: 0,
            runs: false,
        }
    }

    /// A blocker that hands out adjacent non-zero blocks of one extent as one `Data` run
    /// (and adjacent zero blocks as one `Empty`), so writers can store them with one
    /// uncopied write.
    pub fn runs(block_size: usize) -> Self {
        Self {
            runs: true,
            ..Self::new(block_size)
        }
    }

    /// Bytes per block.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Feeds one extent; `sink` receives every block it completes, in order.
    ///
    /// # Errors
    /// Whatever `sink` returns.
    pub fn push(
        &mut self,
        extent: Extent<'_>,
        sink: &mut dyn FnMut(Block<'_>) -> Result<()>,
    ) -> Result<()> {
        match extent {
            Extent::Data(bytes) => self.push_data(bytes, sink),
            Extent::Zero(len) | Extent::Unallocated(len) => self.push_zeros(len, sink),
        }
    }

    /// Emits the last partial block padded with zeros, if any.
    ///
    /// # Errors
    /// Whatever `sink` returns.
    pub fn finish(&mut self, sink: &mut dyn FnMut(Block<'_>) -> Result<()>) -> Result<()> {
        if self.filled == 0 {
            return Ok(());
        }
        self.buf[self.filled..].fill(0);
        self.filled = self.block_size;
        self.emit_buffer(sink)
    }

    /// Pushes `extent` through the blocker stored in `owner` into `take`. The blocker lends
    /// blocks from its own buffer while `take` needs `&mut owner`, so it is moved out of
    /// `owner` for the call and put back afterwards (every block-storing writer does this).
    ///
    /// # Errors
    /// Whatever `take` returns.
    pub fn push_via<T>(
        owner: &mut T,
        field: fn(&mut T) -> &mut Blocker,
        extent: Extent<'_>,
        take: fn(&mut T, Block<'_>) -> Result<()>,
    ) -> Result<()> {
        let mut blocker = std::mem::replace(field(owner), Blocker::new(0));
        let result = blocker.push(extent, &mut |b| take(owner, b));
        *field(owner) = blocker;
        result
    }

    /// [`Blocker::finish`] for the blocker stored in `owner`, as [`Blocker::push_via`].
    ///
    /// # Errors
    /// Whatever `take` returns.
    pub fn finish_via<T>(
        owner: &mut T,
        field: fn(&mut T) -> &mut Blocker,
        take: fn(&mut T, Block<'_>) -> Result<()>,
    ) -> Result<()> {
        let mut blocker = std::mem::replace(field(owner), Blocker::new(0));
        let result = blocker.finish(&mut |b| take(owner, b));
        *field(owner) = blocker;
        result
    }

    fn push_data(
        &mut self,
        mut bytes: &[u8],
        sink: &mut dyn FnMut(Block<'_>) -> Result<()>,
    ) -> Result<()> {
        while !bytes.is_empty() {
            if self.filled == 0 && bytes.len() >= self.block_size {
                // Aligned whole blocks: hand out the caller's slice, no copy.
                let zero = is_zero(&bytes[..self.block_size]);
                let mut len = self.block_size;
                while self.runs
                    && len + self.block_size <= bytes.len()
                    && is_zero(&bytes[len..len + self.block_size]) == zero
                {
                    len += self.block_size;
                }
                let (run, rest) = bytes.split_at(len);
                let index = self.next_index;
                let count = (len / self.block_size) as u64;
                self.next_index += count;
                sink(if zero {
                    Block::Empty { index, count }
                } else {
                    Block::Data { index, bytes: run }
                })?;
                bytes = rest;
                continue;
            }
            let n = (self.block_size - self.filled).min(bytes.len());
            self.buf[self.filled..self.filled + n].copy_from_slice(&bytes[..n]);
            self.filled += n;
            bytes = &bytes[n..];
            if self.filled == self.block_size {
                self.emit_buffer(sink)?;
            }
        }
        Ok(())
    }

    fn push_zeros(
        &mut self,
        mut len: u64,
        sink: &mut dyn FnMut(Block<'_>) -> Result<()>,
    ) -> Result<()> {
        let block = self.block_size as u64;
        if self.filled > 0 {
            let n = (block - self.filled as u64).min(len);
            let n_usize = usize::try_from(n).expect("n is below the block size");
            self.buf[self.filled..self.filled + n_usize].fill(0);
            self.filled += n_usize;
            len -= n;
            if self.filled < self.block_size {
                return Ok(());
            }
            self.emit_buffer(sink)?;
        }
        let whole = len / block;
        if whole > 0 {
            sink(Block::Empty {
                index: self.next_index,
                count: whole,
            })?;
            self.next_index += whole;
        }
        let rest = usize::try_from(len % block).expect("remainder is below the block size");
        self.buf[..rest].fill(0);
        self.filled = rest;
        Ok(())
    }

    fn emit_buffer(&mut self, sink: &mut dyn FnMut(Block<'_>) -> Result<()>) -> Result<()> {
        let index = self.next_index;
        self.next_index += 1;
        self.filled = 0;
        sink(classify(index, &self.buf))
    }
}

fn classify(index: u64, bytes: &[u8]) -> Block<'_> {
    if is_zero(bytes) {
        Block::Empty { index, count: 1 }
    } else {
        Block::Data { index, bytes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Blocks = Vec<(u64, Option<Vec<u8>>, u64)>;

    fn collect(extents: &[Extent<'_>], block_size: usize) -> Blocks {
        collect_with(Blocker::new(block_size), extents)
    }

    fn collect_with(mut blocker: Blocker, extents: &[Extent<'_>]) -> Blocks {
        let block_size = blocker.block_size();
        let mut out = Vec::new();
        let mut sink = |b: Block<'_>| {
            match b {
                Block::Data { index, bytes } => {
                    out.push((
                        index,
                        Some(bytes.to_vec()),
                        (bytes.len() / block_size) as u64,
                    ));
                }
                Block::Empty { index, count } => out.push((index, None, count)),
            }
            Ok(())
        };
        for e in extents {
            blocker.push(*e, &mut sink).unwrap();
        }
        blocker.finish(&mut sink).unwrap();
        out
    }

    #[test]
    fn zero_run_becomes_one_empty_block_run() {
        let out = collect(&[Extent::Unallocated(1 << 40)], 65536);
        assert_eq!(out, vec![(0, None, (1 << 40) / 65536)]);
    }

    #[test]
    fn all_zero_data_block_is_empty() {
        let out = collect(&[Extent::Data(&[0; 8])], 4);
        assert_eq!(out, vec![(0, None, 1), (1, None, 1)]);
    }

    #[test]
    fn unaligned_data_is_assembled_into_blocks() {
        let out = collect(
            &[
                Extent::Zero(2),
                Extent::Data(&[1, 2, 3, 4]),
                Extent::Zero(2),
            ],
            4,
        );
        assert_eq!(
            out,
            vec![
                (0, Some(vec![0, 0, 1, 2]), 1),
                (1, Some(vec![3, 4, 0, 0]), 1)
            ]
        );
    }

    #[test]
    fn partial_last_block_is_padded() {
        let out = collect(&[Extent::Data(&[7; 5])], 4);
        assert_eq!(
            out,
            vec![(0, Some(vec![7; 4]), 1), (1, Some(vec![7, 0, 0, 0]), 1)]
        );
    }

    #[test]
    fn runs_blocker_joins_adjacent_blocks_of_one_kind() {
        let bytes = [
            1, 1, 1, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 5,
        ];
        let out = collect_with(Blocker::runs(4), &[Extent::Data(&bytes)]);
        assert_eq!(
            out,
            vec![
                (0, Some(vec![1, 1, 1, 1, 2, 0, 0, 0]), 2),
                (2, None, 2),
                (4, Some(vec![0, 0, 0, 4]), 1),
                (5, Some(vec![5, 0, 0, 0]), 1),
            ]
        );
    }

    #[test]
    fn single_blocker_never_joins_blocks() {
        let out = collect(&[Extent::Data(&[1; 8])], 4);
        assert_eq!(
            out,
            vec![(0, Some(vec![1; 4]), 1), (1, Some(vec![1; 4]), 1)]
        );
    }

    #[test]
    fn is_zero_sees_a_late_nonzero_byte() {
        let mut buf = vec![0u8; 4099];
        buf[4098] = 1;
        assert!(!is_zero(&buf));
    }
}

//! One reader for the formats that map fixed-size blocks through a table: VDI, dynamic VHD
//! and VHDX. Each format says where a block lives ([`BlockTable`]); the walk over the disk,
//! the runs of blocks that are not stored, and the reads of stored blocks are written once
//! here.
//!
//! The tables were validated when the image was opened (every stored block inside the file,
//! no two overlapping), so the walk trusts them. Memory: the format's table (or its window)
//! and one data buffer of at most [`MAX_EXTENT_BYTES`].

use super::{DiskReader, Extent, ImageInfo, MAX_EXTENT_BYTES};
use crate::error::Result;
use crate::io::{ReadAt, Source, read_exact_at};

/// Where one block of the virtual disk is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockState {
    /// Stored in the file; the block's first byte is at this offset.
    Stored(u64),
    /// Recorded as reading zeros.
    Zero,
    /// Not allocated; reads as zeros.
    Unallocated,
}

/// A format's block table.
pub(crate) trait BlockTable: Send {
    /// Where block `index` is (`index` < the disk's block count).
    ///
    /// # Errors
    /// I/O failures of tables read lazily.
    fn block(&mut self, src: &dyn ReadAt, index: u64) -> Result<BlockState>;
}

/// Reads a block-mapped disk as extents: data by block (at most [`MAX_EXTENT_BYTES`] at a
/// time), and each run of zero or unallocated blocks as one extent.
pub(crate) struct BlockMapReader<T> {
    src: Source,
    table: T,
    block_size: u64,
    virtual_size: u64,
    /// What a data read is called in errors (`VDI block data`).
    what: &'static str,
    info: ImageInfo,
    pos: u64,
    buf: Vec<u8>,
}

impl<T: BlockTable> BlockMapReader<T> {
    /// A reader of `virtual_size` bytes in blocks of `block_size` mapped by `table`.
    pub(crate) fn new(
        src: Source,
        table: T,
        block_size: u64,
        what: &'static str,
        info: ImageInfo,
    ) -> Self {
        Self {
            src,
            table,
            block_size,
            virtual_size: info.virtual_size,
            what,
            info,
            pos: 0,
            buf: Vec::new(),
        }
    }

    /// End of the run of blocks from `index` that are all `state`.
    fn run_end(&mut self, mut index: u64, state: BlockState) -> Result<u64> {
        index += 1;
        while index * self.block_size < self.virtual_size
            && self.table.block(&*self.src, index)? == state
        {
            index += 1;
        }
        Ok((index * self.block_size).min(self.virtual_size))
    }
}

impl<T: BlockTable> DiskReader for BlockMapReader<T> {
    fn virtual_size(&self) -> u64 {
        self.virtual_size
    }

    fn next_extent(&mut self) -> Result<Option<Extent<'_>>> {
        if self.pos >= self.virtual_size {
            return Ok(None);
        }
        let index = self.pos / self.block_size;
        let offset = match self.table.block(&*self.src, index)? {
            BlockState::Stored(offset) => offset,
            state => {
                let len = self.run_end(index, state)? - self.pos;
                self.pos += len;
                return Ok(Some(match state {
                    BlockState::Zero => Extent::Zero(len),
                    _ => Extent::Unallocated(len),
                }));
            }
        };
        let within = self.pos - index * self.block_size;
        let block_end = ((index + 1) * self.block_size).min(self.virtual_size);
        let len = (block_end - self.pos).min(MAX_EXTENT_BYTES as u64);
        let len = usize::try_from(len).expect("bounded by MAX_EXTENT_BYTES");
        self.buf.resize(len, 0);
        read_exact_at(&*self.src, &mut self.buf, offset + within, self.what)?;
        self.pos += len as u64;
        Ok(Some(Extent::Data(&self.buf)))
    }

    fn info(&self) -> ImageInfo {
        self.info.clone()
    }
}

/// One stored block in the file, for the overlap check: `[start, end)` and its table index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Stored {
    /// First byte in the file.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// Index of its table entry.
    pub index: u64,
}

/// The first pair of blocks (in file order) whose ranges overlap, as `(earlier, later)`.
/// Sorting costs one entry per stored block, and stored blocks lie in the file, so memory is
/// bounded by the file's size, not the disk's.
pub(crate) fn first_overlap(blocks: &mut [Stored]) -> Option<(Stored, Stored)> {
    blocks.sort_unstable();
    blocks
        .windows(2)
        .find(|pair| pair[1].start < pair[0].end)
        .map(|pair| (pair[0], pair[1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(start: u64, index: u64) -> Stored {
        Stored {
            start,
            end: start + 10,
            index,
        }
    }

    #[test]
    fn touching_blocks_do_not_overlap() {
        assert_eq!(first_overlap(&mut [stored(10, 0), stored(0, 1)]), None);
    }

    #[test]
    fn overlapping_blocks_are_named_in_file_order() {
        let found = first_overlap(&mut [stored(25, 0), stored(0, 1), stored(20, 2)]);
        assert_eq!(found, Some((stored(20, 2), stored(25, 0))));
    }
}

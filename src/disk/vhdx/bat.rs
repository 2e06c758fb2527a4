//! The block allocation table (MS-VHDX 2.5): one 8-byte entry per payload block, with a
//! sector bitmap entry after every `chunk_ratio` payload entries.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::region::Region;
use super::{MIB, VhdxError};
use crate::disk::block::is_zero;
use crate::error::Result;
use crate::io::{ReadAt, read_exact_at, table};

/// Payload block state: not stored; reads as zeros (no parent).
pub(super) const PAYLOAD_BLOCK_NOT_PRESENT: u64 = 0;
/// Payload block state: contents undefined; kiln reads zeros.
pub(super) const PAYLOAD_BLOCK_UNDEFINED: u64 = 1;
/// Payload block state: reads as zeros.
pub(super) const PAYLOAD_BLOCK_ZERO: u64 = 2;
/// Payload block state: unmapped (trimmed); kiln reads zeros.
pub(super) const PAYLOAD_BLOCK_UNMAPPED: u64 = 3;
/// Payload block state: stored at the entry's file offset.
pub(super) const PAYLOAD_BLOCK_FULLY_PRESENT: u64 = 6;
/// Payload block state: partly in this file, partly in the parent (differencing only).
pub(super) const PAYLOAD_BLOCK_PARTIALLY_PRESENT: u64 = 7;
/// Entries read per window, in the reader and the validator (512 KiB).
const BAT_WINDOW_ENTRIES: u64 = 64 * 1024;
/// Bytes the writer gathers before writing them.
const BAT_WRITE_CHUNK: usize = 1 << 20;

/// How the BAT of a disk is laid out (MS-VHDX 2.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BatGeometry {
    pub block_size: u64,
    pub chunk_ratio: u64,
    pub data_blocks: u64,
    pub total_entries: u64,
}

impl BatGeometry {
    /// Geometry of a non-differencing disk; sizes were validated by the caller.
    pub fn new(virtual_size: u64, block_size: u64, logical_sector_size: u32) -> Self {
        let chunk_ratio = ((1u64 << 23) * u64::from(logical_sector_size)) / block_size;
        let data_blocks = virtual_size.div_ceil(block_size);
        let total_entries = data_blocks + data_blocks.saturating_sub(1) / chunk_ratio;
        Self {
            block_size,
            chunk_ratio,
            data_blocks,
            total_entries,
        }
    }

    /// Index of the entry of payload block `block`.
    pub fn payload_entry(&self, block: u64) -> u64 {
        block + block / self.chunk_ratio
    }

    /// Bytes of the BAT region: the entries rounded up to 1 MiB.
    pub fn region_length(&self) -> u64 {
        (self.total_entries * 8).div_ceil(MIB).max(1) * MIB
    }
}

/// A payload entry pointing at `offset` (a multiple of 1 MiB).
pub(super) fn entry(state: u64, offset: u64) -> u64 {
    state | ((offset / MIB) << 20)
}

fn entry_state(e: u64) -> u64 {
    e & 7
}

fn entry_offset(e: u64) -> u64 {
    (e >> 20) * MIB
}

/// What a payload entry means for reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BlockMap {
    Unallocated,
    Zero,
    Data(u64),
}

/// Decodes a payload entry that [`validate`] accepted.
pub(super) fn block_map(e: u64) -> BlockMap {
    match entry_state(e) {
        PAYLOAD_BLOCK_FULLY_PRESENT => BlockMap::Data(entry_offset(e)),
        PAYLOAD_BLOCK_ZERO => BlockMap::Zero,
        _ => BlockMap::Unallocated,
    }
}

/// Reads BAT entries through a window of [`BAT_WINDOW_ENTRIES`].
pub(super) struct BatCursor {
    region: Region,
    total: u64,
    first: u64,
    entries: Vec<u64>,
    raw: Vec<u8>,
}

impl BatCursor {
    pub fn new(region: Region, geometry: &BatGeometry) -> Self {
        Self {
            region,
            total: geometry.total_entries,
            first: 0,
            entries: Vec::new(),
            raw: Vec::new(),
        }
    }

    /// Entry `index` (< total entries).
    pub fn get(&mut self, file: &dyn ReadAt, index: u64) -> Result<u64> {
        let cached = index
            .checked_sub(self.first)
            .filter(|&i| i < self.entries.len() as u64);
        if let Some(i) = cached.and_then(|i| usize::try_from(i).ok()) {
            return Ok(self.entries[i]);
        }
        let n = (self.total - index).min(BAT_WINDOW_ENTRIES);
        let n = usize::try_from(n).expect("bounded by the window");
        self.raw.resize(n * 8, 0);
        read_exact_at(
            file,
            &mut self.raw,
            self.region.offset + index * 8,
            "VHDX BAT",
        )?;
        self.entries = table::decode_all(&self.raw, u64::from_le_bytes);
        self.first = index;
        Ok(self.entries[0])
    }
}

/// What the validator learnt.
pub(super) struct BatSummary {
    /// Payload blocks stored in the file.
    pub present_blocks: u64,
}

/// Checks every payload entry: known state, block inside the file, no block overlapping
/// another or the header area, log, BAT or metadata. `reserved` lists those areas. Memory:
/// one bit per MiB of file plus one window.
pub(super) fn validate(
    file: &dyn ReadAt,
    geometry: &BatGeometry,
    bat: Region,
    virtual_size: u64,
    reserved: &[Region],
) -> Result<BatSummary> {
    let file_len = file.len();
    let mut used = MibBitmap::new(file_len);
    for r in reserved {
        used.mark(r.offset, r.length);
    }
    let mut cursor = BatCursor::new(bat, geometry);
    let mut present_blocks = 0;
    for block in 0..geometry.data_blocks {
        let index = geometry.payload_entry(block);
        let e = cursor.get(file, index)?;
        let at = bat.offset + index * 8;
        let state = entry_state(e);
        match state {
            PAYLOAD_BLOCK_NOT_PRESENT
            | PAYLOAD_BLOCK_UNDEFINED
            | PAYLOAD_BLOCK_ZERO
            | PAYLOAD_BLOCK_UNMAPPED => continue,
            PAYLOAD_BLOCK_FULLY_PRESENT => {}
            PAYLOAD_BLOCK_PARTIALLY_PRESENT => {
                return Err(VhdxError::PartiallyPresent { entry_offset: at }.into());
            }
            _ => {
                return Err(VhdxError::BadBatState {
                    entry_offset: at,
                    state,
                }
                .into());
            }
        }
        // Only the part of the last block inside the virtual disk must be stored.
        let start = block * geometry.block_size;
        let needed = geometry.block_size.min(virtual_size - start);
        let offset = entry_offset(e);
        if offset > file_len || needed > file_len - offset {
            return Err(VhdxError::BlockOutsideFile {
                entry_offset: at,
                offset,
                file_len,
            }
            .into());
        }
        if !used.mark(offset, geometry.block_size) {
            return Err(VhdxError::BlockOverlap {
                entry_offset: at,
                offset,
            }
            .into());
        }
        present_blocks += 1;
    }
    Ok(BatSummary { present_blocks })
}

/// One bit per MiB of the file: which MiB are taken.
struct MibBitmap {
    bits: Vec<u64>,
}

impl MibBitmap {
    fn new(file_len: u64) -> Self {
        let mibs = file_len.div_ceil(MIB);
        Self {
            bits: vec![0; usize::try_from(mibs.div_ceil(64)).unwrap_or(0)],
        }
    }

    /// Marks `[offset, offset + len)`; false when any MiB of it was taken. MiBs past the
    /// end of the file (the unstored tail of a last block) are not tracked.
    fn mark(&mut self, offset: u64, len: u64) -> bool {
        let mut free = true;
        let first = offset / MIB;
        let last = offset.saturating_add(len).div_ceil(MIB);
        for mib in first..last {
            let Ok(word) = usize::try_from(mib / 64) else {
                break;
            };
            let Some(w) = self.bits.get_mut(word) else {
                break;
            };
            let bit = 1u64 << (mib % 64);
            free &= *w & bit == 0;
            *w |= bit;
        }
        free
    }
}

/// Writes the BAT in order, one entry per payload block, inserting the sector bitmap
/// entries (not present: kiln writes no differencing disks). Keeps at most 1 MiB in RAM
/// and skips writing all-zero chunks, which the file already reads as zeros.
pub(super) struct BatWriter {
    geometry: BatGeometry,
    region_offset: u64,
    written: u64,
    next_block: u64,
    buf: Vec<u8>,
}

impl BatWriter {
    pub fn new(geometry: BatGeometry, region_offset: u64) -> Self {
        Self {
            geometry,
            region_offset,
            written: 0,
            next_block: 0,
            buf: Vec::with_capacity(BAT_WRITE_CHUNK),
        }
    }

    /// The payload block whose entry comes next.
    pub fn next_block(&self) -> u64 {
        self.next_block
    }

    /// Appends the entry of the next payload block.
    pub fn push(&mut self, file: &File, e: u64) -> Result<()> {
        self.buf.extend_from_slice(&e.to_le_bytes());
        self.next_block += 1;
        let chunk_done = self.next_block.is_multiple_of(self.geometry.chunk_ratio);
        if chunk_done && self.next_block < self.geometry.data_blocks {
            self.buf.extend_from_slice(&0u64.to_le_bytes());
        }
        if self.buf.len() >= BAT_WRITE_CHUNK {
            self.flush(file)?;
        }
        Ok(())
    }

    /// Writes what is gathered.
    pub fn flush(&mut self, file: &File) -> Result<()> {
        if !is_zero(&self.buf) {
            file.write_all_at(&self.buf, self.region_offset + self.written)?;
        }
        self.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_ratio_follows_the_spec() {
        let g = BatGeometry::new(64 << 30, 32 * MIB, 512);
        assert_eq!(
            (g.chunk_ratio, g.data_blocks, g.total_entries),
            (128, 2048, 2063)
        );
    }

    #[test]
    fn payload_entries_skip_sector_bitmap_entries() {
        let g = BatGeometry::new(64 << 30, 32 * MIB, 512);
        assert_eq!((g.payload_entry(127), g.payload_entry(128)), (127, 129));
    }

    #[test]
    fn entry_encodes_state_and_mib_offset() {
        let e = entry(PAYLOAD_BLOCK_FULLY_PRESENT, 5 * MIB);
        assert_eq!((entry_state(e), entry_offset(e)), (6, 5 * MIB));
    }

    #[test]
    fn overlapping_range_is_detected() {
        let mut m = MibBitmap::new(16 * MIB);
        assert!(m.mark(2 * MIB, 4 * MIB));
        assert!(!m.mark(5 * MIB, MIB));
    }
}

//! Writing a VHDX: payload as it arrives, then metadata, region tables and headers.

use std::os::unix::fs::FileExt;

use uuid::Uuid;

use super::bat::{BatGeometry, BatWriter};
use super::header::{VHDX_HEADER_OFFSETS, VhdxHeader};
use super::metadata::{VHDX_MAX_BLOCK_SIZE, VHDX_MIN_BLOCK_SIZE, VhdxMetadata};
use super::region::{Region, VHDX_REGION_TABLE_OFFSETS, VhdxRegions};
use super::{bat, header};
use crate::disk::block::is_zero;
use crate::disk::{CreateRequest, DiskWriter, Extent, WriteReport};
use crate::error::{Error, Result};
use crate::io::output::OutputSet;
use crate::io::sparse_out::{SPARSE_CHUNK, SparseOut};

use super::{
    MIB, VHDX_DEFAULT_BLOCK_SIZE, VHDX_DEFAULT_LOG_SIZE, VHDX_LOGICAL_SECTOR, VHDX_MAX_LOG_SIZE,
    VHDX_MAX_VIRTUAL_SIZE, VHDX_PHYSICAL_SECTOR, VHDX_WRITE_PIECE,
};

/// The writer's choices, from `-o`.
#[derive(Debug, Clone, Copy)]
struct WriterOptions {
    fixed: bool,
    block_size: u64,
    log_size: u64,
    /// Record absent blocks as ZERO instead of NOT_PRESENT (dynamic only).
    zero_state: bool,
}

impl WriterOptions {
    fn parse(req: &CreateRequest<'_>) -> Result<Self> {
        let o = req.options;
        let fixed = o.get_choice("subformat", &["dynamic", "fixed"])? == Some("fixed");
        let block_size = o.get_size("block_size")?.unwrap_or(VHDX_DEFAULT_BLOCK_SIZE);
        if !block_size.is_power_of_two()
            || !(VHDX_MIN_BLOCK_SIZE..=VHDX_MAX_BLOCK_SIZE).contains(&block_size)
        {
            return Err(Error::invalid_input(format!(
                "option block_size={block_size}: expected a power of two from 1M to 256M"
            )));
        }
        let log_size = o.get_size("log_size")?.unwrap_or(VHDX_DEFAULT_LOG_SIZE);
        if log_size % MIB != 0 || !(MIB..=VHDX_MAX_LOG_SIZE).contains(&log_size) {
            return Err(Error::invalid_input(format!(
                "option log_size={log_size}: expected a multiple of 1M from 1M to 1G"
            )));
        }
        let zero_state = o.get_bool("block_state_zero")?.unwrap_or(false);
        let size = req.virtual_size;
        if size == 0
            || size > VHDX_MAX_VIRTUAL_SIZE
            || !size.is_multiple_of(u64::from(VHDX_LOGICAL_SECTOR))
        {
            return Err(Error::invalid_input(format!(
                "vhdx virtual size {size} must be a non-zero multiple of 512 bytes, at most 64 TiB"
            )));
        }
        Ok(Self {
            fixed,
            block_size,
            log_size,
            zero_state,
        })
    }
}

/// Where the writer puts each region.
#[derive(Debug, Clone, Copy)]
struct Layout {
    log: Region,
    regions: VhdxRegions,
    payload: u64,
}

impl Layout {
    fn new(geometry: &BatGeometry, log_size: u64) -> Self {
        let log = Region {
            offset: MIB,
            length: log_size,
        };
        let metadata = Region {
            offset: log.end(),
            length: MIB,
        };
        let bat = Region {
            offset: metadata.end(),
            length: geometry.region_length(),
        };
        Self {
            log,
            regions: VhdxRegions { bat, metadata },
            payload: bat.end(),
        }
    }
}

pub(in crate::disk) fn create(
    req: &CreateRequest<'_>,
    out: &mut OutputSet,
) -> Result<Box<dyn DiskWriter>> {
    let opts = WriterOptions::parse(req)?;
    let geometry = BatGeometry::new(req.virtual_size, opts.block_size, VHDX_LOGICAL_SECTOR);
    let layout = Layout::new(&geometry, opts.log_size);
    let meta = VhdxMetadata {
        block_size: opts.block_size,
        leave_blocks_allocated: opts.fixed,
        virtual_size: req.virtual_size,
        disk_id: req.ctx.uuid("vhdx/disk-id"),
        logical_sector_size: VHDX_LOGICAL_SECTOR,
        physical_sector_size: VHDX_PHYSICAL_SECTOR,
    };
    let header = VhdxHeader {
        sequence_number: 1,
        file_write_guid: req.ctx.uuid("vhdx/file-write"),
        data_write_guid: req.ctx.uuid("vhdx/data-write"),
        log_guid: Uuid::nil(),
        log_length: u32::try_from(opts.log_size)
            .map_err(|_| Error::invalid_input("log_size too large"))?,
        log_offset: layout.log.offset,
    };
    let file = out.create_primary()?;
    Ok(Box::new(VhdxWriter {
        out: SparseOut::new(file),
        opts,
        layout,
        geometry,
        meta,
        header,
        creator: req.ctx.creator.clone(),
        bat: BatWriter::new(geometry, layout.regions.bat.offset),
        current: None,
        next_free: layout.payload,
        pos: 0,
    }))
}

/// Writes payload as it arrives and the BAT in block order; metadata, region tables and
/// headers at the end.
struct VhdxWriter {
    out: SparseOut,
    opts: WriterOptions,
    layout: Layout,
    geometry: BatGeometry,
    meta: VhdxMetadata,
    header: VhdxHeader,
    creator: String,
    bat: BatWriter,
    /// The dynamic block being filled: (block number, file offset).
    current: Option<(u64, u64)>,
    next_free: u64,
    /// Virtual offset of the next extent.
    pos: u64,
}

impl VhdxWriter {
    /// Moves past `len` bytes, refusing to go beyond the virtual size.
    fn advance(&mut self, len: u64) -> Result<()> {
        self.pos = self
            .pos
            .checked_add(len)
            .filter(|&end| end <= self.meta.virtual_size)
            .ok_or_else(|| {
                Error::invalid_input(format!(
                    "vhdx writer given data past the virtual size {:#x} at {:#x}",
                    self.meta.virtual_size, self.pos
                ))
            })?;
        Ok(())
    }

    /// Writes `bytes` at `pos` in pieces cut at every [`VHDX_WRITE_PIECE`] boundary of the
    /// disk, so no piece crosses a payload block (block sizes are multiples of 1 MiB).
    fn write_data(&mut self, mut bytes: &[u8]) -> Result<()> {
        let start = self.pos;
        self.advance(bytes.len() as u64)?;
        let mut vpos = start;
        while !bytes.is_empty() {
            let room = VHDX_WRITE_PIECE
                - usize::try_from(vpos % VHDX_WRITE_PIECE as u64).expect("below the piece size");
            let (chunk, rest) = bytes.split_at(room.min(bytes.len()));
            self.write_in_block(vpos, chunk)?;
            vpos += chunk.len() as u64;
            bytes = rest;
        }
        Ok(())
    }

    /// Writes `chunk`, which lies inside one payload block, from virtual offset `vpos`.
    /// A dynamic block is allocated at its first non-zero 4 KiB piece; zero pieces are
    /// left as holes.
    fn write_in_block(&mut self, vpos: u64, chunk: &[u8]) -> Result<()> {
        let bs = self.geometry.block_size;
        let block = vpos / bs;
        if self.opts.fixed {
            return self.out.write_sparse(self.layout.payload + vpos, chunk);
        }
        if let Some((b, offset)) = self.current
            && b == block
        {
            return self.out.write_sparse(offset + vpos % bs, chunk);
        }
        let Some(skip) = first_nonzero_piece(vpos, chunk) else {
            return Ok(());
        };
        self.entries_until(block)?;
        let offset = self.next_free;
        self.current = Some((block, offset));
        self.next_free += bs;
        let from = vpos + skip as u64;
        self.out.write_sparse(offset + from % bs, &chunk[skip..])
    }

    /// Writes the BAT entries of every block before `end`.
    fn entries_until(&mut self, end: u64) -> Result<()> {
        let absent = if self.opts.zero_state {
            bat::PAYLOAD_BLOCK_ZERO
        } else {
            bat::PAYLOAD_BLOCK_NOT_PRESENT
        };
        while self.bat.next_block() < end {
            let b = self.bat.next_block();
            let e = match self.current {
                _ if self.opts.fixed => bat::entry(
                    bat::PAYLOAD_BLOCK_FULLY_PRESENT,
                    self.layout.payload + b * self.geometry.block_size,
                ),
                Some((cur, offset)) if cur == b => {
                    bat::entry(bat::PAYLOAD_BLOCK_FULLY_PRESENT, offset)
                }
                _ => absent,
            };
            self.bat.push(self.out.file(), e)?;
        }
        Ok(())
    }

    /// Metadata, both region tables, both headers and the identifier.
    fn write_structures(&self) -> Result<()> {
        let f = self.out.file();
        f.write_all_at(&header::identifier_bytes(&self.creator), 0)?;
        for (i, offset) in VHDX_HEADER_OFFSETS.into_iter().enumerate() {
            let h = VhdxHeader {
                sequence_number: self.header.sequence_number + i as u64,
                ..self.header
            };
            f.write_all_at(&h.to_bytes(), offset)?;
        }
        let table = self.layout.regions.to_bytes()?;
        for offset in VHDX_REGION_TABLE_OFFSETS {
            f.write_all_at(&table, offset)?;
        }
        f.write_all_at(&self.meta.to_bytes()?, self.layout.regions.metadata.offset)?;
        Ok(())
    }
}

/// Index in `chunk` (which starts at virtual offset `vpos`) of its first 4 KiB piece, aligned
/// to the disk, holding a non-zero byte; `None` when `chunk` is all zeros.
fn first_nonzero_piece(vpos: u64, chunk: &[u8]) -> Option<usize> {
    let mut at = 0;
    while at < chunk.len() {
        let piece = SPARSE_CHUNK as u64;
        let to_boundary = piece - (vpos + at as u64) % piece;
        let end = usize::try_from(to_boundary).map_or(chunk.len(), |n| chunk.len().min(at + n));
        if !is_zero(&chunk[at..end]) {
            return Some(at);
        }
        at = end;
    }
    None
}

impl DiskWriter for VhdxWriter {
    fn write_extent(&mut self, extent: Extent<'_>) -> Result<()> {
        match extent {
            Extent::Data(bytes) => self.write_data(bytes),
            Extent::Zero(len) | Extent::Unallocated(len) => self.advance(len),
        }
    }

    fn finish(mut self: Box<Self>) -> Result<WriteReport> {
        self.out.flush()?;
        self.entries_until(self.geometry.data_blocks)?;
        self.bat.flush(self.out.file())?;
        self.write_structures()?;
        let end = if self.opts.fixed {
            self.layout.payload + self.geometry.data_blocks * self.geometry.block_size
        } else {
            self.next_free
        };
        self.out.file().set_len(end)?;
        Ok(WriteReport::new(self.meta.virtual_size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_puts_payload_after_the_bat() {
        let g = BatGeometry::new(64 * MIB, 32 * MIB, 512);
        let l = Layout::new(&g, MIB);
        assert_eq!(
            (l.regions.metadata.offset, l.regions.bat.offset, l.payload),
            (2 * MIB, 3 * MIB, 4 * MIB)
        );
    }

    #[test]
    fn first_nonzero_piece_follows_disk_alignment() {
        let mut chunk = vec![0u8; 3 * SPARSE_CHUNK];
        chunk[SPARSE_CHUNK] = 1;
        // From virtual 512, the pieces are [0, 3584), [3584, 7680), ...
        assert_eq!(first_nonzero_piece(512, &chunk), Some(SPARSE_CHUNK - 512));
        assert_eq!(first_nonzero_piece(0, &chunk), Some(SPARSE_CHUNK));
        assert_eq!(first_nonzero_piece(0, &chunk[..SPARSE_CHUNK]), None);
    }
}

//! The monolithicSparse writer: qemu-img's layout of a hosted sparse extent.
//!
//! Sector 0 header, sector 1.. the descriptor (20 sectors), then the redundant grain
//! directory, the redundant grain tables, the grain directory and the grain tables, padded to
//! a grain boundary; grains follow in disk order. Every table is preallocated, so both
//! directories are fixed by the capacity; a grain table is written (to both copies) when the
//! stream moves past its 512 grains. All-zero tables are never written and stay holes.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::header::{
    SparseHeader, VMDK_FLAG_NL_DETECT, VMDK_FLAG_RGD, VMDK_GTES_PER_GT, VMDK_SECTOR,
};
use super::{
    VMDK_DESCRIPTOR_SECTORS, VMDK_WRITE_GRAIN_SECTORS, WriteOptions, primary_name, sector_u32,
};
use crate::disk::block::{Block, Blocker};
use crate::disk::{CreateRequest, DiskWriter, Extent, MAX_EXTENT_BYTES, WriteReport};
use crate::error::Result;
use crate::io::output::OutputSet;

/// Sectors of one grain table (512 entries of 4 bytes).
const VMDK_GT_SECTORS: u64 = 4;

/// Writes a monolithicSparse VMDK.
pub(super) struct SparseWriter {
    file: File,
    header: SparseHeader,
    descriptor: String,
    blocker: Blocker,
    /// First sector of the redundant grain tables and of the grain tables.
    rgt_start: u64,
    gt_start: u64,
    gt: Vec<u32>,
    gt_index: u64,
    gt_dirty: bool,
    next_sector: u64,
    pending: Vec<u8>,
    pending_sector: u64,
}

impl SparseWriter {
    pub fn new(req: &CreateRequest<'_>, opts: &WriteOptions, out: &mut OutputSet) -> Result<Self> {
        let grain = VMDK_WRITE_GRAIN_SECTORS;
        let mut header = SparseHeader {
            version: 1,
            flags: VMDK_FLAG_NL_DETECT | VMDK_FLAG_RGD,
            capacity: opts.capacity,
            grain_sectors: grain,
            descriptor_offset: 1,
            descriptor_sectors: VMDK_DESCRIPTOR_SECTORS,
            rgd_offset: 1 + VMDK_DESCRIPTOR_SECTORS,
            gd_offset: 0,
            overhead: 0,
            compress_algorithm: 0,
        };
        let gd_sectors = (header.gd_entries() * 4).div_ceil(VMDK_SECTOR);
        let gts_sectors = header.gd_entries() * VMDK_GT_SECTORS;
        let rgt_start = header.rgd_offset + gd_sectors;
        header.gd_offset = rgt_start + gts_sectors;
        let gt_start = header.gd_offset + gd_sectors;
        header.overhead = (gt_start + gts_sectors).next_multiple_of(grain);
        sector_u32(header.overhead)?;
        let file = out.create_primary()?;
        let descriptor = opts.descriptor(req, "SPARSE", &primary_name(out));
        Ok(Self {
            file,
            header,
            descriptor,
            blocker: Blocker::new(usize::try_from(grain * VMDK_SECTOR).expect("64 KiB")),
            rgt_start,
            gt_start,
            gt: vec![0; VMDK_GTES_PER_GT as usize],
            gt_index: 0,
            gt_dirty: false,
            next_sector: header.overhead,
            pending: Vec::with_capacity(MAX_EXTENT_BYTES),
            pending_sector: header.overhead,
        })
    }

    fn take_block(&mut self, block: Block<'_>) -> Result<()> {
        let Block::Data { index, bytes } = block else {
            return Ok(());
        };
        let per_gt = u64::from(VMDK_GTES_PER_GT);
        if index / per_gt != self.gt_index {
            self.flush_gt()?;
            self.gt_index = index / per_gt;
        }
        let slot = usize::try_from(index % per_gt).expect("below 512");
        self.gt[slot] = sector_u32(self.next_sector)?;
        sector_u32(self.next_sector + self.header.grain_sectors - 1)?;
        self.gt_dirty = true;
        if self.pending.len() + bytes.len() > MAX_EXTENT_BYTES {
            self.flush_data()?;
        }
        self.pending.extend_from_slice(bytes);
        self.next_sector += self.header.grain_sectors;
        Ok(())
    }

    fn flush_data(&mut self) -> Result<()> {
        self.file
            .write_all_at(&self.pending, self.pending_sector * VMDK_SECTOR)?;
        self.pending_sector += self.pending.len() as u64 / VMDK_SECTOR;
        self.pending.clear();
        Ok(())
    }

    /// Writes the current grain table to both copies and clears it.
    fn flush_gt(&mut self) -> Result<()> {
        if !self.gt_dirty {
            return Ok(());
        }
        let bytes: Vec<u8> = self.gt.iter().flat_map(|e| e.to_le_bytes()).collect();
        for start in [self.rgt_start, self.gt_start] {
            let sector = start + self.gt_index * VMDK_GT_SECTORS;
            self.file.write_all_at(&bytes, sector * VMDK_SECTOR)?;
        }
        self.gt.fill(0);
        self.gt_dirty = false;
        Ok(())
    }

    /// Both grain directories: entry `i` points at table `i` of its copy.
    fn write_directories(&self) -> Result<()> {
        for (gd, gts) in [
            (self.header.rgd_offset, self.rgt_start),
            (self.header.gd_offset, self.gt_start),
        ] {
            let mut bytes = Vec::new();
            for i in 0..self.header.gd_entries() {
                bytes.extend_from_slice(&sector_u32(gts + i * VMDK_GT_SECTORS)?.to_le_bytes());
            }
            self.file.write_all_at(&bytes, gd * VMDK_SECTOR)?;
        }
        Ok(())
    }
}

impl DiskWriter for SparseWriter {
    fn write_extent(&mut self, extent: Extent<'_>) -> Result<()> {
        Blocker::push_via(self, |w| &mut w.blocker, extent, Self::take_block)
    }

    fn finish(mut self: Box<Self>) -> Result<WriteReport> {
        Blocker::finish_via(&mut *self, |w| &mut w.blocker, Self::take_block)?;
        self.flush_data()?;
        self.flush_gt()?;
        self.write_directories()?;
        self.file.write_all_at(&self.header.to_bytes(), 0)?;
        self.file
            .write_all_at(self.descriptor.as_bytes(), VMDK_SECTOR)?;
        self.file.set_len(self.next_sector * VMDK_SECTOR)?;
        Ok(WriteReport::new(self.header.capacity * VMDK_SECTOR))
    }
}

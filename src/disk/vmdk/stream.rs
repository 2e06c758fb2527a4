//! The streamOptimized writer, in the layout of VMware's Virtual Disk Format 5.0,
//! "Stream-Optimized Compressed Sparse Extents":
//!
//! ```text
//! header (gdOffset = GD_AT_END) | descriptor | pad to one grain
//! { grain marker (LBA, size) + zlib data, padded to a sector }*   (per grain table:)
//! GT marker (val 4, type 1) | grain table (4 sectors)             after its grains
//! GD marker (val = GD sectors, type 2) | grain directory
//! footer marker (val 1, type 3) | footer (header copy with the real gdOffset) | EOS marker
//! ```
//!
//! The output is written front to back (no seeks). Grains are compressed in batches on the
//! rayon pool (`par_iter` over one batch, then written in order), so the bytes are the same
//! whatever the number of threads.

use std::fs::File;
use std::io::{BufWriter, Write};

use flate2::{Compress, Compression, FlushCompress, Status};
use rayon::prelude::*;

use super::header::{
    Marker, SparseHeader, VMDK_COMPRESS_DEFLATE, VMDK_FLAG_COMPRESSED, VMDK_FLAG_MARKERS,
    VMDK_FLAG_NL_DETECT, VMDK_GD_AT_END, VMDK_GTES_PER_GT, VMDK_MARKER_FOOTER, VMDK_MARKER_GD,
    VMDK_MARKER_GT, VMDK_SECTOR,
};
use super::{
    VMDK_DESCRIPTOR_SECTORS, VMDK_WRITE_GRAIN_SECTORS, WriteOptions, primary_name, sector_u32,
};
use crate::disk::block::{Block, Blocker};
use crate::disk::{CreateRequest, DiskWriter, Extent, WriteReport};
use crate::error::{Error, ErrorKind, Result};
use crate::io::output::OutputSet;

/// Grains compressed together: 128 grains = 8 MiB of input per batch.
pub(super) const VMDK_BATCH_GRAINS: usize = 128;
/// Grain table size in sectors (512 four-byte entries).
const VMDK_GT_SECTORS: u64 = 4;
/// Bytes of a grain marker before the compressed data: LBA (8) and size (4).
const VMDK_GRAIN_MARKER_BYTES: usize = 12;

/// Writes a streamOptimized VMDK front to back.
pub(super) struct StreamWriter {
    out: BufWriter<File>,
    /// Sectors written so far.
    pos: u64,
    header: SparseHeader,
    blocker: Blocker,
    grain_bytes: usize,
    level: u32,
    /// Up to [`VMDK_BATCH_GRAINS`] grains waiting for compression, and their indexes.
    batch: Vec<u8>,
    batch_index: Vec<u64>,
    gt: Vec<u32>,
    gt_index: u64,
    gt_dirty: bool,
    gd: Vec<u32>,
}

impl StreamWriter {
    pub fn new(req: &CreateRequest<'_>, opts: &WriteOptions, out: &mut OutputSet) -> Result<Self> {
        let grain = VMDK_WRITE_GRAIN_SECTORS;
        let header = SparseHeader {
            version: 3,
            flags: VMDK_FLAG_NL_DETECT | VMDK_FLAG_COMPRESSED | VMDK_FLAG_MARKERS,
            capacity: opts.capacity,
            grain_sectors: grain,
            descriptor_offset: 1,
            descriptor_sectors: VMDK_DESCRIPTOR_SECTORS,
            rgd_offset: 0,
            gd_offset: VMDK_GD_AT_END,
            // Header and descriptor padded to one grain, as VMware's exports do.
            overhead: grain,
            compress_algorithm: VMDK_COMPRESS_DEFLATE,
        };
        let gd_len = usize::try_from(header.gd_entries())
            .map_err(|_| Error::unsupported("grain directory too large"))?;
        let file = out.create_primary()?;
        let descriptor = opts.descriptor(req, "SPARSE", &primary_name(out));
        let grain_bytes = usize::try_from(grain * VMDK_SECTOR).expect("64 KiB");
        let mut writer = Self {
            out: BufWriter::with_capacity(1 << 20, file),
            pos: 0,
            header,
            blocker: Blocker::new(grain_bytes),
            grain_bytes,
            level: opts.compression_level,
            batch: Vec::with_capacity(VMDK_BATCH_GRAINS * grain_bytes),
            batch_index: Vec::with_capacity(VMDK_BATCH_GRAINS),
            gt: vec![0; VMDK_GTES_PER_GT as usize],
            gt_index: 0,
            gt_dirty: false,
            gd: vec![0; gd_len],
        };
        writer.write_head(&descriptor)?;
        Ok(writer)
    }

    fn write_head(&mut self, descriptor: &str) -> Result<()> {
        let mut head =
            vec![0u8; usize::try_from(self.header.overhead * VMDK_SECTOR).expect("64 KiB")];
        head[..512].copy_from_slice(&self.header.to_bytes());
        let desc_end = 512 + descriptor.len();
        if descriptor.len()
            > usize::try_from(VMDK_DESCRIPTOR_SECTORS * VMDK_SECTOR).expect("10 KiB")
        {
            return Err(Error::invalid_input(
                "VMDK descriptor does not fit in 20 sectors",
            ));
        }
        head[512..desc_end].copy_from_slice(descriptor.as_bytes());
        self.write_sectors(&head)
    }

    /// Writes whole sectors and advances `pos`.
    fn write_sectors(&mut self, bytes: &[u8]) -> Result<()> {
        debug_assert_eq!(bytes.len() % 512, 0);
        self.out.write_all(bytes)?;
        self.pos += bytes.len() as u64 / VMDK_SECTOR;
        Ok(())
    }

    fn take_block(&mut self, block: Block<'_>) -> Result<()> {
        let Block::Data { index, bytes } = block else {
            return Ok(());
        };
        self.batch.extend_from_slice(bytes);
        self.batch_index.push(index);
        if self.batch_index.len() == VMDK_BATCH_GRAINS {
            self.flush_batch()?;
        }
        Ok(())
    }

    /// Compresses the batch on all cores, then writes the grains in disk order.
    fn flush_batch(&mut self) -> Result<()> {
        let level = Compression::new(self.level);
        let grain_sectors = self.header.grain_sectors;
        let compressed: Vec<Result<Vec<u8>>> = self
            .batch
            .par_chunks(self.grain_bytes)
            .zip(self.batch_index.par_iter())
            .map_init(
                || Compress::new(level, true),
                |c, (grain, &index)| compress_grain(c, index * grain_sectors, grain),
            )
            .collect();
        let indexes = std::mem::take(&mut self.batch_index);
        for (grain, index) in compressed.into_iter().zip(&indexes) {
            self.place_grain(*index, &grain?)?;
        }
        self.batch_index = indexes;
        self.batch_index.clear();
        self.batch.clear();
        Ok(())
    }

    fn place_grain(&mut self, index: u64, bytes: &[u8]) -> Result<()> {
        let per_gt = u64::from(VMDK_GTES_PER_GT);
        if index / per_gt != self.gt_index {
            self.flush_gt()?;
            self.gt_index = index / per_gt;
        }
        let slot = usize::try_from(index % per_gt).expect("below 512");
        self.gt[slot] = sector_u32(self.pos)?;
        self.gt_dirty = true;
        self.write_sectors(bytes)
    }

    /// Writes the GT marker and the current grain table, recording it in the directory.
    fn flush_gt(&mut self) -> Result<()> {
        if !self.gt_dirty {
            return Ok(());
        }
        self.write_sectors(&Marker::metadata_sector(VMDK_GT_SECTORS, VMDK_MARKER_GT))?;
        let slot = usize::try_from(self.gt_index).expect("GD index fits: the GD is in memory");
        self.gd[slot] = sector_u32(self.pos)?;
        let bytes: Vec<u8> = self.gt.iter().flat_map(|e| e.to_le_bytes()).collect();
        self.write_sectors(&bytes)?;
        self.gt.fill(0);
        self.gt_dirty = false;
        Ok(())
    }

    /// GD marker + directory, footer marker + footer, end-of-stream marker.
    fn write_tail(&mut self) -> Result<()> {
        let mut gd: Vec<u8> = self.gd.iter().flat_map(|e| e.to_le_bytes()).collect();
        gd.resize(gd.len().next_multiple_of(512).max(512), 0);
        let gd_sectors = gd.len() as u64 / VMDK_SECTOR;
        self.write_sectors(&Marker::metadata_sector(gd_sectors, VMDK_MARKER_GD))?;
        let mut footer = self.header;
        footer.gd_offset = self.pos;
        self.write_sectors(&gd)?;
        self.write_sectors(&Marker::metadata_sector(1, VMDK_MARKER_FOOTER))?;
        self.write_sectors(&footer.to_bytes())?;
        self.write_sectors(&[0u8; 512])
    }
}

/// One grain as stored: marker (LBA, compressed size), zlib stream, zero padding to a sector.
fn compress_grain(c: &mut Compress, lba: u64, grain: &[u8]) -> Result<Vec<u8>> {
    c.reset();
    // Deflate's worst case is ~0.03% larger than its input plus a few bytes of framing.
    let mut out = Vec::with_capacity(VMDK_GRAIN_MARKER_BYTES + grain.len() + grain.len() / 64 + 64);
    out.extend_from_slice(&lba.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    // zlib-rs may need more than one call to flush its pending output; grow and repeat.
    loop {
        let consumed = usize::try_from(c.total_in()).expect("at most one grain");
        if out.capacity() - out.len() < 1024 {
            out.reserve(grain.len() / 4 + 1024);
        }
        let status = c
            .compress_vec(&grain[consumed..], &mut out, FlushCompress::Finish)
            .map_err(|e| Error::new(ErrorKind::Io, e))?;
        if status == Status::StreamEnd {
            break;
        }
    }
    let size = u32::try_from(out.len() - VMDK_GRAIN_MARKER_BYTES).expect("below the grain bound");
    out[8..12].copy_from_slice(&size.to_le_bytes());
    out.resize(out.len().next_multiple_of(512), 0);
    Ok(out)
}

impl DiskWriter for StreamWriter {
    fn write_extent(&mut self, extent: Extent<'_>) -> Result<()> {
        let mut blocker = std::mem::replace(&mut self.blocker, Blocker::new(0));
        let result = blocker.push(extent, &mut |b| self.take_block(b));
        self.blocker = blocker;
        result
    }

    fn finish(mut self: Box<Self>) -> Result<WriteReport> {
        let mut blocker = std::mem::replace(&mut self.blocker, Blocker::new(0));
        blocker.finish(&mut |b| self.take_block(b))?;
        self.flush_batch()?;
        self.flush_gt()?;
        self.write_tail()?;
        self.out.flush()?;
        Ok(WriteReport {
            virtual_size: self.header.capacity * VMDK_SECTOR,
        })
    }
}

//! Opening and walking a VHDX: every structure is validated before the first extent.

use super::bat::{BatCursor, BatGeometry, BlockMap};
use super::metadata::{VHDX_METADATA_TABLE_SIZE, VhdxMetadata};
use super::region::Region;
use super::{bat, header, region};
use crate::disk::{DiskFormat, DiskReader, Extent, ImageInfo, MAX_EXTENT_BYTES};
use crate::error::Result;
use crate::io::{Source, read_exact_at};

use super::MIB;
use super::error::VhdxError;

pub(in crate::disk) fn open(src: Source) -> Result<Box<dyn DiskReader>> {
    let file_len = src.len();
    if file_len < MIB {
        return Err(VhdxError::Truncated { file_len }.into());
    }
    let mut ident = [0u8; 8];
    read_exact_at(&*src, &mut ident, 0, "VHDX file type identifier")?;
    header::check_identifier(&ident)?;
    let (current, header_offset) = header::read_headers(&*src)?;
    if !current.log_guid.is_nil() {
        return Err(VhdxError::LogNotEmpty {
            offset: header_offset,
            log_guid: current.log_guid,
        }
        .into());
    }
    let regions = region::read_region_tables(&*src, file_len)?;
    let table_len =
        usize::try_from(regions.metadata.length.min(MIB)).unwrap_or(VHDX_METADATA_TABLE_SIZE);
    let mut meta_bytes = vec![0u8; table_len];
    read_exact_at(
        &*src,
        &mut meta_bytes,
        regions.metadata.offset,
        "VHDX metadata region",
    )?;
    let meta = VhdxMetadata::parse(&meta_bytes, regions.metadata.offset)?;
    let geometry = BatGeometry::new(meta.virtual_size, meta.block_size, meta.logical_sector_size);
    let needed = geometry.total_entries * 8;
    if regions.bat.length < needed {
        let (offset, length) = (regions.bat.offset, regions.bat.length);
        return Err(VhdxError::BatTooSmall {
            offset,
            length,
            needed,
        }
        .into());
    }
    let log = Region {
        offset: current.log_offset,
        length: u64::from(current.log_length),
    };
    let reserved = [
        Region {
            offset: 0,
            length: MIB,
        },
        log,
        regions.bat,
        regions.metadata,
    ];
    let summary = bat::validate(&*src, &geometry, regions.bat, meta.virtual_size, &reserved)?;
    let subformat = if meta.leave_blocks_allocated {
        "fixed"
    } else {
        "dynamic"
    };
    let info = ImageInfo::new(DiskFormat::Vhdx, meta.virtual_size)
        .detail("block_size", meta.block_size)
        .detail("logical_sector_size", meta.logical_sector_size)
        .detail("physical_sector_size", meta.physical_sector_size)
        .detail("log_size", current.log_length)
        .detail(
            "allocated_bytes",
            summary.present_blocks.saturating_mul(meta.block_size),
        )
        .detail("disk_id", meta.disk_id);
    let info = ImageInfo {
        subformat: Some(subformat.to_string()),
        ..info
    };
    Ok(Box::new(VhdxReader {
        bat: BatCursor::new(regions.bat, &geometry),
        src,
        geometry,
        virtual_size: meta.virtual_size,
        pos: 0,
        buf: Vec::new(),
        info,
    }))
}

/// Yields a validated VHDX disk block by block.
struct VhdxReader {
    src: Source,
    geometry: BatGeometry,
    bat: BatCursor,
    virtual_size: u64,
    pos: u64,
    buf: Vec<u8>,
    info: ImageInfo,
}

impl VhdxReader {
    fn map(&mut self, block: u64) -> Result<BlockMap> {
        let index = self.geometry.payload_entry(block);
        Ok(bat::block_map(self.bat.get(&*self.src, index)?))
    }

    /// Bytes from `pos` to the end of the run of blocks mapped like `first`.
    fn run_len(&mut self, first: BlockMap) -> Result<u64> {
        let bs = self.geometry.block_size;
        let mut block = self.pos / bs + 1;
        while block < self.geometry.data_blocks && self.map(block)? == first {
            block += 1;
        }
        Ok((block * bs).min(self.virtual_size) - self.pos)
    }
}

impl DiskReader for VhdxReader {
    fn virtual_size(&self) -> u64 {
        self.virtual_size
    }

    fn next_extent(&mut self) -> Result<Option<Extent<'_>>> {
        if self.pos >= self.virtual_size {
            return Ok(None);
        }
        let bs = self.geometry.block_size;
        let block = self.pos / bs;
        let map = self.map(block)?;
        let offset = match map {
            BlockMap::Data(offset) => offset,
            BlockMap::Zero | BlockMap::Unallocated => {
                let len = self.run_len(map)?;
                self.pos += len;
                let extent = if map == BlockMap::Zero {
                    Extent::Zero(len)
                } else {
                    Extent::Unallocated(len)
                };
                return Ok(Some(extent));
            }
        };
        let within = self.pos - block * bs;
        let block_end = ((block + 1) * bs).min(self.virtual_size);
        let len = (block_end - self.pos).min(MAX_EXTENT_BYTES as u64);
        let len = usize::try_from(len).expect("bounded by MAX_EXTENT_BYTES");
        self.buf.resize(len, 0);
        read_exact_at(
            &*self.src,
            &mut self.buf,
            offset + within,
            "VHDX payload block",
        )?;
        self.pos += len as u64;
        Ok(Some(Extent::Data(&self.buf)))
    }

    fn info(&self) -> ImageInfo {
        self.info.clone()
    }
}

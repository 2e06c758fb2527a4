//! Opening and walking a VHDX: every structure is validated before the first extent.

use super::bat::{BatCursor, BatGeometry, BlockMap};
use super::metadata::{VHDX_METADATA_TABLE_SIZE, VhdxMetadata};
use super::region::Region;
use super::{bat, header, region};
use crate::disk::blockmap::{BlockMapReader, BlockState, BlockTable};
use crate::disk::{DiskFormat, DiskReader, ImageInfo};
use crate::error::Result;
use crate::io::{ReadAt, Source, read_exact_at};

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
    let table = VhdxTable {
        bat: BatCursor::new(regions.bat, &geometry),
        geometry,
    };
    let block_size = geometry.block_size;
    Ok(Box::new(BlockMapReader::new(
        src,
        table,
        block_size,
        "VHDX payload block",
        info,
    )))
}

/// The BAT as a block table, read through a window.
struct VhdxTable {
    geometry: BatGeometry,
    bat: BatCursor,
}

impl BlockTable for VhdxTable {
    fn block(&mut self, src: &dyn ReadAt, index: u64) -> Result<BlockState> {
        let entry = self.geometry.payload_entry(index);
        Ok(match bat::block_map(self.bat.get(src, entry)?) {
            BlockMap::Data(offset) => BlockState::Stored(offset),
            BlockMap::Zero => BlockState::Zero,
            BlockMap::Unallocated => BlockState::Unallocated,
        })
    }
}

//! VDI images (VirtualBox Virtual Disk Image, header version 1.1, as VirtualBox's
//! `src/VBox/Storage/VDI.cpp` and qemu's `block/vdi.c` read it).
//!
//! Supported: normal ("dynamic", type 1) and fixed ("static" in qemu-img, type 2) images,
//! read and written.
//! - Writer options: `subformat=dynamic|fixed|static` and qemu-img's `static=on|off`.
//! - Layout written: header sector at 0 (version 1.1, the 0x190-byte "1.1 plus" header
//!   VirtualBox writes), block map at 512 (as qemu-img), block data from the next 4 KiB
//!   boundary, 1 MiB blocks. A dynamic image stores only blocks holding a non-zero byte, in
//!   disk order; the others are "free" (0xFFFFFFFF), as qemu and VirtualBox write them. A
//!   static image maps block *i* to data block *i*. Zero 4 KiB pieces inside stored blocks
//!   are left as holes, so even a static image is sparse on disk. Both UUIDs VirtualBox
//!   requires (creation and modification) are derived from the build context; the linkage
//!   and parent UUIDs are null.
//! - The virtual size is rounded up to whole 512-byte sectors (qemu refuses other sizes).
//! - Memory: the writer keeps the block map (4 bytes per block) and one block; the reader
//!   keeps the block map and one extent buffer.
//!
//! The reader maps "free" blocks to unallocated runs and "zero" blocks (0xFFFFFFFE) to zero
//! runs. Refused: undo and differencing images (types 3 and 4) and any image naming a
//! parent, extra per-block data, block sizes that are not a power of two from 512 B to
//! 256 MiB, a map that overlaps the data or lies outside the file, too few blocks for the
//! disk size, block entries past the block count or the end of the file, and two entries
//! naming the same data block.

use std::os::unix::fs::FileExt;

use zerocopy::byteorder::{LittleEndian, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::block::{Block, Blocker};
use super::blockmap::{BlockMapReader, BlockState, BlockTable, Stored, first_overlap};
use super::{
    CreateRequest, DiskFormat, DiskReader, DiskWriter, Extent, ImageInfo, KvOptions, WriteReport,
};
use crate::error::{Error, ErrorKind, Result};
use crate::io::output::OutputSet;
use crate::io::sparse_out::SparseOut;
use crate::io::table::{self, TableAt};
use crate::io::{ReadAt, Source, read_exact_at};

/// The `-o` keys the vdi writer accepts.
pub(super) const OPTION_KEYS: &[&str] = &["subformat", "static"];

/// Image signature at offset 0x40.
const VDI_SIGNATURE: u32 = 0xbeda_107f;
/// Header version 1.1.
const VDI_VERSION: u32 = 0x0001_0001;
/// Bytes before the header proper: file info text, signature, version.
const VDI_PREHEADER_SIZE: u32 = 0x48;
/// Size of a version 1 header without the LCHS geometry (qemu writes this).
const VDI_HEADER_V1_SIZE: u32 = 0x180;
/// Size of the version 1 "plus" header with the LCHS geometry (VirtualBox writes this).
const VDI_HEADER_V1PLUS_SIZE: u32 = 0x190;
/// Block map entry of a block not stored in the image.
const VDI_BLOCK_FREE: u32 = u32::MAX;
/// Block map entry of a block that reads as zeros.
const VDI_BLOCK_ZERO: u32 = u32::MAX - 1;
/// Block size written (VirtualBox's default, the only one qemu reads).
const VDI_BLOCK_SIZE: u32 = 1 << 20;
/// Where the writer puts the block map.
const VDI_MAP_OFFSET: u64 = 512;
/// Alignment of the data area written.
const VDI_DATA_ALIGN: u64 = 4096;
/// Block sizes the reader takes.
const VDI_BLOCK_SIZE_RANGE: std::ops::RangeInclusive<u32> = 512..=(256 << 20);
/// Most blocks the writer creates: qemu's `VDI_BLOCKS_IN_IMAGE_MAX`.
const VDI_MAX_BLOCKS: u64 = 0x3fff_ffff;
/// Image type codes.
const VDI_TYPE_NORMAL: u32 = 1;
const VDI_TYPE_FIXED: u32 = 2;
/// Text at the start of the file (VirtualBox ignores it; some tools sniff it).
const VDI_FILE_INFO: &[u8] = b"<<< Oracle VM VirtualBox Disk Image >>>\n";

/// Why a VDI image was rejected.
#[remain::sorted]
#[derive(Debug, thiserror::Error)]
enum VdiError {
    #[error(
        "VDI block size {block_size} at {offset:#x} is not a power of two from 512 B to 256 MiB"
    )]
    BadBlockSize { offset: u64, block_size: u32 },
    #[error("VDI header size {header_size:#x} at {offset:#x} is not from 0x180 to 0x1b8")]
    BadHeaderSize { offset: u64, header_size: u32 },
    #[error("VDI image type {image_type} at {offset:#x} is not 1 (dynamic) or 2 (fixed)")]
    BadImageType { offset: u64, image_type: u32 },
    #[error("no VDI signature 0xbeda107f at 0x40 (found {found:#010x})")]
    BadSignature { found: u32 },
    #[error("VDI header version {version:#010x} at 0x44 is not 1.x")]
    BadVersion { version: u32 },
    #[error(
        "VDI block map entry {index} at {entry_offset:#x} names data block {entry}, past the {blocks} blocks of the image"
    )]
    BlockIndexTooLarge {
        index: u64,
        entry_offset: u64,
        entry: u32,
        blocks: u32,
    },
    #[error(
        "VDI block map entry {index} at {entry_offset:#x} points to data at {data_offset:#x} that ends past the end of the file ({file_size:#x})"
    )]
    BlockPastEnd {
        index: u64,
        entry_offset: u64,
        data_offset: u64,
        file_size: u64,
    },
    #[error(
        "VDI block map entries {first} and {second} both name data block {entry} (overlapping blocks)"
    )]
    BlocksOverlap { first: u64, second: u64, entry: u32 },
    #[error("VDI image type {image_type} at {offset:#x} ({what}) needs a parent image")]
    Differencing {
        offset: u64,
        image_type: u32,
        what: &'static str,
    },
    #[error("VDI extra block data of {block_extra} bytes at 0x17c is not supported")]
    ExtraBlockData { block_extra: u32 },
    #[error(
        "VDI block map at {offset_blocks:#x} ({blocks} entries) overlaps the header or the data area at {offset_data:#x}"
    )]
    MapOverlapsData {
        offset_blocks: u64,
        offset_data: u64,
        blocks: u32,
    },
    #[error("VDI {what} at {offset:#x} ({len} bytes) lies outside the file ({file_size:#x} bytes)")]
    OutsideFile {
        what: &'static str,
        offset: u64,
        len: u64,
        file_size: u64,
    },
    #[error(
        "VDI at 0x170 has {blocks} blocks of {block_size} bytes, too few for its disk size {disk_size}"
    )]
    TooFewBlocks {
        blocks: u32,
        block_size: u32,
        disk_size: u64,
    },
}

impl From<VdiError> for Error {
    fn from(e: VdiError) -> Self {
        let kind = match e {
            VdiError::Differencing { .. } | VdiError::ExtraBlockData { .. } => {
                ErrorKind::Unsupported
            }
            _ => ErrorKind::InvalidImage,
        };
        Error::new(kind, e)
    }
}

/// The header sector as stored: 512 bytes, little-endian.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawHeader {
    file_info: [u8; 64],
    signature: U32<LittleEndian>,
    version: U32<LittleEndian>,
    header_size: U32<LittleEndian>,
    image_type: U32<LittleEndian>,
    image_flags: U32<LittleEndian>,
    comment: [u8; 256],
    offset_blocks: U32<LittleEndian>,
    offset_data: U32<LittleEndian>,
    legacy_geometry: [U32<LittleEndian>; 3],
    legacy_sector_size: U32<LittleEndian>,
    unused1: U32<LittleEndian>,
    disk_size: U64<LittleEndian>,
    block_size: U32<LittleEndian>,
    block_extra: U32<LittleEndian>,
    blocks: U32<LittleEndian>,
    blocks_allocated: U32<LittleEndian>,
    uuid_create: [u8; 16],
    uuid_modify: [u8; 16],
    uuid_linkage: [u8; 16],
    uuid_parent: [u8; 16],
    lchs_geometry: [U32<LittleEndian>; 3],
    lchs_sector_size: U32<LittleEndian>,
    reserved: [u8; 40],
}

/// A validated header.
#[derive(Debug, Clone, PartialEq, Eq)]
struct VdiHeader {
    fixed: bool,
    version: u32,
    offset_blocks: u32,
    offset_data: u32,
    disk_size: u64,
    block_size: u32,
    blocks: u32,
    blocks_allocated: u32,
    uuid_create: [u8; 16],
    uuid_modify: [u8; 16],
}

impl VdiHeader {
    fn parse(bytes: &[u8; 512]) -> Result<Self, VdiError> {
        let raw = RawHeader::ref_from_bytes(bytes).expect("buffer is 512 bytes");
        if raw.signature.get() != VDI_SIGNATURE {
            return Err(VdiError::BadSignature {
                found: raw.signature.get(),
            });
        }
        let version = raw.version.get();
        if version >> 16 != 1 {
            return Err(VdiError::BadVersion { version });
        }
        let header_size = raw.header_size.get();
        if !(VDI_HEADER_V1_SIZE..=512 - VDI_PREHEADER_SIZE).contains(&header_size) {
            return Err(VdiError::BadHeaderSize {
                offset: 0x48,
                header_size,
            });
        }
        let fixed = parse_type(raw)?;
        // Everything below is sized by the block size: check it first.
        let block_size = raw.block_size.get();
        if !block_size.is_power_of_two() || !VDI_BLOCK_SIZE_RANGE.contains(&block_size) {
            return Err(VdiError::BadBlockSize {
                offset: 0x178,
                block_size,
            });
        }
        if raw.block_extra.get() != 0 {
            return Err(VdiError::ExtraBlockData {
                block_extra: raw.block_extra.get(),
            });
        }
        let (disk_size, blocks) = (raw.disk_size.get(), raw.blocks.get());
        if u64::from(blocks) * u64::from(block_size) < disk_size {
            return Err(VdiError::TooFewBlocks {
                blocks,
                block_size,
                disk_size,
            });
        }
        let (offset_blocks, offset_data) = (raw.offset_blocks.get(), raw.offset_data.get());
        let map_end = u64::from(offset_blocks) + u64::from(blocks) * 4;
        if u64::from(offset_blocks) < u64::from(VDI_PREHEADER_SIZE + header_size)
            || u64::from(offset_data) < map_end
        {
            let (offset_blocks, offset_data) = (u64::from(offset_blocks), u64::from(offset_data));
            return Err(VdiError::MapOverlapsData {
                offset_blocks,
                offset_data,
                blocks,
            });
        }
        Ok(Self {
            fixed,
            version,
            offset_blocks,
            offset_data,
            disk_size,
            block_size,
            blocks,
            blocks_allocated: raw.blocks_allocated.get(),
            uuid_create: raw.uuid_create,
            uuid_modify: raw.uuid_modify,
        })
    }

    fn to_bytes(&self) -> [u8; 512] {
        let mut file_info = [0u8; 64];
        file_info[..VDI_FILE_INFO.len()].copy_from_slice(VDI_FILE_INFO);
        let raw = RawHeader {
            file_info,
            signature: VDI_SIGNATURE.into(),
            version: VDI_VERSION.into(),
            header_size: VDI_HEADER_V1PLUS_SIZE.into(),
            image_type: if self.fixed {
                VDI_TYPE_FIXED
            } else {
                VDI_TYPE_NORMAL
            }
            .into(),
            image_flags: 0.into(),
            comment: [0; 256],
            offset_blocks: self.offset_blocks.into(),
            offset_data: self.offset_data.into(),
            // Geometry "not calculated", as VirtualBox and qemu write it.
            legacy_geometry: [0.into(); 3],
            legacy_sector_size: 512.into(),
            unused1: 0.into(),
            disk_size: self.disk_size.into(),
            block_size: self.block_size.into(),
            block_extra: 0.into(),
            blocks: self.blocks.into(),
            blocks_allocated: self.blocks_allocated.into(),
            uuid_create: self.uuid_create,
            uuid_modify: self.uuid_modify,
            uuid_linkage: [0; 16],
            uuid_parent: [0; 16],
            lchs_geometry: [0.into(); 3],
            lchs_sector_size: 512.into(),
            reserved: [0; 40],
        };
        let mut bytes = [0u8; 512];
        bytes.copy_from_slice(raw.as_bytes());
        bytes
    }
}

/// Image type 1 or 2, with no parent named; `true` for fixed.
fn parse_type(raw: &RawHeader) -> Result<bool, VdiError> {
    let image_type = raw.image_type.get();
    let fixed = match image_type {
        VDI_TYPE_NORMAL => false,
        VDI_TYPE_FIXED => true,
        3 | 4 => {
            return Err(VdiError::Differencing {
                offset: 0x4c,
                image_type,
                what: "undo or differencing",
            });
        }
        _ => {
            return Err(VdiError::BadImageType {
                offset: 0x4c,
                image_type,
            });
        }
    };
    if raw.uuid_linkage != [0; 16] || raw.uuid_parent != [0; 16] {
        return Err(VdiError::Differencing {
            offset: 0x1a8,
            image_type,
            what: "linkage or parent UUID set",
        });
    }
    Ok(fixed)
}

pub(super) fn open(src: Source) -> Result<Box<dyn DiskReader>> {
    let file_size = src.len();
    let mut bytes = [0u8; 512];
    read_exact_at(&*src, &mut bytes, 0, "VDI header")?;
    let header = VdiHeader::parse(&bytes)?;
    let needed = header.disk_size.div_ceil(u64::from(header.block_size));
    // The map must lie in the file, which bounds the allocation by the file size.
    let (offset, len) = (u64::from(header.offset_blocks), needed * 4);
    if offset.checked_add(len).is_none_or(|end| end > file_size) {
        return Err(VdiError::OutsideFile {
            what: "block map",
            offset,
            len,
            file_size,
        }
        .into());
    }
    let map = read_map(&*src, offset, needed)?;
    check_map(&map, &header, file_size)?;
    let info = vdi_info(&header, &map);
    let block_size = u64::from(header.block_size);
    let table = VdiMap {
        map,
        offset_data: u64::from(header.offset_data),
        block_size,
    };
    Ok(Box::new(BlockMapReader::new(
        src,
        table,
        block_size,
        "VDI block data",
        info,
    )))
}

fn read_map(file: &dyn ReadAt, offset: u64, entries: u64) -> Result<Vec<u32>> {
    let at = TableAt {
        what: "VDI block map",
        offset,
        entries,
        max_bytes: VDI_MAX_BLOCKS * 4,
    };
    table::load(file, at, u32::from_le_bytes)
}

/// Every stored block lies in the file and no two entries share a data block.
fn check_map(map: &[u32], header: &VdiHeader, file_size: u64) -> Result<()> {
    let block_size = u64::from(header.block_size);
    let mut stored = Vec::new();
    for (index, &entry) in (0u64..).zip(map) {
        if entry >= VDI_BLOCK_ZERO {
            continue;
        }
        let entry_offset = u64::from(header.offset_blocks) + index * 4;
        if entry >= header.blocks {
            return Err(VdiError::BlockIndexTooLarge {
                index,
                entry_offset,
                entry,
                blocks: header.blocks,
            }
            .into());
        }
        let data_offset = u64::from(header.offset_data) + u64::from(entry) * block_size;
        if data_offset + block_size > file_size {
            return Err(VdiError::BlockPastEnd {
                index,
                entry_offset,
                data_offset,
                file_size,
            }
            .into());
        }
        stored.push(Stored {
            start: data_offset,
            end: data_offset + block_size,
            index,
        });
    }
    if let Some((first, second)) = first_overlap(&mut stored) {
        return Err(VdiError::BlocksOverlap {
            first: first.index,
            second: second.index,
            entry: map[usize::try_from(first.index).expect("an index of `map`")],
        }
        .into());
    }
    Ok(())
}

/// The block map as a block table: stored blocks follow the data offset in map order.
struct VdiMap {
    map: Vec<u32>,
    offset_data: u64,
    block_size: u64,
}

impl BlockTable for VdiMap {
    fn block(&mut self, _src: &dyn ReadAt, index: u64) -> Result<BlockState> {
        let entry = usize::try_from(index)
            .ok()
            .and_then(|i| self.map.get(i))
            .copied()
            .unwrap_or(VDI_BLOCK_FREE);
        Ok(match entry {
            VDI_BLOCK_ZERO => BlockState::Zero,
            VDI_BLOCK_FREE => BlockState::Unallocated,
            stored => BlockState::Stored(self.offset_data + u64::from(stored) * self.block_size),
        })
    }
}

/// What `kiln info` shows of a VDI.
fn vdi_info(header: &VdiHeader, map: &[u32]) -> ImageInfo {
    let h = header;
    let stored = map.iter().filter(|&&e| e < VDI_BLOCK_ZERO).count();
    let zero = map.iter().filter(|&&e| e == VDI_BLOCK_ZERO).count();
    let mut info = ImageInfo::new(DiskFormat::Vdi, h.disk_size)
        .detail(
            "image_type",
            if h.fixed { "fixed (2)" } else { "normal (1)" },
        )
        .detail(
            "version",
            format!("{}.{}", h.version >> 16, h.version & 0xffff),
        )
        .detail("block_size", h.block_size)
        .detail("allocated_blocks", format!("{stored} of {}", map.len()))
        .detail("zero_blocks", zero)
        .detail(
            "allocated_data_bytes",
            stored as u64 * u64::from(h.block_size),
        )
        .detail("block_map_offset", format!("{:#x}", h.offset_blocks))
        .detail("data_offset", format!("{:#x}", h.offset_data))
        .detail("uuid", uuid::Uuid::from_bytes_le(h.uuid_create))
        .detail(
            "modification_uuid",
            uuid::Uuid::from_bytes_le(h.uuid_modify),
        );
    info.subformat = Some(if h.fixed { "static" } else { "dynamic" }.to_string());
    info
}

fn parse_static(kv: &KvOptions) -> Result<bool> {
    let subformat = kv.get_choice("subformat", &["dynamic", "fixed", "static"])?;
    let from_sub = subformat.map(|s| s != "dynamic");
    match (from_sub, kv.get_bool("static")?) {
        (Some(a), Some(b)) if a != b => Err(Error::invalid_input(format!(
            "vdi options subformat={} and static={} contradict each other",
            subformat.unwrap_or_default(),
            if b { "on" } else { "off" }
        ))),
        (a, b) => Ok(a.or(b).unwrap_or(false)),
    }
}

pub(super) fn create(req: &CreateRequest<'_>, out: &mut OutputSet) -> Result<Box<dyn DiskWriter>> {
    let fixed = parse_static(req.options)?;
    let too_large = || Error::invalid_input(format!("VDI cannot hold {} bytes", req.virtual_size));
    let disk_size = req
        .virtual_size
        .checked_next_multiple_of(512)
        .ok_or_else(too_large)?;
    let blocks = disk_size.div_ceil(u64::from(VDI_BLOCK_SIZE));
    if blocks > VDI_MAX_BLOCKS {
        return Err(too_large());
    }
    let blocks_u32 = u32::try_from(blocks).map_err(|_| too_large())?;
    let offset_data = (VDI_MAP_OFFSET + blocks * 4).next_multiple_of(VDI_DATA_ALIGN);
    let header = VdiHeader {
        fixed,
        version: VDI_VERSION,
        offset_blocks: u32::try_from(VDI_MAP_OFFSET).map_err(|_| too_large())?,
        offset_data: u32::try_from(offset_data).map_err(|_| too_large())?,
        disk_size,
        block_size: VDI_BLOCK_SIZE,
        blocks: blocks_u32,
        blocks_allocated: if fixed { blocks_u32 } else { 0 },
        uuid_create: req.ctx.uuid("vdi/image").to_bytes_le(),
        uuid_modify: req.ctx.uuid("vdi/modification").to_bytes_le(),
    };
    let map = if fixed {
        Vec::new()
    } else {
        vec![VDI_BLOCK_FREE; usize::try_from(blocks).map_err(|_| too_large())?]
    };
    let file = out.create_primary()?;
    let block_bytes = usize::try_from(VDI_BLOCK_SIZE).expect("1 MiB fits");
    Ok(Box::new(VdiWriter {
        out: SparseOut::new(file),
        blocker: Blocker::new(block_bytes),
        header,
        map,
    }))
}

/// Writes stored blocks in disk order; the header and map go on at the end.
struct VdiWriter {
    out: SparseOut,
    blocker: Blocker,
    header: VdiHeader,
    /// The dynamic image's map; empty for a fixed one (block i is data block i).
    map: Vec<u32>,
}

impl VdiWriter {
    fn take_block(&mut self, block: Block<'_>) -> Result<()> {
        let Block::Data { index, bytes } = block else {
            return Ok(());
        };
        let data_block = if self.header.fixed {
            index
        } else {
            let slot = usize::try_from(index)
                .ok()
                .and_then(|i| self.map.get_mut(i));
            let Some(slot) = slot else {
                return Err(Error::invalid_input("data past the end of the VDI disk"));
            };
            *slot = self.header.blocks_allocated;
            self.header.blocks_allocated += 1;
            u64::from(*slot)
        };
        let offset = u64::from(self.header.offset_data) + data_block * u64::from(VDI_BLOCK_SIZE);
        self.out.write_sparse(offset, bytes)
    }

    fn write_map(&self) -> Result<()> {
        let file = self.out.file();
        if !self.header.fixed {
            let bytes: Vec<u8> = self.map.iter().flat_map(|e| e.to_le_bytes()).collect();
            file.write_all_at(&bytes, VDI_MAP_OFFSET)?;
            return Ok(());
        }
        // Block i is data block i; write the identity map in bounded pieces.
        let mut offset = VDI_MAP_OFFSET;
        let mut next: u32 = 0;
        while next < self.header.blocks {
            let end = self.header.blocks.min(next.saturating_add(1 << 16));
            let bytes: Vec<u8> = (next..end).flat_map(u32::to_le_bytes).collect();
            file.write_all_at(&bytes, offset)?;
            offset += bytes.len() as u64;
            next = end;
        }
        Ok(())
    }
}

impl DiskWriter for VdiWriter {
    fn write_extent(&mut self, extent: Extent<'_>) -> Result<()> {
        Blocker::push_via(self, |w| &mut w.blocker, extent, Self::take_block)
    }

    fn finish(mut self: Box<Self>) -> Result<WriteReport> {
        Blocker::finish_via(&mut *self, |w| &mut w.blocker, Self::take_block)?;
        self.out.flush()?;
        let end = u64::from(self.header.offset_data)
            + u64::from(self.header.blocks_allocated) * u64::from(VDI_BLOCK_SIZE);
        // Stored blocks whose tails are zero were left short; the file covers whole blocks.
        self.out.file().set_len(end)?;
        self.write_map()?;
        self.out.file().write_all_at(&self.header.to_bytes(), 0)?;
        Ok(WriteReport::new(self.header.disk_size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> VdiHeader {
        VdiHeader {
            fixed: false,
            version: VDI_VERSION,
            offset_blocks: 512,
            offset_data: 4096,
            disk_size: 64 << 20,
            block_size: 1 << 20,
            blocks: 64,
            blocks_allocated: 3,
            uuid_create: [1; 16],
            uuid_modify: [2; 16],
        }
    }

    #[test]
    fn header_round_trips() {
        assert_eq!(VdiHeader::parse(&sample().to_bytes()).unwrap(), sample());
    }

    #[test]
    fn fields_sit_where_qemu_reads_them() {
        let bytes = sample().to_bytes();
        assert_eq!(&bytes[0x170..0x178], &(64u64 << 20).to_le_bytes());
        assert_eq!(&bytes[0x154..0x158], &512u32.to_le_bytes());
    }

    #[test]
    fn header_with_absurd_block_size_is_rejected() {
        let header = VdiHeader {
            block_size: 1 << 31,
            ..sample()
        };
        assert!(matches!(
            VdiHeader::parse(&header.to_bytes()),
            Err(VdiError::BadBlockSize { .. })
        ));
    }

    #[test]
    fn header_with_too_few_blocks_is_rejected() {
        let header = VdiHeader {
            blocks: 63,
            ..sample()
        };
        assert!(matches!(
            VdiHeader::parse(&header.to_bytes()),
            Err(VdiError::TooFewBlocks { .. })
        ));
    }

    #[test]
    fn map_overlapping_data_is_rejected() {
        let header = VdiHeader {
            offset_data: 600,
            ..sample()
        };
        assert!(matches!(
            VdiHeader::parse(&header.to_bytes()),
            Err(VdiError::MapOverlapsData { .. })
        ));
    }

    #[test]
    fn two_entries_naming_one_block_are_rejected() {
        let err = check_map(&[0, 0], &sample(), 64 << 20).unwrap_err();
        assert!(err.to_string().contains("overlapping"), "{err}");
    }

    #[test]
    fn static_on_and_dynamic_subformat_contradict() {
        assert!(parse_static(&KvOptions::parse("subformat=dynamic,static=on").unwrap()).is_err());
    }

    #[test]
    fn fixed_subformat_means_static() {
        assert!(parse_static(&KvOptions::parse("subformat=fixed").unwrap()).unwrap());
    }
}

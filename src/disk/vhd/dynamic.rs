//! Dynamic VHD: the dynamic disk header ("cxsparse"), the block allocation table and the
//! blocks (VHD spec v1.0, "Dynamic Disk Header Format" and "Block Allocation Table and Data
//! Blocks").

use std::fs::File;
use std::os::unix::fs::FileExt;

use zerocopy::byteorder::{BigEndian, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::footer::{VHD_FOOTER_SIZE, VHD_VERSION, VhdFooter, has_cookie, ones_complement_sum};
use super::{VhdError, footer_details};
use crate::disk::block::{Block, Blocker};
use crate::disk::blockmap::{BlockMapReader, BlockState, BlockTable, Stored, first_overlap};
use crate::disk::{DiskFormat, DiskReader, DiskWriter, Extent, ImageInfo, WriteReport};
use crate::error::{Error, Result};
use crate::io::sparse_out::SparseOut;
use crate::io::table::{self, TableAt};
use crate::io::{ReadAt, Source, read_exact_at};

/// "cxsparse": the dynamic header cookie.
const VHD_HEADER_COOKIE: [u8; 8] = *b"cxsparse";
/// Size of the dynamic disk header.
const VHD_HEADER_SIZE: u64 = 1024;
/// Where kiln (and qemu) put the BAT: after the footer copy and the header.
const VHD_BAT_OFFSET: u64 = VHD_FOOTER_SIZE + VHD_HEADER_SIZE;
/// A BAT entry for a block that is not allocated (reads as zeros).
const VHD_BAT_UNUSED: u32 = u32::MAX;
/// Smallest and largest block size kiln reads.
const VHD_BLOCK_SIZE_RANGE: std::ops::RangeInclusive<u32> = 512..=(256 << 20);
/// Bytes of the sector bitmap before each block's data, padded to whole sectors.
fn bitmap_size(block_size: u32) -> u64 {
    (u64::from(block_size) / 512)
        .div_ceil(8)
        .next_multiple_of(512)
}

/// The dynamic disk header as stored: 1024 bytes, big-endian.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawHeader {
    cookie: [u8; 8],
    data_offset: U64<BigEndian>,
    table_offset: U64<BigEndian>,
    version: U32<BigEndian>,
    max_table_entries: U32<BigEndian>,
    block_size: U32<BigEndian>,
    checksum: U32<BigEndian>,
    parent_uuid: [u8; 16],
    parent_timestamp: U32<BigEndian>,
    reserved1: U32<BigEndian>,
    parent_name: [u8; 512],
    parent_locators: [u8; 192],
    reserved2: [u8; 256],
}

/// A validated dynamic header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct VhdHeader {
    table_offset: u64,
    max_table_entries: u32,
    block_size: u32,
}

fn header_checksum(bytes: &[u8; 1024]) -> u32 {
    ones_complement_sum(bytes, 36)
}

impl VhdHeader {
    fn parse(bytes: &[u8; 1024], offset: u64) -> Result<Self, VhdError> {
        let raw = RawHeader::ref_from_bytes(bytes).expect("buffer is 1024 bytes");
        if raw.cookie != VHD_HEADER_COOKIE {
            return Err(VhdError::BadHeaderCookie { offset });
        }
        let computed = header_checksum(bytes);
        let found = raw.checksum.get();
        if found != computed {
            return Err(VhdError::BadChecksum {
                what: "dynamic header",
                offset,
                found,
                computed,
            });
        }
        if raw.version.get() >> 16 != 1 {
            return Err(VhdError::BadVersion {
                offset,
                version: raw.version.get(),
            });
        }
        // Everything below is sized by the block size: check it first.
        let block_size = raw.block_size.get();
        if !block_size.is_power_of_two() || !VHD_BLOCK_SIZE_RANGE.contains(&block_size) {
            return Err(VhdError::BadBlockSize {
                offset: offset + 32,
                block_size,
            });
        }
        Ok(Self {
            table_offset: raw.table_offset.get(),
            max_table_entries: raw.max_table_entries.get(),
            block_size,
        })
    }

    fn to_bytes(self) -> [u8; 1024] {
        let raw = RawHeader {
            cookie: VHD_HEADER_COOKIE,
            // qemu's note: the spec says 0xFFFFFFFF, Microsoft's tools expect all 64 bits set.
            data_offset: u64::MAX.into(),
            table_offset: self.table_offset.into(),
            version: VHD_VERSION.into(),
            max_table_entries: self.max_table_entries.into(),
            block_size: self.block_size.into(),
            checksum: 0.into(),
            parent_uuid: [0; 16],
            parent_timestamp: 0.into(),
            reserved1: 0.into(),
            parent_name: [0; 512],
            parent_locators: [0; 192],
            reserved2: [0; 256],
        };
        let mut bytes = [0u8; 1024];
        bytes.copy_from_slice(raw.as_bytes());
        let checksum = header_checksum(&bytes);
        bytes[36..40].copy_from_slice(&checksum.to_be_bytes());
        bytes
    }
}

pub(super) fn open(
    src: Source,
    footer: &VhdFooter,
    footer_offset: u64,
) -> Result<Box<dyn DiskReader>> {
    check_footer_copy(&*src, footer, footer_offset)?;
    let header_offset = footer.data_offset;
    let header = read_header(&*src, header_offset, footer_offset)?;
    let bat = read_bat(&*src, &header, footer, footer_offset)?;
    let layout = Layout {
        header_offset,
        header,
        footer_offset,
    };
    check_blocks(&bat, &layout)?;
    let block_size = u64::from(header.block_size);
    let info = dynamic_info(footer, block_size, &bat);
    let table = VhdBat {
        bat,
        bitmap_size: bitmap_size(header.block_size),
    };
    Ok(Box::new(BlockMapReader::new(
        src,
        table,
        block_size,
        "VHD block data",
        info,
    )))
}

/// True when `len` bytes at `offset` end before the footer.
fn fits(offset: u64, len: u64, footer_offset: u64) -> bool {
    offset
        .checked_add(len)
        .is_some_and(|end| end <= footer_offset)
}

fn read_header(file: &dyn ReadAt, header_offset: u64, footer_offset: u64) -> Result<VhdHeader> {
    if header_offset < VHD_FOOTER_SIZE || !fits(header_offset, VHD_HEADER_SIZE, footer_offset) {
        return Err(VhdError::OutsideFile {
            what: "dynamic header",
            offset: header_offset,
            len: VHD_HEADER_SIZE,
            file_size: footer_offset + VHD_FOOTER_SIZE,
        }
        .into());
    }
    let mut bytes = [0u8; 1024];
    read_exact_at(file, &mut bytes, header_offset, "VHD dynamic header")?;
    Ok(VhdHeader::parse(&bytes, header_offset)?)
}

/// Reads the BAT entries the disk size needs (more are ignored). They must lie in the file,
/// so the allocation is bounded by the file size.
fn read_bat(
    file: &dyn ReadAt,
    header: &VhdHeader,
    footer: &VhdFooter,
    footer_offset: u64,
) -> Result<Vec<u32>> {
    let needed = footer.current_size.div_ceil(u64::from(header.block_size));
    if u64::from(header.max_table_entries) < needed {
        return Err(VhdError::TableTooSmall {
            offset: header.table_offset,
            entries: header.max_table_entries,
            needed,
        }
        .into());
    }
    // The whole table the header declares must lie in the file, not only the entries this
    // disk size uses: qemu refuses an oversized Max Table Entries too, and a reader that
    // trusts the field would size a table by it (issue 15: 0x7fffffff in an 8 MiB file).
    let declared = u64::from(header.max_table_entries) * 4;
    if !fits(header.table_offset, declared, footer_offset) {
        return Err(VhdError::OutsideFile {
            what: "BAT",
            offset: header.table_offset,
            len: declared,
            file_size: footer_offset + VHD_FOOTER_SIZE,
        }
        .into());
    }
    let (offset, len) = (header.table_offset, needed * 4);
    if !fits(offset, len, footer_offset) {
        let file_size = footer_offset + VHD_FOOTER_SIZE;
        return Err(VhdError::OutsideFile {
            what: "BAT",
            offset,
            len,
            file_size,
        }
        .into());
    }
    let at = TableAt {
        what: "VHD BAT",
        offset,
        entries: needed,
        max_bytes: u64::from(u32::MAX) * 4,
    };
    table::load(file, at, u32::from_be_bytes)
}

/// The footer copy at offset 0 must be a valid footer describing the same disk.
fn check_footer_copy(file: &dyn ReadAt, footer: &VhdFooter, footer_offset: u64) -> Result<()> {
    let mut bytes = [0u8; 512];
    read_exact_at(file, &mut bytes, 0, "VHD footer copy")?;
    if !has_cookie(&bytes) {
        return Err(VhdError::NoFooter { offset: 0 }.into());
    }
    let copy = VhdFooter::parse(&bytes, 0)?;
    let field = if copy.disk_type != footer.disk_type {
        "disk type"
    } else if copy.current_size != footer.current_size {
        "current size"
    } else if copy.data_offset != footer.data_offset {
        "data offset"
    } else {
        return Ok(());
    };
    Err(VhdError::FooterCopyMismatch {
        offset: footer_offset,
        field,
    }
    .into())
}

/// Where the metadata lies, for the block checks.
struct Layout {
    header_offset: u64,
    header: VhdHeader,
    footer_offset: u64,
}

/// Every allocated block lies inside the file, clear of the metadata and of other blocks.
fn check_blocks(bat: &[u32], layout: &Layout) -> Result<()> {
    let block_len = bitmap_size(layout.header.block_size) + u64::from(layout.header.block_size);
    let bat_end = layout.header.table_offset + bat.len() as u64 * 4;
    let metadata = [
        (0, VHD_FOOTER_SIZE),
        (layout.header_offset, layout.header_offset + VHD_HEADER_SIZE),
        (layout.header.table_offset, bat_end),
    ];
    let mut stored = Vec::new();
    for (index, &entry) in (0u64..).zip(bat) {
        if entry == VHD_BAT_UNUSED {
            continue;
        }
        let block_offset = u64::from(entry) * 512;
        if block_offset + block_len > layout.footer_offset {
            let entry_offset = layout.header.table_offset + index * 4;
            let limit = layout.footer_offset;
            return Err(VhdError::BlockPastEnd {
                index,
                entry_offset,
                block_offset,
                limit,
            }
            .into());
        }
        if metadata
            .iter()
            .any(|&(start, end)| block_offset < end && start < block_offset + block_len)
        {
            return Err(VhdError::BlockOverlapsMetadata {
                index,
                block_offset,
            }
            .into());
        }
        stored.push(Stored {
            start: block_offset,
            end: block_offset + block_len,
            index,
        });
    }
    if let Some((first, second)) = first_overlap(&mut stored) {
        return Err(VhdError::BlocksOverlap {
            first: first.index,
            second: second.index,
            block_offset: second.start,
        }
        .into());
    }
    Ok(())
}

/// The BAT as a block table: a stored block's data follows its sector bitmap.
struct VhdBat {
    bat: Vec<u32>,
    bitmap_size: u64,
}

impl BlockTable for VhdBat {
    fn block(&mut self, _src: &dyn ReadAt, index: u64) -> Result<BlockState> {
        let entry = usize::try_from(index)
            .ok()
            .and_then(|i| self.bat.get(i))
            .copied()
            .unwrap_or(VHD_BAT_UNUSED);
        Ok(match entry {
            VHD_BAT_UNUSED => BlockState::Unallocated,
            sector => BlockState::Stored(u64::from(sector) * 512 + self.bitmap_size),
        })
    }
}

/// What `kiln info` shows of a dynamic VHD.
fn dynamic_info(footer: &VhdFooter, block_size: u64, bat: &[u32]) -> ImageInfo {
    let mut info = ImageInfo::new(DiskFormat::Vhd, footer.current_size);
    info.subformat = Some(footer.disk_type.name().to_string());
    let allocated = bat.iter().filter(|&&e| e != VHD_BAT_UNUSED).count() as u64;
    footer_details(info, footer)
        .detail("block_size", block_size)
        .detail("allocated_blocks", format!("{allocated} of {}", bat.len()))
        .detail("allocated_data_bytes", allocated * block_size)
}

/// Writes blocks in disk order after the BAT; tables and footers go on at the end.
pub(super) struct DynamicWriter {
    out: SparseOut,
    blocker: Blocker,
    footer: VhdFooter,
    block_size: u32,
    bitmap: Vec<u8>,
    bat: Vec<u32>,
    next_block: u64,
}

impl DynamicWriter {
    pub(super) fn new(file: File, footer: VhdFooter, block_size: u32) -> Result<Self> {
        let entries = footer.current_size.div_ceil(u64::from(block_size));
        let entries =
            usize::try_from(entries).map_err(|_| Error::invalid_input("VHD disk too large"))?;
        let bitmap = bitmap_size(block_size);
        // Blocks follow the BAT directly, as in qemu: the file is no larger than qemu's, and
        // holes inside blocks follow the file's own 4 KiB alignment (see `SparseOut`).
        let next_block = VHD_BAT_OFFSET + (entries as u64 * 4).next_multiple_of(512);
        let block_bytes =
            usize::try_from(block_size).map_err(|_| Error::invalid_input("VHD block too large"))?;
        Ok(Self {
            out: SparseOut::new(file),
            blocker: Blocker::new(block_bytes),
            footer,
            block_size,
            bitmap: vec![
                0xff;
                usize::try_from(bitmap).expect("bitmap of a block of at most 256 MiB")
            ],
            bat: vec![VHD_BAT_UNUSED; entries],
            next_block,
        })
    }

    fn take_block(&mut self, block: Block<'_>) -> Result<()> {
        let Block::Data { index, bytes } = block else {
            return Ok(());
        };
        let offset = self.next_block;
        let sector = u32::try_from(offset / 512).map_err(|_| {
            Error::invalid_input("VHD data would pass the 2 TiB a BAT entry can address")
        })?;
        let slot = usize::try_from(index)
            .ok()
            .and_then(|i| self.bat.get_mut(i));
        let Some(slot) = slot else {
            return Err(Error::invalid_input("data past the end of the VHD disk"));
        };
        *slot = sector;
        self.out.write(offset, &self.bitmap)?;
        self.out
            .write_sparse(offset + self.bitmap.len() as u64, bytes)?;
        self.next_block = offset + self.bitmap.len() as u64 + u64::from(self.block_size);
        Ok(())
    }

    fn write_tables(&mut self) -> Result<()> {
        let header = VhdHeader {
            table_offset: VHD_BAT_OFFSET,
            max_table_entries: u32::try_from(self.bat.len())
                .map_err(|_| Error::invalid_input("VHD disk too large"))?,
            block_size: self.block_size,
        };
        let mut bat_bytes: Vec<u8> = self.bat.iter().flat_map(|e| e.to_be_bytes()).collect();
        bat_bytes.resize(bat_bytes.len().next_multiple_of(512), 0xff);
        let footer = self.footer.to_bytes();
        let file = self.out.file();
        file.write_all_at(&footer, 0)?;
        file.write_all_at(&header.to_bytes(), VHD_FOOTER_SIZE)?;
        file.write_all_at(&bat_bytes, VHD_BAT_OFFSET)?;
        file.write_all_at(&footer, self.next_block)?;
        Ok(())
    }
}

impl DiskWriter for DynamicWriter {
    fn write_extent(&mut self, extent: Extent<'_>) -> Result<()> {
        Blocker::push_via(self, |w| &mut w.blocker, extent, Self::take_block)
    }

    fn finish(mut self: Box<Self>) -> Result<WriteReport> {
        Blocker::finish_via(&mut *self, |w| &mut w.blocker, Self::take_block)?;
        self.out.flush()?;
        self.write_tables()?;
        Ok(WriteReport::new(self.footer.current_size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> VhdHeader {
        VhdHeader {
            table_offset: 1536,
            max_table_entries: 33,
            block_size: 2 << 20,
        }
    }

    #[test]
    fn header_round_trips() {
        assert_eq!(
            VhdHeader::parse(&sample().to_bytes(), 512).unwrap(),
            sample()
        );
    }

    #[test]
    fn header_with_bad_checksum_is_rejected() {
        let mut bytes = sample().to_bytes();
        bytes[600] = 1;
        assert!(matches!(
            VhdHeader::parse(&bytes, 512),
            Err(VhdError::BadChecksum { offset: 512, .. })
        ));
    }

    #[test]
    fn header_with_absurd_block_size_is_rejected() {
        let header = VhdHeader {
            block_size: 1 << 31,
            ..sample()
        };
        assert!(matches!(
            VhdHeader::parse(&header.to_bytes(), 512),
            Err(VhdError::BadBlockSize { .. })
        ));
    }

    #[test]
    fn header_checksum_matches_qemu() {
        // qemu-img 10.0.2's header for a 64 MiB dynamic disk: 33 entries, 2 MiB blocks.
        let bytes = sample().to_bytes();
        assert_eq!(&bytes[36..40], &[0xff, 0xff, 0xf4, 0x56]);
    }

    #[test]
    fn bitmap_of_a_2_mib_block_is_one_sector() {
        assert_eq!(bitmap_size(2 << 20), 512);
    }

    #[test]
    fn max_table_entries_past_the_file_is_refused_where_it_is_declared() {
        // issue 15, defect 3: 0x7fffffff entries (an 8 GiB BAT) in a small file passed.
        let header = VhdHeader {
            max_table_entries: 0x7fff_ffff,
            ..sample()
        };
        let footer = VhdFooter {
            disk_type: super::super::footer::DiskType::Dynamic,
            data_offset: 512,
            timestamp: 0,
            creator_app: *b"kiln",
            creator_version: 0,
            original_size: 64 << 20,
            current_size: 64 << 20,
            geometry: super::super::footer::Geometry::for_sectors(131_072),
            unique_id: [0; 16],
        };
        let file = vec![0u8; 8 << 20];
        let err = read_bat(&file, &header, &footer, (8 << 20) - 512).unwrap_err();
        assert!(
            err.to_string()
                .contains("BAT at 0x600 (8589934588 bytes) lies outside the file"),
            "{err}"
        );
    }

    #[test]
    fn overlapping_blocks_are_rejected() {
        let layout = Layout {
            header_offset: 512,
            header: sample(),
            footer_offset: 64 << 20,
        };
        let err = check_blocks(&[8, 9], &layout).unwrap_err();
        assert!(err.to_string().contains("overlap"), "{err}");
    }
}

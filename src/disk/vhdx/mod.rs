//! VHDX images, after Microsoft's "[MS-VHDX]: Virtual Hard Disk v2 (VHDX) File Format"
//! v20160714 (version 1 headers).
//!
//! Layout kiln writes (all offsets 1 MiB aligned, as the spec requires):
//! `0` file type identifier (`vhdxfile`, creator `kiln <version>` in UTF-16LE), `64 KiB` and
//! `128 KiB` the two headers (sequence numbers 1 and 2, CRC-32C), `192 KiB` and `256 KiB`
//! the two region tables, `1 MiB` an empty log (LogGuid nil, so no reader replays it;
//! `-o log_size=`, default 1 MiB, left as a hole), then the metadata region (1 MiB), the
//! BAT, and the payload blocks.
//!
//! Subformats: `dynamic` (default) stores only blocks holding a non-zero byte, in disk
//! order, as PAYLOAD_BLOCK_FULLY_PRESENT; other blocks are NOT_PRESENT (ZERO with
//! `-o block_state_zero=on`). `fixed` sets LeaveBlocksAllocated and maps every block
//! contiguously. In both, zero 4 KiB runs inside a block are left as file holes, never
//! written. Options: `subformat`, `block_size` (1 MiB to 256 MiB, power of two, default
//! 32 MiB), `log_size`, `block_state_zero`. Logical sectors are 512 bytes, physical 4096.
//!
//! The writer does not gather whole blocks: a dynamic block is allocated when its first
//! non-zero 4 KiB piece arrives (so blocks are still laid out in disk order, and the output
//! is the same for the same input), and every piece is written straight at its final offset
//! through [`SparseOut`] in pieces of at most 1 MiB; SparseOut skips zero pieces (the
//! engine's `is_zero`) and writes long runs from the caller's buffer without copying them.
//! Writer memory: SparseOut's 1 MiB coalescing buffer for short runs and at most 1 MiB of
//! BAT entries (8 bytes per block) before they are written; the BAT is written in order as
//! blocks are passed.
//!
//! Reader: validates the identifier, both headers (the valid one with the higher sequence
//! number wins; one bad copy falls back to the other), both region tables (the first valid
//! one is used), the metadata (block size first) and every BAT entry (state, block inside
//! the file, no overlap with another block or the metadata) before yielding anything.
//! Memory: one 512 KiB BAT window, a bitmap of one bit per MiB of file, and one data buffer
//! of at most [`MAX_EXTENT_BYTES`].
//!
//! Refused: a non-empty log (LogGuid not nil: kiln does not replay logs, and guessing is
//! worse than refusing), differencing disks (HasParent, parent locator, PARTIALLY_PRESENT
//! blocks), unknown required regions or metadata items, virtual sizes above the spec's
//! 64 TiB. Blocks in the NOT_PRESENT, UNDEFINED, UNMAPPED and ZERO states read as zeros.
//!
//! CRC-32C is computed by the small table-driven function here (no crate).

mod bat;
mod header;
mod metadata;
mod region;

use std::os::unix::fs::FileExt;

use uuid::Uuid;

use self::bat::{BatCursor, BatGeometry, BatWriter, BlockMap};
use self::header::{VHDX_HEADER_OFFSETS, VhdxHeader};
use self::metadata::{
    VHDX_MAX_BLOCK_SIZE, VHDX_METADATA_TABLE_SIZE, VHDX_MIN_BLOCK_SIZE, VhdxMetadata,
};
use self::region::{Region, VHDX_REGION_TABLE_OFFSETS, VhdxRegions};
use super::block::is_zero;
use super::{
    CreateRequest, DiskFormat, DiskReader, DiskWriter, Extent, ImageInfo, MAX_EXTENT_BYTES,
    WriteReport,
};
use crate::error::{Error, ErrorKind, Result};
use crate::io::output::OutputSet;
use crate::io::sparse_out::{SPARSE_CHUNK, SparseOut};
use crate::io::{Source, read_exact_at};

/// The `-o` keys the vhdx writer accepts.
pub(super) const OPTION_KEYS: &[&str] =
    &["subformat", "block_size", "log_size", "block_state_zero"];

/// One mebibyte: the unit of every VHDX region and block offset.
const MIB: u64 = 1 << 20;
/// Largest virtual size the spec allows (64 TiB).
const VHDX_MAX_VIRTUAL_SIZE: u64 = 64 << 40;
/// Default payload block size.
const VHDX_DEFAULT_BLOCK_SIZE: u64 = 32 * MIB;
/// Data is handed on in pieces cut at multiples of this, so no piece crosses a payload
/// block (block sizes are multiples of 1 MiB); `SparseOut` writes at most this much at once.
const VHDX_WRITE_PIECE: usize = 1 << 20;
/// Default (and smallest) log size.
const VHDX_DEFAULT_LOG_SIZE: u64 = MIB;
/// Largest log size kiln writes.
const VHDX_MAX_LOG_SIZE: u64 = 1 << 30;
/// Logical sector size kiln writes.
const VHDX_LOGICAL_SECTOR: u32 = 512;
/// Physical sector size kiln writes (what Hyper-V uses).
const VHDX_PHYSICAL_SECTOR: u32 = 4096;

/// What is wrong with a VHDX image.
#[remain::sorted]
#[derive(Debug, thiserror::Error)]
pub enum VhdxError {
    /// A BAT entry has a state the spec does not define.
    #[error("VHDX BAT entry at {entry_offset:#x} has undefined state {state}")]
    BadBatState {
        /// Offset of the entry.
        entry_offset: u64,
        /// The state bits.
        state: u64,
    },
    /// The block size is not a power of two from 1 MiB to 256 MiB.
    #[error(
        "VHDX block size {block_size} in the metadata at {offset:#x} is not a power of two from 1 MiB to 256 MiB"
    )]
    BadBlockSize {
        /// The block size.
        block_size: u64,
        /// Offset of the metadata region.
        offset: u64,
    },
    /// A structure's CRC-32C does not match.
    #[error("VHDX {what} checksum at {offset:#x} is {found:#010x}, computed {computed:#010x}")]
    BadChecksum {
        /// Which structure.
        what: &'static str,
        /// Its offset.
        offset: u64,
        /// Stored value.
        found: u32,
        /// Computed value.
        computed: u32,
    },
    /// A metadata item has the wrong length.
    #[error("VHDX {what} item in the metadata at {offset:#x} is {length} bytes long")]
    BadItemLength {
        /// Which item.
        what: &'static str,
        /// Offset of the metadata region.
        offset: u64,
        /// Its length.
        length: usize,
    },
    /// A sector size is neither 512 nor 4096.
    #[error("VHDX {what} {size} in the metadata at {offset:#x} is neither 512 nor 4096")]
    BadSectorSize {
        /// Which sector size.
        what: &'static str,
        /// The value.
        size: u32,
        /// Offset of the metadata region.
        offset: u64,
    },
    /// A signature is wrong.
    #[error("VHDX {what} at {offset:#x} has a wrong signature")]
    BadSignature {
        /// Which structure.
        what: &'static str,
        /// Its offset.
        offset: u64,
    },
    /// The header version is not 1.
    #[error("VHDX header at {offset:#x} has version {version}; only version 1 is defined")]
    BadVersion {
        /// Offset of the header.
        offset: u64,
        /// The version.
        version: u16,
    },
    /// The virtual size is zero, not a sector multiple or above 64 TiB.
    #[error(
        "VHDX virtual size {size} in the metadata at {offset:#x} is zero, not a multiple of the sector size, or above 64 TiB"
    )]
    BadVirtualSize {
        /// The size.
        size: u64,
        /// Offset of the metadata region.
        offset: u64,
    },
    /// The BAT region is shorter than the disk needs.
    #[error("VHDX BAT region at {offset:#x} is {length} bytes; the disk needs {needed}")]
    BatTooSmall {
        /// Offset of the region.
        offset: u64,
        /// Its length.
        length: u64,
        /// Bytes needed.
        needed: u64,
    },
    /// A payload block lies past the end of the file.
    #[error(
        "VHDX BAT entry at {entry_offset:#x} maps a block at {offset:#x}, past the end of the file ({file_len:#x} bytes)"
    )]
    BlockOutsideFile {
        /// Offset of the entry.
        entry_offset: u64,
        /// File offset of the block.
        offset: u64,
        /// File length.
        file_len: u64,
    },
    /// A payload block overlaps another block or the metadata.
    #[error(
        "VHDX BAT entry at {entry_offset:#x} maps a block at {offset:#x} that overlaps another block or metadata"
    )]
    BlockOverlap {
        /// Offset of the entry.
        entry_offset: u64,
        /// File offset of the block.
        offset: u64,
    },
    /// A differencing disk.
    #[error("VHDX at {offset:#x} is a differencing disk; kiln reads only fixed and dynamic VHDX")]
    Differencing {
        /// Offset of the item that says so.
        offset: u64,
    },
    /// A region or item appears twice.
    #[error("VHDX {what} at {offset:#x} appears twice")]
    DuplicateEntry {
        /// Which entry.
        what: &'static str,
        /// Offset of the second entry.
        offset: u64,
    },
    /// A metadata item lies outside its region.
    #[error("VHDX {what} at {offset:#x} ({length} bytes) lies outside the metadata region")]
    ItemOutsideRegion {
        /// Which item.
        what: &'static str,
        /// Its offset.
        offset: u64,
        /// Its length.
        length: u32,
    },
    /// The log holds entries to replay.
    #[error(
        "VHDX header at {offset:#x} has a non-empty log (LogGuid {log_guid}); kiln does not replay logs and refuses to guess: open the disk once in Hyper-V or qemu to replay it"
    )]
    LogNotEmpty {
        /// Offset of the current header.
        offset: u64,
        /// The log id.
        log_guid: Uuid,
    },
    /// A required region or item is missing.
    #[error("VHDX {what} is missing")]
    MissingEntry {
        /// Which one.
        what: &'static str,
    },
    /// Neither header is valid.
    #[error("neither VHDX header (at 0x10000 and 0x20000) is valid")]
    NoValidHeader {
        /// Why the first one is not.
        #[source]
        source: Box<VhdxError>,
    },
    /// Neither region table is valid.
    #[error("neither VHDX region table (at 0x30000 and 0x40000) is valid")]
    NoValidRegionTable {
        /// Why the first one is not.
        #[source]
        source: Box<VhdxError>,
    },
    /// A block only partly present (differencing disks).
    #[error("VHDX BAT entry at {entry_offset:#x} is PARTIALLY_PRESENT, which needs a parent disk")]
    PartiallyPresent {
        /// Offset of the entry.
        entry_offset: u64,
    },
    /// A region is not 1 MiB aligned, empty, or inside the header area.
    #[error(
        "VHDX {what} at {offset:#x} ({length} bytes) is not 1 MiB aligned and sized, or overlaps the header area"
    )]
    RegionMisaligned {
        /// Which region.
        what: &'static str,
        /// Its offset.
        offset: u64,
        /// Its length.
        length: u64,
    },
    /// A region lies past the end of the file.
    #[error(
        "VHDX {what} at {offset:#x} ({length} bytes) lies past the end of the file ({file_len:#x} bytes)"
    )]
    RegionOutsideFile {
        /// Which region.
        what: &'static str,
        /// Its offset.
        offset: u64,
        /// Its length.
        length: u64,
        /// File length.
        file_len: u64,
    },
    /// A region too long for the table's 32-bit length.
    #[error("VHDX {what} of {length} bytes does not fit a region table entry")]
    RegionTooLong {
        /// Which region.
        what: &'static str,
        /// Its length.
        length: u64,
    },
    /// A table claims more entries than allowed.
    #[error("VHDX {what} at {offset:#x} claims {count} entries; at most 2047 are allowed")]
    TooManyEntries {
        /// Which table.
        what: &'static str,
        /// Its offset.
        offset: u64,
        /// The count.
        count: u32,
    },
    /// The file is too short to hold the header area.
    #[error("VHDX file is {file_len:#x} bytes, shorter than the 1 MiB header area")]
    Truncated {
        /// File length.
        file_len: u64,
    },
    /// A required metadata item kiln does not know.
    #[error("VHDX metadata entry at {offset:#x} is a required item kiln does not know ({guid})")]
    UnknownRequiredItem {
        /// The item id.
        guid: Uuid,
        /// Offset of the entry.
        offset: u64,
    },
    /// A required region kiln does not know.
    #[error(
        "VHDX region table entry at {offset:#x} is a required region kiln does not know ({guid})"
    )]
    UnknownRequiredRegion {
        /// The region id.
        guid: Uuid,
        /// Offset of the entry.
        offset: u64,
    },
}

impl From<VhdxError> for Error {
    fn from(e: VhdxError) -> Self {
        let kind = match e {
            VhdxError::Differencing { .. }
            | VhdxError::PartiallyPresent { .. }
            | VhdxError::UnknownRequiredItem { .. }
            | VhdxError::UnknownRequiredRegion { .. } => ErrorKind::Unsupported,
            VhdxError::LogNotEmpty { .. } => ErrorKind::Refused,
            _ => ErrorKind::InvalidImage,
        };
        Error::new(kind, e)
    }
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), one table entry per byte value.
const CRC32C_TABLE: [u32; 256] = crc32c_table();

const fn crc32c_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i: u32 = 0;
    while i < 256 {
        let mut c = i;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i as usize] = c;
        i += 1;
    }
    table
}

fn crc32c_update(mut crc: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        crc = CRC32C_TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// CRC-32C of `bytes`.
#[cfg(test)]
fn crc32c(bytes: &[u8]) -> u32 {
    !crc32c_update(!0, bytes)
}

/// MS-VHDX 2.2.2 and 2.2.3: the CRC-32C of a structure with its checksum field (bytes 4..8)
/// taken as zero.
fn checksum_with_zero_field(buf: &[u8]) -> u32 {
    let (head, rest) = buf.split_at(buf.len().min(4));
    let crc = crc32c_update(!0, head);
    let crc = crc32c_update(crc, &[0; 4][..rest.len().min(4)]);
    !crc32c_update(crc, rest.get(4..).unwrap_or(&[]))
}

pub(super) fn open(src: Source) -> Result<Box<dyn DiskReader>> {
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

pub(super) fn create(req: &CreateRequest<'_>, out: &mut OutputSet) -> Result<Box<dyn DiskWriter>> {
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
    fn crc32c_matches_the_known_vector() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn checksum_field_is_taken_as_zero() {
        let mut buf = *b"abcdXXXXefgh";
        let with_field = checksum_with_zero_field(&buf);
        buf[4..8].fill(0);
        assert_eq!(with_field, crc32c(&buf));
    }

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

    #[test]
    fn dynamic_block_starting_with_zeros_is_allocated_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("z.vhdx");
        let options = crate::disk::KvOptions::parse("block_size=1M").unwrap();
        let ctx = crate::BuildContext::from_env("z");
        let req = CreateRequest {
            format: DiskFormat::Vhdx,
            virtual_size: 2 * MIB,
            options: &options,
            compress: false,
            ctx: &ctx,
        };
        let mut out = OutputSet::new(&path, false);
        let mut w = create(&req, &mut out).unwrap();
        let mut data = vec![0u8; 2 * 1024 * 1024];
        data[(1 << 20) + 5000] = 9;
        w.write_extent(Extent::Data(&data)).unwrap();
        w.finish().unwrap();
        out.commit().unwrap();
        let f = std::fs::File::open(&path).unwrap();
        // Header area, log, metadata, BAT, then the one block (the second of the disk).
        assert_eq!(f.metadata().unwrap().len(), 5 * MIB);
        let mut byte = [0u8; 1];
        f.read_exact_at(&mut byte, 4 * MIB + 5000).unwrap();
        assert_eq!(byte, [9]);
    }

    #[test]
    fn data_past_the_virtual_size_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let options = crate::disk::KvOptions::default();
        let ctx = crate::BuildContext::from_env("past");
        let req = CreateRequest {
            format: DiskFormat::Vhdx,
            virtual_size: MIB,
            options: &options,
            compress: false,
            ctx: &ctx,
        };
        let mut out = OutputSet::new(&dir.path().join("past.vhdx"), false);
        let mut w = create(&req, &mut out).unwrap();
        w.write_extent(Extent::Zero(MIB - 512)).unwrap();
        let err = w.write_extent(Extent::Data(&[1; 1024])).unwrap_err();
        assert!(err.to_string().contains("past the virtual size"), "{err}");
    }

    /// Writes `extents` as a VHDX with 1 MiB blocks, reads it back, returns the bytes.
    fn round_trip(extents: &[(u64, u8)], fixed: bool) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.vhdx");
        let sub = if fixed { "fixed" } else { "dynamic" };
        let options =
            crate::disk::KvOptions::parse(&format!("subformat={sub},block_size=1M")).unwrap();
        let ctx = crate::BuildContext::from_env("p");
        let size: u64 = extents.iter().map(|(sectors, _)| sectors * 512).sum();
        let req = CreateRequest {
            format: DiskFormat::Vhdx,
            virtual_size: size,
            options: &options,
            compress: false,
            ctx: &ctx,
        };
        let mut out = OutputSet::new(&path, false);
        let mut w = create(&req, &mut out).unwrap();
        for &(sectors, kind) in extents {
            let len = sectors * 512;
            match kind {
                0 => w.write_extent(Extent::Unallocated(len)).unwrap(),
                1 => w.write_extent(Extent::Zero(len)).unwrap(),
                b => w
                    .write_extent(Extent::Data(&vec![b; usize::try_from(len).unwrap()]))
                    .unwrap(),
            }
        }
        w.finish().unwrap();
        out.commit().unwrap();
        let mut r = crate::disk::open(&path, &crate::disk::OpenOptions::default()).unwrap();
        let mut got = Vec::new();
        while let Some(e) = r.next_extent().unwrap() {
            match e {
                Extent::Data(bytes) => got.extend_from_slice(bytes),
                other => got.resize(got.len() + usize::try_from(other.len()).unwrap(), 0),
            }
        }
        got
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        #[test]
        fn random_extent_maps_round_trip(
            extents in proptest::collection::vec((1u64..3000, 0u8..4), 1..8),
            fixed in proptest::bool::ANY,
        ) {
            let expected: Vec<u8> = extents
                .iter()
                .flat_map(|&(sectors, kind)| {
                    let b = if kind < 2 { 0 } else { kind };
                    std::iter::repeat_n(b, usize::try_from(sectors * 512).unwrap())
                })
                .collect();
            proptest::prop_assert!(round_trip(&extents, fixed) == expected);
        }
    }
}

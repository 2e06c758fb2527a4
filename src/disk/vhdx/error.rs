//! What is wrong with a VHDX image, and how each failure folds into the crate error.

use uuid::Uuid;

use crate::error::{Error, ErrorKind};

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

//! Partition tables, read: MBR (with the protective MBR of GPT disks and the EBR chain of
//! logical partitions) and GPT (UEFI 2.10, chapter 5 "GUID Partition Table (GPT) Disk
//! Layout").
//!
//! [`read`] parses the table of a virtual disk's bytes. The bytes come from a [`ReadAt`] of
//! which only the first `readable` bytes may be available: a raw image is readable to its
//! end, an image in another format is read through its disk reader up to [`HEAD_BYTES`]
//! (see [`image`]). Structures past that bound are refused with a clear error, never guessed.
//!
//! Checked: both GPT headers' CRC-32s and that of the entry array, entry size and count
//! bounds (entries a multiple of 128 bytes, the array at most [`GPT_MAX_ARRAY_BYTES`]),
//! every partition inside the disk and the usable range, and no two partitions overlapping.
//! A disk whose primary GPT header or array is damaged is refused even when the backup is
//! intact (the error says so): kiln reads what the disk's firmware reads first and does not
//! repair. A damaged or missing backup only shows as [`BackupStatus::Damaged`]; it is
//! checked only when the whole disk is readable (raw images).
//!
//! GPT logical blocks of 512 and 4096 bytes are detected by where the header is found. MBR
//! sectors are 512 bytes. Partitions are numbered as Linux, sfdisk and parted number them:
//! GPT entry slot + 1; MBR primary slots 1-4, logical partitions from 5 in chain order.

mod gpt;
pub mod image;
mod mbr;
mod types;

use std::fmt;

use uuid::Uuid;

use crate::error::{Error, ErrorKind, Result};
use crate::io::{ReadAt, read_exact_at};

pub use types::PartitionType;

/// How much of a non-raw image is read to find its partition table (16 MiB): GPT entry
/// arrays and the EBRs of logical partitions must lie inside it.
pub const HEAD_BYTES: u64 = 16 << 20;
/// Largest GPT entry array kiln reads (1 MiB: 8192 entries of 128 bytes; the usual array
/// is 16 KiB).
pub const GPT_MAX_ARRAY_BYTES: u64 = 1 << 20;
/// Most logical partitions followed in an MBR extended partition.
pub const MBR_MAX_LOGICAL: u32 = 128;

/// Why a partition table was refused.
#[remain::sorted]
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    /// A GPT entry array lies (partly) outside the disk.
    #[error(
        "GPT header at offset {header:#x}: its entry array at {offset:#x} ({len} bytes) lies past the end of the {disk_size}-byte disk"
    )]
    ArrayPastEnd {
        /// Header offset.
        header: u64,
        /// Array offset.
        offset: u64,
        /// Array length.
        len: u64,
        /// Disk size.
        disk_size: u64,
    },
    /// The GPT entry array is larger than kiln reads.
    #[error(
        "GPT header at offset {header:#x} declares {count} entries of {entry_size} bytes; at most {max} bytes of entries are allowed"
    )]
    ArrayTooLarge {
        /// Header offset.
        header: u64,
        /// Entry count.
        count: u32,
        /// Entry size.
        entry_size: u32,
        /// Bound in bytes.
        max: u64,
    },
    /// The GPT entry array's CRC-32 does not match the header's.
    #[error(
        "GPT entry array at offset {offset:#x}: its header at {header:#x} records CRC-32 {found:#010x}, computed {computed:#010x}"
    )]
    BadArrayCrc {
        /// Header offset.
        header: u64,
        /// Array offset.
        offset: u64,
        /// CRC in the header.
        found: u32,
        /// CRC of the bytes.
        computed: u32,
    },
    /// An EBR lacks the 0x55AA signature.
    #[error("extended boot record at offset {offset:#x} lacks the 0x55AA signature")]
    BadEbrSignature {
        /// EBR offset.
        offset: u64,
    },
    /// The GPT entry size is not 128 x 2^n.
    #[error(
        "GPT header at offset {header:#x} declares entries of {entry_size} bytes; UEFI requires 128 x 2^n"
    )]
    BadEntrySize {
        /// Header offset.
        header: u64,
        /// Declared size.
        entry_size: u32,
    },
    /// The GPT header's CRC-32 does not match.
    #[error(
        "GPT header at offset {offset:#x} records CRC-32 {found:#010x}, computed {computed:#010x}{backup}"
    )]
    BadHeaderCrc {
        /// Header offset.
        offset: u64,
        /// Recorded CRC.
        found: u32,
        /// Computed CRC.
        computed: u32,
        /// What is known of the backup header, as a clause.
        backup: BackupNote,
    },
    /// The GPT header size is out of range.
    #[error(
        "GPT header at offset {offset:#x} declares {size} bytes; it must be 92 to {max} (one logical block)"
    )]
    BadHeaderSize {
        /// Header offset.
        offset: u64,
        /// Declared size.
        size: u32,
        /// One logical block.
        max: u64,
    },
    /// The GPT header's own LBA is not where it was read.
    #[error("GPT header at offset {offset:#x} says it is at LBA {found}, expected {expected}")]
    BadMyLba {
        /// Header offset.
        offset: u64,
        /// Recorded LBA.
        found: u64,
        /// Where it was read.
        expected: u64,
    },
    /// The GPT revision's major number is not 1.
    #[error("GPT header at offset {offset:#x} has revision {revision:#010x}; kiln reads 1.x")]
    BadRevision {
        /// Header offset.
        offset: u64,
        /// Revision.
        revision: u32,
    },
    /// The GPT usable range is reversed or past the disk.
    #[error(
        "GPT header at offset {offset:#x} declares usable LBAs {first}..={last}, outside the disk's {disk_lbas} blocks"
    )]
    BadUsableRange {
        /// Header offset.
        offset: u64,
        /// First usable LBA.
        first: u64,
        /// Last usable LBA.
        last: u64,
        /// Disk size in logical blocks.
        disk_lbas: u64,
    },
    /// A structure lies past what kiln reads of a non-raw image.
    #[error(
        "{what} at offset {offset:#x} lies past the first {readable} bytes kiln reads of a non-raw image; convert the image to raw first"
    )]
    BeyondHead {
        /// What was being read.
        what: &'static str,
        /// Offset.
        offset: u64,
        /// Bytes available.
        readable: u64,
    },
    /// The EBR chain does not move forward (a loop) or leaves the extended partition.
    #[error(
        "extended boot record at offset {offset:#x} links to offset {next:#x}, not forward inside the extended partition"
    )]
    EbrLoop {
        /// This EBR.
        offset: u64,
        /// The next one.
        next: u64,
    },
    /// The protective MBR announces a GPT that is not there.
    #[error(
        "protective MBR (type 0xEE) but no GPT header (\"EFI PART\") at offset 0x200 or 0x1000"
    )]
    MissingGpt,
    /// No GPT header where one must be.
    #[error("no GPT header (\"EFI PART\") at offset {offset:#x}")]
    NoHeader {
        /// Where it was looked for.
        offset: u64,
    },
    /// No partition has the requested number.
    #[error("no partition {index}; the table has {available}")]
    NoSuchPartition {
        /// Requested number.
        index: u32,
        /// The numbers that exist.
        available: String,
    },
    /// A logical partition lies outside its extended partition.
    #[error(
        "logical partition {index} (entry at offset {entry:#x}) spans bytes {start:#x}..{end:#x}, outside its extended partition {ext_start:#x}..{ext_end:#x}"
    )]
    OutsideExtended {
        /// Partition number.
        index: u32,
        /// Entry offset.
        entry: u64,
        /// Start byte.
        start: u64,
        /// End byte (exclusive).
        end: u64,
        /// Extended partition start byte.
        ext_start: u64,
        /// Extended partition end byte.
        ext_end: u64,
    },
    /// A partition lies outside the GPT usable range.
    #[error(
        "partition {index} (entry at offset {entry:#x}) spans LBAs {first}..={last}, outside the usable LBAs {first_usable}..={last_usable}"
    )]
    OutsideUsable {
        /// Partition number.
        index: u32,
        /// Entry offset.
        entry: u64,
        /// First LBA.
        first: u64,
        /// Last LBA.
        last: u64,
        /// First usable LBA.
        first_usable: u64,
        /// Last usable LBA.
        last_usable: u64,
    },
    /// Two partitions share bytes.
    #[error(
        "partitions {a} (entry at offset {a_entry:#x}, bytes {a_start:#x}..{a_end:#x}) and {b} (entry at offset {b_entry:#x}, bytes {b_start:#x}..{b_end:#x}) overlap"
    )]
    Overlap {
        /// First partition.
        a: u32,
        /// Its table entry's offset.
        a_entry: u64,
        /// Its start byte.
        a_start: u64,
        /// Its end byte.
        a_end: u64,
        /// Second partition.
        b: u32,
        /// Its table entry's offset.
        b_entry: u64,
        /// Its start byte.
        b_start: u64,
        /// Its end byte.
        b_end: u64,
    },
    /// A partition ends past the end of the disk.
    #[error(
        "partition {index} (entry at offset {entry:#x}) ends at byte {end:#x}, past the end of the {disk_size}-byte disk"
    )]
    PastEnd {
        /// Partition number.
        index: u32,
        /// Entry offset.
        entry: u64,
        /// End byte (exclusive).
        end: u64,
        /// Disk size.
        disk_size: u64,
    },
    /// A partition's last LBA is before its first, or it starts at LBA 0.
    #[error(
        "partition {index} (entry at offset {entry:#x}) spans LBAs {first}..={last}, which is empty or reversed"
    )]
    Reversed {
        /// Partition number.
        index: u32,
        /// Entry offset.
        entry: u64,
        /// First LBA.
        first: u64,
        /// Last LBA.
        last: u64,
    },
    /// The structure lies past the end of the disk.
    #[error("{what} at offset {offset:#x} lies past the end of the {disk_size}-byte disk")]
    StructurePastEnd {
        /// What was being read.
        what: &'static str,
        /// Offset.
        offset: u64,
        /// Disk size.
        disk_size: u64,
    },
    /// The EBR chain is longer than kiln follows.
    #[error("extended partition at offset {offset:#x} holds more than {max} logical partitions")]
    TooManyLogical {
        /// Extended partition offset.
        offset: u64,
        /// Bound.
        max: u32,
    },
    /// More than one extended partition in the MBR.
    #[error(
        "the MBR holds more than one extended partition (entries at {first:#x} and {second:#x})"
    )]
    TwoExtended {
        /// First entry offset.
        first: u64,
        /// Second entry offset.
        second: u64,
    },
}

impl From<PartitionError> for Error {
    fn from(e: PartitionError) -> Self {
        let kind = match e {
            PartitionError::NoSuchPartition { .. } => ErrorKind::InvalidInput,
            PartitionError::BeyondHead { .. } => ErrorKind::Unsupported,
            _ => ErrorKind::InvalidImage,
        };
        Error::new(kind, e)
    }
}

/// A clause on the state of the backup GPT header, appended to a primary-header error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupNote(pub Option<String>);

impl fmt::Display for BackupNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(note) => write!(f, "; {note}"),
            None => Ok(()),
        }
    }
}

/// The partitioning scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Master boot record (DOS) partitions.
    Mbr,
    /// GUID partition table.
    Gpt,
}

impl Scheme {
    /// `mbr` or `gpt`.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Mbr => "mbr",
            Scheme::Gpt => "gpt",
        }
    }
}

/// What kiln found of the backup GPT header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupStatus {
    /// Intact and consistent with the primary.
    Ok,
    /// Damaged, missing or inconsistent; the reason.
    Damaged(String),
    /// Not read: only the head of a non-raw image was read.
    NotChecked,
}

impl fmt::Display for BackupStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackupStatus::Ok => f.write_str("ok"),
            BackupStatus::Damaged(why) => write!(f, "damaged ({why})"),
            BackupStatus::NotChecked => f.write_str("not checked (image not raw)"),
        }
    }
}

/// One partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Number as Linux, sfdisk and parted show it (1-based).
    pub index: u32,
    /// First byte on the disk.
    pub start: u64,
    /// Length in bytes.
    pub size: u64,
    /// Type GUID or MBR type id.
    pub kind: PartitionType,
    /// GPT partition name (empty for MBR).
    pub label: String,
    /// GPT unique partition GUID.
    pub guid: Option<Uuid>,
    /// MBR active flag (0x80) or GPT "legacy BIOS bootable" attribute (bit 2).
    pub bootable: bool,
    /// Byte offset of the table entry that describes this partition.
    pub entry_offset: u64,
}

impl Partition {
    /// End byte (exclusive).
    pub fn end(&self) -> u64 {
        self.start + self.size
    }
}

/// A disk's partition table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionTable {
    /// MBR or GPT.
    pub scheme: Scheme,
    /// Bytes per logical block the table counts in.
    pub sector_size: u64,
    /// Size of the disk the table was read from.
    pub disk_size: u64,
    /// GPT disk GUID.
    pub disk_guid: Option<Uuid>,
    /// GPT backup header state (`None` for MBR).
    pub backup: Option<BackupStatus>,
    /// Partitions by number.
    pub partitions: Vec<Partition>,
}

impl PartitionTable {
    /// Partition `index`.
    ///
    /// # Errors
    /// [`PartitionError::NoSuchPartition`], listing the numbers that exist.
    pub fn get(&self, index: u32) -> Result<&Partition> {
        self.partitions
            .iter()
            .find(|p| p.index == index)
            .ok_or_else(|| {
                PartitionError::NoSuchPartition {
                    index,
                    available: self.describe_all(),
                }
                .into()
            })
    }

    /// The one Linux root partition: the only partition typed as a Linux root (any
    /// architecture), else the only one typed "Linux filesystem" (GPT) or 0x83 (MBR).
    ///
    /// # Errors
    /// None or several candidates; the message lists the partitions.
    pub fn linux_root(&self) -> Result<&Partition> {
        let roots: Vec<&Partition> = (self.partitions.iter())
            .filter(|p| p.kind.is_linux_root())
            .collect();
        let candidates = if roots.is_empty() {
            (self.partitions.iter())
                .filter(|p| p.kind.is_linux_data())
                .collect()
        } else {
            roots
        };
        match candidates.as_slice() {
            [one] => Ok(one),
            [] => Err(Error::invalid_input(format!(
                "no Linux root partition; name one ({})",
                self.describe_all()
            ))),
            _ => Err(Error::invalid_input(format!(
                "several Linux partitions; name one ({})",
                self.describe_all()
            ))),
        }
    }

    /// `1 (EFI System), 2 (Linux filesystem "root")` for messages.
    pub fn describe_all(&self) -> String {
        if self.partitions.is_empty() {
            return "no partitions".to_string();
        }
        let items: Vec<String> = (self.partitions.iter())
            .map(|p| {
                let mut s = format!("{} ({}", p.index, p.kind);
                if !p.label.is_empty() {
                    s.push_str(&format!(" \"{}\"", p.label));
                }
                s.push(')');
                s
            })
            .collect();
        items.join(", ")
    }
}

/// The bytes a table is read from: `src`, of which the first `readable` bytes can be read,
/// standing for a disk of `size` bytes.
#[derive(Clone, Copy)]
pub(crate) struct DiskBytes<'a> {
    src: &'a dyn ReadAt,
    readable: u64,
    size: u64,
}

impl DiskBytes<'_> {
    /// True when the whole disk can be read (a raw image).
    fn whole(&self) -> bool {
        self.readable >= self.size
    }

    /// `len` bytes at `offset`, refused past the disk or past what can be read.
    fn read(&self, offset: u64, len: u64, what: &'static str) -> Result<Vec<u8>> {
        let end = offset.checked_add(len);
        if end.is_none_or(|end| end > self.size) {
            return Err(PartitionError::StructurePastEnd {
                what,
                offset,
                disk_size: self.size,
            }
            .into());
        }
        if end.is_none_or(|end| end > self.readable) {
            return Err(PartitionError::BeyondHead {
                what,
                offset,
                readable: self.readable,
            }
            .into());
        }
        let len = usize::try_from(len).map_err(|_| Error::unsupported("structure too large"))?;
        let mut buf = vec![0u8; len];
        read_exact_at(self.src, &mut buf, offset, what)?;
        Ok(buf)
    }
}

/// Reads the partition table of a disk of `disk_size` bytes whose first `readable` bytes
/// `src` holds. `None` when the disk has no partition table (no 0x55AA MBR signature and no
/// GPT header, or an MBR whose entries are not partition entries: a boot sector).
///
/// # Errors
/// A table that is present but damaged or inconsistent ([`PartitionError`]), naming the
/// byte offset; structures past `readable` ([`PartitionError::BeyondHead`]); I/O.
pub fn read(src: &dyn ReadAt, readable: u64, disk_size: u64) -> Result<Option<PartitionTable>> {
    let disk = DiskBytes {
        src,
        readable: readable.min(src.len()).min(disk_size),
        size: disk_size,
    };
    let sector0 = match disk.read(0, mbr::MBR_SECTOR, "MBR") {
        Ok(sector) => sector,
        // A disk smaller than a sector has no table.
        Err(_) if disk_size < mbr::MBR_SECTOR => return Ok(None),
        Err(e) => return Err(e),
    };
    let found = match mbr::classify(&sector0) {
        mbr::Kind::Protective | mbr::Kind::Absent => gpt::read(disk, mbr::is_protective(&sector0))?,
        mbr::Kind::Partitions => Some(mbr::read(disk, &sector0)?),
    };
    let Some(mut table) = found else {
        return Ok(None);
    };
    table.partitions.sort_by_key(|p| p.index);
    // MBR extended partitions are left out: their logical partitions lie inside them by
    // design (`mbr` checks that, and checks each against the other primaries).
    check_overlaps(table.partitions.iter().filter(|p| !p.kind.is_extended()))?;
    Ok(Some(table))
}

/// Refuses two of `partitions` sharing a byte.
fn check_overlaps<'a>(partitions: impl Iterator<Item = &'a Partition>) -> Result<()> {
    let mut by_start: Vec<&Partition> = partitions.collect();
    by_start.sort_by_key(|p| (p.start, p.index));
    for pair in by_start.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if b.start < a.end() {
            return Err(PartitionError::Overlap {
                a: a.index,
                a_entry: a.entry_offset,
                a_start: a.start,
                a_end: a.end(),
                b: b.index,
                b_entry: b.entry_offset,
                b_start: b.start,
                b_end: b.end(),
            }
            .into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

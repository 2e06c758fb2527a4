//! The master boot record: four primary entries at byte 446 of sector 0, the 0x55AA
//! signature at 510, and for an extended partition the chain of extended boot records
//! (EBRs), each holding one logical partition (relative to the EBR) and a link to the next
//! EBR (relative to the extended partition's start).

use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, Immutable, KnownLayout, Unaligned};

use super::{
    DiskBytes, MBR_MAX_LOGICAL, Partition, PartitionError, PartitionTable, PartitionType, Scheme,
    check_overlaps,
};
use crate::error::Result;

/// Bytes per MBR sector (LBA).
pub(super) const MBR_SECTOR: u64 = 512;
/// Offset of the first partition entry in a boot record.
const MBR_ENTRIES_OFFSET: usize = 446;
/// Size of one partition entry.
const MBR_ENTRY_SIZE: usize = 16;
/// The boot record signature at bytes 510..512.
const MBR_SIGNATURE: [u8; 2] = [0x55, 0xAA];
/// The type id of a GPT protective partition.
const MBR_TYPE_PROTECTIVE: u8 = 0xEE;

/// One 16-byte partition entry.
#[derive(FromBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawMbrEntry {
    status: u8,
    chs_first: [u8; 3],
    kind: u8,
    chs_last: [u8; 3],
    lba_first: U32,
    sectors: U32,
}

/// A partition entry's fields.
#[derive(Debug, Clone, Copy)]
struct MbrEntry {
    status: u8,
    kind: u8,
    lba_first: u64,
    sectors: u64,
}

impl MbrEntry {
    /// Linux ignores entries of type 0 or length 0.
    fn is_empty(self) -> bool {
        self.kind == 0 || self.sectors == 0
    }
}

/// Entry `slot` (0..4) of a boot record.
fn entry(sector: &[u8], slot: usize) -> MbrEntry {
    let at = MBR_ENTRIES_OFFSET + slot * MBR_ENTRY_SIZE;
    let raw = RawMbrEntry::ref_from_bytes(&sector[at..at + MBR_ENTRY_SIZE])
        .expect("a boot record is 512 bytes and an entry 16");
    MbrEntry {
        status: raw.status,
        kind: raw.kind,
        lba_first: u64::from(raw.lba_first.get()),
        sectors: u64::from(raw.sectors.get()),
    }
}

/// What sector 0 holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// No MBR partitions: no signature, a boot sector, or only empty entries.
    Absent,
    /// A protective (or hybrid) MBR: the disk is GPT.
    Protective,
    /// MBR partitions.
    Partitions,
}

fn has_signature(sector: &[u8]) -> bool {
    sector.get(510..512) == Some(&MBR_SIGNATURE[..])
}

/// Classifies sector 0. Entries whose status byte is neither 0x00 nor 0x80 mean the sector
/// is a boot sector (a file system's, or boot code), not a partition table, as Linux decides.
pub(super) fn classify(sector: &[u8]) -> Kind {
    if !has_signature(sector) {
        return Kind::Absent;
    }
    let entries: Vec<MbrEntry> = (0..4).map(|slot| entry(sector, slot)).collect();
    if entries.iter().any(|e| e.kind == MBR_TYPE_PROTECTIVE) {
        return Kind::Protective;
    }
    let valid = entries.iter().all(|e| matches!(e.status, 0x00 | 0x80));
    if valid && entries.iter().any(|e| !e.is_empty()) {
        Kind::Partitions
    } else {
        Kind::Absent
    }
}

/// True when sector 0 is a protective MBR.
pub(super) fn is_protective(sector: &[u8]) -> bool {
    classify(sector) == Kind::Protective
}

/// The partitions of an MBR disk whose sector 0 is `sector0`.
pub(super) fn read(disk: DiskBytes<'_>, sector0: &[u8]) -> Result<PartitionTable> {
    let mut partitions = Vec::new();
    let mut extended: Option<Partition> = None;
    for slot in 0..4 {
        let e = entry(sector0, slot);
        if e.is_empty() {
            continue;
        }
        let index = u32::try_from(slot + 1).expect("slots are 0..4");
        let entry_offset = (MBR_ENTRIES_OFFSET + slot * MBR_ENTRY_SIZE) as u64;
        let p = partition(disk, index, entry_offset, 0, e)?;
        if p.kind.is_extended() {
            if let Some(first) = &extended {
                return Err(PartitionError::TwoExtended {
                    first: first.entry_offset,
                    second: entry_offset,
                }
                .into());
            }
            extended = Some(p.clone());
        }
        partitions.push(p);
    }
    check_overlaps(partitions.iter())?;
    if let Some(ext) = extended {
        logical(disk, &ext, &mut partitions)?;
    }
    Ok(PartitionTable {
        scheme: Scheme::Mbr,
        sector_size: MBR_SECTOR,
        disk_size: disk.size,
        disk_guid: None,
        backup: None,
        partitions,
    })
}

/// The partition an entry describes, its LBA relative to `base`; refused when empty at LBA
/// 0 or past the end of the disk.
fn partition(
    disk: DiskBytes<'_>,
    index: u32,
    entry_offset: u64,
    base: u64,
    e: MbrEntry,
) -> Result<Partition> {
    let first = base + e.lba_first;
    let last = first + e.sectors - 1;
    if first == 0 {
        return Err(PartitionError::Reversed {
            index,
            entry: entry_offset,
            first,
            last,
        }
        .into());
    }
    let start = first * MBR_SECTOR;
    let size = e.sectors * MBR_SECTOR;
    if size > disk.size.saturating_sub(start) {
        return Err(PartitionError::PastEnd {
            index,
            entry: entry_offset,
            end: start + size,
            disk_size: disk.size,
        }
        .into());
    }
    Ok(Partition {
        index,
        start,
        size,
        kind: PartitionType::Mbr(e.kind),
        label: String::new(),
        guid: None,
        bootable: e.status == 0x80,
        entry_offset,
    })
}

/// Follows the EBR chain of `ext`, appending its logical partitions (numbered from 5).
/// Each link must move forward inside the extended partition, so the chain cannot loop;
/// its length is bounded by [`MBR_MAX_LOGICAL`].
fn logical(disk: DiskBytes<'_>, ext: &Partition, partitions: &mut Vec<Partition>) -> Result<()> {
    let ext_first = ext.start / MBR_SECTOR;
    let ext_end = ext.end() / MBR_SECTOR;
    let mut ebr = ext_first;
    let mut index = 5;
    for _ in 0..=MBR_MAX_LOGICAL {
        let offset = ebr * MBR_SECTOR;
        let sector = disk.read(offset, MBR_SECTOR, "extended boot record")?;
        if !has_signature(&sector) {
            return Err(PartitionError::BadEbrSignature { offset }.into());
        }
        let e = entry(&sector, 0);
        if !e.is_empty() {
            let entry_offset = offset + MBR_ENTRIES_OFFSET as u64;
            let p = partition(disk, index, entry_offset, ebr, e)?;
            if p.start < ext.start || p.end() > ext.end() {
                return Err(PartitionError::OutsideExtended {
                    index,
                    entry: entry_offset,
                    start: p.start,
                    end: p.end(),
                    ext_start: ext.start,
                    ext_end: ext.end(),
                }
                .into());
            }
            partitions.push(p);
            index += 1;
        }
        let link = entry(&sector, 1);
        if link.is_empty() || !PartitionType::Mbr(link.kind).is_extended() {
            return Ok(());
        }
        let next = ext_first + link.lba_first;
        if next <= ebr || next >= ext_end {
            return Err(PartitionError::EbrLoop {
                offset,
                next: next * MBR_SECTOR,
            }
            .into());
        }
        ebr = next;
    }
    Err(PartitionError::TooManyLogical {
        offset: ext.start,
        max: MBR_MAX_LOGICAL,
    }
    .into())
}

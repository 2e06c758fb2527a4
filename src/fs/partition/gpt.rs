//! The GUID partition table (UEFI 2.10, 5.3): a header at LBA 1 and its backup at the
//! header's "alternate LBA" (the last LBA of the disk when it was partitioned), each
//! pointing at an array of entries. Header and array carry CRC-32s (the header's taken with
//! its own CRC field as zero). GUIDs are stored mixed-endian (the first three fields
//! little-endian), which `Uuid::from_bytes_le` reads.

use uuid::Uuid;
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, KnownLayout, Unaligned};

use super::{
    BackupNote, BackupStatus, DiskBytes, GPT_MAX_ARRAY_BYTES, Partition, PartitionError,
    PartitionTable, PartitionType, Scheme,
};
use crate::error::Result;

/// "EFI PART": the signature every GPT header starts with.
const GPT_SIGNATURE: [u8; 8] = *b"EFI PART";
/// Size of the header fields UEFI defines; `header_size` may be larger, up to one block.
const GPT_HEADER_MIN: u32 = 92;
/// Logical block sizes tried, in order: the header is at LBA 1.
const GPT_LBA_SIZES: [u64; 2] = [512, 4096];
/// Smallest entry size; UEFI requires 128 x 2^n.
const GPT_ENTRY_MIN: u32 = 128;
/// Byte range of the header CRC field, taken as zero when computing it.
const GPT_HEADER_CRC_FIELD: std::ops::Range<usize> = 16..20;
/// Entry attribute bit 2: legacy BIOS bootable.
const GPT_ATTR_LEGACY_BOOTABLE: u64 = 1 << 2;

/// The 92 bytes of a GPT header UEFI defines.
#[derive(FromBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawGptHeader {
    signature: [u8; 8],
    revision: U32,
    header_size: U32,
    header_crc: U32,
    reserved: U32,
    my_lba: U64,
    alternate_lba: U64,
    first_usable: U64,
    last_usable: U64,
    disk_guid: [u8; 16],
    entries_lba: U64,
    entry_count: U32,
    entry_size: U32,
    entries_crc: U32,
}

/// The first 128 bytes of a GPT entry.
#[derive(FromBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawGptEntry {
    type_guid: [u8; 16],
    unique_guid: [u8; 16],
    first_lba: U64,
    last_lba: U64,
    attributes: U64,
    name: [u8; 72],
}

/// A validated GPT header.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GptHeader {
    offset: u64,
    lba_size: u64,
    alternate_lba: u64,
    first_usable: u64,
    last_usable: u64,
    disk_guid: Uuid,
    entries_lba: u64,
    entry_count: u32,
    entry_size: u32,
    entries_crc: u32,
}

impl GptHeader {
    fn array_offset(&self) -> u64 {
        self.entries_lba * self.lba_size
    }

    fn array_len(&self) -> u64 {
        u64::from(self.entry_count) * u64::from(self.entry_size)
    }
}

/// The GPT of `disk`, or `None` when there is no GPT header (an error instead when sector
/// 0 is a protective MBR).
pub(super) fn read(disk: DiskBytes<'_>, protective: bool) -> Result<Option<PartitionTable>> {
    let Some(lba_size) = find_lba_size(disk)? else {
        return if protective {
            Err(PartitionError::MissingGpt.into())
        } else {
            Ok(None)
        };
    };
    let buf = disk.read(lba_size, lba_size, "GPT header")?;
    let primary = match parse_header(disk, &buf, lba_size, 1) {
        Ok(primary) => primary,
        Err(e) => return Err(with_backup_note(disk, lba_size, e).into()),
    };
    let array = entry_array(disk, &primary)?;
    let partitions = partitions(disk, &primary, &array)?;
    Ok(Some(PartitionTable {
        scheme: Scheme::Gpt,
        sector_size: lba_size,
        disk_size: disk.size,
        disk_guid: Some(primary.disk_guid),
        backup: Some(backup_status(disk, &primary)),
        partitions,
    }))
}

/// The logical block size whose LBA 1 holds a GPT signature.
fn find_lba_size(disk: DiskBytes<'_>) -> Result<Option<u64>> {
    for lba_size in GPT_LBA_SIZES {
        if disk.size < 2 * lba_size || disk.readable < lba_size + 8 {
            continue;
        }
        if disk.read(lba_size, 8, "GPT header")? == GPT_SIGNATURE {
            return Ok(Some(lba_size));
        }
    }
    Ok(None)
}

/// CRC-32 (IEEE, as zlib) of a header's first `header_size` bytes, its CRC field as zero.
fn header_crc(bytes: &[u8]) -> u32 {
    let mut crc = libdeflater::Crc::new();
    crc.update(&bytes[..GPT_HEADER_CRC_FIELD.start]);
    crc.update(&[0; 4]);
    crc.update(&bytes[GPT_HEADER_CRC_FIELD.end..]);
    crc.sum()
}

/// The header at `lba`, validated.
fn header(disk: DiskBytes<'_>, lba_size: u64, lba: u64) -> Result<GptHeader> {
    let offset = lba.saturating_mul(lba_size);
    let buf = disk.read(offset, lba_size, "GPT header")?;
    Ok(parse_header(disk, &buf, lba_size, lba)?)
}

/// The header read from `lba` into `buf`, validated: size, CRC, own LBA, usable range,
/// entry geometry.
fn parse_header(
    disk: DiskBytes<'_>,
    buf: &[u8],
    lba_size: u64,
    lba: u64,
) -> Result<GptHeader, PartitionError> {
    let offset = lba * lba_size;
    let (raw, _) = RawGptHeader::ref_from_prefix(buf).expect("a logical block holds 92 bytes");
    if raw.signature != GPT_SIGNATURE {
        return Err(PartitionError::NoHeader { offset });
    }
    let size = raw.header_size.get();
    if size < GPT_HEADER_MIN || u64::from(size) > lba_size {
        return Err(PartitionError::BadHeaderSize {
            offset,
            size,
            max: lba_size,
        });
    }
    let found = raw.header_crc.get();
    let computed = header_crc(&buf[..size as usize]);
    if found != computed {
        return Err(PartitionError::BadHeaderCrc {
            offset,
            found,
            computed,
            backup: BackupNote(None),
        });
    }
    let revision = raw.revision.get();
    if revision >> 16 != 1 {
        return Err(PartitionError::BadRevision { offset, revision });
    }
    if raw.my_lba.get() != lba {
        return Err(PartitionError::BadMyLba {
            offset,
            found: raw.my_lba.get(),
            expected: lba,
        });
    }
    let h = GptHeader {
        offset,
        lba_size,
        alternate_lba: raw.alternate_lba.get(),
        first_usable: raw.first_usable.get(),
        last_usable: raw.last_usable.get(),
        disk_guid: Uuid::from_bytes_le(raw.disk_guid),
        entries_lba: raw.entries_lba.get(),
        entry_count: raw.entry_count.get(),
        entry_size: raw.entry_size.get(),
        entries_crc: raw.entries_crc.get(),
    };
    check_geometry(disk, &h)?;
    Ok(h)
}

/// Usable range inside the disk; entries of 128 x 2^n bytes; a bounded array inside the
/// disk.
fn check_geometry(disk: DiskBytes<'_>, h: &GptHeader) -> Result<(), PartitionError> {
    let disk_lbas = disk.size / h.lba_size;
    if h.first_usable > h.last_usable || h.last_usable >= disk_lbas {
        return Err(PartitionError::BadUsableRange {
            offset: h.offset,
            first: h.first_usable,
            last: h.last_usable,
            disk_lbas,
        });
    }
    if h.entry_size < GPT_ENTRY_MIN || !h.entry_size.is_power_of_two() {
        return Err(PartitionError::BadEntrySize {
            header: h.offset,
            entry_size: h.entry_size,
        });
    }
    if h.array_len() > GPT_MAX_ARRAY_BYTES {
        return Err(PartitionError::ArrayTooLarge {
            header: h.offset,
            count: h.entry_count,
            entry_size: h.entry_size,
            max: GPT_MAX_ARRAY_BYTES,
        });
    }
    let inside = (h.entries_lba.checked_mul(h.lba_size))
        .and_then(|start| start.checked_add(h.array_len()))
        .is_some_and(|end| end <= disk.size);
    if !inside || h.entries_lba < 2 {
        return Err(PartitionError::ArrayPastEnd {
            header: h.offset,
            offset: h.entries_lba.saturating_mul(h.lba_size),
            len: h.array_len(),
            disk_size: disk.size,
        });
    }
    Ok(())
}

/// The entry array of `h`, its CRC checked.
fn entry_array(disk: DiskBytes<'_>, h: &GptHeader) -> Result<Vec<u8>> {
    let array = disk.read(h.array_offset(), h.array_len(), "GPT entry array")?;
    let computed = libdeflater::crc32(&array);
    if computed != h.entries_crc {
        return Err(PartitionError::BadArrayCrc {
            header: h.offset,
            offset: h.array_offset(),
            found: h.entries_crc,
            computed,
        }
        .into());
    }
    Ok(array)
}

/// The used entries of `array` as partitions, each inside the disk and the usable range.
fn partitions(disk: DiskBytes<'_>, h: &GptHeader, array: &[u8]) -> Result<Vec<Partition>> {
    let mut out = Vec::new();
    for (slot, bytes) in array.chunks_exact(h.entry_size as usize).enumerate() {
        let (raw, _) = RawGptEntry::ref_from_prefix(bytes).expect("entries are >= 128 bytes");
        if raw.type_guid == [0; 16] {
            continue;
        }
        let index = u32::try_from(slot + 1).expect("at most 8192 entries");
        let entry = h.array_offset() + slot as u64 * u64::from(h.entry_size);
        out.push(partition(disk, h, raw, index, entry)?);
    }
    Ok(out)
}

fn partition(
    disk: DiskBytes<'_>,
    h: &GptHeader,
    raw: &RawGptEntry,
    index: u32,
    entry: u64,
) -> Result<Partition> {
    let (first, last) = (raw.first_lba.get(), raw.last_lba.get());
    if first == 0 || last < first {
        return Err(PartitionError::Reversed {
            index,
            entry,
            first,
            last,
        }
        .into());
    }
    let end = (last.checked_add(1)).and_then(|n| n.checked_mul(h.lba_size));
    if end.is_none_or(|end| end > disk.size) {
        return Err(PartitionError::PastEnd {
            index,
            entry,
            end: end.unwrap_or(u64::MAX),
            disk_size: disk.size,
        }
        .into());
    }
    if first < h.first_usable || last > h.last_usable {
        return Err(PartitionError::OutsideUsable {
            index,
            entry,
            first,
            last,
            first_usable: h.first_usable,
            last_usable: h.last_usable,
        }
        .into());
    }
    Ok(Partition {
        index,
        start: first * h.lba_size,
        size: (last - first + 1) * h.lba_size,
        kind: PartitionType::Gpt(Uuid::from_bytes_le(raw.type_guid)),
        label: utf16_name(&raw.name),
        guid: Some(Uuid::from_bytes_le(raw.unique_guid)),
        bootable: raw.attributes.get() & GPT_ATTR_LEGACY_BOOTABLE != 0,
        entry_offset: entry,
    })
}

/// A partition name: UTF-16LE up to the first NUL; unpaired surrogates become U+FFFD.
fn utf16_name(bytes: &[u8; 72]) -> String {
    let units = (bytes.chunks_exact(2))
        .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
        .take_while(|&unit| unit != 0);
    char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

/// The backup header and array at the primary's alternate LBA, checked against the
/// primary; only when the whole disk can be read.
fn backup_status(disk: DiskBytes<'_>, primary: &GptHeader) -> BackupStatus {
    if !disk.whole() {
        return BackupStatus::NotChecked;
    }
    let alternate = primary.alternate_lba;
    let backup = match header(disk, primary.lba_size, alternate) {
        Ok(backup) => backup,
        Err(e) => return BackupStatus::Damaged(e.to_string()),
    };
    let agrees = backup.alternate_lba == 1
        && backup.disk_guid == primary.disk_guid
        && (backup.first_usable, backup.last_usable) == (primary.first_usable, primary.last_usable)
        && (backup.entry_count, backup.entry_size, backup.entries_crc)
            == (primary.entry_count, primary.entry_size, primary.entries_crc);
    if !agrees {
        return BackupStatus::Damaged(format!(
            "backup GPT header at offset {:#x} disagrees with the primary",
            backup.offset
        ));
    }
    match entry_array(disk, &backup) {
        Ok(_) => BackupStatus::Ok,
        Err(e) => BackupStatus::Damaged(e.to_string()),
    }
}

/// Adds what is known of the backup header (at the last LBA) to a primary header CRC
/// error, so the user knows whether a repair can start from it. Only when the whole disk
/// can be read.
fn with_backup_note(disk: DiskBytes<'_>, lba_size: u64, e: PartitionError) -> PartitionError {
    let PartitionError::BadHeaderCrc {
        offset,
        found,
        computed,
        ..
    } = e
    else {
        return e;
    };
    if !disk.whole() {
        return e;
    }
    let last = disk.size / lba_size - 1;
    let note = match header(disk, lba_size, last) {
        Ok(b) => format!(
            "the backup header at offset {:#x} is intact, but kiln reads a disk only when its primary GPT is (gdisk can rebuild it from the backup)",
            b.offset
        ),
        Err(_) => "the backup header at the last LBA is not intact either".to_string(),
    };
    PartitionError::BadHeaderCrc {
        offset,
        found,
        computed,
        backup: BackupNote(Some(note)),
    }
}

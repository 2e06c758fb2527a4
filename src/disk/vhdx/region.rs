//! The region table (MS-VHDX 2.2.3): where the BAT and the metadata region live.

use uuid::{Uuid, uuid};
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{MIB, VhdxError, checksum_with_zero_field};
use crate::error::Result;
use crate::io::{ReadAt, read_exact_at};

/// Offsets of the two region table copies.
pub(super) const VHDX_REGION_TABLE_OFFSETS: [u64; 2] = [0x3_0000, 0x4_0000];
/// Bytes of one region table, all covered by its checksum.
pub(super) const VHDX_REGION_TABLE_SIZE: usize = 64 * 1024;
/// `regi`: the signature of a region table.
const VHDX_REGION_SIGNATURE: &[u8; 4] = b"regi";
/// Most entries a region table may hold.
const VHDX_MAX_REGIONS: u32 = 2047;
/// Bit 0 of an entry's flags: a reader must know this region to open the file.
const VHDX_REGION_REQUIRED: u32 = 1;
/// The BAT region.
pub(super) const VHDX_BAT_GUID: Uuid = uuid!("2DC27766-F623-4200-9D64-115E9BFD4A08");
/// The metadata region.
pub(super) const VHDX_METADATA_GUID: Uuid = uuid!("8B7CA206-4790-4B9A-B8FE-575F050F886E");

/// Region table header as stored.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawRegionTableHeader {
    signature: [u8; 4],
    checksum: U32,
    entry_count: U32,
    reserved: U32,
}

/// One region table entry as stored.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawRegionEntry {
    guid: [u8; 16],
    file_offset: U64,
    length: U32,
    flags: U32,
}

/// A region's place in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Region {
    pub offset: u64,
    pub length: u64,
}

impl Region {
    /// First byte past the region.
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.length)
    }
}

/// The regions kiln needs, checked against the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct VhdxRegions {
    pub bat: Region,
    pub metadata: Region,
}

impl VhdxRegions {
    /// Parses the table stored at `offset`; every region must lie inside `file_len`.
    pub fn parse(buf: &[u8], offset: u64, file_len: u64) -> Result<Self, VhdxError> {
        let (head, rest) =
            RawRegionTableHeader::ref_from_prefix(buf).map_err(|_| VhdxError::BadSignature {
                what: "region table",
                offset,
            })?;
        if &head.signature != VHDX_REGION_SIGNATURE {
            return Err(VhdxError::BadSignature {
                what: "region table",
                offset,
            });
        }
        let computed = checksum_with_zero_field(buf);
        let found = head.checksum.get();
        if found != computed {
            return Err(VhdxError::BadChecksum {
                what: "region table",
                offset,
                found,
                computed,
            });
        }
        let count = head.entry_count.get();
        if count > VHDX_MAX_REGIONS {
            return Err(VhdxError::TooManyEntries {
                what: "region table",
                offset,
                count,
            });
        }
        let n = usize::try_from(count).map_err(|_| VhdxError::TooManyEntries {
            what: "region table",
            offset,
            count,
        })?;
        let (entries, _) =
            <[RawRegionEntry]>::ref_from_prefix_with_elems(rest, n).map_err(|_| {
                VhdxError::TooManyEntries {
                    what: "region table",
                    offset,
                    count,
                }
            })?;
        let mut bat = None;
        let mut metadata = None;
        for (i, e) in entries.iter().enumerate() {
            let entry_offset = offset + 16 + 32 * i as u64;
            let guid = Uuid::from_bytes_le(e.guid);
            let slot = match guid {
                VHDX_BAT_GUID => (&mut bat, "BAT region"),
                VHDX_METADATA_GUID => (&mut metadata, "metadata region"),
                _ if e.flags.get() & VHDX_REGION_REQUIRED != 0 => {
                    return Err(VhdxError::UnknownRequiredRegion {
                        guid,
                        offset: entry_offset,
                    });
                }
                _ => continue,
            };
            let region = check_region(e, slot.1, file_len)?;
            if slot.0.replace(region).is_some() {
                return Err(VhdxError::DuplicateEntry {
                    what: slot.1,
                    offset: entry_offset,
                });
            }
        }
        Ok(Self {
            bat: bat.ok_or(VhdxError::MissingEntry { what: "BAT region" })?,
            metadata: metadata.ok_or(VhdxError::MissingEntry {
                what: "metadata region",
            })?,
        })
    }

    /// The 64 KiB table with its checksum.
    pub fn to_bytes(self) -> Result<Vec<u8>, VhdxError> {
        let mut buf = vec![0u8; VHDX_REGION_TABLE_SIZE];
        let head = RawRegionTableHeader {
            signature: *VHDX_REGION_SIGNATURE,
            checksum: U32::new(0),
            entry_count: U32::new(2),
            reserved: U32::new(0),
        };
        buf[..16].copy_from_slice(head.as_bytes());
        let regions = [
            (VHDX_BAT_GUID, self.bat, "BAT region"),
            (VHDX_METADATA_GUID, self.metadata, "metadata region"),
        ];
        for (i, (guid, region, what)) in regions.into_iter().enumerate() {
            let length = u32::try_from(region.length).map_err(|_| VhdxError::RegionTooLong {
                what,
                length: region.length,
            })?;
            let entry = RawRegionEntry {
                guid: guid.to_bytes_le(),
                file_offset: U64::new(region.offset),
                length: U32::new(length),
                flags: U32::new(VHDX_REGION_REQUIRED),
            };
            buf[16 + 32 * i..48 + 32 * i].copy_from_slice(entry.as_bytes());
        }
        let sum = checksum_with_zero_field(&buf);
        buf[4..8].copy_from_slice(&sum.to_le_bytes());
        Ok(buf)
    }
}

/// MS-VHDX 2.2.3.2: regions are 1 MiB aligned, a multiple of 1 MiB long, past the header
/// area, and (kiln's rule) inside the file.
fn check_region(
    e: &RawRegionEntry,
    what: &'static str,
    file_len: u64,
) -> Result<Region, VhdxError> {
    let region = Region {
        offset: e.file_offset.get(),
        length: u64::from(e.length.get()),
    };
    let aligned = region.offset.is_multiple_of(MIB) && region.length.is_multiple_of(MIB);
    if !aligned || region.length == 0 || region.offset < MIB {
        return Err(VhdxError::RegionMisaligned {
            what,
            offset: region.offset,
            length: region.length,
        });
    }
    if region.length > file_len.saturating_sub(region.offset) {
        return Err(VhdxError::RegionOutsideFile {
            what,
            offset: region.offset,
            length: region.length,
            file_len,
        });
    }
    Ok(region)
}

/// Reads the first valid region table; the second copy is the fallback.
pub(super) fn read_region_tables(file: &dyn ReadAt, file_len: u64) -> Result<VhdxRegions> {
    let mut first_error = None;
    let mut buf = vec![0u8; VHDX_REGION_TABLE_SIZE];
    for offset in VHDX_REGION_TABLE_OFFSETS {
        read_exact_at(file, &mut buf, offset, "VHDX region table")?;
        match VhdxRegions::parse(&buf, offset, file_len) {
            Ok(regions) => return Ok(regions),
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    let source = Box::new(first_error.unwrap_or(VhdxError::MissingEntry {
        what: "region table",
    }));
    Err(VhdxError::NoValidRegionTable { source }.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regions() -> VhdxRegions {
        VhdxRegions {
            bat: Region {
                offset: 3 * MIB,
                length: MIB,
            },
            metadata: Region {
                offset: 2 * MIB,
                length: MIB,
            },
        }
    }

    #[test]
    fn region_table_round_trips() {
        let bytes = regions().to_bytes().unwrap();
        assert_eq!(
            VhdxRegions::parse(&bytes, 0x30000, 8 * MIB).unwrap(),
            regions()
        );
    }

    #[test]
    fn region_table_with_bad_checksum_is_rejected() {
        let mut bytes = regions().to_bytes().unwrap();
        bytes[60_000] = 1;
        let err = VhdxRegions::parse(&bytes, 0x30000, 8 * MIB).unwrap_err();
        assert!(matches!(err, VhdxError::BadChecksum { .. }), "{err}");
    }

    #[test]
    fn region_past_end_of_file_is_rejected() {
        let bytes = regions().to_bytes().unwrap();
        let err = VhdxRegions::parse(&bytes, 0x30000, 3 * MIB).unwrap_err();
        assert!(matches!(err, VhdxError::RegionOutsideFile { .. }), "{err}");
    }

    #[test]
    fn unknown_required_region_is_refused() {
        let mut bytes = regions().to_bytes().unwrap();
        bytes[16] ^= 0xff;
        bytes[8] = 2;
        let sum = checksum_with_zero_field(&bytes);
        bytes[4..8].copy_from_slice(&sum.to_le_bytes());
        let err = VhdxRegions::parse(&bytes, 0x30000, 8 * MIB).unwrap_err();
        assert!(
            matches!(err, VhdxError::UnknownRequiredRegion { .. }),
            "{err}"
        );
    }
}

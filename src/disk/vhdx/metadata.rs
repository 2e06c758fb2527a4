//! The metadata region (MS-VHDX 2.6): a table of items that size the disk.
//!
//! kiln reads and writes the five items a non-differencing disk needs: file parameters,
//! virtual disk size, virtual disk id (page 83), logical and physical sector size. The
//! parent locator (differencing disks) and unknown required items are refused.

use uuid::{Uuid, uuid};
use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{MIB, VHDX_MAX_VIRTUAL_SIZE, VhdxError};

/// `metadata`: the signature of the metadata table.
const VHDX_METADATA_SIGNATURE: &[u8; 8] = b"metadata";
/// Bytes reserved for the metadata table at the start of the region.
pub(super) const VHDX_METADATA_TABLE_SIZE: usize = 64 * 1024;
/// Most entries the metadata table may hold.
const VHDX_MAX_METADATA_ENTRIES: u16 = 2047;
/// Entry flag: the item describes the virtual disk (not the file).
const VHDX_ITEM_IS_VIRTUAL_DISK: u32 = 2;
/// Entry flag: a reader must understand the item to open the file.
const VHDX_ITEM_IS_REQUIRED: u32 = 4;
/// File parameters flag: every block is allocated (a fixed disk).
const VHDX_LEAVE_BLOCKS_ALLOCATED: u32 = 1;
/// File parameters flag: this is a differencing disk.
const VHDX_HAS_PARENT: u32 = 2;
/// Smallest block size the spec allows.
pub(super) const VHDX_MIN_BLOCK_SIZE: u64 = MIB;
/// Largest block size the spec allows.
pub(super) const VHDX_MAX_BLOCK_SIZE: u64 = 256 * MIB;

const FILE_PARAMETERS: Uuid = uuid!("CAA16737-FA36-4D43-B3B6-33F0AA44E76B");
const VIRTUAL_DISK_SIZE: Uuid = uuid!("2FA54224-CD1B-4876-B211-5DBED83BF4B8");
const VIRTUAL_DISK_ID: Uuid = uuid!("BECA12AB-B2E6-4523-93EF-C309E000C746");
const LOGICAL_SECTOR_SIZE: Uuid = uuid!("8141BF1D-A96F-4709-BA47-F233A8FAAB5F");
const PHYSICAL_SECTOR_SIZE: Uuid = uuid!("CDA348C7-445D-4471-9CC9-E9885251C556");
const PARENT_LOCATOR: Uuid = uuid!("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C");

/// Metadata table header as stored.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawMetadataHeader {
    signature: [u8; 8],
    reserved: U16,
    entry_count: U16,
    reserved2: [u8; 20],
}

/// One metadata table entry as stored.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawMetadataEntry {
    item_id: [u8; 16],
    offset: U32,
    length: U32,
    flags: U32,
    reserved: U32,
}

/// The validated disk parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct VhdxMetadata {
    pub block_size: u64,
    /// Set on fixed disks.
    pub leave_blocks_allocated: bool,
    pub virtual_size: u64,
    pub disk_id: Uuid,
    pub logical_sector_size: u32,
    pub physical_sector_size: u32,
}

/// Where one item's bytes sit inside the region.
#[derive(Debug, Clone, Copy, Default)]
struct ItemPlace {
    offset: u32,
    length: u32,
}

impl VhdxMetadata {
    /// Parses the region whose first `bytes.len()` bytes are given (table plus items);
    /// `region_offset` and `region_len` place it in the file, for bounds and messages.
    pub fn parse(bytes: &[u8], region_offset: u64) -> Result<Self, VhdxError> {
        let places = parse_table(bytes, region_offset)?;
        let item = |i: usize, what: &'static str| -> Result<&[u8], VhdxError> {
            let p = places[i].ok_or(VhdxError::MissingEntry { what })?;
            let start = usize::try_from(p.offset).map_err(|_| VhdxError::MissingEntry { what })?;
            let len = usize::try_from(p.length).map_err(|_| VhdxError::MissingEntry { what })?;
            bytes
                .get(start..start.saturating_add(len))
                .ok_or(VhdxError::ItemOutsideRegion {
                    what,
                    offset: region_offset + u64::from(p.offset),
                    length: p.length,
                })
        };
        // The block size sizes everything else: check it first.
        let params = fixed::<8>(
            item(0, "file parameters")?,
            "file parameters",
            region_offset,
        )?;
        let block_size = u64::from(u32::from_le_bytes(head4(&params)));
        let flags = u32::from_le_bytes(tail4(&params));
        if !block_size.is_power_of_two()
            || !(VHDX_MIN_BLOCK_SIZE..=VHDX_MAX_BLOCK_SIZE).contains(&block_size)
        {
            return Err(VhdxError::BadBlockSize {
                block_size,
                offset: region_offset,
            });
        }
        if flags & VHDX_HAS_PARENT != 0 {
            return Err(VhdxError::Differencing {
                offset: region_offset,
            });
        }
        let logical = sector_size(
            item(3, "logical sector size")?,
            "logical sector size",
            region_offset,
        )?;
        let physical = sector_size(
            item(4, "physical sector size")?,
            "physical sector size",
            region_offset,
        )?;
        let size = fixed::<8>(
            item(1, "virtual disk size")?,
            "virtual disk size",
            region_offset,
        )?;
        let virtual_size = u64::from_le_bytes(size);
        if virtual_size == 0
            || virtual_size > VHDX_MAX_VIRTUAL_SIZE
            || virtual_size % u64::from(logical) != 0
        {
            return Err(VhdxError::BadVirtualSize {
                size: virtual_size,
                offset: region_offset,
            });
        }
        // The page 83 id is required by the spec but not needed to read data.
        let disk_id = match places[2] {
            Some(_) => Uuid::from_bytes_le(fixed::<16>(
                item(2, "virtual disk id")?,
                "virtual disk id",
                region_offset,
            )?),
            None => Uuid::nil(),
        };
        Ok(Self {
            block_size,
            leave_blocks_allocated: flags & VHDX_LEAVE_BLOCKS_ALLOCATED != 0,
            virtual_size,
            disk_id,
            logical_sector_size: logical,
            physical_sector_size: physical,
        })
    }

    /// The metadata table and items: write at the region start; the rest of the 1 MiB
    /// region stays a hole.
    pub fn to_bytes(self) -> Result<Vec<u8>, VhdxError> {
        let block_size = u32::try_from(self.block_size).map_err(|_| VhdxError::BadBlockSize {
            block_size: self.block_size,
            offset: 0,
        })?;
        let flags = if self.leave_blocks_allocated {
            VHDX_LEAVE_BLOCKS_ALLOCATED
        } else {
            0
        };
        let mut params = block_size.to_le_bytes().to_vec();
        params.extend_from_slice(&flags.to_le_bytes());
        let disk = VHDX_ITEM_IS_VIRTUAL_DISK | VHDX_ITEM_IS_REQUIRED;
        let items: [(Uuid, u32, Vec<u8>); 5] = [
            (FILE_PARAMETERS, VHDX_ITEM_IS_REQUIRED, params),
            (
                VIRTUAL_DISK_SIZE,
                disk,
                self.virtual_size.to_le_bytes().to_vec(),
            ),
            (VIRTUAL_DISK_ID, disk, self.disk_id.to_bytes_le().to_vec()),
            (
                LOGICAL_SECTOR_SIZE,
                disk,
                self.logical_sector_size.to_le_bytes().to_vec(),
            ),
            (
                PHYSICAL_SECTOR_SIZE,
                disk,
                self.physical_sector_size.to_le_bytes().to_vec(),
            ),
        ];
        let head = RawMetadataHeader {
            signature: *VHDX_METADATA_SIGNATURE,
            reserved: U16::new(0),
            entry_count: U16::new(5),
            reserved2: [0; 20],
        };
        let mut buf = vec![0u8; VHDX_METADATA_TABLE_SIZE];
        buf[..32].copy_from_slice(head.as_bytes());
        for (i, (id, flags, data)) in items.iter().enumerate() {
            let offset = u32::try_from(buf.len())
                .map_err(|_| VhdxError::MissingEntry { what: "metadata" })?;
            let length = u32::try_from(data.len())
                .map_err(|_| VhdxError::MissingEntry { what: "metadata" })?;
            let entry = RawMetadataEntry {
                item_id: id.to_bytes_le(),
                offset: U32::new(offset),
                length: U32::new(length),
                flags: U32::new(*flags),
                reserved: U32::new(0),
            };
            buf[32 + 32 * i..64 + 32 * i].copy_from_slice(entry.as_bytes());
            buf.extend_from_slice(data);
        }
        Ok(buf)
    }
}

/// Reads the table: the place of each known item, in the order file parameters, virtual
/// disk size, virtual disk id, logical sector size, physical sector size.
fn parse_table(bytes: &[u8], region_offset: u64) -> Result<[Option<ItemPlace>; 5], VhdxError> {
    let bad_sig = VhdxError::BadSignature {
        what: "metadata table",
        offset: region_offset,
    };
    let (head, rest) = RawMetadataHeader::ref_from_prefix(bytes).map_err(|_| bad_sig)?;
    if &head.signature != VHDX_METADATA_SIGNATURE {
        return Err(VhdxError::BadSignature {
            what: "metadata table",
            offset: region_offset,
        });
    }
    let count = head.entry_count.get();
    let too_many = VhdxError::TooManyEntries {
        what: "metadata table",
        offset: region_offset,
        count: u32::from(count),
    };
    if count > VHDX_MAX_METADATA_ENTRIES {
        return Err(too_many);
    }
    let (entries, _) = <[RawMetadataEntry]>::ref_from_prefix_with_elems(rest, usize::from(count))
        .map_err(|_| too_many)?;
    let known = [
        FILE_PARAMETERS,
        VIRTUAL_DISK_SIZE,
        VIRTUAL_DISK_ID,
        LOGICAL_SECTOR_SIZE,
        PHYSICAL_SECTOR_SIZE,
    ];
    let mut places = [None; 5];
    for (i, e) in entries.iter().enumerate() {
        let entry_offset = region_offset + 32 + 32 * i as u64;
        let id = Uuid::from_bytes_le(e.item_id);
        if id == PARENT_LOCATOR {
            return Err(VhdxError::Differencing {
                offset: entry_offset,
            });
        }
        let Some(k) = known.iter().position(|&g| g == id) else {
            if e.flags.get() & VHDX_ITEM_IS_REQUIRED != 0 {
                return Err(VhdxError::UnknownRequiredItem {
                    guid: id,
                    offset: entry_offset,
                });
            }
            continue;
        };
        let place = ItemPlace {
            offset: e.offset.get(),
            length: e.length.get(),
        };
        if u64::from(place.offset) < VHDX_METADATA_TABLE_SIZE as u64 {
            return Err(VhdxError::ItemOutsideRegion {
                what: "metadata item",
                offset: entry_offset,
                length: place.length,
            });
        }
        if places[k].replace(place).is_some() {
            return Err(VhdxError::DuplicateEntry {
                what: "metadata item",
                offset: entry_offset,
            });
        }
    }
    Ok(places)
}

fn fixed<const N: usize>(
    bytes: &[u8],
    what: &'static str,
    offset: u64,
) -> Result<[u8; N], VhdxError> {
    <[u8; N]>::try_from(bytes).map_err(|_| VhdxError::BadItemLength {
        what,
        offset,
        length: bytes.len(),
    })
}

fn head4(b: &[u8; 8]) -> [u8; 4] {
    [b[0], b[1], b[2], b[3]]
}

fn tail4(b: &[u8; 8]) -> [u8; 4] {
    [b[4], b[5], b[6], b[7]]
}

/// MS-VHDX 2.6.2.4/2.6.2.5: 512 or 4096.
fn sector_size(bytes: &[u8], what: &'static str, offset: u64) -> Result<u32, VhdxError> {
    let size = u32::from_le_bytes(fixed::<4>(bytes, what, offset)?);
    if size != 512 && size != 4096 {
        return Err(VhdxError::BadSectorSize { what, size, offset });
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> VhdxMetadata {
        VhdxMetadata {
            block_size: 32 * MIB,
            leave_blocks_allocated: false,
            virtual_size: 64 * MIB,
            disk_id: Uuid::from_u128(9),
            logical_sector_size: 512,
            physical_sector_size: 4096,
        }
    }

    #[test]
    fn metadata_round_trips() {
        let bytes = meta().to_bytes().unwrap();
        assert_eq!(VhdxMetadata::parse(&bytes, 2 * MIB).unwrap(), meta());
    }

    #[test]
    fn absurd_block_size_is_rejected() {
        let bad = VhdxMetadata {
            block_size: 3 * MIB,
            ..meta()
        };
        let err = VhdxMetadata::parse(&bad.to_bytes().unwrap(), 2 * MIB).unwrap_err();
        assert!(matches!(err, VhdxError::BadBlockSize { .. }), "{err}");
    }

    #[test]
    fn odd_sector_size_is_rejected() {
        let bad = VhdxMetadata {
            logical_sector_size: 1024,
            ..meta()
        };
        let err = VhdxMetadata::parse(&bad.to_bytes().unwrap(), 2 * MIB).unwrap_err();
        assert!(matches!(err, VhdxError::BadSectorSize { .. }), "{err}");
    }

    #[test]
    fn differencing_disk_is_refused() {
        let mut bytes = meta().to_bytes().unwrap();
        let flags_at = VHDX_METADATA_TABLE_SIZE + 4;
        bytes[flags_at] = 2;
        let err = VhdxMetadata::parse(&bytes, 2 * MIB).unwrap_err();
        assert!(matches!(err, VhdxError::Differencing { .. }), "{err}");
    }

    #[test]
    fn missing_virtual_size_is_rejected() {
        let mut bytes = meta().to_bytes().unwrap();
        bytes[64] ^= 0xff; // second entry's item id: now unknown, and required
        let err = VhdxMetadata::parse(&bytes, 2 * MIB).unwrap_err();
        assert!(
            matches!(err, VhdxError::UnknownRequiredItem { .. }),
            "{err}"
        );
    }
}

//! The VHD hard disk footer (VHD spec v1.0, "Hard Disk Footer Format") and the CHS geometry
//! algorithm of the spec's appendix "CHS Calculation".

use zerocopy::byteorder::{BigEndian, U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::VhdError;

/// "conectix": the cookie every VHD footer starts with.
pub(super) const VHD_COOKIE: [u8; 8] = *b"conectix";
/// Size of the footer (and of its copy at offset 0 in dynamic disks).
pub(super) const VHD_FOOTER_SIZE: u64 = 512;
/// File format version 1.0.
pub(super) const VHD_VERSION: u32 = 0x0001_0000;
/// Features field: the "reserved" bit the spec says must always be set.
const VHD_FEATURES_RESERVED: u32 = 0x2;
/// Data offset of a fixed disk: no further structure.
pub(super) const VHD_NO_DATA_OFFSET: u64 = u64::MAX;
/// Seconds from the Unix epoch to the VHD epoch, 2000-01-01T00:00:00Z.
const VHD_EPOCH_UNIX: u64 = 946_684_800;
/// Largest CHS product: 65535 cylinders, 16 heads, 255 sectors per track.
pub(super) const VHD_MAX_CHS_SECTORS: u64 = 65535 * 16 * 255;
/// Creator host OS written by kiln ("Wi2k", as qemu and Windows write).
const VHD_CREATOR_OS: [u8; 4] = *b"Wi2k";
/// Creator apps whose `current_size` qemu honours instead of the CHS product.
const VHD_SIZE_HONOURED_CREATORS: [&[u8; 4]; 5] = [b"win ", b"qem2", b"d2v ", b"CTXS", b"tap\0"];

/// The kind of disk a footer describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DiskType {
    /// Type 2: the data precedes the footer byte for byte.
    Fixed,
    /// Type 3: footer copy, dynamic header, BAT and blocks.
    Dynamic,
}

impl DiskType {
    fn code(self) -> u32 {
        match self {
            DiskType::Fixed => 2,
            DiskType::Dynamic => 3,
        }
    }

    /// The subformat name qemu-img uses.
    pub(super) fn name(self) -> &'static str {
        match self {
            DiskType::Fixed => "fixed",
            DiskType::Dynamic => "dynamic",
        }
    }
}

/// Cylinders, heads and sectors per track as stored in the footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Geometry {
    pub(super) cylinders: u16,
    pub(super) heads: u8,
    pub(super) sectors: u8,
}

impl Geometry {
    /// Sectors the geometry addresses.
    pub(super) fn total_sectors(self) -> u64 {
        u64::from(self.cylinders) * u64::from(self.heads) * u64::from(self.sectors)
    }

    /// The spec's algorithm: the largest geometry not exceeding `total_sectors`.
    pub(super) fn for_sectors(total_sectors: u64) -> Self {
        let total = total_sectors.min(VHD_MAX_CHS_SECTORS);
        let (sectors, heads, cyl_times_heads) = if total >= 65535 * 16 * 63 {
            (255, 16, total / 255)
        } else {
            let mut spt = 17;
            let mut cth = total / spt;
            let mut heads = cth.div_ceil(1024).max(4);
            if cth >= heads * 1024 || heads > 16 {
                (spt, heads, cth) = (31, 16, total / 31);
            }
            if cth >= heads * 1024 {
                (spt, heads, cth) = (63, 16, total / 63);
            }
            (spt, heads, cth)
        };
        let cylinders = cyl_times_heads / heads;
        Self {
            cylinders: u16::try_from(cylinders).unwrap_or(u16::MAX),
            heads: u8::try_from(heads).unwrap_or(u8::MAX),
            sectors: u8::try_from(sectors).unwrap_or(u8::MAX),
        }
    }

    /// qemu-img's rounding without `force_size`: the smallest geometry the spec's algorithm
    /// yields for `total_sectors` or more, found by trying `total_sectors + i` in turn.
    pub(super) fn covering(total_sectors: u64) -> Self {
        let total = total_sectors.min(VHD_MAX_CHS_SECTORS);
        let mut geometry = Self {
            cylinders: 0,
            heads: 0,
            sectors: 0,
        };
        let mut i = 0;
        while total > geometry.total_sectors() {
            geometry = Self::for_sectors(total + i);
            i += 1;
        }
        geometry
    }

    /// True for 65535/16/255, where every reader falls back to `current_size`.
    pub(super) fn is_max(self) -> bool {
        self.total_sectors() == VHD_MAX_CHS_SECTORS
    }
}

impl std::fmt::Display for Geometry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.cylinders, self.heads, self.sectors)
    }
}

/// The footer as stored: 512 bytes, big-endian.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawFooter {
    cookie: [u8; 8],
    features: U32<BigEndian>,
    version: U32<BigEndian>,
    data_offset: U64<BigEndian>,
    timestamp: U32<BigEndian>,
    creator_app: [u8; 4],
    creator_version: U32<BigEndian>,
    creator_os: [u8; 4],
    original_size: U64<BigEndian>,
    current_size: U64<BigEndian>,
    cylinders: U16<BigEndian>,
    heads: u8,
    sectors: u8,
    disk_type: U32<BigEndian>,
    checksum: U32<BigEndian>,
    unique_id: [u8; 16],
    saved_state: u8,
    reserved: [u8; 427],
}

/// A validated footer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct VhdFooter {
    pub(super) disk_type: DiskType,
    pub(super) data_offset: u64,
    pub(super) timestamp: u32,
    pub(super) creator_app: [u8; 4],
    pub(super) creator_version: u32,
    pub(super) original_size: u64,
    pub(super) current_size: u64,
    pub(super) geometry: Geometry,
    pub(super) unique_id: [u8; 16],
}

/// The one's complement of the byte sum with the checksum field (bytes 64..68) as zero.
pub(super) fn footer_checksum(bytes: &[u8; 512]) -> u32 {
    ones_complement_sum(bytes, 64)
}

/// The VHD checksum (footer and dynamic header alike): the one's complement of the sum of
/// every byte, the four checksum bytes at `field` taken as zero.
pub(super) fn ones_complement_sum(bytes: &[u8], field: usize) -> u32 {
    let sum = bytes
        .iter()
        .enumerate()
        .filter(|(i, _)| !(field..field + 4).contains(i))
        .fold(0u32, |acc, (_, &b)| acc.wrapping_add(u32::from(b)));
    !sum
}

/// True when `bytes` start with the footer cookie.
pub(super) fn has_cookie(bytes: &[u8; 512]) -> bool {
    bytes[..8] == VHD_COOKIE
}

impl VhdFooter {
    /// Validates the footer read at `offset`.
    pub(super) fn parse(bytes: &[u8; 512], offset: u64) -> Result<Self, VhdError> {
        let raw = RawFooter::ref_from_bytes(bytes).expect("buffer is 512 bytes");
        if raw.cookie != VHD_COOKIE {
            return Err(VhdError::NoFooter { offset });
        }
        let computed = footer_checksum(bytes);
        let found = raw.checksum.get();
        if found != computed {
            return Err(VhdError::BadChecksum {
                what: "footer",
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
        let disk_type = match raw.disk_type.get() {
            2 => DiskType::Fixed,
            3 => DiskType::Dynamic,
            4 => return Err(VhdError::Differencing { offset }),
            other => {
                return Err(VhdError::BadDiskType {
                    offset,
                    disk_type: other,
                });
            }
        };
        Ok(Self {
            disk_type,
            data_offset: raw.data_offset.get(),
            timestamp: raw.timestamp.get(),
            creator_app: raw.creator_app,
            creator_version: raw.creator_version.get(),
            original_size: raw.original_size.get(),
            current_size: raw.current_size.get(),
            geometry: Geometry {
                cylinders: raw.cylinders.get(),
                heads: raw.heads,
                sectors: raw.sectors,
            },
            unique_id: raw.unique_id,
        })
    }

    /// Serialises the footer with its checksum.
    pub(super) fn to_bytes(&self) -> [u8; 512] {
        let raw = RawFooter {
            cookie: VHD_COOKIE,
            features: VHD_FEATURES_RESERVED.into(),
            version: VHD_VERSION.into(),
            data_offset: self.data_offset.into(),
            timestamp: self.timestamp.into(),
            creator_app: self.creator_app,
            creator_version: self.creator_version.into(),
            creator_os: VHD_CREATOR_OS,
            original_size: self.original_size.into(),
            current_size: self.current_size.into(),
            cylinders: self.geometry.cylinders.into(),
            heads: self.geometry.heads,
            sectors: self.geometry.sectors,
            disk_type: self.disk_type.code().into(),
            checksum: 0.into(),
            unique_id: self.unique_id,
            saved_state: 0,
            reserved: [0; 427],
        };
        let mut bytes = [0u8; 512];
        bytes.copy_from_slice(raw.as_bytes());
        let checksum = footer_checksum(&bytes);
        bytes[64..68].copy_from_slice(&checksum.to_be_bytes());
        bytes
    }

    /// The creator app, printable.
    pub(super) fn creator_app_text(&self) -> String {
        self.creator_app
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect()
    }

    /// True when qemu takes the size from `current_size` rather than from the geometry.
    pub(super) fn qemu_uses_current_size(&self) -> bool {
        VHD_SIZE_HONOURED_CREATORS.contains(&&self.creator_app) || self.geometry.is_max()
    }
}

/// VHD time: seconds since 2000-01-01 UTC, saturating into 32 bits.
pub(super) fn vhd_timestamp(unix_epoch: u64) -> u32 {
    u32::try_from(unix_epoch.saturating_sub(VHD_EPOCH_UNIX)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> VhdFooter {
        VhdFooter {
            disk_type: DiskType::Dynamic,
            data_offset: 512,
            timestamp: 7,
            creator_app: *b"kiln",
            creator_version: 1,
            original_size: 64 << 20,
            current_size: 64 << 20,
            geometry: Geometry::for_sectors(131_072),
            unique_id: [9; 16],
        }
    }

    #[test]
    fn footer_round_trips() {
        let footer = sample();
        assert_eq!(VhdFooter::parse(&footer.to_bytes(), 0).unwrap(), footer);
    }

    #[test]
    fn footer_with_bad_checksum_is_rejected() {
        let mut bytes = sample().to_bytes();
        bytes[100] ^= 1;
        let err = VhdFooter::parse(&bytes, 0x200).unwrap_err();
        assert!(
            matches!(err, VhdError::BadChecksum { offset: 0x200, .. }),
            "{err}"
        );
    }

    #[test]
    fn differencing_footer_is_refused() {
        let mut bytes = sample().to_bytes();
        bytes[63] = 4;
        let checksum = footer_checksum(&bytes);
        bytes[64..68].copy_from_slice(&checksum.to_be_bytes());
        assert!(matches!(
            VhdFooter::parse(&bytes, 0),
            Err(VhdError::Differencing { .. })
        ));
    }

    #[test]
    fn checksum_matches_qemu_footer() {
        // The first 68 bytes of the footer qemu-img 10.0.2 wrote for a 64 MiB dynamic disk.
        let mut bytes = [0u8; 512];
        let head: [u8; 68] = [
            0x63, 0x6f, 0x6e, 0x65, 0x63, 0x74, 0x69, 0x78, // cookie
            0, 0, 0, 2, // features
            0, 1, 0, 0, // version
            0, 0, 0, 0, 0, 0, 2, 0, // data offset
            0x32, 0x99, 0xb5, 0x1c, // timestamp
            0x71, 0x65, 0x6d, 0x75, // creator app "qemu"
            0, 5, 0, 3, // creator version
            0x57, 0x69, 0x32, 0x6b, // creator os "Wi2k"
            0, 0, 0, 0, 0x04, 0, 0x40, 0, // original size
            0, 0, 0, 0, 0x04, 0, 0x40, 0, // current size
            0x03, 0xc4, 0x08, 0x11, // geometry 964/8/17
            0, 0, 0, 3, // disk type
            0xff, 0xff, 0xeb, 0x6d, // checksum
        ];
        bytes[..68].copy_from_slice(&head);
        let id = [
            0xd4, 0xcf, 0xbc, 0xb4, 0xc5, 0xed, 0x4d, 0x79, 0x83, 0x84, 0xc9, 0x8d, 0xf9, 0xfc,
            0xf4, 0x3b,
        ];
        bytes[68..84].copy_from_slice(&id);
        assert_eq!(footer_checksum(&bytes), 0xffff_eb6d);
    }

    #[test]
    fn covering_geometry_matches_qemu_for_64_mib() {
        let g = Geometry::covering(131_072);
        assert_eq!((g.cylinders, g.heads, g.sectors), (964, 8, 17));
    }

    #[test]
    fn huge_disks_get_the_maximum_geometry() {
        assert!(Geometry::covering(VHD_MAX_CHS_SECTORS + 5).is_max());
    }

    #[test]
    fn timestamp_counts_from_2000() {
        assert_eq!(vhd_timestamp(946_684_800 + 5), 5);
    }
}

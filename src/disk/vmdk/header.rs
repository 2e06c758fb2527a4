//! The hosted sparse extent header and the stream-optimized markers (VMware Virtual Disk
//! Format 5.0, "Hosted Sparse Extent Header" and "Stream-Optimized Compressed Sparse
//! Extents").

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::error::VmdkError;

/// `KDMV` read as a little-endian u32: the sparse extent magic.
pub(super) const VMDK_MAGIC: u32 = 0x564d_444b;
/// Bytes per sector; every VMDK offset and size is counted in these.
pub(super) const VMDK_SECTOR: u64 = 512;
/// `gdOffset` value meaning "the grain directory is found through the footer".
pub(super) const VMDK_GD_AT_END: u64 = u64::MAX;
/// Grain table entries per grain table; the spec and 7-Zip require 512.
pub(super) const VMDK_GTES_PER_GT: u32 = 512;
/// Flag bit 0: the newline-detection characters are valid.
pub(super) const VMDK_FLAG_NL_DETECT: u32 = 1;
/// Flag bit 1: a redundant grain directory is present.
pub(super) const VMDK_FLAG_RGD: u32 = 1 << 1;
/// Flag bit 2: GTE value 1 means "grain reads as zeros".
pub(super) const VMDK_FLAG_ZERO_GRAIN: u32 = 1 << 2;
/// Flag bit 16: grains are compressed.
pub(super) const VMDK_FLAG_COMPRESSED: u32 = 1 << 16;
/// Flag bit 17: the extent contains markers.
pub(super) const VMDK_FLAG_MARKERS: u32 = 1 << 17;
/// compressAlgorithm 1: deflate in zlib framing (RFC 1950).
pub(super) const VMDK_COMPRESS_DEFLATE: u16 = 1;
/// Marker type: end of stream.
pub(super) const VMDK_MARKER_EOS: u32 = 0;
/// Marker type: a grain table follows.
pub(super) const VMDK_MARKER_GT: u32 = 1;
/// Marker type: the grain directory follows.
pub(super) const VMDK_MARKER_GD: u32 = 2;
/// Marker type: the footer follows.
pub(super) const VMDK_MARKER_FOOTER: u32 = 3;
/// Largest grain kiln reads, in sectors (4 MiB, the engine's extent bound).
pub(super) const VMDK_MAX_GRAIN_SECTORS: u64 = 8192;
/// Largest capacity kiln reads or writes: 64 TiB, VMware's own virtual disk limit.
pub(super) const VMDK_MAX_CAPACITY_SECTORS: u64 = (64 << 40) / VMDK_SECTOR;

/// The 512-byte on-disk header, all fields little-endian.
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(super) struct RawSparseHeader {
    magic: U32,
    version: U32,
    flags: U32,
    capacity: U64,
    grain_size: U64,
    descriptor_offset: U64,
    descriptor_size: U64,
    num_gtes_per_gt: U32,
    rgd_offset: U64,
    gd_offset: U64,
    over_head: U64,
    unclean_shutdown: u8,
    newline_chars: [u8; 4],
    compress_algorithm: U16,
    pad: [u8; 433],
}

/// A validated sparse extent header; sizes in sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SparseHeader {
    pub version: u32,
    pub flags: u32,
    pub capacity: u64,
    pub grain_sectors: u64,
    pub descriptor_offset: u64,
    pub descriptor_sectors: u64,
    pub rgd_offset: u64,
    pub gd_offset: u64,
    pub overhead: u64,
    pub compress_algorithm: u16,
}

impl SparseHeader {
    /// True when grains are zlib-compressed with markers (streamOptimized).
    pub fn compressed(&self) -> bool {
        self.flags & VMDK_FLAG_COMPRESSED != 0
    }

    /// Number of grains covering the capacity.
    pub fn grain_count(&self) -> u64 {
        self.capacity.div_ceil(self.grain_sectors)
    }

    /// Number of grain directory entries (one per grain table).
    pub fn gd_entries(&self) -> u64 {
        self.grain_count().div_ceil(u64::from(VMDK_GTES_PER_GT))
    }

    /// Serialises the header into one sector.
    pub fn to_bytes(self) -> [u8; 512] {
        let raw = RawSparseHeader {
            magic: VMDK_MAGIC.into(),
            version: self.version.into(),
            flags: self.flags.into(),
            capacity: self.capacity.into(),
            grain_size: self.grain_sectors.into(),
            descriptor_offset: self.descriptor_offset.into(),
            descriptor_size: self.descriptor_sectors.into(),
            num_gtes_per_gt: VMDK_GTES_PER_GT.into(),
            rgd_offset: self.rgd_offset.into(),
            gd_offset: self.gd_offset.into(),
            over_head: self.overhead.into(),
            unclean_shutdown: 0,
            newline_chars: *b"\n \r\n",
            compress_algorithm: self.compress_algorithm.into(),
            pad: [0; 433],
        };
        let mut out = [0u8; 512];
        out.copy_from_slice(raw.as_bytes());
        out
    }

    /// Parses and validates the header sector found at byte `offset`.
    pub fn parse(bytes: &[u8; 512], offset: u64) -> Result<Self, VmdkError> {
        let raw = RawSparseHeader::read_from_bytes(bytes).expect("buffer is 512 bytes");
        let bad = |field, value: u64, allowed| VmdkError::BadHeaderField {
            offset,
            field,
            value,
            allowed,
        };
        if raw.magic.get() != VMDK_MAGIC {
            return Err(bad("magicNumber", raw.magic.get().into(), "expected KDMV"));
        }
        // The grain size sizes everything else: validate it first.
        let grain_sectors = raw.grain_size.get();
        if !grain_sectors.is_power_of_two() || grain_sectors > VMDK_MAX_GRAIN_SECTORS {
            return Err(bad(
                "grainSize",
                grain_sectors,
                "expected a power of two up to 8192 sectors",
            ));
        }
        let version = raw.version.get();
        if !(1..=3).contains(&version) {
            return Err(bad("version", version.into(), "expected 1, 2 or 3"));
        }
        if raw.num_gtes_per_gt.get() != VMDK_GTES_PER_GT {
            return Err(bad(
                "numGTEsPerGT",
                raw.num_gtes_per_gt.get().into(),
                "expected 512",
            ));
        }
        let capacity = raw.capacity.get();
        if capacity > VMDK_MAX_CAPACITY_SECTORS {
            return Err(bad("capacity", capacity, "at most 64 TiB is read"));
        }
        let flags = raw.flags.get();
        let header = Self {
            version,
            flags,
            capacity,
            grain_sectors,
            descriptor_offset: raw.descriptor_offset.get(),
            descriptor_sectors: raw.descriptor_size.get(),
            rgd_offset: raw.rgd_offset.get(),
            gd_offset: raw.gd_offset.get(),
            overhead: raw.over_head.get(),
            compress_algorithm: raw.compress_algorithm.get(),
        };
        header.check_compression(offset)?;
        Ok(header)
    }

    fn check_compression(&self, offset: u64) -> Result<(), VmdkError> {
        let bad = |field, value: u64, allowed| VmdkError::BadHeaderField {
            offset,
            field,
            value,
            allowed,
        };
        if !self.compressed() {
            return Ok(());
        }
        if self.compress_algorithm != VMDK_COMPRESS_DEFLATE {
            return Err(bad(
                "compressAlgorithm",
                self.compress_algorithm.into(),
                "expected 1 (deflate)",
            ));
        }
        if self.flags & VMDK_FLAG_MARKERS == 0 {
            return Err(bad(
                "flags",
                self.flags.into(),
                "compressed grains need the markers flag (bit 17)",
            ));
        }
        Ok(())
    }
}

/// The first 16 bytes of a marker sector: `val`, `size` and (for metadata markers) `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Marker {
    pub val: u64,
    pub size: u32,
    pub kind: u32,
}

impl Marker {
    /// Decodes the first 16 bytes of `bytes` (at least 16 long).
    pub fn parse(bytes: &[u8; 16]) -> Self {
        let (val, rest) = bytes.split_at(8);
        let (size, kind) = rest.split_at(4);
        Self {
            val: u64::from_le_bytes(val.try_into().expect("8 bytes")),
            size: u32::from_le_bytes(size.try_into().expect("4 bytes")),
            kind: u32::from_le_bytes(kind.try_into().expect("4 bytes")),
        }
    }

    /// A metadata marker sector (`size` 0) of `kind` with `val` sectors following.
    pub fn metadata_sector(val: u64, kind: u32) -> [u8; 512] {
        let mut sector = [0u8; 512];
        sector[..8].copy_from_slice(&val.to_le_bytes());
        sector[12..16].copy_from_slice(&kind.to_le_bytes());
        sector
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> SparseHeader {
        SparseHeader {
            version: 1,
            flags: VMDK_FLAG_NL_DETECT | VMDK_FLAG_RGD,
            capacity: 131_072,
            grain_sectors: 128,
            descriptor_offset: 1,
            descriptor_sectors: 20,
            rgd_offset: 21,
            gd_offset: 30,
            overhead: 128,
            compress_algorithm: 0,
        }
    }

    #[test]
    fn header_round_trips() {
        let h = header();
        assert_eq!(SparseHeader::parse(&h.to_bytes(), 0).unwrap(), h);
    }

    #[test]
    fn header_serialises_fields_at_spec_offsets() {
        let b = header().to_bytes();
        assert_eq!(&b[0..4], b"KDMV");
        assert_eq!(b[44..48], 512u32.to_le_bytes());
        assert_eq!(&b[73..77], b"\n \r\n");
    }

    #[test]
    fn grain_size_not_power_of_two_is_rejected() {
        let mut b = header().to_bytes();
        b[20] = 100;
        let e = SparseHeader::parse(&b, 0).unwrap_err();
        assert!(e.to_string().contains("grainSize"), "{e}");
    }

    #[test]
    fn huge_capacity_is_rejected() {
        let mut b = header().to_bytes();
        b[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
        let e = SparseHeader::parse(&b, 0).unwrap_err();
        assert!(e.to_string().contains("capacity"), "{e}");
    }

    #[test]
    fn compressed_without_markers_is_rejected() {
        let mut h = header();
        h.flags |= VMDK_FLAG_COMPRESSED;
        h.compress_algorithm = 1;
        assert!(SparseHeader::parse(&h.to_bytes(), 0).is_err());
    }

    #[test]
    fn marker_sector_holds_val_and_type() {
        let m = Marker::metadata_sector(4, VMDK_MARKER_GT);
        let head: [u8; 16] = m[..16].try_into().unwrap();
        assert_eq!(
            Marker::parse(&head),
            Marker {
                val: 4,
                size: 0,
                kind: 1
            }
        );
    }
}

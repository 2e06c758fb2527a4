//! The qcow2 header (qcow2 spec, "Header") and its extensions ("Header extensions").
//!
//! [`RawHeader`] is the on-disk view of the 104-byte v3 header (a v2 header is its first 72
//! bytes); [`Qcow2Header`] is the validated value both the reader and the writer use, so a
//! header kiln writes round-trips through the same checks it applies to foreign images.

use zerocopy::byteorder::{BigEndian, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::Qcow2Error;

/// `QFI\xfb`: the magic every qcow image starts with.
pub(super) const QCOW2_MAGIC: u32 = 0x5146_49fb;
/// Length of a version 2 header.
pub(super) const QCOW2_V2_HEADER_LEN: u32 = 72;
/// Length of the fixed part of a version 3 header.
pub(super) const QCOW2_V3_HEADER_LEN: u32 = 104;
/// Header length qemu writes for v3: 104 + the compression-type byte, padded to 8.
pub(super) const QCOW2_V3_WRITE_LEN: u32 = 112;
/// Smallest cluster_bits qemu accepts (512 B).
pub(super) const QCOW2_MIN_CLUSTER_BITS: u32 = 9;
/// Largest cluster_bits qemu accepts (2 MiB).
pub(super) const QCOW2_MAX_CLUSTER_BITS: u32 = 21;
/// qemu's QCOW_MAX_L1_SIZE: the L1 table may not exceed 32 MiB.
pub(super) const QCOW2_MAX_L1_BYTES: u64 = 32 << 20;
/// qemu's QCOW_MAX_REFTABLE_SIZE: the refcount table may not exceed 8 MiB.
pub(super) const QCOW2_MAX_REFTABLE_BYTES: u64 = 8 << 20;

/// Incompatible feature bit 0: the image was not closed cleanly.
pub(super) const INCOMPAT_DIRTY: u64 = 1 << 0;
/// Incompatible feature bit 1: qemu found the metadata corrupt.
pub(super) const INCOMPAT_CORRUPT: u64 = 1 << 1;
/// Incompatible feature bit 2: guest data lives in an external data file.
pub(super) const INCOMPAT_DATA_FILE: u64 = 1 << 2;
/// Incompatible feature bit 3: the compression_type field is valid.
pub(super) const INCOMPAT_COMPRESSION: u64 = 1 << 3;
/// Incompatible feature bit 4: extended L2 entries (subclusters).
pub(super) const INCOMPAT_EXTENDED_L2: u64 = 1 << 4;

/// The 104-byte v3 header as stored (big-endian).
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub(super) struct RawHeader {
    magic: U32<BigEndian>,
    version: U32<BigEndian>,
    backing_file_offset: U64<BigEndian>,
    backing_file_size: U32<BigEndian>,
    cluster_bits: U32<BigEndian>,
    size: U64<BigEndian>,
    crypt_method: U32<BigEndian>,
    l1_size: U32<BigEndian>,
    l1_table_offset: U64<BigEndian>,
    refcount_table_offset: U64<BigEndian>,
    refcount_table_clusters: U32<BigEndian>,
    nb_snapshots: U32<BigEndian>,
    snapshots_offset: U64<BigEndian>,
    incompatible_features: U64<BigEndian>,
    compatible_features: U64<BigEndian>,
    autoclear_features: U64<BigEndian>,
    refcount_order: U32<BigEndian>,
    header_length: U32<BigEndian>,
}

/// A header whose fields passed [`Qcow2Header::parse`]'s checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Qcow2Header {
    pub version: u32,
    pub backing_file_offset: u64,
    pub backing_file_size: u32,
    pub cluster_bits: u32,
    pub size: u64,
    pub crypt_method: u32,
    pub l1_size: u32,
    pub l1_table_offset: u64,
    pub refcount_table_offset: u64,
    pub refcount_table_clusters: u32,
    pub nb_snapshots: u32,
    pub snapshots_offset: u64,
    pub incompatible: u64,
    pub compatible: u64,
    pub autoclear: u64,
    pub refcount_order: u32,
    pub header_length: u32,
    /// 0 = zlib, 1 = zstd (only meaningful with [`INCOMPAT_COMPRESSION`]).
    pub compression_type: u8,
}

impl Qcow2Header {
    /// Validates the header in `buf` (at least 112 bytes, the file's start; shorter files
    /// are padded with zeros by the caller). Fields that size the rest come first.
    ///
    /// # Errors
    /// The first field that breaks the spec, with its offset.
    pub fn parse(buf: &[u8; 112]) -> Result<Self, Qcow2Error> {
        let (raw, _) = RawHeader::read_from_prefix(buf).expect("buffer holds 104 bytes");
        if raw.magic.get() != QCOW2_MAGIC {
            return Err(Qcow2Error::BadMagic {
                found: raw.magic.get(),
            });
        }
        let version = raw.version.get();
        if version != 2 && version != 3 {
            return Err(Qcow2Error::BadVersion { found: version });
        }
        let cluster_bits = raw.cluster_bits.get();
        if !(QCOW2_MIN_CLUSTER_BITS..=QCOW2_MAX_CLUSTER_BITS).contains(&cluster_bits) {
            return Err(Qcow2Error::BadClusterBits {
                found: cluster_bits,
            });
        }
        let mut header = Self::from_raw(&raw, version, cluster_bits);
        if version == 3 {
            header.check_v3_length()?;
            if header.header_length > QCOW2_V3_HEADER_LEN {
                header.compression_type = buf[104];
            }
        }
        if header.refcount_order > 6 || (version == 2 && header.refcount_order != 4) {
            return Err(Qcow2Error::BadRefcountOrder {
                found: header.refcount_order,
            });
        }
        Ok(header)
    }

    fn from_raw(raw: &RawHeader, version: u32, cluster_bits: u32) -> Self {
        let v3 = version == 3;
        Self {
            version,
            backing_file_offset: raw.backing_file_offset.get(),
            backing_file_size: raw.backing_file_size.get(),
            cluster_bits,
            size: raw.size.get(),
            crypt_method: raw.crypt_method.get(),
            l1_size: raw.l1_size.get(),
            l1_table_offset: raw.l1_table_offset.get(),
            refcount_table_offset: raw.refcount_table_offset.get(),
            refcount_table_clusters: raw.refcount_table_clusters.get(),
            nb_snapshots: raw.nb_snapshots.get(),
            snapshots_offset: raw.snapshots_offset.get(),
            incompatible: if v3 {
                raw.incompatible_features.get()
            } else {
                0
            },
            compatible: if v3 { raw.compatible_features.get() } else { 0 },
            autoclear: if v3 { raw.autoclear_features.get() } else { 0 },
            refcount_order: if v3 { raw.refcount_order.get() } else { 4 },
            header_length: if v3 {
                raw.header_length.get()
            } else {
                QCOW2_V2_HEADER_LEN
            },
            compression_type: 0,
        }
    }

    fn check_v3_length(&self) -> Result<(), Qcow2Error> {
        let len = self.header_length;
        // qcow2 spec: header_length is at least 104 and a multiple of 8 (since 1.1 rev.);
        // it must also leave room in the first cluster for the extensions' end marker.
        let max = self.cluster_size().saturating_sub(8);
        if len < QCOW2_V3_HEADER_LEN || !len.is_multiple_of(8) || u64::from(len) > max {
            return Err(Qcow2Error::BadHeaderLength { found: len, max });
        }
        Ok(())
    }

    /// Bytes per cluster.
    pub fn cluster_size(&self) -> u64 {
        1u64 << self.cluster_bits
    }

    /// Serialises the header: 72 bytes for v2, [`QCOW2_V3_WRITE_LEN`] for v3.
    pub fn to_bytes(&self) -> Vec<u8> {
        let raw = RawHeader {
            magic: QCOW2_MAGIC.into(),
            version: self.version.into(),
            backing_file_offset: self.backing_file_offset.into(),
            backing_file_size: self.backing_file_size.into(),
            cluster_bits: self.cluster_bits.into(),
            size: self.size.into(),
            crypt_method: self.crypt_method.into(),
            l1_size: self.l1_size.into(),
            l1_table_offset: self.l1_table_offset.into(),
            refcount_table_offset: self.refcount_table_offset.into(),
            refcount_table_clusters: self.refcount_table_clusters.into(),
            nb_snapshots: self.nb_snapshots.into(),
            snapshots_offset: self.snapshots_offset.into(),
            incompatible_features: self.incompatible.into(),
            compatible_features: self.compatible.into(),
            autoclear_features: self.autoclear.into(),
            refcount_order: self.refcount_order.into(),
            header_length: self.header_length.into(),
        };
        let mut bytes = raw.as_bytes().to_vec();
        if self.version == 2 {
            bytes.truncate(QCOW2_V2_HEADER_LEN as usize);
        } else {
            bytes.resize(QCOW2_V3_WRITE_LEN as usize, 0);
            bytes[104] = self.compression_type;
        }
        bytes
    }
}

/// Header extension type: name of the backing file's format.
pub(super) const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
/// Header extension type: feature name table.
pub(super) const EXT_FEATURE_NAMES: u32 = 0x6803_f857;
/// Header extension type: persistent dirty bitmaps.
pub(super) const EXT_BITMAPS: u32 = 0x2385_2875;
/// Header extension type: full disk encryption header pointer.
pub(super) const EXT_ENCRYPTION: u32 = 0x0537_be77;
/// Header extension type: external data file name.
pub(super) const EXT_DATA_FILE: u32 = 0x4441_5441;

/// One header extension: its type, offset in the file and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Extension {
    pub kind: u32,
    pub offset: u64,
    pub data: Vec<u8>,
}

impl Extension {
    /// A short name for `kiln info`.
    pub fn name(&self) -> String {
        match self.kind {
            EXT_BACKING_FORMAT => "backing-format".into(),
            EXT_FEATURE_NAMES => "feature-names".into(),
            EXT_BITMAPS => "bitmaps".into(),
            EXT_ENCRYPTION => "encryption".into(),
            EXT_DATA_FILE => "data-file".into(),
            other => format!("{other:#010x}"),
        }
    }
}

/// Parses the extensions that follow the header in the first cluster (`area` is the file's
/// first cluster, or less for a shorter file). The walk is bounded by the area, so a
/// hostile length can neither loop nor allocate more than one cluster.
///
/// # Errors
/// An extension whose length runs past the first cluster.
pub(super) fn parse_extensions(area: &[u8], start: u32) -> Result<Vec<Extension>, Qcow2Error> {
    let mut pos = start as usize;
    let mut out = Vec::new();
    loop {
        // qemu stops at the end of the area too: the end marker is optional there.
        let Some(head) = area.get(pos..pos + 8) else {
            return Ok(out);
        };
        let kind = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        if kind == 0 {
            return Ok(out);
        }
        let data_start = pos + 8;
        let data = usize::try_from(len)
            .ok()
            .and_then(|l| area.get(data_start..data_start.checked_add(l)?))
            .ok_or(Qcow2Error::ExtensionTooLong {
                offset: pos as u64,
                len,
            })?;
        out.push(Extension {
            kind,
            offset: pos as u64,
            data: data.to_vec(),
        });
        // Payloads are padded to a multiple of 8 bytes.
        pos = data_start + data.len().div_ceil(8) * 8;
    }
}

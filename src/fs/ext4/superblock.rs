//! The superblock (the kernel's Documentation/filesystems/ext4/super.rst): 1024 bytes at
//! byte 1024, validated field by field, the block size first since everything else is
//! counted in blocks.

use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, KnownLayout, Unaligned};

use super::Ext4Error;
use super::csum::crc32c;

/// Where the superblock is.
pub(super) const EXT4_SUPERBLOCK_OFFSET: u64 = 1024;
/// Its size.
const EXT4_SUPERBLOCK_SIZE: usize = 1024;
/// The magic at superblock byte 0x38.
const EXT4_MAGIC: u16 = 0xEF53;
/// Largest `s_log_block_size`: 64 KiB blocks.
const EXT4_MAX_LOG_BLOCK_SIZE: u32 = 6;
/// Inode size of revision 0 file systems, and the smallest any may have.
const EXT4_GOOD_OLD_INODE_SIZE: u64 = 128;
/// Largest group descriptor (`EXT4_MAX_DESC_SIZE`).
const EXT4_MAX_DESC_SIZE: u16 = 1024;
/// `s_checksum_type` for CRC-32C, the only one defined.
const EXT4_CRC32C_CHKSUM: u8 = 1;

/// COMPAT: backup superblocks only in the two groups `s_backup_bgs` names.
const COMPAT_SPARSE_SUPER2: u32 = 0x200;
/// RO_COMPAT: backup superblocks only in groups 0, 1 and powers of 3, 5 and 7.
const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;
/// RO_COMPAT: group descriptors carry a CRC-16.
const RO_COMPAT_GDT_CSUM: u32 = 0x10;
/// RO_COMPAT: metadata carries CRC-32C checksums.
const RO_COMPAT_METADATA_CSUM: u32 = 0x400;
/// INCOMPAT: directory entries carry a file type byte.
const INCOMPAT_FILETYPE: u32 = 0x2;
/// INCOMPAT: group descriptors live in meta block groups.
const INCOMPAT_META_BG: u32 = 0x10;
/// INCOMPAT: 64-bit block numbers (and descriptors of `s_desc_size` bytes).
const INCOMPAT_64BIT: u32 = 0x80;
/// INCOMPAT: directories over 2 GiB and three-level htrees; `i_size_high` counts for them.
const INCOMPAT_LARGEDIR: u32 = 0x4000;
/// INCOMPAT: the checksum seed is stored in the superblock.
const INCOMPAT_CSUM_SEED: u32 = 0x2000;

/// INCOMPAT features and whether kiln reads file systems that have them. Inode-level
/// features (inline data, encryption) are refused per inode instead; casefolded
/// directories are matched byte for byte.
const INCOMPAT_FEATURES: &[(u32, &str, bool)] = &[
    (0x1, "compression", false),
    (INCOMPAT_FILETYPE, "filetype", true),
    (
        0x4,
        "needs_recovery (the journal must be replayed: run e2fsck on a copy)",
        false,
    ),
    (0x8, "journal_dev (an external journal device)", false),
    (INCOMPAT_META_BG, "meta_bg", true),
    (0x40, "extent", true),
    (INCOMPAT_64BIT, "64bit", true),
    (0x100, "mmp", true),
    (0x200, "flex_bg", true),
    (0x400, "ea_inode", true),
    (0x1000, "dirdata", false),
    (INCOMPAT_CSUM_SEED, "metadata_csum_seed", true),
    (INCOMPAT_LARGEDIR, "large_dir", true),
    (0x8000, "inline_data", true),
    (0x10000, "encrypt", true),
    (0x20000, "casefold", true),
];

/// The superblock fields kiln reads; the rest is padding.
#[derive(FromBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawSuperblock {
    inodes_count: U32,
    blocks_count_lo: U32,
    _pad08: [u8; 12],
    first_data_block: U32,
    log_block_size: U32,
    _log_cluster_size: U32,
    blocks_per_group: U32,
    _clusters_per_group: U32,
    inodes_per_group: U32,
    _pad2c: [u8; 12],
    magic: U16,
    _pad3a: [u8; 18],
    rev_level: U32,
    _pad50: [u8; 8],
    inode_size: U16,
    _block_group_nr: U16,
    feature_compat: U32,
    feature_incompat: U32,
    feature_ro_compat: U32,
    uuid: [u8; 16],
    volume_name: [u8; 16],
    _pad88: [u8; 0x76],
    desc_size: U16,
    _pad100: [u8; 4],
    first_meta_bg: U32,
    _pad108: [u8; 0x48],
    blocks_count_hi: U32,
    _pad154: [u8; 0x21],
    checksum_type: u8,
    _pad176: [u8; 0xD6],
    backup_bgs: [U32; 2],
    _pad254: [u8; 0x1C],
    checksum_seed: U32,
    _pad274: [u8; 0x188],
    checksum: U32,
}

const _: () = assert!(std::mem::size_of::<RawSuperblock>() == EXT4_SUPERBLOCK_SIZE);

/// How group descriptors are checksummed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GroupCsum {
    /// Not at all.
    None,
    /// CRC-16 seeded with the UUID (`gdt_csum`).
    Crc16,
    /// The low 16 bits of CRC-32C (`metadata_csum`).
    Crc32c,
}

/// A validated superblock.
#[derive(Debug, Clone)]
pub(super) struct Superblock {
    pub(super) block_size: u64,
    pub(super) blocks_count: u64,
    pub(super) first_data_block: u64,
    pub(super) blocks_per_group: u64,
    pub(super) inodes_per_group: u32,
    pub(super) inodes_count: u32,
    pub(super) inode_size: u64,
    pub(super) desc_size: u64,
    pub(super) group_count: u32,
    pub(super) first_meta_bg: u32,
    pub(super) meta_bg: bool,
    pub(super) is_64bit: bool,
    pub(super) filetype: bool,
    pub(super) large_dir: bool,
    pub(super) sparse_super: bool,
    pub(super) sparse_super2: Option<[u32; 2]>,
    /// `Some(seed)` under `metadata_csum`.
    pub(super) csum_seed: Option<u32>,
    pub(super) group_csum: GroupCsum,
    pub(super) uuid: [u8; 16],
    pub(super) label: String,
}

fn bad(field: &'static str, value: impl Into<u64>, rule: &'static str) -> Ext4Error {
    Ext4Error::BadSuperblock {
        field,
        value: value.into(),
        rule,
    }
}

impl Superblock {
    /// Parses and validates the superblock bytes of a file system `source_len` bytes long.
    pub(super) fn parse(bytes: &[u8; 1024], source_len: u64) -> Result<Self, Ext4Error> {
        let raw = RawSuperblock::ref_from_bytes(bytes).expect("the superblock is 1024 bytes");
        if raw.magic.get() != EXT4_MAGIC {
            return Err(Ext4Error::NotExt4);
        }
        let incompat = raw.feature_incompat.get();
        check_features(incompat)?;
        let ro_compat = raw.feature_ro_compat.get();
        let csum_seed = metadata_csum(raw, bytes, ro_compat, incompat)?;
        let log = raw.log_block_size.get();
        if log > EXT4_MAX_LOG_BLOCK_SIZE {
            return Err(bad("s_log_block_size", log, "at most 6 (64 KiB blocks)"));
        }
        let block_size = 1024u64 << log;
        let is_64bit = incompat & INCOMPAT_64BIT != 0;
        let mut sb = Self {
            block_size,
            blocks_count: blocks_count(raw, is_64bit),
            first_data_block: u64::from(raw.first_data_block.get()),
            blocks_per_group: u64::from(raw.blocks_per_group.get()),
            inodes_per_group: raw.inodes_per_group.get(),
            inodes_count: raw.inodes_count.get(),
            inode_size: inode_size(raw, block_size)?,
            desc_size: desc_size(raw, is_64bit)?,
            group_count: 0,
            first_meta_bg: raw.first_meta_bg.get(),
            meta_bg: incompat & INCOMPAT_META_BG != 0,
            is_64bit,
            filetype: incompat & INCOMPAT_FILETYPE != 0,
            large_dir: incompat & INCOMPAT_LARGEDIR != 0,
            sparse_super: ro_compat & RO_COMPAT_SPARSE_SUPER != 0,
            sparse_super2: (raw.feature_compat.get() & COMPAT_SPARSE_SUPER2 != 0)
                .then(|| raw.backup_bgs.map(|g| g.get())),
            csum_seed,
            group_csum: match (csum_seed, ro_compat & RO_COMPAT_GDT_CSUM != 0) {
                (Some(_), _) => GroupCsum::Crc32c,
                (None, true) => GroupCsum::Crc16,
                (None, false) => GroupCsum::None,
            },
            uuid: raw.uuid,
            label: label(&raw.volume_name),
        };
        sb.group_count = sb.check_geometry(source_len)?;
        Ok(sb)
    }

    /// Checks counts against each other and the source; returns the group count.
    fn check_geometry(&self, source_len: u64) -> Result<u32, Ext4Error> {
        let bits_per_block = 8 * self.block_size;
        if self.blocks_per_group == 0 || self.blocks_per_group > bits_per_block << 16 {
            return Err(bad(
                "s_blocks_per_group",
                self.blocks_per_group,
                "must be 1 to 8 x block size x 65536",
            ));
        }
        let ipg = u64::from(self.inodes_per_group);
        if ipg == 0 || ipg > bits_per_block {
            return Err(bad(
                "s_inodes_per_group",
                ipg,
                "must be 1 to 8 x block size",
            ));
        }
        if self.first_data_block > 1 || self.first_data_block >= self.blocks_count {
            return Err(bad(
                "s_first_data_block",
                self.first_data_block,
                "must be 0 or 1 and below the block count",
            ));
        }
        let fs_bytes = self.blocks_count.checked_mul(self.block_size);
        if fs_bytes.is_none_or(|len| len > source_len) {
            return Err(Ext4Error::PastSource {
                blocks: self.blocks_count,
                block_size: self.block_size,
                source_len,
            });
        }
        let groups = (self.blocks_count - self.first_data_block).div_ceil(self.blocks_per_group);
        let groups = u32::try_from(groups).map_err(|_| {
            bad(
                "s_blocks_count",
                self.blocks_count,
                "gives over 2^32 groups",
            )
        })?;
        if u64::from(self.inodes_count) > u64::from(groups) * ipg || self.inodes_count < 2 {
            return Err(bad(
                "s_inodes_count",
                self.inodes_count,
                "must be 2 to groups x inodes per group",
            ));
        }
        Ok(groups)
    }

    /// True when group `group` holds a superblock backup (and so the old-style descriptor
    /// table copy), as `ext4_bg_has_super` decides.
    pub(super) fn group_has_super(&self, group: u32) -> bool {
        if group == 0 {
            return true;
        }
        if let Some(backups) = self.sparse_super2 {
            return backups.contains(&group);
        }
        if group <= 1 || !self.sparse_super {
            return true;
        }
        [3u32, 5, 7].iter().any(|&base| is_power_of(group, base))
    }
}

fn is_power_of(mut n: u32, base: u32) -> bool {
    while n > 0 && n.is_multiple_of(base) {
        n /= base;
    }
    n == 1
}

fn check_features(incompat: u32) -> Result<(), Ext4Error> {
    let known: u32 = INCOMPAT_FEATURES.iter().map(|f| f.0).fold(0, |a, b| a | b);
    let mut refused: Vec<String> = (INCOMPAT_FEATURES.iter())
        .filter(|(bit, _, ok)| incompat & bit != 0 && !ok)
        .map(|(_, name, _)| (*name).to_string())
        .collect();
    if incompat & !known != 0 {
        refused.push(format!(
            "unknown incompatible features {:#x}",
            incompat & !known
        ));
    }
    if refused.is_empty() {
        return Ok(());
    }
    Err(Ext4Error::UnsupportedFeatures {
        names: refused.join(", "),
    })
}

/// Under `metadata_csum`: checks the checksum type and the superblock's own CRC-32C, and
/// returns the seed every other checksum starts from.
fn metadata_csum(
    raw: &RawSuperblock,
    bytes: &[u8],
    ro_compat: u32,
    incompat: u32,
) -> Result<Option<u32>, Ext4Error> {
    if ro_compat & RO_COMPAT_METADATA_CSUM == 0 {
        return Ok(None);
    }
    if raw.checksum_type != EXT4_CRC32C_CHKSUM {
        return Err(bad(
            "s_checksum_type",
            raw.checksum_type,
            "must be 1 (crc32c)",
        ));
    }
    let computed = crc32c(!0, &bytes[..EXT4_SUPERBLOCK_SIZE - 4]);
    if computed != raw.checksum.get() {
        return Err(Ext4Error::BadChecksum {
            what: "superblock".to_string(),
            offset: EXT4_SUPERBLOCK_OFFSET,
            found: raw.checksum.get(),
            computed,
        });
    }
    Ok(Some(if incompat & INCOMPAT_CSUM_SEED != 0 {
        raw.checksum_seed.get()
    } else {
        crc32c(!0, &raw.uuid)
    }))
}

fn blocks_count(raw: &RawSuperblock, is_64bit: bool) -> u64 {
    let hi = if is_64bit {
        u64::from(raw.blocks_count_hi.get())
    } else {
        0
    };
    hi << 32 | u64::from(raw.blocks_count_lo.get())
}

/// Revision 0 inodes are 128 bytes; later ones a power of two from 128 to the block size.
fn inode_size(raw: &RawSuperblock, block_size: u64) -> Result<u64, Ext4Error> {
    if raw.rev_level.get() == 0 {
        return Ok(EXT4_GOOD_OLD_INODE_SIZE);
    }
    let size = u64::from(raw.inode_size.get());
    if size < EXT4_GOOD_OLD_INODE_SIZE || size > block_size || !size.is_power_of_two() {
        return Err(bad(
            "s_inode_size",
            size,
            "must be a power of two from 128 to the block size",
        ));
    }
    Ok(size)
}

/// 32 bytes, or under `64bit` a power of two from 64 to 1024.
fn desc_size(raw: &RawSuperblock, is_64bit: bool) -> Result<u64, Ext4Error> {
    if !is_64bit {
        return Ok(32);
    }
    let size = raw.desc_size.get();
    if !(64..=EXT4_MAX_DESC_SIZE).contains(&size) || !size.is_power_of_two() {
        return Err(bad(
            "s_desc_size",
            size,
            "must be a power of two from 64 to 1024 under 64bit",
        ));
    }
    Ok(u64::from(size))
}

/// The volume label: bytes up to the first NUL, lossily as UTF-8.
fn label(bytes: &[u8; 16]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

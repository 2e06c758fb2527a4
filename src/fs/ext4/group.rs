//! Block group descriptors (the kernel's Documentation/filesystems/ext4/group_descr.rst):
//! 32 bytes, or `s_desc_size` under `64bit`, in the blocks after the superblock, or under
//! `meta_bg` in the first block(s) of each meta group. Read one at a time as inodes are
//! looked up, each checked against its checksum.

use super::csum::{crc16, crc32c};
use super::superblock::{GroupCsum, Superblock};
use super::{Ext4, Ext4Error};
use crate::error::Result;
use crate::io::read_exact_at;

/// Offset of `bg_checksum` in a descriptor.
const GD_CHECKSUM_OFFSET: usize = 0x1E;
/// Offset of `bg_inode_table_lo`.
const GD_INODE_TABLE_LO: usize = 0x08;
/// Offset of `bg_inode_table_hi` (64-byte descriptors).
const GD_INODE_TABLE_HI: usize = 0x28;
/// Offset of `bg_flags`.
const GD_FLAGS: usize = 0x12;
/// `bg_flags`: the group's inode table is not initialised (all its inodes are free).
const EXT4_BG_INODE_UNINIT: u16 = 0x1;

/// What kiln needs of a group descriptor.
#[derive(Debug, Clone, Copy)]
pub(super) struct GroupDesc {
    /// First block of the group's inode table.
    pub(super) inode_table: u64,
    /// The inode table is not initialised.
    pub(super) inode_uninit: bool,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Byte offset of descriptor `group` (`descriptor_loc` in the kernel).
fn desc_offset(sb: &Superblock, group: u32) -> u64 {
    let per_block = sb.block_size / sb.desc_size;
    let nr = u64::from(group) / per_block;
    let block = if !sb.meta_bg || nr < u64::from(sb.first_meta_bg) {
        sb.first_data_block + 1 + nr
    } else {
        // The meta group's descriptor block is the first block of its first group, after
        // that group's superblock backup if it has one.
        let first = nr * per_block;
        let first_group = u32::try_from(first).unwrap_or(u32::MAX);
        let has_super = u64::from(sb.group_has_super(first_group));
        // A 1 KiB-block file system whose block 0 is data has its group 0 table at 2.
        let quirk = u64::from(sb.block_size == 1024 && nr == 0 && sb.first_data_block == 0);
        sb.first_data_block + first * sb.blocks_per_group + has_super + quirk
    };
    block * sb.block_size + (u64::from(group) % per_block) * sb.desc_size
}

/// The checksum a descriptor should carry, computed with its checksum field as zero.
fn checksum(sb: &Superblock, group: u32, desc: &[u8]) -> Option<u16> {
    let group = group.to_le_bytes();
    let head = &desc[..GD_CHECKSUM_OFFSET];
    let tail = &desc[GD_CHECKSUM_OFFSET + 2..];
    match (sb.group_csum, sb.csum_seed) {
        (GroupCsum::Crc32c, Some(seed)) => {
            let crc = crc32c(crc32c(crc32c(seed, &group), head), &[0, 0]);
            // The low 16 bits are stored.
            Some(u16::try_from(crc32c(crc, tail) & 0xFFFF).unwrap_or_default())
        }
        (GroupCsum::Crc16, _) => {
            let crc = crc16(crc16(crc16(!0, &sb.uuid), &group), head);
            // gdt_csum covers the bytes after the checksum only in 64-byte descriptors.
            Some(if sb.is_64bit { crc16(crc, tail) } else { crc })
        }
        _ => None,
    }
}

impl Ext4 {
    /// Descriptor `group`, checksum and inode table location checked.
    pub(super) fn group_desc(&self, group: u32) -> Result<GroupDesc> {
        let sb = &self.sb;
        let offset = desc_offset(sb, group);
        let mut desc = vec![0u8; usize::try_from(sb.desc_size).unwrap_or(32)];
        read_exact_at(&*self.src, &mut desc, offset, "ext4 group descriptor")?;
        if let Some(computed) = checksum(sb, group, &desc) {
            let found = le16(&desc, GD_CHECKSUM_OFFSET);
            if found != computed {
                return Err(Ext4Error::BadChecksum {
                    what: format!("group descriptor {group}"),
                    offset,
                    found: u32::from(found),
                    computed: u32::from(computed),
                }
                .into());
            }
        }
        let hi = if sb.is_64bit {
            u64::from(le32(&desc, GD_INODE_TABLE_HI))
        } else {
            0
        };
        let inode_table = hi << 32 | u64::from(le32(&desc, GD_INODE_TABLE_LO));
        let table_bytes = u64::from(sb.inodes_per_group) * sb.inode_size;
        let table_blocks = table_bytes.div_ceil(sb.block_size);
        let inside =
            (inode_table.checked_add(table_blocks)).is_some_and(|end| end <= sb.blocks_count);
        if !inside || inode_table == 0 {
            return Err(Ext4Error::InodeTableOutsideFs {
                group,
                offset,
                block: inode_table,
                blocks: sb.blocks_count,
            }
            .into());
        }
        Ok(GroupDesc {
            inode_table,
            inode_uninit: le16(&desc, GD_FLAGS) & EXT4_BG_INODE_UNINIT != 0
                && sb.group_csum != GroupCsum::None,
        })
    }
}

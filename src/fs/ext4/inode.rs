//! Inodes (the kernel's Documentation/filesystems/ext4/inodes.rst): `s_inode_size` bytes in
//! their group's inode table, the first 128 the classic ones, then `i_extra_isize` bytes
//! of extra fields (the high half of the checksum, time stamp epochs).

use super::csum::crc32c;
use super::{Ext4, Ext4Error};
use crate::disk::iso::DateTime;
use crate::error::Result;
use crate::io::read_exact_at;

/// The classic inode size; extra fields follow it.
const GOOD_OLD_INODE_SIZE: usize = 128;
/// Offset of `i_mode`.
const I_MODE: usize = 0x00;
/// Offset of `i_uid` (low 16 bits).
const I_UID: usize = 0x02;
/// Offset of `i_size_lo`.
const I_SIZE_LO: usize = 0x04;
/// Offset of `i_mtime`.
const I_MTIME: usize = 0x10;
/// Offset of `i_gid` (low 16 bits).
const I_GID: usize = 0x18;
/// Offset of `i_links_count`.
const I_LINKS: usize = 0x1A;
/// Offset of `i_flags`.
const I_FLAGS: usize = 0x20;
/// Offset of `i_block`, the 60-byte block map (extent root, block pointers or a fast
/// symbolic link's target).
pub(super) const I_BLOCK: usize = 0x28;
/// Size of `i_block`.
pub(super) const I_BLOCK_LEN: usize = 60;
/// Offset of `i_generation`.
const I_GENERATION: usize = 0x64;
/// Offset of `i_size_high`.
const I_SIZE_HIGH: usize = 0x6C;
/// Offset of `l_i_uid_high`.
const I_UID_HIGH: usize = 0x78;
/// Offset of `l_i_gid_high`.
const I_GID_HIGH: usize = 0x7A;
/// Offset of `l_i_checksum_lo`.
const I_CHECKSUM_LO: usize = 0x7C;
/// Offset of `i_extra_isize`.
const I_EXTRA_ISIZE: usize = 0x80;
/// Offset of `i_checksum_hi`.
const I_CHECKSUM_HI: usize = 0x82;
/// Offset of `i_mtime_extra` (epoch bits and nanoseconds).
const I_MTIME_EXTRA: usize = 0x88;

/// `i_flags`: the block map is an extent tree.
pub(super) const EXT4_EXTENTS_FL: u32 = 0x8_0000;
/// `i_flags`: a hashed (htree) directory.
pub(super) const EXT4_INDEX_FL: u32 = 0x1000;
/// `i_flags`: data stored in the inode and an extended attribute.
const EXT4_INLINE_DATA_FL: u32 = 0x1000_0000;
/// `i_flags`: encrypted contents and names.
const EXT4_ENCRYPT_FL: u32 = 0x800;

/// The type bits of `i_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FileType {
    /// Regular file.
    Regular,
    /// Directory.
    Directory,
    /// Symbolic link.
    Symlink,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
    /// Named pipe.
    Fifo,
    /// Socket.
    Socket,
    /// A type value the format does not define.
    Unknown,
}

impl FileType {
    fn from_mode(mode: u16) -> Self {
        match mode & 0xF000 {
            0x8000 => FileType::Regular,
            0x4000 => FileType::Directory,
            0xA000 => FileType::Symlink,
            0x2000 => FileType::CharDevice,
            0x6000 => FileType::BlockDevice,
            0x1000 => FileType::Fifo,
            0xC000 => FileType::Socket,
            _ => FileType::Unknown,
        }
    }

    /// The type letter `ls -l` shows.
    pub fn letter(self) -> char {
        match self {
            FileType::Regular => '-',
            FileType::Directory => 'd',
            FileType::Symlink => 'l',
            FileType::CharDevice => 'c',
            FileType::BlockDevice => 'b',
            FileType::Fifo => 'p',
            FileType::Socket => 's',
            FileType::Unknown => '?',
        }
    }

    /// A noun for messages.
    pub fn noun(self) -> &'static str {
        match self {
            FileType::Regular => "regular file",
            FileType::Directory => "directory",
            FileType::Symlink => "symbolic link",
            FileType::CharDevice => "character device",
            FileType::BlockDevice => "block device",
            FileType::Fifo => "named pipe",
            FileType::Socket => "socket",
            FileType::Unknown => "file of unknown type",
        }
    }
}

/// An inode as read from its table.
#[derive(Debug, Clone)]
pub struct Inode {
    /// Inode number.
    pub ino: u32,
    /// Byte offset of the inode in the file system.
    pub offset: u64,
    /// `i_mode`: type and permission bits.
    pub mode: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Hard link count.
    pub links: u16,
    /// Modification time, seconds since the Unix epoch.
    pub mtime: i64,
    pub(super) flags: u32,
    pub(super) block: [u8; I_BLOCK_LEN],
    /// The seed of this inode's metadata checksums (`metadata_csum`).
    pub(super) csum_seed: Option<u32>,
}

impl Inode {
    /// The file type.
    pub fn file_type(&self) -> FileType {
        FileType::from_mode(self.mode)
    }

    /// The modification time as `YYYY-MM-DD HH:MM` in UTC (times before 1970 as 1970).
    pub fn mtime_utc(&self) -> String {
        let t = DateTime::from_epoch(u64::try_from(self.mtime).unwrap_or(0));
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}",
            t.year, t.month, t.day, t.hour, t.minute
        )
    }

    /// `rwxr-xr-x` with set-id and sticky bits, as `ls -l` shows them.
    pub fn permissions(&self) -> String {
        let m = self.mode;
        let bit = |mask: u16, c: char| if m & mask != 0 { c } else { '-' };
        let exec = |x: u16, special: u16, set: char| match (m & x != 0, m & special != 0) {
            (true, true) => set,
            (false, true) => set.to_ascii_uppercase(),
            (true, false) => 'x',
            (false, false) => '-',
        };
        [
            bit(0o400, 'r'),
            bit(0o200, 'w'),
            exec(0o100, 0o4000, 's'),
            bit(0o040, 'r'),
            bit(0o020, 'w'),
            exec(0o010, 0o2000, 's'),
            bit(0o004, 'r'),
            bit(0o002, 'w'),
            exec(0o001, 0o1000, 't'),
        ]
        .iter()
        .collect()
    }

    /// Refuses inodes whose data kiln cannot read: inline data and encryption.
    pub(super) fn check_readable(&self) -> Result<()> {
        let what = if self.flags & EXT4_INLINE_DATA_FL != 0 {
            "keeps its data inline (inline_data)"
        } else if self.flags & EXT4_ENCRYPT_FL != 0 {
            "is encrypted"
        } else {
            return Ok(());
        };
        Err(Ext4Error::UnsupportedInode {
            ino: self.ino,
            offset: self.offset,
            what,
        }
        .into())
    }

    pub(super) fn has_extents(&self) -> bool {
        self.flags & EXT4_EXTENTS_FL != 0
    }

    pub(super) fn is_htree(&self) -> bool {
        self.flags & EXT4_INDEX_FL != 0
    }
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Ext4 {
    /// Inode `ino`, named in a structure at `referenced_at`; checked to be in range, in
    /// use, and against its checksum.
    pub(super) fn inode(&self, ino: u32, referenced_at: u64) -> Result<Inode> {
        let sb = &self.sb;
        if ino == 0 || ino > sb.inodes_count {
            return Err(Ext4Error::InodeOutOfRange {
                ino: u64::from(ino),
                offset: referenced_at,
                count: sb.inodes_count,
            }
            .into());
        }
        let group = (ino - 1) / sb.inodes_per_group;
        let index = u64::from((ino - 1) % sb.inodes_per_group);
        let desc = self.group_desc(group)?;
        let offset = desc.inode_table * sb.block_size + index * sb.inode_size;
        if desc.inode_uninit {
            return Err(Ext4Error::InodeUnused { ino, offset }.into());
        }
        let mut raw = vec![0u8; usize::try_from(sb.inode_size).unwrap_or(128)];
        read_exact_at(&*self.src, &mut raw, offset, "ext4 inode")?;
        let inode = self.parse_inode(ino, offset, &raw)?;
        if inode.mode == 0 {
            return Err(Ext4Error::InodeUnused { ino, offset }.into());
        }
        self.check_inode_csum(&inode, &raw)?;
        Ok(inode)
    }

    fn parse_inode(&self, ino: u32, offset: u64, raw: &[u8]) -> Result<Inode> {
        let extra = self.extra_isize(ino, offset, raw)?;
        let mode = le16(raw, I_MODE);
        let high_size = FileType::from_mode(mode) != FileType::Directory || self.sb.large_dir;
        let size_high = if high_size {
            u64::from(le32(raw, I_SIZE_HIGH))
        } else {
            0
        };
        let mut mtime = i64::from(le32(raw, I_MTIME).cast_signed());
        if extra >= I_MTIME_EXTRA + 4 {
            // The two epoch bits extend the signed 32-bit seconds past 2038.
            mtime += i64::from(le32(raw, I_MTIME_EXTRA) & 3) << 32;
        }
        let generation = le32(raw, I_GENERATION);
        let mut block = [0u8; I_BLOCK_LEN];
        block.copy_from_slice(&raw[I_BLOCK..I_BLOCK + I_BLOCK_LEN]);
        Ok(Inode {
            ino,
            offset,
            mode,
            uid: u32::from(le16(raw, I_UID)) | u32::from(le16(raw, I_UID_HIGH)) << 16,
            gid: u32::from(le16(raw, I_GID)) | u32::from(le16(raw, I_GID_HIGH)) << 16,
            size: size_high << 32 | u64::from(le32(raw, I_SIZE_LO)),
            links: le16(raw, I_LINKS),
            mtime,
            flags: le32(raw, I_FLAGS),
            block,
            csum_seed: (self.sb.csum_seed)
                .map(|seed| crc32c(crc32c(seed, &ino.to_le_bytes()), &generation.to_le_bytes())),
        })
    }

    /// The end of the inode's valid bytes: 128 + `i_extra_isize`, which must fit.
    fn extra_isize(&self, ino: u32, offset: u64, raw: &[u8]) -> Result<usize> {
        let base = GOOD_OLD_INODE_SIZE;
        if raw.len() <= base {
            return Ok(base);
        }
        let extra = usize::from(le16(raw, I_EXTRA_ISIZE));
        if base + extra > raw.len() || extra % 4 != 0 {
            return Err(Ext4Error::BadInode {
                ino,
                offset,
                rule: format!(
                    "i_extra_isize {extra} does not fit the {}-byte inode",
                    raw.len()
                ),
            }
            .into());
        }
        Ok(base + extra)
    }

    /// `metadata_csum`: CRC-32C of the inode with both checksum halves as zero, seeded per
    /// inode; only the low half is compared when the high half does not fit.
    fn check_inode_csum(&self, inode: &Inode, raw: &[u8]) -> Result<()> {
        let Some(seed) = inode.csum_seed else {
            return Ok(());
        };
        let base = GOOD_OLD_INODE_SIZE;
        let mut crc = crc32c(seed, &raw[..I_CHECKSUM_LO]);
        crc = crc32c(crc, &[0, 0]);
        crc = crc32c(crc, &raw[I_CHECKSUM_LO + 2..base]);
        let mut found = u32::from(le16(raw, I_CHECKSUM_LO));
        let mut mask = 0xFFFF;
        if raw.len() > base {
            crc = crc32c(crc, &raw[base..I_CHECKSUM_HI]);
            let fits_hi = base + usize::from(le16(raw, I_EXTRA_ISIZE)) >= I_CHECKSUM_HI + 2;
            if fits_hi {
                crc = crc32c(crc, &[0, 0]);
                crc = crc32c(crc, &raw[I_CHECKSUM_HI + 2..]);
                found |= u32::from(le16(raw, I_CHECKSUM_HI)) << 16;
                mask = u32::MAX;
            } else {
                crc = crc32c(crc, &raw[I_CHECKSUM_HI..]);
            }
        }
        let computed = crc & mask;
        if found != computed {
            return Err(Ext4Error::BadChecksum {
                what: format!("inode {}", inode.ino),
                offset: inode.offset,
                found,
                computed,
            }
            .into());
        }
        Ok(())
    }
}

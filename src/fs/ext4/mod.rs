//! ext2, ext3 and ext4, read-only: enough to find files and copy them out (the kernel's
//! Documentation/filesystems/ext4/ is the reference).
//!
//! Read: the superblock and group descriptors (32- and 64-bit, `meta_bg`), inodes of any
//! size from 128 bytes to the block size, extent trees and ext2/3 indirect blocks (single,
//! double, triple), linear and hashed directories (read linearly), fast and slow symbolic
//! links (followed inside the file system, at most 40 per lookup), and the `metadata_csum`
//! CRC-32C checksums of the superblock, group descriptors, inodes, extent blocks and
//! directory blocks (and the CRC-16 of descriptors under `gdt_csum`). Nothing is cached
//! beyond the node being walked: memory stays bounded by the block size and tree depth.
//!
//! Refused: file systems needing journal recovery, external journal devices, compression,
//! `dirdata` and unknown incompatible features; inodes with inline data or encryption.
//! Casefolded directories are matched byte for byte. Every count and size read from the
//! image is bounded before it is used, and each block pointer is checked to lie inside the
//! file system.

mod blockmap;
mod csum;
mod dir;
mod error;
mod extent;
mod file;
mod group;
mod inode;
mod path;
mod superblock;

pub use dir::{DirEntry, MAX_DIR_ENTRIES};
pub use error::Ext4Error;
pub use file::FileReader;
pub use inode::{FileType, Inode};
pub use path::{MAX_SYMLINK_HOPS, MAX_SYMLINK_LEN};

use crate::error::{Error, Result};
use crate::io::{Source, read_exact_at};
use superblock::{EXT4_SUPERBLOCK_OFFSET, Superblock};

/// An ext2/3/4 file system opened for reading. Cheap to clone (the source is shared).
#[derive(Debug, Clone)]
pub struct Ext4 {
    src: Source,
    sb: Superblock,
}

impl Ext4 {
    /// Opens the file system whose bytes `src` holds (a partition, or a whole raw image).
    ///
    /// # Errors
    /// No ext2/3/4 superblock, a malformed or unsupported one, or I/O.
    pub fn open(src: Source) -> Result<Self> {
        let mut bytes = [0u8; 1024];
        if src.len() < EXT4_SUPERBLOCK_OFFSET + 1024 {
            return Err(Ext4Error::NotExt4.into());
        }
        read_exact_at(&*src, &mut bytes, EXT4_SUPERBLOCK_OFFSET, "ext4 superblock")?;
        let sb = Superblock::parse(&bytes, src.len()).map_err(Error::from)?;
        Ok(Self { src, sb })
    }

    /// The volume label (may be empty).
    pub fn label(&self) -> &str {
        &self.sb.label
    }

    /// The block size in bytes.
    pub fn block_size(&self) -> u64 {
        self.sb.block_size
    }

    /// The size of the file system in bytes.
    pub fn size(&self) -> u64 {
        self.sb.blocks_count * self.sb.block_size
    }

    /// The inode a directory entry names.
    ///
    /// # Errors
    /// Out of range, unused, or failing its checksum.
    pub fn entry_inode(&self, entry: &DirEntry) -> Result<Inode> {
        self.inode(entry.ino, entry.offset)
    }

    /// A reader of a regular file's contents.
    ///
    /// # Errors
    /// Not a regular file, inline or encrypted data, or a malformed block map.
    pub fn open_file(&self, inode: &Inode) -> Result<FileReader> {
        match inode.file_type() {
            FileType::Regular => FileReader::new(self, inode),
            FileType::Directory => Err(Ext4Error::IsADirectory {
                path: format!("inode {}", inode.ino),
            }
            .into()),
            other => Err(Ext4Error::NotRegular {
                path: format!("inode {}", inode.ino),
                kind: other.noun(),
            }
            .into()),
        }
    }
}

#[cfg(test)]
mod tests;

//! Directories (the kernel's Documentation/filesystems/ext4/directory.rst), read linearly:
//! every block is a list of entries (inode, record length, name length, type, name). A
//! hashed (htree) directory is read the same way: its index blocks look like one empty
//! entry spanning the block (the root block holds "." and ".." before the index), so a
//! linear walk finds every name without trusting the hash tree.
//!
//! Under `metadata_csum` a leaf block ends in a 12-byte fake entry holding a CRC-32C of the
//! block, and an index block in a `dx_tail` after its `limit` entries; both are checked.

use std::ops::ControlFlow;

use super::blockmap::BlockMap;
use super::csum::crc32c;
use super::inode::{FileType, Inode};
use super::{Ext4, Ext4Error};
use crate::error::Result;
use crate::io::read_exact_at;

/// Smallest record: 8 bytes of header and a name of up to 4 bytes.
const DIRENT_MIN_LEN: u64 = 12;
/// Size of the checksum tail of a leaf block.
const DIRENT_TAIL_LEN: usize = 12;
/// The file type byte of the checksum tail.
const DIRENT_TAIL_TYPE: u8 = 0xDE;
/// Largest directory read (4 GiB: the kernel's limit with `large_dir`), so a hostile size
/// cannot make a walk read the whole disk over and over.
const MAX_DIR_BYTES: u64 = 4 << 30;
/// Most entries kiln lists from one directory.
pub const MAX_DIR_ENTRIES: usize = 1 << 20;

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The name's bytes.
    pub name: Vec<u8>,
    /// Its inode.
    pub ino: u32,
    /// Byte offset of the entry in the file system.
    pub offset: u64,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A record length as stored; 64 KiB blocks encode lengths of 65536 specially.
fn rec_len(raw: u16, block_size: u64) -> u64 {
    let len = u64::from(raw);
    if block_size < 65536 {
        len
    } else if len == 65535 || len == 0 {
        block_size
    } else {
        (len & 65532) | ((len & 3) << 16)
    }
}

impl Ext4 {
    /// Calls `visit` with each used entry of directory `dir`, in on-disk order, until it
    /// breaks.
    pub(super) fn walk_dir(
        &self,
        dir: &Inode,
        visit: &mut dyn FnMut(DirEntry) -> ControlFlow<()>,
    ) -> Result<()> {
        dir.check_readable()?;
        if dir.size > MAX_DIR_BYTES {
            return Err(Ext4Error::TooLargeDir {
                dir: dir.ino,
                offset: dir.offset,
                size: dir.size,
                max: MAX_DIR_BYTES,
            }
            .into());
        }
        let bs = self.sb.block_size;
        let blocks = dir.size.div_ceil(bs);
        let mut map = BlockMap::new(self, dir)?;
        let mut block = vec![0u8; usize::try_from(bs).unwrap_or(1024)];
        while let Some(run) = map.next_run(self)? {
            let Some(physical) = run.physical else {
                continue;
            };
            for i in 0..run.len.min(blocks.saturating_sub(run.logical)) {
                let offset = (physical + i) * bs;
                read_exact_at(&*self.src, &mut block, offset, "ext4 directory block")?;
                let flow = self.dir_block(dir, run.logical + i, &block, offset, visit)?;
                if flow.is_break() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Checks one directory block and visits its entries.
    fn dir_block(
        &self,
        dir: &Inode,
        logical: u64,
        block: &[u8],
        offset: u64,
        visit: &mut dyn FnMut(DirEntry) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>> {
        let bs = self.sb.block_size;
        let spans_block = rec_len(le16(block, 4), bs) == bs;
        let index_block = dir.is_htree() && (logical == 0 || spans_block);
        let mut end = block.len();
        if let Some(seed) = dir.csum_seed {
            if index_block {
                self.check_dx_tail(dir, block, offset, seed)?;
            } else {
                self.check_leaf_tail(dir, block, offset, seed)?;
                end -= DIRENT_TAIL_LEN;
            }
        }
        let mut pos = 0;
        while pos < end {
            let (entry, len) = self.dir_entry(dir, &block[pos..end], offset + pos as u64)?;
            if let Some(entry) = entry
                && visit(entry).is_break()
            {
                return Ok(ControlFlow::Break(()));
            }
            pos += len;
        }
        Ok(ControlFlow::Continue(()))
    }

    /// The entry at the start of `rest` (`None` when unused) and its record length, checked
    /// as the kernel's `ext4_check_dir_entry` does.
    fn dir_entry(
        &self,
        dir: &Inode,
        rest: &[u8],
        offset: u64,
    ) -> Result<(Option<DirEntry>, usize)> {
        let header = rest.len() >= 8;
        let raw_len = if header { le16(rest, 4) } else { 0 };
        let len = rec_len(raw_len, self.sb.block_size);
        let name_len = match (header, self.sb.filetype) {
            (false, _) => 0,
            (true, true) => u16::from(rest[6]),
            (true, false) => le16(rest, 6),
        };
        let rule = if !header || len < DIRENT_MIN_LEN {
            Some("the record is shorter than 12 bytes")
        } else if !len.is_multiple_of(4) {
            Some("the record length is not a multiple of 4")
        } else if 8 + u64::from(name_len) > len {
            Some("the name is longer than its record")
        } else if len > rest.len() as u64 {
            Some("the record runs past the end of its block")
        } else {
            None
        };
        if let Some(rule) = rule {
            return Err(Ext4Error::BadDirEntry {
                dir: dir.ino,
                offset,
                rec_len: len,
                name_len,
                rule,
            }
            .into());
        }
        let len = usize::try_from(len).expect("within the block");
        let ino = le32(rest, 0);
        let entry = (ino != 0).then(|| DirEntry {
            name: rest[8..8 + usize::from(name_len)].to_vec(),
            ino,
            offset,
        });
        Ok((entry, len))
    }

    /// A leaf block's checksum tail: a fake entry (inode 0, length 12, type 0xDE) holding
    /// the CRC-32C of the block before it.
    fn check_leaf_tail(&self, dir: &Inode, block: &[u8], offset: u64, seed: u32) -> Result<()> {
        let at = block.len() - DIRENT_TAIL_LEN;
        let tail = &block[at..];
        let is_tail = le32(tail, 0) == 0
            && u64::from(le16(tail, 4)) == DIRENT_MIN_LEN
            && tail[6] == 0
            && tail[7] == DIRENT_TAIL_TYPE;
        if !is_tail {
            return Err(Ext4Error::BadDirEntry {
                dir: dir.ino,
                offset: offset + at as u64,
                rec_len: u64::from(le16(tail, 4)),
                name_len: u16::from(tail[6]),
                rule: "metadata_csum needs a checksum tail at the end of the block",
            }
            .into());
        }
        let computed = crc32c(seed, &block[..at]);
        check(dir, "directory block", offset, le32(tail, 8), computed)
    }

    /// An index block's `dx_tail`, after `limit` index entries; the checksum covers the
    /// header, the `count` used entries and the tail's reserved word.
    fn check_dx_tail(&self, dir: &Inode, block: &[u8], offset: u64, seed: u32) -> Result<()> {
        let bs = block.len();
        let count_offset = if rec_len(le16(block, 4), self.sb.block_size) == bs as u64 {
            8
        } else {
            // The root: "." (12 bytes), ".." (12 bytes), then dx_root_info.
            24 + usize::from(block[24 + 5])
        };
        let bad = |rule: &'static str| -> crate::Error {
            Ext4Error::BadDirEntry {
                dir: dir.ino,
                offset: offset + count_offset as u64,
                rec_len: bs as u64,
                name_len: 0,
                rule,
            }
            .into()
        };
        if count_offset + 4 > bs {
            return Err(bad("the htree index header lies past the block"));
        }
        let limit = usize::from(le16(block, count_offset));
        let count = usize::from(le16(block, count_offset + 2));
        let tail = count_offset + 8 * limit;
        if tail + 8 > bs || count > limit {
            return Err(bad("the htree index has no room for its checksum tail"));
        }
        let mut crc = crc32c(seed, &block[..count_offset + 8 * count]);
        crc = crc32c(crc, &block[tail..tail + 4]);
        crc = crc32c(crc, &[0; 4]);
        check(
            dir,
            "directory index block",
            offset,
            le32(block, tail + 4),
            crc,
        )
    }

    /// Every used entry of directory `dir`, "." and ".." included, in on-disk order.
    ///
    /// # Errors
    /// `dir` is not a directory, a block is malformed, or it holds more than
    /// [`MAX_DIR_ENTRIES`] entries.
    pub fn read_dir(&self, dir: &Inode) -> Result<Vec<DirEntry>> {
        if dir.file_type() != FileType::Directory {
            return Err(Ext4Error::NotADirectory {
                path: format!("inode {}", dir.ino),
            }
            .into());
        }
        let mut entries = Vec::new();
        let mut over = false;
        self.walk_dir(dir, &mut |entry| {
            if entries.len() == MAX_DIR_ENTRIES {
                over = true;
                return ControlFlow::Break(());
            }
            entries.push(entry);
            ControlFlow::Continue(())
        })?;
        if over {
            return Err(Ext4Error::TooManyEntries {
                dir: dir.ino,
                max: MAX_DIR_ENTRIES,
            }
            .into());
        }
        Ok(entries)
    }

    /// The entry named `name` in directory `dir`.
    pub(super) fn find_entry(&self, dir: &Inode, name: &[u8]) -> Result<Option<DirEntry>> {
        let mut found = None;
        self.walk_dir(dir, &mut |entry| {
            if entry.name == name {
                found = Some(entry);
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        })?;
        Ok(found)
    }
}

fn check(dir: &Inode, what: &str, offset: u64, found: u32, computed: u32) -> Result<()> {
    if found == computed {
        return Ok(());
    }
    Err(Ext4Error::BadChecksum {
        what: format!("{what} of inode {}", dir.ino),
        offset,
        found,
        computed,
    }
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_lengths_below_64_kib_blocks_are_stored_as_is() {
        assert_eq!(rec_len(4096, 4096), 4096);
    }

    #[test]
    fn record_length_of_a_whole_64_kib_block_is_encoded_as_65535() {
        assert_eq!(rec_len(65535, 65536), 65536);
    }

    #[test]
    fn record_length_high_bits_of_64_kib_blocks_are_in_the_low_two() {
        assert_eq!(rec_len(0x1001, 65536), 0x1_1000);
    }
}

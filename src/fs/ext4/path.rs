//! Path lookup from the root directory, following symbolic links inside the file system
//! only: an absolute target restarts at this file system's root, `..` never climbs above
//! it, and at most [`MAX_SYMLINK_HOPS`] links are followed per lookup (as Linux's 40).

use super::file::FileReader;
use super::inode::{FileType, Inode};
use super::{Ext4, Ext4Error};
use crate::error::Result;

/// Most symbolic links one lookup follows.
pub const MAX_SYMLINK_HOPS: u32 = 40;
/// Longest symbolic link target read (PATH_MAX).
pub const MAX_SYMLINK_LEN: u64 = 4096;
/// The root directory's inode.
const EXT4_ROOT_INO: u32 = 2;
/// A fast symbolic link keeps targets shorter than this in `i_block`.
const FAST_SYMLINK_MAX: u64 = 60;

/// The non-empty components of `path`, last first (so `pop` yields them in order).
fn components_reversed(path: &[u8]) -> Vec<Vec<u8>> {
    (path.split(|&b| b == b'/'))
        .filter(|c| !c.is_empty())
        .rev()
        .map(<[u8]>::to_vec)
        .collect()
}

impl Ext4 {
    /// The root directory.
    ///
    /// # Errors
    /// The root inode cannot be read.
    pub fn root(&self) -> Result<Inode> {
        self.inode(EXT4_ROOT_INO, super::superblock::EXT4_SUPERBLOCK_OFFSET)
    }

    /// The inode at `path` (absolute or relative to the root); a symbolic link as the last
    /// component is followed only when `follow_last` is set (`stat` versus `lstat`).
    ///
    /// # Errors
    /// A component is missing or not a directory, symbolic links loop, or the metadata on
    /// the way is malformed.
    pub fn lookup(&self, path: &[u8], follow_last: bool) -> Result<Inode> {
        let shown = || String::from_utf8_lossy(path).into_owned();
        let mut chain = vec![self.root()?];
        let mut pending = components_reversed(path);
        let mut hops = 0;
        while let Some(name) = pending.pop() {
            match name.as_slice() {
                b"." => continue,
                b".." => {
                    if chain.len() > 1 {
                        chain.pop();
                    }
                    continue;
                }
                _ => {}
            }
            let dir = chain.last().expect("the root stays in the chain");
            if dir.file_type() != FileType::Directory {
                return Err(Ext4Error::NotADirectory { path: shown() }.into());
            }
            let Some(entry) = self.find_entry(dir, &name)? else {
                return Err(Ext4Error::NotFound { path: shown() }.into());
            };
            let inode = self.inode(entry.ino, entry.offset)?;
            let follow = follow_last || !pending.is_empty();
            if inode.file_type() != FileType::Symlink || !follow {
                chain.push(inode);
                continue;
            }
            hops += 1;
            if hops > MAX_SYMLINK_HOPS {
                return Err(Ext4Error::SymlinkLoop {
                    path: shown(),
                    max: MAX_SYMLINK_HOPS,
                    ino: inode.ino,
                    offset: inode.offset,
                }
                .into());
            }
            let target = self.read_link(&inode)?;
            if target.starts_with(b"/") {
                chain.truncate(1);
            }
            pending.extend(components_reversed(&target));
        }
        Ok(chain.pop().expect("the root stays in the chain"))
    }

    /// A reader of the regular file at `path`, symbolic links followed.
    ///
    /// # Errors
    /// As [`Ext4::lookup`]; the path names a directory or a special file; its data is
    /// inline or encrypted.
    pub fn open_path(&self, path: &[u8]) -> Result<FileReader> {
        let inode = self.lookup(path, true)?;
        let shown = String::from_utf8_lossy(path).into_owned();
        match inode.file_type() {
            FileType::Regular => FileReader::new(self, &inode),
            FileType::Directory => Err(Ext4Error::IsADirectory { path: shown }.into()),
            other => Err(Ext4Error::NotRegular {
                path: shown,
                kind: other.noun(),
            }
            .into()),
        }
    }

    /// The target of symbolic link `inode`: in `i_block` when shorter than 60 bytes (as
    /// e2fsprogs decides), else in its data blocks.
    ///
    /// # Errors
    /// Not a symbolic link, longer than [`MAX_SYMLINK_LEN`], or unreadable.
    pub fn read_link(&self, inode: &Inode) -> Result<Vec<u8>> {
        if inode.file_type() != FileType::Symlink {
            return Err(Ext4Error::NotRegular {
                path: format!("inode {}", inode.ino),
                kind: inode.file_type().noun(),
            }
            .into());
        }
        if inode.size > MAX_SYMLINK_LEN {
            return Err(Ext4Error::SymlinkTooLong {
                ino: inode.ino,
                size: inode.size,
                max: MAX_SYMLINK_LEN,
            }
            .into());
        }
        inode.check_readable()?;
        if inode.size < FAST_SYMLINK_MAX {
            let len = usize::try_from(inode.size).expect("below 60");
            return Ok(inode.block[..len].to_vec());
        }
        FileReader::new(self, inode)?.read_all()
    }
}

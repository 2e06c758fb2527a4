//! Why an ext2/3/4 file system, or a path in it, could not be read. Offsets are bytes from
//! the start of the file system (the partition).

use crate::error::{Error, ErrorKind};

/// Why an ext2/3/4 file system could not be read.
#[remain::sorted]
#[derive(Debug, thiserror::Error)]
pub enum Ext4Error {
    /// A metadata checksum does not match.
    #[error("{what} at offset {offset:#x} has checksum {found:#x}, computed {computed:#x}")]
    BadChecksum {
        /// The structure (`group descriptor 0`, `inode 12`, `extent block of inode 12`).
        what: String,
        /// Its offset.
        offset: u64,
        /// Recorded checksum.
        found: u32,
        /// Computed checksum.
        computed: u32,
    },
    /// A directory entry breaks a rule of the format.
    #[error(
        "directory entry of inode {dir} at offset {offset:#x} (rec_len {rec_len}, name_len {name_len}): {rule}"
    )]
    BadDirEntry {
        /// Directory inode.
        dir: u32,
        /// Entry offset.
        offset: u64,
        /// Record length.
        rec_len: u64,
        /// Name length.
        name_len: u16,
        /// The rule broken.
        rule: &'static str,
    },
    /// An extent tree node is malformed.
    #[error("extent node of inode {ino} at offset {offset:#x}: {rule}")]
    BadExtentNode {
        /// Inode.
        ino: u32,
        /// Node offset.
        offset: u64,
        /// The rule broken.
        rule: String,
    },
    /// An inode field is out of range.
    #[error("inode {ino} at offset {offset:#x}: {rule}")]
    BadInode {
        /// Inode.
        ino: u32,
        /// Its offset.
        offset: u64,
        /// The rule broken.
        rule: String,
    },
    /// A superblock field is out of range.
    #[error("ext4 superblock at offset 0x400: {field} is {value}; {rule}")]
    BadSuperblock {
        /// Field name.
        field: &'static str,
        /// Its value.
        value: u64,
        /// What is allowed.
        rule: &'static str,
    },
    /// A block pointer lies outside the file system.
    #[error(
        "{what} of inode {ino} at offset {offset:#x} points at block {block} (+{len}), outside the file system's {blocks} blocks"
    )]
    BlockOutsideFs {
        /// What holds the pointer.
        what: &'static str,
        /// Inode.
        ino: u32,
        /// Offset of the pointer.
        offset: u64,
        /// Block number.
        block: u64,
        /// Run length in blocks.
        len: u64,
        /// File system size in blocks.
        blocks: u64,
    },
    /// An inode number is 0 or past the inode count.
    #[error("inode {ino} (referenced at offset {offset:#x}) is outside 1..={count}")]
    InodeOutOfRange {
        /// Inode number.
        ino: u64,
        /// Where it was referenced.
        offset: u64,
        /// Inode count.
        count: u32,
    },
    /// A group's inode table lies outside the file system.
    #[error(
        "group descriptor {group} at offset {offset:#x}: inode table at block {block} lies outside the file system's {blocks} blocks"
    )]
    InodeTableOutsideFs {
        /// Group.
        group: u32,
        /// Descriptor offset.
        offset: u64,
        /// Table block.
        block: u64,
        /// File system size in blocks.
        blocks: u64,
    },
    /// An inode a directory entry names is not in use.
    #[error("inode {ino} at offset {offset:#x} is not in use")]
    InodeUnused {
        /// Inode.
        ino: u32,
        /// Its offset.
        offset: u64,
    },
    /// A path component is a directory where a file is needed.
    #[error("{path} is a directory")]
    IsADirectory {
        /// The path.
        path: String,
    },
    /// A path component is not a directory.
    #[error("{path} is not a directory")]
    NotADirectory {
        /// The path.
        path: String,
    },
    /// No ext2/3/4 magic.
    #[error("no ext2/3/4 file system: no superblock magic 0xEF53 at offset 0x438")]
    NotExt4,
    /// A path does not exist.
    #[error("{path}: no such file or directory")]
    NotFound {
        /// The path.
        path: String,
    },
    /// A file is not a regular file or symbolic link.
    #[error("{path} is a {kind}, not a regular file")]
    NotRegular {
        /// The path.
        path: String,
        /// What it is.
        kind: &'static str,
    },
    /// The file system is larger than the bytes it was read from.
    #[error(
        "the file system declares {blocks} blocks of {block_size} bytes, more than the {source_len} bytes it was read from"
    )]
    PastSource {
        /// Block count.
        blocks: u64,
        /// Block size.
        block_size: u64,
        /// Source length.
        source_len: u64,
    },
    /// Symbolic links nest or loop past the bound.
    #[error(
        "{path}: more than {max} symbolic links followed (a loop?), the last inode {ino} at offset {offset:#x}"
    )]
    SymlinkLoop {
        /// The path.
        path: String,
        /// Bound.
        max: u32,
        /// The link that was one too many.
        ino: u32,
        /// Its offset.
        offset: u64,
    },
    /// A symbolic link target is longer than allowed.
    #[error("symbolic link inode {ino} is {size} bytes long; at most {max} are allowed")]
    SymlinkTooLong {
        /// Inode.
        ino: u32,
        /// Its size.
        size: u64,
        /// Bound.
        max: u64,
    },
    /// A file is larger than its block map can address.
    #[error(
        "inode {ino} at offset {offset:#x} declares {size} bytes, more than its {max}-byte block map addresses"
    )]
    TooLarge {
        /// Inode.
        ino: u32,
        /// Inode offset.
        offset: u64,
        /// Declared size.
        size: u64,
        /// Addressable bytes.
        max: u64,
    },
    /// A directory is larger than kiln reads.
    #[error("directory inode {dir} at offset {offset:#x} is {size} bytes; at most {max} are read")]
    TooLargeDir {
        /// Directory inode.
        dir: u32,
        /// Its offset.
        offset: u64,
        /// Its size.
        size: u64,
        /// Bound.
        max: u64,
    },
    /// A directory holds more entries than kiln lists.
    #[error("directory inode {dir} holds more than {max} entries")]
    TooManyEntries {
        /// Directory inode.
        dir: u32,
        /// Bound.
        max: usize,
    },
    /// The file system has incompatible features kiln does not read.
    #[error("the file system needs features kiln does not read: {names}")]
    UnsupportedFeatures {
        /// Feature names.
        names: String,
    },
    /// An inode uses a feature kiln does not read.
    #[error("inode {ino} at offset {offset:#x} {what}; kiln does not read that")]
    UnsupportedInode {
        /// Inode.
        ino: u32,
        /// Its offset.
        offset: u64,
        /// The feature, as a clause.
        what: &'static str,
    },
}

impl From<Ext4Error> for Error {
    fn from(e: Ext4Error) -> Self {
        let kind = match e {
            Ext4Error::UnsupportedFeatures { .. } | Ext4Error::UnsupportedInode { .. } => {
                ErrorKind::Unsupported
            }
            Ext4Error::NotFound { .. }
            | Ext4Error::NotADirectory { .. }
            | Ext4Error::IsADirectory { .. }
            | Ext4Error::NotRegular { .. } => ErrorKind::Io,
            _ => ErrorKind::InvalidImage,
        };
        Error::new(kind, e)
    }
}

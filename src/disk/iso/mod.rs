//! ISO 9660 images (ECMA-119, 4th edition) with Joliet (Microsoft's UCS-2 supplementary
//! descriptor, escape `%/E`) and Rock Ridge (SUSP 1.10 + RRIP 1.10, `RRIP_1991A`).
//!
//! Writing ([`IsoWriter`]): from a directory tree or a list of [`IsoEntry`] (path in the
//! image, file / bytes / directory / symlink, mode). ISO 9660 names are level 1 (8.3,
//! d-characters, made unique with a counter); Rock Ridge keeps the POSIX names, modes,
//! symlinks and times (uid/gid are written as 0); Joliet keeps Unicode names up to 103
//! UTF-16 units (names that collide after that cut are refused). Directories are not
//! relocated below 8 levels: the tree is written as it is, which Linux, libisofs, isoinfo,
//! pycdlib and 7-Zip read. Entries are sorted and every timestamp is `BuildContext.epoch`,
//! so the same input gives the same bytes. File data comes first (in walk order), the
//! directories and path tables after it, so a tree is read on a second thread while its
//! files are copied, and a helper thread asks the kernel to read each source file shortly
//! before it is copied. RAM holds the tree, the directory records and the paths queued for
//! that read-ahead; file contents stream through one 1 MiB buffer.
//!
//! El Torito 1.0 (optional, `bios_boot` / `efi_boot` paths of files in the image): a boot
//! record at block 17, a one-sector catalog with a BIOS no-emulation default entry (4
//! sectors loaded, like `mkisofs -b -no-emul-boot -boot-load-size 4`) and/or a final UEFI
//! section (platform 0xEF) pointing at a FAT image; `boot_info_table` patches the isolinux /
//! GRUB boot info table into the BIOS image (which is then held in RAM, at most 64 MiB).
//!
//! Refused: files of 4 GiB or more (multi-extent files are not written), special files
//! (devices, FIFOs, sockets), symlink targets over 1023 bytes (libisofs refuses to
//! load longer ones), more than 65535 directories. No hybrid MBR/GPT
//! (isohybrid) is written, so a bootable ISO boots as a CD, not from a USB stick.
//!
//! Reading ([`IsoImage`]): descriptors (2048-byte blocks only), the tree with Rock Ridge
//! names when present (else Joliet, else ISO 9660 names), file extraction (single-extent
//! files). As a disk ([`open`]) an ISO is the raw bytes of the file, with `info()` showing
//! the label, Joliet/Rock Ridge/El Torito presence and counts.

mod boot;
mod layout;
mod prefetch;
mod reader;
mod records;
mod scan;
mod sink;
mod susp;
mod tree;
mod writer;

use std::path::PathBuf;

pub use reader::{IsoFile, IsoFileKind, IsoImage};
pub(crate) use records::DateTime;
pub use tree::{ISO_MAX_FILE_BYTES, IsoEntry, IsoSource};
pub use writer::{IsoOptions, IsoWriter};

use super::{CreateRequest, DiskReader, DiskWriter, KvOptions};
use crate::error::{Error, ErrorKind, Result};
use crate::io::Source;
use crate::io::output::OutputSet;

/// The `-o` keys `kiln convert -O iso DIR out.iso` accepts.
pub(super) const OPTION_KEYS: &[&str] = &[
    "application_id",
    "bios_boot",
    "boot_info_table",
    "efi_boot",
    "joliet",
    "label",
    "publisher",
    "rock_ridge",
    "volume_label",
];

/// Why an ISO could not be written or read.
#[remain::sorted]
#[derive(Debug, thiserror::Error)]
pub enum IsoError {
    /// The same path was added twice.
    #[error("`{}` is added to the ISO twice", path.display())]
    AddedTwice {
        /// Path in the image.
        path: PathBuf,
    },
    /// The logical block size is not 2048.
    #[error(
        "logical block size at offset {offset:#x} is {block_size}; kiln reads 2048-byte blocks only"
    )]
    BadBlockSize {
        /// Byte offset of the field.
        offset: u64,
        /// The value found.
        block_size: u16,
    },
    /// A volume descriptor lacks `CD001` or has a wrong version.
    #[error(
        "volume descriptor at offset {offset:#x} is not an ISO 9660 descriptor (no CD001, version 1)"
    )]
    BadDescriptor {
        /// Byte offset.
        offset: u64,
    },
    /// An entry path is absolute, contains `..` or names nothing.
    #[error("`{}` is not a relative path inside the image", path.display())]
    BadEntryPath {
        /// The path given.
        path: PathBuf,
    },
    /// A label or identifier does not fit its field.
    #[error("{field} `{value}` must be at most {max} printable ASCII characters")]
    BadIdentifier {
        /// Option name.
        field: &'static str,
        /// The value given.
        value: String,
        /// Field size.
        max: usize,
    },
    /// A directory record's name is empty, `.`, `..` or contains `/`.
    #[error("directory record at offset {offset:#x} has an invalid name")]
    BadName {
        /// Byte offset.
        offset: u64,
    },
    /// A directory record's length is impossible.
    #[error(
        "directory record at offset {offset:#x} has length {len}, which does not fit its sector"
    )]
    BadRecord {
        /// Byte offset.
        offset: u64,
        /// Record length.
        len: usize,
    },
    /// A boot image option names no non-empty file of the image.
    #[error("{option} `{}` is not a non-empty file in the image", path.display())]
    BootImageMissing {
        /// The option.
        option: &'static str,
        /// The path given.
        path: PathBuf,
    },
    /// A Rock Ridge continuation area lies outside the image.
    #[error("directory record at offset {offset:#x} continues at {area:#x}, outside the image")]
    ContinuationOutside {
        /// Record offset.
        offset: u64,
        /// Continuation offset.
        area: u64,
    },
    /// A directory refers to an extent already walked.
    #[error(
        "directory record at offset {offset:#x} points back at a directory already read (a loop)"
    )]
    DirectoryLoop {
        /// Byte offset.
        offset: u64,
    },
    /// A directory extent lies outside the image or is absurdly large.
    #[error(
        "directory at offset {offset:#x} ({size} bytes) lies outside the image or exceeds 16 MiB"
    )]
    DirectoryOutside {
        /// Byte offset.
        offset: u64,
        /// Size in bytes.
        size: u32,
    },
    /// A file's extent lies past the end of the image.
    #[error("file data at offset {offset:#x} ({size} bytes) lies past the end of the image")]
    FileOutside {
        /// Byte offset.
        offset: u64,
        /// Size in bytes.
        size: u64,
    },
    /// A file exceeds what one extent holds.
    #[error(
        "`{}` is {size} bytes; ISO 9660 files hold at most 4294967295 bytes and kiln does not write multi-extent files",
        path.display()
    )]
    FileTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// The image would need block numbers beyond 32 bits.
    #[error("the ISO would need {blocks} blocks; ISO 9660 block numbers are 32-bit")]
    ImageTooLarge {
        /// Blocks needed.
        blocks: u64,
    },
    /// Two names are the same after Joliet's character and length rules.
    #[error(
        "`{}` and `{}` have the same Joliet name (Joliet cuts names at 103 characters and replaces * / : ; ? \\); rename one or pass joliet=off",
        first.display(),
        second.display()
    )]
    JolietNameCollision {
        /// The first entry.
        first: PathBuf,
        /// The entry that collides with it.
        second: PathBuf,
    },
    /// A name is not UTF-8, so it has no Joliet form.
    #[error("`{}` is not valid UTF-8, so it has no Joliet name; rename it or pass joliet=off", path.display())]
    JolietNeedsUtf8 {
        /// The entry.
        path: PathBuf,
    },
    /// Internal: the writer's position differs from the plan.
    #[error("internal error: writing at offset {offset:#x}, but the layout planned {planned:#x}")]
    LayoutMismatch {
        /// Actual position.
        offset: u64,
        /// Planned position.
        planned: u64,
    },
    /// No primary volume descriptor.
    #[error("no primary volume descriptor")]
    NoPrimaryDescriptor,
    /// No volume descriptor set terminator within the first descriptors.
    #[error("no volume descriptor set terminator found from offset {offset:#x}")]
    NoTerminator {
        /// Where the descriptors start.
        offset: u64,
    },
    /// A path component that must be a directory is a file.
    #[error("a parent of `{}` is already added as a file", path.display())]
    NotADirectory {
        /// The entry.
        path: PathBuf,
    },
    /// Only single-extent regular files can be extracted.
    #[error("`{}` is not a single-extent regular file", path.display())]
    NotARegularFile {
        /// The entry.
        path: PathBuf,
    },
    /// A source file or directory entry cannot be opened.
    #[error("cannot read {}", path.display())]
    OpenSource {
        /// The source.
        path: PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// A path in the image is longer than the reader builds.
    #[error("directory record at offset {offset:#x} makes a path longer than {max} bytes")]
    PathTooLong {
        /// Byte offset.
        offset: u64,
        /// The cap.
        max: usize,
    },
    /// A source directory cannot be listed.
    #[error("cannot read directory {}", path.display())]
    ReadSourceDir {
        /// The directory.
        path: PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// The root entry is not a directory.
    #[error("the image root can only be a directory")]
    RootNotDirectory,
    /// A source file changed size between scanning and writing.
    #[error("{} changed size while the ISO was written (expected {expected} bytes)", path.display())]
    SourceChanged {
        /// The source.
        path: PathBuf,
        /// Size when added.
        expected: u64,
    },
    /// A special file cannot be stored.
    #[error("{} is not a regular file, directory or symlink; ISO 9660 cannot hold it", path.display())]
    SpecialFile {
        /// The source.
        path: PathBuf,
    },
    /// A symlink target is longer than Rock Ridge readers accept.
    #[error("symlink `{}` points at a {len}-byte target; at most {max} bytes are written", path.display())]
    SymlinkTooLong {
        /// The entry.
        path: PathBuf,
        /// Target length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Rock Ridge entries of one record exceed a continuation block.
    #[error("Rock Ridge name and symlink target of `{}` take {len} bytes; at most 2048 are supported", path.display())]
    SystemUseTooLong {
        /// The entry.
        path: PathBuf,
        /// Bytes needed.
        len: usize,
    },
    /// Path tables number directories with 16 bits.
    #[error("the tree has {count} directories; ISO 9660 path tables hold at most 65535")]
    TooManyDirectories {
        /// Directories in the tree.
        count: usize,
    },
    /// The tree is larger than the reader walks.
    #[error("the ISO has more than {max} entries")]
    TooManyEntries {
        /// The cap.
        max: usize,
    },
    /// The volume descriptor says the image is larger than the file.
    #[error(
        "volume space size at offset {offset:#x} says {volume_bytes} bytes, but the file has {len}"
    )]
    VolumePastEnd {
        /// Byte offset of the field.
        offset: u64,
        /// Size the descriptor claims.
        volume_bytes: u64,
        /// File size.
        len: u64,
    },
}

impl From<IsoError> for Error {
    fn from(e: IsoError) -> Self {
        let kind = match &e {
            IsoError::OpenSource { .. }
            | IsoError::ReadSourceDir { .. }
            | IsoError::SourceChanged { .. } => ErrorKind::Io,
            IsoError::FileTooLarge { .. }
            | IsoError::ImageTooLarge { .. }
            | IsoError::SpecialFile { .. }
            | IsoError::SymlinkTooLong { .. }
            | IsoError::SystemUseTooLong { .. }
            | IsoError::TooManyDirectories { .. }
            | IsoError::NotARegularFile { .. } => ErrorKind::Unsupported,
            IsoError::AddedTwice { .. }
            | IsoError::BadIdentifier { .. }
            | IsoError::BootImageMissing { .. }
            | IsoError::BadEntryPath { .. }
            | IsoError::JolietNameCollision { .. }
            | IsoError::JolietNeedsUtf8 { .. }
            | IsoError::NotADirectory { .. }
            | IsoError::RootNotDirectory => ErrorKind::InvalidInput,
            _ => ErrorKind::InvalidImage,
        };
        Error::new(kind, e)
    }
}

/// Reads `-o` options into [`IsoOptions`]; `application_id` defaults to `creator`.
///
/// # Errors
/// Unknown keys, bad booleans, identifiers that do not fit.
pub fn options_from_kv(kv: &KvOptions, creator: &str) -> Result<IsoOptions> {
    kv.check_known("iso", OPTION_KEYS)?;
    let defaults = IsoOptions::default();
    let text = |keys: &[&str], default: &str| {
        keys.iter()
            .find_map(|k| kv.get(k))
            .unwrap_or(default)
            .to_string()
    };
    Ok(IsoOptions {
        volume_label: text(&["volume_label", "label"], &defaults.volume_label),
        publisher: text(&["publisher"], ""),
        application_id: text(&["application_id"], creator),
        joliet: kv.get_bool("joliet")?.unwrap_or(true),
        rock_ridge: kv.get_bool("rock_ridge")?.unwrap_or(true),
        bios_boot: kv.get("bios_boot").map(PathBuf::from),
        efi_boot: kv.get("efi_boot").map(PathBuf::from),
        boot_info_table: kv.get_bool("boot_info_table")?.unwrap_or(false),
    })
}

pub(super) fn open(src: Source) -> Result<Box<dyn DiskReader>> {
    let image = IsoImage::from_source(src)?;
    Ok(Box::new(reader::IsoReader::new(image)?))
}

pub(super) fn create(
    _req: &CreateRequest<'_>,
    _out: &mut OutputSet,
) -> Result<Box<dyn DiskWriter>> {
    Err(Error::unsupported(
        "an ISO is built from a directory, not from a disk image: use `kiln convert -O iso DIR out.iso`",
    ))
}

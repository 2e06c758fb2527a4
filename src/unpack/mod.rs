//! Compressed sources and archives: `.xz`, `.gz`, `.zst` and `.bz2` images, recognised by
//! their magic bytes (never by name), and tar archives, plain or compressed, holding a disk
//! image member.
//!
//! Two ways in, chosen per source by [`prepare`]:
//! - **Streamed**: decompressed as the engine reads it, with no copy on disk. A raw image
//!   whose size is known before decompressing it (the xz index at the end of the file,
//!   every zstd frame's content size, a tar member's size, a gzip ISIZE that cannot have
//!   wrapped): [`open`] returns a reader over the decoder that reports all-zero chunks as
//!   holes. A streamOptimized VMDK, whatever the codec (its header gives the capacity):
//!   read front to back by [`crate::disk::vmdk::open_sequential`], grain markers in
//!   ascending LBA order inflated as they come. A stream whose grains are out of order is
//!   refused when the first one shows, with an error saying to use the decompressed
//!   `.vmdk` instead (the order cannot be known up front: in the spec's layout the tables
//!   follow the grains); no known writer makes one.
//! - **Unpacked into the cache**: an image that needs random access (qcow2, sparse VMDK,
//!   VHD, VHDX, VDI: anything that is neither raw nor a stream VMDK at its first bytes),
//!   or a raw image whose size is unknown (bzip2, most gzip), is decompressed once into
//!   `<cache>/kiln/unpacked/<sha256>` (the SHA-256 of the compressed file; `-<member
//!   digest>` for an archive member), written as a `.partial` file with holes for zero
//!   blocks and renamed when complete. Later builds reuse it.
//!
//! A fixed VHD is raw data followed by a 512-byte footer, so it looks raw at its start and
//! is known only at its end, after the engine has laid out the output for the raw size.
//! In a multi-block xz file (`xz -T0`, xz 5.6's default) the last block is decoded alone
//! first ([`tail`]): a footer there sends the image through the cache, where the engine
//! reads it as a VHD. Single-block xz, zstd (whose CLI writes one frame), gzip, bzip2 and
//! compressed tar members have no cheap way to the tail: the stream ends in
//! [`UnpackError::FixedVhd`] ([`is_fixed_vhd`]), and the build starts again with the source
//! unpacked into the cache ([`UnpackOptions::force_cache`]), the one time such a source is
//! decoded twice: the file is marked (its path, length and modification time, under
//! `<cache>/kiln/unpacked/fixed-vhd/`), and later builds send it through the cache first
//! ([`prepare`]). It is not streamed: the engine's writers size their tables before the
//! first extent, and kiln's VHD footer rules live in the VHD module.
//!
//! A plain (uncompressed) tar is not copied: its member is read in place through a view.
//!
//! Bounds: decompression stops at the source's `max_size`, else [`DEFAULT_MAX_UNPACKED`];
//! a declared size above the bound is refused before anything is written, and a stream
//! longer or shorter than it declared is refused when it shows. The xz decoder's memory is
//! capped at [`XZ_MEMLIMIT`]. Corrupt or truncated data is a one-line error naming the
//! compressed and uncompressed byte offsets; nothing half-written stays in the cache.

mod archive;
mod cache;
mod codec;
mod size;
mod stream;
mod tail;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

pub use cache::unpacked_dir;
pub use codec::Codec;

use crate::disk::{self, DiskReader, OpenOptions};
use crate::error::{Error, ErrorKind, Result};

/// Default bound on the bytes one source may decompress to (logical bytes: zero runs
/// count), when the source gives no `max_size`: larger than any published cloud image,
/// small enough that a bomb is stopped before it fills a typical build disk.
pub const DEFAULT_MAX_UNPACKED: u64 = 256 << 30;

/// Most memory the xz decoder may use: enough for `xz -9` (64 MiB dictionary), refusing
/// streams that would make kiln's memory grow past its bound.
pub const XZ_MEMLIMIT: u64 = 96 << 20;

/// How to read one source.
#[derive(Debug, Clone, Default)]
pub struct UnpackOptions {
    /// The archive member to read (`member:`); default: the archive's one disk image.
    pub member: Option<String>,
    /// Bound on the decompressed size (`max_size:`); default [`DEFAULT_MAX_UNPACKED`].
    pub max_size: Option<u64>,
    /// The compressed file's SHA-256 when already known (a verified download), so the
    /// cache key is not computed again.
    pub sha256: Option<String>,
    /// Unpack into the cache even when the image could be streamed (a reader that needs
    /// the image as a file, such as a partition table lookup).
    pub force_cache: bool,
}

impl UnpackOptions {
    fn limit(&self) -> u64 {
        self.max_size.unwrap_or(DEFAULT_MAX_UNPACKED)
    }
}

/// Why a compressed source or archive is refused.
#[remain::sorted]
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// Data (or more than 1 MiB of zeros) follows a stream VMDK's end-of-stream marker.
    #[error(
        "data follows the stream VMDK's end-of-stream marker at uncompressed byte {offset:#x} (only up to 1 MiB of zeros may)"
    )]
    AfterVmdk {
        /// Where the end-of-stream marker ends.
        offset: u64,
    },
    /// Decompression failed: corrupt or truncated data.
    #[error(
        "{codec} data is corrupt or truncated near compressed byte {compressed:#x} (uncompressed byte {uncompressed:#x})"
    )]
    Corrupt {
        /// The codec.
        codec: Codec,
        /// Compressed bytes consumed so far (read ahead by the decoder's buffer).
        compressed: u64,
        /// Uncompressed bytes produced so far.
        uncompressed: u64,
        /// The decoder's error.
        #[source]
        source: std::io::Error,
    },
    /// The decompressed image ends in a VHD footer: a fixed VHD cannot be streamed.
    #[error(
        "the decompressed image ends in a VHD footer (a fixed VHD), which kiln streams as raw only; it is read again from the cache"
    )]
    FixedVhd,
    /// A stream VMDK read from its decoder is refused (the cause names the uncompressed
    /// offset).
    #[error("{codec}-compressed stream VMDK, near compressed byte {compressed:#x}")]
    InVmdk {
        /// The codec.
        codec: Codec,
        /// Compressed bytes consumed so far.
        compressed: u64,
        /// What the VMDK reader found.
        #[source]
        source: Box<Error>,
    },
    /// The stream holds more than it declared.
    #[error("{codec} stream holds more than the {declared} bytes its {from} declares")]
    Longer {
        /// The codec.
        codec: Codec,
        /// Declared size.
        declared: u64,
        /// Where the size came from.
        from: &'static str,
    },
    /// An archive member named by `member:` is not in the archive.
    #[error("the archive has no member `{member}`; its members are: {members}")]
    MemberMissing {
        /// The name asked for.
        member: String,
        /// The members seen, comma separated.
        members: String,
    },
    /// The archive holds no member that looks like a disk image.
    #[error(
        "the archive holds no disk image member (by name: .raw, .img, .qcow2, ...); its members are: {members}; name one with `member:`"
    )]
    NoDiskMember {
        /// The members seen.
        members: String,
    },
    /// The archive holds several disk images and no `member:` chooses.
    #[error(
        "the archive holds several disk images; name one with `member:`; its members are: {members}"
    )]
    SeveralDiskMembers {
        /// The members seen.
        members: String,
    },
    /// A tar header is malformed.
    #[error("tar header at {offset:#x} (uncompressed): {reason}")]
    TarHeader {
        /// Offset of the header in the (decompressed) archive.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The image would decompress past the bound.
    #[error(
        "decompresses to more than {limit} bytes ({what}); raise the source's `max_size` if this is intended"
    )]
    TooLarge {
        /// The bound.
        limit: u64,
        /// What showed it: a declared size, or the bytes decompressed so far.
        what: String,
    },
    /// The stream ended before the size it declared.
    #[error(
        "{codec} stream ends at uncompressed byte {uncompressed:#x} (compressed byte {compressed:#x}), before the {declared} bytes its {from} declares"
    )]
    Truncated {
        /// The codec.
        codec: Codec,
        /// Uncompressed bytes produced.
        uncompressed: u64,
        /// Compressed bytes consumed.
        compressed: u64,
        /// Declared size.
        declared: u64,
        /// Where the size came from.
        from: &'static str,
    },
    /// The xz file's index (at its end) is malformed or missing.
    #[error("xz file has no valid index at {offset:#x}: {reason} (truncated or not an xz file)")]
    XzIndex {
        /// Where the problem is, in the compressed file.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
}

impl From<UnpackError> for Error {
    fn from(e: UnpackError) -> Self {
        let kind = match e {
            UnpackError::MemberMissing { .. }
            | UnpackError::NoDiskMember { .. }
            | UnpackError::SeveralDiskMembers { .. } => ErrorKind::InvalidInput,
            UnpackError::TooLarge { .. } => ErrorKind::Refused,
            UnpackError::FixedVhd => ErrorKind::Unsupported,
            _ => ErrorKind::InvalidImage,
        };
        Error::new(kind, e)
    }
}

/// What a file is, by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Packing {
    /// A disk image (or anything else): opened by the engine directly.
    Plain,
    /// An uncompressed tar archive.
    Tar,
    /// A compressed file (an image or a tar archive inside).
    Compressed(Codec),
}

fn packing(path: &Path) -> Result<Packing> {
    let mut head = [0u8; 512];
    let mut file = File::open(path).map_err(|e| Error::io(e).with_path(path))?;
    let n = read_full(&mut file, &mut head).map_err(|e| Error::io(e).with_path(path))?;
    let head = &head[..n];
    if let Some(codec) = Codec::detect(head) {
        return Ok(Packing::Compressed(codec));
    }
    Ok(if archive::is_tar(head) {
        Packing::Tar
    } else {
        Packing::Plain
    })
}

/// True when `path` is compressed or a tar archive, which only this module can open.
///
/// # Errors
/// The file cannot be read.
pub fn is_packed(path: &Path) -> Result<bool> {
    Ok(packing(path)? != Packing::Plain)
}

/// True when `path` is compressed (xz, gzip, zstd, bzip2), whatever it holds.
///
/// # Errors
/// The file cannot be read.
pub fn is_compressed(path: &Path) -> Result<bool> {
    Ok(matches!(packing(path)?, Packing::Compressed(_)))
}

/// Makes `path` ready for [`open`]: returns `path` itself when it is plain, a plain tar, or
/// a compressed raw image that can be streamed; otherwise decompresses it (or its archive
/// member) into the cache, once, and returns the cached image.
///
/// # Errors
/// Corrupt or truncated data, a bound exceeded, a missing or ambiguous archive member,
/// I/O failures; each names `path`.
pub fn prepare(path: &Path, opts: &UnpackOptions, log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let codec = match packing(path)? {
        Packing::Plain if opts.member.is_some() => {
            let message = "`member` needs a tar archive source (.tar, .tar.xz, ...)";
            return Err(Error::invalid_input(message).with_path(path));
        }
        Packing::Plain | Packing::Tar => return Ok(path.to_path_buf()),
        Packing::Compressed(codec) => codec,
    };
    let plan = stream::start(path, codec, opts).map_err(|e| e.with_path(path))?;
    if plan.streamable() && !opts.force_cache && !cache::is_marked_fixed_vhd(path, opts) {
        return Ok(path.to_path_buf());
    }
    cache::unpack(path, codec, opts, log).map_err(|e| e.with_path(path))
}

/// [`prepare`] for a source whose stream ended in a VHD footer ([`is_fixed_vhd`]): unpacked
/// into the cache and opened there as the image it is. An image the VHD module refuses
/// (a footer with a bad checksum) is refused naming `path`, and its entry is removed.
///
/// # Errors
/// As [`prepare`]; the image's refusal.
pub fn prepare_again(
    path: &Path,
    opts: &UnpackOptions,
    log: &mut dyn FnMut(&str),
) -> Result<PathBuf> {
    let opts = UnpackOptions {
        force_cache: true,
        ..opts.clone()
    };
    let entry = prepare(path, &opts, log)?;
    if let Err(e) = disk::open(&entry, &OpenOptions::default()) {
        cache::discard(&entry);
        let message = format!(
            "the decompressed image ends in a VHD footer, but {}",
            e.cause()
        );
        return Err(Error::new(e.kind(), message).with_path(path));
    }
    cache::mark_fixed_vhd(path, &opts);
    Ok(entry)
}

/// Opens the image `path` holds: a plain image through [`disk::open`], a plain tar's
/// member in place, a compressed raw image as a stream. Call [`prepare`] first: a
/// compressed image that needs the cache is refused here.
///
/// # Errors
/// As [`disk::open`]; an archive member missing or ambiguous; a compressed image that
/// cannot be streamed.
pub fn open(path: &Path, opts: &UnpackOptions) -> Result<Box<dyn DiskReader>> {
    match packing(path)? {
        Packing::Plain => disk::open(path, &OpenOptions::default()),
        Packing::Tar => archive::open_in_place(path, opts.member.as_deref()),
        Packing::Compressed(codec) => {
            stream::open(path, codec, opts).map_err(|e| e.with_path(path))
        }
    }
}

/// [`prepare`] then [`open`], for commands that read one image.
///
/// # Errors
/// As both.
pub fn open_any(
    path: &Path,
    opts: &UnpackOptions,
    log: &mut dyn FnMut(&str),
) -> Result<Box<dyn DiskReader>> {
    let ready = prepare(path, opts, log)?;
    open(&ready, opts)
}

/// The virtual size of the image in `path` when it is known without decompressing it
/// (a plain image, a plain tar member, a streamable raw image); `None` otherwise.
///
/// # Errors
/// As [`open`] for plain files and archives; a compressed file whose container is corrupt.
pub fn peek_size(path: &Path, opts: &UnpackOptions) -> Result<Option<u64>> {
    match packing(path)? {
        Packing::Plain | Packing::Tar => Ok(Some(open(path, opts)?.virtual_size())),
        Packing::Compressed(codec) => {
            let plan = stream::start(path, codec, opts).map_err(|e| e.with_path(path))?;
            Ok(plan.virtual_size())
        }
    }
}

/// Whether `e` (or an error it wraps) is a streamed source that ended in a VHD footer:
/// a fixed VHD, which reads right only from the cache ([`UnpackOptions::force_cache`]).
pub fn is_fixed_vhd(e: &Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e.cause());
    while let Some(c) = cause {
        if matches!(c.downcast_ref::<UnpackError>(), Some(UnpackError::FixedVhd)) {
            return true;
        }
        cause = match c.downcast_ref::<Error>() {
            Some(inner) => Some(inner.cause()),
            None => c.source(),
        };
    }
    false
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

//! The VMDK module's error: one variant per broken rule, offsets in hex.

use crate::error::{Error, ErrorKind};

/// Why a VMDK image could not be read or written.
#[remain::sorted]
#[derive(Debug, thiserror::Error)]
pub enum VmdkError {
    /// A compressed grain did not inflate to exactly one grain.
    #[error("compressed grain at {offset:#x} is corrupt: {reason}")]
    BadCompressedGrain {
        /// Byte offset of the grain marker.
        offset: u64,
        /// What the inflater found.
        reason: String,
    },
    /// A descriptor line could not be parsed.
    #[error("descriptor line {line} is invalid: {reason}")]
    BadDescriptorLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The text descriptor is not ASCII/UTF-8 or lacks the signature.
    #[error("descriptor at {offset:#x} is not a VMDK text descriptor: {reason}")]
    BadDescriptorText {
        /// Byte offset of the descriptor.
        offset: u64,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An extent's file name is not a plain name in the descriptor's directory.
    #[error(
        "extent file name {name:?} on descriptor line {line} is not a plain file name in the descriptor's directory"
    )]
    BadExtentName {
        /// The name as written.
        name: String,
        /// 1-based line number.
        line: usize,
    },
    /// A header field is outside what the spec or kiln allows.
    #[error("sparse header at {offset:#x}: {field} is {value:#x}; {allowed}")]
    BadHeaderField {
        /// Byte offset of the header.
        offset: u64,
        /// Field name as the spec spells it.
        field: &'static str,
        /// The value found.
        value: u64,
        /// What is allowed.
        allowed: &'static str,
    },
    /// A marker sector did not have the expected type or size.
    #[error("{what} at {offset:#x} is invalid: found val={val:#x} size={size:#x} type={kind}")]
    BadMarker {
        /// Which marker was expected.
        what: &'static str,
        /// Byte offset of the marker.
        offset: u64,
        /// Marker value field.
        val: u64,
        /// Marker size field.
        size: u32,
        /// Marker type field.
        kind: u32,
    },
    /// A -o option value is invalid.
    #[error("option {key}={value}: {reason}")]
    BadOption {
        /// The option key.
        key: &'static str,
        /// The value given.
        value: String,
        /// What is allowed.
        reason: &'static str,
    },
    /// The disk is larger than kiln reads or writes as VMDK.
    #[error("capacity of {sectors:#x} sectors exceeds the limit of {max:#x} sectors")]
    CapacityTooLarge {
        /// Capacity found or requested, in sectors.
        sectors: u64,
        /// The limit.
        max: u64,
    },
    /// A sparse file's embedded descriptor describes another layout.
    #[error(
        "embedded descriptor at 0x200 says createType {create_type:?}; a sparse file may only describe itself (monolithicSparse or streamOptimized)"
    )]
    EmbeddedCreateType {
        /// The createType found.
        create_type: &'static str,
    },
    /// An extent named by the descriptor could not be opened or is invalid.
    #[error("extent {name:?} (descriptor line {line})")]
    Extent {
        /// The extent's file name.
        name: String,
        /// 1-based line number.
        line: usize,
        /// What went wrong, naming the extent file's offsets.
        #[source]
        source: Box<Error>,
    },
    /// A stream VMDK read front to back has a grain for an LBA at or before the previous
    /// grain's: legal, but it cannot be placed once the disk before it was handed out.
    #[error(
        "stream VMDK grain marker at uncompressed byte {offset:#x} has LBA {lba:#x}, not after the previous grain's LBA {previous:#x}: grains out of order or overlapping cannot be read front to back; decompress the file and use the .vmdk itself as the source (kiln then reads it through its grain tables)"
    )]
    GrainOutOfOrder {
        /// Byte offset of the marker in the (uncompressed) stream.
        offset: u64,
        /// LBA in the marker.
        lba: u64,
        /// LBA of the grain before it.
        previous: u64,
    },
    /// The extents do not add up to anything readable.
    #[error("descriptor has no extents")]
    NoExtents,
    /// A delta disk (snapshot) refers to a parent.
    #[error("descriptor line {line} refers to a parent disk; delta VMDKs are refused")]
    ParentDisk {
        /// 1-based line number.
        line: usize,
    },
    /// A metadata structure points outside the file.
    #[error("{what} at {offset:#x} ({len:#x} bytes) lies outside the file of {file_len:#x} bytes")]
    PastEnd {
        /// What the structure is.
        what: &'static str,
        /// Byte offset.
        offset: u64,
        /// Length in bytes.
        len: u64,
        /// File length.
        file_len: u64,
    },
    /// A stream VMDK read front to back ended before its end-of-stream marker.
    #[error(
        "stream VMDK ends at uncompressed byte {offset:#x} inside its {what}, before the end-of-stream marker: the stream is truncated"
    )]
    StreamEnds {
        /// Bytes read.
        offset: u64,
        /// What was being read.
        what: &'static str,
    },
    /// Reading a stream VMDK front to back failed (the decompressor's error).
    #[error("stream VMDK cannot be read at uncompressed byte {offset:#x}")]
    StreamRead {
        /// Bytes read before the failure.
        offset: u64,
        /// The reader's error.
        #[source]
        source: std::io::Error,
    },
    /// Grain tables alias each other or the header/directory.
    #[error(
        "grain table {index} at {offset:#x} overlaps {other}; grain directory loops are refused"
    )]
    TableOverlap {
        /// GD index.
        index: usize,
        /// GT byte offset.
        offset: u64,
        /// What it overlaps.
        other: &'static str,
    },
    /// Too many extents in a descriptor.
    #[error("descriptor lists {count} extents; at most {max} are read")]
    TooManyExtents {
        /// Number of extents.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A GD_AT_END stream that does not end on a sector boundary: it was cut short.
    #[error(
        "stream ends at {file_len:#x}, not on a sector boundary: the file is truncated and has no footer"
    )]
    TruncatedStream {
        /// File length.
        file_len: u64,
    },
    /// The descriptor's createType is not one kiln reads.
    #[error(
        "createType {create_type:?} is not supported; kiln reads monolithicSparse, streamOptimized, monolithicFlat, twoGbMaxExtentSparse and twoGbMaxExtentFlat"
    )]
    UnknownCreateType {
        /// The createType as written.
        create_type: String,
    },
    /// An extent type kiln does not read (VMFS, ...).
    #[error(
        "extent type {kind} on descriptor line {line} is not supported; kiln reads SPARSE, FLAT and ZERO"
    )]
    UnsupportedExtentType {
        /// The type keyword.
        kind: String,
        /// 1-based line number.
        line: usize,
    },
    /// The writer's output is larger than 32-bit sector offsets can address.
    #[error("output passes {max:#x} sectors, the most 32-bit grain offsets can address")]
    WriterOffsetOverflow {
        /// Largest addressable sector.
        max: u64,
    },
    /// The grain marker of a compressed grain names another LBA.
    #[error("grain marker at {offset:#x} has LBA {found:#x}, expected {expected:#x}")]
    WrongGrainLba {
        /// Byte offset of the marker.
        offset: u64,
        /// LBA in the marker.
        found: u64,
        /// LBA the grain table implies.
        expected: u64,
    },
}

impl VmdkError {
    fn kind(&self) -> ErrorKind {
        match self {
            VmdkError::BadExtentName { .. } | VmdkError::ParentDisk { .. } => ErrorKind::Refused,
            VmdkError::BadOption { .. } => ErrorKind::InvalidInput,
            VmdkError::UnknownCreateType { .. }
            | VmdkError::UnsupportedExtentType { .. }
            | VmdkError::WriterOffsetOverflow { .. } => ErrorKind::Unsupported,
            _ => ErrorKind::InvalidImage,
        }
    }

    /// Folds into the crate error, naming `path`.
    pub(super) fn at(self, path: &std::path::Path) -> Error {
        Error::from(self).with_path(path)
    }
}

impl From<VmdkError> for Error {
    fn from(e: VmdkError) -> Self {
        let kind = e.kind();
        Error::new(kind, e)
    }
}

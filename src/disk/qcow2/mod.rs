//! qcow2 images (QEMU copy-on-write, spec: qemu docs/interop/qcow2.txt, versions 2 and 3).
//!
//! **Writer.** Version 3 (`compat=1.1`, default) or 2 (`compat=0.10`); `cluster_size`
//! 512 B to 2 MiB; 16-bit refcounts; `preallocation=off|metadata|falloc|full` with qemu's
//! meaning (see [`layout`] for the metadata layout, which equals qemu's); `-c` writes
//! zlib clusters (raw deflate with a 4 KiB window, as qemu writes them), compressed on the
//! rayon pool in ordered batches so the bytes never depend on the thread count. With
//! `preallocation=off` the file is header, L1 table, then data clusters and each L2 table
//! after the data it maps, in stream order, then the refcount blocks and table; the header
//! is written last. All-zero clusters are not allocated. RAM: the L1 table (8 bytes per
//! L2 table), one L2 table, one 4 MiB write buffer, one compression batch (at most 4 MiB
//! of input), and 16 bytes per host cluster shared by compressed clusters. Preallocated
//! images keep the computed layout instead: 8 bytes per L2 table and refcount block and a
//! few 24-byte data runs per L2 table. Nothing grows with the data. The virtual size is
//! rounded up to a 512-byte sector, as qemu-img does (qemu drops a partial sector).
//! `lazy_refcounts=on`, `refcount_bits` other than 16 and `compression_type=zstd` are
//! refused (Unsupported).
//!
//! **Reader.** Images qemu-img writes: v2 and v3, every cluster size, zlib-compressed
//! clusters, zero clusters (with or without a host offset), unallocated clusters, header
//! extensions (skipped, bounded by the first cluster). It reads the active L1 table only
//! (snapshots are ignored) and holds one L2 table at a time; allocated clusters that are
//! holes in the file (qemu's metadata preallocation) read as zero runs. Refused
//! ([`ErrorKind::Refused`], as OpenStack's format_inspector does): a backing file, an
//! external data file, the corrupt bit, and unknown incompatible feature bits.
//! `OpenOptions::allow_unsafe` reads the first three alone: referenced files are never
//! opened, clusters a backing file would supply read as zeros, and so do clusters whose
//! data lives in an external data file. Unknown incompatible bits are refused even then,
//! since kiln cannot know what they change. The dirty bit is accepted (it only means the
//! refcounts may be stale, which a reader does not use). Unsupported: encryption,
//! zstd compression, extended L2 entries.

mod check;
mod header;
mod layout;
mod reader;
mod refcount;
mod writer;

use serde::Serialize;

pub use check::{CheckReport, MAX_MESSAGES, check};

use super::{CreateRequest, DiskReader, DiskWriter, Extent, KvOptions, OpenOptions};
use crate::error::{Error, ErrorKind, Result};
use crate::io::Source;
use crate::io::output::OutputSet;

/// The `-o` keys the qcow2 writer accepts.
pub(super) const OPTION_KEYS: &[&str] = &[
    "cluster_size",
    "compat",
    "compression_type",
    "lazy_refcounts",
    "preallocation",
    "refcount_bits",
];

/// Why a qcow2 image cannot be read.
#[remain::sorted]
#[derive(Debug, thiserror::Error)]
pub enum Qcow2Error {
    /// A backing file is named and unsafe images were not allowed.
    #[error(
        "qcow2 image has a backing file (name at offset {offset:#x}); refused, pass --allow-unsafe to read the image alone"
    )]
    BackingFile {
        /// Offset of the backing file name.
        offset: u64,
    },
    /// cluster_bits outside 9..=21.
    #[error("qcow2 cluster_bits at offset 0x14 is {found}, allowed 9 to 21")]
    BadClusterBits {
        /// Value found.
        found: u32,
    },
    /// A compressed cluster does not inflate to one cluster.
    #[error(
        "qcow2 compressed cluster for guest offset {guest_offset:#x} at host offset {host_offset:#x} does not inflate to one cluster"
    )]
    BadCompressedCluster {
        /// Guest offset of the cluster.
        guest_offset: u64,
        /// Host offset of the compressed data.
        host_offset: u64,
    },
    /// header_length too small, unaligned or past the first cluster.
    #[error("qcow2 header_length at offset 0x64 is {found}, allowed 104 to {max} in steps of 8")]
    BadHeaderLength {
        /// Value found.
        found: u32,
        /// Largest value the cluster size allows.
        max: u64,
    },
    /// An L2 entry breaks the spec (unaligned offset, zero flag in v2, ...).
    #[error("qcow2 L2 entry at offset {entry_offset:#x} is {value:#018x}: {problem}")]
    BadL2Entry {
        /// Where the entry is.
        entry_offset: u64,
        /// The entry.
        value: u64,
        /// What is wrong.
        problem: &'static str,
    },
    /// The file does not start with `QFI\xfb`.
    #[error("qcow2 magic at offset 0x0 is {found:#010x}, expected 0x514649fb")]
    BadMagic {
        /// Value found.
        found: u32,
    },
    /// refcount_order outside the allowed range.
    #[error("qcow2 refcount_order at offset 0x60 is {found}, allowed 0 to 6 (4 for version 2)")]
    BadRefcountOrder {
        /// Value found.
        found: u32,
    },
    /// Version other than 2 or 3.
    #[error("qcow2 version at offset 0x4 is {found}, allowed 2 or 3")]
    BadVersion {
        /// Value found.
        found: u32,
    },
    /// A guest cluster maps outside the file.
    #[error(
        "qcow2 cluster for guest offset {guest_offset:#x} points at host offset {host_offset:#x}, past the end of the file ({file_len:#x} bytes)"
    )]
    ClusterOutsideFile {
        /// Guest offset.
        guest_offset: u64,
        /// Host offset in the L2 entry.
        host_offset: u64,
        /// File length.
        file_len: u64,
    },
    /// The corrupt bit is set.
    #[error("qcow2 image is marked corrupt (incompatible feature bit 1 at offset 0x48); refused")]
    Corrupt,
    /// Encrypted images.
    #[error(
        "qcow2 image is encrypted (crypt_method {method} at offset 0x20); kiln does not decrypt"
    )]
    Encrypted {
        /// crypt_method.
        method: u32,
    },
    /// Extended L2 entries (subclusters).
    #[error(
        "qcow2 image uses extended L2 entries (incompatible bit 4 at offset 0x48); kiln does not read subclusters"
    )]
    ExtendedL2,
    /// A header extension runs past the first cluster.
    #[error(
        "qcow2 header extension at offset {offset:#x} ({len} bytes) runs past the first cluster"
    )]
    ExtensionTooLong {
        /// Offset of the extension header.
        offset: u64,
        /// Its declared length.
        len: u32,
    },
    /// The data lives in an external file.
    #[error(
        "qcow2 image keeps its data in an external data file (incompatible bit 2 at offset 0x48); refused"
    )]
    ExternalDataFile,
    /// The file ends before a byte it held when it was opened.
    #[error(
        "qcow2 image ends before offset {offset:#x}, though it was {file_len:#x} bytes when opened (it shrank while being read)"
    )]
    FileShrank {
        /// The byte that is gone.
        offset: u64,
        /// Length when opened.
        file_len: u64,
    },
    /// The metadata check found errors.
    #[error(
        "qcow2 metadata is inconsistent: {errors} errors as qemu-img check counts them, the first: {first}; refused (`kiln check` lists them), pass --allow-unsafe to read the image anyway"
    )]
    Inconsistent {
        /// How many.
        errors: u64,
        /// The first, in qemu-img's words.
        first: String,
    },
    /// l1_size exceeds qemu's limit.
    #[error("qcow2 l1_size at offset 0x24 is {l1_size}, more than the {max} entries qemu allows")]
    L1TooLarge {
        /// Value found.
        l1_size: u64,
        /// Limit.
        max: u64,
    },
    /// l1_size cannot map the virtual size.
    #[error(
        "qcow2 l1_size at offset 0x24 is {l1_size}, but the virtual size {size:#x} needs {needed}"
    )]
    L1TooSmall {
        /// Value found.
        l1_size: u64,
        /// Entries needed.
        needed: u64,
        /// Virtual size.
        size: u64,
    },
    /// The refcount table exceeds qemu's limit.
    #[error(
        "qcow2 refcount_table_clusters at offset 0x38 is {clusters}, more than qemu's 8 MiB limit allows"
    )]
    RefcountTableTooLarge {
        /// Value found.
        clusters: u32,
    },
    /// nb_snapshots exceeds qemu's limit.
    #[error(
        "qcow2 nb_snapshots at offset 0x3c is {nb_snapshots}, more than the {max} qemu allows: snapshot table too large"
    )]
    SnapshotTableTooLarge {
        /// Value found.
        nb_snapshots: u32,
        /// Limit.
        max: u32,
    },
    /// A table lies (partly) past the end of the file.
    #[error(
        "qcow2 {what} at offset {offset:#x} ({len} bytes) lies past the end of the file ({file_len:#x} bytes)"
    )]
    TableOutsideFile {
        /// Which table.
        what: &'static str,
        /// Its offset.
        offset: u64,
        /// Its length.
        len: u64,
        /// File length.
        file_len: u64,
    },
    /// A table offset is not cluster-aligned.
    #[error("qcow2 {what} offset {offset:#x} is not aligned to the cluster size")]
    UnalignedTable {
        /// Which table.
        what: &'static str,
        /// Its offset.
        offset: u64,
    },
    /// A compression type other than zlib.
    #[error("qcow2 compression_type at offset 0x68 is {found} (1 = zstd); kiln reads zlib only")]
    UnknownCompression {
        /// Value found.
        found: u8,
    },
    /// Incompatible feature bits kiln does not know.
    #[error("qcow2 unknown incompatible feature bits {bits:#x} at offset 0x48; refused")]
    UnknownIncompatible {
        /// The unknown bits.
        bits: u64,
    },
    /// The virtual size exceeds what kiln accepts.
    #[error("qcow2 virtual size {size:#x} at offset 0x18 is larger than 2^63")]
    VirtualSizeTooLarge {
        /// Value found.
        size: u64,
    },
}

impl Qcow2Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Qcow2Error::BackingFile { .. }
            | Qcow2Error::Inconsistent { .. }
            | Qcow2Error::Corrupt
            | Qcow2Error::ExternalDataFile
            | Qcow2Error::UnknownIncompatible { .. } => ErrorKind::Refused,
            Qcow2Error::Encrypted { .. }
            | Qcow2Error::ExtendedL2
            | Qcow2Error::UnknownCompression { .. } => ErrorKind::Unsupported,
            _ => ErrorKind::InvalidImage,
        }
    }
}

impl From<Qcow2Error> for Error {
    fn from(e: Qcow2Error) -> Self {
        Error::new(e.kind(), e)
    }
}

/// How data clusters are preallocated (qemu's `preallocation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Prealloc {
    /// Only clusters holding data are allocated.
    Off,
    /// Every cluster is mapped; unwritten ones are holes in the file.
    Metadata,
    /// As metadata, and the file's space is reserved with fallocate.
    Falloc,
    /// As metadata, and unwritten clusters are written as zeros.
    Full,
}

/// The writer's validated `-o` options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Settings {
    /// 2 or 3.
    pub version: u32,
    pub cluster_bits: u32,
    pub prealloc: Prealloc,
}

impl Settings {
    /// Parses and checks the options.
    ///
    /// # Errors
    /// A malformed value (InvalidInput) or a feature kiln does not write (Unsupported).
    pub fn from_options(options: &KvOptions) -> Result<Self> {
        let version = match options.get_choice("compat", &["1.1", "v3", "0.10", "v2"])? {
            Some("0.10" | "v2") => 2,
            _ => 3,
        };
        let cluster_size = options.get_size("cluster_size")?.unwrap_or(65536);
        if !cluster_size.is_power_of_two() || !(512..=(2 << 20)).contains(&cluster_size) {
            return Err(Error::invalid_input(format!(
                "option cluster_size={cluster_size}: expected a power of two from 512 to 2M"
            )));
        }
        let prealloc =
            match options.get_choice("preallocation", &["off", "metadata", "falloc", "full"])? {
                Some("metadata") => Prealloc::Metadata,
                Some("falloc") => Prealloc::Falloc,
                Some("full") => Prealloc::Full,
                _ => Prealloc::Off,
            };
        check_refused_options(options, version)?;
        Ok(Self {
            version,
            cluster_bits: cluster_size.trailing_zeros(),
            prealloc,
        })
    }
}

fn check_refused_options(options: &KvOptions, version: u32) -> Result<()> {
    if options.get_bool("lazy_refcounts")? == Some(true) {
        let why = if version == 2 {
            "needs compat=1.1 and "
        } else {
            ""
        };
        return Err(Error::unsupported(format!(
            "option lazy_refcounts=on {why}is not supported by kiln's qcow2 writer"
        )));
    }
    if let Some(bits) = options.get_u64_in("refcount_bits", 1..=64)?
        && bits != 16
    {
        return Err(Error::unsupported(format!(
            "option refcount_bits={bits}: kiln writes 16-bit refcounts only"
        )));
    }
    if options.get_choice("compression_type", &["zlib", "zstd"])? == Some("zstd") {
        return Err(Error::unsupported(
            "option compression_type=zstd: kiln writes zlib-compressed clusters only",
        ));
    }
    Ok(())
}

/// Every reason OpenStack's format_inspector (and kiln without `--allow-unsafe`) has to
/// refuse the qcow2 image in `src`, from its header: a backing file, an external data file,
/// the corrupt bit, incompatible feature bits format_inspector does not know (it allows
/// bits 0 to 3 only, so extended L2 entries count). Structure is checked by [`check`].
///
/// # Errors
/// I/O failures and a header that does not parse.
pub fn safety_reasons(src: &dyn crate::io::ReadAt) -> Result<Vec<String>> {
    let h = reader::read_header(src, src.len())?;
    let mut reasons = Vec::new();
    if h.backing_file_offset != 0 {
        reasons.push(
            Qcow2Error::BackingFile {
                offset: h.backing_file_offset,
            }
            .to_string(),
        );
    }
    if h.incompatible & header::INCOMPAT_DATA_FILE != 0 {
        reasons.push(Qcow2Error::ExternalDataFile.to_string());
    }
    if h.incompatible & header::INCOMPAT_CORRUPT != 0 {
        reasons.push(Qcow2Error::Corrupt.to_string());
    }
    // format_inspector's I_FEATURES_MAX_BIT: bits 4 and up are unknown to it.
    let unknown = h.incompatible & !0xf;
    if unknown != 0 {
        reasons.push(Qcow2Error::UnknownIncompatible { bits: unknown }.to_string());
    }
    Ok(reasons)
}

pub(super) fn open(src: Source, opts: &OpenOptions) -> Result<Box<dyn DiskReader>> {
    let reader = reader::Qcow2Reader::open(src, opts.allow_unsafe)?;
    if !opts.allow_unsafe {
        refuse_inconsistent(reader.source())?;
    }
    Ok(Box::new(reader))
}

/// The check `kiln check --safety` runs, on every read: clusters shared between tables and
/// data, tables past the end, refcounts below their references. A dirty image (lazy
/// refcounts, not closed cleanly) may have stale refcounts by design, so only its
/// structure is held to the rule then.
fn refuse_inconsistent(src: &dyn crate::io::ReadAt) -> Result<()> {
    let report = check(src)?;
    let dirty = reader::read_header(src, src.len())?.incompatible & header::INCOMPAT_DIRTY != 0;
    // References past the end are left to the read, whose error names the guest offset.
    let errors = if dirty {
        report.check_errors
    } else {
        report.errors() - report.past_end
    };
    if errors == 0 {
        return Ok(());
    }
    let first = report.messages.first().cloned().unwrap_or_default();
    Err(Qcow2Error::Inconsistent { errors, first }.into())
}

pub(super) fn create(req: &CreateRequest<'_>, out: &mut OutputSet) -> Result<Box<dyn DiskWriter>> {
    let settings = Settings::from_options(req.options)?;
    if req.compress && settings.prealloc != Prealloc::Off {
        return Err(Error::invalid_input(
            "compressed qcow2 output cannot be preallocated; drop -c or preallocation",
        ));
    }
    writer::create(req, settings, out)
}

/// What `qemu-img measure -O qcow2` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Measure {
    /// Bytes the image needs for the data given (all of it with falloc/full).
    pub required: u64,
    /// Bytes of a fully allocated image of the same virtual size.
    #[serde(rename = "fully-allocated")]
    pub fully_allocated: u64,
}

/// Sizes a qcow2 image as `qemu-img measure -O qcow2` does (qemu's `qcow2_measure`): for
/// `--size`, pass `virtual_size` and no input; for an input image, pass its reader, whose
/// data extents count cluster by cluster (zero and unallocated runs count nothing).
///
/// # Errors
/// Invalid options, or errors reading the input.
pub fn measure(
    options: &KvOptions,
    virtual_size: u64,
    input: Option<&mut dyn DiskReader>,
) -> Result<Measure> {
    options.check_known("qcow2", OPTION_KEYS)?;
    let settings = Settings::from_options(options)?;
    let cluster_size = 1u64 << settings.cluster_bits;
    let size = input.as_ref().map_or(virtual_size, |r| r.virtual_size());
    writer::check_size(layout::Geometry {
        cluster_bits: settings.cluster_bits,
        virtual_size: size,
    })?;
    let aligned = size.div_ceil(cluster_size) * cluster_size;
    let mut required = match input {
        Some(reader) => allocated_bytes(reader, cluster_size)?,
        None => 0,
    };
    if matches!(settings.prealloc, Prealloc::Falloc | Prealloc::Full) {
        required = aligned;
    }
    let fully_allocated = layout::prealloc_size(aligned, cluster_size);
    Ok(Measure {
        required: fully_allocated - aligned + required,
        fully_allocated,
    })
}

/// Bytes of the clusters that hold at least one byte of a data extent.
fn allocated_bytes(reader: &mut dyn DiskReader, cluster_size: u64) -> Result<u64> {
    let (mut pos, mut counted_end, mut total) = (0u64, 0u64, 0u64);
    while let Some(extent) = reader.next_extent()? {
        let len = extent.len();
        if matches!(extent, Extent::Data(_)) && len > 0 {
            let first = (pos / cluster_size * cluster_size).max(counted_end);
            let end = (pos + len).div_ceil(cluster_size) * cluster_size;
            total += end.saturating_sub(first);
            counted_end = counted_end.max(end);
        }
        pos += len;
    }
    Ok(total)
}

#[cfg(test)]
mod tests;
